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
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use super::Ready;

/// Whether this build uses the portable versions.
const PORTABLE: bool = cfg!(any(not(target_os = "linux"), unsync_portable));

/// Whether [`Wake::mute_responses`] works here.
pub(in crate::exec::process) const CAN_MUTE: bool = !PORTABLE;

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

/// Where a worker's I/O thread waits (see [`wait`]), and how other threads wake it.
///
/// Linux: an `epoll` set of the response pipe and an `eventfd`, plus the request pipe while a
/// write waits for room. A thread can take the response pipe out of the set while the I/O thread
/// waits in it ([`mute_responses`](Wake::mute_responses)), which is what lets a caller read its
/// answer itself (`pool::lead`). Elsewhere (and under `--cfg unsync_portable`): `poll` on the
/// response pipe and a wake-up pipe. All fds close on `exec`.
pub(in crate::exec::process) struct Wake {
    /// What signals a wake-up (read end of the pipe, or the `eventfd`).
    readable: OwnedFd,
    /// Where a wake-up is written.
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    writable: OwnedFd,
    /// A duplicate of the response pipe's fd, to wait on (never read from).
    responses: OwnedFd,
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    epoll: OwnedFd,
    /// Whether the response pipe is muted (see [`mute_responses`](Wake::mute_responses)); the
    /// lock makes each change and its system call one step.
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    muted: std::sync::Mutex<bool>,
    /// Whether the request pipe is in the `epoll` set (only the I/O thread changes it).
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    requests_added: std::sync::atomic::AtomicBool,
}

/// What each fd in the `epoll` set is, in its events.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
mod key {
    pub(super) const RESPONSES: u64 = 0;
    pub(super) const WAKE: u64 = 1;
    pub(super) const REQUESTS: u64 = 2;
}

