//! `#[unsync(cpu_bound)]`: calls run in a pool of worker processes, as Python's
//! `@unsync(cpu_bound=True)` does, and a crashed, hung or runaway call costs one worker process,
//! never the caller.
//!
//! How it works:
//! - Workers are this very executable started again (`/proc/self/exe`), lazily on the first
//!   call, kept warm and reused: one per core by default ([`Config::processes`](crate::Config::processes),
//!   `UNSYNC_PROCESSES`). Calls beyond what the workers hold wait in the parent; none is lost.
//! - A worker takes over before `main` runs (a constructor reads one environment variable), so
//!   nothing needs to change in `main`: binaries, examples and `cargo test` binaries all work.
//!   The functions are found through a registry filled at link time, keyed by module path,
//!   name and a hash of the signature. Parent and worker compare build fingerprints at start
//!   and refuse each other if they differ.
//! - Arguments and results cross two private pipes (never stdout: a worker's `println!` shows
//!   up in the parent's output) in length-prefixed frames of at most
//!   [`Config::max_frame_bytes`](crate::Config::max_frame_bytes) (256 MiB by default), encoded
//!   with serde and postcard; see the codec rules in `__private::codec`.
//! - A panic in a worker is [`Error::Panicked`](crate::Error::Panicked) for that call; the
//!   worker survives. A worker that aborts, crashes, exits or is killed fails the call it was
//!   running with [`Error::WorkerDied`](crate::Error::WorkerDied) (exit status or signal);
//!   calls queued behind it run on another worker, and a fresh worker replaces it.
//! - [`Unfinished::cancel`](crate::Unfinished::cancel) and `timeout` kill the worker running
//!   the call (and replace it); a queued call is simply dropped.
//! - Workers die with the parent: `PR_SET_PDEATHSIG` on Linux, a thread watching for the
//!   parent's death elsewhere (see `os`), and end of input on their pipe.
//! - Inside a worker, a nested `cpu_bound` call runs inline, in that worker.
//! - `shutdown` waits for the calls until its deadline, then kills and reaps every worker; the
//!   calls still queued or running then resolve to [`Error::Cancelled`](crate::Error::Cancelled).
//! - The caller's `tracing` span does not reach a call in a worker (spans do not cross
//!   processes), and a worker never runs `main`, so no subscriber installed there exists in it.
//!
//! Limits: tested on Linux only. What differs on macOS and the BSDs (pipes, the I/O thread's
//! wake-up, dying with the parent) lives in `os`, with portable versions that CI runs on Linux
//! under `--cfg unsync_portable` and checks build for macOS and FreeBSD; no Windows. It
//! works in binaries, examples, `cargo test` binaries (the harness never starts in a worker; a
//! worker's output is not captured by libtest) and doc tests. Where the linker drops
//! life-before-main constructors (some LTO or static-library set-ups), call
//! [`init`](crate::init) first thing in `main`; the pool detects the problem and says so
//! instead of starting workers that would run `main`. The user-facing version of all this is
//! the "Worker processes" section of the `unsync-exec` crate docs (`src/lib.rs`).

mod codec;
// Registers sample functions the way `#[unsync(cpu_bound)]` does in a user's crate: a linkme
// entry, which is a `link_section` static and so trips `unsafe_code`. Tests and fuzzing only.
#[cfg(any(test, feature = "fuzzing"))]
#[allow(unsafe_code)]
pub(crate) mod fuzz;
mod launch;
mod os;
mod pool;
mod protocol;
mod registry;
#[allow(unsafe_code)]
mod sys;
mod worker;

pub(crate) use pool::shutdown;
pub use worker::init;

/// What `#[unsync(cpu_bound)]` expands to.
pub mod private {
    pub use super::codec::{Bulk, BulkElement, CodecError, Wire, assert_wire, decode, encode};
    pub use super::pool::spawn_process;
    pub use super::registry::{Shim, WORKER_FNS, WorkerFn};
    pub use super::worker::{in_worker, run_inline};
}
