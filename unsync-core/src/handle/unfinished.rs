//! [`Unfinished<T>`]: the one handle every unsync task returns, whichever executor runs it.
//!
//! Sync code blocks on it with [`result`](Unfinished::result); async code `.await`s it, on any
//! executor. Failure re-raises as a panic in the reader, or arrives as a value after
//! [`catch`](Unfinished::catch).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::Error;
use crate::handle::completion::{Completion, NO_SLOT, Source};
use crate::handle::lone_reader::{Caught, LoneReader, Spawned};
use crate::handle::sync::Arc;

/// A task running in the background, and later its result.
///
/// Returned by every `#[unsync]` function and by [`spawn`](crate::spawn),
/// [`spawn_blocking`](crate::spawn_blocking) and [`spawn_parallel`](crate::spawn_parallel).
/// The task starts when the handle is created and runs whether or not anyone waits for it:
/// dropping the handle does not stop it.
///
/// ```
/// use unsync::Unfinished;
///
/// let from_sync: Unfinished<u32> = unsync::spawn_blocking(|| 6 * 7);
/// assert_eq!(from_sync.result(), 42);
///
/// let from_async = unsync::spawn_parallel(|| 6 * 7);
/// assert_eq!(futures::executor::block_on(from_async), 42);
/// ```
///
/// If the task panicked (or was cancelled, or lost its worker process), `.result()` and
/// `.await` panic in turn with a message naming the task and the cause; use
/// [`catch`](Unfinished::catch) to get an [`Error`] value instead.
///
/// Dropping every handle to a task does not stop it, unless it was asked to with
/// [`cancel_on_drop`](Unfinished::cancel_on_drop). To fire and forget on purpose, call
/// [`detach`](Unfinished::detach), and [`shutdown`](crate::shutdown()) before `main` returns so
/// that the process does not exit under the task.
#[must_use = "the task runs whether or not its handle is read: `.result()` or `.await` it for the value, or call `.detach()` to fire and forget (and `unsync::shutdown()` before `main` returns)"]
pub struct Unfinished<T> {
    /// Locked only by the `&self` methods; the reading paths own the handle (`get_mut`).
    repr: Mutex<Repr<T>>,
}

/// Where a handle reads its outcome from.
enum Repr<T> {
    /// An async task with this handle as its only reader (see `lone_reader`).
    Spawned(Spawned<T>),
    /// The same after `catch`: `T` is the task's `Result<V, Error>`.
    Caught(Box<dyn LoneReader<T>>),
    /// A completion cell, possibly shared with other handles.
    Shared {
        source: Arc<dyn Source<T>>,
        /// Where this reader's waker sits in the cell.
        slot: usize,
    },
    /// The value was handed out.
    Returned,
}

impl<T> Repr<T> {
    fn is_done(&self) -> bool {
        match self {
            Repr::Spawned(spawned) => spawned.is_done(),
            Repr::Caught(caught) => caught.is_done(),
            Repr::Shared { source, .. } => source.is_done(),
            Repr::Returned => true,
        }
    }

    fn task(&self) -> &'static str {
        match self {
            Repr::Spawned(spawned) => spawned.task(),
            Repr::Caught(caught) => caught.task(),
            Repr::Shared { source, .. } => source.task(),
            Repr::Returned => "unsync",
        }
    }
}

impl<T: Send + 'static> Repr<T> {
    /// Take the outcome if done, else register the waker.
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        let outcome = match self {
            Repr::Spawned(spawned) => std::task::ready!(spawned.poll_outcome(cx)),
            Repr::Caught(caught) => std::task::ready!(caught.poll_outcome(cx)),
            Repr::Shared { source, slot } => std::task::ready!(source.poll_outcome(cx, slot)),
            Repr::Returned => panic!("an Unfinished was polled after it returned its value"),
        };
        // Dropping the source now is not dropping a reader: the cell counted this one out.
        *self = Repr::Returned;
        Poll::Ready(outcome)
    }

    /// The completion cell, made shared first if this handle was an async task's only reader.
    /// `None` once the value was handed out.
    fn shared(&mut self) -> Option<(&Arc<dyn Source<T>>, &mut usize)> {
        let source = match std::mem::replace(self, Repr::Returned) {
            Repr::Spawned(spawned) => Some(spawned.into_cell() as Arc<dyn Source<T>>),
            Repr::Caught(caught) => Some(caught.into_source()),
            other => {
                *self = other;
                None
            }
        };
        if let Some(source) = source {
            *self = Repr::Shared {
                source,
                slot: NO_SLOT,
            };
        }
        match self {
            Repr::Shared { source, slot } => Some((source, slot)),
            _ => None,
        }
    }
}

