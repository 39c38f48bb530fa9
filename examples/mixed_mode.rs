//! The headline: four kinds of work, each run where it belongs by one attribute, collected
//! with one handle type. The course's unsync lesson (chapter 9, `the_unsync/nosync.py`,
//! `presync.py` and `thesync.py`), offline.
//!
//! The four functions, eleven calls, in the course's order:
//!
//! | function | work | calls | under unsync |
//! |---|---|---|---|
//! | `compute_some` | about 0.2 s of square roots (CPU) | 3 | `#[unsync(cpu_bound)] fn`: the process pool |
//! | `download_some` | a page, async client (reqwest) | 2 | `#[unsync] async fn`: the async runtime |
//! | `download_some_more` | a page, blocking client (ureq) | 2 | `#[unsync] fn`: the blocking thread pool |
//! | `wait_some` | 250 sleeps of 1 ms | 4 | `#[unsync] async fn`: the async runtime |
//!
//! The pages come from a local HTTP server that answers each request after 100 ms. The parts
//! keep the course's proportions (its waits took longest, then its computing, then its
//! downloads), scaled down to run in a few seconds. Three runs:
//!
//! 1. `nosync`: eleven plain calls, one after the other, on the main thread.
//! 2. `presync`: the same as `async fn`s on one single-threaded executor (a current-thread
//!    tokio runtime, as asyncio's one loop): the async downloads and the waits overlap, but
//!    the computing and the blocking client hold the executor's only thread, and everything
//!    else waits for them.
//! 3. `unsync`: each function carries its attribute. `main` calls all eleven (each returns at
//!    once), then blocks on `.result()` for each, in order. No runtime, no pool, no `spawn`,
//!    no `join` in sight. One of the handles is also cloned and awaited from inside an
//!    `#[unsync] async fn`: the same handle works both ways.
//!
//! The first `cpu_bound` call starts the worker processes (a few milliseconds each); this
//! example starts them before timing the unsync run and reports that start-up separately.
//!
//! Proves: every download got its page; `compute_some` gives the same sum everywhere; each
//! function ran where its attribute says (the computing in other processes); the unsync run
//! takes well under the sum of its parts and less than the single executor.
//!
//! `cargo run --release --example mixed_mode`

mod common;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::http::{self, PAGE_BYTES, Site};
use common::place::{Place, here};
use serde::{Deserialize, Serialize};
use unsync::{Unfinished, unsync};

/// The local server's answer time (the course's pages came from the US East Coast).
const DELAY: Duration = Duration::from_millis(100);
/// Square roots per `compute_some` call: about 0.2 s of one core on a 2-core EPYC box.
const COMPUTE_STEPS: u64 = 120_000_000;
/// Sleeps of 1 ms per `wait_some` call (the course: 999).
const WAIT_SLEEPS: u32 = 250;
/// The episodes `download_some` and `download_some_more` fetch.
const EPISODES: [u32; 2] = [375, 376];
const MORE_EPISODES: [u32; 2] = [150, 151];

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Function {
    ComputeSome,
    DownloadSome,
    DownloadSomeMore,
    WaitSome,
}

impl Function {
    const ALL: [Function; 4] = [
        Function::ComputeSome,
        Function::DownloadSome,
        Function::DownloadSomeMore,
        Function::WaitSome,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::ComputeSome => "compute_some",
            Function::DownloadSome => "download_some",
            Function::DownloadSomeMore => "download_some_more",
            Function::WaitSome => "wait_some",
        }
    }

    /// The line the course's function prints when it starts.
    fn start_line(self) -> &'static str {
        match self {
            Function::ComputeSome => "Computing...",
            Function::DownloadSome => "Downloading...",
            Function::DownloadSomeMore => "Downloading more ...",
            Function::WaitSome => "Waiting...",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Did {
    Computed {
        sum: f64,
        cpu: Option<Duration>,
    },
    Downloaded {
        episode: u32,
        bytes: usize,
        title: Option<String>,
    },
    Waited {
        sleeps: u32,
    },
}

/// What each call returns: what it did, where, and how long it took.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Report {
    function: Function,
    place: Place,
    took: Duration,
    did: Did,
}

/// Print the start line; the place and the start time of the call.
fn begin(function: Function) -> (Place, Instant) {
    let place = here();
    println!("{:<22} ({place})", function.start_line());
    (place, Instant::now())
}

