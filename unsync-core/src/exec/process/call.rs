//! One call, typed: its arguments encoded into a `CALL` frame, and the worker's answer settled
//! into what its handle resolves to. The pool itself sees only [`Job`]s, with the types erased.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec;
use super::protocol::{self, Failure, Message};
use super::registry::WorkerFn;
use super::shared::{self, ArgsArena, ArgsBlocks, Spare};
use crate::error::{Error, PanicSite, Payload};
use crate::exec::lock;
use crate::exec::stats::{self, Mode};
use crate::handle::completion::{Completion, Stop};

/// One call on its way: the encoded frame and how to complete its handle.
pub(crate) trait Job: Send + Sync {
    fn frame(&self) -> &[u8];
    /// Complete the handle from the result's bytes, or with an error.
    fn finish(&self, outcome: Result<&[u8], Error>);
    fn is_cancelled(&self) -> bool;
    /// The call was given to a worker (counted once in `stats`, even if it is given again
    /// after its worker died).
    fn dispatched(&self);
    /// The call-site span, kept when the parent records `tracing` events (see `worker_log`).
    fn span(&self) -> Option<&tracing::Span>;
    /// The items of an `ITEMS` frame (each sized). The pool gives them only to a stream's job
    /// (`stream::StreamJob`); a call has none.
    fn items(&self, _items: &[u8]) {}
}

/// One process task's place in `stats` (`Mode::Process`): submitted when made, started when
/// first given to a worker (once, even if given again after its worker died), ended once: by
/// [`end`](CallStats::end), or by [`end_unfinished`](CallStats::end_unfinished) when its job
/// drops unfinished (the pool drops a call cancelled before its worker answered).
pub(crate) struct CallStats {
    /// When submitted (`stats::stamp`).
    since: u32,
    /// `STARTED | stamp` once given to a worker, 0 before.
    started: AtomicU64,
    ended: AtomicBool,
}

const STARTED: u64 = 1 << 32;

impl CallStats {
    pub(crate) fn submitted() -> CallStats {
        stats::submitted(Mode::Process);
        CallStats {
            since: stats::stamp(),
            started: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        }
    }

    pub(crate) fn dispatched(&self) {
        if self.started.load(Ordering::Relaxed) == 0 {
            let stamp = stats::started(Mode::Process, self.since);
            self.started
                .store(STARTED | u64::from(stamp), Ordering::Release);
        }
    }

    /// Count the end of a task whose handle was `stopped` (cancelled or timed out), or that
    /// ended with `outcome`.
    pub(crate) fn end<T>(&self, stopped: Option<Stop>, outcome: &Result<T, Error>) {
        self.record(match (stopped, outcome) {
            (Some(why), _) => stats::Outcome::stopped(why),
            (None, Ok(_)) => stats::Outcome::Succeeded,
            (None, Err(Error::Cancelled { .. })) => stats::Outcome::Cancelled,
            (None, Err(_)) => stats::Outcome::Failed,
        });
    }

    /// From a job's `drop`: count the end of a task its handle stopped (`why`), unless it was
    /// counted already.
    pub(crate) fn end_unfinished(&mut self, why: impl FnOnce() -> Stop) {
        if !*self.ended.get_mut() {
            self.record(stats::Outcome::stopped(why()));
        }
    }

    fn record(&self, outcome: stats::Outcome) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = self.started.load(Ordering::Acquire);
        let started = (started & STARTED != 0).then_some(started as u32);
        stats::ended(Mode::Process, outcome, started);
    }
}

/// A call whose result crosses the pipe as `W` and is handed over as `R`.
pub(crate) struct ProcessJob<W, R> {
    frame: Vec<u8>,
    /// The arguments' blocks in shared memory, freed with the job.
    _blocks: ArgsBlocks,
    /// The vector the result's block is copied into, if any (see `shared::Spare`).
    spare: Option<std::sync::Mutex<Spare>>,
    cell: Arc<Completion<R>>,
    stats: CallStats,
    span: Option<tracing::Span>,
    wire: PhantomData<fn() -> W>,
}

impl<W, R> ProcessJob<W, R> {
    pub(crate) fn new(
        (frame, blocks): (Vec<u8>, ArgsBlocks),
        spare: Option<Spare>,
        cell: Arc<Completion<R>>,
        span: Option<tracing::Span>,
    ) -> ProcessJob<W, R> {
        ProcessJob {
            frame,
            _blocks: blocks,
            spare: spare.map(std::sync::Mutex::new),
            cell,
            stats: CallStats::submitted(),
            span,
            wire: PhantomData,
        }
    }
}

