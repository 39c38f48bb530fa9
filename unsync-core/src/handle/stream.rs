//! [`UnfinishedStream<T>`]: a producer of many values running in the background, read as a
//! `Stream` by async code and as a blocking iterator by sync code.
//!
//! The producer and its reader meet in one bounded queue ([`Shared`]): the producer (an
//! executor's [`Sender`]) waits while `buffer` items are unread, the reader waits while none
//! is. The end of the stream (finished, failed, cancelled) is kept apart from the items, so
//! that items produced before a failure are read before it. Like the rest of this layer it
//! knows no executor: how to stop the producer reaches it as an [`Abort`], and a producer in
//! another process, which cannot wait on this queue, is told what the reader took through an
//! [`OnRead`] hook (its credit, see `exec::process::worker_stream`).

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use futures::stream::FusedStream;

use crate::error::Error;
use crate::handle::completion::{Abort, Stop};

/// How many items a producer may run ahead of its reader unless told otherwise.
pub const DEFAULT_BUFFER: usize = 16;

/// How the stream ends, kept apart from the items still queued.
enum End {
    /// The producer may still send.
    Open,
    /// The producer returned, or the failure was handed out already.
    Finished,
    /// The producer failed, was cancelled or timed out; read after the queued items.
    Failed(Error),
}

struct State<T> {
    items: VecDeque<T>,
    end: End,
    /// The reader, waiting for an item or the end.
    reader: Option<Waker>,
    /// The producer, waiting for room.
    producer: Option<Waker>,
    /// Those waiting for the end (a timeout's timer).
    watchers: Vec<Waker>,
    /// What stops the producer, given by its executor.
    abort: Option<Abort>,
    /// Told how many items the reader took, in steps of half the buffer.
    on_read: Option<OnRead>,
    /// Items taken since `on_read` was last told.
    unreported: usize,
    /// Why the stream was stopped, if it was (kept after the reader took the error).
    stopped: Option<Stop>,
}

/// Told how many more items the reader took (at least half the buffer's worth at a time).
pub(crate) type OnRead = Arc<dyn Fn(usize) + Send + Sync>;

/// The queue between one producer and one reader.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    task: &'static str,
    /// Set with `on_read`: see [`Control::waits_alone`].
    alone: std::sync::atomic::AtomicBool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// End the stream with `reason` unless it ended already: unread items are dropped, the
    /// producer is stopped. False when it had ended.
    fn stop(&self, reason: Error) -> bool {
        let (items, abort, producer, reader, watchers);
        {
            let mut state = self.lock();
            if !matches!(state.end, End::Open) {
                return false;
            }
            state.stopped = Some(Stop::of(&reason));
            state.end = End::Failed(reason);
            items = std::mem::take(&mut state.items);
            abort = state.abort.take();
            producer = state.producer.take();
            reader = state.reader.take();
            watchers = std::mem::take(&mut state.watchers);
        }
        // Outside the lock: items' destructors and the abort may take time, or locks of their own.
        drop(items);
        wake_all(producer, reader, watchers);
        if let Some(abort) = abort {
            abort.run();
        }
        true
    }
}

fn wake_all(producer: Option<Waker>, reader: Option<Waker>, watchers: Vec<Waker>) {
    producer
        .into_iter()
        .chain(reader)
        .chain(watchers)
        .for_each(Waker::wake);
}

/// A stream's end and stop, whatever its item type: what a timeout and `cancel` use.
pub(crate) trait Control: Send + Sync {
    /// See [`Shared::stop`].
    fn stop(&self, reason: Error) -> bool;
    /// Ready once the stream has ended (its items may still be unread).
    fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// How to stop the producer when the stream is cancelled or dropped, given by its
    /// executor once the producer is started. Dropped unrun when the stream ended already.
    fn set_abort(&self, abort: Abort);
    fn task(&self) -> &'static str;
    /// Whether a blocking reader should wait without running other rayon jobs (see
    /// `next_blocking`).
    fn waits_alone(&self) -> bool;
}

impl<T: Send> Control for Shared<T> {
    fn stop(&self, reason: Error) -> bool {
        Shared::stop(self, reason)
    }

    fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if !matches!(state.end, End::Open) {
            return Poll::Ready(());
        }
        if !state.watchers.iter().any(|w| w.will_wake(cx.waker())) {
            state.watchers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn set_abort(&self, abort: Abort) {
        let mut state = self.lock();
        if matches!(state.end, End::Open) {
            state.abort = Some(abort);
        }
    }

    fn task(&self) -> &'static str {
        self.task
    }

    fn waits_alone(&self) -> bool {
        self.alone.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The reader went away, or the stream was stopped: the producer should return.
#[derive(Debug)]
pub(crate) struct Stopped;

/// The producer's side, held by the executor that drives the producer. Dropped without
/// [`finish`](Sender::finish) (the task dropped before it ran, or aborted), it ends the stream
/// with [`Error::Cancelled`].
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Sender<T> {
    /// Queue `item` if there is room, else register to be woken when there is. `item` is
    /// taken when the result is ready (and dropped when the stream was stopped).
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        item: &mut Option<T>,
    ) -> Poll<Result<(), Stopped>> {
        let reader;
        {
            let mut state = self.shared.lock();
            if !matches!(state.end, End::Open) {
                drop(state);
                *item = None;
                return Poll::Ready(Err(Stopped));
            }
            if state.items.len() >= self.shared.capacity {
                if !state
                    .producer
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.producer = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            if let Some(item) = item.take() {
                state.items.push_back(item);
            }
            reader = state.reader.take();
        }
        if let Some(reader) = reader {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Queue `item`, blocking the thread while the queue is full (safely from any context,
    /// as a blocking read does).
    pub(crate) fn send_blocking(&self, item: T) -> Result<(), Stopped> {
        let mut item = Some(item);
        if let Poll::Ready(sent) =
            self.poll_send(&mut Context::from_waker(Waker::noop()), &mut item)
        {
            return sent;
        }
        crate::handle::wait::block_on(|cx| self.poll_send(cx, &mut item), None)
            .expect("a wait without deadline returns a value")
    }

    /// Tell `on_read` how many items the reader takes, in steps of half the buffer (at least
    /// one): for a producer that bounds itself with credit instead of waiting for room.
    pub(crate) fn set_on_read(&self, on_read: OnRead) {
        self.shared.lock().on_read = Some(on_read);
        self.shared
            .alone
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queue `item` without waiting for room: for a producer that bounds itself (a worker
    /// process, by credit). Fails (dropping `item`) when the stream was stopped.
    pub(crate) fn push(&self, item: T) -> Result<(), Stopped> {
        let reader;
        {
            let mut state = self.shared.lock();
            if !matches!(state.end, End::Open) {
                drop(state);
                drop(item);
                return Err(Stopped);
            }
            state.items.push_back(item);
            reader = state.reader.take();
        }
        if let Some(reader) = reader {
            reader.wake();
        }
        Ok(())
    }

    /// Whether the stream was stopped (the reader dropped it, cancelled it, or it timed out).
    pub(crate) fn is_stopped(&self) -> bool {
        !matches!(self.shared.lock().end, End::Open)
    }

    /// End the stream: `Ok` after the last item, or the producer's failure.
    pub(crate) fn finish(self, outcome: Result<(), Error>) {
        let (reader, watchers);
        {
            let mut state = self.shared.lock();
            if !matches!(state.end, End::Open) {
                return;
            }
            state.end = match outcome {
                Ok(()) => End::Finished,
                Err(error) => End::Failed(error),
            };
            // Nothing left to stop.
            drop(state.abort.take());
            reader = state.reader.take();
            watchers = std::mem::take(&mut state.watchers);
        }
        wake_all(None, reader, watchers);
    }
}

impl<T> Sender<T> {
    /// Why the stream was stopped (by `cancel`, a drop, or a timeout), if it was.
    pub(crate) fn stopped_by(&self) -> Option<Stop> {
        self.shared.lock().stopped
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let task = self.shared.task;
        let open = matches!(self.shared.lock().end, End::Open);
        if open {
            self.shared.stop(Error::Cancelled { task });
        }
    }
}

/// The reader's own end of the queue. Dropping it stops the producer.
struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        let (polled, producer, read) = {
            let mut state = self.shared.lock();
            if let Some(item) = state.items.pop_front() {
                // A waiting producer is woken once half the queue is free, not for every item:
                // it then refills it in one go, without a thread switch per item.
                let producer = if state.items.len() <= self.shared.capacity / 2 {
                    state.producer.take()
                } else {
                    None
                };
                let mut read = None;
                if state.on_read.is_some() {
                    state.unreported += 1;
                    if state.unreported >= (self.shared.capacity / 2).max(1) {
                        let n = std::mem::take(&mut state.unreported);
                        read = state.on_read.clone().map(|on_read| (on_read, n));
                    }
                }
                (Poll::Ready(Some(Ok(item))), producer, read)
            } else {
                let polled = match std::mem::replace(&mut state.end, End::Finished) {
                    End::Open => {
                        state.end = End::Open;
                        if !state
                            .reader
                            .as_ref()
                            .is_some_and(|w| w.will_wake(cx.waker()))
                        {
                            state.reader = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                    End::Finished => Poll::Ready(None),
                    End::Failed(error) => Poll::Ready(Some(Err(error))),
                };
                (polled, None, None)
            }
        };
        if let Some(producer) = producer {
            producer.wake();
        }
        if let Some((on_read, n)) = read {
            on_read(n);
        }
        polled
    }

    fn is_terminated(&self) -> bool {
        let state = self.shared.lock();
        state.items.is_empty() && matches!(state.end, End::Finished)
    }
}

impl<T> Drop for Receiver<T> {
    /// Stops a producer still running; reports a producer's failure nobody read (as a failed
    /// task whose handles were all dropped is). A stream that had ended may still hold items:
    /// they go with it.
    fn drop(&mut self) {
        let task = self.shared.task;
        let unread = {
            let mut state = self.shared.lock();
            match std::mem::replace(&mut state.end, End::Finished) {
                End::Failed(error) => Some(error),
                End::Finished => None,
                End::Open => {
                    state.end = End::Open;
                    None
                }
            }
        };
        match unread {
            // A timeout or a cancel is the reader's own decision.
            Some(Error::Cancelled { .. } | Error::TimedOut { .. }) => {}
            Some(error) => crate::report::unobserved(&error),
            None => {
                self.shared.stop(Error::Cancelled { task });
            }
        }
    }
}

/// A transformed stream (`catch`): anything that yields outcomes.
trait Source<T>: Send {
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>>;
    fn is_terminated(&self) -> bool;
}

enum Repr<T> {
    Direct(Receiver<T>),
    Source(Box<dyn Source<T>>),
}

/// Many values produced in the background, in the order produced: what a streaming
/// `#[unsync]` function returns (one declared to return `impl Iterator<Item = T>` or
/// `impl Stream<Item = T>`), and [`spawn_stream`](crate::spawn_stream) and
/// [`spawn_blocking_stream`](crate::spawn_blocking_stream).
///
/// A [`Stream`] for async callers, on any executor; [`IntoIterator`] (with
/// [`UnfinishedStreamIter`], a blocking iterator, safe from anywhere
/// [`Unfinished::result`](crate::Unfinished::result) is) for sync callers. Deliberately not an
/// `Iterator` itself, so that `StreamExt` methods are never ambiguous.
///
/// - **Backpressure**: the producer runs at most `buffer` items ahead of the reader (16 unless
///   `#[unsync(buffer = N)]` says otherwise), then waits.
/// - **Failure**: the items produced before a panic are read first, then reading re-raises it
///   (the iterator's `next` or the stream's poll panics with the [`Error`]);
///   [`catch`](UnfinishedStream::catch) yields it as a last `Err` item instead.
/// - **Stopping**: [`cancel`](UnfinishedStream::cancel) and
///   [`timeout`](UnfinishedStream::timeout) end the stream with the matching error; dropping
///   the stream (or its iterator) stops the producer, unlike dropping an
///   [`Unfinished`](crate::Unfinished): a producer nobody reads would otherwise wait forever.
///   A producer's failure that nobody read is reported as a failed task's is (see
///   [`Config::on_unobserved_error`](crate::Config::on_unobserved_error)).
///
/// ```
/// let squares = unsync::spawn_blocking_stream(|| (1..=4_u64).map(|n| n * n));
/// let squares: Vec<u64> = squares.into_iter().collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
///
/// use futures::StreamExt;
/// let words = unsync::spawn_stream(futures::stream::iter(["a", "b"]));
/// assert_eq!(futures::executor::block_on(words.collect::<Vec<_>>()), ["a", "b"]);
/// ```
#[must_use = "a stream's producer stops when the stream is dropped: iterate or poll it"]
pub struct UnfinishedStream<T> {
    repr: Repr<T>,
    control: Arc<dyn Control>,
}

/// A new stream of `task` whose producer may run `buffer` items ahead: the producer's side and
/// the reader's.
pub(crate) fn channel<T: Send + 'static>(
    task: &'static str,
    buffer: usize,
) -> (Sender<T>, UnfinishedStream<T>) {
    let capacity = buffer.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(1024)),
            end: End::Open,
            reader: None,
            producer: None,
            watchers: Vec::new(),
            abort: None,
            on_read: None,
            unreported: 0,
            stopped: None,
        }),
        capacity,
        task,
        alone: std::sync::atomic::AtomicBool::new(false),
    });
    let stream = UnfinishedStream {
        repr: Repr::Direct(Receiver {
            shared: shared.clone(),
        }),
        control: shared.clone(),
    };
    (Sender { shared }, stream)
}

struct Caught<T> {
    inner: UnfinishedStream<T>,
    done: bool,
}

impl<T: Send + 'static> Source<Result<T, Error>> for Caught<T> {
    fn poll_outcome(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Result<T, Error>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        Poll::Ready(match std::task::ready!(self.inner.poll_outcome(cx)) {
            Some(Ok(item)) => Some(Ok(Ok(item))),
            Some(Err(error)) => {
                self.done = true;
                Some(Ok(Err(error)))
            }
            None => {
                self.done = true;
                None
            }
        })
    }

