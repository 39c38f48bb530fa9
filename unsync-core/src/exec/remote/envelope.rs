//! What crosses the cluster, in both directions, and the limit on it.
//!
//! A call is one `binary/plain` payload: the function's registry key (8 bytes, little-endian),
//! then its arguments as the process pool encodes them. A result is the bytes the local worker
//! process returned. A failure is a Temporal `ApplicationFailure` whose type names the
//! [`Error`] variant ([`Kind`]), whose message is the error's own, and whose details carry a
//! panic's location: readable in the Temporal UI, and turned back into the same `Error` by the
//! caller.

use temporalio_common::ActivityDefinition;

use crate::error::{Error, PanicSite, Payload};

/// What the server adds around the bytes of a payload (its metadata), with room to spare.
const PAYLOAD_OVERHEAD: usize = 128;

/// The activity type of every call.
pub(super) const ACTIVITY_TYPE: &str = "UnsyncCall";

/// Every call's activity: a call's payload in, the result's bytes out.
pub(super) struct UnsyncCall;

impl ActivityDefinition for UnsyncCall {
    type Input = Vec<u8>;
    type Output = Vec<u8>;
    fn name(&self) -> &str {
        ACTIVITY_TYPE
    }
}

/// This build's task queue, `unsync-<8 hex digits of the registry fingerprint>`: only workers of
/// the same build poll it.
pub(super) fn task_queue() -> String {
    let fingerprint = crate::exec::process::handshake::fingerprint();
    format!("unsync-{:08x}", fingerprint >> 32)
}

/// The call's payload: `key`, then `args` (already encoded).
pub(super) fn encode_call(key: u64, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + args.len());
    payload.extend_from_slice(&key.to_le_bytes());
    payload.extend_from_slice(args);
    payload
}

/// The key and arguments of a call's payload; `None` when it is too short to be one.
pub(super) fn decode_call(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (key, args) = payload.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*key), args))
}

/// Refuse a payload of `bytes` over the cluster's `limit` before it is sent: the server would
/// refuse it as a retryable error, retried forever.
pub(super) fn check_size(task: &'static str, bytes: usize, limit: usize) -> Result<(), Error> {
    if bytes + PAYLOAD_OVERHEAD <= limit {
        return Ok(());
    }
    Err(Error::Remote {
        task,
        detail: format!(
            "its arguments take {bytes} bytes encoded, over the cluster's payload limit of {limit} bytes (Temporal's `limit.blobSize.error`, 2 MiB by default; `Remote::max_payload_bytes` if the cluster's is raised): pass large data by reference, for example an object-store URL, and fetch it in the function. Nothing was sent"
        ),
    })
}

/// An [`Error`] as a failure's type name, message and details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Panicked,
    WorkerDied,
    NotRegistered,
    ArgumentsEncoding,
    ResultEncoding,
    /// Anything else the worker met (a result over its frame limit, ...): an `Error::Remote`.
    Other,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Panicked => "Panicked",
            Kind::WorkerDied => "WorkerDied",
            Kind::NotRegistered => "NotRegistered",
            Kind::ArgumentsEncoding => "ArgumentsEncoding",
            Kind::ResultEncoding => "ResultEncoding",
            Kind::Other => "Other",
        }
    }

    fn from_name(name: &str) -> Kind {
        [
            Kind::Panicked,
            Kind::WorkerDied,
            Kind::NotRegistered,
            Kind::ArgumentsEncoding,
            Kind::ResultEncoding,
        ]
        .into_iter()
        .find(|k| k.name() == name)
        .unwrap_or(Kind::Other)
    }

    /// Whether the server may run the call again: only when its worker process died (a crash
    /// may not happen twice); a panic or a refusal would happen again.
    pub(super) fn retryable(self) -> bool {
        self == Kind::WorkerDied
    }
}

/// A failure as it leaves the remote worker.
pub(super) struct Failure {
    pub(super) kind: Kind,
    pub(super) message: String,
    /// A panic's `file:line:column`, empty otherwise.
    pub(super) location: String,
}

impl Failure {
    /// What a worker sends for the local pool's `error` (never `Cancelled`: that is a cancel).
    pub(super) fn from_error(error: &Error) -> Failure {
        let (kind, message) = match error {
            Error::Panicked { message, .. } => (Kind::Panicked, message.clone()),
            Error::WorkerDied { detail, .. } => (Kind::WorkerDied, detail.clone()),
            Error::NotRegistered { detail, .. } => (Kind::NotRegistered, detail.clone()),
            Error::Encoding {
                payload: Payload::Arguments,
                detail,
                ..
            } => (Kind::ArgumentsEncoding, detail.clone()),
            Error::Encoding { detail, .. } => (Kind::ResultEncoding, detail.clone()),
            other => (Kind::Other, other.to_string()),
        };
        Failure {
            kind,
            message,
            location: error.location().unwrap_or_default().to_owned(),
        }
    }

    /// The caller's error for a failure of type `type_name` with this message and location.
    pub(super) fn into_error(
        task: &'static str,
        type_name: &str,
        message: String,
        location: String,
    ) -> Error {
        match Kind::from_name(type_name) {
            Kind::Panicked => Error::Panicked {
                task,
                message,
                site: (!location.is_empty()).then(|| Box::new(PanicSite::new(location, None))),
            },
            Kind::WorkerDied => Error::WorkerDied {
                task,
                detail: format!("on the remote worker: {message}"),
            },
            Kind::NotRegistered => Error::NotRegistered {
                task,
                detail: format!("on the remote worker: {message}"),
            },
            Kind::ArgumentsEncoding => Error::Encoding {
                task,
                payload: Payload::Arguments,
                detail: format!("on the remote worker: {message}"),
            },
            Kind::ResultEncoding => Error::Encoding {
                task,
                payload: Payload::Result,
                detail: format!("on the remote worker: {message}"),
            },
            Kind::Other => Error::Remote {
                task,
                detail: format!("the remote worker failed the call: {message}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_and_short_payloads_are_refused() {
        let payload = encode_call(0x0102_0304_0506_0708, b"args");
        assert_eq!(
            decode_call(&payload),
            Some((0x0102_0304_0506_0708, &b"args"[..]))
        );
        assert_eq!(decode_call(&payload[..7]), None);
    }

    #[test]
    fn every_error_crosses_as_itself() {
        let panic = Error::Panicked {
            task: "t",
            message: "boom".into(),
            site: Some(Box::new(PanicSite::new("src/lib.rs:1:2".into(), None))),
        };
        let died = Error::WorkerDied {
            task: "t",
            detail: "killed by SIGKILL".into(),
        };
        for error in [panic, died] {
            let f = Failure::from_error(&error);
            let back = Failure::into_error("t", f.kind.name(), f.message, f.location);
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&error)
            );
            assert_eq!(back.location(), error.location());
        }
        assert!(Kind::WorkerDied.retryable() && !Kind::Panicked.retryable());
    }

    #[test]
    fn the_limit_is_named_when_arguments_are_too_large() {
        assert!(check_size("t", 1000, 2 << 20).is_ok());
        let refused = check_size("t", 2 << 20, 2 << 20).unwrap_err().to_string();
        assert!(
            refused.contains("payload limit of 2097152 bytes"),
            "{refused}"
        );
    }
}
