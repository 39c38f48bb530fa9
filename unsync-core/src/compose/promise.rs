//! [`promise`]: a handle completed by hand, for bridging callback APIs into unsync.
//!
//! It is a bare completion cell with no task behind it: the [`Promise`] is the completing side
//! (as an executor's is), the [`Unfinished`] the reading side.

use std::fmt;

use crate::handle::Unfinished;
use crate::handle::completion::{Completer, Completion};

/// The completing side of a [`promise`]: [`set`](Promise::set) it once, from any thread.
///
/// Dropped without being set (the callback never came, its owner went away), it resolves the
/// handle to [`Error::Cancelled`](crate::Error::Cancelled) for the task `"promise"`, so that no
/// reader waits forever.
///
/// ```
/// let (promise, handle) = unsync::promise::<&str>();
/// drop(promise);
/// let error = handle.catch().result().unwrap_err();
/// assert_eq!(error, unsync::Error::Cancelled { task: "promise" });
/// ```
pub struct Promise<T> {
    completer: Completer<T>,
}

/// A handle completed by hand: returns the [`Promise`] to complete it with, and the
/// [`Unfinished`] that resolves to the value given to [`Promise::set`].
///
/// Use it to bring callback-based APIs into unsync: hand the promise to the callback, return
/// the handle. Setting twice is impossible (`set` consumes the promise); a promise dropped
/// unset resolves the handle to [`Error::Cancelled`](crate::Error::Cancelled).
///
/// ```
/// use unsync::Unfinished;
///
/// // A callback API, as found in many C libraries' bindings.
/// fn read_async(path: &str, done: impl FnOnce(usize) + Send + 'static) {
///     let len = path.len();
///     std::thread::spawn(move || done(len));
/// }
///
/// fn read(path: &str) -> Unfinished<usize> {
///     let (promise, handle) = unsync::promise();
///     read_async(path, move |len| promise.set(len));
///     handle
/// }
///
/// assert_eq!(read("/etc/hosts").result(), 10);
/// let (unset, handle) = unsync::promise::<u8>();
/// drop(unset);
/// assert!(handle.catch().result().is_err());
/// ```
pub fn promise<T: Send + 'static>() -> (Promise<T>, Unfinished<T>) {
    let cell = Completion::pending("promise");
    let promise = Promise {
        completer: Completer::new(cell.clone()),
    };
    (promise, Unfinished::from_cell(cell))
}

impl<T> Promise<T> {
    /// Complete the handle with `value`: every reader (and clone) of the handle gets it. If
    /// the handle was cancelled meanwhile, the value is dropped.
    ///
    /// ```
    /// let (promise, handle) = unsync::promise();
    /// std::thread::spawn(move || promise.set("from another thread"));
    /// assert_eq!(handle.result(), "from another thread");
    /// ```
    pub fn set(self, value: T) {
        self.completer.complete(Ok(value));
    }

    /// Whether the handle was cancelled (through [`Unfinished::cancel`], a timeout, or a
    /// derived handle), so that producing the value is no longer needed.
    ///
    /// ```
    /// let (promise, handle) = unsync::promise::<u32>();
    /// assert!(!promise.is_cancelled());
    /// handle.cancel();
    /// assert!(promise.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.completer.cell().is_cancelled()
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promise")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
