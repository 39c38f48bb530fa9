//! What the executors are doing: per-mode task counts and the distributions of queue wait and
//! run time, read by [`stats()`], and (under the `metrics` feature) published through the
//! `metrics` crate.
//!
//! The write side is on every task's path, so it takes no lock and allocates nothing: each
//! thread writes only its own stripe (threads are spread round-robin over cache-padded
//! stripes, as in `inflight`), with relaxed atomic adds; the rare reader adds the stripes up.
//! Every count is monotonic; the gauges (`queued`, `running`) are differences of counts, so a
//! snapshot taken while tasks move may be off by the few tasks moving during the read.
//!
//! A task's life, as the executors report it: [`submitted`] when spawned; [`started`] when
//! its body starts (given to a worker, for a process call); then exactly one [`ended`], with
//! its [`Outcome`] and whether it had started.

use crate::handle::completion::Stop;
use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STRIPES: usize = 16;
/// Log2 buckets of microseconds: bucket 0 holds 0 µs, bucket `i` holds `[2^(i-1), 2^i)` µs, the
/// last everything above (about 36 minutes).
const BUCKETS: usize = 33;
const MODES: usize = 5;

/// An executor, as [`Stats::mode`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `#[unsync] async fn` and [`spawn`](crate::spawn): the tokio runtime.
    Async,
    /// Plain `#[unsync] fn` and [`spawn_blocking`](crate::spawn_blocking): the blocking pool.
    Thread,
    /// `#[unsync(parallel)] fn` and [`spawn_parallel`](crate::spawn_parallel): the rayon pool.
    Parallel,
    /// `#[unsync(cpu_bound)] fn`: the worker processes.
    Process,
    /// `#[unsync(remote)] fn` sent to a Temporal cluster (`UNSYNC_REMOTE`); run locally, a
    /// `remote` call counts as `Process`. Started is when the server accepted the call.
    Remote,
}

impl Mode {
    /// Every mode, in the order [`Stats`]' table shows them.
    pub const ALL: [Mode; MODES] = [
        Mode::Async,
        Mode::Thread,
        Mode::Parallel,
        Mode::Process,
        Mode::Remote,
    ];

    /// The mode's name in lower case, as in the table and the `mode` label of the metrics:
    /// `async`, `thread`, `parallel`, `process`, `remote`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Thread => "thread",
            Mode::Parallel => "parallel",
            Mode::Process => "process",
            Mode::Remote => "remote",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl Outcome {
    /// A task stopped before it ended by itself: a timeout is a failure.
    pub(crate) fn stopped(why: Stop) -> Outcome {
        match why {
            Stop::TimedOut => Outcome::Failed,
            Stop::Cancelled => Outcome::Cancelled,
        }
    }

    #[cfg(feature = "metrics")]
    fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

const SUBMITTED: usize = 0;
const STARTED: usize = 1;
const SUCCEEDED: usize = 2;
const FAILED: usize = 3;
const CANCELLED: usize = 4;
/// Tasks that ended without starting (cancelled while queued, refused by a broken pool).
const ENDED_UNSTARTED: usize = 5;
const COUNTS: usize = 6;

struct ModeStripe {
    counts: [AtomicU64; COUNTS],
    wait: [AtomicU64; BUCKETS],
    run: [AtomicU64; BUCKETS],
}

#[repr(align(128))]
struct Stripe {
    modes: [ModeStripe; MODES],
}

static COUNTERS: [Stripe; STRIPES] = [const {
    Stripe {
        modes: [const {
            ModeStripe {
                counts: [const { AtomicU64::new(0) }; COUNTS],
                wait: [const { AtomicU64::new(0) }; BUCKETS],
                run: [const { AtomicU64::new(0) }; BUCKETS],
            }
        }; MODES],
    }
}; STRIPES];

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn stripe(mode: Mode) -> &'static ModeStripe {
    let i = STRIPE.with(|stripe| {
        let mut i = stripe.get();
        if i == usize::MAX {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            stripe.set(i);
        }
        i
    });
    &COUNTERS[i].modes[mode as usize]
}

#[inline]
fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Microseconds since the first call of this function in the process (a `u32` wraps after
/// 71 minutes; differences are taken wrapping, so waits and runs shorter than that are
/// measured right).
#[inline]
fn now() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_micros() as u32).min(NOT_TIMED - 1)
}

/// The stamp of a task that is counted but not timed.
const NOT_TIMED: u32 = u32::MAX;
/// One task in `SAMPLE` per submitting thread is timed (the first, then every `SAMPLE`th): two
/// clock reads per task cost a burst of tiny tasks more than all the counting, and the
/// quantiles of a sample are those of the whole.
const SAMPLE: u32 = 8;

thread_local! {
    static SUBMITTED_HERE: Cell<u32> = const { Cell::new(0) };
}

