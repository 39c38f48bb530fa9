//! The worker side: a process started by the pool with `UNSYNC_WORKER` set takes over before
//! `main` (a `ctor` hook, or [`init`] where constructors do not run), answers the handshake,
//! then runs calls one after another until its parent closes the pipe.
//!
//! In every other process the hook costs one environment lookup and one store.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::protocol::{self, Failure, FrameReader, Message, ProtocolError};
use super::{handshake, launch, parent_death, registry, shared, sys, worker_stream};
use crate::handle::wait;

/// Set by the pool in a worker's environment: `<request fd>,<response fd>,<parent pid>,<fingerprint hex>,<max frame>,<spin µs>`,
/// then, with shared memory, `,<arguments arena fd>,<results arena fd, or ->` (see `shared`).
pub(crate) const WORKER_ENV: &str = "UNSYNC_WORKER";

/// Whether the start-up hook (or [`init`]) ran in this process. The pool checks it before
/// starting workers: if the linker dropped the hook, workers would run `main` instead.
static HOOK_RAN: AtomicBool = AtomicBool::new(false);

/// Whether this process is a worker (nested `cpu_bound` calls then run inline).
static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// The explicit start-up hook, for set-ups where life-before-main constructors do not run (some
/// static-library and LTO builds): call it first thing in `main`. In a worker process it never
/// returns; everywhere else it returns at once. Calling it when the constructor already ran is
/// harmless.
///
/// ```
/// unsync::init(); // first thing in `main`
/// ```
pub fn init() {
    take_over_if_worker();
}

pub(super) fn take_over_if_worker() {
    HOOK_RAN.store(true, Ordering::Release);
    if let Some(spec) = std::env::var_os(WORKER_ENV) {
        become_worker(&spec);
    }
    if let Some(mode) = std::env::var_os(crate::exec::remote::SERVE_ENV) {
        // Still before any thread: the worker processes this server starts must not serve too.
        sys::remove_env_var_before_threads(crate::exec::remote::SERVE_ENV);
        crate::exec::remote::serve_from_hook(&mode);
    }
}

pub(crate) fn hook_ran() -> bool {
    HOOK_RAN.load(Ordering::Acquire)
}

/// Whether the current process is a worker.
pub fn in_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

/// Run a `cpu_bound` body here, in this process (a nested call inside a worker).
pub fn run_inline<T: Send + 'static>(
    task: &'static str,
    body: impl FnOnce() -> T,
) -> crate::Unfinished<T> {
    let cell = crate::handle::completion::Completion::pending(task);
    let carried = crate::exec::context::Carried::capture(task);
    let mode = crate::exec::stats::Mode::Process;
    crate::exec::stats::submitted(mode);
    crate::exec::task::run(&cell, &carried, mode, crate::exec::stats::stamp(), body);
    crate::Unfinished::from_cell(cell)
}

