//! The parent side of the process pool: its shared state, and its entry points: run a call
//! ([`spawn_process`]), cancel one, shut everything down.
//!
//! Threads: one supervisor, which starts every worker (`supervisor`), and one I/O thread per
//! worker (`io_loop`), which reads that worker's answers, completes the handles directly and
//! refills the worker from the queue (`schedule`). A caller writes its own call to the pipe
//! when the worker is idle (no thread hop on the latency path); calls for a busy worker are
//! batched and written by its I/O thread after the next answers (`writer`). On Linux, a caller
//! blocked on a call that is its worker's only one reads the answer itself, also with no thread
//! hop (`lead`). All writes are non-blocking, so no thread ever waits on a full pipe while
//! holding anything another thread needs. Everything below is guarded by the one `state`
//! lock, except the reading of a worker's pipe (`WorkerIo::reading`), which is taken first.

mod io_loop;
mod lead;
mod schedule;
mod supervisor;
mod writer;

use std::any::Any;
use std::collections::VecDeque;
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Instant;

use crossbeam_channel::Sender;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::io_loop::Reading;
use super::call::{self, EncodedJob, Job, ProcessJob};
use super::codec::BulkElement;
use super::os;
use super::protocol;
use super::registry::{self, WorkerFn};
use super::shared::{ArgsArena, ArgsBlocks, ResultsReader, Spare};
use super::stream::{StreamJob, encode_stream};
use crate::error::Error;
use crate::exec::lock;
use crate::exec::stats::{self, Mode};
use crate::handle::Unfinished;
use crate::handle::completion::{Abort, Completion};
use crate::handle::stream::{UnfinishedStream, channel};

/// A call in the pool: queued, or given to a worker.
struct Call {
    id: u64,
    entry: &'static WorkerFn,
    /// Where `entry` sits in the registry (and in `Pool::speed`).
    index: usize,
    job: Arc<dyn Job>,
    /// Expected run time in µs when given to a worker (the budget if not measured yet).
    cost: u32,
    /// A stream's credit; `None` for a call.
    stream: Option<Credit>,
}

/// What a stream's worker may send (see `worker_stream`): items granted in all, items
/// received, and credit granted but not written to the worker yet.
struct Credit {
    granted: u64,
    received: u64,
    unsent: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// No process (not started yet, or shut down).
    Idle,
    /// Asked the supervisor for a process, or waiting for its handshake.
    Starting,
    Ready,
}

/// Why the pool killed a worker.
enum Kill {
    Cancel(u64),
    Shutdown,
}

/// A running worker process and the parent's ends of its pipes.
struct WorkerIo {
    child: Mutex<Child>,
    requests: os::Requests,
    /// The response pipe, held by whoever reads it: the I/O thread, or a caller that leads.
    reading: Mutex<Reading>,
    wake: os::Wake,
    pid: u32,
    /// Where the worker keeps its answers' large blocks (see `shared`).
    results: Option<ResultsReader>,
}

impl WorkerIo {
    fn wake(&self) {
        self.wake.signal();
    }
    fn kill(&self) {
        let _ = lock(&self.child).kill();
    }
}

/// One worker's place in the pool, across the processes that fill it in turn.
struct Slot {
    phase: Phase,
    /// Counts the processes this slot has had.
    generation: u64,
    io: Option<Arc<WorkerIo>>,
    /// Calls given to this worker, oldest first; the first has started (if it was sent).
    in_flight: VecDeque<Call>,
    /// Sum of the `cost` of `in_flight`.
    load: u64,
    /// Calls are numbered in the order given to this worker: `answered` have been popped from
    /// `in_flight`, the first `written` were written whole, and `partial` bytes of the next.
    /// (`written` may briefly trail `answered`: a fast worker can answer before the writer
    /// has re-taken the lock to count what it wrote.)
    answered: u64,
    written: u64,
    partial: usize,
    writing: bool,
    want_writable: bool,
    kill: Option<Kill>,
    /// Given calls while idle, by the dispatch under way (see `schedule`).
    fed: Fed,
}

