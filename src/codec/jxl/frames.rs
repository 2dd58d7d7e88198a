//! Several greyscale JPEG XL images of one size joined as the frames of one animation: how
//! CloudVolume stores a multi-channel jxl chunk (one frame per channel).
//!
//! zune-jpegxl writes single-frame images only, always with the same hand-made headers (the
//! codestream signature, a size header, a fixed greyscale sRGB image header, a fixed modular
//! frame header) followed by the frame's table of contents and sections, which start on a
//! byte boundary and do not depend on those headers. So each channel is encoded alone, its
//! headers are checked to be exactly those this module writes for a still image (else the
//! encoder changed and we refuse rather than guess), and its sections are kept behind headers
//! written here for an animation: `have_animation` in the image header, a duration of one
//! tick and `is_last` on the last frame in each frame header. Field order and codes follow
//! ISO/IEC 18181-1 (SizeHeader, ImageMetadata, FrameHeader); written here because no Rust
//! crate we can ship writes multi-frame lossless JPEG XL.

use crate::error::{Error, Result};

/// Bits in JPEG XL order: least significant first within each byte.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, n: u32, value: u64) {
        for i in 0..n {
            if self.used == 0 {
                self.bytes.push(0);
            }
            if let Some(last) = self.bytes.last_mut() {
                *last |= (((value >> i) & 1) as u8) << self.used;
            }
            self.used = (self.used + 1) % 8;
        }
    }

    fn zero_pad(&mut self) {
        self.used = 0;
    }

    /// A size-header dimension: a 2-bit selector, then `v - 1` in 9, 13, 18 or 30 bits.
    fn dimension(&mut self, v: usize) {
        let m = (v - 1) as u64;
        let (selector, bits) = match m {
            m if m < 1 << 9 => (0, 9),
            m if m < 1 << 13 => (1, 13),
            m if m < 1 << 18 => (2, 18),
            _ => (3, 30),
        };
        self.put(2, selector);
        self.put(bits, m);
    }
}

/// The signature, size header and image metadata of an 8-bit greyscale sRGB image, an
/// animation (100 ticks per second, looping, no timecodes) when `animation`.
fn image_header(out: &mut Bits, w: usize, h: usize, animation: bool) {
    out.put(16, 0x0AFF); // signature
    out.put(1, 0); // not a small size
    out.dimension(h);
    out.put(3, 0); // no fixed aspect ratio: the width follows
    out.dimension(w);
    out.put(1, 0); // metadata not all default
    out.put(1, u64::from(animation)); // extra fields
    if animation {
        out.put(3, 0); // identity orientation
        out.put(1, 0); // no intrinsic size
        out.put(1, 0); // no preview
        out.put(1, 1); // an animation:
        out.put(2, 0); // 100 ticks per second numerator,
        out.put(2, 0); // over 1,
        out.put(2, 0); // looping forever,
        out.put(1, 0); // without timecodes
    }
    out.put(1, 0); // integer samples
    out.put(2, 0); // of 8 bits
    out.put(1, 1); // 16-bit buffers suffice
    out.put(2, 0); // no extra channels
    out.put(1, 0); // not XYB
    out.put(1, 0); // colour encoding not all default:
    out.put(1, 0); // no ICC profile,
    out.put(2, 1); // greyscale,
    out.put(2, 1); // D65 white point,
    out.put(1, 0); // no gamma:
    out.put(2, 2); // a transfer function coded as 2 + 4 bits:
    out.put(4, 11); // sRGB's (13),
    out.put(2, 1); // relative rendering intent
    if animation {
        out.put(1, 1); // default tone mapping
    }
    out.put(2, 0); // no extensions
    out.put(1, 1); // default transform data
    out.zero_pad();
}

/// A full-size modular frame header that replaces what came before; in an animation it
/// lasts one tick. The table of contents follows, unpermuted, from the next byte.
fn frame_header(out: &mut Bits, animation: bool, is_last: bool) {
    out.put(1, 0); // not all default
    out.put(2, 0); // a regular frame
    out.put(1, 1); // modular
    out.put(2, 0); // no flags
    out.put(1, 0); // not YCbCr
    out.put(2, 0); // no upsampling
    out.put(2, 1); // 256-pixel groups
    out.put(2, 0); // one pass
    out.put(1, 0); // no crop
    out.put(2, 0); // replace blending
    if animation {
        out.put(2, 1); // a duration of 1 tick
    }
    out.put(1, u64::from(is_last));
    if !is_last {
        out.put(2, 0); // not saved as a reference
    }
    out.put(2, 0); // no name
    out.put(1, 0); // loop filter not all default:
    out.put(1, 0); // no Gabor-like filter,
    out.put(2, 0); // no edge-preserving filter,
    out.put(2, 0); // no extensions
    out.put(2, 0); // no frame header extensions
    out.put(1, 0); // table of contents not permuted
    out.zero_pad();
}

/// One animation of `frames` (single-frame greyscale codestreams of `w`×`h` pixels from
/// zune-jpegxl), in order.
pub(super) fn animation(w: usize, h: usize, frames: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut still = Bits::default();
    image_header(&mut still, w, h, false);
    frame_header(&mut still, false, true);
    let prefix = still.bytes;
    let mut out = Bits::default();
    image_header(&mut out, w, h, true);
    for (i, frame) in frames.iter().enumerate() {
        let sections = frame.strip_prefix(prefix.as_slice()).ok_or_else(|| {
            Error::internal(
                "zune-jpegxl's headers are not the ones expected: cannot join its frames",
            )
        })?;
        frame_header(&mut out, true, i + 1 == frames.len());
        out.bytes.extend_from_slice(sections);
    }
    Ok(out.bytes)
}
