//! The smallest program with a `cpu_bound` function: checks, in whatever build profile it is
//! compiled with, that worker processes take over before `main` and find the function. CI runs
//! it built with fat LTO, where linkers have been known to drop registrations.
//!
//! Run with `cargo run --release --example cpu_bound_check`.

use unsync::unsync;

#[unsync(cpu_bound)]
fn square_in_worker(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

fn main() {
    let (value, pid) = square_in_worker(12).result();
    let ok = value == 144 && pid != std::process::id();
    println!(
        "CLAIM cpu_bound call ran in worker process {pid} (main {}) and returned 144 ... {} ({value})",
        std::process::id(),
        if ok { "PASS" } else { "FAIL" }
    );
    std::process::exit(if ok { 0 } else { 1 });
}
