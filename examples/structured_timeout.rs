//! Structured concurrency under a deadline: the course's trio demo (chapter 9,
//! `the_trio/prod_trio.py`), with the sleeps and the 5 s deadline scaled down 10 times.
//!
//! Two producers (`Prod 1`, `Prod 2`) and a `Consumer`, all `#[unsync] async fn`, are linked
//! by a bounded channel of capacity 10: a producer that finds it full waits (backpressure).
//! They run inside a scope, the nursery of trio, that ends when every child has finished,
//! when one fails (its siblings are cancelled), or when the deadline passes (everything is
//! cancelled). unsync has no scope primitive yet: the nursery here is the handles plus
//! `tokio::time::timeout` and `cancel()`, about twenty lines.
//!
//! Four runs: the course's workload (20, 20 and 40 items) under a 500 ms deadline; the small
//! workload (2, 2 and 4) that finishes before it; producers that never pause, so the channel
//! fills up and they are cancelled while waiting to send; a consumer that fails at its third
//! item.
//!
//! Proves: the deadline cancels every child, on time; a small workload finishes untouched;
//! backpressure bounds the items in flight (produced but not yet received) by the channel's
//! capacity plus one per producer and one for the consumer, where an unbounded channel would
//! let the producers run 40 items ahead; a failure cancels the siblings.
//!
//! `cargo run --release --example structured_timeout`

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::place::{Place, here};
use common::rng::Rng;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use unsync::{Unfinished, unsync};

const CAPACITY: usize = 10;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 1;
/// The most items that can be in flight (counted at the send point, not yet counted at the
/// receive point) at any instant. A producer counts an item just before it sends it, and makes
/// its next one only once the send has returned, so each producer holds at most one counted
/// item that is not in the channel yet (also the one it held when it was cancelled or gave up:
/// that one stays counted, but that producer counts no more). The channel holds at most
/// `CAPACITY`. The consumer takes an item and uncounts it in the same step, with no `.await`
/// between, but a producer on another thread can send into the freed slot and count its next
/// item in between: one more. Without backpressure (an unbounded channel) nothing would bound
/// this but the 40 items of the producers.
const MOST_IN_FLIGHT: usize = CAPACITY + PRODUCERS + CONSUMERS;
const DEADLINE: Duration = Duration::from_millis(500);
const CONSUMER_PAUSE: Duration = Duration::from_millis(50);
const SEED: u64 = 11;

struct Item {
    value: u64,
    made: Instant,
}

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    per_producer: u64,
    to_consume: u64,
    /// Producer pause range in ms; `(0, 0)` for none.
    producer_pause: (u64, u64),
    consumer_fails_at: Option<u64>,
}

/// Counters the children keep up to date, so they survive a cancelled child.
#[derive(Default)]
struct Tally {
    generated: AtomicUsize,
    processed: AtomicUsize,
    /// Items counted at the send point and not yet at the receive point (see
    /// `MOST_IN_FLIGHT`), and the most seen, right after each count at the send point.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// What the channel says it holds (its used permits) after each send: never more than
    /// its capacity by construction, so it only shows whether the channel filled up.
    most_in_channel: AtomicUsize,
    places: Mutex<HashSet<Place>>,
}

impl Tally {
    fn ran_at(&self) -> Place {
        let place = here();
        self.places.lock().expect("no panics").insert(place.clone());
        place
    }
}

#[unsync]
async fn producer(
    name: &'static str,
    seed: u64,
    work: Workload,
    channel: mpsc::Sender<Item>,
    tally: Arc<Tally>,
) -> Result<u64, String> {
    let mut rng = Rng::seeded(seed);
    for n in 1..=work.per_producer {
        let value = n * n;
        tally.generated.fetch_add(1, Ordering::SeqCst);
        println!(" -- {name} generated item {n} ({})", tally.ran_at());
        let item = Item {
            value,
            made: Instant::now(),
        };
        // The send point: the item is in flight until the consumer receives it.
        let in_flight = tally.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        tally.most_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        if channel.send(item).await.is_err() {
            return Err(format!("{name}: the consumer is gone"));
        }
        let in_channel = channel.max_capacity() - channel.capacity();
        tally
            .most_in_channel
            .fetch_max(in_channel, Ordering::SeqCst);
        let (lo, hi) = work.producer_pause;
        if hi > 0 {
            tokio::time::sleep(Duration::from_millis(rng.range(lo, hi))).await;
        }
    }
    Ok(work.per_producer)
}

