//! Composition in every mode, from sync and async callers: `then`, `map`, `join_all`,
//! `as_completed`, `promise`, and `Clone` (many waiters on one task).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use futures::StreamExt;
use unsync::{Error, Unfinished, unsync};

mod common;
use common::{LIMIT, MODES, Mode, gated, gated_panic, watchdog};

#[unsync]
async fn double_async(n: u32) -> u32 {
    n * 2
}

#[unsync]
fn double_thread(n: u32) -> u32 {
    n * 2
}

#[unsync(parallel)]
fn double_parallel(n: u32) -> u32 {
    n * 2
}

fn double(mode: Mode, n: u32) -> Unfinished<u32> {
    match mode {
        Mode::Async => double_async(n),
        Mode::Thread => double_thread(n),
        Mode::Parallel => double_parallel(n),
    }
}

fn value(mode: Mode, n: u32) -> Unfinished<u32> {
    let (open, handle) = gated(mode, n);
    open.set(());
    handle
}

fn failed(mode: Mode, message: &str) -> Unfinished<u32> {
    let (open, handle) = gated_panic(mode, message);
    open.set(());
    handle
}

/// Runs `body` from a plain thread, then awaited inside `futures::executor` and a tokio
/// current-thread runtime (each an async caller of a different kind).
fn from_sync_and_async<F, Fut>(body: F)
where
    F: Fn(bool) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let body = Arc::new(body);
    let sync = body.clone();
    watchdog(LIMIT, move || futures::executor::block_on(sync(false)));
    let via_futures = body.clone();
    watchdog(LIMIT, move || {
        futures::executor::block_on(via_futures(true))
    });
    watchdog(LIMIT, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body(true))
    });
}

/// Read a handle the way the caller does: `.await` for async callers, `.result()` otherwise.
async fn read<T: Send + 'static>(handle: Unfinished<T>, awaited: bool) -> T {
    if awaited {
        handle.await
    } else {
        handle.result()
    }
}

#[test]
fn then_chains_tasks_across_modes() {
    from_sync_and_async(|awaited| async move {
        for first in MODES {
            for second in MODES {
                let chained = value(first, 5).then(move |n| double(second, n));
                assert_eq!(
                    read(chained, awaited).await,
                    10,
                    "{first:?} then {second:?}"
                );
            }
        }
        // Longer chains, as `fetch(url).then(parse).then(store)`.
        let chain = value(Mode::Async, 1)
            .then(|n| double(Mode::Thread, n))
            .then(|n| double(Mode::Parallel, n))
            .then(|n| double(Mode::Async, n));
        assert_eq!(read(chain, awaited).await, 8);
    });
}

#[test]
fn map_transforms_in_every_mode() {
    from_sync_and_async(|awaited| async move {
        for mode in MODES {
            let text = value(mode, 21).map(|n| n * 2).map(|n| format!("{n}"));
            assert_eq!(read(text, awaited).await, "42", "{mode:?}");
        }
    });
}

#[test]
fn failures_propagate_through_then_and_map_as_values() {
    for mode in MODES {
        let called = Arc::new(AtomicUsize::new(0));
        let seen = called.clone();
        let mapped = failed(mode, "map input").map(move |n| {
            seen.fetch_add(1, Ordering::SeqCst);
            n
        });
        let error = mapped.catch().result().unwrap_err();
        assert!(matches!(&error, Error::Panicked { message, .. } if message == "map input"));
        let chained = failed(mode, "then input").then(move |n| double(mode, n));
        let error = chained.catch().result().unwrap_err();
        assert!(matches!(&error, Error::Panicked { message, .. } if message == "then input"));
        // the continuation of `then` can fail too
        let second = value(mode, 1).then(move |_| failed(mode, "second step"));
        let error = second.catch().result().unwrap_err();
        assert!(matches!(&error, Error::Panicked { message, .. } if message == "second step"));
        assert_eq!(
            called.load(Ordering::SeqCst),
            0,
            "map must not run on failure"
        );
    }
    // A panicking closure fails the derived handle, naming the combinator.
    let error = value(Mode::Thread, 1)
        .map(|_| -> u32 { panic!("bad closure") })
        .catch()
        .result()
        .unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("task `map` panicked at tests/composition.rs:"),
        "{shown}"
    );
    assert!(shown.ends_with(": bad closure"), "{shown}");
    // ... and `.result()` re-raises failures, as for any handle.
    let raised = catch_unwind(|| failed(Mode::Async, "raised").map(|n| n + 1).result());
    let message = raised.unwrap_err();
    assert!(message.downcast_ref::<String>().unwrap().contains("raised"));
}

