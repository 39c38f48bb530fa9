//! The handle from every kind of caller: blocking, and awaited on several executors; failure
//! re-raised or caught, in each mode.

use std::time::Duration;

use unsync::{Error, Unfinished, unsync};

mod common;

#[unsync]
async fn async_value(n: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    n
}

#[unsync]
fn thread_value(n: u32) -> u32 {
    n
}

#[unsync(parallel)]
fn parallel_value(n: u32) -> u32 {
    n
}

const ASYNC_BOOM_LINE: u32 = line!() + 3;
#[unsync]
async fn async_boom() -> u32 {
    panic!("async boom")
}

const THREAD_BOOM_LINE: u32 = line!() + 3;
#[unsync]
fn thread_boom() -> u32 {
    panic!("thread boom {}", 7)
}

const PARALLEL_BOOM_LINE: u32 = line!() + 3;
#[unsync(parallel)]
fn parallel_boom() -> u32 {
    panic!("parallel boom")
}

/// Where a panic on `line` of this file is, as std prints it.
fn at(line: u32) -> String {
    format!("{}:{line}:5", file!())
}

fn all_modes(n: u32) -> Vec<Unfinished<u32>> {
    vec![async_value(n), thread_value(n + 1), parallel_value(n + 2)]
}

#[test]
fn awaited_from_futures_block_on() {
    let sum = futures::executor::block_on(async {
        let mut sum = 0;
        for h in all_modes(10) {
            sum += h.await;
        }
        sum
    });
    assert_eq!(sum, 33);
}

#[test]
fn awaited_from_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sum = rt.block_on(async {
        let mut sum = 0;
        for h in all_modes(20) {
            sum += h.await;
        }
        sum
    });
    assert_eq!(sum, 63);
}

#[test]
fn awaited_from_tokio_multi_thread_and_its_tasks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sum = rt.block_on(async {
        let spawned = tokio::spawn(async { async_value(1).await + parallel_value(2).await });
        spawned.await.unwrap() + thread_value(3).await
    });
    assert_eq!(sum, 6);
}

#[test]
fn awaited_from_async_std() {
    let sum = async_std::task::block_on(async {
        let mut sum = 0;
        for h in all_modes(40) {
            sum += async_std::task::spawn(h).await;
        }
        sum
    });
    assert_eq!(sum, 123);
}

#[test]
fn awaited_from_smol() {
    let sum = smol::block_on(async {
        let mut sum = 0;
        for h in all_modes(30) {
            sum += h.await;
        }
        sum
    });
    assert_eq!(sum, 93);
}

#[test]
#[should_panic(expected = "task `handle::async_boom` panicked at tests/handle.rs:")]
fn async_panic_reraises_in_result() {
    async_boom().result();
}

#[test]
#[should_panic(expected = "task `handle::thread_boom` panicked at tests/handle.rs:")]
fn thread_panic_reraises_in_result() {
    thread_boom().result();
}

#[test]
#[should_panic(expected = "task `handle::parallel_boom` panicked at tests/handle.rs:")]
fn parallel_panic_reraises_in_result() {
    parallel_boom().result();
}

#[test]
#[should_panic(expected = "parallel boom")]
fn panic_reraises_through_await() {
    futures::executor::block_on(async { parallel_boom().await });
}

/// The message of the panic that ended a tokio task.
fn panic_of(joined: Result<u32, tokio::task::JoinError>) -> String {
    let payload = joined.expect_err("the awaiting task panicked").into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a text panic")
}

#[test]
fn await_reraises_a_panic_in_the_awaiting_task_in_every_mode() {
    common::watchdog(common::LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Already failed, or failed by the time it is awaited.
            for (handle, expected) in [
                (
                    async_boom(),
                    format!(
                        "task `handle::async_boom` panicked at {}: async boom",
                        at(ASYNC_BOOM_LINE)
                    ),
                ),
                (
                    thread_boom(),
                    format!(
                        "task `handle::thread_boom` panicked at {}: thread boom 7",
                        at(THREAD_BOOM_LINE)
                    ),
                ),
                (
                    parallel_boom(),
                    format!(
                        "task `handle::parallel_boom` panicked at {}: parallel boom",
                        at(PARALLEL_BOOM_LINE)
                    ),
                ),
            ] {
                let awaiting = tokio::spawn(async move { handle.await + 1 });
                assert_eq!(panic_of(awaiting.await), expected);
            }
            // Failing while the task awaiting it waits: the wake-up re-raises it.
            for mode in common::MODES {
                let message = format!("{mode:?} fails while awaited");
                let (open, handle) = common::gated_panic(mode, &message);
                let (parked_tx, parked) = tokio::sync::oneshot::channel();
                let awaiting = tokio::spawn(async move {
                    let mut handle = handle;
                    // Pending until the gate opens: the task waits on the handle's wake-up.
                    assert!(futures::poll!(&mut handle).is_pending());
                    parked_tx.send(()).unwrap();
                    handle.await + 1
                });
                parked.await.unwrap();
                open.set(());
                let task = match mode {
                    common::Mode::Async => "handle::common::panics_async",
                    common::Mode::Thread => "handle::common::panics_thread",
                    common::Mode::Parallel => "handle::common::panics_parallel",
                };
                let reraised = panic_of(awaiting.await);
                let prefix = format!("task `{task}` panicked at tests/common/mod.rs:");
                assert!(reraised.starts_with(&prefix), "{reraised}");
                assert!(reraised.ends_with(&format!(": {message}")), "{reraised}");
            }
        });
    });
}

