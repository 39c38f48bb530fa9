//! Model check of the completion cell with loom: every interleaving of completion,
//! cancellation, `set_abort`, waiting, cloning and dropping readers, on loom's `Mutex` and
//! atomics (see `sync`). A reader that is never woken shows up as a deadlock. The models are
//! small (at most three threads, a few lock sections each), so the search is exhaustive, with
//! no preemption bound, in a few seconds.
//!
//! Run with
//! `RUSTFLAGS="--cfg unsync_loom" CARGO_TARGET_DIR=target/loom cargo test -p unsync-core --release --lib loom`.
//!
//! Also owns the two stand-ins the cell uses under the model: [`Probe`] (what an [`Abort`] runs,
//! recording that it ran) and [`count_report`] (what `report::unobserved` does under loom, so
//! that "reported exactly once" can be checked).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::AtomicUsize;
use loom::thread;

use super::{Abort, CloneFn, Completer, Completion, NO_SLOT, State};
use crate::error::Error;
use crate::handle::sync::{Ordering::SeqCst, lock};

loom::lazy_static! {
    /// Failures reported as unobserved in the current execution (loom resets it between them).
    static ref REPORTS: AtomicUsize = AtomicUsize::new(0);
}

/// `report::unobserved` under loom.
pub(crate) fn count_report(error: &Error) {
    if !matches!(error, Error::Cancelled { .. }) {
        REPORTS.fetch_add(1, SeqCst);
    }
}

fn reports() -> usize {
    REPORTS.load(SeqCst)
}

/// An abort handle that records whether it ran and that it was released.
pub(crate) struct Probe(Arc<ProbeCounts>);

#[derive(Default)]
struct ProbeCounts {
    runs: AtomicUsize,
    drops: AtomicUsize,
}

impl Probe {
    pub(crate) fn run(self) {
        self.0.runs.fetch_add(1, SeqCst);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, SeqCst);
    }
}

const TASK: &str = "model";

fn cancelled() -> Error {
    Error::Cancelled { task: TASK }
}

fn panicked() -> Error {
    Error::Panicked {
        task: TASK,
        message: "boom".into(),
        site: None,
    }
}

/// Read the outcome as `.await` does, parking (in loom's sense) until woken.
fn read<T>(cell: &Completion<T>) -> Result<T, Error> {
    let mut slot = NO_SLOT;
    read_in(cell, &mut slot)
}

/// [`read`] by a reader that may already hold a waker slot.
fn read_in<T>(cell: &Completion<T>, slot: &mut usize) -> Result<T, Error> {
    loom::future::block_on(poll_fn(|cx| cell.poll_outcome(cx, slot)))
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Once the last reader is gone, the outcome was taken or dropped: nothing is left behind.
fn assert_released<T>(cell: &Completion<T>) {
    let inner = lock(&cell.inner);
    assert_eq!(inner.readers, 0);
    assert!(
        matches!(inner.state, State::Taken),
        "outcome left in the cell"
    );
    assert!(
        inner.abort.is_none(),
        "abort handle kept after the last reader"
    );
}

/// The task completes while the reader cancels and the spawner hands over the abort handle:
/// exactly one of completion and cancellation wins, the reader sees the winner's outcome, the
/// abort runs only if cancellation won (also when it came before `set_abort`), and the handle
/// is released once the reader has read.
#[test]
fn loom_complete_races_cancel_and_set_abort() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let counts = Arc::new(ProbeCounts::default());
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Ok(7)));
        let spawner = {
            let (cell, probe) = (cell.clone(), Probe(counts.clone()));
            thread::spawn(move || cell.set_abort(Abort::new(move || probe.run())))
        };

        let won = cell.cancel(cancelled());
        let outcome = read(&cell);
        task.join().unwrap();
        spawner.join().unwrap();

        if won {
            assert_eq!(outcome, Err(cancelled()));
        } else {
            assert_eq!(outcome, Ok(7));
        }
        assert_eq!(cell.is_cancelled(), won);
        assert_eq!(counts.runs.load(SeqCst), usize::from(won));
        assert_eq!(counts.drops.load(SeqCst), 1);
        assert_released(&cell);
        assert_eq!(reports(), 0);
    });
}

/// A failure races the only reader going away: it is reported exactly once, whichever side
/// sees the other (complete with no reader left, or the last reader dropping an unread one).
/// The reader had registered a waker first, which its drop releases.
#[test]
fn loom_failure_races_last_reader_drop() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Err(panicked())));

        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut slot = NO_SLOT;
        let polled = cell.poll_outcome(&mut Context::from_waker(&waker), &mut slot);
        if polled.is_ready() {
            // Read it: then it was observed and must not be reported.
            task.join().unwrap();
            assert_eq!(reports(), 0);
            assert_released(&cell);
            return;
        }
        cell.drop_reader(slot);
        task.join().unwrap();

        assert_eq!(reports(), 1);
        assert_released(&cell);
    });
}

/// A failure races a cancellation followed by the reader's drop: reported once if the failure
/// came first, never if the cancellation did (cancelling is the reader's own decision).
#[test]
fn loom_failure_races_cancel_then_drop() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Err(panicked())));

        let won = cell.cancel(cancelled());
        cell.drop_reader(NO_SLOT);
        task.join().unwrap();

        assert_eq!(reports(), usize::from(!won));
        assert_released(&cell);
    });
}

