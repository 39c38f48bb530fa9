//! `#[unsync]` adds no warning (nor clippy lint) that the same function without it would not
//! get: one-line and multi-line bodies in every mode, methods, `pub` functions.

#![deny(warnings, clippy::all)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use unsync::unsync;

#[unsync]
fn checksum(n: u64) -> u64 { n * 2 }

#[unsync]
fn checksum_lines(n: u64) -> u64 {
    let doubled = n * 2;
    doubled + 1
}

#[unsync]
fn unit_one_line(n: String) { drop(n) }

#[unsync]
fn empty() {}

#[unsync(parallel)]
fn parallel_checksum(n: u64) -> u64 { n * 2 }

#[unsync(parallel)]
fn parallel_lines(values: Vec<u64>) -> u64 {
    let total: u64 = values.iter().sum();
    total * 2
}

#[unsync]
async fn async_checksum(n: u64) -> u64 { n * 2 }

#[unsync]
async fn async_lines(n: u64) -> u64 {
    let doubled = async_checksum(n).await;
    doubled + 1
}

#[unsync]
async fn async_empty() {}

#[unsync(cpu_bound)]
fn cpu_checksum(n: u64) -> u64 { n * 2 }

#[unsync(cpu_bound)]
fn cpu_lines(values: Vec<u8>, (a, b): (u8, u8)) -> Vec<u8> {
    let mut values = values;
    values.push(a.wrapping_add(b));
    values
}

#[derive(Serialize, Deserialize)]
pub struct Point {
    x: i64,
    y: i64,
}

#[unsync(cpu_bound)]
pub fn cpu_point(p: Point) -> i64 { p.x + p.y }

#[unsync]
pub fn public_checksum(n: u64) -> u64 { n * 2 }

#[unsync]
pub async fn public_async(n: u64) -> u64 { n * 2 }

#[unsync]
fn pattern_argument((a, b): (u64, u64)) -> u64 { a + b }

#[unsync]
fn early_return(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("zero".to_owned());
    }
    Ok(n)
}

#[unsync]
async fn question_mark(text: String) -> Result<u64, std::num::ParseIntError> {
    let n: u64 = text.parse()?;
    Ok(n)
}

pub struct Account {
    balance: u64,
}

impl Account {
    #[unsync]
    fn into_balance(self) -> u64 { self.balance }

    #[unsync]
    async fn shared(self: Arc<Self>, bonus: u64) -> u64 { self.balance + bonus }

    #[unsync(parallel)]
    fn doubled(mut self) -> u64 {
        self.balance *= 2;
        self.balance
    }

    #[unsync]
    pub fn public_method(self) -> u64 { self.balance }
}

#[unsync]
fn stream_one_line(n: u64) -> impl Iterator<Item = u64> { 0..n }

#[unsync(buffer = 4)]
fn stream_lines(n: u64) -> impl Iterator<Item = u64> + Send {
    let doubled = n * 2;
    (0..doubled).map(|i| i + 1)
}

#[unsync]
fn stream_async(n: u64) -> impl futures::Stream<Item = u64> { futures::stream::iter(0..n) }

#[unsync]
async fn stream_async_lines(n: u64) -> impl futures::Stream<Item = u64> {
    let first = async_checksum(n).await;
    futures::stream::iter([first, n])
}

#[unsync]
fn stream_early_return(n: u64) -> impl Iterator<Item = u64> {
    if n == 0 {
        return 0..0;
    }
    0..n
}

fn main() {
    let _ = stream_one_line(2).into_iter().sum::<u64>()
        + stream_lines(2).into_iter().sum::<u64>()
        + stream_async(2).into_iter().sum::<u64>()
        + stream_async_lines(2).into_iter().sum::<u64>()
        + stream_early_return(2).collect_vec().result().len() as u64;
    let _ = checksum(1).result()
        + checksum_lines(1).result()
        + parallel_checksum(1).result()
        + parallel_lines(vec![1]).result()
        + async_checksum(1).result()
        + async_lines(1).result()
        + cpu_checksum(1).result()
        + public_checksum(1).result()
        + public_async(1).result()
        + pattern_argument((1, 2)).result()
        + early_return(1).result().unwrap_or(0)
        + question_mark("1".to_owned()).result().unwrap_or(0)
        + Account { balance: 1 }.into_balance().result()
        + Arc::new(Account { balance: 1 }).shared(1).result()
        + Account { balance: 1 }.doubled().result()
        + Account { balance: 1 }.public_method().result();
    unit_one_line(String::new()).result();
    empty().result();
    async_empty().result();
    let _ = cpu_lines(vec![1], (2, 3)).result();
    let _ = cpu_point(Point { x: 1, y: 2 }).result();
}
