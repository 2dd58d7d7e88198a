//! 4-connected components of one slice's connectivity graph, numbered from 0 in the order
//! their first pixel appears (x fastest): the numbering the format's label section and
//! per-slice CRCs refer to. Two raster passes with union-find, as the package does (the
//! numbering depends only on the components, not on how they are found).

use super::cracks::{LEFT, UP};

/// Reused union-find buffers.
#[derive(Default)]
pub(super) struct Scratch {
    parent: Vec<u32>,
    renumber: Vec<u32>,
}

/// A new provisional label, its own root.
fn new(parent: &mut Vec<u32>) -> u32 {
    let id = parent.len() as u32;
    parent.push(id);
    id
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let grand = parent[parent[i as usize] as usize];
        parent[i as usize] = grand;
        i = grand;
    }
    i
}

/// Labels each pixel of an `sx × sy` slice (`vcg.len() == out.len() == sx * sy`) with its
/// component and returns how many there are.
pub(super) fn label(vcg: &[u8], sx: usize, out: &mut [u32], s: &mut Scratch) -> usize {
    let parent = &mut s.parent;
    parent.clear();
    parent.push(0);
    if sx == 0 || out.is_empty() {
        return 0;
    }
    let (first, rest) = out.split_at_mut(sx);
    let mut current = new(parent);
    for (x, o) in first.iter_mut().enumerate() {
        if x > 0 && vcg[x] & LEFT == 0 {
            current = new(parent);
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
                    let (a, b) = (find(parent, left), find(parent, above[x]));
                    if a != b {
                        parent[a as usize] = b;
                    }
                }
                left
            } else if g & UP != 0 {
                above[x]
            } else {
                new(parent)
            };
        }
        above = labels;
    }
    // Number the components by their smallest provisional label, which is the order of
    // their first pixels.
    let n = parent.len();
    let renumber = &mut s.renumber;
    renumber.clear();
    renumber.resize(n, 0);
    let mut next = 0u32;
    for i in 1..n as u32 {
        let root = find(parent, i) as usize;
        if renumber[root] == 0 {
            next += 1;
            renumber[root] = next;
        }
        renumber[i as usize] = renumber[root];
    }
    for o in out.iter_mut() {
        *o = renumber[*o as usize] - 1;
    }
    next as usize
}
