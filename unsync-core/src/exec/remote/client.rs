//! The caller's side: one connection to the cluster per process, and each call driven on a
//! small runtime of its own (`unsync-remote`): submit (`start_activity`), wait for the
//! long-polled result, or cancel it when the handle is cancelled. The handle resolves from
//! the result; a cancel resolves it at once (the handle layer does) and sends the cancel
//! request on this runtime, so `cancel()` never blocks.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use temporalio_client::errors::ActivityResultError;
use temporalio_client::{
    ActivityCancelOptions, ActivityStartOptions, Client, ClientOptions, ClientTlsOptions,
    Connection, ConnectionOptions, RetryPolicy, TlsOptions, Url,
};
use temporalio_common::ActivityCloseTimeouts;
use temporalio_common::error::{IncomingError, TimeoutType};

use super::RemoteOptions;
use super::envelope::{self, Failure, UnsyncCall};
use crate::error::{Error, Payload};
use crate::exec::process::WorkerFn;
use crate::exec::process::private::encode;
use crate::exec::stats::{self, Mode, Outcome};
use crate::handle::Unfinished;
use crate::handle::completion::{Abort, Completion};
use crate::remote_config::Remote;

/// After this long without a result, a call says (once per process) where it waits.
const SLOW: Duration = Duration::from_secs(30);

/// With no `timeout`, how long the server keeps a call before giving up on it.
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The runtime that drives remote calls: its own, so the cluster's I/O never depends on the
/// application's runtime (or on its having one).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("unsync-remote")
            .enable_all()
            .build()
            .expect("unsync: cannot start the remote executor's runtime")
    })
}

/// A client of `cluster`, connecting within its connect timeout; why not otherwise.
pub(super) async fn connect(cluster: &Remote) -> Result<Client, String> {
    let scheme = if cluster.tls_settings().is_some() {
        "https"
    } else {
        "http"
    };
    let url = Url::parse(&format!("{scheme}://{}", cluster.authority()))
        .map_err(|e| format!("the address {cluster} is not a valid URL: {e}"))?;
    let tls = cluster.tls_settings().map(|tls| {
        TlsOptions::builder()
            .maybe_server_root_ca_cert(tls.ca_pem.clone())
            .maybe_domain(tls.domain.clone())
            .maybe_client_tls_options(tls.client_cert_pem.clone().map(|(cert, key)| {
                ClientTlsOptions::builder()
                    .client_cert(cert)
                    .client_private_key(key)
                    .build()
            }))
            .build()
    });
    let timeout = cluster.connect_timeout_value();
    let options = ConnectionOptions::new(url)
        .identity(identity())
        .maybe_tls_options(tls)
        .maybe_api_key(cluster.api_key_value().map(str::to_owned))
        .connect_timeout(timeout)
        .build();
    let unreachable = |why: String| {
        format!(
            "cannot reach the Temporal server at {cluster} ({why}): is it running, and is UNSYNC_REMOTE right? (`temporal server start-dev` starts one locally)"
        )
    };
    let connection = match tokio::time::timeout(timeout, Connection::connect(options)).await {
        Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(connection)) => connection,
    };
    Client::new(connection, ClientOptions::new(cluster.namespace()).build())
        .map_err(|e| format!("cannot use namespace {:?}: {e}", cluster.namespace()))
}

/// `<pid>@<host>`, as Temporal shows who started or ran a call.
pub(super) fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{}@{host}", std::process::id())
}

/// This process's client, connected on first use; a failed connection is tried again by the
/// next call.
async fn client(cluster: &Remote) -> Result<Client, String> {
    static CLIENT: tokio::sync::OnceCell<Client> = tokio::sync::OnceCell::const_new();
    CLIENT.get_or_try_init(|| connect(cluster)).await.cloned()
}

/// A new activity id: the function, this process, a per-process count (the dedupe key).
fn activity_id(task: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static STARTED: OnceLock<u128> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{task}/{}-{started:x}-{n}", std::process::id())
}

/// Send a call to `cluster`; its handle resolves from the remote worker's answer.
pub(super) fn spawn<W, R>(
    cluster: &Remote,
    entry: &'static WorkerFn,
    args: &impl Serialize,
    options: RemoteOptions,
) -> Unfinished<R>
where
    W: DeserializeOwned + Into<R> + 'static,
    R: Send + 'static,
{
    let task = entry.name;
    stats::submitted(Mode::Remote);
    let refused = |error| {
        stats::ended(Mode::Remote, Outcome::Failed, None);
        Unfinished::failed(error)
    };
    if let Err(error) = crate::exec::process::position(entry) {
        return refused(error);
    }
    let mut encoded = Vec::new();
    if let Err(e) = encode(args, &mut encoded) {
        return refused(Error::Encoding {
            task,
            payload: Payload::Arguments,
            detail: format!("encoding them in this process: {e}"),
        });
    }
    let payload = envelope::encode_call(entry.key, &encoded);
    drop(encoded);
    if let Err(error) = envelope::check_size(task, payload.len(), cluster.max_payload()) {
        return refused(error);
    }
    let cell = Completion::pending(task);
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    cell.set_abort(Abort::new(move || {
        let _ = cancel.send(());
    }));
    let since = stats::stamp();
    let driven = cell.clone();
    let cluster = cluster.clone();
    let counted = super::OnCluster::new();
    runtime().spawn(async move {
        let _counted = counted;
        let outcome = drive(&cluster, task, payload, options, cancelled, since).await;
        let outcome =
            outcome.and_then(|bytes| crate::exec::process::decode_result::<W, R>(task, &bytes));
        stats::ended(
            Mode::Remote,
            match &outcome {
                _ if driven.is_done() => Outcome::Cancelled,
                Ok(_) => Outcome::Succeeded,
                Err(Error::Cancelled { .. }) => Outcome::Cancelled,
                Err(_) => Outcome::Failed,
            },
            None,
        );
        driven.complete(outcome);
    });
    Unfinished::from_cell(cell)
}

