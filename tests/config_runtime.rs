//! `Config::runtime`: unsync runs its async tasks on the application's own runtime.

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
}
