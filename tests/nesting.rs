//! `.result()` from every calling context, nested deeper than any pool has threads: it must
//! return the value, never deadlock and never panic. Each test runs under a watchdog that
//! fails it instead of hanging CI.

use std::sync::Once;

use unsync::{Config, ConfigError, unsync};

mod common;
use common::{LIMIT, watchdog};

const DEPTH: u32 = 24;

/// Threads of unsync's async runtime and of its rayon pool in this binary: far fewer than
/// `DEPTH`, whatever the machine's core count (the default for both).
const THREADS: usize = 2;

/// Size the pools (once per binary; the tests run on several threads, and each calls this
/// before it starts anything).
fn small_pools() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        match Config::new()
            .runtime_threads(THREADS)
            .parallel_threads(THREADS)
            // A cap the blocking chains go far deeper than: a pool thread waiting on a handle
            // must not count against it, or the chain would stall at this depth.
            .blocking_threads(THREADS)
            .install()
        {
            Ok(()) | Err(ConfigError::AlreadyStarted) => {}
            Err(e) => panic!("cannot configure the pools: {e}"),
        }
    });
}

/// Check that `DEPTH` exceeds the runtime's workers, as the tests claim.
fn assert_deeper_than_the_runtime() {
    let workers = unsync::runtime().metrics().num_workers();
    assert_eq!(workers, THREADS, "the configured size");
    assert!(DEPTH as usize > workers);
}

/// Check that `DEPTH` exceeds the rayon pool's threads, as the tests claim.
fn assert_deeper_than_the_rayon_pool() {
    let threads = unsync::spawn_parallel(rayon::current_num_threads).result();
    assert_eq!(threads, THREADS, "the configured size");
    assert!(DEPTH as usize > threads);
}

#[unsync]
async fn nest_async(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        nest_async(depth - 1).result() + 1
    }
}

#[unsync]
fn nest_blocking(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        nest_blocking(depth - 1).result() + 1
    }
}

#[unsync(parallel)]
fn nest_parallel(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        nest_parallel(depth - 1).result() + 1
    }
}

/// Cycles through the three modes on the way down.
#[unsync]
fn nest_mixed(depth: u32) -> u32 {
    if depth == 0 {
        return 0;
    }
    let inner = match depth % 3 {
        0 => nest_mixed(depth - 1),
        1 => unsync::spawn(async move { nest_mixed(depth - 1).result() }),
        _ => unsync::spawn_parallel(move || nest_mixed(depth - 1).result()),
    };
    inner.result() + 1
}

#[test]
fn from_a_plain_thread() {
    small_pools();
    assert_eq!(watchdog(LIMIT, || nest_blocking(DEPTH).result()), DEPTH);
}

#[test]
fn inside_async_fns_on_the_global_runtime_deeper_than_its_workers() {
    small_pools();
    assert_deeper_than_the_runtime();
    assert_eq!(watchdog(LIMIT, || nest_async(DEPTH).result()), DEPTH);
}

#[test]
fn inside_thread_pool_tasks() {
    small_pools();
    // Each chain starts inside a blocking-pool task, which waits on it from a pool thread.
    let got = watchdog(LIMIT, || {
        let outer: Vec<_> = (0..4)
            .map(|_| {
                unsync::spawn_blocking(|| {
                    assert!(
                        std::thread::current()
                            .name()
                            .is_some_and(|n| n.starts_with("unsync-blocking-"))
                    );
                    nest_blocking(DEPTH).result()
                        + nest_async(DEPTH).result()
                        + nest_parallel(DEPTH).result()
                })
            })
            .collect();
        outer.into_iter().map(|t| t.result()).sum::<u32>()
    });
    assert_eq!(got, 4 * 3 * DEPTH);
}

#[test]
fn inside_rayon_tasks_deeper_than_the_pool_has_threads() {
    small_pools();
    let got = watchdog(LIMIT, || {
        assert_deeper_than_the_rayon_pool();
        nest_parallel(DEPTH).result()
    });
    assert_eq!(got, DEPTH);
}

#[test]
fn across_modes() {
    small_pools();
    let got = watchdog(LIMIT, || {
        assert_deeper_than_the_runtime();
        assert_deeper_than_the_rayon_pool();
        nest_mixed(DEPTH).result()
    });
    assert_eq!(got, DEPTH);
}

#[test]
fn inside_a_users_current_thread_runtime() {
    small_pools();
    let got = watchdog(LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { nest_async(DEPTH).result() + nest_parallel(DEPTH).result() })
    });
    assert_eq!(got, 2 * DEPTH);
}

#[unsync]
async fn plus_one(n: u32) -> u32 {
    n + 1
}

/// Many `.result()` calls inside one poll of one tokio task: more than tokio's cooperative
/// budget (128 operations per poll), which a task only gets back by yielding, and a task blocked
/// in `.result()` never yields. Reading a handle must not spend that budget.
#[test]
fn many_results_inside_one_poll_of_a_users_runtime() {
    small_pools();
    const N: u32 = 1_000;
    let got = watchdog(LIMIT, || {
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let in_one_poll = || async {
            let handles: Vec<_> = (0..N).map(plus_one).collect();
            let ready: Vec<_> = (0..N).map(plus_one).collect();
            for h in &ready {
                h.wait_timeout(LIMIT);
            }
            handles
                .into_iter()
                .chain(ready)
                .map(unsync::Unfinished::result)
                .sum::<u32>()
        };
        current.block_on(in_one_poll()) + multi.block_on(multi.spawn(in_one_poll())).unwrap()
    });
    assert_eq!(got, 2 * 2 * (1..=N).sum::<u32>());
}

#[test]
fn inside_a_users_multi_thread_runtime_and_its_tasks() {
    small_pools();
    let got = watchdog(LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| tokio::spawn(async { nest_async(DEPTH).result() }))
                .collect();
            let mut sum = nest_blocking(DEPTH).result();
            for t in tasks {
                sum += t.await.unwrap();
            }
            sum
        })
    });
    assert_eq!(got, 5 * DEPTH);
}

#[test]
fn inside_the_users_own_rayon_pool() {
    small_pools();
    let got = watchdog(LIMIT, || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            use std::sync::atomic::{AtomicU32, Ordering};
            let sum = AtomicU32::new(0);
            rayon::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|_| {
                        sum.fetch_add(nest_parallel(DEPTH).result(), Ordering::Relaxed);
                    });
                }
            });
            sum.into_inner()
        })
    });
    assert_eq!(got, 4 * DEPTH);
}

#[test]
fn many_waiters_at_once() {
    small_pools();
    // 16 independent chains started together: every pool is saturated with waiters.
    let got = watchdog(LIMIT, || {
        let chains: Vec<_> = (0..16)
            .map(|i| match i % 3 {
                0 => nest_async(DEPTH),
                1 => nest_blocking(DEPTH),
                _ => nest_parallel(DEPTH),
            })
            .collect();
        chains.into_iter().map(|c| c.result()).sum::<u32>()
    });
    assert_eq!(got, 16 * DEPTH);
}
