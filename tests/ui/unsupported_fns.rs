use unsync::unsync;

#[unsync]
const fn constant() -> u8 {
    1
}

#[unsync]
unsafe fn dangerous() -> u8 {
    2
}

#[unsync]
extern "C" fn foreign() -> u8 {
    3
}

#[unsync]
struct NotAFunction;

fn main() {}
