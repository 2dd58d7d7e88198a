//! The compresso encoder, byte for byte the PyPI package's `compress` with CloudVolume's
//! arguments (4×4×1 windows, falling back to 8×8×1 when the run-length code overflows;
//! connectivity 4; the z index).

use super::cc::{Labeler, Slices3d};
use super::{window_width, ChunkLayout, Header, Label, HEADER_LEN};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// The package's default window.
const STEPS: [usize; 3] = [4, 4, 1];
/// The window it falls back to when more than 32767 distinct 4×4×1 windows overflow the
/// run-length code.
const FALLBACK_STEPS: [usize; 3] = [8, 8, 1];

/// Encodes one channel of little-endian unsigned labels (Fortran order) as the package's
/// `compresso.compress(labels)` does.
pub fn encode(voxels: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>> {
    if layout.channels != 1 {
        return Err(Error::invalid(format!(
            "encoding \"compresso\" holds 1 channel, not {} (field 'num_channels')",
            layout.channels
        )));
    }
    if let Some(d) = layout.shape.iter().find(|&&d| d > usize::from(u16::MAX)) {
        return Err(Error::invalid(format!(
            "encoding \"compresso\" holds chunks up to 65535 voxels a side, not {d} \
             (field 'chunk_sizes')"
        )));
    }
    match layout.dtype {
        DType::U8 => Ok(compress::<u8>(voxels, layout.shape)),
        DType::U16 => Ok(compress::<u16>(voxels, layout.shape)),
        DType::U32 => Ok(compress::<u32>(voxels, layout.shape)),
        DType::U64 => Ok(compress::<u64>(voxels, layout.shape)),
        other => Err(Error::invalid(format!(
            "encoding \"compresso\" holds uint8, uint16, uint32 or uint64 labels only, not \
             {other} (field 'data_type')"
        ))),
    }
}

fn compress<T: Label>(voxels: &[u8], shape: [usize; 3]) -> Vec<u8> {
    let labels: Vec<T> = voxels.chunks_exact(T::WIDTH).map(T::read).collect();
    match stream(&labels, shape, STEPS, 4, true) {
        Ok(bytes) => bytes,
        // 8×8×1 windows are 64-bit words, whose run-length code cannot overflow.
        Err(RleOverflow) => stream(&labels, shape, FALLBACK_STEPS, 4, true).unwrap_or_default(),
    }
}

/// More distinct windows than the run-length code's word can index.
#[derive(Debug)]
pub(super) struct RleOverflow;

/// The stream of `labels` (`shape`, Fortran order) with the given window, connectivity (4
/// or 6) and, for connectivity 4, optionally the z index (format version 1).
pub(super) fn stream<T: Label>(
    labels: &[T],
    shape: [usize; 3],
    steps: [usize; 3],
    connectivity: u8,
    z_index: bool,
) -> Result<Vec<u8>, RleOverflow> {
    let [sx, sy, sz] = shape;
    let sxy = sx * sy;
    let six = connectivity == 6;
    let random_access = z_index && !six;
    let mut header = Header {
        version: u8::from(random_access),
        width: T::WIDTH,
        shape,
        steps,
        id_size: 0,
        value_size: 0,
        location_size: 0,
        connectivity,
    };
    if labels.is_empty() {
        // The package writes an empty volume as a version-0 header alone.
        header.version = 0;
        let mut out = Vec::with_capacity(HEADER_LEN);
        header.write(&mut out);
        return Ok(out);
    }

    let boundary = boundaries(labels, shape, six);
    let (ids, per_slice) = components(labels, &boundary, shape, six);

    // Each window's boundary bits.
    let [xs, ys, zs] = steps;
    let (nx, ny) = (sx.div_ceil(xs), sy.div_ceil(ys));
    let mut windows = vec![0u64; nx * ny * sz.div_ceil(zs)];
    for (z, slice) in boundary.chunks_exact(sxy).enumerate() {
        for (y, row) in slice.chunks_exact(sx).enumerate() {
            let block = nx * (y / ys) + nx * ny * (z / zs);
            let shift = xs * (y % ys) + xs * ys * (z % zs);
            for (x, &b) in row.iter().enumerate() {
                if b != 0 {
                    windows[block + x / xs] |= 1 << (shift + x % xs);
                }
            }
        }
    }

    let (locations, starts) = locations(labels, &boundary, shape, six, random_access);

    let mut values = windows.clone();
    values.sort_unstable();
    values.dedup();
    let ww = window_width(steps);
    let max_run = (u64::MAX >> (64 - 8 * ww)) / 2;
    let mut words: Vec<u64> = Vec::new();
    let mut zeros = 0u64;
    for w in &windows {
        let index = values.binary_search(w).unwrap_or(0) as u64;
        if index > max_run {
            return Err(RleOverflow);
        }
        if index == 0 {
            zeros += 1;
            if zeros == max_run {
                words.push((zeros << 1) | 1);
                zeros = 0;
            }
            continue;
        }
        if zeros > 0 {
            words.push((zeros << 1) | 1);
            zeros = 0;
        }
        words.push(index << 1);
    }
    if zeros > 0 {
        words.push((zeros << 1) | 1);
    }

    header.id_size = ids.len() as u64;
    header.value_size = values.len() as u32;
    header.location_size = locations.len() as u64;
    let iw = header.index_width();
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + (ids.len() + locations.len()) * T::WIDTH
            + (values.len() + words.len()) * ww
            + 2 * sz * iw,
    );
    header.write(&mut out);
    let mut put = |v: u64, width: usize| out.extend_from_slice(&v.to_le_bytes()[..width]);
    for id in &ids {
        put(id.to_u64(), T::WIDTH);
    }
    for &v in &values {
        put(v, ww);
    }
    for l in &locations {
        put(l.to_u64(), T::WIDTH);
    }
    for &w in &words {
        put(w, ww);
    }
    if random_access {
        for &count in &per_slice {
            put(count, iw);
        }
        // Each slice's first location, difference coded: 0, then each slice's count.
        put(0, iw);
        for pair in starts.windows(2) {
            put(pair[1] - pair[0], iw);
        }
    }
    Ok(out)
}