#[test]
fn catch_gives_the_failure_as_a_value_in_every_mode() {
    for (handle, task, message, line) in [
        (
            async_boom(),
            "handle::async_boom",
            "async boom",
            ASYNC_BOOM_LINE,
        ),
        (
            thread_boom(),
            "handle::thread_boom",
            "thread boom 7",
            THREAD_BOOM_LINE,
        ),
        (
            parallel_boom(),
            "handle::parallel_boom",
            "parallel boom",
            PARALLEL_BOOM_LINE,
        ),
    ] {
        let caught: Unfinished<Result<u32, Error>> = handle.catch();
        let error = caught.result().unwrap_err();
        assert!(
            matches!(&error, Error::Panicked { task: t, message: m, .. } if *t == task && m == message),
            "{error:?}"
        );
        assert_eq!(error.location(), Some(&*at(line)));
        assert_eq!(error.backtrace(), None, "in-process: std's hook printed it");
    }
    assert_eq!(thread_value(5).catch().result(), Ok(5));
    // catch of a caught handle nests the result
    assert_eq!(thread_value(6).catch().catch().result(), Ok(Ok(6)));
}

#[test]
fn ready_is_done_and_wait_timeout() {
    let ready = Unfinished::ready(String::from("now"));
    assert!(ready.is_done());
    assert!(ready.wait_timeout(Duration::ZERO));
    assert_eq!(ready.result(), "now");

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let pending = unsync::spawn_blocking(move || rx.recv().is_ok());
    assert!(!pending.is_done());
    // Not done: the wait times out (the bound is only an upper limit on how long we block).
    assert!(!pending.wait_timeout(Duration::from_millis(20)));
    drop(tx);
    assert!(pending.wait_timeout(common::LIMIT));
    assert!(pending.is_done());
    assert!(!pending.result());
}

#[test]
fn dropping_a_handle_does_not_stop_the_task() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    drop(unsync::spawn_blocking(move || {
        go_rx.recv().unwrap();
        tx.send("finished anyway").unwrap();
    }));
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(common::LIMIT).unwrap(), "finished anyway");
}

#[test]
fn ad_hoc_spawns_name_their_task() {
    let errors: Vec<Error> = vec![
        unsync::spawn(async { panic!("a") })
            .catch()
            .result()
            .unwrap_err(),
        unsync::spawn_blocking(|| panic!("b"))
            .catch()
            .result()
            .unwrap_err(),
        unsync::spawn_parallel(|| panic!("c"))
            .catch()
            .result()
            .unwrap_err(),
    ];
    let tasks: Vec<_> = errors.iter().map(Error::task).collect();
    assert_eq!(tasks, ["spawn", "spawn_blocking", "spawn_parallel"]);
}

#[test]
fn tasks_run_on_the_executor_of_their_mode() {
    #[unsync]
    async fn async_thread() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }
    #[unsync]
    fn blocking_thread() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }
    #[unsync(parallel)]
    fn parallel_thread() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }
    assert!(async_thread().result().starts_with("unsync-runtime-"));
    assert!(blocking_thread().result().starts_with("unsync-blocking-"));
    assert!(parallel_thread().result().starts_with("unsync-parallel-"));
}

#[test]
fn handle_type_is_send_sync_unpin_static() {
    fn check<T: Send + Sync + Unpin + 'static>(_: &T) {}
    let h = thread_value(1);
    check(&h);
    assert_eq!(h.result(), 1);
}

#[test]
fn without_a_tracing_subscriber_an_unread_failure_is_one_line_on_stderr() {
    let output = common::run_child_test("child_drops_a_failure");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reports: Vec<_> = stderr
        .lines()
        .filter(|line| line.starts_with("unsync: "))
        .collect();
    assert_eq!(
        reports,
        [format!(
            "unsync: task `handle::child_boom` panicked at {}: nobody reads me (every handle to it was dropped, so nobody else saw it)",
            at(CHILD_BOOM_LINE)
        )]
    );
}

const CHILD_BOOM_LINE: u32 = line!() + 4;
#[unsync]
fn child_boom(gate: Unfinished<()>) {
    gate.result();
    panic!("nobody reads me")
}

#[test]
#[ignore = "run by without_a_tracing_subscriber_an_unread_failure_is_one_line_on_stderr"]
fn child_drops_a_failure() {
    let (open, gate) = unsync::promise();
    drop(child_boom(gate));
    open.set(());
    assert_eq!(unsync::shutdown(common::LIMIT), 0);
}

/// `.result()` and `.await` re-raise a task's panic at the reader's own line, not inside
/// unsync: std's panic message then points at the code that read the handle.
#[test]
fn a_failure_is_reraised_where_it_is_read() {
    common::run_child_test("child_records_reraise_locations");
}

#[test]
#[ignore = "run by a_failure_is_reraised_where_it_is_read (it replaces the panic hook)"]
fn child_records_reraise_locations() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    // Start the executors first, so that unsync's hook is installed before this one replaces it.
    assert_eq!(all_modes(0).into_iter().map(|h| h.result()).sum::<u32>(), 3);
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().unwrap();
        SEEN.lock()
            .unwrap()
            .push(format!("{}:{}", location.file(), location.line()));
    }));
    let result_line = line!() + 1;
    let by_result = std::panic::catch_unwind(|| thread_boom().result());
    let await_line = line!() + 2;
    let by_await =
        std::panic::catch_unwind(|| futures::executor::block_on(async { parallel_boom().await }));
    assert!(by_result.is_err() && by_await.is_err());
    // A copy: a failed assertion below panics, and the hook must not find the lock held.
    let seen = SEEN.lock().unwrap().clone();
    // The tasks' own panics come first, on the pools' threads; the re-raises last, here.
    let here = |line: u32| format!("{}:{line}", file!());
    assert!(seen.contains(&here(result_line)), "{seen:?}");
    assert!(seen.contains(&here(await_line)), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("unsync-core")), "{seen:?}");
}
