//! Producer and consumer, sync against async against threads: the core lesson of the course's
//! chapter 4 (`prod_sync`, `prod_async`) and the threaded version of chapter 5
//! (`basic_threads/threaded_prod.py`), with the sleeps scaled down 10 times.
//!
//! Two producers make items `i²` for `i = 1..=8`, each stamped with its creation time, pausing
//! 50 to 150 ms (seeded) after each; one consumer takes them in arrival order, prints how long
//! each waited (its latency), and pauses 50 ms per item. Three runs:
//!
//! 1. sync: both producers, then the consumer, one after the other on the main thread;
//! 2. async: `#[unsync] async fn` producers and consumer on the background runtime, linked by
//!    an async channel. Nothing waits for anything but the channel;
//! 3. threads: plain `#[unsync] fn`s on the thread pool, linked by a blocking channel.
//!
//! Proves: every run consumes every item exactly once; the async run takes well under the
//! sync time and its items wait a small fraction as long; threads do about as well as async.
//!
//! The course opens the chapter with a generator, a function that can stop and resume. An
//! `async fn` is the same idea in Rust: the compiler turns it into a state machine that the
//! runtime polls, and each `.await` is a point where it can stop and later resume.
//!
//! `cargo run --release --example producer_consumer`

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::place::{Place, here};
use common::rng::Rng;
use unsync::unsync;

const PRODUCERS: usize = 2;
const ITEMS_PER_PRODUCER: u64 = 8;
const PRODUCER_PAUSE_MS: (u64, u64) = (50, 150);
const CONSUMER_PAUSE: Duration = Duration::from_millis(50);
const SEED: u64 = 2018;

struct Item {
    producer: usize,
    index: u64,
    value: u64,
    made: Instant,
    made_at: Place,
}

struct Consumed {
    item: Item,
    latency: Duration,
    at: Place,
}

/// The producer's pauses: the same seeded sequence in every run.
fn pauses(producer: usize) -> impl Iterator<Item = Duration> {
    let mut rng = Rng::seeded(SEED + producer as u64);
    std::iter::repeat_with(move || {
        Duration::from_millis(rng.range(PRODUCER_PAUSE_MS.0, PRODUCER_PAUSE_MS.1))
    })
}

fn make(producer: usize, index: u64) -> Item {
    let made_at = here();
    println!(" -- generated item {index} of producer {producer} ({made_at})");
    Item {
        producer,
        index,
        value: index * index,
        made: Instant::now(),
        made_at,
    }
}

fn take(item: Item) -> Consumed {
    let latency = item.made.elapsed();
    let at = here();
    println!(
        " +++ Processed value {} after {:.2} sec. ({at})",
        item.value,
        latency.as_secs_f64()
    );
    Consumed { item, latency, at }
}

fn run_sync() -> Vec<Consumed> {
    let mut data = VecDeque::new();
    for producer in 1..=PRODUCERS {
        for (index, pause) in (1..=ITEMS_PER_PRODUCER).zip(pauses(producer)) {
            data.push_back(make(producer, index));
            std::thread::sleep(pause);
        }
    }
    let mut consumed = Vec::new();
    while let Some(item) = data.pop_front() {
        consumed.push(take(item));
        std::thread::sleep(CONSUMER_PAUSE);
    }
    consumed
}

#[unsync]
async fn generate_data(producer: usize, data: tokio::sync::mpsc::UnboundedSender<Item>) {
    for (index, pause) in (1..=ITEMS_PER_PRODUCER).zip(pauses(producer)) {
        data.send(make(producer, index))
            .expect("the consumer outlives the producers");
        tokio::time::sleep(pause).await;
    }
}

#[unsync]
async fn process_data(mut data: tokio::sync::mpsc::UnboundedReceiver<Item>) -> Vec<Consumed> {
    let mut consumed = Vec::new();
    while let Some(item) = data.recv().await {
        consumed.push(take(item));
        tokio::time::sleep(CONSUMER_PAUSE).await;
    }
    consumed
}

fn run_async() -> Vec<Consumed> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let producers: Vec<_> = (1..=PRODUCERS)
        .map(|producer| generate_data(producer, sender.clone()))
        .collect();
    drop(sender);
    let consumer = process_data(receiver);
    for producer in producers {
        producer.result();
    }
    consumer.result()
}

#[unsync]
fn generate_data_on_a_thread(producer: usize, data: std::sync::mpsc::Sender<Item>) {
    for (index, pause) in (1..=ITEMS_PER_PRODUCER).zip(pauses(producer)) {
        data.send(make(producer, index))
            .expect("the consumer outlives the producers");
        std::thread::sleep(pause);
    }
}

#[unsync]
fn process_data_on_a_thread(data: std::sync::mpsc::Receiver<Item>) -> Vec<Consumed> {
    let mut consumed = Vec::new();
    while let Ok(item) = data.recv() {
        consumed.push(take(item));
        std::thread::sleep(CONSUMER_PAUSE);
    }
    consumed
}

