//! `unsync::shutdown` with the process pool: waits for the calls, reaps the workers, and the
//! next call starts new ones. (A binary of its own: shutdown stops every worker.)

use std::time::Duration;

use unsync::unsync;

mod common;

#[unsync(cpu_bound)]
fn pid_after(spin_ms: u64) -> u32 {
    let until = std::time::Instant::now() + Duration::from_millis(spin_ms);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

#[unsync(cpu_bound)]
fn forever() -> u32 {
    loop {
        std::hint::spin_loop();
    }
}

#[test]
fn shutdown_waits_then_reaps_and_the_pool_restarts() {
    unsync::Config::new().processes(1).install().unwrap();
    common::watchdog(common::LIMIT, || {
        let first = pid_after(0).result();
        // A call in flight at shutdown: waited for, not counted.
        let pending = pid_after(50);
        assert_eq!(unsync::shutdown(Duration::from_secs(30)), 0);
        assert_eq!(pending.result(), first);
        assert!(!common::is_alive(first), "worker {first} was reaped");

        // The pool starts again, lazily, with new processes.
        let second = pid_after(0).result();
        assert_ne!(second, first);

        // A call that never ends: shutdown gives up at its deadline, kills it, counts it.
        let stuck = forever();
        assert_eq!(unsync::shutdown(Duration::from_millis(100)), 1);
        assert!(matches!(
            stuck.catch().result(),
            Err(unsync::Error::Cancelled { .. })
        ));
        assert!(!common::is_alive(second));
    });
}