fn end(function: Function, (place, started): (Place, Instant), did: Did) -> Report {
    if let Did::Downloaded { bytes, .. } = &did {
        println!("Downloaded {bytes} characters.");
    }
    Report {
        function,
        place,
        took: started.elapsed(),
        did,
    }
}

/// The computing: the course's `math.sqrt(25 ** 25 + .01)`, over and over, every root added up.
fn crunch() -> Did {
    let cpu_before = common::thread_cpu_time();
    let x = 25_f64.powi(25) + 0.01;
    let mut sum = 0.0;
    for _ in 0..COMPUTE_STEPS {
        sum += black_box(x).sqrt();
    }
    let cpu = common::thread_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Did::Computed {
        sum: black_box(sum),
        cpu,
    }
}

/// The plain blocking client: blocks whatever thread calls it, like Python's `requests`.
static AGENT: LazyLock<ureq::Agent> = LazyLock::new(http::plain_blocking_agent);

fn url_episode(url: &str) -> u32 {
    url.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("an episode url")
}

fn downloaded(url: &str, html: &str) -> Did {
    Did::Downloaded {
        episode: url_episode(url),
        bytes: html.len(),
        title: http::first_h1(html).map(str::to_owned),
    }
}

fn fetch_blocking(url: &str) -> Did {
    let html = AGENT
        .get(url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .expect("the local site answers with the page");
    downloaded(url, &html)
}

async fn fetch_async(client: &reqwest::Client, url: &str) -> Did {
    let html = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the local site answers")
        .text()
        .await
        .expect("a text page");
    downloaded(url, &html)
}

/// `nosync.py`: plain functions.
mod nosync {
    use super::*;

    pub fn compute_some() -> Report {
        let started = begin(Function::ComputeSome);
        end(Function::ComputeSome, started, crunch())
    }

    pub fn download_some(url: String) -> Report {
        let started = begin(Function::DownloadSome);
        end(Function::DownloadSome, started, fetch_blocking(&url))
    }

    pub fn download_some_more(url: String) -> Report {
        let started = begin(Function::DownloadSomeMore);
        end(Function::DownloadSomeMore, started, fetch_blocking(&url))
    }

    pub fn wait_some() -> Report {
        let started = begin(Function::WaitSome);
        for _ in 0..WAIT_SLEEPS {
            std::thread::sleep(Duration::from_millis(1));
        }
        end(
            Function::WaitSome,
            started,
            Did::Waited {
                sleeps: WAIT_SLEEPS,
            },
        )
    }
}

/// `presync.py`: everything `async`, on one single-threaded executor. `compute_some` never
/// awaits and `download_some_more` blocks inside: both stall the executor.
mod presync {
    use super::*;

    pub async fn compute_some() -> Report {
        let started = begin(Function::ComputeSome);
        end(Function::ComputeSome, started, crunch())
    }

    pub async fn download_some(client: reqwest::Client, url: String) -> Report {
        let started = begin(Function::DownloadSome);
        let did = fetch_async(&client, &url).await;
        end(Function::DownloadSome, started, did)
    }

    pub async fn download_some_more(url: String) -> Report {
        let started = begin(Function::DownloadSomeMore);
        end(Function::DownloadSomeMore, started, fetch_blocking(&url))
    }

    pub async fn wait_some() -> Report {
        let started = begin(Function::WaitSome);
        for _ in 0..WAIT_SLEEPS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        end(
            Function::WaitSome,
            started,
            Did::Waited {
                sleeps: WAIT_SLEEPS,
            },
        )
    }
}

/// `thesync.py`: the same functions, each with the attribute that says where it runs.
mod thesync {
    use super::*;

    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(http::async_client);

    #[unsync(cpu_bound)]
    pub fn compute_some() -> Report {
        let started = begin(Function::ComputeSome);
        end(Function::ComputeSome, started, crunch())
    }

    #[unsync]
    pub async fn download_some(url: String) -> Report {
        let started = begin(Function::DownloadSome);
        let did = fetch_async(&CLIENT, &url).await;
        end(Function::DownloadSome, started, did)
    }

    #[unsync]
    pub fn download_some_more(url: String) -> Report {
        let started = begin(Function::DownloadSomeMore);
        end(Function::DownloadSomeMore, started, fetch_blocking(&url))
    }

    #[unsync]
    pub async fn wait_some() -> Report {
        let started = begin(Function::WaitSome);
        for _ in 0..WAIT_SLEEPS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        end(
            Function::WaitSome,
            started,
            Did::Waited {
                sleeps: WAIT_SLEEPS,
            },
        )
    }

    /// Await any handle from async code: here, a `cpu_bound` one, on the async runtime.
    #[unsync]
    pub async fn awaited(handle: Unfinished<Report>) -> (Report, Place) {
        let report = handle.await;
        (report, here())
    }

    /// Starts the worker processes (the first call starts them all) and says which answered.
    #[unsync(cpu_bound)]
    pub fn worker_pid(hold: Duration) -> u32 {
        std::thread::sleep(hold);
        std::process::id()
    }
}

struct Run {
    name: &'static str,
    wall: Duration,
    reports: Vec<Report>,
}

impl Run {
    fn of(&self, function: Function) -> impl Iterator<Item = &Report> {
        self.reports.iter().filter(move |r| r.function == function)
    }

    /// The sum of the calls' own times: what they take one after the other.
    fn sum_of_parts(&self) -> Duration {
        self.reports.iter().map(|r| r.took).sum()
    }
}

fn announce(name: &str) {
    println!("\n== {name}");
}

fn done(name: &'static str, started: Instant, reports: Vec<Report>) -> Run {
    let wall = started.elapsed();
    println!("Done in {}.", common::secs(wall));
    Run {
        name,
        wall,
        reports,
    }
}

fn run_nosync(urls: &[String], more_urls: &[String]) -> Run {
    announce("nosync: eleven plain calls, one after the other, on the main thread");
    let started = Instant::now();
    let reports = vec![
        nosync::compute_some(),
        nosync::compute_some(),
        nosync::compute_some(),
        nosync::download_some(urls[0].clone()),
        nosync::download_some(urls[1].clone()),
        nosync::download_some_more(more_urls[0].clone()),
        nosync::download_some_more(more_urls[1].clone()),
        nosync::wait_some(),
        nosync::wait_some(),
        nosync::wait_some(),
        nosync::wait_some(),
    ];
    done("nosync", started, reports)
}

fn run_presync(urls: &[String], more_urls: &[String]) -> Run {
    announce("presync: eleven async fns as tasks on one single-threaded executor, then gathered");
    let started = Instant::now();
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime");
    let (urls, more_urls) = (urls.to_vec(), more_urls.to_vec());
    let reports = executor.block_on(async move {
        let client = http::async_client();
        let tasks = vec![
            tokio::spawn(presync::compute_some()),
            tokio::spawn(presync::compute_some()),
            tokio::spawn(presync::compute_some()),
            tokio::spawn(presync::download_some(client.clone(), urls[0].clone())),
            tokio::spawn(presync::download_some(client.clone(), urls[1].clone())),
            tokio::spawn(presync::download_some_more(more_urls[0].clone())),
            tokio::spawn(presync::download_some_more(more_urls[1].clone())),
            tokio::spawn(presync::wait_some()),
            tokio::spawn(presync::wait_some()),
            tokio::spawn(presync::wait_some()),
            tokio::spawn(presync::wait_some()),
        ];
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.expect("a presync task panicked"));
        }
        reports
    });
    drop(executor);
    done("presync", started, reports)
}

