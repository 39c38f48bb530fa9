//! Writing calls to a worker's request pipe without blocking: as many whole frames as the pipe
//! takes, the rest (from the exact byte where a write stopped) once its I/O thread sees the
//! pipe writable again. The lock is released during each write.

use std::io::{self, IoSlice};
use std::sync::{Arc, MutexGuard};

use super::schedule::MAX_DEPTH;
use super::{Phase, Pool, Slot, State};
use crate::exec::lock;
use crate::exec::process::call::Job;
use crate::exec::process::os;

impl Pool {
    /// Write this worker's unsent calls without blocking; what does not fit is written by
    /// its I/O thread once the pipe has room.
    pub(super) fn flush<'a>(
        &'static self,
        mut state: MutexGuard<'a, State>,
        index: usize,
    ) -> MutexGuard<'a, State> {
        let slot = &mut state.slots[index];
        if slot.writing || slot.phase != Phase::Ready || !slot.has_unwritten() {
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
            let jobs: Vec<Arc<dyn Job>> = slot
                .in_flight
                .range(first..)
                .take(MAX_DEPTH as usize)
                .map(|c| c.job.clone())
                .collect();
            let partial = slot.partial;
            drop(state);
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
            let written = os::write_vectored(&io.requests, &slices);
            drop(slices);
            state = lock(&self.state);
            let slot = &mut state.slots[index];
            if slot.generation != generation {
                return state;
            }
            match written {
                Ok(n) => {
                    advance(slot, &jobs, n);
                    if !slot.has_unwritten() {
                        slot.writing = false;
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

impl Slot {
    fn has_unwritten(&self) -> bool {
        self.answered + self.in_flight.len() as u64 > self.written
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
