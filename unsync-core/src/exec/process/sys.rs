//! The crate's only `unsafe` code: the few operating-system calls the process pool makes that
//! have no safe wrapper (raw inherited fds, the environment before `main`, a signal
//! disposition, a hook between `fork` and `exec`, shared memory mappings). Each is small and says why it is sound;
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

/// Take ownership of an fd this process inherited for its sole use, and keep it from the
/// processes this one starts (a grandchild holding a worker's pipe would hide its death).
///
/// Only for the fds the pool passes to a worker: the caller has checked that `fd` is open,
/// and nothing else in the process refers to it.
pub(super) fn adopt_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller checked that `fd` is open, and the pool handed it to this process for
    // this one use, so no other owner exists.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    fd
}

/// Between `fork` and `exec` of `command`: let the child inherit `fds` (clear their
/// close-on-exec flag) and, on Linux, have it killed when the thread that spawns it exits.
///
/// The fds must stay open in the parent until `command` has been spawned.
pub(super) fn inherit_fds_and_die_with_parent(command: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before `exec` and makes only
    // async-signal-safe system calls (`fcntl`, `prctl`) on fds that stay open until `exec`.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
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

/// Whether `fd` is an open memfd that no one can shrink (the pool's shared memory).
#[cfg(all(target_os = "linux", not(unsync_portable)))]
pub(super) fn is_sealed_memfd(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is not -1, and it is borrowed only for the `fcntl` below, which fails on a
    // closed fd or one that is not a memfd.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fcntl_get_seals(borrowed)
        .is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::SHRINK))
}

/// A `MAP_SHARED` mapping of a whole memfd (Linux), which other processes map too: it is only
/// ever read or written by copying, through raw pointers, never through references (another
/// process may write it at any time), at offsets checked against its length.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
pub(super) struct Mapping {
    base: std::ptr::NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain memory that lives until `drop`; every access copies through raw
// pointers at checked offsets, which is as sound from any thread as from the one that mapped it.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`; no method hands out a reference into the mapping except
// `counter`'s atomic, which is made for sharing.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
unsafe impl Sync for Mapping {}

#[cfg(all(target_os = "linux", not(unsync_portable)))]
impl Mapping {
    /// Map the first `len` bytes of `fd` (a memfd sealed against shrinking, so no page of the
    /// mapping can vanish under a reader and raise `SIGBUS`).
    pub(super) fn new(fd: BorrowedFd<'_>, len: usize, writable: bool) -> std::io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        let protection = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new mapping at an address the kernel picks (null hint), so it overlaps no
        // existing Rust object; it is unmapped only by `drop`.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                protection,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        let base = std::ptr::NonNull::new(base.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null address"))?;
        Ok(Mapping {
            base,
            len,
            writable,
        })
    }

    /// Copy `bytes` to `offset`; `false` (and nothing written) when they do not fit or the
    /// mapping is read-only.
    pub(super) fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if !self.writable
            || offset
                .checked_add(bytes.len())
                .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: `offset + bytes.len() <= len` (checked above), so the destination lies in
        // the writable mapping, which `bytes` (private memory) cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.as_ptr().add(offset),
                bytes.len(),
            );
        }
        true
    }

    /// The `len` bytes at `offset` as a vector of `E`, or `None` when they do not lie in the
    /// mapping or are not a whole number of `E`s. The vector is `reuse` when that has room
    /// for them (its pages are already allocated), a new one otherwise.
    ///
    /// Another process may be writing those bytes meanwhile (a broken worker): the copy then
    /// holds garbage, which any bit pattern of a `Pod` type is allowed to be.
    pub(super) fn read_vec<E: bytemuck::Pod>(
        &self,
        offset: usize,
        len: usize,
        reuse: Option<Vec<E>>,
    ) -> Option<Vec<E>> {
        let size = std::mem::size_of::<E>();
        if size == 0 || len % size != 0 || offset.checked_add(len)? > self.len {
            return None;
        }
        let mut out = match reuse {
            Some(mut spare) if spare.capacity() >= len / size => {
                spare.clear();
                spare
            }
            _ => {
                let mut fresh = Vec::<E>::with_capacity(len / size);
                ask_for_huge_pages(fresh.as_mut_ptr().cast(), len);
                fresh
            }
        };
        // SAFETY: the source lies in the mapping (checked above); the destination is the
        // vector's spare capacity, at least `len` bytes (`len / size` elements); they cannot
        // overlap. Every bit pattern is a valid `E` (`Pod`), so the elements are initialised
        // once copied, whatever the bytes were.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(offset),
                out.as_mut_ptr().cast::<u8>(),
                len,
            );
            out.set_len(len / size);
        }
        Some(out)
    }

    /// The `u64` counter at offset 0, shared with the other processes that map this memory.
    pub(super) fn counter(&self) -> &std::sync::atomic::AtomicU64 {
        assert!(self.len >= 8);
        // SAFETY: the mapping is page-aligned and at least 8 bytes long (asserted), it lives
        // as long as `&self`, and those 8 bytes are only ever accessed atomically, by this
        // process through this method and by the others through theirs.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().cast::<u64>()) }
    }
}

#[cfg(all(target_os = "linux", not(unsync_portable)))]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is this mapping, which nothing refers to once it drops
        // (`counter`'s borrows end with `&self`).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Ask the kernel to back the fresh allocation at `start..start + len` with huge pages when it
/// is large (transparent huge pages in `madvise` mode, the common default): a 64 MiB result
/// then takes 32 page faults instead of 16384. Advice only: it changes no byte.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
fn ask_for_huge_pages(start: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    if len < 4 << 20 {
        return;
    }
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize + len) / PAGE * PAGE;
    // SAFETY: `MADV_HUGEPAGE` is advice about how to back the pages of a range this process
    // owns (inside the allocation, page-aligned); it changes no memory contents and fails
    // harmlessly where transparent huge pages are unavailable.
    let _ = unsafe {
        rustix::mm::madvise(
            first as *mut std::ffi::c_void,
            end - first,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}
