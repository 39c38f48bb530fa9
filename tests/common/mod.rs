//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

/// Run `body` on its own thread and fail the test, instead of hanging CI, if it has not
/// returned within `limit`. The limit is a deadlock detector, not a performance bound: it is
/// many times what the body needs on a loaded 2-core machine.
pub fn watchdog<T: Send + 'static>(
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("watched".into())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => {
            worker.join().unwrap();
            value
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("deadlock: the test body did not finish within {limit:?}"),
    }
}

pub const LIMIT: Duration = Duration::from_secs(60);

use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};

use unsync::{Promise, Unfinished, unsync};

/// The three in-process modes of `#[unsync]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Async,
    Thread,
    Parallel,
}

pub const MODES: [Mode; 3] = [Mode::Async, Mode::Thread, Mode::Parallel];

#[unsync]
async fn gated_async<T: Send + 'static>(gate: Unfinished<()>, value: T) -> T {
    gate.await;
    value
}

#[unsync]
fn gated_thread<T: Send + 'static>(gate: Unfinished<()>, value: T) -> T {
    gate.result();
    value
}

#[unsync(parallel)]
fn gated_parallel<T: Send + 'static>(gate: Unfinished<()>, value: T) -> T {
    gate.result();
    value
}

/// A task in `mode` that returns `value` once the promise is set (and fails as cancelled if
/// the promise is dropped unset).
pub fn gated<T: Send + 'static>(mode: Mode, value: T) -> (Promise<()>, Unfinished<T>) {
    let (open, gate) = unsync::promise();
    let handle = match mode {
        Mode::Async => gated_async(gate, value),
        Mode::Thread => gated_thread(gate, value),
        Mode::Parallel => gated_parallel(gate, value),
    };
    (open, handle)
}

#[unsync]
async fn panics_async(gate: Unfinished<()>, message: String) -> u32 {
    gate.await;
    panic!("{message}")
}

#[unsync]
fn panics_thread(gate: Unfinished<()>, message: String) -> u32 {
    gate.result();
    panic!("{message}")
}

#[unsync(parallel)]
fn panics_parallel(gate: Unfinished<()>, message: String) -> u32 {
    gate.result();
    panic!("{message}")
}

/// A task in `mode` that panics with `message` once the promise is set.
pub fn gated_panic(mode: Mode, message: &str) -> (Promise<()>, Unfinished<u32>) {
    let (open, gate) = unsync::promise();
    let message = message.to_owned();
    let handle = match mode {
        Mode::Async => panics_async(gate, message),
        Mode::Thread => panics_thread(gate, message),
        Mode::Parallel => panics_parallel(gate, message),
    };
    (open, handle)
}

/// Sends on its channel when dropped: tells when a task's body (or its unrun closure) is gone.
pub struct OnDrop(pub Sender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[unsync]
async fn forever_async(started: Sender<()>, stopped: OnDrop) -> u32 {
    let _stopped = stopped;
    started.send(()).unwrap();
    std::future::pending::<()>().await;
    unreachable!()
}

#[unsync]
fn until_cancelled_thread(started: Sender<()>, stopped: OnDrop) -> u32 {
    let _stopped = stopped;
    started.send(()).unwrap();
    // The documented way for a thread task to stop early: look at the flag now and then.
    while !unsync::is_cancelled() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    1
}

#[unsync(parallel)]
fn until_cancelled_parallel(started: Sender<()>, stopped: OnDrop) -> u32 {
    let _stopped = stopped;
    started.send(()).unwrap();
    while !unsync::is_cancelled() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    1
}

/// A task in `mode` that runs until it is cancelled. It sends on `started` once running, and
/// on `stopped` once it stopped: an async task when it is dropped at its `.await`, a thread or
/// rayon task when it saw [`unsync::is_cancelled`] and returned.
pub fn until_cancelled(mode: Mode, started: Sender<()>, stopped: Sender<()>) -> Unfinished<u32> {
    let stopped = OnDrop(stopped);
    match mode {
        Mode::Async => forever_async(started, stopped),
        Mode::Thread => until_cancelled_thread(started, stopped),
        Mode::Parallel => until_cancelled_parallel(started, stopped),
    }
}

/// A count others can wait on reaching a value.
#[derive(Clone, Default)]
pub struct Counter(Arc<(Mutex<usize>, Condvar)>);

impl Counter {
    pub fn add(&self, n: usize) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap() += n;
        changed.notify_all();
    }

    pub fn get(&self) -> usize {
        *self.0.0.lock().unwrap()
    }

    /// Block until the count is at least `n`; panics after `LIMIT`.
    pub fn wait_for(&self, n: usize) {
        let (count, changed) = &*self.0;
        let (count, timeout) = changed
            .wait_timeout_while(count.lock().unwrap(), LIMIT, |c| *c < n)
            .unwrap();
        assert!(!timeout.timed_out(), "count stuck at {} < {n}", *count);
    }
}

/// A tiny seeded xorshift generator, so that random runs replay.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Run the `#[ignore]`d test `name` of this test binary in a child process, and return its
/// output (for what only a fresh process can show: stderr, process-wide settings).
pub fn run_child_test(name: &str) -> std::process::Output {
    finish_child_test(name, &mut child_test_command(name))
}

