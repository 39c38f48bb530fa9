//! The upper layer: the executors behind `#[unsync]`, each building on the handle layer
//! (`crate::handle`) and never the reverse.
//!
//! | executor | runs | module |
//! |---|---|---|
//! | global multi-threaded tokio runtime, started lazily | `#[unsync] async fn`, [`spawn`](crate::spawn) | `runtime` |
//! | blocking pool that grows while its threads block | `#[unsync] fn`, [`spawn_blocking`](crate::spawn_blocking) | `blocking` |
//! | rayon pool, one thread per core | `#[unsync(parallel)] fn`, [`spawn_parallel`](crate::spawn_parallel) | `parallel` |
//! | pool of worker processes (this executable re-executed) | `#[unsync(cpu_bound)] fn` | `process` |
//! | a Temporal cluster's remote workers (local worker processes when none is set) | `#[unsync(remote)] fn` | `remote` |
//!
//! `stream` drives a streaming function's producer on the first two (an iterator on the
//! blocking pool, a `Stream` on the runtime) into an
//! [`UnfinishedStream`](crate::UnfinishedStream).
//!
//! What they share: `task` (running a body: panics caught, cancellation flag, span entered),
//! `panic_site` (where a body panicked),
//! `context` (the call site's span, carried to the task), `inflight` (tasks in flight, for
//! [`shutdown`](crate::shutdown())) and `stats` (what [`stats()`](crate::stats()) reports).

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) mod blocking;
pub(crate) mod context;
pub(crate) mod inflight;
pub(crate) mod panic_site;
pub(crate) mod parallel;
pub(crate) mod process;
pub(crate) mod remote;
pub(crate) mod runtime;
pub(crate) mod stats;
pub(crate) mod stream;
pub(crate) mod task;

/// Lock, ignoring poison: the executors' critical sections leave their data consistent even
/// when one of their threads panics.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
