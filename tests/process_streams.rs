//! Streaming `#[unsync(cpu_bound)]` functions: an iterator driven in a worker process, its
//! items crossing the pipe as they are produced, within the credit its reader grants. Order,
//! backpressure (measured with the worker's own count), an early drop, a panic, a killed
//! worker, cancel, timeout, sync and async readers, nesting, and the pool's other calls
//! meanwhile.

// Unix only for now: it shares a file between processes with `pwrite`/`pread` and kills a
// worker with SIGKILL; the Windows twin is missing (see the user guide's Platforms section).
#![cfg(unix)]

use std::os::unix::fs::FileExt;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use unsync::{Config, ConfigError, Error, unsync};

mod common;
use common::{LIMIT, PidReports, report_pid, wait_for_close, wait_until_gone, watchdog};

/// Three workers for the tests of this binary (which run at once), whatever the cores: a
/// stream holds its worker until it ends, and one test needs calls to run beside a stream.
fn setup() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| match Config::new().processes(3).install() {
        Ok(()) | Err(ConfigError::AlreadyStarted) => {}
        Err(e) => panic!("cannot configure the pool: {e}"),
    });
}

#[unsync(cpu_bound)]
fn count_to(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Line {
    number: u32,
    text: String,
}

#[unsync(cpu_bound)]
fn lines(n: u32) -> impl Iterator<Item = Line> {
    (0..n).map(|number| Line {
        number,
        text: "x".repeat(number as usize % 100),
    })
}

#[unsync(cpu_bound)]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Reports its worker's pid to `addr` (the connection closes when the worker dies), then
/// counts forever.
#[unsync(cpu_bound)]
fn endless(addr: String) -> impl Iterator<Item = u64> {
    let connection = report_pid(&addr);
    (0..).inspect(move |_| {
        let _alive = &connection;
    })
}

/// Items 0 to `n - 1`, then a panic.
#[unsync(cpu_bound)]
fn fails_after(n: u64) -> impl Iterator<Item = u64> {
    (0..).map(move |i| if i == n { panic!("no item {n}") } else { i })
}

const FAST_BUFFER: usize = 1024;

/// `items` numbers, each item's production recorded in the file at `count` (the worker's own
/// count of items produced, written after each item).
#[unsync(cpu_bound, buffer = 1024)]
fn counted(items: u64, count: String) -> impl Iterator<Item = u64> {
    let file = std::fs::OpenOptions::new().write(true).open(count).unwrap();
    (0..items).inspect(move |&i| {
        file.write_at(&(i + 1).to_le_bytes(), 0).unwrap();
    })
}

#[unsync(cpu_bound)]
fn sum_in_a_worker(n: u64) -> u64 {
    // A stream read inside a worker: its producer runs in that worker too.
    count_to(n).into_iter().sum()
}

#[test]
fn items_arrive_in_the_order_produced() {
    setup();
    watchdog(LIMIT, || {
        let numbers: Vec<u64> = count_to(100_000).into_iter().collect();
        assert_eq!(numbers, (0..100_000).collect::<Vec<_>>());
        let lines: Vec<Line> = lines(5_000).into_iter().collect();
        assert_eq!(lines.len(), 5_000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line.number as usize, i);
            assert_eq!(line.text.len(), i % 100);
        }
        assert_eq!(count_to(0).into_iter().count(), 0);
    });
}

/// The worker's own count of items produced, from the file it writes.
fn produced(file: &std::fs::File) -> u64 {
    let mut count = [0; 8];
    file.read_exact_at(&mut count, 0).unwrap();
    u64::from_le_bytes(count)
}

