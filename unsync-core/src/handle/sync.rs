//! The synchronisation primitives the completion cell is built on: std's, or loom's under
//! `--cfg unsync_loom` so that the cell's state machine can be model-checked (see
//! `handle/completion/loom_tests.rs`).
//!
//! `Arc` stays std's under loom: handles hold `Arc<dyn Source<T>>` and `self: Arc<Self>`,
//! which loom's `Arc` cannot express, and the reference count is not the state under test.

pub(crate) use std::sync::Arc;

#[cfg(unsync_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};
#[cfg(not(unsync_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

/// Lock, ignoring poison: every critical section of the completion leaves its data consistent
/// even when user code (a `Clone` impl) panics inside it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
