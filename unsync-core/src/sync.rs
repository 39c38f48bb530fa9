//! The synchronisation primitives the completion cell is built on: std's, or loom's under
//! `--cfg unsync_loom` so that the cell's state machine can be model-checked (see
//! `cell/loom_tests.rs`).
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

/// Lock, ignoring poison: every critical section in this crate leaves its data consistent
/// even when user code (a `Clone` impl) panics inside it.
#[cfg(not(unsync_loom))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Under loom, `lock` takes both kinds of mutex: the cell's (loom's) and the process pool's
/// (std's, which is outside the model).
#[cfg(unsync_loom)]
pub(crate) fn lock<M: Lock + ?Sized>(m: &M) -> M::Guard<'_> {
    m.lock_ignoring_poison()
}

#[cfg(unsync_loom)]
pub(crate) trait Lock {
    type Guard<'a>
    where
        Self: 'a;
    fn lock_ignoring_poison(&self) -> Self::Guard<'_>;
}

#[cfg(unsync_loom)]
impl<T: ?Sized> Lock for Mutex<T> {
    type Guard<'a>
        = MutexGuard<'a, T>
    where
        Self: 'a;
    fn lock_ignoring_poison(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(unsync_loom)]
impl<T: ?Sized> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        Self: 'a;
    fn lock_ignoring_poison(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