/// What `run_unsync` learned besides the reports.
struct Unsynced {
    run: Run,
    /// The first `compute_some` handle, awaited inside an `#[unsync] async fn`.
    awaited: Report,
    awaited_at: Place,
}

fn run_unsync(urls: &[String], more_urls: &[String]) -> Unsynced {
    announce("unsync: each function where its attribute says; all started, then .result()");
    let started = Instant::now();
    let tasks: Vec<Unfinished<Report>> = vec![
        thesync::compute_some(),
        thesync::compute_some(),
        thesync::compute_some(),
        thesync::download_some(urls[0].clone()),
        thesync::download_some(urls[1].clone()),
        thesync::download_some_more(more_urls[0].clone()),
        thesync::download_some_more(more_urls[1].clone()),
        thesync::wait_some(),
        thesync::wait_some(),
        thesync::wait_some(),
        thesync::wait_some(),
    ];
    let awaiting = thesync::awaited(tasks[0].clone());
    println!(
        "main: all 11 started in {}, and the first compute_some handle cloned into an \
         #[unsync] async fn that awaits it; now blocking on .result() for each",
        common::millis(started.elapsed())
    );
    let reports: Vec<Report> = tasks.into_iter().map(Unfinished::result).collect();
    let (awaited, awaited_at) = awaiting.result();
    Unsynced {
        run: done("unsync", started, reports),
        awaited,
        awaited_at,
    }
}

