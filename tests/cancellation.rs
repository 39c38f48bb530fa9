//! Cancellation and timeouts in every mode, from sync and async callers, directly and through
//! derived handles; and a 10,000-handle run with random cancellations where no task may be
//! lost or run twice.
//!
//! "Within a second" is the requirement for modes where cancellation can take effect:
//! async tasks are dropped at their `.await`, thread and rayon tasks see `is_cancelled()` (the
//! test tasks look every millisecond). The one-second bounds below are that requirement, far
//! above what it takes on an idle machine (microseconds to a couple of milliseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use futures::StreamExt;
use unsync::{Error, Unfinished, unsync};

mod common;
use common::{Counter, LIMIT, MODES, Mode, Rng, gated, gated_panic, until_cancelled, watchdog};

const EFFECTIVE: Duration = Duration::from_secs(1);

/// A running task in `mode` (it has started), and the channel that says when it stopped.
fn running(mode: Mode) -> (Unfinished<u32>, Receiver<()>) {
    let (started_tx, started) = mpsc::channel();
    let (stopped_tx, stopped) = mpsc::channel();
    let handle = until_cancelled(mode, started_tx, stopped_tx);
    started.recv_timeout(LIMIT).expect("the task started");
    (handle, stopped)
}

fn assert_stops_within_a_second(stopped: &Receiver<()>, what: &str) {
    stopped
        .recv_timeout(EFFECTIVE)
        .unwrap_or_else(|_| panic!("{what}: the task did not stop within {EFFECTIVE:?}"));
}

fn cancelled(task: &'static str) -> Result<u32, Error> {
    Err(Error::Cancelled { task })
}

#[test]
fn cancel_stops_running_tasks_within_a_second_from_sync_callers() {
    watchdog(LIMIT, || {
        for mode in MODES {
            let (task, stopped) = running(mode);
            let name = match mode {
                Mode::Async => "cancellation::common::forever_async",
                Mode::Thread => "cancellation::common::until_cancelled_thread",
                Mode::Parallel => "cancellation::common::until_cancelled_parallel",
            };
            let other = task.clone();
            assert!(task.cancel());
            // The handle side is immediate, for every clone.
            assert!(task.is_done() && other.is_done());
            assert!(task.cancel(), "cancelling again still says it is cancelled");
            assert_eq!(other.catch().result(), cancelled(name));
            assert_stops_within_a_second(&stopped, &format!("{mode:?}"));
            let raised = std::panic::catch_unwind(|| task.result()).unwrap_err();
            let message = raised.downcast_ref::<String>().unwrap();
            assert_eq!(*message, format!("task `{name}` was cancelled"));
        }
    });
}

/// An async handle nobody cloned reads its task through tokio's join handle, and turns into a
/// shared cell on `catch` or `wait_timeout`: cancelling works the same before and after.
#[test]
fn cancel_works_on_a_lone_handle_and_after_catch_or_wait_timeout() {
    watchdog(LIMIT, || {
        for mode in MODES {
            let (lone, stopped) = running(mode);
            assert!(!lone.is_done());
            assert!(lone.cancel());
            assert!(lone.is_done());
            assert!(lone.cancel(), "cancelling again still says it is cancelled");
            assert_stops_within_a_second(&stopped, &format!("{mode:?}, lone handle"));
            assert!(matches!(
                lone.catch().result(),
                Err(Error::Cancelled { .. })
            ));

            let (task, stopped) = running(mode);
            let caught = task.catch();
            assert!(caught.cancel());
            assert_stops_within_a_second(&stopped, &format!("{mode:?}, after catch"));
            assert!(matches!(caught.result(), Err(Error::Cancelled { .. })));

            let (task, stopped) = running(mode);
            assert!(!task.wait_timeout(Duration::from_millis(1)));
            assert!(task.cancel());
            assert_stops_within_a_second(&stopped, &format!("{mode:?}, after wait_timeout"));
            assert!(matches!(
                task.catch().result(),
                Err(Error::Cancelled { .. })
            ));
        }
    });
}

#[test]
fn cancel_stops_running_tasks_within_a_second_from_async_callers() {
    watchdog(LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for mode in MODES {
                let (task, stopped) = running(mode);
                let waiter = tokio::spawn(task.clone().catch());
                tokio::task::yield_now().await;
                assert!(task.cancel());
                assert!(matches!(
                    waiter.await.unwrap(),
                    Err(Error::Cancelled { .. })
                ));
                let raised = tokio::spawn(task).await.unwrap_err();
                assert!(raised.is_panic());
                assert_stops_within_a_second(&stopped, &format!("{mode:?}"));
            }
        });
    });
}

