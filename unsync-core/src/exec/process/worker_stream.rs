//! The worker side of a streaming `cpu_bound` call (a `STREAM` frame): the function's iterator
//! driven here, its items sent to the parent as they are produced, within the credit the
//! parent grants.
//!
//! - **Credit.** The `STREAM` frame grants `buffer` items; the parent grants more (`CREDIT`) as
//!   its reader takes items, half a buffer at a time. The iterator's `next` is called only with
//!   credit in hand, so the worker is never more than `buffer` items ahead of the reader,
//!   counting those in the pipe and in the parent's queue. Out of credit, it waits on the
//!   request pipe, which carries nothing else while it streams (a streaming worker is given no
//!   other call).
//! - **Batching.** Items go out through a writer thread: the producer appends each encoded
//!   item to the open `ITEMS` frame and goes on; the writer takes everything appended while it
//!   was writing the previous batch, and writes it at once. A slow producer's items therefore
//!   leave one by one, as soon as each is made (nothing waits for a batch to fill or a timer),
//!   and a fast producer's leave in batches as large as the writer falls behind, up to the
//!   credit, in frames of at most 64 KiB. No item waits while the writer is idle.
//! - **The end.** After the last item, `RETURNED` with an empty payload; a panic, an item that
//!   does not encode or exceeds the frame limit ends the stream with `PANICKED`, `FAILED` or
//!   `OVERSIZED` after the items sent before it. The call's `tracing` records go out with each
//!   batch, before its items.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

#[cfg(test)]
use super::protocol;
use super::protocol::{
    Failure, FrameReader, ITEM_PREFIX, ITEMS_HEADER, Message, PREFIX, begin_items, end_items,
    push_item,
};
use super::registry::{self, NextItem};
use super::worker::encode_panic;
use super::worker_log;

/// Largest `ITEMS` frame a batch is cut into (an item larger than this goes alone).
const FRAME_CAP: usize = 64 << 10;

/// Why a stream stopped without its ending being sent: the worker then exits.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The parent closed a pipe.
    ParentGone,
    /// The request pipe carried something other than credit: out of step.
    Broken(String),
}

/// How a stream ends, once its items are sent.
enum Ending {
    Returned,
    Failed(Failure, String),
    Oversized(u64),
    Panicked(Box<dyn std::any::Any + Send>),
}

/// A stream: call `key` numbered `id`, with its `args`, `credit` items granted at first.
pub(crate) struct Request<'a> {
    pub(crate) id: u64,
    pub(crate) key: u64,
    pub(crate) level: u8,
    pub(crate) credit: u32,
    pub(crate) args: &'a [u8],
}

/// Run a stream to its end: its items, then its ending, written to `responses`, credit read
/// from `requests`. `Err` when the worker must exit.
pub(crate) fn serve_stream<R: Read, W: Write + Send>(
    requests: &mut FrameReader<R>,
    responses: &mut W,
    request: Request<'_>,
    max_frame: usize,
) -> Result<(), Stop> {
    let Request {
        id,
        key,
        level,
        credit,
        args,
    } = request;
    let began = Instant::now();
    worker_log::begin(id, level);
    let mut next = match start(key, args) {
        Ok(next) => next,
        Err(ending) => {
            // The stream ends before its first item: its ending alone.
            let mut out = worker_log::end();
            out.extend(ending_frame(id, ending, began));
            return responses
                .write_all(&out)
                .and_then(|()| responses.flush())
                .map_err(|_| Stop::ParentGone);
        }
    };
    let outbox = Outbox::new(id, FRAME_CAP.min(max_frame + PREFIX));
    let served = std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("unsync-worker-stream".into())
            .spawn_scoped(scope, || outbox.write_batches(responses))
            .map_err(|e| Stop::Broken(format!("cannot start the stream's writer: {e}")))?;
        let produced = produce(&mut next, requests, &outbox, credit, max_frame);
        // The iterator is dropped before the ending goes, as a call's values are before its
        // answer.
        drop(next);
        let (ending, served) = match produced {
            Ok(ending) => (ending_frame(id, ending, began), Ok(())),
            Err(stop) => (Vec::new(), Err(stop)),
        };
        outbox.end(ending);
        match writer.join() {
            Ok(true) => served,
            _ => Err(Stop::ParentGone),
        }
    });
    // Every record went with the last batch: stop recording.
    drop(worker_log::end());
    served
}

