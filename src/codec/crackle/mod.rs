//! The `crackle` encoding: seung-lab's crackle-codec (PyPI `crackle-codec`, which
//! CloudVolume writes for `"encoding": "crackle"`), written here from the package's source:
//! no Rust crate implements it.
//!
//! A stream is a header (`header.rs`), a z index (the byte length of each slice's crack code,
//! then in version 1 its CRC-32C), the label section (`labels.rs`), the markov model when the
//! header names an order (`markov.rs`), one crack code per z-slice (`cracks.rs`) and, in
//! version 1, the CRC-32C of the label section and of each slice's component ids. A slice
//! decodes by drawing its crack code into a connectivity graph, numbering the graph's
//! 4-connected components (`ccl.rs`) and giving each its label. Every variant the package
//! writes decodes: format versions 0 and 1, permissible and impermissible cracks, flat and
//! condensed-pin labels, markov orders 1–15, stored widths 1–8 bytes. Encoding writes the
//! package's default variant (what CloudVolume writes: flat labels, no markov model),
//! byte for byte (`encode.rs`).

mod ccl;
mod cracks;
mod encode;
mod header;
mod labels;
mod markov;

use std::borrow::Cow;

use super::registry::FuzzSpec;
use super::{scratch, ChunkLayout, ChunkRows, Codec, CodecKind, Compression};
use super::{DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::Result;

use header::Header;

/// The registry entry.
#[derive(Debug)]
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["crackle"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &[]
    }
    fn parse(&self, _: &'static str, _: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Crackle))
    }
    fn fuzz(&self) -> Option<FuzzSpec> {
        Some(FuzzSpec {
            dtypes: super::LABEL_DTYPES,
            channels: &[1],
        })
    }
}

/// The crackle codec (it has no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crackle;

/// Why a stored chunk is not a crackle stream of the layer's shape and type.
#[derive(Debug, thiserror::Error)]
#[error("crackle: {0}")]
pub struct CrackleDecodeError(String);

impl Codec for Crackle {
    fn name(&self) -> &str {
        "crackle"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::new()
    }
    fn check(&self, dtype: DType, channels: usize) -> Result<(), FieldError> {
        super::check_labels("crackle", dtype, channels)
    }
    /// CloudVolume gzips crackle chunks (`should_compress`).
    fn default_compression(&self) -> Compression {
        Compression::Gzip
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        scratch::with_decoded(layout.raw_len(), |out| {
            decode_into(bytes, layout, out)?;
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
        encode::encode(voxels, layout).map(Cow::Owned)
    }
}

/// Decodes a chunk into `out` (`layout.raw_len()` bytes, Fortran order, little-endian).
pub fn decode_into(
    bytes: &[u8],
    layout: &ChunkLayout,
    out: &mut [u8],
) -> Result<(), CrackleDecodeError> {
    if out.len() != layout.raw_len() {
        return Err(CrackleDecodeError(format!(
            "output holds {} bytes, the chunk {}",
            out.len(),
            layout.raw_len()
        )));
    }
    decode_rows(bytes, layout, &mut ContiguousRows::new(out, layout))
}

/// The crackle stream of `voxels` (one channel, Fortran order, little-endian), as
/// `crackle.compress` writes it with its defaults.
pub fn encode_chunk(voxels: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>> {
    encode::encode(voxels, layout)
}

/// Decodes a chunk into `rows`. Every size and offset is checked against the data.
pub fn decode_rows<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    rows: &mut R,
) -> Result<(), CrackleDecodeError> {
    decode_checked(bytes, layout, rows).map_err(CrackleDecodeError)
}

/// Rows of a contiguous Fortran-order chunk.
struct ContiguousRows<'a> {
    out: &'a mut [u8],
    sy: usize,
    row_len: usize,
}

impl<'a> ContiguousRows<'a> {
    fn new(out: &'a mut [u8], layout: &ChunkLayout) -> Self {
        ContiguousRows {
            out,
            sy: layout.shape[1],
            row_len: layout.shape[0] * layout.dtype.itemsize(),
        }
    }
}

impl ChunkRows for ContiguousRows<'_> {
    fn row(&mut self, _c: usize, y: usize, z: usize) -> &mut [u8] {
        let start = (z * self.sy + y) * self.row_len;
        &mut self.out[start..start + self.row_len]
    }
}

