//! Configuration from the environment. Configuration is process-wide and fixed once, so each
//! scenario runs in a child process of its own, started with only the `UNSYNC_*` variables it
//! is about: the invalid-value rules in order, then each valid variable alone taking effect.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use unsync::{Config, ConfigError, unsync};

mod common;
use common::{LIMIT, live_children, run_child_test_with_env, watchdog};

#[test]
fn environment_variables_are_checked_then_builder_wins() {
    run_child_test_with_env("child_checks_then_builder_wins", &[]);
}

#[test]
#[ignore = "run by environment_variables_are_checked_then_builder_wins"]
fn child_checks_then_builder_wins() {
    // SAFETY: this runs alone in its child process (one test, `--test-threads=1`), and nothing
    // else reads the environment while it runs (no unsync executor has started yet).
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "two") };

    // install names the variable and the bad value...
    let err = Config::new().install().unwrap_err();
    assert_eq!(
        err,
        ConfigError::InvalidEnv {
            var: "UNSYNC_PARALLEL_THREADS",
            value: "two".into(),
            reason: "expected a positive integer",
        }
    );
    // ...even when the builder overrides that setting: a typo never passes unnoticed.
    assert!(Config::new().parallel_threads(2).install().is_err());

    // Starting lazily with the bad variable panics with the same message.
    let panic = std::panic::catch_unwind(|| unsync::spawn_parallel(|| 1).result()).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("UNSYNC_PARALLEL_THREADS=\"two\" is invalid"),
        "{message}"
    );

    // The spin limit may be zero (never spin), but not words.
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "2") };
    unsafe { std::env::set_var("UNSYNC_SPIN_MICROS", "soon") };
    assert_eq!(
        Config::new().install().unwrap_err(),
        ConfigError::InvalidEnv {
            var: "UNSYNC_SPIN_MICROS",
            value: "soon".into(),
            reason: "expected a number of microseconds",
        }
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_SPIN_MICROS", "0") };

    // A good environment plus the builder: the builder's value wins.
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "5") };
    Config::new().parallel_threads(3).install().unwrap();
    assert_eq!(
        unsync::spawn_parallel(rayon::current_num_threads).result(),
        3
    );
    assert_eq!(
        Config::new().install().unwrap_err(),
        ConfigError::AlreadyStarted
    );
}

/// A thread count no default can produce here: one more than this machine's cores (the default
/// for the runtime and the rayon pool), so a variable that was ignored shows.
fn more_than_the_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 1
}

/// What a child test expects to find: the value its parent set.
fn expected(var: &str) -> usize {
    std::env::var(var).unwrap().parse().unwrap()
}

#[test]
fn unsync_parallel_threads_alone_sizes_the_rayon_pool() {
    let n = more_than_the_cores().to_string();
    run_child_test_with_env(
        "child_parallel_threads_from_env",
        &[("UNSYNC_PARALLEL_THREADS", &n)],
    );
}

#[unsync(parallel)]
fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

#[test]
#[ignore = "run by unsync_parallel_threads_alone_sizes_the_rayon_pool"]
fn child_parallel_threads_from_env() {
    let n = expected("UNSYNC_PARALLEL_THREADS");
    watchdog(LIMIT, move || {
        assert_eq!(rayon_threads().result(), n);
        assert_eq!(
            unsync::spawn_parallel(rayon::current_num_threads).result(),
            n
        );
    });
}

#[test]
fn unsync_runtime_threads_alone_sizes_the_runtime() {
    let n = more_than_the_cores().to_string();
    run_child_test_with_env(
        "child_runtime_threads_from_env",
        &[("UNSYNC_RUNTIME_THREADS", &n)],
    );
}

#[unsync]
async fn runtime_workers() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

#[test]
#[ignore = "run by unsync_runtime_threads_alone_sizes_the_runtime"]
fn child_runtime_threads_from_env() {
    let n = expected("UNSYNC_RUNTIME_THREADS");
    watchdog(LIMIT, move || {
        assert_eq!(runtime_workers().result(), n);
        assert_eq!(unsync::runtime().metrics().num_workers(), n);
    });
}

