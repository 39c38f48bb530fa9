//! The completion cell: where one task's outcome lands, who waits for it, who may still read
//! it, and how the task is stopped when it is cancelled.
//!
//! A cell is shared (`Arc`) by the executor side (a [`Completer`]) and by every handle
//! ([`Unfinished`](crate::Unfinished)) that can read it. Thread-pool, rayon and process tasks
//! and promises always have one; an async task gets one only when its handle needs shared state
//! (see `lone_reader`). All of its state sits behind one
//! uncontended mutex; `done` and `cancelled` are mirrored in atomics so that `is_done` and
//! `is_cancelled` never lock.
//!
//! The state machine: `Pending` → `Done(outcome)` (by completion or by cancellation, whichever
//! comes first; the loser's outcome is dropped) → `Taken` (when the last reader takes the
//! value, or when nobody is left to read it).

use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::handle::sync::{Arc, AtomicBool, Mutex, Ordering, lock};

#[cfg(all(test, unsync_loom))]
mod loom_tests;

// The loom model counts reports instead, to check that each failure is reported exactly once.
#[cfg(not(all(test, unsync_loom)))]
use crate::report::unobserved;
#[cfg(all(test, unsync_loom))]
use loom_tests::count_report as unobserved;

/// How a completion stops the work behind it when it is cancelled, given by the executor that
/// runs the task (abort a tokio task, kill a worker process). Run at most once; dropped unrun
/// when the task finishes first. It may also say how a waiter can help the task finish
/// ([`Lead`]).
pub(crate) struct Abort(Stopping);

enum Stopping {
    /// Any closure.
    Boxed(Box<dyn FnOnce(Stop) + Send>),
    /// `stop(key)`: no allocation (the process pool's calls: `cancel(id)`).
    Keyed {
        stop: fn(u64),
        key: u64,
        lead: Option<Lead>,
    },
}

impl Abort {
    pub(crate) fn new(stop: impl FnOnce() + Send + 'static) -> Abort {
        Abort(Stopping::Boxed(Box::new(move |_| stop())))
    }

    /// An abort that is told why the task stops (the async runtime's, for `stats`).
    pub(crate) fn knowing_why(stop: impl FnOnce(Stop) + Send + 'static) -> Abort {
        Abort(Stopping::Boxed(Box::new(stop)))
    }

    /// `stop(key)`, and maybe how a thread blocked on the cell can help the task finish.
    pub(crate) fn keyed(stop: fn(u64), key: u64, lead: Option<Lead>) -> Abort {
        Abort(Stopping::Keyed { stop, key, lead })
    }

    fn lead(&self) -> Option<Lead> {
        match self.0 {
            Stopping::Keyed { lead, .. } => lead,
            Stopping::Boxed(_) => None,
        }
    }

    pub(crate) fn run(self) {
        self.run_because(Stop::Cancelled)
    }

    pub(crate) fn run_because(self, why: Stop) {
        match self.0 {
            Stopping::Boxed(stop) => stop(why),
            Stopping::Keyed { stop, key, .. } => stop(key),
        }
    }
}

/// How a thread blocked on a cell can do the work that completes it, instead of waiting for
/// another thread to (the process pool's: read the worker's answer itself, see
/// `exec::process::pool::lead`). Given by the executor; `run(key, done)` returns once `done()`
/// holds or this thread cannot help any more, and the caller then waits as usual.
#[derive(Clone, Copy)]
pub(crate) struct Lead {
    pub(crate) run: fn(u64, &dyn Fn() -> bool),
    pub(crate) key: u64,
}

/// Why a task was stopped before it finished: `stats` counts a timeout as a failure, any other
/// stop as a cancellation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stop {
    Cancelled,
    TimedOut,
}

impl Stop {
    /// The stop that resolves a handle to `reason`.
    pub(crate) fn of(reason: &Error) -> Stop {
        match reason {
            Error::TimedOut { .. } => Stop::TimedOut,
            _ => Stop::Cancelled,
        }
    }
}

/// How a second reader gets its own copy of the value (set when a handle is cloned).
enum CloneFn<T> {
    Value(fn(&T) -> T),
    Outcome(fn(&Result<T, Error>) -> Result<T, Error>),
}

enum State<T> {
    Pending,
    Done(Result<T, Error>),
    Taken,
}

/// Wakers of the readers currently waiting, one slot per reader.
///
/// A reader keeps its slot index and overwrites its own waker on every poll, so a handle polled
/// many times (or moved between tasks) never piles up wakers.
struct Waiters {
    first: Option<Waker>,
    rest: Vec<Option<Waker>>,
}

/// A reader that has not registered a waker yet.
pub(crate) const NO_SLOT: usize = usize::MAX;

impl Waiters {
    const fn new() -> Waiters {
        Waiters {
            first: None,
            rest: Vec::new(),
        }
    }

