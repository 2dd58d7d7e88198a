//! Chunk codecs. `transport` undoes (and applies) the byte-level compression that stores put
//! around a chunk; the other modules are the scale encodings (`raw`, `jpeg`, `png`,
//! `compressed_segmentation`, `blosc`). [`decode`] and [`encode`] dispatch on the scale's
//! [`Encoding`], so the array code never names a codec.

pub mod blosc;
pub mod compressed_segmentation;
mod encoding;
pub mod jpeg;
pub mod png;
pub mod raw;
mod scratch;
pub mod transport;

pub use encoding::Encoding;
pub use scratch::with_scratch;
pub use transport::Compression;

use crate::dtype::DType;
use crate::error::{Error, Result};

/// What a chunk holds once decoded: its clipped shape, channel count and voxel type. The
/// decoded byte length follows from it, so no decoder needs to trust a size in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// `[cx, cy, cz]`, clipped at the upper layer bounds.
    pub shape: [usize; 3],
    pub channels: usize,
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
    fn row(&mut self, c: usize, y: usize, z: usize) -> &mut [u8];
}

/// Checks that `encoding` can hold voxels of `dtype` with `channels` channels; the error
/// names the offending `info` field.
pub fn check(encoding: &Encoding, dtype: DType, channels: usize) -> Result<(), (String, String)> {
    let bad = |field: &str, reason: String| Err((field.to_string(), reason));
    let name = encoding.name();
    match encoding {
        Encoding::Raw | Encoding::Blosc { .. } => Ok(()),
        Encoding::Jpeg { .. } if dtype != DType::U8 => bad(
            "data_type",
            format!("encoding {name:?} holds uint8 only, not {dtype}"),
        ),
        Encoding::Jpeg { .. } if channels != 1 && channels != 3 => bad(
            "num_channels",
            format!("encoding {name:?} holds 1 or 3 channels, not {channels}"),
        ),
        Encoding::Png { .. } if dtype != DType::U8 && dtype != DType::U16 => bad(
            "data_type",
            format!("encoding {name:?} holds uint8 or uint16 only, not {dtype}"),
        ),
        Encoding::Png { .. } if !(1..=4).contains(&channels) => bad(
            "num_channels",
            format!("encoding {name:?} holds 1 to 4 channels, not {channels}"),
        ),
        Encoding::CompressedSegmentation { .. } if dtype != DType::U32 && dtype != DType::U64 => {
            bad(
                "data_type",
                format!("encoding {name:?} holds uint32 or uint64 only, not {dtype}"),
            )
        }
        Encoding::Jpeg { .. } | Encoding::Png { .. } | Encoding::CompressedSegmentation { .. } => {
            Ok(())
        }
        Encoding::Unsupported(name) => bad("encoding", format!("{name:?} is not supported")),
    }
}

/// The most bytes any encoded chunk may inflate to, whatever its parameters say.
const MAX_ENCODED_LIMIT: usize = 1 << 30;

/// The most bytes a chunk of a non-raw encoding may take once its transport compression is
/// undone. A well-formed chunk is well below it; a bomb stops there.
fn stored_limit(encoding: &Encoding, layout: &ChunkLayout) -> usize {
    let raw = layout.raw_len();
    let slack = 2 * raw + (64 << 10);
    match encoding {
        // Blocks larger than the chunk are padded in the data, so the bound can exceed the
        // raw size many times over; it is still capped, so a hostile block size in `info`
        // cannot make us reserve more than 1 GiB.
        Encoding::CompressedSegmentation { block_size } => {
            compressed_segmentation::max_encoded_len(layout, *block_size)
                .min(MAX_ENCODED_LIMIT)
                .max(slack)
        }
        _ => slack,
    }
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
    if let Encoding::Raw = encoding {
        return raw::decode(key, stored, declared, layout.raw_len(), f);
    }
    let limit = stored_limit(encoding, layout);
    if let Encoding::CompressedSegmentation { block_size } = encoding {
        return transport::with_decompressed_bounded(key, stored, declared, limit, |bytes| {
            scratch::with_decoded(layout.raw_len(), |out| {
                compressed_segmentation::decode_into(bytes, layout, *block_size, out)
                    .map(|()| f(out))
                    .map_err(|reason| Error::decode(key, reason))
            })
        })?;
    }
    let voxels = transport::with_decompressed_bounded(key, stored, declared, limit, |bytes| {
        decode_plain(encoding, bytes, layout).map_err(|reason| Error::decode(key, reason))
    })??;
    if voxels.len() != layout.raw_len() {
        return Err(Error::internal(format!(
            "{key}: decoder returned {} bytes, expected {}",
            voxels.len(),
            layout.raw_len()
        )));
    }
    Ok(f(&voxels))
}

