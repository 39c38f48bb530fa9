//! The process pool on Windows: starting a worker, its pipes, and how its end reads.
//!
//! - **Start.** The executable (`current_exe`) again, with `UNSYNC_WORKER` naming the two pipe
//!   ends it inherits (handles are inherited by value). The ends are inheritable only while
//!   `CreateProcess` runs; a process another thread of the program starts at that very moment
//!   could inherit them too, and would then hold a worker's pipe open until it exits (the
//!   portable Unix code has the same window). The worker goes into a Job Object that kills
//!   it when the parent ends, however it ends (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`).
//! - **Pipes.** Anonymous pipes can neither be polled nor made non-blocking, so each worker
//!   has a reader thread (blocking reads into a bounded inbox) and a writer thread (blocking
//!   writes from a bounded outbox), and its I/O thread sees them through one condition
//!   variable as a non-blocking pipe pair would be seen through `poll`: the pool's promises
//!   hold (no caller ever waits on a full pipe; the writer writes what does not fit once there
//!   is room).
//! - **Exit.** A process has an exit code, never a signal: `TerminateProcess` (what the pool,
//!   `taskkill /F` and the Task Manager use) leaves 1, a crash leaves its exception code
//!   (`0xC0000005` for an access violation, `0xC0000409` for Rust's `abort`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::windows::io::{AsHandle, AsRawHandle, OwnedHandle};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::Ready;
use crate::exec::lock;
use crate::exec::process::launch::{Launched, PIPE_SIZE};
use crate::exec::process::{sys, worker};

/// Bytes held on each side between the pool and a helper thread, as a pipe's buffer would.
const BUFFERED: usize = PIPE_SIZE;
/// Bytes one blocking read takes from the response pipe.
const READ_CHUNK: usize = 64 << 10;

/// Held while a worker is started and put in the Job Object; `true` once the program exits.
static LAUNCHING: Mutex<bool> = Mutex::new(false);

/// As the program exits, before Windows ends its other threads: wait for a worker being
/// started to be in the Job Object (which then kills it with the rest), and start no other.
/// Otherwise a worker whose start the exit interrupts would outlive the program, suspended,
/// holding its stdout open. Runs when `main` returns; `std::process::exit` skips it.
pub(in crate::exec::process) fn stop_launching() {
    *lock(&LAUNCHING) = true;
}

