//! Mixed-mode execution: an async wait, a blocking call and a CPU kernel started together with
//! `#[unsync]`, then collected with `.result()`. Prints each task's thread and the wall time
//! against the sum of the parts.
//!
//! Run with `cargo run --release --example mixed_mode`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use unsync::unsync;

fn whereami() -> String {
    format!(
        "pid {} thread {}",
        std::process::id(),
        std::thread::current().name().unwrap_or("?")
    )
}

#[unsync]
async fn wait_some(ms: u64) -> (Duration, String) {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (start.elapsed(), whereami())
}

#[unsync]
fn block_some(ms: u64) -> (Duration, String) {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    (start.elapsed(), whereami())
}

#[unsync(parallel)]
fn compute_some(steps: u64) -> (Duration, String, f64) {
    let start = Instant::now();
    let mut acc = 0.0_f64;
    for i in 0..steps {
        acc += black_box((i as f64 - 1_000_000.0).abs().sqrt());
    }
    (start.elapsed(), whereami(), acc)
}

fn main() {
    let start = Instant::now();
    let waiting = wait_some(300);
    let blocking = block_some(300);
    let computing = compute_some(60_000_000);

    let (t_wait, at_wait) = waiting.result();
    let (t_block, at_block) = blocking.result();
    let (t_compute, at_compute, checksum) = computing.result();
    let wall = start.elapsed();

    println!("wait_some     {t_wait:>10.2?}  on {at_wait}");
    println!("block_some    {t_block:>10.2?}  on {at_block}");
    println!("compute_some  {t_compute:>10.2?}  on {at_compute} (checksum {checksum:.0})");
    let parts = t_wait + t_block + t_compute;
    println!(
        "wall {wall:.2?} vs sum of parts {parts:.2?} ({:.2}x)",
        wall.as_secs_f64() / parts.as_secs_f64()
    );
    let ok = wall < parts.mul_f64(0.6);
    println!(
        "CLAIM unsync wall < 0.6 x sum of parts ... {} ({:.2}x)",
        if ok { "PASS" } else { "FAIL" },
        wall.as_secs_f64() / parts.as_secs_f64()
    );
}
