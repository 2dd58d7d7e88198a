//! The `info` file: parsed into typed fields for the engine, while the JSON object itself is
//! kept so that keys we do not know survive a rewrite.

use serde_json::{json, Map, Value};

use super::sharding::ShardingSpec;
pub use crate::codec::Encoding;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::ChunkGrid;

/// Coordinates and sizes are kept below 2^62 so that every sum of two fits in `i64`.
const MAX_COORD: i64 = 1 << 62;
/// A chunk larger than this (decoded) is refused: it would not fit a sane buffer.
const MAX_CHUNK_BYTES: u64 = 1 << 32;

/// One scale (mip level).
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// The chunk prefix relative to the layer root, normalised (no `.`/`..`, no slashes at
    /// either end).
    pub key: String,
    /// The scale's bounds and chunk size.
    pub grid: ChunkGrid,
    /// Voxel size in nanometers, `(x, y, z)`.
    pub resolution: [f64; 3],
    /// How its chunks are encoded.
    pub encoding: Encoding,
    /// Whether a `sharding` spec is present.
    pub sharded: bool,
    /// The parsed `sharding` spec when present; a malformed one is kept as its error
    /// `(field, reason)` so the layer still opens and IO on this scale raises.
    pub sharding: Option<std::result::Result<ShardingSpec, (String, String)>>,
}

/// A parsed `info` file.
#[derive(Debug, Clone)]
pub struct Info {
    json: Map<String, Value>,
    /// The voxel type (`data_type`).
    pub data_type: DType,
    /// Channels per voxel (`num_channels`).
    pub num_channels: usize,
    /// `type`: `image` or `segmentation`.
    pub layer_type: String,
    /// The scales, finest (mip 0) first.
    pub scales: Vec<Scale>,
}

/// What `create` needs to write a new single-scale layer.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// The layer extent in voxels, `(x, y, z)`.
    pub shape: [u64; 3],
    /// The voxel type.
    pub dtype: DType,
    /// The chunk edge in voxels, `(x, y, z)`.
    pub chunks: [u64; 3],
    /// The voxel coordinate of the layer's lowest corner.
    pub voxel_offset: [i64; 3],
    /// Voxel size in nanometers, `(x, y, z)`.
    pub resolution: [f64; 3],
    /// Channels per voxel.
    pub num_channels: usize,
    /// The chunk encoding with its options (`Encoding::raw()`, `Encoding::jpeg(90)?`,
    /// `Encoding::with_options("png", &options)?`, ...). The scale states the options it
    /// was built with; the rest are the codec's defaults.
    pub encoding: Encoding,
    /// `type`: `image` or `segmentation`.
    pub layer_type: String,
    /// `None` (unsharded), `"auto"`, or a `sharding` object (see
    /// [`ShardingSpec::auto`] for what "auto" picks).
    pub sharding: Option<Value>,
}

