//! Connected components of the non-boundary voxels, numbered as the package numbers them:
//! in the order a raster scan (x fastest) first meets each component. That order is what
//! ties the stream's ids to voxels, so encoder and decoder share this code.

/// A reusable 4-connected labeller of one z slice.
#[derive(Debug, Default)]
pub(super) struct Labeler {
    parent: Vec<u32>,
    renumber: Vec<u32>,
}

impl Labeler {
    /// Labels the voxels of one `sx × sy` slice whose `boundary` byte is 0, 4-connected:
    /// `out[i]` is 0 on boundary voxels and the component number (from 1, in order of first
    /// appearance) elsewhere. Returns the number of components.
    pub(super) fn label(&mut self, boundary: &[u8], sx: usize, out: &mut [u32]) -> u32 {
        debug_assert_eq!(boundary.len(), out.len());
        self.parent.clear();
        self.parent.push(0);
        let mut next = 0u32;
        // Provisional labels, merged in a union-find where a voxel joins its left and upper
        // neighbours' components. The up-left neighbour being foreground means left and up
        // are already joined through it, which skips most unions.
        let n = boundary.len().min(out.len());
        for row in (0..n).step_by(sx.max(1)) {
            for x in 0..sx.min(n - row) {
                let i = row + x;
                if boundary[i] != 0 {
                    out[i] = 0;
                    continue;
                }
                let left = x > 0 && boundary[i - 1] == 0;
                let up = row > 0 && boundary[i - sx] == 0;
                out[i] = if left {
                    if up && boundary[i - sx - 1] != 0 {
                        self.union(out[i - 1], out[i - sx]);
                    }
                    out[i - 1]
                } else if up {
                    out[i - sx]
                } else {
                    next += 1;
                    self.parent.push(next);
                    next
                };
            }
        }
        // Final numbers in order of each component's smallest provisional label, which is
        // its first voxel in raster order.
        self.renumber.clear();
        self.renumber.resize(next as usize + 1, 0);
        let mut count = 0u32;
        for i in 1..=next {
            let root = self.find(i);
            if self.renumber[root as usize] == 0 {
                count += 1;
                self.renumber[root as usize] = count;
            }
            self.renumber[i as usize] = self.renumber[root as usize];
        }
        if count < next {
            for v in out.iter_mut() {
                *v = self.renumber[*v as usize];
            }
        }
        count
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let up = self.parent[self.parent[i as usize] as usize];
            self.parent[i as usize] = up;
            i = up;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra as usize] = rb;
        }
    }
}

/// Joins the 2-D components of consecutive slices into 3-D (6-connected) components: one
/// entry per 2-D component, numbered across slices in raster order.
#[derive(Debug, Default)]
pub(super) struct Slices3d {
    parent: Vec<u32>,
}

impl Slices3d {
    /// Adds `count` new 2-D components; `None` when the chunk has more than `u32::MAX`.
    pub(super) fn add(&mut self, count: u32) -> Option<()> {
        let start = u32::try_from(self.parent.len()).ok()?;
        let end = start.checked_add(count)?;
        self.parent.extend(start..end);
        Some(())
    }

    /// Joins the components of `below` (slice z-1, its first component numbered
    /// `below_base`) and `here` (slice z, from `here_base`) wherever a voxel is foreground
    /// in both.
    pub(super) fn join(&mut self, below: &[u32], below_base: u32, here: &[u32], here_base: u32) {
        for (&b, &h) in below.iter().zip(here) {
            if b != 0 && h != 0 {
                let (rb, rh) = (self.find(below_base + b - 1), self.find(here_base + h - 1));
                if rb != rh {
                    self.parent[rb as usize] = rh;
                }
            }
        }
    }

    /// The 3-D component (from 0) of each 2-D component, numbered in order of first
    /// appearance, and the number of 3-D components. A 3-D component's first voxel is the
    /// first voxel of its lowest-numbered 2-D component.
    pub(super) fn numbering(mut self) -> (Vec<u32>, u32) {
        let n = self.parent.len();
        let mut number = vec![u32::MAX; n];
        let mut count = 0u32;
        for i in 0..n {
            let root = self.find(i as u32) as usize;
            if number[root] == u32::MAX {
                number[root] = count;
                count += 1;
            }
            number[i] = number[root];
        }
        (number, count)
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let up = self.parent[self.parent[i as usize] as usize];
            self.parent[i as usize] = up;
            i = up;
        }
        i
    }
}

/// Eight boundary bytes of 1.
const ONES: u64 = 0x0101_0101_0101_0101;

