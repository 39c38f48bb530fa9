//! Configuration: the [`Config`] builder, the `UNSYNC_*` environment variables, and the
//! settings every executor reads when it starts.
//!
//! Settings are fixed once, the first time any executor starts (or when [`Config::install`]
//! runs, whichever comes first). What each one is, its builder method, its environment
//! variable, its default and the precedence between them: the user guide's *Configuration*
//! section (the facade's `src/lib.rs`), the one place they are listed; a new setting goes
//! there, on the builder, and in [`Settings`]. A variable that does not parse makes
//! [`Config::install`] return [`ConfigError::InvalidEnv`], and without `install` the first
//! task panics with the same message.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{ConfigError, Error};
use crate::remote_config::Remote;

/// What the executors are built with. Resolved once, then read-only.
pub(crate) struct Settings {
    pub(crate) runtime_threads: usize,
    pub(crate) blocking_threads: usize,
    pub(crate) parallel_threads: usize,
    pub(crate) processes: usize,
    pub(crate) max_frame_bytes: usize,
    /// Longest spin of a waiter before it parks, in µs (0: never spin).
    pub(crate) spin_micros: u32,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) unobserved: UnobservedHook,
    /// Where `remote` calls go (`None`: the local worker processes).
    pub(crate) remote: Option<Remote>,
}

/// The spin when none is configured: about one cross-core wake-up and back on a VM; none when
/// this process may run on one CPU only (`taskset -c 0`, a one-CPU container), where a
/// spinning waiter only delays the thread it waits for.
pub(crate) fn default_spin_micros() -> u32 {
    if one_cpu() { 0 } else { 50 }
}

/// Whether this process may run on one CPU only (its affinity mask, or its container's quota),
/// as first seen.
pub(crate) fn one_cpu() -> bool {
    static ONE_CPU: OnceLock<bool> = OnceLock::new();
    *ONE_CPU.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() == 1))
}

/// What happens to a failure nobody read.
#[derive(Clone)]
pub(crate) enum UnobservedHook {
    Report,
    Ignore,
    Custom(Arc<dyn Fn(&Error) + Send + Sync>),
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings if they are already fixed (never starts anything, never panics).
pub(crate) fn installed() -> Option<&'static Settings> {
    SETTINGS.get()
}

/// The settings, resolving them from the environment on first use.
///
/// # Panics
/// When an `UNSYNC_*` variable is invalid and [`Config::install`] was never called: starting
/// with a setting the user did not ask for would be a silent surprise.
pub(crate) fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| match Config::new().resolve() {
        Ok(settings) => settings,
        Err(e) => panic!("unsync cannot start: {e}"),
    })
}

/// Builder for the executors' settings; [`install`](Config::install) it before the first task.
///
/// ```
/// unsync::Config::new()
///     .runtime_threads(2)
///     .blocking_threads(64)
///     .install()
///     .expect("nothing has started yet");
/// assert_eq!(unsync::spawn(async { 40 + 2 }).result(), 42);
/// ```
#[derive(Default, Clone)]
#[must_use = "a Config does nothing until `.install()` is called"]
pub struct Config {
    runtime_threads: Option<usize>,
    blocking_threads: Option<usize>,
    parallel_threads: Option<usize>,
    processes: Option<usize>,
    max_frame_bytes: Option<usize>,
    spin: Option<Duration>,
    runtime: Option<tokio::runtime::Handle>,
    unobserved: Option<UnobservedHook>,
    remote: Option<Remote>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("runtime_threads", &self.runtime_threads)
            .field("blocking_threads", &self.blocking_threads)
            .field("parallel_threads", &self.parallel_threads)
            .field("processes", &self.processes)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("spin", &self.spin)
            .field("runtime", &self.runtime.as_ref().map(|_| "Handle"))
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A builder with every setting left to the environment or the default.
    ///
    /// ```
    /// let config = unsync::Config::new();
    /// # drop(config);
    /// ```
    pub fn new() -> Config {
        Config::default()
    }

    /// Worker threads of the global tokio runtime that runs `#[unsync] async fn`.
    ///
    /// ```
    /// let config = unsync::Config::new().runtime_threads(4);
    /// # drop(config);
    /// ```
    pub fn runtime_threads(mut self, n: usize) -> Config {
        self.runtime_threads = Some(n);
        self
    }

    /// The most threads the blocking pool (plain `#[unsync] fn`) may grow to. It keeps one hot
    /// thread per core and adds threads only while all of them are blocked. A pool thread that
    /// waits on another unsync handle (`.result()` inside a `#[unsync] fn`) does not count: it
    /// runs nothing meanwhile, and nested calls deeper than the cap must still finish.
    ///
    /// ```
    /// let config = unsync::Config::new().blocking_threads(128);
    /// # drop(config);
    /// ```
    pub fn blocking_threads(mut self, n: usize) -> Config {
        self.blocking_threads = Some(n);
        self
    }

