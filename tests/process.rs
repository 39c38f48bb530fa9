//! `#[unsync(cpu_bound)]` with real worker processes: values, panics, crashes, kills,
//! cancellation, timeouts, big payloads, stdout, nesting.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unsync::{Error, Payload, unsync};

mod common;
use common::{LIMIT, is_alive, watchdog};

#[unsync(cpu_bound)]
fn pid() -> u32 {
    std::process::id()
}

#[unsync(cpu_bound)]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    name: String,
    weights: Vec<f64>,
}

#[unsync(cpu_bound)]
fn score((scale, job): (f64, Job), mut bias: f64) -> (String, f64) {
    bias += job.weights.iter().sum::<f64>() * scale;
    (job.name, bias)
}

#[unsync(cpu_bound)]
fn echo_bytes(data: Vec<u8>) -> Vec<u8> {
    data
}

#[unsync(cpu_bound)]
fn sum_floats(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

const FAILS_LINE: u32 = line!() + 3;
#[unsync(cpu_bound)]
fn fails(message: String) -> u8 {
    panic!("{message}")
}

#[unsync(cpu_bound)]
fn aborts() -> u8 {
    std::process::abort()
}

#[unsync(cpu_bound)]
fn exits(code: i32) -> u8 {
    std::process::exit(code)
}

#[unsync(cpu_bound)]
fn segfaults() -> u8 {
    // SAFETY: none: this deliberately crashes the worker process with SIGSEGV.
    #[cfg(unix)]
    unsafe {
        libc::raise(libc::SIGSEGV)
    };
    // SAFETY: none: this deliberately crashes the worker process with an access violation
    // (Windows's C runtime turns `raise(SIGSEGV)` into a plain exit).
    #[cfg(windows)]
    unsafe {
        std::ptr::write_volatile(std::ptr::without_provenance_mut::<u8>(8), 1)
    };
    unreachable!()
}

/// How a crash reads in `Error::WorkerDied` (Windows has exception codes, not signals).
const ABORTED: &str = if cfg!(windows) {
    "crashed with exception 0xC0000409"
} else {
    "SIGABRT"
};
const SEGFAULTED: &str = if cfg!(windows) {
    "crashed with exception 0xC0000005 (STATUS_ACCESS_VIOLATION)"
} else {
    "SIGSEGV"
};

#[unsync(cpu_bound)]
fn spins_forever() -> u8 {
    loop {
        std::hint::spin_loop();
    }
}

#[unsync(cpu_bound)]
fn prints(line: String) -> usize {
    println!("{line}");
    line.len()
}

#[unsync(cpu_bound)]
fn nested(depth: u32) -> (u32, u32) {
    // The inner calls run inline in this worker: same pid all the way down.
    if depth == 0 {
        (std::process::id(), 0)
    } else {
        let (pid, d) = nested(depth - 1).result();
        assert_eq!(pid, std::process::id());
        (pid, d + 1)
    }
}

#[unsync(cpu_bound)]
fn env_and_cwd(var: String) -> (Option<String>, std::path::PathBuf) {
    (std::env::var(&var).ok(), std::env::current_dir().unwrap())
}

#[test]
fn runs_in_another_process_and_returns_values() {
    watchdog(LIMIT, || {
        let worker = pid().result();
        assert_ne!(worker, std::process::id());
        assert_eq!(add(40, 2).result(), 42);
        let job = Job {
            name: "j".into(),
            weights: vec![1.0, 2.0],
        };
        assert_eq!(score((2.0, job), 0.5).result(), ("j".into(), 6.5));
        assert_eq!(add(1, 2).catch().result(), Ok(3));
    });
}

#[test]
fn many_calls_queue_and_all_complete() {
    watchdog(LIMIT, || {
        let handles: Vec<_> = (0..2000_u64).map(|i| add(i, 1)).collect();
        let sum: u64 = handles.into_iter().map(|h| h.result()).sum();
        assert_eq!(sum, (1..=2000).sum::<u64>());
    });
}

#[test]
fn big_payloads_take_the_bulk_path() {
    watchdog(LIMIT, || {
        let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        assert_eq!(echo_bytes(data.clone()).result(), data);
        let floats: Vec<f64> = (0..100_000).map(f64::from).collect();
        assert_eq!(sum_floats(floats).result(), 4_999_950_000.0);
    });
}

#[test]
fn large_vectors_of_changing_sizes_and_types_cross_intact() {
    // A worker keeps a large result's vector for the next large argument (`shared::Spare`):
    // each argument must arrive as itself, whatever the kept vector held or how large it was.
    watchdog(LIMIT, || {
        for (round, mib) in [8, 5, 16, 9, 6, 8].into_iter().enumerate() {
            let data: Vec<u8> = (0..mib << 20).map(|i| (i * 7 + round) as u8).collect();
            assert!(echo_bytes(data.clone()).result() == data, "{mib} MiB");
            let floats: Vec<f64> = (0..(mib << 20) / 8).map(|i| (i % 3) as f64).collect();
            let expected: f64 = floats.iter().sum();
            assert_eq!(sum_floats(floats).result(), expected, "{mib} MiB of f64");
        }
    });
}

#[test]
fn a_panic_is_an_error_and_the_worker_survives() {
    watchdog(LIMIT, || {
        let error = fails("bad input".into()).catch().result().unwrap_err();
        assert!(
            matches!(&error, Error::Panicked { task: "process::fails", message, .. } if message == "bad input"),
            "{error:?}"
        );
        // The location crosses from the worker.
        assert_eq!(
            error.location(),
            Some(&*format!("{}:{FAILS_LINE}:5", file!()))
        );
        // The pool still answers. (That the very worker that panicked survives is checked in
        // `process_single_worker`, where there is only one worker.)
        assert_eq!(add(1, 1).result(), 2);
    });
}

#[test]
#[should_panic(expected = "task `process::fails` panicked at tests/process.rs:")]
fn a_worker_panic_reraises_in_result() {
    fails("re-raised".into()).result();
}

/// Encodes, but postcard cannot decode it (`untagged` needs a self-describing format).
#[derive(Serialize, Deserialize, Debug)]
#[serde(untagged)]
enum Untagged {
    Number(u32),
}

/// A value whose `Serialize` fails.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be encoded"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer).map(|()| Unencodable)
    }
}

