//! `shutdown` racing the pool's own start-up: the first call starts every worker slot, and
//! a `shutdown` right after it lands while the other workers are still being launched. Each
//! of those must be stopped too: `shutdown` returns, and no worker process is left behind.
//! Calls made while a shutdown is under way end too: they start the pool again.
//! (A binary of its own: it configures the pool and shuts it down over and over.)

use std::time::Duration;

use unsync::unsync;

mod common;

#[unsync(cpu_bound)]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// Rounds of start-up and shutdown, and calls made during shutdowns. Fewer on Windows, where
/// starting a process costs far more (under Wine, about a tenth of a second).
const ROUNDS: u64 = if cfg!(windows) { 15 } else { 60 };
const CALLS: u64 = if cfg!(windows) { 100 } else { 500 };

#[test]
fn shutdown_right_after_the_first_call_stops_workers_still_starting() {
    unsync::Config::new().processes(3).install().unwrap();
    common::watchdog(common::LIMIT, || {
        for round in 0..ROUNDS {
            assert_eq!(add_one(round).result(), round + 1);
            assert_eq!(
                unsync::shutdown(Duration::from_secs(10)),
                0,
                "round {round}"
            );
            let left = common::live_children();
            assert!(
                left.is_empty(),
                "round {round}: workers {left:?} outlived shutdown"
            );
        }

        // Calls made one after another from another thread while shutdowns come and go: each ends, with its
        // value or (if a shutdown stopped it) `Cancelled`; none waits forever for a pool that
        // nobody restarts.
        let caller = std::thread::spawn(|| {
            (0..CALLS)
                .map(|i| (i, add_one(i).catch().result()))
                .collect::<Vec<_>>()
        });
        let mut shutdowns = 0;
        while !caller.is_finished() {
            unsync::shutdown(Duration::from_secs(10));
            shutdowns += 1;
        }
        let (mut ok, mut cancelled) = (0, 0);
        for (i, outcome) in caller.join().unwrap() {
            match outcome {
                Ok(v) => {
                    assert_eq!(v, i + 1);
                    ok += 1;
                }
                Err(unsync::Error::Cancelled { .. }) => cancelled += 1,
                Err(other) => panic!("call {i}: {other}"),
            }
        }
        eprintln!("{shutdowns} shutdowns: {ok} calls answered, {cancelled} cancelled");
        assert!(ok > 0);
        assert_eq!(add_one(1).result(), 2);
    });
}