/// A reader polls twice (re-polled before the task is done, as executors may) while the task
/// completes: a `Pending` poll left exactly one waker behind, which the completion woke once.
#[test]
fn loom_registered_waker_is_woken_once() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Ok(7)));

        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = NO_SLOT;
        let mut outcome = cell.poll_outcome(&mut cx, &mut slot);
        let registered = outcome.is_pending();
        if registered {
            outcome = cell.poll_outcome(&mut cx, &mut slot);
        }
        task.join().unwrap();

        assert_eq!(wakes.0.load(SeqCst), usize::from(registered));
        let outcome = match outcome {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => read_in(&cell, &mut slot),
        };
        assert_eq!(outcome, Ok(7));
        assert_released(&cell);
    });
}

/// A reader waits while a clone of its handle cancels the task and goes away, and the task
/// completes: the reader is woken whichever wins, and sees the winner's outcome.
#[test]
fn loom_cancel_wakes_waiting_reader() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        cell.add_reader(CloneFn::Value(|v| *v));
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Ok(7)));
        let canceller = {
            let cell = cell.clone();
            thread::spawn(move || {
                let won = cell.cancel(cancelled());
                cell.drop_reader(NO_SLOT);
                won
            })
        };

        let outcome = read(&cell);
        let won = canceller.join().unwrap();
        task.join().unwrap();

        assert_eq!(outcome, if won { Err(cancelled()) } else { Ok(7) });
        assert_released(&cell);
    });
}

/// `wait_timeout` and `.result()`'s path: wait for readiness on a slot of its own, release it,
/// then take the outcome; the task completes meanwhile. Never hangs (loom reports a reader
/// left parked as a deadlock).
#[test]
fn loom_wait_ready_then_read() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Ok(7)));

        let mut wait_slot = NO_SLOT;
        loom::future::block_on(poll_fn(|cx| cell.poll_ready(cx, &mut wait_slot)));
        cell.unregister(&mut wait_slot);
        assert_eq!(read(&cell), Ok(7));
        task.join().unwrap();
        assert_released(&cell);
    });
}

/// A value that counts the copies made of it.
struct Tracked {
    copies: Arc<AtomicUsize>,
}

fn copy(value: &Tracked) -> Tracked {
    value.copies.fetch_add(1, SeqCst);
    Tracked {
        copies: value.copies.clone(),
    }
}

/// Two readers (a handle and its clone, on two threads) wait while the task completes: each
/// gets the value, one of them a copy, the last one the original, and nothing stays behind.
#[test]
fn loom_clone_readers_race_completion() {
    loom::model(|| {
        let cell = Completion::<Tracked>::pending(TASK);
        let copies = Arc::new(AtomicUsize::new(0));
        cell.add_reader(CloneFn::Value(copy));
        let completer = Completer::new(cell.clone());
        let task = {
            let copies = copies.clone();
            thread::spawn(move || completer.complete(Ok(Tracked { copies })))
        };
        let clone = {
            let cell = cell.clone();
            thread::spawn(move || read(&cell).is_ok())
        };

        let mine = read(&cell);
        assert!(mine.is_ok());
        assert!(clone.join().unwrap());
        task.join().unwrap();

        assert_eq!(copies.load(SeqCst), 1, "one reader copies, the last takes");
        assert_released(&cell);
    });
}

/// A failure that one reader reads is never reported, however its clone's drop interleaves
/// with the completion.
#[test]
fn loom_failure_seen_by_one_reader_is_not_reported() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        cell.add_reader(CloneFn::Value(|v| *v));
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Err(panicked())));
        let clone = {
            let cell = cell.clone();
            thread::spawn(move || cell.drop_reader(NO_SLOT))
        };

        assert_eq!(read(&cell), Err(panicked()));
        clone.join().unwrap();
        task.join().unwrap();

        assert_eq!(reports(), 0);
        assert_released(&cell);
    });
}

/// The executor drops the task without completing it (aborted, its runtime gone) while two
/// readers wait: both resolve to `Cancelled`, which is never reported.
#[test]
fn loom_dropped_completer_cancels_waiting_readers() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        cell.add_reader(CloneFn::Value(|v| *v));
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || drop(completer));
        let clone = {
            let cell = cell.clone();
            thread::spawn(move || read(&cell))
        };

        assert_eq!(read(&cell), Err(cancelled()));
        assert_eq!(clone.join().unwrap(), Err(cancelled()));
        task.join().unwrap();

        assert_eq!(reports(), 0);
        assert_released(&cell);
    });
}

/// With `cancel_on_drop`, a failure races the last reader going away: either the task finished
/// first (its failure is reported once, the abort never runs) or the drop came first (the task
/// is cancelled: the abort runs once, nothing is reported, the late outcome is dropped).
#[test]
fn loom_cancel_on_drop_races_completion() {
    loom::model(|| {
        let cell = Completion::<u32>::pending(TASK);
        let counts = Arc::new(ProbeCounts::default());
        let probe = Probe(counts.clone());
        cell.set_abort(Abort::new(move || probe.run()));
        cell.cancel_on_drop();
        let completer = Completer::new(cell.clone());
        let task = thread::spawn(move || completer.complete(Err(panicked())));

        cell.drop_reader(NO_SLOT);
        task.join().unwrap();

        let cancelled = counts.runs.load(SeqCst) == 1;
        assert_eq!(cell.is_cancelled(), cancelled);
        assert_eq!(reports(), usize::from(!cancelled));
        assert_eq!(counts.drops.load(SeqCst), 1);
        assert_released(&cell);
    });
}
