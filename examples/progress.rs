//! A progress bar over a batch of every mode, then a timeout and a clean exit: how a script
//! reports progress on background work with unsync's handles.
//!
//! 60 tasks, 15 of each mode: `download` (`#[unsync] async fn`, a sleep on the runtime),
//! `read_file` (`#[unsync] fn`, a sleep on the blocking pool), `crunch` (`#[unsync(parallel)]
//! fn`, a CPU kernel on rayon) and `crunch_apart` (`#[unsync(cpu_bound)] fn`, the same kernel
//! in a worker process). They are read with `unsync::as_completed`, whose `len()` says how many
//! are still to come: that drives the bar (on stderr: redrawn on a terminal, a line per
//! quarter otherwise). A crate like `indicatif` plugs in the same way (see `cpu_compute`): set
//! its length from `len()` and tick it per value. Then a chain of two downloads under a
//! `timeout` that fires first, and a task dropped unread that `shutdown` lets finish before
//! `main` returns.
//!
//! The kernel is a sum of square roots in `f64`, every step folded into the result and the
//! inputs passed through `std::hint::black_box`, so the compiler cannot skip the work.
//!
//! Proves: every task's result arrived exactly once, each equal bit for bit to a serial
//! recomputation on the main thread, and so does the total; the count shown went up by one per
//! result and reached 60; each mode ran on its executor; the timeout resolved to
//! `Error::TimedOut`; `shutdown` let the dropped task finish; `unsync::stats()`, printed
//! halfway, showed tasks in flight, and each mode's tasks done at the end.
//!
//! `cargo run --release --example progress`

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::place::{Place, here, summary};
use serde::{Deserialize, Serialize};
use unsync::{Error, Unfinished, unsync};

const TASKS: u64 = 60;
const KINDS: [&str; 4] = [
    "download: #[unsync] async fn (runtime)",
    "read_file: #[unsync] fn (blocking pool)",
    "crunch: #[unsync(parallel)] fn (rayon)",
    "crunch_apart: #[unsync(cpu_bound)] fn (worker processes)",
];

/// What one task returns: which task, its value, where it ran and how long it took there.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Done {
    id: u64,
    value: f64,
    place: Place,
    micros: u64,
}

fn done(id: u64, value: f64, started: Instant) -> Done {
    Done {
        id,
        value,
        place: here(),
        micros: started.elapsed().as_micros() as u64,
    }
}

/// The value of an I/O task: cheap, but different for every id.
fn io_value(id: u64) -> f64 {
    (id as f64).sqrt() * 1.5
}

/// The CPU kernel: 100,000 to 400,000 square roots in f64, every one added into the result.
fn kernel(id: u64) -> f64 {
    let steps = black_box(100_000 * (1 + id % 4));
    let offset = black_box(id as f64);
    let mut sum = 0.0_f64;
    for i in 0..steps {
        sum += (i as f64 + offset).sqrt();
    }
    black_box(sum)
}

/// The sleep of a simulated I/O task.
fn io_pause(id: u64) -> Duration {
    Duration::from_millis(3 + 5 * (id % 7))
}

#[unsync]
async fn download(id: u64) -> Done {
    let started = Instant::now();
    tokio::time::sleep(io_pause(id)).await;
    done(id, io_value(id), started)
}

#[unsync]
fn read_file(id: u64) -> Done {
    let started = Instant::now();
    std::thread::sleep(io_pause(id));
    done(id, io_value(id), started)
}

#[unsync(parallel)]
fn crunch(id: u64) -> Done {
    let started = Instant::now();
    done(id, kernel(id), started)
}

#[unsync(cpu_bound)]
fn crunch_apart(id: u64) -> Done {
    let started = Instant::now();
    done(id, kernel(id), started)
}

/// Task `id`'s mode, as an index into `KINDS`.
fn kind(id: u64) -> usize {
    (id % 4) as usize
}

fn submit(id: u64) -> Unfinished<Done> {
    match kind(id) {
        0 => download(id),
        1 => read_file(id),
        2 => crunch(id),
        _ => crunch_apart(id),
    }
}

