//! Pure geometry: boxes in absolute voxel coordinates, the chunk grid of a scale, chunk key
//! names, and copies of boxes between Fortran-ordered `[x, y, z, c]` buffers.

use crate::error::{Error, Result};

/// A half-open box `[start, stop)` in absolute voxel coordinates (x, y, z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bbox {
    /// The lowest corner, inclusive.
    pub start: [i64; 3],
    /// The highest corner, exclusive.
    pub stop: [i64; 3],
}

impl Bbox {
    /// A box; `stop` below `start` on any axis is an error.
    pub fn new(start: [i64; 3], stop: [i64; 3]) -> Result<Self> {
        if (0..3).any(|d| stop[d] < start[d]) {
            return Err(Error::invalid(format!(
                "box stop {stop:?} lies below start {start:?}"
            )));
        }
        Ok(Bbox { start, stop })
    }

    /// Extent on each axis.
    pub fn shape(&self) -> [u64; 3] {
        std::array::from_fn(|d| self.stop[d].abs_diff(self.start[d]))
    }

    /// Number of voxels, or `None` if it does not fit in `usize`.
    pub fn num_voxels(&self) -> Option<usize> {
        self.shape().iter().try_fold(1usize, |acc, &n| {
            usize::try_from(n).ok().and_then(|n| acc.checked_mul(n))
        })
    }

    /// Whether the box holds no voxel.
    pub fn is_empty(&self) -> bool {
        (0..3).any(|d| self.stop[d] <= self.start[d])
    }

    /// The common part of two boxes, or `None` when they do not overlap.
    pub fn intersect(&self, other: &Bbox) -> Option<Bbox> {
        let b = Bbox {
            start: std::array::from_fn(|d| self.start[d].max(other.start[d])),
            stop: std::array::from_fn(|d| self.stop[d].min(other.stop[d])),
        };
        (!b.is_empty()).then_some(b)
    }

    /// Whether `other` lies wholly inside `self` (an empty `other` always does).
    pub fn contains(&self, other: &Bbox) -> bool {
        other.is_empty()
            || (0..3).all(|d| self.start[d] <= other.start[d] && other.stop[d] <= self.stop[d])
    }

    /// `self.start - origin` per axis, as buffer indices; `origin` must not exceed `start`.
    fn offset_from(&self, origin: &Bbox) -> [usize; 3] {
        std::array::from_fn(|d| (self.start[d] - origin.start[d]) as usize)
    }

    fn ushape(&self) -> [usize; 3] {
        self.shape().map(|n| n as usize)
    }
}

/// The regular chunk grid of one scale, anchored at `voxel_offset`, edge chunks clipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkGrid {
    /// The voxel coordinate of the layer's lowest corner.
    pub voxel_offset: [i64; 3],
    /// The layer extent in voxels.
    pub size: [u64; 3],
    /// The chunk edge in voxels; edge chunks are clipped at the bounds.
    pub chunk: [u64; 3],
}

impl ChunkGrid {
    /// The layer bounds `[voxel_offset, voxel_offset + size)`.
    /// The info parser guarantees that these sums fit in `i64`.
    pub fn bounds(&self) -> Bbox {
        Bbox {
            start: self.voxel_offset,
            stop: std::array::from_fn(|d| self.voxel_offset[d] + self.size[d] as i64),
        }
    }

    /// Number of chunks along each axis: `ceil(size / chunk)`.
    pub fn grid_shape(&self) -> [u64; 3] {
        std::array::from_fn(|d| self.size[d].div_ceil(self.chunk[d]))
    }

    /// The voxels covered by grid cell `g`, clipped to the layer bounds.
    pub fn chunk_box(&self, g: [u64; 3]) -> Bbox {
        let start = std::array::from_fn(|d| self.voxel_offset[d] + (g[d] * self.chunk[d]) as i64);
        let stop = std::array::from_fn(|d| {
            self.voxel_offset[d] + ((g[d] + 1) * self.chunk[d]).min(self.size[d]) as i64
        });
        Bbox { start, stop }
    }

