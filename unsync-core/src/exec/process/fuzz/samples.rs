//! Sample functions registered the way `#[unsync(cpu_bound)]` registers a function (a `linkme`
//! entry, or on Windows a constructor: `link_section` statics, which trip `unsafe_code`), so
//! that the checks
//! exercise real argument decoding. They exist only in unsync-core's tests and in executables
//! built with the `fuzzing` feature.

use std::collections::BTreeMap;

use crate::exec::process::codec::{Bulk, CodecError, decode, encode};
#[cfg(not(windows))]
use crate::exec::process::registry::WORKER_FNS;
use crate::exec::process::registry::{NextItem, WorkerFn};

/// Registers `fn $name` as `#[unsync(cpu_bound)]` would: a shim that decodes the argument
/// tuple, runs the function and encodes its result.
macro_rules! sample {
    ($entry:ident: fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $out:ty $body:block) => {
        pub(crate) fn $name($($arg: $ty),*) -> $out $body

        #[cfg_attr(not(windows), linkme::distributed_slice(WORKER_FNS))]
        pub(crate) static $entry: WorkerFn = WorkerFn::new(concat!(module_path!(), "::", stringify!($name)), 0, {
            fn shim(args: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
                let ($($arg,)*): ($($ty,)*) = decode(args)?;
                encode(&$name($($arg),*), out)
            }
            shim
        });
        crate::__register_worker_fn!($entry);
    };
}

/// Registers `fn $name` as `#[unsync(cpu_bound)]` registers a streaming function.
macro_rules! stream_sample {
    ($entry:ident: fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $item:ty $body:block) => {
        pub(crate) fn $name($($arg: $ty),*) -> impl Iterator<Item = $item> + 'static $body

        #[cfg_attr(not(windows), linkme::distributed_slice(WORKER_FNS))]
        pub(crate) static $entry: WorkerFn = WorkerFn::streaming(concat!(module_path!(), "::", stringify!($name)), 0, {
            fn shim(args: &[u8]) -> Result<NextItem, CodecError> {
                let ($($arg,)*): ($($ty,)*) = decode(args)?;
                let mut items = $name($($arg),*);
                Ok(Box::new(move |out| match items.next() {
                    Some(item) => encode(&item, out).map(|()| true),
                    None => Ok(false),
                }))
            }
            shim
        });
        crate::__register_worker_fn!($entry);
    };
}

stream_sample!(COUNT_TO: fn count_to(n: u64) -> u64 { 0..n });
stream_sample!(PANICS_AT: fn panics_at(n: u64) -> u64 {
    (0..).map(move |i| if i == n { panic!("stopped at {n}") } else { i })
});
stream_sample!(WORDS: fn words(text: String) -> String {
    text.split_whitespace().map(str::to_owned).collect::<Vec<_>>().into_iter()
});

// Every sample's encoded result is at most a few bytes longer than its encoded arguments, so
// the checks can bound an answer's size by the request's.
sample!(ADD: fn add(a: u64, b: u64) -> u64 { a.wrapping_add(b) });
sample!(CONCAT: fn concat(parts: Vec<String>) -> String { parts.concat() });
sample!(SUM: fn sum(values: Bulk<Vec<f64>>) -> f64 { values.0.iter().sum() });
sample!(ECHO: fn echo(bytes: Bulk<Vec<u8>>) -> Bulk<Vec<u8>> { bytes });
sample!(CENSUS: fn census(
    rows: Vec<Vec<u32>>,
    names: Option<BTreeMap<String, i64>>,
    flag: Result<(bool, char), i16>,
) -> (u64, u64, bool) {
    let cells = rows.iter().map(|r| r.len() as u64).sum();
    (cells, names.map_or(0, |n| n.len() as u64), matches!(flag, Ok((true, _))))
});

#[cfg(test)]
pub(super) use test_only::*;

#[cfg(test)]
mod test_only {
    use super::*;

    sample!(PANICS: fn panics_on_zero(n: u8) -> u8 {
        if n == 0 {
            panic!("zero");
        }
        n
    });

    /// A panic payload whose `drop` panics too.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the panic payload panicked when dropped");
        }
    }

    /// A result whose `Serialize` fails.
    pub(crate) struct Unencodable;

    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refuses to be encoded"))
        }
    }

    sample!(UNENCODABLE: fn unencodable(_n: u8) -> Unencodable { Unencodable });

    sample!(BOMB: fn throws_a_bomb(n: u8) -> u8 {
        if n == 0 {
            std::panic::panic_any(Bomb);
        }
        n
    });
}
