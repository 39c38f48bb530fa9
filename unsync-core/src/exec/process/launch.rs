//! Starting one worker process: the current executable again (`/proc/self/exe` on Linux, so a
//! rebuilt or deleted binary on disk does not matter), with two private pipes on fds of their
//! own. The worker inherits the environment, the working directory, stdout and stderr (so its
//! `println!` shows up in the parent's output and never touches the protocol), but not stdin.
//!
//! Must be called from the pool's long-lived supervisor thread: `PR_SET_PDEATHSIG` (Linux)
//! fires when the thread that forked the worker exits, not the process.
//!
//! On Windows (`os::windows::launch`): the executable's path, the pipe ends passed as inherited
//! handles, and the worker put in a Job Object that kills it when the parent ends.

use std::process::Child;

use super::os;
use super::shared::ResultsReader;

/// A started worker: its process, the parent's ends of its pipes, its I/O thread's wake-up and
/// its results arena (see `shared`).
pub(crate) struct Launched {
    pub(crate) child: Child,
    pub(crate) requests: os::Requests,
    pub(crate) responses: os::Responses,
    pub(crate) wake: os::Wake,
    pub(crate) results: Option<ResultsReader>,
}

/// What the pool appends to the program's name in a worker's `argv[0]`.
pub(crate) const ARG0_SUFFIX: &str = " (unsync worker)";

/// Pipe capacity asked for: large frames cross with fewer context switches.
pub(crate) const PIPE_SIZE: usize = 1 << 20;

#[cfg(windows)]
pub(super) use os::launch;

/// Start a worker. With an arguments arena, the worker maps it (read-only) and gets a results
/// arena of its own, room for two results at the frame limit.
#[cfg(unix)]
pub(super) fn launch(
    fingerprint: u64,
    max_frame: usize,
    args: Option<&super::shared::ArgsArena>,
) -> std::io::Result<Launched> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::{sys, worker};

    let (child_reads, requests) = os::pipe()?;
    let (responses, child_writes) = os::pipe()?;
    for fd in [&requests, &responses] {
        // Best effort: the default 64 KiB works, only slower for big payloads.
        os::grow_pipe(fd, PIPE_SIZE);
    }
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unsync".into());
    let (child_in, child_out) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
    let results = args.and_then(|_| ResultsReader::create(max_frame.saturating_mul(2)));
    let arenas = args.map(|a| (a.reader_fd(), results.as_ref().map(ResultsReader::fd)));
    let mut inherited = vec![child_in, child_out];
    inherited.extend(arenas.iter().flat_map(|&(a, r)| [Some(a), r]).flatten());
    let mut command = Command::new(exe);
    command
        .arg0(format!("{name}{ARG0_SUFFIX}"))
        .env(
            worker::WORKER_ENV,
            worker::spec(child_in, child_out, fingerprint, max_frame, arenas),
        )
        .stdin(Stdio::null());
    sys::inherit_fds_and_die_with_parent(&mut command, inherited);
    let child = command.spawn()?;
    drop((child_reads, child_writes));
    let (requests, responses, wake) = os::worker_pipes(requests, responses)?;
    Ok(Launched {
        child,
        requests,
        responses,
        wake,
        results,
    })
}
