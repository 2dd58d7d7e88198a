//! Boxes of N-dimensional C-ordered arrays, regular chunk grids over them, and the strided
//! copies between them: a Zarr chunk's elements into a read's output, a write's input into
//! a chunk. (`geometry` is the 3D Fortran-ordered counterpart of the Precomputed view.)

/// A box of an N-dimensional array: `start` (inclusive) and `shape` along each axis, in
/// the array's own (C) axis order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NdBox {
    /// The first element's index along each axis.
    pub start: Vec<u64>,
    /// The extent along each axis.
    pub shape: Vec<u64>,
}

impl NdBox {
    /// The box `[start, start + shape)`.
    pub fn new(start: Vec<u64>, shape: Vec<u64>) -> Self {
        debug_assert_eq!(start.len(), shape.len());
        NdBox { start, shape }
    }

    /// The box `[0, shape)`.
    pub fn of_shape(shape: &[u64]) -> Self {
        NdBox::new(vec![0; shape.len()], shape.to_vec())
    }

    /// Axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// One past the last index along `axis`.
    pub fn stop(&self, axis: usize) -> u64 {
        self.start[axis] + self.shape[axis]
    }

    /// Whether the box holds no element.
    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    /// Elements, `None` past `usize`.
    pub fn num_elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &s| {
            usize::try_from(s).ok().and_then(|s| n.checked_mul(s))
        })
    }

    /// Bytes of the box's elements at `itemsize` bytes each, `None` past `usize`.
    pub fn num_bytes(&self, itemsize: usize) -> Option<usize> {
        self.num_elements().and_then(|n| n.checked_mul(itemsize))
    }

    /// The elements both boxes hold, `None` when they share none.
    pub fn intersect(&self, other: &NdBox) -> Option<NdBox> {
        let mut start = Vec::with_capacity(self.ndim());
        let mut shape = Vec::with_capacity(self.ndim());
        for axis in 0..self.ndim() {
            let lo = self.start[axis].max(other.start[axis]);
            let hi = self.stop(axis).min(other.stop(axis));
            if hi <= lo {
                return None;
            }
            start.push(lo);
            shape.push(hi - lo);
        }
        Some(NdBox::new(start, shape))
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &NdBox) -> NdBox {
        let start: Vec<u64> = (0..self.ndim())
            .map(|a| self.start[a].min(other.start[a]))
            .collect();
        let shape = (0..self.ndim())
            .map(|a| self.stop(a).max(other.stop(a)) - start[a])
            .collect();
        NdBox::new(start, shape)
    }

    /// Whether every element of `other` lies in this box.
    pub fn contains(&self, other: &NdBox) -> bool {
        (0..self.ndim()).all(|a| other.start[a] >= self.start[a] && other.stop(a) <= self.stop(a))
    }
}

/// A regular grid of chunks over an array of `shape`; the last chunk along an axis may
/// reach past the array (Zarr stores edge chunks whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdGrid {
    /// The array's shape.
    pub shape: Vec<u64>,
    /// Each chunk's shape.
    pub chunk: Vec<u64>,
}

impl NdGrid {
    /// Chunks along each axis.
    pub fn grid_shape(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunk)
            .map(|(&s, &c)| s.div_ceil(c))
            .collect()
    }

    /// The box of chunk `cell` (whole, even where it reaches past the array).
    pub fn chunk_box(&self, cell: &[u64]) -> NdBox {
        NdBox::new(
            cell.iter().zip(&self.chunk).map(|(&g, &c)| g * c).collect(),
            self.chunk.clone(),
        )
    }

    /// The chunks `b` touches (which must lie inside the array), in C order.
    pub fn chunks_touching(&self, b: &NdBox) -> Vec<Vec<u64>> {
        if b.is_empty() {
            return Vec::new();
        }
        let lo: Vec<u64> = (0..b.ndim()).map(|a| b.start[a] / self.chunk[a]).collect();
        let hi: Vec<u64> = (0..b.ndim())
            .map(|a| (b.stop(a) - 1) / self.chunk[a] + 1)
            .collect();
        let mut cells = Vec::new();
        let mut cell = lo.clone();
        loop {
            cells.push(cell.clone());
            // An odometer over [lo, hi), last axis fastest.
            let mut axis = cell.len();
            loop {
                if axis == 0 {
                    return cells;
                }
                axis -= 1;
                cell[axis] += 1;
                if cell[axis] < hi[axis] {
                    break;
                }
                cell[axis] = lo[axis];
            }
        }
    }
}

