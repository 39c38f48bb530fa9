//! An async task read by a single handle: tokio's own task keeps the outcome, and the handle
//! reads it through the task's `JoinHandle`.
//!
//! Most async tasks have exactly one reader, so they need no completion cell: no second
//! allocation, no lock, no cache line bounced between the spawning thread and the worker. A
//! burst of `#[unsync] async fn` calls then costs about what bare `tokio::spawn` does. The
//! first time a handle needs shared state (a clone, [`wait_timeout`](crate::Unfinished::wait_timeout))
//! it turns its task into a cell with [`Spawned::into_cell`], forwarding the outcome through a
//! small task that the runtime which spawned the task starts (the [`Forward`] it registered).
//! [`catch`](crate::Unfinished::catch) keeps the lone reader, seen through [`Caught`].

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use tokio::task::JoinHandle;

use crate::error::Error;
use crate::handle::completion::{Abort, Completer, Completion, Source, Stop};
use crate::handle::sync::Arc;

/// An async task's outcome as its tokio task keeps it. Dropped unread (every handle to the task
/// went away), a failure is reported as unobserved.
pub(crate) struct Outcome<T>(Option<Result<T, Error>>);

impl<T> Outcome<T> {
    pub(crate) fn new(outcome: Result<T, Error>) -> Outcome<T> {
        Outcome(Some(outcome))
    }

    /// The outcome, for a reader: it will not be reported.
    fn take(mut self) -> Result<T, Error> {
        self.0.take().expect("an outcome is taken once")
    }
}

impl<T> Drop for Outcome<T> {
    fn drop(&mut self) {
        if let Some(Err(error)) = &self.0 {
            crate::report::unobserved(error);
        }
    }
}

/// How the runtime that spawns async tasks runs the forwarding task of
/// [`Spawned::into_cell`].
pub(crate) type Forward = fn(Pin<Box<dyn Future<Output = ()> + Send>>);

/// The runtime's [`Forward`], registered before it spawns its first task. Kept here once rather
/// than in every handle: a pending async handle stays as small as a `JoinHandle` allows.
static FORWARD: OnceLock<Forward> = OnceLock::new();

/// Register how forwarding tasks are started (the runtime does, when it starts).
pub(crate) fn set_forward(forward: Forward) {
    let _ = FORWARD.set(forward);
}

/// What the runtime is told before a task is aborted because its time ran out (its `stats`
/// count a timeout as a failure, not a cancellation).
pub(crate) type MarkTimedOut = fn(tokio::task::Id);

static MARK_TIMED_OUT: OnceLock<MarkTimedOut> = OnceLock::new();

/// Register the runtime's [`MarkTimedOut`] (when it starts).
pub(crate) fn set_mark_timed_out(mark: MarkTimedOut) {
    let _ = MARK_TIMED_OUT.set(mark);
}

/// Abort `abort`'s task, telling the runtime first if it is for a timeout.
fn abort_task(abort: &tokio::task::AbortHandle, why: Stop) {
    if why == Stop::TimedOut
        && let Some(mark) = MARK_TIMED_OUT.get()
    {
        mark(abort.id());
    }
    abort.abort();
}

/// The single reader of an async task. See the module docs.
pub(crate) struct Spawned<T> {
    join: JoinHandle<Outcome<T>>,
    task: &'static str,
    /// What the handle resolves to once cancelled (boxed: a pending handle stays small).
    stopped: Option<Box<Error>>,
    /// Abort the task when this reader is dropped before it finished.
    cancel_on_drop: bool,
}

