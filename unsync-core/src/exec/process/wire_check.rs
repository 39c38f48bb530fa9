//! One compile error per `cpu_bound` argument or result type that cannot cross to a worker
//! process, on that type, and none from the code that encodes and decodes it.
//!
//! `check_wire::<T, _>()` asks for `T: SerializeAndDeserialize<?M>`. The trait has two
//! impls, so rustc tries both, and when both fail it reports the trait itself (one error,
//! with the message below), not each missing serde bound. `?M` then stays unknown, and every
//! later use goes through the witness (`Cross`, `spawn_checked`), whose types depend on it:
//! rustc leaves them undecided, and reports nothing more once an error is out.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::encode;
use super::pool::{spawn_process, spawn_process_stream};
use super::registry::{NextItem, WorkerFn};
use crate::Unfinished;
use crate::handle::stream::UnfinishedStream;

/// The marker of the impl that applies: `T` is `Serialize + DeserializeOwned`.
pub struct Valid;
/// The marker of the impl that never applies.
pub struct Never;
/// Implemented by nothing: the second impl of `SerializeAndDeserialize` never applies.
pub trait Unimplemented {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross to a worker process: the arguments, result and streamed items of a `#[unsync(cpu_bound)]` or `#[unsync(remote)]` function must implement `serde::Serialize` and `serde::Deserialize`",
    label = "`{Self}` must implement `serde::Serialize` and `serde::Deserialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to the type's definition (for a type from another crate, look for a `serde` feature of that crate), or use `#[unsync]` or `#[unsync(parallel)]` to run the function in this process"
)]
/// `Serialize + DeserializeOwned`, as one trait with one error message.
pub trait SerializeAndDeserialize<M> {}
impl<T: Serialize + DeserializeOwned> SerializeAndDeserialize<Valid> for T {}
impl<T: Unimplemented> SerializeAndDeserialize<Never> for T {}

/// Proof that `T` crosses to a worker process (when `M` is `Valid`).
pub struct Witness<T, M>(PhantomData<fn() -> (T, M)>);
impl<T, M> Clone for Witness<T, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, M> Copy for Witness<T, M> {}

/// The check itself: one per argument and result type, spanned on the type.
#[inline(always)]
pub fn check_wire<T: SerializeAndDeserialize<M>, M>() -> Witness<T, M> {
    Witness(PhantomData)
}

/// `T` as its witness sees it: `T` itself, once `M` is known.
pub trait Cross<T> {
    /// `T`, once the witness's marker is known.
    type Same;
    /// A value to encode, seen through the witness.
    fn lend(self, value: &T) -> &Self::Same;
    /// A decoded value, seen through the witness.
    fn take(self, value: Self::Same) -> T;
}
impl<T> Cross<T> for Witness<T, Valid> {
    type Same = T;
    #[inline(always)]
    fn lend(self, value: &T) -> &T {
        value
    }
    #[inline(always)]
    fn take(self, value: T) -> T {
        value
    }
}
impl<T> Cross<T> for Witness<T, Never> {
    type Same = T;
    fn lend(self, value: &T) -> &T {
        value
    }
    fn take(self, value: T) -> T {
        value
    }
}

/// `spawn_process` for a result whose type `R` has a witness.
#[inline(always)]
pub fn spawn_checked<R, M>(
    _: Witness<R, M>,
    entry: &'static WorkerFn,
    args: &impl Serialize,
) -> Unfinished<R>
where
    Witness<R, M>: Cross<R>,
    <Witness<R, M> as Cross<R>>::Same: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
{
    spawn_process::<<Witness<R, M> as Cross<R>>::Same, R>(entry, args)
}

/// `spawn_process_stream` for an item type `T` with a witness.
#[inline(always)]
pub fn spawn_stream_checked<T, M>(
    _: Witness<T, M>,
    entry: &'static WorkerFn,
    buffer: usize,
    args: &impl Serialize,
) -> UnfinishedStream<T>
where
    Witness<T, M>: Cross<T>,
    <Witness<T, M> as Cross<T>>::Same: DeserializeOwned + Into<T> + 'static,
    T: Send + 'static,
{
    spawn_process_stream::<<Witness<T, M> as Cross<T>>::Same, T>(entry, buffer, args)
}

/// A streaming function's iterator in a worker, its items encoded one by one (see
/// [`NextItem`]).
pub fn next_item<T, M, I>(witness: Witness<T, M>, items: I) -> NextItem
where
    Witness<T, M>: Cross<T>,
    <Witness<T, M> as Cross<T>>::Same: Serialize,
    I: IntoIterator<Item = T>,
    I::IntoIter: 'static,
    T: 'static,
    M: 'static,
{
    let mut items = items.into_iter();
    Box::new(move |out| match items.next() {
        Some(item) => encode(witness.lend(&item), out).map(|()| true),
        None => Ok(false),
    })
}
