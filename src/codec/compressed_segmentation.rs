//! The `compressed_segmentation` encoding (neuroglancer's
//! `src/sliceview/compressed_segmentation/README.md`), written here from the specification:
//! no maintained Rust crate implements it.
//!
//! A chunk starts with one little-endian u32 per channel, the offset in 32-bit words of that
//! channel's data from the start of the chunk (a single channel still has its word). Each
//! channel's data tiles the chunk with blocks of `block_size`, x fastest; it starts with one
//! 8-byte header per block (24-bit lookup-table offset, 8-bit `encodedBits`, 32-bit
//! encoded-values offset, both offsets in words from the start of *that channel's* data),
//! followed by the bit-packed indices and the lookup tables of uint32 or uint64 labels.
//! The encoder follows neuroglancer's: tables hold a block's sorted distinct labels, values
//! come before their table, and identical tables are stored once.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::registry::FuzzSpec;
use super::{scratch, ChunkLayout, ChunkRows, Codec, CodecKind, Compression};
use super::{DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// CloudVolume's default block size.
pub const DEFAULT_BLOCK_SIZE: [u64; 3] = [8, 8, 8];
/// The scale key of the block size.
const BLOCK_SIZE_KEY: &str = "compressed_segmentation_block_size";
/// The most bytes any encoded chunk may inflate to, whatever its block size says.
const MAX_ENCODED_LIMIT: usize = 1 << 30;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["compressed_segmentation"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &[BLOCK_SIZE_KEY]
    }
    fn parse(&self, _: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        let bad = || FieldError::new(BLOCK_SIZE_KEY, "not a list of 3 positive integers");
        let block_size = match scale.get(BLOCK_SIZE_KEY) {
            None | Some(Value::Null) => DEFAULT_BLOCK_SIZE,
            Some(v) => {
                let items = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
                let mut block = [0u64; 3];
                for (b, item) in block.iter_mut().zip(items) {
                    *b = item
                        .as_u64()
                        .filter(|&n| (1..=1 << 20).contains(&n))
                        .ok_or_else(bad)?;
                }
                block
            }
        };
        Ok(Box::new(CompressedSegmentation { block_size }))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: &[DType::U32, DType::U64],
            channels: &[1, 2, 3],
        })
    }
}

/// The compressed_segmentation codec with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedSegmentation {
    /// `compressed_segmentation_block_size`.
    pub block_size: [u64; 3],
}

impl Codec for CompressedSegmentation {
    fn name(&self) -> &str {
        "compressed_segmentation"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([(BLOCK_SIZE_KEY.into(), json!(self.block_size))])
    }
    /// The block size is present if and only if the encoding is compressed_segmentation
    /// (the precomputed spec).
    fn complete_new_scale(&self, scale: &mut ScaleJson) {
        scale
            .entry(BLOCK_SIZE_KEY)
            .or_insert(json!(self.block_size));
    }
    fn check(&self, dtype: DType, _: usize) -> Result<(), FieldError> {
        if dtype != DType::U32 && dtype != DType::U64 {
            return Err(FieldError::new(
                "data_type",
                format!(
                    "encoding \"compressed_segmentation\" holds uint32 or uint64 only, not {dtype}"
                ),
            ));
        }
        Ok(())
    }
    fn default_compression(&self) -> Compression {
        Compression::Gzip
    }
    /// Blocks larger than the chunk are padded in the data, so the bound can exceed the raw
    /// size many times over; it is still capped, so a hostile block size in `info` cannot
    /// make us reserve more than 1 GiB.
    fn stored_limit(&self, layout: &ChunkLayout) -> usize {
        let slack = 2 * layout.raw_len() + (64 << 10);
        max_encoded_len(layout, self.block_size)
            .min(MAX_ENCODED_LIMIT)
            .max(slack)
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        scratch::with_decoded(layout.raw_len(), |out| {
            decode_into(bytes, layout, self.block_size, out)?;
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
        Ok(decode_rows(bytes, layout, self.block_size, rows)?)
    }
    fn encode<'a>(&self, voxels: &'a [u8], layout: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        encode(voxels, layout, self.block_size).map(Cow::Owned)
    }
}

/// Why a stored chunk is not a compressed_segmentation chunk of the layer's shape: what
/// lies where (offsets, bit widths), as checked against the data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompressedSegmentationDecodeError(String);

/// The `encodedBits` values the format allows.
const ALLOWED_BITS: [u32; 7] = [0, 1, 2, 4, 8, 16, 32];

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

fn grid(shape: [usize; 3], block: [usize; 3]) -> [usize; 3] {
    std::array::from_fn(|d| ceil_div(shape[d], block[d]))
}

fn to_block(block_size: [u64; 3]) -> Result<[usize; 3], String> {
    let mut out = [0usize; 3];
    for (o, &b) in out.iter_mut().zip(&block_size) {
        *o = usize::try_from(b)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| format!("block size {block_size:?} is not positive"))?;
    }
    if out
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .is_none()
    {
        return Err(format!("block size {block_size:?} is too large"));
    }
    Ok(out)
}

