//! `unsync::init()`, the fallback for builds where unsync's start-up hook does not run (some LTO
//! or static-library set-ups drop life-before-main constructors). This program plays such a
//! build: a constructor of its own runs before unsync's and hides the worker variable from it,
//! so its worker processes reach `main`, where `unsync::init()`, called first, must turn them
//! into workers.
//!
//! Run with `cargo run --release --example init_fallback`.

use unsync::unsync;

/// Where the hidden worker variable waits for `main`.
const HIDDEN: &str = "UNSYNC_EXAMPLE_HIDDEN_WORKER";
const WORKER: &str = "UNSYNC_WORKER";

/// Runs before unsync's own hook (an earlier priority): in a worker, hide the variable.
#[ctor::ctor(unsafe, priority = early)]
fn hide_the_worker_variable() {
    if let Some(spec) = std::env::var_os(WORKER) {
        // SAFETY: before `main`, in a process that has no other thread yet.
        unsafe {
            std::env::set_var(HIDDEN, spec);
            std::env::remove_var(WORKER);
        }
    }
}

#[unsync(cpu_bound)]
fn square_in_worker(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

fn main() {
    let hidden = std::env::var_os(HIDDEN);
    if let Some(spec) = &hidden {
        // SAFETY: first thing in `main`; this process has started no thread.
        unsafe {
            std::env::set_var(WORKER, spec);
            std::env::remove_var(HIDDEN);
        }
    }
    // What a program whose hook was dropped writes first thing in `main`. In a worker it never
    // returns.
    unsync::init();
    if hidden.is_some() {
        eprintln!("init_fallback: unsync::init() returned in a worker process");
        std::process::exit(3);
    }

    let main_pid = std::process::id();
    println!(
        "main runs in pid {main_pid}; in its workers, unsync's hook finds no worker variable, and main calls unsync::init()"
    );
    let (value, pid) = square_in_worker(12).result();
    println!("square_in_worker(12) = {value}, computed in pid {pid}");
    let ok = value == 144 && pid != main_pid;
    println!(
        "CLAIM a worker whose start-up hook missed its variable became a worker through unsync::init() ... {} (pid {pid}, main {main_pid})",
        if ok { "PASS" } else { "FAIL" }
    );
    std::process::exit(if ok { 0 } else { 1 });
}
