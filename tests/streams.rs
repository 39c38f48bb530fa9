//! Streams: `UnfinishedStream` from `spawn_blocking_stream` (an iterator on the blocking pool)
//! and `spawn_stream` (a `Stream` on the runtime), and from streaming `#[unsync]` functions.
//! Each mode: order kept, backpressure, an early drop stops an infinite producer, a panic
//! after some items, cancel, timeout, sync and async readers, nesting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use unsync::{Error, UnfinishedStream};

mod common;
use common::{LIMIT, OnDrop, watchdog};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Thread,
    Async,
}

const MODES: [Mode; 2] = [Mode::Thread, Mode::Async];

/// `make()`'s items as a stream driven in `mode`.
fn stream_of<I>(mode: Mode, make: impl FnOnce() -> I + Send + 'static) -> UnfinishedStream<I::Item>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    match mode {
        Mode::Thread => unsync::spawn_blocking_stream(make),
        Mode::Async => unsync::spawn_stream(futures::stream::iter(make())),
    }
}

/// An endless producer that sends on the returned channel when it is dropped.
fn endless(mode: Mode) -> (UnfinishedStream<u64>, mpsc::Receiver<()>) {
    let (stopped, has_stopped) = mpsc::channel();
    let guard = OnDrop(stopped);
    let stream = stream_of(mode, move || {
        (0_u64..).inspect(move |_| {
            let _alive = &guard;
        })
    });
    (stream, has_stopped)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn is_send_unpin_static() {
    fn check<S: Send + Unpin + 'static>() {}
    check::<UnfinishedStream<String>>();
    check::<unsync::UnfinishedStreamIter<String>>();
    check::<UnfinishedStream<Result<Vec<u8>, Error>>>();
}

#[test]
fn items_arrive_in_the_order_produced() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let items: Vec<u32> = stream_of(mode, || 0..100_000_u32).into_iter().collect();
            assert_eq!(items, (0..100_000).collect::<Vec<_>>(), "{mode:?}");
        });
    }
}

/// A fast producer of 10 million items: first left alone until it has filled the buffer, then
/// read as fast as it produces, it is never more than the buffer (plus the item in its hand)
/// ahead.
#[test]
fn backpressure_bounds_how_far_the_producer_runs_ahead() {
    const ITEMS: usize = 10_000_000;
    for mode in MODES {
        watchdog(LIMIT * 4, move || {
            let ahead = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let (a, m) = (ahead.clone(), most.clone());
            let stream = stream_of(mode, move || {
                (0..ITEMS).inspect(move |_| {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::Relaxed);
                })
            });
            // Nothing read yet: the producer fills the buffer, where it must wait.
            wait_until_ahead(&ahead, 16);
            let mut expected = 0;
            for n in stream {
                assert_eq!(n, expected);
                expected += 1;
                ahead.fetch_sub(1, Ordering::SeqCst);
            }
            assert_eq!(expected, ITEMS);
            let most = most.load(Ordering::Relaxed);
            assert!(
                most >= 16,
                "{mode:?}: the producer never filled the buffer ({most})"
            );
            assert!(
                most <= 16 + 2,
                "{mode:?}: the producer ran {most} items ahead"
            );
        });
    }
}

#[test]
fn dropping_the_stream_stops_an_endless_producer() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (stream, has_stopped) = endless(mode);
            let mut items = stream.into_iter();
            assert_eq!(items.by_ref().take(5).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
            drop(items);
            has_stopped
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{mode:?}: the producer kept running"));
        });
    }
}

/// The blocking pool's thread is freed: many dropped endless producers in a row do not pile
/// up threads that never return (each would otherwise hold one for ever).
#[test]
fn a_dropped_producer_frees_its_thread() {
    watchdog(LIMIT, || {
        let (stopped, has_stopped) = mpsc::channel();
        for _ in 0..50 {
            let stopped = stopped.clone();
            let stream = unsync::spawn_blocking_stream(move || {
                struct Exit(mpsc::Sender<()>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        let _ = self.0.send(());
                    }
                }
                let exit = Exit(stopped);
                std::iter::repeat(0_u8).inspect(move |_| {
                    let _alive = &exit;
                })
            });
            let mut items = stream.into_iter();
            assert_eq!(items.next(), Some(0));
        }
        for _ in 0..50 {
            has_stopped
                .recv_timeout(LIMIT)
                .expect("every producer stopped");
        }
    });
}

