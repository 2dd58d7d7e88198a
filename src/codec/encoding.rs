//! Which codec a chunk is encoded with, and its options: a cheap handle on a parsed
//! [`Codec`]. Formats find the codec's JSON object in their own metadata (the precomputed
//! `info` scale: `format/precomputed/info.rs`) and hand it to [`Encoding::from_scale`];
//! codecs never look at a format's metadata.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::registry::{self, REGISTRY};
use super::{ChunkLayout, Codec, Compression, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// A scale's chunk encoding with its options. Cloning shares the codec.
#[derive(Clone)]
pub struct Encoding(Arc<dyn Codec>);

impl From<Box<dyn Codec>> for Encoding {
    fn from(codec: Box<dyn Codec>) -> Self {
        Encoding(Arc::from(codec))
    }
}

impl Encoding {
    /// The encoding named `name` with every option at its default.
    pub fn parse(name: &str) -> Self {
        Self::from_scale(name, &ScaleJson::new())
            .unwrap_or_else(|_| Self::unsupported(name.to_ascii_lowercase()))
    }

    /// The encoding of a scale: its name plus the options in the scale's JSON object.
    /// Errors are `(field, reason)`.
    pub fn from_scale(
        name: &str,
        scale: &ScaleJson,
    ) -> std::result::Result<Self, (String, String)> {
        registry::parse_in(REGISTRY, name, scale).map_err(|e| (e.field, e.reason))
    }

    /// `raw`, the default encoding.
    pub fn raw() -> Self {
        Self::parse("raw")
    }

    /// A name no codec has (compresso, jxl, ...): it parses, and IO on it raises an
    /// `InfoError`.
    pub(crate) fn unsupported(name: String) -> Self {
        Encoding(Arc::new(Unsupported { name }))
    }

    /// The name the scale's `encoding` key gives.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The codec, to call directly.
    pub fn codec(&self) -> &dyn Codec {
        &*self.0
    }
}

/// Two encodings are equal when their names and options are.
impl PartialEq for Encoding {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.0.options() == other.0.options()
    }
}

impl Eq for Encoding {}

impl fmt::Debug for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The codec of a name no registered codec has.
#[derive(Debug)]
struct Unsupported {
    name: String,
}

impl Codec for Unsupported {
    fn name(&self) -> &str {
        &self.name
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::new()
    }
    fn check(&self, _: DType, _: usize) -> Result<(), FieldError> {
        Err(FieldError::new(
            "encoding",
            registry::why_unsupported(&self.name),
        ))
    }
    fn default_compression(&self) -> Compression {
        Compression::Gzip
    }
    fn supported(&self) -> bool {
        false
    }
    fn decode(
        &self,
        _: &[u8],
        _: &ChunkLayout,
        _: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        Err(registry::why_unsupported(&self.name).into())
    }
    fn encode<'a>(&self, _: &'a [u8], _: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        Err(Error::invalid(format!(
            "encoding {:?} cannot be written",
            self.name
        )))
    }
}