    /// Threads of the rayon pool that runs `#[unsync(parallel)] fn`.
    ///
    /// ```
    /// let config = unsync::Config::new().parallel_threads(8);
    /// # drop(config);
    /// ```
    pub fn parallel_threads(mut self, n: usize) -> Config {
        self.parallel_threads = Some(n);
        self
    }

    /// Worker processes of the pool that runs `#[unsync(cpu_bound)] fn`.
    ///
    /// ```
    /// let config = unsync::Config::new().processes(4);
    /// # drop(config);
    /// ```
    pub fn processes(mut self, n: usize) -> Config {
        self.processes = Some(n);
        self
    }

    /// The largest frame (encoded arguments or result of one call) accepted on a worker pipe.
    /// Arguments or a result that take more fail that call with [`Error::TooLarge`]; the worker
    /// serves on. At most `u32::MAX - 1` (a frame's length prefix has 32 bits): `install`
    /// refuses more.
    ///
    /// ```
    /// let config = unsync::Config::new().max_frame_bytes(1 << 30);
    /// # drop(config);
    /// ```
    pub fn max_frame_bytes(mut self, n: usize) -> Config {
        self.max_frame_bytes = Some(n);
        self
    }

    /// How long a thread blocked in `.result()` spins before it parks, at most. Waking a
    /// parked thread costs a system call and a context switch on both sides (tens of µs on a
    /// VM), so a short spin makes quick round trips several times faster; the spin adapts per
    /// thread and shrinks to nothing when waits are long, so a thread that waits seconds burns
    /// almost no CPU. Each thread also times its waits with and without the spin, and parks at
    /// once while that has been quicker (when the scheduler would run the task on the waiting
    /// thread's CPU, a spin pushes it to another one). A `cpu_bound` worker process waits for
    /// its next call the same way, with the same limit, after a call whose caller spins: a
    /// quick call then finds its worker awake instead of waking it. `Duration::ZERO`
    /// never spins: the choice for battery-powered or heavily oversubscribed machines, and the
    /// default when the process may run on one CPU only (there a spin only delays the thread it
    /// waits for).
    /// Values above 10 ms are capped there.
    ///
    /// ```
    /// let config = unsync::Config::new().spin(std::time::Duration::ZERO);
    /// # drop(config);
    /// ```
    pub fn spin(mut self, limit: Duration) -> Config {
        self.spin = Some(limit);
        self
    }

    /// Run `#[unsync] async fn` on an application's own multi-threaded tokio runtime instead of
    /// starting one. [`runtime`](crate::runtime()) then returns this handle. Enable its timers
    /// (`enable_all()` or `enable_time()`) if you use [`Unfinished::timeout`](crate::Unfinished::timeout)
    /// or `tokio::time` in your tasks.
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// let config = unsync::Config::new().runtime(rt.handle().clone());
    /// # drop(config);
    /// ```
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Config {
        self.runtime = Some(handle);
        self
    }

    /// Call `hook` for each task that failed (panicked or lost its worker) after every handle
    /// to it was dropped unread, instead of the default report (a `tracing` error event with
    /// target `unsync`, plus a line on stderr when no global `tracing` subscriber is installed).
    /// The hook runs exactly once per such failure, on whichever thread finished the task or
    /// dropped its last handle; cancelled tasks are never reported.
    ///
    /// ```
    /// let config = unsync::Config::new()
    ///     .on_unobserved_error(|e| eprintln!("background failure: {e}"));
    /// # drop(config);
    /// ```
    pub fn on_unobserved_error(mut self, hook: impl Fn(&Error) + Send + Sync + 'static) -> Config {
        self.unobserved = Some(UnobservedHook::Custom(Arc::new(hook)));
        self
    }

    /// Do not report failures nobody read.
    ///
    /// ```
    /// let config = unsync::Config::new().ignore_unobserved_errors();
    /// # drop(config);
    /// ```
    pub fn ignore_unobserved_errors(mut self) -> Config {
        self.unobserved = Some(UnobservedHook::Ignore);
        self
    }

    /// Send `#[unsync(remote)]` calls to this Temporal cluster (overrides `UNSYNC_REMOTE`).
    /// Needs unsync's `remote` feature: without it, such calls fail with
    /// [`Error::Remote`]. See [`Remote`] for TLS and API keys.
    ///
    /// ```
    /// let cluster = unsync::Remote::new("temporal://127.0.0.1:7233/default").unwrap();
    /// let config = unsync::Config::new().remote(cluster);
    /// # drop(config);
    /// ```
    pub fn remote(mut self, cluster: Remote) -> Config {
        self.remote = Some(cluster);
        self
    }

