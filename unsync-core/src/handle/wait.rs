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

/// Longest spin before parking (see [`Config::spin`](crate::Config::spin)).
pub(crate) fn spin_limit() -> Duration {
    Duration::from_micros(u64::from(max_spin_micros()))
}

/// Longest spin before parking, in µs (see [`Config::spin`](crate::Config::spin)).
fn max_spin_micros() -> u32 {
    crate::config::installed().map_or_else(crate::config::default_spin_micros, |s| s.spin_micros)
}

thread_local! {
    /// How this thread's recent waits went (see [`spin_until`]): for tasks it cannot help, and
    /// for those it can (`leads`), which take longer.
    static WAITS: [std::cell::Cell<Waits>; 2] =
        const { [std::cell::Cell::new(Waits::NONE), std::cell::Cell::new(Waits::NONE)] };
}

/// A thread's record of its recent waits, from which it chooses how to wait next.
#[derive(Clone, Copy)]
struct Waits {
    /// How long it spins at most, in µs (`u32::MAX`: not set yet, the longest spin).
    budget: u32,
    /// A typical wait lately, in ns (0: none measured yet), when it spun first...
    spinning: u32,
    /// ... and when it blocked at once.
    blocking: u32,
    /// Waits since the way it did not choose was last tried...
    since_tried: u32,
    /// ... and how many it lets pass before trying that way again.
    try_every: u32,
    /// The try under way: waits left in it, whether it spins, and its waits so far (their sum
    /// and the longest, in ns).
    try_left: u32,
    try_spins: bool,
    try_sum: u64,
    try_longest: u32,
}

/// A wait that [`spin_until`] did not see end, for [`record_wait`].
pub(crate) struct Waited {
    started: Instant,
    leads: bool,
    spun: bool,
    tried: bool,
}

/// Wait times above this count as this: one long wait says little about the next short one.
const LONGEST_SAMPLE_NANOS: u32 = 1_000_000;
/// The way of waiting a thread does not choose is tried again after at least this many waits,
/// and at most ...
const TRY_EVERY_MIN: u32 = 16;
/// ... this many: in the regime where it loses it is a few times slower, so a try once in this
/// many waits costs a few percent of the mean wait, and none of the median.
const TRY_EVERY_MAX: u32 = 512;
/// Waits in one try, of which the longest is left out: single waits vary by several times.
const TRY_LENGTH: u32 = 4;

impl Waits {
    const NONE: Waits = Waits {
        budget: u32::MAX,
        spinning: 0,
        blocking: 0,
        since_tried: 0,
        try_every: TRY_EVERY_MIN,
        try_left: 0,
        try_spins: false,
        try_sum: 0,
        try_longest: 0,
    };

    /// Whether spinning first has been the quicker way lately.
    fn spinning_is_quicker(&self) -> bool {
        self.blocking == 0 || self.spinning <= self.blocking
    }

    /// How the next wait goes: whether it spins first, and whether it is part of a try of the
    /// way that has been slower lately.
    fn next(&mut self) -> (bool, bool) {
        if self.try_left == 0 && self.since_tried >= self.try_every {
            self.since_tried = 0;
            self.try_left = TRY_LENGTH;
            self.try_spins = !self.spinning_is_quicker();
            self.try_sum = 0;
            self.try_longest = 0;
        }
        if self.try_left > 0 {
            self.try_left -= 1;
            return (self.try_spins, true);
        }
        self.since_tried += 1;
        (self.spinning_is_quicker(), false)
    }

