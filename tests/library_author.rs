//! A library author adds `#[unsync(cpu_bound)]` to a function of their library; a binary that
//! depends on the library (this test binary) and never heard of workers gets the function run
//! in worker processes: the start-up hook and the registry span crates.

use unsync_library_author_fixture::{sqrt_sum, sqrt_sums};

mod common;
use common::{LIMIT, watchdog};

fn serial(n: u32) -> f64 {
    (0..n).map(|i| f64::from(i).sqrt()).sum()
}

#[test]
fn a_dependencys_cpu_bound_functions_run_in_workers() {
    watchdog(LIMIT, || {
        let (sum, pid) = sqrt_sum(10_000).result();
        assert_eq!(sum, serial(10_000));
        assert_ne!(pid, std::process::id(), "ran in a worker process");

        let sums = sqrt_sums(vec![1, 10, 100, 1000]).result();
        for ((sum, pid), n) in sums.into_iter().zip([1, 10, 100, 1000]) {
            assert_eq!(sum, serial(n));
            assert_ne!(pid, std::process::id());
        }
    });
}