/// An upper bound on the encoded size of a well-formed chunk, in bytes: headers, 32-bit
/// indices for every padded voxel and a table entry per voxel.
pub fn max_encoded_len(layout: &ChunkLayout, block_size: [u64; 3]) -> usize {
    let Ok(block) = to_block(block_size) else {
        return 0;
    };
    let g = grid(layout.shape, block);
    let blocks = g.iter().fold(1usize, |a, &n| a.saturating_mul(n));
    let bvol = block.iter().fold(1usize, |a, &n| a.saturating_mul(n));
    let per_block = bvol
        .saturating_mul(4 + layout.dtype.itemsize())
        .saturating_add(8);
    blocks
        .saturating_mul(per_block)
        .saturating_add(4)
        .saturating_mul(layout.channels)
}

/// Decodes a chunk into planar little-endian voxels. Every offset is checked against the
/// data; nothing in it is trusted.
pub fn decode(
    bytes: &[u8],
    layout: &ChunkLayout,
    block_size: [u64; 3],
) -> Result<Vec<u8>, CompressedSegmentationDecodeError> {
    let mut out = vec![0u8; layout.raw_len()];
    decode_into(bytes, layout, block_size, &mut out)?;
    Ok(out)
}

/// [`decode`] into `out`, which must hold `layout.raw_len()` bytes; every byte of it is
/// written when this succeeds.
pub fn decode_into(
    bytes: &[u8],
    layout: &ChunkLayout,
    block_size: [u64; 3],
    out: &mut [u8],
) -> Result<(), CompressedSegmentationDecodeError> {
    if out.len() != layout.raw_len() {
        return Err(CompressedSegmentationDecodeError(format!(
            "output holds {} bytes, the chunk {}",
            out.len(),
            layout.raw_len()
        )));
    }
    decode_rows(
        bytes,
        layout,
        block_size,
        &mut ContiguousRows::new(out, layout),
    )
}

/// [`decode`] into wherever `rows` puts each row of the chunk: a large read hands over
/// the rows of its output, and no decoded copy of the chunk is ever made. Every voxel of
/// every row is written when this succeeds.
pub fn decode_rows<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    block_size: [u64; 3],
    rows: &mut R,
) -> Result<(), CompressedSegmentationDecodeError> {
    decode_rows_checked(bytes, layout, block_size, rows).map_err(CompressedSegmentationDecodeError)
}

