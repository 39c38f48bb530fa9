//! # unsync
//!
//! Python's [`unsync`](https://github.com/alex-sherman/unsync) for Rust: put one attribute on a
//! function, and calling it runs the body in the background on the right executor and returns
//! one handle, [`Unfinished<T>`], that sync code can [`.result()`](Unfinished::result) and
//! async code can `.await`.
//!
//! | written | runs on |
//! |---|---|
//! | `#[unsync] async fn` | a global multi-threaded tokio runtime, started on first use |
//! | `#[unsync] fn` | a thread pool for blocking I/O and legacy sync libraries |
//! | `#[unsync(parallel)] fn` | a rayon pool, one thread per core, for CPU work |
//! | `#[unsync(cpu_bound)] fn` | a pool of worker processes: a crash or a kill costs one worker, never the caller |
//!
//! ```
//! use std::time::Duration;
//! use unsync::unsync;
//!
//! #[unsync]
//! async fn fetch(id: u32) -> String {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//!     format!("page {id}")
//! }
//!
//! #[unsync]
//! fn read_legacy(path: String) -> usize {
//!     std::fs::read(&path).map_or(0, |bytes| bytes.len())
//! }
//!
//! #[unsync(parallel)]
//! fn checksum(data: Vec<u8>) -> u64 {
//!     data.iter().map(|&b| u64::from(b)).sum()
//! }
//!
//! // Each call returns at once; all three run at the same time.
//! let page = fetch(7);
//! let size = read_legacy("Cargo.toml".to_owned());
//! let sum = checksum(vec![1, 2, 3]);
//!
//! // From sync code: block for the results.
//! assert_eq!(page.result(), "page 7");
//! assert!(size.result() > 0);
//! assert_eq!(sum.result(), 6);
//!
//! // From async code, on any executor: await the very same handle type.
//! let total = futures::executor::block_on(async { checksum(vec![4, 5]).await + fetch(1).await.len() as u64 });
//! assert_eq!(total, 9 + 6);
//! ```
//!
//! ## The attribute
//!
//! The rewritten function keeps its name, visibility, generics, attributes and docs, and
//! returns `Unfinished<T>` instead of `T`. Calling it never blocks: the task is queued on its
//! executor at once. Arguments are moved into the task, so they must be owned (`String`, not
//! `&str`; `self` or `self: Arc<Self>`, not `&self`) and `Send + 'static`. A borrowed argument
//! is refused with an error on the argument's type; an argument that is not `Send` (an `Rc`,
//! say) is refused by the compiler with an error that names the type (`` `Rc<u32>` cannot be
//! sent between threads safely``) but points at the `#[unsync]` attribute line, not at the
//! argument.
//!
//! Options: `#[unsync(parallel)]` (rayon), `#[unsync(cpu_bound)]` (worker processes, see
//! [below](#worker-processes-cpu_bound)), and `#[unsync(crate = "path")]` when this crate is
//! renamed in your `Cargo.toml`:
//!
//! ```
//! # extern crate unsync as my_unsync;
//! #[my_unsync::unsync(crate = "my_unsync")]
//! fn renamed() -> u8 { 1 }
//! assert_eq!(renamed().result(), 1);
//! ```
//!
//! ## The handle
//!
//! [`Unfinished<T>`] is `Send + Sync + Unpin + 'static`, implements `Future<Output = T>` on any
//! executor (tokio of either flavor, `futures::executor`, smol, ...), and blocks with
//! [`result`](Unfinished::result) from anywhere, including from inside other unsync tasks of any
//! mode, however deeply nested. A panic in the task re-raises in whoever reads the result;
//! [`catch`](Unfinished::catch) turns it into an [`Error`] value. Dropping a handle does not
//! stop the task (fire and forget); [`cancel`](Unfinished::cancel) does, as far as the mode
//! allows.
//!
//! Without the attribute: [`spawn`], [`spawn_blocking`] and [`spawn_parallel`] return the same
//! handle for ad-hoc work.
//!
//! ## Composition and control
//!
//! The handle composes the same way in every mode, from sync and async callers alike:
//!
//! ```
//! use std::time::Duration;
//! use unsync::{unsync, Error, Unfinished};
//!
//! #[unsync]
//! async fn fetch(id: u32) -> String {
//!     format!("page {id}")
//! }
//!
//! #[unsync]
//! fn parse(page: String) -> usize {
//!     page.len()
//! }
//!
//! // then: chain unsync functions; map: a plain transform.
//! assert_eq!(fetch(1).then(parse).map(|n| n * 10).result(), 60);
//!
//! // join_all: input order kept; the first failure fails the whole.
//! let sizes = unsync::join_all((1..=3).map(|i| fetch(i).then(parse))).result();
//! assert_eq!(sizes, [6, 6, 6]);
//!
//! // as_completed: in completion order; len() says how many are left.
//! let done = unsync::as_completed((0..4).map(fetch));
//! assert_eq!(done.len(), 4);
//! assert_eq!(done.into_iter().count(), 4);
//!
//! // timeout: the task is cancelled once the time is up.
//! let stuck = unsync::spawn(std::future::pending::<()>());
//! let outcome = stuck.timeout(Duration::from_millis(5)).result();
//! assert!(matches!(outcome, Err(Error::TimedOut { .. })));
//!
//! // promise: a handle completed by hand, for callback APIs.
//! let (promise, handle): (_, Unfinished<u8>) = unsync::promise();
//! std::thread::spawn(move || promise.set(7));
//! assert_eq!(handle.result(), 7);
//!
//! // shutdown: at the end of main, wait (boundedly) for background work.
//! drop(fetch(9));
//! assert_eq!(unsync::shutdown(Duration::from_secs(60)), 0);
//! ```
//!
//! [`cancel`](Unfinished::cancel) never blocks and documents what stops in each mode (an async
//! task at its next `.await`; a queued task never starts; a running thread or rayon task cannot
//! be killed, but sees [`is_cancelled`] turn true; a running `cpu_bound` call's worker process
//! is killed and replaced). [`shutdown`] cancels nothing in this process: in-process tasks still
//! running at its deadline go on, but `cpu_bound` calls still queued or running then resolve to
//! [`Error::Cancelled`], as the worker processes are stopped. A failed task whose handles were
//! all dropped unread is reported once, as a `tracing` error event (see
//! [`Config::on_unobserved_error`]).
//!
//! ## Context
//!
//! The `tracing` span current where an unsync function is called is the parent of the task's
//! span (`unsync_task`) in every in-process mode (async, blocking pool, rayon), so the task's
//! events nest under the caller's request. A `cpu_bound` call that runs in a worker process
//! does not get it: spans do not cross processes (see [Worker processes](#worker-processes-cpu_bound)).
//! Nothing else follows a task to the thread that runs it: thread-locals, tokio task-locals and
//! the like stay behind. Clone what the task needs into the function's arguments:
//!
//! ```
//! use unsync::unsync;
//!
//! #[derive(Clone)]
//! struct RequestContext {
//!     request_id: u64,
//! }
//!
//! #[unsync]
//! fn audit(ctx: RequestContext, action: String) -> String {
//!     format!("[{}] {action}", ctx.request_id)
//! }
//!
//! let ctx = RequestContext { request_id: 42 };
//! assert_eq!(audit(ctx.clone(), "login".into()).result(), "[42] login");
//! ```
//!
//! ## Worker processes (`cpu_bound`)
//!
//! `#[unsync(cpu_bound)] fn` runs each call in a worker process, as Python's
//! `@unsync(cpu_bound=True)` does: an abort, a segfault or a kill costs one worker (a panic
//! only its call), never the caller.
//!
//! ```
//! use unsync::unsync;
//!
//! #[unsync(cpu_bound)]
//! fn crunch(seed: u64, data: Vec<f64>) -> (f64, u32) {
//!     (data.iter().map(|x| (x * seed as f64).sqrt()).sum(), std::process::id())
//! }
//!
//! let (total, worker) = crunch(4, vec![1.0; 100]).result();
//! assert_eq!(total, 200.0);
//! assert_ne!(worker, std::process::id());
//! ```
//!
//! **How it works.** A worker is the current executable started again (`/proc/self/exe` on
//! Linux, so a binary rebuilt or deleted on disk does not matter), lazily on the first call,
//! then kept warm and reused: one per core by default. Calls beyond what the workers hold wait
//! in the caller's process; none is lost. A hook that runs before `main` (a `ctor` constructor)
//! finds the worker's environment variable and turns the process into a worker, so its `main`
//! never runs: nothing needs to change in `main`, and whatever `main` sets up (a `tracing`
//! subscriber, globals) does not exist in a worker. The functions are found through a registry
//! filled at link time (`linkme`), keyed by module path, name and signature. At start-up the
//! worker and the caller compare a fingerprint of the unsync version, the protocol and the set of
//! registered functions; a worker that does not match is refused, and the pool then fails every
//! call with [`Error::WorkerDied`] saying why, until [`shutdown`] resets it. Workers inherit the
//! environment and the working directory; nested `cpu_bound` calls inside a worker run inline,
//! in that worker.
//!
//! **What crosses.** The arguments and the return type must be `serde::Serialize +
//! serde::de::DeserializeOwned` (the compile error names the type that is not). They are
//! encoded with postcard and cross two private pipes, never stdin or stdout, in frames of at
//! most 256 MiB by default ([`Config::max_frame_bytes`]); a bigger frame fails that call with
//! [`Error::WorkerDied`]. Postcard is not self-describing, so `#[serde(flatten)]` and
//! `#[serde(untagged)]` types do not round-trip. Generic functions (`impl Trait` arguments
//! included), `async fn` and methods are compile errors: a worker can only run a function it
//! can name.
//!
//! **Failures and stopping.** A panic is [`Error::Panicked`] for that call and the worker lives
//! on. A worker that aborts, crashes, calls `exit` or is killed fails the call it was running
//! with [`Error::WorkerDied`] (naming the exit status or signal); the calls queued behind it go
//! back to the head of the queue, and a fresh worker replaces it. [`cancel`](Unfinished::cancel) and
//! [`timeout`](Unfinished::timeout) kill the worker running the call (and replace it); a queued
//! call is simply dropped. Workers die with the caller's process: at the end of input on their
//! pipe, and through `PR_SET_PDEATHSIG` (SIGKILL) on Linux or a watch thread elsewhere, so even
//! when the parent is SIGKILLed in the middle of a call. [`shutdown`] waits for the calls up to
//! its deadline, then stops and reaps every worker.
//!
//! **Under `cargo test`.** A test binary re-executes itself as its workers, exactly like any
//! other binary: the hook runs before the test harness's `main`, so in a worker the harness
//! never starts (no test is listed or run twice). Test binaries and doc tests work alike. A
//! worker inherits the parent's stdout and stderr as file descriptors, while
//! libtest captures a test's output by redirecting `print!` inside the test process, not the
//! descriptors: so a worker's `println!` (and the message of a panic inside it, on stderr)
//! goes straight to the real output of `cargo test`, uncaptured, even for a test that passes.
//!
//! **Platforms.** Linux is where this crate is built, tested and measured. It also builds for
//! macOS and FreeBSD (CI runs `cargo check` for both), where the process pool replaces three
//! Linux calls with portable ones: `pipe` then `FD_CLOEXEC` instead of `pipe2`, a pipe instead
//! of an `eventfd` to wake a worker's I/O thread, and, instead of `PR_SET_PDEATHSIG`, a thread
//! in each worker that exits it within 100 ms of its parent's death. CI runs the process tests
//! on Linux through those replacements (`--cfg unsync_portable`), but nothing has run on a real
//! Mac or BSD machine yet. Windows is not supported (no Unix file descriptors or signals).
//!
//! **When the hook does not run.** Where the linker drops life-before-main constructors (some
//! LTO or static-library set-ups), call [`init()`] first thing in `main`: in a worker it never
//! returns, elsewhere it returns at once. Without it, the pool notices that the hook never ran
//! and fails the calls with [`Error::WorkerDied`] saying so, instead of starting workers that
//! would run your `main`.
//!
//! ## Configuration
//!
//! Nothing to set up. To size the executors, call [`Config::install`] before the first task, or
//! set environment variables (a value set on the builder wins over the environment, which wins
//! over the default; a variable that does not parse is an error, never ignored):
//!
//! | variable | builder | what | default |
//! |---|---|---|---|
//! | `UNSYNC_RUNTIME_THREADS` | [`Config::runtime_threads`] | worker threads of the async runtime | cores |
//! | `UNSYNC_BLOCKING_THREADS` | [`Config::blocking_threads`] | most threads of the blocking pool | 512 |
//! | `UNSYNC_PARALLEL_THREADS` | [`Config::parallel_threads`] | threads of the rayon pool | cores |
//! | `UNSYNC_PROCESSES` | [`Config::processes`] | worker processes for `cpu_bound` | cores |
//! | `UNSYNC_MAX_FRAME_BYTES` | [`Config::max_frame_bytes`] | largest encoded arguments or result of one `cpu_bound` call | 256 MiB |
//! | `UNSYNC_SPIN_MICROS` | [`Config::spin`] | longest spin of a blocked waiter before it parks, in µs | 50 |
//!
//! See [`Config`].