/// Start the process pool before timing: its first call starts every worker process.
fn start_workers() {
    let started = Instant::now();
    let first = thesync::worker_pid(Duration::ZERO).result();
    let first_answer = started.elapsed();
    let pids: BTreeSet<u32> = (0..common::claims::cores())
        .map(|_| thesync::worker_pid(Duration::from_millis(20)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(Unfinished::result)
        .chain([first])
        .collect();
    println!(
        "\nProcess pool started before the unsync run (not timed): the first worker answered \
         after {}, workers {pids:?} all answering after {}",
        common::millis(first_answer),
        common::millis(started.elapsed())
    );
}

fn main() {
    let site = Site::start(DELAY);
    let main_place = here();
    println!(
        "Local site at {} answers each page after {DELAY:?}; compute_some = {} square roots, \
         wait_some = {WAIT_SLEEPS} sleeps of 1 ms; main is {main_place}",
        site.url("/"),
        common::thousands(COMPUTE_STEPS),
    );
    let urls: Vec<String> = EPISODES
        .iter()
        .map(|n| site.url(&format!("/episode/{n}")))
        .collect();
    let more_urls: Vec<String> = MORE_EPISODES
        .iter()
        .map(|n| site.url(&format!("/episode/{n}")))
        .collect();

    let nosync = run_nosync(&urls, &more_urls);
    let presync = run_presync(&urls, &more_urls);
    start_workers();
    let Unsynced {
        run: unsynced,
        awaited,
        awaited_at,
    } = run_unsync(&urls, &more_urls);

    // Each function's own time in each run, then the runs.
    println!();
    println!(
        "{:<20} {:>10} {:>10} {:>10}   where it ran under unsync",
        "seconds per call", "nosync", "presync", "unsync"
    );
    let runs = [&nosync, &presync, &unsynced];
    for function in Function::ALL {
        let times: Vec<String> = runs
            .iter()
            .map(|run| {
                let took: Vec<Duration> = run.of(function).map(|r| r.took).collect();
                let mean = took.iter().sum::<Duration>() / took.len() as u32;
                format!("{:.2}", mean.as_secs_f64())
            })
            .collect();
        let places: BTreeSet<String> = unsynced.of(function).map(|r| r.place.to_string()).collect();
        println!(
            "{:<20} {:>10} {:>10} {:>10}   {}",
            function.name(),
            times[0],
            times[1],
            times[2],
            places.into_iter().collect::<Vec<_>>().join("; ")
        );
    }
    let wait = |run: &Run| run.of(Function::WaitSome).map(|r| r.took).sum::<Duration>() / 4;
    println!(
        "wait_some, {WAIT_SLEEPS} sleeps of 1 ms: {} with std::thread::sleep (nosync), {} with \
         tokio::time::sleep (unsync), which rounds each sleep up to its timer's next 1 ms tick",
        common::secs(wait(&nosync)),
        common::secs(wait(&unsynced))
    );
    let cpu: Vec<String> = runs
        .iter()
        .flat_map(|run| run.of(Function::ComputeSome))
        .filter_map(|r| match &r.did {
            Did::Computed { cpu: Some(cpu), .. } => Some(format!("{:.2}", cpu.as_secs_f64())),
            _ => None,
        })
        .collect();
    println!(
        "compute_some's CPU seconds per call: {} (wall above CPU: the call waited for a core)",
        cpu.join(" ")
    );
    let parts = nosync.sum_of_parts();
    println!();
    for run in runs {
        println!(
            "{:<8} {:>7}  {:>4.2}x the sum of the parts ({})",
            run.name,
            common::secs(run.wall),
            common::ratio(run.wall, parts),
            common::secs(parts)
        );
    }
    println!(
        "(course, 12 cores: nosync 9.62 s, presync 4.93 s, unsync 1.3 s; its 2-core rerun \
         against a 250 ms local server: 6.5 s, 2.8 s, 1.26-1.47 s)"
    );

    let mut claims = Claims::new();
    let downloads: Vec<&Report> = runs
        .iter()
        .flat_map(|run| &run.reports)
        .filter(|r| matches!(r.did, Did::Downloaded { .. }))
        .collect();
    let right = downloads
        .iter()
        .filter(|r| match &r.did {
            Did::Downloaded {
                episode,
                bytes,
                title,
            } => *bytes == PAGE_BYTES && *title == http::episode_title(*episode),
            _ => false,
        })
        .count();
    claims.correct(
        "downloads correct: every page whole, with its title",
        right == downloads.len() && downloads.len() == 12,
        format!("{right}/12 pages of {PAGE_BYTES} bytes with the right <h1>"),
    );
    let sums: Vec<f64> = runs
        .iter()
        .flat_map(|run| run.of(Function::ComputeSome))
        .filter_map(|r| match r.did {
            Did::Computed { sum, .. } => Some(sum),
            _ => None,
        })
        .collect();
    claims.correct(
        "compute_some gives the same sum in every run, in-process or not",
        sums.len() == 9 && sums.iter().all(|s| s.to_bits() == sums[0].to_bits()),
        format!("{} calls, sum {:.6e}", sums.len(), sums[0]),
    );
    let on_main = |run: &Run| {
        run.reports
            .iter()
            .all(|r| r.place == main_place && r.place.thread == "main")
    };
    claims.correct(
        "nosync and presync: all eleven calls ran on the main thread",
        on_main(&nosync) && on_main(&presync),
        format!("{main_place}"),
    );
    let computed_elsewhere = unsynced
        .of(Function::ComputeSome)
        .filter(|r| r.place.in_worker_process())
        .count();
    let worker_pids: BTreeSet<u32> = unsynced
        .of(Function::ComputeSome)
        .map(|r| r.place.pid)
        .collect();
    claims.correct(
        "unsync: compute_some ran in other processes (the process pool)",
        computed_elsewhere == 3,
        format!(
            "{computed_elsewhere}/3 in worker pids {worker_pids:?}, main pid {}",
            main_place.pid
        ),
    );
    let async_on_runtime = unsynced
        .of(Function::DownloadSome)
        .chain(unsynced.of(Function::WaitSome))
        .all(|r| r.place.in_this_process() && r.place.on_runtime());
    let blocking_on_pool = unsynced
        .of(Function::DownloadSomeMore)
        .all(|r| r.place.in_this_process() && r.place.on_blocking_pool());
    claims.correct(
        "unsync: async fns on the runtime threads, the blocking download on the thread pool",
        async_on_runtime && blocking_on_pool,
        format!(
            "download_some and wait_some on {}, download_some_more on {}",
            threads(
                unsynced
                    .of(Function::DownloadSome)
                    .chain(unsynced.of(Function::WaitSome))
            ),
            threads(unsynced.of(Function::DownloadSomeMore))
        ),
    );
    claims.correct(
        "one handle, awaited inside #[unsync] async fn and .result()-ed in main: the same report",
        awaited == unsynced.reports[0] && awaited_at.on_runtime(),
        format!("awaited on {awaited_at}"),
    );
    let share = common::ratio(unsynced.wall, parts);
    claims.timing(
        "unsync wall < 0.6 x sum of parts",
        share < 0.6,
        format!(
            "{share:.2}x: {} against {}",
            common::secs(unsynced.wall),
            common::secs(parts)
        ),
    );
    claims.timing(
        "unsync < presync (the single executor)",
        unsynced.wall < presync.wall,
        format!(
            "{} against {}",
            common::secs(unsynced.wall),
            common::secs(presync.wall)
        ),
    );
    let presync_share = common::ratio(presync.wall, nosync.wall);
    claims.timing(
        "presync <= 0.75 x nosync (only the async downloads and the waits overlap)",
        presync_share <= 0.75,
        format!("{presync_share:.2}x"),
    );
    claims.finish();
}

fn threads<'a>(reports: impl Iterator<Item = &'a Report>) -> String {
    let names: BTreeSet<&str> = reports.map(|r| r.place.thread.as_str()).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}
