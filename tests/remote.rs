//! `#[unsync(remote)]` against a real Temporal dev server (started by
//! `scripts/test-remote.sh`), with serving processes started from this test executable: round
//! trips from every caller context, calls spread over two servers, a panic.

mod common;
mod remote_support;

use common::{LIMIT, watchdog};
use remote_support::{Reports, Server, report_and_wait, setup};
use unsync::{Error, unsync};

/// The serving process that ran it, and its worker process.
#[unsync(remote)]
fn double(n: u64) -> (u64, u32, u32) {
    (
        2 * n,
        std::os::unix::process::parent_id(),
        std::process::id(),
    )
}

#[unsync(remote)]
fn held(addr: String) -> u32 {
    report_and_wait(&addr)
}

#[unsync(remote, retries = 2)]
fn fails(addr: String) -> u32 {
    report_and_wait(&addr);
    panic!("remote disk on fire")
}

#[test]
fn a_call_round_trips_from_a_plain_thread() {
    let _serial = setup();
    let server = Server::start(1);
    let (value, ran_in, worker) = watchdog(LIMIT, || double(21).result());
    assert_eq!(value, 42);
    assert_eq!(ran_in, server.pid(), "the serving process ran it");
    assert_ne!(worker, server.pid(), "in a worker process of its own");
    assert_ne!(worker, std::process::id());
}

#[test]
fn a_call_round_trips_inside_a_tokio_runtime_and_by_await() {
    let _serial = setup();
    let server = Server::start(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (blocked, awaited) = watchdog(LIMIT, move || {
        runtime.block_on(async {
            // `.result()` on a runtime worker thread, then `.await`.
            let blocked = tokio::spawn(async { double(1).result() }).await.unwrap();
            let awaited = double(2).await;
            (blocked, awaited)
        })
    });
    assert_eq!((blocked.0, awaited.0), (2, 4));
    assert_eq!((blocked.1, awaited.1), (server.pid(), server.pid()));
}

#[test]
fn calls_spread_over_two_and_three_servers() {
    let _serial = setup();
    for count in [2, 3] {
        // One worker process each: a server takes one call at a time.
        let servers: Vec<Server> = (0..count).map(|_| Server::start(1)).collect();
        let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
        let reports = Reports::bind();
        let calls: Vec<_> = (0..2 * count).map(|_| held(reports.addr())).collect();
        // `count` calls run at once, held: they can only be on `count` different servers.
        let running: Vec<_> = (0..count).map(|_| reports.next()).collect();
        let mut on: Vec<u32> = running.iter().map(|r| r.server).collect();
        on.sort_unstable();
        on.dedup();
        assert_eq!(on.len(), count, "{count} held calls on {on:?}");
        assert!(on.iter().all(|pid| pids.contains(pid)));
        running
            .into_iter()
            .for_each(remote_support::Running::release);
        (0..count).for_each(|_| reports.next().release());
        let ran_on: Vec<u32> = watchdog(LIMIT, move || {
            calls.into_iter().map(unsync::Unfinished::result).collect()
        });
        for pid in pids {
            assert!(
                ran_on.contains(&pid),
                "server {pid} took none of {ran_on:?}"
            );
        }
    }
}

#[test]
fn shutdown_counts_the_calls_on_the_cluster() {
    let _serial = setup();
    let _server = Server::start(1);
    let reports = Reports::bind();
    let call = held(reports.addr());
    let running = reports.next();
    // Held on the server: still in flight when the (short) wait ends.
    assert_eq!(unsync::shutdown(std::time::Duration::from_millis(100)), 1);
    let server = running.server;
    running.release();
    assert_eq!(watchdog(LIMIT, move || call.result()), server);
    assert_eq!(unsync::shutdown(LIMIT), 0);
}

#[test]
fn a_panic_is_reported_with_its_message_and_location_and_never_retried() {
    let _serial = setup();
    let _server = Server::start(1);
    let reports = Reports::bind();
    let call = fails(reports.addr());
    reports.next().release();
    let error = watchdog(LIMIT, move || call.catch().result()).unwrap_err();
    let Error::Panicked { task, message, .. } = &error else {
        panic!("expected a panic, got {error:?}");
    };
    assert_eq!(*task, "remote::fails");
    assert_eq!(message, "remote disk on fire");
    let location = error.location().expect("the panic's location crosses");
    assert!(location.starts_with(file!()), "{location}");
    // `retries = 2`, but a panic is not retried: one attempt reported, no other.
    let again = double(0);
    watchdog(LIMIT, move || again.result());
    assert_eq!(reports.pending(), 0, "the panicking call ran again");
}
