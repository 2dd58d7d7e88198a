//! Zarr v2's `order`, byte order, `filters` and `compressor` as the equivalent v3 codec
//! chain, and back. One engine then decodes both versions.
//!
//! - `order: "F"` is a `transpose` codec with the reversed axis order;
//! - the type string's byte order is the `bytes` codec's `endian` (none for one-byte types);
//! - the compressor, and filters that are compressors themselves (they see the chunk's bytes
//!   exactly as a v3 bytes-to-bytes codec does), are the v3-style codecs `gzip`, `zlib`,
//!   `zstd`, `blosc` and `lz4`. Other filters (`delta`, `fixedscaleoffset`, ...) have no v3
//!   equivalent and are refused by name.

use serde_json::{json, Map, Value};

use super::codecs::CodecSpec;
use super::doc::Doc;
use super::dtype::Endian;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// The v2 fields a v3 chain becomes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct V2Chain {
    /// `'C'` or `'F'`.
    pub order: char,
    /// The byte order for the type string.
    pub endian: Endian,
    /// `filters`: null or a list of compressor configurations.
    pub filters: Value,
    /// `compressor`: null or one configuration.
    pub compressor: Value,
}

fn codec(name: &str, configuration: Value) -> CodecSpec {
    CodecSpec {
        name: name.into(),
        configuration: match configuration {
            Value::Object(c) => c,
            _ => Map::new(),
        },
    }
}

/// The v3 chain of a v2 array.
pub(crate) fn to_v3(
    doc: &Doc,
    rank: usize,
    dtype: DType,
    endian: Option<Endian>,
    order: &Value,
    filters: Option<&Value>,
    compressor: Option<&Value>,
) -> Result<Vec<CodecSpec>> {
    let mut chain = Vec::new();
    match order.as_str() {
        Some("C") => {}
        Some("F") => {
            let reversed: Vec<usize> = (0..rank).rev().collect();
            chain.push(codec("transpose", json!({ "order": reversed })));
        }
        _ => return Err(doc.bad("order", format!("{order} is not \"C\" or \"F\""))),
    }
    chain.push(match endian {
        Some(e) => codec("bytes", json!({"endian": e.name()})),
        None => codec("bytes", Value::Null),
    });
    match filters {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            if list.len() > super::codec_json::MAX_CODECS {
                return Err(doc.bad("filters", format!("{} filters", list.len())));
            }
            for (i, f) in list.iter().enumerate() {
                let field = format!("filters[{i}]");
                chain.push(compressor_to_v3(doc, &field, f, dtype, "filter")?);
            }
        }
        Some(_) => return Err(doc.bad("filters", "not null or a list")),
    }
    match compressor {
        None | Some(Value::Null) => {}
        Some(c) => chain.push(compressor_to_v3(doc, "compressor", c, dtype, "compressor")?),
    }
    Ok(chain)
}

