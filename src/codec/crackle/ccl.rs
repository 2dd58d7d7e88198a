//! 4-connected components of one slice, numbered from 0 in the order their first pixel
//! appears (x fastest): the numbering the format's label section and per-slice CRCs refer
//! to. The numbering depends only on the components, not on how they are found: the
//! encoder labels pixels (two raster passes with union-find over a byte per pixel, as the
//! package does), the decoder labels runs of pixels joined left to right, far fewer.

use super::cracks::{LEFT, UP};
use crate::codec::union_find::UnionFind;

/// Reused union-find buffers.
#[derive(Default)]
pub(super) struct Scratch {
    sets: UnionFind,
    renumber: Vec<u32>,
}

/// Labels each pixel of an `sx × sy` slice (`vcg.len() == out.len() == sx * sy`) with its
/// component and returns how many there are.
pub(super) fn label(vcg: &[u8], sx: usize, out: &mut [u32], s: &mut Scratch) -> usize {
    let sets = &mut s.sets;
    sets.clear();
    // Element 0 is unused, so that a provisional label is never 0.
    sets.push();
    if sx == 0 || out.is_empty() {
        return 0;
    }
    let (first, rest) = out.split_at_mut(sx);
    let mut current = sets.push();
    for (x, o) in first.iter_mut().enumerate() {
        if x > 0 && vcg[x] & LEFT == 0 {
            current = sets.push();
        }
        *o = current;
    }
    let mut above: &[u32] = first;
    for (row, (labels, graph)) in rest
        .chunks_exact_mut(sx)
        .zip(vcg[sx..].chunks_exact(sx))
        .enumerate()
    {
        let graph_above = &vcg[row * sx..(row + 1) * sx];
        for x in 0..sx {
            let g = graph[x];
            labels[x] = if x > 0 && g & LEFT != 0 {
                let left = labels[x - 1];
                // Joined left and up, with the pixel above not joined to its left: the two
                // runs meet here for the first time.
                if g & UP != 0 && graph_above[x] & LEFT == 0 {
                    sets.union(left, above[x]);
                }
                left
            } else if g & UP != 0 {
                above[x]
            } else {
                sets.push()
            };
        }
        above = labels;
    }
    // Number the components by their smallest provisional label, which is the order of
    // their first pixels.
    let count = sets.number(1, 0, &mut s.renumber);
    for o in out.iter_mut() {
        *o = s.renumber[*o as usize];
    }
    count as usize
}

/// A run of pixels of one row joined left to right, with its component.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub x0: u32,
    pub x1: u32,
    pub id: u32,
}

/// A slice's runs, row by row, and the union-find buffers that number them.
#[derive(Default)]
pub(super) struct Runs {
    pub runs: Vec<Run>,
    /// Where each row's runs start, and one past the last row's.
    pub rows: Vec<usize>,
    sets: UnionFind,
    renumber: Vec<u32>,
}

impl Runs {
    /// The runs of row `y`.
    pub fn row(&self, y: usize) -> &[Run] {
        &self.runs[self.rows[y]..self.rows[y + 1]]
    }

    /// The component of pixel `(x, y)`.
    pub fn id_at(&self, x: usize, y: usize) -> Option<u32> {
        let row = self.runs.get(*self.rows.get(y)?..*self.rows.get(y + 1)?)?;
        let i = row.partition_point(|r| (r.x1 as usize) <= x);
        row.get(i).filter(|r| r.x0 as usize <= x).map(|r| r.id)
    }
}

/// The first `x` in `from..sx` whose bit in `row` is clear, or `sx`.
fn next_clear(row: &[u64], from: usize, sx: usize) -> usize {
    let mut x = from;
    while x < sx {
        let w = !row[x / 64] >> (x % 64);
        if w != 0 {
            return (x + w.trailing_zeros() as usize).min(sx);
        }
        x = (x / 64 + 1) * 64;
    }
    sx
}

/// Whether any bit of `row` in `lo..hi` is set.
fn any_set(row: &[u64], lo: usize, hi: usize) -> bool {
    let mut x = lo;
    while x < hi {
        let off = x % 64;
        let n = (64 - off).min(hi - x);
        let mut w = row[x / 64] >> off;
        if n < 64 {
            w &= (1u64 << n) - 1;
        }
        if w != 0 {
            return true;
        }
        x += n;
    }
    false
}

/// Splits each row of `g` into runs of pixels joined to their left, joins runs whose
/// pixels join upwards, and numbers the components by their first pixel (what
/// [`label`] gives, found per run instead of per pixel). Returns how many there are.
pub(super) fn label_runs(g: &super::cracks::Graph, r: &mut Runs) -> usize {
    let (sx, sy) = (g.sx, g.sy);
    r.runs.clear();
    r.rows.clear();
    let sets = &mut r.sets;
    sets.clear();
    sets.push();
    for y in 0..sy {
        let start = r.runs.len();
        r.rows.push(start);
        let left = g.row(&g.left, y);
        let mut x = 0;
        while x < sx {
            let x1 = next_clear(left, x + 1, sx);
            r.runs.push(Run {
                x0: x as u32,
                x1: x1 as u32,
                id: 0,
            });
            x = x1;
        }
        // A run joined to a run above takes its provisional label (and unions any further
        // ones); only a run joined to none above starts a label, so labels still start in
        // the order of the components' first pixels.
        let up = (y > 0).then(|| g.row(&g.up, y));
        let (mut a, above_end) = (if y > 0 { r.rows[y - 1] } else { start }, start);
        for i in start..r.runs.len() {
            let run = r.runs[i];
            let mut id = 0;
            if let Some(up) = up {
                while a < above_end && r.runs[a].x1 <= run.x0 {
                    a += 1;
                }
                let mut b = a;
                while b < above_end && r.runs[b].x0 < run.x1 {
                    let above = r.runs[b];
                    let (lo, hi) = (run.x0.max(above.x0), run.x1.min(above.x1));
                    if any_set(up, lo as usize, hi as usize) {
                        if id == 0 {
                            id = above.id;
                        } else {
                            sets.union(id, above.id);
                        }
                    }
                    b += 1;
                }
            }
            r.runs[i].id = if id == 0 { sets.push() } else { id };
        }
    }
    r.rows.push(r.runs.len());
    let count = sets.number(1, 0, &mut r.renumber);
    for run in r.runs.iter_mut() {
        run.id = r.renumber[run.id as usize];
    }
    count as usize
}
