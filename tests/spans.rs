//! `tracing` context crosses into tasks: the span current where an unsync function is called
//! is the parent of the task's span, in every in-process mode and through combinators. And a
//! failure nobody read is reported as a `tracing` error event, once.
//!
//! A global subscriber records every event with the names of its enclosing spans. The tests
//! run one at a time (the last one waits for every task of the process).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Condvar, Mutex, MutexGuard, Once};

use tracing::field::{Field, Visit};
use tracing::{Event, Instrument, Level, Subscriber, info, info_span};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use unsync::{Unfinished, unsync};

mod common;
use common::{LIMIT, MODES, Mode, gated_panic, watchdog};

#[derive(Debug, Clone)]
struct Recorded {
    target: String,
    level: Level,
    fields: HashMap<String, String>,
    /// Names of the enclosing spans, outermost first.
    scope: Vec<String>,
}

static EVENTS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());
static RECORDED: Condvar = Condvar::new();
static SERIAL: Mutex<()> = Mutex::new(());

struct Recorder;

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        EVENTS.lock().unwrap().push(Recorded {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields: fields.0,
            scope,
        });
        RECORDED.notify_all();
    }
}

fn setup() -> MutexGuard<'static, ()> {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
            .expect("the only subscriber");
    });
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The events whose field `field` is `value`, waiting (up to `LIMIT`) until there are `n`.
fn events_with(field: &str, value: &str, n: usize) -> Vec<Recorded> {
    let matching = |events: &Vec<Recorded>| -> Vec<Recorded> {
        events
            .iter()
            .filter(|e| e.fields.get(field).is_some_and(|v| v.contains(value)))
            .cloned()
            .collect()
    };
    let events = RECORDED
        .wait_timeout_while(EVENTS.lock().unwrap(), LIMIT, |events| {
            matching(events).len() < n
        })
        .unwrap()
        .0;
    matching(&events)
}

#[unsync]
async fn emit_async(marker: String) {
    info!(marker);
}

#[unsync]
fn emit_thread(marker: String) {
    info!(marker);
}

#[unsync(parallel)]
fn emit_parallel(marker: String) {
    info!(marker);
}

fn emit(mode: Mode, marker: &str) -> Unfinished<()> {
    let marker = marker.to_owned();
    match mode {
        Mode::Async => emit_async(marker),
        Mode::Thread => emit_thread(marker),
        Mode::Parallel => emit_parallel(marker),
    }
}

fn scope_of(marker: &str) -> Vec<String> {
    let events = events_with("marker", marker, 1);
    assert_eq!(events.len(), 1, "{marker}");
    events[0].scope.clone()
}

#[test]
fn the_call_site_span_is_the_parent_of_the_task_span_in_every_mode() {
    let _serial = setup();
    watchdog(LIMIT, || {
        for mode in MODES {
            let sync_marker = format!("sync caller {mode:?}");
            let request = info_span!("request", id = 7);
            request.in_scope(|| emit(mode, &sync_marker)).result();
            assert_eq!(scope_of(&sync_marker), ["request", "unsync_task"]);

            let async_marker = format!("async caller {mode:?}");
            let caller =
                async { emit(mode, &async_marker).await }.instrument(info_span!("handler"));
            futures::executor::block_on(caller);
            assert_eq!(scope_of(&async_marker), ["handler", "unsync_task"]);

            // Nested: a task called from inside a task nests under it.
            let nested_marker = format!("nested {mode:?}");
            let marker = nested_marker.clone();
            let outer = info_span!("outer")
                .in_scope(|| unsync::spawn_blocking(move || emit(mode, &marker).result()));
            outer.result();
            assert_eq!(
                scope_of(&nested_marker),
                ["outer", "unsync_task", "unsync_task"]
            );

            // No span at the call site: nothing is carried.
            let bare_marker = format!("no span {mode:?}");
            emit(mode, &bare_marker).result();
            assert!(scope_of(&bare_marker).is_empty());
        }
    });
}

#[test]
fn combinators_carry_the_span_too() {
    let _serial = setup();
    watchdog(LIMIT, || {
        let span = info_span!("pipeline");
        let mapped = span.in_scope(|| {
            unsync::spawn_parallel(|| 2).map(|n| {
                info!(marker = "in map");
                n
            })
        });
        assert_eq!(mapped.result(), 2);
        assert_eq!(scope_of("in map"), ["pipeline", "unsync_task"]);
        let chained =
            span.in_scope(|| Unfinished::ready(()).then(|()| emit(Mode::Thread, "after then")));
        chained.result();
        // The continuation is called inside the `then` task, so its task nests under it.
        assert_eq!(
            scope_of("after then"),
            ["pipeline", "unsync_task", "unsync_task"]
        );
    });
}

#[test]
fn an_unread_failure_is_one_tracing_error_event() {
    let _serial = setup();
    watchdog(LIMIT, || {
        for mode in MODES {
            let msg = format!("nobody reads this {mode:?}");
            let (open, handle) = gated_panic(mode, &msg);
            drop(handle);
            open.set(());
            assert_eq!(unsync::shutdown(LIMIT), 0);
            let reports = events_with("error", &msg, 1);
            assert_eq!(reports.len(), 1);
            let report = &reports[0];
            assert_eq!(report.target, "unsync");
            assert_eq!(report.level, Level::ERROR);
            let task = match mode {
                Mode::Async => "spans::common::panics_async",
                Mode::Thread => "spans::common::panics_thread",
                Mode::Parallel => "spans::common::panics_parallel",
            };
            assert_eq!(report.fields["task"], task);
        }
    });
}

#[test]
fn with_a_subscriber_nothing_goes_to_stderr() {
    let output = common::run_child_test("child_drops_a_failure_with_a_subscriber");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.lines().any(|line| line.starts_with("unsync: ")),
        "{stderr}"
    );
}

#[test]
#[ignore = "run by with_a_subscriber_nothing_goes_to_stderr"]
fn child_drops_a_failure_with_a_subscriber() {
    let _serial = setup();
    let (open, handle) = gated_panic(Mode::Thread, "reported to tracing only");
    drop(handle);
    open.set(());
    assert_eq!(unsync::shutdown(LIMIT), 0);
    assert_eq!(events_with("error", "reported to tracing only", 1).len(), 1);
}
