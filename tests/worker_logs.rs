//! `tracing` events and spans recorded inside a `cpu_bound` function, in a worker process,
//! reach this process's subscriber: with their message, fields and level, under the span
//! current at the call site, with the worker's pid; and only at the levels this subscriber
//! records (DEBUG here: a TRACE event stays in the worker).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber, info_span};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use unsync::unsync;

mod common;
use common::{LIMIT, PidReports, report_pid, watchdog};

#[derive(Debug, Clone)]
struct Recorded {
    target: String,
    level: Level,
    fields: HashMap<String, String>,
    /// The enclosing spans, outermost first: name and fields.
    scope: Vec<(String, String)>,
}

static EVENTS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

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

/// Keeps every span's fields as text, for the scope of the events under it.
struct SpanFields(String);

struct Recorder;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut text: Vec<String> = fields.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.sort();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(text.join(" ")));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| {
                        let fields = s
                            .extensions()
                            .get::<SpanFields>()
                            .map(|f| f.0.clone())
                            .unwrap_or_default();
                        (s.name().to_owned(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        EVENTS.lock().unwrap().push(Recorded {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields: fields.0,
            scope,
        });
    }
}

#[unsync(cpu_bound)]
fn square_logged(n: u64) -> u64 {
    tracing::info!(n, kind = "square", "computing the square of {n}");
    let step = tracing::debug_span!("multiply", factor = n);
    let _entered = step.enter();
    tracing::debug!(done = true, "multiplied");
    tracing::trace!("too verbose for the parent");
    n * n
}

/// The recording subscriber, for every test of this file.
fn record() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(Recorder)
                .with(LevelFilter::DEBUG),
        )
        .expect("the only subscriber");
    });
}

#[test]
fn worker_events_reach_the_caller_under_its_span() {
    record();
    watchdog(LIMIT, || {
        let request = info_span!("request", id = 7);
        let squared = request.in_scope(|| square_logged(12));
        assert_eq!(squared.result(), 144);
        let events = EVENTS.lock().unwrap().clone();
        let from_worker: Vec<&Recorded> = events
            .iter()
            .filter(|e| e.target == "unsync::worker")
            .collect();
        let info = from_worker
            .iter()
            .find(|e| {
                e.fields
                    .get("message")
                    .is_some_and(|m| m == "computing the square of 12")
            })
            .unwrap_or_else(|| panic!("the info event did not arrive: {events:#?}"));
        assert_eq!(info.level, Level::INFO);
        assert_eq!(info.fields["fields"], "n=12 kind=square");
        assert_eq!(info.fields["target"], "worker_logs");
        let pid: u32 = info.fields["pid"].parse().unwrap();
        assert_ne!(pid, std::process::id(), "from the worker process");
        assert_eq!(info.scope, [("request".to_owned(), "id=7".to_owned())]);

        let debug = from_worker
            .iter()
            .find(|e| e.fields.get("message").is_some_and(|m| m == "multiplied"))
            .unwrap_or_else(|| panic!("the debug event did not arrive: {events:#?}"));
        assert_eq!(debug.level, Level::DEBUG);
        assert_eq!(debug.fields["fields"], "done=true");
        assert_eq!(debug.scope.len(), 2, "{debug:#?}");
        assert_eq!(debug.scope[0].0, "request");
        assert_eq!(debug.scope[1].0, "worker_span");
        assert!(
            debug.scope[1].1.contains("name=multiply") && debug.scope[1].1.contains("factor=12"),
            "{debug:#?}"
        );
        assert!(
            !from_worker.iter().any(|e| e
                .fields
                .get("message")
                .is_some_and(|m| m.contains("verbose"))),
            "a TRACE event crossed although the parent records DEBUG at most: {events:#?}"
        );
    });
}

/// Logs, then runs until the test lets it end (by writing a byte to its pid connection).
#[unsync(cpu_bound)]
fn logs_then_waits(reports: String) -> u64 {
    use std::io::Read;
    tracing::info!("halfway through a long call");
    let mut connection = report_pid(&reports);
    let mut go = [0];
    connection.read_exact(&mut go).unwrap();
    7
}

#[test]
fn a_running_calls_events_arrive_before_it_ends() {
    record();
    watchdog(LIMIT, || {
        use std::io::Write;
        let reports = PidReports::bind();
        let call = logs_then_waits(reports.addr());
        let (_pid, mut connection) = reports.next();
        // The call cannot end before the test writes below: the event must come while it runs
        // (the worker sends a running call's records every 100 ms; the watchdog fails the test
        // if they only came with the answer).
        let arrived = || {
            EVENTS.lock().unwrap().iter().any(|e| {
                e.target == "unsync::worker"
                    && e.fields
                        .get("message")
                        .is_some_and(|m| m == "halfway through a long call")
            })
        };
        while !arrived() {
            std::thread::yield_now();
        }
        assert!(!call.is_done());
        connection.write_all(&[1]).unwrap();
        assert_eq!(call.result(), 7);
    });
}