    fn is_terminated(&self) -> bool {
        self.done || self.inner.is_terminated()
    }
}

impl<T: Send + 'static> UnfinishedStream<T> {
    /// The next item, the stream's failure, or its end; else register the waker.
    pub(crate) fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        match &mut self.repr {
            Repr::Direct(receiver) => receiver.poll_outcome(cx),
            Repr::Source(source) => source.poll_outcome(cx),
        }
    }

    fn next_blocking(&mut self) -> Option<T> {
        // A producer in another process (told by `on_read`) needs nothing from this process's
        // rayon pool; a rayon reader that ran other jobs while it waited could start, below
        // this read, another stream's read that waits for the worker this stream holds.
        let outcome = if self.control.waits_alone() {
            crate::handle::wait::block_on_alone(|cx| self.poll_outcome(cx))
        } else {
            crate::handle::wait::block_on(|cx| self.poll_outcome(cx), None)
                .expect("a wait without deadline returns a value")
        };
        outcome.map(|o| o.unwrap_or_else(|error| reraise(error)))
    }

    /// Whether every item and the end were read.
    fn is_terminated(&self) -> bool {
        match &self.repr {
            Repr::Direct(receiver) => receiver.is_terminated(),
            Repr::Source(source) => source.is_terminated(),
        }
    }

    /// The stream's stop and end, for combinators.
    pub(crate) fn control(&self) -> &Arc<dyn Control> {
        &self.control
    }

    /// The name of the producer: the `#[unsync]` function's path, or `"spawn_stream"`, ...
    pub(crate) fn task(&self) -> &'static str {
        self.control.task()
    }

    /// The same stream, with its failure as a last `Err` item instead of a panic in the
    /// reader: items come as `Ok`, then at most one `Err`, then the end.
    ///
    /// ```
    /// let stream = unsync::spawn_blocking_stream(|| {
    ///     (1..=3_u32).map(|n| if n == 3 { panic!("no third") } else { n })
    /// });
    /// let items: Vec<_> = stream.catch().into_iter().collect();
    /// assert_eq!(items[..2], [Ok(1), Ok(2)]);
    /// assert!(matches!(&items[2], Err(unsync::Error::Panicked { message, .. }) if message == "no third"));
    /// assert_eq!(items.len(), 3);
    /// ```
    pub fn catch(self) -> UnfinishedStream<Result<T, Error>> {
        let control = self.control.clone();
        UnfinishedStream {
            repr: Repr::Source(Box::new(Caught {
                inner: self,
                done: false,
            })),
            control,
        }
    }

    /// Stop the producer: the stream ends with [`Error::Cancelled`] (re-raised by the next
    /// read, or yielded after [`catch`](UnfinishedStream::catch)), and the items not yet read
    /// are dropped. Never blocks. False when the producer had ended already (its items stay
    /// readable).
    ///
    /// What stops: an async producer is aborted at its next `.await`; a thread's producer sees
    /// [`is_cancelled`](crate::is_cancelled) turn true, and its next item is not taken (the
    /// iterator is dropped), which frees its thread.
    ///
    /// ```
    /// let naturals = unsync::spawn_blocking_stream(|| 0_u64..);
    /// assert!(naturals.cancel());
    /// let rest: Vec<_> = naturals.catch().into_iter().collect();
    /// assert!(matches!(rest.last(), Some(Err(unsync::Error::Cancelled { .. }))));
    /// ```
    pub fn cancel(&self) -> bool {
        let task = self.task();
        self.control.stop(Error::Cancelled { task })
    }
}