/// 10 million items read by a slow reader (it stops every million items until the worker has
/// used its credit): the worker's count never exceeds the items read plus the buffer.
#[test]
fn backpressure_bounds_how_far_the_worker_runs_ahead() {
    const ITEMS: u64 = 10_000_000;
    const PAUSE_EVERY: u64 = 1_000_000;
    setup();
    watchdog(LIMIT * 4, || {
        let path = std::env::temp_dir().join(format!("unsync-stream-count-{}", std::process::id()));
        std::fs::write(&path, 0_u64.to_le_bytes()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let bound = FAST_BUFFER as u64;
        let mut most = 0;
        let mut read = 0;
        let mut items = counted(ITEMS, path.to_string_lossy().into_owned()).into_iter();
        loop {
            if read % PAUSE_EVERY == 0 {
                // The slow reader: nothing read until the worker is at least half its credit
                // ahead (the watchdog fails the test if it never gets there).
                while read < ITEMS && produced(&file) < (read + bound / 2).min(ITEMS) {
                    std::thread::yield_now();
                }
            }
            // Sampled, not every item: each look is a system call.
            if read % 64 == 0 || read % PAUSE_EVERY == 0 {
                let ahead = produced(&file) - read;
                most = most.max(ahead);
                assert!(
                    ahead <= bound,
                    "the worker ran {ahead} items ahead of a reader at {read}"
                );
            }
            let Some(item) = items.next() else { break };
            assert_eq!(item, read);
            read += 1;
        }
        assert_eq!(read, ITEMS);
        assert!(
            most >= bound / 2,
            "the worker never used its credit: {most}"
        );
        let _ = std::fs::remove_file(&path);
    });
}

/// A dropped stream kills its endless producer's worker; the pool replaces it. More drops than
/// workers in a row: each stream gets a worker, so each was freed.
#[test]
fn dropping_the_stream_stops_an_endless_producer_and_frees_its_worker() {
    setup();
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        for _ in 0..4 {
            let stream = endless(reports.addr());
            let (pid, connection) = reports.next();
            let mut items = stream.into_iter();
            assert_eq!(items.by_ref().take(5).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
            drop(items);
            wait_for_close(connection);
            assert!(
                wait_until_gone(pid, LIMIT).is_some(),
                "the worker {pid} outlived its dropped stream"
            );
        }
        assert_eq!(add(2, 3).result(), 5);
    });
}

/// An item whose `Deserialize` panics: it crosses the pipe (the worker only serializes it),
/// then fails to be read back in the caller's process.
#[derive(Debug, Serialize)]
struct Trap(u64);

impl<'de> Deserialize<'de> for Trap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        assert!(value < 5, "Trap {value} cannot be read");
        Ok(Trap(value))
    }
}

#[unsync(cpu_bound)]
fn traps() -> impl Iterator<Item = Trap> {
    (0..).map(Trap)
}

/// A panic in an item's `Deserialize` (user code, run by the pool's thread that reads the
/// worker) ends that stream alone, as an encoding failure, after the items before it.
#[test]
fn an_item_whose_deserialize_panics_ends_its_stream_alone() {
    setup();
    watchdog(LIMIT, || {
        let items: Vec<_> = traps().catch().into_iter().collect();
        assert_eq!(items.len(), 6, "{items:?}");
        assert!(items[..5].iter().all(Result::is_ok));
        match &items[5] {
            Err(Error::Encoding { detail, .. }) => {
                assert!(detail.contains("Trap 5 cannot be read"), "{detail}");
            }
            other => panic!("expected an encoding failure, got {other:?}"),
        }
        assert_eq!(count_to(3).into_iter().count(), 3);
    });
}

#[test]
fn items_before_a_panic_are_delivered_then_it_is_reraised() {
    setup();
    watchdog(LIMIT, || {
        let items: Vec<_> = fails_after(100).catch().into_iter().collect();
        assert_eq!(items.len(), 101);
        for (i, item) in items[..100].iter().enumerate() {
            assert_eq!(item.as_ref().ok(), Some(&(i as u64)));
        }
        match &items[100] {
            Err(error @ Error::Panicked { task, message, .. }) => {
                assert_eq!(*task, "process_streams::fails_after");
                assert_eq!(message, "no item 100");
                let location = error.location().expect("the panic's location");
                assert!(location.contains("process_streams.rs"), "{location}");
            }
            other => panic!("expected the panic, got {other:?}"),
        }
        // Without `catch`, the reader re-raises it after the items.
        let mut read = 0;
        let reraised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for item in fails_after(3) {
                assert_eq!(item, read);
                read += 1;
            }
        }));
        assert_eq!(read, 3);
        let payload = reraised.expect_err("the panic is re-raised");
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(message.contains("no item 3"), "{message}");
    });
}