/// 1 where a voxel differs from its +x or +y neighbour (or +z, with connectivity 6).
fn boundaries<T: Label>(labels: &[T], [sx, sy, sz]: [usize; 3], six: bool) -> Vec<u8> {
    let sxy = sx * sy;
    let mut out = vec![0u8; labels.len()];
    for z in 0..sz {
        for y in 0..sy {
            let row = sx * y + sxy * z;
            for x in 0..sx {
                let i = row + x;
                let v = labels[i];
                let differs = (x + 1 < sx && v != labels[i + 1])
                    || (y + 1 < sy && v != labels[i + sx])
                    || (six && z + 1 < sz && v != labels[i + sxy]);
                out[i] = u8::from(differs);
            }
        }
    }
    out
}

/// The label of each component in order of first appearance, and each slice's component
/// count (for the z index; connectivity 4 only).
fn components<T: Label>(
    labels: &[T],
    boundary: &[u8],
    [sx, sy, _]: [usize; 3],
    six: bool,
) -> (Vec<T>, Vec<u64>) {
    let sxy = sx * sy;
    let mut labeler = Labeler::default();
    let mut comps = vec![0u32; sxy];
    let mut below = vec![0u32; sxy];
    let mut firsts: Vec<T> = Vec::new();
    let mut per_slice = Vec::new();
    let mut slices = Slices3d::default();
    let (mut base, mut below_base) = (0u32, 0u32);
    for (z, (b, l)) in boundary
        .chunks_exact(sxy)
        .zip(labels.chunks_exact(sxy))
        .enumerate()
    {
        let count = labeler.label(b, sx, &mut comps);
        per_slice.push(u64::from(count));
        // Components first appear in increasing order, so a new one is the next number.
        let mut seen = 0u32;
        for (&c, &v) in comps.iter().zip(l) {
            if c > seen {
                seen = c;
                firsts.push(v);
            }
        }
        if six {
            // A chunk of at most 65535² · 65535 voxels: its 2-D components fit u32 only
            // while they number under 2^32, which any chunk that fits in memory does.
            let _ = slices.add(count);
            if z > 0 {
                slices.join(&below, below_base, &comps, base);
            }
            std::mem::swap(&mut below, &mut comps);
            below_base = base;
            base = base.wrapping_add(count);
        }
    }
    if !six {
        return (firsts, per_slice);
    }
    let (number, count) = slices.numbering();
    let mut ids = Vec::with_capacity(count as usize);
    for (&n, &first) in number.iter().zip(&firsts) {
        if n as usize == ids.len() {
            ids.push(first);
        }
    }
    (ids, per_slice)
}

/// The locations that settle the boundary voxels no earlier neighbour settles, and where
/// each slice's start.
fn locations<T: Label>(
    labels: &[T],
    b: &[u8],
    [sx, sy, sz]: [usize; 3],
    six: bool,
    random_access: bool,
) -> (Vec<T>, Vec<u64>) {
    let sxy = sx * sy;
    let mut out: Vec<T> = Vec::new();
    let mut starts = Vec::with_capacity(sz);
    for z in 0..sz {
        starts.push(out.len() as u64);
        for y in 0..sy {
            for x in 0..sx {
                let i = x + sx * y + sxy * z;
                if b[i] == 0
                    || (x > 0 && b[i - 1] == 0)
                    || (y > 0 && b[i - sx] == 0)
                    || (six && z > 0 && b[i - sxy] == 0)
                {
                    continue;
                }
                let v = labels[i];
                let same = |j: usize| b[j] == 0 && labels[j] == v;
                let code = if x > 0 && same(i - 1) {
                    0
                } else if x + 1 < sx && same(i + 1) {
                    1
                } else if y > 0 && same(i - sx) {
                    2
                } else if y + 1 < sy && same(i + sx) {
                    3
                } else if !random_access && z > 0 && same(i - sxy) {
                    4
                } else if !random_access && z + 1 < sz && same(i + sxy) {
                    5
                } else if v.to_u64() > T::MAX - 7 {
                    out.push(T::from_u64(6));
                    out.push(v);
                    continue;
                } else {
                    v.to_u64() + 7
                };
                out.push(T::from_u64(code));
            }
        }
    }
    (out, starts)
}
