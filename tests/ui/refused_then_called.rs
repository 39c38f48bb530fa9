// A refused function is still callable as the attribute would have made it: its callers
// type-check, and the only error is the one on the function.
use unsync::unsync;

#[unsync]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[unsync(cpu_bond)]
fn checksum(n: u64) -> u64 {
    n * 2
}

#[unsync(cpu_bound)]
fn generic<T: Clone>(value: T) -> T {
    value
}

#[unsync(parallel)]
async fn crunch(n: u64) -> u64 {
    n * 2
}

#[unsync]
fn leak(name: String) -> &str {
    Box::leak(name.into_boxed_str())
}

fn main() {
    let words: usize = count_words("a b").result();
    let sum: u64 = checksum(2).result();
    let same: u8 = generic(1_u8).result();
    let crunched: u64 = crunch(3).result();
    let leaked: &str = leak(String::new()).result();
    println!("{words} {sum} {same} {crunched} {leaked}");
}
