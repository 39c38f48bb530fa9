//! Load: a million trivial tasks across the three in-process modes (async, blocking pool,
//! rayon) and twenty thousand calls through the worker-process pool, each result checked.
//!
//! What it proves: under sustained submission, no task is lost (every handle resolves to
//! its own value), and none runs twice: in-process, each task bumps a per-index counter that
//! must end at exactly 1; in worker processes, each worker numbers the calls it runs, and the
//! numbers every worker returned must be exactly 0..n with no gap and no repeat (a call run
//! twice, or run without its result reaching its handle, would leave a gap), and add up to the
//! number of calls. Handles are submitted in windows so memory stays bounded, and each window
//! is collected a different way: `.result()` one by one, `join_all`, `as_completed` (blocking
//! iterator and `Stream`), and `.await` on a foreign executor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use unsync::{Unfinished, unsync};

mod common;
use common::watchdog;

/// In-process tasks, over the three modes.
const TASKS: usize = 1_000_000;
/// Calls through the worker-process pool.
const PROCESS_CALLS: usize = 20_000;
/// Handles alive at once: the window submitted before it is collected.
const WINDOW: usize = 25_000;

/// A deadlock detector, not a performance bound: the whole test takes well under a minute in a
/// debug build on a loaded 2-core machine.
const LOAD_LIMIT: Duration = Duration::from_secs(300);

/// How many times task `i` ran.
static RUNS: [AtomicU8; TASKS] = [const { AtomicU8::new(0) }; TASKS];

/// What task `i` returns: a function of its index that no other index shares.
fn value(i: u32) -> u64 {
    u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555
}

fn ran(i: u32) -> (u32, u64) {
    RUNS[i as usize].fetch_add(1, Ordering::Relaxed);
    (i, value(i))
}

#[unsync]
async fn on_runtime(i: u32) -> (u32, u64) {
    ran(i)
}

#[unsync]
fn on_thread(i: u32) -> (u32, u64) {
    ran(i)
}

#[unsync(parallel)]
fn on_rayon(i: u32) -> (u32, u64) {
    ran(i)
}

/// The calls this worker process has run so far.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// In a worker process: the input transformed, the worker's pid, and the call's number in
/// that worker.
#[unsync(cpu_bound)]
fn in_worker(i: u32) -> (u32, (u64, u32, u64)) {
    (
        i,
        (
            value(i),
            std::process::id(),
            SERVED.fetch_add(1, Ordering::Relaxed),
        ),
    )
}

/// How a window of handles is collected.
#[derive(Clone, Copy, Debug)]
enum Collect {
    OneByOne,
    JoinAll,
    AsCompletedIter,
    AsCompletedStream,
    Await,
}

const COLLECTS: [Collect; 5] = [
    Collect::OneByOne,
    Collect::JoinAll,
    Collect::AsCompletedIter,
    Collect::AsCompletedStream,
    Collect::Await,
];

/// Collect `handles` by `how`; the values come back in input order (sorted by index for the
/// ways that yield in completion order, which is why values carry their index).
fn collect<T: Send + 'static>(how: Collect, handles: Vec<Unfinished<(u32, T)>>) -> Vec<(u32, T)> {
    let mut values: Vec<(u32, T)> = match how {
        Collect::OneByOne => handles.into_iter().map(Unfinished::result).collect(),
        Collect::JoinAll => unsync::join_all(handles).result(),
        Collect::AsCompletedIter => unsync::as_completed(handles).into_iter().collect(),
        Collect::AsCompletedStream => {
            futures::executor::block_on(unsync::as_completed(handles).collect())
        }
        Collect::Await => futures::executor::block_on(async {
            let mut values = Vec::with_capacity(handles.len());
            for handle in handles {
                values.push(handle.await);
            }
            values
        }),
    };
    values.sort_unstable_by_key(|(i, _)| *i);
    values
}

/// Collect window number `window` (the handles of indexes `base..end`), each window a different
/// way, and check that every index came back once, in order.
fn collect_window<T: Send + 'static>(
    window: usize,
    base: usize,
    end: usize,
    handles: Vec<Unfinished<(u32, T)>>,
) -> Vec<(u32, T)> {
    let how = COLLECTS[window % COLLECTS.len()];
    let values = collect(how, handles);
    assert_eq!(
        values.len(),
        end - base,
        "window {window} ({how:?}) lost values"
    );
    for (at, (i, _)) in values.iter().enumerate() {
        assert_eq!(*i as usize, base + at, "window {window} ({how:?})");
    }
    values
}

#[test]
fn a_million_in_process_tasks_each_run_exactly_once() {
    watchdog(LOAD_LIMIT, || {
        let started = Instant::now();
        for (window, base) in (0..TASKS).step_by(WINDOW).enumerate() {
            let end = (base + WINDOW).min(TASKS);
            let handles: Vec<Unfinished<(u32, u64)>> = (base..end)
                .map(|i| {
                    let i = i as u32;
                    // Modes interleaved within each window: all three executors are busy at
                    // once, and each gets a third of the tasks.
                    match i % 3 {
                        0 => on_runtime(i),
                        1 => on_thread(i),
                        _ => on_rayon(i),
                    }
                })
                .collect();
            for (i, v) in collect_window(window, base, end, handles) {
                assert_eq!(v, value(i), "task {i} returned another task's value");
            }
        }
        let elapsed = started.elapsed();
        let counts: HashMap<u8, usize> = RUNS.iter().fold(HashMap::new(), |mut by, run| {
            *by.entry(run.load(Ordering::Relaxed)).or_default() += 1;
            by
        });
        assert_eq!(
            counts.get(&1),
            Some(&TASKS),
            "tasks by times run (must all be 1): {counts:?}"
        );
        eprintln!(
            "{TASKS} in-process tasks in {:.2} s ({:.2} µs each)",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / TASKS as f64
        );
    });
}

#[test]
fn twenty_thousand_process_calls_each_run_exactly_once() {
    watchdog(LOAD_LIMIT, || {
        let started = Instant::now();
        let mut served: HashMap<u32, Vec<u64>> = HashMap::new();
        const PROCESS_WINDOW: usize = 5_000;
        for (window, base) in (0..PROCESS_CALLS).step_by(PROCESS_WINDOW).enumerate() {
            let end = (base + PROCESS_WINDOW).min(PROCESS_CALLS);
            let handles: Vec<_> = (base..end).map(|i| in_worker(i as u32)).collect();
            for (i, (v, pid, number)) in collect_window(window, base, end, handles) {
                assert_eq!(v, value(i), "call {i} returned another call's value");
                assert_ne!(pid, std::process::id(), "ran in a worker process");
                served.entry(pid).or_default().push(number);
            }
        }
        let elapsed = started.elapsed();
        let mut total = 0;
        for (pid, numbers) in &mut served {
            numbers.sort_unstable();
            let expected: Vec<u64> = (0..numbers.len() as u64).collect();
            assert!(
                *numbers == expected,
                "worker {pid} ran calls whose results never came back, or ran one twice"
            );
            total += numbers.len();
        }
        assert_eq!(total, PROCESS_CALLS);
        eprintln!(
            "{PROCESS_CALLS} process calls in {:.2} s over {} workers ({:.1} µs each)",
            elapsed.as_secs_f64(),
            served.len(),
            elapsed.as_secs_f64() * 1e6 / PROCESS_CALLS as f64
        );
    });
}
