//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

/// Run `body` on its own thread and fail the test, instead of hanging CI, if it has not
/// returned within `limit`. The limit is a deadlock detector, not a performance bound: it is
/// many times what the body needs on a loaded 2-core machine.
pub fn watchdog<T: Send + 'static>(
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("watched".into())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => {
            worker.join().unwrap();
            value
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("deadlock: the test body did not finish within {limit:?}"),
    }
}

pub const LIMIT: Duration = Duration::from_secs(60);
