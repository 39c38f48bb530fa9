//! Running a task body: panics are caught and become [`Error::Panicked`], and while the body
//! runs, [`is_cancelled`] reads the flag of its own cell.

use std::cell::Cell as StdCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cell::Completer;
use crate::error::Error;
use crate::sync::{AtomicBool, Ordering};

thread_local! {
    /// The cancellation flag of the task running on this thread, or null.
    static CURRENT: StdCell<*const AtomicBool> = const { StdCell::new(std::ptr::null()) };
}

/// Whether the unsync task running on this thread (or polled by it) has been cancelled.
///
/// A running thread-pool or rayon task cannot be stopped from outside; it can look at this flag
/// and return early. Outside any unsync task it is `false`.
///
/// ```
/// use std::time::Duration;
/// let handle = unsync_core::spawn_blocking(|| {
///     let mut rounds = 0;
///     while !unsync_core::is_cancelled() {
///         rounds += 1;
///         std::thread::sleep(Duration::from_millis(1));
///     }
///     rounds
/// });
/// assert!(handle.cancel());
/// assert!(!unsync_core::is_cancelled());
/// ```
pub fn is_cancelled() -> bool {
    CURRENT.with(|current| {
        let flag = current.get();
        // SAFETY: `CURRENT` is non-null only inside `Running`'s lifetime, which borrows the flag
        // from a cell kept alive by the completer of the task that runs on this thread now.
        !flag.is_null() && unsafe { &*flag }.load(Ordering::Relaxed)
    })
}

/// Marks a task as the one running on this thread until dropped (restoring the outer one, so
/// that tasks run nested inside a wait, as rayon does, keep their own flag).
struct Running<'a> {
    previous: *const AtomicBool,
    _flag: std::marker::PhantomData<&'a AtomicBool>,
}

impl<'a> Running<'a> {
    fn enter(flag: &'a AtomicBool) -> Running<'a> {
        Running {
            previous: CURRENT.with(|c| c.replace(flag)),
            _flag: std::marker::PhantomData,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Run a synchronous task body to completion, unless it was cancelled while queued.
pub(crate) fn run<T>(completer: Completer<T>, body: impl FnOnce() -> T) {
    let cell = completer.cell();
    if cell.is_cancelled() {
        return;
    }
    let task = cell.task();
    let outcome = {
        let _running = Running::enter(cell.cancelled_flag());
        catch_unwind(AssertUnwindSafe(body))
    };
    completer.complete(outcome.map_err(|payload| Error::from_panic(task, &*payload)));
}

pin_project_lite::pin_project! {
    /// An async task body as spawned on tokio: completes its cell when the body finishes or
    /// panics; dropped early (aborted), its completer resolves the cell to `Cancelled`.
    pub(crate) struct TaskFuture<F: Future> {
        #[pin]
        body: F,
        completer: Option<Completer<F::Output>>,
    }
}

impl<F: Future> TaskFuture<F> {
    pub(crate) fn new(body: F, completer: Completer<F::Output>) -> TaskFuture<F> {
        TaskFuture {
            body,
            completer: Some(completer),
        }
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(completer) = this.completer.as_ref() else {
            return Poll::Ready(());
        };
        let cell = completer.cell();
        let polled = {
            let _running = Running::enter(cell.cancelled_flag());
            catch_unwind(AssertUnwindSafe(|| this.body.poll(cx)))
        };
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(Error::from_panic(cell.task(), &*payload)),
        };
        if let Some(completer) = this.completer.take() {
            completer.complete(outcome);
        }
        Poll::Ready(())
    }
}
