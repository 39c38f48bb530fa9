//! Streaming `#[unsync(cpu_bound)]` functions: an iterator driven in a worker process, its
//! items crossing the pipe within the credit its reader grants.

use std::time::Instant;

use unsync::unsync;

mod common;
use common::{LIMIT, watchdog};

#[unsync(cpu_bound)]
fn count_to(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[unsync(cpu_bound, buffer = 1024)]
fn count_to_fast(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[test]
fn items_arrive_in_order() {
    watchdog(LIMIT, || {
        let items: Vec<u64> = count_to(100_000).into_iter().collect();
        assert_eq!(items, (0..100_000).collect::<Vec<_>>());
        let t = Instant::now();
        let n = count_to(1_000_000).into_iter().count();
        eprintln!("16: {n} in {:?}", t.elapsed());
        let t = Instant::now();
        let n = count_to_fast(1_000_000).into_iter().count();
        eprintln!("1024: {n} in {:?}", t.elapsed());
    });
}
