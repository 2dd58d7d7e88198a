//! `_core._store_conformance`: the store contract's checks (`store::conformance`) run from
//! Python on any store a layer could live in, so the Python tests can hold S3 (moto) and
//! Python mappings to the contract that `cargo test` holds the memory and local stores to.

use std::collections::HashMap;

use pyo3::exceptions::PyAssertionError;
use pyo3::prelude::*;

use crate::error::Error;
use crate::store::conformance::{self, Failure};

/// Runs the store contract's checks in the directory `dir` of the store `url` names (or of
/// the mapping `store`, under the prefix `url`): the names of the checks that ran, or
/// `AssertionError` naming the broken rule (a store failure raises as usual).
#[pyfunction]
#[pyo3(signature = (url, storage_options=None, store=None, dir="conformance"))]
pub fn _store_conformance(
    py: Python<'_>,
    url: &str,
    storage_options: Option<HashMap<String, String>>,
    store: Option<Py<PyAny>>,
    dir: &str,
) -> PyResult<Vec<String>> {
    let options = super::layer::store_options(storage_options);
    let outcome = super::detached(py, || {
        let handle = super::layer::open_store(url, store, true, &options)?;
        let writer = handle.writer(dir)?;
        Ok::<_, Error>(crate::runtime::io().block_on(conformance::run(&**writer, dir)))
    })?;
    match outcome {
        Ok(ran) => Ok(ran.into_iter().map(String::from).collect()),
        Err(Failure::Store(e)) => Err(e.into()),
        Err(contract) => Err(PyAssertionError::new_err(contract.to_string())),
    }
}
