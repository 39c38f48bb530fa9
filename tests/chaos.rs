//! Chaos: worker processes SIGKILLed from outside, every few milliseconds, while a batch of
//! 5,000 `cpu_bound` calls runs.
//!
//! What it proves: every call ends, none hangs (watchdog), and each ends either with its own
//! correct value or with `Error::WorkerDied` naming the SIGKILL, never another error or
//! another call's value; the chaos did hit calls in flight; and once the killing stops, the
//! pool is back to its configured size (counted as live worker children of this process) and
//! answers a fresh round of calls correctly, without any `shutdown` to reset it.
//!
//! The killer picks any live worker, including replacements still starting (before their
//! handshake): those must be replaced too, never mistaken for a binary that cannot start
//! workers (`tests/chaos_startup.rs` aims at that case alone).
//!
//! A binary of its own: it configures the pool size, and its kills must not hit the workers of
//! other tests.
//!
//! On Windows the killer uses `TerminateProcess` (exit code 1), as `taskkill /F` does, ten
//! times less often, and picks only workers that have answered a call: under Wine, a process
//! killed before its parent's `CreateProcess` returns makes that call fail, which the pool must
//! count as a worker that cannot start (`tests/chaos_startup.rs`, Unix only, covers kills
//! during start-up), and Wine's server crashed under a kill every few milliseconds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use unsync::{Config, Error, unsync};

mod common;
use common::{LIMIT, Rng, watchdog};

/// Worker processes: not the default (the number of cores), so that counting them checks the
/// configured size, not a coincidence.
const PROCESSES: usize = 3;
const CALLS: u32 = 5_000;

fn value(i: u32) -> u64 {
    u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa5a5
}

/// Busy for `spin_us` microseconds (so that calls are in flight when the kills land), then
/// the input transformed, and the worker's pid.
#[unsync(cpu_bound)]
fn work(i: u32, spin_us: u64) -> (u64, u32) {
    let until = Instant::now() + Duration::from_micros(spin_us);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    (value(i), std::process::id())
}

#[unsync(cpu_bound)]
fn worker_pid(i: u32) -> (u64, u32) {
    (value(i), std::process::id())
}

/// The live worker processes of this process: its children (of every thread: the pool's
/// supervisor thread starts them), minus the zombies of killed workers not reaped yet.
#[cfg(unix)]
fn live_workers() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let children = task.unwrap().path().join("children");
        // A thread can exit between listing and reading.
        let Ok(list) = std::fs::read_to_string(children) else {
            continue;
        };
        for pid in list.split_whitespace() {
            let pid: i32 = pid.parse().unwrap();
            if is_live_worker(pid) {
                pids.insert(pid);
            }
        }
    }
    pids
}

/// The live worker processes of this process: its children (all of them are workers).
#[cfg(windows)]
fn live_workers() -> BTreeSet<i32> {
    common::live_children()
        .into_iter()
        .map(|pid| i32::try_from(pid).unwrap())
        .collect()
}

/// Kill `pid` at once; whether it worked.
#[cfg(unix)]
fn kill(pid: i32) -> bool {
    // SAFETY: `kill` has no memory-safety preconditions. The pid is a child of this process
    // read from /proc a moment ago; it could have died, been reaped by the pool and the pid
    // reused by an unrelated process in between, but that race (microseconds, needing a pid
    // wrap-around) is acceptable in a test.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

/// Kill `pid` at once, as `taskkill /F` does; whether it worked.
#[cfg(windows)]
fn kill(pid: i32) -> bool {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};
    // SAFETY: a handle opened here, used once, then closed. The pid is a child of this
    // process listed a moment ago (the same reuse race as on Unix).
    unsafe {
        let process = OpenProcess(PROCESS_TERMINATE, 0, u32::try_from(pid).unwrap());
        if process.is_null() {
            return false;
        }
        let killed = TerminateProcess(process, 1) != 0;
        CloseHandle(process);
        killed
    }
}

/// How a call whose worker the killer hit ends.
const KILLED: &str = if cfg!(windows) {
    "exited with status 1"
} else {
    "killed by signal 9 (SIGKILL)"
};