    /// Fix these settings for the life of the process.
    ///
    /// # Errors
    /// [`ConfigError::AlreadyStarted`] once any executor has started or `install` already ran;
    /// [`ConfigError::InvalidEnv`] when an `UNSYNC_*` variable does not parse (even one this
    /// builder overrides: a typo should never pass unnoticed); [`ConfigError::Invalid`] for a
    /// zero thread or process count or a runtime handle of the current-thread flavor.
    ///
    /// ```
    /// let result = unsync::Config::new().runtime_threads(0).install();
    /// assert!(matches!(result, Err(unsync::ConfigError::Invalid { .. })));
    /// ```
    pub fn install(self) -> Result<(), ConfigError> {
        if SETTINGS.get().is_some() {
            return Err(ConfigError::AlreadyStarted);
        }
        let settings = self.resolve()?;
        SETTINGS
            .set(settings)
            .map_err(|_| ConfigError::AlreadyStarted)
    }

    fn resolve(self) -> Result<Settings, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let env_runtime = env_count("UNSYNC_RUNTIME_THREADS")?;
        let env_blocking = env_count("UNSYNC_BLOCKING_THREADS")?;
        let env_parallel = env_count("UNSYNC_PARALLEL_THREADS")?;
        let env_processes = env_count("UNSYNC_PROCESSES")?;
        let env_frame = env_count("UNSYNC_MAX_FRAME_BYTES")?;
        let env_spin = env_micros("UNSYNC_SPIN_MICROS")?;
        if let Some(handle) = &self.runtime {
            if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                return Err(ConfigError::Invalid {
                    setting: "runtime",
                    reason: "must be a multi-threaded tokio runtime: a current-thread runtime only makes progress inside its own `block_on`",
                });
            }
        }
        Ok(Settings {
            runtime_threads: pick("runtime_threads", self.runtime_threads, env_runtime, cores)?,
            blocking_threads: pick("blocking_threads", self.blocking_threads, env_blocking, 512)?,
            parallel_threads: pick(
                "parallel_threads",
                self.parallel_threads,
                env_parallel,
                cores,
            )?,
            processes: pick("processes", self.processes, env_processes, cores)?,
            max_frame_bytes: frame_limit(self.max_frame_bytes, env_frame)?,
            spin_micros: self
                .spin
                .map(|d| u32::try_from(d.as_micros().min(MAX_SPIN_MICROS)).unwrap_or(0))
                .or(env_spin)
                .unwrap_or_else(default_spin_micros),
            runtime: self.runtime,
            unobserved: self.unobserved.unwrap_or(UnobservedHook::Report),
            remote: Remote::resolve(self.remote)?,
        })
    }
}

/// The largest frame limit: a frame's length prefix has 32 bits, and `u32::MAX` itself marks a
/// body too large for any limit (see `protocol::end_frame`).
const MAX_FRAME_LIMIT: usize = u32::MAX as usize - 1;

const FRAME_LIMIT_RANGE: &str =
    "must be at most 4294967294 (4 GiB - 2): a frame's length prefix has 32 bits";

/// A count from the builder (at least 1), else from the environment, else `default`.
fn pick(
    setting: &'static str,
    builder: Option<usize>,
    env: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match builder {
        Some(0) => Err(ConfigError::Invalid {
            setting,
            reason: "must be at least 1",
        }),
        Some(n) => Ok(n),
        None => Ok(env.unwrap_or(default)),
    }
}

/// The frame limit, picked as the counts are, and no more than the length prefix can say.
fn frame_limit(builder: Option<usize>, env: Option<usize>) -> Result<usize, ConfigError> {
    let limit = pick("max_frame_bytes", builder, env, 256 << 20)?;
    if limit <= MAX_FRAME_LIMIT {
        return Ok(limit);
    }
    Err(match builder {
        Some(_) => ConfigError::Invalid {
            setting: "max_frame_bytes",
            reason: FRAME_LIMIT_RANGE,
        },
        None => ConfigError::InvalidEnv {
            var: "UNSYNC_MAX_FRAME_BYTES",
            value: limit.to_string(),
            reason: FRAME_LIMIT_RANGE,
        },
    })
}

/// A positive integer from the environment; unset or empty means "not set".
fn env_count(var: &'static str) -> Result<Option<usize>, ConfigError> {
    env_setting(var, "expected a positive integer", parse_count)
}

