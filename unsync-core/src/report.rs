//! Failures nobody read: a task that panicked or lost its worker after every handle to it was
//! dropped. Each such failure is reported exactly once, through the hook chosen in
//! [`Config`](crate::Config) (by default a `tracing` error event, and a line on stderr when no
//! `tracing` subscriber is installed).

use crate::config::UnobservedHook;
use crate::error::Error;

/// Report one failure that no handle will ever see.
pub(crate) fn unobserved(error: &Error) {
    let hook = crate::config::installed().map(|s| s.unobserved.clone());
    match hook.unwrap_or(UnobservedHook::Report) {
        UnobservedHook::Ignore => {}
        UnobservedHook::Custom(hook) => hook(error),
        UnobservedHook::Report => {
            eprintln!("unsync: {error} (every handle to it was dropped, so nobody else saw it)")
        }
    }
}
