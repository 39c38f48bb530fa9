//! A library that uses `#[unsync(cpu_bound)]`: its callers, binaries that know nothing of
//! worker processes, get its functions run in workers all the same.

use unsync::{Unfinished, unsync};

/// The sum of the square roots of `0..n`, computed in a worker process, with that process's id.
#[unsync(cpu_bound)]
pub fn sqrt_sum(n: u32) -> (f64, u32) {
    let sum = (0..n).map(|i| f64::from(i).sqrt()).sum();
    (sum, std::process::id())
}

/// A library function that returns a handle built on the library's own `cpu_bound` function.
pub fn sqrt_sums(ns: Vec<u32>) -> Unfinished<Vec<(f64, u32)>> {
    unsync::join_all(ns.into_iter().map(sqrt_sum))
}
