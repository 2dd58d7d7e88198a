//! Zarr array metadata (v2 `.zarray` + `.zattrs`, v3 `zarr.json`) as one [`ArrayMetadata`]:
//! v2's order, byte order, filters and compressor become the equivalent v3 codec chain, so
//! the engine knows one chain. Parsing checks everything a reader relies on (ranks, chunk
//! sizes, the data type, the fill value, extensions) and names the field at fault.

use serde_json::{json, Map, Value};

use super::chunk_key::ChunkKeyEncoding;
use super::codec_json;
use super::codecs::CodecSpec;
use super::doc::Doc;
use super::dtype;
use super::fill_value::{self, Version};
use super::v2_codecs;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Which Zarr format version a node is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZarrFormat {
    /// `.zarray` / `.zgroup` / `.zattrs`.
    V2,
    /// `zarr.json`.
    V3,
}

/// The most decoded bytes one chunk (for a sharded array: one inner chunk) may hold. A chunk
/// is decoded into one allocation, so a hostile file asking for a petabyte chunk must fail at
/// parse time rather than at the allocation; 2 GiB is also about where Blosc stops (its
/// buffers are limited to 2^31 bytes), and real arrays use chunks of a few MiB.
pub const MAX_CHUNK_BYTES: u64 = 1 << 31;

/// The most decoded bytes one shard (the chunk grid cell of a sharded array) may hold. Shards
/// are read and written by inner chunk, never decoded whole, so they may be far larger than a
/// chunk; the limit keeps the shard index (16 bytes per inner chunk) and whole-shard rewrites
/// within reason.
pub const MAX_SHARD_BYTES: u64 = 1 << 40;

/// The most dimensions an array may have (NumPy's limit before 2.0, and zarr-python's).
pub const MAX_RANK: usize = 32;

/// Extents must stay below 2^63: indexes are signed 64-bit in NumPy, TensorStore and zarr-python.
const MAX_EXTENT: u64 = i64::MAX as u64;

/// A Zarr array's metadata, in v3 terms whichever version stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayMetadata {
    /// The version it is stored in.
    pub zarr_format: ZarrFormat,
    /// The array's extent per dimension, C order (the last dimension varies fastest).
    pub shape: Vec<u64>,
    /// The regular chunk grid's cell (for a sharded v3 array: the shard shape).
    pub chunk_shape: Vec<u64>,
    /// The element type.
    pub dtype: DType,
    /// One element, little-endian bytes, `dtype.itemsize()` long (complex: re then im).
    pub fill_value: Vec<u8>,
    /// How a chunk's grid index becomes its key.
    pub chunk_key_encoding: ChunkKeyEncoding,
    /// The whole codec chain in v3 terms. v2 is translated: order "F" -> a `transpose`
    /// codec with the reversed order; the byte order of the dtype ('<', '>', '|') -> a `bytes`
    /// codec with "endian"; the compressor -> its v3-style codec (`gzip`{level}, `zlib`{level},
    /// `zstd`{level, checksum}, `blosc`{cname, clevel, shuffle as v3 names, typesize, blocksize},
    /// `lz4`{acceleration}); v2 filters -> an InvalidArgument error naming the filter unless
    /// there is an exact v3 equivalent (a compressor used as a filter).
    pub codecs: Vec<CodecSpec>,
    /// v3 `dimension_names` (v2 has none).
    pub dimension_names: Option<Vec<Option<String>>>,
    /// v3 "attributes" or v2 `.zattrs`.
    pub attributes: Map<String, Value>,
}

