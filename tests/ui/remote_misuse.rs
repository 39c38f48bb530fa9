use unsync::unsync;

#[unsync(remote, timeout = "30")]
fn no_unit() {}

#[unsync(remote, timeout = "0s")]
fn zero_timeout() {}

#[unsync(remote, timeout = 30)]
fn timeout_not_text() {}

#[unsync(remote, retries = "2")]
fn retries_not_a_number() {}

#[unsync(cpu_bound, retries = 2)]
fn retries_without_remote() {}

#[unsync(timeout = "1s")]
fn timeout_without_remote() {}

#[unsync(remote, cpu_bound)]
fn two_modes() {}

#[unsync(remote = true)]
fn remote_with_a_value() {}

#[unsync(remote, retires = 2)]
fn typo() {}

#[unsync(remote)]
async fn asynchronous() -> u8 {
    1
}

#[unsync(remote)]
fn remote_stream(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[unsync(remote)]
fn generic<T: Clone>(value: T) -> T {
    value
}

struct NotSerializable;

#[unsync(remote)]
fn not_serializable(value: NotSerializable) -> u8 {
    drop(value);
    1
}

fn main() {}
