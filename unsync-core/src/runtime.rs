//! The global tokio runtime that runs `#[unsync] async fn` and [`spawn`]: started lazily on
//! first use, multi-threaded, never shut down (it lives in a `static`), or replaced by an
//! application's own runtime through [`Config::runtime`](crate::Config::runtime).

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cell::{Abort, Cell, Completer};
use crate::handle::Unfinished;
use crate::task::TaskFuture;

static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The runtime unsync spawns async tasks on, started on first use.
pub(crate) fn handle() -> &'static tokio::runtime::Handle {
    HANDLE.get_or_init(|| {
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
/// let handle = unsync_core::runtime();
/// let doubled = handle.block_on(async { 21 * 2 });
/// assert_eq!(doubled, 42);
/// ```
pub fn runtime() -> tokio::runtime::Handle {
    handle().clone()
}

/// Run a future on the global runtime; the handle resolves to its output.
///
/// ```
/// let answer = unsync_core::spawn(async {
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
    let cell = Cell::pending(task);
    let join = handle().spawn(TaskFuture::new(future, Completer::new(cell.clone())));
    cell.set_abort(Abort::Tokio(join.abort_handle()));
    Unfinished::from_cell(cell)
}
