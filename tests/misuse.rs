//! Misuse of the worker start-up, from the outside: this test binary started by hand with
//! `UNSYNC_WORKER` set, as a stray or a mismatched worker would be.
//!
//! What it proves:
//! - a process given the worker variable with the right parent but fds that are not the
//!   pool's pipes (standard streams, `/dev/null`, closed fds) exits at once with status 2 and
//!   a message naming the problem (pipes the wrong way round, or one fd given twice,
//!   included), and never runs `main` (the test harness);
//! - a worker told a different build fingerprint than its own refuses at the handshake: one
//!   `REFUSED` frame naming both fingerprints, exit status 3, `main` never runs; told its own
//!   fingerprint, the same worker answers `HELLO` instead (so the refusal is about the
//!   mismatch, nothing else);
//! - a worker past its handshake answers a call to a function it does not have with a
//!   `FAILED` frame and keeps serving, and exits (status 4, with a message) on a frame that is
//!   not a call or is larger than its frame limit; it exits 0 when its request pipe closes.
//!
//! Not tested here: the parent-side refusal (the pool receiving a `HELLO` with another
//! fingerprint). The pool always starts `/proc/self/exe`, the very same build, so no outside
//! test can make it meet a worker of another build; a unit test inside `unsync-core` checks it
//! (`exec/process/handshake.rs`).
//!
//! Every child is started with arguments that select no test, so a child that ran `main`
//! would print the harness's `running 0 tests` on stdout (and never recurse into these
//! tests); each must end within a deadline, or it is killed and the test fails.

// Unix only: it hands a worker raw fds and inspects them (`fcntl`); the Windows start-up
// checks (a handle that is not a pipe) are unit-tested in `unsync-core`.
#![cfg(unix)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::{LIMIT, watchdog};

/// How long a misused worker may take to give up: it should be milliseconds; the margin is
/// for a loaded 2-core machine starting a debug binary.
const QUICKLY: Duration = Duration::from_secs(10);

/// Frame kinds of the worker protocol (`unsync-core/src/exec/process/protocol.rs`).
const CALL: u8 = 1;
const HELLO: u8 = 0x10;
const REFUSED: u8 = 0x11;
const FAILED: u8 = 0x14;
/// The cause byte of a `FAILED` frame for a function the worker does not have.
const NOT_REGISTERED: u8 = 1;

