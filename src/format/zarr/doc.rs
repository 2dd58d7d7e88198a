//! Reading one Zarr metadata document (`zarr.json`, `.zarray`, `.zattrs`, `.zgroup`) field by
//! field, so that every error names the array's URL, the file and the field at fault.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One metadata file of the node at `url`, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub url: &'a str,
    pub file: &'static str,
}

impl<'a> Doc<'a> {
    pub fn new(url: &'a str, file: &'static str) -> Self {
        Doc { url, file }
    }

    /// Malformed metadata: an `InfoError` naming the field.
    pub fn bad(&self, field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::metadata(self.url, self.file, field, reason)
    }

    /// Well-formed metadata asking for something this engine does not implement (a data
    /// type, a chunk grid, an extension): an `InvalidArgumentError`, as for unknown encodings.
    pub fn unsupported(&self, field: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::invalid(format!(
            "{}: {} field '{}': {reason}",
            self.url,
            self.file,
            field.into()
        ))
    }

    /// The file's bytes as a JSON object. serde_json refuses nesting deeper than 128 levels,
    /// so a hostile file cannot exhaust the stack.
    pub fn object(&self, bytes: &[u8]) -> Result<Map<String, Value>> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| self.bad(self.file, format!("not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(map),
            _ => Err(self.bad(self.file, "not a JSON object")),
        }
    }

    /// A required field.
    pub fn field<'m>(&self, map: &'m Map<String, Value>, name: &str) -> Result<&'m Value> {
        map.get(name).ok_or_else(|| self.bad(name, "missing"))
    }

    /// A list of non-negative integers.
    pub fn u64_list(&self, value: &Value, field: &str) -> Result<Vec<u64>> {
        let list = value
            .as_array()
            .ok_or_else(|| self.bad(field, "not a list of non-negative integers"))?;
        list.iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.bad(field, format!("{v} is not a non-negative integer")))
            })
            .collect()
    }
}
