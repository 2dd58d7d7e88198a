//! The Zarr codec chain: array-to-array codecs, one array-to-bytes codec, bytes-to-bytes
//! codecs, each in its own file.

use serde_json::{Map, Value};

/// One codec as metadata names it: v3's `{"name": ..., "configuration": {...}}`. Version 2
/// metadata is translated into these too (see `metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecSpec {
    /// The codec's registered name (`"bytes"`, `"gzip"`, `"sharding_indexed"`, ...).
    pub name: String,
    /// Its configuration, empty when the metadata gives none.
    pub configuration: Map<String, Value>,
}
