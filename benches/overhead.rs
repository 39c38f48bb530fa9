//! What the convenience costs: each mode of unsync against the raw executor it wraps,
//! measured in the same run, so that machine drift cancels out in the ratios.
//!
//! ```sh
//! cargo bench --bench overhead              # full run
//! cargo bench --bench overhead -- --quick   # under a minute
//! ```
//!
//! Prints a table and writes the same figures to `target/bench/overhead.json`.
//!
//! | case | unsync | raw baseline |
//! |---|---|---|
//! | async | `#[unsync] async fn` | `tokio::spawn` on a 2-worker runtime, waited from a plain thread |
//! | thread | `#[unsync] fn` | `tokio::task::spawn_blocking`, waited from a plain thread |
//! | parallel | `#[unsync(parallel)] fn` | `rayon::spawn` on a 2-thread pool + a oneshot |
//! | process | `#[unsync(cpu_bound)] fn` echo, 8 B and 1 MiB | a pipe echo to this executable re-executed, same codec (postcard) |
//! | thread stream | `#[unsync] fn -> impl Iterator`, items read from a plain thread | std `sync_channel(16)` fed by a thread |
//! | async stream | `#[unsync] fn -> impl Stream`, items read from a plain thread | tokio `mpsc::channel(16)` fed by a task |
//! | process stream | `#[unsync(cpu_bound)] fn -> impl Iterator<Item = u64>` (buffer 16, and 1024) | this executable re-executed, writing the same postcard items to a pipe as fast as it is read |
//! | large payloads | `#[unsync(cpu_bound)] fn` echo of a `Vec<u8>` of 1, 16 and 64 MiB (the call only: the argument is made before, the result dropped after) | one `copy_from_slice` of that size into a buffer already written once |

use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use unsync::unsync;

const RAW_ECHO_ENV: &str = "OVERHEAD_RAW_ECHO";
const RAW_ITEMS_ENV: &str = "OVERHEAD_RAW_ITEMS";
const MEMORY_ENV: &str = "OVERHEAD_MEMORY";
/// Set in a child that measures the async and 8-byte process latencies again in another
/// setting: `pinned` or `busy` (see [`Setting`]).
const SETTING_ENV: &str = "OVERHEAD_SETTING";
/// Set in a process that keeps one CPU busy until its stdin closes (see [`Setting::Busy`]).
const BUSY_ENV: &str = "OVERHEAD_BUSY";

#[unsync]
async fn async_trivial(x: u64) -> u64 {
    x + 1
}

#[unsync]
fn thread_trivial(x: u64) -> u64 {
    x + 1
}

#[unsync(parallel)]
fn parallel_trivial(x: u64) -> u64 {
    x + 1
}

#[unsync(cpu_bound)]
fn process_echo(data: Vec<u8>) -> Vec<u8> {
    data
}

#[unsync(cpu_bound)]
fn process_kernel(steps: u64) -> f64 {
    kernel(steps)
}

#[unsync(parallel)]
fn parallel_kernel(steps: u64) -> f64 {
    kernel(steps)
}

