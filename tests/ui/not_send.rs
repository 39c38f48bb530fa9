use std::rc::Rc;
use unsync::unsync;

#[unsync]
fn shared(counter: Rc<u32>) -> u32 {
    *counter
}

fn main() {}
