//! The registry of `cpu_bound` functions, gathered at link time: each `#[unsync(cpu_bound)]`
//! adds one [`WorkerFn`] to a `linkme` distributed slice, so a worker process (the same
//! executable) finds every function by a stable key without any call at start-up. The slice
//! is complete even before `main` (unlike `inventory`, which is filled by constructors that may
//! run after ours).
//!
//! On Windows the GNU linker drops a `linkme` slice's entries (section GC), so there each
//! function registers itself instead, from a constructor in `.CRT$XCU` (`register`), and the
//! worker start-up hook runs after all of them, from `.CRT$XCV` (see `sys`): the C runtime runs
//! those sections in name order, and both linkers keep them.
//!
//! The registry is shared by everything that runs these functions by key: this process pool's
//! parent and worker sides, and (later) a remote executor.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::codec::CodecError;
use crate::error::Error;

/// Decode the arguments from the first slice, run the function, append the encoded result.
pub type Shim = fn(&[u8], &mut Vec<u8>) -> Result<(), CodecError>;

/// Decode the arguments, call a streaming function: its items, each appended encoded by one
/// call of the returned [`NextItem`].
pub type StreamShim = fn(&[u8]) -> Result<NextItem, CodecError>;

/// A streaming function's iterator, type-erased: appends the next item's encoding and returns
/// `Ok(true)`, or returns `Ok(false)` at the end.
pub type NextItem = Box<dyn FnMut(&mut Vec<u8>) -> Result<bool, CodecError>>;

/// One `cpu_bound` function, as registered by `#[unsync(cpu_bound)]`.
pub struct WorkerFn {
    /// `module::path::name`: the task name in errors.
    pub(crate) name: &'static str,
    /// Identifies the function on the pipe: hash of the name and of the signature, so that a
    /// changed signature is another function.
    pub(crate) key: u64,
    pub(crate) shim: Shim,
    /// A streaming function's shim (its `shim` then refuses to run as a call).
    pub(crate) stream: Option<StreamShim>,
}

impl WorkerFn {
    /// Describe a function; `signature` is a hash of its tokens, computed by the macro.
    pub const fn new(name: &'static str, signature: u64, shim: Shim) -> WorkerFn {
        WorkerFn {
            name,
            key: fnv1a(name.as_bytes(), signature),
            shim,
            stream: None,
        }
    }

    /// Describe a streaming function (one returning `impl Iterator<Item = T>`).
    pub const fn streaming(name: &'static str, signature: u64, stream: StreamShim) -> WorkerFn {
        WorkerFn {
            name,
            key: fnv1a(name.as_bytes(), signature),
            shim: not_a_call,
            stream: Some(stream),
        }
    }
}

/// The `shim` of a streaming function: asked for one result, it has none to give.
fn not_a_call(_: &[u8], _: &mut Vec<u8>) -> Result<(), CodecError> {
    Err(CodecError::not_a_call())
}

/// Every `cpu_bound` function linked into this executable.
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub static WORKER_FNS: [WorkerFn];

/// The functions registered so far, in the order their constructors ran (Windows).
#[cfg(windows)]
static REGISTERED: std::sync::Mutex<Vec<&'static WorkerFn>> = std::sync::Mutex::new(Vec::new());

/// Add `entry` to the registry: what each `cpu_bound` function's constructor does on Windows.
#[cfg(windows)]
pub fn register(entry: &'static WorkerFn) {
    crate::exec::lock(&REGISTERED).push(entry);
}

/// On Windows, a constructor in `.CRT$XCU` that [`register`]s the `WorkerFn` static `$entry`;
/// elsewhere nothing (the static is a `linkme` entry). What `#[unsync(cpu_bound)]` emits: a
/// `macro_rules!` of this crate, so that the `link_section` does not trip `unsafe_code` in
/// crates that forbid it.
#[doc(hidden)]
#[macro_export]
macro_rules! __register_worker_fn {
    ($entry:ident) => {
        #[cfg(windows)]
        const _: () = {
            #[used]
            #[unsafe(link_section = ".CRT$XCU")]
            static REGISTER: extern "C" fn() = {
                extern "C" fn register() {
                    $crate::__private::register(&$entry);
                }
                register
            };
        };
    };
}

