//! `unsync::stats()`: per mode, submitted = succeeded + failed + cancelled once a mix of
//! successes, panics, cancellations and timeouts has ended; queued and running while tasks are
//! held; the process pool's workers started and died; a `cpu_bound` stream as one task. (A
//! binary of its own, its tests run one at a time: the figures are process-wide, and each test
//! asserts on the change it made.)

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use unsync::{Config, ConfigError, Error, Mode as StatsMode, ModeStats, unsync};

mod common;
use common::{LIMIT, MODES, Mode, PidReports, gated, gated_panic, report_pid, until_cancelled};

#[unsync(cpu_bound)]
fn pid() -> u32 {
    std::process::id()
}

#[unsync(cpu_bound)]
fn fails(message: String) -> u32 {
    panic!("{message}")
}

/// Reports its worker's pid to `addr`, then spins until killed.
#[unsync(cpu_bound)]
fn spins_reporting(addr: String) -> u32 {
    let _connection = report_pid(&addr);
    loop {
        std::hint::spin_loop();
    }
}

/// `n` numbers, then a panic if `fail`, from a worker process.
#[unsync(cpu_bound)]
fn numbers(n: u64, fail: bool) -> impl Iterator<Item = u64> {
    (0..=n).map(move |i| {
        if i == n && fail {
            panic!("after {n}")
        } else {
            i
        }
    })
}

/// Numbers forever, from a worker process.
#[unsync(cpu_bound)]
fn endless_numbers() -> impl Iterator<Item = u64> {
    0..
}

#[unsync(parallel)]
fn held_parallel(release: mpsc::Receiver<()>, started: mpsc::Sender<()>) -> u32 {
    started.send(()).unwrap();
    let _ = release.recv();
    1
}

/// One thread in each pool, one worker process (once per binary), and the calling test alone.
fn alone() -> MutexGuard<'static, ()> {
    static INSTALL: Once = Once::new();
    static ALONE: Mutex<()> = Mutex::new(());
    INSTALL.call_once(|| {
        match Config::new()
            .processes(1)
            .blocking_threads(1)
            .parallel_threads(1)
            .install()
        {
            Ok(()) | Err(ConfigError::AlreadyStarted) => {}
            Err(e) => panic!("cannot configure: {e}"),
        }
    });
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stats_mode(mode: Mode) -> StatsMode {
    match mode {
        Mode::Async => StatsMode::Async,
        Mode::Thread => StatsMode::Thread,
        Mode::Parallel => StatsMode::Parallel,
    }
}

/// `(submitted, succeeded, failed, cancelled)` added since `before`.
fn delta(before: &ModeStats, after: &ModeStats) -> (u64, u64, u64, u64) {
    (
        after.submitted - before.submitted,
        after.succeeded - before.succeeded,
        after.failed - before.failed,
        after.cancelled - before.cancelled,
    )
}

/// Wait until `mode`'s figures since `before` are `expected` and nothing is in flight. A task's
/// handle resolves a moment before its executor counts its end, hence the wait (a deadline, not
/// a synchronisation: the figures are polled).
fn settle(mode: StatsMode, before: &ModeStats, expected: (u64, u64, u64, u64)) -> ModeStats {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = unsync::stats().mode(mode).clone();
        if delta(before, &now) == expected && now.queued == 0 && now.running == 0 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: expected (submitted, succeeded, failed, cancelled) {expected:?} since the \
             test began, got {:?}\n{}",
            delta(before, &now),
            unsync::stats()
        );
        std::thread::yield_now();
    }
}

/// `mode`'s figures once nothing is in flight there (the tasks of the test before may have
/// resolved their handles a moment before their ends were counted).
fn quiet(mode: StatsMode) -> ModeStats {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = unsync::stats().mode(mode).clone();
        if now.queued == 0 && now.running == 0 {
            return now;
        }
        assert!(Instant::now() < deadline, "{}", unsync::stats());
        std::thread::yield_now();
    }
}

#[test]
fn before_any_task_everything_is_zero_or_consistent() {
    // Callable at any time; Display shows every mode and the workers.
    let stats = unsync::stats();
    let table = stats.to_string();
    for mode in StatsMode::ALL {
        assert!(table.contains(mode.name()), "{table}");
    }
    assert!(table.contains("workers:"), "{table}");
}

