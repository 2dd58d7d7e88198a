//! The encoder of the package's default variant (`crackle.compress(labels)`: flat labels,
//! no markov model, no pins), which CloudVolume writes. Its output equals the package's
//! byte for byte, so it follows the package's choices exactly: the crack format by the count
//! of equal neighbours in the flattened chunk, the stored width by the largest label, and
//! chains traced in the package's order (right, left, down, up first; a chain starting with
//! a lone branch restarted from that branch's end; empty branches dropped).

use std::collections::BTreeMap;

use super::cracks::{LEFT, MOVE_DOWN, MOVE_LEFT, MOVE_RIGHT, MOVE_UP, UP};
use super::header::{byte_width, Header};
use super::{ccl, crc_of_ids, ChunkLayout};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Symbols of a traced chain, before they become moves.
const BRANCH: u8 = b'b';
const TERM: u8 = b't';
const SKIP: u8 = b's';

/// Vertex edge bits while tracing: to the right, left, down and up neighbour.
const E_RIGHT: u8 = 0b0001;
const E_LEFT: u8 = 0b0010;
const E_DOWN: u8 = 0b0100;
const E_UP: u8 = 0b1000;

/// Encodes one channel of unsigned labels (Fortran order, little-endian).
pub(super) fn encode(voxels: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>> {
    if layout.channels != 1 {
        return Err(Error::invalid(format!(
            "encoding \"crackle\" holds 1 channel, not {} (field 'num_channels')",
            layout.channels
        )));
    }
    if !matches!(
        layout.dtype,
        DType::U8 | DType::U16 | DType::U32 | DType::U64
    ) {
        return Err(Error::invalid(format!(
            "encoding \"crackle\" holds unsigned integer labels only, not {} (field 'data_type')",
            layout.dtype
        )));
    }
    let width = layout.dtype.itemsize();
    let labels: Vec<u64> = voxels
        .chunks_exact(width)
        .map(|b| b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
        .collect();
    let [sx, sy, sz] = layout.shape;
    let dims = [sx, sy, sz].map(|d| u32::try_from(d).ok());
    let [Some(sx32), Some(sy32), Some(sz32)] = dims else {
        return Err(Error::invalid(
            "crackle chunks are at most 2^32 - 1 voxels a side",
        ));
    };
    let n = labels.len();
    let sxy = sx * sy;
    let pairs = labels.windows(2).filter(|w| w[0] == w[1]).count();
    let permissible = pairs < n / 2;
    let stored_width = byte_width(labels.iter().copied().max().unwrap_or(0));
    if n == 0 {
        return Ok(Header::v1(width, stored_width, permissible, [sx32, sy32, sz32], 0).to_bytes());
    }

    let mut codes = Vec::with_capacity(sz);
    let mut crcs = Vec::with_capacity(sz);
    let mut counts = Vec::with_capacity(sz);
    let mut mapping: Vec<u64> = Vec::new();
    let mut vcg = vec![0u8; sxy];
    let mut ids = vec![0u32; sxy];
    let mut scratch = ccl::Scratch::default();
    for slice in labels.chunks_exact(sxy) {
        codes.push(crack_code(slice, sx, sy, permissible));
        for (i, (g, &v)) in vcg.iter_mut().zip(slice).enumerate() {
            let (x, y) = (i % sx, i / sx);
            *g = 0;
            if x > 0 && slice[i - 1] == v {
                *g |= LEFT;
            }
            if y > 0 && slice[i - sx] == v {
                *g |= UP;
            }
        }
        let count = ccl::label(&vcg, sx, &mut ids, &mut scratch);
        let first = mapping.len();
        for (&id, &v) in ids.iter().zip(slice) {
            if id as usize == mapping.len() - first {
                mapping.push(v);
            }
        }
        counts.push(count as u64);
        crcs.push(crc_of_ids(&ids));
    }

    // The flat label section.
    let mut uniq = mapping.clone();
    uniq.sort_unstable();
    uniq.dedup();
    let key_width = byte_width(uniq.len() as u64);
    let component_width = byte_width(u64::from(sx32.wrapping_mul(sy32)));
    let mut section = Vec::with_capacity(
        8 + stored_width * uniq.len() + component_width * sz + key_width * mapping.len(),
    );
    section.extend_from_slice(&(uniq.len() as u64).to_le_bytes());
    for &u in &uniq {
        section.extend_from_slice(&u.to_le_bytes()[..stored_width]);
    }
    for &c in &counts {
        section.extend_from_slice(&c.to_le_bytes()[..component_width]);
    }
    for v in &mapping {
        let key = uniq.binary_search(v).unwrap_or(0) as u64;
        section.extend_from_slice(&key.to_le_bytes()[..key_width]);
    }

    let header = Header::v1(
        width,
        stored_width,
        permissible,
        [sx32, sy32, sz32],
        section.len() as u64,
    );
    let code_bytes: usize = codes.iter().map(Vec::len).sum();
    let mut out = header.to_bytes();
    out.reserve(4 * (sz + 1) + section.len() + code_bytes + 4 * (sz + 1));
    let index_start = out.len();
    for c in &codes {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
    }
    let index_crc = crc32c::crc32c(&out[index_start..]);
    out.extend_from_slice(&index_crc.to_le_bytes());
    out.extend_from_slice(&section);
    for c in &codes {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32c::crc32c(&section).to_le_bytes());
    for c in crcs {
        out.extend_from_slice(&c.to_le_bytes());
    }
    Ok(out)
}

/// The crack code of one `sx × sy` slice, as the package traces and packs it.
fn crack_code(labels: &[u64], sx: usize, sy: usize, permissible: bool) -> Vec<u8> {
    let sxe = sx + 1;
    let mut adj = vec![0u8; sxe * (sy + 1)];
    let mut any = false;
    for y in 0..sy {
        for x in 0..sx {
            let v = labels[x + sx * y];
            // The crack left of pixel (x, y), between corners (x, y) and (x, y + 1).
            if x > 0 && (labels[x - 1 + sx * y] == v) == permissible {
                adj[x + sxe * y] |= E_DOWN;
                adj[x + sxe * (y + 1)] |= E_UP;
                any = true;
            }
            // The crack above it, between corners (x, y) and (x + 1, y).
            if y > 0 && (labels[x + sx * (y - 1)] == v) == permissible {
                adj[x + sxe * y] |= E_RIGHT;
                adj[x + 1 + sxe * y] |= E_LEFT;
                any = true;
            }
        }
    }
    let mut chains: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    if any {
        let steps: [(isize, u8); 4] = [
            (1, b'r'),
            (-1, b'l'),
            (sxe as isize, b'd'),
            (-(sxe as isize), b'u'),
        ];
        let mut revisit: Vec<usize> = Vec::new();
        let mut start = 0;
        while let Some(found) = adj[start..].iter().position(|&a| a != 0) {
            start += found;
            let mut node = start;
            let mut code: Vec<u8> = Vec::new();
            let mut open = 1usize;
            while adj[node] != 0 || !revisit.is_empty() {
                if adj[node] == 0 {
                    code.push(TERM);
                    open = open.saturating_sub(1);
                    if let Some(back) = revisit.pop() {
                        node = back;
                    }
                    continue;
                }
                if adj[node].count_ones() > 1 {
                    code.push(BRANCH);
                    revisit.push(node);
                    open += 1;
                }
                let k = adj[node].trailing_zeros() as usize;
                let (step, symbol) = steps[k];
                let next = node.wrapping_add_signed(step);
                code.push(symbol);
                let (a, b) = (node.min(next), node.max(next));
                if b - a == 1 {
                    adj[a] &= !E_RIGHT;
                    adj[b] &= !E_LEFT;
                } else {
                    adj[a] &= !E_DOWN;
                    adj[b] &= !E_UP;
                }
                node = next;
            }
            code.extend(std::iter::repeat_n(TERM, open));
            let begin = remove_initial_branch(start, &mut code, sxe);
            remove_empty_branches(&mut code);
            // A later chain from the same corner replaces an earlier one, as in the package.
            chains.insert(begin, to_moves(&code));
        }
    }
    pack(&chains, sx, sy)
}

/// A chain that starts with a branch holding no other branch starts again from that
/// branch's far end, walking it backwards; returns the new start corner.
fn remove_initial_branch(node: usize, code: &mut [u8], sxe: usize) -> usize {
    if code.first() != Some(&BRANCH) {
        return node;
    }
    let Some(end) = code.iter().skip(1).position(|&c| c == TERM || c == BRANCH) else {
        return node;
    };
    let end = end + 1;
    if code[end] == BRANCH {
        return node;
    }
    let (mut x, mut y) = ((node % sxe) as isize, (node / sxe) as isize);
    code[0] = SKIP;
    for c in &mut code[1..end] {
        let (dx, dy, flipped) = match *c {
            b'u' => (0, -1, b'd'),
            b'd' => (0, 1, b'u'),
            b'l' => (-1, 0, b'r'),
            b'r' => (1, 0, b'l'),
            other => (0, 0, other),
        };
        x += dx;
        y += dy;
        *c = flipped;
    }
    code[end] = SKIP;
    code[1..end].reverse();
    (x + sxe as isize * y) as usize
}

/// Drops a branch whose segment (as the package counts it) has no moves: marks its branch
/// and terminator as skipped.
fn remove_empty_branches(code: &mut [u8]) {
    let mut stack: Vec<isize> = vec![-1];
    let mut lens = vec![0u32; code.len() + 1];
    let mut erase = Vec::new();
    let mut current: isize = -1;
    for (i, &c) in code.iter().enumerate() {
        match c {
            BRANCH => stack.push(i as isize),
            TERM => {
                if current >= 0 && lens[(current + 1) as usize] == 0 {
                    erase.push((current as usize, i));
                }
                current = stack.pop().unwrap_or(-1);
            }
            _ => lens[(current + 1) as usize] += 1,
        }
    }
    for (a, b) in erase {
        code[a] = SKIP;
        code[b] = SKIP;
    }
}

/// A chain's symbols as stored moves: a branch is "up down" and a terminator "down up",
/// unless the move before would pair with their first half ("left right", "right left").
fn to_moves(code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(code.len() * 3 / 2);
    for (i, &c) in code.iter().enumerate() {
        match c {
            SKIP => {}
            BRANCH => {
                if i > 0 && out.last() != Some(&MOVE_DOWN) {
                    out.extend([MOVE_UP, MOVE_DOWN]);
                } else {
                    out.extend([MOVE_LEFT, MOVE_RIGHT]);
                }
            }
            TERM => {
                if i > 0 && out.last() != Some(&MOVE_UP) {
                    out.extend([MOVE_DOWN, MOVE_UP]);
                } else {
                    out.extend([MOVE_RIGHT, MOVE_LEFT]);
                }
            }
            b'u' => out.push(MOVE_UP),
            b'd' => out.push(MOVE_DOWN),
            b'l' => out.push(MOVE_LEFT),
            _ => out.push(MOVE_RIGHT),
        }
    }
    out
}

/// The BOC index and the 2-bit difference-coded moves of a slice's chains.
fn pack(chains: &BTreeMap<usize, Vec<u8>>, sx: usize, sy: usize) -> Vec<u8> {
    let sxe = sx + 1;
    let xw = byte_width(sx as u64 + 1);
    let yw = byte_width(sy as u64 + 1);
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for &node in chains.keys() {
        let (x, y) = (node % sxe, node / sxe);
        match rows.last_mut() {
            Some((ry, xs)) if *ry == y => xs.push(x),
            _ => rows.push((y, vec![x])),
        }
    }
    let index_size = yw
        + rows
            .iter()
            .map(|(_, xs)| yw + (xs.len() + 1) * xw)
            .sum::<usize>();
    let mut out = Vec::with_capacity(4 + index_size);
    let put = |out: &mut Vec<u8>, v: usize, w: usize| {
        out.extend_from_slice(&(v as u64).to_le_bytes()[..w]);
    };
    put(&mut out, index_size, 4);
    put(&mut out, rows.len(), yw);
    let mut last_y = 0;
    for (y, xs) in &rows {
        put(&mut out, y - last_y, yw);
        last_y = *y;
        put(&mut out, xs.len(), xw);
        let mut last_x = 0;
        for &x in xs {
            put(&mut out, x - last_x, xw);
            last_x = x;
        }
    }
    let mut last = 0u8;
    let mut byte = 0u8;
    let mut pos = 0;
    for &m in chains.values().flatten() {
        byte |= (m.wrapping_sub(last) & 0b11) << pos;
        last = m;
        pos += 2;
        if pos == 8 {
            out.push(byte);
            byte = 0;
            pos = 0;
        }
    }
    if pos > 0 {
        out.push(byte);
    }
    out
}
