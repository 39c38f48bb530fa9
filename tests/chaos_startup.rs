//! Chaos at start-up: worker processes SIGKILLed from outside while they start, before their
//! handshake.
//!
//! What it proves: a worker killed from outside before its handshake is replaced like any
//! other, so that once the kills stop the pool is back to its configured size and answers
//! calls; the calls queued meanwhile end with their value or `Error::WorkerDied`, none hangs.
//!
//! A kill is known to land before the handshake because the worker is stopped (SIGSTOP) as
//! soon as it shows up among this process's children, and killed only if it has not yet
//! started the thread that writes its handshake (`unsync-worker`): a stopped process cannot
//! start one. A binary of its own: it configures the pool, and it kills every new worker.
//!
//! Before the fix, three such kills in a row broke the pool for the rest of the process: it took
//! them for a binary that cannot start workers. Now only exits, crashes and missing handshakes
//! count as start failures; kills from outside are replaced, with a pause that doubles while
//! they continue.

// Unix only: it stops and kills workers with signals (SIGSTOP has no Windows equivalent).
#![cfg(unix)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use unsync::{Config, Error, unsync};

mod common;
use common::{LIMIT, watchdog};

const PROCESSES: usize = 2;
/// Pre-handshake kills in a row. The pool gives up on a binary whose workers fail to start
/// three times in a row (so that it does not re-execute a broken binary forever); six in a
/// row as counted here (a worker seen after its handshake resets the count) are at least four
/// in a row for the pool, whatever order the kills and the sightings interleave in (at most
/// `PROCESSES` workers start between two scans).
const START_KILLS: usize = 6;

#[unsync(cpu_bound)]
fn double(i: u64) -> u64 {
    i * 2
}

/// This process's children (of every thread: the pool's supervisor thread starts them).
fn children() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(list) = std::fs::read_to_string(task.unwrap().path().join("children")) else {
            continue;
        };
        pids.extend(list.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
    }
    pids
}

/// The process state letter from /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn live_workers() -> BTreeSet<i32> {
    children()
        .into_iter()
        .filter(|&pid| state(pid).is_some_and(|s| s != 'Z' && s != 'X'))
        .collect()
}

/// Whether the (stopped) process has started its serving thread.
fn serving(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "unsync-worker")
    })
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: `kill` has no memory-safety preconditions. The pid is a child of this process
    // that it has not reaped: the pool reaps a worker only after it died, and the workers here
    // die only from these kills, so the pid cannot have been reused.
    unsafe { libc::kill(pid, signal) };
}

#[test]
fn workers_killed_before_their_handshake_are_replaced() {
    Config::new().processes(PROCESSES).install().unwrap();
    watchdog(LIMIT, || {
        // Calls queued before any worker exists: the pool starts its workers for them.
        let queued: Vec<_> = (0..50).map(|i| (i, double(i).catch())).collect();
        let mut seen = BTreeSet::new();
        // Kills known to land before the handshake: in a row, and in all.
        let (mut killed, mut killed_in_all) = (0, 0);
        // Generous: a worker starts in milliseconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        'kill: while killed < START_KILLS {
            for pid in live_workers() {
                if !seen.insert(pid) {
                    continue;
                }
                signal(pid, libc::SIGSTOP);
                while state(pid) == Some('R') || state(pid) == Some('S') || state(pid) == Some('D')
                {
                    // Busy-wait for the stop to take effect (microseconds).
                    std::thread::yield_now();
                }
                let before_handshake = !serving(pid);
                // A worker that may have answered its handshake is killed too (its death is an
                // ordinary one), so that the pool starts another; only kills known to land
                // before the handshake count, and only in a row: a handshake in between may
                // reset what the pool counts.
                signal(pid, libc::SIGKILL);
                if !before_handshake {
                    killed = 0;
                    continue;
                }
                killed += 1;
                killed_in_all += 1;
                if killed == START_KILLS {
                    break 'kill;
                }
            }
            if Instant::now() > deadline {
                let now = double(7).catch();
                let outcome = now
                    .wait_timeout(Duration::from_secs(5))
                    .then(|| now.result());
                panic!(
                    "the pool stopped starting workers after {killed_in_all} were killed before their handshake (the last {killed} in a row); a new call now gets {outcome:?}"
                );
            }
            std::thread::yield_now();
        }
        let mut died = 0;
        for (i, handle) in queued {
            match handle.result() {
                Ok(v) => assert_eq!(v, i * 2),
                Err(Error::WorkerDied { detail, .. }) => {
                    eprintln!("call {i} died: {detail}");
                    died += 1;
                }
                Err(other) => panic!("call {i}: unexpected {other:?}"),
            }
        }
        eprintln!("{killed} workers killed before their handshake; {died} of 50 queued calls died");
        // The kills stopped: the pool must work again, at its full size.
        for i in 0..20 {
            assert_eq!(
                double(i).catch().result(),
                Ok(i * 2),
                "after {killed} workers were killed while starting, the pool refuses calls"
            );
        }
        // Bounded poll: the replacements become visible once the pool's supervisor started them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while live_workers().len() != PROCESSES {
            assert!(
                Instant::now() < deadline,
                "live workers {:?}, configured {PROCESSES}",
                live_workers()
            );
            std::thread::yield_now();
        }
    });
}
