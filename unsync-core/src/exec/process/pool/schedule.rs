//! Where a call waits and which worker gets it: the queue, and how many calls a worker may
//! hold at once. That depth adapts per function: a function that runs in microseconds is
//! pipelined up to [`MAX_DEPTH`] deep, one that runs for milliseconds goes one at a time, so
//! that a free worker always takes the next call. A stream takes a worker for itself.

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::lead::{self, ReadAfter};
use super::{Call, Fed, Phase, Pool, State};
use crate::error::Error;
use crate::exec::lock;

/// Deepest pipeline per worker, for the fastest functions.
pub(super) const MAX_DEPTH: u32 = 64;
/// Microseconds of expected work a busy worker may hold.
const DEPTH_BUDGET_MICROS: u32 = 2000;

impl Pool {
    /// Queue a call, start workers if none runs, and hand it out if a worker has room. With
    /// `one_at_a_time`, the calling thread's previous call is done with (see `lead::read_after`).
    pub(super) fn submit(&'static self, call: Call, one_at_a_time: bool) {
        let read_after = lead::read_after(self.expected_micros(call.index), one_at_a_time);
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
        drop(self.dispatch_muting(state, read_after));
    }

    /// Expected run time of function `index` in µs; unmeasured functions count as the whole
    /// budget, so that they only go to idle workers.
    fn cost(&self, index: usize) -> u32 {
        match self.expected_micros(index) {
            0 => DEPTH_BUDGET_MICROS,
            micros => micros.min(DEPTH_BUDGET_MICROS),
        }
    }

    /// Typical run time of function `index` in µs (0: not measured yet).
    fn expected_micros(&self, index: usize) -> u32 {
        self.speed[index].load(Ordering::Relaxed)
    }

    /// Count a call of function `index` that ran for `micros` towards its expected run time.
    pub(super) fn record_run_time(&self, index: usize, micros: u32) {
        let speed = &self.speed[index];
        speed.store(
            smoothed(speed.load(Ordering::Relaxed), micros),
            Ordering::Relaxed,
        );
    }

    /// Give queued calls to workers with room; write at once to workers that were idle. A
    /// worker has room when it is idle, or when what it holds adds up to less than the budget
    /// (so fast calls are pipelined and slow ones wait for a free worker).
    pub(super) fn dispatch<'a>(
        &'static self,
        state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        self.dispatch_muting(state, ReadAfter::No)
    }

    /// [`dispatch`](Pool::dispatch); unless `read_after` is `No`, muting the response pipe of
    /// each idle worker it writes to before it writes, and reading what they answered after (see
    /// `lead::read_after`).
    fn dispatch_muting<'a>(
        &'static self,
        mut state: MutexGuard<'a, State>,
        read_after: ReadAfter,
    ) -> MutexGuard<'a, State> {
        let mut fed_idle = false;
        while let Some(call) = state.queue.front() {
            if call.job.is_cancelled() {
                state.queue.pop_front();
                continue;
            }
            let cost = self.cost(call.index);
            // A stream holds its worker alone: it goes only to an idle worker, and nothing is
            // pipelined behind it (the worker reads only credit while it streams).
            let stream = call.stream.is_some();
            let chosen = state
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.phase == Phase::Ready
                        && s.kill.is_none()
                        && (s.in_flight.is_empty()
                            || (!stream
                                && s.in_flight.front().is_some_and(|c| c.stream.is_none())
                                && s.in_flight.len() < MAX_DEPTH as usize
                                && s.load + u64::from(cost) <= u64::from(DEPTH_BUDGET_MICROS)))
                })
                .min_by_key(|(_, s)| s.load)
                .map(|(i, _)| i);
            let Some(index) = chosen else { break };
            let mut call = state.queue.pop_front().expect("front exists");
            call.cost = cost;
            let slot = &mut state.slots[index];
            if slot.in_flight.is_empty() {
                slot.fed = Fed::Idle;
                fed_idle = true;
            }
            slot.load += u64::from(cost);
            call.job.dispatched();
            slot.in_flight.push_back(call);
        }
        if !fed_idle {
            return state;
        }
        // Write to the workers that were idle (`Slot::fed` instead of a list: a lone call
        // allocates nothing here)...
        let mut muted_any = false;
        for index in 0..state.slots.len() {
            let slot = &mut state.slots[index];
            if slot.fed != Fed::Idle {
                continue;
            }
            slot.fed = match &slot.io {
                Some(io) if read_after != ReadAfter::No && io.wake.mute_responses().is_ok() => {
                    Fed::IdleMuted
                }
                Some(io) => {
                    // Muted while idle (`lead::Taken`): whoever reads its next answer, the
                    // I/O thread must hear it.
                    if io.wake.unmute_responses().is_err() {
                        io.kill();
                    }
                    Fed::No
                }
                None => Fed::No,
            };
            muted_any |= slot.fed == Fed::IdleMuted;
            state = self.flush(state, index);
        }
        if !muted_any {
            return state;
        }
        // ... then read what those this thread muted answered meanwhile (another such thread,
        // whose dispatch overlapped, may read some of them: either way each is read once, and
        // its pipe given back unless its worker is idle again).
        for index in 0..state.slots.len() {
            let slot = &mut state.slots[index];
            if std::mem::replace(&mut slot.fed, Fed::No) != Fed::IdleMuted {
                continue;
            }
            let Some(io) = slot.io.clone() else { continue };
            drop(state);
            lead::read_written(self, index, &io, read_after);
            state = lock(&self.state);
        }
        state
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        /// Once measured, a function never looks unmeasured again (0), and its estimate stays
        /// between the old one and the new sample.
        #[test]
        fn a_measured_run_time_stays_positive_and_between(old: u32, micros: u32) {
            let new = smoothed(old, micros);
            prop_assert!(new > 0);
            if old > 0 {
                let sample = micros.max(1);
                prop_assert!(new >= old.min(sample) && new <= old.max(sample));
            }
        }
    }
}
