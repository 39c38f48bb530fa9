//! Composition: [`then`](Unfinished::then), [`map`](Unfinished::map) and
//! [`timeout`](Unfinished::timeout) on one handle, [`join_all`] over many.
//!
//! Each returns a new handle backed by a small task on the async runtime, which waits for its
//! inputs without blocking any thread. Failures travel as values: a failed input resolves the
//! derived handle to the same [`Error`] (re-raised by `.result()` and `.await`, a value under
//! [`catch`](Unfinished::catch)); they are never re-raised as panics on the runtime.
//!
//! A derived handle owns its inputs as a clone would: cancelling it (or dropping the task
//! behind it in any other way before it finished) cancels the inputs it is still waiting on,
//! for every clone of them. Dropping a derived handle does not cancel anything: as for any
//! task, the work goes on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::error::Error;
use crate::exec::runtime::{spawn_outcome, spawn_plumbing};
use crate::handle::Unfinished;

/// An input a derived task waits on, resolving to its outcome. Dropped while armed before the
/// input finished (the derived task was cancelled), it cancels the input.
pub(crate) struct Guarded<T: Send + 'static> {
    handle: Unfinished<T>,
    armed: bool,
}

impl<T: Send + 'static> Guarded<T> {
    pub(crate) fn new(handle: Unfinished<T>) -> Guarded<T> {
        Guarded {
            handle,
            armed: true,
        }
    }
}

impl<T: Send + 'static> Future for Guarded<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        self.get_mut().handle.poll_outcome(cx)
    }
}

impl<T: Send + 'static> Drop for Guarded<T> {
    fn drop(&mut self) {
        if self.armed {
            // A no-op when the outcome was already read.
            self.handle.cancel();
        }
    }
}

/// One input of [`join_all`], with its position.
struct Indexed<T: Send + 'static> {
    index: usize,
    input: Guarded<T>,
}

impl<T: Send + 'static> Future for Indexed<T> {
    type Output = (usize, Result<T, Error>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut this.input)
            .poll(cx)
            .map(|outcome| (this.index, outcome))
    }
}

impl<T: Send + 'static> Unfinished<T> {
    /// The same handle, with failure as a value: resolves to `Ok(value)`, or to `Err(error)`
    /// where `.result()` would have panicked.
    ///
    /// ```
    /// let handle = unsync::spawn_blocking(|| -> u8 { panic!("no such file") });
    /// let error = handle.catch().result().unwrap_err();
    /// assert!(matches!(&error, unsync::Error::Panicked { message, .. } if message == "no such file"));
    /// // "task `spawn_blocking` panicked at src/main.rs:1:51: no such file"
    /// assert!(error.to_string().starts_with("task `spawn_blocking` panicked at "));
    /// ```
    pub fn catch(self) -> Unfinished<Result<T, Error>> {
        // Usually a view of the same task; a handle that already is a caught view (this is
        // `.catch().catch()`) forwards through a task of its own.
        self.caught_view().unwrap_or_else(|mut upstream| {
            let task = upstream.task();
            spawn_plumbing(task, async move {
                std::future::poll_fn(|cx| upstream.poll_outcome(cx)).await
            })
        })
    }

    /// Chain another unsync function: once this task has finished with a value, call `f` with
    /// it, and resolve to what the handle `f` returns resolves to. Python's
    /// `Unfinished.then(continuation)`: `fetch(url).then(parse).then(store)`.
    ///
    /// `f` runs on the async runtime as soon as the value is there; it should only start the
    /// next task (call an `#[unsync]` function, or [`spawn_blocking`](crate::spawn_blocking)
    /// anything slow), not do heavy work itself. If this task fails, `f` is not called and the
    /// new handle fails with the same [`Error`]; if `f` panics, it fails with
    /// [`Error::Panicked`] for the task `"then"`. Cancelling the new handle cancels whichever
    /// of the two tasks it is waiting on.
    ///
    /// ```
    /// use unsync::{spawn, spawn_blocking, Unfinished};
    ///
    /// fn fetch(url: &'static str) -> Unfinished<String> {
    ///     spawn(async move { format!("<p>{url}</p>") })
    /// }
    /// fn parse(page: String) -> Unfinished<usize> {
    ///     spawn_blocking(move || page.len())
    /// }
    ///
    /// assert_eq!(fetch("a.io").then(parse).result(), 11);
    /// ```
    ///
    /// # Panics
    /// When called on a handle that already returned its value (after it was polled to
    /// completion).
    pub fn then<U, F>(self, f: F) -> Unfinished<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> Unfinished<U> + Send + 'static,
    {
        self.expect_live("then");
        let upstream = Guarded::new(self);
        spawn_outcome("then", async move {
            let value = upstream.await?;
            Guarded::new(f(value)).await
        })
    }

    /// Transform the value once the task has finished: a handle to `f(value)`.
    ///
    /// `f` runs on the async runtime as soon as the value is there, so keep it short (for slow
    /// work, use [`then`](Unfinished::then) with an unsync function). If this task fails, `f` is
    /// not called and the new handle fails with the same [`Error`]; if `f` panics, it fails
    /// with [`Error::Panicked`] for the task `"map"`. Cancelling the new handle cancels this
    /// task if it is still running.
    ///
    /// ```
    /// let words = unsync::spawn_blocking(|| "a few words".to_owned());
    /// let count = words.map(|text| text.split_whitespace().count());
    /// assert_eq!(count.result(), 3);
    /// ```
    ///
    /// # Panics
    /// When called on a handle that already returned its value.
    pub fn map<U, F>(self, f: F) -> Unfinished<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> U + Send + 'static,
    {
        self.expect_live("map");
        let upstream = Guarded::new(self);
        spawn_outcome("map", async move { upstream.await.map(f) })
    }

    /// Give the task `after` to finish: resolves to `Ok(value)`, to `Err(error)` if the task
    /// failed (as [`catch`](Unfinished::catch) would), or to `Err(`[`Error::TimedOut`]`)` once
    /// `after` has passed, in which case the task is stopped as by
    /// [`cancel`](Unfinished::cancel) (see there what stops in each mode), except that every
    /// clone of its handle resolves to that [`Error::TimedOut`], and
    /// [`stats`](crate::stats()) counts the task as failed, not cancelled.
    ///
    /// The clock starts now, on the async runtime's timer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use unsync::Error;
    ///
    /// let slow = unsync::spawn(async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await;
    /// });
    /// let outcome = slow.timeout(Duration::from_millis(10)).result();
    /// assert_eq!(
    ///     outcome,
    ///     Err(Error::TimedOut { task: "spawn", after: Duration::from_millis(10) })
    /// );
    ///
    /// let quick = unsync::spawn_blocking(|| 42);
    /// assert_eq!(quick.timeout(Duration::from_secs(60)).result(), Ok(42));
    /// ```
    ///
    /// # Panics
    /// When called on a handle that already returned its value.
    pub fn timeout(self, after: Duration) -> Unfinished<Result<T, Error>> {
        self.expect_live("timeout");
        let task = self.task();
        let mut upstream = Guarded::new(self);
        spawn_plumbing("timeout", async move {
            match tokio::time::timeout(after, &mut upstream).await {
                Ok(outcome) => outcome,
                Err(_elapsed) => {
                    upstream.handle.stop(|task| Error::TimedOut { task, after });
                    Err(Error::TimedOut { task, after })
                }
            }
        })
    }
}

