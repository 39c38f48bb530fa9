//! Failures nobody read: a task that panicked or lost its worker after every handle to it was
//! dropped. Each such failure is reported exactly once (the completion cell decides when:
//! either when the task fails with no handle left, or when the last handle is dropped unread
//! after the failure), through the hook chosen in [`Config`](crate::Config):
//!
//! - by default, a `tracing` error event (target `unsync`, fields `task` and `error`), plus a
//!   line on stderr when no global `tracing` subscriber is installed, so that the failure is
//!   never silently lost;
//! - [`Config::on_unobserved_error`](crate::Config::on_unobserved_error): your hook instead;
//! - [`Config::ignore_unobserved_errors`](crate::Config::ignore_unobserved_errors): nothing.
//!
//! Cancellation is never reported: it is the reader's own decision.

use crate::config::UnobservedHook;
use crate::error::Error;

/// Report one failure that no handle will ever see. Cancellation is the reader's own decision,
/// so it is never reported.
pub(crate) fn unobserved(error: &Error) {
    if matches!(error, Error::Cancelled { .. }) {
        return;
    }
    let hook = crate::config::installed().map(|s| s.unobserved.clone());
    match hook.unwrap_or(UnobservedHook::Report) {
        UnobservedHook::Ignore => {}
        UnobservedHook::Custom(hook) => hook(error),
        UnobservedHook::Report => {
            tracing::error!(
                target: "unsync",
                task = error.task(),
                error = %error,
                "a failed task's error was never read: every handle to it was dropped"
            );
            if !tracing::dispatcher::has_been_set() {
                // One write of the whole line (`eprintln!` writes it piece by piece), so that
                // a process exiting meanwhile cuts no report in half.
                let line = format!(
                    "unsync: {error} (every handle to it was dropped, so nobody else saw it)\n"
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
        }
    }
}
