//! Chunk key encodings: how a chunk's grid index becomes its key under the array's directory.

use serde_json::{json, Map, Value};

use super::doc::Doc;
use crate::error::Result;

/// How a chunk's grid index becomes its key, relative to the array's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKeyEncoding {
    /// v3 `default`: `c/1/2/3` (with `.`: `c.1.2.3`).
    Default {
        /// `/` or `.`.
        separator: char,
    },
    /// v3 `v2` and every v2 array: `1.2.3` (with `/`: `1/2/3`).
    V2 {
        /// `.` or `/` (v2's `dimension_separator`).
        separator: char,
    },
}

impl ChunkKeyEncoding {
    /// v3 "default": "c/1/2/3" ("c" for a 0-d array; '.' separator gives "c.1.2.3");
    /// "v2": "1.2.3" ("0" for a 0-d array; '/' separator gives "1/2/3").
    pub fn key(&self, index: &[u64]) -> String {
        let parts = index.iter().map(u64::to_string);
        let (parts, separator): (Vec<String>, char) = match *self {
            ChunkKeyEncoding::Default { separator } => (
                std::iter::once("c".into()).chain(parts).collect(),
                separator,
            ),
            // A 0-d array's single chunk is "0" in v2, as zarr-python writes it.
            ChunkKeyEncoding::V2 { .. } if index.is_empty() => return "0".into(),
            ChunkKeyEncoding::V2 { separator } => (parts.collect(), separator),
        };
        parts.join(separator.encode_utf8(&mut [0; 4]))
    }

    /// The separator.
    pub fn separator(&self) -> char {
        match *self {
            ChunkKeyEncoding::Default { separator } | ChunkKeyEncoding::V2 { separator } => {
                separator
            }
        }
    }

    /// Parses v3's `chunk_key_encoding` object (a missing configuration or separator takes the
    /// encoding's default: `/` for `default`, `.` for `v2`).
    pub(crate) fn parse_v3(doc: &Doc, value: &Value) -> Result<Self> {
        const FIELD: &str = "chunk_key_encoding";
        let obj = value
            .as_object()
            .ok_or_else(|| doc.bad(FIELD, "not an object"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| doc.bad("chunk_key_encoding.name", "missing or not a string"))?;
        let default = match name {
            "default" => '/',
            "v2" => '.',
            other => {
                return Err(doc.unsupported(
                    "chunk_key_encoding.name",
                    format!("chunk key encoding {other:?} is not supported"),
                ))
            }
        };
        let separator = match obj.get("configuration") {
            None => default,
            Some(Value::Object(c)) => match c.get("separator") {
                None => default,
                Some(s) => parse_separator(doc, "chunk_key_encoding.configuration.separator", s)?,
            },
            Some(_) => return Err(doc.bad("chunk_key_encoding.configuration", "not an object")),
        };
        Ok(match name {
            "default" => ChunkKeyEncoding::Default { separator },
            _ => ChunkKeyEncoding::V2 { separator },
        })
    }

    /// v2's `dimension_separator` (absent or null: `.`).
    pub(crate) fn parse_v2(doc: &Doc, value: Option<&Value>) -> Result<Self> {
        let separator = match value {
            None | Some(Value::Null) => '.',
            Some(s) => parse_separator(doc, "dimension_separator", s)?,
        };
        Ok(ChunkKeyEncoding::V2 { separator })
    }

    /// v3's `chunk_key_encoding` object, as zarr-python writes it.
    pub fn to_v3_json(&self) -> Value {
        let name = match self {
            ChunkKeyEncoding::Default { .. } => "default",
            ChunkKeyEncoding::V2 { .. } => "v2",
        };
        let mut configuration = Map::new();
        configuration.insert("separator".into(), json!(self.separator().to_string()));
        json!({"name": name, "configuration": configuration})
    }
}

fn parse_separator(doc: &Doc, field: &str, value: &Value) -> Result<char> {
    match value.as_str() {
        Some("/") => Ok('/'),
        Some(".") => Ok('.'),
        _ => Err(doc.bad(field, format!("{value} is not \"/\" or \".\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: Doc = Doc {
        url: "mem://a",
        file: "zarr.json",
    };

    #[test]
    fn keys() {
        let d = ChunkKeyEncoding::Default { separator: '/' };
        assert_eq!(d.key(&[1, 2, 3]), "c/1/2/3");
        assert_eq!(d.key(&[]), "c");
        assert_eq!(
            ChunkKeyEncoding::Default { separator: '.' }.key(&[1, 2, 3]),
            "c.1.2.3"
        );
        let v2 = ChunkKeyEncoding::V2 { separator: '.' };
        assert_eq!(v2.key(&[1, 2, 3]), "1.2.3");
        assert_eq!(v2.key(&[]), "0");
        assert_eq!(v2.key(&[7]), "7");
        assert_eq!(
            ChunkKeyEncoding::V2 { separator: '/' }.key(&[1, 2, 3]),
            "1/2/3"
        );
    }

    #[test]
    fn parsing_and_defaults() {
        let p = |v: Value| ChunkKeyEncoding::parse_v3(&DOC, &v);
        assert_eq!(
            p(json!({"name": "default"})).unwrap(),
            ChunkKeyEncoding::Default { separator: '/' }
        );
        assert_eq!(
            p(json!({"name": "v2", "configuration": {}})).unwrap(),
            ChunkKeyEncoding::V2 { separator: '.' }
        );
        let e = p(json!({"name": "default", "configuration": {"separator": "-"}})).unwrap_err();
        assert!(e.to_string().contains("separator"), "{e}");
        let e = p(json!({"name": "fancy"})).unwrap_err();
        assert!(e.to_string().contains("fancy"), "{e}");
        assert!(p(json!("default")).is_err());
        for e in [
            ChunkKeyEncoding::Default { separator: '.' },
            ChunkKeyEncoding::V2 { separator: '/' },
        ] {
            assert_eq!(p(e.to_v3_json()).unwrap(), e);
        }
        assert_eq!(
            ChunkKeyEncoding::parse_v2(&DOC, None).unwrap(),
            ChunkKeyEncoding::V2 { separator: '.' }
        );
        assert!(ChunkKeyEncoding::parse_v2(&DOC, Some(&json!(","))).is_err());
    }
}
