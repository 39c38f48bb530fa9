//! Workers die with the process that started them, however it ends (even SIGKILLed in the
//! middle of a call), so that no worker outlives its pool:
//!
//! - on Linux, `PR_SET_PDEATHSIG` (SIGKILL): set between `fork` and `exec` (in
//!   `sys::inherit_fds_and_die_with_parent`, from the supervisor thread, since it fires when
//!   the thread that forked the worker exits) and again by the worker as it starts ([`arm`]);
//! - elsewhere (and under `--cfg unsync_portable`), a thread in the worker that exits it within
//!   100 ms of being re-parented;
//! - on Windows, the Job Object the pool puts each worker in (`os::windows`), which kills it
//!   when the parent's last handle to the job closes, and a thread in the worker that waits on
//!   the parent process and exits the worker when it ends ([`arm`]);
//! - everywhere, the end of input on the worker's request pipe, once it is idle.

/// In a worker, before it serves: make it die with `parent`, the process that started it, and
/// check that `parent` is still running.
#[cfg(windows)]
pub(super) fn arm(parent: u32) -> Result<(), String> {
    use std::os::windows::io::AsHandle;

    use super::sys;

    let gone = || format!("the parent process {parent} that started this worker is gone");
    let process = sys::open_process(parent).map_err(|_| gone())?;
    if sys::process_ended(process.as_handle(), Some(0)) {
        return Err(gone());
    }
    let watch = move || {
        if sys::process_ended(process.as_handle(), None) {
            // Nobody is left to read this worker's output or answers.
            std::process::exit(0);
        }
    };
    let _ = std::thread::Builder::new()
        .name("unsync-worker-parent-watch".into())
        .spawn(watch);
    Ok(())
}

/// In a worker, before it serves: make it die with `parent`, the process that started it, and
/// check that `parent` still is its parent.
#[cfg(unix)]
pub(super) fn arm(parent: u32) -> Result<(), String> {
    die_with(parent);
    if parent_pid() != parent {
        return Err(format!(
            "the parent process {parent} that started this worker is gone"
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn die_with(parent: u32) {
    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    {
        let _ = parent;
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    #[cfg(any(not(target_os = "linux"), unsync_portable))]
    {
        if parent_pid() != parent {
            // Not (or no longer) the parent's child: `arm` says so.
            return;
        }
        let watch = move || {
            loop {
                if parent_pid() != parent {
                    // Nobody is left to read this worker's output or answers.
                    std::process::exit(0);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        };
        let _ = std::thread::Builder::new()
            .name("unsync-worker-parent-watch".into())
            .spawn(watch);
    }
}

/// The parent's pid as this process sees it now (0 without a parent).
#[cfg(unix)]
fn parent_pid() -> u32 {
    rustix::process::getppid()
        .map_or(0, |p| p.as_raw_nonzero().get())
        .try_into()
        .unwrap_or(0)
}
