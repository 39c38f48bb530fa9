//! The `metrics` feature: the figures of `unsync::stats()` reach the `metrics` recorder (here
//! `metrics-util`'s `DebuggingRecorder`) under their documented names and labels. Run with
//! `cargo test --features metrics --test metrics`. (One test: the recorder is process-wide and
//! installed before the first task.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use unsync::{Error, unsync};

mod common;
use common::{LIMIT, MODES, gated, gated_panic};

#[unsync(cpu_bound)]
fn double(n: u64) -> u64 {
    n * 2
}

#[unsync(cpu_bound)]
fn fails(message: String) -> u64 {
    panic!("{message}")
}

/// `name{labels}` (labels sorted) to value: counters and gauges as `f64`, histograms as the
/// number of samples.
fn read(snapshotter: &metrics_util::debugging::Snapshotter) -> HashMap<String, f64> {
    let mut figures = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        *figures.entry(name).or_insert(0.0) += value;
    }
    figures
}

#[test]
fn the_figures_reach_the_metrics_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the first recorder of this binary");
    common::watchdog(LIMIT, move || {
        for mode in MODES {
            for value in 0..8_u32 {
                let (open, ok) = gated(mode, value);
                open.set(());
                assert_eq!(ok.result(), value);
            }
            let (open, panics) = gated_panic(mode, "on purpose");
            open.set(());
            assert!(matches!(
                panics.catch().result(),
                Err(Error::Panicked { .. })
            ));
            let (open, slow) = gated(mode, 0_u32);
            let timed_out = slow.timeout(Duration::from_millis(5)).result();
            assert!(matches!(timed_out, Err(Error::TimedOut { .. })));
            drop(open);
        }
        for n in 0..8 {
            assert_eq!(double(n).result(), n * 2);
        }
        assert!(matches!(
            fails("on purpose".into()).catch().result(),
            Err(Error::Panicked { .. })
        ));

        // The ends are published a moment after the handles resolve: poll until they are in.
        let expected = [
            // The timeout counts as a failure, with the panic.
            ("async", 8.0, 2.0, 0.0),
            ("thread", 8.0, 2.0, 0.0),
            ("parallel", 8.0, 2.0, 0.0),
            ("process", 8.0, 1.0, 0.0),
        ];
        let deadline = Instant::now() + LIMIT;
        let figures = loop {
            let figures = read(&snapshotter);
            let get = |name: &str| figures.get(name).copied().unwrap_or(0.0);
            let done = expected.iter().all(|(mode, ok, failed, cancelled)| {
                get(&format!(
                    "unsync_tasks_total{{mode={mode},outcome=succeeded}}"
                )) == *ok
                    && get(&format!("unsync_tasks_total{{mode={mode},outcome=failed}}")) == *failed
                    && get(&format!(
                        "unsync_tasks_total{{mode={mode},outcome=cancelled}}"
                    )) == *cancelled
                    && get(&format!("unsync_tasks_running{{mode={mode}}}")) == 0.0
                    && get(&format!("unsync_tasks_queued{{mode={mode}}}")) == 0.0
            });
            if done {
                break figures;
            }
            assert!(Instant::now() < deadline, "{figures:#?}");
            std::thread::yield_now();
        };
        let get = |name: &str| figures.get(name).copied().unwrap_or(0.0);
        for (mode, ok, failed, cancelled) in expected {
            assert_eq!(
                get(&format!("unsync_tasks_submitted_total{{mode={mode}}}")),
                ok + failed + cancelled,
                "{mode}: {figures:#?}"
            );
            // One task in 8 per submitting thread is timed: at least one of each mode here.
            for histogram in ["unsync_task_run_seconds", "unsync_task_queue_wait_seconds"] {
                let samples = get(&format!("{histogram}{{mode={mode}}}"));
                assert!(
                    (1.0..=ok + failed + cancelled).contains(&samples),
                    "{mode}: {histogram}: {figures:#?}"
                );
            }
        }
        assert!(get("unsync_workers_started_total{}") >= 1.0, "{figures:#?}");
        assert!(get("unsync_workers_alive{}") >= 1.0, "{figures:#?}");
        assert_eq!(get("unsync_workers_died_total{}"), 0.0, "{figures:#?}");
        // The same figures as `stats()`.
        let stats = unsync::stats();
        assert_eq!(
            stats.mode(unsync::Mode::Thread).succeeded as f64,
            get("unsync_tasks_total{mode=thread,outcome=succeeded}")
        );
    });
}
