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
/// let failed = unsync_core::spawn_blocking(|| -> u32 { panic!("disk on fire") });
/// match failed.catch().result() {
///     Err(unsync_core::Error::Panicked { task, message }) => {
///         assert_eq!(task, "spawn_blocking");
///         assert_eq!(message, "disk on fire");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked; `message` is the panic's payload when it was a string.
    #[error("task `{task}` panicked: {message}")]
    Panicked {
        /// The function (or `"spawn"`, ...) that failed.
        task: &'static str,
        /// The panic message.
        message: String,
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
    /// The worker process running a `cpu_bound` task died (crash, abort, `exit`, a kill from
    /// outside) or broke the protocol; `detail` says how.
    #[error("task `{task}` lost its worker process: {detail}")]
    WorkerDied {
        /// The `cpu_bound` function that was running.
        task: &'static str,
        /// The exit status, signal, or protocol error.
        detail: String,
    },
}

impl Error {
    /// The task this error is about.
    ///
    /// ```
    /// let e = unsync_core::Error::Cancelled { task: "demo::fetch" };
    /// assert_eq!(e.task(), "demo::fetch");
    /// ```
    pub fn task(&self) -> &'static str {
        match self {
            Error::Panicked { task, .. }
            | Error::Cancelled { task }
            | Error::TimedOut { task, .. }
            | Error::WorkerDied { task, .. } => task,
        }
    }

    /// The text of a panic payload, as std's panic hook would print it.
    pub(crate) fn from_panic(task: &'static str, payload: &(dyn std::any::Any + Send)) -> Error {
        Error::Panicked {
            task,
            message: panic_message(payload),
        }
    }
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
/// let _ = unsync_core::spawn(async { 1 }).result();
/// let err = unsync_core::Config::new().runtime_threads(4).install().unwrap_err();
/// assert_eq!(err, unsync_core::ConfigError::AlreadyStarted);
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
        };
        assert_eq!(e.to_string(), "task `app::parse` panicked: bad byte");
        let e = Error::TimedOut {
            task: "app::f",
            after: Duration::from_millis(250),
        };
        assert_eq!(e.to_string(), "task `app::f` timed out after 250ms");
        assert_eq!(e.task(), "app::f");
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