/// What task `id` should return, computed here, on the main thread.
fn expected(id: u64) -> f64 {
    match kind(id) {
        0 | 1 => io_value(id),
        _ => kernel(id),
    }
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

/// Where the task dropped unread ran, set when it finishes.
static FORGOTTEN: Mutex<Option<Place>> = Mutex::new(None);

#[unsync]
fn write_log(id: u64) {
    std::thread::sleep(io_pause(id));
    *FORGOTTEN.lock().expect("no panics") = Some(here());
}

fn main() {
    let main_place = here();
    println!(
        "{TASKS} tasks, {} of each mode. Main is {main_place}.",
        TASKS / 4
    );

    // 1. The batch, under a progress bar.
    let start = Instant::now();
    let done = unsync::as_completed((0..TASKS).map(submit));
    let total = done.len();
    let mut left = done.into_iter();
    let mut stderr = std::io::stderr();
    let live = stderr.is_terminal();
    let mut results: Vec<Done> = Vec::new();
    // The count the bar showed after each result.
    let mut shown: Vec<usize> = Vec::new();
    let mut halfway: Option<unsync::Stats> = None;
    while let Some(result) = left.next() {
        results.push(result);
        let done = total - left.len();
        shown.push(done);
        if live {
            let _ = write!(stderr, "\r{}", bar(done, total));
        } else if done % (total / 4).max(1) == 0 {
            let _ = writeln!(stderr, "{}", bar(done, total)); // a log: a line per quarter
        }
        // What the executors are doing meanwhile: `unsync::stats()`, halfway through.
        if done == total / 2 {
            let stats = unsync::stats();
            halfway = Some(stats.clone());
            if live {
                let _ = writeln!(stderr);
            }
            let _ = writeln!(stderr, "unsync::stats() halfway:\n{stats}");
        }
    }
    if live {
        let _ = writeln!(stderr);
    }
    let finished = unsync::stats();
    let wall = start.elapsed();
    let own: Duration = results
        .iter()
        .map(|r| Duration::from_micros(r.micros))
        .sum();
    println!(
        "{} results in {} (the tasks' own times add up to {})",
        results.len(),
        common::millis(wall),
        common::millis(own)
    );
    for (index, name) in KINDS.iter().enumerate() {
        let places: Vec<&Place> = results
            .iter()
            .filter(|r| kind(r.id) == index)
            .map(|r| &r.place)
            .collect();
        println!("  {name:<56} ran in {}", summary(places));
    }

    // The serial recomputation, on the main thread, and the totals in id order.
    let by_id: BTreeMap<u64, &Done> = results.iter().map(|r| (r.id, r)).collect();
    let ids_once = results.len() == TASKS as usize
        && by_id.len() == TASKS as usize
        && by_id.keys().copied().eq(0..TASKS);
    let serial: Vec<f64> = (0..TASKS).map(expected).collect();
    let equal = by_id
        .values()
        .zip(&serial)
        .filter(|(r, s)| r.value.to_bits() == s.to_bits())
        .count();
    let total_tasks: f64 = by_id.values().map(|r| r.value).sum();
    let total_serial: f64 = serial.iter().sum();
    println!("Total {total_tasks:.6}, serial recomputation {total_serial:.6}.");

    // 2. A chain of two downloads that takes longer than its timeout.
    let slow = download(6).then(|_| download(6)).map(|_| "late");
    let timed_out = slow.timeout(Duration::from_millis(5)).result();
    match &timed_out {
        Err(Error::TimedOut { after, .. }) => {
            println!("\nGave up on the slow chain after {after:?}.")
        }
        other => println!("\nThe slow chain finished in time: {other:?}"),
    }

    // 3. Fire and forget, then let it finish before the process exits.
    drop(write_log(4));
    let still_running = unsync::shutdown(Duration::from_secs(10));
    let forgotten = FORGOTTEN.lock().expect("no panics").clone();
    println!(
        "Shutdown: {still_running} still running; the dropped task {}.",
        forgotten
            .as_ref()
            .map_or("never ran".to_owned(), |p| format!("finished ({p})"))
    );

    let mut claims = Claims::new();
    claims.correct(
        "every task's result arrived exactly once",
        ids_once,
        format!(
            "{} results, {} distinct ids of {TASKS}",
            results.len(),
            by_id.len()
        ),
    );
    claims.correct(
        "every value and the total equal a serial recomputation, bit for bit",
        equal == TASKS as usize && total_tasks.to_bits() == total_serial.to_bits(),
        format!("{equal}/{TASKS} equal; total {total_tasks:.3}"),
    );
    let steps_of_one = shown.iter().enumerate().all(|(i, &n)| n == i + 1);
    claims.correct(
        "the progress count went up by one per result and reached 60",
        steps_of_one && shown.last() == Some(&(TASKS as usize)) && left.len() == 0,
        format!("last shown {}/{total}", shown.last().copied().unwrap_or(0)),
    );
    let placed = results.iter().all(|r| match kind(r.id) {
        0 => r.place.in_this_process() && r.place.on_runtime(),
        1 => r.place.in_this_process() && r.place.on_blocking_pool(),
        2 => r.place.in_this_process() && r.place.on_parallel_pool(),
        _ => r.place.in_worker_process(),
    });
    let workers: std::collections::BTreeSet<u32> = results
        .iter()
        .filter(|r| kind(r.id) == 3)
        .map(|r| r.place.pid)
        .collect();
    claims.correct(
        "each mode ran on its executor (cpu_bound in other processes)",
        placed,
        format!("worker pids {workers:?}, main pid {}", main_place.pid),
    );
    claims.correct(
        "a timeout shorter than the chain resolved to Error::TimedOut",
        matches!(timed_out, Err(Error::TimedOut { .. })),
        match &timed_out {
            Err(error) => error.to_string(),
            Ok(value) => format!("Ok({value:?})"),
        },
    );
    claims.correct(
        "shutdown let the dropped task finish: 0 still running",
        still_running == 0 && forgotten.as_ref().is_some_and(Place::on_blocking_pool),
        format!("{still_running} still running"),
    );
    claims.timing(
        "the batch overlapped: wall < 0.5 x the tasks' own times added up",
        wall < own.mul_f64(0.5),
        format!(
            "{:.2}x: {} against {}",
            common::ratio(wall, own),
            common::millis(wall),
            common::millis(own)
        ),
    );
    // stats() while the batch ran: tasks still in flight; and after it: every mode's 15 done
    // (the four modes this example uses: not `Remote`).
    use unsync::Mode;
    let used = [Mode::Async, Mode::Thread, Mode::Parallel, Mode::Process];
    let in_flight_halfway = halfway.as_ref().map_or(0, |stats| {
        used.iter()
            .map(|&m| stats.mode(m).queued + stats.mode(m).running)
            .sum::<u64>()
    });
    let each_mode_done = used
        .iter()
        .all(|&m| finished.mode(m).succeeded >= TASKS / 4);
    claims.correct(
        "unsync::stats() showed tasks in flight halfway, and each mode's 15 done at the end",
        in_flight_halfway > 0 && each_mode_done,
        format!(
            "{in_flight_halfway} queued or running halfway; succeeded at the end: {:?}",
            used.map(|m| finished.mode(m).succeeded)
        ),
    );
    claims.finish();
}