impl ArrayMetadata {
    /// Parses the `zarr.json` of the array at `url` (`url` only names it in errors).
    pub fn parse_v3(url: &str, zarr_json: &[u8]) -> Result<Self> {
        let doc = Doc::new(url, "zarr.json");
        let obj = doc.object(zarr_json)?;
        check_format(&doc, &obj, 3)?;
        match obj.get("node_type").and_then(Value::as_str) {
            Some("array") => {}
            Some("group") => return Err(doc.bad("node_type", "a group, not an array")),
            _ => return Err(doc.bad("node_type", "not \"array\"")),
        }
        check_extensions(&doc, &obj, V3_ARRAY_FIELDS)?;
        let shape = doc.u64_list(doc.field(&obj, "shape")?, "shape")?;
        let dtype = dtype::parse_v3(&doc, doc.field(&obj, "data_type")?)?;
        let chunk_shape = parse_chunk_grid(&doc, doc.field(&obj, "chunk_grid")?)?;
        let chunk_key_encoding =
            ChunkKeyEncoding::parse_v3(&doc, doc.field(&obj, "chunk_key_encoding")?)?;
        let fill_value =
            fill_value::parse(&doc, dtype, doc.field(&obj, "fill_value")?, Version::V3)?;
        let codecs = codec_json::parse_list(&doc, "codecs", doc.field(&obj, "codecs")?)?;
        match obj.get("storage_transformers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) if list.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(doc.unsupported(
                    "storage_transformers",
                    "storage transformers are not supported",
                ))
            }
            Some(_) => return Err(doc.bad("storage_transformers", "not a list")),
        }
        let dimension_names = match obj.get("dimension_names") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_dimension_names(&doc, v, shape.len())?),
        };
        let attributes = parse_attributes(&doc, obj.get("attributes"), "attributes")?;
        let sharded = check_inner_chunks(&doc, &codecs, shape.len(), dtype)?;
        let cell_limit = if sharded {
            MAX_SHARD_BYTES
        } else {
            MAX_CHUNK_BYTES
        };
        let field = "chunk_grid.configuration.chunk_shape";
        check_grid(&doc, &shape, &chunk_shape, field, dtype, cell_limit)?;
        Ok(ArrayMetadata {
            zarr_format: ZarrFormat::V3,
            shape,
            chunk_shape,
            dtype,
            fill_value,
            chunk_key_encoding,
            codecs,
            dimension_names,
            attributes,
        })
    }

    /// Parses the `.zarray` (and `.zattrs`, when there is one) of the array at `url`.
    pub fn parse_v2(url: &str, zarray: &[u8], zattrs: Option<&[u8]>) -> Result<Self> {
        let doc = Doc::new(url, ".zarray");
        let obj = doc.object(zarray)?;
        check_format(&doc, &obj, 2)?;
        let shape = doc.u64_list(doc.field(&obj, "shape")?, "shape")?;
        let chunk_shape = doc.u64_list(doc.field(&obj, "chunks")?, "chunks")?;
        let (dtype, endian) = dtype::parse_v2(&doc, doc.field(&obj, "dtype")?)?;
        check_grid(&doc, &shape, &chunk_shape, "chunks", dtype, MAX_CHUNK_BYTES)?;
        let fill_value = fill_value::parse(
            &doc,
            dtype,
            obj.get("fill_value").unwrap_or(&Value::Null),
            Version::V2,
        )?;
        let codecs = v2_codecs::to_v3(
            &doc,
            shape.len(),
            dtype,
            endian,
            doc.field(&obj, "order")?,
            obj.get("filters"),
            obj.get("compressor"),
        )?;
        let chunk_key_encoding = ChunkKeyEncoding::parse_v2(&doc, obj.get("dimension_separator"))?;
        let attributes = match zattrs {
            None => Map::new(),
            Some(bytes) => Doc::new(url, ".zattrs").object(bytes)?,
        };
        Ok(ArrayMetadata {
            zarr_format: ZarrFormat::V2,
            shape,
            chunk_shape,
            dtype,
            fill_value,
            chunk_key_encoding,
            codecs,
            dimension_names: None,
            attributes,
        })
    }

    /// The metadata files to write for this array: [("zarr.json", bytes)] for v3,
    /// [(".zarray", bytes), (".zattrs", bytes)] for v2 (.zattrs only when attributes are
    /// non-empty). v2 output translates the codec chain back and refuses, naming the codec,
    /// chains v2 cannot express (sharding, crc32c, other transposes); v2 has no dimension
    /// names, so they are not written. JSON as zarr-python writes it (keys in its order,
    /// two-space indent). What `parse_v3`/`parse_v2` would refuse is refused here too.
    pub fn to_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        if self.fill_value.len() != self.dtype.itemsize() {
            return Err(Error::invalid(format!(
                "fill_value: {} bytes for {} (whose items are {} bytes)",
                self.fill_value.len(),
                self.dtype,
                self.dtype.itemsize()
            )));
        }
        const URL: &str = "the new array";
        let files = match self.zarr_format {
            ZarrFormat::V3 => {
                let bytes = pretty(&self.v3_json())?;
                Self::parse_v3(URL, &bytes)?;
                vec![("zarr.json", bytes)]
            }
            ZarrFormat::V2 => {
                let zarray = pretty(&self.v2_json()?)?;
                Self::parse_v2(URL, &zarray, None)?;
                let mut files = vec![(".zarray", zarray)];
                if !self.attributes.is_empty() {
                    files.push((".zattrs", pretty(&Value::Object(self.attributes.clone()))?));
                }
                files
            }
        };
        Ok(files)
    }

    fn v3_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("shape".into(), json!(self.shape));
        obj.insert("data_type".into(), json!(dtype::v3_name(self.dtype)));
        obj.insert(
            "chunk_grid".into(),
            json!({"name": "regular", "configuration": {"chunk_shape": self.chunk_shape}}),
        );
        obj.insert(
            "chunk_key_encoding".into(),
            self.chunk_key_encoding.to_v3_json(),
        );
        obj.insert(
            "fill_value".into(),
            fill_value::to_json(self.dtype, &self.fill_value, Version::V3),
        );
        obj.insert(
            "codecs".into(),
            Value::Array(self.codecs.iter().map(codec_json::to_json).collect()),
        );
        obj.insert("attributes".into(), Value::Object(self.attributes.clone()));
        if let Some(names) = &self.dimension_names {
            obj.insert("dimension_names".into(), json!(names));
        }
        obj.insert("zarr_format".into(), json!(3));
        obj.insert("node_type".into(), json!("array"));
        obj.insert("storage_transformers".into(), json!([]));
        Value::Object(obj)
    }

    fn v2_json(&self) -> Result<Value> {
        let separator = match self.chunk_key_encoding {
            ChunkKeyEncoding::V2 { separator } => separator,
            ChunkKeyEncoding::Default { .. } => {
                return Err(Error::invalid(
                    "chunk_key_encoding: Zarr v2 keys have no \"c\" prefix; use the \"v2\" \
                     chunk key encoding for a v2 array",
                ))
            }
        };
        let chain = v2_codecs::to_v2("the new array", self.shape.len(), &self.codecs)?;
        let mut obj = Map::new();
        obj.insert("shape".into(), json!(self.shape));
        obj.insert("chunks".into(), json!(self.chunk_shape));
        obj.insert(
            "dtype".into(),
            json!(dtype::v2_typestr(self.dtype, chain.endian)),
        );
        obj.insert(
            "fill_value".into(),
            fill_value::to_json(self.dtype, &self.fill_value, Version::V2),
        );
        obj.insert("order".into(), json!(chain.order.to_string()));
        obj.insert("filters".into(), chain.filters);
        obj.insert("dimension_separator".into(), json!(separator.to_string()));
        obj.insert("compressor".into(), chain.compressor);
        obj.insert("zarr_format".into(), json!(2));
        Ok(Value::Object(obj))
    }

    /// The number of chunks (shards, for a sharded array) along each dimension (0 along a
    /// dimension whose chunk extent is 0, which only a hand-built description can hold).
    pub fn grid_shape(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&n, &c)| if c == 0 { 0 } else { n.div_ceil(c) })
            .collect()
    }
}

