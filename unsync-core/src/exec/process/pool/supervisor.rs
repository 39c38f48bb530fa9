//! Worker lifecycle: starting workers (on the supervisor thread), noticing how one ended,
//! settling its calls, and replacing it, pausing when something outside keeps killing them
//! and giving up when they cannot start at all.
//!
//! Workers are started from one long-lived thread because `PR_SET_PDEATHSIG` (Linux) fires
//! when the thread that forked the worker exits, not the process.

use std::io;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Call, Kill, Phase, Pool, Reading, Slot, State, WorkerIo};
use crate::error::Error;
use crate::exec::lock;
use crate::exec::process::handshake;
use crate::exec::process::launch::launch;
use crate::exec::process::{os, worker};

/// Workers that fail to start (exit, crash, no handshake), in a row, before the pool gives up.
const START_ATTEMPTS: u32 = 3;
/// Longest pause before starting a worker again after workers were killed from outside while
/// starting (the pause doubles with each such kill in a row, from 1 ms).
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How a worker's I/O thread saw it end.
pub(super) enum Death {
    /// The worker closed its pipe: exited, crashed or was killed.
    Exited,
    /// The pool gave up on it (protocol error, handshake timeout): killed.
    Broken(String),
    /// It refused to serve this parent (another build): the pool cannot work.
    Refused(String),
}

impl Pool {
    /// Ask the supervisor to start every worker that has no process.
    pub(super) fn start_idle_workers(&'static self, state: &mut State) {
        if state.stopping || state.broken.is_some() {
            return;
        }
        if !worker::hook_ran() {
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
    pub(super) fn break_pool(&self, state: &mut State, reason: String) {
        let failed: Vec<Call> = state.queue.drain(..).collect();
        state.broken = Some(reason.clone());
        for call in failed {
            call.job.finish(Err(Error::WorkerDied {
                task: call.entry.name,
                detail: reason.clone(),
            }));
        }
    }

    /// Start a worker process for slot `index` (on the supervisor thread), and its I/O thread.
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
        let args_arena = self.args_arena.as_ref();
        let launched =
            launch(handshake::fingerprint(), self.max_frame, args_arena).map(|l| WorkerIo {
                pid: l.child.id(),
                child: Mutex::new(l.child),
                requests: l.requests,
                reading: Mutex::new(Reading::new(l.responses, self.max_frame)),
                wake: l.wake,
                results: l.results,
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
                crate::exec::stats::worker_started();
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

    /// Reap a dead (or to-be-killed) worker, settle its calls, and replace it.
    pub(super) fn bury(&'static self, index: usize, generation: u64, io: &WorkerIo, death: Death) {
        let status = {
            let mut child = lock(&io.child);
            let _ = child.kill();
            child.wait()
        };
        let mut state = lock(&self.state);
        let slot = &mut state.slots[index];
        debug_assert_eq!(slot.generation, generation);
        let kill = slot.kill.take();
        crate::exec::stats::worker_ended(kill.is_none());
        let was_ready = slot.phase == Phase::Ready;
        let started = slot.written > slot.answered || slot.partial > 0;
        let calls: Vec<Call> = slot.in_flight.drain(..).collect();
        *slot = Slot {
            generation: generation + 1,
            ..Slot::new()
        };
        let killed_from_outside = matches!(death, Death::Exited)
            && matches!(&status, Ok(s) if os::killed_from_outside(s));
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

/// "the worker process 12 exited with status 3 while running this call", "... was killed by
/// signal 11 (SIGSEGV) while starting".
fn describe_exit(status: io::Result<ExitStatus>, pid: u32, was_ready: bool) -> String {
    let how = match status {
        Err(e) => format!("could not be reaped ({e})"),
        Ok(status) => os::describe_status(status),
    };
    let when = if was_ready {
        "while running this call"
    } else {
        "while starting"
    };
    format!("the worker process {pid} {how} {when}")
}