fn run_threads() -> Vec<Consumed> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let producers: Vec<_> = (1..=PRODUCERS)
        .map(|producer| generate_data_on_a_thread(producer, sender.clone()))
        .collect();
    drop(sender);
    let consumer = process_data_on_a_thread(receiver);
    for producer in producers {
        producer.result();
    }
    consumer.result()
}

struct Run {
    name: &'static str,
    total: Duration,
    consumed: Vec<Consumed>,
}

impl Run {
    fn mean_latency(&self) -> Duration {
        let sum: Duration = self.consumed.iter().map(|c| c.latency).sum();
        sum / self.consumed.len().max(1) as u32
    }

    fn max_latency(&self) -> Duration {
        self.consumed
            .iter()
            .map(|c| c.latency)
            .max()
            .unwrap_or_default()
    }

    /// Whether each of the items made was consumed exactly once, with its right value.
    fn each_once(&self) -> (bool, String) {
        let mut seen: HashMap<(usize, u64), usize> = HashMap::new();
        let mut wrong_values = 0;
        for c in &self.consumed {
            *seen.entry((c.item.producer, c.item.index)).or_default() += 1;
            if c.item.value != c.item.index * c.item.index {
                wrong_values += 1;
            }
        }
        let expected = PRODUCERS * ITEMS_PER_PRODUCER as usize;
        let once = seen.values().filter(|&&n| n == 1).count();
        let all_made =
            (1..=PRODUCERS).all(|p| (1..=ITEMS_PER_PRODUCER).all(|i| seen.contains_key(&(p, i))));
        (
            all_made && once == expected && self.consumed.len() == expected && wrong_values == 0,
            format!(
                "{once}/{expected} consumed once, {} consumptions, {wrong_values} wrong values",
                self.consumed.len()
            ),
        )
    }

    fn places(&self) -> impl Iterator<Item = &Place> {
        self.consumed.iter().flat_map(|c| [&c.item.made_at, &c.at])
    }
}

fn timed(name: &'static str, body: fn() -> Vec<Consumed>) -> Run {
    println!("\n== {name}");
    let start = Instant::now();
    let consumed = body();
    let run = Run {
        name,
        total: start.elapsed(),
        consumed,
    };
    println!(
        "App exiting, total time: {:.2} sec. Mean latency {:.2} sec, max {:.2} sec.",
        run.total.as_secs_f64(),
        run.mean_latency().as_secs_f64(),
        run.max_latency().as_secs_f64()
    );
    run
}

fn main() {
    println!(
        "{PRODUCERS} producers x {ITEMS_PER_PRODUCER} items, pausing {}-{} ms (seed {SEED}); \
         one consumer pausing {CONSUMER_PAUSE:?} per item. The course's sleeps / 10. Main is {}.",
        PRODUCER_PAUSE_MS.0,
        PRODUCER_PAUSE_MS.1,
        here()
    );
    let sync = timed(
        "sync: produce everything, then consume (main thread)",
        run_sync,
    );
    let asynchronous = timed("async: #[unsync] async fn, async channel", run_async);
    let threads = timed("threads: #[unsync] fn, blocking channel", run_threads);

    println!();
    for run in [&sync, &asynchronous, &threads] {
        println!(
            "{:<55} total {:>7}, mean latency {:>7}, max {:>7}",
            run.name,
            common::secs(run.total),
            common::secs(run.mean_latency()),
            common::secs(run.max_latency())
        );
    }

    let mut claims = Claims::new();
    for run in [&sync, &asynchronous, &threads] {
        let (ok, figure) = run.each_once();
        claims.correct(
            format!("{}: every item consumed exactly once", run.name),
            ok,
            figure,
        );
    }
    let placed = sync.places().all(|p| p.thread == "main")
        && asynchronous.places().all(Place::on_runtime)
        && threads.places().all(Place::on_blocking_pool)
        && [&sync, &asynchronous, &threads]
            .iter()
            .flat_map(|r| r.places())
            .all(Place::in_this_process);
    claims.correct(
        "sync ran on main, async on the runtime, threads on the blocking pool",
        placed,
        format!(
            "threads used: async {}, thread pool {}",
            distinct(asynchronous.places()),
            distinct(threads.places())
        ),
    );
    let speed = common::ratio(asynchronous.total, sync.total);
    claims.timing(
        "async total <= 0.6 x sync total",
        speed <= 0.6,
        format!("{speed:.2}x"),
    );
    let latency = common::ratio(asynchronous.mean_latency(), sync.mean_latency());
    claims.timing(
        "async mean latency <= 0.1 x sync mean latency",
        latency <= 0.1,
        format!(
            "{latency:.3}x: {} against {}",
            common::secs(asynchronous.mean_latency()),
            common::secs(sync.mean_latency())
        ),
    );
    let alike = common::ratio(threads.total, asynchronous.total);
    claims.timing(
        "threads total within 0.8-1.25 x async total",
        (0.8..=1.25).contains(&alike),
        format!("{alike:.2}x"),
    );
    claims.finish();
}

fn distinct<'a>(places: impl Iterator<Item = &'a Place>) -> usize {
    places
        .map(|p| &p.thread)
        .collect::<std::collections::HashSet<_>>()
        .len()
}
