//! Parent and worker agree that they are the same build before any call crosses.
//!
//! The pool starts a worker with its own build fingerprint (in the worker's spec, see
//! `launch`); the worker compares it with its own and answers `HELLO` (protocol version, its
//! fingerprint) or `REFUSED` (naming both), then exits. The parent checks that `HELLO` in turn,
//! and gives a new worker [`TIMEOUT`] to send it. A refusal on either side breaks the pool:
//! every worker it could start would be the same other build.
//!
//! The fingerprint covers the unsync version, the protocol version and the key of every
//! registered function, so two builds with different `cpu_bound` functions never talk.

use std::sync::OnceLock;
use std::time::Duration;

use super::protocol::{Message, PROTOCOL_VERSION};
use super::registry::{self, fnv1a};

/// How long a new worker has to answer the handshake.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// This build's fingerprint: its unsync version, protocol and set of `cpu_bound` functions.
pub(crate) fn fingerprint() -> u64 {
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let mut keys: Vec<u64> = registry::entries().map(|f| f.key).collect();
        keys.sort_unstable();
        let mut hash = fnv1a(env!("CARGO_PKG_VERSION").as_bytes(), 0);
        hash = fnv1a(&PROTOCOL_VERSION.to_le_bytes(), hash);
        for key in keys {
            hash = fnv1a(&key.to_le_bytes(), hash);
        }
        hash
    })
}

/// Worker side: append the worker's first frame to `out`, `HELLO` if `parent` (the
/// fingerprint the parent started it with) is this build's, `REFUSED` otherwise. Returns
/// whether the worker may serve.
pub(crate) fn greet(parent: u64, out: &mut Vec<u8>) -> bool {
    let ours = fingerprint();
    if parent != ours {
        let reason = format!(
            "this worker is a different build of the program (fingerprint {ours:016x}, parent {parent:016x}): the executable changed since the parent started"
        );
        Message::Refused { reason: &reason }.encode(out);
        return false;
    }
    Message::Hello {
        version: PROTOCOL_VERSION,
        fingerprint: ours,
        pid: std::process::id(),
    }
    .encode(out);
    true
}

/// Parent side: whether a worker's `HELLO` comes from this very build; why not otherwise.
pub(crate) fn check_hello(version: u32, fingerprint: u64) -> Result<(), String> {
    let ours = self::fingerprint();
    if version == PROTOCOL_VERSION && fingerprint == ours {
        return Ok(());
    }
    Err(format!(
        "the worker process is a different build (protocol {version}, fingerprint {fingerprint:016x}; this process: protocol {PROTOCOL_VERSION}, fingerprint {ours:016x})"
    ))
}

/// Why a worker that did not say hello within [`TIMEOUT`] is given up on.
pub(crate) fn timed_out() -> String {
    format!(
        "the worker process did not answer the handshake within {TIMEOUT:?}; if it ran your `main` instead, unsync's start-up hook was dropped by the linker: call `unsync::init()` first thing in `main`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::protocol::PREFIX;

    #[test]
    fn the_same_build_is_greeted_and_accepted() {
        let mut out = Vec::new();
        assert!(greet(fingerprint(), &mut out));
        let Ok(Message::Hello {
            version,
            fingerprint,
            pid,
        }) = Message::decode(&out[PREFIX..])
        else {
            panic!("not a hello");
        };
        assert_eq!(pid, std::process::id());
        assert_eq!(check_hello(version, fingerprint), Ok(()));
    }

    #[test]
    fn another_build_is_refused_on_both_sides() {
        let other = fingerprint() ^ 1;
        let mut out = Vec::new();
        assert!(!greet(other, &mut out));
        let Ok(Message::Refused { reason }) = Message::decode(&out[PREFIX..]) else {
            panic!("not a refusal");
        };
        assert!(reason.contains(&format!("parent {other:016x}")), "{reason}");

        let refused = check_hello(PROTOCOL_VERSION, other).unwrap_err();
        assert!(refused.contains("different build"), "{refused}");
        assert!(check_hello(PROTOCOL_VERSION + 1, fingerprint()).is_err());
    }
}