fn decode_rows_checked<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    block_size: [u64; 3],
    rows: &mut R,
) -> Result<(), String> {
    let block = to_block(block_size)?;
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "{} bytes is not a whole number of words",
            bytes.len()
        ));
    }
    let channels = layout.channels;
    if bytes.len() / 4 < channels {
        return Err(format!(
            "{} words cannot hold the offsets of {channels} channels",
            bytes.len() / 4
        ));
    }
    for c in 0..channels {
        let channel = word(bytes, c)
            .and_then(|base| tail(bytes, base as usize))
            .map_err(|e| format!("channel {c}: {e}"))?;
        match layout.dtype.itemsize() {
            4 => decode_channel::<4, R>(channel, layout.shape, block, rows, c),
            8 => decode_channel::<8, R>(channel, layout.shape, block, rows, c),
            _ => {
                return Err(format!(
                    "compressed_segmentation holds uint32 or uint64, not {}",
                    layout.dtype
                ))
            }
        }
        .map_err(|e| format!("channel {c}: {e}"))?;
    }
    Ok(())
}

/// The rows of one contiguous Fortran-ordered `[x, y, z, c]` chunk buffer.
struct ContiguousRows<'a> {
    out: &'a mut [u8],
    shape: [usize; 3],
    row_len: usize,
}

impl<'a> ContiguousRows<'a> {
    fn new(out: &'a mut [u8], layout: &ChunkLayout) -> Self {
        let shape = layout.shape;
        let row_len = shape[0] * layout.dtype.itemsize();
        ContiguousRows {
            out,
            shape,
            row_len,
        }
    }
}

impl ChunkRows for ContiguousRows<'_> {
    fn row(&mut self, c: usize, y: usize, z: usize) -> &mut [u8] {
        let start = ((c * self.shape[2] + z) * self.shape[1] + y) * self.row_len;
        &mut self.out[start..start + self.row_len]
    }
}

/// Word `i` of `data`.
fn word(data: &[u8], i: usize) -> Result<u32, String> {
    i.checked_mul(4)
        .and_then(|at| data.get(at..at.checked_add(4)?))
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .ok_or_else(|| format!("offset {i} lies past the end ({} words)", data.len() / 4))
}

/// `data` from word `i` on.
fn tail(data: &[u8], i: usize) -> Result<&[u8], String> {
    i.checked_mul(4)
        .and_then(|at| data.get(at..))
        .ok_or_else(|| format!("offset {i} lies past the end ({} words)", data.len() / 4))
}

