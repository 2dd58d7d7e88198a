//! Chunk codecs. `transport` undoes (and applies) the byte-level compression that stores put
//! around a chunk; every other module but `scratch` and `registry` is one scale encoding
//! (`raw`, `jpeg`, `png`, `compressed_segmentation`, `blosc`), behind the [`Codec`] trait.
//! [`decode`] and [`encode`] dispatch on the scale's [`Encoding`] (a handle on a codec and
//! its options), once per chunk, so the array code never names a codec, and nothing here
//! knows a format: formats hand a codec the JSON object that holds its options.
//!
//! # Adding an encoding
//!
//! One file plus one registry line:
//!
//! 1. `src/codec/<name>.rs` defines a unit struct implementing [`CodecKind`] (its names,
//!    its option keys, how it parses them from a scale's JSON object, the dtypes and
//!    channel counts to fuzz it with) and a struct holding its parsed options that
//!    implements [`Codec`] (check, decode, encode, and the optional fast paths), with its
//!    own typed decode error (`thiserror`), which [`decode`] keeps as the source of the
//!    `ChunkDecode` error.
//! 2. `mod <name>;` here and `&<name>::Kind` in [`registry::REGISTRY`].
//!
//! The `info` parser, `BigArray.create`'s option check, Python's copy (through
//! `_core.encoding_option_keys()`) and the fuzz harness list all read the registry. A codec
//! that the registry lists with fuzz settings also needs a cargo-fuzz target file, a
//! `[[bin]]` in `fuzz/Cargo.toml`, an entry in the Makefile's `FUZZ_TARGETS` and seeds in
//! `fuzz/corpus/decode_<name>/`: `tests/fuzz_replay.rs` fails until they are there. The
//! test-only `src/codec/toy.rs` is a complete example.
//!
//! Dispatch is one virtual call per chunk (`decode_rows` adds one per row of voxels, never
//! one per voxel); the decoders themselves are the same generic code as before.

pub mod blosc;
pub mod compressed_segmentation;
pub mod compresso;
pub mod crackle;
mod encoding;
#[cfg(feature = "jpeg")]
pub mod jpeg;
#[cfg(feature = "jxl")]
pub mod jxl;
pub mod png;
pub mod raw;
pub mod registry;
pub(crate) mod scratch;
#[cfg(test)]
mod toy;
pub mod transport;
mod union_find;

use std::borrow::Cow;

use serde_json::{Map, Value};

pub use encoding::Encoding;
pub use registry::{CodecKind, FuzzSpec, REGISTRY};
pub use scratch::with_scratch;
pub use transport::{Compression, GzipLevel};

use crate::dtype::DType;
use crate::error::{Error, Result};
/// What a chunk holds once decoded: its clipped shape, channel count and voxel type. The
/// decoded byte length follows from it, so no decoder needs to trust a size in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// `[cx, cy, cz]`, clipped at the upper layer bounds.
    pub shape: [usize; 3],
    /// Channels per voxel (at least 1).
    pub channels: usize,
    /// The voxel type.
    pub dtype: DType,
}

impl ChunkLayout {
    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of the decoded chunk (Fortran `[x, y, z, c]`, little-endian).
    pub fn raw_len(&self) -> usize {
        self.voxels() * self.channels * self.dtype.itemsize()
    }
}

/// Where a decoder that writes in place puts a chunk: `row(c, y, z)` is the row of voxels
/// `(0.., y, z)` of channel `c`, `shape[0]` little-endian values, all of which it writes.
pub trait ChunkRows {
    /// The row of voxels `(0.., y, z)` of channel `c`: `shape[0]` values to write in full.
    fn row(&mut self, c: usize, y: usize, z: usize) -> &mut [u8];
}

/// A scale's JSON object, as formats hand it to [`CodecKind::parse`].
pub type ScaleJson = Map<String, Value>;

/// What a codec's decoder reports: its own typed error, kept as the source of the
/// `ChunkDecode` error that names the key.
pub type DecodeError = Box<dyn std::error::Error + Send + Sync>;

/// A layer field that a codec cannot hold or parse: `field` is the metadata key
/// (`data_type`, `num_channels`, `encoding`, or one of the codec's option keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The metadata key at fault.
    pub field: String,
    /// What is wrong with it, in words.
    pub reason: String,
}

