//! The registry: every scale encoding, listed once. The `info` parser, `BigArray.create`'s
//! option check, the Python bindings (option keys for copies) and the fuzz harness list read
//! it, so adding an encoding never edits them.

#[cfg(feature = "jpeg")]
use super::jpeg;
#[cfg(feature = "jxl")]
use super::jxl;
use super::{blosc, compressed_segmentation, compresso, crackle, png, raw, FieldError, ScaleJson};
use super::{Codec, Encoding};
use crate::dtype::DType;

/// What the decode fuzz harness of a codec varies: the dtypes and channel counts its
/// decoder accepts.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct FuzzSpec {
    /// Voxel types the decoder accepts.
    pub dtypes: &'static [DType],
    /// Channel counts the decoder accepts.
    pub channels: &'static [usize],
}

/// An encoding as the registry lists it, before any options are parsed.
pub trait CodecKind: Sync {
    /// The names a scale's `encoding` key may give it (lowercase; matched ignoring case).
    fn names(&self) -> &'static [&'static str];

    /// The scale keys that parameterise it.
    fn option_keys(&self) -> &'static [&'static str];

    /// The codec `name` (one of [`CodecKind::names`]) with the options the scale's JSON
    /// object gives, defaults for the rest; the error names the bad key.
    fn parse(&self, name: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError>;

    /// How the fuzz harness `decode_<first name>` drives its decoder; `None`: no harness
    /// of its own.
    #[doc(hidden)]
    fn fuzz(&self) -> Option<FuzzSpec> {
        None
    }
}

/// Every encoding, in the order messages list them.
pub static REGISTRY: &[&dyn CodecKind] = &[
    &raw::Kind,
    #[cfg(feature = "jpeg")]
    &jpeg::Kind,
    &png::Kind,
    &compressed_segmentation::Kind,
    &blosc::Kind,
    &compresso::Kind,
    &crackle::Kind,
    #[cfg(feature = "jxl")]
    &jxl::Kind,
];

/// Encodings that this build leaves out, each with the cargo feature that adds it: a layer
/// in one of them parses, and reading or creating it fails with an error naming the feature.
const LEFT_OUT: &[(&str, &str)] = &[
    #[cfg(not(feature = "jpeg"))]
    ("jpeg", "jpeg"),
    #[cfg(not(feature = "jxl"))]
    ("jxl", "jxl"),
];

/// Why IO on the encoding `name`, which no registered codec has, cannot work: a missing
/// cargo feature where the build left the codec out.
pub(crate) fn why_unsupported(name: &str) -> String {
    match left_out_feature(name) {
        Some(feature) => {
            format!("encoding {name:?} needs bigarrays built with the `{feature}` cargo feature")
        }
        None => format!("encoding {name:?} is not supported"),
    }
}

/// The cargo feature that adds the encoding `name`, where this build left it out.
pub(crate) fn left_out_feature(name: &str) -> Option<&'static str> {
    LEFT_OUT.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The encoding `name` (any case) in `registry`, with its options from `scale`; a name no
/// codec has parses as an unsupported encoding (IO on it raises).
pub fn parse_in(
    registry: &[&dyn CodecKind],
    name: &str,
    scale: &ScaleJson,
) -> Result<Encoding, FieldError> {
    let lower = name.to_ascii_lowercase();
    for kind in registry {
        if let Some(name) = kind.names().iter().find(|n| **n == lower) {
            return kind.parse(name, scale).map(Encoding::from);
        }
    }
    Ok(Encoding::unsupported(lower))
}

/// The integer option `field` of a scale, in `0..=max`, `default` when absent or null.
pub fn int_option(scale: &ScaleJson, field: &str, max: u64, default: u8) -> Result<u8, FieldError> {
    match scale.get(field) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= max)
            .map(|n| n as u8)
            .ok_or_else(|| FieldError::new(field, format!("not an integer in 0..={max}"))),
    }
}

/// Every encoding name, in registry order.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().flat_map(|k| k.names().iter().copied())
}

/// Every option key of every encoding, in registry order, each once.
pub fn all_option_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for key in REGISTRY.iter().flat_map(|k| k.option_keys()) {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    keys
}

/// Refuses an option key that no encoding has, naming it.
pub(crate) fn check_option_keys(options: &ScaleJson) -> crate::error::Result<()> {
    let known = all_option_keys();
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(crate::error::Error::invalid(format!(
            "encoding option {key:?} is not one of {known:?}"
        ))),
        None => Ok(()),
    }
}

/// Each encoding name with its option keys.
pub fn option_keys() -> Vec<(&'static str, &'static [&'static str])> {
    REGISTRY
        .iter()
        .flat_map(|k| k.names().iter().map(|n| (*n, k.option_keys())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let all: Vec<_> = names().collect();
        for (i, n) in all.iter().enumerate() {
            assert_eq!(*n, n.to_ascii_lowercase());
            assert!(!all[..i].contains(n), "{n} listed twice");
        }
    }

    #[test]
    fn every_listed_codec_parses_with_defaults_and_names_itself() {
        for name in names() {
            let e = parse_in(REGISTRY, &name.to_ascii_uppercase(), &ScaleJson::new()).unwrap();
            assert_eq!(e.name(), name);
            assert!(e.codec().supported());
        }
        assert!(!parse_in(REGISTRY, "no_such_encoding", &ScaleJson::new())
            .unwrap()
            .codec()
            .supported());
    }

    #[test]
    #[cfg(not(feature = "jpeg"))]
    fn jpeg_without_its_feature_parses_and_names_the_feature() {
        let e = parse_in(REGISTRY, "jpeg", &ScaleJson::new()).unwrap();
        let err = e.codec().check(DType::U8, 1).unwrap_err();
        assert!(
            err.reason.contains("`jpeg` cargo feature"),
            "{}",
            err.reason
        );
    }
}
