//! The course's producer/consumer lesson (chapter 04) as a generator across a process
//! boundary: a `cpu_bound` parser yields records out of a large file while the main thread
//! consumes them under a progress bar.
//!
//! The course's generator yields values as its caller pulls them, and its producer and
//! consumer meet through a queue. Here the producer is `parse`, an `#[unsync(cpu_bound)] fn`
//! returning `impl Iterator<Item = Parsed>`: calling it starts the iterator in a worker process
//! at once and returns an `UnfinishedStream`, which the main thread reads with a plain `for`.
//! Records cross the pipe in batches as they are parsed, and the worker never runs more than
//! `buffer` (here 1024) records ahead of the reader: memory stays bounded on both sides however
//! large the file, as a generator's would.
//!
//! The input is about 150 MB of CSV sales lines, written first from a seeded generator that
//! also keeps the expected count and totals. Then a second read stops after a few records:
//! dropping the stream stops its worker, and the pool replaces it.
//!
//! Proves: every record arrived, in order, with the totals of the generator; the peak resident
//! memory of the parent and of the worker (`VmHWM`) grew by far less than the input's size
//! (growth: a process's own footprint differs by platform, Wine's is about 70 MB); an
//! early stop freed the worker (its process is gone, and the next stream runs). Timing: the
//! first record arrived long before the parser finished.
//!
//! `cargo run --release --example streaming`

mod common;

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::rng::Rng;
use serde::{Deserialize, Serialize};
use unsync::unsync;

const RECORDS: u64 = 2_000_000;
const REGIONS: [&str; 5] = ["north", "south", "east", "west", "online"];

/// One sales line, parsed.
#[derive(Serialize, Deserialize, Debug)]
struct Record {
    id: u64,
    region: u8,
    cents: u64,
}

/// What the parser yields: its worker's pid and peak resident memory so far first, then the
/// records, then the worker's peak resident memory.
#[derive(Serialize, Deserialize, Debug)]
enum Parsed {
    Begin { pid: u32, peak_kib: u64 },
    Record(Record),
    End { peak_kib: u64 },
}

/// The generator, in a worker process: reads `path` line by line (a 64 KiB buffer, never the
/// whole file) and yields each line parsed.
#[unsync(cpu_bound, buffer = 1024)]
fn parse(path: String) -> impl Iterator<Item = Parsed> {
    let file = std::fs::File::open(path).expect("the input file");
    let lines = std::io::BufReader::with_capacity(64 << 10, file).lines();
    let records = lines.map(|line| Parsed::Record(parse_line(&line.expect("a line of text"))));
    std::iter::once(Parsed::Begin {
        pid: std::process::id(),
        peak_kib: peak_kib(),
    })
    .chain(records)
    .chain(
        std::iter::from_fn(|| {
            Some(Parsed::End {
                peak_kib: peak_kib(),
            })
        })
        .take(1),
    )
}

/// `id,region,sku,cents,customer note`.
fn parse_line(line: &str) -> Record {
    let mut fields = line.split(',');
    let mut next = || fields.next().expect("five fields");
    let id = next().parse().expect("an id");
    let region = next();
    let region = REGIONS.iter().position(|r| *r == region).expect("a region") as u8;
    let _sku = next();
    let cents = next().parse().expect("an amount");
    Record { id, region, cents }
}

/// This process's peak resident memory (`VmHWM`), in KiB; 0 where there is no `/proc`.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What the generator wrote: records, bytes, and the total per region.
struct Written {
    bytes: u64,
    totals: [u64; REGIONS.len()],
}