const MAX_SPIN_MICROS: u128 = 10_000;

/// A duration in µs from the environment, zero allowed; unset or empty means "not set".
fn env_micros(var: &'static str) -> Result<Option<u32>, ConfigError> {
    env_setting(var, "expected a number of microseconds", parse_micros)
}

/// An `UNSYNC_*` variable read with `parse`; a value that is not even text fails with `reason`.
fn env_setting<T>(
    var: &'static str,
    reason: &'static str,
    parse: fn(&'static str, &str) -> Result<Option<T>, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(ConfigError::InvalidEnv {
            var,
            value: raw.to_string_lossy().into_owned(),
            reason,
        }),
        Ok(value) => parse(var, &value),
    }
}

fn parse_micros(var: &'static str, value: &str) -> Result<Option<u32>, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<u128>() {
        Ok(n) => Ok(Some(u32::try_from(n.min(MAX_SPIN_MICROS)).unwrap_or(0))),
        Err(_) => Err(ConfigError::InvalidEnv {
            var,
            value: value.to_owned(),
            reason: "expected a number of microseconds",
        }),
    }
}

fn parse_count(var: &'static str, value: &str) -> Result<Option<usize>, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<usize>() {
        Ok(0) | Err(_) => Err(ConfigError::InvalidEnv {
            var,
            value: value.to_owned(),
            reason: "expected a positive integer",
        }),
        Ok(n) => Ok(Some(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_micros_parse_allow_zero_and_cap() {
        assert_eq!(parse_micros("UNSYNC_S", "0").unwrap(), Some(0));
        assert_eq!(parse_micros("UNSYNC_S", " 20 ").unwrap(), Some(20));
        assert_eq!(parse_micros("UNSYNC_S", "").unwrap(), None);
        assert_eq!(parse_micros("UNSYNC_S", "99999999").unwrap(), Some(10_000));
        let err = parse_micros("UNSYNC_S", "fast").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable UNSYNC_S=\"fast\" is invalid: expected a number of microseconds"
        );
        let settings = Config::new().spin(Duration::ZERO).resolve().unwrap();
        assert_eq!(settings.spin_micros, 0);
        let settings = Config::new()
            .spin(Duration::from_secs(1))
            .resolve()
            .unwrap();
        assert_eq!(settings.spin_micros, 10_000);
    }

    #[test]
    fn counts_parse_or_name_the_variable() {
        assert_eq!(parse_count("UNSYNC_X", "8").unwrap(), Some(8));
        assert_eq!(parse_count("UNSYNC_X", " 3 ").unwrap(), Some(3));
        assert_eq!(parse_count("UNSYNC_X", "").unwrap(), None);
        let err = parse_count("UNSYNC_X", "eight").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable UNSYNC_X=\"eight\" is invalid: expected a positive integer"
        );
        assert!(parse_count("UNSYNC_X", "0").is_err());
        assert!(parse_count("UNSYNC_X", "-1").is_err());
    }

    #[test]
    fn builder_values_override_defaults_and_zero_is_refused() {
        let s = Config::new().runtime_threads(3).resolve().unwrap();
        assert_eq!(s.runtime_threads, 3);
        assert_eq!(s.max_frame_bytes, 256 << 20);
        let err = Config::new().processes(0).resolve().err().unwrap();
        assert_eq!(
            err,
            ConfigError::Invalid {
                setting: "processes",
                reason: "must be at least 1"
            }
        );
    }

    #[test]
    fn frame_limits_beyond_the_32_bit_prefix_are_refused() {
        assert_eq!(frame_limit(None, None).unwrap(), 256 << 20);
        assert_eq!(frame_limit(None, Some(7)).unwrap(), 7);
        assert_eq!(frame_limit(Some(9), Some(7)).unwrap(), 9);
        assert_eq!(
            frame_limit(Some(MAX_FRAME_LIMIT), None).unwrap(),
            MAX_FRAME_LIMIT
        );
        let err = Config::new()
            .max_frame_bytes(MAX_FRAME_LIMIT + 1)
            .resolve()
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "invalid configuration: max_frame_bytes must be at most 4294967294 (4 GiB - 2): a frame's length prefix has 32 bits"
        );
        let err = frame_limit(None, Some(MAX_FRAME_LIMIT + 1)).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InvalidEnv {
                var: "UNSYNC_MAX_FRAME_BYTES",
                ..
            }
        ));
    }

    #[test]
    fn current_thread_runtime_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = Config::new()
            .runtime(rt.handle().clone())
            .resolve()
            .err()
            .unwrap();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                setting: "runtime",
                ..
            }
        ));
    }
}
