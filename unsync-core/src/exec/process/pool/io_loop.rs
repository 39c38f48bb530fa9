//! A worker's I/O thread, for as long as the worker lives: it waits on the worker's response
//! pipe, takes the handshake's answer, pairs every answer with its call and completes the
//! call's handle, refills the worker from the queue, and finishes writes that did not fit in
//! the request pipe. When the worker ends (or must be given up on), it hands it to `bury`.

use std::io;
use std::ops::Range;
use std::sync::{Arc, MutexGuard, TryLockError};
use std::time::Instant;

use super::supervisor::Death;
use super::{Kill, Phase, Pool, State, WorkerIo};
use crate::error::Error;
use crate::exec::lock;
use crate::exec::process::call::{Job, call_outcome};
use crate::exec::process::protocol::{FrameReader, Message, ProtocolError};
use crate::exec::process::shared::{self, ResultsReader};
use crate::exec::process::worker_log::Replay;
use crate::exec::process::{handshake, os};

/// An answered call and its outcome: the result's bytes (`T`) or the error.
type Answered<T> = (Arc<dyn Job>, Result<T, Error>);
/// An answered call, its result's bytes given by where they lie in the reader's buffer.
type Finished = Answered<Range<usize>>;

/// What one frame from a worker was.
enum Taken<'m> {
    Nothing,
    /// An answer, and whether its result has blocks in the worker's results arena.
    Answer(Answered<&'m [u8]>, bool),
    /// A `SPAN` or `EVENT` record of the running call (see `worker_log`).
    Record(Arc<dyn Job>),
    /// Items of the running stream, where they lie in the frame.
    Items(Arc<dyn Job>, &'m [u8]),
}

/// What `take_answers` settles once the lock is released, in the order the frames came: a
/// record to re-emit (the frame's place in the buffer) or an answered call.
enum Settle {
    Record(Arc<dyn Job>, Range<usize>),
    Items(Arc<dyn Job>, Range<usize>),
    Finished(Finished, bool),
}

/// A worker's response pipe and what reading it needs: held (in `WorkerIo::reading`) by
/// whoever reads the pipe, its I/O thread or a caller that leads (see `lead`).
pub(in crate::exec::process::pool) struct Reading {
    pub(super) reader: FrameReader<os::Responses>,
    /// What `take_answers` settles once the state lock is released (kept for its allocation).
    finished: Vec<Settle>,
    replay: Replay,
    /// The worker is known gone (its pipe ended, or broke the protocol): whoever reads next
    /// must read nothing more, since frames after a broken one mean nothing.
    pub(super) gone: bool,
    /// Why, when a caller that led found out (see `lead`): the I/O thread takes it, and buries
    /// the worker.
    pub(super) death: Option<Death>,
    /// Answers settled so far (for a thread that reads until its call's answer comes: see
    /// `lead::read_written`).
    pub(super) answers: u64,
}

impl Reading {
    pub(super) fn new(responses: os::Responses, max_frame: usize) -> Reading {
        Reading {
            reader: FrameReader::new(responses, max_frame),
            finished: Vec::new(),
            replay: Replay::default(),
            gone: false,
            death: None,
            answers: 0,
        }
    }

    /// Read what the pipe has now, then take and settle every whole frame; `Ok(true)` at the
    /// pipe's end (the frames before it are settled). Either way but `Ok(false)`, the worker
    /// is [`gone`](Reading::gone).
    pub(super) fn read_available(
        &mut self,
        pool: &'static Pool,
        index: usize,
        io: &WorkerIo,
    ) -> Result<bool, Death> {
        let read = self
            .reader
            .fill_available()
            .map_err(|e| Death::Broken(format!("cannot read the worker's pipe: {e}")))
            .and_then(|ended| pool.take_answers(index, io, self).map(|()| ended));
        self.gone |= !matches!(read, Ok(false));
        read
    }
}

impl Pool {
    /// The I/O thread of one worker process, until it dies.
    pub(super) fn serve(&'static self, index: usize, generation: u64, io: Arc<WorkerIo>) {
        let started = Instant::now();
        let death = loop {
            if let Err(death) = self.serve_once(index, &io, started) {
                break death;
            }
        };
        self.bury(index, generation, &io, death);
    }

    /// Wait for the worker, then take and settle what it sent; `Err` once it is gone.
    fn serve_once(
        &'static self,
        index: usize,
        io: &WorkerIo,
        started: Instant,
    ) -> Result<(), Death> {
        let ready = self.wait(index, io, started)?;
        let reading = if ready.readable {
            // Blocks only while a caller that leads reads (see `lead`).
            Some(lock(&io.reading))
        } else if ready.woken {
            // Maybe woken by a caller that led and found the worker gone. If a caller leads
            // now, it wakes this thread again should it find that.
            match io.reading.try_lock() {
                Ok(reading) => Some(reading),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        } else {
            None
        };
        let Some(mut reading) = reading else {
            return Ok(());
        };
        if let Some(death) = reading.death.take() {
            return Err(death);
        }
        if ready.readable && reading.read_available(self, index, io)? {
            return Err(Death::Exited);
        }
        Ok(())
    }

    /// Wait until the worker's response pipe is readable, another thread wakes this one, or
    /// (when a write waits for room) the request pipe is writable; write what waits.
    fn wait(
        &'static self,
        index: usize,
        io: &WorkerIo,
        started: Instant,
    ) -> Result<os::Ready, Death> {
        let (phase, want_writable) = {
            let state = lock(&self.state);
            let slot = &state.slots[index];
            (slot.phase, slot.want_writable)
        };
        let timeout = (phase == Phase::Starting)
            .then(|| handshake::TIMEOUT.saturating_sub(started.elapsed()));
        let ready = match os::wait(&io.wake, &io.requests, want_writable, timeout) {
            Ok(ready) if ready.timed_out && phase == Phase::Starting => {
                return Err(Death::Broken(handshake::timed_out()));
            }
            Ok(ready) => ready,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => os::Ready::default(),
            Err(e) => {
                return Err(Death::Broken(format!(
                    "cannot wait on the worker's pipe: {e}"
                )));
            }
        };
        if ready.woken {
            io.wake.drain();
        }
        if ready.writable {
            let mut state = lock(&self.state);
            state.slots[index].want_writable = false;
            drop(self.flush(state, index));
        }
        Ok(ready)
    }

    /// Take every whole frame read so far, pairing each answer with its call under one lock,
    /// refill the worker, then complete the answered calls' handles outside the lock.
    fn take_answers(
        &'static self,
        index: usize,
        io: &WorkerIo,
        reading: &mut Reading,
    ) -> Result<(), Death> {
        let Reading {
            reader,
            finished,
            replay,
            answers,
            ..
        } = reading;
        let mut state = lock(&self.state);
        if !state.slots[index]
            .io
            .as_ref()
            .is_some_and(|current| std::ptr::eq(Arc::as_ptr(current), io))
        {
            // Only a caller that leads gets here: its worker was buried meanwhile (its I/O
            // thread could not wait on it any more), and the slot is another's.
            return Err(Death::Broken(
                "buried while a caller read its answer".into(),
            ));
        }
        let taken = loop {
            let range = match reader.buffered_range() {
                Ok(Some(range)) => range,
                Ok(None) => break Ok(()),
                Err(e) => break Err(broke_protocol(e)),
            };
            let body = reader.slice(range.clone());
            let message = match Message::decode(body) {
                Ok(message) => message,
                Err(e) => break Err(broke_protocol(e)),
            };
            match self.take(&mut state, index, io, message) {
                Ok(Taken::Nothing) => {}
                Ok(Taken::Record(job)) => finished.push(Settle::Record(job, range)),
                Ok(Taken::Items(job, items)) => {
                    finished.push(Settle::Items(job, offset_in(range.start, body, items)));
                }
                Ok(Taken::Answer((job, outcome), shared)) => {
                    finished.push(Settle::Finished(
                        (
                            job,
                            outcome.map(|payload| offset_in(range.start, body, payload)),
                        ),
                        shared,
                    ));
                }
                Err(death) => break Err(death),
            }
        };
        if taken.is_ok() {
            state = self.dispatch(state);
            state = self.flush(state, index);
            if state.draining > 0 {
                self.changed.notify_all();
            }
        }
        drop(state);
        // Answered calls are settled even when a later frame ends the worker; the records of a
        // call are re-emitted, outside the lock, before it is.
        for settle in finished.drain(..) {
            match settle {
                Settle::Record(job, range) => {
                    if let (Some(span), Ok(message)) =
                        (job.span(), Message::decode(reader.slice(range)))
                    {
                        replay.replay(&message, span, io.pid);
                    }
                }
                Settle::Items(job, range) => job.items(reader.slice(range)),
                Settle::Finished((job, outcome), shared) => {
                    *answers += 1;
                    replay.call_ended();
                    let results = io.results.as_ref().filter(|_| shared);
                    shared::decoding_from(results.map(ResultsReader::region), || {
                        job.finish(outcome.map(|range| reader.slice(range)));
                    });
                    // Copied out: the worker may write over the answer's blocks.
                    if let Some(results) = results {
                        results.settled_one();
                    }
                }
            }
        }
        taken
    }

    /// Handle one frame from worker `index`: the handshake's answer, or an answer to the
    /// call at the head of its calls, which is returned with its outcome.
    fn take<'m>(
        &self,
        state: &mut MutexGuard<'_, State>,
        index: usize,
        io: &WorkerIo,
        message: Message<'m>,
    ) -> Result<Taken<'m>, Death> {
        let slot = &mut state.slots[index];
        match message {
            Message::Hello {
                version,
                fingerprint,
                ..
            } if slot.phase == Phase::Starting => {
                handshake::check_hello(version, fingerprint).map_err(Death::Refused)?;
                slot.phase = Phase::Ready;
                state.start_failures = 0;
                state.killed_while_starting = 0;
                Ok(Taken::Nothing)
            }
            Message::Span { id, .. } | Message::Event { id, .. }
                if slot.phase == Phase::Ready
                    && slot.in_flight.front().is_some_and(|c| c.id == id) =>
            {
                let call = slot.in_flight.front().expect("front exists");
                Ok(Taken::Record(call.job.clone()))
            }
            Message::Items { id, count, items }
                if slot.phase == Phase::Ready
                    && slot.in_flight.front().is_some_and(|c| c.id == id) =>
            {
                let call = slot.in_flight.front_mut().expect("front exists");
                let Some(credit) = call.stream.as_mut() else {
                    return Err(Death::Broken(
                        "the worker broke the protocol: items for a call that is not a stream"
                            .into(),
                    ));
                };
                credit.received += u64::from(count);
                if credit.received > credit.granted {
                    return Err(Death::Broken(format!(
                        "the worker broke the protocol: it sent {} items of a stream granted {}",
                        credit.received, credit.granted
                    )));
                }
                Ok(Taken::Items(call.job.clone(), items))
            }
            Message::Refused { reason } => Err(Death::Refused(reason.to_owned())),
            Message::Returned { id, .. }
            | Message::Panicked { id, .. }
            | Message::Failed { id, .. }
            | Message::Oversized { id, .. }
                if slot.phase == Phase::Ready
                    && slot.in_flight.front().is_some_and(|c| c.id == id) =>
            {
                let call = slot.in_flight.pop_front().expect("front exists");
                slot.answered += 1;
                slot.load -= u64::from(call.cost);
                // A call cancelled while it waited behind this one starts now: stop it.
                if let Some(next) = slot.in_flight.front() {
                    if next.job.is_cancelled() && slot.kill.is_none() {
                        slot.kill = Some(Kill::Cancel(next.id));
                        io.kill();
                    }
                }
                if let (Message::Returned { micros, .. }, None) = (&message, &call.stream) {
                    self.record_run_time(call.index, *micros);
                }
                let shared = matches!(message, Message::Returned { shared: true, .. });
                let outcome = call_outcome(call.entry.name, message, self.max_frame);
                Ok(Taken::Answer((call.job, outcome), shared))
            }
            _ => Err(Death::Broken(
                "the worker broke the protocol: an unexpected frame".into(),
            )),
        }
    }
}

fn broke_protocol(error: ProtocolError) -> Death {
    Death::Broken(format!("the worker broke the protocol: {error}"))
}

/// Where `part` of `whole` lies, given that `whole` starts at `base`.
fn offset_in(base: usize, whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = base + (part.as_ptr() as usize - whole.as_ptr() as usize);
    start..start + part.len()
}