#[test]
fn cancel_after_finish_returns_false_and_keeps_the_value() {
    for mode in MODES {
        let (open, task) = gated(mode, 7_u32);
        let other = task.clone();
        open.set(());
        assert!(task.wait_timeout(LIMIT));
        assert!(!task.cancel());
        assert_eq!(other.result(), 7);
        assert_eq!(task.result(), 7);
    }
}

#[test]
fn cancel_through_any_clone_cancels_for_all_and_never_blocks() {
    for mode in MODES {
        let (open, task) = gated(mode, 1_u32);
        let clones: Vec<_> = (0..4).map(|_| task.clone()).collect();
        // Cancelled from inside another unsync task, of each mode.
        let canceller = clones[2].clone();
        let cancelled_it = match mode {
            Mode::Async => unsync::spawn(async move { canceller.cancel() }),
            Mode::Thread => unsync::spawn_blocking(move || canceller.cancel()),
            Mode::Parallel => unsync::spawn_parallel(move || canceller.cancel()),
        };
        assert!(cancelled_it.result());
        for clone in clones {
            assert!(matches!(
                clone.catch().result(),
                Err(Error::Cancelled { .. })
            ));
        }
        assert!(matches!(
            task.catch().result(),
            Err(Error::Cancelled { .. })
        ));
        drop(open); // the gated body ends (or never started)
    }
}

#[test]
fn timeout_cancels_within_a_second_in_every_mode() {
    let after = Duration::from_millis(50);
    watchdog(LIMIT, move || {
        for mode in MODES {
            for awaited in [false, true] {
                let (task, stopped) = running(mode);
                let other = task.clone();
                let start = Instant::now();
                let limited = task.timeout(after);
                let outcome = if awaited {
                    futures::executor::block_on(limited)
                } else {
                    limited.result()
                };
                let elapsed = start.elapsed();
                assert!(
                    matches!(outcome, Err(Error::TimedOut { after: a, .. }) if a == after),
                    "{mode:?}: {outcome:?}"
                );
                assert!(elapsed >= after, "a timeout never fires early");
                assert!(elapsed < after + EFFECTIVE, "{mode:?}: took {elapsed:?}");
                // Every clone of the handle learns why the task stopped.
                assert!(
                    matches!(other.catch().result(), Err(Error::TimedOut { after: a, .. }) if a == after),
                    "{mode:?}"
                );
                assert_stops_within_a_second(&stopped, &format!("{mode:?} timeout"));
            }
        }
    });
}

#[test]
fn timeout_passes_values_and_failures_through() {
    for mode in MODES {
        let (open, task) = gated(mode, 3_u32);
        let limited = task.timeout(LIMIT);
        open.set(());
        assert_eq!(limited.result(), Ok(3));
        let (open, failing) = gated_panic(mode, "failed in time");
        let limited = failing.timeout(LIMIT);
        open.set(());
        assert!(matches!(
            futures::executor::block_on(limited),
            Err(Error::Panicked { message, .. }) if message == "failed in time"
        ));
    }
    let error = Unfinished::ready(1).timeout(Duration::ZERO).result();
    assert!(error == Ok(1) || matches!(error, Err(Error::TimedOut { .. })));
}

#[test]
fn cancelling_a_derived_handle_cancels_its_inputs_within_a_second() {
    watchdog(LIMIT, || {
        for mode in MODES {
            // map, then (waiting on its input), timeout, join_all
            type Derive = fn(Unfinished<u32>) -> Unfinished<u32>;
            let derived: [(&str, Derive); 4] = [
                ("map", |h| h.map(|n| n + 1)),
                ("then", |h| h.then(Unfinished::ready)),
                ("timeout", |h| h.timeout(LIMIT).map(Result::unwrap)),
                ("join_all", |h| unsync::join_all(vec![h]).map(|v| v[0])),
            ];
            for (what, derive) in derived {
                let (task, stopped) = running(mode);
                let input = task.clone();
                let derived = derive(task);
                assert!(derived.cancel());
                assert!(matches!(
                    derived.catch().result(),
                    Err(Error::Cancelled { .. })
                ));
                assert!(
                    matches!(input.catch().result(), Err(Error::Cancelled { .. })),
                    "{what} {mode:?}"
                );
                assert_stops_within_a_second(&stopped, &format!("{what} {mode:?}"));
            }
            // then, waiting on the task its continuation started
            let (started_tx, started) = mpsc::channel();
            let (stopped_tx, stopped) = mpsc::channel();
            let chained =
                Unfinished::ready(()).then(move |()| until_cancelled(mode, started_tx, stopped_tx));
            started.recv_timeout(LIMIT).unwrap();
            assert!(chained.cancel());
            assert_stops_within_a_second(&stopped, &format!("then's continuation {mode:?}"));
        }
    });
}

/// Counts, on drop, that a task's arguments are gone: it ran, or it was dropped unrun.
struct Gone(Counter);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.add(1);
    }
}