/// Panic with a stream's failure, at the reader.
#[track_caller]
fn reraise(error: Error) -> ! {
    match error.backtrace() {
        Some(backtrace) => panic!("{error}\n\nbacktrace in the worker process:\n{backtrace}"),
        None => panic!("{error}"),
    }
}

impl<T: Send + 'static> Stream for UnfinishedStream<T> {
    type Item = T;

    /// The next item, in the order produced.
    ///
    /// # Panics
    /// When the producer failed, once the items it produced before were read (see
    /// [`UnfinishedStream`]).
    #[track_caller]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match std::task::ready!(self.get_mut().poll_outcome(cx)) {
            None => Poll::Ready(None),
            Some(Ok(item)) => Poll::Ready(Some(item)),
            Some(Err(error)) => reraise(error),
        }
    }
}

impl<T: Send + 'static> FusedStream for UnfinishedStream<T> {
    fn is_terminated(&self) -> bool {
        UnfinishedStream::is_terminated(self)
    }
}

impl<T: Send + 'static> IntoIterator for UnfinishedStream<T> {
    type Item = T;
    type IntoIter = UnfinishedStreamIter<T>;

    /// A blocking iterator over the items.
    fn into_iter(self) -> UnfinishedStreamIter<T> {
        UnfinishedStreamIter { inner: self }
    }
}

