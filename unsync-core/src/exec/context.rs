//! What crosses from the call site into a task: the current `tracing` span.
//!
//! Thread-locals do not follow a task to the thread that runs it, and neither does the span
//! that was current where an `#[unsync]` function was called. So each spawn captures it, and
//! the task runs inside a span of its own (`unsync_task`, level DEBUG, field `task`) whose
//! parent is the call-site span; if that span is filtered out, the task runs inside the
//! call-site span itself. Events and spans recorded by the task's body thus nest under the
//! caller's span, in every in-process mode.
//!
//! This sits on every spawn, so its common case is nearly free: with no `tracing` subscriber,
//! or no span entered at the call site, capturing is two atomic loads and nothing is carried.
//!
//! Any other context (a request id, a tenant, a task-local of your own) has to be carried by
//! hand: clone what the task needs into the function's arguments.

use tracing::Span;

/// The call-site context a task runs in. Boxed, so that the common case (nothing to carry)
/// adds one word to each task, not a whole `Span`.
pub(crate) struct Carried {
    span: Option<Box<Span>>,
}

impl Carried {
    /// The context current on this thread, for a task named `task`.
    #[inline]
    pub(crate) fn capture(task: &'static str) -> Carried {
        let current = Span::current();
        if current.is_disabled() {
            return Carried { span: None };
        }
        Carried::child_of(current, task)
    }

    #[cold]
    fn child_of(current: Span, task: &'static str) -> Carried {
        let own = tracing::debug_span!(target: "unsync", parent: &current, "unsync_task", task);
        Carried {
            span: Some(Box::new(if own.is_disabled() { current } else { own })),
        }
    }

    /// Whether there is nothing to carry (no span was current, or none is recorded).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.span.is_none()
    }

    /// Enter the carried span (if any) for as long as the guard lives.
    #[inline]
    pub(crate) fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.span.as_deref().map(Span::enter)
    }
}