/// Every registered function, in registry order.
#[cfg(not(windows))]
pub(crate) fn entries() -> impl ExactSizeIterator<Item = &'static WorkerFn> {
    WORKER_FNS.iter()
}

/// Every registered function, in registry order: those registered when first asked, which is
/// after every constructor has run (in `main`, or in a worker's start-up hook).
#[cfg(windows)]
pub(crate) fn entries() -> impl ExactSizeIterator<Item = &'static WorkerFn> {
    snapshot().iter().copied()
}

#[cfg(windows)]
fn snapshot() -> &'static [&'static WorkerFn] {
    static SNAPSHOT: OnceLock<Vec<&'static WorkerFn>> = OnceLock::new();
    SNAPSHOT.get_or_init(|| crate::exec::lock(&REGISTERED).clone())
}

/// How many functions are registered.
pub(crate) fn count() -> usize {
    entries().len()
}

/// 64-bit FNV-1a, seeded, usable in constants.
pub(crate) const fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Every key, with its function, or `None` when several functions share it.
fn by_key() -> &'static HashMap<u64, Option<&'static WorkerFn>> {
    static BY_KEY: OnceLock<HashMap<u64, Option<&'static WorkerFn>>> = OnceLock::new();
    BY_KEY.get_or_init(|| {
        let mut by_key = HashMap::with_capacity(count());
        for f in entries() {
            by_key
                .entry(f.key)
                .and_modify(|shared| *shared = None)
                .or_insert(Some(f));
        }
        by_key
    })
}

/// The function with this key, in this executable, unless the key is ambiguous.
pub(crate) fn lookup(key: u64) -> Option<&'static WorkerFn> {
    by_key().get(&key).copied().flatten()
}

/// Where `entry` sits in the registry, or why no worker can run it: the linker dropped it (so
/// no worker has it either), or another `cpu_bound` function has the same key (the same path,
/// name and signature, as two `fn helper() -> u8` declared inside two function bodies of one
/// module), so a worker could not tell which one to run, and neither runs.
pub(crate) fn position(entry: &WorkerFn) -> Result<usize, Error> {
    let task = entry.name;
    let Some(index) = index_of(entry) else {
        return Err(Error::NotRegistered {
            task,
            detail: "this function is missing from the worker registry: the linker dropped it (seen with some LTO or static-library builds)".into(),
        });
    };
    if matches!(by_key().get(&entry.key), Some(None)) {
        return Err(Error::NotRegistered {
            task,
            detail: "another #[unsync(cpu_bound)] function has the same path, name and signature (declared inside another function body of the same module?), so a worker cannot tell them apart: rename one of them".into(),
        });
    }
    Ok(index)
}

/// Where `entry` sits in the registry, or `None` if the linker dropped it.
#[cfg(not(windows))]
fn index_of(entry: &WorkerFn) -> Option<usize> {
    let start = WORKER_FNS.as_ptr() as usize;
    let at = entry as *const WorkerFn as usize;
    let size = std::mem::size_of::<WorkerFn>();
    let offset = at.checked_sub(start)?;
    let index = offset / size;
    (offset % size == 0 && index < WORKER_FNS.len()).then_some(index)
}

/// Where `entry` sits in the registry, or `None` if it never registered.
#[cfg(windows)]
fn index_of(entry: &WorkerFn) -> Option<usize> {
    snapshot().iter().position(|f| std::ptr::eq(*f, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_name_and_signature() {
        assert_ne!(fnv1a(b"a::f", 1), fnv1a(b"a::g", 1));
        assert_ne!(fnv1a(b"a::f", 1), fnv1a(b"a::f", 2));
        const KEY: u64 = fnv1a(b"const", 0);
        assert_eq!(KEY, fnv1a(b"const", 0));
    }
}
