//! The `jxl` encoding (JPEG XL): uint8 with 1–4 channels, lossless or lossy, as CloudVolume
//! writes it and neuroglancer reads it. A chunk is one JPEG XL codestream whose pixel count
//! is the chunk's voxel count: CloudVolume writes images of width `cx` and height `cy·cz`
//! (rows concatenate to the Fortran `[x, y, z]` order), one greyscale frame per channel
//! (an animation of `num_channels` frames, so the frames are the planar channels in order).
//! Readers, like neuroglancer's, only need the product: any width × height × frames equal to
//! the chunk's voxels × channels reads. A single frame whose pixels interleave the channels
//! (grey+alpha, RGB, RGBA) also reads, channel by channel.
//!
//! Decoding uses the `jxl` crate (jxl-rs, the JPEG XL project's own Rust decoder, which
//! Chromium and Firefox ship): pure Rust, conforming, and it caps the samples an image may
//! declare, which bounds its memory to a small multiple of the chunk's. On CloudVolume's
//! lossy chunks (quality 85: one frame of 64×4096 pixels per 64³ chunk, so 16 groups of
//! 64×256) jxl-rs 0.8.0 executes 1.12× libjxl 0.11's instructions (callgrind, 32 chunks of
//! the bench's voxels): its entropy decoding, LF image and filters (gaborish, EPF, XYB) cost
//! what libjxl's do, and the excess is its render pipeline's bookkeeping on 64-pixel rows
//! (mirroring the row ends, row buffers), which no decoder option changes. jxl-oxide 0.12.6
//! executes 4.6× libjxl's on the same chunks. Its setup per chunk is small, and reusing the
//! decoder (below) saves its allocations. Lossless chunks decode to
//! exactly libjxl's voxels. Lossy chunks decode to within one grey level of libjxl's: the
//! image is the same, but libjxl dithers its 8-bit output with a pattern that changed
//! between its versions (an 8×8 ordered matrix up to 0.11, blue noise since), jxl-rs
//! follows the current one and offers no other, so about a third of the voxels differ by
//! one from libjxl 0.11 (docs/SEMANTICS.md has the figures); no two libjxl versions agree
//! either.
//!
//! Encoding is lossless only, with `zune-jpegxl` (pure Rust, a port of libjxl's fast
//! lossless mode, effort 1): `jxl_quality` and `jxl_effort` are kept in the `info` for other
//! writers, and chunks are always lossless, hence bit-exact. No pure-Rust crate under a
//! licence this crate can ship encodes lossy JPEG XL: `jxl-encoder` (VarDCT, pure Rust) is
//! AGPL-3.0 or commercial, and binding libjxl would add its C++ build to every install.

use std::borrow::Cow;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use jxl::api::{
    Event, JxlColorType, JxlDataFormat, JxlDecoder, JxlDecoderOptions, JxlOutputBuffer,
    JxlPixelFormat,
};
use zune_core::bit_depth::BitDepth;
use zune_core::colorspace::ColorSpace;
use zune_core::options::EncoderOptions;
use zune_jpegxl::JxlSimpleEncoder;

use super::registry::{int_option, FuzzSpec};
use super::{ChunkLayout, Codec, CodecKind, Compression, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

mod frames;

/// CloudVolume's default `jxl_quality` (below 100 it writes lossy; 100 and above lossless).
pub const DEFAULT_QUALITY: u8 = 85;
/// CloudVolume's default `jxl_effort`.
pub const DEFAULT_EFFORT: u8 = 5;
/// CloudVolume's default `jxl_decodingspeed`.
pub const DEFAULT_DECODING_SPEED: u8 = 0;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["jxl"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &["jxl_quality", "jxl_effort", "jxl_decodingspeed"]
    }
    fn parse(&self, _: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Jxl {
            quality: int_option(scale, "jxl_quality", 100, DEFAULT_QUALITY)?,
            effort: int_option(scale, "jxl_effort", 10, DEFAULT_EFFORT)?,
            decoding_speed: int_option(scale, "jxl_decodingspeed", 4, DEFAULT_DECODING_SPEED)?,
        }))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: &[DType::U8],
            channels: &[1, 2, 3, 4],
        })
    }
}

