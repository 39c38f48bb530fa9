//! The rayon pool behind `#[unsync(parallel)] fn` and [`spawn_parallel`]: one thread per core
//! (or [`Config::parallel_threads`](crate::Config::parallel_threads)), for CPU work in this
//! process. It is unsync's own pool, so `par_iter` inside a task runs on it too.

use std::sync::OnceLock;

use crate::cell::{Cell, Completer};
use crate::handle::Unfinished;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
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
/// let sum = unsync_core::spawn_parallel(|| (1..=1_000_u64).sum::<u64>());
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
    let cell = Cell::pending(task);
    let completer = Completer::new(cell.clone());
    pool().spawn(move || crate::task::run(completer, body));
    Unfinished::from_cell(cell)
}
