//! Where a piece of code ran: the process id and the thread's name.
//!
//! unsync names its threads after the executor: `unsync-runtime-N` (the tokio runtime that
//! runs `#[unsync] async fn`), `unsync-blocking-N` (the pool behind plain `#[unsync] fn`),
//! `unsync-parallel-N` (the rayon pool behind `#[unsync(parallel)] fn`). A worker process of
//! `#[unsync(cpu_bound)] fn` is the example's executable started again, named
//! `EXAMPLE (unsync worker)`, and runs each call on its thread `unsync-worker`.

use std::fmt;

/// Serializable, so a worker process of `#[unsync(cpu_bound)]` can report where it ran.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

    pub fn in_worker_process(&self) -> bool {
        self.pid != std::process::id() && self.thread == "unsync-worker"
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

/// The name this process was started under (the file name of `argv[0]`): the example's name
/// in the parent, `NAME (unsync worker)` in a worker process of `#[unsync(cpu_bound)]`. Read
/// from `/proc/self/cmdline` where there is one: a worker runs its calls before `main`, where
/// `std::env::args` may not be filled in yet.
pub fn process_name() -> String {
    let argv0 = std::fs::read("/proc/self/cmdline")
        .ok()
        .and_then(|cmdline| {
            let first = cmdline.split(|&b| b == 0).next()?;
            (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
        })
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "?".into());
    match argv0.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name.to_owned(),
        _ => argv0,
    }
}