/// The little-endian u32 at `at`, if the data holds it.
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// A CRC-32C of component ids as the package computes it: over their little-endian bytes.
fn crc_of_ids(ids: &[u32]) -> u32 {
    crc_append_ids(0, ids)
}

/// [`crc_of_ids`] continued over more ids.
fn crc_append_ids(crc: u32, ids: &[u32]) -> u32 {
    if cfg!(target_endian = "little") {
        crc32c::crc32c_append(crc, bytemuck::cast_slice(ids))
    } else {
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        crc32c::crc32c_append(crc, &bytes)
    }
}

fn decode_checked<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    rows: &mut R,
) -> Result<(), String> {
    let h = Header::parse(bytes)?;
    let dims = [h.sx as usize, h.sy as usize, h.sz as usize];
    if dims != layout.shape {
        return Err(format!(
            "the stream holds {:?} voxels, the chunk is {:?}",
            dims, layout.shape
        ));
    }
    if layout.channels != 1 {
        return Err(format!("crackle holds 1 channel, not {}", layout.channels));
    }
    let width = layout.dtype.itemsize();
    if h.data_width != width {
        return Err(format!(
            "the stream holds {}-byte labels, the layer's {} is {width} bytes",
            h.data_width, layout.dtype
        ));
    }
    if !h.one_grid_per_slice() {
        return Err(format!(
            "grid size 2^{} (several grids per slice) is reserved; the package writes none",
            h.log2_grid
        ));
    }
    let [sx, sy, sz] = dims;
    let sxy = sx * sy;
    if sxy * sz == 0 {
        return h.crc_error.map_or(Ok(()), Err);
    }
    // CRC mismatches are reported once the rest has decoded without a worse error, so that
    // a fuzzer (which cannot forge CRCs) still reaches every parser.
    let mut crc_error = h.crc_error.clone();
    let mut mismatch = |what: String, stored: u32, computed: u32| {
        if stored != computed && crc_error.is_none() {
            crc_error = Some(format!(
                "{what} CRC-32C mismatch: stored {stored:#x}, computed {computed:#x}"
            ));
        }
    };
    // The z index.
    let mut at = h.header_bytes();
    let index = at
        .checked_add(4 * sz)
        .and_then(|end| bytes.get(at..end))
        .ok_or("the z index breaks off")?;
    if h.version > 0 {
        let stored = u32_at(bytes, at + 4 * sz).ok_or("the z index CRC breaks off")?;
        mismatch("z index".into(), stored, crc32c::crc32c(index));
    }
    at += h.z_index_bytes();
    // The label section, then the markov model.
    let label_end = usize::try_from(h.num_label_bytes)
        .ok()
        .and_then(|n| at.checked_add(n))
        .filter(|&end| end <= bytes.len())
        .ok_or("the label section runs past the end")?;
    let section = &bytes[at..label_end];
    at = label_end;
    let model = if h.markov_order > 0 {
        let end = at
            .checked_add(h.markov_model_bytes())
            .filter(|&end| end <= bytes.len())
            .ok_or("the markov model runs past the end")?;
        let model = markov::Model::parse(&bytes[at..end], h.markov_order, h.markov_rows())?;
        at = end;
        Some(model)
    } else {
        None
    };
    // The crack codes, and the CRCs after them.
    let trailer = if h.version > 0 { 4 * (sz + 1) } else { 0 };
    let codes_end = bytes
        .len()
        .checked_sub(trailer)
        .ok_or("the CRCs break off")?;
    let mut ends = Vec::with_capacity(sz);
    let mut end = at as u64;
    for len in index.chunks_exact(4) {
        end += u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
        ends.push(end as usize);
    }
    if end > codes_end as u64 {
        return Err("the crack codes run past the end".into());
    }
    let crack_crcs = &bytes[codes_end.min(bytes.len())..];
    if h.version > 0 {
        let stored = u32_at(bytes, codes_end).ok_or("the label CRC breaks off")?;
        mismatch("label section".into(), stored, crc32c::crc32c(section));
    }
    let labels = labels::Labels::parse(&h, section)?;

    let mut graph = cracks::Graph::default();
    let mut runs = ccl::Runs::default();
    let mut row_ids = vec![0u32; sx];
    let mut table = Vec::new();
    let mut crack_scratch = cracks::Scratch::default();
    let mut cursor = labels::Cursor::default();
    let mut start = at;
    for (z, &end) in ends.iter().enumerate() {
        let code = &bytes[start..end];
        start = end;
        cracks::decode_slice(
            code,
            h.sx,
            h.sy,
            h.permissible,
            model.as_ref(),
            &mut graph,
            &mut crack_scratch,
        )
        .map_err(|e| format!("slice {z}: {e}"))?;
        let n = ccl::label_runs(&graph, &mut runs);
        if h.version > 0 {
            let stored = u32_at(crack_crcs, 4 * (z + 1)).ok_or("a slice CRC breaks off")?;
            let mut crc = 0;
            for y in 0..sy {
                for run in runs.row(y) {
                    row_ids[run.x0 as usize..run.x1 as usize].fill(run.id);
                }
                crc = crc_append_ids(crc, &row_ids);
            }
            mismatch(format!("slice {z}"), stored, crc);
        }
        if labels.components(z) != n as u64 {
            return Err(format!(
                "slice {z} has {n} components, its labels {}",
                labels.components(z)
            ));
        }
        let id_at = |loc: u64| runs.id_at(loc as usize % sx, loc as usize / sx);
        labels
            .slice_table(z, &id_at, &mut cursor, &mut table)
            .map_err(|e| format!("slice {z}: {e}"))?;
        match width {
            1 => write_slice::<1, R>(rows, z, &runs, sy, &table),
            2 => write_slice::<2, R>(rows, z, &runs, sy, &table),
            4 => write_slice::<4, R>(rows, z, &runs, sy, &table),
            _ => write_slice::<8, R>(rows, z, &runs, sy, &table),
        }
    }
    crc_error.map_or(Ok(()), Err)
}

