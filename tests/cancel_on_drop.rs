//! `Unfinished::cancel_on_drop`: when the last handle to a task is dropped before it finished,
//! the task is cancelled as by `cancel()`, in every mode; without it, or once the value was read,
//! dropping cancels nothing.

use std::sync::mpsc;
use std::time::Duration;

use unsync::{Error, Unfinished, unsync};

mod common;
use common::{
    LIMIT, MODES, Mode, PidReports, gated, report_pid, until_cancelled, wait_for_close,
    wait_until_gone, watchdog,
};

/// Reports its worker's pid to `addr` (keeping the connection open), then spins until killed.
#[unsync(cpu_bound)]
fn spins_reporting(addr: String) -> u32 {
    let _connection = report_pid(&addr);
    loop {
        std::hint::spin_loop();
    }
}

#[unsync(cpu_bound)]
fn double(n: u64) -> u64 {
    n * 2
}

/// A running task in `mode`, made `cancel_on_drop`, and the channel that tells when it stopped.
fn running(mode: Mode) -> (Unfinished<u32>, mpsc::Receiver<()>) {
    let (started, has_started) = mpsc::channel();
    let (stopped, has_stopped) = mpsc::channel();
    let handle = until_cancelled(mode, started, stopped).cancel_on_drop();
    has_started.recv_timeout(LIMIT).expect("the task started");
    (handle, has_stopped)
}

#[test]
fn dropping_the_last_handle_cancels_a_running_task_in_every_mode() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (handle, has_stopped) = running(mode);
            drop(handle);
            // An async task is dropped at its `.await`; a thread or rayon task sees
            // `is_cancelled()` and returns. Either way it ends without anyone reading it.
            has_stopped
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{mode:?}: the task was not cancelled"));
        });
    }
}

#[test]
fn a_clone_keeps_the_task_until_it_too_is_dropped() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (handle, has_stopped) = running(mode);
            let clone = handle.clone();
            drop(handle);
            assert!(!clone.is_done(), "{mode:?}: a clone still reads the task");
            assert_eq!(
                has_stopped.try_recv(),
                Err(mpsc::TryRecvError::Empty),
                "{mode:?}"
            );
            drop(clone);
            has_stopped
                .recv_timeout(LIMIT)
                .expect("cancelled with the last clone");
        });
    }
}

#[test]
fn a_caught_handle_cancels_on_drop_too() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (handle, has_stopped) = running(mode);
            drop(handle.catch());
            has_stopped
                .recv_timeout(LIMIT)
                .expect("cancelled with the caught handle");
        });
    }
}

/// A derived handle owns its input: dropping it cancels the derived task, which cancels the
/// input it still waits on.
#[test]
fn dropping_a_derived_handle_cancels_its_input() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (started, has_started) = mpsc::channel();
            let (stopped, has_stopped) = mpsc::channel();
            let derived = until_cancelled(mode, started, stopped)
                .map(|n| n + 1)
                .cancel_on_drop();
            has_started.recv_timeout(LIMIT).expect("the input started");
            drop(derived);
            has_stopped
                .recv_timeout(LIMIT)
                .expect("the input was cancelled");
        });
    }
}

/// Without `cancel_on_drop`, dropping is not cancelling (as in Python): the task runs to its end
/// and does not see `is_cancelled()`.
#[test]
fn without_it_dropping_cancels_nothing() {
    #[unsync]
    fn reports_cancelled(gate: Unfinished<()>, seen: mpsc::Sender<bool>) {
        gate.result();
        seen.send(unsync::is_cancelled()).unwrap();
    }
    watchdog(LIMIT, || {
        let (open, gate) = unsync::promise();
        let (seen, cancelled) = mpsc::channel();
        drop(reports_cancelled(gate, seen));
        open.set(());
        assert_eq!(cancelled.recv_timeout(LIMIT), Ok(false));
    });
}

/// Reading the value, or the task finishing before the drop, cancels nothing.
#[test]
fn a_finished_or_read_task_is_not_cancelled() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (open, handle) = gated(mode, 7_u32);
            let handle = handle.cancel_on_drop();
            let clone = handle.clone();
            open.set(());
            assert_eq!(handle.result(), 7);
            assert!(clone.is_done());
            assert!(!clone.cancel(), "{mode:?}: finished, so nothing to cancel");
            assert_eq!(clone.catch().result(), Ok(7));
        });
    }
}

#[test]
fn a_cpu_bound_call_loses_its_worker_when_its_last_handle_is_dropped() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let handle = spins_reporting(reports.addr()).cancel_on_drop();
        let (pid, connection) = reports.next();
        drop(handle);
        // The worker's end of the connection closes only when the process dies: it spins
        // forever otherwise.
        wait_for_close(connection);
        assert!(
            wait_until_gone(pid, LIMIT).is_some(),
            "worker {pid} was killed and reaped"
        );
        // The pool replaced it.
        assert_eq!(double(21).result(), 42);
    });
}

/// The axum pattern: a request handler's future awaits the call; the server drops the future
/// when the client disconnects, and the call stops with it.
#[test]
fn dropping_the_future_awaiting_the_handle_cancels_the_call() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let addr = reports.addr();
        let handler = async move { spins_reporting(addr).cancel_on_drop().await };
        let request = unsync::spawn(handler);
        let (pid, connection) = reports.next();
        assert!(request.cancel(), "the request is still running");
        wait_for_close(connection);
        assert!(wait_until_gone(pid, LIMIT).is_some());
        assert_eq!(
            request.catch().result(),
            Err(Error::Cancelled { task: "spawn" })
        );
    });
}

#[test]
fn detach_lets_the_task_run_on() {
    watchdog(LIMIT, || {
        let (done, finished) = mpsc::channel();
        unsync::spawn_blocking(move || done.send(()).unwrap()).detach();
        finished.recv_timeout(LIMIT).expect("a detached task runs");
        assert_eq!(unsync::shutdown(Duration::from_secs(60)), 0);
    });
}
