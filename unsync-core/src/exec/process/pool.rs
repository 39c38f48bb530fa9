//! The parent side of the process pool: which worker runs which call, what happens when a
//! worker dies, and the bytes on the pipes.
//!
//! Threads: one supervisor (it starts every worker, so that `PR_SET_PDEATHSIG` is tied to a
//! thread that lives as long as the process) and one I/O thread per worker, which reads that
//! worker's responses, completes the handles directly, and refills the worker from the queue.
//! A caller writes its own call to the pipe when the worker is idle (no thread hop on the
//! latency path); calls for a busy worker are batched and written by its I/O thread after the
//! next responses. All writes are non-blocking, so no thread ever waits on a full pipe while
//! holding anything another thread needs.
//!
//! How many calls a worker may hold at once adapts per function: a function that runs in
//! microseconds is pipelined up to 64 deep, one that runs for milliseconds goes one at a time
//! so that a free worker always takes the next call.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec;
use super::launch::launch;
use super::os;
use super::protocol::{self, FrameReader, Message, PROTOCOL_VERSION};
use super::registry::{self, WorkerFn};
use crate::error::Error;
use crate::exec::lock;
use crate::handle::Unfinished;
use crate::handle::completion::{Abort, Completion};

/// How long a new worker has to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deepest pipeline per worker, for the fastest functions.
const MAX_DEPTH: u32 = 64;
/// Microseconds of expected work a busy worker may hold.
const DEPTH_BUDGET_MICROS: u32 = 2000;
/// Workers that fail to start (exit, crash, no handshake), in a row, before the pool gives up.
const START_ATTEMPTS: u32 = 3;
/// Longest pause before starting a worker again after workers were killed from outside while
/// starting (the pause doubles with each such kill in a row, from 1 ms).
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(1);

/// One call on its way: the encoded frame and how to complete its handle.
trait Job: Send + Sync {
    fn frame(&self) -> &[u8];
    fn finish(&self, outcome: Result<&[u8], Error>);
    fn is_cancelled(&self) -> bool;
}

struct ProcessJob<W, R> {
    frame: Vec<u8>,
    cell: Arc<Completion<R>>,
    wire: std::marker::PhantomData<fn() -> W>,
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
        self.cell
            .complete(outcome.and_then(|bytes| decode_result::<W, R>(task, bytes)));
    }
    fn is_cancelled(&self) -> bool {
        self.cell.is_cancelled()
    }
}

struct Call {
    id: u64,
    entry: &'static WorkerFn,
    index: usize,
    job: Arc<dyn Job>,
    /// Expected run time in µs when given to a worker (the budget if not measured yet).
    cost: u32,
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

struct WorkerIo {
    child: Mutex<Child>,
    requests: File,
    responses: File,
    wake: os::Wake,
    pid: u32,
}

impl WorkerIo {
    fn wake(&self) {
        self.wake.signal();
    }
    fn kill(&self) {
        let _ = lock(&self.child).kill();
    }
}

struct Slot {
    phase: Phase,
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
}

pub(crate) struct Pool {
    state: Mutex<State>,
    /// Signalled when calls finish or workers change phase (for `shutdown`).
    changed: Condvar,
    supervisor: OnceLock<Sender<usize>>,
    next_id: AtomicU64,
    max_frame: usize,
    /// Per registered function: smoothed run time in µs (0: not measured yet).
    speed: Box<[AtomicU32]>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

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
            }),
            changed: Condvar::new(),
            supervisor: OnceLock::new(),
            next_id: AtomicU64::new(1),
            max_frame: settings.max_frame_bytes,
            speed: registry::WORKER_FNS
                .iter()
                .map(|_| AtomicU32::new(0))
                .collect(),
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
    let task = entry.name;
    let Some(index) = registry::index_of(entry) else {
        return Unfinished::failed(Error::WorkerDied {
            task,
            detail: "this function is missing from the worker registry: the linker dropped it (seen with some LTO or static-library builds)".into(),
        });
    };
    if registry::is_ambiguous(entry) {
        return Unfinished::failed(Error::WorkerDied {
            task,
            detail: "another #[unsync(cpu_bound)] function has the same path, name and signature (declared inside another function body of the same module?), so a worker cannot tell them apart: rename one of them".into(),
        });
    }
    let pool = pool();
    let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
    let mut frame = Vec::with_capacity(64);
    if let Err(e) = protocol::encode_call(&mut frame, id, entry.key, |out| codec::encode(args, out))
    {
        return Unfinished::failed(Error::Panicked {
            task,
            message: format!("cannot encode the arguments for a worker process: {e}"),
        });
    }
    if frame.len() - protocol::PREFIX > pool.max_frame {
        return Unfinished::failed(Error::WorkerDied {
            task,
            detail: format!(
                "the arguments take {} bytes, more than the frame limit of {} (raise it with `Config::max_frame_bytes` or UNSYNC_MAX_FRAME_BYTES)",
                frame.len() - protocol::PREFIX,
                pool.max_frame
            ),
        });
    }
    let cell = Completion::pending(task);
    let job = Arc::new(ProcessJob::<W, R> {
        frame,
        cell: cell.clone(),
        wire: std::marker::PhantomData,
    });
    cell.set_abort(Abort::new(move || cancel(id)));
    pool.submit(Call {
        id,
        entry,
        index,
        job,
        cost: 0,
    });
    Unfinished::from_cell(cell)
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

