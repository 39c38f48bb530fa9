//! One streaming `cpu_bound` call, typed, on the parent side: its `STREAM` frame, and the
//! worker's items decoded into its [`UnfinishedStream`](crate::UnfinishedStream)'s queue. The pool sees a [`Job`] like
//! any call's; how the worker drives the iterator, batches and credit is `worker_stream`.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{CallStats, Job};
use super::codec;
use super::protocol;
use super::registry::WorkerFn;
use crate::error::{Error, Payload};
use crate::exec::lock;
use crate::handle::completion::Stop;
use crate::handle::stream::Sender;

/// A stream whose items cross the pipe as `W` and are handed over as `T`, counted in `stats`
/// as one process task (stopped by a timeout: failed; by `cancel` or a drop: cancelled).
pub(crate) struct StreamJob<W, T> {
    id: u64,
    frame: Vec<u8>,
    /// Taken when the stream ends.
    sender: std::sync::Mutex<Option<Sender<T>>>,
    task: &'static str,
    stats: CallStats,
    span: Option<tracing::Span>,
    wire: PhantomData<fn() -> W>,
}

impl<W, T> StreamJob<W, T> {
    pub(crate) fn new(
        id: u64,
        frame: Vec<u8>,
        sender: Sender<T>,
        task: &'static str,
        span: Option<tracing::Span>,
    ) -> StreamJob<W, T> {
        StreamJob {
            id,
            frame,
            sender: std::sync::Mutex::new(Some(sender)),
            task,
            stats: CallStats::submitted(),
            span,
            wire: PhantomData,
        }
    }
}

impl<W, T> Drop for StreamJob<W, T> {
    fn drop(&mut self) {
        let sender = &self.sender;
        self.stats.end_unfinished(|| {
            lock(sender)
                .as_ref()
                .and_then(Sender::stopped_by)
                .unwrap_or(Stop::Cancelled)
        });
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
        self.stats.end(sender.stopped_by(), &outcome);
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
                match codec::decode_in_parent::<W>(item) {
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
        self.stats.dispatched();
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
    let mut frame = Vec::with_capacity(64);
    let encoded = protocol::encode_stream(&mut frame, id, entry.key, level, credit, |out| {
        codec::encode(args, out)
    });
    let bytes = frame.len().saturating_sub(protocol::PREFIX);
    super::call::arguments_fit(entry.name, encoded, bytes, limit)?;
    Ok(frame)
}
