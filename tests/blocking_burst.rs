//! A burst of blocking jobs submitted while a pool thread sits idle must still run side by side.
//! Alone in its test binary, so that no other test grows the pool first.

use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn a_burst_behind_an_idle_thread_still_runs_at_once() {
    // One pool thread, idle: every job of a quick burst sees it idle when submitted.
    unsync::spawn_blocking(|| ()).result();
    std::thread::sleep(Duration::from_millis(20));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let barrier = barrier.clone();
            unsync::spawn_blocking(move || {
                barrier.wait();
            })
        })
        .collect();
    for handle in &handles {
        assert!(
            handle.wait_timeout(Duration::from_secs(10)),
            "the burst ran one job at a time behind the idle thread"
        );
    }
}
