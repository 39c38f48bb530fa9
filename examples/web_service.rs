//! unsync inside your own tokio application: an axum service under `#[tokio::main]` whose
//! handlers await a `cpu_bound` call (CPU work in worker processes) and a plain `#[unsync] fn`
//! (blocking file I/O on the blocking pool), on `127.0.0.1:0`, driven by a bounded client in
//! the same program (reqwest).
//!
//! - `Config::runtime` makes the application's runtime unsync's too, so `#[unsync] async fn`
//!   would run there rather than on a second runtime.
//! - Every handler wraps its call in `cancel_on_drop`: when a client gives up, hyper drops the
//!   handler's future, the last handle goes with it, and the call stops (the worker process is
//!   killed and replaced) instead of burning a core for nobody.
//! - `axum::serve(..).with_graceful_shutdown(..)` stops accepting and lets the requests in
//!   flight finish; their `cpu_bound` calls run to the end.
//!
//! Proves: every response is right; two abandoned 30-second requests, which held both worker
//! processes, free them at once (the next CPU request is served in well under a second); a
//! graceful shutdown answers every request that was in flight when it began; `GET /metrics`
//! (the table of `unsync::stats()`) counts the CPU calls answered and the abandoned ones.
//!
//! `cargo run --release --example web_service`

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::claims::Claims;
use common::millis;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{oneshot, watch};
use unsync::{Config, unsync};

const WORKERS: usize = 2;

/// Total Collatz steps of every start in `from..to`: CPU work for a worker process.
#[unsync(cpu_bound)]
fn collatz_steps(from: u64, to: u64) -> u64 {
    (from..to).map(steps).sum()
}

fn steps(mut n: u64) -> u64 {
    let mut count = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        count += 1;
    }
    count
}

/// Spins for `ms` milliseconds in a worker process and returns how many rounds it made.
#[unsync(cpu_bound)]
fn spin_for(ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut rounds = 0_u64;
    while Instant::now() < until {
        rounds += 1;
        std::hint::black_box(rounds);
    }
    rounds
}

