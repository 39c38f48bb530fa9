//! The process pool on Unix: non-blocking pipes polled by each worker's I/O thread, and how
//! Linux differs from other Unix systems in creating pipes and waking that thread (dying with
//! the parent is `parent_death`).
//!
//! Linux has a system call for each (`pipe2`, `eventfd`); elsewhere (macOS, the BSDs) the same
//! effect takes a few portable calls. The portable versions also build on Linux under
//! `--cfg unsync_portable`, so that CI runs the process tests through them (`.ci/run`); nothing
//! here is checked on a real Mac.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use super::Ready;

/// Whether this build uses the portable versions.
const PORTABLE: bool = cfg!(any(not(target_os = "linux"), unsync_portable));

/// A pipe whose two ends close on `exec`: (read end, write end).
///
/// Portable version: `pipe` then `FD_CLOEXEC`, so a process forked by another thread in between
/// could inherit the ends (it would then hold a worker's pipe open until it execs or exits).
pub(in crate::exec::process) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
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
pub(in crate::exec::process) fn grow_pipe(fd: &OwnedFd, bytes: usize) {
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    let _ = rustix::pipe::fcntl_setpipe_size(fd, bytes);
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    let _ = (fd, bytes);
}

/// How other threads wake a worker's I/O thread out of `poll`: an `eventfd` on Linux, a pipe
/// elsewhere. Both ends are non-blocking and close on `exec`.
pub(in crate::exec::process) struct Wake {
    /// What the I/O thread polls for readability.
    readable: OwnedFd,
    /// Where a wake-up is written (the same fd for an `eventfd`).
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    writable: OwnedFd,
}

impl Wake {
    pub(in crate::exec::process) fn new() -> io::Result<Wake> {
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
    pub(in crate::exec::process) fn fd(&self) -> &OwnedFd {
        &self.readable
    }

    /// Wake the I/O thread. A full pipe already holds a wake-up, so a failed write loses none.
    pub(in crate::exec::process) fn signal(&self) {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        let _ = rustix::io::write(&self.readable, &1_u64.to_ne_bytes());
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        let _ = rustix::io::write(&self.writable, &[1]);
    }

    /// Consume the wake-ups received so far.
    pub(in crate::exec::process) fn drain(&self) {
        let mut buf = [0_u8; 64];
        while let Ok(n) = rustix::io::read(&self.readable, &mut buf) {
            // An eventfd is drained by one read of its 8-byte counter.
            if n == 0 || !PORTABLE {
                break;
            }
        }
    }
}

/// The parent's end of a worker's request pipe.
pub(in crate::exec::process) type Requests = File;
/// The parent's end of a worker's response pipe.
pub(in crate::exec::process) type Responses = File;

/// The parent's ends of a new worker's pipes, made non-blocking, and its I/O thread's wake-up.
pub(in crate::exec::process) fn worker_pipes(
    requests: OwnedFd,
    responses: OwnedFd,
) -> io::Result<(Requests, Responses, Wake)> {
    for fd in [&requests, &responses] {
        rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok((File::from(requests), File::from(responses), Wake::new()?))
}

/// Write as much of `slices` as the request pipe takes now (`WouldBlock` when it is full).
pub(in crate::exec::process) fn write_vectored(
    requests: &Requests,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    Ok(rustix::io::writev(requests, slices)?)
}

/// Wait until the response pipe is readable, `wake` is signalled, `requests` (when given) is
/// writable, or `timeout` passes.
pub(in crate::exec::process) fn wait(
    responses: &Responses,
    wake: &Wake,
    requests: Option<&Requests>,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let timeout = timeout.map(|left| Timespec::try_from(left).unwrap_or_default());
    let mut fds = vec![
        PollFd::new(responses, PollFlags::IN),
        PollFd::new(wake.fd(), PollFlags::IN),
    ];
    if let Some(requests) = requests {
        fds.push(PollFd::new(requests, PollFlags::OUT));
    }
    let n = rustix::event::poll(&mut fds, timeout.as_ref())?;
    Ok(Ready {
        readable: !fds[0].revents().is_empty(),
        woken: !fds[1].revents().is_empty(),
        writable: fds.get(2).is_some_and(|f| !f.revents().is_empty()),
        timed_out: n == 0,
    })
}

/// How a worker ended: "exited with status 3", "was killed by signal 11 (SIGSEGV)".
pub(in crate::exec::process) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            format!("was killed by signal {signal} ({})", signal_name(signal))
        }
        _ => format!("ended ({status})"),
    }
}

/// Whether a worker that ended with `status` was killed from outside (an operator, an OOM
/// killer), not by its own fault.
pub(in crate::exec::process) fn killed_from_outside(status: &ExitStatus) -> bool {
    matches!(
        status.signal(),
        Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT)
    )
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "another signal",
    }
}
