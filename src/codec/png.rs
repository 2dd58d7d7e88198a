//! The `png` encoding: a chunk is one PNG image, width `cx` and height `cy·cz`, uint8 or
//! uint16 (big-endian samples inside the PNG, as the standard says), 1–4 channels
//! pixel-interleaved (grey, grey+alpha, RGB, RGBA). Readers accept any width × height with
//! the right product, and palette or low-bit-depth images expanded to 8 bits.

use std::borrow::Cow;
use std::io::Cursor;

use png::{BitDepth, ColorType, Decoder, DeflateCompression, Encoder, Limits, Transformations};

use super::registry::{int_option, FuzzSpec};
use super::{deinterleave, interleave, ChunkLayout, Codec, CodecKind, Compression};
use super::{DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// CloudVolume's default PNG zlib level.
pub const DEFAULT_LEVEL: u8 = 9;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["png"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &["png_level"]
    }
    fn parse(&self, _: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Png {
            level: int_option(scale, "png_level", 9, DEFAULT_LEVEL)?,
        }))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: &[DType::U8, DType::U16],
            channels: &[1, 2, 3, 4],
        })
    }
}

/// The png codec with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Png {
    /// `png_level` (0–9; a hint for writers).
    pub level: u8,
}

impl Codec for Png {
    fn name(&self) -> &str {
        "png"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([("png_level".into(), self.level.into())])
    }
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError> {
        if dtype != DType::U8 && dtype != DType::U16 {
            return Err(FieldError::new(
                "data_type",
                format!("encoding \"png\" holds uint8 or uint16 only, not {dtype}"),
            ));
        }
        if !(1..=4).contains(&channels) {
            return Err(FieldError::new(
                "num_channels",
                format!("encoding \"png\" holds 1 to 4 channels, not {channels}"),
            ));
        }
        Ok(())
    }
    fn default_compression(&self) -> Compression {
        Compression::None
    }
    fn gzip_in_shards(&self) -> bool {
        false
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
        encode(voxels, layout, self.level).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a PNG image of the chunk's size and type.
#[derive(Debug, thiserror::Error)]
pub enum PngDecodeError {
    #[error("corrupt png: {0}")]
    /// The bytes are not a valid PNG image.
    Corrupt(#[source] png::DecodingError),
    #[error("png image is {width}×{height} pixels, the chunk {shape:?} needs {voxels}")]
    /// The image's size does not fit the chunk.
    Size {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
        /// The chunk's clipped shape `[x, y, z]`.
        shape: [usize; 3],
        /// Voxels per channel the chunk needs.
        voxels: usize,
    },
    #[error(
        "png holds {color:?} at {depth:?} bits, the layer has {channels} channel(s) of {dtype}"
    )]
    /// The image's colour type or bit depth does not match the layer's channels and type.
    Pixels {
        /// The image's colour type.
        color: ColorType,
        /// The image's bit depth.
        depth: BitDepth,
        /// The layer's channel count.
        channels: usize,
        /// The layer's voxel type.
        dtype: DType,
    },
    #[error("png output size does not match the chunk")]
    /// The decoder would output a different number of bytes than the chunk holds.
    OutputSize,
}

fn color_type(channels: usize) -> Option<ColorType> {
    Some(match channels {
        1 => ColorType::Grayscale,
        2 => ColorType::GrayscaleAlpha,
        3 => ColorType::Rgb,
        4 => ColorType::Rgba,
        _ => return None,
    })
}

/// Decodes a PNG chunk into planar little-endian voxels.
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, PngDecodeError> {
    let itemsize = layout.dtype.itemsize();
    let expected = layout.raw_len();
    // The decoder may allocate the image plus its working rows, never more.
    let limits = Limits {
        bytes: 2 * expected + (1 << 20),
    };
    let mut decoder = Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(PngDecodeError::Corrupt)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if w.checked_mul(h) != Some(layout.voxels()) {
        return Err(PngDecodeError::Size {
            width: w,
            height: h,
            shape: layout.shape,
            voxels: layout.voxels(),
        });
    }
    let (color, depth) = reader.output_color_type();
    let want_depth = if layout.dtype == DType::U16 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    if depth != want_depth || color.samples() != layout.channels {
        return Err(PngDecodeError::Pixels {
            color,
            depth,
            channels: layout.channels,
            dtype: layout.dtype,
        });
    }
    if reader.output_buffer_size() != Some(expected) {
        return Err(PngDecodeError::OutputSize);
    }
    let mut pixels = vec![0u8; expected];
    reader
        .next_frame(&mut pixels)
        .map_err(PngDecodeError::Corrupt)?;
    if itemsize == 2 {
        for sample in pixels.chunks_exact_mut(2) {
            sample.swap(0, 1);
        }
    }
    Ok(deinterleave(&pixels, layout.channels, itemsize))
}

/// Encodes planar voxels as one PNG image of width `cx`, height `cy·cz`, at zlib `level`
/// (0–9).
pub fn encode(voxels: &[u8], layout: &ChunkLayout, level: u8) -> Result<Vec<u8>> {
    let [cx, cy, cz] = layout.shape;
    let (w, h) = (cx, cy * cz);
    let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(Error::invalid(format!(
            "a png chunk of {cx}×{} pixels is beyond PNG's limits",
            cy * cz
        )));
    };
    let color = color_type(layout.channels).ok_or_else(|| {
        Error::invalid(format!(
            "encoding \"png\" holds 1 to 4 channels, not {} (field 'num_channels')",
            layout.channels
        ))
    })?;
    let itemsize = layout.dtype.itemsize();
    let depth = match layout.dtype {
        DType::U8 => BitDepth::Eight,
        DType::U16 => BitDepth::Sixteen,
        other => {
            return Err(Error::invalid(format!(
                "encoding \"png\" holds uint8 or uint16, not {other} (field 'data_type')"
            )))
        }
    };
    let mut pixels = interleave(voxels, layout.channels, itemsize);
    if itemsize == 2 {
        for sample in pixels.chunks_exact_mut(2) {
            sample.swap(0, 1);
        }
    }
    let fail = |e: png::EncodingError| Error::invalid(format!("png encoding failed: {e}"));
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, w, h);
    encoder.set_color(color);
    encoder.set_depth(depth);
    encoder.set_deflate_compression(match level {
        0 => DeflateCompression::NoCompression,
        n => DeflateCompression::Level(n.min(9)),
    });
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type_and_channel_count() {
        for dtype in [DType::U8, DType::U16] {
            for channels in 1..=4 {
                let l = ChunkLayout {
                    shape: [7, 3, 2],
                    channels,
                    dtype,
                };
                let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i * 37 % 256) as u8).collect();
                for level in [0, 6, 9] {
                    let bytes = encode(&voxels, &l, level).unwrap();
                    assert_eq!(decode(&bytes, &l).unwrap(), voxels);
                }
            }
        }
    }

    #[test]
    fn corrupt_and_mismatched_images_are_errors() {
        let l = ChunkLayout {
            shape: [8, 4, 2],
            channels: 1,
            dtype: DType::U8,
        };
        let bytes = encode(&vec![3; l.raw_len()], &l, 6).unwrap();
        let wrong = ChunkLayout { channels: 2, ..l };
        assert!(decode(&bytes, &wrong).is_err());
        let wider = ChunkLayout {
            dtype: DType::U16,
            ..l
        };
        assert!(decode(&bytes, &wider).is_err());
        for cut in [0, 8, 30, bytes.len() / 2] {
            assert!(decode(&bytes[..cut], &l).is_err());
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(5) {
            flipped[i] ^= 0xa5;
            let _ = decode(&flipped, &l);
        }
    }
}
