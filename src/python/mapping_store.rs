//! Any Python `MutableMapping[str, bytes]` as a store: the "wrap any key-value store"
//! extension point. Keys are `<prefix>/<key>` (just `<key>` with an empty prefix). A mapping
//! hands out whole values only and keeps no metadata: ranges are cut from the whole value.
//!
//! Conditional puts need one optional method, `compare_and_set(key, expected, value) ->
//! bool`: store `value` only if the key holds exactly `expected` now (`None`: is absent),
//! atomically against the mapping's other writers. It is the smallest thing a locked dict
//! or a database (`UPDATE ... WHERE k = ? AND v = ?`) can make atomic. A version is then the
//! value itself, named by a 128-bit hash of it: a put on a version reads the value, checks
//! its hash and hands the value read as `expected`, so the mapping compares bytes. (Equal
//! bytes are the same version for a read-modify-write: what it repaints is unchanged.)
//! Without the method, conditional puts are refused and writers are last-writer-wins.

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
    /// Whether the mapping has a callable `compare_and_set` (see the module notes).
    compare_and_set: bool,
}

/// The method a mapping offers for conditional puts.
const COMPARE_AND_SET: &str = "compare_and_set";

/// The version of a mapping's value: a hash of its bytes (see the module notes).
fn version_of(bytes: &[u8]) -> store::Version {
    let hash = murmur3::murmur3_x64_128(&mut &bytes[..], 0).unwrap_or(0);
    store::Version {
        e_tag: Some(format!("{hash:032x}-{:x}", bytes.len())),
        version: None,
    }
}

impl std::fmt::Debug for MappingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappingStore({:?})", self.prefix)
    }
}

impl MappingStore {
    pub fn new(mapping: Py<PyAny>, prefix: &str) -> Self {
        let compare_and_set = Python::attach(|py| {
            mapping
                .bind(py)
                .getattr(COMPARE_AND_SET)
                .is_ok_and(|m| m.is_callable())
        });
        MappingStore {
            mapping,
            prefix: prefix.trim_matches('/').to_string(),
            compare_and_set,
        }
    }

    /// Calls the mapping's `compare_and_set(key, expected, value)`.
    fn compare_and_set(&self, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<bool> {
        Python::attach(|py| {
            let expected = expected.map(|e| PyBytes::new(py, e));
            self.mapping
                .bind(py)
                .call_method1(
                    COMPARE_AND_SET,
                    (self.full_key(key), expected, PyBytes::new(py, value)),
                )
                .and_then(|stored| stored.is_truthy())
                .map_err(|e| self.error(py, key, e))
        })
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
            version: self.compare_and_set.then(|| version_of(&bytes)),
            bytes,
            content_encoding: None,
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
        self.compare_and_set
    }

    async fn put_opts(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        if options.content_encoding.is_some() {
            return Err(Error::store(
                &self.url_of(key),
                "a mapping keeps no per-object metadata (Content-Encoding)",
            ));
        }
        match &options.mode {
            PutMode::Overwrite => {}
            _ if !self.compare_and_set => {
                return Err(Error::store(
                    &self.url_of(key),
                    "this mapping has no compare_and_set method, so no conditional puts \
                     (check Store::conditional_puts first)",
                ));
            }
            PutMode::IfAbsent => return self.compare_and_set(key, None, &value),
            PutMode::IfVersion(version) => {
                let Some(now) = self.get_value(key)? else {
                    return Ok(false);
                };
                if version_of(&now) != *version {
                    return Ok(false);
                }
                return self.compare_and_set(key, Some(&now), &value);
            }
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