#![forbid(unsafe_code)]

pub use unsync_core::*;

/// Run the function in the background on the executor that suits it, and return an
/// [`Unfinished`] handle at once.
///
/// | written | runs on |
/// |---|---|
/// | `#[unsync] async fn` | the global tokio runtime |
/// | `#[unsync] fn` | the blocking thread pool |
/// | `#[unsync(parallel)] fn` | the rayon pool |
/// | `#[unsync(cpu_bound)] fn` | a worker process (arguments and result must be `Serialize + DeserializeOwned`; not generic, not `async`, not a method) |
///
/// Options: `parallel` or `cpu_bound`, and `crate = "path"` for a renamed dependency.
/// How worker processes start, what crosses the pipe, what happens on a crash and under
/// `cargo test` is described in the crate docs, [Worker processes](crate#worker-processes-cpu_bound).
/// It works in binaries, examples, integration tests and doc tests alike, with nothing to add
/// to `main`:
///
/// ```
/// use unsync::unsync;
///
/// #[unsync(cpu_bound)]
/// fn sum_of_squares(values: Vec<f64>) -> (f64, u32) {
///     (values.iter().map(|v| v * v).sum(), std::process::id())
/// }
///
/// let (sum, worker) = sum_of_squares(vec![1.0, 2.0, 3.0]).result();
/// assert_eq!(sum, 14.0);
/// assert_ne!(worker, std::process::id());
/// ```
///
/// Refused at compile time, with an error on the offending token: borrowed arguments or
/// `&self` (the task outlives the call), lifetime parameters, `#[unsync(parallel)]` on an
/// `async fn`, `const`, `unsafe` and `extern` functions, unknown options.
///
/// ```
/// use std::sync::Arc;
/// use unsync::{unsync, Unfinished};
///
/// struct Counter { base: u64 }
///
/// impl Counter {
///     #[unsync]
///     fn add(self: Arc<Self>, (a, b): (u64, u64)) -> u64 { self.base + a + b }
/// }
///
/// let counter = Arc::new(Counter { base: 100 });
/// let handle: Unfinished<u64> = counter.add((1, 2));
/// assert_eq!(handle.result(), 103);
/// ```
pub use unsync_macros::unsync;

/// What `#[unsync]` expands to. Not a public API: no stability promise.
#[doc(hidden)]
pub mod __private {
    pub use unsync_core::__private::*;
}

/// The README's code blocks, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