    fn entry(&mut self, slot: usize) -> Option<&mut Option<Waker>> {
        match slot {
            0 => Some(&mut self.first),
            NO_SLOT => None,
            n => self.rest.get_mut(n - 1),
        }
    }

    fn register(&mut self, slot: &mut usize, waker: &Waker) {
        if let Some(entry) = self.entry(*slot) {
            match entry {
                Some(old) if old.will_wake(waker) => {}
                _ => *entry = Some(waker.clone()),
            }
            return;
        }
        if self.first.is_none() {
            self.first = Some(waker.clone());
            *slot = 0;
        } else if let Some(i) = self.rest.iter().position(Option::is_none) {
            self.rest[i] = Some(waker.clone());
            *slot = i + 1;
        } else {
            self.rest.push(Some(waker.clone()));
            *slot = self.rest.len();
        }
    }

    fn release(&mut self, slot: usize) -> Option<Waker> {
        self.entry(slot).and_then(Option::take)
    }

    fn wake_all(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest.into_iter().flatten() {
            w.wake();
        }
    }
}

struct Inner<T> {
    state: State<T>,
    waiters: Waiters,
    /// Handles that may still read the outcome.
    readers: usize,
    /// Whether some reader already received the outcome (so a failure was seen).
    observed: bool,
    clone_fn: Option<CloneFn<T>>,
    /// Cancel the task when the last reader goes away before it finished
    /// ([`cancel_on_drop`](crate::Unfinished::cancel_on_drop)).
    cancel_on_drop: bool,
    abort: Option<Abort>,
}

/// One task's completion cell. See the module docs.
///
/// `payload` is what the executor keeps in the same allocation: the blocking pool queues the
/// cell itself, with the job inside, so that a task costs one allocation, not two.
pub(crate) struct Completion<T, P = ()> {
    task: &'static str,
    done: AtomicBool,
    cancelled: AtomicBool,
    /// Cancelled by a timeout (written and read under the `inner` lock).
    timed_out: AtomicBool,
    inner: Mutex<Inner<T>>,
    payload: P,
}

impl<T> Completion<T> {
    /// A pending cell with one reader (the handle about to be returned).
    pub(crate) fn pending(task: &'static str) -> Arc<Completion<T>> {
        Completion::pending_with(task, ())
    }

    /// A finished cell with one reader.
    pub(crate) fn finished(task: &'static str, outcome: Result<T, Error>) -> Arc<Completion<T>> {
        let cell = Completion::pending(task);
        cell.done.store(true, Ordering::Release);
        lock(&cell.inner).state = State::Done(outcome);
        cell
    }
}

