use unsync::unsync;

#[unsync(cpu_bound)]
fn generic<T: Clone>(value: T) -> T {
    value
}

#[unsync(cpu_bound)]
async fn asynchronous() -> u8 {
    1
}

#[unsync(cpu_bound)]
fn hidden_generic(value: impl Clone) -> u8 {
    1
}

struct Service;

impl Service {
    #[unsync(cpu_bound)]
    fn method(self) -> u8 {
        1
    }
}

fn main() {}