#[test]
fn the_invariant_holds_in_the_in_process_modes() {
    let _alone = alone();
    common::watchdog(LIMIT, || {
        for mode in MODES {
            let before = quiet(stats_mode(mode));
            // A success.
            let (open, ok) = gated(mode, 7_u32);
            open.set(());
            assert_eq!(ok.result(), 7);
            // A panic.
            let (open, panics) = gated_panic(mode, "on purpose");
            open.set(());
            assert!(matches!(
                panics.catch().result(),
                Err(Error::Panicked { .. })
            ));
            // A cancellation of a running task.
            let (started, started_rx) = mpsc::channel();
            let (stopped, stopped_rx) = mpsc::channel();
            let running = until_cancelled(mode, started, stopped);
            started_rx.recv().unwrap();
            assert!(running.cancel());
            stopped_rx.recv().unwrap();
            // Timeouts: the task is stopped, and counted as failed. Read by one handle, and
            // with a clone (an async task's handle then shares a completion cell).
            for cloned in [false, true] {
                let (open, slow) = gated(mode, 1_u32);
                let clone = cloned.then(|| slow.clone());
                let timed_out = slow.timeout(Duration::from_millis(5)).result();
                assert!(matches!(timed_out, Err(Error::TimedOut { .. })));
                if let Some(clone) = clone {
                    assert!(matches!(
                        clone.catch().result(),
                        Err(Error::TimedOut { .. })
                    ));
                }
                drop(open);
            }
            let after = settle(stats_mode(mode), &before, (5, 1, 3, 1));
            assert_eq!(
                after.submitted,
                after.succeeded + after.failed + after.cancelled,
                "{mode:?}"
            );
        }
        // One task in 8 per submitting thread is timed: 8 in a row give each mode one.
        for mode in MODES {
            for value in 0..8_u32 {
                let (open, ok) = gated(mode, value);
                open.set(());
                assert_eq!(ok.result(), value);
            }
            let after = unsync::stats().mode(stats_mode(mode)).clone();
            assert!(after.queue_wait(0.5).is_some() && after.queue_wait(0.99).is_some());
            assert!(
                after.run_time(0.5) <= after.run_time(0.99),
                "{}",
                unsync::stats()
            );
        }
    });
}

/// Queued next to running, where the pool cannot grow: rayon with one thread, and one worker
/// process. (The blocking pool grows while its threads block, so a held thread task does not
/// keep another queued for long.)
#[test]
fn queued_and_running_are_visible_while_tasks_are_held() {
    let _alone = alone();
    common::watchdog(LIMIT, || {
        let mode = StatsMode::Parallel;
        let before = quiet(mode);
        let (started, started_rx) = mpsc::channel();
        let (release_first, first_rx) = mpsc::channel();
        let (release_second, second_rx) = mpsc::channel();
        let first = held_parallel(first_rx, started.clone());
        started_rx.recv().unwrap();
        // One thread in the pool, held by `first`: the second task waits in the queue.
        let second = held_parallel(second_rx, started);
        let now = unsync::stats().mode(mode).clone();
        assert_eq!(now.running - before.running, 1, "{}", unsync::stats());
        assert_eq!(now.queued - before.queued, 1, "{}", unsync::stats());
        release_first.send(()).unwrap();
        started_rx.recv().unwrap();
        release_second.send(()).unwrap();
        assert_eq!((first.result(), second.result()), (1, 1));
        settle(mode, &before, (2, 2, 0, 0));

        // One worker process, held by a runaway call: the next call waits in the queue.
        let mode = StatsMode::Process;
        assert_ne!(pid().result(), 0);
        let before = quiet(mode);
        let reports = PidReports::bind();
        let runaway = spins_reporting(reports.addr());
        let (_worker, _connection) = reports.next();
        let waiting = pid();
        let now = unsync::stats().mode(mode).clone();
        assert_eq!(now.running - before.running, 1, "{}", unsync::stats());
        assert_eq!(now.queued - before.queued, 1, "{}", unsync::stats());
        assert!(runaway.cancel());
        assert_ne!(waiting.result(), 0);
        settle(mode, &before, (2, 1, 0, 1));
    });
}