/// Writes slice `z`: each run's component's value, `W` little-endian bytes per voxel.
fn write_slice<const W: usize, R: ChunkRows + ?Sized>(
    rows: &mut R,
    z: usize,
    runs: &ccl::Runs,
    sy: usize,
    table: &[u64],
) {
    for y in 0..sy {
        let row = rows.row(0, y, z);
        for run in runs.row(y) {
            let v = table.get(run.id as usize).copied().unwrap_or(0);
            if let Some(span) = row.get_mut(run.x0 as usize * W..run.x1 as usize * W) {
                fill::<W>(span, v);
            }
        }
    }
}

/// Fills `span` with the `W`-byte little-endian `v`, as wide stores where it is aligned.
fn fill<const W: usize>(span: &mut [u8], v: u64) {
    let done = match W {
        1 => {
            span.fill(v as u8);
            true
        }
        2 => bytemuck::try_cast_slice_mut::<u8, u16>(span)
            .map(|s| s.fill((v as u16).to_le()))
            .is_ok(),
        4 => bytemuck::try_cast_slice_mut::<u8, u32>(span)
            .map(|s| s.fill((v as u32).to_le()))
            .is_ok(),
        _ => bytemuck::try_cast_slice_mut::<u8, u64>(span)
            .map(|s| s.fill(v.to_le()))
            .is_ok(),
    };
    if !done {
        let v: [u8; W] = std::array::from_fn(|i| (v >> (8 * i)) as u8);
        for dst in span.chunks_exact_mut(W) {
            dst.copy_from_slice(&v);
        }
    }
}

#[cfg(test)]
mod tests;