impl Pool {
    fn submit(&'static self, call: Call) {
        let mut state = lock(&self.state);
        if let Some(reason) = &state.broken {
            let error = Error::WorkerDied {
                task: call.entry.name,
                detail: reason.clone(),
            };
            drop(state);
            call.job.finish(Err(error));
            return;
        }
        state.queue.push_back(call);
        self.start_idle_workers(&mut state);
        drop(self.dispatch(state));
    }

    /// Ask the supervisor to start every worker that has no process.
    fn start_idle_workers(&'static self, state: &mut State) {
        if state.stopping || state.broken.is_some() {
            return;
        }
        if !super::worker::hook_ran() {
            let reason = "unsync's start-up hook did not run in this executable, so a worker would run `main` instead of the function; the linker dropped it (seen with some LTO and static-library builds): call `unsync::init()` first thing in `main`".to_owned();
            self.break_pool(state, reason);
            return;
        }
        for (index, slot) in state.slots.iter_mut().enumerate() {
            if slot.phase == Phase::Idle {
                slot.phase = Phase::Starting;
                let supervisor = self.supervisor.get_or_init(|| {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    std::thread::Builder::new()
                        .name("unsync-process-supervisor".into())
                        .spawn(move || {
                            for index in rx {
                                self.start_worker(index);
                            }
                        })
                        .expect("unsync: cannot start the process pool's supervisor thread");
                    tx
                });
                let _ = supervisor.send(index);
            }
        }
    }

    /// Fail everything queued and refuse new calls with `reason`.
    fn break_pool(&self, state: &mut State, reason: String) {
        let failed: Vec<Call> = state.queue.drain(..).collect();
        state.broken = Some(reason.clone());
        for call in failed {
            call.job.finish(Err(Error::WorkerDied {
                task: call.entry.name,
                detail: reason.clone(),
            }));
        }
    }

    /// Expected run time of function `index` in µs; unmeasured functions count as the whole
    /// budget, so that they only go to idle workers.
    fn cost(&self, index: usize) -> u32 {
        match self.speed[index].load(Ordering::Relaxed) {
            0 => DEPTH_BUDGET_MICROS,
            micros => micros.min(DEPTH_BUDGET_MICROS),
        }
    }

