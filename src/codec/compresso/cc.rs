//! Connected components of the non-boundary voxels, numbered as the package numbers them:
//! in the order a raster scan (x fastest) first meets each component. That order is what
//! ties the stream's ids to voxels, so encoder and decoder share this code. Provisional
//! labels merge in the codecs' shared [`UnionFind`], whose numbering by smallest member is
//! the order of first appearance, whatever order the merges came in.

use crate::codec::union_find::UnionFind;

/// A reusable 4-connected labeller of one z slice.
#[derive(Debug, Default)]
pub(super) struct Labeler {
    sets: UnionFind,
    renumber: Vec<u32>,
}

impl Labeler {
    /// Labels the voxels of one `sx × sy` slice whose `boundary` byte is 0, 4-connected:
    /// `out[i]` is 0 on boundary voxels and the component number (from 1, in order of first
    /// appearance) elsewhere. Returns the number of components.
    pub(super) fn label(&mut self, boundary: &[u8], sx: usize, out: &mut [u32]) -> u32 {
        debug_assert_eq!(boundary.len(), out.len());
        self.sets.clear();
        // Element 0 is the boundary.
        self.sets.push();
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
                        self.sets.union(out[i - 1], out[i - sx]);
                    }
                    out[i - 1]
                } else if up {
                    out[i - sx]
                } else {
                    self.sets.push()
                };
            }
        }
        // Final numbers in order of each component's smallest provisional label, which is
        // its first voxel in raster order.
        let next = self.sets.len() as u32 - 1;
        let count = self.sets.number(1, 1, &mut self.renumber);
        if count < next {
            for v in out.iter_mut() {
                *v = self.renumber[*v as usize];
            }
        }
        count
    }
}

/// Joins the 2-D components of consecutive slices into 3-D (6-connected) components: one
/// entry per 2-D component, numbered across slices in raster order.
#[derive(Debug, Default)]
pub(super) struct Slices3d {
    sets: UnionFind,
}

impl Slices3d {
    /// Adds `count` new 2-D components; `None` when the chunk has more than `u32::MAX`.
    pub(super) fn add(&mut self, count: u32) -> Option<()> {
        self.sets.extend(count)
    }

    /// Joins the components of `below` (slice z-1, its first component numbered
    /// `below_base`) and `here` (slice z, from `here_base`) wherever a voxel is foreground
    /// in both.
    pub(super) fn join(&mut self, below: &[u32], below_base: u32, here: &[u32], here_base: u32) {
        for (&b, &h) in below.iter().zip(here) {
            if b != 0 && h != 0 {
                self.sets.union(below_base + b - 1, here_base + h - 1);
            }
        }
    }

    /// The 3-D component (from 0) of each 2-D component, numbered in order of first
    /// appearance, and the number of 3-D components. A 3-D component's first voxel is the
    /// first voxel of its lowest-numbered 2-D component.
    pub(super) fn numbering(mut self) -> (Vec<u32>, u32) {
        let mut number = Vec::new();
        let count = self.sets.number(0, 0, &mut number);
        (number, count)
    }
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
    sets: UnionFind,
    renumber: Vec<u32>,
    /// The number of components [`Runs::label`] found.
    count: u32,
}

impl Runs {
    /// Finds and labels the runs of an `sx`-wide slice's boundary bits (1: a boundary
    /// voxel; row `y` is `bits[y · words..][..words]`, bit `x % 64` of word `x / 64`, the
    /// bits past `sx` set); returns the number of components.
    pub(super) fn label(&mut self, bits: &[u64], words: usize, sx: usize) -> u32 {
        if words == 1 {
            return self.label_narrow(bits);
        }
        self.rows.clear();
        let mut row_runs = RowRuns {
            runs: std::mem::take(&mut self.runs),
            sets: std::mem::take(&mut self.sets),
            p: 0,
            above_end: 0,
        };
        row_runs.runs.clear();
        row_runs.sets.clear();
        row_runs.sets.push();
        // At most one run per two voxels, plus one, a row: reserved once, so that adding a
        // run never moves the runs.
        row_runs
            .runs
            .reserve((sx / 2 + 1) * (bits.len() / words.max(1)));
        for row in bits.chunks_exact(words.max(1)) {
            let here = row_runs.runs.len();
            self.rows.push(here);
            // Runs start where a voxel is not a boundary voxel and its left neighbour is
            // (or it starts the row), and end where it is the other way round: both read
            // off a word of bits at a time, the lowest first, alternating. A word of
            // boundary bits past the row ends a run that reaches its end (where `sx` fills
            // the last word: the bits past `sx` are boundary bits otherwise).
            let mut open: Option<u32> = None;
            let mut carry = 0u64;
            for w in 0..=row.len() {
                let inside = row.get(w).map_or(0, |&word| !word);
                let left = (inside << 1) | carry;
                carry = inside >> 63;
                let (mut starts, mut ends) = (inside & !left, !inside & left);
                let base = 64 * w as u32;
                loop {
                    let start = match open {
                        Some(start) => start,
                        None if starts != 0 => {
                            let start = base + starts.trailing_zeros();
                            starts &= starts - 1;
                            start
                        }
                        None => break,
                    };
                    if ends == 0 {
                        open = Some(start);
                        break;
                    }
                    let end = base + ends.trailing_zeros();
                    ends &= ends - 1;
                    open = None;
                    row_runs.add(start, end);
                }
            }
            row_runs.p = here;
            row_runs.above_end = row_runs.runs.len();
        }
        let RowRuns { runs, mut sets, .. } = row_runs;
        self.runs = runs;
        self.rows.push(self.runs.len());
        let count = sets.number(1, 1, &mut self.renumber);
        self.sets = sets;
        for run in self.runs.iter_mut() {
            run.2 = self.renumber[run.2 as usize];
        }
        self.count = count;
        count
    }

