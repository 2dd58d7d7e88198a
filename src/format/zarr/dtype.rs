//! Zarr data types: v3 `data_type` names and v2 NumPy type strings (`"<u2"`, `"|b1"`), with
//! the byte order v2 writes into the type string and v3 into the `bytes` codec.

use serde_json::Value;

use super::doc::Doc;
use crate::dtype::DType;
use crate::error::Result;

/// The byte order of stored elements wider than one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// `"little"` (v2 `<`).
    Little,
    /// `"big"` (v2 `>`).
    Big,
}

impl Endian {
    /// The `bytes` codec's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Endian::Little => "little",
            Endian::Big => "big",
        }
    }

    /// Parses the `bytes` codec's spelling.
    pub fn parse(name: &str) -> Option<Endian> {
        match name {
            "little" => Some(Endian::Little),
            "big" => Some(Endian::Big),
            _ => None,
        }
    }
}

/// The v3 `data_type` name of a type (the core names are NumPy's, as [`DType::name`]).
pub fn v3_name(dtype: DType) -> &'static str {
    dtype.name()
}

/// Parses a v3 `data_type`: a core name, or an extension object, which is refused by name.
pub(crate) fn parse_v3(doc: &Doc, value: &Value) -> Result<DType> {
    let name = match value {
        Value::String(s) => s.as_str(),
        Value::Object(o) => {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
            return Err(doc.unsupported(
                "data_type",
                format!("the extension data type {name:?} is not supported"),
            ));
        }
        _ => return Err(doc.bad("data_type", "not a string")),
    };
    DType::ALL
        .into_iter()
        .find(|d| v3_name(*d) == name)
        .ok_or_else(|| {
            let known: Vec<_> = DType::ALL.iter().map(|d| v3_name(*d)).collect();
            doc.unsupported(
                "data_type",
                format!("data type {name:?} is not supported (supported: {known:?})"),
            )
        })
}

/// The NumPy kind and size letters of a type (`"u2"`), without the byte order.
fn v2_kind(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "b1",
        DType::U8 => "u1",
        DType::I8 => "i1",
        DType::U16 => "u2",
        DType::I16 => "i2",
        DType::U32 => "u4",
        DType::I32 => "i4",
        DType::U64 => "u8",
        DType::I64 => "i8",
        DType::F16 => "f2",
        DType::F32 => "f4",
        DType::F64 => "f8",
        DType::C64 => "c8",
        DType::C128 => "c16",
    }
}

/// Parses a v2 `dtype` type string. The byte order is `None` for one-byte types, whose
/// order does not matter (NumPy writes `|`).
pub(crate) fn parse_v2(doc: &Doc, value: &Value) -> Result<(DType, Option<Endian>)> {
    let s = match value {
        Value::String(s) => s.as_str(),
        Value::Array(_) => {
            return Err(doc.unsupported("dtype", "structured data types are not supported"))
        }
        _ => return Err(doc.bad("dtype", "not a string")),
    };
    let unsupported = || doc.unsupported("dtype", format!("data type {s:?} is not supported"));
    let (order, kind) = match s.char_indices().nth(1) {
        Some((i, _)) => s.split_at(i),
        None => return Err(unsupported()),
    };
    let dtype = DType::ALL
        .into_iter()
        .find(|d| v2_kind(*d) == kind)
        .ok_or_else(unsupported)?;
    let endian = match order {
        "<" => Some(Endian::Little),
        ">" => Some(Endian::Big),
        "|" => None,
        _ => {
            return Err(doc.bad(
                "dtype",
                format!("{s:?} has no byte order ('<', '>' or '|')"),
            ))
        }
    };
    match (dtype.itemsize(), endian) {
        (1, _) => Ok((dtype, None)),
        (_, None) => Err(doc.bad(
            "dtype",
            format!("{s:?}: a multi-byte type needs '<' or '>'"),
        )),
        (_, e) => Ok((dtype, e)),
    }
}

/// The v2 type string: `|` for one-byte types, as NumPy writes them.
pub fn v2_typestr(dtype: DType, endian: Endian) -> String {
    let order = match (dtype.itemsize(), endian) {
        (1, _) => '|',
        (_, Endian::Little) => '<',
        (_, Endian::Big) => '>',
    };
    format!("{order}{}", v2_kind(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use serde_json::json;

    const DOC: Doc = Doc {
        url: "mem://a",
        file: ".zarray",
    };

    #[test]
    fn v2_type_strings_round_trip() {
        for d in DType::ALL {
            for e in [Endian::Little, Endian::Big] {
                let s = v2_typestr(d, e);
                let (back, endian) = parse_v2(&DOC, &json!(s)).unwrap();
                assert_eq!(back, d);
                assert_eq!(endian, (d.itemsize() > 1).then_some(e));
            }
        }
        assert_eq!(parse_v2(&DOC, &json!("<u1")).unwrap(), (DType::U8, None));
    }

    #[test]
    fn unsupported_v2_types_are_named() {
        for s in [
            "<U5", "|O", "|S5", "<M8[ns]", "<m8[s]", "|V8", "<f16", "", "<",
        ] {
            let e = parse_v2(&DOC, &json!(s)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{s}: {e}");
            assert!(e.to_string().contains(&format!("{s:?}")), "{e}");
        }
        let e = parse_v2(&DOC, &json!([["a", "<u1"]])).unwrap_err();
        assert!(e.to_string().contains("structured"), "{e}");
        assert!(matches!(
            parse_v2(&DOC, &json!("|u2")),
            Err(Error::Info { .. })
        ));
        assert!(matches!(
            parse_v2(&DOC, &json!("=u2")),
            Err(Error::Info { .. })
        ));
        assert!(matches!(parse_v2(&DOC, &json!(5)), Err(Error::Info { .. })));
    }

    #[test]
    fn v3_names() {
        for d in DType::ALL {
            assert_eq!(parse_v3(&DOC, &json!(v3_name(d))).unwrap(), d);
        }
        for name in ["string", "r8", "datetime64", "Float32", "uint128"] {
            let e = parse_v3(&DOC, &json!(name)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }));
            assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            assert!(e.to_string().contains("data_type"), "{e}");
        }
        let e = parse_v3(
            &DOC,
            &json!({"name": "numpy.datetime64", "configuration": {}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("numpy.datetime64"), "{e}");
    }
}
