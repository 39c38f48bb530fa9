//! Web scraping, one page at a time against all at once: the course's chapter 4 lesson
//! (`web_scraping/sync_scrape` and `async_scrape`), offline.
//!
//! Ten episode pages are served by a local HTTP server that waits 100 ms before each answer
//! (the course's round trip to the real site). The titles are taken from each page's first
//! `<h1>` (`MISSING` when there is none) and printed in episode order, four ways:
//!
//! 1. a blocking client, one page after another, on the main thread;
//! 2. `#[unsync] async fn get_html`, awaited inside a loop: the pitfall the lecture shows.
//!    Async code that awaits each download before starting the next is still serial;
//! 3. all ten `get_html` calls started first, then awaited in order: the fix. The waiting
//!    costs one round trip instead of ten;
//! 4. the blocking client inside a plain `#[unsync] fn`, all started, then `.result()`: the
//!    thread pool is the way out when the only client you have blocks.
//!
//! Proves: every run finds the right titles in episode order; awaiting in a loop is no faster
//! than the blocking loop; starting everything first is several times faster.
//!
//! `cargo run --release --example web_scrape`

mod common;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::http::{self, Site};
use common::place::{Place, here};
use unsync::{Unfinished, unsync};

const DELAY: Duration = Duration::from_millis(100);
const FIRST_EPISODE: u32 = 375;
const EPISODES: u32 = 10;

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(http::async_client);
static BLOCKING_CLIENT: LazyLock<reqwest::blocking::Client> = LazyLock::new(http::blocking_client);

struct Download {
    episode: u32,
    html: String,
    place: Place,
}

#[unsync]
async fn get_html(episode: u32, url: String) -> Download {
    let place = here();
    println!("Getting HTML for episode {episode} ({place})");
    let response = CLIENT
        .get(&url)
        .send()
        .await
        .expect("the local site answers");
    let html = response
        .error_for_status()
        .expect("the page exists")
        .text()
        .await
        .expect("a text page");
    Download {
        episode,
        html,
        place,
    }
}

fn get_html_blocking(episode: u32, url: &str) -> Download {
    let place = here();
    println!("Getting HTML for episode {episode} ({place})");
    let html = BLOCKING_CLIENT
        .get(url)
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .and_then(reqwest::blocking::Response::text)
        .expect("the local site answers with the page");
    Download {
        episode,
        html,
        place,
    }
}

#[unsync]
fn get_html_on_a_thread(episode: u32, url: String) -> Download {
    get_html_blocking(episode, &url)
}

fn get_title(download: &Download) -> String {
    println!("Getting TITLE for episode {}", download.episode);
    let title = http::first_h1(&download.html)
        .unwrap_or("MISSING")
        .to_owned();
    println!("Title found: {title}");
    title
}

#[unsync]
async fn await_each(pages: Vec<(u32, String)>) -> Vec<(String, Place)> {
    let mut titles = Vec::new();
    for (episode, url) in pages {
        let download = get_html(episode, url).await;
        titles.push((get_title(&download), download.place));
    }
    titles
}

#[unsync]
async fn start_all_then_await(pages: Vec<(u32, String)>) -> Vec<(String, Place)> {
    let started: Vec<Unfinished<Download>> = pages
        .into_iter()
        .map(|(episode, url)| get_html(episode, url))
        .collect();
    let mut titles = Vec::new();
    for handle in started {
        let download = handle.await;
        titles.push((get_title(&download), download.place));
    }
    titles
}

struct Run {
    name: &'static str,
    elapsed: Duration,
    titles: Vec<String>,
    places: Vec<Place>,
    most_at_once: usize,
}

fn timed(site: &Site, name: &'static str, body: impl FnOnce() -> Vec<(String, Place)>) -> Run {
    println!("\n== {name}");
    site.traffic().reset();
    let start = Instant::now();
    let (titles, places) = body().into_iter().unzip();
    let elapsed = start.elapsed();
    println!("Done in {}.", common::secs(elapsed));
    Run {
        name,
        elapsed,
        titles,
        places,
        most_at_once: site.traffic().max_in_flight(),
    }
}