/// What a dispatch did to a worker that was idle: nothing, gave it calls, or also muted its
/// response pipe for the dispatching thread to read the answer right after (`lead`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fed {
    No,
    Idle,
    IdleMuted,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            phase: Phase::Idle,
            generation: 0,
            io: None,
            in_flight: VecDeque::new(),
            load: 0,
            answered: 0,
            written: 0,
            partial: 0,
            writing: false,
            want_writable: false,
            kill: None,
            fed: Fed::No,
        }
    }
}

struct State {
    queue: VecDeque<Call>,
    slots: Vec<Slot>,
    /// Why no worker can start; calls fail at once until `shutdown` resets it.
    broken: Option<String>,
    start_failures: u32,
    /// Workers killed from outside (SIGKILL, SIGTERM, ...) before their handshake, in a row:
    /// not the program's fault, so they never break the pool, but they slow its restarts.
    killed_while_starting: u32,
    stopping: bool,
    /// Threads in `shutdown` waiting for the calls to finish (to be notified of each answer).
    draining: usize,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    /// Signalled when calls finish or workers change phase (for `shutdown`).
    changed: Condvar,
    supervisor: OnceLock<Sender<usize>>,
    next_id: AtomicU64,
    max_frame: usize,
    /// Where the large blocks of calls' arguments go (see `shared`): `None` where shared
    /// memory is not used.
    args_arena: Option<ArgsArena>,
    /// Per registered function: smoothed run time in µs (0: not measured yet).
    speed: Box<[AtomicU32]>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

thread_local! {
    /// This thread's last call: when both its handles and its job are gone by the next call,
    /// the thread makes its calls one at a time (see `lead::read_after`).
    static LAST_CALL: std::cell::Cell<Weak<dyn Any + Send + Sync>> =
        std::cell::Cell::new(Weak::<()>::new());
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let settings = crate::config::settings();
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                slots: (0..settings.processes).map(|_| Slot::new()).collect(),
                broken: None,
                start_failures: 0,
                killed_while_starting: 0,
                stopping: false,
                draining: 0,
            }),
            changed: Condvar::new(),
            supervisor: OnceLock::new(),
            next_id: AtomicU64::new(1),
            max_frame: settings.max_frame_bytes,
            // Room for the arguments of many calls at the frame limit: address space only,
            // pages are allocated as blocks are written.
            args_arena: ArgsArena::create(settings.max_frame_bytes.saturating_mul(4)),
            speed: (0..registry::count()).map(|_| AtomicU32::new(0)).collect(),
        }
    })
}

/// Run a registered function in a worker process. `W` is how the result crosses the pipe,
/// `R` what the handle yields.
#[doc(hidden)]
pub fn spawn_process<W, R>(entry: &'static WorkerFn, args: &impl Serialize) -> Unfinished<R>
where
    W: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
{
    match prepare_call(entry, args) {
        Ok(prepared) => prepared.submit::<W, R>(None),
        Err(error) => refused(error),
    }
}

/// [`spawn_process`] for a function that maps a large vector to another of the same type:
/// `args` owns that argument, and `argument` takes it out of them once they are encoded. Where
/// large blocks cross through shared memory, the call keeps the vector, if large (see
/// `shared::Spare`), and its result is copied into it.
#[doc(hidden)]
pub fn spawn_process_reusing<W, R, A, E>(
    entry: &'static WorkerFn,
    args: A,
    argument: impl FnOnce(A) -> Vec<E>,
) -> Unfinished<R>
where
    W: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
    A: Serialize,
    E: BulkElement,
{
    match prepare_call(entry, &args) {
        Ok(prepared) => {
            let vector = argument(args);
            let shared = prepared.pool.args_arena.is_some();
            let spare = shared.then(|| Spare::of(vector)).flatten();
            prepared.submit::<W, R>(spare)
        }
        Err(error) => refused(error),
    }
}

/// A call encoded and numbered, not submitted yet.
struct Prepared {
    pool: &'static Pool,
    entry: &'static WorkerFn,
    index: usize,
    id: u64,
    frame: (Vec<u8>, ArgsBlocks),
    /// The call site's span, when the worker records `tracing` events (see `worker_log`).
    span: Option<tracing::Span>,
}

/// Number a call of `entry` with `args` and encode its frame; the error a refused call's handle
/// fails with (a function missing from the registry, arguments that do not encode or are too
/// large).
fn prepare_call(entry: &'static WorkerFn, args: &impl Serialize) -> Result<Prepared, Error> {
    let index = registry::position(entry)?;
    let pool = pool();
    let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
    // The worker records `tracing` events only when this process would (see `worker_log`).
    let level = super::worker_log::wanted();
    let arena = pool.args_arena.as_ref();
    // With shared memory for arguments, the worker has a results arena too.
    let share = if arena.is_some() {
        protocol::SHARE_ANSWER
    } else {
        0
    };
    // A caller that leads at once shares its CPU with the worker (see `lead`), where a worker
    // that spins for the next call would only take it from the caller.
    let spin = if crate::handle::wait::leads_at_once() {
        0
    } else {
        protocol::SPIN_AFTER
    };
    let flags = share | spin;
    let frame = call::encode_call(entry, id, level | flags, args, arena, pool.max_frame)?;
    Ok(Prepared {
        pool,
        entry,
        index,
        id,
        frame,
        span: (level > 0).then(tracing::Span::current),
    })
}

impl Prepared {
    /// Queue the call, with `spare` for its result to be copied into; its handle.
    fn submit<W, R>(self, spare: Option<Spare>) -> Unfinished<R>
    where
        W: DeserializeOwned + Into<R> + 'static,
        R: Send + 'static,
    {
        self.pool
            .submit_call(self.entry, self.index, self.id, |cell| {
                Arc::new(ProcessJob::<W, R>::new(self.frame, spare, cell, self.span))
            })
    }
}

/// The handle of a call refused before it was queued, counted in `stats` as failed.
fn refused<R: Send + 'static>(error: Error) -> Unfinished<R> {
    stats::submitted(Mode::Process);
    stats::ended(Mode::Process, stats::Outcome::Failed, None);
    Unfinished::failed(error)
}