impl<T, P> Completion<T, P> {
    /// A pending cell with one reader, carrying `payload`.
    pub(crate) fn pending_with(task: &'static str, payload: P) -> Arc<Completion<T, P>> {
        Arc::new(Completion {
            task,
            done: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                state: State::Pending,
                waiters: Waiters::new(),
                readers: 1,
                observed: false,
                clone_fn: None,
                abort: None,
                cancel_on_drop: false,
            }),
            payload,
        })
    }

    /// What the executor keeps in the cell.
    pub(crate) fn payload(&self) -> &P {
        &self.payload
    }

    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Why a cancelled cell was stopped. Locks: for the executor's rare paths only.
    pub(crate) fn stopped_by(&self) -> Stop {
        let _inner = lock(&self.inner);
        if self.timed_out.load(Ordering::Relaxed) {
            Stop::TimedOut
        } else {
            Stop::Cancelled
        }
    }

    /// The flag a running task reads through [`is_cancelled`](crate::is_cancelled).
    pub(crate) fn cancelled_flag(&self) -> &AtomicBool {
        &self.cancelled
    }

    /// Store the outcome unless the cell was cancelled first. Returns false when the outcome was
    /// dropped because the cell was already done.
    pub(crate) fn complete(&self, outcome: Result<T, Error>) -> bool {
        let (waiters, abort, unread) = {
            let mut inner = lock(&self.inner);
            if !matches!(inner.state, State::Pending) {
                return false;
            }
            let unread = if inner.readers == 0 {
                // Nobody can read it any more: report a failure now, drop a value.
                if let Err(e) = &outcome {
                    unobserved(e);
                }
                inner.state = State::Taken;
                Some(outcome)
            } else {
                inner.state = State::Done(outcome);
                None
            };
            self.done.store(true, Ordering::Release);
            (
                std::mem::replace(&mut inner.waiters, Waiters::new()),
                inner.abort.take(),
                unread,
            )
        };
        drop((abort, unread));
        waiters.wake_all();
        true
    }

    /// Resolve the cell to `reason` and stop the work behind it. Returns false only when the
    /// task had already finished by itself.
    pub(crate) fn cancel(&self, reason: Error) -> bool {
        let why = Stop::of(&reason);
        let (waiters, abort) = {
            let mut inner = lock(&self.inner);
            if !matches!(inner.state, State::Pending) {
                return self.cancelled.load(Ordering::Relaxed);
            }
            if why == Stop::TimedOut {
                self.timed_out.store(true, Ordering::Relaxed);
            }
            inner.state = if inner.readers == 0 {
                State::Taken
            } else {
                State::Done(Err(reason))
            };
            self.cancelled.store(true, Ordering::Relaxed);
            self.done.store(true, Ordering::Release);
            (
                std::mem::replace(&mut inner.waiters, Waiters::new()),
                inner.abort.take(),
            )
        };
        waiters.wake_all();
        if let Some(abort) = abort {
            abort.run_because(why);
        }
        true
    }

    /// Remember how to stop the work. If the cell was cancelled meanwhile, stop it now.
    pub(crate) fn set_abort(&self, abort: Abort) {
        let mut inner = lock(&self.inner);
        if matches!(inner.state, State::Pending) {
            inner.abort = Some(abort);
        } else {
            let cancelled = self.is_cancelled();
            drop(inner);
            if cancelled {
                abort.run_because(self.stopped_by());
            }
        }
    }

    /// How a thread blocked on the cell can do the work that finishes it, if its executor
    /// allows that (see [`Lead`]).
    fn lead(&self) -> Option<Lead> {
        lock(&self.inner).abort.as_ref().and_then(Abort::lead)
    }

    /// A new reader (a cloned handle). `clone_fn` is how it will copy the value.
    fn add_reader(&self, clone_fn: CloneFn<T>) {
        let mut inner = lock(&self.inner);
        inner.readers += 1;
        inner.clone_fn.get_or_insert(clone_fn);
    }

    /// From now on, cancel the task when the last reader goes away before it finished.
    pub(crate) fn cancel_on_drop(&self) {
        lock(&self.inner).cancel_on_drop = true;
    }

    /// A reader goes away without reading. The last one reports a failure nobody saw, or
    /// cancels a task still pending if asked to ([`cancel_on_drop`](Self::cancel_on_drop)).
    pub(crate) fn drop_reader(&self, slot: usize) {
        let (waker, unread, cancel) = {
            let mut inner = lock(&self.inner);
            let waker = inner.waiters.release(slot);
            inner.readers -= 1;
            let mut unread = None;
            let mut cancel = false;
            if inner.readers == 0 {
                match &inner.state {
                    State::Done(outcome) => {
                        if let Err(e) = outcome {
                            if !inner.observed {
                                unobserved(e);
                            }
                        }
                        unread = Some(std::mem::replace(&mut inner.state, State::Taken));
                    }
                    State::Pending => cancel = inner.cancel_on_drop,
                    State::Taken => {}
                }
            }
            (waker, unread, cancel)
        };
        drop((waker, unread));
        if cancel {
            // With no reader left, the cancelled state is `Taken`: nothing to report or read.
            self.cancel(Error::Cancelled { task: self.task });
        }
    }

    /// Drop a waker registered by a reader that stopped waiting but keeps its handle.
    pub(crate) fn unregister(&self, slot: &mut usize) {
        let waker = lock(&self.inner).waiters.release(*slot);
        *slot = NO_SLOT;
        drop(waker);
    }

    /// Ready once the cell is done; otherwise register `cx`'s waker in `slot`.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        let mut inner = lock(&self.inner);
        if matches!(inner.state, State::Pending) {
            inner.waiters.register(slot, cx.waker());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Take the outcome if the cell is done (copying it when other readers remain), else
    /// register `cx`'s waker in `slot`. A reader that gets `Ready` has stopped being a reader.
    pub(crate) fn poll_outcome(
        &self,
        cx: &mut Context<'_>,
        slot: &mut usize,
    ) -> Poll<Result<T, Error>> {
        let mut inner = lock(&self.inner);
        let outcome = match &inner.state {
            State::Pending => {
                inner.waiters.register(slot, cx.waker());
                return Poll::Pending;
            }
            State::Taken => unreachable!("an unsync handle was read twice"),
            State::Done(outcome) if inner.readers > 1 => match inner.clone_fn.as_ref() {
                Some(CloneFn::Value(f)) => match outcome {
                    Ok(v) => Ok(f(v)),
                    Err(e) => Err(e.clone()),
                },
                Some(CloneFn::Outcome(f)) => f(outcome),
                None => unreachable!("several readers without a way to copy the value"),
            },
            State::Done(_) => match std::mem::replace(&mut inner.state, State::Taken) {
                State::Done(outcome) => outcome,
                _ => unreachable!(),
            },
        };
        inner.readers -= 1;
        inner.observed = true;
        let waker = inner.waiters.release(*slot);
        *slot = NO_SLOT;
        drop(inner);
        drop(waker);
        Poll::Ready(outcome)
    }
}

