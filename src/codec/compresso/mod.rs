//! The `compresso` encoding: seung-lab's variant of Matejek et al.'s Compresso (the PyPI
//! `compresso` package, which CloudVolume calls for `"encoding": "compresso"`), written here
//! from the package's documented stream layout: no Rust crate implements it.
//!
//! A chunk is one stream of little-endian fields:
//!
//! - a 36-byte header: `cpso`, format version (0, or 1 when a z index trails the stream),
//!   label width in bytes (1, 2, 4, 8), `sx, sy, sz` (u16 each), the window's `xstep,
//!   ystep, zstep` (u8 each, at most 64 voxels), `id_size` (u64), `value_size` (u32),
//!   `location_size` (u64) and the connectivity (4: components are found in each z slice;
//!   6: in 3-D);
//! - `id_size` labels, one per connected component of non-boundary voxels, in the order a
//!   raster scan (x fastest) first meets them;
//! - `value_size` distinct window bit patterns, sorted (each as wide as the smallest
//!   unsigned integer holding `xstep·ystep·zstep` bits);
//! - `location_size` labels that settle the boundary voxels no neighbour settles: 0–5 copy
//!   the left, right, up, down, previous-z or next-z neighbour, 6 takes the next entry as
//!   the label, anything larger is the label plus 7;
//! - the windows, run-length coded: an even word is a window value index times two, an odd
//!   one a run of index 0 times two plus one;
//! - in version 1, two arrays of `sz` integers (1–8 bytes, by `2·sx·sy`): the component
//!   count of each slice and the difference-coded start of each slice's locations.
//!
//! A voxel is a boundary voxel where it differs from its +x or +y neighbour (or +z, with
//! connectivity 6). CloudVolume writes the package's defaults: 4×4×1 windows (8×8×1 when
//! more than 32767 distinct windows overflow the run-length code), connectivity 4 and the
//! z index, so that is what [`encode`] writes, byte for byte.
//!
//! The decoder works one z slice at a time and writes each slice's rows straight into the
//! reader's output: besides the output it holds three slices' boundary bits and runs and
//! two rows of labels, plus (only for connectivity 6, which CloudVolume never writes) one
//! union-find element per 2-D component. Its cost grows with the runs of non-boundary
//! voxels along x and the boundary voxels at corners, not with the voxels: the boundary
//! bits are read 64 to a word, runs and the boundary voxels their neighbours settle are
//! found with bit masks.

mod cc;
mod decode;
mod encode;

use std::borrow::Cow;

use super::registry::FuzzSpec;
use super::{scratch, ChunkLayout, ChunkRows, Codec, CodecKind, Compression};
use super::{DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::Result;

pub use decode::{decode, decode_rows};
pub use encode::encode;

/// The header's size in bytes.
const HEADER_LEN: usize = 36;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["compresso"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &[]
    }
    fn parse(&self, _: &'static str, _: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Compresso))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: super::LABEL_DTYPES,
            channels: &[1],
        })
    }
}

/// The compresso codec (it has no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compresso;

