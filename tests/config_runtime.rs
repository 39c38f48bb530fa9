//! `Config::runtime`: unsync runs its async tasks on the application's own runtime.

use std::time::Duration;

use unsync::{Config, ConfigError, unsync};

#[unsync]
async fn which_runtime() -> tokio::runtime::Id {
    tokio::runtime::Handle::current().id()
}

#[test]
fn async_tasks_run_on_the_installed_runtime() {
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("app-worker")
        .enable_all()
        .build()
        .unwrap();
    Config::new()
        .runtime(app.handle().clone())
        .install()
        .unwrap();
    assert_eq!(which_runtime().result(), app.handle().id());
    assert_eq!(unsync::runtime().id(), app.handle().id());
    assert_eq!(
        unsync::spawn(async { std::thread::current().name().map(str::to_owned) }).result(),
        Some("app-worker".to_owned())
    );
    assert_eq!(
        Config::new().runtime_threads(1).install(),
        Err(ConfigError::AlreadyStarted)
    );

    // `shutdown` counts unsync's tasks on the application's runtime, never the application's
    // own tasks (which may be meant to run forever).
    let (stop_app_task, stopped) = tokio::sync::oneshot::channel::<()>();
    let app_task = app.spawn(async move { stopped.await.is_ok() });
    let (open, gate) = unsync::promise::<()>();
    let ours = unsync::spawn(gate);
    assert_eq!(unsync::shutdown(Duration::from_millis(50)), 1);
    open.set(());
    assert_eq!(unsync::shutdown(Duration::from_secs(60)), 0);
    ours.result();
    assert!(!app_task.is_finished());
    stop_app_task.send(()).unwrap();
    assert!(app.block_on(app_task).unwrap());
    // From inside unsync's own task on that runtime, the caller does not count.
    assert_eq!(
        unsync::spawn(async { unsync::shutdown(Duration::from_secs(20)) }).result(),
        0
    );
}