    /// Give queued calls to workers with room; write at once to workers that were idle. A
    /// worker has room when it is idle, or when what it holds adds up to less than the budget
    /// (so fast calls are pipelined and slow ones wait for a free worker).
    fn dispatch<'a>(&'static self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let mut idle_fed = Vec::new();
        while let Some(call) = state.queue.front() {
            if call.job.is_cancelled() {
                state.queue.pop_front();
                continue;
            }
            let cost = self.cost(call.index);
            let chosen = state
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.phase == Phase::Ready
                        && s.kill.is_none()
                        && (s.in_flight.is_empty()
                            || (s.in_flight.len() < MAX_DEPTH as usize
                                && s.load + u64::from(cost) <= u64::from(DEPTH_BUDGET_MICROS)))
                })
                .min_by_key(|(_, s)| s.load)
                .map(|(i, _)| i);
            let Some(index) = chosen else { break };
            let mut call = state.queue.pop_front().expect("front exists");
            call.cost = cost;
            let slot = &mut state.slots[index];
            if slot.in_flight.is_empty() {
                idle_fed.push(index);
            }
            slot.load += u64::from(cost);
            slot.in_flight.push_back(call);
        }
        for index in idle_fed {
            state = self.flush(state, index);
        }
        state
    }

    /// Write this worker's unsent calls without blocking; what does not fit is written by
    /// its I/O thread once the pipe has room. The lock is released during the write.
    fn flush<'a>(
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
            let written = rustix::io::writev(&io.requests, &slices);
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
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
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

    /// Start a worker process for slot `index` (on the supervisor thread).
    fn start_worker(&'static self, index: usize) {
        let killed = lock(&self.state).killed_while_starting;
        if killed > 1 {
            // Something kills workers as they start (an operator, an OOM killer): keep
            // replacing them, but not in a hot loop of forks.
            let pause = Duration::from_millis(1 << (killed - 2).min(10));
            std::thread::sleep(pause.min(MAX_RESTART_PAUSE));
        }
        {
            let mut state = lock(&self.state);
            if state.stopping {
                state.slots[index].phase = Phase::Idle;
                self.changed.notify_all();
                return;
            }
        }
        let launched = launch(registry::fingerprint(), self.max_frame).and_then(|l| {
            let wake = os::Wake::new()?;
            Ok(WorkerIo {
                pid: l.child.id(),
                child: Mutex::new(l.child),
                requests: File::from(l.requests),
                responses: File::from(l.responses),
                wake,
            })
        });
        let mut state = lock(&self.state);
        match launched {
            Err(e) => {
                state.slots[index].phase = Phase::Idle;
                state.start_failures += 1;
                if state.start_failures >= START_ATTEMPTS || state.stopping {
                    let reason = format!("cannot start a worker process: {e}");
                    self.break_pool(&mut state, reason);
                } else {
                    self.start_idle_workers(&mut state);
                }
                self.changed.notify_all();
            }
            Ok(io) => {
                let io = Arc::new(io);
                let stopping = state.stopping;
                let slot = &mut state.slots[index];
                slot.io = Some(io.clone());
                if stopping {
                    // `shutdown` began while this worker was being launched, after it killed
                    // the others: stop this one too (its I/O thread reaps it), or `shutdown`
                    // would wait for it forever.
                    slot.kill = Some(Kill::Shutdown);
                    io.kill();
                }
                let generation = slot.generation;
                drop(state);
                let spawned = std::thread::Builder::new()
                    .name(format!("unsync-process-io-{index}"))
                    .spawn(move || self.serve(index, generation, io));
                if let Err(e) = spawned {
                    panic!("unsync: cannot start a process-pool I/O thread: {e}");
                }
            }
        }
    }

    /// The I/O thread of one worker process, until it dies.
    fn serve(&'static self, index: usize, generation: u64, io: Arc<WorkerIo>) {
        let mut reader = FrameReader::new(&io.responses, self.max_frame);
        let started = Instant::now();
        let mut finished: Vec<Finished> = Vec::new();
        let death = 'serve: loop {
            let (phase, want_writable) = {
                let state = lock(&self.state);
                let slot = &state.slots[index];
                (slot.phase, slot.want_writable)
            };
            let timeout = (phase == Phase::Starting).then(|| {
                let left = HANDSHAKE_TIMEOUT.saturating_sub(started.elapsed());
                rustix::event::Timespec::try_from(left).unwrap_or_default()
            });
            let mut fds = vec![
                rustix::event::PollFd::new(&io.responses, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(io.wake.fd(), rustix::event::PollFlags::IN),
            ];
            if want_writable {
                fds.push(rustix::event::PollFd::new(
                    &io.requests,
                    rustix::event::PollFlags::OUT,
                ));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) if phase == Phase::Starting => {
                    break Death::Broken(format!(
                        "the worker process did not answer the handshake within {HANDSHAKE_TIMEOUT:?}; if it ran your `main` instead, unsync's start-up hook was dropped by the linker: call `unsync::init()` first thing in `main`"
                    ));
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => break Death::Broken(format!("cannot wait on the worker's pipe: {e}")),
            }
            let readable = !fds[0].revents().is_empty();
            let woken = !fds[1].revents().is_empty();
            let writable = fds.get(2).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            if woken {
                io.wake.drain();
            }
            if writable {
                let mut state = lock(&self.state);
                state.slots[index].want_writable = false;
                drop(self.flush(state, index));
            }
            if !readable {
                continue;
            }
            let ended = match reader.fill_available() {
                Ok(ended) => ended,
                Err(e) => {
                    break 'serve Death::Broken(format!("cannot read the worker's pipe: {e}"));
                }
            };
            // Pair every complete response with its call, under one lock.
            let mut state = lock(&self.state);
            loop {
                let range = match reader.buffered_range() {
                    Ok(Some(range)) => range,
                    Ok(None) => break,
                    Err(e) => {
                        drop(state);
                        break 'serve Death::Broken(format!("the worker broke the protocol: {e}"));
                    }
                };
                let body = reader.slice(range.clone());
                let message = match Message::decode(body) {
                    Ok(message) => message,
                    Err(e) => {
                        drop(state);
                        break 'serve Death::Broken(format!("the worker broke the protocol: {e}"));
                    }
                };
                let slot = &mut state.slots[index];
                match message {
                    Message::Hello {
                        version,
                        fingerprint,
                        ..
                    } if slot.phase == Phase::Starting => {
                        let ours = registry::fingerprint();
                        if version != PROTOCOL_VERSION || fingerprint != ours {
                            drop(state);
                            break 'serve Death::Refused(format!(
                                "the worker process is a different build (protocol {version}, fingerprint {fingerprint:016x}; this process: protocol {PROTOCOL_VERSION}, fingerprint {ours:016x})"
                            ));
                        }
                        slot.phase = Phase::Ready;
                        state.start_failures = 0;
                        state.killed_while_starting = 0;
                    }
                    Message::Refused { reason } => {
                        let reason = reason.to_owned();
                        drop(state);
                        break 'serve Death::Refused(reason);
                    }
                    Message::Returned { id, .. }
                    | Message::Panicked { id, .. }
                    | Message::Failed { id, .. }
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
                        let outcome =
                            call_outcome(call.entry.name, message, &self.speed[call.index])
                                .map(|payload| offset_in(range.start, body, payload));
                        finished.push((call.job, outcome));
                    }
                    _ => {
                        drop(state);
                        break 'serve Death::Broken(
                            "the worker broke the protocol: an unexpected frame".into(),
                        );
                    }
                }
            }
            state = self.dispatch(state);
            state = self.flush(state, index);
            self.changed.notify_all();
            drop(state);
            for (job, outcome) in finished.drain(..) {
                job.finish(outcome.map(|range| reader.slice(range)));
            }
            if ended {
                break Death::Exited;
            }
        };
        self.bury(index, generation, &io, death);
    }

    /// Reap a dead (or to-be-killed) worker, settle its calls, and replace it.
    fn bury(&'static self, index: usize, generation: u64, io: &WorkerIo, death: Death) {
        let status = {
            let mut child = lock(&io.child);
            let _ = child.kill();
            child.wait()
        };
        let mut state = lock(&self.state);
        let slot = &mut state.slots[index];
        debug_assert_eq!(slot.generation, generation);
        let kill = slot.kill.take();
        let was_ready = slot.phase == Phase::Ready;
        let started = slot.written > slot.answered || slot.partial > 0;
        let calls: Vec<Call> = slot.in_flight.drain(..).collect();
        *slot = Slot {
            generation: generation + 1,
            ..Slot::new()
        };
        let killed_from_outside = matches!(death, Death::Exited)
            && matches!(&status, Ok(s) if matches!(
                s.signal(),
                Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT)
            ));
        let detail = match &death {
            Death::Broken(why) | Death::Refused(why) => why.clone(),
            Death::Exited => describe_exit(status, io.pid, was_ready),
        };
        let mut failed = Vec::new();
        let mut requeue = Vec::new();
        for (position, call) in calls.into_iter().enumerate() {
            match &kill {
                Some(Kill::Shutdown) => failed.push((call, None)),
                Some(Kill::Cancel(id)) if call.id == *id => {}
                Some(Kill::Cancel(_)) => requeue.push(call),
                None if position == 0 && started => failed.push((call, Some(detail.clone()))),
                None => requeue.push(call),
            }
        }
        for call in requeue.into_iter().rev() {
            state.queue.push_front(call);
        }
        let refused = matches!(death, Death::Refused(_));
        if !was_ready && kill.is_none() {
            // A worker killed from outside while starting says nothing about whether workers
            // can start; one that exited, crashed or never said hello does.
            if killed_from_outside {
                state.killed_while_starting += 1;
            } else {
                state.start_failures += 1;
            }
        }
        if refused {
            self.break_pool(&mut state, detail);
        } else if state.start_failures >= START_ATTEMPTS {
            let reason = format!(
                "{START_ATTEMPTS} worker processes in a row failed to start; the last: {detail}"
            );
            self.break_pool(&mut state, reason);
        } else if !state.stopping {
            self.start_idle_workers(&mut state);
        }
        state = self.dispatch(state);
        self.changed.notify_all();
        drop(state);
        for (call, died) in failed {
            let task = call.entry.name;
            call.job.finish(Err(match died {
                Some(detail) => Error::WorkerDied { task, detail },
                None => Error::Cancelled { task },
            }));
        }
    }
}