/// A blocking read, as a legacy library would do it: on the blocking pool.
#[unsync]
fn read_note(path: PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[derive(Clone)]
struct App {
    notes: PathBuf,
    /// Requests inside a handler right now, for the client to wait on.
    in_flight: watch::Sender<usize>,
    /// Handlers dropped before they answered (their client went away).
    abandoned: Arc<AtomicUsize>,
}

/// Counts a handler in flight; dropped before [`Tracked::answered`], it was abandoned.
struct Tracked {
    app: App,
    answered: bool,
}

impl Tracked {
    fn start(app: &App) -> Tracked {
        app.in_flight.send_modify(|n| *n += 1);
        Tracked {
            app: app.clone(),
            answered: false,
        }
    }

    fn answered<T>(mut self, response: T) -> T {
        self.answered = true;
        response
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.app.in_flight.send_modify(|n| *n -= 1);
        if !self.answered {
            self.app.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

async fn cpu(State(app): State<App>, Query(range): Query<Range>) -> String {
    let tracked = Tracked::start(&app);
    let total = collatz_steps(range.from, range.to).cancel_on_drop().await;
    tracked.answered(total.to_string())
}

#[derive(Deserialize)]
struct Spin {
    ms: u64,
}

async fn slow(State(app): State<App>, Query(spin): Query<Spin>) -> String {
    let tracked = Tracked::start(&app);
    let rounds = spin_for(spin.ms).cancel_on_drop().await;
    tracked.answered(rounds.to_string())
}

#[derive(Deserialize)]
struct Note {
    name: String,
}

async fn note(State(app): State<App>, Query(note): Query<Note>) -> Result<String, StatusCode> {
    let tracked = Tracked::start(&app);
    // `catch` turns a failed task into a value; the `io::Result` is the function's own.
    let read = read_note(app.notes.join(note.name))
        .cancel_on_drop()
        .catch()
        .await;
    let response = match read {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(_)) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    };
    tracked.answered(response)
}

/// What the executors are doing: `unsync::stats()` as its plain-text table (with the `metrics`
/// feature, a Prometheus exporter would serve the same figures in its own format).
async fn metrics() -> String {
    unsync::stats().to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // One runtime for the application and for unsync's async tasks.
    Config::new()
        .runtime(tokio::runtime::Handle::current())
        .processes(WORKERS)
        .install()
        .expect("configured before any task ran");

    let notes = std::env::temp_dir().join(format!("unsync-web-service-{}", std::process::id()));
    std::fs::create_dir_all(&notes).expect("a notes folder");
    for i in 0..4 {
        std::fs::write(notes.join(format!("note{i}")), format!("note number {i}")).unwrap();
    }
    let (in_flight, mut in_flight_seen) = watch::channel(0_usize);
    let app = App {
        notes: notes.clone(),
        in_flight,
        abandoned: Arc::new(AtomicUsize::new(0)),
    };
    let router = Router::new()
        .route("/cpu", get(cpu))
        .route("/slow", get(slow))
        .route("/note", get(note))
        .route("/metrics", get(metrics))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopping) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopping.await;
            })
            .await
    });
    let client = reqwest::Client::new();
    let mut claims = Claims::new();

    // 1. A bounded burst of mixed requests, four at a time.
    let requests: Vec<(String, String)> = (0..24_u64)
        .map(|i| {
            if i % 3 == 0 {
                let name = format!("note{}", i % 4);
                let expected = format!("note number {}", i % 4);
                (format!("{base}/note?name={name}"), expected)
            } else {
                let (from, to) = (i * 10_000 + 1, i * 10_000 + 20_000);
                let expected = (from..to).map(steps).sum::<u64>().to_string();
                (format!("{base}/cpu?from={from}&to={to}"), expected)
            }
        })
        .collect();
    let total = requests.len();
    let right = futures::stream::iter(requests)
        .map(|(url, expected)| {
            let client = client.clone();
            async move {
                let response = client.get(url).send().await.ok()?;
                let body = response.error_for_status().ok()?.text().await.ok()?;
                Some(body == expected)
            }
        })
        .buffer_unordered(4)
        .filter(|right| std::future::ready(*right == Some(true)))
        .count()
        .await;
    let missing = client
        .get(format!("{base}/note?name=absent"))
        .send()
        .await
        .map(|r| r.status());
    claims.correct(
        "every response is right (CPU in worker processes, file reads on the blocking pool)",
        right == total && matches!(missing, Ok(StatusCode::NOT_FOUND)),
        format!("{right}/{total} right, a missing note is {missing:?}"),
    );

    // 2. Two clients give up on 30-second requests that hold both workers: once both handlers
    // run, the clients drop their requests (and so close their connections).
    let impatient: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(client.get(format!("{base}/slow?ms=30000")).send()))
        .collect();
    in_flight_seen.wait_for(|n| *n == WORKERS).await.unwrap();
    let mut gave_up = 0;
    for request in impatient {
        request.abort();
        if request.await.is_err_and(|e| e.is_cancelled()) {
            gave_up += 1;
        }
    }
    let freed = Instant::now();
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(format!("{base}/cpu?from=1&to=1000")).send(),
    )
    .await;
    let waited = freed.elapsed();
    let served = matches!(&next, Ok(Ok(r)) if r.status().is_success());
    in_flight_seen.wait_for(|n| *n == 0).await.unwrap();
    claims.correct(
        "abandoned requests stop their calls: the next CPU request finds a worker",
        gave_up == WORKERS && served && app.abandoned.load(Ordering::SeqCst) == WORKERS,
        format!(
            "{gave_up} clients gave up, {} handlers dropped, next request served after {}",
            app.abandoned.load(Ordering::SeqCst),
            millis(waited)
        ),
    );
    claims.timing(
        "a worker held by an abandoned request is free within a second",
        waited < Duration::from_secs(1),
        millis(waited),
    );

    // 3. The figures, as a monitoring system would scrape them. (A killed call is counted once
    // its pool lets go of it, a moment after the worker is replaced: wait for that, up to 10 s.)
    let counted_by = Instant::now() + Duration::from_secs(10);
    while unsync::stats().mode(unsync::Mode::Process).cancelled < WORKERS as u64
        && Instant::now() < counted_by
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let table = match client.get(format!("{base}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    println!("GET /metrics:\n{table}");
    // `process  <submitted> <queued> <running> <succeeded> <failed> <cancelled> ...`
    let process: Vec<u64> = table
        .lines()
        .find(|line| line.starts_with("process"))
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .take(6)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let cpu_requests = (0..24).filter(|i| i % 3 != 0).count() as u64 + 1;
    claims.correct(
        "GET /metrics counts the CPU calls answered, the abandoned ones as cancelled, no worker died",
        process.len() == 6
            && process[3] >= cpu_requests
            && process[5] >= WORKERS as u64
            && table.contains(", 0 died"),
        format!(
            "process row (submitted queued running succeeded failed cancelled): {process:?}"
        ),
    );

    // 4. Graceful shutdown with four requests in flight.
    let in_flight_requests: Vec<_> = (0..4)
        .map(|_| tokio::spawn(client.get(format!("{base}/slow?ms=400")).send()))
        .collect();
    in_flight_seen.wait_for(|n| *n == 4).await.unwrap();
    stop.send(()).unwrap();
    let mut answered = 0;
    for request in in_flight_requests {
        let response = request.await.unwrap();
        if let Ok(response) = response.and_then(reqwest::Response::error_for_status) {
            if response
                .text()
                .await
                .is_ok_and(|body| body.parse::<u64>().is_ok())
            {
                answered += 1;
            }
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await;
    claims.correct(
        "a graceful shutdown answers every request in flight, then the server stops",
        answered == 4 && matches!(stopped, Ok(Ok(Ok(())))),
        format!("{answered}/4 answered, server ended: {}", stopped.is_ok()),
    );

    let _ = std::fs::remove_dir_all(notes);
    claims.finish();
}
