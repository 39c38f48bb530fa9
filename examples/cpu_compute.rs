//! CPU-bound work: serial, on threads, on threads that share one lock, on processes. The
//! course's chapters 5, 7 and 11 (`cpu_attempt/compute_it.py`, `compute_threaded.py`,
//! `compute_multiprocessing.py`, and the Cython `perf` demos), in Rust.
//!
//! The kernel is the course's `do_math(start, num)`: count from `start` to `num`, taking the
//! square root of `(pos - 1,000,000)²` at each step and adding `val / num` to a sum, whose
//! integer part is the result. Same float steps as Python, so the course's split of 30,000,000
//! steps in two chunks gives exactly Python's `6566667` and `10750000`.
//!
//! 1. The course's numbers: that split, serially and on the process pool (whose first calls
//!    start the worker processes).
//! 2. 200,000,000 steps in 8 chunks, four ways, timed:
//!    - serially, on the main thread;
//!    - `#[unsync(parallel)] fn`: free threads (rayon, one per core). Rust has no GIL, so they
//!      scale with the cores;
//!    - `#[unsync(parallel)] fn` again, but every thread must hold one global lock while it
//!      computes a slice of about a million steps and hand it over fairly after each: a
//!      stand-in for Python's GIL, which makes the threads take turns, as in the course;
//!    - `#[unsync(cpu_bound)] fn`: the process pool, as `multiprocessing.Pool` in the course,
//!      read with `unsync::as_completed` under a progress bar (indicatif, on a terminal), then
//!      collected in submission order.
//!
//! Proves: every mode gives the serial results, chunk by chunk and in submission order, and
//! the Python values; free threads and processes are >= 1.5x serial (on 2 or more cores); the
//! shared lock wipes the gain out (<= 1.2x).
//!
//! `cargo run --release --example cpu_compute`

mod common;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use common::claims::{Claims, cores};
use common::place::{Place, here};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use unsync::{Unfinished, unsync};

/// The course's split: 30M steps over the 2 cores of the reference box.
const COURSE_STEPS: f64 = 30_000_000.0;
/// What CPython printed for that split ([2c] in the course survey).
const PYTHON_VALUES: [i64; 2] = [6_566_667, 10_750_000];
/// CPython's serial time for the 30M steps on a 2-core box (the course survey's reference run).
const PYTHON_SERIAL_SECS: f64 = 4.41;
/// The timed runs: enough steps for each mode to take a good fraction of a second.
const STEPS: f64 = 200_000_000.0;
const CHUNKS: usize = 8;
/// Steps a thread computes per turn with the shared lock (a few ms, like Python's 5 ms switch
/// interval).
const SLICE: f64 = 1_000_000.0;

/// The course's `do_math` from `pos` up to `until` (at most `num`), continuing the sum `ave`:
/// computing a range in slices gives the very same bits as computing it in one go.
fn math_steps(mut pos: f64, until: f64, num: f64, mut ave: f64) -> (f64, f64) {
    const K_SQ: f64 = 1_000_000.0;
    while pos < until {
        pos += 1.0;
        let d = pos - K_SQ;
        ave += (d * d).sqrt() / num;
    }
    (pos, ave)
}

/// `do_math(start, num)`: the integer part of the sum, as Python's `int(ave)`.
fn do_math(start: f64, num: f64) -> i64 {
    let (_, ave) = math_steps(black_box(start), black_box(num), black_box(num), 0.0);
    black_box(ave) as i64
}

/// `parts` chunks of `0..total`, as the course splits it: `total * (n - 1) / parts` to
/// `total * n / parts`.
fn split(total: f64, parts: usize) -> Vec<(f64, f64)> {
    (1..=parts)
        .map(|n| {
            (
                total * (n - 1) as f64 / parts as f64,
                total * n as f64 / parts as f64,
            )
        })
        .collect()
}

/// One chunk's result, and where it was computed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Chunk {
    index: usize,
    value: i64,
    place: Place,
}

#[unsync(parallel)]
fn on_free_threads(index: usize, start: f64, num: f64) -> Chunk {
    Chunk {
        index,
        value: do_math(start, num),
        place: here(),
    }
}