/// A readable view of a cell, yielding `T`: the cell's value type itself (the plain handle), or
/// `Result<V, Error>` over a cell of `V` (a handle after [`catch`](crate::Unfinished::catch)).
pub(crate) trait Source<T>: Send + Sync {
    fn task(&self) -> &'static str;
    fn is_done(&self) -> bool;
    fn cancel(&self, reason: Error) -> bool;
    fn poll_outcome(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<Result<T, Error>>;
    fn poll_ready(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<()>;
    fn unregister(&self, slot: &mut usize);
    fn add_reader(&self, clone: fn(&T) -> T);
    fn drop_reader(&self, slot: usize);
    fn cancel_on_drop(&self);
    /// The same cell seen as `Result<T, Error>`, when that view exists without a new task.
    fn caught(self: Arc<Self>) -> Option<Arc<dyn Source<Result<T, Error>>>>;
    /// How a thread blocked on the cell can do the work that finishes it, where the executor
    /// allows that (see [`Lead`]).
    fn lead(&self) -> Option<Lead>;
}

impl<T: Send + 'static, P: Send + Sync + 'static> Source<T> for Completion<T, P> {
    fn task(&self) -> &'static str {
        Completion::task(self)
    }
    fn is_done(&self) -> bool {
        Completion::is_done(self)
    }
    fn cancel(&self, reason: Error) -> bool {
        Completion::cancel(self, reason)
    }
    fn poll_outcome(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<Result<T, Error>> {
        Completion::poll_outcome(self, cx, slot)
    }
    fn poll_ready(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<()> {
        Completion::poll_ready(self, cx, slot)
    }
    fn unregister(&self, slot: &mut usize) {
        Completion::unregister(self, slot)
    }
    fn add_reader(&self, clone: fn(&T) -> T) {
        Completion::add_reader(self, CloneFn::Value(clone))
    }
    fn drop_reader(&self, slot: usize) {
        Completion::drop_reader(self, slot)
    }
    fn cancel_on_drop(&self) {
        Completion::cancel_on_drop(self)
    }
    fn caught(self: Arc<Self>) -> Option<Arc<dyn Source<Result<T, Error>>>> {
        Some(self)
    }
    fn lead(&self) -> Option<Lead> {
        Completion::lead(self)
    }
}

impl<T: Send + 'static, P: Send + Sync + 'static> Source<Result<T, Error>> for Completion<T, P> {
    fn task(&self) -> &'static str {
        Completion::task(self)
    }
    fn is_done(&self) -> bool {
        Completion::is_done(self)
    }
    fn cancel(&self, reason: Error) -> bool {
        Completion::cancel(self, reason)
    }
    fn poll_outcome(
        &self,
        cx: &mut Context<'_>,
        slot: &mut usize,
    ) -> Poll<Result<Result<T, Error>, Error>> {
        Completion::poll_outcome(self, cx, slot).map(Ok)
    }
    fn poll_ready(&self, cx: &mut Context<'_>, slot: &mut usize) -> Poll<()> {
        Completion::poll_ready(self, cx, slot)
    }
    fn unregister(&self, slot: &mut usize) {
        Completion::unregister(self, slot)
    }
    fn add_reader(&self, clone: fn(&Result<T, Error>) -> Result<T, Error>) {
        Completion::add_reader(self, CloneFn::Outcome(clone))
    }
    fn drop_reader(&self, slot: usize) {
        Completion::drop_reader(self, slot)
    }
    fn cancel_on_drop(&self) {
        Completion::cancel_on_drop(self)
    }
    fn caught(self: Arc<Self>) -> Option<Arc<dyn Source<Result<Result<T, Error>, Error>>>> {
        None
    }
    fn lead(&self) -> Option<Lead> {
        Completion::lead(self)
    }
}

/// The executor's side of a cell: completes it exactly once. Dropped without completing (the
/// task was aborted, its executor went away), it resolves the cell to [`Error::Cancelled`] so
/// that no reader waits forever.
pub(crate) struct Completer<T> {
    cell: Option<Arc<Completion<T>>>,
}

impl<T> Completer<T> {
    pub(crate) fn new(cell: Arc<Completion<T>>) -> Completer<T> {
        Completer { cell: Some(cell) }
    }

    pub(crate) fn cell(&self) -> &Completion<T> {
        self.cell.as_ref().expect("completer used after completion")
    }

    pub(crate) fn complete(mut self, outcome: Result<T, Error>) {
        if let Some(cell) = self.cell.take() {
            cell.complete(outcome);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            let task = cell.task;
            cell.complete(Err(Error::Cancelled { task }));
        }
    }
}