fn main() {
    let site = Site::start(DELAY);
    println!(
        "Local site at {} answers each page after {DELAY:?} (the course's ~100 ms round trip); \
         main is {}",
        site.url("/"),
        here()
    );
    let pages: Vec<(u32, String)> = (FIRST_EPISODE..FIRST_EPISODE + EPISODES)
        .map(|n| (n, site.url(&format!("/episode/{n}"))))
        .collect();
    let expected: Vec<String> = pages
        .iter()
        .map(|&(n, _)| http::episode_title(n).unwrap_or_else(|| "MISSING".into()))
        .collect();

    // Connect both clients and start the runtime before anything is timed.
    let warm_up = site.url("/episode/1");
    get_html(0, warm_up.clone()).result();
    get_html_on_a_thread(0, warm_up).result();

    let sequential = timed(&site, "one by one, blocking client, main thread", || {
        pages
            .iter()
            .map(|(episode, url)| {
                let download = get_html_blocking(*episode, url);
                (get_title(&download), download.place)
            })
            .collect()
    });
    let awaited_each = timed(&site, "async, awaited one at a time (the pitfall)", || {
        await_each(pages.clone()).result()
    });
    let all_started = timed(&site, "async, all started, then awaited in order", || {
        start_all_then_await(pages.clone()).result()
    });
    let on_threads = timed(
        &site,
        "blocking client on the thread pool, all started",
        || {
            let started: Vec<Unfinished<Download>> = pages
                .iter()
                .map(|(episode, url)| get_html_on_a_thread(*episode, url.clone()))
                .collect();
            started
                .into_iter()
                .map(|handle| {
                    let download = handle.result();
                    (get_title(&download), download.place)
                })
                .collect()
        },
    );

    println!();
    let runs = [&sequential, &awaited_each, &all_started, &on_threads];
    for run in runs {
        println!(
            "{:<48} {:>7}  {:>4.2}x one by one, at most {:>2} requests at the server at once",
            run.name,
            common::secs(run.elapsed),
            common::ratio(run.elapsed, sequential.elapsed),
            run.most_at_once,
        );
    }

    let mut claims = Claims::new();
    for run in runs {
        let right = run
            .titles
            .iter()
            .zip(&expected)
            .filter(|(got, want)| got == want)
            .count();
        claims.correct(
            format!("{}: titles correct, in episode order", run.name),
            right == expected.len() && run.titles.len() == expected.len(),
            format!("{right}/{} right", expected.len()),
        );
    }
    let placed = sequential.places.iter().all(|p| p.thread == "main")
        && awaited_each.places.iter().all(Place::on_runtime)
        && all_started.places.iter().all(Place::on_runtime)
        && on_threads.places.iter().all(Place::on_blocking_pool)
        && runs
            .iter()
            .flat_map(|r| &r.places)
            .all(Place::in_this_process);
    claims.correct(
        "downloads ran on main / the async runtime / the blocking pool, as written",
        placed,
        format!(
            "async on {} runtime threads, blocking on {} pool threads",
            distinct(all_started.places.iter().chain(&awaited_each.places)),
            distinct(on_threads.places.iter()),
        ),
    );
    let pitfall = common::ratio(awaited_each.elapsed, sequential.elapsed);
    claims.timing(
        "awaiting one at a time is still serial: >= 0.8 x one by one",
        pitfall >= 0.8,
        format!("{pitfall:.2}x"),
    );
    let fix = common::ratio(all_started.elapsed, sequential.elapsed);
    claims.timing(
        "all started, then awaited: <= 0.35 x one by one",
        fix <= 0.35,
        format!("{fix:.2}x"),
    );
    let threads = common::ratio(on_threads.elapsed, sequential.elapsed);
    claims.timing(
        "blocking client on the thread pool, all started: <= 0.35 x one by one",
        threads <= 0.35,
        format!("{threads:.2}x"),
    );
    claims.timing(
        "all started: the server had all 10 requests in hand at once",
        all_started.most_at_once == pages.len(),
        format!("at most {} at once", all_started.most_at_once),
    );
    claims.finish();
}

fn distinct<'a>(places: impl Iterator<Item = &'a Place>) -> usize {
    places
        .map(|p| &p.thread)
        .collect::<std::collections::HashSet<_>>()
        .len()
}