#[test]
fn items_before_a_panic_are_delivered_then_it_is_reraised() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let stream = stream_of(mode, || {
                (0..10_u32).map(|n| {
                    if n == 7 {
                        panic!("seven is too many")
                    } else {
                        n
                    }
                })
            });
            let mut items = stream.into_iter();
            let first: Vec<u32> = items.by_ref().take(7).collect();
            assert_eq!(first, [0, 1, 2, 3, 4, 5, 6]);
            let payload = catch_unwind(AssertUnwindSafe(|| items.next())).unwrap_err();
            let message = panic_message(&*payload);
            assert!(message.contains("panicked"), "{mode:?}: {message}");
            assert!(message.contains("seven is too many"), "{mode:?}: {message}");
            assert_eq!(items.next(), None, "{mode:?}: the stream ended");

            let caught: Vec<_> = stream_of(mode, || {
                (0..3_u32).map(|n| if n == 2 { panic!("two") } else { n })
            })
            .catch()
            .into_iter()
            .collect();
            assert_eq!(caught[..2], [Ok(0), Ok(1)], "{mode:?}");
            assert!(
                matches!(&caught[2], Err(Error::Panicked { message, .. }) if message == "two"),
                "{mode:?}: {caught:?}"
            );
            assert_eq!(caught.len(), 3);
        });
    }
}

#[test]
fn an_async_reader_sees_the_panic_too() {
    watchdog(LIMIT, || {
        let stream = unsync::spawn_blocking_stream(|| {
            (0..3_u32).map(|n| if n == 2 { panic!("async two") } else { n })
        });
        let read = unsync::spawn(async move {
            let mut stream = stream;
            let mut seen = Vec::new();
            while let Some(n) = stream.next().await {
                seen.push(n);
            }
            seen
        });
        let error = read.catch().result().unwrap_err();
        assert!(error.to_string().contains("async two"), "{error}");
    });
}

#[test]
fn cancel_ends_the_stream_and_stops_the_producer() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (stream, has_stopped) = endless(mode);
            let mut items = stream.catch().into_iter();
            assert_eq!(items.next().unwrap().unwrap(), 0);
            assert!(items.cancel());
            assert!(!items.cancel(), "a second cancel finds it ended");
            let rest: Vec<_> = items.collect();
            assert_eq!(
                rest.len(),
                1,
                "{mode:?}: unread items are dropped: {rest:?}"
            );
            assert!(matches!(rest[0], Err(Error::Cancelled { .. })), "{mode:?}");
            has_stopped
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{mode:?}: the producer kept running"));
        });
    }
}

#[test]
fn a_cancelled_stream_reraises_when_read() {
    let stream = unsync::spawn_blocking_stream(|| 0_u32..);
    stream.cancel();
    let payload = catch_unwind(AssertUnwindSafe(|| stream.into_iter().count())).unwrap_err();
    assert!(panic_message(&*payload).contains("was cancelled"));
}

#[test]
fn timeout_ends_a_producer_that_takes_too_long() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (stream, has_stopped) = endless(mode);
            let items = stream.timeout(Duration::from_millis(20)).catch();
            let last = items.into_iter().last();
            assert!(
                matches!(last, Some(Err(Error::TimedOut { .. }))),
                "{mode:?}: {last:?}"
            );
            has_stopped
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{mode:?}: the producer kept running"));

            let in_time = stream_of(mode, || 0..10_u8).timeout(LIMIT);
            assert_eq!(in_time.into_iter().count(), 10, "{mode:?}");
        });
    }
}

#[test]
fn async_callers_poll_it_on_any_executor() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let on_futures = stream_of(mode, || 0..100_u32);
            let sum = futures::executor::block_on(on_futures.fold(0, |s, n| async move { s + n }));
            assert_eq!(sum, 4950);

            let on_runtime = stream_of(mode, || 0..100_u32);
            let items = unsync::spawn(async move { on_runtime.collect::<Vec<_>>().await });
            assert_eq!(items.result(), (0..100).collect::<Vec<_>>());

            let on_smol = stream_of(mode, || 0..100_u32);
            assert_eq!(smol::block_on(on_smol.count()), 100);
        });
    }
}

#[test]
fn collect_vec_is_a_handle_to_every_item() {
    for mode in MODES {
        let all = stream_of(mode, || 0..1000_u32).collect_vec();
        assert_eq!(all.result(), (0..1000).collect::<Vec<_>>());
        let failed = stream_of(mode, || {
            (0..3_u32).map(|n| if n == 1 { panic!("one") } else { n })
        })
        .collect_vec()
        .catch()
        .result();
        assert!(matches!(failed, Err(Error::Panicked { message, .. }) if message == "one"));
    }
}

#[test]
fn cancelling_collect_vec_stops_the_producer() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let (stream, has_stopped) = endless(mode);
            let all = stream.collect_vec();
            assert!(all.cancel());
            has_stopped
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{mode:?}: the producer kept running"));
        });
    }
}