impl Info {
    /// Parses the bytes of an `info` file found at `url`.
    pub fn parse(url: &str, bytes: &[u8]) -> Result<Info> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::info(url, "info", format!("not valid JSON: {e}")))?;
        let Value::Object(json) = value else {
            return Err(Error::info(url, "info", "not a JSON object"));
        };
        Self::from_json(url, json)
    }

    fn from_json(url: &str, json: Map<String, Value>) -> Result<Info> {
        let field = |name: &str| {
            json.get(name)
                .ok_or_else(|| Error::info(url, name, "missing"))
        };
        let data_type = field("data_type")?
            .as_str()
            .ok_or_else(|| Error::info(url, "data_type", "not a string"))?;
        let data_type = DType::parse(data_type)
            .filter(|d| DType::PRECOMPUTED.contains(d))
            .ok_or_else(|| {
                let known: Vec<_> = DType::PRECOMPUTED.iter().map(|d| d.name()).collect();
                Error::info(
                    url,
                    "data_type",
                    format!("{data_type:?} is not one of {known:?}"),
                )
            })?;
        let num_channels = field("num_channels")?
            .as_u64()
            .filter(|&n| (1..=65536).contains(&n))
            .ok_or_else(|| Error::info(url, "num_channels", "not an integer in 1..=65536"))?
            as usize;
        let layer_type = field("type")?
            .as_str()
            .ok_or_else(|| Error::info(url, "type", "not a string"))?
            .to_string();
        let scales = field("scales")?
            .as_array()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::info(url, "scales", "not a non-empty list"))?;
        let bytes_per_voxel = (data_type.itemsize() * num_channels) as u64;
        let scales = scales
            .iter()
            .enumerate()
            .map(|(i, s)| parse_scale(url, i, s, bytes_per_voxel))
            .collect::<Result<Vec<_>>>()?;
        Ok(Info {
            json,
            data_type,
            num_channels,
            layer_type,
            scales,
        })
    }

    /// The `info` of a new one-scale layer, in the form CloudVolume and TensorStore write.
    pub fn new(url: &str, spec: &LayerSpec) -> Result<Info> {
        // A type other formats hold (float16, complex) is the caller's mistake here, not bad
        // metadata: refused before an info is written, as an invalid argument.
        if !DType::PRECOMPUTED.contains(&spec.dtype) {
            return Err(Error::invalid(format!(
                "dtype {:?} is not supported by Precomputed layers",
                spec.dtype.name()
            )));
        }
        // As CloudVolume's `create_new_info` (and so igneous) writes them: integral
        // resolutions as integers, otherwise all three as floats; the key is the three
        // numbers joined, so `add_scale` and `downsample` then name the levels below
        // `8_8_40`, not `8.0_8.0_40.0`.
        let integral = spec
            .resolution
            .iter()
            .all(|r| r.fract() == 0.0 && r.abs() < 1e15);
        let resolution: Vec<Value> = spec
            .resolution
            .iter()
            .map(|&r| if integral { json!(r as i64) } else { json!(r) })
            .collect();
        let key = resolution
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("_");
        let mut json = json!({
            "@type": "neuroglancer_multiscale_volume",
            "type": spec.layer_type,
            "data_type": spec.dtype.name(),
            "num_channels": spec.num_channels,
            "scales": [{
                "key": key,
                "size": spec.shape,
                "voxel_offset": spec.voxel_offset,
                "resolution": resolution,
                "chunk_sizes": [spec.chunks],
                "encoding": spec.encoding.name(),
            }],
        });
        let mut scale_options = spec.encoding.stated_options().clone();
        spec.encoding.codec().complete_new_scale(&mut scale_options);
        if let Some(sharding) = &spec.sharding {
            let sharding = match sharding {
                Value::String(s) if s == "auto" => {
                    let grid = crate::geometry::ChunkGrid {
                        voxel_offset: spec.voxel_offset,
                        size: spec.shape,
                        chunk: spec.chunks,
                    };
                    let chunk_bytes = spec.chunks.iter().fold(
                        (spec.dtype.itemsize() * spec.num_channels) as u64,
                        |a, &n| a.saturating_mul(n),
                    );
                    ShardingSpec::auto(&grid, chunk_bytes, &spec.encoding)
                        .ok_or_else(|| {
                            Error::invalid(
                                "sharding: the chunk grid needs more than 64 Morton bits; \
                                 use larger chunks",
                            )
                        })?
                        .to_json()
                }
                Value::Object(_) => {
                    let parsed = ShardingSpec::parse(sharding)
                        .map_err(|(f, r)| Error::invalid(format!("sharding field '{f}': {r}")))?;
                    if parsed.minishard_bits > 20 {
                        return Err(Error::invalid(
                            "sharding field 'minishard_bits': above 20 (a shard index over \
                             16 MiB)",
                        ));
                    }
                    parsed.to_json()
                }
                _ => {
                    return Err(Error::invalid(
                        "sharding must be None, \"auto\" or a sharding dict",
                    ))
                }
            };
            scale_options.insert("sharding".into(), sharding);
        }
        if let Some(Value::Object(scale)) = json.pointer_mut("/scales/0") {
            scale.extend(scale_options);
        }
        let Value::Object(json) = json else {
            unreachable!("json! of an object literal is an object")
        };
        Self::from_json(url, json)
    }

    /// The JSON text to store, with every key of the original preserved.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.json).unwrap_or_default()
    }

    /// The JSON object, as read (unknown keys included).
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }
}