impl<T: Send + 'static> Unfinished<T> {
    pub(crate) fn from_cell(cell: Arc<Completion<T>>) -> Unfinished<T> {
        Unfinished::from_source(cell)
    }

    pub(crate) fn from_source(source: Arc<dyn Source<T>>) -> Unfinished<T> {
        Unfinished::from_repr(Repr::Shared {
            source,
            slot: NO_SLOT,
        })
    }

    pub(crate) fn from_spawned(spawned: Spawned<T>) -> Unfinished<T> {
        Unfinished::from_repr(Repr::Spawned(spawned))
    }

    fn from_repr(repr: Repr<T>) -> Unfinished<T> {
        Unfinished {
            repr: Mutex::new(repr),
        }
    }

    fn repr(&self) -> MutexGuard<'_, Repr<T>> {
        self.repr.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn repr_mut(&mut self) -> &mut Repr<T> {
        self.repr.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that is already finished with `value`.
    ///
    /// ```
    /// let done = unsync::Unfinished::ready("cached");
    /// assert!(done.is_done());
    /// assert_eq!(done.result(), "cached");
    /// ```
    pub fn ready(value: T) -> Unfinished<T> {
        Unfinished::from_cell(Completion::finished("ready", Ok(value)))
    }

    /// A handle that is already finished with `error`.
    pub(crate) fn failed(error: Error) -> Unfinished<T> {
        Unfinished::from_cell(Completion::finished(error.task(), Err(error)))
    }

    /// Block the current thread until the task is done, and return its value.
    ///
    /// Safe from any thread: a plain thread, a tokio worker (of unsync's runtime or your own,
    /// either flavor), a blocking-pool or rayon task, however deeply nested.
    ///
    /// # Panics
    /// When the task failed: the panic message is the [`Error`]'s, which carries the task's
    /// own panic message.
    ///
    /// ```
    /// let handle = unsync::spawn(async { "hello".len() });
    /// assert_eq!(handle.result(), 5);
    /// ```
    #[track_caller]
    pub fn result(self) -> T {
        match self.outcome() {
            Ok(value) => value,
            Err(error) => reraise(error),
        }
    }

    /// Block until done; the outcome as a value.
    pub(crate) fn outcome(mut self) -> Result<T, Error> {
        let repr = self.repr_mut();
        let waiting = if repr.is_done() {
            None
        } else {
            // A thread that can do the work that finishes the task rather than sleep until
            // another thread has (see `completion::Lead`) does so once it stops spinning.
            let lead = match &*repr {
                Repr::Shared { source, .. } => source.lead(),
                _ => None,
            };
            let waiting = crate::handle::wait::spin_until(lead.is_some(), || repr.is_done());
            if let (Some(_), Some(lead)) = (&waiting, lead) {
                (lead.run)(lead.key, &|| repr.is_done());
            }
            waiting
        };
        if waiting.is_none() {
            // Done (a done task is never pending again), so no waker is needed.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if let Poll::Ready(outcome) = repr.poll_outcome(&mut cx) {
                return outcome;
            }
        }
        let outcome = crate::handle::wait::block_on(|cx| repr.poll_outcome(cx), None)
            .expect("a wait without deadline returns a value");
        if let Some(waited) = waiting {
            crate::handle::wait::record_wait(waited);
        }
        outcome
    }

    /// The same task read as `Result<T, Error>`, without a new task: an async task's lone
    /// reader stays one, a completion gets its caught view. `Err(self)` when this handle
    /// already is a caught view (see [`catch`](Unfinished::catch), which then forwards).
    pub(crate) fn caught_view(mut self) -> Result<Unfinished<Result<T, Error>>, Unfinished<T>> {
        let repr = self.repr_mut();
        if let Repr::Spawned(_) = repr {
            let Repr::Spawned(spawned) = std::mem::replace(repr, Repr::Returned) else {
                unreachable!()
            };
            return Ok(Unfinished::from_repr(Repr::Caught(Box::new(Caught(
                spawned,
            )))));
        }
        let Some((source, slot)) = repr.shared() else {
            panic!("`catch` called on an Unfinished that already returned its value");
        };
        source.unregister(slot);
        let Repr::Shared { source, .. } = std::mem::replace(repr, Repr::Returned) else {
            unreachable!()
        };
        match source.clone().caught() {
            Some(caught) => Ok(Unfinished::from_source(caught)),
            None => Err(Unfinished::from_source(source)),
        }
    }

    /// Whether the task is finished (with a value, a failure, or cancelled). Never blocks.
    ///
    /// ```
    /// let handle = unsync::Unfinished::ready(1);
    /// assert!(handle.is_done());
    /// ```
    pub fn is_done(&self) -> bool {
        self.repr().is_done()
    }

    /// Block up to `timeout` for the task to finish; true once it is done. The handle stays
    /// usable either way.
    ///
    /// On a rayon worker the wait runs other rayon jobs meanwhile (so that nested waits cannot
    /// deadlock the pool), and it returns only once the job it is running ends: after
    /// `timeout`, if that job is long.
    ///
    /// ```
    /// use std::time::Duration;
    /// let handle = unsync::spawn_blocking(|| std::thread::sleep(Duration::from_millis(5)));
    /// while !handle.wait_timeout(Duration::from_millis(1)) {
    ///     // do something else meanwhile
    /// }
    /// assert!(handle.is_done());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let source = {
            let mut repr = self.repr();
            if repr.is_done() {
                return true;
            }
            // Waiting without taking the outcome needs the cell (for the outcome to stay in).
            match repr.shared() {
                Some((source, _)) => source.clone(),
                None => return true,
            }
        };
        let deadline = Instant::now().checked_add(timeout);
        let mut slot = NO_SLOT;
        let done = crate::handle::wait::block_on(|cx| source.poll_ready(cx, &mut slot), deadline)
            .is_some();
        source.unregister(&mut slot);
        done
    }

    /// Stop the task, or at least its result: from now on this handle (and every clone of it)
    /// resolves to [`Error::Cancelled`], which `.result()` and `.await` re-raise and
    /// [`catch`](Unfinished::catch) yields as a value. Never blocks. Returns false only when
    /// the task had already finished.
    ///
    /// What actually stops depends on where the task runs:
    ///
    /// | mode | queued, not started yet | already running |
    /// |---|---|---|
    /// | `#[unsync] async fn`, [`spawn`](crate::spawn) | never starts | aborted at its next `.await` |
    /// | `#[unsync] fn`, [`spawn_blocking`](crate::spawn_blocking) | never starts | runs on (a thread cannot be killed) and keeps its thread until it returns; [`is_cancelled`](crate::is_cancelled) turns true so it can return early |
    /// | `#[unsync(parallel)] fn`, [`spawn_parallel`](crate::spawn_parallel) | never starts | as for threads: keeps its rayon thread until it returns; [`is_cancelled`](crate::is_cancelled) turns true |
    /// | `#[unsync(cpu_bound)] fn` | never starts | the worker process is killed and replaced |
    /// | [`then`](Unfinished::then), [`map`](Unfinished::map), [`join_all`](crate::join_all), [`timeout`](Unfinished::timeout) | — | cancels the inputs it still waits on, as by this table (for every clone of them) |
    /// | [`promise`](crate::promise()) | — | the value, if ever set, is dropped; [`Promise::is_cancelled`](crate::Promise::is_cancelled) turns true |
    ///
    /// In every mode the handle side is immediate: readers waiting on any clone wake up with
    /// [`Error::Cancelled`] at once, whatever the task itself still does. A running thread or
    /// rayon task that ignores [`is_cancelled`](crate::is_cancelled) finishes its work, and its
    /// result (or failure) is dropped unreported.
    ///
    /// ```
    /// use std::time::Duration;
    /// let slow = unsync::spawn(async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await;
    ///     "never"
    /// });
    /// assert!(slow.cancel());
    /// let error = slow.catch().result().unwrap_err();
    /// assert_eq!(error, unsync::Error::Cancelled { task: "spawn" });
    /// ```
    pub fn cancel(&self) -> bool {
        self.stop(|task| Error::Cancelled { task })
    }

    /// Cancel, resolving every clone to `reason(task)` (a timeout's [`Error::TimedOut`]).
    pub(crate) fn stop(&self, reason: impl FnOnce(&'static str) -> Error) -> bool {
        let source = match &mut *self.repr() {
            Repr::Spawned(spawned) => return spawned.cancel(reason(spawned.task())),
            Repr::Caught(caught) => {
                let reason = reason(caught.task());
                return caught.cancel(reason);
            }
            Repr::Shared { source, .. } => source.clone(),
            Repr::Returned => return false,
        };
        // Outside the lock: cancelling wakes waiters and stops the work behind the cell.
        source.cancel(reason(source.task()))
    }

    /// Let the task run on without this handle: the explicit way to fire and forget (a handle
    /// is `#[must_use]`). The same as dropping it, so a task made
    /// [`cancel_on_drop`](Unfinished::cancel_on_drop) whose last handle this was is cancelled.
    /// Call [`shutdown`](crate::shutdown()) before `main` returns to let detached tasks finish.
    ///
    /// ```
    /// unsync::spawn_blocking(|| println!("logged in the background")).detach();
    /// unsync::shutdown(std::time::Duration::from_secs(10));
    /// ```
    pub fn detach(self) {}

    /// The same handle, except that when it and every clone of it are dropped before the task
    /// finished, the task is cancelled exactly as by [`cancel`](Unfinished::cancel) (the worker
    /// process killed and replaced, the async task aborted, [`is_cancelled`](crate::is_cancelled)
    /// turned true in a thread). Reading the value, or the task finishing first, cancels
    /// nothing.
    ///
    /// For work whose only reader may go away: an axum or hyper handler awaiting a call is
    /// dropped when its client disconnects, and with this the call stops with it.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    ///
    /// let (alive, gone) = mpsc::channel::<()>();
    /// let slow = unsync::spawn(async move {
    ///     let _alive = alive; // dropped with the task
    ///     tokio::time::sleep(Duration::from_secs(3600)).await;
    /// })
    /// .cancel_on_drop();
    /// let clone = slow.clone();
    /// drop(slow);
    /// assert!(!clone.is_done()); // a clone still reads it
    /// drop(clone); // the last reader: the task is aborted
    /// let end = gone.recv_timeout(Duration::from_secs(10));
    /// assert_eq!(end, Err(mpsc::RecvTimeoutError::Disconnected));
    /// ```
    pub fn cancel_on_drop(mut self) -> Unfinished<T> {
        match self.repr_mut() {
            Repr::Spawned(spawned) => spawned.cancel_on_drop(),
            Repr::Caught(caught) => caught.cancel_on_drop(),
            Repr::Shared { source, .. } => source.cancel_on_drop(),
            Repr::Returned => {}
        }
        self
    }

    /// Panic, naming `operation`, when the value was already handed out.
    pub(crate) fn expect_live(&self, operation: &str) {
        assert!(
            !matches!(*self.repr(), Repr::Returned),
            "`{operation}` called on an Unfinished that already returned its value"
        );
    }

    /// The name of the task: the `#[unsync]` function's path, or `"spawn"`, `"ready"`, ...
    pub(crate) fn task(&self) -> &'static str {
        self.repr().task()
    }

    /// Take the outcome if done, else register the waker.
    pub(crate) fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        self.repr_mut().poll_outcome(cx)
    }
}