/// The byte offset of `chunk` in a C-ordered buffer holding `region`, when the chunk's
/// elements are one contiguous run there.
pub fn contiguous_offset(region: &NdBox, chunk: &NdBox, itemsize: usize) -> Option<usize> {
    let n = region.ndim();
    // Contiguous: after the first axis where the chunk spans more than one index, it spans
    // the region's whole extent on every later axis.
    let first = (0..n).find(|&a| chunk.shape[a] > 1).unwrap_or(n);
    if (first + 1..n).any(|a| chunk.shape[a] != region.shape[a]) {
        return None;
    }
    let mut offset = 0usize;
    for a in 0..n {
        offset = offset * region.shape[a] as usize + (chunk.start[a] - region.start[a]) as usize;
    }
    Some(offset * itemsize)
}

/// The plan of a strided copy of `region` between two C-ordered arrays holding the boxes
/// `src` and `dst`: contiguous runs of `run` bytes, one per index of the outer axes.
#[derive(Debug)]
struct Runs {
    /// Bytes per contiguous run.
    run: usize,
    /// The region's extent along the outer axes (those not merged into the run).
    outer: Vec<u64>,
    /// Byte strides of the outer axes in the source and the destination.
    src_strides: Vec<usize>,
    dst_strides: Vec<usize>,
    /// Byte offsets of the region's first element.
    src_at: usize,
    dst_at: usize,
}

/// Byte strides of a C-ordered array of `shape`.
fn strides(shape: &[u64], itemsize: usize) -> Vec<usize> {
    let mut strides = vec![itemsize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1] as usize;
    }
    strides
}

impl Runs {
    fn new(src: &NdBox, dst: &NdBox, region: &NdBox, itemsize: usize) -> Runs {
        let n = region.ndim();
        let (ss, ds) = (strides(&src.shape, itemsize), strides(&dst.shape, itemsize));
        let offset = |b: &NdBox, s: &[usize]| -> usize {
            (0..n)
                .map(|a| (region.start[a] - b.start[a]) as usize * s[a])
                .sum()
        };
        // Trailing axes that both arrays hold whole merge into one run with the axis before.
        let mut inner = n;
        let mut run = itemsize;
        while inner > 0 {
            let axis = inner - 1;
            run *= region.shape[axis] as usize;
            inner = axis;
            if region.shape[axis] != src.shape[axis] || region.shape[axis] != dst.shape[axis] {
                break;
            }
        }
        Runs {
            run,
            outer: region.shape[..inner].to_vec(),
            src_strides: ss[..inner].to_vec(),
            dst_strides: ds[..inner].to_vec(),
            src_at: offset(src, &ss),
            dst_at: offset(dst, &ds),
        }
    }

    /// Calls `f(src_offset, dst_offset)` for every run.
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        if self.outer.contains(&0) {
            return;
        }
        let mut index = vec![0u64; self.outer.len()];
        let (mut s, mut d) = (self.src_at, self.dst_at);
        loop {
            f(s, d);
            let mut axis = index.len();
            loop {
                if axis == 0 {
                    return;
                }
                axis -= 1;
                index[axis] += 1;
                s += self.src_strides[axis];
                d += self.dst_strides[axis];
                if index[axis] < self.outer[axis] {
                    break;
                }
                s -= self.src_strides[axis] * self.outer[axis] as usize;
                d -= self.dst_strides[axis] * self.outer[axis] as usize;
                index[axis] = 0;
            }
        }
    }
}