/// The first index from `x` on where `row`'s byte (0 or 1) differs from the bytes of
/// `same` (0 or [`ONES`]), or `row.len()`; reads eight bytes at a time.
fn skip(row: &[u8], mut x: usize, same: u64) -> usize {
    while let Some(word) = row.get(x..x + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(word);
        let diff = u64::from_le_bytes(a) ^ same;
        if diff != 0 {
            return x + diff.trailing_zeros() as usize / 8;
        }
        x += 8;
    }
    let b = (same & 1) as u8;
    while x < row.len() && row[x] == b {
        x += 1;
    }
    x
}

/// One z slice's non-boundary voxels as runs along x, labelled 4-connected: the decoder's
/// labeller, whose work grows with the runs rather than the voxels. Numbers components
/// as [`Labeler`] does: a component's first run in raster order has no run above it in the
/// component, so it takes the component's smallest provisional label.
#[derive(Debug, Default)]
pub(super) struct Runs {
    /// Each run's `[start, end)` along x and its component (from 1, in order of first
    /// appearance once [`Runs::label`] returns).
    pub(super) runs: Vec<(u32, u32, u32)>,
    /// The runs of row `y` are `runs[rows[y]..rows[y + 1]]`.
    pub(super) rows: Vec<usize>,
    parent: Vec<u32>,
    renumber: Vec<u32>,
}

impl Runs {
    /// Finds and labels the runs of an `sx`-wide slice's `boundary` bytes (0: not a
    /// boundary voxel); returns the number of components.
    pub(super) fn label(&mut self, boundary: &[u8], sx: usize) -> u32 {
        self.runs.clear();
        self.rows.clear();
        self.parent.clear();
        self.parent.push(0);
        let mut next = 0u32;
        let mut above = 0..0;
        for row in boundary.chunks_exact(sx) {
            let here = self.runs.len();
            self.rows.push(here);
            let mut p = above.start;
            let mut x = 0;
            while x < sx {
                x = skip(row, x, ONES);
                if x == sx {
                    break;
                }
                let start = x;
                x = skip(row, x, 0);
                let (start, end) = (start as u32, x as u32);
                // The runs above that overlap this one (4-connected: sharing an x).
                while p < above.end && self.runs[p].1 <= start {
                    p += 1;
                }
                let mut label = 0;
                let mut q = p;
                while q < above.end && self.runs[q].0 < end {
                    let l = self.runs[q].2;
                    if label == 0 {
                        label = l;
                    } else {
                        self.union(label, l);
                    }
                    q += 1;
                }
                // The last run above that overlaps may overlap the next run too.
                if q > p {
                    p = q - 1;
                }
                if label == 0 {
                    next += 1;
                    self.parent.push(next);
                    label = next;
                }
                self.runs.push((start, end, label));
            }
            above = here..self.runs.len();
        }
        self.rows.push(self.runs.len());
        self.renumber.clear();
        self.renumber.resize(next as usize + 1, 0);
        let mut count = 0u32;
        for i in 1..=next {
            let root = self.find(i);
            if self.renumber[root as usize] == 0 {
                count += 1;
                self.renumber[root as usize] = count;
            }
            self.renumber[i as usize] = self.renumber[root as usize];
        }
        for run in &mut self.runs {
            run.2 = self.renumber[run.2 as usize];
        }
        count
    }

    /// The runs of row `y`.
    pub(super) fn row(&self, y: usize) -> &[(u32, u32, u32)] {
        &self.runs[self.rows[y]..self.rows[y + 1]]
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let up = self.parent[self.parent[i as usize] as usize];
            self.parent[i as usize] = up;
            i = up;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra as usize] = rb;
        }
    }
}

impl Slices3d {
    /// [`Slices3d::join`] for slices given as runs: joins the components of overlapping
    /// runs in the same row of consecutive slices.
    pub(super) fn join_runs(&mut self, below: &Runs, below_base: u32, here: &Runs, here_base: u32) {
        let rows = below.rows.len().min(here.rows.len()).saturating_sub(1);
        for y in 0..rows {
            let (b, h) = (below.row(y), here.row(y));
            let (mut i, mut j) = (0, 0);
            while i < b.len() && j < h.len() {
                if b[i].0 < h[j].1 && h[j].0 < b[i].1 {
                    let (rb, rh) = (
                        self.find(below_base + b[i].2 - 1),
                        self.find(here_base + h[j].2 - 1),
                    );
                    if rb != rh {
                        self.parent[rb as usize] = rh;
                    }
                }
                if b[i].1 <= h[j].1 {
                    i += 1;
                } else {
                    j += 1;
                }
            }
        }
    }
}
