//! Composition and control on top of the handle and the executors, the same in every mode:
//! `combinators` ([`then`](crate::Unfinished::then), [`map`](crate::Unfinished::map),
//! [`timeout`](crate::Unfinished::timeout), [`join_all`](crate::join_all)),
//! `as_completed`, `promise` (a handle completed by hand) and `shutdown` (waiting for every
//! executor at the end of `main`), `stream` (an [`UnfinishedStream`](crate::UnfinishedStream)'s
//! `collect_vec` and `timeout`).

pub(crate) mod as_completed;
pub(crate) mod combinators;
pub(crate) mod promise;
pub(crate) mod shutdown;
pub(crate) mod stream;
