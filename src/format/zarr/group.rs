//! Zarr group metadata: v2 `.zgroup` + `.zattrs`, v3 `zarr.json` with `"node_type": "group"`.

use serde_json::{json, Map, Value};

use super::doc::Doc;
use super::metadata::{check_extensions, check_format, parse_attributes, ZarrFormat};
use crate::error::{Error, Result};

/// A group's attributes (v2 `.zgroup` + `.zattrs`, v3 zarr.json with node_type "group").
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMetadata {
    /// The version it is stored in.
    pub zarr_format: ZarrFormat,
    /// v3 `attributes` or v2 `.zattrs`.
    pub attributes: Map<String, Value>,
}

/// The fields zarr.json of a group may hold (zarr-python adds `consolidated_metadata`, a cache
/// of the children's metadata that readers may ignore).
const V3_GROUP_FIELDS: &[&str] = &[
    "zarr_format",
    "node_type",
    "attributes",
    "consolidated_metadata",
];

impl GroupMetadata {
    /// Parses the `zarr.json` of the group at `url`.
    pub fn parse_v3(url: &str, zarr_json: &[u8]) -> Result<Self> {
        let doc = Doc::new(url, "zarr.json");
        let obj = doc.object(zarr_json)?;
        check_format(&doc, &obj, 3)?;
        match obj.get("node_type").and_then(Value::as_str) {
            Some("group") => {}
            Some("array") => return Err(doc.bad("node_type", "an array, not a group")),
            _ => return Err(doc.bad("node_type", "not \"group\"")),
        }
        check_extensions(&doc, &obj, V3_GROUP_FIELDS)?;
        Ok(GroupMetadata {
            zarr_format: ZarrFormat::V3,
            attributes: parse_attributes(&doc, obj.get("attributes"), "attributes")?,
        })
    }

    /// Parses the `.zgroup` (and `.zattrs`, when there is one) of the group at `url`.
    pub fn parse_v2(url: &str, zgroup: &[u8], zattrs: Option<&[u8]>) -> Result<Self> {
        let doc = Doc::new(url, ".zgroup");
        check_format(&doc, &doc.object(zgroup)?, 2)?;
        let attributes = match zattrs {
            None => Map::new(),
            Some(bytes) => Doc::new(url, ".zattrs").object(bytes)?,
        };
        Ok(GroupMetadata {
            zarr_format: ZarrFormat::V2,
            attributes,
        })
    }

    /// The metadata files to write: `[("zarr.json", ..)]` for v3; `[(".zgroup", ..),
    /// (".zattrs", ..)]` for v2, `.zattrs` only when there are attributes. JSON as
    /// zarr-python writes it.
    pub fn to_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let pretty = |v: &Value| {
            serde_json::to_vec_pretty(v).map_err(|e| Error::internal(format!("JSON output: {e}")))
        };
        let attributes = Value::Object(self.attributes.clone());
        Ok(match self.zarr_format {
            ZarrFormat::V3 => vec![(
                "zarr.json",
                pretty(&json!({"attributes": attributes, "zarr_format": 3, "node_type": "group"}))?,
            )],
            ZarrFormat::V2 => {
                let mut files = vec![(".zgroup", pretty(&json!({"zarr_format": 2}))?)];
                if !self.attributes.is_empty() {
                    files.push((".zattrs", pretty(&attributes)?));
                }
                files
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_refuse_arrays() {
        let mut attributes = Map::new();
        attributes.insert("a".into(), json!([1, 2]));
        for zarr_format in [ZarrFormat::V2, ZarrFormat::V3] {
            let g = GroupMetadata {
                zarr_format,
                attributes: attributes.clone(),
            };
            let files = g.to_files().unwrap();
            let back = match zarr_format {
                ZarrFormat::V3 => GroupMetadata::parse_v3("mem://g", &files[0].1).unwrap(),
                ZarrFormat::V2 => {
                    GroupMetadata::parse_v2("mem://g", &files[0].1, Some(&files[1].1)).unwrap()
                }
            };
            assert_eq!(back, g);
        }
        let empty = GroupMetadata {
            zarr_format: ZarrFormat::V2,
            attributes: Map::new(),
        };
        assert_eq!(empty.to_files().unwrap().len(), 1);
        let e = GroupMetadata::parse_v3("mem://g", br#"{"zarr_format": 3, "node_type": "array"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("node_type"), "{e}");
        let e = GroupMetadata::parse_v2("mem://g", br#"{"zarr_format": 3}"#, None).unwrap_err();
        assert!(e.to_string().contains(".zgroup field 'zarr_format'"), "{e}");
        let e =
            GroupMetadata::parse_v2("mem://g", br#"{"zarr_format": 2}"#, Some(b"[]")).unwrap_err();
        assert!(e.to_string().contains(".zattrs"), "{e}");
        let ok = br#"{"zarr_format": 3, "node_type": "group", "x": {"must_understand": false}}"#;
        assert!(GroupMetadata::parse_v3("mem://g", ok).is_ok());
        let bad = br#"{"zarr_format": 3, "node_type": "group", "x": {"must_understand": true}}"#;
        assert!(GroupMetadata::parse_v3("mem://g", bad).is_err());
    }
}
