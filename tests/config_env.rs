//! Configuration is process-wide, so each scenario that fixes it lives in a test binary of
//! its own; this one walks through the environment-variable rules in order.

use unsync::{Config, ConfigError};

#[test]
fn environment_variables_are_checked_then_builder_wins() {
    // SAFETY: this binary has this one test, and nothing else reads the environment while
    // it runs (no unsync executor has started yet).
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "two") };

    // install names the variable and the bad value...
    let err = Config::new().install().unwrap_err();
    assert_eq!(
        err,
        ConfigError::InvalidEnv {
            var: "UNSYNC_PARALLEL_THREADS",
            value: "two".into(),
            reason: "expected a positive integer",
        }
    );
    // ...even when the builder overrides that setting: a typo never passes unnoticed.
    assert!(Config::new().parallel_threads(2).install().is_err());

    // Starting lazily with the bad variable panics with the same message.
    let panic = std::panic::catch_unwind(|| unsync::spawn_parallel(|| 1).result()).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("UNSYNC_PARALLEL_THREADS=\"two\" is invalid"),
        "{message}"
    );

    // The spin limit may be zero (never spin), but not words.
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "2") };
    unsafe { std::env::set_var("UNSYNC_SPIN_MICROS", "soon") };
    assert_eq!(
        Config::new().install().unwrap_err(),
        ConfigError::InvalidEnv {
            var: "UNSYNC_SPIN_MICROS",
            value: "soon".into(),
            reason: "expected a number of microseconds",
        }
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_SPIN_MICROS", "0") };

    // A good environment plus the builder: the builder's value wins.
    // SAFETY: as above.
    unsafe { std::env::set_var("UNSYNC_PARALLEL_THREADS", "5") };
    Config::new().parallel_threads(3).install().unwrap();
    assert_eq!(
        unsync::spawn_parallel(rayon::current_num_threads).result(),
        3
    );
    assert_eq!(
        Config::new().install().unwrap_err(),
        ConfigError::AlreadyStarted
    );
}