/// Start a worker process (see the module doc).
pub(in crate::exec::process) fn launch(
    fingerprint: u64,
    max_frame: usize,
    _args: Option<&super::super::shared::ArgsArena>,
) -> io::Result<Launched> {
    let exiting = lock(&LAUNCHING);
    if *exiting {
        return Err(io::Error::other("the program is exiting"));
    }
    let pipe_size = PIPE_SIZE as u32;
    let (child_reads, requests) = sys::pipe(pipe_size)?;
    let (responses, child_writes) = sys::pipe(pipe_size)?;
    let raw = |h: &OwnedHandle| h.as_raw_handle() as usize;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(
            worker::WORKER_ENV,
            worker::spec(
                raw(&child_reads),
                raw(&child_writes),
                fingerprint,
                max_frame,
                None,
            ),
        )
        .stdin(Stdio::null());
    for end in [&child_reads, &child_writes] {
        sys::set_inheritable(end.as_handle(), true)?;
    }
    let spawned = command.spawn();
    // The parent's copies of the worker's ends: closed, so that the worker's end is the
    // parent's end of file.
    drop((child_reads, child_writes));
    let mut child = spawned?;
    if let Some(job) = job() {
        // Best effort: the worker also watches the parent itself (`parent_death`).
        let _ = sys::assign_to_job(job.as_handle(), child.as_raw_handle());
    }
    drop(exiting);
    match worker_pipes(File::from(requests), File::from(responses)) {
        Ok((requests, responses, wake)) => Ok(Launched {
            child,
            requests,
            responses,
            wake,
            results: None,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// The pool's Job Object, created once; `None` if Windows refused one.
fn job() -> Option<&'static OwnedHandle> {
    static JOB: OnceLock<Option<OwnedHandle>> = OnceLock::new();
    JOB.get_or_init(|| sys::kill_on_close_job().ok()).as_ref()
}

/// What a worker's two helper threads, its I/O thread and the pool's other threads share.
struct Shared {
    pipes: Mutex<Pipes>,
    /// Signalled on every change to `pipes`.
    changed: Condvar,
}

#[derive(Default)]
struct Pipes {
    /// Read from the response pipe, not yet taken by the I/O thread.
    inbox: VecDeque<u8>,
    /// The reader thread saw the response pipe's end (or an error, kept for the I/O thread).
    ended: bool,
    read_error: Option<io::Error>,
    /// Given by the pool, not yet taken by the writer thread.
    outbox: VecDeque<u8>,
    /// The request pipe refused a write: the worker is gone.
    write_failed: bool,
    /// [`Wake::signal`] was called since the last [`Wake::drain`].
    woken: bool,
    /// The pool dropped its end: the helper thread finishes and closes the pipe.
    requests_dropped: bool,
    responses_dropped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pipes> {
        lock(&self.pipes)
    }

    fn wait<'a>(&self, pipes: MutexGuard<'a, Pipes>) -> MutexGuard<'a, Pipes> {
        self.changed
            .wait(pipes)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The parent's end of a worker's request pipe.
pub(in crate::exec::process) struct Requests(Arc<Shared>);
/// The parent's end of a worker's response pipe.
pub(in crate::exec::process) struct Responses(Arc<Shared>);

/// How other threads wake a worker's I/O thread out of [`wait`].
pub(in crate::exec::process) struct Wake(Arc<Shared>);

/// Whether [`Wake::mute_responses`] works here: not on Windows, where the I/O thread waits on a
/// condition variable that the pipe's reader thread signals.
pub(in crate::exec::process) const CAN_MUTE: bool = false;

impl Wake {
    /// See the Unix version; `Unsupported` here ([`CAN_MUTE`]).
    pub(in crate::exec::process) fn mute_responses(&self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// See the Unix version; never muted here.
    pub(in crate::exec::process) fn unmute_responses(&self) -> io::Result<()> {
        Ok(())
    }

    /// See the Unix version; `Unsupported` here ([`CAN_MUTE`]).
    pub(in crate::exec::process) fn responses_readable_within(
        &self,
        _timeout: Option<Duration>,
    ) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Wake the I/O thread.
    pub(in crate::exec::process) fn signal(&self) {
        self.0.lock().woken = true;
        self.0.changed.notify_all();
    }

    /// Consume the wake-ups received so far.
    pub(in crate::exec::process) fn drain(&self) {
        self.0.lock().woken = false;
    }
}

/// The parent's ends of a new worker's pipes, each served by its helper thread, and its I/O
/// thread's wake-up.
fn worker_pipes(requests: File, responses: File) -> io::Result<(Requests, Responses, Wake)> {
    let shared = Arc::new(Shared {
        pipes: Mutex::new(Pipes::default()),
        changed: Condvar::new(),
    });
    let reader = shared.clone();
    std::thread::Builder::new()
        .name("unsync-process-reader".into())
        .spawn(move || read_responses(&reader, responses))?;
    let writer = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("unsync-process-writer".into())
        .spawn(move || write_requests(&writer, requests));
    let ends = (
        Requests(shared.clone()),
        Responses(shared.clone()),
        Wake(shared),
    );
    // On failure, dropping `ends` stops the reader thread.
    spawned.map(|_| ends)
}

/// The reader thread: move what the worker writes into the inbox, as long as it has room.
fn read_responses(shared: &Shared, mut pipe: File) {
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let got = pipe.read(&mut buf);
        let mut pipes = shared.lock();
        let go_on = match got {
            Ok(0) => false,
            Ok(n) => {
                while pipes.inbox.len() >= BUFFERED && !pipes.responses_dropped {
                    pipes = shared.wait(pipes);
                }
                pipes.inbox.extend(&buf[..n]);
                !pipes.responses_dropped
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                pipes.read_error = Some(e);
                false
            }
        };
        pipes.ended |= !go_on;
        drop(pipes);
        shared.changed.notify_all();
        if !go_on {
            return;
        }
    }
}

/// The writer thread: write what the pool put in the outbox, blocking while the pipe is full;
/// once the pool dropped its end and everything is written, close the pipe.
fn write_requests(shared: &Shared, mut pipe: File) {
    let mut chunk = Vec::with_capacity(BUFFERED);
    loop {
        {
            let mut pipes = shared.lock();
            while pipes.outbox.is_empty() && !pipes.requests_dropped {
                pipes = shared.wait(pipes);
            }
            if pipes.outbox.is_empty() {
                return;
            }
            chunk.clear();
            let (front, back) = pipes.outbox.as_slices();
            chunk.extend_from_slice(front);
            chunk.extend_from_slice(back);
            pipes.outbox.clear();
        }
        // The outbox has room again.
        shared.changed.notify_all();
        if pipe.write_all(&chunk).is_err() {
            let mut pipes = shared.lock();
            pipes.write_failed = true;
            pipes.outbox.clear();
            drop(pipes);
            shared.changed.notify_all();
            return;
        }
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        self.0.lock().requests_dropped = true;
        self.0.changed.notify_all();
    }
}

impl Drop for Responses {
    fn drop(&mut self) {
        self.0.lock().responses_dropped = true;
        self.0.changed.notify_all();
    }
}

impl Read for Responses {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

/// Reads what the reader thread took from the pipe: `WouldBlock` when it has nothing yet,
/// `Ok(0)` at the pipe's end.
impl Read for &Responses {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pipes = self.0.lock();
        if !pipes.inbox.is_empty() {
            let n = pipes.inbox.len().min(buf.len());
            let (front, back) = pipes.inbox.as_slices();
            let from_front = front.len().min(n);
            buf[..from_front].copy_from_slice(&front[..from_front]);
            buf[from_front..n].copy_from_slice(&back[..n - from_front]);
            pipes.inbox.drain(..n);
            drop(pipes);
            self.0.changed.notify_all();
            return Ok(n);
        }
        if let Some(error) = pipes.read_error.take() {
            return Err(error);
        }
        if pipes.ended {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Writes up to this size are taken whole or not at all, as a Unix pipe takes `PIPE_BUF`.
const ATOMIC_WRITE: usize = 4096;

/// Give the writer thread as much of `slices` as the outbox has room for (`WouldBlock` when
/// it is full, or when a write of at most [`ATOMIC_WRITE`] bytes does not fit whole).
pub(in crate::exec::process) fn write_vectored(
    requests: &Requests,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    let mut pipes = requests.0.lock();
    if pipes.write_failed {
        return Err(io::ErrorKind::BrokenPipe.into());
    }
    let room = BUFFERED.saturating_sub(pipes.outbox.len());
    let total: usize = slices.iter().map(|s| s.len()).sum();
    if total > 0 && (room == 0 || (total <= ATOMIC_WRITE && total > room)) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut written = 0;
    for slice in slices {
        let take = slice.len().min(room - written);
        pipes.outbox.extend(&slice[..take]);
        written += take;
    }
    drop(pipes);
    requests.0.changed.notify_all();
    Ok(written)
}

/// Wait until the response pipe has bytes (or its end), `wake` is signalled, `requests` has
/// room (when `want_writable`), or `timeout` passes.
pub(in crate::exec::process) fn wait(
    wake: &Wake,
    requests: &Requests,
    want_writable: bool,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    debug_assert!(Arc::ptr_eq(&requests.0, &wake.0));
    let shared = &*wake.0;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pipes = shared.lock();
    loop {
        let ready = Ready {
            readable: !pipes.inbox.is_empty() || pipes.ended,
            woken: pipes.woken,
            writable: want_writable && (pipes.outbox.len() < BUFFERED || pipes.write_failed),
            timed_out: false,
        };
        if ready.readable || ready.woken || ready.writable {
            return Ok(ready);
        }
        pipes = match deadline {
            None => shared.wait(pipes),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Ready {
                        timed_out: true,
                        ..ready
                    });
                }
                shared
                    .changed
                    .wait_timeout(pipes, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

/// How a worker ended: "exited with status 3", "crashed with exception 0xC0000005
/// (STATUS_ACCESS_VIOLATION)".
pub(in crate::exec::process) fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) if code as u32 >= 0xC000_0000 => {
            let code = code as u32;
            format!(
                "crashed with exception {code:#010X} ({})",
                exception_name(code)
            )
        }
        Some(code) => format!("exited with status {code}"),
        None => format!("ended ({status})"),
    }
}

/// Whether a worker that ended with `status` was killed from outside: exit code 1, which
/// `TerminateProcess` leaves when `taskkill /F` or the Task Manager ends a process. (A worker's
/// own start-up failures exit with 2 to 5, or crash.)
pub(in crate::exec::process) fn killed_from_outside(status: &ExitStatus) -> bool {
    status.code() == Some(1)
}

fn exception_name(code: u32) -> &'static str {
    match code {
        0xC000_0005 => "STATUS_ACCESS_VIOLATION",
        0xC000_001D => "STATUS_ILLEGAL_INSTRUCTION",
        0xC000_0094 => "STATUS_INTEGER_DIVIDE_BY_ZERO",
        0xC000_00FD => "STATUS_STACK_OVERFLOW",
        0xC000_0374 => "STATUS_HEAP_CORRUPTION",
        0xC000_0409 => "STATUS_STACK_BUFFER_OVERRUN: a fail-fast exit, as Rust's abort",
        0xC000_013A => "STATUS_CONTROL_C_EXIT",
        _ => "another exception",
    }
}
