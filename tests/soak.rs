//! Soak: minutes of mixed load in all four modes (async, blocking pool, rayon, worker
//! processes), with random panics, cancels, timeouts and worker crashes from a seeded
//! generator.
//!
//! What it proves: over a long run, every outcome is the one expected for what the task did
//! (its value, its panic message, `Cancelled`, `TimedOut`, `WorkerDied`; a cancel that races
//! a quick task gives the value exactly when `cancel()` said it came too late), and the
//! process does not leak: resident memory (`VmRSS`) and open fds, sampled after a warm-up
//! and at the end with the pool at its full size, stay flat.
//!
//! Ignored by default (it runs ten minutes): `cargo test -- --ignored soak`;
//! `UNSYNC_SOAK_SECS` sets the duration (e.g. 60), `UNSYNC_TEST_SEED` the seed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use unsync::{Config, Error, Unfinished, unsync};

mod common;
use common::{Rng, watchdog};

const PROCESSES: usize = 2;
/// Tasks per round; a round is submitted, then read.
const ROUND: usize = 1_000;

fn value(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x50a4
}

fn boom(i: u64) -> String {
    format!("soak boom {i}")
}

/// Keep the deliberate panics off stderr (thousands of them); any other panic is printed as
/// usual. In each process that runs tasks: this one and every worker.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !message.starts_with("soak boom") {
                default(info);
            }
        }));
    });
}

// Quick tasks: a value or a panic.

#[unsync]
async fn quick_async(i: u64, fail: bool) -> u64 {
    if fail {
        panic!("{}", boom(i));
    }
    value(i)
}

#[unsync]
fn quick_thread(i: u64, fail: bool) -> u64 {
    if fail {
        panic!("{}", boom(i));
    }
    value(i)
}

#[unsync(parallel)]
fn quick_parallel(i: u64, fail: bool) -> u64 {
    if fail {
        panic!("{}", boom(i));
    }
    value(i)
}

#[unsync(cpu_bound)]
fn quick_process(i: u64, fail: bool) -> u64 {
    quiet_panics();
    if fail {
        panic!("{}", boom(i));
    }
    value(i)
}

// Tasks that never finish on their own: only a cancel or a timeout ends them.

#[unsync]
async fn forever_async() -> u64 {
    std::future::pending::<()>().await;
    unreachable!()
}

#[unsync]
fn forever_thread() -> u64 {
    while !unsync::is_cancelled() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    0
}

#[unsync(parallel)]
fn forever_parallel() -> u64 {
    while !unsync::is_cancelled() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    0
}

#[unsync(cpu_bound)]
fn forever_process() -> u64 {
    loop {
        std::hint::spin_loop();
    }
}

#[unsync(cpu_bound)]
fn crash_process() -> u64 {
    std::process::abort()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Async,
    Thread,
    Parallel,
    Process,
}

const MODES: [Mode; 4] = [Mode::Async, Mode::Thread, Mode::Parallel, Mode::Process];

fn quick(mode: Mode, i: u64, fail: bool) -> Unfinished<u64> {
    match mode {
        Mode::Async => quick_async(i, fail),
        Mode::Thread => quick_thread(i, fail),
        Mode::Parallel => quick_parallel(i, fail),
        Mode::Process => quick_process(i, fail),
    }
}

fn forever(mode: Mode) -> Unfinished<u64> {
    match mode {
        Mode::Async => forever_async(),
        Mode::Thread => forever_thread(),
        Mode::Parallel => forever_parallel(),
        Mode::Process => forever_process(),
    }
}

/// What an outcome must be.
#[derive(Debug)]
enum Expect {
    Value(u64),
    Panic(String),
    Cancelled,
    TimedOut(Duration),
    Died,
}

