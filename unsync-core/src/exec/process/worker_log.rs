//! `tracing` across the process boundary: events and spans a `cpu_bound` body records in its
//! worker reach the parent's subscriber, under the span current at the call site.
//!
//! - The parent puts in each `CALL` frame the most verbose level its subscriber records
//!   ([`wanted`]: `LevelFilter::current()`, a static read; 0 when nothing is recorded), and
//!   keeps the call-site span with the call only then.
//! - The worker installs [`Forward`] as its global subscriber. While a call runs, it records
//!   what the call's level allows (one atomic load per callsite hit otherwise) as `SPAN` and
//!   `EVENT` frames in a buffer, bounded at [`BUFFER_LIMIT`] bytes per call (beyond it,
//!   records are dropped); the frames go out just before the call's answer.
//! - The parent's I/O thread re-emits them (see [`Replay`]), target `unsync::worker`, at their
//!   level, as children of the call-site span, with the worker's `pid`, the worker-side
//!   `target`, and the worker's fields as one `fields` string (`tracing` needs static field
//!   names). A worker span becomes a `worker_span` span with its name in field `name`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Span, Subscriber};

use super::protocol::Message;

/// Most bytes of records kept per call.
pub(crate) const BUFFER_LIMIT: usize = 1 << 20;
/// Most bytes of one text (a message, the fields) in a record.
const TEXT_LIMIT: usize = 16 << 10;

/// The level byte of the protocol: 0 none, 1 ERROR ... 5 TRACE.
fn level_byte(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// The level byte of what the parent's subscriber records (checked per call: cheap).
#[inline]
pub(crate) fn wanted() -> u8 {
    match LevelFilter::current().into_level() {
        None => 0,
        Some(level) => level_byte(&level),
    }
}

// The worker side. A worker runs one call at a time, so the call's state is global (and
// threads the body starts, rayon's say, are recorded too).

static LEVEL: AtomicU8 = AtomicU8::new(0);
static CALL: AtomicU64 = AtomicU64::new(0);
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

thread_local! {
    /// The worker-side spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Install [`Forward`] as the worker's subscriber (unless one already is).
pub(crate) fn install() {
    let _ = tracing::subscriber::set_global_default(Forward);
}

/// Call `id` starts, its records wanted up to `level`.
pub(crate) fn begin(id: u64, level: u8) {
    CALL.store(id, Ordering::Relaxed);
    LEVEL.store(level, Ordering::Release);
}

/// The records of the running call so far, as frames (a stream sends them with its items).
pub(crate) fn take() -> Vec<u8> {
    if LEVEL.load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    std::mem::take(&mut *crate::exec::lock(&BUFFER))
}

/// The call ended: its records, as frames (empty when none).
pub(crate) fn end() -> Vec<u8> {
    if LEVEL.swap(0, Ordering::AcqRel) == 0 {
        return Vec::new();
    }
    std::mem::take(&mut *crate::exec::lock(&BUFFER))
}

/// The worker's subscriber: records go to the buffer as frames. See the module docs.
struct Forward;

/// A record's fields: the message apart, the others as `name=value` separated by spaces.
#[derive(Default)]
struct Fields {
    message: String,
    others: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push(field, format_args!("{value}"));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push(field, format_args!("{value:?}"));
        }
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.others.is_empty() {
            self.others.push(' ');
        }
        let _ = write!(self.others, "{}={value}", field.name());
    }
}

/// `text` cut to at most [`TEXT_LIMIT`] bytes, on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(TEXT_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn record(message: Message<'_>) {
    let mut buffer = crate::exec::lock(&BUFFER);
    if buffer.len() < BUFFER_LIMIT {
        message.encode(&mut buffer);
    }
}

fn current_span() -> u64 {
    ENTERED.with(|e| e.borrow().last().copied().unwrap_or(0))
}

impl Subscriber for Forward {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level changes with every call: ask each time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_byte(metadata.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let span = NEXT_SPAN.fetch_add(1, Ordering::Relaxed);
        let parent = if attrs.is_root() {
            0
        } else {
            attrs.parent().map_or_else(current_span, Id::into_u64)
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        record(Message::Span {
            id: CALL.load(Ordering::Relaxed),
            span,
            parent,
            level: level_byte(attrs.metadata().level()),
            name: attrs.metadata().name(),
            fields: cut(&fields.others),
        });
        Id::from_u64(span)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let parent = if event.is_root() {
            0
        } else {
            event.parent().map_or_else(current_span, Id::into_u64)
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        record(Message::Event {
            id: CALL.load(Ordering::Relaxed),
            parent,
            level: level_byte(event.metadata().level()),
            target: event.metadata().target(),
            fields: cut(&fields.others),
            message: cut(&fields.message),
        });
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(at) = entered.iter().rposition(|s| *s == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

/// The parent side: one worker's records re-emitted, under the spans of the calls they belong
/// to. Worker spans live until their call is answered.
#[derive(Default)]
pub(crate) struct Replay {
    spans: HashMap<u64, Span>,
}

impl Replay {
    /// Re-emit one `SPAN` or `EVENT` frame of a call whose call-site span is `call_span`, from
    /// worker `pid`.
    pub(crate) fn replay(&mut self, message: &Message<'_>, call_span: &Span, pid: u32) {
        match *message {
            Message::Span {
                span,
                parent,
                level,
                name,
                fields,
                ..
            } => {
                let parent = self.spans.get(&parent).unwrap_or(call_span);
                macro_rules! span_at {
                    ($level:expr) => {
                        tracing::span!(target: "unsync::worker", parent: parent, $level, "worker_span", pid, name, fields)
                    };
                }
                let made = match level {
                    1 => span_at!(Level::ERROR),
                    2 => span_at!(Level::WARN),
                    3 => span_at!(Level::INFO),
                    4 => span_at!(Level::DEBUG),
                    _ => span_at!(Level::TRACE),
                };
                self.spans.insert(span, made);
            }
            Message::Event {
                parent,
                level,
                target,
                fields,
                message,
                ..
            } => {
                let parent = self.spans.get(&parent).unwrap_or(call_span);
                macro_rules! event_at {
                    ($level:expr) => {
                        tracing::event!(target: "unsync::worker", parent: parent, $level, pid, target, fields, "{message}")
                    };
                }
                match level {
                    1 => event_at!(Level::ERROR),
                    2 => event_at!(Level::WARN),
                    3 => event_at!(Level::INFO),
                    4 => event_at!(Level::DEBUG),
                    _ => event_at!(Level::TRACE),
                }
            }
            _ => {}
        }
    }

    /// A call was answered: its worker spans close.
    pub(crate) fn call_ended(&mut self) {
        self.spans.clear();
    }
}
