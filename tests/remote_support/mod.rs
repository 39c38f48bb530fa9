//! What the remote tests share: the dev server's address (`UNSYNC_TEST_TEMPORAL`, set by
//! `scripts/test-remote.sh`), this process configured to send `remote` calls there, serving
//! processes started from this test executable, and calls that report where they run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The heartbeat timeout of the tests' calls: short, so that a killed worker is noticed fast.
pub const HEARTBEAT: Duration = Duration::from_millis(1000);

/// `temporal://127.0.0.1:PORT/default` of the dev server the script started.
pub fn address() -> String {
    std::env::var("UNSYNC_TEST_TEMPORAL").expect(
        "UNSYNC_TEST_TEMPORAL is not set: run the remote tests with `bash scripts/test-remote.sh`, which starts a Temporal dev server",
    )
}

/// Configure this process once (its calls go to the dev server), and run the tests of this
/// binary one at a time: every serving process of this build polls the same task queue, so two
/// tests' servers would take each other's calls.
pub fn setup() -> MutexGuard<'static, ()> {
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    CONFIGURED.get_or_init(|| {
        let cluster = unsync::Remote::new(&address())
            .unwrap()
            .heartbeat(HEARTBEAT);
        unsync::Config::new()
            .remote(cluster)
            .install()
            .expect("the remote tests configure unsync before any task");
    });
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A serving process: this test executable started with `UNSYNC_SERVE=remote`, with
/// `processes` worker processes. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// What it printed on stderr, line by line (read on a thread of its own).
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Server {
    pub fn start(processes: usize) -> Server {
        Server::start_exe(&std::env::current_exe().unwrap(), processes)
    }

    /// A server from another executable (another build).
    pub fn start_exe(exe: &std::path::Path, processes: usize) -> Server {
        let mut child = Command::new(exe)
            .env("UNSYNC_SERVE", "remote")
            .env("UNSYNC_REMOTE", address())
            .env("UNSYNC_PROCESSES", processes.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    // Nobody reads any more: keep draining so the server never blocks on stderr.
                }
            }
        });
        let server = Server { child, lines };
        server.wait_for_line("serving task queue");
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Block until the server prints a line containing `text`; the line.
    pub fn wait_for_line(&self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(super::common::LIMIT) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("the server never printed {text:?}: {e}"),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test started and has not reaped.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Wait for the server's exit, at most `LIMIT`.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + super::common::LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit"
            );
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(5));
            }
        }
    }
}

/// Where running calls report: each connects, sends its worker process's pid and the pid of
/// the serving process above it, then runs until the test releases it (drops the connection).
pub struct Reports(TcpListener);

/// One running call, as reported.
pub struct Running {
    /// The worker process running the body.
    pub pid: u32,
    /// The serving process that took the call.
    pub server: u32,
    stream: TcpStream,
}

impl Running {
    /// Let the call return.
    pub fn release(self) {
        drop(self.stream);
    }
}

impl Reports {
    pub fn bind() -> Reports {
        Reports(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    /// Block until a call reports (at most `LIMIT`).
    pub fn next(&self) -> Running {
        self.0.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + super::common::LIMIT;
        let (mut stream, _) = loop {
            match self.0.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no call reported within {:?}",
                        super::common::LIMIT
                    );
                    std::thread::park_timeout(Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut pids = [0; 8];
        stream.read_exact(&mut pids).unwrap();
        Running {
            pid: u32::from_le_bytes(pids[..4].try_into().unwrap()),
            server: u32::from_le_bytes(pids[4..].try_into().unwrap()),
            stream,
        }
    }

    /// How many calls reported that [`next`](Reports::next) has not taken.
    pub fn pending(&self) -> usize {
        self.0.set_nonblocking(true).unwrap();
        let mut count = 0;
        while self.0.accept().is_ok() {
            count += 1;
        }
        count
    }
}

/// The worker side of [`Reports`]: report, then block until released; the serving process's
/// pid.
pub fn report_and_wait(addr: &str) -> u32 {
    let server = std::os::unix::process::parent_id();
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut pids = std::process::id().to_le_bytes().to_vec();
    pids.extend_from_slice(&server.to_le_bytes());
    stream.write_all(&pids).unwrap();
    let mut byte = [0];
    let _ = stream.read(&mut byte);
    server
}
