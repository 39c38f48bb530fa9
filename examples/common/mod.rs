//! Shared by the examples (each example includes it with `mod common;`): the claim lines every
//! example ends with, where a task ran, a seeded random generator, and the local HTTP server
//! that stands in for "the web".
// Each example uses a different part of this module.
#![allow(dead_code)]

pub mod claims;
pub mod http;
pub mod place;
pub mod rng;

use std::time::Duration;

/// Seconds with two decimals, the way the course prints times.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Milliseconds with one decimal.
pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `a / b` as a ratio, for "x times" figures.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// CPU time the calling thread has used so far (user + system); `None` where there is no
/// `/proc`. Wall time well above CPU time means the thread waited for a core: the machine is
/// busy.
pub fn thread_cpu_time() -> Option<Duration> {
    cpu_time_from("/proc/thread-self/stat")
}

/// CPU time process `pid` (all its threads) has used so far; `None` if it is gone or there is
/// no `/proc`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_from(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a `/proc/.../stat` file, in clock ticks of 10 ms.
fn cpu_time_from(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')'): state is
    // field 3, utime 14 and stime 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// An integer with thousands separators: `30,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
