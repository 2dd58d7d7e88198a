//! The `jpeg` encoding: a chunk is one baseline JPEG image, width `cx` and height `cy·cz`
//! (rows concatenate to the Fortran `[x, y, z]` order), uint8 with 1 (grey) or 3 (RGB)
//! channels pixel-interleaved in the image and planar in our buffers. Readers accept any
//! width × height with the right product, as neuroglancer does. zune-jpeg decodes,
//! jpeg-encoder encodes (both pure Rust).

use jpeg_encoder::{ColorType, Encoder};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::{deinterleave, interleave, ChunkLayout};
use crate::error::{Error, Result};

/// JPEG's own limit on either side of an image.
const MAX_SIDE: usize = 65535;

/// Decodes a JPEG chunk into planar voxels.
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, String> {
    let channels = layout.channels;
    let colorspace = match channels {
        1 => ColorSpace::Luma,
        3 => ColorSpace::RGB,
        n => return Err(format!("jpeg holds 1 or 3 channels, the layer has {n}")),
    };
    let voxels = layout.voxels();
    // The image can be no larger than the chunk along either side: refuse before allocating.
    // Strict: a truncated or damaged stream is an error, never padded with made-up pixels.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(colorspace)
        .set_max_width(voxels.min(MAX_SIDE))
        .set_max_height(voxels.min(MAX_SIDE));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| format!("corrupt jpeg: {e}"))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| "jpeg has no frame header".to_string())?;
    if w.checked_mul(h) != Some(voxels) {
        return Err(format!(
            "jpeg image is {w}×{h} pixels, the chunk {:?} needs {voxels}",
            layout.shape
        ));
    }
    let mut pixels = vec![0u8; voxels * channels];
    if decoder.output_buffer_size() != Some(pixels.len()) {
        return Err("jpeg output size does not match the chunk".to_string());
    }
    decoder
        .decode_into(&mut pixels)
        .map_err(|e| format!("corrupt jpeg: {e}"))?;
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
    let color = match layout.channels {
        1 => ColorType::Luma,
        3 => ColorType::Rgb,
        n => {
            return Err(Error::invalid(format!(
                "encoding \"jpeg\" holds 1 or 3 channels, not {n} (field 'num_channels')"
            )))
        }
    };
    let pixels = interleave(voxels, layout.channels, 1);
    let mut out = Vec::new();
    Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(&pixels, w as u16, h as u16, color)
        .map_err(|e| Error::invalid(format!("jpeg encoding failed: {e}")))?;
    Ok(out)
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
    }
}
