//! The `blosc` encoding (BigArrays.jl calls it `blosclz`): a chunk is one Blosc-1 buffer of
//! the raw voxels, typesize = itemsize. A thin safe wrapper over c-blosc 1.x (`blosc-src`,
//! built from source): sizes are validated before c-blosc touches the buffer, decompression
//! writes into a slice of exactly the chunk's size, and c-blosc runs single-threaded because
//! chunks are already decoded in parallel.

use std::borrow::Cow;
use std::ffi::{c_int, c_void, CString};

use serde_json::Value;

use super::registry::{int_option, FuzzSpec};
use super::{ChunkLayout, Codec, CodecKind, Compression, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// The registry entry: `blosc`, and BigArrays.jl's `blosclz`, whose default compressor is
/// blosclz.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["blosc", "blosclz"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &["blosc_compressor", "blosc_clevel", "blosc_shuffle"]
    }
    fn parse(&self, name: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        let lz = name == "blosclz";
        let compressor = match scale.get("blosc_compressor") {
            None | Some(Value::Null) if lz => BloscCompressor::BloscLz,
            None | Some(Value::Null) => BloscCompressor::Lz4,
            Some(v) => v.as_str().and_then(BloscCompressor::parse).ok_or_else(|| {
                FieldError::new(
                    "blosc_compressor",
                    "not one of \"blosclz\", \"lz4\", \"zstd\"",
                )
            })?,
        };
        Ok(Box::new(Blosc {
            name,
            compressor,
            clevel: int_option(scale, "blosc_clevel", 9, 5)?,
            shuffle: int_option(scale, "blosc_shuffle", 2, 1)?,
        }))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: &[DType::U8, DType::U16, DType::U32, DType::F64],
            channels: &[1, 2],
        })
    }
}

/// The blosc codec with its options. The compressor, level and shuffle matter to writers
/// only: the buffer header tells readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blosc {
    /// `blosc` or `blosclz`.
    pub name: &'static str,
    /// `blosc_compressor`.
    pub compressor: BloscCompressor,
    /// `blosc_clevel` (0–9).
    pub clevel: u8,
    /// `blosc_shuffle`: 0 (none), 1 (byte) or 2 (bit).
    pub shuffle: u8,
}

impl Codec for Blosc {
    fn name(&self) -> &str {
        self.name
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([
            ("blosc_compressor".into(), self.compressor.name().into()),
            ("blosc_clevel".into(), self.clevel.into()),
            ("blosc_shuffle".into(), self.shuffle.into()),
        ])
    }
    fn check(&self, _: DType, _: usize) -> Result<(), FieldError> {
        Ok(())
    }
    fn default_compression(&self) -> Compression {
        Compression::None
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        f(&decode(bytes, layout)?);
        Ok(())
    }
    fn encode<'a>(&self, voxels: &'a [u8], layout: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        encode(voxels, layout, self.compressor, self.clevel, self.shuffle).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a Blosc-1 buffer of the chunk's size.
#[derive(Debug, thiserror::Error)]
pub enum BloscDecodeError {
    #[error("{0} bytes is shorter than a Blosc header")]
    /// The buffer (this many bytes) is shorter than a Blosc header.
    Short(usize),
    #[error("not a valid Blosc-1 buffer (header sizes disagree with its length)")]
    /// The header's sizes disagree with the buffer's length.
    Invalid,
    #[error("Blosc buffer holds {holds} bytes, the chunk needs {expected}")]
    /// The buffer decompresses to `holds` bytes, the chunk needs `expected`.
    Size {
        /// Decompressed bytes the header declares.
        holds: usize,
        /// Decoded bytes the chunk needs.
        expected: usize,
    },
    #[error("corrupt Blosc data (c-blosc returned {0})")]
    /// c-blosc failed to decompress (its return code).
    Corrupt(c_int),
}

/// Blosc-1's header length; a valid buffer is never shorter.
const HEADER_LEN: usize = 16;
/// Bytes Blosc may add to incompressible input (`BLOSC_MAX_OVERHEAD`).
const MAX_OVERHEAD: usize = 16;

/// The compressor inside a Blosc buffer we write (reads take any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BloscCompressor {
    /// `blosclz`, Blosc's own fast compressor.
    BloscLz,
    /// `lz4`.
    Lz4,
    /// `zstd`.
    Zstd,
}

impl BloscCompressor {
    /// The compressor named `name` (`blosclz`, `lz4`, `zstd`, any case), or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "blosclz" => BloscCompressor::BloscLz,
            "lz4" => BloscCompressor::Lz4,
            "zstd" => BloscCompressor::Zstd,
            _ => return None,
        })
    }

    /// The compressor's name as stored (`blosclz`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            BloscCompressor::BloscLz => "blosclz",
            BloscCompressor::Lz4 => "lz4",
            BloscCompressor::Zstd => "zstd",
        }
    }
}

/// Decodes a Blosc-1 buffer that must hold exactly the chunk's raw bytes.
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, BloscDecodeError> {
    let expected = layout.raw_len();
    check_buffer(bytes, expected)?;
    let mut out = vec![0u8; expected];
    decompress_into(bytes, &mut out)?;
    Ok(out)
}

/// The decompressed size a Blosc-1 buffer declares, after checking that its header agrees
/// with its length (what makes it safe to hand to c-blosc).
pub fn decompressed_len(bytes: &[u8]) -> Result<usize, BloscDecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(BloscDecodeError::Short(bytes.len()));
    }
    let mut nbytes = 0usize;
    // SAFETY: `bytes` is a live slice of `bytes.len()` readable bytes, which is what
    // `blosc_cbuffer_validate` reads at most; `nbytes` is a valid out-pointer.
    let valid = unsafe {
        blosc_src::blosc_cbuffer_validate(bytes.as_ptr().cast(), bytes.len(), &mut nbytes)
    };
    if valid != 0 {
        return Err(BloscDecodeError::Invalid);
    }
    Ok(nbytes)
}

