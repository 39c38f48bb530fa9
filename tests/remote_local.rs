//! `#[unsync(remote)]` without a cluster: with `UNSYNC_REMOTE` unset a call runs in this
//! machine's worker processes, as `cpu_bound`; set but built without the `remote` feature, the
//! call fails naming the feature; set to a server nobody listens on, the call fails within the
//! connect timeout. Each runs in a child process, whose environment fixes the settings.

mod common;

use common::{LIMIT, run_child_test_with_env, watchdog};
use unsync::{Error, unsync};

#[unsync(remote, retries = 1, timeout = "10s")]
fn where_am_i(n: u32) -> (u32, u32) {
    (n + 1, std::process::id())
}

#[test]
fn without_a_cluster_a_call_runs_in_a_local_worker_process() {
    run_child_test_with_env("child_runs_locally", &[]);
}

#[test]
#[ignore = "run by without_a_cluster_a_call_runs_in_a_local_worker_process"]
fn child_runs_locally() {
    let (value, pid) = watchdog(LIMIT, || where_am_i(41).result());
    assert_eq!(value, 42);
    assert_ne!(pid, std::process::id(), "it ran in a worker process");
    assert_eq!(unsync::stats().mode(unsync::Mode::Process).submitted, 1);
    assert_eq!(unsync::stats().mode(unsync::Mode::Remote).submitted, 0);
}

#[test]
fn a_cluster_that_cannot_be_used_fails_the_call_with_a_remote_error() {
    // Port 1 on loopback: nothing listens there.
    run_child_test_with_env(
        "child_fails_remotely",
        &[("UNSYNC_REMOTE", "temporal://127.0.0.1:1/default")],
    );
}

#[test]
#[ignore = "run by a_cluster_that_cannot_be_used_fails_the_call_with_a_remote_error"]
fn child_fails_remotely() {
    let started = std::time::Instant::now();
    let error = watchdog(LIMIT, || where_am_i(1).catch().result()).unwrap_err();
    let Error::Remote { task, detail } = &error else {
        panic!("expected Error::Remote, got {error:?}");
    };
    assert_eq!(*task, "remote_local::where_am_i");
    if cfg!(feature = "remote") {
        assert!(
            detail.contains("cannot reach the Temporal server at temporal://127.0.0.1:1/default"),
            "{detail}"
        );
        // Bounded by the connect timeout (10 s by default), never a hang.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    } else {
        assert!(
            detail.contains("built without unsync's `remote` feature"),
            "{detail}"
        );
    }
    assert_eq!(unsync::stats().mode(unsync::Mode::Remote).failed, 1);
}

#[test]
fn an_invalid_heartbeat_variable_is_an_error_not_ignored() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_with_a_bad_heartbeat",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("UNSYNC_REMOTE_HEARTBEAT_MILLIS", "soon")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("environment variable UNSYNC_REMOTE_HEARTBEAT_MILLIS=\"soon\" is invalid: expected a positive number of milliseconds"),
        "{stderr}"
    );
}

#[test]
#[ignore = "run by an_invalid_heartbeat_variable_is_an_error_not_ignored"]
fn child_with_a_bad_heartbeat() {
    let _ = where_am_i(1).result();
}
