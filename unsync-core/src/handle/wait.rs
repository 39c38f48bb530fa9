//! Blocking the current thread until a handle is done, from any calling context, without
//! deadlock:
//!
//! | caller | how it waits |
//! |---|---|
//! | a plain thread, or a current-thread tokio runtime | parks the thread |
//! | a worker of a multi-threaded tokio runtime | `block_in_place`, so the runtime moves its other tasks to another thread |
//! | a rayon worker (unsync's pool or any other) | runs other rayon jobs while it waits, so nesting deeper than the pool has threads still finishes (except for [`block_on_alone`]) |
//! | a thread with a [`BlockingHook`] (a blocking-pool thread) | tells its pool, which starts another thread if none is idle |

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

/// What an executor's thread does around a wait that blocks it: `enter` before the thread
/// parks, `leave` once it runs again. The blocking pool sets one on its threads
/// ([`set_blocking_hook`]) so that it can start another thread meanwhile.
pub(crate) struct BlockingHook {
    pub(crate) enter: fn(),
    pub(crate) leave: fn(),
}

thread_local! {
    static BLOCKING_HOOK: std::cell::Cell<Option<&'static BlockingHook>> =
        const { std::cell::Cell::new(None) };
}

/// Run `hook` around every blocking wait on the current thread from now on.
pub(crate) fn set_blocking_hook(hook: &'static BlockingHook) {
    BLOCKING_HOOK.with(|h| h.set(Some(hook)));
}

/// The current thread's [`BlockingHook`] entered, until dropped.
struct Blocking(Option<&'static BlockingHook>);

impl Blocking {
    fn enter() -> Blocking {
        let hook = BLOCKING_HOOK.with(std::cell::Cell::get);
        if let Some(hook) = hook {
            (hook.enter)();
        }
        Blocking(hook)
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        if let Some(hook) = self.0 {
            (hook.leave)();
        }
    }
}

/// How long a rayon worker with nothing else to run parks before looking for jobs again.
const RAYON_RESCAN: Duration = Duration::from_millis(1);

/// Longest spin before parking, in µs (see [`Config::spin`](crate::Config::spin)).
fn max_spin_micros() -> u32 {
    crate::config::installed().map_or_else(crate::config::default_spin_micros, |s| s.spin_micros)
}

thread_local! {
    /// This thread's current spin budget in µs, adapted to how its recent waits went
    /// (`u32::MAX`: not set yet, start at the longest spin).
    static SPIN_BUDGET: std::cell::Cell<u32> = const { std::cell::Cell::new(u32::MAX) };
}

/// Before parking, spin a little while `done()` may turn true soon: waking a parked thread
/// costs a system call and a context switch on both sides (tens of µs on a VM). The budget
/// adapts per thread: it grows when spinning pays off (or would have: the wait ended within
/// the longest spin), and halves when the wait was long, so long waits burn almost no CPU.
/// Returns `None` when `done()` held; otherwise when the spin began, for [`record_wait`].
pub(crate) fn spin_until(done: impl Fn() -> bool) -> Option<Instant> {
    let max = max_spin_micros();
    let budget = SPIN_BUDGET.with(std::cell::Cell::get).min(max);
    let start = Instant::now();
    if budget > 0 {
        let limit = Duration::from_micros(u64::from(budget));
        let mut round = 0_u32;
        loop {
            for _ in 0..32 {
                if done() {
                    SPIN_BUDGET.with(|b| b.set((budget + budget / 2 + 2).min(max)));
                    return None;
                }
                std::hint::spin_loop();
            }
            round += 1;
            if round % 4 == 0 {
                std::thread::yield_now();
            }
            if start.elapsed() >= limit {
                break;
            }
        }
    }
    Some(start)
}

/// After a wait that spinning did not cover, adapt the budget to how long it took.
pub(crate) fn record_wait(started: Instant) {
    let waited = started.elapsed();
    let max = max_spin_micros();
    SPIN_BUDGET.with(|b| {
        if waited <= Duration::from_micros(u64::from(max) * 2) {
            b.set(max);
        } else {
            b.set(b.get().min(max) / 2);
        }
    });
}

/// Run `f`, which blocks this thread (parks it, or waits in a system call), as every wait that
/// blocks it runs: with the thread's [`BlockingHook`], and through `block_in_place` on a
/// worker of a multi-threaded tokio runtime.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let _blocking = Blocking::enter();
    let on_tokio_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_tokio_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Poll `poll` until it is ready, blocking the thread in between, or until `deadline`.
pub(crate) fn block_on<R>(
    poll: impl FnMut(&mut Context<'_>) -> Poll<R>,
    deadline: Option<Instant>,
) -> Option<R> {
    block_on_ticking(poll, deadline, None)
}

/// [`block_on`] without ever running other rayon jobs meanwhile, even on a rayon worker: for a
/// wait that nothing on this process's rayon pool can speed up (a stream fed by a worker
/// process), where a job run meanwhile could wait, below this one on the same stack, for
/// something this wait holds (the worker).
pub(crate) fn block_on_alone<R>(poll: impl FnMut(&mut Context<'_>) -> Poll<R>) -> R {
    let waker = THREAD_WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    let mut poll = poll;
    if let Poll::Ready(r) = poll(&mut cx) {
        return r;
    }
    blocking(|| park_until(&mut poll, &mut cx, None, None))
        .expect("a wait without deadline returns a value")
}

/// Block until `done()` holds, checking it every `tick` (for conditions nothing wakes us
/// about), or until `deadline`. True when `done()` held.
pub(crate) fn wait_until(
    mut done: impl FnMut() -> bool,
    deadline: Instant,
    tick: Duration,
) -> bool {
    let poll = |_: &mut Context<'_>| {
        if done() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    };
    block_on_ticking(poll, Some(deadline), Some(tick)).is_some()
}

/// [`block_on`], re-polling at least every `tick` even when not woken.
fn block_on_ticking<R>(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<R>,
    deadline: Option<Instant>,
    tick: Option<Duration>,
) -> Option<R> {
    let waker = THREAD_WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    if let Poll::Ready(r) = poll(&mut cx) {
        return Some(r);
    }
    if rayon::current_thread_index().is_some() {
        return wait_helping_rayon(&mut poll, &mut cx, deadline, tick);
    }
    blocking(|| park_until(&mut poll, &mut cx, deadline, tick))
}

fn park_until<R>(
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<R>,
    cx: &mut Context<'_>,
    deadline: Option<Instant>,
    tick: Option<Duration>,
) -> Option<R> {
    loop {
        if let Poll::Ready(r) = poll(cx) {
            return Some(r);
        }
        let mut pause = tick;
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            pause = Some(pause.map_or(deadline - now, |p| p.min(deadline - now)));
        }
        match pause {
            None => thread::park(),
            Some(pause) => thread::park_timeout(pause),
        }
    }
}

fn wait_helping_rayon<R>(
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<R>,
    cx: &mut Context<'_>,
    deadline: Option<Instant>,
    tick: Option<Duration>,
) -> Option<R> {
    loop {
        if let Poll::Ready(r) = poll(cx) {
            return Some(r);
        }
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            continue;
        }
        let mut pause = tick.map_or(RAYON_RESCAN, |t| t.min(RAYON_RESCAN));
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