/// [`run_child_test`] with no inherited `UNSYNC_*` variable, and with `vars` set: for the
/// settings the environment alone configures.
pub fn run_child_test_with_env(name: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let mut command = child_test_command(name);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("UNSYNC_") {
            command.env_remove(var);
        }
    }
    command.envs(vars.iter().copied());
    finish_child_test(name, &mut command)
}

fn child_test_command(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

fn finish_child_test(name: &str, command: &mut std::process::Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "child test {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A misspelt name would pass, running nothing. (Not "1 passed": some children exit.)
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("running 1 test\n"),
        "child test {name} did not run: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

/// Whether process `pid` is running. A zombie has exited (only its entry remains until its
/// parent reaps it), so it counts as gone.
#[cfg(unix)]
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether process `pid` is running: it can be opened and has not exited.
#[cfg(windows)]
pub fn is_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, WAIT_TIMEOUT};
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_SYNCHRONIZE, WaitForSingleObject,
    };
    // SAFETY: `OpenProcess` has no memory preconditions.
    let process = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if process.is_null() {
        return false;
    }
    // SAFETY: `process` is a handle this function opened, waited on once, then closed.
    unsafe {
        let running = WaitForSingleObject(process, 0) == WAIT_TIMEOUT;
        CloseHandle(process);
        running
    }
}

/// Poll `/proc` until process `pid` is gone, with short waits, for at most `limit`; how long
/// it took, or `None` if it was still alive at `limit`. (Nothing notifies this process when a
/// worker it did not spawn itself dies, so polling is the way to observe it.)
pub fn wait_until_gone(pid: u32, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    loop {
        if !is_alive(pid) {
            return Some(started.elapsed());
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// This process's live (not zombie) children, of every thread.
#[cfg(unix)]
pub fn live_children() -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(list) = std::fs::read_to_string(task.unwrap().path().join("children")) else {
            continue;
        };
        pids.extend(
            list.split_whitespace()
                .map(|pid| pid.parse::<u32>().unwrap())
                .filter(|&pid| is_alive(pid)),
        );
    }
    pids
}

/// This process's live children.
#[cfg(windows)]
pub fn live_children() -> Vec<u32> {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW,
        TH32CS_SNAPPROCESS,
    };
    let mut pids = Vec::new();
    // SAFETY: a snapshot of all processes, read entry by entry into `entry` (its size set as
    // the API requires), then closed.
    unsafe {
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        let mut entry = PROCESSENTRY32W {
            dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
            ..Default::default()
        };
        let mut more = Process32FirstW(snapshot, &mut entry) != 0;
        while more {
            if entry.th32ParentProcessID == std::process::id() && is_alive(entry.th32ProcessID) {
                pids.push(entry.th32ProcessID);
            }
            more = Process32NextW(snapshot, &mut entry) != 0;
        }
        CloseHandle(snapshot);
    }
    pids
}

/// Where code in a worker process reports "I am running, in process N": worker and test share
/// no memory, but a worker can connect to a socket the test listens on. The connection also
/// tells when the worker is gone: its end closes when the process dies.
pub struct PidReports(std::net::TcpListener);

impl PidReports {
    pub fn bind() -> PidReports {
        PidReports(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// The address to give to the reporting function.
    pub fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    /// Block until a reporter connects and sends its pid; the pid and the open connection.
    pub fn next(&self) -> (u32, std::net::TcpStream) {
        use std::io::Read;
        let (mut stream, _) = self.0.accept().unwrap();
        let mut pid = [0; 4];
        stream.read_exact(&mut pid).unwrap();
        (u32::from_le_bytes(pid), stream)
    }

    /// How many reporters connected that [`next`](PidReports::next) has not taken yet.
    pub fn pending(&self) -> usize {
        self.0.set_nonblocking(true).unwrap();
        let mut count = 0;
        while self.0.accept().is_ok() {
            count += 1;
        }
        self.0.set_nonblocking(false).unwrap();
        count
    }
}

/// The worker side of [`PidReports`]: connect to `addr` and send this process's pid. Keep the
/// connection open for as long as the caller should count as running.
pub fn report_pid(addr: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(&std::process::id().to_le_bytes()).unwrap();
    stream
}

/// Block until the other end of `stream` is closed: its process died (or dropped it).
pub fn wait_for_close(mut stream: std::net::TcpStream) {
    use std::io::Read;
    let mut byte = [0];
    // A clean close reads as end of input; a kill may also reset the connection.
    match stream.read(&mut byte) {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!("the reporter sent more than its pid"),
    }
}

/// Restrict the calling thread, and every thread and process it starts from now on, to the
/// first CPU it may run on (as `taskset -c 0` would): for a child test that checks what the
/// library does on one CPU, called before anything of unsync's starts.
#[cfg(target_os = "linux")]
pub fn pin_to_one_cpu() {
    // SAFETY: a zeroed `cpu_set_t` is an empty set, and each call gets a valid pointer to one
    // and its size.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .expect("this thread may run on some CPU");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
    }
    assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
}