/// The time stamp a task submitted now carries to [`started`]: the time, for a sampled task,
/// [`NOT_TIMED`] for the others.
#[inline]
pub(crate) fn stamp() -> u32 {
    let n = SUBMITTED_HERE.with(|n| {
        let v = n.get();
        n.set(v.wrapping_add(1));
        v
    });
    if n % SAMPLE == 0 { now() } else { NOT_TIMED }
}

#[inline]
fn bucket(micros: u32) -> usize {
    (u32::BITS - micros.leading_zeros()) as usize
}

/// A task was spawned on `mode`.
#[inline]
pub(crate) fn submitted(mode: Mode) {
    add(&stripe(mode).counts[SUBMITTED]);
    #[cfg(feature = "metrics")]
    published::submitted(mode);
}

/// A task of `mode` stamped `since` (see [`stamp`]) when submitted starts now. Returns the
/// stamp of its start, to give to [`ended`].
#[inline]
pub(crate) fn started(mode: Mode, since: u32) -> u32 {
    let stripe = stripe(mode);
    add(&stripe.counts[STARTED]);
    if since == NOT_TIMED {
        #[cfg(feature = "metrics")]
        published::started(mode, None);
        return NOT_TIMED;
    }
    let now = now();
    let waited = now.wrapping_sub(since);
    add(&stripe.wait[bucket(waited)]);
    #[cfg(feature = "metrics")]
    published::started(mode, Some(waited));
    now
}

/// A task of `mode` ended with `outcome`; `started` is the time stamp [`started`] returned, or
/// `None` when it never started.
#[inline]
pub(crate) fn ended(mode: Mode, outcome: Outcome, started: Option<u32>) {
    let stripe = stripe(mode);
    add(&stripe.counts[match outcome {
        Outcome::Succeeded => SUCCEEDED,
        Outcome::Failed => FAILED,
        Outcome::Cancelled => CANCELLED,
    }]);
    let ran = match started {
        Some(NOT_TIMED) => Some(None),
        Some(at) => {
            let ran = now().wrapping_sub(at);
            add(&stripe.run[bucket(ran)]);
            Some(Some(ran))
        }
        None => {
            add(&stripe.counts[ENDED_UNSTARTED]);
            None
        }
    };
    #[cfg(feature = "metrics")]
    published::ended(mode, outcome, ran);
    let _ = ran;
}

static WORKERS_STARTED: AtomicU64 = AtomicU64::new(0);
static WORKERS_ENDED: AtomicU64 = AtomicU64::new(0);
static WORKERS_DIED: AtomicU64 = AtomicU64::new(0);

/// A worker process was launched.
pub(crate) fn worker_started() {
    WORKERS_STARTED.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    published::worker_started();
}

/// A worker process ended; `died`: without the pool asking it to (a crash, a kill from
/// outside, a broken protocol, a failed start), not for a cancellation or a shutdown.
pub(crate) fn worker_ended(died: bool) {
    if died {
        WORKERS_DIED.fetch_add(1, Ordering::Relaxed);
    }
    WORKERS_ENDED.fetch_add(1, Ordering::Release);
    #[cfg(feature = "metrics")]
    published::worker_ended(died);
}

/// A snapshot of what unsync's executors have done since the program started: see [`stats()`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    modes: [ModeStats; MODES],
    workers: WorkerStats,
}

/// One executor's figures in a [`Stats`] snapshot.
///
/// Counts are since the program started. Once every task has ended, `submitted = succeeded +
/// failed + cancelled`; while tasks are in flight, `submitted = queued + running + succeeded +
/// failed + cancelled`, give or take the tasks that move while the snapshot is taken. A task
/// that returns or panics is counted before its handle resolves, so a snapshot taken after
/// reading a value counts it; a cancellation is counted when the executor lets go of the task
/// (at once for a queued `cpu_bound` call; when a thread or rayon task is taken from the queue,
/// or its body returns; when tokio drops an async task), a moment after the handle resolved.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ModeStats {
    /// Tasks spawned.
    pub submitted: u64,
    /// Tasks waiting for a thread (or, for `cpu_bound` calls, for a worker process).
    pub queued: u64,
    /// Tasks running now. For an async task: between its first poll and its end, `.await`s
    /// included. For a `cpu_bound` call: given to a worker (a worker may hold a few short calls
    /// at once, run one after the other).
    pub running: u64,
    /// Tasks that returned a value.
    pub succeeded: u64,
    /// Tasks that failed: panicked, ran out of time (a [`timeout`](crate::Unfinished::timeout)
    /// that fired), or (`cpu_bound`) lost their worker process, or could not cross the pipe,
    /// or found no worker able to start.
    pub failed: u64,
    /// Tasks cancelled: by [`cancel`](crate::Unfinished::cancel), a dropped
    /// [`cancel_on_drop`](crate::Unfinished::cancel_on_drop) handle, or a
    /// [`shutdown`](crate::shutdown()) that stopped them. A task cancelled (or timed out) while
    /// it runs in a thread counts as such even if its body goes on to return.
    pub cancelled: u64,
    wait: Histogram,
    run: Histogram,
}