impl<T: Send + 'static> Future for Unfinished<T> {
    type Output = T;

    /// Ready with the task's value.
    ///
    /// # Panics
    /// When the task failed (see [`Unfinished::result`]), at the caller's `.await`, and when
    /// polled again after it returned the value.
    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut().poll_outcome(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(value)) => Poll::Ready(value),
            Poll::Ready(Err(error)) => reraise(error),
        }
    }
}

/// Panic with a failed task's error, at the reader's `.result()` or `.await`; a worker
/// process's backtrace, when it sent one, follows the message.
#[track_caller]
fn reraise(error: Error) -> ! {
    match error.backtrace() {
        Some(backtrace) => panic!("{error}\n\nbacktrace in the worker process:\n{backtrace}"),
        None => panic!("{error}"),
    }
}

/// Many waiters on one task: every clone resolves to (a clone of) the same value, the task runs
/// once, and cancelling through any clone cancels it for all of them.
///
/// ```
/// let shared = unsync::spawn(async { String::from("config") });
/// let waiters: Vec<_> = (0..3).map(|_| shared.clone()).collect();
/// for waiter in waiters {
///     assert_eq!(waiter.result(), "config");
/// }
/// assert_eq!(shared.result(), "config");
/// ```
impl<T: Clone + Send + 'static> Clone for Unfinished<T> {
    fn clone(&self) -> Unfinished<T> {
        let mut repr = self.repr();
        let (source, _) = repr
            .shared()
            .expect("cannot clone an Unfinished that already returned its value");
        source.add_reader(T::clone);
        Unfinished::from_source(source.clone())
    }
}

