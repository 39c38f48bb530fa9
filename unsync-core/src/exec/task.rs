//! Running a task body: panics are caught and become [`Error::Panicked`]; while the body
//! runs, [`is_cancelled`] reads the flag of its own cell (thread-pool and rayon tasks), and the
//! span carried from the call site (see `context`) is entered.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Error;
use crate::exec::context::Carried;
use crate::exec::inflight::Token;
use crate::exec::panic_site;
use crate::exec::stats::{self, Mode};
use crate::handle::completion::{Completion, Stop};
use crate::handle::lone_reader::Outcome;
use crate::handle::sync::{AtomicBool, Ordering};

// The cancellation flag of the task running on this thread. A scoped key, not a raw pointer:
// it holds a borrow only for the extent of `running`, and `set` restores the outer task's flag
// when a nested one ends (rayon runs other jobs on a thread while it waits).
scoped_tls::scoped_thread_local!(static CURRENT: AtomicBool);

thread_local! {
    /// How many unsync task bodies are running on this thread's stack (more than one when a
    /// rayon worker runs other jobs while it waits).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How many unsync task bodies are running on this thread's stack (0 outside any task).
pub(crate) fn depth() -> usize {
    DEPTH.with(Cell::get)
}

/// Whether the unsync task running on this thread (or polled by it) has been cancelled.
///
/// A running thread-pool or rayon task cannot be stopped from outside; it can look at this flag
/// and return early. An async task has no need for it (cancelling drops the task at its next
/// `.await`), and there it stays `false`, as it does outside any unsync task.
///
/// ```
/// use std::time::Duration;
/// let handle = unsync::spawn_blocking(|| {
///     let mut rounds = 0;
///     while !unsync::is_cancelled() {
///         rounds += 1;
///         std::thread::sleep(Duration::from_millis(1));
///     }
///     rounds
/// });
/// assert!(handle.cancel());
/// assert!(!unsync::is_cancelled());
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.is_set() && CURRENT.with(|flag| flag.load(Ordering::Relaxed))
}

/// Run `body` as the task whose cancellation flag is `flag`: [`is_cancelled`] reads it, and
/// [`depth`] counts it, until `body` returns or unwinds.
fn running<R>(flag: &AtomicBool, body: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    CURRENT.set(flag, body)
}

/// Run a synchronous task body to completion and complete `cell`, unless it was cancelled while
/// queued. (Its executor runs every job it was given, so no completer guards the cell.)
/// Counted in `stats` as a task of `mode` submitted at `since`.
pub(crate) fn run<T, P>(
    cell: &Completion<T, P>,
    carried: &Carried,
    mode: Mode,
    since: u32,
    body: impl FnOnce() -> T,
) {
    if cell.is_cancelled() {
        stats::ended(mode, stats::Outcome::stopped(cell.stopped_by()), None);
        return;
    }
    let started = stats::started(mode, since);
    let task = cell.task();
    let outcome = {
        let _span = carried.enter();
        running(cell.cancelled_flag(), || {
            catch_unwind(AssertUnwindSafe(body))
        })
    };
    // Counted before the handle resolves, so that a reader who saw the outcome sees it
    // counted. A cell already done was cancelled while the body ran.
    let ended = match &outcome {
        _ if cell.is_done() => stats::Outcome::stopped(cell.stopped_by()),
        Ok(_) => stats::Outcome::Succeeded,
        Err(_) => stats::Outcome::Failed,
    };
    stats::ended(mode, ended, Some(started));
    cell.complete(
        outcome.map_err(|payload| Error::from_panic(task, &*payload, panic_site::take())),
    );
}

/// How an async task's output becomes its cell's outcome.
pub(crate) trait Finish<O, T> {
    fn finish(output: O) -> Result<T, Error>;
}

/// A plain task: its output is the value.
pub(crate) enum AsValue {}

impl<T> Finish<T, T> for AsValue {
    #[inline]
    fn finish(output: T) -> Result<T, Error> {
        Ok(output)
    }
}

/// A combinator: its output already is an outcome, so an upstream failure propagates as a
/// value, not as a panic.
pub(crate) enum AsOutcome {}

impl<T> Finish<Result<T, Error>, T> for AsOutcome {
    #[inline]
    fn finish(output: Result<T, Error>) -> Result<T, Error> {
        output
    }
}