impl Codec for Compresso {
    fn name(&self) -> &str {
        "compresso"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::new()
    }
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError> {
        super::check_labels("compresso", dtype, channels)
    }
    /// CloudVolume gzips compresso chunks (`should_compress`), as it does raw ones.
    fn default_compression(&self) -> Compression {
        Compression::Gzip
    }
    /// The largest stream a chunk can give: an id, two location entries, a window value and
    /// a window word per voxel, and the z index.
    fn stored_limit(&self, layout: &ChunkLayout) -> usize {
        let voxels = layout.voxels();
        layout
            .raw_len()
            .saturating_mul(3)
            .saturating_add(voxels.saturating_mul(16))
            .saturating_add(16 * layout.shape[2] + HEADER_LEN + (64 << 10))
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        scratch::with_decoded(layout.raw_len(), |out| {
            decode::decode_into(bytes, layout, out)?;
            f(out);
            Ok(())
        })
    }
    fn decodes_into_rows(&self) -> bool {
        true
    }
    fn decode_rows(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        rows: &mut dyn ChunkRows,
    ) -> Result<(), DecodeError> {
        Ok(decode_rows(bytes, layout, rows)?)
    }
    fn encode<'a>(&self, voxels: &'a [u8], layout: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        encode(voxels, layout).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a compresso stream of the chunk's shape and label width: what
/// the header or a section says, checked against the data and the layer.
#[derive(Debug, thiserror::Error)]
#[error("compresso: {0}")]
pub struct CompressoDecodeError(String);

/// The fixed fields of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    version: u8,
    width: usize,
    shape: [usize; 3],
    steps: [usize; 3],
    id_size: u64,
    value_size: u32,
    location_size: u64,
    connectivity: u8,
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header, String> {
        let h = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("{} bytes cannot hold the header", bytes.len()))?;
        if &h[..4] != b"cpso" {
            return Err("no cpso magic number".into());
        }
        let u16_at = |i: usize| usize::from(u16::from_le_bytes([h[i], h[i + 1]]));
        let u64_at = |i: usize| read_le(&h[i..i + 8]);
        let header = Header {
            version: h[4],
            width: usize::from(h[5]),
            shape: [u16_at(6), u16_at(8), u16_at(10)],
            steps: [usize::from(h[12]), usize::from(h[13]), usize::from(h[14])],
            id_size: u64_at(15),
            value_size: u32::from_le_bytes([h[23], h[24], h[25], h[26]]),
            location_size: u64_at(27),
            connectivity: h[35],
        };
        if header.version > 1 {
            return Err(format!("format version {} is not 0 or 1", header.version));
        }
        if ![1, 2, 4, 8].contains(&header.width) {
            return Err(format!("data width {} is not 1, 2, 4 or 8", header.width));
        }
        if header.connectivity != 4 && header.connectivity != 6 {
            return Err(format!(
                "connectivity {} is not 4 or 6",
                header.connectivity
            ));
        }
        let window = header.steps.iter().product::<usize>();
        if window == 0 || window > 64 {
            return Err(format!("window {:?} is not 1 to 64 voxels", header.steps));
        }
        Ok(header)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"cpso");
        out.push(self.version);
        out.push(self.width as u8);
        for s in self.shape {
            out.extend_from_slice(&(s as u16).to_le_bytes());
        }
        out.extend(self.steps.iter().map(|&s| s as u8));
        out.extend_from_slice(&self.id_size.to_le_bytes());
        out.extend_from_slice(&self.value_size.to_le_bytes());
        out.extend_from_slice(&self.location_size.to_le_bytes());
        out.push(self.connectivity);
    }

    /// Bytes of one window word: the smallest unsigned integer holding a window's bits.
    fn window_width(&self) -> usize {
        window_width(self.steps)
    }

    /// Bytes of one z index entry, as the package sizes them (by the worst case `2·sx·sy`).
    fn index_width(&self) -> usize {
        let worst = 2 * (self.shape[0] as u64) * (self.shape[1] as u64);
        if worst < u64::from(u8::MAX) {
            1
        } else if worst < u64::from(u16::MAX) {
            2
        } else if worst < u64::from(u32::MAX) {
            4
        } else {
            8
        }
    }
}

fn window_width(steps: [usize; 3]) -> usize {
    match steps.iter().product::<usize>() {
        0..=8 => 1,
        9..=16 => 2,
        17..=32 => 4,
        _ => 8,
    }
}

/// The little-endian unsigned integer in `b` (1 to 8 bytes).
#[inline]
fn read_le(b: &[u8]) -> u64 {
    // The widths a stream uses, read whole: the window words are read one per window.
    match *b {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_le_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => b
            .iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)),
    }
}

/// An unsigned label type of the stream.
trait Label:
    Copy + Default + Eq + Ord + std::hash::Hash + Send + Sync + bytemuck::Pod + 'static
{
    /// Bytes per label.
    const WIDTH: usize;
    /// The largest label.
    const MAX: u64;
    fn from_u64(v: u64) -> Self;
    fn to_u64(self) -> u64;
    /// The label in the first `WIDTH` bytes of `b` (little-endian).
    fn read(b: &[u8]) -> Self;
    /// Writes the label into the first `WIDTH` bytes of `out` (little-endian).
    fn write(self, out: &mut [u8]);
}

macro_rules! label {
    ($t:ty) => {
        impl Label for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            const MAX: u64 = <$t>::MAX as u64;
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn read(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..std::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(a)
            }
            fn write(self, out: &mut [u8]) {
                out[..std::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
        }
    };
}

label!(u8);
label!(u16);
label!(u32);
label!(u64);

#[cfg(test)]
mod tests;