/// A pipe, both ends close-on-exec (so that children other tests start concurrently do not
/// inherit them): (read end, write end). Without `pipe2` (macOS), a child started between the
/// two calls could inherit the ends; no test here depends on it not.
fn pipe() -> Result<(File, File), std::io::Error> {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` and `pipe` write two fds into the array of two they are given.
    #[cfg(not(target_vendor = "apple"))]
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // SAFETY: as above.
    #[cfg(target_vendor = "apple")]
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if made != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created, open, and owned by nothing else.
    let ends = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    #[cfg(target_vendor = "apple")]
    for end in [&ends.0, &ends.1] {
        // SAFETY: `fcntl` on an fd that `end` owns and keeps open.
        if unsafe { libc::fcntl(end.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// This test binary, as a worker with `spec`, keeping `inherit` open across `exec`.
fn worker_command(spec: &str, inherit: Vec<RawFd>) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        // If the worker hook did not take over, the harness would run: make it run nothing.
        .args(["--exact", "no_test_has_this_name"])
        .env("UNSYNC_WORKER", spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before `exec` and makes only
    // async-signal-safe calls (`fcntl`) on fds that are open in the child (the parent keeps
    // them open until `spawn` returns).
    unsafe {
        command.pre_exec(move || {
            for &fd in &inherit {
                // Our fds are close-on-exec (so that children other tests start concurrently
                // do not inherit them); this child must keep these across `exec`.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command
}

/// Wait for `child` to end within `QUICKLY`; kill it and fail otherwise.
fn finish(child: Child, what: &str) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(QUICKLY) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: `kill` has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: the worker process did not exit within {QUICKLY:?}");
        }
    }
}

/// The output must show that the harness never ran: nothing on stdout at all.
fn assert_main_never_ran(output: &Output, what: &str) {
    assert!(
        output.stdout.is_empty(),
        "{what}: main ran in the worker process: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn spec(requests: RawFd, responses: RawFd, fingerprint: u64) -> String {
    format!(
        "{requests},{responses},{},{fingerprint:x},1048576,0",
        std::process::id()
    )
}

#[test]
fn a_stray_worker_with_fds_that_are_not_its_pipes_exits_quickly() {
    watchdog(LIMIT, || {
        let null = std::fs::File::open("/dev/null").unwrap();
        let null_fd = null.as_raw_fd();
        let (reader, writer) = pipe().unwrap();
        let cases: Vec<(String, Vec<RawFd>, String)> = vec![
            (
                spec(0, 1, 0),
                vec![],
                "the request fd 0 is a standard stream".into(),
            ),
            (
                spec(reader.as_raw_fd(), 2, 0),
                vec![reader.as_raw_fd()],
                "the response fd 2 is a standard stream".into(),
            ),
            (
                spec(null_fd, null_fd, 0),
                vec![null_fd],
                format!("the request and response fds are the same ({null_fd})"),
            ),
            (
                spec(null_fd, writer.as_raw_fd(), 0),
                vec![null_fd, writer.as_raw_fd()],
                format!("the request fd {null_fd} is not an open pipe"),
            ),
            (
                spec(reader.as_raw_fd(), null_fd, 0),
                vec![reader.as_raw_fd(), null_fd],
                format!("the response fd {null_fd} is not an open pipe"),
            ),
            (
                // Open in this process, but close-on-exec: closed in the worker.
                spec(reader.as_raw_fd(), writer.as_raw_fd(), 0),
                vec![],
                format!("the request fd {} is not an open pipe", reader.as_raw_fd()),
            ),
            (
                spec(900, 901, 0),
                vec![],
                "the request fd 900 is not an open pipe".into(),
            ),
        ];
        // Pipes, but the wrong ends: the worker could not read its calls or write its answers.
        let (requests, requests_writer) = pipe().unwrap();
        let (wrong_way, wrong_way_writer) = pipe().unwrap();
        let (r, w) = (requests.as_raw_fd(), wrong_way.as_raw_fd());
        let mut cases = cases;
        cases.push((
            spec(r, w, 0),
            vec![r, w],
            format!("the response fd {w} is the wrong end of its pipe (Read end)"),
        ));
        let rw = requests_writer.as_raw_fd();
        cases.push((
            spec(rw, wrong_way_writer.as_raw_fd(), 0),
            vec![rw, wrong_way_writer.as_raw_fd()],
            format!("the request fd {rw} is the wrong end of its pipe (Write end)"),
        ));
        for (spec, inherit, reason) in cases {
            let child = worker_command(&spec, inherit).spawn().unwrap();
            let output = finish(child, &spec);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "spec {spec}: {stderr}");
            assert!(stderr.contains("unsync worker:"), "spec {spec}: {stderr}");
            assert!(stderr.contains(&reason), "spec {spec}: {stderr}");
            assert!(
                stderr.contains("only unsync's process pool should do"),
                "spec {spec}: {stderr}"
            );
            assert_main_never_ran(&output, &spec);
        }
        drop((null, reader, writer));
        drop((requests, requests_writer, wrong_way, wrong_way_writer));
    });
}

/// A worker started by hand on two private pipes: write requests, read responses.
struct HandWorker {
    child: Child,
    requests: File,
    responses: File,
}

impl HandWorker {
    fn start(fingerprint: u64) -> HandWorker {
        let (child_reads, requests) = pipe().unwrap();
        let (responses, child_writes) = pipe().unwrap();
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        let child = worker_command(&spec(r, w, fingerprint), vec![r, w])
            .spawn()
            .unwrap();
        // Only the worker holds its ends now: its exit is our end of stream.
        drop((child_reads, child_writes));
        HandWorker {
            child,
            requests,
            responses,
        }
    }

    /// The next frame: its kind and fields. Blocks (under the test's watchdog).
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut prefix = [0; 4];
        if self.responses.read_exact(&mut prefix).is_err() {
            return None;
        }
        let mut body = vec![0; u32::from_le_bytes(prefix) as usize];
        self.responses.read_exact(&mut body).unwrap();
        let kind = body.remove(0);
        Some((kind, body))
    }

    fn send(&mut self, kind: u8, fields: &[u8]) {
        let len = u32::try_from(1 + fields.len()).unwrap();
        let mut frame = len.to_le_bytes().to_vec();
        frame.push(kind);
        frame.extend_from_slice(fields);
        self.requests.write_all(&frame).unwrap();
    }

    /// Read the worker's stderr and exit status, within `QUICKLY`.
    fn finish(self, what: &str) -> Output {
        drop(self.requests);
        finish(self.child, what)
    }
}

/// The worker's own fingerprint, as its refusal of a wrong one reports it.
fn fingerprint_from_refusal(reason: &str) -> u64 {
    let hex = reason
        .split("(fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no fingerprint in {reason:?}"));
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn a_worker_of_a_different_build_is_refused_at_the_handshake() {
    watchdog(LIMIT, || {
        let wrong = 0x0123_4567_89ab_cdef_u64;
        let mut worker = HandWorker::start(wrong);
        let (kind, reason) = worker.frame().expect("the worker answers the handshake");
        assert_eq!(kind, REFUSED, "first frame of a mismatched worker");
        let reason = String::from_utf8(reason).unwrap();
        assert!(
            reason.contains("different build") && reason.contains(&format!("parent {wrong:016x}")),
            "{reason}"
        );
        assert!(worker.frame().is_none(), "nothing after the refusal");
        let output = worker.finish("wrong fingerprint");
        assert_eq!(output.status.code(), Some(3), "{output:?}");
        assert_main_never_ran(&output, "wrong fingerprint");

        // Its own fingerprint (unless the guess above was it, which the refusal rules out)
        // gets a HELLO: the refusal was about the mismatch.
        let ours = fingerprint_from_refusal(&reason);
        assert_ne!(ours, wrong);
        let mut worker = HandWorker::start(ours);
        let (kind, hello) = worker.frame().expect("the worker answers the handshake");
        assert_eq!(kind, HELLO);
        assert_eq!(hello.len(), 4 + 8 + 4, "version, fingerprint, pid");
        assert_eq!(u64::from_le_bytes(hello[4..12].try_into().unwrap()), ours);
        assert_eq!(
            u32::from_le_bytes(hello[12..16].try_into().unwrap()),
            worker.child.id()
        );
        // End of its input: a worker exits cleanly.
        let output = worker.finish("right fingerprint");
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert_main_never_ran(&output, "right fingerprint");
    });
}

/// A worker past its handshake.
fn ready_worker() -> HandWorker {
    let mut probe = HandWorker::start(0);
    let (_, reason) = probe.frame().expect("a refusal");
    let ours = fingerprint_from_refusal(&String::from_utf8(reason).unwrap());
    drop(probe.finish("probe"));
    let mut worker = HandWorker::start(ours);
    assert_eq!(worker.frame().expect("a handshake").0, HELLO);
    worker
}

fn call_fields(id: u64, key: u64, args: &[u8]) -> Vec<u8> {
    let mut fields = id.to_le_bytes().to_vec();
    fields.extend_from_slice(&key.to_le_bytes());
    // The most verbose `tracing` level the parent records: none.
    fields.push(0);
    fields.extend_from_slice(args);
    fields
}

#[test]
fn a_worker_fails_unknown_calls_and_exits_on_frames_that_are_not_calls() {
    watchdog(LIMIT, || {
        // An unknown function: a FAILED frame for that call id, and the worker serves on.
        let mut worker = ready_worker();
        for id in [7_u64, 8] {
            worker.send(CALL, &call_fields(id, 0xdead_beef_dead_beef, b""));
            let (kind, fields) = worker.frame().expect("an answer");
            assert_eq!(kind, FAILED);
            assert_eq!(u64::from_le_bytes(fields[..8].try_into().unwrap()), id);
            assert_eq!(fields[8], NOT_REGISTERED, "the cause byte");
            assert!(String::from_utf8_lossy(&fields[9..]).contains("no such cpu_bound function"));
        }
        // A frame that is not a call: the worker says so and exits.
        worker.send(HELLO, &[0; 16]);
        assert!(worker.frame().is_none(), "no answer to a non-call frame");
        let output = worker.finish("non-call frame");
        assert_eq!(output.status.code(), Some(4), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("expected a call frame"));
        assert_main_never_ran(&output, "non-call frame");

        // A length over its frame limit (1 MiB here): refused before it is read, exit.
        let mut worker = ready_worker();
        worker
            .requests
            .write_all(&(64_u32 << 20).to_le_bytes())
            .unwrap();
        assert!(worker.frame().is_none(), "no answer to an oversized frame");
        let output = worker.finish("oversized frame");
        assert_eq!(output.status.code(), Some(4), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("exceeds the limit"), "{stderr}");
        assert!(output.status.signal().is_none(), "exited, not crashed");
    });
}