/// The jxl codec with its options (CloudVolume's names; hints for writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jxl {
    /// `jxl_quality` (0–100; 100 is lossless). Our writer is lossless whatever it says.
    pub quality: u8,
    /// `jxl_effort` (1–10 in libjxl).
    pub effort: u8,
    /// `jxl_decodingspeed` (0–4 in libjxl).
    pub decoding_speed: u8,
}

impl Codec for Jxl {
    fn name(&self) -> &str {
        "jxl"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([
            ("jxl_quality".into(), self.quality.into()),
            ("jxl_effort".into(), self.effort.into()),
            ("jxl_decodingspeed".into(), self.decoding_speed.into()),
        ])
    }
    fn complete_new_scale(&self, scale: &mut ScaleJson) {
        // Our chunks are lossless whatever `jxl_quality` says; a layer we create says so
        // unless told otherwise, so that CloudVolume writing into it keeps it lossless.
        scale.entry("jxl_quality").or_insert(100.into());
    }
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError> {
        if dtype != DType::U8 {
            return Err(FieldError::new(
                "data_type",
                format!("encoding \"jxl\" holds uint8 only, not {dtype}"),
            ));
        }
        if !(1..=4).contains(&channels) {
            return Err(FieldError::new(
                "num_channels",
                format!("encoding \"jxl\" holds 1 to 4 channels, not {channels}"),
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
    fn stored_limit(&self, layout: &ChunkLayout) -> usize {
        // A lossless chunk of noise is a little larger than its voxels.
        2 * layout.raw_len() + (64 << 10)
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        // A successful decode writes every byte of `out`, so reused scratch needs no zeroing.
        super::scratch::with_decoded(layout.raw_len(), |out| {
            decode_into(bytes, layout, out)?;
            f(out);
            Ok(())
        })
    }
    fn encode<'a>(&self, voxels: &'a [u8], layout: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        encode(voxels, layout).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a JPEG XL image of the chunk's voxels.
#[derive(Debug, thiserror::Error)]
pub enum JxlDecodeError {
    /// The layer is not uint8 with 1–4 channels.
    #[error("jxl holds uint8 with 1 to 4 channels, the layer has {channels} of {dtype}")]
    Layout {
        /// The layer's voxel type.
        dtype: DType,
        /// The layer's channel count.
        channels: usize,
    },
    /// The bytes are not a valid JPEG XL codestream (or container).
    #[error("corrupt jxl: {0}")]
    Corrupt(String),
    /// The codestream ends before its last frame does.
    #[error("truncated jxl: the data ends inside the image")]
    Truncated,
    /// The image's size or frame count does not fit the chunk.
    #[error(
        "jxl image is {width}×{height} pixels with {samples} samples each in {frames} frame(s); \
         the chunk {shape:?} with {channels} channel(s) needs {voxels} voxels per channel"
    )]
    Size {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
        /// Samples per pixel of one frame.
        samples: usize,
        /// Frames decoded (or found) so far.
        frames: usize,
        /// The chunk's clipped shape `[x, y, z]`.
        shape: [usize; 3],
        /// The layer's channel count.
        channels: usize,
        /// Voxels per channel the chunk needs.
        voxels: usize,
    },
    /// The decoder failed in a way it does not report as an error.
    #[error("jxl decoder failed on this chunk: {0}")]
    Panicked(String),
}

/// Decodes a jxl chunk into `out` (planar, Fortran `[x, y, z, c]`, `layout.raw_len()` bytes).
pub fn decode_into(
    bytes: &[u8],
    layout: &ChunkLayout,
    out: &mut [u8],
) -> Result<(), JxlDecodeError> {
    // jxl-rs reports malformed input as errors; a panic inside it would be a bug there, and
    // one crafted chunk must still fail alone, as a decode error naming it, not abort a read.
    catch_unwind(AssertUnwindSafe(|| decode_frames(bytes, layout, out))).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Err(JxlDecodeError::Panicked(why))
    })
}

fn decode_frames(bytes: &[u8], layout: &ChunkLayout, out: &mut [u8]) -> Result<(), JxlDecodeError> {
    let (voxels, channels) = (layout.voxels(), layout.channels);
    if layout.dtype != DType::U8 || !(1..=4).contains(&channels) || out.len() != voxels * channels {
        return Err(JxlDecodeError::Layout {
            dtype: layout.dtype,
            channels,
        });
    }
    // The decoder refuses an image or frame header whose size reaches this cap before it
    // allocates for it. It counts 3 colour samples plus one per extra channel, and rows at
    // least 16 pixels wide, so a well-formed chunk (exactly `voxels` pixels, at most one
    // extra channel) counts at most 4·16·voxels; the header check below then holds the
    // image to exactly `voxels` pixels.
    let sample_limit = 64 * voxels + 1;
    // The thread's decoder, taken out while in use: a panic inside it drops it (its state is
    // then unknown), and a nested use on this thread, were there one, would build its own.
    let cached = DECODER.with(|d| d.borrow_mut().take());
    let mut decoder = match cached {
        Some(cached) if cached.sample_limit == sample_limit => cached,
        _ => CachedDecoder::new(sample_limit),
    };
    let result = decode_with(&mut decoder.decoder, bytes, layout, out);
    // `reset` keeps the buffers and drops what this chunk left behind (frames, sections). A
    // decoder that failed is dropped instead: cheap, as failures are rare, and no state of
    // a hostile chunk can reach the next one.
    if result.is_ok() && voxels <= KEEP_DECODER_VOXELS {
        decoder.decoder.reset();
        DECODER.with(|d| *d.borrow_mut() = Some(decoder));
    }
    result
}

/// Chunks up to this many voxels leave their decoder to the thread's next chunk: 128³ (2 MiB
/// of uint8), far above the usual 64³ and what its retained buffers cost per pool thread;
/// a decoder that grew for a larger chunk is dropped with it.
const KEEP_DECODER_VOXELS: usize = 1 << 21;

/// A decoder and the sample limit it was built with (options cannot change on reuse).
struct CachedDecoder {
    decoder: JxlDecoder,
    sample_limit: usize,
}

impl CachedDecoder {
    fn new(sample_limit: usize) -> Self {
        let mut options = JxlDecoderOptions::default();
        options.sample_limit = Some(sample_limit);
        Self {
            decoder: JxlDecoder::new(options),
            sample_limit,
        }
    }
}

thread_local! {
    /// Each thread's last decoder: jxl-rs keeps its buffers and scratch across `reset`, so
    /// that a pool thread decoding chunk after chunk of a layer allocates (and zeroes) them
    /// once rather than per chunk.
    static DECODER: RefCell<Option<CachedDecoder>> = const { RefCell::new(None) };
}

fn decode_with(
    decoder: &mut JxlDecoder,
    bytes: &[u8],
    layout: &ChunkLayout,
    out: &mut [u8],
) -> Result<(), JxlDecodeError> {
    let (voxels, channels) = (layout.voxels(), layout.channels);
    let corrupt = |e: jxl::error::Error| JxlDecodeError::Corrupt(e.to_string());
    let mut input = bytes;
    // Known once the header is read: width, height, samples per pixel, frames expected.
    let mut image: Option<(usize, usize, usize, usize)> = None;
    let mut frames = 0usize;
    // A frame whose pixels interleave several channels lands here first.
    let mut interleaved = Vec::new();
    loop {
        let event = match image {
            None => decoder.process(&mut input, None, None).map_err(corrupt)?,
            Some((w, h, samples, expected)) => {
                if frames >= expected {
                    return Err(JxlDecodeError::Size {
                        width: w,
                        height: h,
                        samples,
                        frames: frames + 1,
                        shape: layout.shape,
                        channels,
                        voxels,
                    });
                }
                let event = if samples == 1 {
                    // One grey frame is one channel: decode straight into its plane.
                    let plane = &mut out[frames * voxels..(frames + 1) * voxels];
                    let mut buffers = [JxlOutputBuffer::new(plane, h, w)];
                    decoder.process(&mut input, Some(&mut buffers), None)
                } else {
                    interleaved.resize(voxels * samples, 0);
                    let mut buffers = [JxlOutputBuffer::new(&mut interleaved, h, w * samples)];
                    decoder.process(&mut input, Some(&mut buffers), None)
                }
                .map_err(corrupt)?;
                if let Event::FrameComplete { has_more_frames } = event {
                    if samples > 1 {
                        scatter(&interleaved, samples, frames, voxels, out);
                    }
                    frames += 1;
                    if !has_more_frames {
                        break;
                    }
                }
                event
            }
        };
        match event {
            Event::BasicInfo => {
                let info = decoder
                    .basic_info()
                    .ok_or_else(|| JxlDecodeError::Corrupt("no basic info".into()))?;
                let (w, h) = info.size;
                let color = decoder
                    .current_pixel_format()
                    .map(|f| f.color_type)
                    .unwrap_or(JxlColorType::Grayscale);
                let (color, samples) = match color {
                    JxlColorType::Grayscale => (JxlColorType::Grayscale, 1),
                    JxlColorType::GrayscaleAlpha => (JxlColorType::GrayscaleAlpha, 2),
                    JxlColorType::Rgba | JxlColorType::Bgra | JxlColorType::Cmyk => {
                        (JxlColorType::Rgba, 4)
                    }
                    _ => (JxlColorType::Rgb, 3),
                };
                if w.checked_mul(h) != Some(voxels) || !channels.is_multiple_of(samples) {
                    return Err(JxlDecodeError::Size {
                        width: w,
                        height: h,
                        samples,
                        frames: 0,
                        shape: layout.shape,
                        channels,
                        voxels,
                    });
                }
                let extra = decoder
                    .current_pixel_format()
                    .map(|f| f.extra_channel_format.len())
                    .unwrap_or(0);
                decoder
                    .set_pixel_format(JxlPixelFormat {
                        color_type: color,
                        color_data_format: Some(JxlDataFormat::U8 { bit_depth: 8 }),
                        // Alpha travels in the colour samples when asked for; other extra
                        // channels (depth, spot colours) are not voxels of the layer.
                        extra_channel_format: vec![None; extra],
                    })
                    .map_err(corrupt)?;
                image = Some((w, h, samples, channels / samples));
            }
            Event::Complete => break,
            Event::NeedMoreInput { .. } => return Err(JxlDecodeError::Truncated),
            Event::FrameHeader | Event::FrameComplete { .. } => {}
        }
    }
    match image {
        Some((_, _, _, expected)) if frames == expected => Ok(()),
        Some((w, h, samples, _)) => Err(JxlDecodeError::Size {
            width: w,
            height: h,
            samples,
            frames,
            shape: layout.shape,
            channels,
            voxels,
        }),
        None => Err(JxlDecodeError::Truncated),
    }
}

/// Moves frame `frame`'s pixel-interleaved samples (`samples` per pixel) to their planes.
fn scatter(interleaved: &[u8], samples: usize, frame: usize, voxels: usize, out: &mut [u8]) {
    for k in 0..samples {
        let c = frame * samples + k;
        let plane = &mut out[c * voxels..(c + 1) * voxels];
        for (o, pixel) in plane.iter_mut().zip(interleaved.chunks_exact(samples)) {
            *o = pixel[k];
        }
    }
}

/// A width × height with `width·height == n` and both at least 2 (the lossless encoder's
/// minimum): `(cx, cy·cz)` when it qualifies, else the narrowest other factorisation.
fn image_size(layout: &ChunkLayout) -> Option<(usize, usize)> {
    let [cx, cy, cz] = layout.shape;
    let n = layout.voxels();
    if cx >= 2 && cy * cz >= 2 {
        return Some((cx, cy * cz));
    }
    (2..n)
        .find(|&d| n.is_multiple_of(d) && n / d >= 2)
        .map(|d| (d, n / d))
}

/// Encodes planar uint8 voxels losslessly as CloudVolume lays a chunk out: an image of width
/// `cx` and height `cy·cz` (or another factorisation of the voxel count when a side is 1),
/// one greyscale frame per channel.
pub fn encode(voxels: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>> {
    if layout.dtype != DType::U8 || !(1..=4).contains(&layout.channels) {
        return Err(Error::invalid(format!(
            "encoding \"jxl\" holds uint8 with 1 to 4 channels, not {} of {} \
             (fields 'data_type', 'num_channels')",
            layout.channels, layout.dtype
        )));
    }
    let (w, h) = image_size(layout).ok_or_else(|| {
        Error::invalid(format!(
            "a jxl chunk of shape {:?} ({} voxels) cannot be written: the lossless encoder \
             needs an image of at least 2×2 pixels and {} has no such factorisation; \
             use other chunk_sizes or voxel_offset",
            layout.shape,
            layout.voxels(),
            layout.voxels()
        ))
    })?;
    let n = layout.voxels();
    let mut planes = Vec::with_capacity(layout.channels);
    for plane in voxels.chunks_exact(n) {
        let options =
            EncoderOptions::new(w, h, ColorSpace::Luma, BitDepth::Eight).set_num_threads(1);
        let mut out = Vec::with_capacity(n / 2 + 1024);
        JxlSimpleEncoder::new(plane, options)
            .encode(&mut out)
            .map_err(|e| Error::invalid(format!("jxl encoding failed: {e:?}")))?;
        planes.push(out);
    }
    match planes.as_slice() {
        [one] if layout.channels == 1 => Ok(one.clone()),
        _ => frames::animation(w, h, &planes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(shape: [usize; 3], channels: usize) -> ChunkLayout {
        ChunkLayout {
            shape,
            channels,
            dtype: DType::U8,
        }
    }

    fn decode(bytes: &[u8], l: &ChunkLayout) -> Result<Vec<u8>, JxlDecodeError> {
        let mut out = vec![0u8; l.raw_len()];
        decode_into(bytes, l, &mut out).map(|()| out)
    }

    #[test]
    fn lossless_round_trip_is_bit_exact_for_every_shape() {
        for shape in [
            [64, 64, 8],
            [37, 21, 5],
            [1, 5, 3],
            [8, 1, 1],
            [300, 2, 1],
            [2, 2, 1],
        ] {
            let l = layout(shape, 1);
            let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i * 7 % 251) as u8).collect();
            let bytes = encode(&voxels, &l).unwrap();
            assert_eq!(decode(&bytes, &l).unwrap(), voxels, "{shape:?}");
        }
    }

    #[test]
    fn several_channels_round_trip_as_one_frame_each() {
        for channels in 2..=4 {
            for shape in [[16, 11, 4], [300, 300, 1], [4, 1, 1]] {
                let l = layout(shape, channels);
                let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i * 31 % 253) as u8).collect();
                let bytes = encode(&voxels, &l).unwrap();
                assert_eq!(
                    decode(&bytes, &l).unwrap(),
                    voxels,
                    "{shape:?} × {channels}"
                );
                // Fewer channels than frames is refused, not truncated.
                assert!(decode(&bytes, &layout(shape, channels - 1)).is_err());
            }
        }
    }