/// Calls `f` with a buffer of `layout.raw_len()` bytes whose first `prefix` hold the start
/// of a raw gzip chunk, decoded no further (the rest is unspecified): a cutout that ends
/// early along the chunk's last axes needs no more. `None`, without calling `f`, for other
/// encodings and compressions, and for data that breaks off or declares the wrong size (see
/// [`transport::gunzip_prefix`]); the caller then decodes the whole chunk, which also
/// reports what is wrong with it.
pub fn decode_prefix_as<R>(
    encoding: &Encoding,
    stored: &[u8],
    declared: Compression,
    layout: &ChunkLayout,
    prefix: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    // A chunk exactly as long as its voxels may be plain data that happens to start like
    // gzip (see `transport::with_decompressed`): only the whole-chunk path can tell.
    let raw_len = layout.raw_len();
    if !matches!(encoding, Encoding::Raw) || prefix >= raw_len || stored.len() == raw_len {
        return None;
    }
    scratch::with_inflated(raw_len, |out| {
        transport::gunzip_prefix(stored, declared, raw_len, &mut out[..prefix]).then(|| f(out))
    })
}

/// Whether [`decode_rows_as`] can decode chunks of `encoding` straight into a reader's
/// output, row by row, with no decoded copy of the chunk in between.
pub fn decodes_into_rows(encoding: &Encoding) -> bool {
    matches!(encoding, Encoding::CompressedSegmentation { .. })
}

/// [`decode_as`] into `rows`, for an encoding that [`decodes_into_rows`].
pub fn decode_rows_as(
    encoding: &Encoding,
    key: &str,
    stored: &[u8],
    declared: Compression,
    layout: &ChunkLayout,
    rows: &mut impl ChunkRows,
) -> Result<()> {
    let Encoding::CompressedSegmentation { block_size } = encoding else {
        return Err(Error::internal(format!(
            "{key}: encoding {:?} does not decode in place",
            encoding.name()
        )));
    };
    let limit = stored_limit(encoding, layout);
    transport::with_decompressed_bounded(key, stored, declared, limit, |bytes| {
        compressed_segmentation::decode_rows(bytes, layout, *block_size, rows)
            .map_err(|reason| Error::decode(key, reason))
    })?
}

fn decode_plain(
    encoding: &Encoding,
    bytes: &[u8],
    layout: &ChunkLayout,
) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Raw => Ok(bytes.to_vec()),
        Encoding::Jpeg { .. } => jpeg::decode(bytes, layout),
        Encoding::Png { .. } => png::decode(bytes, layout),
        Encoding::CompressedSegmentation { block_size } => {
            compressed_segmentation::decode(bytes, layout, *block_size)
        }
        Encoding::Blosc { .. } => blosc::decode(bytes, layout),
        Encoding::Unsupported(name) => Err(format!("encoding {name:?} is not supported")),
    }
}

/// The stored bytes of a chunk: `voxels` (Fortran `[x, y, z, c]`) encoded, then wrapped in
/// `compression`.
pub fn encode(
    encoding: &Encoding,
    voxels: &[u8],
    layout: &ChunkLayout,
    compression: Compression,
) -> Result<Vec<u8>> {
    if voxels.len() != layout.raw_len() {
        return Err(Error::internal(format!(
            "encode got {} bytes for a chunk of {}",
            voxels.len(),
            layout.raw_len()
        )));
    }
    let encoded = match encoding {
        Encoding::Raw => return raw::encode(voxels, compression),
        Encoding::Jpeg { quality } => jpeg::encode(voxels, layout, *quality)?,
        Encoding::Png { level } => png::encode(voxels, layout, *level)?,
        Encoding::CompressedSegmentation { block_size } => {
            compressed_segmentation::encode(voxels, layout, *block_size)?
        }
        Encoding::Blosc {
            compressor,
            clevel,
            shuffle,
            ..
        } => blosc::encode(voxels, layout, *compressor, *clevel, *shuffle)?,
        Encoding::Unsupported(name) => {
            return Err(Error::invalid(format!(
                "encoding {name:?} cannot be written"
            )))
        }
    };
    compression.compress(&encoded)
}

/// The transport compression a handle uses when none was asked for: gzip where it pays
/// (raw, compressed_segmentation), none for already-compressed images and blosc, as
/// CloudVolume does (`should_compress`).
pub fn default_compression(encoding: &Encoding) -> Compression {
    match encoding {
        Encoding::Raw | Encoding::CompressedSegmentation { .. } | Encoding::Unsupported(_) => {
            Compression::Gzip
        }
        Encoding::Jpeg { .. } | Encoding::Png { .. } | Encoding::Blosc { .. } => Compression::None,
    }
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
                let stored = encode(&encoding, &voxels, &layout, compression).unwrap();
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