impl FieldError {
    /// An error about `field`, saying `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The label types seung-lab's segmentation encodings (compresso, crackle) hold.
pub(crate) const LABEL_DTYPES: &[DType] = &[DType::U8, DType::U16, DType::U32, DType::U64];

/// The check of an encoding that holds one channel of unsigned integer labels.
pub(crate) fn check_labels(
    encoding: &str,
    dtype: DType,
    channels: usize,
) -> Result<(), FieldError> {
    if !LABEL_DTYPES.contains(&dtype) {
        return Err(FieldError::new(
            "data_type",
            format!(
                "encoding \"{encoding}\" holds uint8, uint16, uint32 or uint64 labels only, not \
                 {dtype}"
            ),
        ));
    }
    if channels != 1 {
        return Err(FieldError::new(
            "num_channels",
            format!("encoding \"{encoding}\" holds 1 channel, not {channels}"),
        ));
    }
    Ok(())
}

/// One scale encoding with its options parsed: what [`decode`] and [`encode`] dispatch to,
/// once per chunk. Object-safe, so an [`Encoding`] holds any codec.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// The name a scale's `encoding` key gives.
    fn name(&self) -> &str;

    /// Every option as the scale key it is read from (defaults included): what equality
    /// compares, and what a writer may copy.
    fn options(&self) -> ScaleJson;

    /// Adds to a new scale's JSON object the option keys the format requires even when
    /// the caller gave none (none, unless a codec overrides it).
    fn complete_new_scale(&self, _scale: &mut ScaleJson) {}

    /// Whether the codec holds voxels of `dtype` with `channels` channels.
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError>;

    /// The transport compression a handle uses when none was asked for.
    fn default_compression(&self) -> Compression;

    /// Whether gzip around its chunks pays inside a shard (it does not around images).
    fn gzip_in_shards(&self) -> bool {
        true
    }

    /// Whether IO can work on it at all (false only for names parsed but not known).
    fn supported(&self) -> bool {
        true
    }

    /// The most bytes a chunk may take once its transport compression is undone. A
    /// well-formed chunk is well below it; a bomb stops there.
    fn stored_limit(&self, layout: &ChunkLayout) -> usize {
        2 * layout.raw_len() + (64 << 10)
    }

    /// Calls `f` once with the decoded voxels (Fortran `[x, y, z, c]`, little-endian,
    /// `layout.raw_len()` bytes) of `bytes`, whose transport compression is undone.
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError>;

    /// [`Codec::decode`] of a stored chunk: undoes its transport compression (bounded by
    /// [`Codec::stored_limit`]) first. Errors name `key`.
    fn decode_stored(
        &self,
        key: &str,
        stored: &[u8],
        declared: Compression,
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let limit = self.stored_limit(layout);
        transport::with_decompressed_bounded(key, stored, declared, limit, |bytes| {
            self.decode(bytes, layout, f)
                .map_err(|e| Error::decode_source(key, e))
        })?
    }

    /// Calls `f` with a buffer whose first `prefix` bytes are the start of the decoded
    /// chunk, when the codec can stop early; `false` (without calling `f`) otherwise.
    fn decode_prefix(
        &self,
        _stored: &[u8],
        _declared: Compression,
        _layout: &ChunkLayout,
        _prefix: usize,
        _f: &mut dyn FnMut(&[u8]),
    ) -> bool {
        false
    }

    /// Whether [`Codec::decode_rows`] writes straight into a reader's rows.
    fn decodes_into_rows(&self) -> bool {
        false
    }

    /// Decodes `bytes` (transport compression undone) into `rows`; only for a codec that
    /// [`Codec::decodes_into_rows`].
    fn decode_rows(
        &self,
        _bytes: &[u8],
        _layout: &ChunkLayout,
        _rows: &mut dyn ChunkRows,
    ) -> Result<(), DecodeError> {
        Err(format!("encoding {:?} does not decode in place", self.name()).into())
    }

    /// The encoded bytes of `voxels` (`layout.raw_len()` of them), before transport
    /// compression; borrowed when the encoding is the voxels themselves.
    fn encode<'a>(&self, voxels: &'a [u8], layout: &ChunkLayout) -> Result<Cow<'a, [u8]>>;
}

/// Checks that `encoding` can hold voxels of `dtype` with `channels` channels; the error
/// is `(field, reason)`, naming the offending `info` field.
pub fn check(encoding: &Encoding, dtype: DType, channels: usize) -> Result<(), (String, String)> {
    encoding
        .codec()
        .check(dtype, channels)
        .map_err(|e| (e.field, e.reason))
}