/// One numcodecs configuration as the v3-style codec.
fn compressor_to_v3(
    doc: &Doc,
    field: &str,
    value: &Value,
    dtype: DType,
    what: &str,
) -> Result<CodecSpec> {
    let obj = value
        .as_object()
        .ok_or_else(|| doc.bad(field, "not an object"))?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| doc.bad(format!("{field}.id"), "missing or not a string"))?;
    let int = |key: &str, default: i64| -> Result<i64> {
        match obj.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| doc.bad(format!("{field}.{key}"), format!("{v} is not an integer"))),
        }
    };
    // Defaults are numcodecs' for configurations that leave a key out.
    Ok(match id {
        "gzip" => codec("gzip", json!({"level": int("level", 1)?})),
        "zlib" => codec("zlib", json!({"level": int("level", 1)?})),
        "zstd" => {
            let checksum = match obj.get("checksum") {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| {
                    doc.bad(format!("{field}.checksum"), format!("{v} is not a boolean"))
                })?,
            };
            codec(
                "zstd",
                json!({"level": int("level", 0)?, "checksum": checksum}),
            )
        }
        "lz4" => codec("lz4", json!({"acceleration": int("acceleration", 1)?})),
        "blosc" => {
            let cname = match obj.get("cname") {
                None => "lz4",
                Some(v) => v.as_str().ok_or_else(|| {
                    doc.bad(format!("{field}.cname"), format!("{v} is not a string"))
                })?,
            };
            let shuffle = match int("shuffle", 1)? {
                0 => "noshuffle",
                1 => "shuffle",
                2 => "bitshuffle",
                // AUTOSHUFFLE: numcodecs picks bit shuffling for one-byte items.
                -1 if dtype.itemsize() == 1 => "bitshuffle",
                -1 => "shuffle",
                n => {
                    return Err(doc.bad(
                        format!("{field}.shuffle"),
                        format!("{n} is not -1, 0, 1 or 2"),
                    ))
                }
            };
            codec(
                "blosc",
                json!({
                    "cname": cname,
                    "clevel": int("clevel", 5)?,
                    "shuffle": shuffle,
                    "typesize": dtype.itemsize(),
                    "blocksize": int("blocksize", 0)?,
                }),
            )
        }
        other => {
            return Err(doc.unsupported(
                field,
                format!("the {what} {other:?} is not supported (no Zarr v3 equivalent)"),
            ))
        }
    })
}

/// The v2 fields for a v3 chain, or an error naming the codec v2 cannot express.
pub(crate) fn to_v2(url: &str, rank: usize, codecs: &[CodecSpec]) -> Result<V2Chain> {
    let refuse = |name: &str, why: &str| {
        Error::invalid(format!(
            "{url}: the codec {name:?} cannot be written as Zarr v2 metadata ({why})"
        ))
    };
    let mut rest = codecs;
    let mut order = 'C';
    while let Some((first, tail)) = rest.split_first() {
        if first.name != "transpose" {
            break;
        }
        let listed: Option<Vec<u64>> = first
            .configuration
            .get("order")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let listed = listed.unwrap_or_default();
        let reversed: Vec<u64> = (0..rank as u64).rev().collect();
        let identity: Vec<u64> = (0..rank as u64).collect();
        if order == 'C' && listed == reversed {
            order = 'F';
        } else if listed != identity {
            return Err(refuse("transpose", "v2 has only C and F order"));
        }
        rest = tail;
    }
    let Some((array_to_bytes, compressors)) = rest.split_first() else {
        return Err(Error::invalid(format!(
            "{url}: the codec chain has no bytes codec"
        )));
    };
    let endian = match array_to_bytes.name.as_str() {
        "bytes" => match array_to_bytes.configuration.get("endian") {
            None => Endian::Little,
            Some(e) => e
                .as_str()
                .and_then(Endian::parse)
                .ok_or_else(|| refuse("bytes", "its endian is not \"little\" or \"big\""))?,
        },
        "sharding_indexed" => return Err(refuse("sharding_indexed", "v2 has no sharding")),
        other => return Err(refuse(other, "v2 has only C and F order")),
    };
    let mut configs = compressors
        .iter()
        .map(|c| compressor_to_v2(c).ok_or_else(|| refuse(&c.name, "no numcodecs equivalent")))
        .collect::<Result<Vec<_>>>()?;
    let compressor = configs.pop().unwrap_or(Value::Null);
    let filters = if configs.is_empty() {
        Value::Null
    } else {
        Value::Array(configs)
    };
    Ok(V2Chain {
        order,
        endian,
        filters,
        compressor,
    })
}

