//! `#[unsync(remote)]`: calls sent to a Temporal cluster as Standalone Activities and run by
//! remote workers (this executable started with `UNSYNC_SERVE=remote` on other machines),
//! behind the same [`Unfinished`] handle. What users see is the "Remote" section of the
//! [`unsync-exec` docs](https://docs.rs/unsync-exec/latest/unsync/#remote-a-cluster-through-temporal).
//!
//! This module owns the choice of where a call goes, and needs no feature: with no cluster
//! configured (`UNSYNC_REMOTE`, [`Config::remote`](crate::Config::remote)) a call runs in the
//! local worker processes exactly as `cpu_bound`; with one configured but the `remote` feature
//! off, it fails with [`Error::Remote`] naming the feature. The rest, one concept per file, is
//! compiled with the feature only:
//!
//! - `envelope`: what crosses the cluster: a call (function key, encoded arguments), a failure
//!   (kind, message, panic location), the payload limit;
//! - `client`: the caller's side: the connection, submitting a call, its result, its cancel;
//! - `serve`: the remote worker: polling the build's task queue, running each call in the local
//!   worker processes, heartbeating, stopping on SIGTERM.
//!
//! A call is one activity of the single type `UnsyncCall` on the task queue
//! `unsync-<fingerprint>`: the fingerprint is the process pool's (see `handshake`), so workers
//! of another build never take this build's calls.

#[cfg(feature = "remote")]
mod client;
#[cfg(feature = "remote")]
mod envelope;
#[cfg(feature = "remote")]
mod serve;

use std::ffi::OsStr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::process::WorkerFn;
use super::process::private::{Cross, Witness, spawn_process};
#[cfg(not(feature = "remote"))]
use crate::error::Error;
use crate::handle::Unfinished;

/// Set in a process's environment, `UNSYNC_SERVE=remote` makes it a remote worker before `main`.
pub(crate) const SERVE_ENV: &str = "UNSYNC_SERVE";

/// Calls sent to the cluster whose result has not come back yet.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How many calls are on the cluster (for `shutdown`).
pub(crate) fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

/// Counts one call on the cluster while it lives.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) struct OnCluster(());

#[cfg_attr(not(feature = "remote"), allow(dead_code))]
impl OnCluster {
    pub(crate) fn new() -> OnCluster {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        OnCluster(())
    }
}

impl Drop for OnCluster {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A `remote` function's settings, from `#[unsync(remote, retries = N, timeout = "30s")]`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub struct RemoteOptions {
    pub(crate) retries: u32,
    pub(crate) timeout: Option<Duration>,
}

impl RemoteOptions {
    /// `timeout_ms` 0 means no limit.
    pub const fn new(retries: u32, timeout_ms: u64) -> RemoteOptions {
        RemoteOptions {
            retries,
            timeout: if timeout_ms == 0 {
                None
            } else {
                Some(Duration::from_millis(timeout_ms))
            },
        }
    }
}

/// Run a registered function on the configured cluster, or in the local worker processes when
/// there is none. `W` is how the result crosses, `R` what the handle yields.
#[doc(hidden)]
pub fn spawn_remote<W, R>(
    entry: &'static WorkerFn,
    args: &impl Serialize,
    options: RemoteOptions,
) -> Unfinished<R>
where
    W: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
{
    let Some(cluster) = &crate::config::settings().remote else {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            tracing::info!(
                "UNSYNC_REMOTE is not set: #[unsync(remote)] functions run in this machine's worker processes"
            );
        });
        return spawn_process::<W, R>(entry, args);
    };
    #[cfg(feature = "remote")]
    return client::spawn::<W, R>(cluster, entry, args, options);
    #[cfg(not(feature = "remote"))]
    {
        let _ = (args, options);
        crate::exec::stats::submitted(crate::exec::stats::Mode::Remote);
        crate::exec::stats::ended(
            crate::exec::stats::Mode::Remote,
            crate::exec::stats::Outcome::Failed,
            None,
        );
        Unfinished::failed(Error::Remote {
            task: entry.name,
            detail: format!(
                "a cluster is configured ({cluster}) but this program was built without unsync's `remote` feature: enable it (`unsync-exec = {{ version = \"...\", features = [\"remote\"] }}`), or unset UNSYNC_REMOTE to run the call in this machine's worker processes"
            ),
        })
    }
}

/// `spawn_remote` for a result whose type `R` has a witness (see `wire_check`).
#[doc(hidden)]
#[inline(always)]
pub fn spawn_remote_checked<R, M>(
    _: Witness<R, M>,
    entry: &'static WorkerFn,
    args: &impl Serialize,
    options: RemoteOptions,
) -> Unfinished<R>
where
    Witness<R, M>: Cross<R>,
    <Witness<R, M> as Cross<R>>::Same: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
{
    spawn_remote::<<Witness<R, M> as Cross<R>>::Same, R>(entry, args, options)
}

/// Serve `#[unsync(remote)]` calls from the cluster named by `UNSYNC_REMOTE` (or
/// [`Config::remote`](crate::Config::remote)) until SIGTERM or SIGINT, then exit: what a process
/// started with `UNSYNC_SERVE=remote` does before `main`, for a dedicated worker binary's
/// `main`. Each call runs in this machine's worker processes. Never returns: exits 0 after a
/// stop signal once the calls in flight finish (30 s at most), non-zero with a message when the
/// cluster cannot be reached or the program was built without the `remote` feature.
///
/// ```no_run
/// // The whole `main` of a dedicated worker binary:
/// unsync::serve_remote();
/// ```
pub fn serve_remote() -> ! {
    let code = serve_code();
    std::process::exit(code)
}

fn serve_code() -> i32 {
    let Some(cluster) = crate::config::settings().remote.clone() else {
        eprintln!(
            "unsync remote worker: no cluster to serve: set UNSYNC_REMOTE=temporal://HOST:PORT[/NAMESPACE] (or call Config::remote)"
        );
        return 2;
    };
    #[cfg(feature = "remote")]
    return serve::serve(&cluster);
    #[cfg(not(feature = "remote"))]
    {
        eprintln!(
            "unsync remote worker: cannot serve {cluster}: this program was built without unsync's `remote` feature"
        );
        2
    }
}

/// The start-up hook's part: `UNSYNC_SERVE=remote` makes this process a remote worker; any other
/// value is a mistake, said so.
pub(crate) fn serve_from_hook(mode: &OsStr) -> ! {
    if mode != "remote" {
        eprintln!(
            "unsync: {SERVE_ENV}={mode:?} is not a kind of worker: the only one is {SERVE_ENV}=remote; exiting"
        );
        std::process::exit(2);
    }
    // Serve on a thread std set up itself, not in the constructor.
    let served = std::thread::Builder::new()
        .name("unsync-serve".into())
        .spawn(serve_code)
        .map(|t| t.join());
    std::process::exit(match served {
        Ok(Ok(code)) => code,
        _ => 5,
    })
}
