//! [`as_completed`]: many handles, read in the order they finish, as a `Stream` for async
//! callers and as a blocking iterator for sync ones.

use std::fmt;
use std::future::Future;
use std::iter::FusedIterator;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::{FusedStream, FuturesUnordered, StreamExt};

use crate::error::Error;
use crate::handle::Unfinished;

/// One input, resolving to its outcome (a failure is re-raised only when it is yielded).
struct Outcome<T: Send + 'static>(Unfinished<T>);

impl<T: Send + 'static> Future for Outcome<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        self.get_mut().0.poll_outcome(cx)
    }
}

/// Values of many tasks in the order they finish: see [`as_completed`].
///
/// A [`Stream`] for async callers; [`IntoIterator`] (with [`AsCompletedIter`], a blocking
/// iterator) for sync callers. It is deliberately not an `Iterator` itself, so that
/// `StreamExt` methods are never ambiguous. [`len`](AsCompleted::len) (and the size hint)
/// say how many values are still to come, to drive a progress bar.
///
/// Dropping it drops the handles not yet read, which, as for any handle, does not stop their
/// tasks.
///
/// ```
/// use futures::StreamExt;
///
/// let handles = (1..=3_u32).map(|n| unsync::spawn(async move { n }));
/// let mut done = unsync::as_completed(handles);
/// let first = futures::executor::block_on(done.next()).unwrap(); // as a Stream...
/// let rest: u32 = done.into_iter().sum(); // ...or, blocking, as an iterator
/// assert_eq!(first + rest, 6);
/// ```
#[must_use = "an AsCompleted yields nothing unless iterated or polled"]
pub struct AsCompleted<T: Send + 'static> {
    pending: FuturesUnordered<Outcome<T>>,
}

/// Read `handles` in the order their tasks finish.
///
/// Each value is yielded as soon as its task is done. A failed task re-raises its [`Error`]
/// when its turn comes, as [`Unfinished::result`] (or `.await`) would: the iterator's `next`,
/// or the stream's poll, panics with it. To get failures as values instead, pass
/// [`catch`](Unfinished::catch)ed handles: `as_completed(handles.map(Unfinished::catch))`
/// yields `Result<T, Error>`.
///
/// From sync code, iterate (each step blocks until the next task finishes):
///
/// ```
/// use std::time::Duration;
///
/// let handles = [30_u64, 1, 15].map(|ms| {
///     unsync::spawn(async move {
///         tokio::time::sleep(Duration::from_millis(ms)).await;
///         ms
///     })
/// });
/// let mut done = unsync::as_completed(handles);
/// assert_eq!(done.len(), 3);
/// let mut order = Vec::new();
/// for ms in done {
///     order.push(ms);
/// }
/// assert_eq!(order.len(), 3);
/// assert!(order.contains(&30) && order.contains(&1) && order.contains(&15));
/// ```
///
/// From async code, it is a [`Stream`]:
///
/// ```
/// use futures::StreamExt;
///
/// let handles = (0..5_u32).map(|n| unsync::spawn_parallel(move || n * 10));
/// let total: u32 = futures::executor::block_on(unsync::as_completed(handles).fold(
///     0,
///     |sum, n| async move { sum + n },
/// ));
/// assert_eq!(total, 100);
/// ```
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T>
where
    T: Send + 'static,
    I: IntoIterator<Item = Unfinished<T>>,
{
    AsCompleted {
        pending: handles
            .into_iter()
            .map(|handle| {
                handle.expect_live("as_completed");
                Outcome(handle)
            })
            .collect(),
    }
}

impl<T: Send + 'static> AsCompleted<T> {
    /// How many values are still to come.
    ///
    /// ```
    /// let handles = vec![unsync::Unfinished::ready(1), unsync::Unfinished::ready(2)];
    /// let mut done = unsync::as_completed(handles).into_iter();
    /// assert_eq!(done.len(), 2);
    /// done.next();
    /// assert_eq!(done.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every value was yielded already.
    ///
    /// ```
    /// let none = unsync::as_completed(Vec::<unsync::Unfinished<u8>>::new());
    /// assert!(none.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T: Send + 'static> Stream for AsCompleted<T> {
    type Item = T;

    /// The next value to finish.
    ///
    /// # Panics
    /// When that task failed, with its [`Error`] (see [`as_completed`]).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.pending.is_empty() {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.pending.poll_next_unpin(cx)) {
            None => Poll::Ready(None),
            Some(Ok(value)) => Poll::Ready(Some(value)),
            Some(Err(error)) => panic!("{error}"),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl<T: Send + 'static> FusedStream for AsCompleted<T> {
    fn is_terminated(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T: Send + 'static> IntoIterator for AsCompleted<T> {
    type Item = T;
    type IntoIter = AsCompletedIter<T>;

    /// A blocking iterator over the values, in completion order.
    fn into_iter(self) -> AsCompletedIter<T> {
        AsCompletedIter { inner: self }
    }
}

impl<T: Send + 'static> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.len())
            .finish()
    }
}

/// The blocking iterator of an [`AsCompleted`]: each `next` blocks until the next task
/// finishes (safely from any context, as [`Unfinished::result`] does).
///
/// Its `len()` ([`ExactSizeIterator`]) says how many values are still to come.
///
/// ```
/// let handles = (1..=3_u32).map(|n| unsync::spawn_blocking(move || n));
/// let mut values: Vec<u32> = unsync::as_completed(handles).into_iter().collect();
/// values.sort();
/// assert_eq!(values, [1, 2, 3]);
/// ```
pub struct AsCompletedIter<T: Send + 'static> {
    inner: AsCompleted<T>,
}

impl<T: Send + 'static> Iterator for AsCompletedIter<T> {
    type Item = T;

    /// The next value to finish, blocking until there is one.
    ///
    /// # Panics
    /// When that task failed, with its [`Error`] (see [`as_completed`]).
    fn next(&mut self) -> Option<T> {
        if self.inner.is_empty() {
            return None;
        }
        crate::handle::wait::block_on(|cx| self.inner.poll_next_unpin(cx), None)
            .expect("a wait without deadline returns a value")
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T: Send + 'static> ExactSizeIterator for AsCompletedIter<T> {}

impl<T: Send + 'static> FusedIterator for AsCompletedIter<T> {}

impl<T: Send + 'static> fmt::Debug for AsCompletedIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompletedIter")
            .field("remaining", &self.inner.len())
            .finish()
    }
}