/// The blocking pool's limit: at most this many blocking tasks run at once.
const BLOCKING_THREADS: usize = 2;

#[test]
fn unsync_blocking_threads_alone_caps_the_blocking_pool() {
    run_child_test_with_env(
        "child_blocking_threads_from_env",
        &[("UNSYNC_BLOCKING_THREADS", &BLOCKING_THREADS.to_string())],
    );
}

/// Blocking tasks that count how many of them run at once, and hold their thread until the
/// test hands out permits to finish.
#[derive(Default)]
struct Occupancy {
    running: usize,
    peak: usize,
    permits: usize,
}

#[test]
#[ignore = "run by unsync_blocking_threads_alone_caps_the_blocking_pool"]
fn child_blocking_threads_from_env() {
    const TASKS: usize = 6;
    watchdog(LIMIT, || {
        let shared = Arc::new((Mutex::new(Occupancy::default()), Condvar::new()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let shared = shared.clone();
                unsync::spawn_blocking(move || {
                    let (state, changed) = &*shared;
                    let mut state = state.lock().unwrap();
                    state.running += 1;
                    state.peak = state.peak.max(state.running);
                    changed.notify_all();
                    // Blocked (not on an unsync handle) until a permit comes: to the pool,
                    // a thread stuck in a blocking call, the case it grows for.
                    let (mut state, waited) = changed
                        .wait_timeout_while(state, LIMIT, |s| s.permits == 0)
                        .unwrap();
                    assert!(!waited.timed_out(), "task {i} never got a permit");
                    state.permits -= 1;
                    state.running -= 1;
                    i
                })
            })
            .collect();

        let (state, changed) = &*shared;
        // The pool grows up to the limit: that many tasks run...
        let (guard, waited) = changed
            .wait_timeout_while(state.lock().unwrap(), LIMIT, |s| {
                s.running < BLOCKING_THREADS
            })
            .unwrap();
        assert!(!waited.timed_out(), "the pool never reached its limit");
        // ...and no more, although every thread is blocked and tasks wait. Uncapped, the pool
        // would add a thread within a tick of its monitor (1 ms); half a second is hundreds of
        // ticks, even on a loaded machine. (Only a wait can show that something does not
        // happen; it cannot make this test pass wrongly, only miss a late extra thread.)
        let (mut guard, _) = changed
            .wait_timeout_while(guard, Duration::from_millis(500), |s| {
                s.running <= BLOCKING_THREADS
            })
            .unwrap();
        assert_eq!(guard.running, BLOCKING_THREADS, "the cap was exceeded");

        // Let every task finish: the waiting ones start as threads free up, never more at once.
        guard.permits = TASKS;
        changed.notify_all();
        drop(guard);
        let done: Vec<usize> = tasks.into_iter().map(|t| t.result()).collect();
        assert_eq!(done, (0..TASKS).collect::<Vec<_>>());
        assert_eq!(state.lock().unwrap().peak, BLOCKING_THREADS);
    });
}

#[test]
fn unsync_processes_alone_sizes_the_worker_pool() {
    run_child_test_with_env("child_processes_from_env", &[("UNSYNC_PROCESSES", "1")]);
}

/// Its worker's pid, after keeping that worker busy for `busy_ms`.
#[unsync(cpu_bound)]
fn busy_pid(busy_ms: u64) -> u32 {
    let until = Instant::now() + Duration::from_millis(busy_ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

#[test]
#[ignore = "run by unsync_processes_alone_sizes_the_worker_pool"]
fn child_processes_from_env() {
    watchdog(LIMIT, || {
        // Four calls at once, each busy long enough that a second worker, if there were one,
        // would take some of them: with one worker, the same pid answers all four.
        let calls: Vec<_> = (0..4).map(|_| busy_pid(50)).collect();
        let pids: Vec<u32> = calls.into_iter().map(|c| c.result()).collect();
        assert_ne!(pids[0], std::process::id());
        assert_eq!(pids, [pids[0]; 4], "the calls ran in several workers");
        // And the pool holds exactly one worker process.
        assert_eq!(live_children(), [pids[0]]);
    });
}