/// SIGKILL to the worker mid-stream: the items received before come in order, then
/// `Error::WorkerDied`.
#[test]
fn a_worker_killed_mid_stream_ends_it_with_worker_died() {
    setup();
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let mut items = endless(reports.addr()).catch().into_iter();
        let (pid, connection) = reports.next();
        for expected in 0..10 {
            assert_eq!(items.next().unwrap().unwrap(), expected);
        }
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our worker.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        wait_for_close(connection);
        let mut next = 10;
        let ending = loop {
            match items.next().expect("the stream ends with an error") {
                Ok(item) => {
                    assert_eq!(item, next);
                    next += 1;
                }
                Err(error) => break error,
            }
        };
        match ending {
            Error::WorkerDied { task, detail } => {
                assert_eq!(task, "process_streams::endless");
                assert!(detail.contains("SIGKILL"), "{detail}");
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        assert!(items.next().is_none());
        assert_eq!(add(1, 1).result(), 2);
    });
}

#[test]
fn cancel_ends_the_stream_and_stops_the_worker() {
    setup();
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let stream = endless(reports.addr());
        let (pid, connection) = reports.next();
        assert!(stream.cancel());
        assert!(!stream.cancel(), "cancelled once only");
        let rest: Vec<_> = stream.catch().into_iter().collect();
        assert!(
            matches!(rest.last(), Some(Err(Error::Cancelled { .. }))),
            "{:?}",
            rest.last()
        );
        wait_for_close(connection);
        assert!(wait_until_gone(pid, LIMIT).is_some());
        assert_eq!(add(2, 2).result(), 4);
    });
}

#[test]
fn timeout_ends_an_endless_stream_and_stops_the_worker() {
    setup();
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let stream = endless(reports.addr()).timeout(Duration::from_millis(100));
        let (pid, connection) = reports.next();
        let mut read = 0_u64;
        let mut ending = None;
        for item in stream.catch() {
            match item {
                Ok(n) => {
                    assert_eq!(n, read);
                    read += 1;
                }
                Err(error) => ending = Some(error),
            }
        }
        assert!(
            matches!(ending, Some(Error::TimedOut { .. })),
            "{ending:?} after {read} items"
        );
        wait_for_close(connection);
        assert!(wait_until_gone(pid, LIMIT).is_some());
    });
}

#[test]
fn async_callers_poll_it_on_any_executor() {
    setup();
    watchdog(LIMIT, || {
        let expected: Vec<u64> = (0..1000).collect();
        let read = futures::executor::block_on(count_to(1000).collect::<Vec<_>>());
        assert_eq!(read, expected);
        let read = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(count_to(1000).collect::<Vec<_>>());
        assert_eq!(read, expected);
        let read = smol::block_on(count_to(1000).collect::<Vec<_>>());
        assert_eq!(read, expected);
        assert_eq!(count_to(10).collect_vec().result().len(), 10);
    });
}

/// Streams read inside other unsync tasks, more readers than threads or workers, and inside a
/// worker. (A rayon reader waits without running other jobs: one it ran could wait, below it,
/// for the worker its own stream holds.)
#[test]
fn streams_read_inside_other_tasks() {
    setup();
    watchdog(LIMIT, || {
        let sum = || count_to(100).into_iter().sum::<u64>();
        let in_threads: Vec<_> = (0..8).map(|_| unsync::spawn_blocking(sum)).collect();
        let in_async: Vec<_> = (0..4)
            .map(|_| unsync::spawn(async move { sum() }))
            .collect();
        let in_rayon: Vec<_> = (0..4).map(|_| unsync::spawn_parallel(sum)).collect();
        for handle in in_threads.into_iter().chain(in_async).chain(in_rayon) {
            assert_eq!(handle.result(), 4950);
        }
        assert_eq!(sum_in_a_worker(100).result(), 4950);
    });
}

/// A stream holds one worker; calls go to the others meanwhile, and nothing is mixed up when
/// the stream then goes on.
#[test]
fn calls_run_while_a_stream_waits_for_its_reader() {
    setup();
    watchdog(LIMIT, || {
        let mut numbers = count_to(10_000).into_iter();
        assert_eq!(numbers.next(), Some(0));
        let sums: Vec<_> = (0..200).map(|i| add(i, 1)).collect();
        for (i, sum) in sums.into_iter().enumerate() {
            assert_eq!(sum.result(), i as u64 + 1);
        }
        assert_eq!(numbers.collect::<Vec<_>>(), (1..10_000).collect::<Vec<_>>());
    });
}
