// An argument that cannot move to another thread: one error, on its type, in every mode.
// The last three cases are about the result or the body and are still reported at the
// attribute (one error each).
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

#[unsync]
fn returns_rc(n: u32) -> Rc<u32> {
    Rc::new(n)
}

#[unsync]
async fn holds_rc_across_await(n: u32) -> u32 {
    let counter = Rc::new(n);
    tokio::task::yield_now().await;
    *counter
}

#[unsync(parallel)]
fn not_static<T: Send>(value: T) -> usize {
    std::mem::size_of_val(&value)
}

fn main() {}
