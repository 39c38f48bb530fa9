//! Thread safety with six bank accounts: the course's chapter 6 (`unsafe_bank.py`,
//! `safe_bank.py`, `safe_bank_fine_grained.py` and the deadlock shown in its lecture).
//!
//! Six accounts hold $44,500 between them. Five workers, plain `#[unsync] fn`s on the thread
//! pool, each make 4,000 random transfers (the course's 9,999, cut so that the run stays short
//! on a busy 2-core machine; seeded: two distinct accounts, $1 to $100, skipped when the
//! source holds less), giving up the CPU in the middle of each to widen the race window, and
//! re-add every balance after each one. Any total other than $44,500 is an inconsistency some
//! worker saw. A mode that has not finished after 1.5 s is cancelled there (a yield can cost
//! milliseconds on a busy machine).
//!
//! 0. No lock at all, as in `unsafe_bank.py`, does not compile in Rust: threads that share
//!    the balances can only read them (`Arc<Vec<i64>>`: "cannot borrow data in an `Arc` as
//!    mutable"), and `#[unsync] fn f(balances: &mut Vec<i64>)` is refused because the task
//!    outlives the call. So the unsafe version is made of atomics: each add is safe, the
//!    transfer (take from one, give to the other) is not one step, and workers see the money
//!    in flight;
//! 1. one lock around every transfer and every validation (`safe_bank.py`);
//! 2. a lock per account, taken "from" then "to": two transfers in opposite directions each
//!    hold one lock and wait for the other forever. A watchdog sees the transfers stop,
//!    prints who holds and waits for what, and cancels the workers; their locks are timed,
//!    and they return when `unsync::is_cancelled()` says so. The example never hangs;
//! 3. a lock per account, always taken in account order: no cycle, no deadlock.
//!
//! Proves: with one lock or ordered locks nobody ever sees a wrong total and the money is all
//! there at the end; without a transaction workers do see wrong totals (the final total is
//! still right); the naive lock order deadlocks and the watchdog catches it.
//!
//! `cargo run --release --example bank`

mod common;

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::claims::Claims;
use common::place::{Place, here, summary};
use common::rng::Rng;
use parking_lot::{Mutex as TimedMutex, MutexGuard as TimedGuard};
use unsync::{Unfinished, unsync};

const OPENING: [i64; 6] = [5_000, 10_000, 7_500, 7_000, 6_000, 9_000];
const TOTAL: i64 = 44_500;
const WORKERS: usize = 5;
const TRANSFERS: usize = 4_000;
const SEED: u64 = 6;
/// No transfer finished for this long while workers still run: a deadlock.
const STALL: Duration = Duration::from_millis(500);
/// Each mode stops its workers after this long: on a busy machine a yield can cost
/// milliseconds, and the point is made long before the last transfer.
const BUDGET: Duration = Duration::from_millis(1500);
/// How long a worker blocks on a lock before looking whether it was cancelled.
const LOCK_SLICE: Duration = Duration::from_millis(20);
const NOBODY: u8 = u8::MAX;

/// A bank, as seen by a worker. `None` means the worker was cancelled while waiting for a lock.
trait Bank: Send + Sync {
    fn transfer(&self, worker: usize, from: usize, to: usize, amount: i64) -> Option<()>;
    fn total(&self, worker: usize) -> Option<i64>;
    /// Who holds which locks and waits for which, for the watchdog's report.
    fn locks(&self) -> Option<&Locks> {
        None
    }
}

/// Mode 0: atomics without a transaction.
struct AtomicBank([AtomicI64; 6]);

impl Bank for AtomicBank {
    fn transfer(&self, _: usize, from: usize, to: usize, amount: i64) -> Option<()> {
        if self.0[from].load(Ordering::SeqCst) >= amount {
            self.0[from].fetch_sub(amount, Ordering::SeqCst);
            std::thread::yield_now();
            self.0[to].fetch_add(amount, Ordering::SeqCst);
        }
        Some(())
    }

    fn total(&self, _: usize) -> Option<i64> {
        Some(self.0.iter().map(|b| b.load(Ordering::SeqCst)).sum())
    }
}

/// Mode 1: one lock for the whole bank. The balances live inside it, so there is no way to
/// read or change them without it.
struct OneLockBank(Mutex<[i64; 6]>);

impl Bank for OneLockBank {
    fn transfer(&self, _: usize, from: usize, to: usize, amount: i64) -> Option<()> {
        let mut balances = self.0.lock().expect("no worker panics holding the lock");
        if balances[from] >= amount {
            balances[from] -= amount;
            std::thread::yield_now();
            balances[to] += amount;
        }
        Some(())
    }

