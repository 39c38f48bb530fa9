//! Errors: why a task produced no value ([`Error`]), and why a configuration was refused
//! ([`ConfigError`]).
//!
//! Every variant of [`Error`] names the task that failed: the module path and name of the
//! `#[unsync]` function, or `"spawn"`, `"spawn_blocking"`, ... for ad-hoc work.

use std::time::Duration;

/// Why an [`Unfinished`](crate::Unfinished) handle resolved without a value.
///
/// `.result()` and `.await` re-raise it as a panic whose message is this error's `Display`;
/// [`Unfinished::catch`](crate::Unfinished::catch) hands it over as a value instead.
///
/// ```
/// let failed = unsync::spawn_blocking(|| -> u32 { panic!("disk on fire") });
/// match failed.catch().result() {
///     Err(unsync::Error::Panicked { task, message, .. }) => {
///         assert_eq!(task, "spawn_blocking");
///         assert_eq!(message, "disk on fire");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked; `message` is the panic's payload when it was a string, `site` where
    /// it panicked (see [`Error::location`] and [`Error::backtrace`]).
    #[error("task `{task}` panicked{}: {message}", at(.site))]
    Panicked {
        /// The function (or `"spawn"`, ...) that failed.
        task: &'static str,
        /// The panic message.
        message: String,
        /// Where it panicked, when known.
        site: Option<Box<PanicSite>>,
    },
    /// The task was cancelled (see [`Unfinished::cancel`](crate::Unfinished::cancel)) before it
    /// produced a value, or whatever was meant to complete it went away.
    #[error("task `{task}` was cancelled")]
    Cancelled {
        /// The function (or `"spawn"`, ...) that was cancelled.
        task: &'static str,
    },
    /// The task did not finish within the time given to
    /// [`Unfinished::timeout`](crate::Unfinished::timeout).
    #[error("task `{task}` timed out after {after:?}")]
    TimedOut {
        /// The function (or `"spawn"`, ...) that timed out.
        task: &'static str,
        /// The time limit that passed.
        after: Duration,
    },
    /// The worker process running a `cpu_bound` task died: it crashed, aborted, called `exit`,
    /// was killed from outside, or broke the protocol (wrote frames out of step, or a frame
    /// over the limit), and was replaced; `detail` says how. Also when no worker can start
    /// (they fail at start-up, they are another build, or the start-up hook did not run):
    /// `detail` then says why, and `shutdown` resets the pool.
    #[error("task `{task}` lost its worker process: {detail}")]
    WorkerDied {
        /// The `cpu_bound` function that was running.
        task: &'static str,
        /// The exit status, signal, or protocol error.
        detail: String,
    },
    /// No worker process can run this `cpu_bound` function: the linker dropped it from the
    /// registry of `cpu_bound` functions (seen with some LTO or static-library builds), the
    /// worker has no function with its key, or another `cpu_bound` function has the same
    /// path, name and signature (two functions declared inside two function bodies of one
    /// module), so a worker could not tell them apart. The call never ran; no worker died.
    #[error("task `{task}` cannot run in a worker process: {detail}")]
    NotRegistered {
        /// The `cpu_bound` function that was called.
        task: &'static str,
        /// Which of the causes above.
        detail: String,
    },
    /// The encoded arguments or result of a `cpu_bound` call take more than the frame limit
    /// ([`Config::max_frame_bytes`](crate::Config::max_frame_bytes), 256 MiB by default).
    /// Arguments are refused before they are sent; a result is refused by the worker, which
    /// serves on. The call's body ran only if `payload` is [`Payload::Result`].
    #[error(
        "task `{task}`: {bytes} bytes of encoded {payload}, more than the frame limit of {limit} (raise it with `Config::max_frame_bytes` or UNSYNC_MAX_FRAME_BYTES)"
    )]
    TooLarge {
        /// The `cpu_bound` function that was called.
        task: &'static str,
        /// Whether the arguments or the result were too large.
        payload: Payload,
        /// The size of the frame they needed (its body, without the 4-byte length prefix).
        bytes: usize,
        /// The frame limit in force.
        limit: usize,
    },
    /// The arguments or result of a `cpu_bound` call could not cross to or from the worker
    /// process: their `Serialize` implementation failed, or what was encoded did not decode
    /// again (postcard is not self-describing, so `#[serde(flatten)]`, `#[serde(untagged)]`
    /// and other `deserialize_any` types do not round-trip). The body ran only if `payload`
    /// is [`Payload::Result`].
    #[error("task `{task}`: its {payload} could not cross to or from the worker process: {detail}")]
    Encoding {
        /// The `cpu_bound` function that was called.
        task: &'static str,
        /// Whether the arguments or the result failed.
        payload: Payload,
        /// Where (encoding or decoding, in which process), and serde's message.
        detail: String,
    },
    /// A `#[unsync(remote)]` call could not go through the Temporal cluster named by
    /// `UNSYNC_REMOTE` (or [`Config::remote`](crate::Config::remote)): the server could not be
    /// reached (within the connect timeout) or refused the call, its arguments are over the
    /// server's payload limit (refused before anything is sent), an operator terminated it, or
    /// this program was built without unsync's `remote` feature. The body may have run only if
    /// the server accepted the call.
    #[error("task `{task}` could not run remotely: {detail}")]
    Remote {
        /// The `remote` function that was called.
        task: &'static str,
        /// What went wrong, with what to do about it.
        detail: String,
    },
}

/// What crosses between a caller and a worker process, in [`Error::TooLarge`] and
/// [`Error::Encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The call's arguments, from the caller to the worker.
    Arguments,
    /// The call's result, from the worker back to the caller.
    Result,
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Payload::Arguments => "arguments",
            Payload::Result => "result",
        })
    }
}