#[test]
fn process_calls_and_workers_are_counted() {
    let _alone = alone();
    common::watchdog(LIMIT, || {
        let mode = StatsMode::Process;
        assert_ne!(pid().result(), std::process::id());
        let before = quiet(mode);
        let workers_before = unsync::stats().workers();
        assert!(workers_before.alive >= 1 && workers_before.started >= 1);
        // A success and a panic.
        assert_ne!(pid().result(), 0);
        assert!(matches!(
            fails("on purpose".into()).catch().result(),
            Err(Error::Panicked { .. })
        ));
        // A running call cancelled, and one timed out (counted as failed): the pool kills its
        // worker either way (not a death).
        for timeout in [false, true] {
            let reports = PidReports::bind();
            let runaway = spins_reporting(reports.addr());
            let (_worker, _connection) = reports.next();
            let running = unsync::stats().mode(mode).running - before.running;
            assert_eq!(running, 1, "{}", unsync::stats());
            if timeout {
                let outcome = runaway.timeout(Duration::from_millis(5)).result();
                assert!(matches!(outcome, Err(Error::TimedOut { .. })));
            } else {
                assert!(runaway.cancel());
            }
        }
        // A worker killed from outside while running a call: the call fails, the worker died.
        let reports = PidReports::bind();
        let victim = spins_reporting(reports.addr());
        let (worker, _connection) = reports.next();
        assert_eq!(kill_worker(worker), 0);
        assert!(matches!(
            victim.catch().result(),
            Err(Error::WorkerDied { .. })
        ));
        let after = settle(mode, &before, (5, 1, 3, 1));
        assert_eq!(
            after.submitted,
            after.succeeded + after.failed + after.cancelled
        );
        let deadline = Instant::now() + LIMIT;
        loop {
            let workers = unsync::stats().workers();
            if workers.died > workers_before.died {
                assert_eq!(workers.died - workers_before.died, 1, "{}", unsync::stats());
                assert!(workers.started - workers_before.started >= 2);
                break;
            }
            assert!(Instant::now() < deadline, "{}", unsync::stats());
            std::thread::yield_now();
        }
        // The pool goes on with a replacement.
        assert_ne!(pid().result(), worker);
    });
}

#[cfg(unix)]
fn kill_worker(pid: u32) -> i32 {
    let pid = i32::try_from(pid).unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_or(-1, |s| if s.success() { 0 } else { -1 })
}

/// `TerminateProcess`, as `taskkill /F` does.
#[cfg(windows)]
fn kill_worker(pid: u32) -> i32 {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};
    // SAFETY: a handle opened here, used once, then closed.
    unsafe {
        let process = OpenProcess(PROCESS_TERMINATE, 0, pid);
        if process.is_null() {
            return -1;
        }
        let killed = TerminateProcess(process, 1);
        CloseHandle(process);
        if killed != 0 { 0 } else { -1 }
    }
}

/// A `cpu_bound` stream is one process task: read to its end it succeeded, ended by a panic
/// or a timeout it failed, cancelled or dropped it was cancelled (its worker killed).
#[test]
fn process_streams_are_counted() {
    let _alone = alone();
    common::watchdog(LIMIT, || {
        let mode = StatsMode::Process;
        assert_ne!(pid().result(), std::process::id());
        let before = quiet(mode);
        assert_eq!(numbers(100, false).into_iter().count(), 101);
        let failed = numbers(3, true).catch().into_iter().last();
        assert!(
            matches!(failed, Some(Err(Error::Panicked { .. }))),
            "{failed:?}"
        );
        let cancelled = endless_numbers();
        let mut cancelled = cancelled.catch().into_iter();
        assert!(matches!(cancelled.next(), Some(Ok(0))));
        assert!(cancelled.cancel());
        assert!(matches!(
            cancelled.last(),
            Some(Err(Error::Cancelled { .. }))
        ));
        let timed_out = endless_numbers().timeout(Duration::from_millis(20)).catch();
        assert!(matches!(
            timed_out.into_iter().last(),
            Some(Err(Error::TimedOut { .. }))
        ));
        let mut dropped = endless_numbers().into_iter();
        assert_eq!(dropped.next(), Some(0));
        drop(dropped);
        let after = settle(mode, &before, (5, 1, 2, 2));
        assert_eq!(
            after.submitted,
            after.succeeded + after.failed + after.cancelled
        );
    });
}
