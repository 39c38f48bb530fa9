//! `.result()` from every calling context, nested deeper than any pool has threads: it must
//! return the value, never deadlock and never panic. Each test runs under a watchdog that
//! fails it instead of hanging CI.

use unsync::unsync;

mod common;
use common::{LIMIT, watchdog};

const DEPTH: u32 = 24;

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
    assert_eq!(watchdog(LIMIT, || nest_blocking(DEPTH).result()), DEPTH);
}

#[test]
fn inside_async_fns_on_the_global_runtime_deeper_than_its_workers() {
    assert_eq!(watchdog(LIMIT, || nest_async(DEPTH).result()), DEPTH);
}

#[test]
fn inside_thread_pool_tasks() {
    assert_eq!(watchdog(LIMIT, || nest_blocking(DEPTH).result()), DEPTH);
}

#[test]
fn inside_rayon_tasks_deeper_than_the_pool_has_threads() {
    assert_eq!(watchdog(LIMIT, || nest_parallel(DEPTH).result()), DEPTH);
}

#[test]
fn across_modes() {
    assert_eq!(watchdog(LIMIT, || nest_mixed(DEPTH).result()), DEPTH);
}

#[test]
fn inside_a_users_current_thread_runtime() {
    let got = watchdog(LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { nest_async(DEPTH).result() + nest_parallel(DEPTH).result() })
    });
    assert_eq!(got, 2 * DEPTH);
}

#[test]
fn inside_a_users_multi_thread_runtime_and_its_tasks() {
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