/// Submit the call and wait for its result's bytes, or cancel it when `cancelled` fires.
async fn drive(
    cluster: &Remote,
    task: &'static str,
    payload: Vec<u8>,
    options: RemoteOptions,
    mut cancelled: tokio::sync::oneshot::Receiver<()>,
    since: u32,
) -> Result<Vec<u8>, Error> {
    let remote_error = |detail| Error::Remote { task, detail };
    let client = tokio::select! {
        client = client(cluster) => client.map_err(remote_error)?,
        Ok(()) = &mut cancelled => return Err(Error::Cancelled { task }),
    };
    let heartbeat = cluster.heartbeat_timeout();
    let close = ActivityCloseTimeouts::ScheduleToClose(options.timeout.unwrap_or(NO_TIMEOUT));
    let start = ActivityStartOptions::new(envelope::task_queue(), activity_id(task), close)
        .heartbeat_timeout(heartbeat)
        .retry_policy(
            RetryPolicy::builder()
                .maximum_attempts(options.retries.saturating_add(1))
                .initial_interval(Duration::from_millis(200))
                .build(),
        )
        .summary(task)
        .build();
    let handle = client
        .start_activity(UnsyncCall, payload, start)
        .await
        .map_err(|e| remote_error(format!("the server refused the call: {e}")))?;
    stats::started(Mode::Remote, since);
    // A cancel that came while the call was being submitted, or one that comes later. (A
    // dropped sender is no cancel: the handle was dropped, and the call runs on.)
    let result = tokio::select! {
        result = handle.result() => result,
        () = say_where_it_waits(task) => unreachable!("never finishes"),
        Ok(()) = &mut cancelled => {
            let _ = handle.cancel(ActivityCancelOptions::default()).await;
            return Err(Error::Cancelled { task });
        }
    };
    result.map_err(|e| settle(task, e, options, heartbeat))
}

/// After [`SLOW`], a warning (the first call only) for the most common mistake: no worker serves
/// this build's task queue, so calls wait for one. Never finishes.
async fn say_where_it_waits(task: &'static str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    tokio::time::sleep(SLOW).await;
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the remote call `{task}` has not finished after {SLOW:?}; if no worker serves this build's task queue ({}), it waits for one: start this same program with UNSYNC_SERVE=remote and UNSYNC_REMOTE set (said once)",
            envelope::task_queue()
        );
    }
    std::future::pending().await
}

/// The error a call's failure on the cluster is.
fn settle(
    task: &'static str,
    error: ActivityResultError,
    options: RemoteOptions,
    heartbeat: Duration,
) -> Error {
    match error {
        ActivityResultError::ActivityFailed(failure) => incoming(task, failure, options, heartbeat),
        ActivityResultError::TimedOut(kind) => timed_out(task, kind, options, heartbeat),
        ActivityResultError::Cancelled { .. } => Error::Cancelled { task },
        ActivityResultError::Terminated => Error::Remote {
            task,
            detail: "it was terminated on the cluster (`temporal activity terminate`, or the UI)"
                .into(),
        },
        other => Error::Remote {
            task,
            detail: format!("the server answered: {other}"),
        },
    }
}

fn incoming(
    task: &'static str,
    failure: IncomingError,
    options: RemoteOptions,
    heartbeat: Duration,
) -> Error {
    match failure {
        IncomingError::Application(failure) => {
            let location = failure
                .details::<Vec<u8>>()
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_default();
            let message = failure
                .failure()
                .map_or_else(|| failure.to_string(), |f| f.message.clone());
            Failure::into_error(task, failure.type_name().unwrap_or(""), message, location)
        }
        IncomingError::Timeout(timeout) => {
            timed_out(task, timeout.timeout_type(), options, heartbeat)
        }
        IncomingError::Cancelled(_) => Error::Cancelled { task },
        other => Error::Remote {
            task,
            detail: format!("it failed on the cluster: {other}"),
        },
    }
}

fn timed_out(
    task: &'static str,
    kind: TimeoutType,
    options: RemoteOptions,
    heartbeat: Duration,
) -> Error {
    let attempts = options.retries.saturating_add(1);
    match (kind, options.timeout) {
        (TimeoutType::Heartbeat, _) => Error::WorkerDied {
            task,
            detail: format!(
                "the remote worker running it sent no heartbeat for {heartbeat:?} (killed, or cut off from the cluster), on each of {attempts} attempt(s) (`retries = N` runs it again elsewhere)"
            ),
        },
        (TimeoutType::ScheduleToClose | TimeoutType::StartToClose, Some(after)) => {
            Error::TimedOut { task, after }
        }
        (other, _) => Error::Remote {
            task,
            detail: format!("the cluster timed it out ({other:?})"),
        },
    }
}
