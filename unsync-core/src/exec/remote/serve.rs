//! The remote worker: a process that polls this build's task queue and runs each call it takes
//! in its own local worker processes (`spawn_encoded`), so that a crash, an abort or a kill
//! costs one subprocess, and a cancel can stop the call at once.
//!
//! It takes at most as many calls as it has worker processes (`UNSYNC_PROCESSES`, cores by
//! default), so the cluster spreads a batch over every serving machine instead of queueing it
//! on the first. While a call runs it heartbeats a third of the heartbeat timeout apart: the
//! server's answer is how a cancel reaches the call, and the silence of a killed worker is how
//! the server notices it. SIGTERM or SIGINT stop the polling; the calls in flight finish (up to
//! [`DRAIN`]), then the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use temporalio_common::ActivityError;
use temporalio_common::error::ApplicationFailure;
use temporalio_common::worker::WorkerDeploymentOptions;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityImplementer, ExecutableActivity,
};
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::runtime::{PollerBehavior, RuntimeOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use super::client::connect;
use super::envelope::{self, Failure, Kind, UnsyncCall};
use crate::error::Error;
use crate::exec::process::{lookup, spawn_encoded};
use crate::remote_config::Remote;

/// How long the calls in flight may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Serve until a stop signal; the process's exit code.
pub(super) fn serve(cluster: &Remote) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("unsync-serve")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("unsync remote worker: cannot start a runtime: {e}");
            return 5;
        }
    };
    runtime.block_on(serve_async(cluster))
}

async fn serve_async(cluster: &Remote) -> i32 {
    let pid = std::process::id();
    let client = match connect(cluster).await {
        Ok(client) => client,
        Err(why) => {
            eprintln!("unsync remote worker {pid}: {why}; exiting");
            return 3;
        }
    };
    let sdk = match Runtime::from_current_tokio(RuntimeOptions::default()) {
        Ok(sdk) => sdk,
        Err(e) => {
            eprintln!("unsync remote worker {pid}: {e}; exiting");
            return 5;
        }
    };
    let slots = crate::config::settings().processes;
    let queue = envelope::task_queue();
    let fingerprint = crate::exec::process::handshake::fingerprint();
    let options = WorkerOptions::new(queue.clone())
        .register_activities(Calls)
        .deployment_options(WorkerDeploymentOptions::from_build_id(format!(
            "{fingerprint:016x}"
        )))
        .tuner(
            TunerHolder::builder()
                .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
                .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .build(),
        )
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(slots.clamp(2, 8)))
        .graceful_shutdown_period(DRAIN)
        .build();
    let mut worker = match Worker::new(&sdk, client, options) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("unsync remote worker {pid}: cannot start: {e}; exiting");
            return 5;
        }
    };
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        stop_signal().await;
        eprintln!("unsync remote worker {pid}: stopping: no new calls, finishing those in flight");
        stop();
    });
    eprintln!(
        "unsync remote worker {pid}: serving task queue {queue} of {cluster} with {slots} worker processes"
    );
    let code = match worker.run().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("unsync remote worker {pid}: {e}; exiting");
            4
        }
    };
    crate::exec::process::shutdown(std::time::Instant::now() + DRAIN);
    code
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What the worker registers: the one activity, [`UnsyncCall`].
pub(super) struct Calls;

impl ActivityImplementer for Calls {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        defs.register_activity::<UnsyncCall>(self);
    }
}

impl ExecutableActivity for UnsyncCall {
    type Implementer = Calls;
    const REQUIRES_INSTANCE: bool = false;

    fn definition() -> Self {
        UnsyncCall
    }

    fn execute(
        _: Option<Arc<Calls>>,
        ctx: ActivityContext,
        input: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, ActivityError>> {
        Box::pin(run_call(ctx, input))
    }
}

/// Run one call in a local worker process, heartbeating until it ends, killing it on cancel.
async fn run_call(ctx: ActivityContext, payload: Vec<u8>) -> Result<Vec<u8>, ActivityError> {
    let Some((key, args)) = envelope::decode_call(&payload) else {
        return Err(failure(Failure {
            kind: Kind::Other,
            message: "the call's payload is not an unsync call".into(),
            location: String::new(),
        }));
    };
    let Some(entry) = lookup(key) else {
        return Err(failure(Failure {
            kind: Kind::NotRegistered,
            message: "this worker has no such #[unsync(remote)] function".into(),
            location: String::new(),
        }));
    };
    let mut handle = spawn_encoded(entry, args);
    let beat = ctx
        .info()
        .heartbeat_timeout
        .unwrap_or(crate::remote_config::DEFAULT_HEARTBEAT)
        / 3;
    let mut ticks = tokio::time::interval(beat.max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            outcome = std::future::poll_fn(|cx| handle.poll_outcome(cx)) => {
                return match outcome {
                    Ok(bytes) => Ok(bytes),
                    Err(Error::Cancelled { .. }) => Err(ActivityError::cancelled()),
                    Err(error) => Err(failure(Failure::from_error(&error))),
                };
            }
            () = ctx.cancelled() => {
                // Kills the worker process running it (the pool replaces it).
                handle.cancel();
                return Err(ActivityError::cancelled());
            }
            _ = ticks.tick() => {
                let _ = ctx.record_heartbeat(()).await;
            }
        }
    }
}

/// A failure for the caller: retryable only when its worker process died.
fn failure(failure: Failure) -> ActivityError {
    let kind = failure.kind;
    let location = failure.location.into_bytes();
    let builder = ApplicationFailure::builder(failure.message)
        .type_name(kind.name().to_owned())
        .non_retryable(!kind.retryable());
    ActivityError::application(if location.is_empty() {
        builder.build()
    } else {
        builder.details(location).build()
    })
}