/// The process pool's workers in a [`Stats`] snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WorkerStats {
    /// Worker processes alive now (started and not yet reaped).
    pub alive: u64,
    /// Worker processes launched since the program started (replacements included).
    pub started: u64,
    /// Worker processes that ended without the pool asking: crashed, exited, were killed from
    /// outside, broke the protocol or failed to start. Workers the pool stops (to cancel a
    /// running call, or at [`shutdown`](crate::shutdown())) are not counted.
    pub died: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Histogram([u64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram([0; BUCKETS])
    }
}

impl Histogram {
    fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                // The bucket's upper bound: 0 µs, then 2^i - 1 µs.
                let upper = if i == 0 { 0 } else { (1_u64 << i) - 1 };
                return Some(Duration::from_micros(upper));
            }
        }
        None
    }
}

impl ModeStats {
    /// The `q` quantile (`0.5` for the median, `0.99`, ...) of the time tasks waited between
    /// being spawned and starting, or `None` before any timed task started. Measured on a
    /// sample (the first task each thread submits, then one in 8), in log2 buckets of
    /// microseconds: the figure is the upper end of the bucket holding the quantile, so it is
    /// at most twice the true value (and never below it), to the microsecond.
    pub fn queue_wait(&self, q: f64) -> Option<Duration> {
        self.wait.quantile(q)
    }

    /// The `q` quantile of the time tasks ran, from start to end, or `None` before any timed
    /// task ended; sampled and in log2 buckets as for [`queue_wait`](ModeStats::queue_wait).
    pub fn run_time(&self, q: f64) -> Option<Duration> {
        self.run.quantile(q)
    }
}

impl Stats {
    /// The figures of one executor.
    pub fn mode(&self, mode: Mode) -> &ModeStats {
        &self.modes[mode as usize]
    }

    /// The process pool's workers.
    pub fn workers(&self) -> WorkerStats {
        self.workers
    }
}

/// A snapshot of what unsync's executors are doing and have done: per [`Mode`], tasks
/// submitted, queued, running, succeeded, failed and cancelled, and how long they waited and
/// ran ([`ModeStats`]); and the worker processes alive, started and died ([`WorkerStats`]).
///
/// Cheap (it adds up a few kilobytes of counters; no lock), callable from anywhere at any time,
/// also before the first task (everything is then 0). Counting costs each task three
/// uncontended atomic adds on its thread's own stripe; one task in 8 is also timed (two clock
/// reads, two more adds). Its `Display` is a compact table.
///
/// ```
/// use unsync::Mode;
///
/// let before = unsync::stats().mode(Mode::Thread).clone();
/// unsync::spawn_blocking(|| 6 * 7).result();
/// let after = unsync::stats();
/// assert!(after.mode(Mode::Thread).succeeded > before.succeeded);
/// println!("{after}");
/// ```
pub fn stats() -> Stats {
    let modes = Mode::ALL.map(|mode| {
        let mut counts = [0_u64; COUNTS];
        let mut wait = [0_u64; BUCKETS];
        let mut run = [0_u64; BUCKETS];
        // Ends first, then starts, then submissions (see `inflight`): a task seen ended is
        // then seen started and submitted, so the gauges do not go below zero for it.
        for stripe in &COUNTERS {
            let s = &stripe.modes[mode as usize];
            for i in [SUCCEEDED, FAILED, CANCELLED, ENDED_UNSTARTED] {
                counts[i] += s.counts[i].load(Ordering::Relaxed);
            }
            for (sum, n) in run.iter_mut().zip(&s.run) {
                *sum += n.load(Ordering::Relaxed);
            }
        }
        std::sync::atomic::fence(Ordering::Acquire);
        for stripe in &COUNTERS {
            let s = &stripe.modes[mode as usize];
            counts[STARTED] += s.counts[STARTED].load(Ordering::Relaxed);
            for (sum, n) in wait.iter_mut().zip(&s.wait) {
                *sum += n.load(Ordering::Relaxed);
            }
        }
        std::sync::atomic::fence(Ordering::Acquire);
        for stripe in &COUNTERS {
            let s = &stripe.modes[mode as usize];
            counts[SUBMITTED] += s.counts[SUBMITTED].load(Ordering::Relaxed);
        }
        let ended = counts[SUCCEEDED] + counts[FAILED] + counts[CANCELLED];
        let ended_started = ended.saturating_sub(counts[ENDED_UNSTARTED]);
        ModeStats {
            submitted: counts[SUBMITTED],
            queued: counts[SUBMITTED]
                .saturating_sub(counts[STARTED])
                .saturating_sub(counts[ENDED_UNSTARTED]),
            running: counts[STARTED].saturating_sub(ended_started),
            succeeded: counts[SUCCEEDED],
            failed: counts[FAILED],
            cancelled: counts[CANCELLED],
            wait: Histogram(wait),
            run: Histogram(run),
        }
    });
    let ended = WORKERS_ENDED.load(Ordering::Acquire);
    let started = WORKERS_STARTED.load(Ordering::Relaxed);
    Stats {
        modes,
        workers: WorkerStats {
            alive: started.saturating_sub(ended),
            started,
            died: WORKERS_DIED.load(Ordering::Relaxed),
        },
    }
}