/// Decode the arguments and call the function: its iterator, or how the stream ends at once.
fn start(key: u64, args: &[u8]) -> Result<NextItem, Ending> {
    let Some(stream) = registry::lookup(key).and_then(|f| f.stream) else {
        return Err(Ending::Failed(
            Failure::NotRegistered,
            "no such streaming cpu_bound function in the worker".into(),
        ));
    };
    match catch_unwind(AssertUnwindSafe(|| stream(args))) {
        Ok(Ok(next)) => Ok(next),
        Ok(Err(codec)) => Err(Ending::Failed(Failure::Arguments, codec.to_string())),
        Err(panic) => Err(Ending::Panicked(panic)),
    }
}

/// Drive the iterator, item by item, while there is credit; wait for credit when there is none.
fn produce<R: Read>(
    next: &mut NextItem,
    requests: &mut FrameReader<R>,
    outbox: &Outbox,
    credit: u32,
    max_frame: usize,
) -> Result<Ending, Stop> {
    let mut credit = u64::from(credit);
    let mut item = Vec::new();
    loop {
        if credit == 0 {
            credit += wait_for_credit(requests, outbox.id)?;
            continue;
        }
        item.clear();
        match catch_unwind(AssertUnwindSafe(|| next(&mut item))) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Ok(Ending::Returned),
            Ok(Err(codec)) => return Ok(Ending::Failed(Failure::Result, codec.to_string())),
            Err(panic) => return Ok(Ending::Panicked(panic)),
        }
        let body = ITEMS_HEADER - PREFIX + ITEM_PREFIX + item.len();
        if body > max_frame {
            return Ok(Ending::Oversized(body as u64));
        }
        credit -= 1;
        outbox.push(&item)?;
    }
}

/// Block until the parent grants stream `id` more items; credit of an ended stream is ignored.
fn wait_for_credit<R: Read>(requests: &mut FrameReader<R>, id: u64) -> Result<u64, Stop> {
    loop {
        let body = match requests.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) => return Err(Stop::ParentGone),
            Err(e) => return Err(Stop::Broken(e.to_string())),
        };
        match Message::decode(body) {
            Ok(Message::Credit { id: of, items }) if of == id => return Ok(u64::from(items)),
            Ok(Message::Credit { .. }) => {}
            Ok(_) => {
                return Err(Stop::Broken(
                    "expected a credit frame while streaming".into(),
                ));
            }
            Err(e) => return Err(Stop::Broken(e.to_string())),
        }
    }
}

/// The frame that ends stream `id`.
fn ending_frame(id: u64, ending: Ending, began: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    match ending {
        Ending::Returned => Message::Returned {
            id,
            micros: u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX),
            shared: false,
            payload: &[],
        }
        .encode(&mut out),
        Ending::Failed(failure, message) => Message::Failed {
            id,
            failure,
            message: &message,
        }
        .encode(&mut out),
        Ending::Oversized(bytes) => Message::Oversized { id, bytes }.encode(&mut out),
        Ending::Panicked(panic) => encode_panic(id, panic, &mut out),
    }
    out
}

/// What waits to be written: closed `ITEMS` frames, then the open one, then the ending.
struct Batch {
    bytes: Vec<u8>,
    /// Where the open `ITEMS` frame starts in `bytes`, and how many items it holds.
    open: Option<(usize, u32)>,
    /// The stream's ending, once produced (empty: stop without one).
    end: Option<Vec<u8>>,
    writer_waiting: bool,
    /// A write failed: the parent is gone.
    broken: bool,
}

/// Between the producer and the writer thread.
struct Outbox {
    id: u64,
    cap: usize,
    batch: Mutex<Batch>,
    ready: Condvar,
}

