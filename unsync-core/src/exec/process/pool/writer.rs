//! Writing calls to a worker's request pipe without blocking: as many whole frames as the pipe
//! takes, the rest (from the exact byte where a write stopped) once its I/O thread sees the
//! pipe writable again. The lock is released during each write.
//!
//! A streaming worker's credit goes the same way, once its `STREAM` frame is written: one
//! `CREDIT` frame for all the credit granted since the last, written whole or not at all (it is
//! far below `PIPE_BUF`, so a pipe takes it atomically).

use std::io::{self, IoSlice};
use std::sync::{Arc, MutexGuard};

use super::schedule::MAX_DEPTH;
use super::{Phase, Pool, Slot, State};
use crate::exec::lock;
use crate::exec::process::call::Job;
use crate::exec::process::os;
use crate::exec::process::protocol::Message;

impl Pool {
    /// Write this worker's unsent calls without blocking; what does not fit is written by
    /// its I/O thread once the pipe has room.
    pub(super) fn flush<'a>(
        &'static self,
        mut state: MutexGuard<'a, State>,
        index: usize,
    ) -> MutexGuard<'a, State> {
        let slot = &mut state.slots[index];
        if slot.writing || slot.phase != Phase::Ready {
            return state;
        }
        if !slot.has_unwritten() {
            slot.write_credit();
            return state;
        }
        let Some(io) = slot.io.clone() else {
            return state;
        };
        let generation = slot.generation;
        slot.writing = true;
        loop {
            let slot = &mut state.slots[index];
            let first = (slot.written - slot.answered) as usize;
            // A lone call, the common case, allocates nothing here.
            let one;
            let many: Vec<Arc<dyn Job>>;
            let jobs: &[Arc<dyn Job>] = if slot.in_flight.len() == first + 1 {
                one = [slot.in_flight[first].job.clone()];
                &one
            } else {
                many = slot
                    .in_flight
                    .range(first..)
                    .take(MAX_DEPTH as usize)
                    .map(|c| c.job.clone())
                    .collect();
                &many
            };
            let partial = slot.partial;
            drop(state);
            let written = write_frames(&io.requests, jobs, partial);
            state = lock(&self.state);
            let slot = &mut state.slots[index];
            if slot.generation != generation {
                return state;
            }
            match written {
                Ok(n) => {
                    advance(slot, jobs, n);
                    if !slot.has_unwritten() {
                        slot.writing = false;
                        slot.write_credit();
                        return state;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.writing = false;
                    slot.want_writable = true;
                    io.wake();
                    return state;
                }
                Err(_) => {
                    // The worker is gone; its I/O thread sees the end of its pipe.
                    slot.writing = false;
                    return state;
                }
            }
        }
    }
}

/// Write the frames of `jobs`, the first from byte `partial`, in one system call.
fn write_frames(
    requests: &os::Requests,
    jobs: &[Arc<dyn Job>],
    partial: usize,
) -> io::Result<usize> {
    if let [job] = jobs {
        return os::write_vectored(requests, &[IoSlice::new(&job.frame()[partial..])]);
    }
    let slices: Vec<IoSlice<'_>> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            IoSlice::new(if i == 0 {
                &job.frame()[partial..]
            } else {
                job.frame()
            })
        })
        .collect();
    os::write_vectored(requests, &slices)
}

impl Slot {
    fn has_unwritten(&self) -> bool {
        self.answered + self.in_flight.len() as u64 > self.written
    }

    /// Write the credit granted to this worker's stream and not sent yet, if its `STREAM`
    /// frame is out; when the pipe is full, once it has room.
    fn write_credit(&mut self) {
        let Some(call) = self.in_flight.front_mut() else {
            return;
        };
        let Some(credit) = call.stream.as_mut().filter(|c| c.unsent > 0) else {
            return;
        };
        let Some(io) = &self.io else { return };
        let mut frame = Vec::with_capacity(32);
        Message::Credit {
            id: call.id,
            items: credit.unsent,
        }
        .encode(&mut frame);
        loop {
            match os::write_vectored(&io.requests, &[IoSlice::new(&frame)]) {
                Ok(n) => {
                    debug_assert_eq!(n, frame.len(), "a pipe takes a small write whole");
                    credit.unsent = 0;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.want_writable = true;
                    io.wake();
                    return;
                }
                // The worker is gone; its I/O thread sees the end of its pipe.
                Err(_) => return,
            }
        }
    }
}

/// Count `n` more bytes written, of the frames of `jobs` (the first from `slot.partial`).
fn advance(slot: &mut Slot, jobs: &[Arc<dyn Job>], mut n: usize) {
    for job in jobs {
        let left = job.frame().len() - slot.partial;
        if n < left {
            slot.partial += n;
            return;
        }
        n -= left;
        slot.written += 1;
        slot.partial = 0;
    }
}