/// Start one random task; its outcome as a value, and what it must be.
fn start(rng: &mut Rng, mode: Mode, i: u64) -> (Unfinished<Result<u64, Error>>, Expect) {
    let roll = rng.next() % 1000;
    // Worker processes pay a restart for each cancel, timeout or crash of a running call:
    // those are rarer there (0.2% each instead of 1%).
    let cheap = mode != Mode::Process;
    match roll {
        0..20 => (quick(mode, i, true).catch(), Expect::Panic(boom(i))),
        20..30 if cheap || roll < 22 => {
            let h = forever(mode);
            assert!(h.cancel(), "a task that never ends was already done");
            (h.catch(), Expect::Cancelled)
        }
        30..40 if cheap || roll < 32 => {
            let after = Duration::from_millis(1 + rng.next() % 5);
            (forever(mode).timeout(after), Expect::TimedOut(after))
        }
        40..50 => {
            // A cancel racing a quick task: too late exactly when `cancel` says so.
            let h = quick(mode, i, false);
            let expect = if h.cancel() {
                Expect::Cancelled
            } else {
                Expect::Value(value(i))
            };
            (h.catch(), expect)
        }
        50..60 => (
            quick(mode, i, false).timeout(Duration::from_secs(120)),
            Expect::Value(value(i)),
        ),
        60..62 if mode == Mode::Process => (crash_process().catch(), Expect::Died),
        _ => (quick(mode, i, false).catch(), Expect::Value(value(i))),
    }
}

fn check(outcome: Result<u64, Error>, expect: &Expect, mode: Mode, i: u64) -> &'static str {
    let fail = || panic!("{mode:?} task {i}: expected {expect:?}, got {outcome:?}");
    match (&outcome, expect) {
        (Ok(v), Expect::Value(want)) if v == want => "value",
        (Err(Error::Panicked { message, .. }), Expect::Panic(want)) if message == want => "panic",
        (Err(Error::Cancelled { .. }), Expect::Cancelled) => "cancelled",
        (Err(Error::TimedOut { after, .. }), Expect::TimedOut(want)) if after == want => {
            "timed out"
        }
        (Err(Error::WorkerDied { detail, .. }), Expect::Died) if detail.contains("SIGABRT") => {
            "worker died"
        }
        _ => fail(),
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// This process's children (the worker processes, of every thread: the pool's supervisor
/// starts them), and how many of them are alive (not zombies waiting to be reaped).
fn children() -> (usize, usize) {
    let (mut all, mut live) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(list) = std::fs::read_to_string(task.unwrap().path().join("children")) else {
            continue;
        };
        for pid in list.split_whitespace() {
            all += 1;
            live += usize::from(
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    !stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z'))
                }),
            );
        }
    }
    (all, live)
}

/// A sample taken when nothing is in flight and the pool is at full size (so its pipes are
/// all open, none half-replaced).
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn quiet_sample() -> Sample {
    // Readings are taken between round trips to every worker, with the pool at full size and
    // no dead worker left unreaped; the fewest fds of several readings is kept, so that a
    // reading that caught a worker being replaced (its pipes and eventfd still open, or a
    // new one's already open) does not count. A leak raises every reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fds = None;
    let mut readings = 0;
    while readings < 10 {
        for i in 0..(4 * PROCESSES as u64) {
            assert_eq!(quick_process(i, false).result(), value(i));
        }
        if children() == (PROCESSES, PROCESSES) {
            let now = open_fds();
            fds = Some(fds.map_or(now, |f: usize| f.min(now)));
            readings += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "the pool is not back at full size: (children, live) = {:?}",
                children()
            );
            // Polling a condition under a deadline: a replaced worker is being started.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Sample {
        rss_kib: rss_kib(),
        fds: fds.expect("ten readings"),
        threads: threads(),
    }
}

