//! The `codecs` list of `zarr.json` as [`CodecSpec`]s, and back.

use serde_json::{Map, Value};

use super::codecs::CodecSpec;
use super::doc::Doc;
use crate::error::Result;

/// The most codecs one chain may list. Real chains hold two to five (transpose, bytes, a
/// compressor, a checksum); a longer list is a hostile or broken file, refused before any
/// work is spent on it.
pub const MAX_CODECS: usize = 32;

/// Parses a codec list (`field` names it in errors: `codecs`, or a nested list).
pub(crate) fn parse_list(doc: &Doc, field: &str, value: &Value) -> Result<Vec<CodecSpec>> {
    let list = value
        .as_array()
        .ok_or_else(|| doc.bad(field, "not a list of codecs"))?;
    if list.is_empty() {
        return Err(doc.bad(
            field,
            "empty (a chain needs at least its array-to-bytes codec)",
        ));
    }
    if list.len() > MAX_CODECS {
        return Err(doc.bad(
            field,
            format!("{} codecs (at most {MAX_CODECS})", list.len()),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| parse_one(doc, &format!("{field}[{i}]"), c))
        .collect()
}

fn parse_one(doc: &Doc, field: &str, value: &Value) -> Result<CodecSpec> {
    let obj = match value {
        // The v3 spec lets a codec without configuration be written as its bare name.
        Value::String(name) => {
            return Ok(CodecSpec {
                name: name.clone(),
                configuration: Map::new(),
            })
        }
        Value::Object(obj) => obj,
        _ => return Err(doc.bad(field, "not a codec object")),
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| doc.bad(format!("{field}.name"), "missing or not a string"))?;
    let configuration = match obj.get("configuration") {
        None => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => return Err(doc.bad(format!("{field}.configuration"), "not an object")),
    };
    for key in obj.keys() {
        match key.as_str() {
            "name" | "configuration" => {}
            "must_understand" if obj[key].is_boolean() => {}
            other => return Err(doc.bad(format!("{field}.{other}"), "not a codec field")),
        }
    }
    Ok(CodecSpec {
        name: name.to_string(),
        configuration,
    })
}

/// A codec as zarr-python writes it: no `configuration` key when there is none.
pub fn to_json(codec: &CodecSpec) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), Value::String(codec.name.clone()));
    if !codec.configuration.is_empty() {
        obj.insert(
            "configuration".into(),
            Value::Object(codec.configuration.clone()),
        );
    }
    Value::Object(obj)
}
