//! A task cancelled while still queued never starts, in every mode. The executors are made
//! tiny here (one async worker, two blocking threads, one rayon thread) so that "queued" can be
//! arranged for sure: every thread is held by a task blocked on a channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Once};

use unsync::{Config, Error, Unfinished, unsync};

mod common;
use common::{LIMIT, OnDrop, watchdog};

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        Config::new()
            .runtime_threads(1)
            .blocking_threads(2)
            .parallel_threads(1)
            .install()
            .expect("installed before any task");
    });
}

// Holders: occupy a thread until told to go (a plain channel, not an unsync wait, so that no
// executor knows the thread is blocked and lends another).
#[unsync]
async fn hold_async(held: Sender<()>, go: Receiver<()>) {
    held.send(()).unwrap();
    go.recv().unwrap();
}

#[unsync]
fn hold_thread(held: Sender<()>, go: Receiver<()>) {
    held.send(()).unwrap();
    go.recv().unwrap();
}

#[unsync(parallel)]
fn hold_parallel(held: Sender<()>, go: Receiver<()>) {
    held.send(()).unwrap();
    go.recv().unwrap();
}

#[unsync]
async fn queued_async(ran: Arc<AtomicBool>, _gone: OnDrop) {
    ran.store(true, Ordering::SeqCst);
}

#[unsync]
fn queued_thread(ran: Arc<AtomicBool>, _gone: OnDrop) {
    ran.store(true, Ordering::SeqCst);
}

#[unsync(parallel)]
fn queued_parallel(ran: Arc<AtomicBool>, _gone: OnDrop) {
    ran.store(true, Ordering::SeqCst);
}

type Hold = fn(Sender<()>, Receiver<()>) -> Unfinished<()>;
type Queue = fn(Arc<AtomicBool>, OnDrop) -> Unfinished<()>;

fn never_starts(threads: usize, hold: Hold, queue: Queue) {
    let (held_tx, held) = mpsc::channel();
    let mut gos = Vec::new();
    let mut holders = Vec::new();
    for _ in 0..threads {
        let (go, wait) = mpsc::channel();
        holders.push(hold(held_tx.clone(), wait));
        gos.push(go);
    }
    for _ in 0..threads {
        held.recv_timeout(LIMIT).expect("a holder took its thread");
    }
    // Every thread is held: this one waits in the queue.
    let ran = Arc::new(AtomicBool::new(false));
    let (gone_tx, gone) = mpsc::channel();
    let queued = queue(ran.clone(), OnDrop(gone_tx));
    let waiter = queued.clone();
    assert!(queued.cancel());
    assert!(matches!(
        waiter.catch().result(),
        Err(Error::Cancelled { .. })
    ));
    for go in gos {
        go.send(()).unwrap();
    }
    // The executor gets to the queued task and drops it without running it.
    gone.recv_timeout(LIMIT)
        .expect("the queued task was dropped");
    assert!(
        !ran.load(Ordering::SeqCst),
        "a cancelled queued task started"
    );
    for holder in holders {
        holder.result();
    }
}

#[test]
fn queued_tasks_never_start_once_cancelled() {
    install();
    watchdog(LIMIT, || {
        never_starts(1, hold_async, queued_async);
        never_starts(2, hold_thread, queued_thread);
        never_starts(1, hold_parallel, queued_parallel);
    });
}
