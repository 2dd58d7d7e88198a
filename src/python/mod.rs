//! PyO3 bindings: argument conversion and error mapping only. The logic is in the engine;
//! the Python-facing API (`BigArray`, indexing) is in `python/bigarrays/`.

mod async_calls;
mod errors;
mod interrupt;
mod layer;
mod mapping_store;
mod store_conformance;
mod threads;

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::PyArray1;
use pyo3::prelude::*;

use crate::error::{Error, Result};
use errors::to_pyerr;

/// Allocations above this go through `numpy.zeros`, which raises `MemoryError` (with the
/// size) when the memory is not there; `PyArray1::zeros` would panic on the null pointer.
const CHECKED_ALLOC: usize = 1 << 30;

/// A zeroed flat uint8 array of `len` bytes (calloc-backed: untouched pages cost nothing).
pub(crate) fn zeros(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyArray1<u8>>> {
    if len <= CHECKED_ALLOC {
        return Ok(PyArray1::<u8>::zeros(py, len, false));
    }
    let array = py.import("numpy")?.call_method1("zeros", (len, "uint8"))?;
    array.cast_into::<PyArray1<u8>>().map_err(PyErr::from)
}

/// Runs engine code so that a panic becomes an error instead of crossing into Python.
fn guarded<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Error::from_panic(p)))
}

/// Runs engine code with the GIL released. An exception a signal handler raised while the
/// engine waited (see `interrupt`) is raised in place of whatever the call returned: the
/// engine stops on it, but another error may have been recorded first.
fn detached<R: Send>(py: Python<'_>, f: impl FnOnce() -> Result<R> + Send) -> PyResult<R> {
    threads::settle(py)?;
    let result = py.detach(|| guarded(f));
    match interrupt::take_raised() {
        Some(raised) => Err(raised),
        None => result.map_err(to_pyerr),
    }
}

/// Each encoding name with the `info` scale keys that parameterise it (the codec registry).
#[pyfunction]
fn encoding_option_keys() -> std::collections::BTreeMap<&'static str, Vec<&'static str>> {
    crate::codec::registry::option_keys()
        .into_iter()
        .map(|(name, keys)| (name, keys.to_vec()))
        .collect()
}

/// The key a local writer's temporary file `name` belongs to (`<key>#<n>`), or `None` when
/// `name` is not one (for `bigarrays fsck`; writers remove such files once older than
/// `TEMPORARY_MAX_AGE_S`).
#[pyfunction]
fn temporary_of(name: &str) -> Option<&str> {
    crate::store::temporary_of(name)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encoding_option_keys, m)?)?;
    m.add_function(wrap_pyfunction!(temporary_of, m)?)?;
    m.add_class::<layer::Layer>()?;
    m.add_class::<interrupt::CancelToken>()?;
    m.add_function(wrap_pyfunction!(interrupt::bind_cancel_token, m)?)?;
    m.add_function(wrap_pyfunction!(store_conformance::_store_conformance, m)?)?;
    m.add_function(wrap_pyfunction!(threads::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::get_num_threads, m)?)?;
    interrupt::register();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "TEMPORARY_MAX_AGE_S",
        crate::store::TEMPORARY_MAX_AGE.as_secs(),
    )?;
    Ok(())
}
