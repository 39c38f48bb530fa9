//! The crate's only `unsafe` code on Windows (`sys.rs` is the Unix one): the few Win32 calls the
//! process pool makes that std does not wrap (anonymous pipes and their inheritance, a Job
//! Object, waiting on another process, the console's Ctrl-C, the environment before `main`),
//! through `windows-sys`. Each is small and says why it is sound.

use std::ffi::OsStr;
use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle,
};
use std::ptr;

use windows_sys::Win32::Foundation::{
    FALSE, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation, TRUE,
    WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_PIPE, GetFileType};
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject,
};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::{
    INFINITE, OpenProcess, PROCESS_SYNCHRONIZE, WaitForSingleObject,
};

/// The worker start-up hook (see `worker`), run before `main` in every process linking unsync;
/// in the others, it also registers [`at_exit`].
///
/// In `.CRT$XCV`, which the C runtime runs after `.CRT$XCU`, where every `cpu_bound` function's
/// constructor registers it (see `registry`): a worker takes over with its registry complete.
#[ctor::ctor(unsafe, link_section = ".CRT$XCV")]
fn unsync_worker_hook() {
    super::worker::take_over_if_worker();
    // SAFETY: `at_exit` is a plain function that lives as long as the process.
    unsafe { libc::atexit(at_exit) };
}

/// When `main` returns (before Windows ends the other threads): let a worker being started
/// get into the pool's Job Object, and start no other (see `os::windows::stop_launching`).
extern "C" fn at_exit() {
    super::os::stop_launching();
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

/// Nothing to do: Windows has no SIGPIPE, a write to a closed pipe fails with an error.
pub(super) fn ignore_sigpipe() {}

/// Ignore the console's Ctrl-C and Ctrl-Break, which Windows sends to every process attached
/// to the console: they are meant for the program, which decides whether to stop, and a
/// worker dies with its parent anyway.
pub(super) fn ignore_terminal_signals() {
    unsafe extern "system" fn ignore(event: u32) -> windows_sys::core::BOOL {
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            TRUE
        } else {
            FALSE
        }
    }
    // SAFETY: `ignore` is a valid handler for the process's lifetime (a plain function).
    unsafe { SetConsoleCtrlHandler(Some(ignore), TRUE) };
}

fn check(ok: windows_sys::core::BOOL) -> io::Result<()> {
    if ok == FALSE {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An anonymous pipe of about `size` bytes whose ends no child inherits (until
/// [`set_inheritable`]): (read end, write end).
pub(super) fn pipe(size: u32) -> io::Result<(OwnedHandle, OwnedHandle)> {
    let (mut read, mut write): (HANDLE, HANDLE) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: both out-pointers are valid; no security attributes means not inheritable.
    check(unsafe { CreatePipe(&mut read, &mut write, ptr::null(), size) })?;
    // SAFETY: `CreatePipe` succeeded, so both are new handles that nothing else owns.
    Ok(unsafe {
        (
            OwnedHandle::from_raw_handle(read),
            OwnedHandle::from_raw_handle(write),
        )
    })
}

/// Whether child processes started from now on inherit `handle`.
pub(super) fn set_inheritable(handle: BorrowedHandle<'_>, inherit: bool) -> io::Result<()> {
    let flags = if inherit { HANDLE_FLAG_INHERIT } else { 0 };
    // SAFETY: `handle` is open for the duration of the call (borrowed).
    check(unsafe { SetHandleInformation(handle.as_raw_handle(), HANDLE_FLAG_INHERIT, flags) })
}

/// Which end of a pipe a worker expects a handle to be. Windows cannot tell an anonymous
/// pipe's ends apart, so a worker only checks that a handle is a pipe ([`is_pipe`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PipeEnd {
    Read,
    Write,
}

/// Whether `raw` is an open handle to a pipe.
pub(super) fn is_pipe(raw: usize) -> bool {
    if raw == 0 || raw as HANDLE == INVALID_HANDLE_VALUE {
        return false;
    }
    // SAFETY: `GetFileType` only queries the handle and fails on one that is not open.
    unsafe { GetFileType(raw as HANDLE) == FILE_TYPE_PIPE }
}

/// Take ownership of a handle this process inherited for its sole use.
///
/// Only for the pipe ends the pool passes to a worker: the caller has checked that `raw` is an
/// open pipe, and nothing else in the process refers to it.
pub(super) fn adopt_inherited_handle(raw: usize) -> OwnedHandle {
    // SAFETY: the caller checked that the handle is open, and the pool handed it to this
    // process for this one use, so no other owner exists.
    let handle = unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) };
    // Kept from the processes this one starts (a grandchild holding a worker's pipe would
    // hide its death).
    let _ = set_inheritable(handle.as_handle(), false);
    handle
}

/// A Job Object that kills the processes in it when its last handle closes, which is when
/// this process ends, however it ends.
pub(super) fn kill_on_close_job() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes (not inheritable) and no name.
    let job = unsafe { CreateJobObjectW(ptr::null(), ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `CreateJobObjectW` returned a new handle that nothing else owns.
    let job = unsafe { OwnedHandle::from_raw_handle(job) };
    // SAFETY: all-zero is a valid value of this plain C struct (no limits set).
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `job` is open, and the pointer and size describe `limits`, of the class's type.
    check(unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const limits).cast(),
            std::mem::size_of_val(&limits) as u32,
        )
    })?;
    Ok(job)
}

/// Put `process` in `job`.
pub(super) fn assign_to_job(job: BorrowedHandle<'_>, process: RawHandle) -> io::Result<()> {
    // SAFETY: the job is open (borrowed) and the caller holds `process` open (a `Child`'s).
    check(unsafe { AssignProcessToJobObject(job.as_raw_handle(), process) })
}

/// A handle to wait on process `pid`'s end, if it is running.
pub(super) fn open_process(pid: u32) -> io::Result<OwnedHandle> {
    // SAFETY: `OpenProcess` has no memory preconditions; the handle is not inheritable.
    let handle = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, FALSE, pid) };
    if handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `OpenProcess` returned a new handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// Whether the process behind `process` has ended, waiting for it up to `millis` ms (or
/// forever with `None`). `false` also when the wait fails.
pub(super) fn process_ended(process: BorrowedHandle<'_>, millis: Option<u32>) -> bool {
    // SAFETY: the handle is open for the duration of the call (borrowed).
    let waited =
        unsafe { WaitForSingleObject(process.as_raw_handle(), millis.unwrap_or(INFINITE)) };
    waited == WAIT_OBJECT_0
}
