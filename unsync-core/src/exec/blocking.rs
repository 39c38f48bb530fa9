//! The blocking pool behind plain `#[unsync] fn` and [`spawn_blocking`]: threads meant to
//! sit in blocking I/O and legacy synchronous libraries.
//!
//! A few hot threads (one per core) take jobs from one unbounded lock-free queue, so a burst of
//! short jobs costs a queue push and pop each, not a thread each. The pool grows only when
//! every thread is stuck:
//! - at once, when a pool thread starts waiting on another unsync handle (it is known to be
//!   blocked, and the handle it waits on may sit in this very queue);
//! - otherwise from a monitor thread: when jobs wait and none was taken for a whole tick
//!   (1 ms), the threads are all blocked, and the pool up to doubles, up to
//!   [`Config::blocking_threads`](crate::Config::blocking_threads) threads (512 by default),
//!   not counting threads that wait on handles: they run nothing meanwhile, and counting them
//!   would stall a chain of nested calls deeper than the cap.
//!
//! Threads beyond the hot ones exit after 10 s without work. The monitor sleeps while no job
//! waits. Jobs in flight (queued or running) are counted for [`shutdown`](crate::shutdown())
//! on per-thread stripes (see `inflight`), not on one shared counter.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::exec::context::Carried;
use crate::exec::inflight::{InFlight, Token};
use crate::exec::stats::{self, Mode};
use crate::handle::Unfinished;
use crate::handle::completion::Completion;
use crate::handle::wait::{BlockingHook, set_blocking_hook};

/// A queued task: its completion cell, which carries the job (see [`Queued`]). One allocation
/// per task, freed by whichever side lets go last (usually the reader, on the thread that
/// allocated it), instead of a boxed closure freed by a pool thread.
type Job = Arc<dyn Run>;

trait Run: Send + Sync {
    fn run(&self);
}

/// What a task's cell carries until a pool thread takes it.
struct Queued<F>(std::sync::Mutex<Option<(F, Carried, Token, u32)>>);

impl<F, T> Run for Completion<T, Queued<F>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(&self) {
        let taken = self
            .payload()
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((body, carried, token, since)) = taken {
            crate::exec::task::run(self, &carried, Mode::Thread, since, body);
            drop(token);
        }
    }
}

const TICK: Duration = Duration::from_millis(1);
const KEEP_ALIVE: Duration = Duration::from_secs(10);

struct Pool {
    sender: Sender<Job>,
    receiver: Receiver<Job>,
    /// Threads kept even when idle.
    hot: usize,
    /// Threads the pool may grow to, besides those waiting on handles.
    max: usize,
    /// Pool threads blocked on an unsync handle (see [`WAITING_ON_A_HANDLE`]).
    waiting: AtomicUsize,
    threads: AtomicUsize,
    idle: AtomicUsize,
    submitted: AtomicU64,
    monitor_awake: AtomicBool,
    monitor: OnceLock<Thread>,
    next_name: AtomicUsize,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static IN_FLIGHT: InFlight = InFlight::new();

thread_local! {
    static IS_POOL_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        crate::exec::panic_site::install();
        let settings = crate::config::settings();
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let (sender, receiver) = crossbeam_channel::unbounded();
        Pool {
            sender,
            receiver,
            hot: cores.min(settings.blocking_threads),
            max: settings.blocking_threads,
            waiting: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            submitted: AtomicU64::new(0),
            monitor_awake: AtomicBool::new(false),
            monitor: OnceLock::new(),
            next_name: AtomicUsize::new(0),
        }
    })
}

/// Run a blocking closure on the blocking pool; the handle resolves to its return value.
///
/// ```
/// let contents = unsync::spawn_blocking(|| std::fs::read_to_string("Cargo.toml"));
/// assert!(contents.result().unwrap().contains("[package]"));
/// ```
pub fn spawn_blocking<F, T>(body: F) -> Unfinished<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_blocking_task("spawn_blocking", body)
}

/// [`spawn_blocking`] with the task named after the `#[unsync]` function it runs.
#[doc(hidden)]
pub fn spawn_blocking_task<F, T>(task: &'static str, body: F) -> Unfinished<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let carried = Carried::capture(task);
    let token = IN_FLIGHT.start();
    stats::submitted(Mode::Thread);
    let since = stats::stamp();
    let cell = Completion::pending_with(
        task,
        Queued(std::sync::Mutex::new(Some((body, carried, token, since)))),
    );
    submit(cell.clone());
    Unfinished::from_source(cell)
}

/// Jobs queued or running, not counting the one calling (when called from one).
pub(crate) fn in_flight() -> usize {
    let calling = IS_POOL_THREAD.with(Cell::get) && crate::exec::task::depth() > 0;
    IN_FLIGHT.count().saturating_sub(usize::from(calling))
}