/// Calls `f` with the decoded voxels (Fortran `[x, y, z, c]`, little-endian) of a stored
/// chunk, whatever its sniffable transport compression (gzip, zstd). Errors name `key`.
pub fn decode<R>(
    encoding: &Encoding,
    key: &str,
    stored: &[u8],
    layout: &ChunkLayout,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    decode_as(encoding, key, stored, Compression::None, layout, f)
}

/// [`decode`] for a chunk whose key suffix or `Content-Encoding` declared `declared`: needed
/// for brotli, which has no magic number; gzip and zstd are sniffed whatever is declared.
pub fn decode_as<R>(
    encoding: &Encoding,
    key: &str,
    stored: &[u8],
    declared: Compression,
    layout: &ChunkLayout,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let raw_len = layout.raw_len();
    let mut f = Some(f);
    let mut out = None;
    let mut wrong_len = None;
    encoding
        .codec()
        .decode_stored(key, stored, declared, layout, &mut |voxels| {
            if voxels.len() != raw_len {
                wrong_len = Some(voxels.len());
            } else if let Some(f) = f.take() {
                out = Some(f(voxels));
            }
        })?;
    if let Some(n) = wrong_len {
        return Err(Error::internal(format!(
            "{key}: decoder returned {n} bytes, expected {raw_len}"
        )));
    }
    out.ok_or_else(|| Error::internal(format!("{key}: decoder returned no voxels")))
}

/// Calls `f` with a buffer of `layout.raw_len()` bytes whose first `prefix` hold the start
/// of the decoded chunk, decoded no further (the rest is unspecified): a cutout that ends
/// early along the chunk's last axes needs no more. `None`, without calling `f`, where the
/// codec cannot stop early (today only raw gzip chunks can, see
/// [`transport::gunzip_prefix`]) or the data breaks off; the caller then decodes the whole
/// chunk, which also reports what is wrong with it.
pub fn decode_prefix_as<R>(
    encoding: &Encoding,
    stored: &[u8],
    declared: Compression,
    layout: &ChunkLayout,
    prefix: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    let done = encoding
        .codec()
        .decode_prefix(stored, declared, layout, prefix, &mut |voxels| {
            if let Some(f) = f.take() {
                out = Some(f(voxels));
            }
        });
    if done {
        out
    } else {
        None
    }
}

/// Whether [`decode_rows_as`] can decode chunks of `encoding` straight into a reader's
/// output, row by row, with no decoded copy of the chunk in between.
pub fn decodes_into_rows(encoding: &Encoding) -> bool {
    encoding.codec().decodes_into_rows()
}

/// [`decode_as`] into `rows`, for an encoding that [`decodes_into_rows`].
pub fn decode_rows_as(
    encoding: &Encoding,
    key: &str,
    stored: &[u8],
    declared: Compression,
    layout: &ChunkLayout,
    rows: &mut dyn ChunkRows,
) -> Result<()> {
    let codec = encoding.codec();
    if !codec.decodes_into_rows() {
        return Err(Error::internal(format!(
            "{key}: encoding {:?} does not decode in place",
            encoding.name()
        )));
    }
    let limit = codec.stored_limit(layout);
    transport::with_decompressed_bounded(key, stored, declared, limit, |bytes| {
        codec
            .decode_rows(bytes, layout, rows)
            .map_err(|e| Error::decode_source(key, e))
    })?
}

/// The stored bytes of a chunk: `voxels` (Fortran `[x, y, z, c]`) encoded, then wrapped in
/// `compression` (gzip at `level`).
pub fn encode(
    encoding: &Encoding,
    voxels: &[u8],
    layout: &ChunkLayout,
    compression: Compression,
    level: GzipLevel,
) -> Result<Vec<u8>> {
    if voxels.len() != layout.raw_len() {
        return Err(Error::internal(format!(
            "encode got {} bytes for a chunk of {}",
            voxels.len(),
            layout.raw_len()
        )));
    }
    let encoded = encoding.codec().encode(voxels, layout)?;
    compression.compress_at(&encoded, level)
}

/// The transport compression a handle uses when none was asked for: gzip where it pays
/// (raw, compressed_segmentation), none for already-compressed images and blosc, as
/// CloudVolume does (`should_compress`).
pub fn default_compression(encoding: &Encoding) -> Compression {
    encoding.codec().default_compression()
}

