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

impl From<Error> for PyErr {
    /// The exception of `bigarrays.errors` for the error's kind, with its message; an
    /// interruption re-raises the exception that interrupted (`KeyboardInterrupt`).
    fn from(e: Error) -> PyErr {
        if let Error::Interrupted = e {
            return super::interrupt::take_raised()
                .unwrap_or_else(super::interrupt::interrupted_error);
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
}

/// The Python exception for an engine error (for `map_err`; `?` converts by itself).
pub fn to_pyerr(e: Error) -> PyErr {
    e.into()
}