#[unsync]
async fn stress_async(i: usize, runs: Arc<Vec<AtomicU8>>, _gone: Gone) -> usize {
    tokio::task::yield_now().await;
    runs[i].fetch_add(1, Ordering::SeqCst);
    i
}

#[unsync]
fn stress_thread(i: usize, runs: Arc<Vec<AtomicU8>>, _gone: Gone) -> usize {
    runs[i].fetch_add(1, Ordering::SeqCst);
    i
}

#[unsync(parallel)]
fn stress_parallel(i: usize, runs: Arc<Vec<AtomicU8>>, _gone: Gone) -> usize {
    runs[i].fetch_add(1, Ordering::SeqCst);
    i
}

const STRESS: usize = 10_000;

struct Stress {
    handles: Vec<Unfinished<usize>>,
    /// `Some(true)`: cancelled before it finished; `Some(false)`: cancel came too late.
    cancelled: Vec<Option<bool>>,
    runs: Arc<Vec<AtomicU8>>,
    gone: Counter,
}

/// 10,000 tasks over the three modes (some behind a `map`), about a third of them cancelled
/// at random (seeded) moments while the others run.
fn stress(seed: u64) -> Stress {
    let mut rng = Rng::seeded(seed);
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..STRESS).map(|_| AtomicU8::new(0)).collect());
    let gone = Counter::default();
    let mut handles = Vec::with_capacity(STRESS);
    let mut cancelled = vec![None; STRESS];
    let mut to_cancel = Vec::new();
    for i in 0..STRESS {
        let guard = Gone(gone.clone());
        let handle = match i % 3 {
            0 => stress_async(i, runs.clone(), guard),
            1 => stress_thread(i, runs.clone(), guard),
            _ => stress_parallel(i, runs.clone(), guard),
        };
        let handle = if i % 7 == 0 {
            handle.map(|n| n)
        } else {
            handle
        };
        if rng.chance(33) {
            to_cancel.push((i, handle.clone()));
        }
        handles.push(handle);
        // Cancel some of the chosen ones at once (queued), the others later (running or done).
        if rng.chance(20) {
            if let Some((j, clone)) = to_cancel.pop() {
                cancelled[j] = Some(clone.cancel());
            }
        }
    }
    for (j, clone) in to_cancel {
        cancelled[j] = Some(clone.cancel());
    }
    Stress {
        handles,
        cancelled,
        runs,
        gone,
    }
}

impl Stress {
    /// Check one outcome against the cancellation made, and count it.
    fn check(&self, i: usize, outcome: &Result<usize, Error>) {
        match (self.cancelled[i], outcome) {
            (Some(true), Err(Error::Cancelled { .. })) => {}
            (None | Some(false), Ok(n)) => {
                assert_eq!(*n, i);
                assert_eq!(self.runs[i].load(Ordering::SeqCst), 1, "task {i}");
            }
            (c, o) => panic!("task {i}: cancel returned {c:?}, outcome {o:?}"),
        }
    }

    /// After every task's arguments are gone, none ran twice.
    fn finish(self) {
        self.gone.wait_for(STRESS);
        for (i, runs) in self.runs.iter().enumerate() {
            assert!(runs.load(Ordering::SeqCst) <= 1, "task {i} ran twice");
        }
        let cancelled = self.cancelled.iter().filter(|c| **c == Some(true)).count();
        assert!(
            cancelled > 1000,
            "the seed should cancel many ({cancelled})"
        );
    }
}

#[test]
fn ten_thousand_through_join_all_with_random_cancellations() {
    watchdog(LIMIT, || {
        let mut run = stress(0x5eed_0001);
        let handles = std::mem::take(&mut run.handles);
        let outcomes = unsync::join_all(handles.into_iter().map(Unfinished::catch)).result();
        assert_eq!(outcomes.len(), STRESS);
        for (i, outcome) in outcomes.iter().enumerate() {
            run.check(i, outcome);
        }
        run.finish();
    });
}

#[test]
fn ten_thousand_through_as_completed_with_random_cancellations() {
    watchdog(LIMIT, || {
        let mut run = stress(0x5eed_0002);
        let handles = std::mem::take(&mut run.handles);
        // Tag each outcome with its index, so that completion order does not matter.
        let tagged = handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.catch().map(move |outcome| (i, outcome)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut seen = vec![false; STRESS];
        rt.block_on(async {
            let mut done = unsync::as_completed(tagged);
            while let Some((i, outcome)) = done.next().await {
                assert!(!seen[i], "task {i} yielded twice");
                seen[i] = true;
                run.check(i, &outcome);
            }
        });
        assert!(seen.iter().all(|s| *s), "nothing lost");
        run.finish();
    });
}
