//! The `raw` encoding: little-endian voxels in Fortran `[x, y, z, c]` order, no header.
//! Decoding is a length check; the length rule lives in `transport::with_decompressed`.

use std::borrow::Cow;

use super::transport::{self, Compression};
use super::{scratch, ChunkLayout, Codec, CodecKind, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::Result;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["raw"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &[]
    }
    fn parse(&self, _: &'static str, _: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Raw))
    }
}

/// The raw codec (no options).
#[derive(Debug, Clone, Copy)]
pub struct Raw;

/// A decoded raw chunk whose length is not the chunk's.
#[derive(Debug, thiserror::Error)]
#[error("{got} bytes, the chunk needs {expected}")]
pub struct RawDecodeError {
    /// Bytes stored.
    pub got: usize,
    /// Bytes the chunk needs.
    pub expected: usize,
}

impl Codec for Raw {
    fn name(&self) -> &str {
        "raw"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::new()
    }
    fn check(&self, _: DType, _: usize) -> Result<(), FieldError> {
        Ok(())
    }
    fn default_compression(&self) -> Compression {
        Compression::Gzip
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        let expected = layout.raw_len();
        if bytes.len() != expected {
            return Err(Box::new(RawDecodeError {
                got: bytes.len(),
                expected,
            }));
        }
        f(bytes);
        Ok(())
    }
    /// The exact length is known, so the transport layer checks it (and a plain chunk is
    /// handed over without a copy).
    fn decode_stored(
        &self,
        key: &str,
        stored: &[u8],
        declared: Compression,
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        decode(key, stored, declared, layout.raw_len(), f)
    }
    fn decode_prefix(
        &self,
        stored: &[u8],
        declared: Compression,
        layout: &ChunkLayout,
        prefix: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> bool {
        // A chunk exactly as long as its voxels may be plain data that happens to start like
        // gzip (see `transport::with_decompressed`): only the whole-chunk path can tell.
        let raw_len = layout.raw_len();
        if prefix >= raw_len || stored.len() == raw_len {
            return false;
        }
        scratch::with_inflated(raw_len, |out| {
            let done = transport::gunzip_prefix(stored, declared, raw_len, &mut out[..prefix]);
            if done {
                f(out);
            }
            done
        })
    }
    fn encode<'a>(&self, voxels: &'a [u8], _: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        Ok(Cow::Borrowed(voxels))
    }
}

/// Calls `f` with the voxels of a stored raw chunk that must hold `expected_len` bytes;
/// `declared` is the transport compression its key suffix or `Content-Encoding` names.
pub fn decode<R>(
    key: &str,
    stored: &[u8],
    declared: Compression,
    expected_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    transport::with_decompressed(key, stored, declared, expected_len, f)
}
