//! One streaming `cpu_bound` call, typed, on the parent side: its `STREAM` frame, and the
//! worker's items decoded into its [`UnfinishedStream`]'s queue. The pool sees a [`Job`] like
//! any call's; how the worker drives the iterator, batches and credit is `worker_stream`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Job;
use super::codec;
use super::protocol;
use super::registry::WorkerFn;
use crate::error::{Error, Payload};
use crate::exec::lock;
use crate::exec::stats::{self, Mode};
use crate::handle::completion::Stop;
use crate::handle::stream::Sender;

/// A stream whose items cross the pipe as `W` and are handed over as `T`.
///
/// Counted in `stats` as one process task, from its creation to its end (stopped by a
/// timeout: failed; by `cancel` or a drop: cancelled).
pub(crate) struct StreamJob<W, T> {
    id: u64,
    frame: Vec<u8>,
    /// Taken when the stream ends.
    sender: std::sync::Mutex<Option<Sender<T>>>,
    task: &'static str,
    since: u32,
    started: AtomicU64,
    ended: AtomicBool,
    span: Option<tracing::Span>,
    wire: PhantomData<fn() -> W>,
}

const STARTED: u64 = 1 << 32;

impl<W, T> StreamJob<W, T> {
    pub(crate) fn new(
        id: u64,
        frame: Vec<u8>,
        sender: Sender<T>,
        task: &'static str,
        span: Option<tracing::Span>,
    ) -> StreamJob<W, T> {
        stats::submitted(Mode::Process);
        StreamJob {
            id,
            frame,
            sender: std::sync::Mutex::new(Some(sender)),
            task,
            since: stats::stamp(),
            started: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            span,
            wire: PhantomData,
        }
    }

    fn ended(&self, outcome: stats::Outcome) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = self.started.load(Ordering::Acquire);
        let started = (started & STARTED != 0).then_some(started as u32);
        stats::ended(Mode::Process, outcome, started);
    }
}

impl<W, T> Drop for StreamJob<W, T> {
    fn drop(&mut self) {
        if !*self.ended.get_mut() {
            let why = lock(&self.sender)
                .as_ref()
                .and_then(Sender::stopped_by)
                .unwrap_or(Stop::Cancelled);
            self.ended(stats::Outcome::stopped(why));
        }
    }
}

impl<W, T> Job for StreamJob<W, T>
where
    W: DeserializeOwned + Into<T>,
    T: Send + 'static,
{
    fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// The stream ends: after its last item (the payload is empty), or with `outcome`'s error.
    fn finish(&self, outcome: Result<&[u8], Error>) {
        let Some(sender) = lock(&self.sender).take() else {
            return;
        };
        let stopped = sender.stopped_by();
        self.ended(match &outcome {
            _ if stopped.is_some() => stats::Outcome::stopped(stopped.unwrap_or(Stop::Cancelled)),
            Ok(_) => stats::Outcome::Succeeded,
            Err(Error::Cancelled { .. }) => stats::Outcome::Cancelled,
            Err(_) => stats::Outcome::Failed,
        });
        sender.finish(outcome.map(|_| ()));
    }

    /// Decode and queue each item; one that does not decode ends the stream with
    /// [`Error::Encoding`] and stops the worker (which would go on producing for nobody).
    fn items(&self, items: &[u8]) {
        let decoded = {
            let sender = lock(&self.sender);
            let Some(sender) = sender.as_ref() else {
                return;
            };
            let mut decoded = Ok(());
            for item in protocol::items(items) {
                match codec::decode::<W>(item) {
                    Ok(item) => {
                        if sender.push(item.into()).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        decoded = Err(e);
                        break;
                    }
                }
            }
            decoded
        };
        if let Err(e) = decoded {
            self.finish(Err(Error::Encoding {
                task: self.task,
                payload: Payload::Result,
                detail: format!("decoding an item of the stream in this process: {e}"),
            }));
            super::pool::cancel(self.id);
        }
    }

    fn is_cancelled(&self) -> bool {
        lock(&self.sender).as_ref().is_none_or(Sender::is_stopped)
    }

    fn span(&self) -> Option<&tracing::Span> {
        self.span.as_ref()
    }

    fn dispatched(&self) {
        if self.started.load(Ordering::Relaxed) == 0 {
            let stamp = stats::started(Mode::Process, self.since);
            self.started
                .store(STARTED | u64::from(stamp), Ordering::Release);
        }
    }
}

/// The `STREAM` frame numbered `id` of `entry` with `args`, granting `credit` items; refused
/// as a call's would be (see [`encode_call`](super::call::encode_call)).
pub(crate) fn encode_stream(
    entry: &WorkerFn,
    id: u64,
    level: u8,
    credit: u32,
    args: &impl Serialize,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let task = entry.name;
    let mut frame = Vec::with_capacity(64);
    if let Err(e) = protocol::encode_stream(&mut frame, id, entry.key, level, credit, |out| {
        codec::encode(args, out)
    }) {
        return Err(Error::Encoding {
            task,
            payload: Payload::Arguments,
            detail: format!("encoding them in this process: {e}"),
        });
    }
    let bytes = frame.len() - protocol::PREFIX;
    if bytes > limit {
        return Err(Error::TooLarge {
            task,
            payload: Payload::Arguments,
            bytes,
            limit,
        });
    }
    Ok(frame)
}
