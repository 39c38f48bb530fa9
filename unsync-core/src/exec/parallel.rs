//! The rayon pool behind `#[unsync(parallel)] fn` and [`spawn_parallel`]: one thread per core
//! (or [`Config::parallel_threads`](crate::Config::parallel_threads)), for CPU work in this
//! process. It is unsync's own pool, so `par_iter` inside a task runs on it too.
//!
//! rayon cannot say how many jobs it holds, so tasks in flight are counted for
//! [`shutdown`](crate::shutdown()) on per-thread stripes (see `inflight`).

use std::sync::OnceLock;

use crate::exec::context::Carried;
use crate::exec::inflight::InFlight;
use crate::exec::stats::{self, Mode};
use crate::handle::Unfinished;
use crate::handle::completion::Completion;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
static IN_FLIGHT: InFlight = InFlight::new();

fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
        crate::exec::panic_site::install();
        rayon::ThreadPoolBuilder::new()
            .num_threads(crate::config::settings().parallel_threads)
            .thread_name(|i| format!("unsync-parallel-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("unsync cannot start its rayon pool: {e}"))
    })
}

/// Run a CPU-bound closure on unsync's rayon pool; the handle resolves to its return value.
///
/// ```
/// let sum = unsync::spawn_parallel(|| (1..=1_000_u64).sum::<u64>());
/// assert_eq!(sum.result(), 500_500);
/// ```
pub fn spawn_parallel<F, T>(body: F) -> Unfinished<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_parallel_task("spawn_parallel", body)
}

/// [`spawn_parallel`] with the task named after the `#[unsync]` function it runs.
#[doc(hidden)]
pub fn spawn_parallel_task<F, T>(task: &'static str, body: F) -> Unfinished<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cell = Completion::pending(task);
    let job = cell.clone();
    let carried = Carried::capture(task);
    let token = IN_FLIGHT.start();
    stats::submitted(Mode::Parallel);
    let since = stats::stamp();
    pool().spawn(move || {
        crate::exec::task::run(&job, &carried, Mode::Parallel, since, body);
        drop(token);
    });
    Unfinished::from_cell(cell)
}

/// Tasks queued or running, not counting the ones calling (a rayon worker that waits runs
/// other tasks nested on its stack, so the caller may be several).
pub(crate) fn in_flight() -> usize {
    let Some(pool) = POOL.get() else {
        return 0;
    };
    let calling = if pool.current_thread_index().is_some() {
        crate::exec::task::depth()
    } else {
        0
    };
    IN_FLIGHT.count().saturating_sub(calling)
}