/// A bytes-to-bytes codec as numcodecs' configuration, in the key order numcodecs writes.
fn compressor_to_v2(c: &CodecSpec) -> Option<Value> {
    let get = |key: &str| c.configuration.get(key).cloned();
    let mut out = Map::new();
    out.insert("id".into(), json!(c.name));
    match c.name.as_str() {
        "gzip" | "zlib" => {
            out.insert("level".into(), get("level").unwrap_or(json!(1)));
        }
        "zstd" => {
            out.insert("level".into(), get("level").unwrap_or(json!(0)));
            if get("checksum") == Some(json!(true)) {
                out.insert("checksum".into(), json!(true));
            }
        }
        "lz4" => {
            out.insert(
                "acceleration".into(),
                get("acceleration").unwrap_or(json!(1)),
            );
        }
        "blosc" => {
            let shuffle = match get("shuffle").as_ref().and_then(Value::as_str) {
                Some("noshuffle") => 0,
                Some("bitshuffle") => 2,
                _ => 1,
            };
            out.insert("cname".into(), get("cname").unwrap_or(json!("lz4")));
            out.insert("clevel".into(), get("clevel").unwrap_or(json!(5)));
            out.insert("shuffle".into(), json!(shuffle));
            out.insert("blocksize".into(), get("blocksize").unwrap_or(json!(0)));
        }
        _ => return None,
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: Doc = Doc {
        url: "mem://a",
        file: ".zarray",
    };

    fn names(chain: &[CodecSpec]) -> Vec<&str> {
        chain.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn fortran_order_big_endian_and_compressors() {
        let blosc =
            json!({"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": -1, "blocksize": 0});
        let chain = to_v3(
            &DOC,
            3,
            DType::U16,
            Some(Endian::Big),
            &json!("F"),
            Some(&json!([{"id": "zlib", "level": 4}])),
            Some(&blosc),
        )
        .unwrap();
        assert_eq!(names(&chain), ["transpose", "bytes", "zlib", "blosc"]);
        assert_eq!(chain[0].configuration["order"], json!([2, 1, 0]));
        assert_eq!(chain[1].configuration["endian"], json!("big"));
        assert_eq!(chain[3].configuration["shuffle"], json!("shuffle"));
        assert_eq!(chain[3].configuration["typesize"], json!(2));
        let back = to_v2("mem://a", 3, &chain).unwrap();
        assert_eq!(back.order, 'F');
        assert_eq!(back.endian, Endian::Big);
        assert_eq!(back.filters, json!([{"id": "zlib", "level": 4}]));
        assert_eq!(
            back.compressor,
            json!({"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1, "blocksize": 0})
        );
    }

    #[test]
    fn refusals_name_what_they_refuse() {
        let e = to_v3(
            &DOC,
            1,
            DType::U8,
            None,
            &json!("C"),
            Some(&json!([{"id": "delta", "dtype": "<u1"}])),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert!(e.to_string().contains("\"delta\"") && e.to_string().contains("filters[0]"));
        let e = to_v3(
            &DOC,
            1,
            DType::U8,
            None,
            &json!("C"),
            None,
            Some(&json!({"id": "bz2"})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"bz2\""), "{e}");
        assert!(to_v3(&DOC, 1, DType::U8, None, &json!("K"), None, None).is_err());
        assert!(to_v3(&DOC, 1, DType::U8, None, &json!("C"), None, Some(&json!(3))).is_err());

        let bytes = codec("bytes", json!({"endian": "little"}));
        for (chain, named) in [
            (
                vec![codec("sharding_indexed", json!({}))],
                "sharding_indexed",
            ),
            (vec![bytes.clone(), codec("crc32c", Value::Null)], "crc32c"),
            (
                vec![
                    codec("transpose", json!({"order": [1, 0, 2]})),
                    bytes.clone(),
                ],
                "transpose",
            ),
        ] {
            let e = to_v2("mem://a", 3, &chain).unwrap_err();
            assert!(e.to_string().contains(&format!("{named:?}")), "{e}");
        }
        assert!(to_v2("mem://a", 3, &[]).is_err());
        let plain = to_v2("mem://a", 3, &[bytes]).unwrap();
        assert_eq!(
            (plain.order, plain.compressor, plain.filters),
            ('C', Value::Null, Value::Null)
        );
    }
}