fn parse_scale(url: &str, i: usize, s: &Value, bytes_per_voxel: u64) -> Result<Scale> {
    let name = |field: &str| format!("scales[{i}].{field}");
    let err = |field: &str, reason: &str| Error::info(url, name(field), reason);
    let s = s
        .as_object()
        .ok_or_else(|| Error::info(url, format!("scales[{i}]"), "not an object"))?;
    let get = |field: &str| s.get(field).ok_or_else(|| err(field, "missing"));

    let key = get("key")?
        .as_str()
        .ok_or_else(|| err("key", "not a string"))?;
    let key = normalize_key(key).map_err(|reason| err("key", &reason))?;

    let triple = |field: &str, v: &Value| -> Result<[i64; 3]> {
        let bad = || err(field, "not a list of 3 integers");
        let items = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
        let mut out = [0i64; 3];
        for (o, item) in out.iter_mut().zip(items) {
            *o = item.as_i64().ok_or_else(bad)?;
            // unsigned_abs: i64::MIN.abs() overflows (wraps to a negative number in release).
            if o.unsigned_abs() >= MAX_COORD as u64 {
                return Err(err(field, "holds a value beyond ±2^62"));
            }
        }
        Ok(out)
    };
    let size = triple("size", get("size")?)?;
    if size.iter().any(|&n| n < 0) {
        return Err(err("size", "holds a negative value"));
    }
    let voxel_offset = match s.get("voxel_offset") {
        Some(v) => triple("voxel_offset", v)?,
        None => [0; 3],
    };
    let chunk_sizes = get("chunk_sizes")?
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| err("chunk_sizes", "not a non-empty list of [x, y, z]"))?;
    let chunk = triple("chunk_sizes", chunk_sizes)?;
    if chunk.iter().any(|&n| n < 1) {
        return Err(err("chunk_sizes", "holds a size below 1"));
    }
    let chunk = chunk.map(|n| n as u64);
    let chunk_bytes = chunk
        .iter()
        .try_fold(bytes_per_voxel, |acc, &n| acc.checked_mul(n))
        .filter(|&b| b <= MAX_CHUNK_BYTES);
    if chunk_bytes.is_none() {
        return Err(err("chunk_sizes", "a chunk would exceed 4 GiB"));
    }
    let resolution = get("resolution")?
        .as_array()
        .filter(|a| a.len() == 3)
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| err("resolution", "not a list of 3 numbers"))?;
    let encoding = get("encoding")?
        .as_str()
        .ok_or_else(|| err("encoding", "not a string"))?;
    let encoding =
        Encoding::from_scale(encoding, s).map_err(|(field, reason)| err(&field, &reason))?;
    let sharded = s.get("sharding").is_some_and(|v| !v.is_null());
    let sharding = s.get("sharding").filter(|v| !v.is_null()).map(|v| {
        ShardingSpec::parse(v).map_err(|(f, r)| {
            let field = if f.is_empty() {
                "sharding".to_string()
            } else {
                format!("sharding.{f}")
            };
            (field, r)
        })
    });
    Ok(Scale {
        key,
        grid: ChunkGrid {
            voxel_offset,
            size: size.map(|n| n as u64),
            chunk,
        },
        resolution: [resolution[0], resolution[1], resolution[2]],
        encoding,
        sharded,
        sharding,
    })
}