impl Pool {
    /// Queue call `id` of `entry` (at `index` in the registry), its job made by `job` for the
    /// handle's cell; the handle, which cancels the call through the pool.
    fn submit_call<R: Send + 'static>(
        &'static self,
        entry: &'static WorkerFn,
        index: usize,
        id: u64,
        job: impl FnOnce(Arc<Completion<R>>) -> Arc<dyn Job>,
    ) -> Unfinished<R> {
        let cell = Completion::pending(entry.name);
        let job = job(cell.clone());
        cell.set_abort(Abort::keyed(cancel, id, lead::lead_of(id)));
        let one_at_a_time = LAST_CALL.with(|last| {
            let previous = last.replace(Arc::downgrade(&cell) as Weak<dyn Any + Send + Sync>);
            previous.strong_count() == 0
        });
        self.submit(
            Call {
                id,
                entry,
                index,
                job,
                cost: 0,
                stream: None,
            },
            one_at_a_time,
        );
        Unfinished::from_cell(cell)
    }
}

/// Run a registered streaming function in a worker process, `buffer` items of credit at a
/// time. `W` is how an item crosses the pipe, `T` what the stream yields.
#[doc(hidden)]
pub fn spawn_process_stream<W, T>(
    entry: &'static WorkerFn,
    buffer: usize,
    args: &impl Serialize,
) -> UnfinishedStream<T>
where
    W: DeserializeOwned + Into<T> + 'static,
    T: Send + 'static,
{
    let buffer = u32::try_from(buffer.max(1)).unwrap_or(u32::MAX);
    let (sender, stream) = channel(entry.name, buffer as usize);
    let refused = |sender: crate::handle::stream::Sender<T>, error| {
        stats::submitted(Mode::Process);
        stats::ended(Mode::Process, stats::Outcome::Failed, None);
        sender.finish(Err(error));
    };
    let index = match registry::position(entry) {
        Ok(index) => index,
        Err(error) => {
            refused(sender, error);
            return stream;
        }
    };
    let pool = pool();
    let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
    let level = super::worker_log::wanted();
    let frame = match encode_stream(entry, id, level, buffer, args, pool.max_frame) {
        Ok(frame) => frame,
        Err(error) => {
            refused(sender, error);
            return stream;
        }
    };
    let span = (level > 0).then(tracing::Span::current);
    sender.set_on_read(Arc::new(move |items| grant(id, items)));
    let job = Arc::new(StreamJob::<W, T>::new(id, frame, sender, entry.name, span));
    stream.control().set_abort(Abort::new(move || cancel(id)));
    pool.submit(
        Call {
            id,
            entry,
            index,
            job,
            cost: 0,
            stream: Some(Credit {
                granted: u64::from(buffer),
                received: 0,
                unsent: 0,
            }),
        },
        false,
    );
    stream
}