    #[test]
    fn unwritable_shapes_are_errors() {
        assert!(encode(&[1], &layout([1, 1, 1], 1)).is_err());
        assert!(encode(&[1; 7], &layout([1, 7, 1], 1)).is_err());
        assert!(encode(&[1; 5], &layout([5, 1, 1], 5)).is_err());
    }

    #[test]
    fn corrupt_and_wrong_sized_images_are_errors() {
        let l = layout([16, 8, 2], 1);
        let voxels: Vec<u8> = (0..l.raw_len()).map(|i| (i * 13 % 256) as u8).collect();
        let bytes = encode(&voxels, &l).unwrap();
        assert!(matches!(
            decode(&bytes, &layout([16, 8, 3], 1)),
            Err(JxlDecodeError::Size { .. })
        ));
        // One grey frame cannot fill two channels.
        assert!(decode(&bytes, &layout([16, 8, 2], 2)).is_err());
        for cut in [0, 1, 2, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &l).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(5) {
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped, &l);
        }
        assert!(decode(b"not a jxl at all", &l).is_err());
        assert!(matches!(
            decode(
                &bytes,
                &ChunkLayout {
                    dtype: DType::U16,
                    ..l
                }
            ),
            Err(JxlDecodeError::Layout { .. })
        ));
    }
}