    fn total(&self, _: usize) -> Option<i64> {
        Some(self.0.lock().expect("no worker panics").iter().sum())
    }
}

/// Modes 2 and 3: a lock per account, taken with a timeout so that a cancelled worker can
/// leave, and with a record of who holds and awaits what.
struct Locks {
    accounts: [TimedMutex<i64>; 6],
    /// Per worker: a bit per account lock it holds.
    holding: [AtomicU8; WORKERS],
    /// Per worker: the account lock it waits for, or `NOBODY`.
    waiting: [AtomicU8; WORKERS],
}

impl Locks {
    fn new() -> Locks {
        Locks {
            accounts: OPENING.map(TimedMutex::new),
            holding: std::array::from_fn(|_| AtomicU8::new(0)),
            waiting: std::array::from_fn(|_| AtomicU8::new(NOBODY)),
        }
    }

    fn acquire(&self, worker: usize, account: usize) -> Option<Held<'_>> {
        self.waiting[worker].store(account as u8, Ordering::SeqCst);
        let guard = loop {
            if let Some(guard) = self.accounts[account].try_lock_for(LOCK_SLICE) {
                break guard;
            }
            if unsync::is_cancelled() {
                self.waiting[worker].store(NOBODY, Ordering::SeqCst);
                return None;
            }
        };
        self.waiting[worker].store(NOBODY, Ordering::SeqCst);
        self.holding[worker].fetch_or(1 << account, Ordering::SeqCst);
        Some(Held {
            guard,
            bit: &self.holding[worker],
            account,
        })
    }

    fn total(&self, worker: usize) -> Option<i64> {
        let mut held = Vec::with_capacity(6);
        for account in 0..6 {
            held.push(self.acquire(worker, account)?);
        }
        Some(held.iter().map(|h| *h.guard).sum())
    }

    fn report(&self) -> Vec<String> {
        let holding: Vec<u8> = self
            .holding
            .iter()
            .map(|h| h.load(Ordering::SeqCst))
            .collect();
        let waiting: Vec<u8> = self
            .waiting
            .iter()
            .map(|w| w.load(Ordering::SeqCst))
            .collect();
        let holder = |account: u8| (0..WORKERS).find(|&w| holding[w] & (1 << account) != 0);
        let mut lines: Vec<String> = (0..WORKERS)
            .filter(|&w| waiting[w] != NOBODY)
            .map(|w| {
                let held: Vec<String> = (0..6)
                    .filter(|a| holding[w] & (1 << a) != 0)
                    .map(|a| a.to_string())
                    .collect();
                format!(
                    "worker {w} holds account(s) [{}] and waits for account {}",
                    held.join(", "),
                    waiting[w]
                )
            })
            .collect();
        // Follow "waits for the account held by" from each worker until a worker repeats.
        for start in 0..WORKERS {
            let mut path = vec![start];
            let mut worker = start;
            while let Some(next) = Some(waiting[worker])
                .filter(|&a| a != NOBODY)
                .and_then(holder)
            {
                if let Some(at) = path.iter().position(|&w| w == next) {
                    let cycle: Vec<String> = path[at..]
                        .iter()
                        .map(|&w| {
                            let account = waiting[w];
                            let by = holder(account).map_or(String::from("?"), |h| h.to_string());
                            format!("worker {w} waits for account {account}, held by worker {by}")
                        })
                        .collect();
                    lines.push(format!("cycle: {}", cycle.join("; ")));
                    return lines;
                }
                path.push(next);
                worker = next;
            }
        }
        lines
    }
}

struct Held<'a> {
    guard: TimedGuard<'a, i64>,
    bit: &'a AtomicU8,
    account: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.bit.fetch_and(!(1 << self.account), Ordering::SeqCst);
    }
}

fn move_money(from: &mut Held<'_>, to: &mut Held<'_>, amount: i64) {
    if *from.guard >= amount {
        *from.guard -= amount;
        std::thread::yield_now();
        *to.guard += amount;
    }
}

/// Mode 2: "from" first, then "to".
struct NaiveOrderBank(Locks);

impl Bank for NaiveOrderBank {
    fn transfer(&self, worker: usize, from: usize, to: usize, amount: i64) -> Option<()> {
        let mut source = self.0.acquire(worker, from)?;
        let mut target = self.0.acquire(worker, to)?;
        move_money(&mut source, &mut target, amount);
        Some(())
    }

    fn total(&self, worker: usize) -> Option<i64> {
        self.0.total(worker)
    }

    fn locks(&self) -> Option<&Locks> {
        Some(&self.0)
    }
}

/// Mode 3: the lower account number first, whichever way the money goes.
struct OrderedBank(Locks);

