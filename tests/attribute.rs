//! The signatures `#[unsync]` accepts, in each mode, and what the rewritten function keeps.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::mpsc;

use unsync::{Unfinished, unsync};

#[unsync]
async fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[unsync]
fn blocking_add((a, b): (u32, u32), mut extra: Vec<u32>) -> u32 {
    extra.push(a + b);
    extra.iter().sum()
}

#[unsync(parallel)]
fn parallel_sum(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[unsync]
fn returns_unit(tx: mpsc::Sender<&'static str>) {
    tx.send("ran").unwrap();
}

#[derive(Debug, PartialEq)]
struct ParseError(String);

#[unsync]
async fn parse_number(text: String) -> Result<u32, ParseError> {
    let n: u32 = text.parse().map_err(|_| ParseError(text.clone()))?;
    if n == 0 {
        return Err(ParseError("zero".into()));
    }
    Ok(n * 2)
}

#[unsync]
fn parse_blocking(text: String) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = text.trim().parse()?;
    Ok(n + 1)
}

#[unsync]
fn describe<T>(value: T, label: impl Display + Send + 'static) -> String
where
    T: std::fmt::Debug + Send + 'static,
{
    format!("{label}: {value:?}")
}

#[unsync]
async fn generic_async<T: Clone + Send + Sync + 'static>(value: T, times: usize) -> Vec<T> {
    vec![value; times]
}

#[unsync]
fn takes_static_str(name: &'static str) -> usize {
    name.len()
}

/// Docs are kept on the rewritten function.
#[unsync]
#[allow(clippy::needless_return)]
pub fn documented(x: u8) -> u8 {
    return x;
}

#[unsync]
async fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1).await + fib(n - 2).await
    }
}

#[unsync]
fn shows(value: u8) -> impl Display + Send + 'static {
    format!("<{value}>")
}

#[unsync]
fn ignores_argument(_: String, _unused: u8) -> u8 {
    7
}

struct Account {
    balance: u64,
}

impl Account {
    #[unsync]
    fn into_balance(self) -> u64 {
        self.balance
    }

    #[unsync]
    async fn shared_balance(self: Arc<Self>, bonus: u64) -> u64 {
        self.balance + bonus
    }

    #[unsync(parallel)]
    fn doubled(mut self) -> u64 {
        self.balance *= 2;
        self.balance
    }
}

mod nested {
    #[unsync::unsync]
    pub(crate) fn where_am_i() -> &'static str {
        module_path!()
    }
}

#[test]
fn every_mode_returns_the_same_handle_type() {
    let a: Unfinished<u32> = add(1, 2);
    let b: Unfinished<u32> = blocking_add((3, 4), vec![10]);
    let c: Unfinished<u64> = parallel_sum(vec![1, 2, 3]);
    assert_eq!(a.result(), 3);
    assert_eq!(b.result(), 17);
    assert_eq!(c.result(), 6);
}

#[test]
fn unit_and_result_returns() {
    let (tx, rx) = mpsc::channel();
    let unit: Unfinished<()> = returns_unit(tx);
    unit.result();
    assert_eq!(rx.recv().unwrap(), "ran");
    assert_eq!(parse_number("21".into()).result(), Ok(42));
    assert_eq!(
        parse_number("x".into()).result(),
        Err(ParseError("x".into()))
    );
    assert_eq!(
        parse_number("0".into()).result(),
        Err(ParseError("zero".into()))
    );
    assert_eq!(parse_blocking(" 41 ".into()).result(), Ok(42));
    assert!(parse_blocking("?".into()).result().is_err());
}

#[test]
fn generics_impl_trait_and_static_borrows() {
    assert_eq!(describe(vec![1, 2], "list").result(), "list: [1, 2]");
    assert_eq!(generic_async('x', 3).result(), vec!['x', 'x', 'x']);
    assert_eq!(takes_static_str("hello").result(), 5);
    assert_eq!(documented(9).result(), 9);
    assert_eq!(shows(3).result().to_string(), "<3>");
    assert_eq!(ignores_argument(String::new(), 0).result(), 7);
}

#[test]
fn recursive_async_fn_awaits_itself() {
    assert_eq!(fib(15).result(), 610);
}

#[test]
fn methods_by_value_and_arc_self() {
    assert_eq!(Account { balance: 5 }.into_balance().result(), 5);
    let shared = Arc::new(Account { balance: 10 });
    let first = shared.clone().shared_balance(1);
    let second = shared.shared_balance(2);
    assert_eq!(first.result() + second.result(), 23);
    assert_eq!(Account { balance: 4 }.doubled().result(), 8);
}

#[test]
fn task_names_carry_the_module_path() {
    assert_eq!(nested::where_am_i().result(), "attribute::nested");
    #[unsync]
    fn fails() -> u8 {
        panic!("named")
    }
    let error = fails().catch().result().unwrap_err();
    assert_eq!(error.task(), "attribute::fails");
}

#[test]
fn calling_never_blocks_the_caller() {
    // The task can only finish after the caller sends; if the call blocked until the task was
    // done, this would deadlock (and the watchdog would fail the test).
    #[unsync]
    fn waits_for_caller(rx: mpsc::Receiver<u8>) -> u8 {
        rx.recv().unwrap() + 1
    }
    #[unsync]
    async fn waits_for_caller_async(rx: tokio::sync::oneshot::Receiver<u8>) -> u8 {
        rx.await.unwrap() + 1
    }
    #[unsync(parallel)]
    fn waits_for_caller_parallel(rx: mpsc::Receiver<u8>) -> u8 {
        rx.recv().unwrap() + 1
    }
    common::watchdog(common::LIMIT, || {
        let (tx, rx) = mpsc::channel();
        let handle = waits_for_caller(rx);
        tx.send(1).unwrap();
        assert_eq!(handle.result(), 2);

        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = waits_for_caller_async(rx);
        tx.send(2).unwrap();
        assert_eq!(handle.result(), 3);

        let (tx, rx) = mpsc::channel();
        let handle = waits_for_caller_parallel(rx);
        tx.send(3).unwrap();
        assert_eq!(handle.result(), 4);
    });
}

#[test]
fn arguments_are_dropped_when_the_body_ends_not_when_the_call_returns() {
    struct Guard(mpsc::Sender<&'static str>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }
    #[allow(dead_code)]
    struct Pair {
        guard: Guard,
        gate: mpsc::Receiver<()>,
    }
    // Uses only one field: a closure would otherwise capture just that field and drop the
    // guard as soon as the call returned.
    #[unsync]
    fn uses_one_field(pair: Pair) -> u8 {
        pair.gate.recv().unwrap();
        1
    }
    let (events_tx, events) = mpsc::channel();
    let (gate_tx, gate) = mpsc::channel();
    let handle = uses_one_field(Pair {
        guard: Guard(events_tx.clone()),
        gate,
    });
    events_tx.send("returned").unwrap();
    gate_tx.send(()).unwrap();
    assert_eq!(handle.result(), 1);
    assert_eq!(events.recv().unwrap(), "returned");
    assert_eq!(events.recv().unwrap(), "dropped");
}

mod common;
