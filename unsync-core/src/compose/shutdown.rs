//! [`shutdown`]: the end of `main`. Waits (boundedly) for the tasks still in flight on every
//! executor, then stops the worker processes.
//!
//! It counts tasks, it does not track them: the async runtime is asked how many tasks it holds
//! (tokio keeps that number anyway), the blocking and rayon pools count theirs on per-thread
//! stripes (see `inflight`), so that nothing is added to the spawn path for it. As nothing
//! wakes it when a count drops, it checks the counts every millisecond.

use std::time::{Duration, Instant};

/// How often the counts are checked while waiting.
const TICK: Duration = Duration::from_millis(1);

/// Wait up to `timeout` for the tasks in flight to finish, then stop and reap the worker
/// processes; returns how many tasks were still queued or running at the deadline (0:
/// everything finished in time).
///
/// Meant for the end of `main`, so that background work started with `#[unsync]` is not cut
/// off when the process exits. What happens to the tasks still queued or running when
/// `timeout` passes depends on where they run:
///
/// | mode | at the deadline |
/// |---|---|
/// | `#[unsync] async fn` (the async runtime) | not cancelled: goes on (a queued task still starts) until the process exits; its handles still work |
/// | `#[unsync] fn` (the blocking pool) | not cancelled, as above; [`is_cancelled`](crate::is_cancelled) stays false |
/// | `#[unsync(parallel)] fn` (the rayon pool) | not cancelled, as above |
/// | `#[unsync(cpu_bound)] fn` (worker processes) | a queued call is dropped; every worker is killed (SIGKILL) and reaped, so a running call is cut off; both resolve to [`Error::Cancelled`](crate::Error::Cancelled) |
/// | `#[unsync(remote)] fn` on a cluster | not cancelled: the call goes on on the cluster, and its handle resolves while the process lives |
///
/// The worker processes are stopped and reaped in any case, idle or not, after the deadline or
/// as soon as every task has finished; `shutdown` returns once they are gone. Nothing else is
/// torn down for good: the pools and the runtime stay (idle), and the next task, or the next
/// `cpu_bound` call (even one made while `shutdown` stops the workers), starts what it needs
/// again, lazily.
///
/// Counted as in flight: tasks queued or running on the async runtime (on unsync's own
/// runtime, every task on it counts, your own `unsync::runtime().spawn(..)` ones and the small
/// tasks behind [`then`](crate::Unfinished::then), [`map`](crate::Unfinished::map),
/// [`join_all`](crate::join_all) and [`timeout`](crate::Unfinished::timeout) included; on a
/// runtime given to [`Config::runtime`](crate::Config::runtime), only unsync's tasks), on the
/// blocking pool, on the rayon pool, on the worker processes, and on the cluster (`remote`
/// calls whose result has not come back).
///
/// Safe to call from anywhere, and never panics:
/// - from sync code, it blocks the calling thread (up to `timeout`);
/// - from inside async code it blocks too, as [`Unfinished::result`](crate::Unfinished::result)
///   does: on a multi-threaded tokio runtime through `block_in_place` (the runtime moves its
///   other tasks to another thread), on a current-thread runtime or another executor by
///   blocking that executor's thread, so its own other tasks wait (unsync's run elsewhere and
///   go on);
/// - from inside an unsync task (of any mode), the calling task is not counted, so that it
///   does not wait for itself; on a rayon worker, the tasks it is nested in on that thread
///   are not counted either. Tasks on other threads that wait for the caller do count (they
///   are still running), so calling it there waits out `timeout`: call it at the end of
///   `main`, not from inside the work.
///
/// ```
/// use std::time::Duration;
///
/// let background = unsync::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20)));
/// background.detach(); // fire and forget...
/// // ...but let it finish before the process exits.
/// assert_eq!(unsync::shutdown(Duration::from_secs(60)), 0);
/// ```
pub fn shutdown(timeout: Duration) -> usize {
    let deadline = Instant::now().checked_add(timeout);
    let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    crate::handle::wait::wait_until(|| in_process() == 0, deadline, TICK);
    in_process() + process_pool_shutdown(deadline)
}

/// Tasks in flight on the in-process executors, the caller excluded.
fn in_process() -> usize {
    crate::exec::runtime::in_flight()
        + crate::exec::blocking::in_flight()
        + crate::exec::parallel::in_flight()
        + crate::exec::remote::in_flight()
}

/// The process pool (`#[unsync(cpu_bound)]`): wait until `deadline` for the calls on worker
/// processes, then stop and reap the workers (the next `cpu_bound` call starts them again);
/// returns how many of its calls were still queued or running.
fn process_pool_shutdown(deadline: Instant) -> usize {
    crate::exec::process::shutdown(deadline)
}