/// Wait for all of `handles`: resolves to their values, in the order given.
///
/// If one fails, the joined handle fails at once with that (first) [`Error`]: `.result()` and
/// `.await` re-raise it, [`catch`](Unfinished::catch) yields it as a value. The other tasks
/// are not cancelled: they are independent work that may still matter (they may write
/// somewhere, other clones of their handles may be waiting on them); cancel them yourself if
/// you want them stopped, through clones kept for the purpose. Their failures, unread, are
/// reported as usual. Cancelling the joined handle, though, cancels every input still running.
///
/// ```
/// let squares = (1..=4_u64).map(|n| unsync::spawn_parallel(move || n * n));
/// assert_eq!(unsync::join_all(squares).result(), [1, 4, 9, 16]);
///
/// let mixed = vec![
///     unsync::spawn_blocking(|| 1),
///     unsync::spawn_blocking(|| panic!("no luck")),
/// ];
/// let error = unsync::join_all(mixed).catch().result().unwrap_err();
/// assert!(matches!(&error, unsync::Error::Panicked { message, .. } if message == "no luck"));
/// ```
pub fn join_all<T, I>(handles: I) -> Unfinished<Vec<T>>
where
    T: Send + 'static,
    I: IntoIterator<Item = Unfinished<T>>,
{
    let mut pending: FuturesUnordered<Indexed<T>> = handles
        .into_iter()
        .enumerate()
        .map(|(index, handle)| {
            handle.expect_live("join_all");
            Indexed {
                index,
                input: Guarded::new(handle),
            }
        })
        .collect();
    let mut values: Vec<Option<T>> = std::iter::repeat_with(|| None)
        .take(pending.len())
        .collect();
    spawn_outcome("join_all", async move {
        while let Some((index, outcome)) = pending.next().await {
            match outcome {
                Ok(value) => values[index] = Some(value),
                Err(error) => {
                    for rest in pending.iter_mut() {
                        rest.input.armed = false;
                    }
                    return Err(error);
                }
            }
        }
        Ok(values
            .into_iter()
            .map(|value| value.expect("every input of join_all resolved"))
            .collect())
    })
}