/// Copies the elements of `region` from `src` (the elements of box `src_box`) into `dst`
/// (the elements of `dst_box`). `region` must lie in both boxes; the buffers must hold
/// their boxes' elements exactly.
pub fn copy_region(
    src: &[u8],
    src_box: &NdBox,
    dst: &mut [u8],
    dst_box: &NdBox,
    region: &NdBox,
    itemsize: usize,
) {
    debug_assert!(src_box.contains(region) && dst_box.contains(region));
    let runs = Runs::new(src_box, dst_box, region, itemsize);
    runs.for_each(|s, d| dst[d..d + runs.run].copy_from_slice(&src[s..s + runs.run]));
}

/// [`copy_region`] into a raw buffer shared by concurrent tasks.
///
/// # Safety
/// `dst` must be valid for writes of `dst_box`'s bytes, and no other thread may touch the
/// bytes of `region` meanwhile.
pub(crate) unsafe fn copy_region_to_ptr(
    src: &[u8],
    src_box: &NdBox,
    dst: *mut u8,
    dst_box: &NdBox,
    region: &NdBox,
    itemsize: usize,
) {
    debug_assert!(src_box.contains(region) && dst_box.contains(region));
    let runs = Runs::new(src_box, dst_box, region, itemsize);
    runs.for_each(|s, d| {
        let from = &src[s..s + runs.run];
        // SAFETY: `d + run` lies inside `dst_box`'s bytes (the region lies in the box), which
        // the caller guarantees are writable and ours alone for the region.
        unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), dst.add(d), runs.run) };
    });
}

/// Fills `len` bytes at `dst` with copies of the element `value`.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes, a multiple of `value.len()`.
unsafe fn fill_ptr(dst: *mut u8, len: usize, value: &[u8]) {
    if value.iter().all(|&b| b == 0) || value.len() == 1 {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::write_bytes(dst, value.first().copied().unwrap_or(0), len) };
        return;
    }
    // SAFETY: the caller's guarantee; `MaybeUninit` slices may be written before they are
    // initialised, and each copy below writes only inside `[0, len)`.
    let out =
        unsafe { std::slice::from_raw_parts_mut(dst.cast::<std::mem::MaybeUninit<u8>>(), len) };
    let first = value.len().min(len);
    for (o, &v) in out[..first].iter_mut().zip(value) {
        o.write(v);
    }
    // Doubling copies: log2(len) memcpys instead of one per element.
    let mut filled = first;
    while filled < len {
        let n = filled.min(len - filled);
        let (done, rest) = out.split_at_mut(filled);
        rest[..n].copy_from_slice(&done[..n]);
        filled += n;
    }
}

/// Fills the elements of `region` in `dst` (the elements of `dst_box`) with `value`, one
/// element's bytes.
///
/// # Safety
/// As [`copy_region_to_ptr`].
pub(crate) unsafe fn fill_region_ptr(dst: *mut u8, dst_box: &NdBox, region: &NdBox, value: &[u8]) {
    let runs = Runs::new(dst_box, dst_box, region, value.len());
    // SAFETY: each run lies in the region, inside `dst_box`'s bytes (the caller's
    // guarantee), and is a whole number of elements.
    runs.for_each(|_, d| unsafe { fill_ptr(dst.add(d), runs.run, value) });
}

