//! How `#[unsync(remote)]` calls fail, each against a real Temporal dev server (started by
//! `scripts/test-remote.sh`) with serving processes started by the test: a crashed worker
//! process (with and without retries), a serving process killed mid-call (with and without
//! retries), cancels of a queued and of a running call, a timeout, arguments over the payload
//! limit, a worker of another build, an unreachable server, SIGTERM.

mod common;
mod remote_support;

use std::time::{Duration, Instant};

use common::{LIMIT, wait_until_gone, watchdog};
use remote_support::{HEARTBEAT, Reports, Server, report_and_wait, setup};
use unsync::{Error, unsync};

#[unsync(remote)]
fn ping() -> u32 {
    std::os::unix::process::parent_id()
}

#[unsync(remote)]
fn crash() -> u32 {
    std::process::abort()
}

/// Crashes the first time (no marker file yet), returns 7 the second.
#[unsync(remote, retries = 1)]
fn crash_once(marker: String) -> u32 {
    if std::path::Path::new(&marker).exists() {
        return 7;
    }
    std::fs::write(&marker, b"crashed once").unwrap();
    std::process::abort()
}

#[unsync(remote)]
fn held(addr: String) -> u32 {
    report_and_wait(&addr)
}

#[unsync(remote, retries = 1)]
fn held_retried(addr: String) -> u32 {
    report_and_wait(&addr)
}

#[unsync(remote, timeout = "2s")]
fn held_briefly(addr: String) -> u32 {
    report_and_wait(&addr)
}

#[unsync(remote)]
fn length(data: Vec<u8>) -> usize {
    data.len()
}

