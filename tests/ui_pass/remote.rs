#![deny(warnings)]

use unsync::unsync;

#[unsync(remote, retries = 2, timeout = "30s")]
fn checksum(data: Vec<u8>) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[unsync(remote)]
fn bulk(n: u32) -> Vec<f64> {
    (0..n).map(f64::from).collect()
}

#[unsync(remote, timeout = "500ms")]
fn nothing() {}

fn main() {
    let _ = (checksum(vec![1]), bulk(2), nothing());
}
