//! Ctrl-C and cancellation for engine calls made from Python. The engine asks the hook
//! registered here while a calling thread waits (see `crate::interrupt`):
//!
//! - on Python's main thread, the hook takes the GIL back for a moment and runs
//!   `PyErr_CheckSignals`, which calls the Python signal handlers; when one raises
//!   (`KeyboardInterrupt` for Ctrl-C, or whatever a user's handler raises), the exception
//!   is kept here and the binding raises exactly it once the engine has stopped;
//! - on any thread, a `CancelToken` bound to the thread (`bind_cancel_token`) stops the
//!   call once cancelled, without the GIL: signal handlers run only on the main thread, so
//!   this is how the thread pools of `copy_to` and `downsample` stop their blocks.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

thread_local! {
    /// The exception a signal handler (or a mapping store's code) raised on this thread
    /// during an engine call, to be raised in place of the call's result.
    static RAISED: RefCell<Option<PyErr>> = const { RefCell::new(None) };
    /// Whether this thread is Python's main thread (the only one signal handlers run on);
    /// `None` until the hook first asks.
    static MAIN: Cell<Option<bool>> = const { Cell::new(None) };
    /// The token that cancels this thread's engine calls.
    static TOKEN: RefCell<Option<Py<CancelToken>>> = const { RefCell::new(None) };
    /// The tokens of the asyncio calls this thread runs as one engine call: it stops once
    /// every one of them is cancelled (see `async_calls`).
    static BATCH: RefCell<Vec<Py<CancelToken>>> = const { RefCell::new(Vec::new()) };
}

/// Registers the hook with the engine (at module import).
pub(crate) fn register() {
    crate::interrupt::set_hook(hook);
}

fn hook() -> bool {
    if token_cancelled() {
        return true;
    }
    if MAIN.get() == Some(false) {
        return false;
    }
    Python::attach(|py| {
        if !is_main_thread(py) {
            return false;
        }
        match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                RAISED.set(Some(e));
                true
            }
        }
    })
}

fn token_cancelled() -> bool {
    TOKEN.with_borrow(|t| t.as_ref().is_some_and(|t| t.get().is_cancelled()))
        || BATCH.with_borrow(|b| !b.is_empty() && b.iter().all(|t| t.get().is_cancelled()))
}

/// Binds the tokens of a batch of asyncio calls to the calling thread's engine calls (see
/// `BATCH`); returns the ones bound before.
pub(crate) fn bind_batch(tokens: Vec<Py<CancelToken>>) -> Vec<Py<CancelToken>> {
    BATCH.replace(tokens)
}

/// Whether the calling thread is Python's main thread (asked once per thread).
fn is_main_thread(py: Python<'_>) -> bool {
    if let Some(main) = MAIN.get() {
        return main;
    }
    let ask = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        Ok(main.is(&threading.call_method0("current_thread")?))
    };
    let main = ask().unwrap_or(false);
    MAIN.set(Some(main));
    main
}

/// The exception kept for this thread, if any (taken: it is raised once).
pub(crate) fn take_raised() -> Option<PyErr> {
    RAISED.take()
}

/// The exception for `Error::Interrupted` when no handler's exception was kept: the
/// thread's token was cancelled (`CancelledError`), or a signal arrived in a way that left
/// no exception here (`KeyboardInterrupt`).
pub(crate) fn interrupted_error() -> PyErr {
    if !token_cancelled() {
        return PyKeyboardInterrupt::new_err("interrupted");
    }
    Python::attach(|py| {
        match py
            .import("bigarrays.errors")
            .and_then(|m| m.getattr("CancelledError"))
        {
            Ok(class) => match class
                .call1(("cancelled: another part of the operation failed or was interrupted",))
            {
                Ok(e) => PyErr::from_value(e),
                Err(e) => e,
            },
            Err(_) => PyRuntimeError::new_err("cancelled"),
        }
    })
}

/// Turns an exception raised by Python code the engine called (a mapping store's method)
/// into an interruption when it is not an `Exception` (`KeyboardInterrupt`, `SystemExit`,
/// ...): those must reach the caller as they are, not as a store error. Kept for the
/// binding to raise when the call happened on the main thread (where it can be raised
/// again); elsewhere the caller gets a plain `KeyboardInterrupt`. False for ordinary
/// exceptions, which stay store errors.
pub(crate) fn keep_if_not_exception(py: Python<'_>, e: &PyErr) -> bool {
    if e.is_instance_of::<PyException>(py) {
        return false;
    }
    if is_main_thread(py) {
        RAISED.set(Some(e.clone_ref(py)));
    }
    true
}

/// Cancels the engine calls of the threads it is bound to (`bind_cancel_token`): each stops
/// within about 50 ms of `cancel()` and raises `bigarrays.errors.CancelledError`.
#[pyclass(frozen, module = "bigarrays._core")]
pub struct CancelToken {
    flag: AtomicBool,
}

impl CancelToken {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        CancelToken {
            flag: AtomicBool::new(false),
        }
    }

    /// Stops the engine calls of every thread this token is bound to.
    fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }
}

/// Binds `token` (or none) to the calling thread's engine calls; returns the one bound
/// before.
#[pyfunction]
pub fn bind_cancel_token(token: Option<Py<CancelToken>>) -> Option<Py<CancelToken>> {
    TOKEN.replace(token)
}
