//! The crate's only `unsafe` code: the few operating-system calls the process pool makes that
//! have no safe wrapper (raw inherited fds, the environment before `main`, a signal
//! disposition, a hook between `fork` and `exec`). Each is small and says why it is sound;
//! everything else in the crate is `deny(unsafe_code)`.
//!
//! Miri cannot execute any of these (they are FFI or fork-time calls), which is why they are
//! kept here, apart from the code that Miri or loom could check.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The worker start-up hook (see `worker`), run before `main` in every process linking unsync.
///
/// Here although the `unsafe_code` lint does not see through `ctor`'s expansion: running before
/// `main`, when std's runtime is not set up yet, is the unsafe part, which `ctor(unsafe)`
/// acknowledges. The hook only reads one environment variable unless this is a worker.
#[ctor::ctor(unsafe)]
fn unsync_worker_hook() {
    super::worker::take_over_if_worker();
}

/// Remove an environment variable while the process is still single-threaded.
///
/// Only for the worker's start-up hook, which runs before `main` (or first thing in it, through
/// `init`), before this process starts any thread.
pub(super) fn remove_env_var_before_threads(key: impl AsRef<OsStr>) {
    // SAFETY: the caller runs before any other thread exists, so nothing reads or writes the
    // environment concurrently.
    unsafe { std::env::remove_var(key) };
}

/// Make `write` to a closed pipe fail with `EPIPE` instead of killing the process (std does
/// this only once `main` is entered).
pub(super) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ignore the signals a terminal sends to its whole foreground process group (Ctrl-C's
/// SIGINT, Ctrl-\\'s SIGQUIT): they are meant for the program, which decides whether to stop,
/// and a worker dies with its parent anyway.
pub(super) fn ignore_terminal_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// The end of a pipe an fd is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PipeEnd {
    Read,
    Write,
}

/// Which end of a pipe `fd` is, or `None` when it is not an open pipe.
pub(super) fn pipe_end(fd: RawFd) -> Option<PipeEnd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is not -1, and it is borrowed only for the `fstat` and `fcntl` below, which
    // read the fd's metadata and fail on a closed fd.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stat = rustix::fs::fstat(borrowed).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Fifo {
        return None;
    }
    let mode = rustix::fs::fcntl_getfl(borrowed).ok()? & rustix::fs::OFlags::RWMODE;
    if mode == rustix::fs::OFlags::RDONLY {
        Some(PipeEnd::Read)
    } else if mode == rustix::fs::OFlags::WRONLY {
        Some(PipeEnd::Write)
    } else {
        None
    }
}

/// Take ownership of an fd this process inherited for its sole use.
///
/// Only for the pipe ends the pool passes to a worker: the caller has checked that `fd` is
/// open, and nothing else in the process refers to it.
pub(super) fn adopt_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller checked that `fd` is open, and the pool handed it to this process for
    // this one use, so no other owner exists.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Between `fork` and `exec` of `command`: let the child inherit `fds` (clear their
/// close-on-exec flag) and, on Linux, have it killed when the thread that spawns it exits.
///
/// The fds must stay open in the parent until `command` has been spawned.
pub(super) fn inherit_fds_and_die_with_parent(command: &mut Command, fds: [RawFd; 2]) {
    // SAFETY: the closure runs in the forked child before `exec` and makes only
    // async-signal-safe system calls (`fcntl`, `prctl`) on fds that stay open until `exec`.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                // SAFETY: the fd is open in the child: the parent closes it only after `spawn`.
                let fd = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            #[cfg(all(target_os = "linux", not(unsync_portable)))]
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
}
