//! Where a piece of code ran: the process id and the thread's name.
//!
//! unsync names its threads after the executor: `unsync-runtime-N` (the tokio runtime that
//! runs `#[unsync] async fn`), `unsync-blocking-N` (the pool behind plain `#[unsync] fn`),
//! `unsync-parallel-N` (the rayon pool behind `#[unsync(parallel)] fn`). A worker process of
//! `#[unsync(cpu_bound)] fn` is the example's executable started again, named
//! `EXAMPLE (unsync worker)`, and runs each call on its thread `unsync-worker`.

use std::collections::{BTreeMap, BTreeSet};
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

/// Where a group of tasks ran, in one short line: each pid with the threads seen in it, as
/// `pid 4242: unsync-blocking-{0-3,5}, main`. Numbered threads of one pool are folded into
/// one `prefix{numbers}` entry, with runs of three or more written `first-last`; pids are
/// separated by `; `.
pub fn summary<'a>(places: impl IntoIterator<Item = &'a Place>) -> String {
    // pid -> thread name without its trailing number -> the numbers seen (None: no number).
    let mut by_pid: BTreeMap<u32, BTreeMap<&str, BTreeSet<Option<u64>>>> = BTreeMap::new();
    for place in places {
        let name = place.thread.as_str();
        let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let number = name[prefix.len()..].parse::<u64>().ok();
        let prefix = if number.is_some() { prefix } else { name };
        by_pid
            .entry(place.pid)
            .or_default()
            .entry(prefix)
            .or_default()
            .insert(number);
    }
    if by_pid.is_empty() {
        return "nowhere (no task ran)".to_owned();
    }
    by_pid
        .iter()
        .map(|(pid, threads)| {
            let threads: Vec<String> = threads
                .iter()
                .map(|(prefix, numbers)| fold(prefix, numbers))
                .collect();
            format!("pid {pid}: {}", threads.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `prefix` with its numbers: `name` alone, `name-3`, or `name-{0-3,5}` (and the bare
/// `prefix` too when a thread had that name without a number).
fn fold(prefix: &str, numbers: &BTreeSet<Option<u64>>) -> String {
    let bare = numbers.contains(&None);
    let numbers: Vec<u64> = numbers.iter().flatten().copied().collect();
    let folded = match numbers[..] {
        [] => return prefix.to_owned(),
        [one] => format!("{prefix}{one}"),
        _ => {
            let mut runs: Vec<String> = Vec::new();
            let mut i = 0;
            while i < numbers.len() {
                let mut j = i;
                while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
                    j += 1;
                }
                if j >= i + 2 {
                    runs.push(format!("{}-{}", numbers[i], numbers[j]));
                } else {
                    runs.extend(numbers[i..=j].iter().map(u64::to_string));
                }
                i = j + 1;
            }
            format!("{prefix}{{{}}}", runs.join(","))
        }
    };
    if bare {
        format!("{prefix}, {folded}")
    } else {
        folded
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
