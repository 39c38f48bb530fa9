//! A caller blocked in `.result()` on a call that its worker is running, once its spin
//! (`Config::spin`) is over, or at once when it does not spin (`handle::wait::spin_until`),
//! reads the worker's answer itself (leader/follower with the worker's I/O thread): the answer
//! then wakes one thread, the caller, instead of two (the I/O thread, which then wakes the
//! caller), and a lone call costs two hops, caller → worker → caller, instead of three. A call
//! answered within the spin is read by the I/O thread while the caller spins: on several idle
//! CPUs that is the fastest (no sleep at all).
//!
//! The caller takes the worker's `Reading` (which the I/O thread holds only while it reads),
//! mutes the response pipe in the I/O thread's wait so that the answer wakes only the caller,
//! then reads and settles frames exactly as the I/O thread would (`Reading::read_available`),
//! until its own call is settled. Anything else stops it: the pipe's end (a dead or killed
//! worker, also what `cancel` and timeouts cause) and any broken frame are left to the I/O
//! thread, which buries the worker as always. Linux only (`os::CAN_MUTE`), where `epoll` lets
//! one thread change what another waits on without waking it; elsewhere callers wait for the
//! I/O thread.
//!
//! When the worker runs on the writer's CPU (one CPU; or a loaded machine, where the other CPUs
//! are busy), it usually preempts the writer and has answered by the time the write returns,
//! often before its caller could take the pipe: the I/O thread would wake for nothing. So a
//! thread that leads at once (on one CPU, or when leading at once has been its quicker way
//! lately: `wait::leads_at_once`) mutes the pipe of an idle worker before it writes a call to
//! it, and reads what came right after ([`read_written`]); and a worker left idle stays muted
//! for the next such writer ([`Release`]), so that a lone call costs the system calls of a raw
//! echo, a write and a read. A worker's end still reaches its I/O thread through a muted pipe.

use std::io;
use std::sync::{Arc, MutexGuard, TryLockError};

use super::io_loop::Reading;
use super::supervisor::Death;
use super::{POOL, Phase, Pool, WorkerIo};
use crate::exec::lock;
use crate::exec::process::os;
use crate::handle::completion::Lead;
use crate::handle::wait;

/// How a caller blocked on call `id` helps it finish, where it can.
pub(super) fn lead_of(id: u64) -> Option<Lead> {
    os::CAN_MUTE.then_some(Lead { run: lead, key: id })
}

/// Read call `id`'s answer on this thread while it is running and no other thread reads its
/// worker's pipe; return once `done()` or when that stops being possible.
fn lead(id: u64, done: &dyn Fn() -> bool) {
    // A rayon worker keeps running other rayon jobs while it waits (`handle::wait`).
    if rayon::current_thread_index().is_some() {
        return;
    }
    let Some(pool) = POOL.get() else { return };
    let Some((index, io)) = pool.running(id) else {
        return;
    };
    let mut reading = match io.reading.try_lock() {
        Ok(reading) => reading,
        Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return,
    };
    if reading.gone || io.wake.mute_responses().is_err() {
        return;
    }
    let release = Release {
        pool,
        index,
        io: &io,
    };
    // The I/O thread may have read the answer before this thread took the pipe: `done()`
    // first. An answer that came before the mute leaves the pipe readable: no read before the
    // first wait (a system call fewer between the caller's write and its sleep).
    let death = loop {
        if done() || !answer_may_come(&io) {
            break None;
        }
        match reading.read_available(pool, index, &io) {
            Ok(false) => {}
            // The pipe's end: the I/O thread sees it too, and buries the worker.
            Ok(true) => break None,
            Err(death) => break Some(death),
        }
    };
    hand_back(release, reading, death);
}

/// Stop reading: give the pipe back ([`Release`]), and if the worker was found gone, wake its
/// I/O thread, which buries it.
fn hand_back(release: Release<'_>, mut reading: MutexGuard<'_, Reading>, death: Option<Death>) {
    let io = release.io;
    let found_dead = death.is_some();
    reading.death = death;
    drop(release);
    drop(reading);
    if found_dead {
        io.wake();
    }
}

/// Block until the worker's response pipe is readable, as any waiter blocks
/// (`wait::blocking`: a blocking-pool thread lets its pool start another meanwhile). Any spin
/// is over by now (`Unfinished::outcome`). False if the wait failed.
fn answer_may_come(io: &WorkerIo) -> bool {
    match wait::blocking(|| io.wake.responses_readable_within(None)) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::Interrupted,
    }
}

/// Gives the response pipe back to the I/O thread's wait however reading ends (even by a
/// panic in a result's `Deserialize`), except while the worker is idle and this thread reads
/// right after writing ([`reads_right_after_writing`]): then it stays muted for the next call's
/// writer, which reads that call's answer itself if it is such a thread too (any other writer
/// unmutes it first: `Pool::dispatch`).
struct Release<'a> {
    pool: &'static Pool,
    index: usize,
    io: &'a WorkerIo,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let state = lock(&self.pool.state);
        let slot = &state.slots[self.index];
        let idle = slot.in_flight.is_empty()
            && slot
                .io
                .as_ref()
                .is_some_and(|current| std::ptr::eq(Arc::as_ptr(current), self.io));
        if idle && reads_right_after_writing() {
            return;
        }
        if self.io.wake.unmute_responses().is_err() {
            // Cannot happen with a valid epoll set; if it did, the I/O thread would never
            // see this worker's answers again. Its end is seen even on a muted pipe: end it.
            self.io.kill();
        }
    }
}

impl Pool {
    /// The worker running call `id`, if the call is its only one, was written to it whole, and
    /// the worker is not being killed. (With more calls in flight, the I/O thread reads their
    /// answers in batches, and a leader would only contend with it.)
    fn running(&self, id: u64) -> Option<(usize, Arc<WorkerIo>)> {
        let state = lock(&self.state);
        state.slots.iter().enumerate().find_map(|(index, slot)| {
            let running = slot.in_flight.len() == 1
                && slot.in_flight.front().is_some_and(|c| c.id == id)
                && slot.phase == Phase::Ready
                && slot.kill.is_none()
                && slot.written > slot.answered;
            running.then(|| slot.io.clone().map(|io| (index, io)))?
        })
    }
}

/// Whether a thread that writes a call to an idle worker should mute its pipe first and read
/// the answer right after ([`read_written`]): where the worker has usually answered by then
/// (see the module doc). Not on a rayon worker (as for [`lead`]).
pub(super) fn reads_right_after_writing() -> bool {
    os::CAN_MUTE
        && (crate::config::one_cpu() || wait::leads_at_once())
        && rayon::current_thread_index().is_none()
}

/// Read and settle what the worker at `index`, whose pipe this thread muted before writing to
/// it, has answered so far (without waiting), then give the pipe back ([`Release`]).
pub(super) fn read_written(pool: &'static Pool, index: usize, io: &WorkerIo) {
    let release = Release { pool, index, io };
    let Ok(mut reading) = io.reading.try_lock() else {
        // The I/O thread or a caller that leads is reading: it reads this answer too.
        return;
    };
    if reading.gone {
        return;
    }
    let death = reading.read_available(pool, index, io).err();
    hand_back(release, reading, death);
}
