//! Any Python `MutableMapping[str, bytes]` as a store: the "wrap any key-value store"
//! extension point. Keys are `<prefix>/<key>` (just `<key>` with an empty prefix).

use async_trait::async_trait;
use bytes::Bytes;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::error::{Error, Result};
use crate::store::Store;

pub struct MappingStore {
    mapping: Py<PyAny>,
    prefix: String,
}

impl std::fmt::Debug for MappingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappingStore({:?})", self.prefix)
    }
}

impl MappingStore {
    pub fn new(mapping: Py<PyAny>, prefix: &str) -> Self {
        MappingStore {
            mapping,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// A store error naming the key, except for exceptions that are not `Exception`s
    /// (`KeyboardInterrupt` from Ctrl-C while the mapping's code ran, `SystemExit`): those
    /// stop the operation and reach the caller as they are.
    fn error(&self, py: Python<'_>, key: &str, e: PyErr) -> Error {
        if super::interrupt::keep_if_not_exception(py, &e) {
            return Error::Interrupted;
        }
        Error::store(&self.url_of(key), format!("the mapping raised {e}"))
    }
}

#[async_trait]
impl Store for MappingStore {
    fn url_of(&self, key: &str) -> String {
        format!("mapping:{}", self.full_key(key))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Python::attach(
            |py| match self.mapping.bind(py).get_item(self.full_key(key)) {
                Ok(value) => value
                    .extract::<PyBackedBytes>()
                    .map(|v| Some(Bytes::copy_from_slice(&v)))
                    .map_err(|e| self.error(py, key, e.into())),
                Err(e) if e.is_instance_of::<PyKeyError>(py) => Ok(None),
                Err(e) => Err(self.error(py, key, e)),
            },
        )
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        Python::attach(|py| {
            self.mapping
                .bind(py)
                .set_item(self.full_key(key), PyBytes::new(py, &value))
                .map_err(|e| self.error(py, key, e))
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Python::attach(
            |py| match self.mapping.bind(py).del_item(self.full_key(key)) {
                Err(e) if !e.is_instance_of::<PyKeyError>(py) => Err(self.error(py, key, e)),
                _ => Ok(()),
            },
        )
    }
}