fn become_worker(spec: &OsStr) -> ! {
    // This runs before `main` (or first thing in it), before this process starts any thread.
    // Removing the variable keeps processes this worker starts from becoming workers themselves.
    sys::remove_env_var_before_threads(WORKER_ENV);
    // std ignores SIGPIPE only once `main` is entered; a worker whose parent went away must
    // get EPIPE from `write`, not die silently.
    sys::ignore_sigpipe();
    // A Ctrl-C reaches the whole process group: the parent decides (say, a graceful shutdown
    // that lets the calls in flight finish), and the worker goes when the parent goes.
    sys::ignore_terminal_signals();
    name_this_process();
    let code = match WorkerSpec::parse(spec) {
        Err(reason) => {
            eprintln!(
                "unsync worker: {reason}. This process was started with {WORKER_ENV} set, which only unsync's process pool should do; exiting."
            );
            2
        }
        Ok(spec) => {
            IN_WORKER.store(true, Ordering::Relaxed);
            // The parent's spin: a worker waits for its next call as the parent's callers wait
            // for answers (see `wait_for_request`). The rest as the parent resolved it too,
            // from the same environment.
            let spin = std::time::Duration::from_micros(u64::from(spec.spin_micros));
            let _ = crate::Config::new().spin(spin).install();
            crate::exec::panic_site::install();
            crate::exec::panic_site::capture_backtraces();
            super::worker_log::install();
            // Serve on a thread std set up itself (name, stack guard), not in the constructor.
            let served = std::thread::Builder::new()
                .name("unsync-worker".into())
                .spawn(move || serve(spec));
            match served.map(|t| t.join()) {
                Ok(Ok(code)) => code,
                _ => 5,
            }
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// Name the worker after its program, `<program>-worker` (the kernel keeps 15 bytes), so that
/// `ps`, `top` and `pgrep <program>` show which program it belongs to. Linux only: elsewhere
/// `ps` shows the `argv[0]` the pool gave it, `<program> (unsync worker)`.
fn name_this_process() {
    #[cfg(target_os = "linux")]
    if let Some(name) = process_name(std::env::args_os().next().as_deref()) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// `<program>-worker` from the worker's `argv[0]` (`<program> (unsync worker)`), the program
/// cut so that the whole fits the kernel's 15 bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn process_name(arg0: Option<&OsStr>) -> Option<std::ffi::CString> {
    const KEPT: usize = 15;
    const SUFFIX: &str = "-worker";
    let arg0 = arg0?.to_string_lossy();
    let program = arg0.strip_suffix(launch::ARG0_SUFFIX)?;
    let mut cut = program.len().min(KEPT - SUFFIX.len());
    while !program.is_char_boundary(cut) {
        cut -= 1;
    }
    std::ffi::CString::new(format!("{}{SUFFIX}", &program[..cut])).ok()
}

/// A pipe end as the spec names it: an fd, or on Windows a handle's value.
#[cfg(unix)]
type RawFd = std::os::fd::RawFd;
#[cfg(windows)]
type RawFd = usize;

struct WorkerSpec {
    requests: File,
    responses: File,
    fingerprint: u64,
    max_frame: usize,
    spin_micros: u32,
    arenas: shared::WorkerArenas,
}

impl WorkerSpec {
    fn parse(spec: &OsStr) -> Result<WorkerSpec, String> {
        let text = spec.to_str().ok_or("malformed worker spec")?;
        let fields: Vec<&str> = text.split(',').collect();
        let (&[requests, responses, parent, fingerprint, max_frame, spin], arenas) =
            fields.split_at(fields.len().min(6))
        else {
            return Err(format!("malformed worker spec {text:?}"));
        };
        let arenas = match arenas {
            [] => None,
            &[args, results] => Some((args, results)),
            _ => return Err(format!("malformed worker spec {text:?}")),
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("malformed worker spec {text:?}"))
        };
        let parent = number(parent)?;
        let fingerprint = u64::from_str_radix(fingerprint, 16)
            .map_err(|_| format!("malformed worker spec {text:?}"))?;
        let max_frame = number(max_frame)? as usize;
        let spin_micros =
            u32::try_from(number(spin)?).map_err(|_| format!("malformed worker spec {text:?}"))?;
        let parent =
            u32::try_from(parent).map_err(|_| format!("malformed worker spec {text:?}"))?;
        parent_death::arm(parent)?;
        let fd = |text: &str, which: &str| {
            text.parse::<RawFd>()
                .map_err(|_| format!("malformed {which} fd {text:?}"))
        };
        let (requests, responses) = (fd(requests, "request")?, fd(responses, "response")?);
        if requests == responses {
            // Two owners of one fd would close it twice.
            return Err(format!(
                "the request and response fds are the same ({requests})"
            ));
        }
        let requests = pipe_fd(requests, "request", sys::PipeEnd::Read)?;
        let responses = pipe_fd(responses, "response", sys::PipeEnd::Write)?;
        let arenas = match arenas {
            #[cfg(unix)]
            Some((args, results)) => {
                let region = |text: &str, which: &str, writable: bool| match text {
                    "-" => Ok(None),
                    _ => shared::Region::inherit(fd(text, which)?, writable).map(Some),
                };
                shared::WorkerArenas::new(
                    region(args, "arguments arena", false)?,
                    region(results, "results arena", true)?,
                )
            }
            _ => shared::WorkerArenas::default(),
        };
        Ok(WorkerSpec {
            requests,
            responses,
            fingerprint,
            max_frame,
            spin_micros,
            arenas,
        })
    }
}

/// Take ownership of an inherited pipe end, after checking that it is one, the right one.
#[cfg(unix)]
fn pipe_fd(fd: RawFd, which: &str, end: sys::PipeEnd) -> Result<File, String> {
    if fd < 3 {
        return Err(format!("the {which} fd {fd} is a standard stream"));
    }
    match sys::pipe_end(fd) {
        None => return Err(format!("the {which} fd {fd} is not an open pipe")),
        Some(actual) if actual != end => {
            return Err(format!(
                "the {which} fd {fd} is the wrong end of its pipe ({actual:?} end)"
            ));
        }
        Some(_) => {}
    }
    // The pool passed this fd to this process for its sole use, it is open (checked above),
    // and nothing else in this process refers to it.
    Ok(File::from(sys::adopt_inherited_fd(fd)))
}

/// Take ownership of an inherited pipe handle, after checking that it is one (Windows cannot
/// tell which end).
#[cfg(windows)]
fn pipe_fd(handle: RawFd, which: &str, _end: sys::PipeEnd) -> Result<File, String> {
    if !sys::is_pipe(handle) {
        return Err(format!("the {which} handle {handle} is not an open pipe"));
    }
    // The pool passed this handle to this process for its sole use, it is an open pipe
    // (checked above), and nothing else in this process refers to it.
    Ok(File::from(sys::adopt_inherited_handle(handle)))
}

fn serve(spec: WorkerSpec) -> i32 {
    shared::install_worker_arenas(spec.arenas);
    let mut requests = FrameReader::new(spec.requests, spec.max_frame);
    // Shared with the thread that sends a running call's `tracing` records (`worker_log`).
    let shared = Arc::new(Mutex::new(BufWriter::with_capacity(
        64 << 10,
        spec.responses,
    )));
    let responses = || crate::exec::lock(&shared);
    let mut frame = Vec::with_capacity(1024);
    let greeted = handshake::greet(spec.fingerprint, &mut frame);
    let sent = {
        let mut out = responses();
        out.write_all(&frame).and_then(|()| out.flush())
    };
    if !greeted {
        return 3;
    }
    if sent.is_err() {
        return 0;
    }
    if let Err(e) = super::worker_log::flush_while_calls_run(shared.clone()) {
        eprintln!(
            "unsync worker {}: cannot start its log thread: {e}; exiting",
            std::process::id()
        );
        return 4;
    }
    // Whether the last call's caller waits spinning (`protocol::SPIN_AFTER`).
    let mut spin_after = false;
    loop {
        let waited = if requests.has_frame() {
            None
        } else {
            if responses().flush().is_err() {
                return 0;
            }
            if spin_after {
                wait_for_request(&requests)
            } else {
                None
            }
        };
        let body = match requests.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("unsync worker {}: {e}; exiting", std::process::id());
                return 4;
            }
        };
        if let Some(waited) = waited {
            wait::record_wait(waited);
        }
        match Message::decode(body) {
            // Credit for a stream that has ended.
            Ok(Message::Credit { .. }) => continue,
            Ok(Message::Stream {
                id,
                key,
                level,
                credit,
                args,
            }) => {
                let args = args.to_vec();
                let mut responses = responses();
                if responses.flush().is_err() {
                    return 0;
                }
                let request = worker_stream::Request {
                    id,
                    key,
                    level,
                    credit,
                    args: &args,
                };
                match worker_stream::serve_stream(
                    &mut requests,
                    &mut *responses,
                    request,
                    spec.max_frame,
                ) {
                    Ok(()) => continue,
                    Err(worker_stream::Stop::ParentGone) => return 0,
                    Err(worker_stream::Stop::Broken(e)) => {
                        eprintln!("unsync worker {}: {e}; exiting", std::process::id());
                        return 4;
                    }
                }
            }
            Ok(Message::Call { level, .. }) => spin_after = level & protocol::SPIN_AFTER != 0,
            _ => {}
        }
        frame.clear();
        if let Err(e) = handle_request(body, &mut frame, spec.max_frame) {
            eprintln!("unsync worker {}: {e}; exiting", std::process::id());
            return 4;
        }
        if responses().write_all(&frame).is_err() {
            return 0;
        }
    }
}

