use std::rc::Rc;
use unsync::unsync;

#[unsync]
async fn shared(counter: Rc<u32>) -> u32 {
    *counter
}

#[unsync(parallel)]
fn generic<T>(value: T) -> usize {
    std::mem::size_of_val(&value)
}

struct Local(Rc<u8>);

impl Local {
    #[unsync]
    fn get(self) -> u8 {
        *self.0
    }
}

fn main() {}