// A handle stays consistent when a panic passes through it: its cell's critical sections leave
// the state consistent even when user code (a `Clone` impl) panics inside them, and a failure is
// re-raised only after the outcome was taken. So `catch_unwind(|| handle.result())` needs no
// `AssertUnwindSafe`.
impl<T> std::panic::UnwindSafe for Unfinished<T> {}
impl<T> std::panic::RefUnwindSafe for Unfinished<T> {}

impl<T> Drop for Unfinished<T> {
    fn drop(&mut self) {
        let repr = self.repr.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Repr::Shared { source, slot } = repr {
            source.drop_reader(*slot);
        }
    }
}

impl<T> fmt::Debug for Unfinished<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repr = self.repr.lock().unwrap_or_else(PoisonError::into_inner);
        match &*repr {
            Repr::Returned => f.write_str("Unfinished { returned }"),
            live => f
                .debug_struct("Unfinished")
                .field("task", &live.task())
                .field("done", &live.is_done())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_traits<T: Send + Sync + Unpin + 'static>() {}

    #[test]
    fn handle_is_send_sync_unpin_static() {
        assert_traits::<Unfinished<u32>>();
        assert_traits::<Unfinished<Vec<String>>>();
    }

    /// `catch` keeps an async task's lone reader (no cell, no forwarding task); a clone of the
    /// caught handle then moves it to a shared cell, and both read the outcome, or are cancelled
    /// together (the task itself is dropped).
    #[test]
    fn catch_keeps_a_lone_async_reader_until_it_is_cloned() {
        struct OnDrop(std::sync::mpsc::Sender<()>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        for cancel in [false, true] {
            let (open, gate) = crate::promise::<()>();
            let (dropped, task_gone) = std::sync::mpsc::channel();
            let guard = OnDrop(dropped);
            let mut caught = crate::spawn(async move {
                let _guard = guard;
                gate.await;
                5_u32
            })
            .catch();
            assert!(matches!(caught.repr_mut(), Repr::Caught(_)));
            assert!(!caught.is_done());
            let clone = caught.clone();
            assert!(matches!(caught.repr_mut(), Repr::Shared { .. }));
            if cancel {
                assert!(clone.cancel());
                let cancelled = Err(Error::Cancelled { task: "spawn" });
                assert_eq!(
                    (caught.result(), clone.result()),
                    (cancelled.clone(), cancelled)
                );
            } else {
                open.set(());
                assert_eq!((caught.result(), clone.result()), (Ok(5), Ok(5)));
            }
            // Either way the task is gone: it finished, or was aborted and dropped.
            task_gone
                .recv_timeout(Duration::from_secs(10))
                .expect("the task was dropped");
        }
    }

    #[test]
    fn ready_and_failed_handles() {
        assert_eq!(Unfinished::ready(3).result(), 3);
        let failed = Unfinished::<u8>::failed(Error::Cancelled { task: "t" });
        assert!(failed.is_done());
        assert_eq!(failed.catch().result(), Err(Error::Cancelled { task: "t" }));
    }
}
