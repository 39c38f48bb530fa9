//! The runtime crate of unsync: the [`Unfinished`] handle, the four executors behind
//! `#[unsync]`, composition, and configuration. Users depend on `unsync-exec` instead (imported
//! as `unsync`), which re-exports everything here together with the attribute; its rustdoc is
//! the user guide.
//!
//! Modules, from the bottom up; each uses only those before it (details in the repository's
//! `ARCHITECTURE.md`):
//! - `config`, `remote_config`, `error`, `report`: settings (the cluster of `remote` functions
//!   among them), the error types, failures nobody read.
//! - `handle`: [`Unfinished`], the completion cell its readers share, an async task's lone
//!   reader, blocking waits, and [`UnfinishedStream`] (a producer's bounded queue). It knows no executor: an executor's part (how to abort a task,
//!   what to do before a pool thread blocks) reaches it as data.
//! - `exec`: the executors (tokio runtime, blocking pool, rayon, worker processes) and what
//!   they share (running a body, the carried `tracing` span, in-flight counts), and the
//!   drivers of streaming producers.
//! - `compose`: combinators, [`as_completed()`], [`promise()`], [`shutdown()`], a stream's
//!   `collect_vec` and `timeout`.
//! - `__private`: what the macro expands to.
//!
//! ```
//! let io = unsync::spawn(async { "fetched" });
//! let legacy = unsync::spawn_blocking(|| "read from disk");
//! let cpu = unsync::spawn_parallel(|| (1..=10_u64).product::<u64>());
//! assert_eq!(
//!     (io.result(), legacy.result(), cpu.result()),
//!     ("fetched", "read from disk", 3_628_800)
//! );
//! ```
//!
//! # Safety
//!
//! The crate is `deny(unsafe_code)` except one module, `exec::process::sys`: the handful of
//! FFI and fork-time calls the process pool needs (raw inherited fds, a `pre_exec` hook, the
//! environment and a signal disposition before `main`, the start-up constructor), which Miri
//! could not execute anyway. Each carries a `SAFETY:` comment. (Tests and the `fuzzing`
//! feature also allow the lint on `exec::process::fuzz::samples`, for its sample registrations:
//! `linkme` entries, which are `link_section` statics, as `#[unsync(cpu_bound)]` emits in
//! users' crates.)
//! The completion cell, where all the executors' threads meet, is model-checked with loom
//! instead:
//! `RUSTFLAGS="--cfg unsync_loom" CARGO_TARGET_DIR=target/loom cargo test -p unsync-core --release --lib loom`
//! (see `handle/completion/loom_tests.rs`).

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod compose;
mod config;
mod error;
mod exec;
mod handle;
mod remote_config;
mod report;

pub use compose::as_completed::{AsCompleted, AsCompletedIter, as_completed};
pub use compose::combinators::join_all;
pub use compose::promise::{Promise, promise};
pub use compose::shutdown::shutdown;
pub use config::Config;
pub use error::{ConfigError, Error, PanicSite, Payload};
pub use exec::blocking::spawn_blocking;
pub use exec::parallel::spawn_parallel;
pub use exec::process::{bulk, init};
pub use exec::remote::serve_remote;
pub use exec::runtime::{runtime, spawn};
pub use exec::stats::{Mode, ModeStats, Stats, WorkerStats, stats};
pub use exec::stream::{spawn_blocking_stream, spawn_stream};
pub use exec::task::is_cancelled;
pub use handle::Unfinished;
pub use handle::stream::{UnfinishedStream, UnfinishedStreamIter};
pub use remote_config::Remote;

/// The checks behind the `cargo fuzz` targets in `fuzz/`, under the `fuzzing` feature: each
/// takes arbitrary bytes and panics when the code that reads the worker pipe misbehaves. Not a
/// public API: no stability promise.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::exec::process::fuzz::{frame_decoder, response, worker_request};
}

/// What `#[unsync]` expands to. Not a public API: no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::exec::blocking::spawn_blocking_task as spawn_blocking;
    pub use crate::exec::parallel::spawn_parallel_task as spawn_parallel;
    pub use crate::exec::process::private::*;
    pub use crate::exec::remote::{RemoteOptions, spawn_remote, spawn_remote_checked};
    pub use crate::exec::runtime::spawn_task as spawn_async;
    pub use crate::exec::stream::{
        spawn_iter_task as spawn_iter, spawn_stream_task as spawn_stream,
    };
    pub use crate::handle::stream::DEFAULT_BUFFER;
    #[cfg(not(windows))]
    pub use linkme;
    pub use serde;

    /// Temporal's crates as unsync builds them, for `benches/remote.rs`'s raw-SDK baseline.
    #[cfg(feature = "remote")]
    pub mod temporal {
        pub use {temporalio_client as client, temporalio_common as common, temporalio_sdk as sdk};
    }

    /// Makes a closure capture `self` whole (not field by field), so that it is dropped when
    /// the task ends, as in a normal call.
    #[inline(always)]
    pub fn take_whole<T: ?Sized>(_: &T) {}
}
