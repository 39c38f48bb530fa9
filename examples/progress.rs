//! A progress bar over a batch: 60 tasks of every mode read with `as_completed`, whose `len()`
//! says how many are still to come. (A crate like `indicatif` plugs in the same way: set its
//! length from `len()` and tick it per value.) Then a `timeout` that fires, and `shutdown` to
//! let the stragglers finish before `main` returns.
//!
//! Run with `cargo run --release --example progress`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use unsync::{Error, Unfinished, unsync};

#[unsync]
async fn download(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(5 * (id % 7))).await;
    id
}

#[unsync]
fn read_file(id: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(3 * (id % 5)));
    id
}

#[unsync(parallel)]
fn crunch(id: u64) -> u64 {
    (0..200_000 * (id % 4)).fold(id, |acc, x| acc ^ x.wrapping_mul(0x9e37_79b9))
}

fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 40;
    let filled = done * WIDTH / total.max(1);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

fn main() {
    let start = Instant::now();
    let batch: Vec<Unfinished<u64>> = (0..60)
        .map(|id| match id % 3 {
            0 => download(id),
            1 => read_file(id),
            _ => crunch(id),
        })
        .collect();

    let done = unsync::as_completed(batch);
    let total = done.len();
    let mut iter = done.into_iter();
    let mut stderr = std::io::stderr();
    let live = stderr.is_terminal();
    while iter.next().is_some() {
        let done = total - iter.len();
        if live {
            let _ = write!(stderr, "\r{}", bar(done, total));
        } else if done % 15 == 0 {
            let _ = writeln!(stderr, "{}", bar(done, total)); // a log: a line per quarter
        }
    }
    if live {
        let _ = writeln!(stderr);
    }
    println!("{total} tasks in {:?}", start.elapsed());

    // A task that takes too long: its time is up, and it is cancelled.
    let slow = download(6).then(|_| download(6)).map(|_| "late");
    match slow.timeout(Duration::from_millis(5)).result() {
        Err(Error::TimedOut { after, .. }) => println!("gave up after {after:?}"),
        other => println!("finished in time: {other:?}"),
    }

    // Fire and forget, then let it finish before the process exits.
    drop(read_file(4));
    let still_running = unsync::shutdown(Duration::from_secs(10));
    println!("still running at exit: {still_running}");
}