/// A trivial streaming function on the blocking pool (default buffer: 16 items).
#[unsync]
fn thread_count(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// A trivial streaming function on the async runtime (default buffer: 16 items).
#[unsync]
fn async_count(n: u64) -> impl futures::Stream<Item = u64> {
    futures::stream::iter(0..n)
}

/// The same buffer size as a streaming function's default.
const STREAM_BUFFER: usize = 16;

/// A trivial streaming function in a worker process (default buffer: 16 items).
#[unsync(cpu_bound)]
fn process_count(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// The same, with a buffer of 1024 items: fewer credit round trips between the processes.
#[unsync(cpu_bound, buffer = 1024)]
fn process_count_wide(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// The raw baseline for process streams: this executable re-executed, which reads a count `n`
/// (8 bytes) on stdin and writes `0..n` as postcard `u64`s (varints) to stdout, buffered.
struct RawItems {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl RawItems {
    fn start() -> RawItems {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(RAW_ITEMS_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let to = child.stdin.take().unwrap();
        let from = BufReader::with_capacity(64 << 10, child.stdout.take().unwrap());
        RawItems { child, to, from }
    }

    /// Ask for `n` items and read them: their sum.
    fn sum(&mut self, n: u64) -> u64 {
        self.to.write_all(&n.to_le_bytes()).unwrap();
        self.to.flush().unwrap();
        let mut sum = 0;
        for _ in 0..n {
            sum += read_varint(&mut self.from);
        }
        sum
    }
}

impl Drop for RawItems {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A postcard `u64` (LEB128), byte by byte from a buffered reader.
fn read_varint(from: &mut BufReader<ChildStdout>) -> u64 {
    let mut value = 0;
    for shift in (0..70).step_by(7) {
        let mut byte = [0];
        from.read_exact(&mut byte).unwrap();
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    value
}

fn raw_items_main() {
    let mut from = std::io::stdin().lock();
    let mut to = BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut n = [0; 8];
    let mut item = Vec::with_capacity(10);
    while from.read_exact(&mut n).is_ok() {
        for i in 0..u64::from_le_bytes(n) {
            item.clear();
            item = postcard::to_extend(&i, item).unwrap();
            to.write_all(&item).unwrap();
        }
        to.flush().unwrap();
    }
}

/// Items per second of `u64` out of a worker process, with buffers of 16 and 1024, against a
/// raw pipe moving the same items: the best of three runs each, alternated.
fn process_stream_rates(s: &Settings) -> [(&'static str, f64, f64); 2] {
    let n: u64 = if s.quick { 500_000 } else { 2_000_000 };
    let rate = |run: &mut dyn FnMut() -> u64| {
        let start = Instant::now();
        assert_eq!(run(), n * (n - 1) / 2);
        n as f64 / start.elapsed().as_secs_f64()
    };
    let mut raw = RawItems::start();
    let (mut narrow, mut wide, mut raw_best) = (0.0_f64, 0.0_f64, 0.0_f64);
    for _ in 0..3 {
        narrow = narrow.max(rate(&mut || process_count(n).into_iter().sum()));
        wide = wide.max(rate(&mut || process_count_wide(n).into_iter().sum()));
        raw_best = raw_best.max(rate(&mut || raw.sum(n)));
    }
    [
        ("process stream, buffer 16", narrow, raw_best),
        ("process stream, buffer 1024", wide, raw_best),
    ]
}

/// Items per second through a stream read from a plain thread, against a raw bounded channel
/// of the same capacity read the same way: the best of three runs each, alternated.
fn stream_rates(s: &Settings) -> [(&'static str, f64, f64); 2] {
    let n: u64 = if s.quick { 200_000 } else { 1_000_000 };
    let rate = |run: &dyn Fn() -> u64| {
        let start = Instant::now();
        assert_eq!(run(), n * (n - 1) / 2);
        n as f64 / start.elapsed().as_secs_f64()
    };
    let thread_raw = || {
        let (tx, rx) = std::sync::mpsc::sync_channel(STREAM_BUFFER);
        let producer = std::thread::spawn(move || (0..n).for_each(|i| tx.send(i).unwrap()));
        let sum = rx.iter().sum();
        producer.join().unwrap();
        sum
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let async_raw = || {
        let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        runtime.spawn(async move {
            for i in 0..n {
                tx.send(i).await.unwrap();
            }
        });
        let mut sum = 0;
        while let Some(i) = rx.blocking_recv() {
            sum += i;
        }
        sum
    };
    let best = |run: &dyn Fn() -> u64, raw: &dyn Fn() -> u64| {
        let (mut lib, mut raw_best) = (0.0_f64, 0.0_f64);
        for _ in 0..3 {
            lib = lib.max(rate(run));
            raw_best = raw_best.max(rate(raw));
        }
        (lib, raw_best)
    };
    let (thread_lib, thread_raw) = best(&|| thread_count(n).into_iter().sum(), &thread_raw);
    let (async_lib, async_raw) = best(&|| async_count(n).into_iter().sum(), &async_raw);
    [
        ("thread stream", thread_lib, thread_raw),
        ("async stream", async_lib, async_raw),
    ]
}

/// The mixed-mode scenario in miniature, the same shape as `benches/python_unsync.py`'s.
#[unsync]
async fn mixed_wait() {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[unsync]
fn mixed_block() {
    std::thread::sleep(Duration::from_millis(200));
}

/// The course's math loop (f64, folded, not optimised away).
fn kernel(steps: u64) -> f64 {
    let mut acc = 0.0_f64;
    for i in 0..steps {
        acc += black_box((i as f64 - 1_000_000.0).abs().sqrt());
    }
    acc
}

struct Settings {
    quick: bool,
}

impl Settings {
    fn rounds(&self, full: usize) -> usize {
        if self.quick {
            (full / 5).max(200)
        } else {
            full
        }
    }
}

/// Latency: median and p90 of sequential round trips, in µs.
#[derive(Clone, Copy)]
struct Latency {
    median: f64,
    p90: f64,
    /// CPU time of this whole process (every thread) per round trip, µs: what waiting costs
    /// in spinning and wake-ups, next to what it saves in latency.
    cpu: f64,
}

/// CPU time used so far by every thread of this process, in µs.
#[cfg(unix)]
fn process_cpu_micros() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is given, which is zeroed and ours.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// Not measured on Windows (the figures in `benches/README.md` come from Linux).
#[cfg(windows)]
fn process_cpu_micros() -> f64 {
    f64::NAN
}

/// Round-trip latency of `raw` and `lib`, measured in alternating blocks so that drift in the
/// machine (load, frequency, where the scheduler placed the threads) hits both alike.
fn latency_pair(
    rounds: usize,
    mut raw: impl FnMut(u64),
    mut lib: impl FnMut(u64),
) -> (Latency, Latency) {
    for i in 0..(rounds / 10).max(50) {
        raw(i as u64);
        lib(i as u64);
    }
    const BLOCKS: usize = 10;
    let per_block = (rounds / BLOCKS).max(1);
    let mut samples = [Vec::new(), Vec::new()];
    let mut cpu = [0.0_f64; 2];
    for block in 0..BLOCKS {
        for turn in 0..2 {
            // Alternate which side goes first, so neither always follows the other.
            let side = (block + turn) % 2;
            let round_trip: &mut dyn FnMut(u64) = if side == 0 { &mut raw } else { &mut lib };
            let cpu_start = process_cpu_micros();
            for i in 0..per_block {
                let start = Instant::now();
                round_trip(i as u64);
                samples[side].push(start.elapsed().as_secs_f64() * 1e6);
            }
            cpu[side] += process_cpu_micros() - cpu_start;
        }
    }
    let summarize = |mut samples: Vec<f64>, cpu: f64| {
        samples.sort_by(f64::total_cmp);
        Latency {
            median: samples[samples.len() / 2],
            p90: samples[samples.len() * 9 / 10],
            cpu: cpu / samples.len() as f64,
        }
    };
    let [raw_samples, lib_samples] = samples;
    (
        summarize(raw_samples, cpu[0]),
        summarize(lib_samples, cpu[1]),
    )
}

/// Bursts per side and case: their rate varies by ±15% from one to the next on a VM (how
/// fast idle workers wake up), so the median of many.
const BURST_REPEATS: usize = 11;

/// Throughput of bursts (submit `n`, then collect), raw and lib alternating, `repeats` each;
/// the median of each side, tasks/s.
fn burst_pair<R, L>(
    n: usize,
    repeats: usize,
    (mut raw_submit, mut raw_collect): (impl FnMut(u64) -> R, impl FnMut(R) -> u64),
    (mut lib_submit, mut lib_collect): (impl FnMut(u64) -> L, impl FnMut(L) -> u64),
) -> (f64, f64) {
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..repeats {
        for turn in 0..2 {
            let side = (round + turn) % 2;
            let start = Instant::now();
            let sum: u64 = if side == 0 {
                let handles: Vec<R> = (0..n as u64).map(&mut raw_submit).collect();
                handles.into_iter().map(&mut raw_collect).sum()
            } else {
                let handles: Vec<L> = (0..n as u64).map(&mut lib_submit).collect();
                handles.into_iter().map(&mut lib_collect).sum()
            };
            assert_eq!(sum, (1..=n as u64).sum::<u64>(), "every task ran once");
            rates[side].push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let [raw, lib] = rates;
    (median_of(raw), median_of(lib))
}

struct Row {
    case: String,
    lib: Latency,
    raw: Latency,
    lib_burst: f64,
    raw_burst: f64,
}

impl Row {
    fn json(&self) -> String {
        format!(
            "{{\"case\":\"{}\",\"latency_us\":{{\"unsync_median\":{:.2},\"unsync_p90\":{:.2},\"raw_median\":{:.2},\"raw_p90\":{:.2},\"ratio\":{:.3},\"unsync_cpu_per_call\":{:.2},\"raw_cpu_per_call\":{:.2}}},\"burst_per_s\":{{\"unsync\":{:.0},\"raw\":{:.0},\"ratio\":{:.3}}}}}",
            self.case,
            self.lib.median,
            self.lib.p90,
            self.raw.median,
            self.raw.p90,
            self.lib.median / self.raw.median,
            self.lib.cpu,
            self.raw.cpu,
            self.lib_burst,
            self.raw_burst,
            self.lib_burst / self.raw_burst
        )
    }
}

fn async_case(s: &Settings) -> Row {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (raw, lib) = latency_pair(
        s.rounds(20_000),
        |i| {
            let h = rt.spawn(async move { i + 1 });
            black_box(futures::executor::block_on(h).unwrap());
        },
        |i| {
            black_box(async_trivial(i).result());
        },
    );
    let n = if s.quick { 20_000 } else { 100_000 };
    let (raw_burst, lib_burst) = burst_pair(
        n,
        BURST_REPEATS,
        (
            |i| rt.spawn(async move { i + 1 }),
            |h| futures::executor::block_on(h).unwrap(),
        ),
        (async_trivial, |h| h.result()),
    );
    Row {
        case: "async".into(),
        lib,
        raw,
        lib_burst,
        raw_burst,
    }
}

fn thread_case(s: &Settings) -> Row {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (raw, lib) = latency_pair(
        s.rounds(20_000),
        |i| {
            let h = rt.spawn_blocking(move || i + 1);
            black_box(futures::executor::block_on(h).unwrap());
        },
        |i| {
            black_box(thread_trivial(i).result());
        },
    );
    let n = if s.quick { 20_000 } else { 100_000 };
    let (raw_burst, lib_burst) = burst_pair(
        n,
        BURST_REPEATS,
        (
            |i| rt.spawn_blocking(move || i + 1),
            |h| futures::executor::block_on(h).unwrap(),
        ),
        (thread_trivial, |h| h.result()),
    );
    Row {
        case: "thread".into(),
        lib,
        raw,
        lib_burst,
        raw_burst,
    }
}

fn parallel_case(s: &Settings) -> Row {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let raw_spawn = |i: u64| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        pool.spawn(move || {
            let _ = tx.send(i + 1);
        });
        rx
    };
    let (raw, lib) = latency_pair(
        s.rounds(20_000),
        |i| {
            black_box(raw_spawn(i).blocking_recv().unwrap());
        },
        |i| {
            black_box(parallel_trivial(i).result());
        },
    );
    let n = if s.quick { 20_000 } else { 100_000 };
    let (raw_burst, lib_burst) = burst_pair(
        n,
        BURST_REPEATS,
        (raw_spawn, |rx: tokio::sync::oneshot::Receiver<u64>| {
            rx.blocking_recv().unwrap()
        }),
        (parallel_trivial, |h| h.result()),
    );
    Row {
        case: "parallel".into(),
        lib,
        raw,
        lib_burst,
        raw_burst,
    }
}

/// The raw baseline for processes: this executable re-executed, echoing frames (a `u32`
/// length, then postcard) on stdin/stdout.
struct RawEcho {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl RawEcho {
    fn start() -> RawEcho {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(RAW_ECHO_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let to = BufWriter::new(child.stdin.take().unwrap());
        let from = BufReader::new(child.stdout.take().unwrap());
        RawEcho { child, to, from }
    }

    fn send(&mut self, payload: &[u8]) {
        let encoded = postcard::to_allocvec(&serde_bytes::Bytes::new(payload)).unwrap();
        self.to
            .write_all(&(encoded.len() as u32).to_le_bytes())
            .unwrap();
        self.to.write_all(&encoded).unwrap();
    }

    fn flush(&mut self) {
        self.to.flush().unwrap();
    }

    fn receive(&mut self) -> Vec<u8> {
        let frame = read_frame(&mut self.from).expect("the echo answers");
        postcard::from_bytes::<serde_bytes::ByteBuf>(&frame)
            .unwrap()
            .into_vec()
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_frame(from: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0; 4];
    from.read_exact(&mut len).ok()?;
    let mut frame = vec![0; u32::from_le_bytes(len) as usize];
    from.read_exact(&mut frame).ok()?;
    Some(frame)
}

fn raw_echo_main() {
    let mut from = BufReader::new(std::io::stdin().lock());
    let mut to = BufWriter::new(std::io::stdout().lock());
    while let Some(frame) = read_frame(&mut from) {
        let data = postcard::from_bytes::<serde_bytes::ByteBuf>(&frame)
            .unwrap()
            .into_vec();
        let encoded = postcard::to_allocvec(&serde_bytes::Bytes::new(&data)).unwrap();
        to.write_all(&(encoded.len() as u32).to_le_bytes()).unwrap();
        to.write_all(&encoded).unwrap();
        if from.buffer().is_empty() {
            to.flush().unwrap();
        }
    }
}

fn process_case(s: &Settings, size: usize, label: &str) -> Row {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut raw_echo = RawEcho::start();
    let rounds = if size > 1024 {
        s.rounds(500)
    } else {
        s.rounds(10_000)
    };
    let (raw, lib) = latency_pair(
        rounds,
        |_| {
            raw_echo.send(&payload);
            raw_echo.flush();
            black_box(raw_echo.receive());
        },
        |_| {
            black_box(process_echo(payload.clone()).result());
        },
    );
    let n = if size > 1024 {
        if s.quick { 200 } else { 1000 }
    } else if s.quick {
        5_000
    } else {
        10_000
    };
    // Pipelined bursts: submit n, then collect; raw and unsync alternating.
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for turn in 0..2 {
            let side = (round + turn) % 2;
            let start = Instant::now();
            if side == 0 {
                let mut sent = 0;
                let mut got = 0;
                // Keep the pipe full without deadlocking on it: at most 256 KiB ahead.
                let window = (256 << 10) / size.max(1) + 1;
                while got < n {
                    while sent < n && sent - got < window {
                        raw_echo.send(&payload);
                        sent += 1;
                    }
                    raw_echo.flush();
                    assert_eq!(raw_echo.receive().len(), size);
                    got += 1;
                }
            } else {
                let handles: Vec<_> = (0..n).map(|_| process_echo(payload.clone())).collect();
                for h in handles {
                    assert_eq!(h.result().len(), size);
                }
            }
            rates[side].push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let [raw_rates, lib_rates] = rates;
    Row {
        case: label.into(),
        lib,
        raw,
        lib_burst: median_of(lib_rates),
        raw_burst: median_of(raw_rates),
    }
}

/// Where a child process measures the async and 8-byte process latencies again.
#[derive(Clone, Copy)]
enum Setting {
    /// The child pinned to one CPU (as under `taskset -c 0`, before any thread starts, so that
    /// every thread and worker process it starts is pinned too).
    Pinned,
    /// Every CPU but one kept busy by another process (a spinning loop each) while it measures:
    /// a loaded machine, where the scheduler runs both ends of a round trip on one CPU.
    Busy,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::Pinned => "pinned",
            Setting::Busy => "busy",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Setting::Pinned => "the whole process pinned to one CPU",
            Setting::Busy => "the other CPUs busy with another process",
        }
    }
}

/// In a child process, in `setting`: the latency ratios of the async and 8-byte process cases,
/// one `<case>\t<ratio>` line each. Nothing where the setting cannot be made.
fn setting_main(s: &Settings, setting: &str) {
    let busy = match setting {
        "pinned" if pin_to_one_cpu() => Vec::new(),
        "busy" => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            // On one CPU there is no other CPU to keep busy.
            if cpus < 2 {
                return;
            }
            (1..cpus).filter_map(|_| keep_a_cpu_busy()).collect()
        }
        _ => return,
    };
    let _ = (async_trivial(0).result(), process_echo(vec![1]).result());
    for row in [async_case(s), process_case(s, 8, "process 8 B")] {
        println!("{}\t{}", row.case, row.lib.median / row.raw.median);
        // Run alone (`OVERHEAD_SETTING=...`), the figures behind each ratio.
        eprintln!(
            "{}: unsync p50 {:.1} µs, raw p50 {:.1} µs",
            row.case, row.lib.median, row.raw.median
        );
    }
    for mut busy in busy {
        drop(busy.stdin.take());
        let _ = busy.wait();
    }
}

/// A process that spins until its stdin closes.
fn keep_a_cpu_busy() -> Option<Child> {
    Command::new(std::env::current_exe().ok()?)
        .env(BUSY_ENV, "1")
        .stdin(Stdio::piped())
        .spawn()
        .ok()
}

fn busy_main() {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done_reading = done.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        done_reading.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        std::hint::spin_loop();
    }
}

/// Restrict this process to the first CPU it may run on.
#[cfg(target_os = "linux")]
fn pin_to_one_cpu() -> bool {
    // SAFETY: a zeroed `cpu_set_t` is an empty set, and each call gets a valid pointer to one
    // and its size.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return false;
        }
        let Some(first) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &allowed))
        else {
            return false;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        libc::sched_setaffinity(0, size, &one) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to_one_cpu() -> bool {
    false
}

/// The latency ratios of [`setting_main`], by case, from a child process.
fn setting_ratios(setting: Setting, quick: bool) -> Vec<(String, f64)> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(SETTING_ENV, setting.name());
    if quick {
        command.arg("--quick");
    }
    let Ok(output) = command.output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (case, ratio) = line.split_once('\t')?;
            Some((case.to_owned(), ratio.parse().ok()?))
        })
        .collect()
}

/// Peak RSS of a child process that holds `n` pending async tasks (unsync or raw tokio).
fn memory_child(kind: &str) {
    let n: usize = 1_000_000;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let baseline = peak_rss_kib();
    match kind {
        "raw" => {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let mut rx = rx.clone();
                    rt.spawn(async move {
                        let _ = rx.changed().await;
                    })
                })
                .collect();
            println!("{}", peak_rss_kib() - baseline);
            let _ = tx.send(true);
            drop(handles);
        }
        _ => {
            #[unsync]
            async fn pending(mut rx: tokio::sync::watch::Receiver<bool>) {
                let _ = rx.changed().await;
            }
            let _ = unsync::runtime();
            let baseline = peak_rss_kib();
            let handles: Vec<_> = (0..n).map(|_| pending(rx.clone())).collect();
            println!("{}", peak_rss_kib() - baseline);
            let _ = tx.send(true);
            drop(handles);
        }
    }
}

fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn bytes_per_pending_task(kind: &str) -> f64 {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_ENV, kind)
        .output()
        .unwrap();
    let kib: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    kib * 1024.0 / 1e6
}

/// Large payloads: for each size, (bytes, median ms of one memcpy of that size, median ms of a
/// `cpu_bound` echo round trip of it), measured alternately.
fn large_payloads(s: &Settings) -> Vec<(usize, f64, f64)> {
    [(1 << 20, 40), (16 << 20, 16), (64 << 20, 8)]
        .into_iter()
        .map(|(size, rounds)| {
            let rounds = if s.quick { rounds / 2 } else { rounds };
            let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let mut target = vec![1_u8; size];
            let _ = process_echo(payload.clone()).result();
            let (mut copies, mut trips) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let start = Instant::now();
                target.copy_from_slice(black_box(&payload));
                copies.push(start.elapsed().as_secs_f64() * 1e3);
                black_box(&target);
                let argument = payload.clone();
                let start = Instant::now();
                let echoed = process_echo(argument).result();
                trips.push(start.elapsed().as_secs_f64() * 1e3);
                assert_eq!(echoed.len(), size);
            }
            (size, median_of(copies), median_of(trips))
        })
        .collect()
}

fn median_of(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    if std::env::var_os(RAW_ECHO_ENV).is_some() {
        return raw_echo_main();
    }
    if std::env::var_os(RAW_ITEMS_ENV).is_some() {
        return raw_items_main();
    }
    if std::env::var_os(BUSY_ENV).is_some() {
        return busy_main();
    }
    if let Some(kind) = std::env::var_os(MEMORY_ENV) {
        return memory_child(&kind.to_string_lossy());
    }
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var_os("OVERHEAD_QUICK").is_some();
    let s = Settings { quick };
    if let Some(setting) = std::env::var_os(SETTING_ENV) {
        return setting_main(&s, &setting.to_string_lossy());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    let started = Instant::now();
    println!(
        "unsync overhead benchmark ({}), {cores} cores, load average {load_before}",
        if quick { "quick" } else { "full" }
    );

    // Warm the pools (and start the worker processes) outside the measurements.
    let _ = (
        async_trivial(0).result(),
        thread_trivial(0).result(),
        parallel_trivial(0).result(),
    );
    let _ = process_echo(vec![1]).result();

    let rows = vec![
        async_case(&s),
        thread_case(&s),
        parallel_case(&s),
        process_case(&s, 8, "process 8 B"),
        process_case(&s, 1 << 20, "process 1 MiB"),
    ];

    // Process-pool cold start: the first call after the pool was shut down.
    let cold: Vec<f64> = (0..if quick { 3 } else { 7 })
        .map(|_| {
            unsync::shutdown(Duration::from_secs(10));
            let start = Instant::now();
            black_box(process_echo(vec![1]).result());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cold_ms = median_of(cold);

    // CPU scaling of one kernel over 2 tasks against 1.
    let steps = if quick { 20_000_000 } else { 60_000_000 };
    let scale = |run: &dyn Fn(u64) -> f64| {
        let one = Instant::now();
        black_box(run(steps));
        let one = one.elapsed().as_secs_f64();
        let two = Instant::now();
        black_box(run(steps / 2));
        let two = two.elapsed().as_secs_f64();
        one / two
    };
    let rayon_scaling = scale(&|steps| {
        let halves = [parallel_kernel(steps), parallel_kernel(steps)];
        halves.into_iter().map(|h| h.result()).sum()
    }) / 1.0;
    let process_scaling = scale(&|steps| {
        let halves = [process_kernel(steps), process_kernel(steps)];
        halves.into_iter().map(|h| h.result()).sum()
    });
    // The mixed-mode scenario of `benches/python_unsync.py`: 3 CPU calls (10M steps split in
    // three) on the process pool, 4 async tasks of 100 1-ms sleeps, 2 blocking 0.2-s sleeps,
    // all started, then collected. Wall time: bounded below by the 0.2-s sleeps.
    let mixed_s = {
        let start = Instant::now();
        let cpu: Vec<_> = (0..3).map(|_| process_kernel(10_000_000 / 3)).collect();
        let waits: Vec<_> = (0..4).map(|_| mixed_wait()).collect();
        let blocks: Vec<_> = (0..2).map(|_| mixed_block()).collect();
        black_box(cpu.into_iter().map(|h| h.result()).sum::<f64>());
        waits.into_iter().for_each(|h| h.result());
        blocks.into_iter().for_each(|h| h.result());
        start.elapsed().as_secs_f64()
    };
    let streams = stream_rates(&s);
    let process_streams = process_stream_rates(&s);
    let payloads = large_payloads(&s);
    let mem_raw = bytes_per_pending_task("raw");
    let mem_lib = bytes_per_pending_task("unsync");
    let settings: Vec<(Setting, Vec<(String, f64)>)> = [Setting::Pinned, Setting::Busy]
        .into_iter()
        .map(|setting| (setting, setting_ratios(setting, quick)))
        .collect();
    let load_after = load_average();

    println!();
    println!(
        "{:<14} {:>11} {:>11} {:>11} {:>11} {:>6}  {:>9} {:>9}   {:>10} {:>10} {:>6}",
        "case",
        "unsync p50",
        "unsync p90",
        "raw p50",
        "raw p90",
        "ratio",
        "cpu/call",
        "raw cpu",
        "unsync/s",
        "raw/s",
        "ratio"
    );
    for r in &rows {
        println!(
            "{:<14} {:>9.1}µs {:>9.1}µs {:>9.1}µs {:>9.1}µs {:>6.2}  {:>7.1}µs {:>7.1}µs   {:>10.0} {:>10.0} {:>6.2}",
            r.case,
            r.lib.median,
            r.lib.p90,
            r.raw.median,
            r.raw.p90,
            r.lib.median / r.raw.median,
            r.lib.cpu,
            r.raw.cpu,
            r.lib_burst,
            r.raw_burst,
            r.lib_burst / r.raw_burst
        );
    }
    println!("(cpu/call: CPU time of every thread of this process per sequential round trip)");
    println!();
    println!("process pool cold start (first call of a fresh pool): {cold_ms:.1} ms");
    println!(
        "CPU kernel on 2 rayon tasks vs 1: {rayon_scaling:.2}x; on 2 worker processes vs 1: {process_scaling:.2}x"
    );
    println!(
        "memory per pending async task (1M pending, peak RSS): unsync {mem_lib:.0} B, raw tokio JoinHandle + task {mem_raw:.0} B ({:.2}x)",
        mem_lib / mem_raw
    );
    for (setting, ratios) in &settings {
        for (case, ratio) in ratios {
            println!("{case} latency, {}: {ratio:.2}x raw", setting.described());
        }
    }
    println!(
        "mixed mode (3 CPU calls on processes, 4 async waits, 2 blocking waits, as in benches/python_unsync.py): {mixed_s:.2} s"
    );
    for (case, lib, raw) in &streams {
        println!(
            "{case} (buffer {STREAM_BUFFER}, read from a plain thread): {lib:.0} items/s, raw bounded channel {raw:.0} items/s ({:.2}x)",
            lib / raw
        );
    }
    for (case, lib, raw) in &process_streams {
        println!(
            "{case} (u64 items, read from a plain thread): {lib:.0} items/s, raw pipe {raw:.0} items/s ({:.2}x)",
            lib / raw
        );
    }

    let row = |case: &str| rows.iter().find(|r| r.case == case).expect("measured case");
    // A round trip of N bytes, less the 8-byte round trip's latency, in memcpys of N.
    let small_trip_ms = row("process 8 B").lib.median / 1e3;
    let payload_ratio = |(_, copy, trip): &(usize, f64, f64)| (trip - small_trip_ms) / copy;
    for payload in &payloads {
        let (size, copy, trip) = *payload;
        println!(
            "cpu_bound echo of {:>2} MiB: {trip:>7.2} ms, memcpy {copy:>6.2} ms: {:.2} memcpys beyond the 8 B round trip",
            size >> 20,
            payload_ratio(payload),
        );
    }

    // The issue's targets, all ratios against the raw executor in this run (or absolute rates).
    let lat = |case: &str| row(case).lib.median / row(case).raw.median;
    let thr = |case: &str| row(case).lib_burst / row(case).raw_burst;
    let mut targets: Vec<(String, f64, bool)> = vec![
        (
            "async latency ratio <= 1.3".into(),
            lat("async"),
            lat("async") <= 1.3,
        ),
        (
            "async burst ratio >= 0.75".into(),
            thr("async"),
            thr("async") >= 0.75,
        ),
        (
            "parallel latency ratio <= 1.3".into(),
            lat("parallel"),
            lat("parallel") <= 1.3,
        ),
        (
            "parallel burst ratio >= 0.75".into(),
            thr("parallel"),
            thr("parallel") >= 0.75,
        ),
        (
            "thread latency ratio <= 1.3".into(),
            lat("thread"),
            lat("thread") <= 1.3,
        ),
        (
            "thread burst >= 800000 tasks/s".into(),
            row("thread").lib_burst,
            row("thread").lib_burst >= 800_000.0,
        ),
        (
            "thread burst >= 6x spawn_blocking".into(),
            thr("thread"),
            thr("thread") >= 6.0,
        ),
        (
            "process 8 B latency ratio <= 1.3".into(),
            lat("process 8 B"),
            lat("process 8 B") <= 1.3,
        ),
        (
            "process 1 MiB latency ratio <= 1.2".into(),
            lat("process 1 MiB"),
            lat("process 1 MiB") <= 1.2,
        ),
        (
            "process 8 B pipelined >= 600000 calls/s".into(),
            row("process 8 B").lib_burst,
            row("process 8 B").lib_burst >= 600_000.0,
        ),
        (
            "CPU kernel, 2 rayon tasks >= 1.8x one".into(),
            rayon_scaling,
            rayon_scaling >= 1.8,
        ),
        (
            "CPU kernel, 2 worker processes >= 1.8x one".into(),
            process_scaling,
            process_scaling >= 1.8,
        ),
        (
            "thread stream >= 0.7x sync_channel(16)".into(),
            streams[0].1 / streams[0].2,
            streams[0].1 / streams[0].2 >= 0.7,
        ),
        (
            "async stream >= 0.7x tokio mpsc(16)".into(),
            streams[1].1 / streams[1].2,
            streams[1].1 / streams[1].2 >= 0.7,
        ),
        (
            "cpu_bound stream (buffer 1024) >= 1000000 u64/s".into(),
            process_streams[1].1,
            process_streams[1].1 >= 1_000_000.0,
        ),
        (
            "echo of 1 MiB <= 5 memcpys + 8 B trip".into(),
            payload_ratio(&payloads[0]),
            payload_ratio(&payloads[0]) <= 5.0,
        ),
        (
            "echo of 16 MiB <= 5 memcpys + 8 B trip".into(),
            payload_ratio(&payloads[1]),
            payload_ratio(&payloads[1]) <= 5.0,
        ),
        (
            "echo of 64 MiB <= 5 memcpys + 8 B trip".into(),
            payload_ratio(&payloads[2]),
            payload_ratio(&payloads[2]) <= 5.0,
        ),
        (
            "memory per pending async handle <= 2x raw".into(),
            mem_lib / mem_raw,
            mem_lib / mem_raw <= 2.0,
        ),
    ];
    for (setting, ratios) in &settings {
        for (case, ratio) in ratios {
            targets.push((
                format!("{case} latency ratio <= 1.3, {}", setting.name()),
                *ratio,
                *ratio <= 1.3,
            ));
        }
    }
    println!();
    println!("targets (2-core machine):");
    for (target, value, met) in &targets {
        println!(
            "  {target:<44} {:>6}  ({value:.2})",
            if *met { "met" } else { "MISSED" }
        );
    }
    println!(
        "load average before {load_before}, after {load_after}; took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let targets_json = targets
        .iter()
        .map(|(target, value, met)| {
            format!("{{\"target\":\"{target}\",\"value\":{value:.3},\"met\":{met}}}")
        })
        .collect::<Vec<_>>()
        .join(",");
    let cases = rows.iter().map(Row::json).collect::<Vec<_>>().join(",");
    let mem_ratio = mem_lib / mem_raw;
    let payloads_json = payloads
        .iter()
        .map(|(size, copy, trip)| {
            format!("{{\"bytes\":{size},\"memcpy\":{copy:.3},\"round_trip\":{trip:.3}}}")
        })
        .collect::<Vec<_>>()
        .join(",");
    let [(_, stream_16, raw_pipe), (_, stream_1024, _)] = process_streams;
    // Every argument named: positional ones once swapped two fields here.
    let json = format!(
        "{{\"quick\":{quick},\"cores\":{cores},\"load_before\":\"{load_before}\",\"load_after\":\"{load_after}\",\"cases\":[{cases}],\"process_cold_start_ms\":{cold_ms:.2},\"scaling\":{{\"rayon_2_vs_1\":{rayon_scaling:.3},\"processes_2_vs_1\":{process_scaling:.3}}},\"memory_bytes_per_pending_task\":{{\"unsync\":{mem_lib:.0},\"raw\":{mem_raw:.0},\"ratio\":{mem_ratio:.3}}},\"mixed_mode_s\":{mixed_s:.3},\"large_payloads_ms\":[{payloads_json}],\"process_streams_items_per_s\":{{\"buffer_16\":{stream_16:.0},\"buffer_1024\":{stream_1024:.0},\"raw_pipe\":{raw_pipe:.0}}},\"targets\":[{targets_json}]}}\n",
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("overhead.json"), json).unwrap();
    println!("wrote {}", dir.join("overhead.json").display());
}
