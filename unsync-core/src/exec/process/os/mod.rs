//! What the process pool does differently on each operating system, behind one set of names:
//! the parent's ends of a worker's pipes (`Requests`, `Responses`) and how its I/O thread waits
//! on them (`wait`, `Wake`), writing without blocking (`write_vectored`), and how a worker's
//! end reads (`describe_status`, `killed_from_outside`).
//!
//! - `unix`: non-blocking pipes and `poll`; Linux's own calls (`pipe2`, `eventfd`), or portable
//!   ones elsewhere and under `--cfg unsync_portable`;
//! - `windows`: anonymous pipes cannot be polled nor made non-blocking, so one thread per pipe
//!   does the blocking reads and writes, and the I/O thread sees them as non-blocking pipes.
//!
//! Starting a worker (`launch`), dying with the parent (`parent_death`) and the raw calls
//! (`sys`) have their own per-system code.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(super) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(super) use windows::*;

/// What [`wait`] saw.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Ready {
    /// The response pipe has bytes, or its end.
    pub(super) readable: bool,
    /// Another thread called [`Wake::signal`].
    pub(super) woken: bool,
    /// The request pipe, when asked about, has room.
    pub(super) writable: bool,
    /// The timeout passed first.
    pub(super) timed_out: bool,
}