pin_project_lite::pin_project! {
    /// An async task body as spawned on tokio: its output is the task's outcome (see
    /// `lone_reader`), a panic included.
    ///
    /// Nothing but the body, the task's name and what `stats` needs (8 bytes): tokio allocates
    /// every task's future inline, and a plain `#[unsync] async fn` then fits about the same
    /// allocation as a bare `tokio::spawn` (a 72-byte larger future cost tokio ~12% of its
    /// burst rate here). What a few tasks need besides (a span, an in-flight count) goes in
    /// [`Carrying`].
    pub(crate) struct TaskFuture<F, T, K> {
        #[pin]
        body: F,
        task: &'static str,
        // When the task was submitted, then when it started (`stats::stamp`).
        stamp: u32,
        phase: Counted,
        finish: PhantomData<fn() -> (T, K)>,
    }

    impl<F, T, K> PinnedDrop for TaskFuture<F, T, K> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before it finished: aborted (cancelled), or its runtime went away.
            let this = this.project();
            let stopped = || {
                let timed_out = crate::exec::runtime::take_timed_out();
                stats::Outcome::stopped(if timed_out { Stop::TimedOut } else { Stop::Cancelled })
            };
            match *this.phase {
                Counted::Queued => stats::ended(Mode::Async, stopped(), None),
                Counted::Running => stats::ended(Mode::Async, stopped(), Some(*this.stamp)),
                Counted::Ended | Counted::Not => {}
            }
        }
    }
}

/// Where an async task is in its life, as `stats` counts it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Queued,
    Running,
    Ended,
    /// unsync's own plumbing (a combinator's task): not counted.
    Not,
}

impl<F: Future, T, K: Finish<F::Output, T>> TaskFuture<F, T, K> {
    /// A task counted in `stats` (submitted now) when `counted`.
    pub(crate) fn new(body: F, task: &'static str, counted: bool) -> TaskFuture<F, T, K> {
        let (stamp, phase) = if counted {
            stats::submitted(Mode::Async);
            (stats::stamp(), Counted::Queued)
        } else {
            (0, Counted::Not)
        };
        TaskFuture {
            body,
            task,
            stamp,
            phase,
            finish: PhantomData,
        }
    }
}

impl<F: Future, T, K: Finish<F::Output, T>> Future for TaskFuture<F, T, K> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let this = self.project();
        if *this.phase == Counted::Queued {
            *this.stamp = stats::started(Mode::Async, *this.stamp);
            *this.phase = Counted::Running;
        }
        // An async task is cancelled by dropping it at an `.await`: it has no flag of its own.
        let polled = never_cancelled(|never| {
            running(never, || {
                catch_unwind(AssertUnwindSafe(|| this.body.poll(cx).map(K::finish)))
            })
        });
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(outcome)) => outcome,
            Err(payload) => Err(Error::from_panic(this.task, &*payload, panic_site::take())),
        };
        if *this.phase == Counted::Running {
            *this.phase = Counted::Ended;
            let ended = match &outcome {
                Ok(_) => stats::Outcome::Succeeded,
                Err(_) => stats::Outcome::Failed,
            };
            stats::ended(Mode::Async, ended, Some(*this.stamp));
        }
        Poll::Ready(Outcome::new(outcome))
    }
}

/// Lend `body` the cancellation flag [`is_cancelled`] reads inside an async task: never set.
fn never_cancelled<R>(body: impl FnOnce(&AtomicBool) -> R) -> R {
    #[cfg(not(unsync_loom))]
    {
        static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);
        body(&NEVER_CANCELLED)
    }
    // loom's atomics cannot be built in a `static`; async tasks are outside the model anyway.
    #[cfg(unsync_loom)]
    body(&AtomicBool::new(false))
}

pin_project_lite::pin_project! {
    /// A task that runs inside its call-site span, or is counted as in flight (on a runtime
    /// unsync cannot query) until it ends.
    pub(crate) struct Carrying<F> {
        #[pin]
        inner: F,
        carried: Carried,
        token: Option<Token>,
    }
}

impl<F> Carrying<F> {
    pub(crate) fn new(inner: F, carried: Carried, token: Option<Token>) -> Carrying<F> {
        Carrying {
            inner,
            carried,
            token,
        }
    }
}

impl<F: Future> Future for Carrying<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = {
            let _span = this.carried.enter();
            this.inner.poll(cx)
        };
        if polled.is_ready() {
            drop(this.token.take());
        }
        polled
    }
}

#[cfg(all(test, not(unsync_loom)))]
mod tests {
    use super::*;

    /// A task run nested inside another on one thread (rayon runs jobs while it waits) sees
    /// its own flag, and the outer one's comes back when it ends, even by a panic.
    #[test]
    fn nested_tasks_each_see_their_own_flag() {
        let (outer, inner) = (AtomicBool::new(true), AtomicBool::new(false));
        assert!(!is_cancelled());
        assert_eq!(depth(), 0);
        running(&outer, || {
            assert!(is_cancelled());
            assert_eq!(depth(), 1);
            running(&inner, || {
                assert!(!is_cancelled());
                assert_eq!(depth(), 2);
                inner.store(true, Ordering::Relaxed);
                assert!(is_cancelled());
            });
            outer.store(false, Ordering::Relaxed);
            assert!(!is_cancelled());
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                running(&inner, || std::panic::resume_unwind(Box::new("unwind")))
            }));
            assert!(unwound.is_err());
            assert!(!is_cancelled());
            assert_eq!(depth(), 1);
        });
        assert!(!is_cancelled());
        assert_eq!(depth(), 0);
    }
}
