//! The worker's request handler over arbitrary requests (see
//! `unsync_core::__fuzz::worker_request`), with the sample functions of unsync-core and two
//! declared here through the real `#[unsync(cpu_bound)]` expansion, with derived types.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use unsync_macros::unsync;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    lines: Vec<Line>,
    note: Option<String>,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    price: f64,
}

#[derive(Serialize, Deserialize)]
enum State {
    Open,
    Paid { at: u64 },
    Cancelled(String),
}

#[allow(dead_code)]
#[unsync(cpu_bound, crate = "unsync_core")]
fn total(order: Order, discount: f32) -> (u64, f64) {
    let sum: f64 = order
        .lines
        .iter()
        .map(|l| f64::from(l.quantity) * l.price)
        .sum();
    let due = match order.state {
        State::Paid { .. } => 0.0,
        State::Open | State::Cancelled(_) => sum * f64::from(1.0 - discount),
    };
    (order.id, due)
}

#[allow(dead_code)]
#[unsync(cpu_bound, crate = "unsync_core")]
fn histogram(samples: Vec<i32>, buckets: u8) -> Vec<u64> {
    let buckets = usize::from(buckets % 16) + 1;
    let mut counts = vec![0; buckets];
    for s in samples {
        counts[s.unsigned_abs() as usize % buckets] += 1;
    }
    counts
}

fuzz_target!(|data: &[u8]| {
    let peak = unsync_fuzz::peak_during(|| unsync_core::__fuzz::worker_request(data));
    assert!(peak <= unsync_fuzz::allowed(data), "{peak} bytes");
});
