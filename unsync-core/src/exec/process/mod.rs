//! `#[unsync(cpu_bound)]`: calls run in a pool of worker processes (this executable started
//! again), so that a crashed, hung or runaway call costs one worker, never the caller. What
//! users see (start-up hook, what crosses, failures, platforms) is the "Worker processes"
//! section of the [`unsync-exec` docs](https://docs.rs/unsync-exec/latest/unsync/#worker-processes-cpu_bound);
//! this module holds how it works, one concept per file:
//!
//! - `registry`: the `cpu_bound` functions, gathered at link time, found by key;
//! - `codec`: how arguments and results are encoded (serde and postcard, [`Bulk`](private::Bulk));
//!   `shared`: large blocks through shared memory instead of the pipe (Linux); `wire_check`: the compile-time check that they can be, one error per type;
//! - `protocol`: the frames on the pipes and the messages they carry;
//! - `call`: one typed call, from its arguments to the value or error of its handle;
//!   `stream`: one typed streaming call, from its arguments to the items of its stream;
//! - `pool`: the parent side (entry points and shared state), with `pool::schedule` (where a
//!   call waits, which worker gets it), `pool::writer` (writing frames without blocking),
//!   `pool::io_loop` (reading answers, completing calls) and `pool::supervisor` (starting
//!   workers, noticing a death, replacing them);
//! - `launch`: starting one worker process; `handshake`: parent and worker agree that they are
//!   the same build; `parent_death`: workers die with their parent;
//! - `worker`: the worker side, from the start-up hook to running calls; `worker_stream`: a
//!   streaming call driven in the worker (credit, batches); `worker_log`: the `tracing`
//!   records of a call's body, sent to the parent and re-emitted there;
//! - `os`: what differs between Unix systems and Windows, and between Linux and other Unix
//!   systems; `sys` (`sys_windows.rs` on Windows): the crate's only `unsafe`.

mod call;
mod codec;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
pub(crate) mod handshake;
mod launch;
mod os;
mod parent_death;
mod pool;
mod protocol;
mod registry;
mod shared;
mod stream;
#[cfg(unix)]
#[allow(unsafe_code)]
mod sys;
#[cfg(windows)]
#[allow(unsafe_code)]
#[path = "sys_windows.rs"]
mod sys;
mod wire_check;
mod worker;
mod worker_log;
mod worker_stream;

pub use codec::bulk;
pub(crate) use pool::shutdown;
pub(crate) use registry::WorkerFn;
// The seams the remote executor runs calls through.
pub use worker::init;
#[cfg(feature = "remote")]
pub(crate) use {call::decode_result, pool::spawn_encoded, registry::lookup, registry::position};

/// What `#[unsync(cpu_bound)]` expands to.
pub mod private {
    pub use super::codec::{Bulk, BulkElement, CodecError, decode, encode};
    pub use super::pool::{spawn_process, spawn_process_reusing, spawn_process_stream};
    #[cfg(not(windows))]
    pub use super::registry::WORKER_FNS;
    #[cfg(windows)]
    pub use super::registry::register;
    pub use super::registry::{NextItem, Shim, StreamShim, WorkerFn};
    pub use super::shared::{decode_args, encode_result, encode_vec_result};
    pub use super::wire_check::{
        Cross, SerializeAndDeserialize, Witness, check_wire, next_item, spawn_checked,
        spawn_stream_checked,
    };
    pub use super::worker::{in_worker, run_inline};
    pub use crate::__register_worker_fn as register_worker_fn;
}