/// The GIL stand-in: who held the lock last, how often it changed hands.
struct Gil {
    last: Option<ThreadId>,
    turns: u64,
    handovers: u64,
}

static GIL: Mutex<Gil> = Mutex::new(Gil {
    last: None,
    turns: 0,
    handovers: 0,
});

#[unsync(parallel)]
fn on_threads_sharing_one_lock(index: usize, start: f64, num: f64) -> Chunk {
    let (mut pos, mut ave) = (black_box(start), 0.0);
    let num = black_box(num);
    while pos < num {
        let mut gil = GIL.lock();
        let me = std::thread::current().id();
        gil.turns += 1;
        if gil.last.is_some_and(|last| last != me) {
            gil.handovers += 1;
        }
        gil.last = Some(me);
        (pos, ave) = math_steps(pos, (pos + SLICE).min(num), num, ave);
        // Hand the lock to a waiting thread, as the GIL does at its switch interval.
        MutexGuard::unlock_fair(gil);
    }
    Chunk {
        index,
        value: black_box(ave) as i64,
        place: here(),
    }
}

#[unsync(cpu_bound)]
fn in_processes(index: usize, start: f64, num: f64) -> Chunk {
    Chunk {
        index,
        value: do_math(start, num),
        place: here(),
    }
}

struct Run {
    name: &'static str,
    elapsed: Duration,
    chunks: Vec<Chunk>,
    /// CPU time this process and the workers used during the run.
    cpu: Option<Duration>,
}

/// CPU time of this process and of the worker processes, to tell how many cores a run really
/// got: on a busy machine, fewer than it asked for.
struct CpuProbe {
    pids: Vec<u32>,
    before: Option<Duration>,
}

impl CpuProbe {
    fn start(workers: &BTreeSet<u32>) -> CpuProbe {
        let pids: Vec<u32> = [std::process::id()]
            .into_iter()
            .chain(workers.iter().copied())
            .collect();
        let before = CpuProbe::total(&pids);
        CpuProbe { pids, before }
    }

    fn total(pids: &[u32]) -> Option<Duration> {
        pids.iter().map(|&pid| common::process_cpu_time(pid)).sum()
    }

    fn stop(self, mut run: Run) -> Run {
        let used = CpuProbe::total(&self.pids)
            .zip(self.before)
            .map(|(after, before)| after.saturating_sub(before));
        run.cpu = used;
        run
    }
}

impl Run {
    /// CPU time over wall time: how many cores the run kept busy.
    fn cores_busy(&self) -> Option<f64> {
        self.cpu.map(|cpu| common::ratio(cpu, self.elapsed))
    }

    fn busy(&self) -> String {
        self.cores_busy()
            .map_or("CPU time unknown".into(), |cores| {
                format!("{cores:.2} cores busy on average")
            })
    }

    fn values(&self) -> Vec<i64> {
        self.chunks.iter().map(|c| c.value).collect()
    }

    fn in_order(&self) -> bool {
        self.chunks.iter().enumerate().all(|(i, c)| c.index == i)
    }

