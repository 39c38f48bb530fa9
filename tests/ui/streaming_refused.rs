use unsync::unsync;

#[unsync(parallel)]
fn parallel_stream(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[unsync(cpu_bound)]
fn cpu_stream(n: u64) -> impl futures::Stream<Item = u64> {
    futures::stream::iter(0..n)
}

#[unsync]
async fn async_iterator(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[unsync(buffer = 8)]
fn not_streaming(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[unsync(buffer = 0)]
fn zero_buffer(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[unsync(buffer = "big")]
fn text_buffer(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

fn main() {
    // Callers still type-check against the stream they expect.
    let _: Vec<u64> = parallel_stream(1).into_iter().collect();
    let _: Vec<u64> = cpu_stream(1).into_iter().collect();
    let _: Vec<u64> = async_iterator(1).into_iter().collect();
    let _: Vec<u64> = zero_buffer(1).into_iter().collect();
}