/// Resolves `.` and `..` in a scale key; a key that would leave the layer root is refused,
/// so a hostile `info` can never make us read or write outside the layer.
fn normalize_key(key: &str) -> std::result::Result<String, String> {
    if key.starts_with('/') || key.contains('\\') || key.contains(':') {
        return Err(format!("{key:?} is not a relative path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in key.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{key:?} leads outside the layer"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("{key:?} names the layer root itself"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(extra: &str) -> String {
        format!(
            r#"{{"type":"image","data_type":"uint16","num_channels":2,"flavour":"kept",
            "scales":[{{"key":"4_4_40","size":[100,50,10],"voxel_offset":[-3,0,7],
            "resolution":[4,4,40],"chunk_sizes":[[64,64,8],[1,1,1]],"encoding":"raw"{extra}}}]}}"#
        )
    }

    #[test]
    fn parses_fields_and_keeps_unknown_keys() {
        let i = Info::parse("u", info(r#","extra_scale_key":1"#).as_bytes()).unwrap();
        assert_eq!(i.data_type, DType::U16);
        assert_eq!(i.num_channels, 2);
        let s = &i.scales[0];
        assert_eq!(s.grid.voxel_offset, [-3, 0, 7]);
        assert_eq!(s.grid.chunk, [64, 64, 8]);
        assert_eq!(s.encoding, Encoding::raw());
        let back: Value = serde_json::from_str(&i.to_json()).unwrap();
        assert_eq!(back["flavour"], "kept");
        assert_eq!(back["scales"][0]["extra_scale_key"], 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("not json", "info"),
            (r#"[1]"#, "info"),
            (
                r#"{"type":"image","num_channels":1,"scales":[]}"#,
                "data_type",
            ),
            (&info("").replace("uint16", "complex64"), "data_type"),
            (
                &info("").replace("\"num_channels\":2", "\"num_channels\":0"),
                "num_channels",
            ),
            (
                &info("").replace("[100,50,10]", "[100,-50,10]"),
                "scales[0].size",
            ),
            (
                &info("").replace("[64,64,8]", "[64,0,8]"),
                "scales[0].chunk_sizes",
            ),
            (
                &info("").replace("[64,64,8]", "[65536,65536,65536]"),
                "scales[0].chunk_sizes",
            ),
            (
                &info("").replace("[-3,0,7]", "[9223372036854775807,0,0]"),
                "scales[0].voxel_offset",
            ),
            (
                &info("").replace("\"4_4_40\"", "\"../escape\""),
                "scales[0].key",
            ),
            (&info("").replace("\"4_4_40\"", "\"/etc\""), "scales[0].key"),
            (
                &info("").replace("[4,4,40]", "\"4\""),
                "scales[0].resolution",
            ),
        ];
        for (text, field) in cases {
            let err = Info::parse("file:///layer", text.as_bytes()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("'{field}'")) && msg.contains("file:///layer"),
                "{msg}"
            );
        }
    }

    #[test]
    fn keys_are_normalised() {
        assert_eq!(normalize_key("./a//b/").unwrap(), "a/b");
        assert_eq!(normalize_key("a/../b").unwrap(), "b");
        assert!(normalize_key("a/../..").is_err());
        assert!(normalize_key("..").is_err());
    }

    #[test]
    fn new_layers_name_their_scale_from_the_resolution() {
        let spec = LayerSpec {
            shape: [10, 10, 10],
            dtype: DType::F32,
            chunks: [5, 5, 5],
            voxel_offset: [0, 0, 0],
            resolution: [4.0, 4.5, 40.0],
            num_channels: 1,
            encoding: Encoding::raw(),
            layer_type: "image".into(),
            sharding: None,
        };
        // CloudVolume's `create_new_info` names these `4.0_4.5_40.0` and `4_4_40`.
        let i = Info::new("u", &spec).unwrap();
        assert_eq!(i.scales[0].key, "4.0_4.5_40.0");
        assert_eq!(i.json()["scales"][0]["resolution"], json!([4.0, 4.5, 40.0]));
        let whole = LayerSpec {
            resolution: [4.0, 4.0, 40.0],
            ..spec.clone()
        };
        let i = Info::new("u", &whole).unwrap();
        assert_eq!(i.scales[0].key, "4_4_40");
        assert_eq!(i.json()["scales"][0]["resolution"], json!([4, 4, 40]));
        let complex = LayerSpec {
            dtype: DType::C64,
            ..spec
        };
        let err = Info::new("u", &complex).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { reason } if reason.contains("complex64")),
            "{err}"
        );
    }

    #[test]
    fn new_scales_state_the_options_given_and_bad_ones_are_refused_when_built() {
        let spec = |encoding: Encoding| LayerSpec {
            shape: [10, 10, 10],
            dtype: DType::U16,
            chunks: [5, 5, 5],
            voxel_offset: [0, 0, 0],
            resolution: [4.0, 4.0, 40.0],
            num_channels: 1,
            encoding,
            layer_type: "image".into(),
            sharding: None,
        };
        let scale = |encoding: Encoding| {
            let info = Info::new("u", &spec(encoding)).unwrap();
            info.json()["scales"][0].as_object().unwrap().clone()
        };
        assert_eq!(scale(Encoding::png(3).unwrap())["png_level"], 3);
        assert!(!scale(Encoding::parse("PNG")).contains_key("png_level"));
        let given = Map::from_iter([("blosc_compressor".into(), json!("ZSTD"))]);
        let blosc = scale(Encoding::with_options("blosclz", &given).unwrap());
        assert_eq!(
            (&blosc["encoding"], &blosc["blosc_compressor"]),
            (&json!("blosclz"), &json!("ZSTD"))
        );
        assert!(!blosc.contains_key("blosc_clevel"));
        // The format requires the block size even when none was given.
        let cseg = scale(Encoding::parse("compressed_segmentation"));
        assert_eq!(cseg["compressed_segmentation_block_size"], json!([8, 8, 8]));

        let refused = |name: &str, options: Value| {
            let Value::Object(options) = options else {
                unreachable!()
            };
            Encoding::with_options(name, &options)
                .unwrap_err()
                .to_string()
        };
        let err = refused("png", json!({"png_level": 10}));
        assert!(err.contains("encoding option \"png_level\""), "{err}");
        let err = refused("jpeg", json!({"jpeg_qualty": 5}));
        assert!(
            err.contains("encoding option \"jpeg_qualty\" is not one of"),
            "{err}"
        );
        let err = Encoding::compressed_segmentation([8, 0, 8]).unwrap_err();
        assert!(
            err.to_string()
                .contains("compressed_segmentation_block_size"),
            "{err}"
        );
    }
}