/// What a worker's answer to a call of `task` means for that call: the result's bytes, or the
/// error the call fails with. A result also counts towards the function's smoothed run time.
pub(super) fn call_outcome<'a>(
    task: &'static str,
    answer: Message<'a>,
    speed: &AtomicU32,
) -> Result<&'a [u8], Error> {
    match answer {
        Message::Returned {
            micros, payload, ..
        } => {
            speed.store(
                smoothed(speed.load(Ordering::Relaxed), micros),
                Ordering::Relaxed,
            );
            Ok(payload)
        }
        Message::Panicked { message, .. } => Err(Error::Panicked {
            task,
            message: message.to_owned(),
        }),
        Message::Failed { message, .. } => Err(Error::WorkerDied {
            task,
            detail: format!("the worker could not run the call: {message}"),
        }),
        _ => Err(Error::WorkerDied {
            task,
            detail: "the worker broke the protocol: an unexpected frame".into(),
        }),
    }
}

/// A function's run time in µs, smoothed over its calls, after one that took `micros` (`old`
/// 0: none measured yet). Never 0 once measured.
fn smoothed(old: u32, micros: u32) -> u32 {
    let sample = micros.max(1);
    if old == 0 {
        return sample;
    }
    // In u64: a call may report up to u32::MAX µs (70 minutes), and 7 × old overflows a u32
    // from 10 minutes on.
    let new = (u64::from(old) * 7 + u64::from(sample)) / 8;
    u32::try_from(new).unwrap_or(u32::MAX)
}

