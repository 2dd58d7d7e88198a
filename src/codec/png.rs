//! The `png` encoding: a chunk is one PNG image, width `cx` and height `cy·cz`, uint8 or
//! uint16 (big-endian samples inside the PNG, as the standard says), 1–4 channels
//! pixel-interleaved (grey, grey+alpha, RGB, RGBA). Readers accept any width × height with
//! the right product, and palette or low-bit-depth images expanded to 8 bits.

use std::io::Cursor;

use png::{BitDepth, ColorType, Decoder, DeflateCompression, Encoder, Limits, Transformations};

use super::{deinterleave, interleave, ChunkLayout};
use crate::dtype::DType;
use crate::error::{Error, Result};

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
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, String> {
    let itemsize = layout.dtype.itemsize();
    let expected = layout.raw_len();
    // The decoder may allocate the image plus its working rows, never more.
    let limits = Limits {
        bytes: 2 * expected + (1 << 20),
    };
    let mut decoder = Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("corrupt png: {e}"))?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if w.checked_mul(h) != Some(layout.voxels()) {
        return Err(format!(
            "png image is {w}×{h} pixels, the chunk {:?} needs {}",
            layout.shape,
            layout.voxels()
        ));
    }
    let (color, depth) = reader.output_color_type();
    let want_depth = if layout.dtype == DType::U16 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    if depth != want_depth || color.samples() != layout.channels {
        return Err(format!(
            "png holds {color:?} at {depth:?} bits, the layer has {} channel(s) of {}",
            layout.channels, layout.dtype
        ));
    }
    if reader.output_buffer_size() != Some(expected) {
        return Err("png output size does not match the chunk".to_string());
    }
    let mut pixels = vec![0u8; expected];
    reader
        .next_frame(&mut pixels)
        .map_err(|e| format!("corrupt png: {e}"))?;
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
