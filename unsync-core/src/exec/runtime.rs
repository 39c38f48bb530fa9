//! The global tokio runtime that runs `#[unsync] async fn` and [`spawn`]: started lazily on
//! first use, multi-threaded, never shut down (it lives in a `static`), or replaced by an
//! application's own runtime through [`Config::runtime`](crate::Config::runtime).
//!
//! Tasks in flight (for [`shutdown`](crate::shutdown())) are counted by tokio itself on unsync's
//! own runtime, at no cost per task; on an application's runtime, which also runs tasks that
//! are not unsync's, unsync counts its own tasks (see `inflight`).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::Error;
use crate::exec::context::Carried;
use crate::exec::inflight::InFlight;
use crate::exec::task::{AsOutcome, AsValue, Carrying, Finish, TaskFuture};
use crate::handle::Unfinished;
use crate::handle::lone_reader::Spawned;
use std::pin::Pin;

static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
/// unsync's tasks on an application's runtime (see [`Config::runtime`](crate::Config::runtime)).
static ON_FOREIGN_RUNTIME: InFlight = InFlight::new();

thread_local! {
    static IS_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The runtime unsync spawns async tasks on, started on first use.
pub(crate) fn handle() -> &'static tokio::runtime::Handle {
    HANDLE.get_or_init(|| {
        crate::exec::panic_site::install();
        crate::handle::lone_reader::set_forward(forward);
        crate::handle::lone_reader::set_mark_timed_out(mark_timed_out);
        let settings = crate::config::settings();
        if let Some(handle) = &settings.runtime {
            return handle.clone();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.runtime_threads)
            .thread_name_fn(|| {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                format!("unsync-runtime-{}", NEXT.fetch_add(1, Ordering::Relaxed))
            })
            .on_thread_start(|| IS_RUNTIME_THREAD.with(|t| t.set(true)))
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("unsync cannot start its tokio runtime: {e}"));
        RUNTIME.get_or_init(|| runtime).handle().clone()
    })
}

/// A handle to the tokio runtime that runs unsync's async tasks (starting it if needed), for
/// spawning your own tasks next to them or entering its context.
///
/// ```
/// let handle = unsync::runtime();
/// let doubled = handle.block_on(async { 21 * 2 });
/// assert_eq!(doubled, 42);
/// ```
pub fn runtime() -> tokio::runtime::Handle {
    handle().clone()
}

/// Run a future on the global runtime; the handle resolves to its output.
///
/// ```
/// let answer = unsync::spawn(async {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
///     42
/// });
/// assert_eq!(answer.result(), 42);
/// ```
pub fn spawn<F>(future: F) -> Unfinished<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_task("spawn", future)
}

/// [`spawn`] with the task named after the `#[unsync]` function it runs.
#[doc(hidden)]
pub fn spawn_task<F, T>(task: &'static str, future: F) -> Unfinished<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    spawn_with::<F, T, AsValue>(task, future, true)
}

/// [`spawn_task`] for unsync's own plumbing (a combinator's task): not counted in `stats`.
pub(crate) fn spawn_plumbing<F, T>(task: &'static str, future: F) -> Unfinished<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    spawn_with::<F, T, AsValue>(task, future, false)
}

/// Run a future whose output is the task's outcome: an `Err` resolves the handle to that
/// error, as a failure (for combinators, which propagate upstream failures as values). Not
/// counted in `stats`: combinators are unsync's plumbing.
pub(crate) fn spawn_outcome<F, T>(task: &'static str, future: F) -> Unfinished<T>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    spawn_with::<F, T, AsOutcome>(task, future, false)
}

/// Spawn `future`; `counted`: as a task of the application, in `stats`.
fn spawn_with<F, T, K>(task: &'static str, future: F, counted: bool) -> Unfinished<T>
where
    F: Future + Send + 'static,
    T: Send + 'static,
    K: Finish<F::Output, T> + 'static,
{
    let runtime = handle();
    let token = RUNTIME.get().is_none().then(|| ON_FOREIGN_RUNTIME.start());
    let carried = Carried::capture(task);
    let future = TaskFuture::<F, T, K>::new(future, task, counted);
    let join = if carried.is_empty() && token.is_none() {
        runtime.spawn(future)
    } else {
        runtime.spawn(Carrying::new(future, carried, token))
    };
    Unfinished::from_spawned(Spawned::new(join, task))
}

/// Async tasks being aborted because their time ran out, until their future is dropped (then
/// `stats` counts them as failed, not cancelled). A task that finished just before its abort
/// leaves its id behind: the oldest go once there are [`MAX_TIMED_OUT`].
static TIMED_OUT: Mutex<Vec<tokio::task::Id>> = Mutex::new(Vec::new());
/// `TIMED_OUT`'s length, read without the lock.
static TIMED_OUT_LEN: AtomicUsize = AtomicUsize::new(0);
const MAX_TIMED_OUT: usize = 1024;

fn mark_timed_out(id: tokio::task::Id) {
    let mut ids = crate::exec::lock(&TIMED_OUT);
    if ids.len() == MAX_TIMED_OUT {
        ids.remove(0);
    }
    ids.push(id);
    TIMED_OUT_LEN.store(ids.len(), Ordering::Relaxed);
}

/// Whether the task being dropped now was aborted by a timeout (once per task).
pub(crate) fn take_timed_out() -> bool {
    // The abort that drops the task came after the mark, through tokio's own synchronisation.
    if TIMED_OUT_LEN.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let Some(id) = tokio::task::try_id() else {
        return false;
    };
    let mut ids = crate::exec::lock(&TIMED_OUT);
    let Some(at) = ids.iter().position(|marked| *marked == id) else {
        return false;
    };
    ids.swap_remove(at);
    TIMED_OUT_LEN.store(ids.len(), Ordering::Relaxed);
    true
}

/// Async tasks in flight, not counting the one calling (when called from inside one).
pub(crate) fn in_flight() -> usize {
    let Some(runtime) = HANDLE.get() else {
        return 0;
    };
    if RUNTIME.get().is_some() {
        // Every task on unsync's own runtime, its combinators' and yours, counts; not the
        // forwarding tasks behind shared async handles (see [`forward`]).
        let calling = IS_RUNTIME_THREAD.with(Cell::get) && tokio::task::try_id().is_some();
        runtime
            .metrics()
            .num_alive_tasks()
            .saturating_sub(usize::from(calling) + FORWARDING.load(Ordering::Acquire))
    } else {
        let calling = crate::exec::task::depth() > 0 && tokio::task::try_id().is_some();
        ON_FOREIGN_RUNTIME
            .count()
            .saturating_sub(usize::from(calling))
    }
}

/// Forwarding tasks alive (see [`forward`]). They are unsync's plumbing, not tasks of the
/// application, so [`shutdown`](crate::shutdown()) does not count them.
static FORWARDING: AtomicUsize = AtomicUsize::new(0);

/// Start the task that moves a shared async handle's outcome into its completion (see
/// `Spawned::into_cell`), counted in [`FORWARDING`] while it lives.
fn forward(forwarding: Pin<Box<dyn Future<Output = ()> + Send>>) {
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            FORWARDING.fetch_sub(1, Ordering::AcqRel);
        }
    }
    FORWARDING.fetch_add(1, Ordering::AcqRel);
    let counted = Counted;
    handle().spawn(async move {
        let _counted = counted;
        forwarding.await;
    });
}
