use unsync::unsync;

struct NotSerializable;

#[derive(serde::Serialize)]
struct OnlySerialize;

#[unsync(cpu_bound)]
fn takes(value: NotSerializable) -> u8 {
    drop(value);
    1
}

#[unsync(cpu_bound)]
fn returns() -> NotSerializable {
    NotSerializable
}

#[unsync(cpu_bound)]
fn second(count: u8, value: OnlySerialize) -> u8 {
    drop(value);
    count
}

fn main() {
    let _: u8 = takes(NotSerializable).result();
}
