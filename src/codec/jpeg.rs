//! The `jpeg` encoding: a chunk is one baseline JPEG image, width `cx` and height `cy·cz`
//! (rows concatenate to the Fortran `[x, y, z]` order), uint8 with 1 (grey) or 3 (RGB)
//! channels pixel-interleaved in the image and planar in our buffers. Readers accept any
//! width × height with the right product, as neuroglancer does.
//!
//! libjpeg-turbo (the `turbojpeg` crate, built from its vendored sources and linked
//! statically) decodes and encodes: the library CloudVolume uses through simplejpeg, with the
//! same settings (accurate integer DCT and smooth upsampling on read; 4:4:4 RGB or
//! greyscale, no Huffman optimisation on write), so our decode is bit-exact with
//! CloudVolume's. Our files are byte for byte CloudVolume's at quality >= 96; below that,
//! simplejpeg (through TurboJPEG's old API) uses the fast integer forward DCT, while we keep
//! the accurate one, so the bytes differ slightly.
//!
//! libjpeg reports errors by `longjmp`; the TurboJPEG API catches them inside each C call
//! (`setjmp` in every `tj3*` function) and returns an error code, so no jump ever crosses a
//! Rust frame.

use std::borrow::Cow;

use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, Subsamp};

use super::registry::{int_option, FuzzSpec};
use super::{deinterleave, interleave, ChunkLayout, Codec, CodecKind, Compression};
use super::{DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// CloudVolume's default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 85;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["jpeg"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &["jpeg_quality"]
    }
    fn parse(&self, _: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Jpeg {
            quality: int_option(scale, "jpeg_quality", 100, DEFAULT_QUALITY)?,
        }))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: &[DType::U8],
            channels: &[1, 3],
        })
    }
}

/// The jpeg codec with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jpeg {
    /// `jpeg_quality` (0–100; a hint for writers).
    pub quality: u8,
}