fn check_buffer(bytes: &[u8], expected: usize) -> Result<(), BloscDecodeError> {
    let holds = decompressed_len(bytes)?;
    if holds != expected {
        return Err(BloscDecodeError::Size { holds, expected });
    }
    Ok(())
}

/// Decompresses a Blosc-1 buffer straight into `out`, which must be exactly the size the
/// buffer declares (Zarr's `blosc` codec shares this with the Precomputed encoding).
pub fn decompress_into(bytes: &[u8], out: &mut [u8]) -> Result<(), BloscDecodeError> {
    let expected = out.len();
    check_buffer(bytes, expected)?;
    // SAFETY: `check_buffer` has validated the header (`blosc_cbuffer_validate`): its
    // compressed size fits in `bytes` (so c-blosc, which bounds its reads by that size, stays
    // inside the slice) and it is safe to call `blosc_decompress_ctx`; `out` is writable for
    // `out.len()` bytes and c-blosc writes no more than `destsize`. Nothing else aliases
    // either buffer.
    let n = unsafe {
        blosc_src::blosc_decompress_ctx(
            bytes.as_ptr().cast::<c_void>(),
            out.as_mut_ptr().cast::<c_void>(),
            out.len(),
            1,
        )
    };
    if usize::try_from(n).ok() != Some(expected) {
        return Err(BloscDecodeError::Corrupt(n));
    }
    Ok(())
}

/// Encodes raw voxels as one Blosc-1 buffer; `shuffle` is 0 (none), 1 (byte) or 2 (bit).
pub fn encode(
    voxels: &[u8],
    layout: &ChunkLayout,
    compressor: BloscCompressor,
    clevel: u8,
    shuffle: u8,
) -> Result<Vec<u8>> {
    compress(
        voxels,
        compressor.name(),
        clevel,
        shuffle,
        layout.dtype.itemsize(),
        0,
    )
}

/// Compresses `data` as one Blosc-1 buffer with c-blosc's compressor `cname` (`blosclz`,
/// `lz4`, `lz4hc`, `zstd`, `zlib`, `snappy` where built), level `clevel` (0–9), `shuffle` 0
/// (none), 1 (byte) or 2 (bit), element size `typesize` and `blocksize` (0: automatic), as
/// numcodecs' and zarr-python's Blosc call c-blosc.
pub fn compress(
    data: &[u8],
    cname: &str,
    clevel: u8,
    shuffle: u8,
    typesize: usize,
    blocksize: usize,
) -> Result<Vec<u8>> {
    // c-blosc 1.x takes at most 2^31 - 1 - overhead bytes per buffer.
    if data.len() > (i32::MAX as usize) - MAX_OVERHEAD {
        return Err(Error::invalid("a blosc chunk must be smaller than 2 GiB"));
    }
    let name = CString::new(cname).map_err(|e| Error::invalid(e.to_string()))?;
    let mut out = vec![0u8; data.len() + MAX_OVERHEAD];
    // SAFETY: `data` is readable for `data.len()` bytes, `out` writable for `out.len()`
    // bytes (c-blosc writes at most `destsize`), `name` is a NUL-terminated string that
    // outlives the call; the buffers do not overlap.
    let n = unsafe {
        blosc_src::blosc_compress_ctx(
            c_int::from(clevel.min(9)),
            c_int::from(shuffle.min(2)),
            typesize,
            data.len(),
            data.as_ptr().cast::<c_void>(),
            out.as_mut_ptr().cast::<c_void>(),
            out.len(),
            name.as_ptr(),
            blocksize,
            1,
        )
    };
    let n = usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
        Error::invalid(format!(
            "blosc compression with {cname:?} failed (code {n})"
        ))
    })?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn round_trips_with_every_compressor() {
        let layout = ChunkLayout {
            shape: [17, 9, 3],
            channels: 2,
            dtype: DType::U16,
        };
        let voxels: Vec<u8> = (0..layout.raw_len()).map(|i| (i / 7) as u8).collect();
        for c in [
            BloscCompressor::BloscLz,
            BloscCompressor::Lz4,
            BloscCompressor::Zstd,
        ] {
            for shuffle in [0, 1, 2] {
                let enc = encode(&voxels, &layout, c, 5, shuffle).unwrap();
                assert_eq!(decode(&enc, &layout).unwrap(), voxels);
            }
        }
    }

    #[test]
    fn corrupt_buffers_are_errors() {
        let layout = ChunkLayout {
            shape: [64, 64, 4],
            channels: 1,
            dtype: DType::U32,
        };
        let voxels: Vec<u8> = (0..layout.raw_len()).map(|i| (i % 13) as u8).collect();
        let enc = encode(&voxels, &layout, BloscCompressor::Lz4, 5, 1).unwrap();
        let smaller = ChunkLayout {
            shape: [64, 64, 3],
            ..layout
        };
        assert!(decode(&enc, &smaller).is_err());
        for cut in [0, 10, 16, enc.len() / 2, enc.len() - 1] {
            assert!(decode(&enc[..cut], &layout).is_err(), "{cut}");
        }
        for i in (0..enc.len()).step_by(3) {
            let mut bad = enc.clone();
            bad[i] ^= 0x5a;
            let _ = decode(&bad, &layout);
        }
    }
}