#[test]
#[ignore = "runs for minutes: cargo test -- --ignored soak"]
fn soak_mixed_load_in_all_four_modes() {
    Config::new().processes(PROCESSES).install().unwrap();
    quiet_panics();
    let secs: u64 = std::env::var("UNSYNC_SOAK_SECS")
        .ok()
        .map(|s| s.parse().expect("UNSYNC_SOAK_SECS: seconds"))
        .unwrap_or(600);
    let seed: u64 = std::env::var("UNSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x50a4);
    let duration = Duration::from_secs(secs);
    let warm_up = (duration / 10).clamp(Duration::from_secs(2), Duration::from_secs(60));
    // A deadlock detector: a round takes well under a second.
    watchdog(duration + Duration::from_secs(180), move || {
        eprintln!("soak: {secs} s, warm-up {warm_up:?}, seed {seed} (UNSYNC_TEST_SEED replays)");
        let mut rng = Rng::seeded(seed);
        let started = Instant::now();
        let mut counts: BTreeMap<(Mode, &'static str), u64> = BTreeMap::new();
        let mut warm: Option<Sample> = None;
        let mut rounds = 0_u64;
        let mut next = 0_u64;
        let mut next_report = duration / 10;
        while started.elapsed() < duration {
            let round: Vec<_> = (0..ROUND)
                .map(|_| {
                    let mode = MODES[(rng.next() % 4) as usize];
                    next += 1;
                    let (handle, expect) = start(&mut rng, mode, next);
                    (mode, next, handle, expect)
                })
                .collect();
            let by_await = rng.chance(50);
            for (mode, i, handle, expect) in round {
                let outcome = if by_await {
                    futures::executor::block_on(handle)
                } else {
                    handle.result()
                };
                *counts
                    .entry((mode, check(outcome, &expect, mode, i)))
                    .or_default() += 1;
            }
            rounds += 1;
            if started.elapsed() >= next_report {
                next_report += duration / 10;
                eprintln!(
                    "soak: {:>4.0} s: {next} tasks, RSS {} KiB, {} fds, {} threads",
                    started.elapsed().as_secs_f64(),
                    rss_kib(),
                    open_fds(),
                    threads()
                );
            }
            if warm.is_none() && started.elapsed() >= warm_up {
                let sample = quiet_sample();
                eprintln!("soak: after warm-up ({rounds} rounds): {sample:?}");
                warm = Some(sample);
            }
        }
        let end = quiet_sample();
        let warm = warm.expect("the run is longer than its warm-up");
        let elapsed = started.elapsed();
        eprintln!(
            "soak: {rounds} rounds, {next} tasks in {:.1} s ({:.0} tasks/s)",
            elapsed.as_secs_f64(),
            next as f64 / elapsed.as_secs_f64()
        );
        for ((mode, what), n) in &counts {
            eprintln!("soak:   {mode:?} {what}: {n}");
        }
        eprintln!("soak: at the end: {end:?}");
        eprintln!(
            "soak: RSS {} KiB -> {} KiB ({:+.1}%), fds {} -> {}, threads {} -> {}",
            warm.rss_kib,
            end.rss_kib,
            (end.rss_kib as f64 / warm.rss_kib as f64 - 1.0) * 100.0,
            warm.fds,
            end.fds,
            warm.threads,
            end.threads
        );
        // Every kind of outcome happened, in every mode it can.
        for mode in MODES {
            for what in ["value", "panic", "cancelled", "timed out"] {
                assert!(
                    counts.contains_key(&(mode, what)),
                    "no {mode:?} task ended with {what} in {rounds} rounds"
                );
            }
        }
        assert!(counts.contains_key(&(Mode::Process, "worker died")));
        // Flat: allocator and thread-stack noise allowed (20% + 8 MiB); a leak of a few
        // hundred bytes per task would be over a gigabyte at these counts.
        assert!(
            end.rss_kib <= warm.rss_kib + warm.rss_kib / 5 + 8 * 1024,
            "RSS grew from {} KiB to {} KiB",
            warm.rss_kib,
            end.rss_kib
        );
        // Both samples are taken with the pool at full size, so the workers' pipes are the
        // same number; a little slack for fds the runtime may open lazily.
        assert!(
            end.fds.abs_diff(warm.fds) <= 3,
            "open fds went from {} to {}",
            warm.fds,
            end.fds
        );
    });
}