impl Wake {
    /// The wait of the I/O thread that reads `responses`.
    fn new(responses: &OwnedFd) -> io::Result<Wake> {
        let responses = rustix::io::fcntl_dupfd_cloexec(responses, 0)?;
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        {
            use rustix::event::{EventfdFlags, epoll};
            let readable =
                rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            for (fd, key) in [(&responses, key::RESPONSES), (&readable, key::WAKE)] {
                let data = epoll::EventData::new_u64(key);
                epoll::add(&epoll, fd, data, epoll::EventFlags::IN)?;
            }
            Ok(Wake {
                readable,
                responses,
                epoll,
                muted: std::sync::Mutex::new(false),
                requests_added: std::sync::atomic::AtomicBool::new(false),
            })
        }
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        {
            let (readable, writable) = pipe()?;
            for fd in [&readable, &writable] {
                rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
            }
            Ok(Wake {
                readable,
                writable,
                responses,
            })
        }
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

    /// From now on, bytes on the response pipe no longer end the I/O thread's [`wait`] (its end
    /// still does), until [`unmute_responses`](Wake::unmute_responses): for a thread that reads
    /// the pipe itself meanwhile. Nothing to do if muted already; `Unsupported` unless
    /// [`CAN_MUTE`].
    pub(in crate::exec::process) fn mute_responses(&self) -> io::Result<()> {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        return self.set_muted(true);
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Undo [`mute_responses`](Wake::mute_responses); bytes already waiting end the I/O
    /// thread's wait at once. Nothing to do if not muted.
    pub(in crate::exec::process) fn unmute_responses(&self) -> io::Result<()> {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        return self.set_muted(false);
        #[cfg(any(not(target_os = "linux"), unsync_portable))]
        Ok(())
    }

    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    fn set_muted(&self, mute: bool) -> io::Result<()> {
        use rustix::event::epoll;
        let mut muted = self
            .muted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *muted != mute {
            let data = epoll::EventData::new_u64(key::RESPONSES);
            let flags = if mute {
                epoll::EventFlags::empty()
            } else {
                epoll::EventFlags::IN
            };
            epoll::modify(&self.epoll, &self.responses, data, flags)?;
            *muted = mute;
        }
        Ok(())
    }

    /// Whether the response pipe has bytes (or its end) now, or within `timeout` (`None`:
    /// however long it takes). For a thread that reads it while it is muted.
    pub(in crate::exec::process) fn responses_readable_within(
        &self,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        readable_within(&self.responses, timeout)
    }
}

/// Whether `pipe` has bytes (or its end) now, or within `timeout` (`None`: however long it
/// takes). Also for a worker's end of its request pipe, which it reads blocking.
pub(in crate::exec::process) fn readable_within(
    pipe: impl AsFd,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let timeout = timeout.map(|left| Timespec::try_from(left).unwrap_or_default());
    let mut fds = [PollFd::new(&pipe, PollFlags::IN)];
    Ok(rustix::event::poll(&mut fds, timeout.as_ref())? > 0)
}

/// The parent's end of a worker's request pipe.
pub(in crate::exec::process) type Requests = File;
/// The parent's end of a worker's response pipe.
pub(in crate::exec::process) type Responses = File;

/// The parent's ends of a new worker's pipes, made non-blocking, and its I/O thread's wait.
pub(in crate::exec::process) fn worker_pipes(
    requests: OwnedFd,
    responses: OwnedFd,
) -> io::Result<(Requests, Responses, Wake)> {
    for fd in [&requests, &responses] {
        rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
    }
    let wake = Wake::new(&responses)?;
    Ok((File::from(requests), File::from(responses), wake))
}

/// Write as much of `slices` as the request pipe takes now (`WouldBlock` when it is full).
pub(in crate::exec::process) fn write_vectored(
    requests: &Requests,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    Ok(rustix::io::writev(requests, slices)?)
}

/// Wait until the response pipe is readable (unless muted), `wake` is signalled, `requests` is
/// writable (when `want_writable`), or `timeout` passes.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
pub(in crate::exec::process) fn wait(
    wake: &Wake,
    requests: &Requests,
    want_writable: bool,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    use rustix::event::epoll;
    use std::sync::atomic::Ordering;
    if want_writable != wake.requests_added.load(Ordering::Relaxed) {
        if want_writable {
            let data = epoll::EventData::new_u64(key::REQUESTS);
            epoll::add(&wake.epoll, requests, data, epoll::EventFlags::OUT)?;
        } else {
            epoll::delete(&wake.epoll, requests)?;
        }
        wake.requests_added.store(want_writable, Ordering::Relaxed);
    }
    let timeout = timeout.map(|left| Timespec::try_from(left).unwrap_or_default());
    let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 3];
    let (events, _) = epoll::wait(&wake.epoll, &mut events, timeout.as_ref())?;
    let mut ready = Ready {
        timed_out: events.is_empty(),
        ..Ready::default()
    };
    for event in events.iter() {
        match event.data.u64() {
            key::RESPONSES => ready.readable = true,
            key::WAKE => ready.woken = true,
            _ => ready.writable = true,
        }
    }
    Ok(ready)
}

/// Wait until the response pipe is readable, `wake` is signalled, `requests` is writable (when
/// `want_writable`), or `timeout` passes.
#[cfg(any(not(target_os = "linux"), unsync_portable))]
pub(in crate::exec::process) fn wait(
    wake: &Wake,
    requests: &Requests,
    want_writable: bool,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let timeout = timeout.map(|left| Timespec::try_from(left).unwrap_or_default());
    let mut fds = vec![
        PollFd::new(&wake.responses, PollFlags::IN),
        PollFd::new(&wake.readable, PollFlags::IN),
    ];
    if want_writable {
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// A worker's pipes as the pool's I/O thread sees them, and the worker's ends: (requests,
    /// responses, wake, the worker's end of the response pipe).
    fn pipes() -> (Requests, Responses, Wake, File) {
        let (_worker_reads, requests) = pipe().unwrap();
        let (responses, worker_writes) = pipe().unwrap();
        let (requests, responses, wake) = worker_pipes(requests, responses).unwrap();
        (requests, responses, wake, File::from(worker_writes))
    }

    /// Long enough for a wait that should end to end on any machine.
    const GENEROUS: Duration = Duration::from_secs(10);

    #[test]
    fn the_wait_ends_for_an_answer_and_for_a_wake_up() {
        let (requests, _responses, wake, mut worker) = pipes();
        wake.signal();
        let ready = wait(&wake, &requests, false, Some(GENEROUS)).unwrap();
        assert!(ready.woken && !ready.readable && !ready.timed_out);
        wake.drain();
        worker.write_all(b"answer").unwrap();
        let ready = wait(&wake, &requests, false, Some(GENEROUS)).unwrap();
        assert!(ready.readable && !ready.woken);
        // Asked for, the request pipe's room ends it too.
        assert!(
            wait(&wake, &requests, true, Some(GENEROUS))
                .unwrap()
                .writable
        );
    }

    #[test]
    fn muted_answers_do_not_end_the_wait_but_the_pipes_end_does() {
        let (requests, mut responses, wake, mut worker) = pipes();
        if !CAN_MUTE {
            assert!(wake.mute_responses().is_err());
            return;
        }
        wake.mute_responses().unwrap();
        worker.write_all(b"answer").unwrap();
        // Only a wait can show that something does not happen; 100 ms cannot make this pass
        // wrongly (the bytes are there before it starts), only slow the test.
        let ready = wait(&wake, &requests, false, Some(Duration::from_millis(100))).unwrap();
        assert!(ready.timed_out && !ready.readable);
        // The thread that muted the pipe sees the answer...
        assert!(
            wake.responses_readable_within(Some(Duration::ZERO))
                .unwrap()
        );
        // ...and, unmuted, bytes already there end the I/O thread's wait at once.
        wake.unmute_responses().unwrap();
        assert!(
            wait(&wake, &requests, false, Some(GENEROUS))
                .unwrap()
                .readable
        );
        // A worker that dies while the pipe is muted is still seen.
        let mut answer = [0; 6];
        std::io::Read::read_exact(&mut responses, &mut answer).unwrap();
        wake.mute_responses().unwrap();
        drop(worker);
        assert!(
            wait(&wake, &requests, false, Some(GENEROUS))
                .unwrap()
                .readable
        );
        assert_eq!(std::io::Read::read(&mut responses, &mut answer).unwrap(), 0);
    }
}