/// The fields zarr.json of an array may hold; any other must be an extension object that says
/// `"must_understand": false`.
const V3_ARRAY_FIELDS: &[&str] = &[
    "zarr_format",
    "node_type",
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
    "attributes",
    "storage_transformers",
    "dimension_names",
];

/// `zarr_format` must be `version`.
pub(crate) fn check_format(doc: &Doc, obj: &Map<String, Value>, version: u64) -> Result<()> {
    let found = doc.field(obj, "zarr_format")?;
    if found.as_u64() != Some(version) {
        return Err(doc.bad("zarr_format", format!("{found}, expected {version}")));
    }
    Ok(())
}

/// Fields beyond `known` are extensions: ignored when they say `"must_understand": false`,
/// refused otherwise (the v3 spec's rule: an extension must be understood unless it says not).
pub(crate) fn check_extensions(doc: &Doc, obj: &Map<String, Value>, known: &[&str]) -> Result<()> {
    for (key, value) in obj {
        if known.contains(&key.as_str()) {
            continue;
        }
        let optional = value.get("must_understand") == Some(&Value::Bool(false));
        if !optional {
            return Err(doc.unsupported(
                key.as_str(),
                "an extension this reader does not understand (and it does not say \
                 \"must_understand\": false)",
            ));
        }
    }
    Ok(())
}