impl<T> fmt::Debug for UnfinishedStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnfinishedStream")
            .field("task", &self.control.task())
            .finish_non_exhaustive()
    }
}

/// The blocking iterator of an [`UnfinishedStream`]: each `next` blocks until the producer
/// has produced the next item (safely from any context, as
/// [`Unfinished::result`](crate::Unfinished::result) does). Dropping it stops the producer.
///
/// ```
/// let mut lines = unsync::spawn_blocking_stream(|| ["one", "two"].into_iter()).into_iter();
/// assert_eq!(lines.next(), Some("one"));
/// assert_eq!(lines.next(), Some("two"));
/// assert_eq!(lines.next(), None);
/// ```
pub struct UnfinishedStreamIter<T> {
    inner: UnfinishedStream<T>,
}

impl<T: Send + 'static> UnfinishedStreamIter<T> {
    /// Stop the producer, as [`UnfinishedStream::cancel`] does.
    pub fn cancel(&self) -> bool {
        self.inner.cancel()
    }
}

impl<T: Send + 'static> Iterator for UnfinishedStreamIter<T> {
    type Item = T;

    /// The next item, blocking until there is one.
    ///
    /// # Panics
    /// When the producer failed, once the items it produced before were read (see
    /// [`UnfinishedStream`]).
    #[track_caller]
    fn next(&mut self) -> Option<T> {
        self.inner.next_blocking()
    }
}

impl<T: Send + 'static> FusedIterator for UnfinishedStreamIter<T> {}

impl<T> fmt::Debug for UnfinishedStreamIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnfinishedStreamIter")
            .field("task", &self.inner.control.task())
            .finish_non_exhaustive()
    }
}
