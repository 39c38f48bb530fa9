//! Where a piece of code ran: the process id and the thread's name.
//!
//! unsync names its threads after the executor: `unsync-runtime-N` (the tokio runtime that
//! runs `#[unsync] async fn`), `unsync-blocking-N` (the pool behind plain `#[unsync] fn`),
//! `unsync-parallel-N` (the rayon pool behind `#[unsync(parallel)] fn`).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    pub pid: u32,
    pub thread: String,
}

/// The place of the calling code.
pub fn here() -> Place {
    Place {
        pid: std::process::id(),
        thread: std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_owned(),
    }
}

impl Place {
    pub fn on_runtime(&self) -> bool {
        self.thread.starts_with("unsync-runtime-")
    }

    pub fn on_blocking_pool(&self) -> bool {
        self.thread.starts_with("unsync-blocking-")
    }

    pub fn on_parallel_pool(&self) -> bool {
        self.thread.starts_with("unsync-parallel-")
    }

    pub fn in_this_process(&self) -> bool {
        self.pid == std::process::id()
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}, {}", self.pid, self.thread)
    }
}