/// Moves channel-planar voxels (`[x·y·z, c]`, Fortran) to pixel-interleaved (`[c, x·y·z]`)
/// samples of `itemsize` bytes, as image formats store channels.
pub(crate) fn interleave(planar: &[u8], channels: usize, itemsize: usize) -> Vec<u8> {
    if channels == 1 {
        return planar.to_vec();
    }
    let n = planar.len() / (channels * itemsize);
    let mut out = vec![0u8; planar.len()];
    for c in 0..channels {
        let plane = &planar[c * n * itemsize..(c + 1) * n * itemsize];
        for (i, sample) in plane.chunks_exact(itemsize).enumerate() {
            let o = (i * channels + c) * itemsize;
            out[o..o + itemsize].copy_from_slice(sample);
        }
    }
    out
}

/// The inverse of [`interleave`].
pub(crate) fn deinterleave(interleaved: &[u8], channels: usize, itemsize: usize) -> Vec<u8> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let n = interleaved.len() / (channels * itemsize);
    let mut out = vec![0u8; interleaved.len()];
    for (i, pixel) in interleaved.chunks_exact(channels * itemsize).enumerate() {
        for (c, sample) in pixel.chunks_exact(itemsize).enumerate() {
            let o = (c * n + i) * itemsize;
            out[o..o + itemsize].copy_from_slice(sample);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombs_and_garbage_are_errors_naming_the_key_for_every_encoding() {
        let layout = ChunkLayout {
            shape: [16, 16, 4],
            channels: 1,
            dtype: DType::U32,
        };
        let bomb = Compression::Gzip.compress(&vec![0u8; 64 << 20]).unwrap();
        for name in ["png", "compressed_segmentation", "blosc"] {
            let encoding = Encoding::parse(name);
            for bad in [&bomb[..], &[1, 2, 3][..], &[0xffu8; 40][..]] {
                let layout = match name {
                    "png" => ChunkLayout {
                        dtype: DType::U16,
                        ..layout
                    },
                    _ => layout,
                };
                match decode(&encoding, "the/key", bad, &layout, |v| v.len()) {
                    Err(e @ Error::ChunkDecode { .. }) => {
                        assert!(e.to_string().contains("the/key"), "{e}")
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
        let jpeg = Encoding::parse("jpeg");
        let grey = ChunkLayout {
            dtype: DType::U8,
            ..layout
        };
        assert!(decode(&jpeg, "k", &bomb, &grey, |_| ()).is_err());
        // A brotli bomb, declared as brotli, for every encoding.
        let br = Compression::Brotli.compress(&vec![0u8; 64 << 20]).unwrap();
        for name in ["raw", "jpeg", "png", "compressed_segmentation", "blosc"] {
            let layout = match name {
                "png" => ChunkLayout {
                    dtype: DType::U16,
                    ..layout
                },
                "jpeg" => grey,
                _ => layout,
            };
            let encoding = Encoding::parse(name);
            match decode_as(
                &encoding,
                "the/key",
                &br,
                Compression::Brotli,
                &layout,
                |_| (),
            ) {
                Err(e @ Error::ChunkDecode { .. }) => {
                    assert!(e.to_string().contains("the/key"), "{e}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn round_trips_through_transport_compression() {
        let layout = ChunkLayout {
            shape: [5, 3, 2],
            channels: 2,
            dtype: DType::U64,
        };
        let voxels: Vec<u8> = (0..layout.raw_len()).map(|i| (i % 3) as u8).collect();
        for name in ["raw", "png", "compressed_segmentation", "blosc", "blosclz"] {
            let encoding = Encoding::parse(name);
            if check(&encoding, layout.dtype, layout.channels).is_err() {
                continue;
            }
            for compression in Compression::PROBE_ORDER {
                let stored =
                    encode(&encoding, &voxels, &layout, compression, GzipLevel::DEFAULT).unwrap();
                let back = decode_as(&encoding, "k", &stored, compression, &layout, |v| {
                    v.to_vec()
                });
                assert_eq!(back.unwrap(), voxels, "{name} {compression:?}");
            }
        }
    }

    #[test]
    fn interleave_round_trips() {
        let planar: Vec<u8> = (0..24).collect();
        let inter = interleave(&planar, 3, 2);
        assert_eq!(&inter[..6], &[0, 1, 8, 9, 16, 17]);
        assert_eq!(deinterleave(&inter, 3, 2), planar);
    }
}