impl<W, R> Drop for ProcessJob<W, R> {
    fn drop(&mut self) {
        let cell = &self.cell;
        self.stats.end_unfinished(|| cell.stopped_by());
    }
}

impl<W, R> Job for ProcessJob<W, R>
where
    W: DeserializeOwned + Into<R>,
    R: Send + 'static,
{
    fn frame(&self) -> &[u8] {
        &self.frame
    }
    fn finish(&self, outcome: Result<&[u8], Error>) {
        let task = self.cell.task();
        let spare = self
            .spare
            .as_ref()
            .map(|spare| std::mem::take(&mut *lock(spare)));
        let outcome = shared::reusing(spare, || {
            outcome.and_then(|bytes| decode_result::<W, R>(task, bytes))
        });
        // Counted before the handle resolves (see `task::run`); a cell already done was
        // stopped by its handle.
        let stopped = self.cell.is_done().then(|| self.cell.stopped_by());
        self.stats.end(stopped, &outcome);
        self.cell.complete(outcome);
    }
    fn is_cancelled(&self) -> bool {
        self.cell.is_cancelled()
    }
    fn span(&self) -> Option<&tracing::Span> {
        self.span.as_ref()
    }
    fn dispatched(&self) {
        self.stats.dispatched();
    }
}

/// A call whose arguments arrived encoded and whose result leaves encoded (a remote worker
/// forwarding a call it took from the cluster): the handle yields the result's bytes as the
/// worker wrote them.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) struct EncodedJob {
    frame: Vec<u8>,
    cell: Arc<Completion<Vec<u8>>>,
    stats: CallStats,
}

#[cfg_attr(not(feature = "remote"), allow(dead_code))]
impl EncodedJob {
    pub(crate) fn new(frame: Vec<u8>, cell: Arc<Completion<Vec<u8>>>) -> EncodedJob {
        EncodedJob {
            frame,
            cell,
            stats: CallStats::submitted(),
        }
    }
}

impl Drop for EncodedJob {
    fn drop(&mut self) {
        let cell = &self.cell;
        self.stats.end_unfinished(|| cell.stopped_by());
    }
}

impl Job for EncodedJob {
    fn frame(&self) -> &[u8] {
        &self.frame
    }
    fn finish(&self, outcome: Result<&[u8], Error>) {
        let stopped = self.cell.is_done().then(|| self.cell.stopped_by());
        self.stats.end(stopped, &outcome);
        self.cell.complete(outcome.map(<[u8]>::to_vec));
    }
    fn is_cancelled(&self) -> bool {
        self.cell.is_cancelled()
    }
    fn span(&self) -> Option<&tracing::Span> {
        None
    }
    fn dispatched(&self) {
        self.stats.dispatched();
    }
}

/// The `CALL` frame numbered `id` of `entry` with arguments already encoded (`args`), refused
/// when its body would exceed `limit` bytes ([`Error::TooLarge`]).
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn encode_encoded_call(
    entry: &WorkerFn,
    id: u64,
    args: &[u8],
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let mut frame = Vec::with_capacity(args.len() + 64);
    let Ok(()) =
        protocol::encode_call::<std::convert::Infallible>(&mut frame, id, entry.key, 0, |out| {
            out.extend_from_slice(args);
            Ok(())
        });
    arguments_fit(entry.name, Ok(()), frame.len() - protocol::PREFIX, limit)?;
    Ok(frame)
}

/// Whether encoded arguments may go to a worker: they encoded (else [`Error::Encoding`]), and
/// their frame's body, `bytes` with its shared blocks, is within `limit` (else
/// [`Error::TooLarge`]).
pub(crate) fn arguments_fit(
    task: &'static str,
    encoded: Result<(), codec::CodecError>,
    bytes: usize,
    limit: usize,
) -> Result<(), Error> {
    if let Err(e) = encoded {
        return Err(Error::Encoding {
            task,
            payload: Payload::Arguments,
            detail: format!("encoding them in this process: {e}"),
        });
    }
    if bytes > limit {
        return Err(Error::TooLarge {
            task,
            payload: Payload::Arguments,
            bytes,
            limit,
        });
    }
    Ok(())
}

