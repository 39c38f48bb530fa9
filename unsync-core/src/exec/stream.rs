//! Driving a streaming function's producer into an [`UnfinishedStream`]: an iterator on the
//! blocking pool (one pool thread for the producer's life, blocked while the reader is
//! `buffer` items behind), a `Stream` on the async runtime (one task, pending meanwhile).
//!
//! Either way the producer's panic is caught here and ends the stream after the items sent
//! before it; the producer's own handle (an [`Unfinished<()>`](crate::Unfinished) that never
//! fails) is kept only to stop it: cancelling it is the stream's abort.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;

use futures::{FutureExt, Stream, StreamExt};

use crate::error::Error;
use crate::exec::panic_site;
use crate::handle::completion::Abort;
use crate::handle::stream::{DEFAULT_BUFFER, Sender, UnfinishedStream, channel};

/// Drive an iterator on the blocking pool; the stream yields its items. `producer` builds the
/// iterator there, so neither needs to be `Send`, only the items.
///
/// The iterator runs at most 16 items ahead of the reader. Dropping the stream stops it (its
/// next item is not taken, the iterator is dropped and the thread freed).
///
/// ```
/// use std::io::BufRead;
///
/// let lines = unsync::spawn_blocking_stream(|| {
///     let file = std::fs::File::open("Cargo.toml").unwrap();
///     std::io::BufReader::new(file).lines().map(Result::unwrap)
/// });
/// let first = lines.into_iter().next();
/// assert_eq!(first.as_deref(), Some("[package]"));
/// ```
pub fn spawn_blocking_stream<F, I>(producer: F) -> UnfinishedStream<I::Item>
where
    F: FnOnce() -> I + Send + 'static,
    I: IntoIterator,
    I::Item: Send + 'static,
{
    spawn_iter_task("spawn_blocking_stream", DEFAULT_BUFFER, producer)
}

/// [`spawn_blocking_stream`] named after the `#[unsync]` function, with its buffer.
#[doc(hidden)]
pub fn spawn_iter_task<T, I, F>(
    task: &'static str,
    buffer: usize,
    producer: F,
) -> UnfinishedStream<T>
where
    F: FnOnce() -> I + Send + 'static,
    I: IntoIterator<Item = T>,
    T: Send + 'static,
{
    let (sender, stream) = channel(task, buffer);
    let running = crate::exec::blocking::spawn_blocking_task(task, move || {
        drive_iter(task, sender, producer);
    });
    stream.control().set_abort(Abort::new(move || {
        running.cancel();
    }));
    stream
}

fn drive_iter<F, I>(task: &'static str, sender: Sender<I::Item>, producer: F)
where
    F: FnOnce() -> I,
    I: IntoIterator,
    I::Item: Send + 'static,
{
    let produced = catch_unwind(AssertUnwindSafe(|| {
        if sender.is_stopped() {
            return;
        }
        for item in producer() {
            if sender.send_blocking(item).is_err() {
                return;
            }
        }
    }));
    sender
        .finish(produced.map_err(|payload| Error::from_panic(task, &*payload, panic_site::take())));
}

/// Drive a [`Stream`] on the async runtime; the returned stream yields its items, at most 16
/// ahead of the reader. Dropping the returned stream aborts the task that drives it.
///
/// ```
/// use futures::StreamExt;
///
/// let ticks = unsync::spawn_stream(futures::stream::iter(1..=3_u32).then(|n| async move {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
///     n
/// }));
/// let ticks: Vec<u32> = ticks.into_iter().collect();
/// assert_eq!(ticks, [1, 2, 3]);
/// ```
pub fn spawn_stream<S>(stream: S) -> UnfinishedStream<S::Item>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    spawn_stream_task("spawn_stream", DEFAULT_BUFFER, async move { stream })
}

/// [`spawn_stream`] named after the `#[unsync]` function, with its buffer, for a body that
/// makes the stream (an `async fn`'s may await first).
#[doc(hidden)]
pub fn spawn_stream_task<T, S, F>(task: &'static str, buffer: usize, make: F) -> UnfinishedStream<T>
where
    F: Future<Output = S> + Send + 'static,
    S: Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let (sender, stream) = channel(task, buffer);
    let running = crate::exec::runtime::spawn_task(task, drive_stream(task, sender, make));
    stream.control().set_abort(Abort::new(move || {
        running.cancel();
    }));
    stream
}

async fn drive_stream<F, S>(task: &'static str, sender: Sender<S::Item>, make: F)
where
    F: Future<Output = S>,
    S: Stream,
    S::Item: Send + 'static,
{
    let produced = AssertUnwindSafe(async {
        let mut items = pin!(make.await);
        while let Some(item) = items.next().await {
            let mut item = Some(item);
            if std::future::poll_fn(|cx| sender.poll_send(cx, &mut item))
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .catch_unwind()
    .await;
    sender
        .finish(produced.map_err(|payload| Error::from_panic(task, &*payload, panic_site::take())));
}
