//! Reading codec configurations: every refusal names the codec and the field.

use serde_json::Value;

use super::CodecSpec;
use crate::error::Error;

/// The error for field `field` of codec `spec`.
pub(super) fn bad(spec: &CodecSpec, field: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "codec {:?}: configuration field {field:?} {reason}",
        spec.name
    ))
}

/// An integer field in `min..=max`, `default` when absent (`None`: required).
pub(super) fn int(
    spec: &CodecSpec,
    field: &str,
    default: Option<i64>,
    min: i64,
    max: i64,
) -> Result<i64, Error> {
    let v = match spec.configuration.get(field) {
        None | Some(Value::Null) => {
            return default.ok_or_else(|| bad(spec, field, "is required"));
        }
        Some(v) => v,
    };
    v.as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            bad(
                spec,
                field,
                format!("is {v}, not an integer in {min}..={max}"),
            )
        })
}

/// A boolean field, `default` when absent.
pub(super) fn boolean(spec: &CodecSpec, field: &str, default: bool) -> Result<bool, Error> {
    match spec.configuration.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(spec, field, format!("is {v}, not true or false"))),
    }
}

/// A string field, `default` when absent (`None`: required).
pub(super) fn string<'a>(
    spec: &'a CodecSpec,
    field: &str,
    default: Option<&'a str>,
) -> Result<&'a str, Error> {
    match spec.configuration.get(field) {
        None | Some(Value::Null) => default.ok_or_else(|| bad(spec, field, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(bad(spec, field, format!("is {v}, not a string"))),
    }
}

/// A list of positive integers (a chunk shape).
pub(super) fn shape(spec: &CodecSpec, field: &str) -> Result<Vec<u64>, Error> {
    let v = spec
        .configuration
        .get(field)
        .ok_or_else(|| bad(spec, field, "is required"))?;
    let list = v
        .as_array()
        .ok_or_else(|| bad(spec, field, format!("is {v}, not a list")))?;
    list.iter()
        .map(|d| {
            d.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(spec, field, format!("holds {d}, not a positive integer")))
        })
        .collect()
}

/// A nested codec list.
pub(super) fn codecs(spec: &CodecSpec, field: &str) -> Result<Vec<CodecSpec>, Error> {
    let v = spec
        .configuration
        .get(field)
        .ok_or_else(|| bad(spec, field, "is required"))?;
    let list = v
        .as_array()
        .ok_or_else(|| bad(spec, field, format!("is {v}, not a list of codecs")))?;
    list.iter()
        .map(|c| CodecSpec::from_json(c).map_err(|e| bad(spec, field, e)))
        .collect()
}