/// Before blocking on the pipe for the parent's next call, spin while the next call may come
/// soon, as a caller blocked on an answer does (`handle::wait::spin_until`: the spin adapts,
/// and shrinks to nothing when calls come seldom): a lone call then finds its worker awake on
/// another CPU instead of waking it (tens of µs on an idle VM). Only after a call whose caller
/// waits spinning itself (`protocol::SPIN_AFTER`): a caller that leads at once shares its CPU
/// with the worker, which would then spin on the CPU the caller needs. `None` when a call came
/// while it spun; otherwise the wait, to record once the call is read. Unix only: elsewhere a
/// worker blocks at once.
#[cfg(unix)]
fn wait_for_request(requests: &FrameReader<File>) -> Option<wait::Waited> {
    // A failed poll ends the spin: the blocking read that follows sees why.
    wait::spin_until(false, || {
        super::os::readable_within(requests.source(), Some(std::time::Duration::ZERO))
            .unwrap_or(true)
    })
}

#[cfg(not(unix))]
fn wait_for_request(_: &FrameReader<File>) -> Option<wait::Waited> {
    None
}

/// Run one request (a frame body) and append the answer frame to `out`: `RETURNED`; or
/// `PANICKED`; or `FAILED` for an unknown function, arguments that do not decode or a result
/// that does not encode; or `OVERSIZED` for a result whose frame body would exceed
/// `max_frame` bytes. Whatever the bytes and whatever the function does, this does not panic.
///
/// An error is a frame that is not a call: the parent never sends one, so the pipe is out of
/// step and the worker must exit (the parent replaces it). `out` is then left as it was.
pub(crate) fn handle_request(
    body: &[u8],
    out: &mut Vec<u8>,
    max_frame: usize,
) -> Result<(), ProtocolError> {
    let Message::Call {
        id,
        key,
        level,
        args,
    } = Message::decode(body)?
    else {
        return Err(ProtocolError::Malformed("expected a call frame"));
    };
    // What the body records goes out before the answer (see `worker_log`).
    let records_at = out.len();
    super::worker_log::begin(id, level & protocol::LEVEL);
    answer(
        id,
        key,
        args,
        level & protocol::SHARE_ANSWER != 0,
        out,
        max_frame,
    );
    let records = super::worker_log::end();
    if !records.is_empty() {
        out.splice(records_at..records_at, records);
    }
    Ok(())
}