/// An object of attributes (absent: empty).
pub(crate) fn parse_attributes(
    doc: &Doc,
    value: Option<&Value>,
    field: &str,
) -> Result<Map<String, Value>> {
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(doc.bad(field, "not an object")),
    }
}

/// The `chunk_grid`'s cell; only the `regular` grid is supported.
fn parse_chunk_grid(doc: &Doc, value: &Value) -> Result<Vec<u64>> {
    let obj = value
        .as_object()
        .ok_or_else(|| doc.bad("chunk_grid", "not an object"))?;
    match obj.get("name").and_then(Value::as_str) {
        Some("regular") => {}
        Some(other) => {
            return Err(doc.unsupported(
                "chunk_grid.name",
                format!("chunk grid {other:?} is not supported (only \"regular\")"),
            ))
        }
        None => return Err(doc.bad("chunk_grid.name", "missing or not a string")),
    }
    let field = "chunk_grid.configuration.chunk_shape";
    let chunks = obj
        .get("configuration")
        .and_then(|c| c.get("chunk_shape"))
        .ok_or_else(|| doc.bad(field, "missing"))?;
    doc.u64_list(chunks, field)
}

fn parse_dimension_names(doc: &Doc, value: &Value, rank: usize) -> Result<Vec<Option<String>>> {
    let field = "dimension_names";
    let list = value
        .as_array()
        .ok_or_else(|| doc.bad(field, "not a list"))?;
    if list.len() != rank {
        return Err(doc.bad(field, format!("{} names for {rank} dimensions", list.len())));
    }
    list.iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(doc.bad(field, format!("{v} is not a string or null"))),
        })
        .collect()
}

/// Checks shape and chunk shape together: equal ranks, extents below 2^63, chunks of at
/// least one element and at most `max_bytes` decoded.
fn check_grid(
    doc: &Doc,
    shape: &[u64],
    chunks: &[u64],
    field: &str,
    dtype: DType,
    max_bytes: u64,
) -> Result<()> {
    check_shape(doc, "shape", shape, None, dtype, None)?;
    check_shape(
        doc,
        field,
        chunks,
        Some(shape.len()),
        dtype,
        Some(max_bytes),
    )
}

fn check_shape(
    doc: &Doc,
    field: &str,
    shape: &[u64],
    rank: Option<usize>,
    dtype: DType,
    max_bytes: Option<u64>,
) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(doc.bad(
            field,
            format!("{} dimensions (at most {MAX_RANK})", shape.len()),
        ));
    }
    if let Some(rank) = rank {
        if shape.len() != rank {
            return Err(doc.bad(
                field,
                format!("{} dimensions, but shape has {rank}", shape.len()),
            ));
        }
        if let Some(i) = shape.iter().position(|&n| n == 0) {
            return Err(doc.bad(
                field,
                format!("0 in dimension {i} (chunks hold at least one element)"),
            ));
        }
    }
    if let Some(n) = shape.iter().find(|&&n| n > MAX_EXTENT) {
        return Err(doc.bad(field, format!("{n} is not below 2^63")));
    }
    if let Some(max_bytes) = max_bytes {
        let bytes = shape
            .iter()
            .try_fold(dtype.itemsize() as u64, |a, &n| a.checked_mul(n));
        if bytes.is_none_or(|b| b > max_bytes) {
            return Err(doc.bad(
                field,
                format!("{shape:?} of {dtype} is over {max_bytes} bytes"),
            ));
        }
    }
    Ok(())
}