    /// Grid cells whose chunk overlaps `b`, x fastest. Cost is proportional to the result,
    /// never to the layer.
    pub fn chunks_touching(&self, b: &Bbox) -> Vec<[u64; 3]> {
        let Some(b) = b.intersect(&self.bounds()) else {
            return Vec::new();
        };
        let range = |d: usize| {
            let lo = (b.start[d] - self.voxel_offset[d]) as u64 / self.chunk[d];
            let hi = ((b.stop[d] - self.voxel_offset[d]) as u64).div_ceil(self.chunk[d]);
            lo..hi
        };
        let mut cells = Vec::new();
        for z in range(2) {
            for y in range(1) {
                for x in range(0) {
                    cells.push([x, y, z]);
                }
            }
        }
        cells
    }

    /// The key name of grid cell `g`: `x0-x1_y0-y1_z0-z1` in absolute coordinates.
    pub fn chunk_name(&self, g: [u64; 3]) -> String {
        let b = self.chunk_box(g);
        format!(
            "{}-{}_{}-{}_{}-{}",
            b.start[0], b.stop[0], b.start[1], b.stop[1], b.start[2], b.stop[2]
        )
    }
}

/// A box-shaped copy between two Fortran-ordered `[x, y, z, c]` byte buffers: `region`
/// (absolute coordinates) is copied from a buffer holding `src_box` to one holding `dst_box`.
#[derive(Debug, Clone, Copy)]
pub struct BoxCopy {
    src_shape: [usize; 3],
    src_at: [usize; 3],
    dst_shape: [usize; 3],
    dst_at: [usize; 3],
    extent: [usize; 3],
    channels: usize,
    itemsize: usize,
}

impl BoxCopy {
    /// Plans the copy of `region`, which must lie inside both `src_box` and `dst_box`.
    pub fn new(
        src_box: &Bbox,
        dst_box: &Bbox,
        region: &Bbox,
        channels: usize,
        itemsize: usize,
    ) -> Self {
        assert!(src_box.contains(region) && dst_box.contains(region));
        BoxCopy {
            src_shape: src_box.ushape(),
            src_at: region.offset_from(src_box),
            dst_shape: dst_box.ushape(),
            dst_at: region.offset_from(dst_box),
            extent: region.ushape(),
            channels,
            itemsize,
        }
    }

    /// Bytes a buffer of `shape` must hold.
    fn buffer_len(&self, shape: [usize; 3]) -> usize {
        shape.iter().product::<usize>() * self.channels * self.itemsize
    }

    /// Length in bytes of the source and destination buffers this copy expects.
    pub fn src_len(&self) -> usize {
        self.buffer_len(self.src_shape)
    }

    /// Length in bytes of the destination buffer this copy expects.
    pub fn dst_len(&self) -> usize {
        self.buffer_len(self.dst_shape)
    }