    fn report(&self, serial: Option<&Run>) {
        let mut notes = Vec::new();
        if let Some(serial) = serial {
            notes.push(format!(
                "{:.2}x serial",
                common::ratio(serial.elapsed, self.elapsed)
            ));
        }
        if self.cpu.is_some() {
            notes.push(self.busy());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        println!("Done in {}.{notes}", common::secs(self.elapsed));
        println!("Our results: {:?}", self.values());
        let pids: BTreeSet<u32> = self.chunks.iter().map(|c| c.place.pid).collect();
        let threads: BTreeSet<&str> = self
            .chunks
            .iter()
            .map(|c| c.place.thread.as_str())
            .collect();
        println!("Ran in pids {pids:?} on threads {threads:?}");
    }
}

fn serially(name: &'static str, chunks: &[(f64, f64)]) -> Run {
    let start = Instant::now();
    let chunks = chunks
        .iter()
        .enumerate()
        .map(|(index, &(from, to))| Chunk {
            index,
            value: do_math(from, to),
            place: here(),
        })
        .collect();
    Run {
        name,
        elapsed: start.elapsed(),
        chunks,
        cpu: None,
    }
}

/// Start every chunk, then `.result()` each, in submission order.
fn started(
    name: &'static str,
    chunks: &[(f64, f64)],
    submit: fn(usize, f64, f64) -> Unfinished<Chunk>,
) -> Run {
    let start = Instant::now();
    let handles: Vec<Unfinished<Chunk>> = chunks
        .iter()
        .enumerate()
        .map(|(index, &(from, to))| submit(index, from, to))
        .collect();
    let chunks = handles.into_iter().map(Unfinished::result).collect();
    Run {
        name,
        elapsed: start.elapsed(),
        chunks,
        cpu: None,
    }
}

/// The process pool with a progress bar: `as_completed` over clones of the handles says what
/// finished (its `len()`, what is left), the handles themselves give the results in
/// submission order. On a terminal the bar is drawn on stderr; elsewhere (CI, a pipe)
/// indicatif hides it, and the per-chunk lines still go to stdout.
fn on_the_process_pool(name: &'static str, chunks: &[(f64, f64)]) -> Run {
    let start = Instant::now();
    let handles: Vec<Unfinished<Chunk>> = chunks
        .iter()
        .enumerate()
        .map(|(index, &(from, to))| in_processes(index, from, to))
        .collect();
    let done = unsync::as_completed(handles.iter().cloned());
    let total = done.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} chunks ({elapsed})")
            .expect("a valid template"),
    );
    bar.tick();
    let mut left = done.into_iter();
    while let Some(chunk) = left.next() {
        bar.set_position((total - left.len()) as u64);
        bar.suspend(|| {
            println!(
                "  chunk {} done in {:>5.2} s ({}), {} to go",
                chunk.index,
                start.elapsed().as_secs_f64(),
                chunk.place,
                left.len()
            );
        });
    }
    bar.finish_and_clear();
    let chunks = handles.into_iter().map(Unfinished::result).collect();
    Run {
        name,
        elapsed: start.elapsed(),
        chunks,
        cpu: None,
    }
}