/// The reader of stream `id` took `items` more: let its worker send as many more.
fn grant(id: u64, items: usize) {
    let Some(pool) = POOL.get() else { return };
    let mut state = lock(&pool.state);
    let Some(index) = state
        .slots
        .iter()
        .position(|s| s.in_flight.front().is_some_and(|c| c.id == id))
    else {
        // Ended, or its worker died: nothing to grant.
        return;
    };
    let slot = &mut state.slots[index];
    let Some(credit) = slot.in_flight.front_mut().and_then(|c| c.stream.as_mut()) else {
        return;
    };
    let items = u32::try_from(items).unwrap_or(u32::MAX);
    credit.granted += u64::from(items);
    credit.unsent = credit.unsent.saturating_add(items);
    drop(pool.flush(state, index));
}

/// Run a registered function in a worker process with arguments already encoded (as
/// `spawn_process` would encode them), yielding the result still encoded: the seam for an
/// executor that receives calls as bytes (the remote worker). Cancelling the handle kills the
/// worker running it, as for any call.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn spawn_encoded(entry: &'static WorkerFn, args: &[u8]) -> Unfinished<Vec<u8>> {
    let index = match registry::position(entry) {
        Ok(index) => index,
        Err(error) => return refused(error),
    };
    let pool = pool();
    let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
    let frame = match call::encode_encoded_call(entry, id, args, pool.max_frame) {
        Ok(frame) => frame,
        Err(error) => return refused(error),
    };
    pool.submit_call(entry, index, id, |cell| {
        Arc::new(EncodedJob::new(frame, cell))
    })
}

/// Stop the call `id`: forget it if queued, kill its worker if it is running.
pub(crate) fn cancel(id: u64) {
    let Some(pool) = POOL.get() else { return };
    let mut state = lock(&pool.state);
    if let Some(at) = state.queue.iter().position(|c| c.id == id) {
        state.queue.remove(at);
        return;
    }
    for slot in &mut state.slots {
        match slot.in_flight.iter().position(|c| c.id == id) {
            // Running (or about to): kill the worker.
            Some(0) if slot.kill.is_none() => {
                slot.kill = Some(Kill::Cancel(id));
                if let Some(io) = &slot.io {
                    io.kill();
                }
            }
            // Waiting behind another call: its I/O thread kills the worker if it gets there.
            Some(_) | None => {}
        }
    }
}

/// Wait up to `deadline` for every call to finish, then stop and reap all workers. Returns
/// how many calls were still queued or running (they resolve to `Error::Cancelled`).
pub(crate) fn shutdown(deadline: Instant) -> usize {
    let Some(pool) = POOL.get() else { return 0 };
    let mut state = lock(&pool.state);
    let busy = |s: &State| s.queue.len() + s.slots.iter().map(|w| w.in_flight.len()).sum::<usize>();
    state.draining += 1;
    while busy(&state) > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state = pool
            .changed
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    state.draining -= 1;
    let still_running = busy(&state);
    state.stopping = true;
    let dropped: Vec<Call> = state.queue.drain(..).collect();
    for slot in &mut state.slots {
        if let Some(io) = &slot.io {
            slot.kill = Some(Kill::Shutdown);
            io.kill();
        }
    }
    while state.slots.iter().any(|s| s.phase != Phase::Idle) {
        state = pool
            .changed
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    state.stopping = false;
    state.broken = None;
    state.start_failures = 0;
    state.killed_while_starting = 0;
    if !state.queue.is_empty() {
        // Calls made while the workers were being stopped: later calls, so they start the
        // pool again instead of waiting for a call after them to do it.
        pool.start_idle_workers(&mut state);
        state = pool.dispatch(state);
    }
    drop(state);
    for call in dropped {
        call.job.finish(Err(Error::Cancelled {
            task: call.entry.name,
        }));
    }
    still_running
}
