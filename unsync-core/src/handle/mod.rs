//! The lower layer: the [`Unfinished`] handle and what completes it. It knows no executor:
//! executors (in `exec`) create handles through the constructors here and complete them
//! through a [`Completion`](completion::Completion) or a tokio `JoinHandle`; what an executor
//! must do on cancel, or when a waiting thread is about to block, reaches this layer as data
//! (an abort hook, a thread-local blocking hook), never as a call into `exec`.
//!
//! - `unfinished`: the handle itself, `.result()`, `.await`, `catch`, `cancel`, clones.
//! - `completion`: where one task's outcome lands, shared by its readers (the completion cell).
//! - `lone_reader`: an async task read by a single handle, straight from tokio's `JoinHandle`.
//! - `wait`: blocking the current thread on a handle from any calling context.
//! - `stream`: [`UnfinishedStream`](stream::UnfinishedStream), a producer's bounded queue read as a
//!   `Stream` or a blocking iterator.
//! - `sync`: std's or loom's primitives, so that `completion` can be model-checked.

pub(crate) mod completion;
pub(crate) mod lone_reader;
pub(crate) mod stream;
pub(crate) mod sync;
mod unfinished;
pub(crate) mod wait;

pub use unfinished::Unfinished;