fn main() {
    let main_pid = std::process::id();
    println!("main is {}", here());

    println!(
        "\n== 1. The course's numbers: {} steps in 2 chunks, as on its 2-core reference box",
        common::thousands(COURSE_STEPS as u64)
    );
    let course = split(COURSE_STEPS, 2);
    let no_workers = BTreeSet::new();
    let probe = CpuProbe::start(&no_workers);
    let course_serial = probe.stop(serially("course split, serial", &course));
    course_serial.report(None);
    println!("Process pool, whose first calls start the worker processes:");
    let course_processes = started("course split, process pool (cold)", &course, in_processes);
    course_processes.report(None);
    // The workers whose CPU time counts from now on (the pool keeps them).
    let workers: BTreeSet<u32> = course_processes
        .chunks
        .iter()
        .map(|c| c.place.pid)
        .collect();
    println!(
        "CPython printed {PYTHON_VALUES:?} for this split (in {PYTHON_SERIAL_SECS} s, serially, \
         on a 2-core box)."
    );

    let chunks = split(STEPS, CHUNKS);
    println!(
        "\n== 2. Doing math on {} processors: {} steps in {CHUNKS} chunks",
        cores(),
        common::thousands(STEPS as u64)
    );
    println!("\n-- serial, on the main thread");
    let serial = CpuProbe::start(&workers).stop(serially("serial", &chunks));
    serial.report(None);
    println!("\n-- free threads: #[unsync(parallel)] fn (rayon, one thread per core)");
    let free = CpuProbe::start(&workers).stop(started("free threads", &chunks, on_free_threads));
    free.report(Some(&serial));
    println!(
        "\n-- threads sharing one lock (the GIL stand-in): #[unsync(parallel)] fn, one global \
         lock held for each slice of {} steps",
        common::thousands(SLICE as u64)
    );
    let locked = CpuProbe::start(&workers).stop(started(
        "threads sharing one lock",
        &chunks,
        on_threads_sharing_one_lock,
    ));
    locked.report(Some(&serial));
    {
        let gil = GIL.lock();
        println!(
            "The lock was taken {} times and changed hands {} times.",
            gil.turns, gil.handovers
        );
    }
    println!("\n-- process pool: #[unsync(cpu_bound)] fn, read with as_completed");
    let processes = CpuProbe::start(&workers).stop(on_the_process_pool("process pool", &chunks));
    processes.report(Some(&serial));

    println!();
    for run in [&serial, &free, &locked, &processes] {
        println!(
            "{:<26} {:>7}  {:>5.2}x serial  {}",
            run.name,
            common::secs(run.elapsed),
            common::ratio(serial.elapsed, run.elapsed),
            run.busy()
        );
    }
    // Compiled against interpreted, from CPU time (what the serial run got of a core does not
    // matter), per 30M steps.
    let per_course_split = serial
        .cpu
        .map(|cpu| cpu.mul_f64(COURSE_STEPS / STEPS))
        .unwrap_or(serial.elapsed.mul_f64(COURSE_STEPS / STEPS));
    println!(
        "\nCompiled against interpreted: {} of CPU per {} steps here (from the serial run), \
         against {PYTHON_SERIAL_SECS} s for CPython on a 2-core box: about {:.0}x, every \
         square root computed.",
        common::secs(per_course_split),
        common::thousands(COURSE_STEPS as u64),
        PYTHON_SERIAL_SECS / per_course_split.as_secs_f64()
    );
    println!(
        "Note: the course's Cython chapter reported about 2,000x over Python (\"like 1,000 \
         times\" in its conclusion). Its C loop threw each square root away, so the C compiler \
         deleted the sqrt from the hot loop, and its float32 counter cannot count past 2^24. \
         This kernel adds every square root into its result, goes through \
         std::hint::black_box, and uses f64: the gap above is the honest one, and threads \
         multiply it by up to the core count once they share no lock."
    );

    let mut claims = Claims::new();
    for run in [&course_serial, &course_processes] {
        claims.correct(
            format!("{}: the Python values {PYTHON_VALUES:?}", run.name),
            run.values() == PYTHON_VALUES && run.in_order(),
            format!("{:?}", run.values()),
        );
    }
    for run in [&free, &locked, &processes] {
        claims.correct(
            format!(
                "{}: results equal serial, chunk by chunk, in submission order",
                run.name
            ),
            run.values() == serial.values() && run.in_order(),
            format!(
                "{}/{CHUNKS} equal",
                run.values()
                    .iter()
                    .zip(serial.values())
                    .filter(|(a, b)| **a == *b)
                    .count()
            ),
        );
    }
    let threads_placed = [&free, &locked]
        .iter()
        .flat_map(|r| &r.chunks)
        .all(|c| c.place.pid == main_pid && c.place.on_parallel_pool());
    let worker_pids: BTreeSet<u32> = processes
        .chunks
        .iter()
        .chain(&course_processes.chunks)
        .map(|c| c.place.pid)
        .collect();
    let processes_placed = processes
        .chunks
        .iter()
        .chain(&course_processes.chunks)
        .all(|c| c.place.in_worker_process());
    claims.correct(
        "threads ran in this process on the parallel pool; cpu_bound chunks in worker processes",
        threads_placed && processes_placed,
        format!("worker pids {worker_pids:?}, main pid {main_pid}"),
    );
    let speedup = |run: &Run| common::ratio(serial.elapsed, run.elapsed);
    // The figure says how many cores each run really got: on a busy machine, a run that asks
    // for two may get one, and no code can be faster than the cores it is given.
    let figure = |run: &Run| {
        format!(
            "{:.2}x; {}, serial {:.2}",
            speedup(run),
            run.busy(),
            serial.cores_busy().unwrap_or(f64::NAN)
        )
    };
    claims.speedup(
        "free threads >= 1.5x serial",
        speedup(&free) >= 1.5,
        figure(&free),
    );
    claims.speedup(
        "process pool >= 1.5x serial",
        speedup(&processes) >= 1.5,
        figure(&processes),
    );
    claims.timing(
        "threads sharing one lock <= 1.2x serial (the GIL's lesson)",
        speedup(&locked) <= 1.2,
        figure(&locked),
    );
    claims.finish();
}