#[cfg(unix)]
fn is_live_worker(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    if state.starts_with('Z') || state.starts_with('X') {
        return false;
    }
    // Every child of this test binary is a worker; check anyway, by the name the pool gives.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("(unsync worker)"))
}

/// Wait (bounded) until exactly `n` workers are alive; returns them.
fn wait_for_workers(n: usize) -> BTreeSet<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = live_workers();
        if live.len() == n {
            return live;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not get back to {n} workers: live workers {live:?}"
        );
        // Polling a condition under a deadline (not a sleep standing in for synchronisation):
        // a replacement worker becomes visible when the pool's supervisor has started it.
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_workers_fail_only_their_calls_and_the_pool_recovers() {
    Config::new().processes(PROCESSES).install().unwrap();
    watchdog(LIMIT * 3, || {
        let seed = std::env::var("UNSYNC_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x00c0_ffee);
        eprintln!("chaos seed {seed} (set UNSYNC_TEST_SEED to replay)");
        let mut rng = Rng::seeded(seed);

        // Workers seen answering (the only ones the killer picks on Windows).
        let answered = Arc::new(Mutex::new(BTreeSet::new()));
        // Warm up: the pool at full size before the chaos starts.
        for i in 0..20 {
            let (v, pid) = work(i, 0).result();
            assert_eq!(v, value(i));
            answered.lock().unwrap().insert(pid as i32);
        }
        let before = wait_for_workers(PROCESSES);

        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicUsize::new(0));
        let killer = {
            let (stop, kills, answered) = (stop.clone(), kills.clone(), answered.clone());
            let mut rng = Rng::seeded(rng.next());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let live: Vec<i32> = live_workers()
                        .into_iter()
                        .filter(|pid| !cfg!(windows) || answered.lock().unwrap().contains(pid))
                        .collect();
                    if !live.is_empty() {
                        let pid = live[(rng.next() % live.len() as u64) as usize];
                        if kill(pid) {
                            kills.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // The chaos itself: a kill every 1 to 8 ms (10 to 80 ms on Windows, where
                    // starting a replacement takes far longer).
                    let pause = Duration::from_micros(1000 + rng.next() % 7000);
                    std::thread::sleep(if cfg!(windows) { pause * 10 } else { pause });
                }
            })
        };

        let started = Instant::now();
        let handles: Vec<_> = (0..CALLS)
            .map(|i| work(i, 100 + rng.next() % 900).catch().map(move |r| (i, r)))
            .collect();
        let mut ended = vec![0_u8; CALLS as usize];
        let mut died = 0;
        for (i, outcome) in unsync::as_completed(handles) {
            ended[i as usize] += 1;
            match outcome {
                Ok((v, pid)) => {
                    assert_eq!(v, value(i), "call {i} returned another call's value");
                    answered.lock().unwrap().insert(pid as i32);
                }
                Err(Error::WorkerDied { detail, .. }) => {
                    assert!(detail.contains(KILLED), "call {i}: {detail}");
                    died += 1;
                }
                Err(other) => panic!("call {i}: unexpected {other:?}"),
            }
        }
        assert!(ended.iter().all(|&n| n == 1), "a call ended twice or never");
        let batch = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        killer.join().unwrap();
        let kills = kills.load(Ordering::Relaxed);
        eprintln!(
            "{CALLS} calls in {:.2} s under {kills} kills: {died} died, {} succeeded",
            batch.as_secs_f64(),
            CALLS as usize - died
        );
        assert!(kills > 0, "the killer never found a worker to kill");
        assert!(died > 0, "no call was in flight when a kill landed");
        assert!(
            died < CALLS as usize,
            "every call died: the pool never recovered between kills"
        );

        // The pool is back to full size.
        let after = wait_for_workers(PROCESSES);
        eprintln!("workers before the chaos {before:?}, after {after:?}");
        // And it answers a fresh round, on those workers.
        let fresh: Vec<_> = (0..200).map(|i| (i, worker_pid(i))).collect();
        for (i, handle) in fresh {
            let (v, pid) = handle.result();
            assert_eq!(v, value(i));
            assert!(
                after.contains(&(pid as i32)),
                "answered by {pid}, not in {after:?}"
            );
        }
        assert_eq!(live_workers(), after, "the fresh round cost no worker");
    });
}