#[unsync(cpu_bound)]
fn takes_unencodable(_value: Unencodable) -> u8 {
    1
}

#[unsync(cpu_bound)]
fn takes_untagged(_value: Untagged) -> u8 {
    2
}

#[unsync(cpu_bound)]
fn returns_unencodable() -> Unencodable {
    Unencodable
}

#[unsync(cpu_bound)]
fn returns_untagged() -> Untagged {
    Untagged::Number(3)
}

/// A value whose `Deserialize` panics: as a result, it crosses the pipe (the worker only
/// serializes it), then fails to be read back.
#[derive(Debug, Serialize)]
struct Trap(u8);

impl<'de> Deserialize<'de> for Trap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u8::deserialize(deserializer)?;
        panic!("a Trap cannot be read ({value})");
    }
}

#[unsync(cpu_bound)]
fn returns_a_trap() -> Trap {
    Trap(7)
}

fn assert_encoding(error: Error, task: &str, payload: Payload, place: &str) {
    match &error {
        Error::Encoding {
            task: t,
            payload: p,
            detail,
        } if *t == task && *p == payload => assert!(detail.contains(place), "{detail}"),
        other => panic!("expected Encoding of the {payload} of {task}, got {other:?}"),
    }
}

#[test]
fn values_that_cannot_cross_fail_their_call_with_encoding() {
    watchdog(LIMIT, || {
        assert_encoding(
            takes_unencodable(Unencodable).catch().result().unwrap_err(),
            "process::takes_unencodable",
            Payload::Arguments,
            "encoding them in this process",
        );
        assert_encoding(
            takes_untagged(Untagged::Number(1))
                .catch()
                .result()
                .unwrap_err(),
            "process::takes_untagged",
            Payload::Arguments,
            "decoding them in the worker process",
        );
        assert_encoding(
            returns_unencodable().catch().result().unwrap_err(),
            "process::returns_unencodable",
            Payload::Result,
            "encoding it in the worker process",
        );
        assert_encoding(
            returns_untagged().catch().result().unwrap_err(),
            "process::returns_untagged",
            Payload::Result,
            "decoding it in this process",
        );
        assert_eq!(add(4, 4).result(), 8);
    });
}

