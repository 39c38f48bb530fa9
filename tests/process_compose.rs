//! `cpu_bound` handles composed like any other: `.then` into another `cpu_bound` call or an
//! async one, `.map`, and clones (one call, many readers; a cancel through any clone is a
//! cancel for all, and kills the worker that ran the call).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use unsync::{Error, Unfinished, unsync};

mod common;
use common::{LIMIT, PidReports, report_pid, wait_for_close, wait_until_gone, watchdog};

#[unsync(cpu_bound)]
fn pid() -> u32 {
    std::process::id()
}

#[unsync(cpu_bound)]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[unsync(cpu_bound)]
fn fails(message: String) -> u64 {
    panic!("{message}")
}

/// Reports its worker's pid to `addr`, then returns `value`.
#[unsync(cpu_bound)]
fn reported(addr: String, value: u64) -> u64 {
    drop(report_pid(&addr));
    value
}

/// Reports its worker's pid to `addr` (keeping the connection open), then spins until killed.
#[unsync(cpu_bound)]
fn spins_reporting(addr: String) -> u64 {
    let _connection = report_pid(&addr);
    loop {
        std::hint::spin_loop();
    }
}

#[unsync]
async fn describe_async(n: u64) -> String {
    tokio::task::yield_now().await;
    format!("async got {n}")
}

#[test]
fn then_chains_into_another_cpu_bound_call() {
    watchdog(LIMIT, || {
        assert_eq!(
            add(1, 2)
                .then(|sum| add(sum, 10))
                .then(|sum| add(sum, 100))
                .result(),
            113
        );
        // The continuation's call runs in a worker too, not in this process.
        let worker = add(1, 2).then(|_| pid()).result();
        assert_ne!(worker, std::process::id());
    });
}

#[test]
fn then_chains_into_an_async_fn_and_back() {
    watchdog(LIMIT, || {
        assert_eq!(add(20, 22).then(describe_async).result(), "async got 42");
        let back = describe_async(7)
            .then(|text| add(text.len() as u64, 1))
            .result();
        assert_eq!(back, "async got 7".len() as u64 + 1);
    });
}

#[test]
fn map_transforms_a_cpu_bound_value() {
    watchdog(LIMIT, || {
        assert_eq!(add(2, 3).map(|sum| sum * 2).result(), 10);
        assert_eq!(
            add(2, 3).map(|sum| format!("{sum}!")).catch().result(),
            Ok("5!".to_owned())
        );
    });
}

#[test]
fn a_failed_cpu_bound_call_skips_then_and_map() {
    watchdog(LIMIT, || {
        let called = Arc::new(AtomicBool::new(false));
        let is_expected = |outcome: Result<u64, Error>| matches!(outcome, Err(Error::Panicked { task: "process_compose::fails", message, .. }) if message == "no value");
        let flag = called.clone();
        let chained = fails("no value".into()).then(move |n| {
            flag.store(true, Ordering::SeqCst);
            add(n, 1)
        });
        assert!(is_expected(chained.catch().result()));
        let flag = called.clone();
        let mapped = fails("no value".into()).map(move |n| {
            flag.store(true, Ordering::SeqCst);
            n + 1
        });
        assert!(is_expected(mapped.catch().result()));
        assert!(!called.load(Ordering::SeqCst), "a continuation ran");
    });
}

#[test]
fn clones_all_read_the_value_of_one_call() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let handle = reported(reports.addr(), 42);
        let clones: Vec<Unfinished<u64>> = (0..4).map(|_| handle.clone()).collect();
        // Each clone read from a thread of its own, the original from this one.
        let read: Vec<u64> = std::thread::scope(|s| {
            let readers: Vec<_> = clones
                .into_iter()
                .map(|clone| s.spawn(move || clone.result()))
                .collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(read, [42; 4]);
        assert_eq!(handle.result(), 42);
        // The call ran once, whatever the number of readers: one report, no other.
        let (worker, _) = reports.next();
        assert_ne!(worker, std::process::id());
        assert_eq!(reports.pending(), 0, "the call ran more than once");
    });
}

#[test]
fn cancelling_through_one_clone_cancels_for_all_and_kills_the_worker() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let handle = spins_reporting(reports.addr());
        let clones: Vec<_> = (0..3).map(|_| handle.clone()).collect();
        // Running, not just queued: it reported from its worker.
        let (worker, connection) = reports.next();
        assert_ne!(worker, std::process::id());

        assert!(clones[1].cancel());
        let cancelled = Err(Error::Cancelled {
            task: "process_compose::spins_reporting",
        });
        for clone in clones {
            assert_eq!(clone.catch().result(), cancelled);
        }
        assert_eq!(handle.catch().result(), cancelled);

        // The call itself stopped: its worker process was killed, which closed its connection.
        wait_for_close(connection);
        // Generous bound (the kill has already closed the socket; only reaping remains).
        assert!(
            wait_until_gone(worker, Duration::from_secs(5)).is_some(),
            "worker {worker} still runs after its call was cancelled"
        );
        // The pool replaced it: calls go on.
        assert_eq!(add(1, 1).result(), 2);
    });
}

#[test]
fn cancelling_a_then_handle_kills_the_cpu_bound_call_it_waits_on() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let continued = Arc::new(AtomicBool::new(false));
        let flag = continued.clone();
        let chained = spins_reporting(reports.addr()).then(move |n| {
            flag.store(true, Ordering::SeqCst);
            add(n, 1)
        });
        let (worker, connection) = reports.next();
        assert!(chained.cancel());
        assert!(matches!(
            chained.catch().result(),
            Err(Error::Cancelled { .. })
        ));
        wait_for_close(connection);
        assert!(
            wait_until_gone(worker, Duration::from_secs(5)).is_some(),
            "worker {worker} still runs after the chain was cancelled"
        );
        assert!(!continued.load(Ordering::SeqCst));
        assert_eq!(add(2, 2).result(), 4);
    });
}
