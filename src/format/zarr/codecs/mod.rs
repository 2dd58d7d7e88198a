//! The Zarr codec chain: array-to-array codecs, one array-to-bytes codec, bytes-to-bytes
//! codecs, each in its own file, and [`CodecChain`] that validates and runs them.
//!
//! Names and configurations are those zarr-python 3 writes; version 2 compressors are
//! translated by `metadata` onto the same names (`zlib`, `lz4`, `gzip`, `zstd`, `blosc`).
//! Decoded chunks are always C-ordered little-endian elements.

mod blosc;
mod bytes;
mod chain;
mod config;
mod crc32c;
mod gzip;
mod lz4;
mod nd;
mod sharding;
mod transpose;
mod zlib;
mod zstd;

use serde_json::{Map, Value};

use crate::dtype::DType;
use crate::error::Error;

pub use chain::CodecChain;
pub use sharding::{IndexLocation, ShardingCodec};

/// One codec as metadata names it: v3's `{"name": ..., "configuration": {...}}`. Version 2
/// metadata is translated into these too (see `metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecSpec {
    /// The codec's registered name (`"bytes"`, `"gzip"`, `"sharding_indexed"`, ...).
    pub name: String,
    /// Its configuration, empty when the metadata gives none.
    pub configuration: Map<String, Value>,
}

impl CodecSpec {
    /// A spec from a name and configuration entries.
    pub fn new(name: &str, configuration: impl IntoIterator<Item = (&'static str, Value)>) -> Self {
        CodecSpec {
            name: name.to_string(),
            configuration: configuration
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// The v3 JSON object (`configuration` left out when empty, as zarr-python writes
    /// `crc32c` and one-byte `bytes`).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), self.name.clone().into());
        if !self.configuration.is_empty() {
            o.insert(
                "configuration".into(),
                Value::Object(self.configuration.clone()),
            );
        }
        Value::Object(o)
    }

    /// Parses a v3 codec object (`{"name": ..., "configuration": {...}}`, or a bare name
    /// string as some writers abbreviate configuration-less codecs).
    pub fn from_json(value: &Value) -> crate::error::Result<Self> {
        match value {
            Value::String(name) => Ok(CodecSpec::new(name, [])),
            Value::Object(o) => {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid(format!("codec {value}: no string field \"name\""))
                })?;
                let configuration = match o.get("configuration") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(c)) => c.clone(),
                    Some(_) => {
                        return Err(Error::invalid(format!(
                            "codec {name:?}: field \"configuration\" is not an object"
                        )))
                    }
                };
                Ok(CodecSpec {
                    name: name.to_string(),
                    configuration,
                })
            }
            _ => Err(Error::invalid(format!(
                "codec {value}: not an object with a \"name\""
            ))),
        }
    }
}

/// What a chunk holds before encoding: its shape (C order), data type, fill value bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRepr {
    /// The chunk's shape, slowest axis first.
    pub shape: Vec<u64>,
    /// The element type.
    pub dtype: DType,
    /// One element of the fill value, little-endian (`dtype.itemsize()` bytes).
    pub fill_value: Vec<u8>,
}

impl ChunkRepr {
    /// Elements in the chunk, `None` when the count overflows `usize`.
    pub fn num_elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
    }

    /// Decoded bytes in the chunk, `None` when the size overflows `usize`.
    pub fn byte_len(&self) -> Option<usize> {
        self.num_elements()?.checked_mul(self.dtype.itemsize())
    }

    /// Whether `decoded` (the chunk's C-ordered little-endian elements) holds nothing but the
    /// fill value: such chunks are not stored (zarr-python's `write_empty_chunks=False`).
    pub fn is_all_fill(&self, decoded: &[u8]) -> bool {
        nd::is_all(decoded, &self.fill_value)
    }

    /// The same chunk with another shape.
    pub(crate) fn with_shape(&self, shape: Vec<u64>) -> ChunkRepr {
        ChunkRepr {
            shape,
            dtype: self.dtype,
            fill_value: self.fill_value.clone(),
        }
    }
}

/// Why stored bytes do not decode through a codec chain. The engine names the chunk's key
/// with [`CodecError::at`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} codec: {reason}")]
pub struct CodecError {
    /// The codec that refused the bytes (`"gzip"`, `"sharding_indexed"`, ...).
    pub codec: &'static str,
    /// What is wrong, in words.
    pub reason: String,
}

impl CodecError {
    pub(crate) fn new(codec: &'static str, reason: impl Into<String>) -> Self {
        CodecError {
            codec,
            reason: reason.into(),
        }
    }

    /// The engine's decode error for the chunk stored under `key`, this error its source.
    pub fn at(self, key: &str) -> Error {
        Error::decode_source(key, Box::new(self))
    }
}

#[cfg(test)]
mod tests;