#[test]
fn join_all_keeps_input_order_in_every_mode() {
    from_sync_and_async(|awaited| async move {
        // Finish in reverse order of input: the output is still in input order.
        let mut gates = Vec::new();
        let mut handles = Vec::new();
        for i in 0..9_u32 {
            let mode = MODES[i as usize % 3];
            if mode == Mode::Parallel {
                // rayon runs waiting tasks nested, so a gated parallel task cannot finish
                // before one it was nested in: no gate for those.
                handles.push(double(mode, i).map(|n| n / 2));
            } else {
                let (open, handle) = gated(mode, i);
                gates.push(open);
                handles.push(handle);
            }
        }
        let joined = unsync::join_all(handles);
        for open in gates.into_iter().rev() {
            open.set(());
        }
        assert_eq!(read(joined, awaited).await, (0..9).collect::<Vec<_>>());
        let none: Vec<Unfinished<u32>> = Vec::new();
        assert!(read(unsync::join_all(none), awaited).await.is_empty());
    });
}

#[test]
fn join_all_fails_fast_with_the_first_error_and_cancels_nothing() {
    for mode in MODES {
        let (slow_open, slow) = gated(Mode::Async, 1_u32);
        let slow_clone = slow.clone();
        let handles = vec![value(mode, 0), slow, failed(mode, "first failure")];
        // The joined handle fails although `slow` has not finished.
        let error = unsync::join_all(handles).catch().result().unwrap_err();
        assert!(matches!(&error, Error::Panicked { message, .. } if message == "first failure"));
        // `slow` was not cancelled: it still finishes with its value.
        assert!(!slow_clone.is_done());
        slow_open.set(());
        assert_eq!(slow_clone.result(), 1, "{mode:?}");
    }
    // Without catch, the failure is re-raised by the reader.
    let raised = catch_unwind(|| unsync::join_all(vec![failed(Mode::Thread, "boom")]).result());
    assert!(
        raised
            .unwrap_err()
            .downcast_ref::<String>()
            .unwrap()
            .contains("boom")
    );
}

#[test]
fn as_completed_yields_in_completion_order() {
    from_sync_and_async(|awaited| async move {
        for mode in [Mode::Async, Mode::Thread] {
            let (gates, handles): (Vec<_>, Vec<_>) = (0..5_u32).map(|i| gated(mode, i)).unzip();
            let mut gates: Vec<_> = gates.into_iter().map(Some).collect();
            let release = [3_usize, 0, 4, 1, 2];
            let mut done = unsync::as_completed(handles);
            assert_eq!(done.len(), 5);
            let mut order = Vec::new();
            if awaited {
                for (k, &i) in release.iter().enumerate() {
                    gates[i].take().unwrap().set(());
                    order.push(done.next().await.unwrap());
                    assert_eq!(done.len(), 4 - k);
                }
                assert_eq!(done.next().await, None);
            } else {
                let mut iter = done.into_iter();
                for (k, &i) in release.iter().enumerate() {
                    gates[i].take().unwrap().set(());
                    order.push(iter.next().unwrap());
                    assert_eq!(iter.len(), 4 - k);
                }
                assert_eq!(iter.next(), None);
                assert_eq!(iter.next(), None, "fused");
            }
            assert_eq!(order, [3, 0, 4, 1, 2], "{mode:?}");
        }
        // Parallel: a task that does not wait finishes before one that waits for a gate.
        let (open, gated_one) = gated(Mode::Parallel, 1_u32);
        let mut done = unsync::as_completed(vec![gated_one, double(Mode::Parallel, 1)]);
        let first = if awaited { done.next().await } else { None };
        let mut iter = done.into_iter();
        let first = first.or_else(|| iter.next());
        assert_eq!(first, Some(2));
        open.set(());
        assert_eq!(iter.next(), Some(1));
    });
}

