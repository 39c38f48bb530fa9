//! The runtime of [unsync](https://docs.rs/unsync-exec): the [`Unfinished`] handle, the four
//! executors behind `#[unsync]`, and their configuration.
//!
//! Most users depend on `unsync-exec` (imported as `unsync`), which re-exports everything here
//! together with the `#[unsync]` attribute. This crate holds all behaviour; the attribute only
//! rewrites a function into a call to one of the four executors below: one of the three
//! in-process ones (the same that [`spawn`], [`spawn_blocking`] and [`spawn_parallel`] reach),
//! or, for `#[unsync(cpu_bound)]`, the process pool, in which case it also adds the function to
//! the link-time registry that worker processes look functions up in. The process pool has no
//! ad-hoc entry point: a worker can only run a function registered at compile time.
//!
//! | executor | runs | module |
//! |---|---|---|
//! | global multi-threaded tokio runtime, started lazily | `#[unsync] async fn`, [`spawn`] | `runtime` |
//! | blocking pool that grows while its threads block | `#[unsync] fn`, [`spawn_blocking`] | `blocking` |
//! | rayon pool, one thread per core | `#[unsync(parallel)] fn`, [`spawn_parallel`] | `parallel` |
//! | pool of worker processes (this executable re-executed), one per core, started lazily | `#[unsync(cpu_bound)] fn` | `process` |
//!
//! How the worker processes work (the start-up hook, what must be serializable, `cargo test`,
//! platforms, [`init`]) is described in the
//! [`unsync-exec` docs](https://docs.rs/unsync-exec/latest/unsync/#worker-processes-cpu_bound).
//!
//! Composition and control, the same in every mode: [`Unfinished::then`], [`Unfinished::map`],
//! [`Unfinished::timeout`], [`Unfinished::cancel`], [`join_all`], [`as_completed()`],
//! [`promise()`], and [`shutdown()`] at the end of `main`.
//!
//! ```
//! let io = unsync_core::spawn(async { "fetched" });
//! let legacy = unsync_core::spawn_blocking(|| "read from disk");
//! let cpu = unsync_core::spawn_parallel(|| (1..=10_u64).product::<u64>());
//! assert_eq!((io.result(), legacy.result(), cpu.result()), ("fetched", "read from disk", 3_628_800));
//! ```
//!
//! # Safety
//!
//! The crate is `deny(unsafe_code)` except one module, `process::sys`: the handful of FFI and
//! fork-time calls the process pool needs (raw inherited fds, a `pre_exec` hook, the
//! environment and a signal disposition before `main`, the start-up constructor), which Miri
//! could not execute anyway. Each carries a `SAFETY:` comment. The completion cell, where all
//! the executors' threads meet, is model-checked with loom instead:
//! `RUSTFLAGS="--cfg unsync_loom" CARGO_TARGET_DIR=target/loom cargo test -p unsync-core --release --lib loom`
//! (see `cell/loom_tests.rs`).

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod compose;
mod config;
mod error;
mod exec;
mod handle;
mod report;

pub use compose::as_completed::{AsCompleted, AsCompletedIter, as_completed};
pub use compose::combinators::join_all;
pub use compose::promise::{Promise, promise};
pub use compose::shutdown::shutdown;
pub use config::Config;
pub use error::{ConfigError, Error};
pub use exec::blocking::spawn_blocking;
pub use exec::parallel::spawn_parallel;
pub use exec::process::init;
pub use exec::runtime::{runtime, spawn};
pub use exec::task::is_cancelled;
pub use handle::Unfinished;

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
    pub use crate::exec::runtime::spawn_task as spawn_async;
    pub use linkme;
    pub use serde;

    /// Makes a closure capture `self` whole (not field by field), so that it is dropped when
    /// the task ends, as in a normal call.
    #[inline(always)]
    pub fn take_whole<T: ?Sized>(_: &T) {}

    pub use wire::{Cross, SerializeAndDeserialize, Witness, check_wire, spawn_checked};

    /// One compile error per `cpu_bound` argument or result type that cannot cross to a worker
    /// process, on that type, and none from the code that encodes and decodes it.
    ///
    /// `check_wire::<T, _>()` asks for `T: SerializeAndDeserialize<?M>`. The trait has two
    /// impls, so rustc tries both, and when both fail it reports the trait itself (one error,
    /// with the message below), not each missing serde bound. `?M` then stays unknown, and every
    /// later use goes through the witness (`Cross`, `spawn_checked`), whose types depend on it:
    /// rustc leaves them undecided, and reports nothing more once an error is out.
    mod wire {
        use std::marker::PhantomData;

        use serde::Serialize;
        use serde::de::DeserializeOwned;

        use crate::Unfinished;
        use crate::exec::process::private::{WorkerFn, spawn_process};

        pub struct Valid;
        pub struct Never;
        /// Implemented by nothing: the second impl of `SerializeAndDeserialize` never applies.
        pub trait Unimplemented {}

        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot cross to a worker process: the arguments and result of a `#[unsync(cpu_bound)]` function must implement `serde::Serialize` and `serde::Deserialize`",
            label = "`{Self}` must implement `serde::Serialize` and `serde::Deserialize`",
            note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to the type's definition (for a type from another crate, look for a `serde` feature of that crate), or use `#[unsync]` or `#[unsync(parallel)]` to run the function in this process"
        )]
        pub trait SerializeAndDeserialize<M> {}
        impl<T: Serialize + DeserializeOwned> SerializeAndDeserialize<Valid> for T {}
        impl<T: Unimplemented> SerializeAndDeserialize<Never> for T {}

        /// Proof that `T` crosses to a worker process (when `M` is `Valid`).
        pub struct Witness<T, M>(PhantomData<fn() -> (T, M)>);
        impl<T, M> Clone for Witness<T, M> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T, M> Copy for Witness<T, M> {}

        #[inline(always)]
        pub fn check_wire<T: SerializeAndDeserialize<M>, M>() -> Witness<T, M> {
            Witness(PhantomData)
        }

        /// `T` as its witness sees it: `T` itself, once `M` is known.
        pub trait Cross<T> {
            type Same;
            fn lend(self, value: &T) -> &Self::Same;
            fn take(self, value: Self::Same) -> T;
        }
        impl<T> Cross<T> for Witness<T, Valid> {
            type Same = T;
            #[inline(always)]
            fn lend(self, value: &T) -> &T {
                value
            }
            #[inline(always)]
            fn take(self, value: T) -> T {
                value
            }
        }
        impl<T> Cross<T> for Witness<T, Never> {
            type Same = T;
            fn lend(self, value: &T) -> &T {
                value
            }
            fn take(self, value: T) -> T {
                value
            }
        }

        /// `spawn_process` for a result whose type `R` has a witness.
        #[inline(always)]
        pub fn spawn_checked<R, M>(
            _: Witness<R, M>,
            entry: &'static WorkerFn,
            args: &impl Serialize,
        ) -> Unfinished<R>
        where
            Witness<R, M>: Cross<R>,
            <Witness<R, M> as Cross<R>>::Same: DeserializeOwned + Into<R> + 'static,
            R: Send + 'static,
        {
            spawn_process::<<Witness<R, M> as Cross<R>>::Same, R>(entry, args)
        }
    }
}
