//! Composition of an [`UnfinishedStream`]: [`collect_vec`](UnfinishedStream::collect_vec) (a
//! handle to all its items) and [`timeout`](UnfinishedStream::timeout) (a deadline for its
//! producer), both small tasks on the async runtime.

use std::future::Future;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::error::Error;
use crate::exec::runtime::{spawn_outcome, spawn_task};
use crate::handle::Unfinished;
use crate::handle::stream::UnfinishedStream;

impl<T: Send + 'static> UnfinishedStream<T> {
    /// A handle to every item, in order, once the producer is done: the stream read to its end
    /// by a small async task. A failure of the producer fails the handle (after
    /// [`catch`](Unfinished::catch), an `Err`, the items read so far dropped); cancelling the
    /// handle stops the producer.
    ///
    /// ```
    /// let evens = unsync::spawn_blocking_stream(|| (0..10_u32).filter(|n| n % 2 == 0));
    /// assert_eq!(evens.collect_vec().result(), [0, 2, 4, 6, 8]);
    /// ```
    pub fn collect_vec(self) -> Unfinished<Vec<T>> {
        let mut stream = self;
        spawn_outcome("collect_vec", async move {
            let mut items = Vec::new();
            while let Some(item) = poll_fn(|cx| stream.poll_outcome(cx)).await {
                items.push(item?);
            }
            Ok(items)
        })
    }

    /// The same stream, ended with [`Error::TimedOut`] (the producer stopped, the items not
    /// yet read dropped) unless the producer is done within `after`. Items arrive as before
    /// meanwhile; a producer done in time keeps its unread items.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let forever = unsync::spawn_blocking_stream(|| std::iter::repeat(1_u8));
    /// let items = forever.timeout(Duration::from_millis(20)).catch();
    /// let last = items.into_iter().last();
    /// assert!(matches!(last, Some(Err(unsync::Error::TimedOut { .. }))));
    /// ```
    pub fn timeout(self, after: Duration) -> UnfinishedStream<T> {
        let control = Arc::downgrade(self.control());
        let task = self.task();
        spawn_task("timeout", async move {
            let sleep = tokio::time::sleep(after);
            let mut sleep = std::pin::pin!(sleep);
            let expired = poll_fn(|cx| {
                let Some(control) = control.upgrade() else {
                    return Poll::Ready(None);
                };
                if control.poll_ended(cx).is_ready() {
                    return Poll::Ready(None);
                }
                sleep.as_mut().poll(cx).map(|()| Some(control))
            })
            .await;
            if let Some(control) = expired {
                control.stop(Error::TimedOut { task, after });
            }
        })
        .detach();
        self
    }
}
