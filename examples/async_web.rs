//! Blocking against async web servers under load: the course's chapter 10 (the Flask
//! `cityscape_api` against its Quart port `acityscape_api`, load-tested with `wrk`), offline.
//!
//! `GET /api/sun/<zip>/<country>` makes two service calls one after the other, a location
//! lookup and a sunrise-sunset lookup, simulated the way the course's "cached data" mode does
//! it: each waits a latency drawn (seeded) from a list spanning the course's measured range
//! (288-536 ms and 399-742 ms), divided by 10, then answers canned data. One request takes
//! about 94 ms, all of it waiting. Three servers, all real HTTP (hyper) on `127.0.0.1:0`:
//!
//! 1. blocking handlers: each request is a plain `#[unsync] fn` that sleeps through the two
//!    calls, on a blocking pool limited to 2 threads (`Config::blocking_threads(2)`), like a
//!    WSGI server with 2 workers: a request holds a worker for its whole length;
//! 2. async handlers: each request is an `#[unsync] async fn` that awaits the two calls on
//!    the runtime; nothing is held while waiting;
//! 3. the same async handlers behind an accept loop that serves one connection at a time:
//!    the course's "Quart without Hypercorn" pitfall. Async handlers need a server that runs
//!    them concurrently.
//!
//! A built-in load generator stands in for `wrk`: 20 keep-alive clients (reqwest), each
//! sending requests back to back for 1.2 s, a request counted as timed out after 1 s.
//!
//! Proves: every answer is right and each handler ran on its executor; the async server
//! serves several times the requests of the blocking one, with no timeouts and a latency
//! close to the service time, while the serial server does no better than one request at a
//! time.
//!
//! `cargo run --release --example async_web`; with `-- --serve` it keeps the three servers
//! on ports 5001, 5002 and 5003 for `wrk -t20 -c20 -d15s http://127.0.0.1:5002/api/sun/97227/us`.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::http::{self, Handler, Reply};
use common::place::{Place, here, summary};
use common::rng::Rng;
use unsync::unsync;

/// Location lookups, ms: the course's 288-536 ms range, / 10.
const LOCATION_MS: [u64; 13] = [29, 30, 32, 34, 36, 38, 39, 40, 42, 44, 47, 50, 54];
/// Sunrise-sunset lookups, ms: the course's 399-742 ms range, / 10.
const SUN_MS: [u64; 5] = [40, 45, 52, 60, 74];
const WORKERS: usize = 2;
const CLIENTS: usize = 20;
const LOAD_FOR: Duration = Duration::from_millis(1200);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

static NEXT_DRAW: AtomicU64 = AtomicU64::new(0);

/// The two latencies of one request.
fn draw_latencies() -> (Duration, Duration) {
    let mut rng = Rng::seeded(NEXT_DRAW.fetch_add(1, Ordering::Relaxed));
    (
        Duration::from_millis(*rng.pick(&LOCATION_MS)),
        Duration::from_millis(*rng.pick(&SUN_MS)),
    )
}

fn mean_service_time() -> Duration {
    let mean = |ms: &[u64]| ms.iter().sum::<u64>() as f64 / ms.len() as f64;
    Duration::from_secs_f64((mean(&LOCATION_MS) + mean(&SUN_MS)) / 1e3)
}

fn sun_json(zip: &str, country: &str) -> String {
    format!(
        r#"{{"zip": "{zip}", "country": "{country}", "lat": 45.55, "lng": -122.67, "sunrise": "06:41:12 AM", "sunset": "08:14:45 PM"}}"#
    )
}

/// `/api/sun/<zip>/<country>` as (zip, country).
fn route(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/sun/")?;
    let (zip, country) = rest.split_once('/')?;
    Some((zip.to_owned(), country.to_owned()))
}

type Seen = Arc<Mutex<HashSet<Place>>>;

fn record(seen: &Seen) {
    seen.lock().expect("no panics").insert(here());
}

#[unsync]
fn sun_blocking(path: String, seen: Seen) -> Reply {
    let Some((zip, country)) = route(&path) else {
        return Reply::not_found();
    };
    record(&seen);
    let (location, sun) = draw_latencies();
    std::thread::sleep(location);
    std::thread::sleep(sun);
    Reply::json(sun_json(&zip, &country))
}

#[unsync]
async fn sun_async(path: String, seen: Seen) -> Reply {
    let Some((zip, country)) = route(&path) else {
        return Reply::not_found();
    };
    record(&seen);
    let (location, sun) = draw_latencies();
    tokio::time::sleep(location).await;
    tokio::time::sleep(sun).await;
    Reply::json(sun_json(&zip, &country))
}

#[derive(Clone, Copy)]
enum Style {
    Blocking,
    Async,
    SerialAsync,
}

