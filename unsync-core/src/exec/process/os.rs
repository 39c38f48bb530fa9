//! What the process pool does differently on Linux and on other Unix systems: creating pipes
//! and waking a worker's I/O thread (dying with the parent is `parent_death`).
//!
//! Linux has a system call for each (`pipe2`, `eventfd`); elsewhere (macOS, the BSDs) the same
//! effect takes a few portable calls. The portable versions also build on Linux under
//! `--cfg unsync_portable`, so that CI runs the process tests through them (`.ci/run`); nothing
//! here is checked on a real Mac.

use std::io;
use std::os::fd::OwnedFd;

/// Whether this build uses the portable versions.
const PORTABLE: bool = cfg!(any(not(target_os = "linux"), unsync_portable));

/// A pipe whose two ends close on `exec`: (read end, write end).
///
/// Portable version: `pipe` then `FD_CLOEXEC`, so a process forked by another thread in between
/// could inherit the ends (it would then hold a worker's pipe open until it execs or exits).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    {
        Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
    }
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    {
        let (read, write) = rustix::pipe::pipe()?;
        for fd in [&read, &write] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        Ok((read, write))
    }
}

/// Ask for a bigger pipe buffer, so that big frames cross with fewer context switches. Best
/// effort, and Linux only: elsewhere pipes keep their default size.
pub(super) fn grow_pipe(fd: &OwnedFd, bytes: usize) {
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    let _ = rustix::pipe::fcntl_setpipe_size(fd, bytes);
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    let _ = (fd, bytes);
}

/// How other threads wake a worker's I/O thread out of `poll`: an `eventfd` on Linux, a pipe
/// elsewhere. Both ends are non-blocking and close on `exec`.
pub(super) struct Wake {
    /// What the I/O thread polls for readability.
    readable: OwnedFd,
    /// Where a wake-up is written (the same fd for an `eventfd`).
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    writable: OwnedFd,
}

impl Wake {
    pub(super) fn new() -> io::Result<Wake> {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        {
            use rustix::event::EventfdFlags;
            let readable =
                rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            Ok(Wake { readable })
        }
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        {
            let (readable, writable) = pipe()?;
            for fd in [&readable, &writable] {
                rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
            }
            Ok(Wake { readable, writable })
        }
    }

    /// The fd to poll for readability.
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.readable
    }

    /// Wake the I/O thread. A full pipe already holds a wake-up, so a failed write loses none.
    pub(super) fn signal(&self) {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        let _ = rustix::io::write(&self.readable, &1_u64.to_ne_bytes());
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        let _ = rustix::io::write(&self.writable, &[1]);
    }

    /// Consume the wake-ups received so far.
    pub(super) fn drain(&self) {
        let mut buf = [0_u8; 64];
        while let Ok(n) = rustix::io::read(&self.readable, &mut buf) {
            // An eventfd is drained by one read of its 8-byte counter.
            if n == 0 || !PORTABLE {
                break;
            }
        }
    }
}