impl Error {
    /// The task this error is about.
    ///
    /// ```
    /// let e = unsync::Error::Cancelled { task: "demo::fetch" };
    /// assert_eq!(e.task(), "demo::fetch");
    /// ```
    pub fn task(&self) -> &'static str {
        match self {
            Error::Panicked { task, .. }
            | Error::Cancelled { task }
            | Error::TimedOut { task, .. }
            | Error::WorkerDied { task, .. }
            | Error::NotRegistered { task, .. }
            | Error::TooLarge { task, .. }
            | Error::Encoding { task, .. }
            | Error::Remote { task, .. } => task,
        }
    }

    /// Where the task panicked, `file:line:column` as std prints it, in every mode (a worker
    /// process sends it along); `None` for any other error, and for a panic that bypassed
    /// unsync's panic hook (`resume_unwind`, or a hook installed after the first task ran).
    ///
    /// ```
    /// let error = unsync::spawn_blocking(|| -> u8 { panic!("no disk") }).catch().result().unwrap_err();
    /// let location = error.location().unwrap();
    /// assert!(location.starts_with(file!()), "{location}");
    /// assert!(error.to_string().starts_with("task `spawn_blocking` panicked at "));
    /// ```
    pub fn location(&self) -> Option<&str> {
        match self {
            Error::Panicked {
                site: Some(site), ..
            } => Some(site.location()),
            _ => None,
        }
    }

    /// The backtrace of a panic in a worker process, as text, when `RUST_BACKTRACE` (or
    /// `RUST_LIB_BACKTRACE`) enabled it there. `.result()` and `.await` append it to the panic
    /// they re-raise. In-process panics have none: std's panic hook already printed theirs.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            Error::Panicked {
                site: Some(site), ..
            } => site.backtrace(),
            _ => None,
        }
    }

    /// The error of a task whose body panicked with `payload`, at `site` if known.
    pub(crate) fn from_panic(
        task: &'static str,
        payload: &(dyn std::any::Any + Send),
        site: Option<PanicSite>,
    ) -> Error {
        Error::Panicked {
            task,
            message: panic_message(payload),
            site: site.map(Box::new),
        }
    }
}

/// Where a task panicked: the location, and from a worker process the backtrace when
/// `RUST_BACKTRACE` enabled one. In [`Error::Panicked`]; read it through [`Error::location`]
/// and [`Error::backtrace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicSite {
    location: String,
    backtrace: Option<String>,
}

impl PanicSite {
    pub(crate) fn new(location: String, backtrace: Option<String>) -> PanicSite {
        PanicSite {
            location,
            backtrace,
        }
    }

    /// `file:line:column`, as std's panic message prints it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The worker process's backtrace, as text (see [`Error::backtrace`]).
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }
}

/// ` at <location>` in a panic's message, when the location is known.
fn at(site: &Option<Box<PanicSite>>) -> String {
    site.as_ref()
        .map_or_else(String::new, |site| format!(" at {}", site.location))
}

/// The message of a panic payload (`&str` or `String`; anything else is described).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(e) = payload.downcast_ref::<Error>() {
        e.to_string()
    } else {
        "Box<dyn Any> (a panic payload that is not a string)".to_owned()
    }
}

/// Why [`Config::install`](crate::Config::install) refused a configuration, or why the
/// executors could not start from the environment.
///
/// ```
/// # // The executors of this doctest binary start below, so a second install must fail.
/// let _ = unsync::spawn(async { 1 }).result();
/// let err = unsync::Config::new().runtime_threads(4).install().unwrap_err();
/// assert_eq!(err, unsync::ConfigError::AlreadyStarted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The executors already started (a task ran, or `install` was called before), so the
    /// configuration can no longer change.
    #[error(
        "unsync is already configured: `Config::install` must run before the first task is started (and only once)"
    )]
    AlreadyStarted,
    /// An `UNSYNC_*` environment variable holds a value that is not a valid setting.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// Its value as found.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// A value given to the [`Config`](crate::Config) builder is out of range.
    #[error("invalid configuration: {setting} {reason}")]
    Invalid {
        /// The builder method.
        setting: &'static str,
        /// What a valid value looks like.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_task_and_cause() {
        let e = Error::Panicked {
            task: "app::parse",
            message: "bad byte".into(),
            site: None,
        };
        assert_eq!(e.to_string(), "task `app::parse` panicked: bad byte");
        assert_eq!(e.location(), None);
        let site = PanicSite::new("src/main.rs:6:9".into(), None);
        let e = Error::from_panic("app::divide", &"cannot divide by zero", Some(site));
        assert_eq!(
            e.to_string(),
            "task `app::divide` panicked at src/main.rs:6:9: cannot divide by zero"
        );
        assert_eq!(e.location(), Some("src/main.rs:6:9"));
        let e = Error::TimedOut {
            task: "app::f",
            after: Duration::from_millis(250),
        };
        assert_eq!(e.to_string(), "task `app::f` timed out after 250ms");
        assert_eq!(e.task(), "app::f");
        let e = Error::TooLarge {
            task: "app::g",
            payload: Payload::Result,
            bytes: 5000,
            limit: 4096,
        };
        assert!(
            e.to_string().starts_with(
                "task `app::g`: 5000 bytes of encoded result, more than the frame limit of 4096"
            ),
            "{e}"
        );
        assert_eq!(e.task(), "app::g");
    }

    #[test]
    fn panic_payloads_become_messages() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_message(&*p), "static");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(&*p), "owned");
        let p: Box<dyn std::any::Any + Send> = Box::new(42_u8);
        assert!(panic_message(&*p).contains("not a string"));
    }
}
