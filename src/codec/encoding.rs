//! Which codec a chunk is encoded with, and its options: a cheap handle on a parsed
//! [`Codec`]. Formats find the codec's JSON object in their own metadata (the precomputed
//! `info` scale: `format/precomputed/info.rs`) and hand it to [`Encoding::from_scale`];
//! codecs never look at a format's metadata. Writers of a new layer build one with
//! [`Encoding::with_options`] (or a shorthand like [`Encoding::jpeg`]), which refuses a bad
//! option there and then.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::blosc::BloscCompressor;
use super::registry::{self, REGISTRY};
use super::{ChunkLayout, Codec, Compression, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// A scale's chunk encoding with its options, parsed. Cloning shares the codec.
#[derive(Clone)]
pub struct Encoding {
    codec: Arc<dyn Codec>,
    /// The options given when it was built, as given, restricted to the codec's own keys:
    /// what a new layer's scale states (the rest stay implicit defaults).
    stated: Arc<ScaleJson>,
}

impl From<Box<dyn Codec>> for Encoding {
    fn from(codec: Box<dyn Codec>) -> Self {
        Encoding {
            codec: Arc::from(codec),
            stated: Arc::default(),
        }
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
        let mut encoding =
            registry::parse_in(REGISTRY, name, scale).map_err(|e| (e.field, e.reason))?;
        let own = encoding.codec.options();
        let stated = scale.iter().filter(|(k, _)| own.contains_key(*k));
        encoding.stated = Arc::new(stated.map(|(k, v)| (k.clone(), v.clone())).collect());
        Ok(encoding)
    }

    /// The encoding `name` (any case) with `options`, the scale keys that parameterise it
    /// (`{"jpeg_quality": 90}`; see [`registry::option_keys`]), for a new layer. A key no
    /// encoding has, or a bad value, is an `InvalidArgument` error naming the option; keys
    /// of other encodings are ignored. A name no codec has parses, and creating a layer
    /// with it fails.
    pub fn with_options(name: &str, options: &ScaleJson) -> Result<Self> {
        registry::check_option_keys(options)?;
        Self::from_scale(name, options).map_err(|(field, reason)| {
            Error::invalid(format!("encoding option {field:?}: {reason}"))
        })
    }

    /// `raw`, the default encoding.
    pub fn raw() -> Self {
        Self::parse("raw")
    }

    /// `jpeg` at `quality` (0..=100; the default is 85). Needs the `jpeg` cargo feature to
    /// read or write.
    pub fn jpeg(quality: u8) -> Result<Self> {
        Self::with_options(
            "jpeg",
            &ScaleJson::from_iter([("jpeg_quality".into(), quality.into())]),
        )
    }

    /// `png` at zlib `level` (0..=9; the default is 9).
    pub fn png(level: u8) -> Result<Self> {
        Self::with_options(
            "png",
            &ScaleJson::from_iter([("png_level".into(), level.into())]),
        )
    }

    /// `compressed_segmentation` with blocks of `block_size` voxels (the default is
    /// `[8, 8, 8]`).
    pub fn compressed_segmentation(block_size: [u64; 3]) -> Result<Self> {
        let options = [(
            "compressed_segmentation_block_size".into(),
            serde_json::json!(block_size),
        )];
        Self::with_options("compressed_segmentation", &ScaleJson::from_iter(options))
    }

    /// `blosc` with `compressor` at level `clevel` (0..=9) and `shuffle` 0 (none), 1 (byte)
    /// or 2 (bit).
    pub fn blosc(compressor: BloscCompressor, clevel: u8, shuffle: u8) -> Result<Self> {
        let options = [
            ("blosc_compressor".into(), compressor.name().into()),
            ("blosc_clevel".into(), clevel.into()),
            ("blosc_shuffle".into(), shuffle.into()),
        ];
        Self::with_options("blosc", &ScaleJson::from_iter(options))
    }

    /// A name no codec has (zfpc, ...): it parses, and IO on it raises an
    /// `InfoError`.
    pub(crate) fn unsupported(name: String) -> Self {
        Self::from(Box::new(Unsupported { name }) as Box<dyn Codec>)
    }

    /// The name the scale's `encoding` key gives.
    pub fn name(&self) -> &str {
        self.codec.name()
    }

    /// The codec, to call directly.
    pub fn codec(&self) -> &dyn Codec {
        &*self.codec
    }

    /// The options it was built with (the keys of its own codec, values as given): what a
    /// new layer's scale states. Equality ignores them; [`Codec::options`] has them all.
    pub fn stated_options(&self) -> &ScaleJson {
        &self.stated
    }
}

/// Two encodings are equal when their names and options are.
impl PartialEq for Encoding {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.codec.options() == other.codec.options()
    }
}

impl Eq for Encoding {}

impl fmt::Debug for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.codec.fmt(f)
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
