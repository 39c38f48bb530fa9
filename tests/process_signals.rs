//! Worker processes as the operating system sees them: a Ctrl-C meant for the program does not
//! kill its workers mid-call, and a worker is named after its program.

// Unix only: signals and process groups. Windows has no signals; the console's Ctrl-C is
// ignored by workers through `SetConsoleCtrlHandler` (see the user guide's Platforms section).
#![cfg(unix)]

use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use unsync::unsync;

mod common;
use common::{LIMIT, PidReports, report_pid, watchdog};

const CALLS: u64 = 4;
const REPORT_ENV: &str = "PROCESS_SIGNALS_REPORT_TO";

/// Reports to `addr` that it runs, then waits for the test to send one byte; returns `n * 10`.
#[unsync(cpu_bound)]
fn waits_for_go(addr: String, n: u64) -> u64 {
    let mut connection = report_pid(&addr);
    let mut go = [0];
    connection.read_exact(&mut go).expect("the test says go");
    n * 10
}

#[unsync(cpu_bound)]
fn pid() -> u32 {
    std::process::id()
}

/// The terminal's Ctrl-C: SIGINT to the whole foreground process group, the program and its
/// workers alike. The program (a child process in its own group, with a SIGINT handler, as a
/// server doing graceful shutdown has) has four `cpu_bound` calls running when the signal
/// comes; each still returns its value.
#[test]
fn sigint_to_the_process_group_spares_the_calls_in_flight() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let program = program_in_its_own_group("child_runs_calls_through_a_sigint", &reports)
            .env("UNSYNC_PROCESSES", CALLS.to_string())
            .spawn()
            .unwrap();
        // Every call is running in a worker once it has reported.
        let mut running: Vec<_> = (0..CALLS).map(|_| reports.next().1).collect();
        let group = -i32::try_from(program.id()).unwrap();
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        assert_eq!(unsafe { libc::kill(group, libc::SIGINT) }, 0);
        for connection in &mut running {
            // A worker killed by the signal has closed its end; the call would then fail.
            let _ = connection.write_all(&[1]);
        }
        let output = program.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the program lost calls to the SIGINT: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// This test binary running only the ignored test `child`, as a program in a process group of
/// its own (as a terminal's foreground job is), reporting to `reports`.
fn program_in_its_own_group(child: &str, reports: &PidReports) -> Command {
    let mut program = Command::new(std::env::current_exe().unwrap());
    program
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REPORT_ENV, reports.addr());
    std::os::unix::process::CommandExt::process_group(&mut program, 0);
    program
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[test]
#[ignore = "run by sigint_to_the_process_group_spares_the_calls_in_flight in its own process group"]
fn child_runs_calls_through_a_sigint() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    let addr = std::env::var(REPORT_ENV).unwrap();
    let calls: Vec<_> = (0..CALLS).map(|n| waits_for_go(addr.clone(), n)).collect();
    let values: Vec<u64> = calls.into_iter().map(|call| call.result()).collect();
    assert_eq!(values, (0..CALLS).map(|n| n * 10).collect::<Vec<_>>());
    // The signal reached the program itself: its handler ran (it may run a little after the
    // calls returned, on whichever thread the kernel picks).
    let deadline = Instant::now() + LIMIT;
    while !INTERRUPTED.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the program never saw its SIGINT"
        );
        std::thread::yield_now();
    }
}

/// `ps`, `top` and `pgrep <program>` show a worker as `<program>-worker` (the kernel keeps 15
/// bytes of a process name).
#[test]
fn a_worker_is_named_after_its_program() {
    watchdog(LIMIT, || {
        let worker = pid().result();
        let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap();
        let exe = std::env::current_exe().unwrap();
        let program = exe.file_name().unwrap().to_string_lossy();
        let expected = format!("{}-worker", &program[..program.len().min(8)]);
        assert_eq!(comm.trim_end(), expected);
    });
}

/// The workers still die with the program when the program dies of the signal it ignores in
/// them (no handler of its own).
#[test]
fn a_program_killed_by_sigint_takes_its_workers_along() {
    watchdog(LIMIT, || {
        let reports = PidReports::bind();
        let mut program = program_in_its_own_group("child_waits_on_a_call", &reports)
            .spawn()
            .unwrap();
        let (worker, connection) = reports.next();
        let group = -i32::try_from(program.id()).unwrap();
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        assert_eq!(unsafe { libc::kill(group, libc::SIGINT) }, 0);
        let status = program.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGINT)
        );
        common::wait_for_close(connection);
        assert!(
            common::wait_until_gone(worker, Duration::from_secs(30)).is_some(),
            "worker {worker} outlived its program"
        );
    });
}

#[test]
#[ignore = "run by a_program_killed_by_sigint_takes_its_workers_along in its own process group"]
fn child_waits_on_a_call() {
    let addr = std::env::var(REPORT_ENV).unwrap();
    waits_for_go(addr, 1).result();
}