/// `signal` to process `pid`.
fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Block until `count` more remote calls were counted cancelled in `stats()` (the cancel
/// request reached the server by then).
fn wait_for_cancelled(before: u64, count: u64) {
    let deadline = Instant::now() + LIMIT;
    while unsync::stats().mode(unsync::Mode::Remote).cancelled < before + count {
        assert!(Instant::now() < deadline, "the cancel never went out");
        std::thread::park_timeout(Duration::from_millis(2));
    }
}

#[test]
fn a_crashed_worker_process_fails_the_call_with_worker_died() {
    let _serial = setup();
    let server = Server::start(1);
    let error = watchdog(LIMIT, || crash().catch().result()).unwrap_err();
    assert!(
        matches!(&error, Error::WorkerDied { task: "remote_failures::crash", detail } if detail.contains("on the remote worker")),
        "{error:?}"
    );
    // The serving process lives on, with a new worker process.
    assert_eq!(watchdog(LIMIT, || ping().result()), server.pid());
}

#[test]
fn a_crash_is_retried_when_the_function_has_retries() {
    let _serial = setup();
    let _server = Server::start(1);
    let marker = std::env::temp_dir().join(format!("unsync-crash-once-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let path = marker.to_string_lossy().into_owned();
    assert_eq!(watchdog(LIMIT, move || crash_once(path).result()), 7);
    assert!(marker.exists(), "the first attempt crashed");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn a_killed_server_s_call_completes_on_another_when_it_has_retries() {
    let _serial = setup();
    let servers = [Server::start(1), Server::start(1)];
    let reports = Reports::bind();
    let call = held_retried(reports.addr());
    let first = reports.next();
    kill(first.server, libc::SIGKILL);
    // After the heartbeat timeout, the server runs it again, on the server left.
    let second = reports.next();
    assert_ne!(second.server, first.server);
    assert!(servers.iter().any(|s| s.pid() == second.server));
    let expected = second.server;
    second.release();
    assert_eq!(watchdog(LIMIT, move || call.result()), expected);
}

#[test]
fn a_killed_server_s_call_fails_with_worker_died_without_retries() {
    let _serial = setup();
    let server = Server::start(1);
    let reports = Reports::bind();
    let call = held(reports.addr());
    let running = reports.next();
    assert_eq!(running.server, server.pid());
    kill(server.pid(), libc::SIGKILL);
    let started = Instant::now();
    let error = watchdog(LIMIT, move || call.catch().result()).unwrap_err();
    let Error::WorkerDied { detail, .. } = &error else {
        panic!("expected WorkerDied, got {error:?}");
    };
    assert!(detail.contains("no heartbeat for 1s"), "{detail}");
    // Noticed by the heartbeat timeout, not later than a few of them.
    assert!(
        started.elapsed() < HEARTBEAT * 10,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_queued_call_cancelled_never_runs() {
    let _serial = setup();
    let reports = Reports::bind();
    let before = unsync::stats().mode(unsync::Mode::Remote).cancelled;
    // No server yet: the call waits in the task queue.
    let call = held(reports.addr());
    assert!(call.cancel());
    assert!(matches!(
        call.catch().result(),
        Err(Error::Cancelled {
            task: "remote_failures::held"
        })
    ));
    wait_for_cancelled(before, 1);
    let server = Server::start(1);
    // The server takes calls (this one), and never the cancelled one.
    assert_eq!(watchdog(LIMIT, || ping().result()), server.pid());
    assert_eq!(reports.pending(), 0, "the cancelled call ran");
}

#[test]
fn a_running_call_cancelled_stops_its_worker_process_within_a_heartbeat() {
    let _serial = setup();
    let server = Server::start(1);
    let reports = Reports::bind();
    let call = held(reports.addr());
    let running = reports.next();
    let asked = Instant::now();
    assert!(call.cancel());
    // `cancel()` sends nothing itself: it returns, and the handle resolves, at once.
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert!(matches!(
        call.catch().result(),
        Err(Error::Cancelled { .. })
    ));
    // The worker hears of it at its next heartbeat and kills the worker process.
    let gone = wait_until_gone(running.pid, HEARTBEAT + Duration::from_secs(1));
    assert!(
        gone.is_some(),
        "worker process {} still running",
        running.pid
    );
    assert_eq!(watchdog(LIMIT, || ping().result()), server.pid());
}

#[test]
fn a_call_over_its_timeout_fails_with_timed_out() {
    let _serial = setup();
    let _server = Server::start(1);
    let reports = Reports::bind();
    let call = held_briefly(reports.addr());
    let running = reports.next();
    let error = watchdog(LIMIT, move || call.catch().result()).unwrap_err();
    assert_eq!(
        error,
        Error::TimedOut {
            task: "remote_failures::held_briefly",
            after: Duration::from_secs(2)
        }
    );
    running.release();
}

#[test]
fn arguments_over_the_payload_limit_are_refused_before_sending() {
    let _serial = setup();
    // No server: nothing is sent, so nothing waits.
    let error = length(vec![0; 3 << 20]).catch().result().unwrap_err();
    let Error::Remote { detail, .. } = &error else {
        panic!("expected Error::Remote, got {error:?}");
    };
    assert!(
        detail.contains("payload limit of 2097152 bytes"),
        "{detail}"
    );
    assert!(detail.contains("Nothing was sent"), "{detail}");
    // Under the limit, it goes through.
    let _server = Server::start(1);
    assert_eq!(
        watchdog(LIMIT, || length(vec![1; 1 << 20]).result()),
        1 << 20
    );
}

#[test]
fn a_worker_of_another_build_never_takes_the_calls() {
    let _serial = setup();
    let exe = std::env::current_exe().unwrap();
    let other = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/cluster");
    assert!(
        other.exists(),
        "{} is missing: build the cluster example first (`cargo build --release --features remote --example cluster`, as scripts/test-remote.sh does)",
        other.display()
    );
    // Polling before the call is made: it would take it, if it polled this build's queue.
    let foreign = Server::start_exe(&other, 1);
    let call = ping();
    let ours = Server::start(1);
    assert_eq!(watchdog(LIMIT, move || call.result()), ours.pid());
    drop(foreign);
}

#[test]
fn a_server_that_cannot_be_reached_makes_a_worker_exit_with_a_message() {
    let exe = std::env::current_exe().unwrap();
    let output = watchdog(LIMIT, move || {
        std::process::Command::new(exe)
            .env("UNSYNC_SERVE", "remote")
            .env("UNSYNC_REMOTE", "temporal://127.0.0.1:1/default")
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Temporal server at temporal://127.0.0.1:1/default"),
        "{stderr}"
    );
}

#[test]
fn sigterm_lets_the_calls_in_flight_finish_then_the_server_exits_zero() {
    let _serial = setup();
    let mut server = Server::start(1);
    let reports = Reports::bind();
    let call = held(reports.addr());
    let running = reports.next();
    server.signal(libc::SIGTERM);
    server.wait_for_line("stopping");
    running.release();
    assert_eq!(watchdog(LIMIT, move || call.result()), server.pid());
    assert!(server.wait().success());
}