#[test]
fn as_completed_reraises_failures_when_yielded_or_gives_them_after_catch() {
    for mode in MODES {
        let mut iter = unsync::as_completed(vec![failed(mode, "yielded failure")]).into_iter();
        let raised = catch_unwind(AssertUnwindSafe(|| iter.next()));
        let payload = raised.unwrap_err();
        assert!(
            payload
                .downcast_ref::<String>()
                .unwrap()
                .contains("yielded failure")
        );
        assert_eq!(iter.next(), None, "the failed input was consumed");

        let caught = vec![value(mode, 3), failed(mode, "caught failure")]
            .into_iter()
            .map(Unfinished::catch);
        let mut outcomes: Vec<_> = unsync::as_completed(caught).into_iter().collect();
        outcomes.sort_by_key(Result::is_err);
        assert_eq!(outcomes[0], Ok(3));
        assert!(
            matches!(&outcomes[1], Err(Error::Panicked { message, .. }) if message == "caught failure")
        );
    }
}

#[test]
fn as_completed_size_hint_drives_progress() {
    let handles = (0..20_u32).map(|i| double(MODES[i as usize % 3], i));
    let done = unsync::as_completed(handles);
    assert_eq!(futures::Stream::size_hint(&done), (20, Some(20)));
    let mut iter = done.into_iter();
    let mut progress = Vec::new();
    while let Some(_value) = iter.next() {
        progress.push(iter.len());
    }
    assert_eq!(progress, (0..20).rev().collect::<Vec<_>>());
}

#[test]
fn promises_bridge_callbacks_from_any_thread_and_any_caller() {
    from_sync_and_async(|awaited| async move {
        let (promise, handle) = unsync::promise::<String>();
        std::thread::spawn(move || promise.set("from a callback".into()));
        assert_eq!(read(handle, awaited).await, "from a callback");

        // Set from inside unsync tasks of every mode.
        for mode in MODES {
            let (promise, handle) = unsync::promise::<Mode>();
            let (setter_open, setter) = gated(mode, promise);
            let setter = setter.map(move |promise| promise.set(mode));
            setter_open.set(());
            assert_eq!(read(handle, awaited).await, mode);
            read(setter, awaited).await;
        }

        // Dropped unset: cancelled.
        let (promise, handle) = unsync::promise::<u8>();
        drop(promise);
        assert_eq!(
            read(handle.catch(), awaited).await,
            Err(Error::Cancelled { task: "promise" })
        );
    });
}

#[test]
fn promise_set_after_cancel_is_dropped() {
    let (promise, handle) = unsync::promise::<u8>();
    let clone = handle.clone();
    assert!(handle.cancel());
    assert!(promise.is_cancelled());
    promise.set(1);
    assert_eq!(
        clone.catch().result(),
        Err(Error::Cancelled { task: "promise" })
    );
}

#[test]
fn clones_all_get_the_value_and_the_task_runs_once() {
    #[unsync]
    fn counted(runs: Arc<AtomicUsize>, gate: Unfinished<()>) -> String {
        runs.fetch_add(1, Ordering::SeqCst);
        gate.result();
        "shared".into()
    }
    from_sync_and_async(|awaited| async move {
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = unsync::promise();
        let task = counted(runs.clone(), gate);
        let clones: Vec<_> = (0..8).map(|_| task.clone()).collect();
        // Readers wait from other threads, and from here.
        let (tx, rx) = mpsc::channel();
        for clone in clones.into_iter().take(4) {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(clone.result()).unwrap());
        }
        let mapped = task.clone().map(|s| s.len());
        open.set(());
        assert_eq!(read(task, awaited).await, "shared");
        assert_eq!(read(mapped, awaited).await, 6);
        for _ in 0..4 {
            assert_eq!(rx.recv_timeout(LIMIT).unwrap(), "shared");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn clone_in_every_mode() {
    for mode in MODES {
        let (open, task) = gated(mode, vec![1_u8, 2]);
        let a = task.clone();
        let b = a.clone();
        open.set(());
        assert_eq!(a.result(), [1, 2]);
        assert_eq!(futures::executor::block_on(b), [1, 2]);
        assert_eq!(task.catch().result(), Ok(vec![1, 2]));
    }
}

#[test]
fn new_types_are_send_sync_and_unpin() {
    fn check<T: Send + Sync + Unpin + 'static>() {}
    check::<unsync::AsCompleted<String>>();
    check::<unsync::AsCompletedIter<String>>();
    check::<unsync::Promise<String>>();
}