    /// Fold in how long a wait took, `spun` first or not, `tried` as part of a try.
    fn record(&mut self, spun: bool, tried: bool, waited: Duration) {
        let sample = u32::try_from(waited.as_nanos())
            .unwrap_or(u32::MAX)
            .min(LONGEST_SAMPLE_NANOS);
        if tried {
            self.try_sum += u64::from(sample);
            self.try_longest = self.try_longest.max(sample);
            if self.try_left > 0 {
                return;
            }
            // The try is over: its figure, without its longest wait, replaces that way's old
            // one, and the next try comes sooner if it won.
            let typical = (self.try_sum - u64::from(self.try_longest)) / u64::from(TRY_LENGTH - 1);
            *self.typical(spun) = typical.max(1) as u32;
            self.try_every = if self.spinning_is_quicker() == spun {
                TRY_EVERY_MIN
            } else {
                (self.try_every * 2).min(TRY_EVERY_MAX)
            };
            return;
        }
        // A moving average, with each wait counted as at most twice the typical one, so that
        // a rare long wait (the thread preempted) does not outweigh several typical ones.
        let typical = self.typical(spun);
        *typical = if *typical == 0 {
            sample.max(1)
        } else {
            let sample = sample.min(typical.saturating_mul(2));
            ((u64::from(*typical) * 3 + u64::from(sample)) / 4).max(1) as u32
        };
    }

    fn typical(&mut self, spun: bool) -> &mut u32 {
        if spun {
            &mut self.spinning
        } else {
            &mut self.blocking
        }
    }
}

/// Before blocking, spin a little while `done()` may turn true soon: waking a parked thread
/// costs a system call and a context switch on both sides (tens of µs on a VM). The budget
/// adapts per thread: it grows when spinning pays off (or would have: the wait ended within
/// the longest spin), and halves when the wait was long, so long waits burn almost no CPU.
///
/// Spinning can also lose: when the scheduler would run the thread waited for on this CPU (a
/// VM's wake-ups then cost a few µs), a spinning waiter pushes it to another CPU, which may
/// have to be woken first. So each thread also times its waits both ways, spinning first and
/// blocking at once, waits the way that has been quicker lately, and tries the other way now
/// and then (see [`TRY_EVERY_MAX`]) in case that changed.
///
/// `leads`: whether the thread will help the task finish once it stops spinning (see
/// `completion::Lead`). Returns `None` when `done()` held; otherwise the wait so far, for
/// [`record_wait`].
pub(crate) fn spin_until(leads: bool, done: impl Fn() -> bool) -> Option<Waited> {
    let max = max_spin_micros();
    let started = Instant::now();
    if max == 0 {
        return Some(Waited {
            started,
            leads,
            spun: false,
            tried: false,
        });
    }
    let mut waits = WAITS.with(|w| w[usize::from(leads)].get());
    let (spin, tried) = waits.next();
    let budget = waits.budget.min(max);
    if spin && budget > 0 {
        let limit = Duration::from_micros(u64::from(budget));
        let mut round = 0_u32;
        loop {
            for _ in 0..32 {
                if done() {
                    waits.budget = (budget + budget / 2 + 2).min(max);
                    waits.record(true, tried, started.elapsed());
                    WAITS.with(|w| w[usize::from(leads)].set(waits));
                    return None;
                }
                std::hint::spin_loop();
            }
            round += 1;
            if round % 4 == 0 {
                std::thread::yield_now();
            }
            if started.elapsed() >= limit {
                break;
            }
        }
    }
    WAITS.with(|w| w[usize::from(leads)].set(waits));
    Some(Waited {
        started,
        leads,
        spun: spin,
        tried,
    })
}

/// Whether this thread's next wait on a task it can help would help at once, without spinning
/// first (see [`spin_until`]).
pub(crate) fn leads_at_once() -> bool {
    max_spin_micros() == 0 || WAITS.with(|w| !w[1].get().spinning_is_quicker())
}