/// The `CALL` frame numbered `id` of `entry` with `args`; refused when the arguments do not
/// encode ([`Error::Encoding`]) or the frame's body would exceed `limit` bytes
/// ([`Error::TooLarge`]).
///
/// With an `arena`, large blocks of the arguments go there (see `shared`), held until the
/// returned [`ArgsBlocks`] drops; they count towards the limit as if they were in the frame.
pub(crate) fn encode_call(
    entry: &WorkerFn,
    id: u64,
    level: u8,
    args: &impl Serialize,
    arena: Option<&'static ArgsArena>,
    limit: usize,
) -> Result<(Vec<u8>, ArgsBlocks), Error> {
    let mut frame = Vec::with_capacity(64);
    let mut blocks = ArgsBlocks::default();
    let encoded = protocol::encode_call(&mut frame, id, entry.key, level, |out| {
        blocks = shared::encode_args(arena, args, out)?;
        Ok(())
    });
    // Empty when the arguments did not encode.
    let bytes = frame.len().saturating_sub(protocol::PREFIX) + blocks.bytes();
    arguments_fit(entry.name, encoded, bytes, limit)?;
    Ok((frame, blocks))
}

/// What a worker's answer to a call of `task` means for that call: the result's bytes, or the
/// error the call fails with. `limit` is the frame limit, which an `OVERSIZED` result exceeded.
pub(crate) fn call_outcome<'a>(
    task: &'static str,
    answer: Message<'a>,
    limit: usize,
) -> Result<&'a [u8], Error> {
    match answer {
        Message::Returned { payload, .. } => Ok(payload),
        Message::Panicked {
            message,
            location,
            backtrace,
            ..
        } => Err(Error::Panicked {
            task,
            message: message.to_owned(),
            site: (!location.is_empty()).then(|| {
                let backtrace = (!backtrace.is_empty()).then(|| backtrace.to_owned());
                Box::new(PanicSite::new(location.to_owned(), backtrace))
            }),
        }),
        Message::Failed {
            failure, message, ..
        } => Err(match failure {
            Failure::NotRegistered => Error::NotRegistered {
                task,
                detail: format!("the worker process does not have it ({message})"),
            },
            Failure::Arguments => Error::Encoding {
                task,
                payload: Payload::Arguments,
                detail: format!("decoding them in the worker process: {message}"),
            },
            Failure::Result => Error::Encoding {
                task,
                payload: Payload::Result,
                detail: format!("encoding it in the worker process: {message}"),
            },
        }),
        Message::Oversized { bytes, .. } => Err(Error::TooLarge {
            task,
            payload: Payload::Result,
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
            limit,
        }),
        _ => Err(Error::WorkerDied {
            task,
            detail: "the worker broke the protocol: an unexpected frame".into(),
        }),
    }
}

/// The value of a call from its result's bytes (`W` is how it crossed the pipe, `R` what the
/// handle yields); bytes that do not decode fail the call.
pub(crate) fn decode_result<W: DeserializeOwned + Into<R>, R>(
    task: &'static str,
    bytes: &[u8],
) -> Result<R, Error> {
    codec::decode_in_parent::<W>(bytes)
        .map(Into::into)
        .map_err(|e| Error::Encoding {
            task,
            payload: Payload::Result,
            detail: format!("decoding it in this process: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_settles_as_its_own_error() {
        let outcome = |answer| call_outcome("t", answer, 4096).unwrap_err();
        let failed = |failure| {
            outcome(Message::Failed {
                id: 1,
                failure,
                message: "why",
            })
        };
        assert!(matches!(
            failed(Failure::NotRegistered),
            Error::NotRegistered { task: "t", .. }
        ));
        assert!(matches!(
            failed(Failure::Arguments),
            Error::Encoding {
                payload: Payload::Arguments,
                ..
            }
        ));
        assert!(matches!(
            failed(Failure::Result),
            Error::Encoding {
                payload: Payload::Result,
                ..
            }
        ));
        assert_eq!(
            outcome(Message::Oversized { id: 1, bytes: 5000 }),
            Error::TooLarge {
                task: "t",
                payload: Payload::Result,
                bytes: 5000,
                limit: 4096
            }
        );
        assert!(matches!(
            outcome(Message::Refused { reason: "no" }),
            Error::WorkerDied { .. }
        ));
    }
}