/// A panic in the result's `Deserialize` (user code, run in this process, by whichever thread
/// reads the answer) fails that call alone, as an encoding failure, from every reader.
#[test]
fn a_result_whose_deserialize_panics_fails_its_call_alone() {
    watchdog(LIMIT, || {
        for _ in 0..50 {
            assert_encoding(
                returns_a_trap().catch().result().unwrap_err(),
                "process::returns_a_trap",
                Payload::Result,
                "a Trap cannot be read (7)",
            );
            assert_eq!(add(4, 4).result(), 8);
        }
        let traps: Vec<_> = (0..20).map(|_| returns_a_trap()).collect();
        for trap in traps {
            assert!(matches!(trap.catch().result(), Err(Error::Encoding { .. })));
        }
        assert_eq!(add(5, 5).result(), 10);
    });
}

fn assert_died(error: Error, expect: &str) {
    match error {
        Error::WorkerDied { detail, .. } => assert!(detail.contains(expect), "{detail}"),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn crashes_cost_one_worker_and_later_calls_succeed() {
    watchdog(LIMIT, || {
        assert_died(aborts().catch().result().unwrap_err(), ABORTED);
        assert_eq!(add(2, 2).result(), 4);
        assert_died(
            exits(7).catch().result().unwrap_err(),
            "exited with status 7",
        );
        assert_died(segfaults().catch().result().unwrap_err(), SEGFAULTED);
        assert_eq!(add(3, 3).result(), 6);
    });
}

#[unsync(cpu_bound)]
fn add_or_abort(a: u64, b: u64, abort: bool) -> u64 {
    if abort {
        std::process::abort();
    }
    a + b
}

/// A thread that makes quick calls one at a time reads each answer itself right after writing
/// the call (on several CPUs it polls for it: see the pool's `lead`): a worker that dies then
/// fails that call alone.
#[test]
fn a_quick_call_whose_worker_dies_as_it_is_written_fails_alone() {
    watchdog(LIMIT, || {
        for i in 0..200 {
            assert_eq!(add_or_abort(i, 1, false).result(), i + 1);
        }
        assert_died(
            add_or_abort(0, 0, true).catch().result().unwrap_err(),
            ABORTED,
        );
        for i in 0..200 {
            assert_eq!(add_or_abort(i, 1, false).result(), i + 1);
        }
    });
}

#[test]
fn calls_queued_behind_a_crash_still_run() {
    watchdog(LIMIT, || {
        let crash = aborts();
        let after: Vec<_> = (0..50).map(|i| add(i, i)).collect();
        assert!(matches!(
            crash.catch().result(),
            Err(Error::WorkerDied { .. })
        ));
        for (i, h) in after.into_iter().enumerate() {
            assert_eq!(h.result(), 2 * i as u64);
        }
    });
}

#[test]
fn cancel_kills_a_runaway_call_quickly() {
    watchdog(LIMIT, || {
        let runaway = spins_forever();
        // Make sure it is running, not just queued: a call queued behind it needs a free worker.
        assert_eq!(add(5, 5).result(), 10);
        let started = Instant::now();
        assert!(runaway.cancel());
        assert_eq!(
            runaway.catch().result(),
            Err(Error::Cancelled {
                task: "process::spins_forever"
            })
        );
        // The pool replaces the killed worker; new calls succeed.
        assert_eq!(add(6, 6).result(), 12);
        // Generous bound: killing and replacing a worker takes milliseconds.
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn calls_awaited_in_async_code_complete() {
    watchdog(LIMIT, || {
        let total = unsync::spawn(async {
            let mut total = 0;
            for i in 0..100 {
                total += add(i, 1).await;
            }
            total
        })
        .result();
        assert_eq!(total, (1..=100).sum::<u64>());
    });
}

/// A worker killed while it has no call is replaced, and the next call runs on another. Not a
/// test of its own: killing a worker of the pool the other tests share would fail their calls;
/// the children that run one test at a time run it.
#[cfg(target_os = "linux")]
fn a_worker_killed_while_idle_is_replaced() {
    watchdog(LIMIT, || {
        let idle = pid().result();
        let died = unsync::stats().workers().died;
        // SAFETY: `kill` with a pid this test's pool started and a valid signal.
        assert_eq!(unsafe { libc::kill(idle as i32, libc::SIGKILL) }, 0);
        // Until the pool has seen the death: a call made before could still be written to the
        // dying worker (its fds close with its last thread), and would fail as a call that
        // worker was running.
        let deadline = Instant::now() + LIMIT;
        while unsync::stats().workers().died == died {
            assert!(Instant::now() < deadline, "the pool never saw the kill");
            std::thread::park_timeout(Duration::from_millis(1));
        }
        for _ in 0..10 {
            assert_ne!(pid().result(), idle);
        }
    });
}

/// A caller blocked in `result` on a running call (on Linux, reading the worker's pipe itself)
/// sees a cancel made from another thread, and the pool goes on. (Also run on one CPU with one
/// worker, where a call cannot wait behind the runaway one.)
#[test]
fn cancel_reaches_a_caller_blocked_on_the_call() {
    watchdog(LIMIT, || {
        let runaway = spins_forever();
        let blocked = runaway.clone();
        let reader = std::thread::spawn(move || blocked.catch().result());
        assert!(runaway.cancel());
        assert_eq!(
            reader.join().unwrap(),
            Err(Error::Cancelled {
                task: "process::spins_forever"
            })
        );
        assert_eq!(add(6, 6).result(), 12);
    });
}

#[test]
fn worker_stdout_reaches_the_parent_output_not_the_protocol() {
    watchdog(LIMIT, || {
        let line = "printed by a worker, through the parent's stdout".to_owned();
        assert_eq!(prints(line.clone()).result(), line.len());
        assert_eq!(add(1, 2).result(), 3);
    });
}

#[unsync(cpu_bound)]
fn prints_marker(marker: String) -> u32 {
    println!("{marker} {}", std::process::id());
    std::process::id()
}

const STDOUT_MARKER: &str = "marker-line-from-a-worker-println";

#[test]
fn worker_println_shows_up_in_the_parents_stdout() {
    let output = common::run_child_test("child_calls_a_printing_worker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The child names the worker that ran its call; that worker's line is in the child's
    // stdout, which the worker inherited (the child itself never prints the marker).
    let worker = stdout
        .lines()
        .find_map(|line| line.split_once("CHILD_CALL_RAN_IN ").map(|(_, pid)| pid))
        .unwrap_or_else(|| panic!("the child reports its worker: {stdout}"));
    // A whole line, though maybe after the harness's "test ... " (printed without a newline).
    let expected = format!("{STDOUT_MARKER} {worker}\n");
    assert!(
        stdout.contains(&expected),
        "no line {expected:?} in the child's stdout: {stdout}"
    );
}

#[test]
#[ignore = "run by worker_println_shows_up_in_the_parents_stdout"]
fn child_calls_a_printing_worker() {
    let worker = watchdog(LIMIT, || prints_marker(STDOUT_MARKER.into()).result());
    assert_ne!(worker, std::process::id(), "the call ran in a worker");
    println!("CHILD_CALL_RAN_IN {worker}");
}

#[test]
fn nested_cpu_bound_calls_run_inline_in_the_worker() {
    watchdog(LIMIT, || {
        let (worker, depth) = nested(5).result();
        assert_ne!(worker, std::process::id());
        assert_eq!(depth, 5);
    });
}

#[test]
fn workers_inherit_environment_and_directory() {
    watchdog(LIMIT, || {
        let (value, dir) = env_and_cwd("CARGO_PKG_NAME".into()).result();
        assert_eq!(value.as_deref(), Some(env!("CARGO_PKG_NAME")));
        assert_eq!(dir, std::env::current_dir().unwrap());
    });
}

#[unsync(cpu_bound)]
fn slow_pid(spin_ms: u64) -> u32 {
    let until = Instant::now() + Duration::from_millis(spin_ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    std::process::id()
}

/// Runs only as the child of `no_orphans_when_the_parent_is_killed`: learns its workers'
/// pids, prints them, keeps the workers busy, and waits to be killed.
#[test]
fn orphan_helper() {
    if std::env::var_os("UNSYNC_ORPHAN_HELPER").is_none() {
        return;
    }
    let started: Vec<_> = (0..8).map(|_| slow_pid(30)).collect();
    let mut pids: Vec<u32> = started.into_iter().map(|h| h.result()).collect();
    pids.sort_unstable();
    pids.dedup();
    let busy: Vec<_> = (0..4).map(|_| spins_forever()).collect();
    println!(
        "WORKER_PIDS {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    drop(busy);
    // Wait to be killed, but never outlive the test that started this helper: when that test
    // process is gone (killed by a timeout, a watchdog, an interrupted `cargo test`), its end
    // of our stdin closes, and the helper exits, taking its workers (and their busy loops)
    // with it. A helper left parked forever would keep four workers spinning.
    use std::io::Read;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

#[test]
fn no_orphans_when_the_parent_is_killed() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    watchdog(LIMIT, || {
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "orphan_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("UNSYNC_ORPHAN_HELPER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(helper.stdout.take().unwrap());
        let line = stdout
            .lines()
            .map(Result::unwrap)
            .find(|l| l.contains("WORKER_PIDS "))
            .expect("the helper reports its workers");
        let pids: Vec<u32> = line
            .split("WORKER_PIDS ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(!pids.is_empty());
        assert!(
            pids.iter().all(|&p| is_alive(p)),
            "workers run before the kill"
        );
        helper.kill().unwrap();
        helper.wait().unwrap();
        let killed = Instant::now();
        // Poll /proc until every worker is gone; the requirement is "within a second".
        while pids.iter().any(|&p| is_alive(p)) {
            assert!(
                killed.elapsed() < Duration::from_secs(1),
                "workers {pids:?} outlived their parent by a second"
            );
            std::thread::yield_now();
        }
    });
}

#[test]
fn a_stray_worker_process_exits_with_a_clear_message() {
    use std::process::Command;
    watchdog(LIMIT, || {
        for spec in ["garbage", "3,4,1,0,1024,0", "900,901,1,0,1024,0"] {
            let output = Command::new(std::env::current_exe().unwrap())
                .env("UNSYNC_WORKER", spec)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "spec {spec}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("unsync worker:"), "{stderr}");
            assert!(stderr.contains("only unsync's process pool"), "{stderr}");
            assert!(output.stdout.is_empty(), "main never ran");
        }
    });
}

#[test]
fn timeout_kills_a_runaway_call_within_a_second_of_the_deadline() {
    watchdog(LIMIT, || {
        let after = Duration::from_millis(200);
        let started = Instant::now();
        let outcome = spins_forever().timeout(after).result();
        assert_eq!(
            outcome,
            Err(Error::TimedOut {
                task: "process::spins_forever",
                after
            })
        );
        // The requirement: stopped within a second of the deadline.
        assert!(started.elapsed() < after + Duration::from_secs(1));
        assert_eq!(add(7, 7).timeout(Duration::from_secs(30)).result(), Ok(14));
    });
}

/// With `RUST_BACKTRACE=1`, a worker's panic comes back with the worker's backtrace, which
/// `.result()` re-raises with the message; without it, no backtrace is captured.
#[test]
fn a_worker_backtrace_reaches_the_caller_when_asked_for() {
    for (setting, expected) in [("1", true), ("0", false)] {
        let output = common::run_child_test_with_env(
            "child_reads_a_worker_backtrace",
            &[
                ("RUST_BACKTRACE", setting),
                ("EXPECT_BACKTRACE", if expected { "1" } else { "0" }),
            ],
        );
        assert!(output.status.success());
    }
}

#[test]
#[ignore = "run by a_worker_backtrace_reaches_the_caller_when_asked_for with RUST_BACKTRACE set"]
fn child_reads_a_worker_backtrace() {
    let expected = std::env::var("EXPECT_BACKTRACE").unwrap() == "1";
    let error = fails("with a trace".into()).catch().result().unwrap_err();
    match error.backtrace() {
        Some(backtrace) => {
            assert!(expected, "a backtrace without RUST_BACKTRACE: {backtrace}");
            assert!(backtrace.contains("fails"), "{backtrace}");
        }
        None => assert!(!expected, "no backtrace with RUST_BACKTRACE=1"),
    }
    let reraised = std::panic::catch_unwind(|| fails("again".into()).result()).unwrap_err();
    let reraised = reraised.downcast_ref::<String>().unwrap();
    assert_eq!(
        reraised.contains("backtrace in the worker process:"),
        expected,
        "{reraised}"
    );
}

#[unsync]
async fn sums_on_the_runtime(n: u64) -> u64 {
    (0..n).map(|i| add(i, 1).result()).sum()
}

#[unsync]
fn sums_on_the_blocking_pool(n: u64) -> u64 {
    (0..n).map(|i| add(i, 1).result()).sum()
}

#[unsync(parallel)]
fn sums_on_rayon(n: u64) -> u64 {
    (0..n).map(|i| add(i, 1).result()).sum()
}

/// Lone calls read from every kind of thread that can block on a handle: its caller reads the
/// answer itself where it may (Linux, not a rayon worker), or the pool's I/O thread does.
#[test]
fn lone_calls_are_read_from_every_kind_of_thread() {
    watchdog(LIMIT, || {
        const N: u64 = 50;
        let expected: u64 = (1..=N).sum();
        let from_here: u64 = (0..N).map(|i| add(i, 1).result()).sum();
        assert_eq!(from_here, expected);
        assert_eq!(sums_on_the_runtime(N).result(), expected);
        assert_eq!(sums_on_the_blocking_pool(N).result(), expected);
        assert_eq!(sums_on_rayon(N).result(), expected);
        let own_runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let in_own_runtime =
            own_runtime.block_on(async { (0..N).map(|i| add(i, 1).result()).sum::<u64>() });
        assert_eq!(in_own_runtime, expected);
        // And all at once: several lone calls, each from its own thread, on as many workers.
        let threads: Vec<_> = (0..4)
            .map(|t| std::thread::spawn(move || (0..N).map(|i| add(i, t).result()).sum::<u64>()))
            .collect();
        for (t, thread) in threads.into_iter().enumerate() {
            assert_eq!(
                thread.join().unwrap(),
                (0..N).map(|i| i + t as u64).sum::<u64>()
            );
        }
    });
}

#[unsync]
async fn awaits_in_pairs(n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        let (a, b) = (add(i, 1), add(i, 2));
        sum += a.await + b.await;
    }
    sum
}

/// Callers that read their answers right after writing, callers that wait later, callers that
/// await and rayon workers, all at once on the same few workers: every answer arrives (the
/// pool's `lead` hands a worker's pipe between them; a lost hand-over would hang a call).
#[test]
fn every_kind_of_caller_at_once_loses_no_answer() {
    watchdog(LIMIT, || {
        const N: u64 = 300;
        let lone = |t: u64| (0..N).map(|i| add(i, t).result()).sum::<u64>();
        let pairs = |_| {
            (0..N)
                .map(|i| {
                    let (a, b) = (add(i, 1), add(i, 2));
                    a.result() + b.result()
                })
                .sum::<u64>()
        };
        let threads: Vec<std::thread::JoinHandle<u64>> = vec![
            std::thread::spawn(move || lone(0)),
            std::thread::spawn(move || lone(1)),
            std::thread::spawn(move || pairs(())),
            std::thread::spawn(|| awaits_in_pairs(N).result()),
            std::thread::spawn(|| sums_on_rayon(N).result()),
        ];
        let sums: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let to = |k: u64| (0..N).map(|i| i + k).sum::<u64>();
        let pair_sum = (0..N).map(|i| 2 * i + 3).sum::<u64>();
        assert_eq!(sums, [to(0), to(1), pair_sum, pair_sum, to(1)]);
    });
}

/// CPU time (user and system) the process `pid` has used, in clock ticks.
#[cfg(target_os = "linux")]
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): state is the 3rd, utime the 14th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// After calls from a caller that spins, the worker spins for the next call (`Config::spin`),
/// but for microseconds: idle, it sleeps. Alone in a child process, so that no other test's
/// calls reach the worker.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_worker_spins_briefly_then_sleeps() {
    common::run_child_test("child_with_an_idle_worker");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by an_idle_worker_spins_briefly_then_sleeps"]
fn child_with_an_idle_worker() {
    watchdog(LIMIT, || {
        let mut worker = 0;
        for _ in 0..1000 {
            worker = pid().result();
        }
        let before = cpu_ticks(worker);
        // The window observed, not a synchronisation: a worker that kept spinning would use
        // about 50 ticks (100 per second) in it, one that sleeps none.
        std::thread::sleep(Duration::from_millis(500));
        let used = cpu_ticks(worker) - before;
        assert!(
            used <= 5,
            "the idle worker used {used} ticks of CPU in 500 ms"
        );
    });
}

/// On one CPU the pool reads answers another way (the thread that writes a call to an idle
/// worker reads its answer right after; see the pool's `lead`): the same tests, there.
#[cfg(target_os = "linux")]
#[test]
fn the_same_on_one_cpu() {
    common::run_child_test("child_on_one_cpu");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by the_same_on_one_cpu"]
fn child_on_one_cpu() {
    common::pin_to_one_cpu();
    the_tests_of_waiting_callers();
}

/// A waiter that does not spin reads its worker's answer at once (on several CPUs a waiter also
/// does so whenever that has been quicker lately; see `Config::spin`): the same tests, that way.
#[cfg(target_os = "linux")]
#[test]
fn the_same_for_callers_that_never_spin() {
    common::run_child_test_with_env("child_never_spinning", &[("UNSYNC_SPIN_MICROS", "0")]);
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by the_same_for_callers_that_never_spin"]
fn child_never_spinning() {
    the_tests_of_waiting_callers();
}

#[cfg(target_os = "linux")]
fn the_tests_of_waiting_callers() {
    runs_in_another_process_and_returns_values();
    many_calls_queue_and_all_complete();
    big_payloads_take_the_bulk_path();
    a_panic_is_an_error_and_the_worker_survives();
    values_that_cannot_cross_fail_their_call_with_encoding();
    a_result_whose_deserialize_panics_fails_its_call_alone();
    crashes_cost_one_worker_and_later_calls_succeed();
    a_quick_call_whose_worker_dies_as_it_is_written_fails_alone();
    calls_queued_behind_a_crash_still_run();
    cancel_reaches_a_caller_blocked_on_the_call();
    calls_awaited_in_async_code_complete();
    a_worker_killed_while_idle_is_replaced();
    nested_cpu_bound_calls_run_inline_in_the_worker();
    timeout_kills_a_runaway_call_within_a_second_of_the_deadline();
    lone_calls_are_read_from_every_kind_of_thread();
    every_kind_of_caller_at_once_loses_no_answer();
}