/// Append the answer to call `id` of function `key` (see [`handle_request`]); its result's
/// large blocks may go into the results arena when `may_share`.
fn answer(id: u64, key: u64, args: &[u8], may_share: bool, out: &mut Vec<u8>, max_frame: usize) {
    let Some(function) = registry::lookup(key) else {
        Message::Failed {
            id,
            failure: Failure::NotRegistered,
            message: "no such cpu_bound function in the worker",
        }
        .encode(out);
        return;
    };
    let start = out.len();
    let (ran, answered) = shared::answering(may_share, || {
        catch_unwind(AssertUnwindSafe(|| {
            protocol::encode_returned(out, id, |out| (function.shim)(args, out))
        }))
    });
    match ran {
        Ok(Ok(())) => {
            let bytes = out.len() - start - protocol::PREFIX + answered.shared_bytes;
            if answered.shared_bytes > 0 && bytes <= max_frame {
                protocol::mark_shared(out, start);
                shared::sent_shared_answer();
            }
            if bytes > max_frame {
                // The parent would refuse the frame as a broken worker's: say why instead.
                out.truncate(start);
                Message::Oversized {
                    id,
                    bytes: bytes as u64,
                }
                .encode(out);
            }
        }
        // `encode_returned` took back what it had appended.
        Ok(Err(codec)) => Message::Failed {
            id,
            failure: if codec.is_decoding() {
                Failure::Arguments
            } else {
                Failure::Result
            },
            message: &codec.to_string(),
        }
        .encode(out),
        Err(panic) => {
            out.truncate(start);
            encode_panic(id, panic, out);
        }
    }
}

/// Append the `PANICKED` answer to call `id` for `panic`, with the panic's site if it was
/// recorded, and drop the payload.
pub(super) fn encode_panic(id: u64, panic: Box<dyn std::any::Any + Send>, out: &mut Vec<u8>) {
    let message = crate::error::panic_message(&*panic);
    let site = crate::exec::panic_site::take();
    // A payload whose `drop` panics would otherwise unwind out of here.
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(panic))) {
        std::mem::forget(again);
    }
    Message::Panicked {
        id,
        message: &message,
        location: site.as_ref().map_or("", |s| s.location()),
        backtrace: site.as_ref().and_then(|s| s.backtrace()).unwrap_or(""),
    }
    .encode(out);
}

/// The spec a worker is started with.
/// The spec a worker is started with; `arenas`: the fds of the arguments arena and of the
/// worker's results arena (see `shared`), when there are.
pub(crate) fn spec(
    requests: RawFd,
    responses: RawFd,
    fingerprint: u64,
    max_frame: usize,
    arenas: Option<(RawFd, Option<RawFd>)>,
) -> OsString {
    let mut spec = format!(
        "{requests},{responses},{},{fingerprint:x},{max_frame},{}",
        std::process::id(),
        crate::config::settings().spin_micros,
    );
    if let Some((args, results)) = arenas {
        let results = results.map_or("-".into(), |fd| fd.to_string());
        spec += &format!(",{args},{results}");
    }
    spec.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(arg0: &str) -> Option<String> {
        process_name(Some(OsStr::new(arg0))).map(|n| n.into_string().unwrap())
    }

    #[test]
    fn a_worker_is_named_after_its_program_within_fifteen_bytes() {
        assert_eq!(
            name("webapp (unsync worker)").as_deref(),
            Some("webapp-worker")
        );
        assert_eq!(
            name("process_single_worker-0123abcd (unsync worker)").as_deref(),
            Some("process_-worker")
        );
        assert_eq!(
            name("çàéèùëüïö (unsync worker)").as_deref(),
            Some("çàéè-worker")
        );
        assert_eq!(name("started by hand"), None);
    }
}
