//! Counting the tasks in flight on an executor without a shared counter on the spawn path.
//!
//! [`shutdown`](crate::shutdown()) needs to know how many tasks the blocking and rayon pools
//! still hold. One global counter would be written by every spawning and every finishing
//! thread, bouncing its cache line between cores on each task. Instead, each thread writes
//! only its own stripe (threads are spread round-robin over a few cache-padded stripes), and
//! the rare reader adds the stripes up.
//!
//! A stripe counts tasks started on its threads and tasks finished on its threads; a task
//! usually starts on one stripe and finishes on another, so only the total means anything.
//! The reader sums every `finished` first, then every `started`: a task whose finish it saw
//! started before it finished (the start is released through the executor's queue, the finish
//! with `Release`, read with `Acquire`), so its start is seen too and the difference never
//! counts a finished task as running, nor goes below the tasks actually running before the
//! read began.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

#[repr(align(128))]
struct Stripe {
    started: AtomicU64,
    finished: AtomicU64,
}

/// A striped count of tasks in flight. See the module docs.
pub(crate) struct InFlight {
    stripes: [Stripe; STRIPES],
}

/// One task in flight: counted from [`InFlight::start`] until this is dropped.
pub(crate) struct Token(&'static InFlight);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe_index() -> usize {
    STRIPE.with(|stripe| {
        let mut i = stripe.get();
        if i == usize::MAX {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            stripe.set(i);
        }
        i
    })
}

impl InFlight {
    pub(crate) const fn new() -> InFlight {
        InFlight {
            stripes: [const {
                Stripe {
                    started: AtomicU64::new(0),
                    finished: AtomicU64::new(0),
                }
            }; STRIPES],
        }
    }

    /// Count one more task until the returned token is dropped.
    #[inline]
    pub(crate) fn start(&'static self) -> Token {
        self.stripes[stripe_index()]
            .started
            .fetch_add(1, Ordering::Relaxed);
        Token(self)
    }

    /// How many tasks are in flight (a snapshot; see the module docs for what it guarantees).
    pub(crate) fn count(&self) -> usize {
        let finished: u64 = self
            .stripes
            .iter()
            .map(|s| s.finished.load(Ordering::Acquire))
            .fold(0, u64::wrapping_add);
        let started: u64 = self
            .stripes
            .iter()
            .map(|s| s.started.load(Ordering::Acquire))
            .fold(0, u64::wrapping_add);
        usize::try_from(started.saturating_sub(finished)).unwrap_or(usize::MAX)
    }
}

impl Drop for Token {
    #[inline]
    fn drop(&mut self) {
        self.0.stripes[stripe_index()]
            .finished
            .fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_threads() {
        static COUNTER: InFlight = InFlight::new();
        let tokens: Vec<Token> = (0..100).map(|_| COUNTER.start()).collect();
        assert_eq!(COUNTER.count(), 100);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut tokens = tokens.into_iter();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let batch: Vec<Token> = tokens.by_ref().take(25).collect();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    drop(batch);
                    tx.send(()).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(tx);
        assert_eq!(rx.iter().count(), 4);
        assert_eq!(COUNTER.count(), 0);
    }
}