/// After a wait that [`spin_until`] did not see end: adapt the spin budget, and time the way
/// it waited.
pub(crate) fn record_wait(waited: Waited) {
    let elapsed = waited.started.elapsed();
    let max = max_spin_micros();
    if max == 0 {
        return;
    }
    WAITS.with(|w| {
        let w = &w[usize::from(waited.leads)];
        let mut waits = w.get();
        if waited.spun {
            waits.budget = if elapsed <= Duration::from_micros(u64::from(max) * 2) {
                max
            } else {
                waits.budget.min(max) / 2
            };
        }
        waits.record(waited.spun, waited.tried, elapsed);
        w.set(waits);
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

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_micros(3);
    const SLOW: Duration = Duration::from_micros(40);

    /// Run `n` waits that take `spinning` when spun first and `blocking` otherwise; how many
    /// spun.
    fn run(waits: &mut Waits, n: u32, spinning: Duration, blocking: Duration) -> u32 {
        let mut spun = 0;
        for _ in 0..n {
            let (spin, tried) = waits.next();
            spun += u32::from(spin);
            waits.record(spin, tried, if spin { spinning } else { blocking });
        }
        spun
    }

    #[test]
    fn a_thread_spins_first_until_blocking_has_been_tried() {
        let mut waits = Waits::NONE;
        for _ in 0..TRY_EVERY_MIN {
            assert_eq!(waits.next(), (true, false));
            waits.record(true, false, SLOW);
        }
        for _ in 0..TRY_LENGTH {
            assert_eq!(waits.next(), (false, true), "blocking tried");
            waits.record(false, true, QUICK);
        }
        assert!(!waits.spinning_is_quicker());
        assert_eq!(waits.next(), (false, false));
    }

    #[test]
    fn each_thread_waits_the_quicker_way_and_seldom_tries_the_other() {
        let mut waits = Waits::NONE;
        // Spinning quicker: after the first tries, blocking only in one try per TRY_EVERY_MAX.
        run(&mut waits, 5_000, QUICK, SLOW);
        assert_eq!(waits.try_every, TRY_EVERY_MAX);
        let spun = run(&mut waits, 10 * TRY_EVERY_MAX, QUICK, SLOW);
        assert!(spun >= 10 * TRY_EVERY_MAX - 11 * TRY_LENGTH, "spun {spun}");
        // The regime changes: blocking is quicker. Found at its next try, then kept.
        run(&mut waits, TRY_EVERY_MAX + TRY_LENGTH + 1, SLOW, QUICK);
        assert!(!waits.spinning_is_quicker());
        let spun = run(&mut waits, 10 * TRY_EVERY_MAX, SLOW, QUICK);
        assert!(spun <= 11 * TRY_LENGTH + 8 * TRY_LENGTH, "spun {spun}");
        assert_eq!(waits.try_every, TRY_EVERY_MAX);
    }

    #[test]
    fn one_long_wait_does_not_decide_a_try() {
        let mut waits = Waits::NONE;
        run(&mut waits, 5_000, SLOW, QUICK);
        assert!(!waits.spinning_is_quicker());
        // Spinning is tried, and is slower but for one wait that is quicker than blocking...
        waits.since_tried = waits.try_every;
        for wait in 0..TRY_LENGTH {
            assert_eq!(waits.next(), (true, true));
            waits.record(true, true, if wait == 0 { QUICK / 2 } else { SLOW });
        }
        assert!(!waits.spinning_is_quicker(), "spinning lost its try");
        // ... and blocking, the way it keeps, is preempted once: still the quicker way.
        let (spin, tried) = waits.next();
        waits.record(spin, tried, Duration::from_millis(5));
        assert!(!waits.spinning_is_quicker());
    }

    #[test]
    fn a_lucky_try_is_undone_by_the_next_waits() {
        let mut waits = Waits::NONE;
        run(&mut waits, 5_000, QUICK, SLOW);
        // A try of blocking happens to be quick...
        waits.since_tried = waits.try_every;
        for _ in 0..TRY_LENGTH {
            assert_eq!(waits.next(), (false, true));
            waits.record(false, true, Duration::from_nanos(500));
        }
        assert!(!waits.spinning_is_quicker());
        // ... then blocking is as slow as ever, and spinning is back within a few waits.
        let mut blocked = 0;
        while !waits.spinning_is_quicker() {
            assert_eq!(waits.next(), (false, false));
            waits.record(false, false, SLOW);
            blocked += 1;
        }
        assert!(blocked <= 10, "{blocked} waits to undo it");
    }

    #[test]
    fn long_waits_count_as_a_millisecond() {
        let mut waits = Waits::NONE;
        waits.record(true, false, Duration::from_secs(5));
        assert_eq!(waits.spinning, LONGEST_SAMPLE_NANOS);
    }
}