struct Server {
    name: &'static str,
    addr: SocketAddr,
    seen: Seen,
}

fn start(name: &'static str, style: Style, port: u16) -> Server {
    let listener = if port == 0 {
        http::bind_loopback().0
    } else {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        listener
    };
    let addr = listener.local_addr().expect("bound");
    let seen: Seen = Arc::default();
    let handler_seen = seen.clone();
    let handler: Handler = match style {
        Style::Blocking => Arc::new(move |path| Box::pin(sun_blocking(path, handler_seen.clone()))),
        Style::Async | Style::SerialAsync => {
            Arc::new(move |path| Box::pin(sun_async(path, handler_seen.clone())))
        }
    };
    // Serves until the process exits.
    unsync::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        match style {
            Style::SerialAsync => http::serve_serially(listener, handler).await,
            Style::Blocking | Style::Async => http::serve_concurrently(listener, handler).await,
        }
    })
    .detach();
    Server { name, addr, seen }
}

#[derive(Default)]
struct Load {
    latencies: Vec<Duration>,
    timeouts: usize,
    errors: Vec<String>,
    wrong: usize,
    /// Still waiting for an answer when the load stopped.
    unfinished: usize,
    /// Where the client tasks started.
    places: HashSet<Place>,
}

#[unsync]
async fn load_client(client: reqwest::Client, base: String, id: usize, until: Instant) -> Load {
    let zip = format!("{}", 97200 + id);
    let url = format!("{base}/api/sun/{zip}/us");
    let mut load = Load::default();
    load.places.insert(here());
    while Instant::now() < until {
        let sent = Instant::now();
        let request = async {
            let response = client.get(&url).send().await?.error_for_status()?;
            response.text().await
        };
        let Ok(answer) = tokio::time::timeout_at(until.into(), request).await else {
            load.unfinished += 1;
            break;
        };
        match answer {
            Ok(body) if body.contains(&format!(r#""zip": "{zip}""#)) => {
                load.latencies.push(sent.elapsed());
            }
            Ok(_) => load.wrong += 1,
            Err(e) if e.is_timeout() => load.timeouts += 1,
            Err(e) => load.errors.push(e.to_string()),
        }
    }
    load
}

struct Measured {
    name: &'static str,
    requests: usize,
    timeouts: usize,
    errors: Vec<String>,
    wrong: usize,
    unfinished: usize,
    mean: Duration,
    p50: Duration,
    p99: Duration,
    per_second: f64,
    places: HashSet<Place>,
}

fn load_test(server: &Server) -> Measured {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("a reqwest client");
    let base = format!("http://{}", server.addr);
    let start = Instant::now();
    let until = start + LOAD_FOR;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| load_client(client.clone(), base.clone(), id, until))
        .collect();
    let mut total = Load::default();
    for client in clients {
        let load = client.result();
        total.latencies.extend(load.latencies);
        total.timeouts += load.timeouts;
        total.errors.extend(load.errors);
        total.wrong += load.wrong;
        total.unfinished += load.unfinished;
        total.places.extend(load.places);
    }
    let elapsed = start.elapsed();
    total.latencies.sort();
    let quantile = |q: f64| {
        total
            .latencies
            .get(
                ((total.latencies.len() as f64 * q) as usize).min(total.latencies.len().max(1) - 1),
            )
            .copied()
            .unwrap_or_default()
    };
    let requests = total.latencies.len();
    let measured = Measured {
        name: server.name,
        requests,
        timeouts: total.timeouts,
        errors: total.errors,
        wrong: total.wrong,
        unfinished: total.unfinished,
        mean: total.latencies.iter().sum::<Duration>() / requests.max(1) as u32,
        p50: quantile(0.50),
        p99: quantile(0.99),
        per_second: requests as f64 / elapsed.as_secs_f64(),
        places: server.seen.lock().expect("no panics").clone(),
    };
    println!(
        "{:<40} {:>4} answered {:>3} timed out {:>2} errors {:>2} unfinished  latency mean {:>4.0} ms, p50 {:>4.0} ms, p99 {:>4.0} ms  {:>5.1} req/s",
        measured.name,
        measured.requests,
        measured.timeouts,
        measured.errors.len(),
        measured.unfinished,
        measured.mean.as_secs_f64() * 1e3,
        measured.p50.as_secs_f64() * 1e3,
        measured.p99.as_secs_f64() * 1e3,
        measured.per_second,
    );
    println!(
        "    handlers started in {}; load clients in {}",
        summary(&measured.places),
        summary(&total.places)
    );
    for error in measured.errors.iter().take(3) {
        println!("    error: {error}");
    }
    measured
}