/// Whether the chain shards (its array-to-bytes codec, after any transposes, which keep the
/// rank, is `sharding_indexed`); if so, checks the inner chunk shape's rank and decoded size.
/// The rest of the sharding configuration is the codec's to check.
fn check_inner_chunks(doc: &Doc, codecs: &[CodecSpec], rank: usize, dtype: DType) -> Result<bool> {
    let Some((i, codec)) = codecs
        .iter()
        .enumerate()
        .find(|(_, c)| c.name != "transpose")
    else {
        return Ok(false);
    };
    if codec.name != "sharding_indexed" {
        return Ok(false);
    }
    let field = format!("codecs[{i}].configuration.chunk_shape");
    let inner = codec
        .configuration
        .get("chunk_shape")
        .ok_or_else(|| doc.bad(field.as_str(), "missing"))?;
    let inner = doc.u64_list(inner, &field)?;
    check_shape(
        doc,
        &field,
        &inner,
        Some(rank),
        dtype,
        Some(MAX_CHUNK_BYTES),
    )?;
    Ok(true)
}

fn pretty(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::internal(format!("JSON output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "mem://arr";

    fn v3_doc() -> Value {
        json!({
            "zarr_format": 3, "node_type": "array", "shape": [100, 200, 300],
            "data_type": "uint16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [10, 20, 30]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 7,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                       {"name": "gzip", "configuration": {"level": 5}}],
            "attributes": {"a": 1}, "dimension_names": ["z", null, "x"]
        })
    }

    fn v2_doc() -> Value {
        json!({
            "zarr_format": 2, "shape": [100, 200], "chunks": [10, 20], "dtype": ">i4",
            "compressor": {"id": "zstd", "level": 3}, "fill_value": -1, "order": "F",
            "filters": null, "dimension_separator": "/"
        })
    }

    fn v3(doc: &Value) -> Result<ArrayMetadata> {
        ArrayMetadata::parse_v3(URL, &serde_json::to_vec(doc).unwrap())
    }

    fn v2(doc: &Value) -> Result<ArrayMetadata> {
        ArrayMetadata::parse_v2(URL, &serde_json::to_vec(doc).unwrap(), None)
    }

    /// `doc` with the value at the JSON pointer `path` replaced (or removed, for `None`).
    fn with(doc: &Value, path: &str, value: Option<Value>) -> Value {
        let mut doc = doc.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        let parent = doc.pointer_mut(parent).unwrap();
        match (parent, value) {
            (Value::Object(o), Some(v)) => {
                o.insert(key.into(), v);
            }
            (Value::Object(o), None) => {
                o.remove(key);
            }
            (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
            _ => unreachable!(),
        }
        doc
    }

    /// The error for `doc`, checked to name the URL and every string in `names`.
    fn fails<T: std::fmt::Debug>(result: Result<T>, names: &[&str]) -> Error {
        let e = result.unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains(URL) || message.contains("the new array"),
            "{message}"
        );
        for name in names {
            assert!(message.contains(name), "{name:?} not in {message}");
        }
        e
    }

    #[test]
    fn parses_v3() {
        let m = v3(&v3_doc()).unwrap();
        assert_eq!(m.zarr_format, ZarrFormat::V3);
        assert_eq!(m.shape, [100, 200, 300]);
        assert_eq!(m.chunk_shape, [10, 20, 30]);
        assert_eq!(m.dtype, DType::U16);
        assert_eq!(m.fill_value, 7u16.to_le_bytes());
        assert_eq!(m.chunk_key_encoding.key(&[1, 2, 3]), "c/1/2/3");
        assert_eq!(m.codecs.len(), 2);
        assert_eq!(m.codecs[1].configuration["level"], json!(5));
        assert_eq!(
            m.dimension_names,
            Some(vec![Some("z".into()), None, Some("x".into())])
        );
        assert_eq!(m.attributes["a"], json!(1));
        assert_eq!(m.grid_shape(), [10, 10, 10]);
    }

    #[test]
    fn parses_v2_into_a_v3_chain() {
        let m = v2(&v2_doc()).unwrap();
        assert_eq!(m.zarr_format, ZarrFormat::V2);
        assert_eq!(m.dtype, DType::I32);
        assert_eq!(m.fill_value, (-1i32).to_le_bytes());
        assert_eq!(m.chunk_key_encoding.key(&[1, 2]), "1/2");
        let names: Vec<_> = m.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["transpose", "bytes", "zstd"]);
        assert_eq!(m.codecs[1].configuration["endian"], json!("big"));
        assert_eq!(m.codecs[2].configuration["checksum"], json!(false));
        let zattrs = br#"{"_ARRAY_DIMENSIONS": ["y", "x"]}"#;
        let m = ArrayMetadata::parse_v2(URL, &serde_json::to_vec(&v2_doc()).unwrap(), Some(zattrs))
            .unwrap();
        assert_eq!(m.attributes["_ARRAY_DIMENSIONS"], json!(["y", "x"]));
        let e = ArrayMetadata::parse_v2(URL, &serde_json::to_vec(&v2_doc()).unwrap(), Some(b"7"))
            .unwrap_err();
        assert!(e.to_string().contains(".zattrs"), "{e}");
    }

    #[test]
    fn round_trips_through_files() {
        for m in [v3(&v3_doc()).unwrap(), v2(&v2_doc()).unwrap()] {
            let files = m.to_files().unwrap();
            let back = match m.zarr_format {
                ZarrFormat::V3 => {
                    assert_eq!(files.len(), 1);
                    assert_eq!(files[0].0, "zarr.json");
                    ArrayMetadata::parse_v3(URL, &files[0].1).unwrap()
                }
                ZarrFormat::V2 => {
                    assert_eq!(files.len(), 1, "no .zattrs without attributes");
                    assert_eq!(files[0].0, ".zarray");
                    ArrayMetadata::parse_v2(URL, &files[0].1, None).unwrap()
                }
            };
            assert_eq!(back, m);
        }
        // The v2 output reads as zarr-python writes it.
        let files = v2(&v2_doc()).unwrap().to_files().unwrap();
        let text = String::from_utf8(files[0].1.clone()).unwrap();
        assert!(text.starts_with("{\n  \"shape\": [\n    100,"), "{text}");
        let out: Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(out["dtype"], json!(">i4"));
        assert_eq!(out["order"], json!("F"));
        assert_eq!(out["compressor"], json!({"id": "zstd", "level": 3}));
    }

    #[test]
    fn v3_chains_that_v2_cannot_hold_are_refused_by_name() {
        let mut m = v3(&v3_doc()).unwrap();
        m.zarr_format = ZarrFormat::V2;
        m.chunk_key_encoding = ChunkKeyEncoding::V2 { separator: '.' };
        m.attributes = Map::new();
        let files = m.to_files().unwrap();
        let out: Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(out["dtype"], json!("<u2"));
        assert_eq!(out["compressor"], json!({"id": "gzip", "level": 5}));
        m.codecs.push(CodecSpec {
            name: "crc32c".into(),
            configuration: Map::new(),
        });
        fails(m.to_files(), &["\"crc32c\""]);
        m.codecs = vec![CodecSpec {
            name: "sharding_indexed".into(),
            configuration: Map::new(),
        }];
        fails(m.to_files(), &["\"sharding_indexed\""]);
        let mut m = v3(&v3_doc()).unwrap();
        m.zarr_format = ZarrFormat::V2;
        let e = m.to_files().unwrap_err();
        assert!(e.to_string().contains("chunk_key_encoding"), "{e}");
        let mut m = v3(&v3_doc()).unwrap();
        m.fill_value = vec![0; 3];
        assert!(m.to_files().unwrap_err().to_string().contains("fill_value"));
        m.fill_value = vec![0; 2];
        m.chunk_shape = vec![1, 1];
        assert!(m.to_files().is_err(), "ranks are checked on output too");
    }

    #[test]
    fn shapes_and_chunks_are_checked() {
        let d = v3_doc();
        let cs = "/chunk_grid/configuration/chunk_shape";
        fails(
            v3(&with(&d, cs, Some(json!([10, 20])))),
            &["chunk_shape", "2 dimensions"],
        );
        fails(
            v3(&with(&d, cs, Some(json!([10, 0, 30])))),
            &["chunk_shape", "0 in dimension 1"],
        );
        fails(
            v3(&with(&d, cs, Some(json!([10, -1, 30])))),
            &["chunk_shape", "-1"],
        );
        fails(
            v3(&with(&d, cs, Some(json!([10, 2.5, 30])))),
            &["chunk_shape"],
        );
        fails(v3(&with(&d, cs, Some(json!("10")))), &["chunk_shape"]);
        // 2^16 * 2^16 * 2 bytes = 8 GiB chunks.
        fails(
            v3(&with(&d, cs, Some(json!([65536, 65536, 1])))),
            &["chunk_shape", "bytes"],
        );
        fails(
            v3(&with(&d, cs, Some(json!([u64::MAX, u64::MAX, u64::MAX])))),
            &["chunk_shape"],
        );
        fails(
            v3(&with(&d, "/shape", Some(json!([1u64 << 63, 1, 1])))),
            &["shape", "2^63"],
        );
        fails(v3(&with(&d, "/shape", Some(json!([-5, 1, 1])))), &["shape"]);
        fails(v3(&with(&d, "/shape", None)), &["shape", "missing"]);
        let deep = vec![1; MAX_RANK + 1];
        let wide = with(
            &with(&d, "/shape", Some(json!(deep))),
            cs,
            Some(json!(deep)),
        );
        fails(
            v3(&with(&wide, "/dimension_names", None)),
            &["shape", "dimensions"],
        );
        // Huge shapes are fine when chunks are sane; zero extents too.
        let huge = with(&d, "/shape", Some(json!([i64::MAX, i64::MAX, 0])));
        assert_eq!(v3(&huge).unwrap().grid_shape()[2], 0);
        // A 0-d array.
        let scalar = with(&with(&d, "/shape", Some(json!([]))), cs, Some(json!([])));
        let scalar = v3(&with(&scalar, "/dimension_names", None)).unwrap();
        assert_eq!(scalar.chunk_key_encoding.key(&[]), "c");
        let dv2 = v2_doc();
        fails(
            v2(&with(&dv2, "/chunks", Some(json!([10])))),
            &[".zarray", "chunks"],
        );
        fails(
            v2(&with(&dv2, "/chunks", Some(json!([0, 10])))),
            &["chunks"],
        );
        fails(
            v2(&with(&dv2, "/chunks", Some(json!([1 << 20, 1 << 20])))),
            &["chunks"],
        );
    }

    #[test]
    fn sharded_chunk_limits_apply_to_inner_chunks() {
        let sharded = with(
            &v3_doc(),
            "/codecs",
            Some(json!([{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [5, 10, 15],
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, "crc32c"],
                "index_location": "end"}}])),
        );
        assert!(v3(&sharded).is_ok());
        let cs = "/chunk_grid/configuration/chunk_shape";
        // 4096^3 uint16 shards (128 GiB) are fine: shards are never decoded whole.
        let big = with(&sharded, cs, Some(json!([4096, 4096, 4096])));
        assert!(v3(&with(&big, "/shape", Some(json!([8192, 8192, 8192])))).is_ok());
        let inner = "/codecs/0/configuration/chunk_shape";
        fails(
            v3(&with(&sharded, inner, Some(json!([5, 10])))),
            &["codecs[0].configuration.chunk_shape"],
        );
        fails(
            v3(&with(&sharded, inner, Some(json!([5, 0, 1])))),
            &["codecs[0]"],
        );
        fails(
            v3(&with(&sharded, inner, Some(json!([4096, 4096, 4096])))),
            &["bytes"],
        );
    }

    #[test]
    fn unsupported_features_are_named() {
        let d = v3_doc();
        let e = fails(
            v3(&with(&d, "/chunk_grid/name", Some(json!("rectilinear")))),
            &["\"rectilinear\""],
        );
        assert!(matches!(e, Error::InvalidArgument { .. }));
        let e = fails(
            v3(&with(&d, "/data_type", Some(json!("string")))),
            &["\"string\"", "data_type"],
        );
        assert!(matches!(e, Error::InvalidArgument { .. }));
        let st = json!([{"name": "offset", "configuration": {}}]);
        fails(
            v3(&with(&d, "/storage_transformers", Some(st))),
            &["storage_transformers"],
        );
        assert!(v3(&with(&d, "/storage_transformers", Some(json!([])))).is_ok());
        let ext = |mu: Value| with(&d, "/my_extension", Some(json!({"must_understand": mu})));
        assert!(v3(&ext(json!(false))).is_ok());
        fails(v3(&ext(json!(true))), &["my_extension"]);
        fails(v3(&with(&d, "/unknown", Some(json!(1)))), &["unknown"]);
        fails(
            v3(&with(&d, "/fill_value", Some(json!(70000)))),
            &["fill_value", "uint16"],
        );
        fails(
            v3(&with(&d, "/fill_value", None)),
            &["fill_value", "missing"],
        );
        fails(
            v3(&with(&d, "/zarr_format", Some(json!(2)))),
            &["zarr_format"],
        );
        fails(
            v3(&with(&d, "/node_type", Some(json!("group")))),
            &["node_type"],
        );
        fails(
            v3(&with(&d, "/dimension_names", Some(json!(["z"])))),
            &["dimension_names"],
        );
        fails(
            v3(&with(&d, "/dimension_names", Some(json!([1, 2, 3])))),
            &["dimension_names"],
        );
        fails(
            v3(&with(&d, "/attributes", Some(json!([])))),
            &["attributes"],
        );
        let dv2 = v2_doc();
        fails(v2(&with(&dv2, "/dtype", Some(json!("<U5")))), &["\"<U5\""]);
        fails(v2(&with(&dv2, "/dtype", Some(json!("|O")))), &["\"|O\""]);
        fails(
            v2(&with(&dv2, "/dtype", Some(json!("<M8[ns]")))),
            &["\"<M8[ns]\""],
        );
        fails(
            v2(&with(&dv2, "/dtype", Some(json!([["a", "<i4"]])))),
            &["structured"],
        );
        let delta = json!([{"id": "delta", "dtype": ">i4"}]);
        fails(
            v2(&with(&dv2, "/filters", Some(delta))),
            &["\"delta\"", "filters[0]"],
        );
        fails(
            v2(&with(&dv2, "/zarr_format", Some(json!(3)))),
            &["zarr_format"],
        );
        fails(v2(&with(&dv2, "/order", Some(json!("A")))), &["order"]);
        fails(
            v2(&with(&dv2, "/dimension_separator", Some(json!("-")))),
            &["dimension_separator"],
        );
    }

    #[test]
    fn hostile_documents_fail_cleanly() {
        for bytes in [
            &b""[..],
            b"not json",
            b"[]",
            b"null",
            b"{\"zarr_format\": 3",
            b"\xff\xfe",
        ] {
            let e = ArrayMetadata::parse_v3(URL, bytes).unwrap_err();
            assert!(e.to_string().contains("zarr.json"), "{e}");
            assert!(ArrayMetadata::parse_v2(URL, bytes, None).is_err());
        }
        // Nesting deep enough to overflow a naive recursive parser.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(ArrayMetadata::parse_v3(URL, deep.as_bytes()).is_err());
        let nested = format!(
            "{{\"zarr_format\": 3, \"attributes\": {}1{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        );
        assert!(ArrayMetadata::parse_v3(URL, nested.as_bytes()).is_err());
        // Absurd codec lists.
        let d = v3_doc();
        let many = vec![json!({"name": "gzip", "configuration": {"level": 1}}); 10_000];
        fails(
            v3(&with(&d, "/codecs", Some(json!(many)))),
            &["codecs", "10000"],
        );
        fails(v3(&with(&d, "/codecs", Some(json!([])))), &["codecs"]);
        fails(
            v3(&with(&d, "/codecs", Some(json!({"name": "bytes"})))),
            &["codecs"],
        );
        fails(v3(&with(&d, "/codecs", Some(json!([7])))), &["codecs[0]"]);
        fails(
            v3(&with(&d, "/codecs", Some(json!([{"configuration": {}}])))),
            &["codecs[0].name"],
        );
        let extra = json!([{"name": "bytes", "surprise": 1}]);
        fails(
            v3(&with(&d, "/codecs", Some(extra))),
            &["codecs[0].surprise"],
        );
        // Bare codec names are the spec's short form.
        let short = v3(&with(&d, "/codecs", Some(json!(["bytes", "crc32c"])))).unwrap();
        assert_eq!(short.codecs[1].name, "crc32c");
    }
}
