//! Shared by the examples (each example includes it with `mod common;`): the claim lines every
//! example ends with, where a task ran, a seeded random generator, and the local HTTP server
//! that stands in for "the web".
// Each example uses a different part of this module.
#![allow(dead_code)]

pub mod claims;
pub mod http;
pub mod place;
pub mod rng;

use std::time::Duration;

/// Seconds with two decimals, the way the course prints times.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Milliseconds with one decimal.
pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `a / b` as a ratio, for "x times" figures.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