fn main() {
    let serve = std::env::args().any(|a| a == "--serve");
    unsync::Config::new()
        .blocking_threads(WORKERS)
        .install()
        .expect("nothing has started yet");
    let ports = if serve { [5001, 5002, 5003] } else { [0, 0, 0] };
    let servers = [
        start("1. blocking, 2 workers (Flask)", Style::Blocking, ports[0]),
        start("2. async (Quart on Hypercorn)", Style::Async, ports[1]),
        start(
            "3. async, serial accept (plain app.run)",
            Style::SerialAsync,
            ports[2],
        ),
    ];
    let service = mean_service_time();
    println!(
        "GET /api/sun/<zip>/<country>: two service calls, {:.1} ms on average (the course's \
         latencies / 10). Main is {}.",
        service.as_secs_f64() * 1e3,
        here()
    );
    for server in &servers {
        println!(
            "  {:<40} http://{}/api/sun/97227/us",
            server.name, server.addr
        );
    }
    if serve {
        println!(
            "Serving until interrupted (Ctrl-C). Load them with, for example:\n  \
             wrk -t20 -c20 -d15s http://127.0.0.1:5002/api/sun/97227/us"
        );
        loop {
            std::thread::park();
        }
    }
    println!(
        "\nLoad: {CLIENTS} keep-alive clients for {LOAD_FOR:?} each server, a request times \
         out after {REQUEST_TIMEOUT:?} (wrk -t20 -c20, scaled down)"
    );
    let [blocking, asynchronous, serial] = servers.each_ref().map(load_test);

    let mut claims = Claims::new();
    let all = [&blocking, &asynchronous, &serial];
    claims.correct(
        "every answer was for the zip asked, no request failed other than by timing out",
        all.iter().all(|m| m.wrong == 0 && m.errors.is_empty()),
        format!(
            "{} answers, {} wrong, {} errors",
            all.iter().map(|m| m.requests).sum::<usize>(),
            all.iter().map(|m| m.wrong).sum::<usize>(),
            all.iter().map(|m| m.errors.len()).sum::<usize>()
        ),
    );
    let workers: HashSet<&String> = blocking.places.iter().map(|p| &p.thread).collect();
    claims.correct(
        "blocking handlers ran on the 2 threads of the blocking pool, async ones on the \
         runtime, all in this process",
        !blocking.places.is_empty()
            && all
                .iter()
                .flat_map(|m| &m.places)
                .all(Place::in_this_process)
            && workers.len() <= WORKERS
            && blocking.places.iter().all(Place::on_blocking_pool)
            && asynchronous
                .places
                .iter()
                .chain(&serial.places)
                .all(Place::on_runtime),
        format!(
            "blocking: {}",
            workers
                .iter()
                .map(|t| t.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let ceiling = WORKERS as f64 / service.as_secs_f64();
    claims.timing(
        "blocking: capped at workers / service time, every request waits for a worker",
        blocking.per_second <= 1.15 * ceiling && blocking.p50 >= service.mul_f64(3.0),
        format!(
            "{:.1} req/s against a ceiling of {ceiling:.1}; p50 {:.0} ms",
            blocking.per_second,
            blocking.p50.as_secs_f64() * 1e3
        ),
    );
    let gain = asynchronous.per_second / blocking.per_second.max(f64::MIN_POSITIVE);
    claims.timing(
        "async req/s >= 5 x blocking req/s (course: 4.2x)",
        gain >= 5.0,
        format!(
            "{:.1} against {:.1} req/s, {gain:.1}x",
            asynchronous.per_second, blocking.per_second
        ),
    );
    claims.timing(
        "async: no timeouts",
        asynchronous.timeouts == 0,
        format!("{} timeouts", asynchronous.timeouts),
    );
    claims.timing(
        "async p50 latency <= 1.5 x the mean service time",
        asynchronous.p50.as_secs_f64() <= 1.5 * service.as_secs_f64(),
        format!(
            "{:.0} ms against {:.1} ms",
            asynchronous.p50.as_secs_f64() * 1e3,
            service.as_secs_f64() * 1e3
        ),
    );
    let ideal = CLIENTS as f64 / service.as_secs_f64();
    claims.timing(
        "async >= 70% of the ideal (20 clients / service time)",
        asynchronous.per_second >= 0.7 * ideal,
        format!(
            "{:.0}% of {ideal:.0} req/s",
            100.0 * asynchronous.per_second / ideal
        ),
    );
    let serial_share = serial.per_second / asynchronous.per_second.max(f64::MIN_POSITIVE);
    claims.timing(
        "serial accept: <= 0.2 x the async server (async handlers need a concurrent server)",
        serial_share <= 0.2,
        format!(
            "{:.1} req/s, {serial_share:.2}x, {} timeouts",
            serial.per_second, serial.timeouts
        ),
    );
    claims.finish();
}