impl Outbox {
    fn new(id: u64, cap: usize) -> Outbox {
        Outbox {
            id,
            cap,
            batch: Mutex::new(Batch {
                bytes: Vec::new(),
                open: None,
                end: None,
                writer_waiting: false,
                broken: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Append one encoded item, in the open frame if it fits under the cap.
    fn push(&self, item: &[u8]) -> Result<(), Stop> {
        let mut batch = self.lock();
        if batch.broken {
            return Err(Stop::ParentGone);
        }
        if let Some((start, _)) = batch.open {
            if batch.bytes.len() - start + ITEM_PREFIX + item.len() > self.cap {
                batch.close();
            }
        }
        let (start, count) = match batch.open {
            Some(open) => open,
            None => (begin_items(&mut batch.bytes, self.id), 0),
        };
        push_item(&mut batch.bytes, item);
        batch.open = Some((start, count + 1));
        if batch.bytes.len() - start >= self.cap {
            batch.close();
        }
        if batch.writer_waiting {
            batch.writer_waiting = false;
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The producer is done: the writer sends what is left, then `ending`, and returns.
    fn end(&self, ending: Vec<u8>) {
        let mut batch = self.lock();
        batch.end = Some(ending);
        self.ready.notify_one();
    }

    /// The writer thread: write each batch as it comes, until the ending. False when a write
    /// failed.
    fn write_batches<W: Write>(&self, responses: &mut W) -> bool {
        let mut spare = Vec::new();
        loop {
            let end = {
                let mut batch = self.lock();
                while batch.bytes.is_empty() && batch.end.is_none() {
                    batch.writer_waiting = true;
                    batch = self
                        .ready
                        .wait(batch)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                batch.writer_waiting = false;
                batch.close();
                std::mem::swap(&mut batch.bytes, &mut spare);
                batch.end.take()
            };
            let records = worker_log::take();
            let written = responses
                .write_all(&records)
                .and_then(|()| responses.write_all(&spare))
                .and_then(|()| match &end {
                    Some(end) => responses.write_all(end),
                    None => Ok(()),
                })
                .and_then(|()| responses.flush());
            spare.clear();
            let mut batch = self.lock();
            if written.is_err() {
                batch.broken = true;
                return false;
            }
            if end.is_some() {
                return true;
            }
        }
    }
}

impl Batch {
    /// Close the open `ITEMS` frame, if any.
    fn close(&mut self) {
        if let Some((start, count)) = self.open.take() {
            end_items(&mut self.bytes, start, count);
        }
    }
}

/// The credit frame granting stream `id` `items` more items (what the parent sends).
#[cfg(test)]
fn credit(id: u64, items: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Credit { id, items }.encode(&mut out);
    out
}

/// What a stream wrote: its items' encodings in order, and its ending's message kind.
#[cfg(test)]
pub(crate) fn read_stream(written: &[u8], id: u64, max: usize) -> (Vec<Vec<u8>>, String) {
    let mut reader = FrameReader::new(written, max);
    let mut items = Vec::new();
    while let Ok(Some(body)) = reader.next_frame() {
        match Message::decode(body).expect("the worker writes frames that decode") {
            Message::Items {
                id: of, items: i, ..
            } => {
                assert_eq!(of, id);
                items.extend(protocol::items(i).map(<[u8]>::to_vec));
            }
            Message::Span { .. } | Message::Event { .. } => {}
            ending => {
                let kind = format!("{ending:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("").to_owned();
                assert!(
                    reader.next_frame().unwrap().is_none(),
                    "frames after the end"
                );
                return (items, kind);
            }
        }
    }
    panic!("the stream did not end");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::codec::{decode, encode};
    use crate::exec::process::fuzz::samples::{COUNT_TO, PANICS_AT, WORDS};

    fn run(key: u64, args: &[u8], credit_frames: &[u8], initial: u32) -> Result<Vec<u8>, Stop> {
        let mut requests = FrameReader::new(credit_frames, 1 << 20);
        let mut out = Vec::new();
        let request = Request {
            id: 9,
            key,
            level: 0,
            credit: initial,
            args,
        };
        serve_stream(&mut requests, &mut out, request, 1 << 20).map(|()| out)
    }

    fn args(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&(n,), &mut out).unwrap();
        out
    }

    #[test]
    fn every_item_then_the_end() {
        let credits: Vec<u8> = (0..10).flat_map(|_| credit(9, 4)).collect();
        let out = run(COUNT_TO.key, &args(40), &credits, 4).unwrap();
        let (items, end) = read_stream(&out, 9, 1 << 20);
        let items: Vec<u64> = items.iter().map(|i| decode(i).unwrap()).collect();
        assert_eq!(items, (0..40).collect::<Vec<_>>());
        assert_eq!(end, "Returned");
    }

    /// With credit for 6 items and no more coming, the worker sends 6 and then waits: here the
    /// request pipe ends instead, so the stream stops as when the parent is gone.
    #[test]
    fn no_item_beyond_the_credit() {
        let mut requests = FrameReader::new(&[][..], 1 << 20);
        let mut out = Vec::new();
        let request = Request {
            id: 9,
            key: COUNT_TO.key,
            level: 0,
            credit: 6,
            args: &args(1000),
        };
        let stopped = serve_stream(&mut requests, &mut out, request, 1 << 20);
        assert!(matches!(stopped, Err(Stop::ParentGone)), "{stopped:?}");
        let mut reader = FrameReader::new(&out[..], 1 << 20);
        let mut sent = 0;
        while let Some(body) = reader.next_frame().unwrap() {
            let Message::Items { count, .. } = Message::decode(body).unwrap() else {
                panic!("not items")
            };
            sent += count;
        }
        assert_eq!(sent, 6);
    }

    #[test]
    fn credit_of_another_stream_is_ignored_and_anything_else_breaks() {
        let mut credits = credit(8, 100);
        credits.extend(credit(9, 100));
        let out = run(COUNT_TO.key, &args(20), &credits, 1).unwrap();
        assert_eq!(read_stream(&out, 9, 1 << 20).0.len(), 20);

        let mut call = Vec::new();
        Message::Call {
            id: 10,
            key: 1,
            level: 0,
            args: &[],
        }
        .encode(&mut call);
        assert!(matches!(
            run(COUNT_TO.key, &args(20), &call, 1),
            Err(Stop::Broken(_))
        ));
    }

    #[test]
    fn items_before_a_panic_then_the_panic() {
        let out = run(PANICS_AT.key, &args(3), &[], 16).unwrap();
        let (items, end) = read_stream(&out, 9, 1 << 20);
        assert_eq!(items.len(), 3);
        assert_eq!(end, "Panicked");
    }

    /// An item over the frame limit ends the stream with `OVERSIZED`, after the items before.
    #[test]
    fn an_item_over_the_limit_ends_the_stream() {
        let mut text = Vec::new();
        encode(&("a bb ".to_owned() + &"c".repeat(100) + " d",), &mut text).unwrap();
        let mut requests = FrameReader::new(&[][..], 1 << 20);
        let mut out = Vec::new();
        let request = Request {
            id: 9,
            key: WORDS.key,
            level: 0,
            credit: 16,
            args: &text,
        };
        serve_stream(&mut requests, &mut out, request, 64).unwrap();
        let (items, end) = read_stream(&out, 9, 1 << 20);
        let items: Vec<String> = items.iter().map(|i| decode(i).unwrap()).collect();
        assert_eq!(items, ["a", "bb"]);
        assert_eq!(end, "Oversized");
    }

    #[test]
    fn failures_before_the_first_item() {
        let (_, end) = read_stream(&run(12345, &args(3), &[], 16).unwrap(), 9, 1 << 20);
        assert_eq!(end, "Failed");
        let (_, end) = read_stream(&run(COUNT_TO.key, b"", &[], 16).unwrap(), 9, 1 << 20);
        assert_eq!(end, "Failed");
        // A function that is not a stream.
        let add = crate::exec::process::fuzz::samples::ADD.key;
        let (_, end) = read_stream(&run(add, &args(3), &[], 16).unwrap(), 9, 1 << 20);
        assert_eq!(end, "Failed");
    }
}
