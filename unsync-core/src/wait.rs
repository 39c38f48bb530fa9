//! Blocking the current thread until a handle is done, from any calling context, without
//! deadlock:
//!
//! | caller | how it waits |
//! |---|---|
//! | a plain thread, or a current-thread tokio runtime | parks the thread |
//! | a worker of a multi-threaded tokio runtime | `block_in_place`, so the runtime moves its other tasks to another thread |
//! | a rayon worker (unsync's pool or any other) | runs other rayon jobs while it waits, so nesting deeper than the pool has threads still finishes |
//! | a blocking-pool thread | tells the pool, which starts another thread if none is idle |

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

/// How long a rayon worker with nothing else to run parks before looking for jobs again.
const RAYON_RESCAN: Duration = Duration::from_millis(1);

/// Poll `poll` until it is ready, blocking the thread in between, or until `deadline`.
pub(crate) fn block_on<R>(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<R>,
    deadline: Option<Instant>,
) -> Option<R> {
    let waker = THREAD_WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    if let Poll::Ready(r) = poll(&mut cx) {
        return Some(r);
    }
    if rayon::current_thread_index().is_some() {
        return wait_helping_rayon(&mut poll, &mut cx, deadline);
    }
    crate::blocking::will_block();
    let on_tokio_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_tokio_worker {
        tokio::task::block_in_place(|| park_until(&mut poll, &mut cx, deadline))
    } else {
        park_until(&mut poll, &mut cx, deadline)
    }
}

fn park_until<R>(
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<R>,
    cx: &mut Context<'_>,
    deadline: Option<Instant>,
) -> Option<R> {
    loop {
        if let Poll::Ready(r) = poll(cx) {
            return Some(r);
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

fn wait_helping_rayon<R>(
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<R>,
    cx: &mut Context<'_>,
    deadline: Option<Instant>,
) -> Option<R> {
    loop {
        if let Poll::Ready(r) = poll(cx) {
            return Some(r);
        }
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            continue;
        }
        let mut pause = RAYON_RESCAN;
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            pause = pause.min(deadline - now);
        }
        thread::park_timeout(pause);
    }
}