impl<T: Send + 'static> Spawned<T> {
    pub(crate) fn new(join: JoinHandle<Outcome<T>>, task: &'static str) -> Spawned<T> {
        Spawned {
            join,
            task,
            stopped: None,
            cancel_on_drop: false,
        }
    }

    /// Abort the task at its next `.await`; from now on the outcome is `reason`. False only
    /// when the task had already finished.
    pub(crate) fn cancel(&mut self, reason: Error) -> bool {
        if self.stopped.is_none() {
            if self.join.is_finished() {
                return false;
            }
            abort_task(&self.join.abort_handle(), Stop::of(&reason));
            self.stopped = Some(Box::new(reason));
        }
        true
    }

    pub(crate) fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        if let Some(reason) = &self.stopped {
            return Poll::Ready(Err((**reason).clone()));
        }
        // Outside tokio's cooperative budget, as a completion cell is: a task blocked in
        // `.result()` never yields, so it would never get a spent budget back.
        let joined =
            std::task::ready!(Pin::new(&mut tokio::task::unconstrained(&mut self.join)).poll(cx));
        Poll::Ready(match joined {
            Ok(outcome) => outcome.take(),
            // The body's own panics are caught inside the task; this is one in its destructor.
            Err(error) if error.is_panic() => {
                Err(Error::from_panic(self.task, &*error.into_panic(), None))
            }
            // Aborted by its runtime shutting down (an application's runtime, see `Config::runtime`).
            Err(_) => Err(Error::Cancelled { task: self.task }),
        })
    }

    /// The same task behind a completion cell that several readers can share. A task still
    /// running gets a small forwarding task that moves its outcome into the cell; cancelling
    /// the cell aborts the task itself.
    pub(crate) fn into_cell(mut self) -> Arc<Completion<T>> {
        let task = self.task;
        let cell = Completion::pending(task);
        if std::mem::take(&mut self.cancel_on_drop) {
            cell.cancel_on_drop();
        }
        if let Some(reason) = self.stopped.take() {
            cell.cancel(*reason);
            return cell;
        }
        if self.join.is_finished() {
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(outcome) = self.poll_outcome(&mut cx) {
                cell.complete(outcome);
                return cell;
            }
        }
        let abort = self.join.abort_handle();
        cell.set_abort(Abort::knowing_why(move |why| abort_task(&abort, why)));
        let completer = Completer::new(cell.clone());
        let forward = FORWARD
            .get()
            .expect("the runtime registers its Forward before spawning");
        forward(Box::pin(async move {
            let outcome = std::future::poll_fn(|cx| self.poll_outcome(cx)).await;
            completer.complete(outcome);
        }));
        cell
    }
}

/// A lone async reader after [`catch`](crate::Unfinished::catch): the same task, read as
/// `Result<V, Error>`. Boxed in the handle (its type names `V`, the handle's only
/// `Result<V, Error>`), which costs one small allocation, not a task.
pub(crate) struct Caught<V>(pub(crate) Spawned<V>);

/// What a handle needs of a lone reader seen as yielding `T` (see [`Caught`]).
pub(crate) trait LoneReader<T>: Send {
    fn task(&self) -> &'static str;
    fn is_done(&self) -> bool;
    fn cancel(&mut self, reason: Error) -> bool;
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>;
    fn cancel_on_drop(&mut self);
    /// The same task behind a completion cell (see [`Spawned::into_cell`]).
    fn into_source(self: Box<Self>) -> Arc<dyn Source<T>>;
}

impl<V: Send + 'static> LoneReader<Result<V, Error>> for Caught<V> {
    fn task(&self) -> &'static str {
        self.0.task()
    }
    fn is_done(&self) -> bool {
        self.0.is_done()
    }
    fn cancel(&mut self, reason: Error) -> bool {
        self.0.cancel(reason)
    }
    fn cancel_on_drop(&mut self) {
        self.0.cancel_on_drop();
    }
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<Result<V, Error>, Error>> {
        self.0.poll_outcome(cx).map(Ok)
    }
    fn into_source(self: Box<Self>) -> Arc<dyn Source<Result<V, Error>>> {
        self.0
            .into_cell()
            .caught()
            .expect("a plain cell has a caught view")
    }
}

/// A cancelled task's join handle is never polled by a reader. If the task finished anyway (the
/// cancellation lost the race with its end), its outcome is dropped here unread and unreported,
/// as the completion cell does.
impl<T> Spawned<T> {
    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stopped.is_some() || self.join.is_finished()
    }

    /// Abort the task if this reader is dropped before it finished.
    pub(crate) fn cancel_on_drop(&mut self) {
        self.cancel_on_drop = true;
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        if self.cancel_on_drop && self.stopped.is_none() && !self.join.is_finished() {
            self.join.abort();
            return;
        }
        if self.stopped.is_some() && self.join.is_finished() {
            let mut cx = Context::from_waker(Waker::noop());
            let joined = Pin::new(&mut tokio::task::unconstrained(&mut self.join)).poll(&mut cx);
            if let Poll::Ready(Ok(mut outcome)) = joined {
                outcome.0 = None;
            }
        }
    }
}