fn write_input(path: &std::path::Path) -> Written {
    let mut rng = Rng::seeded(15);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut totals = [0; REGIONS.len()];
    let mut bytes = 0;
    for id in 0..RECORDS {
        let region = rng.below(REGIONS.len());
        let cents = rng.range(100, 500_000);
        totals[region] += cents;
        let line = format!(
            "{id},{},SKU-{:08},{cents},customer {} asked for delivery on day {}\n",
            REGIONS[region],
            rng.range(0, 99_999_999),
            rng.range(1, 999_999),
            rng.range(1, 365),
        );
        bytes += line.len() as u64;
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    Written { bytes, totals }
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 40;
    let filled = done * WIDTH / total.max(1);
    format!(
        "[{}{}] {}/{} records",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        common::thousands(done),
        common::thousands(total)
    )
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Wait up to `limit` for process `pid` to be gone; how long it took.
fn wait_until_gone(pid: u32, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while is_alive(pid) {
        if started.elapsed() > limit {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(1));
    }
    Some(started.elapsed())
}

fn main() {
    let parent_start_kib = peak_kib();
    let path = std::env::temp_dir().join(format!("unsync-streaming-{}.csv", std::process::id()));
    let started = Instant::now();
    let written = write_input(&path);
    let input_kib = written.bytes / 1024;
    println!(
        "Wrote {} records, {} MB, in {}.",
        common::thousands(RECORDS),
        written.bytes >> 20,
        common::secs(started.elapsed())
    );

    // 1. Every record, read as the parser yields it, under a progress bar.
    let mut stderr = std::io::stderr();
    let live = stderr.is_terminal();
    let started = Instant::now();
    let mut first_record = None;
    let mut worker = None;
    let mut worker_peak_kib = 0;
    let mut worker_start_kib = 0;
    let mut in_order = true;
    let mut count = 0_u64;
    let mut totals = [0_u64; REGIONS.len()];
    for parsed in parse(path.to_string_lossy().into_owned()) {
        match parsed {
            Parsed::Begin { pid, peak_kib } => {
                worker = Some(pid);
                worker_start_kib = peak_kib;
            }
            Parsed::Record(record) => {
                first_record.get_or_insert_with(|| started.elapsed());
                in_order &= record.id == count;
                totals[usize::from(record.region)] += record.cents;
                count += 1;
                if live && count % 20_000 == 0 {
                    let _ = write!(stderr, "\r{}", bar(count, RECORDS));
                } else if !live && count % (RECORDS / 4) == 0 {
                    let _ = writeln!(stderr, "{}", bar(count, RECORDS)); // a log: a line per quarter
                }
            }
            Parsed::End { peak_kib } => worker_peak_kib = peak_kib,
        }
    }
    if live {
        let _ = writeln!(stderr, "\r{}", bar(count, RECORDS));
    }
    let parsed_in = started.elapsed();
    let first_record = first_record.unwrap_or(parsed_in);
    let parent_peak_kib = peak_kib();
    println!(
        "Read {} records in {} ({:.2} M records/s); the first after {}.",
        common::thousands(count),
        common::secs(parsed_in),
        count as f64 / parsed_in.as_secs_f64() / 1e6,
        common::millis(first_record)
    );
    let parent_growth_kib = parent_peak_kib.saturating_sub(parent_start_kib);
    let worker_growth_kib = worker_peak_kib.saturating_sub(worker_start_kib);
    println!(
        "Peak resident memory: parent {} MB (grew {} MB), worker {} MB (grew {} MB), for an input of {} MB.",
        parent_peak_kib / 1024,
        parent_growth_kib / 1024,
        worker_peak_kib / 1024,
        worker_growth_kib / 1024,
        input_kib / 1024
    );

    // 2. An early stop: a few records, then the stream is dropped.
    let mut again = parse(path.to_string_lossy().into_owned()).into_iter();
    let stopped_worker = match again.next() {
        Some(Parsed::Begin { pid, .. }) => Some(pid),
        _ => None,
    };
    let taken = again.by_ref().take(1000).count();
    drop(again);
    let gone = stopped_worker.and_then(|pid| wait_until_gone(pid, Duration::from_secs(10)));
    let mut next = parse(path.to_string_lossy().into_owned()).into_iter();
    let next_worker = match next.next() {
        Some(Parsed::Begin { pid, .. }) => Some(pid),
        _ => None,
    };
    drop(next);
    println!(
        "Stopped after {taken} records: worker {stopped_worker:?} gone after {}; the next stream ran on worker {next_worker:?}.",
        gone.map_or("never".to_owned(), common::millis)
    );
    let _ = std::fs::remove_file(&path);

    let mut claims = Claims::new();
    claims.correct(
        "every record arrived, in order, with the generator's totals",
        in_order && count == RECORDS && totals == written.totals,
        format!(
            "{} records, in order: {in_order}, totals equal: {}",
            common::thousands(count),
            totals == written.totals
        ),
    );
    claims.correct(
        "peak memory stayed bounded: parent and worker peak RSS grew by < 1/4 of the input",
        worker_peak_kib > 0
            && parent_growth_kib < input_kib / 4
            && worker_growth_kib < input_kib / 4,
        format!(
            "parent grew {} MB, worker grew {} MB, input {} MB",
            parent_growth_kib / 1024,
            worker_growth_kib / 1024,
            input_kib / 1024
        ),
    );
    claims.correct(
        "an early stop freed the worker: its process is gone and the next stream ran",
        taken == 1000
            && gone.is_some()
            && next_worker.is_some_and(|pid| Some(pid) != stopped_worker),
        format!(
            "worker {stopped_worker:?} gone after {}, next on {next_worker:?}",
            gone.map_or("never".to_owned(), common::millis)
        ),
    );
    claims.correct(
        "the records came from a worker process",
        worker.is_some_and(|pid| pid != std::process::id()),
        format!("worker {worker:?}, main {}", std::process::id()),
    );
    claims.timing(
        "the first record arrived before 1/10 of the parse was done",
        first_record < parsed_in / 10,
        format!(
            "{} of {}",
            common::millis(first_record),
            common::secs(parsed_in)
        ),
    );
    claims.finish();
}