/// Fills the elements of `region` in `dst` (the elements of `dst_box`) with `value`.
pub fn fill_region(dst: &mut [u8], dst_box: &NdBox, region: &NdBox, value: &[u8]) {
    assert!(dst_box.num_bytes(value.len()) == Some(dst.len()) && dst_box.contains(region));
    // SAFETY: `dst` is a live exclusive slice holding `dst_box`'s bytes, checked above.
    unsafe { fill_region_ptr(dst.as_mut_ptr(), dst_box, region, value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(start: &[u64], shape: &[u64]) -> NdBox {
        NdBox::new(start.to_vec(), shape.to_vec())
    }

    /// The element of a C-ordered array of `shape` at `index`, by definition.
    fn flat(shape: &[u64], index: &[u64]) -> usize {
        index
            .iter()
            .zip(shape)
            .fold(0, |n, (&i, &s)| n * s as usize + i as usize)
    }

    #[test]
    fn copies_match_element_by_element_in_every_rank() {
        for n in 0..=5usize {
            let src_box = b(
                &vec![1; n],
                &(0..n as u64).map(|a| 3 + a).collect::<Vec<_>>(),
            );
            let dst_box = b(&vec![2; n], &vec![4; n]);
            let Some(region) = src_box
                .intersect(&dst_box)
                .or_else(|| (n == 0).then(|| b(&[], &[])))
            else {
                panic!("boxes overlap")
            };
            let src: Vec<u8> = (0..src_box.num_elements().unwrap())
                .flat_map(|i| (i as u16).to_le_bytes())
                .collect();
            let mut dst = vec![0xff; dst_box.num_bytes(2).unwrap()];
            copy_region(&src, &src_box, &mut dst, &dst_box, &region, 2);
            let cells = NdGrid {
                shape: dst_box.shape.clone(),
                chunk: vec![1; n],
            }
            .chunks_touching(&NdBox::of_shape(&dst_box.shape));
            for at in cells {
                let abs: Vec<u64> = at.iter().zip(&dst_box.start).map(|(i, s)| i + s).collect();
                let got = &dst[2 * flat(&dst_box.shape, &at)..][..2];
                let inside = (0..n).all(|a| abs[a] >= region.start[a] && abs[a] < region.stop(a));
                if inside {
                    let rel: Vec<u64> =
                        abs.iter().zip(&src_box.start).map(|(i, s)| i - s).collect();
                    let want = (flat(&src_box.shape, &rel) as u16).to_le_bytes();
                    assert_eq!(got, want, "rank {n} at {abs:?}");
                } else {
                    assert_eq!(got, [0xff, 0xff], "rank {n} at {abs:?}");
                }
            }
        }
    }

    #[test]
    fn fills_write_the_element_pattern_only_in_the_region() {
        let dst_box = b(&[0, 0], &[3, 5]);
        let mut dst = vec![0u8; 15 * 4];
        fill_region(
            &mut dst,
            &dst_box,
            &b(&[1, 1], &[2, 3]),
            &1.5f32.to_le_bytes(),
        );
        let values: Vec<f32> = dst
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (i, v) in values.iter().enumerate() {
            let (r, c) = (i / 5, i % 5);
            let inside = r >= 1 && (1..4).contains(&c);
            assert_eq!(*v, if inside { 1.5 } else { 0.0 }, "at {r},{c}");
        }
    }

    #[test]
    fn grids_list_touched_chunks_in_c_order() {
        let grid = NdGrid {
            shape: vec![10, 10],
            chunk: vec![4, 4],
        };
        assert_eq!(grid.grid_shape(), vec![3, 3]);
        assert_eq!(
            grid.chunks_touching(&b(&[3, 7], &[2, 3])),
            vec![vec![0, 1], vec![0, 2], vec![1, 1], vec![1, 2]]
        );
        assert_eq!(grid.chunk_box(&[2, 2]), b(&[8, 8], &[4, 4]));
        assert!(grid.chunks_touching(&b(&[0, 0], &[0, 3])).is_empty());
        // A 0-d array has one chunk.
        let scalar = NdGrid {
            shape: vec![],
            chunk: vec![],
        };
        assert_eq!(
            scalar.chunks_touching(&b(&[], &[])),
            vec![Vec::<u64>::new()]
        );
    }
}