impl Bank for OrderedBank {
    fn transfer(&self, worker: usize, from: usize, to: usize, amount: i64) -> Option<()> {
        let first = self.0.acquire(worker, from.min(to))?;
        let second = self.0.acquire(worker, from.max(to))?;
        let (mut source, mut target) = if from < to {
            (first, second)
        } else {
            (second, first)
        };
        move_money(&mut source, &mut target, amount);
        Some(())
    }

    fn total(&self, worker: usize) -> Option<i64> {
        self.0.total(worker)
    }

    fn locks(&self) -> Option<&Locks> {
        Some(&self.0)
    }
}

/// What the workers of one mode share with the watchdog.
#[derive(Default)]
struct Ledger {
    transfers: AtomicUsize,
    inconsistencies: AtomicUsize,
    running: AtomicUsize,
    places: Mutex<Vec<Place>>,
}

#[unsync]
fn do_bank_stuff(bank: Arc<dyn Bank>, ledger: Arc<Ledger>, worker: usize) {
    ledger.places.lock().expect("no panics").push(here());
    let mut rng = Rng::seeded(SEED * 100 + worker as u64);
    for _ in 0..TRANSFERS {
        if unsync::is_cancelled() {
            break;
        }
        let from = rng.below(6);
        let to = (from + 1 + rng.below(5)) % 6;
        let amount = rng.range(1, 100) as i64;
        if bank.transfer(worker, from, to, amount).is_none() {
            break;
        }
        ledger.transfers.fetch_add(1, Ordering::SeqCst);
        match bank.total(worker) {
            Some(TOTAL) => {}
            Some(_) => {
                ledger.inconsistencies.fetch_add(1, Ordering::SeqCst);
            }
            None => break,
        }
    }
    ledger.running.fetch_sub(1, Ordering::SeqCst);
}

struct Outcome {
    name: &'static str,
    elapsed: Duration,
    transfers: usize,
    inconsistencies: usize,
    deadlock: Option<Duration>,
    out_of_time: bool,
    stopped: bool,
    final_total: i64,
    places: Vec<Place>,
}

