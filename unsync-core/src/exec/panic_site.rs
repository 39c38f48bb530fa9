//! Where a task panicked. A panic payload does not carry its location, so a panic hook notes
//! it (and in a worker process the backtrace, when `RUST_BACKTRACE` asks for one) on the thread
//! that panics, before the unwind; the executor that catches the unwind takes the note. The
//! hook goes in front of whatever hook was installed, which still runs: std's default keeps
//! printing the message, and a hook installed later replaces ours (locations are then unknown,
//! nothing else changes).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::PanicSite;

thread_local! {
    static NOTED: RefCell<Option<PanicSite>> = const { RefCell::new(None) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static CAPTURE_BACKTRACES: AtomicBool = AtomicBool::new(false);

/// Put the noting hook in front of the current one, once per process. Called when an executor
/// starts.
pub(crate) fn install() {
    // `set_hook` must not run while this thread panics; the next executor start retries.
    if std::thread::panicking() || INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(location) = info.location() {
            let backtrace = CAPTURE_BACKTRACES
                .load(Ordering::Relaxed)
                .then(std::backtrace::Backtrace::capture)
                .filter(|b| b.status() == std::backtrace::BacktraceStatus::Captured)
                .map(|b| b.to_string());
            let site = PanicSite::new(location.to_string(), backtrace);
            let _ = NOTED.try_with(|noted| *noted.borrow_mut() = Some(site));
        }
        previous(info);
    }));
}

/// Also capture backtraces (in a worker process, where the caller cannot see std's output as
/// its own).
pub(crate) fn capture_backtraces() {
    CAPTURE_BACKTRACES.store(true, Ordering::Relaxed);
}

/// Where the last panic on this thread happened, if the hook noted it (once).
pub(crate) fn take() -> Option<PanicSite> {
    NOTED
        .try_with(|noted| noted.borrow_mut().take())
        .ok()
        .flatten()
}
