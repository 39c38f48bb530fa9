//! Thread basics: the course's chapter 5 `hello_threads/hello.py`, with one second scaled to
//! 100 ms.
//!
//! Four greeters (Michael 10 times, Sarah 5, Zoe 2, Mark 11) say hello once a tick on threads
//! of the pool, three as `#[unsync] fn greeter`, one through `unsync::spawn_blocking` (the
//! same thing without the attribute). Meanwhile `main` does other work, then joins each with
//! a one-tick timeout (`wait_timeout`, the course's `join(timeout)`) and prints `Done.`
//!
//! In Python the greeters are daemon threads, killed when the program exits. Rust cannot kill
//! a thread, and neither can unsync: `cancel()` makes the handle resolve to `Cancelled` at
//! once, and the thread stops at its next look at `unsync::is_cancelled()`. Cancellation is
//! cooperative, and this example measures how long it takes.
//!
//! Proves: calls start at once and run side by side on distinct pool threads; `main` gets
//! past the timed joins while the long greeters still run; Zoe finishes and cannot be
//! cancelled; the others stop early, within a tick of the cancel.
//!
//! `cargo run --release --example threads_basics`

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::place::{Place, here};
use unsync::{Unfinished, unsync};

const TICK: Duration = Duration::from_millis(100);

struct Stopped {
    name: &'static str,
    greeted: u32,
    at: Instant,
    place: Place,
}

fn greet(name: &'static str, times: u32, stopped: mpsc::Sender<Stopped>) -> u32 {
    let place = here();
    let mut greeted = 0;
    for n in 1..=times {
        if unsync::is_cancelled() {
            break;
        }
        println!("{n}. Hello there {name} ({place})");
        greeted = n;
        if n < times {
            std::thread::sleep(TICK);
        }
    }
    let _ = stopped.send(Stopped {
        name,
        greeted,
        at: Instant::now(),
        place,
    });
    greeted
}

#[unsync]
fn greeter(name: &'static str, times: u32, stopped: mpsc::Sender<Stopped>) -> u32 {
    greet(name, times, stopped)
}

struct Greeter {
    name: &'static str,
    times: u32,
    handle: Unfinished<u32>,
}

fn main() {
    println!(
        "One tick is {TICK:?} (the course's 1 s). Main is {}.",
        here()
    );
    let start = Instant::now();
    let (stopped, stops) = mpsc::channel();
    let mut greeters: Vec<Greeter> = [("Michael", 10), ("Sarah", 5), ("Zoe", 2)]
        .into_iter()
        .map(|(name, times)| Greeter {
            name,
            times,
            handle: greeter(name, times, stopped.clone()),
        })
        .collect();
    let mark = stopped.clone();
    greeters.push(Greeter {
        name: "Mark",
        times: 11,
        handle: unsync::spawn_blocking(move || greet("Mark", 11, mark)),
    });
    drop(stopped);

    println!("This is other work.");
    println!("{}", 2 * 2);
    for greeter in &greeters {
        greeter.handle.wait_timeout(TICK);
    }
    let done_at = start.elapsed();
    println!("Done. ({:.2} s)", done_at.as_secs_f64());
    let running_at_done: Vec<bool> = greeters.iter().map(|g| !g.handle.is_done()).collect();

    println!("\nPython would exit here and its daemon threads would die. Cancelling instead:");
    let cancelled_at = Instant::now();
    let cancelled: Vec<bool> = greeters.iter().map(|g| g.handle.cancel()).collect();
    let mut reports: Vec<Stopped> = Vec::new();
    while reports.len() < greeters.len() {
        match stops.recv_timeout(Duration::from_secs(2)) {
            Ok(report) => reports.push(report),
            Err(_) => break,
        }
    }
    let mut slowest = Duration::ZERO;
    let mut outcomes = Vec::new();
    for (greeter, was_cancelled) in greeters.into_iter().zip(&cancelled) {
        let report = reports.iter().find(|r| r.name == greeter.name);
        let stop = report.map(|r| r.at.saturating_duration_since(cancelled_at));
        if *was_cancelled {
            slowest = slowest.max(stop.unwrap_or(Duration::MAX));
        }
        let handle_says = match greeter.handle.catch().result() {
            Ok(greeted) => format!("Ok({greeted})"),
            Err(error) => format!("Err({error})"),
        };
        println!(
            "{:<8} greeted {:>2} of {:>2}; cancel() -> {was_cancelled:<5}; thread stopped {}; \
             the handle says {handle_says}",
            greeter.name,
            report.map_or(0, |r| r.greeted),
            greeter.times,
            match (was_cancelled, stop) {
                (true, Some(after)) => format!("{} after the cancel", common::millis(after)),
                (false, Some(_)) => "on its own, before the cancel".to_owned(),
                (_, None) => "NEVER".to_owned(),
            },
        );
        outcomes.push((greeter.name, greeter.times, *was_cancelled, report, stop));
    }

    let mut claims = Claims::new();
    let by_name = |name: &str| outcomes.iter().find(|o| o.0 == name);
    let zoe = by_name("Zoe").expect("Zoe greets");
    claims.correct(
        "Zoe greeted 2 of 2 and finished, so cancel() had nothing to stop",
        zoe.3.is_some_and(|r| r.greeted == 2) && !zoe.2,
        format!(
            "greeted {}, cancel() -> {}",
            zoe.3.map_or(0, |r| r.greeted),
            zoe.2
        ),
    );
    let long_ones_running = ["Michael", "Mark"].iter().all(|name| {
        let i = outcomes.iter().position(|o| o.0 == *name).expect("known");
        running_at_done[i]
    });
    claims.correct(
        "Michael and Mark were still greeting at Done.",
        long_ones_running,
        format!("Done. at {}", common::secs(done_at)),
    );
    let stopped_early = ["Michael", "Mark"].iter().all(|name| {
        by_name(name).is_some_and(|&(_, times, was_cancelled, report, _)| {
            was_cancelled && report.is_some_and(|r| r.greeted >= 1 && r.greeted < times)
        })
    });
    claims.correct(
        "Michael and Mark were cancelled and stopped early, on their own threads' next check",
        stopped_early,
        ["Michael", "Mark"]
            .iter()
            .map(|name| {
                let o = by_name(name).expect("known");
                format!("{name} {} of {}", o.3.map_or(0, |r| r.greeted), o.1)
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    let places: Vec<&Place> = reports.iter().map(|r| &r.place).collect();
    let threads: std::collections::HashSet<&String> = places.iter().map(|p| &p.thread).collect();
    claims.correct(
        "the four greeters ran side by side on four pool threads of this process",
        places.len() == 4
            && threads.len() == 4
            && places
                .iter()
                .all(|p| p.on_blocking_pool() && p.in_this_process()),
        format!("{} threads", threads.len()),
    );
    claims.timing(
        "Done. printed after the four timed joins, within 0.25-0.6 s",
        (0.25..=0.6).contains(&done_at.as_secs_f64()),
        common::secs(done_at),
    );
    claims.timing(
        "every cancelled thread stopped within 150 ms of cancel()",
        slowest <= Duration::from_millis(150),
        format!("slowest {}", common::millis(slowest)),
    );
    claims.finish();
}