fn submit(job: Job) {
    let pool = pool();
    pool.submitted.fetch_add(1, Ordering::Relaxed);
    if pool.sender.send(job).is_err() {
        unreachable!("the blocking pool owns its receiver");
    }
    let idle = pool.idle.load(Ordering::SeqCst);
    if idle == 0 && pool.threads.load(Ordering::Relaxed) < pool.hot {
        pool.spawn_thread();
    }
    // More jobs waiting than idle threads to take them: a burst can outrun an idle thread that
    // has not woken yet, and every job of it would then queue behind that one thread.
    if pool.receiver.len() > idle {
        pool.wake_monitor();
    }
}

/// What a pool thread does when it is about to block on an unsync handle: make sure another
/// thread can take jobs meanwhile. Until it runs again, the waiting thread does not count
/// against the pool's maximum (it runs no blocking work, and the job it waits for may sit in
/// this very queue), so nesting goes as deep as it needs.
static WAITING_ON_A_HANDLE: BlockingHook = BlockingHook {
    enter: || {
        let pool = pool();
        pool.waiting.fetch_add(1, Ordering::AcqRel);
        if pool.idle.load(Ordering::SeqCst) == 0 {
            pool.spawn_thread();
        }
    },
    leave: || {
        pool().waiting.fetch_sub(1, Ordering::AcqRel);
    },
};

impl Pool {
    /// Start one more thread unless the pool is at its maximum (not counting the threads
    /// waiting on handles).
    fn spawn_thread(&'static self) -> bool {
        let max = self.max + self.waiting.load(Ordering::Acquire);
        if self
            .threads
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        let n = self.next_name.fetch_add(1, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name(format!("unsync-blocking-{n}"))
            .spawn(move || self.work());
        if let Err(e) = spawned {
            self.threads.fetch_sub(1, Ordering::AcqRel);
            eprintln!("unsync: cannot start a blocking-pool thread ({e}); will retry");
            return false;
        }
        true
    }

    fn work(&'static self) {
        IS_POOL_THREAD.with(|t| t.set(true));
        set_blocking_hook(&WAITING_ON_A_HANDLE);
        loop {
            let job = match self.receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    self.idle.fetch_add(1, Ordering::SeqCst);
                    let received = self.receiver.recv_timeout(KEEP_ALIVE);
                    self.idle.fetch_sub(1, Ordering::SeqCst);
                    match received {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            let retired = self
                                .threads
                                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                                    (n > self.hot).then_some(n - 1)
                                })
                                .is_ok();
                            if retired {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            job.run();
        }
    }

    fn wake_monitor(&'static self) {
        if self.monitor_awake.load(Ordering::Relaxed)
            || self.monitor_awake.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let monitor = self.monitor.get_or_init(|| {
            thread::Builder::new()
                .name("unsync-blocking-monitor".into())
                .spawn(move || self.monitor())
                .expect("unsync: cannot start the blocking pool's monitor thread")
                .thread()
                .clone()
        });
        monitor.unpark();
    }

    /// Grow the pool while jobs wait and no thread takes them.
    fn monitor(&'static self) {
        let mut last_taken = None;
        loop {
            let queued = self.receiver.len();
            if queued == 0 {
                self.monitor_awake.store(false, Ordering::SeqCst);
                if self.receiver.is_empty() {
                    thread::park();
                }
                last_taken = None;
                continue;
            }
            let taken = self.submitted.load(Ordering::Relaxed) - queued as u64;
            if last_taken == Some(taken) && self.idle.load(Ordering::SeqCst) == 0 {
                let threads = self.threads.load(Ordering::Relaxed);
                for _ in 0..queued.min(threads.max(1)) {
                    if !self.spawn_thread() {
                        break;
                    }
                }
            }
            last_taken = Some(taken);
            thread::park_timeout(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Instant;

    /// A deadlock detector, not a performance bound: many times what the test needs.
    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn grows_while_every_thread_is_blocked() {
        // 64 jobs that can only finish together: possible only if 64 run at once. Each waits
        // for all 64 to arrive, up to one shared deadline, so that a pool that does not grow
        // fails the test (every job reports how many it saw) instead of hanging it.
        const JOBS: usize = 64;
        let deadline = Instant::now() + LIMIT;
        let arrived = Arc::new((Mutex::new(0_usize), Condvar::new()));
        let handles: Vec<_> = (0..JOBS)
            .map(|i| {
                let arrived = arrived.clone();
                spawn_blocking(move || {
                    let (count, changed) = &*arrived;
                    let mut count = count.lock().unwrap();
                    *count += 1;
                    changed.notify_all();
                    while *count < JOBS {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        count = changed.wait_timeout(count, left).unwrap().0;
                    }
                    (i, *count)
                })
            })
            .collect();
        let mut sum = 0;
        for handle in handles {
            let (i, saw) = handle.result();
            assert_eq!(
                saw, JOBS,
                "job {i} saw only {saw} of {JOBS} jobs running at once"
            );
            sum += i;
        }
        assert_eq!(sum, (0..JOBS).sum::<usize>());
    }
}
