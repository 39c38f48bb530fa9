//! The pool's safety net: when worker processes cannot start (here they exit with status 7
//! before their handshake, as a binary whose start-up hook was lost would run `main` instead),
//! the pool gives up after three failures in a row instead of re-executing the program
//! forever, and every call fails at once with an error that says so. Once the cause is gone,
//! `shutdown` resets the pool and calls work again.
//!
//! A binary of its own: its sabotage hook must not touch other tests' workers.

use std::time::Duration;

use unsync::{Error, unsync};

mod common;
use common::{LIMIT, watchdog};

const SABOTAGE: &str = "UNSYNC_TEST_SABOTAGE_WORKERS";

/// Runs before unsync's own start-up hook (an earlier priority): in a worker of this binary,
/// while the sabotage variable is set, exit before the handshake.
#[ctor::ctor(unsafe, priority = early)]
fn sabotage() {
    if std::env::var_os("UNSYNC_WORKER").is_some() && std::env::var_os(SABOTAGE).is_some() {
        std::process::exit(7);
    }
}

#[unsync(cpu_bound)]
fn double(i: u64) -> u64 {
    i * 2
}

#[test]
fn workers_that_cannot_start_fail_calls_clearly_and_shutdown_resets_the_pool() {
    // SAFETY: this binary has this one test, and no unsync executor runs yet; nothing else
    // reads the environment meanwhile.
    unsafe { std::env::set_var(SABOTAGE, "1") };
    watchdog(LIMIT, || {
        let failed = double(1).catch().result();
        let Err(Error::WorkerDied { task, detail }) = failed else {
            panic!("expected WorkerDied, got {failed:?}");
        };
        assert_eq!(task, "start_failure::double");
        assert!(
            detail.contains("3 worker processes in a row failed to start")
                && detail.contains("exited with status 7 while starting"),
            "{detail}"
        );
        // Broken: later calls fail at once, with the same reason, and start nothing.
        let again = double(2).catch().result().unwrap_err();
        assert!(again.to_string().contains("failed to start"), "{again}");

        // SAFETY: as above; the pool's threads do not read the environment.
        unsafe { std::env::remove_var(SABOTAGE) };
        assert_eq!(unsync::shutdown(Duration::from_secs(10)), 0);
        assert_eq!(double(21).result(), 42);
    });
}