fn run(name: &'static str, bank: Arc<dyn Bank>) -> Outcome {
    println!("\n== {name}");
    let opening = bank.total(0).expect("nobody holds a lock yet");
    println!("Opening balance: ${opening}");
    let ledger = Arc::new(Ledger {
        running: AtomicUsize::new(WORKERS),
        ..Ledger::default()
    });
    let start = Instant::now();
    let workers: Vec<Unfinished<()>> = (0..WORKERS)
        .map(|worker| do_bank_stuff(bank.clone(), ledger.clone(), worker))
        .collect();

    let mut deadlock = None;
    let mut out_of_time = false;
    let (mut seen, mut since) = (0, Instant::now());
    while !workers.iter().all(Unfinished::is_done) {
        workers[0].wait_timeout(Duration::from_millis(10));
        let transfers = ledger.transfers.load(Ordering::SeqCst);
        if transfers != seen {
            (seen, since) = (transfers, Instant::now());
        } else if since.elapsed() >= STALL {
            deadlock = Some(start.elapsed());
            println!(
                "DEADLOCK: no transfer finished for {STALL:?} after {transfers} transfers; \
                 cancelling the workers"
            );
            for line in bank.locks().map(Locks::report).unwrap_or_default() {
                println!("  {line}");
            }
            for worker in &workers {
                worker.cancel();
            }
            break;
        } else if start.elapsed() >= BUDGET {
            out_of_time = true;
            println!("Time budget of {BUDGET:?} spent after {transfers} transfers; cancelling");
            for worker in &workers {
                worker.cancel();
            }
            break;
        }
    }
    // A cancelled handle resolves at once; the threads stop at their next look at the flag.
    let stop_by = Instant::now() + Duration::from_secs(2);
    while ledger.running.load(Ordering::SeqCst) > 0 && Instant::now() < stop_by {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stopped = ledger.running.load(Ordering::SeqCst) == 0;
    let elapsed = start.elapsed();
    if deadlock.is_none() && !out_of_time {
        for worker in workers {
            worker.result();
        }
    }
    let final_total = if stopped {
        bank.total(0).expect("every worker has stopped")
    } else {
        i64::MIN
    };
    let outcome = Outcome {
        name,
        elapsed,
        transfers: ledger.transfers.load(Ordering::SeqCst),
        inconsistencies: ledger.inconsistencies.load(Ordering::SeqCst),
        deadlock,
        out_of_time,
        stopped,
        final_total,
        places: ledger.places.lock().expect("no panics").clone(),
    };
    println!(
        "Transfers {} ({:.2}) sec: {} transfers, {} inconsistent totals seen",
        if deadlock.is_some() || out_of_time {
            "stopped"
        } else {
            "complete"
        },
        outcome.elapsed.as_secs_f64(),
        outcome.transfers,
        outcome.inconsistencies
    );
    println!(
        "{} workers ran in {}",
        outcome.places.len(),
        summary(&outcome.places)
    );
    if final_total == TOTAL {
        println!("All good: Consistent account balance: ${final_total}");
    } else {
        println!("ERROR: Inconsistent account balance: ${final_total} vs ${TOTAL}");
    }
    outcome
}

fn main() {
    println!(
        "{} accounts, ${TOTAL} in all; {WORKERS} workers (#[unsync] fn, thread pool) x \
         {TRANSFERS} transfers, seed {SEED}. Main is {}.",
        OPENING.len(),
        here()
    );
    println!(
        "\n== 0. no lock: does not compile\n\
         Threads share the balances through Arc<Vec<i64>>, and `balances[from] -= amount` is\n\
         error[E0596]: cannot borrow data in an `Arc` as mutable\n\
         while `#[unsync] fn do_bank_stuff(balances: &mut Vec<i64>)` is refused by the attribute:\n\
         the task outlives the call. Rust makes you choose atomics or a lock."
    );
    let unsafe_bank = run(
        "1. atomics, no transaction (unsafe_bank.py)",
        Arc::new(AtomicBank(OPENING.map(AtomicI64::new))),
    );
    let one_lock = run(
        "2. one lock (safe_bank.py)",
        Arc::new(OneLockBank(Mutex::new(OPENING))),
    );
    let naive = run(
        "3. lock per account, from then to (the lecture)",
        Arc::new(NaiveOrderBank(Locks::new())),
    );
    let ordered = run(
        "4. lock per account, in order (safe_bank_fine_grained.py)",
        Arc::new(OrderedBank(Locks::new())),
    );

    println!();
    let all = [&unsafe_bank, &one_lock, &naive, &ordered];
    for o in all {
        println!(
            "{:<58} {:>7}  {:>6} transfers  {:>6} inconsistent  final ${}{}",
            o.name,
            common::secs(o.elapsed),
            o.transfers,
            o.inconsistencies,
            o.final_total,
            if o.deadlock.is_some() {
                "  DEADLOCK caught"
            } else if o.out_of_time {
                "  time budget spent"
            } else {
                ""
            },
        );
    }

    println!(
        "One lock {} against a lock per account {} (the course: 1.1 s against 1.3 s; finer \
         locks cost a deadlock and some thought, and need not be faster)",
        common::secs(one_lock.elapsed),
        common::secs(ordered.elapsed)
    );

    let mut claims = Claims::new();
    let all_done = WORKERS * TRANSFERS;
    for o in all {
        if o.name == one_lock.name || o.name == ordered.name {
            claims.correct(
                format!(
                    "{}: no inconsistent total seen, ${TOTAL} at the end",
                    o.name
                ),
                o.inconsistencies == 0
                    && o.final_total == TOTAL
                    && o.transfers > 0
                    && (o.transfers == all_done || o.out_of_time)
                    && o.deadlock.is_none(),
                format!(
                    "{} inconsistent, ${} final, {}/{all_done} transfers{}",
                    o.inconsistencies,
                    o.final_total,
                    o.transfers,
                    if o.out_of_time {
                        " in the time budget"
                    } else {
                        ""
                    }
                ),
            );
        } else {
            claims.correct(
                format!("{}: workers stopped, ${TOTAL} at the end", o.name),
                o.stopped && o.final_total == TOTAL,
                format!("${} final", o.final_total),
            );
        }
    }
    claims.correct(
        "every worker ran on the blocking pool of this process",
        all.iter()
            .all(|o| o.places.len() == WORKERS || o.deadlock.is_some())
            && all
                .iter()
                .flat_map(|o| &o.places)
                .all(|p| p.on_blocking_pool() && p.in_this_process()),
        format!(
            "{} pool threads",
            all.iter()
                .flat_map(|o| &o.places)
                .map(|p| &p.thread)
                .collect::<std::collections::HashSet<_>>()
                .len()
        ),
    );
    claims.timing(
        "without a transaction, workers see money in flight (> 0 inconsistent totals)",
        unsafe_bank.inconsistencies > 0,
        format!(
            "{} of {} validations",
            unsafe_bank.inconsistencies, unsafe_bank.transfers
        ),
    );
    claims.timing(
        "taking locks from-then-to deadlocks, caught within 2 s without hanging",
        naive
            .deadlock
            .is_some_and(|at| at <= Duration::from_secs(2)),
        naive.deadlock.map_or_else(
            || "no deadlock this run".to_owned(),
            |at| format!("caught at {}", common::secs(at)),
        ),
    );
    claims.finish();
}