impl Codec for Jpeg {
    fn name(&self) -> &str {
        "jpeg"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([("jpeg_quality".into(), self.quality.into())])
    }
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError> {
        if dtype != DType::U8 {
            return Err(FieldError::new(
                "data_type",
                format!("encoding \"jpeg\" holds uint8 only, not {dtype}"),
            ));
        }
        if channels != 1 && channels != 3 {
            return Err(FieldError::new(
                "num_channels",
                format!("encoding \"jpeg\" holds 1 or 3 channels, not {channels}"),
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
        encode(voxels, layout, self.quality).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a JPEG image of the chunk's size.
#[derive(Debug, thiserror::Error)]
pub enum JpegDecodeError {
    #[error("jpeg holds 1 or 3 channels, the layer has {0}")]
    /// The layer's channel count (JPEG holds 1 or 3).
    Channels(usize),
    #[error("jpeg decoder: {0}")]
    /// libjpeg-turbo's decompressor could not be created or configured.
    Decoder(#[source] turbojpeg::Error),
    #[error("corrupt jpeg: {0}")]
    /// The bytes are not a valid JPEG image.
    Corrupt(#[source] turbojpeg::Error),
    #[error("jpeg image is {width}×{height} pixels, the chunk {shape:?} needs {voxels}")]
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
}

/// JPEG's own limit on either side of an image.
const MAX_SIDE: usize = 65535;
/// Progressive scans a chunk may have: real images have about ten; a hostile file with
/// thousands of tiny scans costs quadratic time (libjpeg-turbo's advice is to cap them).
const MAX_SCANS: u32 = 500;

fn pixel_format(channels: usize) -> Result<PixelFormat, JpegDecodeError> {
    match channels {
        1 => Ok(PixelFormat::GRAY),
        3 => Ok(PixelFormat::RGB),
        n => Err(JpegDecodeError::Channels(n)),
    }
}

/// Decodes a JPEG chunk into planar voxels.
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, JpegDecodeError> {
    let channels = layout.channels;
    let format = pixel_format(channels)?;
    let voxels = layout.voxels();
    // A fresh handle per chunk (a few microseconds): libjpeg keeps Huffman and quantisation
    // tables across images in one handle, so a reused handle could decode a chunk with
    // tables left by the one before (and after a corrupt chunk, failed on valid ones).
    let mut decompressor = Decompressor::new().map_err(JpegDecodeError::Decoder)?;
    decompressor
        .set_scan_limit(MAX_SCANS)
        .map_err(JpegDecodeError::Decoder)?;
    // The header alone gives the size: refuse a wrong one before allocating anything.
    let header = decompressor
        .read_header(bytes)
        .map_err(JpegDecodeError::Corrupt)?;
    let (w, h) = (header.width, header.height);
    if w.checked_mul(h) != Some(voxels) {
        return Err(JpegDecodeError::Size {
            width: w,
            height: h,
            shape: layout.shape,
            voxels,
        });
    }
    let mut pixels = vec![0u8; voxels * channels];
    let image = Image {
        pixels: &mut pixels[..],
        width: w,
        pitch: w * channels,
        height: h,
        format,
    };
    // Strict, as simplejpeg is by default: a warning (truncated or damaged data, which
    // libjpeg would pad with grey) fails the call, so made-up pixels never come back.
    decompressor
        .decompress(bytes, image)
        .map_err(JpegDecodeError::Corrupt)?;
    if channels == 1 {
        return Ok(pixels); // grey: the image rows are the planar voxels already
    }
    Ok(deinterleave(&pixels, channels, 1))
}

/// Encodes planar uint8 voxels as one JPEG image of width `cx`, height `cy·cz`.
pub fn encode(voxels: &[u8], layout: &ChunkLayout, quality: u8) -> Result<Vec<u8>> {
    let [cx, cy, cz] = layout.shape;
    let (w, h) = (cx, cy * cz);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::invalid(format!(
            "a jpeg chunk is an image of {w}×{h} pixels (x by y·z), beyond JPEG's 65535 per side: \
             use smaller chunk_sizes"
        )));
    }
    let channels = layout.channels;
    let (format, subsamp) = match channels {
        1 => (PixelFormat::GRAY, Subsamp::Gray),
        3 => (PixelFormat::RGB, Subsamp::None),
        n => {
            return Err(Error::invalid(format!(
                "encoding \"jpeg\" holds 1 or 3 channels, not {n} (field 'num_channels')"
            )))
        }
    };
    let pixels = interleave(voxels, channels, 1);
    let failed = |e: turbojpeg::Error| Error::invalid(format!("jpeg encoding failed: {e}"));
    let mut compressor = Compressor::new().map_err(failed)?;
    compressor
        .set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(failed)?;
    compressor.set_subsamp(subsamp).map_err(failed)?;
    let image = Image {
        pixels: &pixels[..],
        width: w,
        pitch: w * channels,
        height: h,
        format,
    };
    compressor.compress_to_vec(image).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn layout(shape: [usize; 3], channels: usize) -> ChunkLayout {
        ChunkLayout {
            shape,
            channels,
            dtype: DType::U8,
        }
    }

    #[test]
    fn round_trips_within_tolerance() {
        for channels in [1, 3] {
            let l = layout([9, 5, 3], channels);
            let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i % 9 * 20) as u8).collect();
            let bytes = encode(&voxels, &l, 95).unwrap();
            let back = decode(&bytes, &l).unwrap();
            let worst = voxels
                .iter()
                .zip(&back)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst < 40, "{worst}");
        }
    }

    #[test]
    fn corrupt_and_wrong_sized_images_are_errors() {
        let l = layout([8, 8, 2], 1);
        let bytes = encode(&vec![100; l.raw_len()], &l, 85).unwrap();
        assert!(decode(&bytes, &layout([8, 8, 3], 1)).is_err());
        for cut in [0, 2, 20, bytes.len() / 2] {
            let _ = decode(&bytes[..cut], &l);
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped, &l);
        }
        assert!(decode(b"not a jpeg", &l).is_err());
        // A failed decode leaves nothing behind for the next chunk (a reused libjpeg handle
        // once failed valid chunks after a corrupt one, with "Bogus Huffman table").
        for channels in [1, 3] {
            let l = layout([16, 11, 4], channels);
            let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i * 7 % 251) as u8).collect();
            let good = encode(&voxels, &l, 85).unwrap();
            let first = decode(&good, &l).unwrap();
            let mut bad = good.clone();
            for i in (0..bad.len()).step_by(11) {
                bad[i] ^= 0xff;
            }
            assert!(decode(&bad, &l).is_err());
            assert!(decode(&good[..good.len() / 2], &l).is_err());
            assert_eq!(decode(&good, &l).unwrap(), first);
        }
    }
}