/// `1.2ms`, `35µs`, `-`.
struct Short(Option<Duration>);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = self.0 else {
            return f.pad("-");
        };
        let micros = d.as_micros();
        let text = if micros < 1_000 {
            format!("{micros}µs")
        } else if micros < 1_000_000 {
            format!("{:.1}ms", micros as f64 / 1e3)
        } else {
            format!("{:.1}s", micros as f64 / 1e6)
        };
        f.pad(&text)
    }
}

/// A compact table, one line per mode, then the workers:
///
/// ```text
/// mode      submitted  queued  running  succeeded  failed  cancelled  wait p50/p99    run p50/p99
/// async           120       0        2        117       1          0     3µs/31µs   1.0ms/4.1ms
/// ...
/// workers: 2 alive, 3 started, 1 died
/// ```
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<9}{:>10}{:>8}{:>9}{:>11}{:>8}{:>11}{:>16}{:>16}",
            "mode",
            "submitted",
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "wait p50/p99",
            "run p50/p99"
        )?;
        for mode in Mode::ALL {
            let m = self.mode(mode);
            let wait = format!("{}/{}", Short(m.queue_wait(0.5)), Short(m.queue_wait(0.99)));
            let run = format!("{}/{}", Short(m.run_time(0.5)), Short(m.run_time(0.99)));
            writeln!(
                f,
                "{:<9}{:>10}{:>8}{:>9}{:>11}{:>8}{:>11}{:>16}{:>16}",
                mode.name(),
                m.submitted,
                m.queued,
                m.running,
                m.succeeded,
                m.failed,
                m.cancelled,
                wait,
                run
            )?;
        }
        let w = self.workers;
        write!(
            f,
            "workers: {} alive, {} started, {} died",
            w.alive, w.started, w.died
        )
    }
}

/// The same figures through the `metrics` crate, as they happen.
#[cfg(feature = "metrics")]
mod published {
    use super::{Mode, Outcome};
    use metrics::{counter, gauge, histogram};

    pub(super) fn submitted(mode: Mode) {
        counter!("unsync_tasks_submitted_total", "mode" => mode.name()).increment(1);
        gauge!("unsync_tasks_queued", "mode" => mode.name()).increment(1.0);
    }

    /// `waited_micros`: `None` for a task not timed (see `SAMPLE`).
    pub(super) fn started(mode: Mode, waited_micros: Option<u32>) {
        gauge!("unsync_tasks_queued", "mode" => mode.name()).decrement(1.0);
        gauge!("unsync_tasks_running", "mode" => mode.name()).increment(1.0);
        if let Some(micros) = waited_micros {
            histogram!("unsync_task_queue_wait_seconds", "mode" => mode.name())
                .record(f64::from(micros) / 1e6);
        }
    }

    /// `ran_micros`: `None` for a task that never started, `Some(None)` for one not timed.
    pub(super) fn ended(mode: Mode, outcome: Outcome, ran_micros: Option<Option<u32>>) {
        counter!("unsync_tasks_total", "mode" => mode.name(), "outcome" => outcome.name())
            .increment(1);
        match ran_micros {
            Some(timed) => {
                gauge!("unsync_tasks_running", "mode" => mode.name()).decrement(1.0);
                if let Some(micros) = timed {
                    histogram!("unsync_task_run_seconds", "mode" => mode.name())
                        .record(f64::from(micros) / 1e6);
                }
            }
            None => gauge!("unsync_tasks_queued", "mode" => mode.name()).decrement(1.0),
        }
    }

    pub(super) fn worker_started() {
        counter!("unsync_workers_started_total").increment(1);
        gauge!("unsync_workers_alive").increment(1.0);
    }

    pub(super) fn worker_ended(died: bool) {
        gauge!("unsync_workers_alive").decrement(1.0);
        if died {
            counter!("unsync_workers_died_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(u32::MAX), BUCKETS - 1);
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.0[bucket(100)] += 99;
        h.0[bucket(5000)] += 1;
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(127)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_micros(127)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(8191)));
    }
}
