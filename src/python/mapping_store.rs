//! Any Python `MutableMapping[str, bytes]` as a store: the "wrap any key-value store"
//! extension point. Keys are `<prefix>/<key>` (just `<key>` with an empty prefix). A mapping
//! hands out whole values only, keeps no metadata and has no atomic compare-and-swap: ranges
//! are cut from the whole value, and conditional puts are refused.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::error::{Error, Result};
use crate::store::{self, Listed, Object, PutMode, PutOptions, Ranged, ReadStore, Store};

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

    /// The keys (relative to the prefix) under the directory `dir`, read from the mapping's
    /// `keys()` before anything is done with them, so a caller may delete them.
    fn keys_under(&self, dir: &str) -> Result<Vec<String>> {
        let full = format!("{}/", self.full_key(dir));
        let skip = match self.prefix.as_str() {
            "" => 0,
            p => p.len() + 1,
        };
        Python::attach(|py| {
            let mapping = self.mapping.bind(py);
            // A copy of the keys first: iterating a dict that another thread changes raises.
            let keys = mapping
                .call_method0("keys")
                .and_then(|k| py.import("builtins")?.getattr("list")?.call1((k,)))
                .and_then(|k| k.try_iter())
                .map_err(|e| self.error(py, dir, e))?;
            let mut found = Vec::new();
            for key in keys {
                let key = key.map_err(|e| self.error(py, dir, e))?;
                // Keys that are not strings are no layer's.
                if let Ok(key) = key.extract::<String>() {
                    if key.starts_with(&full) {
                        found.push(key[skip..].to_string());
                    }
                }
            }
            Ok(found)
        })
    }

    /// A store error naming the key, except for exceptions that are not `Exception`s
    /// (`KeyboardInterrupt` from Ctrl-C while the mapping's code ran, `SystemExit`): those
    /// stop the operation and reach the caller as they are.
    fn error(&self, py: Python<'_>, key: &str, e: PyErr) -> Error {
        if super::interrupt::keep_if_not_exception(py, &e) {
            return Error::Interrupted;
        }
        Error::Store {
            url: self.url_of(key),
            reason: format!("the mapping raised {e}"),
            source: Some(Box::new(e)),
        }
    }

    /// The bytes under `key`, or `None` when the mapping raises `KeyError`.
    fn get_value(&self, key: &str) -> Result<Option<Bytes>> {
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
}

#[async_trait]
impl ReadStore for MappingStore {
    fn url_of(&self, key: &str) -> String {
        format!("mapping:{}", self.full_key(key))
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        Ok(self.get_value(key)?.map(|bytes| Object {
            bytes,
            content_encoding: None,
            version: None,
        }))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>> {
        Ok(self
            .get_value(key)?
            .map(|whole| store::range_of(&whole, range)))
    }

    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
        let Some(whole) = self.get_value(key)? else {
            return Ok(None);
        };
        store::ranges_of(&self.url_of(key), &whole, ranges).map(Some)
    }

    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        _tag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        // No ETags here: whatever is there (as `get_ranges` with the one range).
        let got = self.get_ranges(key, std::slice::from_ref(&range)).await?;
        Ok(got.and_then(|parts| parts.into_iter().next()))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Python::attach(
            |py| match self.mapping.bind(py).get_item(self.full_key(key)) {
                Ok(value) => value
                    .len()
                    .map(|n| Some(n as u64))
                    .map_err(|e| self.error(py, key, e)),
                Err(e) if e.is_instance_of::<PyKeyError>(py) => Ok(None),
                Err(e) => Err(self.error(py, key, e)),
            },
        )
    }

    async fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let keys = self.keys_under(dir)?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            // A key another thread removed meanwhile is simply not there.
            if let Some(size) = self.size(&key).await? {
                found.push(Listed { key, size });
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl Store for MappingStore {
    fn conditional_puts(&self) -> bool {
        false
    }

    async fn put_opts(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        if options.mode != PutMode::Overwrite {
            return Err(Error::store(
                &self.url_of(key),
                "a mapping has no conditional puts (check Store::conditional_puts first)",
            ));
        }
        if options.content_encoding.is_some() {
            return Err(Error::store(
                &self.url_of(key),
                "a mapping keeps no per-object metadata (Content-Encoding)",
            ));
        }
        Python::attach(|py| {
            self.mapping
                .bind(py)
                .set_item(self.full_key(key), PyBytes::new(py, &value))
                .map(|()| true)
                .map_err(|e| self.error(py, key, e))
        })
    }

    async fn delete_dir(&self, dir: &str) -> Result<()> {
        for key in self.keys_under(dir)? {
            self.delete(&key).await?;
        }
        Ok(())
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