/// Decodes the blocks of channel `c`; `N` is the label size in bytes. Each block's headers and
/// encoded values are bounds-checked once, each lookup as it is made.
fn decode_channel<const N: usize, R: ChunkRows + ?Sized>(
    channel: &[u8],
    shape: [usize; 3],
    block: [usize; 3],
    rows: &mut R,
    c: usize,
) -> Result<(), String> {
    let g = grid(shape, block);
    for gz in 0..g[2] {
        for gy in 0..g[1] {
            for gx in 0..g[0] {
                let header = 2 * (gx + g[0] * (gy + g[1] * gz));
                let (h0, h1) = (word(channel, header)?, word(channel, header + 1)?);
                let bits = h0 >> 24;
                if !ALLOWED_BITS.contains(&bits) {
                    return Err(format!("encodedBits {bits} is not one of {ALLOWED_BITS:?}"));
                }
                let table = tail(channel, (h0 & 0x00ff_ffff) as usize)?;
                let start = [gx * block[0], gy * block[1], gz * block[2]];
                let extent: [usize; 3] =
                    std::array::from_fn(|d| (start[d] + block[d]).min(shape[d]) - start[d]);
                let xs = start[0] * N..(start[0] + extent[0]) * N;
                if bits == 0 {
                    let label: [u8; N] = table
                        .get(..N)
                        .and_then(|l| l.try_into().ok())
                        .ok_or("a block's lookup table lies past the end")?;
                    for z in start[2]..start[2] + extent[2] {
                        for y in start[1]..start[1] + extent[1] {
                            for voxel in rows.row(c, y, z)[xs.clone()].chunks_exact_mut(N) {
                                voxel.copy_from_slice(&label);
                            }
                        }
                    }
                    continue;
                }
                let bits = bits as usize;
                // The packed indices of the block's voxels, up to its last one inside the
                // chunk (blocks are padded to whole `block` shapes in the index space).
                let last =
                    (extent[0] - 1) + block[0] * ((extent[1] - 1) + block[1] * (extent[2] - 1));
                let packed_len = ((last + 1) * bits).div_ceil(32) * 4;
                let packed = tail(channel, h1 as usize)?
                    .get(..packed_len)
                    .ok_or("a block's encoded values lie past the end")?;
                let mask = if bits == 32 {
                    u32::MAX
                } else {
                    (1 << bits) - 1
                };
                for z in 0..extent[2] {
                    for y in 0..extent[1] {
                        let mut bit = block[0] * (y + block[1] * z) * bits;
                        for voxel in
                            rows.row(c, start[1] + y, start[2] + z)[xs.clone()].chunks_exact_mut(N)
                        {
                            let w = &packed[bit / 32 * 4..bit / 32 * 4 + 4];
                            let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                            let index = ((w >> (bit % 32)) & mask) as usize;
                            let label = table
                                .get(index * N..index * N + N)
                                .ok_or("a lookup table index lies past the end")?;
                            voxel.copy_from_slice(label);
                            bit += bits;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Encodes planar little-endian uint32/uint64 voxels.
pub fn encode(voxels: &[u8], layout: &ChunkLayout, block_size: [u64; 3]) -> Result<Vec<u8>> {
    let block = to_block(block_size).map_err(Error::invalid)?;
    let itemsize = layout.dtype.itemsize();
    if itemsize != 4 && itemsize != 8 {
        return Err(Error::invalid(format!(
            "encoding \"compressed_segmentation\" holds uint32 or uint64, not {} (field 'data_type')",
            layout.dtype
        )));
    }
    let n = layout.voxels();
    let mut out: Vec<u32> = vec![0; layout.channels];
    for c in 0..layout.channels {
        let plane = &voxels[c * n * itemsize..(c + 1) * n * itemsize];
        let labels: Vec<u64> = if itemsize == 4 {
            plane
                .chunks_exact(4)
                .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect()
        } else {
            plane
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect()
        };
        out[c] = word_offset(out.len())?;
        encode_channel(&labels, layout.shape, block, itemsize, &mut out)?;
    }
    Ok(out.iter().flat_map(|w| w.to_le_bytes()).collect())
}

fn word_offset(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid("compressed_segmentation chunk exceeds 16 GiB"))
}

fn encode_channel(
    labels: &[u64],
    shape: [usize; 3],
    block: [usize; 3],
    itemsize: usize,
    out: &mut Vec<u32>,
) -> Result<()> {
    let base = out.len();
    let g = grid(shape, block);
    let bvol = block[0] * block[1] * block[2];
    out.resize(base + 2 * g[0] * g[1] * g[2], 0);
    let mut tables: HashMap<Vec<u64>, u32> = HashMap::new();
    let mut block_labels: Vec<u64> = Vec::with_capacity(bvol);
    for gz in 0..g[2] {
        for gy in 0..g[1] {
            for gx in 0..g[0] {
                let start = [gx * block[0], gy * block[1], gz * block[2]];
                let stop: [usize; 3] = std::array::from_fn(|d| (start[d] + block[d]).min(shape[d]));
                block_labels.clear();
                for z in start[2]..stop[2] {
                    for y in start[1]..stop[1] {
                        let row = shape[0] * (y + shape[1] * z);
                        block_labels.extend_from_slice(&labels[row + start[0]..row + stop[0]]);
                    }
                }
                let mut table = block_labels.clone();
                table.sort_unstable();
                table.dedup();
                let bits = match table.len() {
                    0 | 1 => 0,
                    k => ALLOWED_BITS[1..]
                        .iter()
                        .copied()
                        .find(|&b| b == 32 || k <= 1usize << b)
                        .unwrap_or(32),
                };
                let values = out.len();
                out.resize(values + (bits as usize * bvol).div_ceil(32), 0);
                if bits > 0 {
                    let mut i = 0;
                    for z in 0..stop[2] - start[2] {
                        for y in 0..stop[1] - start[1] {
                            for x in 0..stop[0] - start[0] {
                                let label = block_labels[i];
                                i += 1;
                                let index = table.binary_search(&label).unwrap_or(0) as u32;
                                let bit = (x + block[0] * (y + block[1] * z)) * bits as usize;
                                out[values + bit / 32] |= index << (bit % 32);
                            }
                        }
                    }
                }
                let table_offset = match tables.get(&table) {
                    Some(&offset) => offset,
                    None => {
                        let offset = word_offset(out.len() - base)?;
                        for &label in &table {
                            out.push(label as u32);
                            if itemsize == 8 {
                                out.push((label >> 32) as u32);
                            }
                        }
                        tables.insert(table, offset);
                        offset
                    }
                };
                if table_offset >= 1 << 24 {
                    return Err(Error::invalid(
                        "compressed_segmentation: a lookup table offset exceeds 24 bits; \
                         use smaller chunks or a larger block size",
                    ));
                }
                let header = base + 2 * (gx + g[0] * (gy + g[1] * gz));
                out[header] = table_offset | (bits << 24);
                out[header + 1] = word_offset(values - base)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn labels(layout: &ChunkLayout, distinct: u64) -> Vec<u8> {
        let n = layout.voxels() * layout.channels;
        (0..n as u64)
            .flat_map(|i| {
                let v = (i * 2654435761) % distinct + (1 << 40);
                if layout.dtype == DType::U32 {
                    (v as u32).to_le_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                }
            })
            .collect()
    }

    #[test]
    fn round_trips() {
        for dtype in [DType::U32, DType::U64] {
            for channels in [1, 3] {
                for distinct in [1, 2, 3, 5, 17, 300, 70_000] {
                    let layout = ChunkLayout {
                        shape: [13, 7, 5],
                        channels,
                        dtype,
                    };
                    let voxels = labels(&layout, distinct);
                    for block in [[8, 8, 8], [4, 3, 2], [13, 7, 5], [1, 1, 1]] {
                        let enc = encode(&voxels, &layout, block).unwrap();
                        assert!(enc.len() <= max_encoded_len(&layout, block));
                        assert_eq!(decode(&enc, &layout, block).unwrap(), voxels);
                    }
                }
            }
        }
    }

    #[test]
    fn single_channel_has_its_header_word_and_tables_are_shared() {
        let layout = ChunkLayout {
            shape: [4, 4, 4],
            channels: 1,
            dtype: DType::U32,
        };
        let enc = encode(&vec![0; layout.raw_len()], &layout, [2, 2, 2]).unwrap();
        // 1 offset word, 8 headers of 2 words, one shared 1-entry table.
        assert_eq!(enc.len(), 4 * (1 + 16 + 1));
        assert_eq!(&enc[..4], &[1, 0, 0, 0]);
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        let layout = ChunkLayout {
            shape: [6, 5, 4],
            channels: 2,
            dtype: DType::U64,
        };
        let enc = encode(&labels(&layout, 9), &layout, [4, 4, 4]).unwrap();
        for cut in [0, 3, 4, 8, 20, enc.len() / 2] {
            assert!(decode(&enc[..cut], &layout, [4, 4, 4]).is_err(), "{cut}");
        }
        for i in 0..enc.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = enc.clone();
                bad[i] ^= flip;
                let _ = decode(&bad, &layout, [4, 4, 4]);
            }
        }
        let mut bad_bits = enc.clone();
        bad_bits[8 + 3] = 3; // channel 0, block 0: encodedBits 3
        assert!(decode(&bad_bits, &layout, [4, 4, 4]).is_err());
    }
}