/// The value of a call from its result's bytes (`W` is how it crossed the pipe, `R` what the
/// handle yields); bytes that do not decode fail the call.
pub(super) fn decode_result<W: DeserializeOwned + Into<R>, R>(
    task: &'static str,
    bytes: &[u8],
) -> Result<R, Error> {
    codec::decode::<W>(bytes)
        .map(Into::into)
        .map_err(|e| Error::WorkerDied {
            task,
            detail: format!("the worker's result could not be decoded: {e}"),
        })
}

/// A response paired with its call: where its payload lies in the reader's buffer.
type Finished = (Arc<dyn Job>, Result<Range<usize>, Error>);

enum Death {
    /// The worker closed its pipe: exited, crashed or was killed.
    Exited,
    /// The pool gave up on it (protocol error, handshake timeout): killed.
    Broken(String),
    /// It refused to serve this parent (another build): the pool cannot work.
    Refused(String),
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

/// Where `part` of `whole` lies, given that `whole` starts at `base`.
fn offset_in(base: usize, whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = base + (part.as_ptr() as usize - whole.as_ptr() as usize);
    start..start + part.len()
}

/// "the worker process 12 exited with status 3 while running this call", "... was killed by
/// signal 11 (SIGSEGV) while starting".
fn describe_exit(status: io::Result<ExitStatus>, pid: u32, was_ready: bool) -> String {
    let how = match status {
        Err(e) => format!("could not be reaped ({e})"),
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => {
                format!("was killed by signal {signal} ({})", signal_name(signal))
            }
            _ => format!("ended ({status})"),
        },
    };
    let when = if was_ready {
        "while running this call"
    } else {
        "while starting"
    };
    format!("the worker process {pid} {how} {when}")
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "another signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_smoothing_survives_the_longest_calls() {
        assert_eq!(smoothed(0, 0), 1);
        assert_eq!(smoothed(0, 500), 500);
        assert_eq!(smoothed(800, 0), 700);
        // A call of over 10 minutes, then another: 7 × old no longer fits in a u32.
        let long = smoothed(0, 700_000_000);
        assert_eq!(smoothed(long, 700_000_000), 700_000_000);
        assert_eq!(smoothed(u32::MAX, u32::MAX), u32::MAX);
    }
}