/// A stream read, blocking, inside other unsync tasks of every kind: the reading thread
/// blocks as `.result()` would there, and nothing deadlocks even with more readers than threads.
#[test]
fn streams_read_inside_other_tasks() {
    for mode in MODES {
        watchdog(LIMIT, move || {
            let sum = |mode| stream_of(mode, || 1..=100_u64).into_iter().sum::<u64>();
            let in_threads: Vec<_> = (0..32)
                .map(|_| unsync::spawn_blocking(move || sum(mode)))
                .collect();
            let in_async: Vec<_> = (0..16)
                .map(|_| unsync::spawn(async move { sum(mode) }))
                .collect();
            let in_rayon: Vec<_> = (0..16)
                .map(|_| unsync::spawn_parallel(move || sum(mode)))
                .collect();
            for handle in in_threads.into_iter().chain(in_async).chain(in_rayon) {
                assert_eq!(handle.result(), 5050, "{mode:?}");
            }
            // And a stream made and read inside a stream's producer.
            let nested = stream_of(mode, move || (0..4_u64).map(move |_| sum(Mode::Thread)));
            assert_eq!(nested.into_iter().sum::<u64>(), 4 * 5050);
        });
    }
}

/// The iterator is made on the pool thread: it need not be `Send`.
#[test]
fn a_blocking_producer_need_not_be_send() {
    let stream = unsync::spawn_blocking_stream(|| {
        let shared = std::rc::Rc::new(3_u32);
        (0..3_u32).map(move |n| n * *shared)
    });
    assert_eq!(stream.into_iter().collect::<Vec<_>>(), [0, 3, 6]);
}

// Streaming `#[unsync]` functions.

#[unsync::unsync]
fn numbers(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

#[unsync::unsync]
fn numbers_as_stream(n: u32) -> impl futures::Stream<Item = u32> + Send {
    futures::stream::iter(0..n)
}

#[unsync::unsync]
async fn numbers_after_a_wait(n: u32) -> impl futures::Stream<Item = u32> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    futures::stream::iter(0..n)
}

/// Wait, before reading, until the producer is `items` ahead (its buffer full); the watchdog
/// fails the test if backpressure stops the producer short of it.
fn wait_until_ahead(ahead: &AtomicUsize, items: usize) {
    while ahead.load(Ordering::SeqCst) < items {
        std::thread::yield_now();
    }
}

/// Counts how far it runs ahead of `ahead`'s reader, the most in `most`.
#[unsync::unsync(buffer = 64)]
fn counted(ahead: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> impl Iterator<Item = usize> {
    (0..100_000).inspect(move |_| {
        let now = ahead.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::Relaxed);
    })
}

#[unsync::unsync]
fn fails_after(n: u32) -> impl Iterator<Item = u32> {
    (0..).map(move |i| if i == n { panic!("done at {n}") } else { i })
}

#[test]
fn streaming_functions_in_every_mode() {
    watchdog(LIMIT, || {
        let expected: Vec<u32> = (0..1000).collect();
        assert_eq!(numbers(1000).into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(
            numbers_as_stream(1000).into_iter().collect::<Vec<_>>(),
            expected
        );
        let awaited = futures::executor::block_on(numbers_after_a_wait(1000).collect::<Vec<_>>());
        assert_eq!(awaited, expected);
        assert_eq!(numbers(10).collect_vec().result().len(), 10);
    });
}

#[test]
fn the_buffer_option_sets_how_far_the_producer_runs_ahead() {
    watchdog(LIMIT, || {
        let ahead = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let stream = counted(ahead.clone(), most.clone());
        wait_until_ahead(&ahead, 64);
        for _ in stream {
            ahead.fetch_sub(1, Ordering::SeqCst);
        }
        let most = most.load(Ordering::Relaxed);
        assert!(
            (64..=66).contains(&most),
            "ran {most} ahead with a buffer of 64"
        );
    });
}

#[test]
fn a_streaming_function_names_itself_in_its_failure() {
    let items: Vec<_> = fails_after(3).catch().into_iter().collect();
    assert_eq!(items[..3], [Ok(0), Ok(1), Ok(2)]);
    match &items[3] {
        Err(Error::Panicked { task, message, .. }) => {
            assert_eq!(*task, "streams::fails_after");
            assert_eq!(message, "done at 3");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A thread's producer busy on one item sees `is_cancelled()` turn true, like any thread task.
#[test]
fn a_busy_thread_producer_sees_is_cancelled() {
    watchdog(LIMIT, || {
        let (stopped, has_stopped) = mpsc::channel();
        let (started, has_started) = mpsc::channel();
        let stream = unsync::spawn_blocking_stream(move || {
            let stopped = OnDrop(stopped);
            std::iter::from_fn(move || {
                let _alive = &stopped;
                let _ = started.send(());
                while !unsync::is_cancelled() {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                None::<u8>
            })
        });
        has_started
            .recv_timeout(LIMIT)
            .expect("the producer started");
        assert!(stream.cancel());
        has_stopped
            .recv_timeout(LIMIT)
            .expect("the producer saw is_cancelled and returned");
    });
}
