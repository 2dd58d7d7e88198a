//! Maps engine errors onto the exception classes of `bigarrays.errors`, each of which
//! derives from `BigArrayError` and from the builtin a Python user would catch.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::error::Error;

fn class_name(e: &Error) -> &'static str {
    match e {
        Error::LayerNotFound { .. } | Error::NotFound { .. } => "LayerNotFoundError",
        Error::LayerExists { .. } => "LayerExistsError",
        Error::Info { .. } => "InfoError",
        Error::MissingChunk { .. } => "MissingChunkError",
        Error::ChunkDecode { .. } => "ChunkDecodeError",
        Error::Store { .. } | Error::Changed { .. } => "StoreError",
        Error::PermissionDenied { .. } => "PermissionDeniedError",
        Error::OutOfBounds { .. } => "OutOfBoundsError",
        Error::InvalidArgument { .. } => "InvalidArgumentError",
        Error::Internal { .. } => "BigArrayError",
        Error::Interrupted => "CancelledError",
    }
}

/// The Python exception for an engine error.
pub fn to_pyerr(e: Error) -> PyErr {
    if let Error::Interrupted = e {
        return super::interrupt::take_raised().unwrap_or_else(super::interrupt::interrupted_error);
    }
    let message = e.to_string();
    Python::attach(|py| {
        let class = py
            .import("bigarrays.errors")
            .and_then(|m| m.getattr(class_name(&e)))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, message),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}