    /// [`Runs::label`] for rows of one word (`sx <= 64`, CloudVolume's default chunks),
    /// a run at a time with bit masks: the runs above that a run overlaps are the one
    /// holding its first voxel with a non-boundary voxel above, and those that start
    /// further inside it (almost never any).
    fn label_narrow(&mut self, bits: &[u64]) -> u32 {
        let (runs, sets) = (&mut self.runs, &mut self.sets);
        runs.clear();
        self.rows.clear();
        sets.clear();
        sets.push();
        runs.reserve(33 * bits.len());
        // The non-boundary voxels of the row above, and the index of its first run.
        let (mut above, mut p) = (0u64, 0usize);
        for &word in bits {
            let here = runs.len();
            self.rows.push(here);
            let inside = !word;
            let (mut starts, mut ends) = (inside & !(inside << 1), !inside & (inside << 1));
            // Where the runs above start, each past the first overlapping a run here.
            let above_starts = above & !(above << 1);
            while starts != 0 {
                let start = starts.trailing_zeros();
                starts &= starts - 1;
                // A run whose end no bit marks reaches the end of the word.
                let end = match ends {
                    0 => 64,
                    _ => ends.trailing_zeros(),
                };
                ends &= ends.wrapping_sub(1);
                let span = (u64::MAX << start) & u64::MAX.checked_shl(end).map_or(u64::MAX, |m| !m);
                let overlap = span & above;
                let label = if overlap == 0 {
                    sets.push()
                } else {
                    let first = overlap.trailing_zeros();
                    while runs[p].1 <= first {
                        p += 1;
                    }
                    let label = runs[p].2;
                    let mut more = above_starts & span & ((u64::MAX << first) << 1);
                    while more != 0 {
                        more &= more - 1;
                        p += 1;
                        sets.union(label, runs[p].2);
                    }
                    label
                };
                runs.push((start, end, label));
            }
            above = inside;
            p = here;
        }
        self.rows.push(runs.len());
        let count = sets.number(1, 1, &mut self.renumber);
        for run in runs.iter_mut() {
            run.2 = self.renumber[run.2 as usize];
        }
        self.count = count;
        count
    }

    /// The number of components the last [`Runs::label`] found.
    pub(super) fn count(&self) -> u32 {
        self.count
    }

    /// The runs of row `y`.
    pub(super) fn row(&self, y: usize) -> &[(u32, u32, u32)] {
        &self.runs[self.rows[y]..self.rows[y + 1]]
    }
}

/// The runs of a slice as [`Runs::label`] adds them, row by row: `runs[p..above_end]` are
/// the runs of the row above not yet passed.
struct RowRuns {
    runs: Vec<(u32, u32, u32)>,
    sets: UnionFind,
    p: usize,
    above_end: usize,
}

impl RowRuns {
    /// Adds run `[start, end)` of the current row, joined to the runs above that overlap
    /// it (4-connected: sharing an x).
    #[inline(always)]
    fn add(&mut self, start: u32, end: u32) {
        let above = &self.runs[..self.above_end];
        let mut p = self.p;
        while above.get(p).is_some_and(|r| r.1 <= start) {
            p += 1;
        }
        let mut label = 0;
        let mut q = p;
        while let Some(r) = above.get(q).filter(|r| r.0 < end) {
            if label == 0 {
                label = r.2;
            } else if r.2 != label {
                self.sets.union(label, r.2);
            }
            q += 1;
        }
        // The last run above that overlaps may overlap the next run too.
        self.p = if q > p { q - 1 } else { p };
        if label == 0 {
            label = self.sets.push();
        }
        self.runs.push((start, end, label));
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
                    self.sets
                        .union(below_base + b[i].2 - 1, here_base + h[j].2 - 1);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs and voxels give the same components, numbered the same, on random slices of
    /// every density and width (across the labeller's 64-bit words).
    #[test]
    fn runs_label_as_voxels_do() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (mut labeler, mut runs) = (Labeler::default(), Runs::default());
        for round in 0..300 {
            let sx = 1 + (next() % 150) as usize;
            let sy = 1 + (next() % 40) as usize;
            let density = next() % 100;
            let boundary: Vec<u8> = (0..sx * sy)
                .map(|_| u8::from(next() % 100 < density))
                .collect();
            let mut voxels = vec![0u32; sx * sy];
            let count = labeler.label(&boundary, sx, &mut voxels);
            let words = sx.div_ceil(64);
            let mut bits = vec![0u64; words * sy];
            for (i, &b) in boundary.iter().enumerate() {
                let (x, y) = (i % sx, i / sx);
                bits[y * words + x / 64] |= u64::from(b) << (x % 64);
            }
            for y in 0..sy {
                if !sx.is_multiple_of(64) {
                    bits[y * words + words - 1] |= u64::MAX << (sx % 64);
                }
            }
            assert_eq!(runs.label(&bits, words, sx), count, "round {round}");
            let mut painted = vec![0u32; sx * sy];
            for y in 0..sy {
                for &(start, end, c) in runs.row(y) {
                    painted[y * sx + start as usize..y * sx + end as usize].fill(c);
                }
            }
            assert_eq!(painted, voxels, "round {round}: {sx}×{sy}");
        }
    }
}