    /// Calls `f(src_offset, dst_offset, len)` for each contiguous run, merging the y and z
    /// loops into the run when both buffers are contiguous along them.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [ex, ey, ez] = self.extent;
        if ex == 0 || ey == 0 || ez == 0 {
            return;
        }
        let (s, d) = (self.src_shape, self.dst_shape);
        let rows_whole = ex == s[0] && ex == d[0];
        let planes_whole = rows_whole && ey == s[1] && ey == d[1];
        let (run_y, run_z) = match (rows_whole, planes_whole) {
            (_, true) => (ey, ez),
            (true, false) => (ey, 1),
            _ => (1, 1),
        };
        let len = ex * run_y * run_z * self.itemsize;
        let offset = |shape: [usize; 3], at: [usize; 3], y: usize, z: usize, c: usize| {
            (((c * shape[2] + at[2] + z) * shape[1] + at[1] + y) * shape[0] + at[0]) * self.itemsize
        };
        for c in 0..self.channels {
            for z in (0..ez).step_by(run_z) {
                for y in (0..ey).step_by(run_y) {
                    f(
                        offset(s, self.src_at, y, z, c),
                        offset(d, self.dst_at, y, z, c),
                        len,
                    );
                }
            }
        }
    }

    /// How many leading bytes of the source the copy reads: the end of its last run.
    pub fn src_end(&self) -> usize {
        let [ex, ey, ez] = self.extent;
        if ex == 0 || ey == 0 || ez == 0 || self.channels == 0 {
            return 0;
        }
        let [sx, sy, sz] = self.src_at;
        let s = self.src_shape;
        let last = ((self.channels - 1) * s[2] + sz + ez - 1) * s[1] + sy + ey - 1;
        (last * s[0] + sx + ex) * self.itemsize
    }

    /// Where the region's row `(0.., y, z)` of channel `c` (region coordinates) lies in the
    /// destination: its byte offset and length.
    pub fn dst_row(&self, c: usize, y: usize, z: usize) -> (usize, usize) {
        assert!(c < self.channels && y < self.extent[1] && z < self.extent[2]);
        let [dx, dy, dz] = self.dst_at;
        let d = self.dst_shape;
        let at = ((c * d[2] + dz + z) * d[1] + dy + y) * d[0] + dx;
        (at * self.itemsize, self.extent[0] * self.itemsize)
    }

    /// Copies between two slices.
    pub fn copy(&self, src: &[u8], dst: &mut [u8]) {
        assert!(src.len() >= self.src_len() && dst.len() >= self.dst_len());
        self.for_each_run(|s, d, n| dst[d..d + n].copy_from_slice(&src[s..s + n]));
    }

    /// Copies into memory that other threads write too, each into its own voxels.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `self.dst_len()` bytes for the whole call, and no
    /// other thread may read or write the bytes of `dst` that this copy's region covers
    /// while it runs.
    pub unsafe fn copy_to_ptr(&self, src: &[u8], dst: *mut u8) {
        assert!(src.len() >= self.src_len());
        self.for_each_run(|s, d, n| {
            // SAFETY: every run ends inside `dst_len()` because the region lies inside the
            // destination box (asserted in `new`); the caller guarantees validity and
            // exclusive access to these bytes; `src` and `dst` never overlap because `src`
            // is a shared slice the caller owns separately.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(s), dst.add(d), n) }
        });
    }

    /// Sets the destination region to zero.
    ///
    /// # Safety
    /// As for [`BoxCopy::copy_to_ptr`].
    pub unsafe fn zero_ptr(&self, dst: *mut u8) {
        self.for_each_run(|_, d, n| {
            // SAFETY: the run lies inside the destination (see `copy_to_ptr`), and the caller
            // guarantees validity and exclusive access.
            unsafe { std::ptr::write_bytes(dst.add(d), 0, n) }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(offset: [i64; 3], size: [u64; 3], chunk: [u64; 3]) -> ChunkGrid {
        ChunkGrid {
            voxel_offset: offset,
            size,
            chunk,
        }
    }

    #[test]
    fn reference_worked_example_names() {
        // precomputed-format.md §2: offset [20,30,40], size [1000,2000,3000], chunk 64.
        let g = grid([20, 30, 40], [1000, 2000, 3000], [64, 64, 64]);
        assert_eq!(g.chunk_name([0, 0, 0]), "20-84_30-94_40-104");
        assert_eq!(g.grid_shape(), [16, 32, 47]);
        assert!(g.chunk_name([15, 0, 0]).starts_with("980-1020_"));
        assert_eq!(g.chunk_name([15, 31, 46]), "980-1020_2014-2030_2984-3040");
    }

    #[test]
    fn negative_offsets_name_with_minus_signs() {
        let g = grid([-64, -10, 0], [100, 20, 64], [64, 64, 64]);
        assert_eq!(g.chunk_name([0, 0, 0]), "-64-0_-10-10_0-64");
        assert_eq!(g.chunk_name([1, 0, 0]), "0-36_-10-10_0-64");
    }

    #[test]
    fn chunks_touching_clips_to_bounds_and_offset_grid() {
        let g = grid([5, 0, 0], [100, 10, 10], [32, 10, 10]);
        // Grid cells start at 5, 37, 69, 101.
        let b = Bbox::new([36, 0, 0], [38, 1, 1]).unwrap();
        assert_eq!(g.chunks_touching(&b), vec![[0, 0, 0], [1, 0, 0]]);
        let outside = Bbox::new([-50, 0, 0], [5, 10, 10]).unwrap();
        assert!(g.chunks_touching(&outside).is_empty());
        let crossing = Bbox::new([100, -5, -5], [200, 50, 50]).unwrap();
        assert_eq!(g.chunks_touching(&crossing), vec![[2, 0, 0], [3, 0, 0]]);
        assert_eq!(
            g.chunk_box([3, 0, 0]),
            Bbox::new([101, 0, 0], [105, 10, 10]).unwrap()
        );
    }

    #[test]
    fn box_arithmetic() {
        let a = Bbox::new([0, 0, 0], [10, 10, 10]).unwrap();
        let b = Bbox::new([5, -5, 2], [15, 5, 3]).unwrap();
        assert_eq!(
            a.intersect(&b),
            Some(Bbox::new([5, 0, 2], [10, 5, 3]).unwrap())
        );
        assert_eq!(
            a.intersect(&Bbox::new([10, 0, 0], [11, 1, 1]).unwrap()),
            None
        );
        assert!(a.contains(&Bbox::new([0, 0, 0], [10, 10, 10]).unwrap()));
        assert!(!a.contains(&b));
        assert!(Bbox::new([1, 0, 0], [0, 0, 0]).is_err());
        assert_eq!(b.num_voxels(), Some(100));
    }

    /// A reference implementation: element by element.
    fn naive_copy(src: &Bbox, dst: &Bbox, region: &Bbox, c: usize, s: &[u16], d: &mut [u16]) {
        let idx = |b: &Bbox, p: [i64; 3], ch: usize| {
            let sh = b.shape().map(|n| n as usize);
            let o: [usize; 3] = std::array::from_fn(|k| (p[k] - b.start[k]) as usize);
            ((ch * sh[2] + o[2]) * sh[1] + o[1]) * sh[0] + o[0]
        };
        for ch in 0..c {
            for z in region.start[2]..region.stop[2] {
                for y in region.start[1]..region.stop[1] {
                    for x in region.start[0]..region.stop[0] {
                        d[idx(dst, [x, y, z], ch)] = s[idx(src, [x, y, z], ch)];
                    }
                }
            }
        }
    }

    #[test]
    fn src_end_is_where_the_last_run_ends() {
        let src = Bbox::new([0, 0, 0], [6, 5, 4]).unwrap();
        for (start, stop) in [
            ([0, 0, 0], [6, 5, 4]),
            ([1, 2, 0], [3, 3, 2]),
            ([0, 0, 3], [6, 5, 4]),
            ([5, 4, 0], [6, 5, 1]),
            ([2, 0, 1], [4, 5, 3]),
        ] {
            let region = Bbox::new(start, stop).unwrap();
            for channels in [1, 3] {
                let copy = BoxCopy::new(&src, &region, &region, channels, 2);
                let mut end = 0;
                copy.for_each_run(|s, _, n| end = end.max(s + n));
                assert_eq!(copy.src_end(), end, "{region:?} × {channels}");
            }
        }
    }

    #[test]
    fn box_copy_matches_elementwise_copy() {
        let src = Bbox::new([0, 0, 0], [6, 5, 4]).unwrap();
        let cases = [
            (
                Bbox::new([-2, 1, 0], [5, 7, 3]).unwrap(),
                Bbox::new([0, 1, 0], [5, 5, 3]).unwrap(),
            ),
            (
                Bbox::new([0, 0, 0], [6, 5, 4]).unwrap(),
                Bbox::new([0, 0, 0], [6, 5, 4]).unwrap(),
            ),
            (
                Bbox::new([0, 0, 1], [6, 5, 9]).unwrap(),
                Bbox::new([0, 0, 1], [6, 5, 3]).unwrap(),
            ),
            (
                Bbox::new([0, 2, 0], [6, 4, 4]).unwrap(),
                Bbox::new([0, 2, 1], [6, 4, 3]).unwrap(),
            ),
        ];
        for (dst, region) in cases {
            for channels in [1, 3] {
                let n = src.num_voxels().unwrap() * channels;
                let s: Vec<u16> = (0..n as u16).collect();
                let mut expected = vec![0u16; dst.num_voxels().unwrap() * channels];
                naive_copy(&src, &dst, &region, channels, &s, &mut expected);
                let mut got = vec![0u16; expected.len()];
                BoxCopy::new(&src, &dst, &region, channels, 2)
                    .copy(bytemuck::cast_slice(&s), bytemuck::cast_slice_mut(&mut got));
                assert_eq!(
                    got, expected,
                    "dst {dst:?} region {region:?} channels {channels}"
                );
            }
        }
    }
}
