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
//! for the next such writer ([`Taken`]), so that a lone call costs the system calls of a raw
//! echo, a write and a read. A worker's end still reaches its I/O thread through a muted pipe.
//!
//! On several idle CPUs, a thread that makes quick calls one at a time (each done with before
//! the next) also mutes the pipe before it writes, then polls it until the answer comes, for a
//! few µs ([`ReadAfter::Polling`]), while the worker, told that its caller spins, spins for the
//! next call (the worker's `wait_for_request`): a lone call then wakes no thread at all, where
//! the worker and then the I/O thread had to be woken (tens of µs each on an idle VM).
//! [`read_after`] says which way a call is read.

use std::io;
use std::sync::{Arc, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

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
    let reading = match io.reading.try_lock() {
        Ok(reading) => reading,
        Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => return,
    };
    if reading.gone || io.wake.mute_responses().is_err() {
        return;
    }
    let mut taken = Taken {
        reading: Some(reading),
        pool,
        index,
        io: &io,
        keep_muted: !matches!(read_after(0, false), ReadAfter::No),
    };
    // The I/O thread may have read the answer before this thread took the pipe: `done()`
    // first. An answer that came before the mute leaves the pipe readable: no read before the
    // first wait (a system call fewer between the caller's write and its sleep).
    let death = loop {
        if done() || !answer_may_come(&io) {
            break None;
        }
        match taken.reading().read_available(pool, index, &io) {
            Ok(false) => {}
            // The pipe's end: the I/O thread sees it too, and buries the worker.
            Ok(true) => break None,
            Err(death) => break Some(death),
        }
    };
    taken.hand_back(death);
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

/// A worker's pipe taken from its I/O thread: its [`Reading`], held, and the response pipe,
/// muted. Dropped however reading ends (even by a panic), it first lets go of the `Reading`,
/// then gives the pipe back to the I/O thread's wait, except while the worker is idle and this
/// thread reads right after writing (`keep_muted`, see [`read_after`]): then it stays muted for
/// the next call's writer, which reads that call's answer itself if it is such a thread too
/// (any other writer unmutes it first: `Pool::dispatch`). In that order, a thread that writes
/// a call to the worker meanwhile either finds the `Reading` free, and reads its answer itself,
/// or made the worker busy before the check, and the pipe is given back: no answer is left on
/// a muted pipe with no reader.
struct Taken<'a> {
    reading: Option<MutexGuard<'a, Reading>>,
    pool: &'static Pool,
    index: usize,
    io: &'a WorkerIo,
    keep_muted: bool,
}

impl Taken<'_> {
    fn reading(&mut self) -> &mut Reading {
        self.reading.as_mut().expect("held until dropped")
    }

    /// Stop reading: give the pipe back, and if the worker was found gone, wake its I/O thread,
    /// which buries it.
    fn hand_back(mut self, death: Option<Death>) {
        let io = self.io;
        let found_dead = death.is_some();
        self.reading().death = death;
        drop(self);
        if found_dead {
            io.wake();
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        drop(self.reading.take());
        let state = lock(&self.pool.state);
        let slot = &state.slots[self.index];
        let idle = slot.in_flight.is_empty()
            && slot
                .io
                .as_ref()
                .is_some_and(|current| std::ptr::eq(Arc::as_ptr(current), self.io));
        if idle && self.keep_muted {
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

/// How a thread that writes a call to an idle worker reads its answer (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ReadAfter {
    /// It does not: the I/O thread does, or the caller once it waits ([`lead`]).
    No,
    /// It mutes the pipe before it writes and reads what came right after ([`read_written`]).
    Once,
    /// As `Once`, then reads again until the answer comes, for up to this long.
    Polling(Duration),
}

/// Calls of functions that typically run this long at most (µs) may be read polling
/// ([`ReadAfter::Polling`]): the thread that writes one waits for it before it returns the handle,
/// so two such calls in a row do not overlap; at this size that costs less than the wake-up it
/// saves.
const POLLED_CALL_MICROS: u32 = 10;

/// How the current thread reads the answer of a call it writes to an idle worker: a call of a
/// function that typically runs `expected_micros` (0: not measured yet), made `one_at_a_time`
/// (its previous call is done with: its handles gone). Where the worker shares the thread's CPU
/// (one CPU, or leading at once has been quicker lately), it has usually answered by the time
/// the write returns: [`ReadAfter::Once`]. Where the thread spins when it waits, a quick call
/// made one at a time is polled for ([`ReadAfter::Polling`]): its answer then wakes no thread
/// at all, where the I/O thread would have had to wake first (the worker spins for the next call
/// meanwhile: see the worker's `wait_for_request`). Never on a rayon worker (as for [`lead`]).
pub(super) fn read_after(expected_micros: u32, one_at_a_time: bool) -> ReadAfter {
    if !os::CAN_MUTE || rayon::current_thread_index().is_some() {
        return ReadAfter::No;
    }
    if crate::config::one_cpu() || wait::leads_at_once() {
        return ReadAfter::Once;
    }
    if one_at_a_time && (1..=POLLED_CALL_MICROS).contains(&expected_micros) {
        let micros = u64::from(expected_micros) * 2 + 5;
        return ReadAfter::Polling(Duration::from_micros(micros).min(wait::spin_limit()));
    }
    ReadAfter::No
}

/// Read and settle what the worker at `index`, whose pipe this thread muted before writing to
/// it, has answered so far (or, [`ReadAfter::Polling`], until an answer comes, for a while),
/// then give the pipe back ([`Taken`]).
pub(super) fn read_written(pool: &'static Pool, index: usize, io: &WorkerIo, how: ReadAfter) {
    let mut taken = Taken {
        reading: io.reading.try_lock().ok(),
        pool,
        index,
        io,
        keep_muted: true,
    };
    // Held by the I/O thread, or by a reader about to let go: dropping `taken` gives the pipe
    // back, so that the I/O thread reads this answer.
    if taken.reading.as_ref().is_none_or(|reading| reading.gone) {
        return;
    }
    let until = match how {
        ReadAfter::Polling(limit) => Some(Instant::now() + limit),
        ReadAfter::Once | ReadAfter::No => None,
    };
    let death = loop {
        let reading = taken.reading();
        let answers = reading.answers;
        match reading.read_available(pool, index, io) {
            Ok(false) => {}
            // The pipe's end: the I/O thread sees it too, and buries the worker.
            Ok(true) => break None,
            Err(death) => break Some(death),
        }
        if reading.answers != answers || until.is_none_or(|until| Instant::now() >= until) {
            break None;
        }
        std::hint::spin_loop();
    };
    taken.hand_back(death);
}