#[unsync]
async fn consumer(
    work: Workload,
    mut channel: mpsc::Receiver<Item>,
    tally: Arc<Tally>,
) -> Result<u64, String> {
    for n in 1..=work.to_consume {
        let Some(item) = channel.recv().await else {
            return Err("the producers are gone".into());
        };
        // The receive point, in the same step as `recv` (no `.await` in between).
        tally.in_flight.fetch_sub(1, Ordering::SeqCst);
        if work.consumer_fails_at == Some(n) {
            return Err(format!("cannot process item {n} (value {})", item.value));
        }
        tally.processed.fetch_add(1, Ordering::SeqCst);
        println!(
            " +++ Consumer processed value {} after {:.2} sec. ({})",
            item.value,
            item.made.elapsed().as_secs_f64(),
            tally.ran_at()
        );
        tokio::time::sleep(CONSUMER_PAUSE).await;
    }
    Ok(work.to_consume)
}

#[derive(Clone, Debug, PartialEq)]
enum End {
    Finished(u64),
    Failed(String),
    Cancelled,
}

struct ScopeReport {
    why: String,
    elapsed: Duration,
    children: Vec<(&'static str, End)>,
    generated: usize,
    processed: usize,
    most_in_flight: usize,
    most_in_channel: usize,
    place: Place,
    children_ran_at: HashSet<Place>,
}

/// The nursery: start the children, wait until all finish, one fails, or the deadline
/// passes; then cancel whatever still runs, and say how each child ended.
#[unsync]
async fn nursery(work: Workload, deadline: Duration) -> ScopeReport {
    let place = here();
    let start = Instant::now();
    let tally = Arc::new(Tally::default());
    let (sender, receiver) = mpsc::channel(CAPACITY);
    let children: Vec<(&'static str, Unfinished<Result<u64, String>>)> = vec![
        (
            "Prod 1",
            producer("Prod 1", SEED, work, sender.clone(), tally.clone()),
        ),
        (
            "Prod 2",
            producer("Prod 2", SEED + 1, work, sender, tally.clone()),
        ),
        ("Consumer", consumer(work, receiver, tally.clone())),
    ];

    let mut ends: FuturesUnordered<_> = children
        .iter()
        .map(|&(name, ref child)| {
            let child = child.clone().catch();
            async move { (name, child.await) }
        })
        .collect();
    let first_failure = async {
        while let Some((name, end)) = ends.next().await {
            match end {
                Ok(Ok(_)) => {}
                Ok(Err(message)) => return Some(format!("{name} failed: {message}")),
                Err(error) => return Some(format!("{name} failed: {error}")),
            }
        }
        None
    };
    let why = match tokio::time::timeout(deadline, first_failure).await {
        Ok(None) => "every child finished".to_owned(),
        Ok(Some(failure)) => format!("{failure}; cancelling the others"),
        Err(_) => format!("deadline of {deadline:?} passed; cancelling everything"),
    };
    for (_, child) in &children {
        child.cancel();
    }
    let elapsed = start.elapsed();

    let mut report = Vec::new();
    for (name, child) in children {
        let end = match child.catch().await {
            Ok(Ok(n)) => End::Finished(n),
            Ok(Err(message)) => End::Failed(message),
            Err(unsync::Error::Cancelled { .. }) => End::Cancelled,
            Err(error) => End::Failed(error.to_string()),
        };
        report.push((name, end));
    }
    ScopeReport {
        why,
        elapsed,
        children: report,
        generated: tally.generated.load(Ordering::SeqCst),
        processed: tally.processed.load(Ordering::SeqCst),
        most_in_flight: tally.most_in_flight.load(Ordering::SeqCst),
        most_in_channel: tally.most_in_channel.load(Ordering::SeqCst),
        place,
        children_ran_at: tally.places.lock().expect("no panics").clone(),
    }
}

fn run(work: Workload) -> ScopeReport {
    println!("\n== {}", work.name);
    let report = nursery(work, DEADLINE).result();
    println!(
        "Scope ended after {:.3} sec. ({}): {}",
        report.elapsed.as_secs_f64(),
        report.place,
        report.why
    );
    for (name, end) in &report.children {
        println!("  {name:<8} {end:?}");
    }
    println!(
        "  {} generated, {} processed; at most {} in flight (bound {MOST_IN_FLIGHT}), {} of \
         {CAPACITY} in the channel",
        report.generated, report.processed, report.most_in_flight, report.most_in_channel
    );
    println!(
        "  children ran in {}",
        common::place::summary(&report.children_ran_at)
    );
    report
}

fn all_cancelled(report: &ScopeReport) -> bool {
    report
        .children
        .iter()
        .all(|(_, end)| *end == End::Cancelled)
}

fn summary(report: &ScopeReport) -> String {
    report
        .children
        .iter()
        .map(|(name, end)| match end {
            End::Finished(n) => format!("{name} finished {n}"),
            End::Failed(_) => format!("{name} failed"),
            End::Cancelled => format!("{name} cancelled"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    println!(
        "Channel capacity {CAPACITY}, deadline {DEADLINE:?} (the course's 5 s), consumer pause \
         {CONSUMER_PAUSE:?}. Main is {}.",
        here()
    );
    let course = run(Workload {
        name: "the course's workload (20, 20, 40) under the deadline",
        per_producer: 20,
        to_consume: 40,
        producer_pause: (50, 150),
        consumer_fails_at: None,
    });
    let small = run(Workload {
        name: "a small workload (2, 2, 4)",
        per_producer: 2,
        to_consume: 4,
        producer_pause: (50, 150),
        consumer_fails_at: None,
    });
    let flood = run(Workload {
        name: "producers that never pause: the channel fills up",
        per_producer: 20,
        to_consume: 40,
        producer_pause: (0, 0),
        consumer_fails_at: None,
    });
    let failing = run(Workload {
        name: "a consumer that fails at its third item",
        per_producer: 20,
        to_consume: 40,
        producer_pause: (50, 150),
        consumer_fails_at: Some(3),
    });

    let mut claims = Claims::new();
    claims.correct(
        "course workload: the deadline cancelled all three children, < 40 items processed",
        all_cancelled(&course) && course.processed < 40,
        format!(
            "{}; {} generated, {} processed",
            summary(&course),
            course.generated,
            course.processed
        ),
    );
    let off = course.elapsed.as_secs_f64() - DEADLINE.as_secs_f64();
    claims.timing(
        "course workload: the scope ended at the deadline, 500 ms +- 60 ms",
        off.abs() <= 0.060,
        format!("{:.0} ms", course.elapsed.as_secs_f64() * 1e3),
    );
    claims.correct(
        "small workload: finished before the deadline, nothing cancelled, 4 processed",
        small
            .children
            .iter()
            .all(|(_, end)| matches!(end, End::Finished(_)))
            && small.processed == 4,
        format!(
            "{} in {:.0} ms",
            summary(&small),
            small.elapsed.as_secs_f64() * 1e3
        ),
    );
    let most = [&course, &small, &flood, &failing]
        .iter()
        .map(|r| r.most_in_flight)
        .max()
        .unwrap_or(0);
    claims.correct(
        "never more than 13 items in flight (capacity 10 + 1 per producer + 1 for the \
         consumer), in any run",
        most <= MOST_IN_FLIGHT,
        format!("at most {most}; the flood run {}", flood.most_in_flight),
    );
    claims.correct(
        "channel full: the deadline cancelled the producers while they waited to send",
        all_cancelled(&flood) && flood.generated > flood.processed + CAPACITY,
        format!(
            "{}; {} generated, {} processed",
            summary(&flood),
            flood.generated,
            flood.processed
        ),
    );
    claims.timing(
        "channel full: backpressure engaged (the channel reached 10)",
        flood.most_in_channel == CAPACITY,
        format!(
            "the channel held at most {}, {} in flight",
            flood.most_in_channel, flood.most_in_flight
        ),
    );
    let consumer_failed = failing
        .children
        .iter()
        .any(|(name, end)| *name == "Consumer" && matches!(end, End::Failed(_)));
    let producers_stopped = failing
        .children
        .iter()
        .filter(|(name, _)| name.starts_with("Prod"))
        .all(|(_, end)| *end == End::Cancelled);
    claims.correct(
        "a failing consumer: its error reached the scope, both producers were cancelled",
        consumer_failed && producers_stopped && failing.processed == 2,
        summary(&failing),
    );
    claims.timing(
        "a failing consumer: the scope ended well before the deadline",
        failing.elapsed < DEADLINE.mul_f64(0.8),
        format!("{:.0} ms", failing.elapsed.as_secs_f64() * 1e3),
    );
    let runs = [&course, &small, &flood, &failing];
    let places: HashSet<&Place> = runs
        .iter()
        .flat_map(|r| r.children_ran_at.iter().chain([&r.place]))
        .collect();
    claims.correct(
        "the scopes and their children ran on the async runtime of this process",
        places.iter().all(|p| p.on_runtime() && p.in_this_process()),
        format!(
            "threads: {}",
            places
                .iter()
                .map(|p| p.thread.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    claims.finish();
}
