//! `shutdown`: waits for the tasks in flight in every mode, counts those still running when
//! time is up, never panics from async code, does not wait for its own caller, and leaves the
//! executors usable.
//!
//! `shutdown` counts every task of the process, so the tests of this file run one at a time.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use unsync::{Unfinished, unsync};

mod common;
use common::{LIMIT, MODES, gated, watchdog};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a shutdown that must not wait on anything should be given: long enough that waiting
/// for it would be a visible failure (the test would take that long), short enough not to hang.
const NOTHING_TO_WAIT_FOR: Duration = Duration::from_secs(20);

#[test]
fn waits_for_tasks_in_flight_and_counts_those_still_running() {
    let _serial = serial();
    watchdog(LIMIT, || {
        assert_eq!(
            unsync::shutdown(LIMIT),
            0,
            "nothing else runs in this binary"
        );
        let (gates, handles): (Vec<_>, Vec<_>) = MODES
            .iter()
            .flat_map(|&mode| [gated(mode, 1_u32), gated(mode, 2_u32)])
            .unzip();
        let derived = handles[0].clone().map(|n| n + 1);

        // Time is up before any of them could finish: all still running, the task behind
        // `map` included.
        let patience = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(unsync::shutdown(patience), 7);
        assert!(start.elapsed() >= patience);

        // Released, they finish while shutdown waits: nothing left.
        for gate in gates {
            gate.set(());
        }
        assert_eq!(unsync::shutdown(LIMIT), 0);
        assert!(handles.iter().all(Unfinished::is_done));
        assert_eq!(derived.result(), 2);
        assert_eq!(handles.into_iter().map(Unfinished::result).sum::<u32>(), 9);
    });
}

#[test]
fn tasks_start_again_after_shutdown() {
    let _serial = serial();
    watchdog(LIMIT, || {
        assert_eq!(unsync::shutdown(LIMIT), 0);
        for mode in MODES {
            let (gate, handle) = gated(mode, mode);
            gate.set(());
            assert_eq!(handle.result(), mode);
        }
        assert_eq!(unsync::shutdown(LIMIT), 0);
    });
}

#[unsync]
async fn shutdown_in_async_fn() -> usize {
    unsync::shutdown(NOTHING_TO_WAIT_FOR)
}

#[unsync]
fn shutdown_in_thread_fn() -> usize {
    unsync::shutdown(NOTHING_TO_WAIT_FOR)
}

#[unsync(parallel)]
fn shutdown_in_parallel_fn() -> usize {
    unsync::shutdown(NOTHING_TO_WAIT_FOR)
}

#[test]
fn from_inside_tasks_it_does_not_wait_for_the_caller() {
    let _serial = serial();
    watchdog(LIMIT, || {
        assert_eq!(shutdown_in_async_fn().result(), 0);
        assert_eq!(shutdown_in_thread_fn().result(), 0);
        assert_eq!(shutdown_in_parallel_fn().result(), 0);
        // Tasks waiting on the caller from other threads do count: they are still running.
        let parent = unsync::spawn_blocking(|| {
            let child = unsync::spawn_blocking(|| unsync::shutdown(Duration::from_millis(10)));
            child.result()
        });
        assert_eq!(parent.result(), 1);
    });
}

#[test]
fn from_async_code_it_blocks_without_panicking() {
    let _serial = serial();
    watchdog(LIMIT, || {
        let (gate, task) = gated(common::Mode::Thread, ());
        let release = std::thread::spawn(move || gate.set(()));
        // A multi-threaded runtime's task: waits through block_in_place.
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let in_task = multi.block_on(async {
            tokio::spawn(async { unsync::shutdown(LIMIT) })
                .await
                .unwrap()
        });
        assert_eq!(in_task, 0);
        release.join().unwrap();
        task.result();
        // A current-thread runtime, and futures' executor: block their thread.
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (gate, task) = gated(common::Mode::Async, ());
        let counted = current.block_on(async move {
            let still = unsync::shutdown(Duration::from_millis(10));
            gate.set(());
            (still, unsync::shutdown(LIMIT))
        });
        assert_eq!(counted, (1, 0));
        task.result();
        assert_eq!(
            futures::executor::block_on(async { unsync::shutdown(LIMIT) }),
            0
        );
    });
}
