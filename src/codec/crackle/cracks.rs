//! Crack codes: the boundaries between labels in one z-slice, drawn as chains of moves on
//! the grid of pixel corners (`(sx+1) × (sy+1)` vertices), read back into a voxel
//! connectivity graph (which pixels join their left and upper neighbours, a bit each).
//!
//! A slice's code is a beginning-of-chain (BOC) index, then its moves:
//!
//! ```text
//! index size u32 | num rows (yw) | per row: dy (yw), num chains (xw), dx per chain (xw)
//! moves: 2 bits each, LSB first, difference coded (each adds to the last, mod 4), or a
//!        markov-coded stream (see `markov.rs`)
//! ```
//!
//! with `xw`, `yw` the byte widths of `sx+1` and `sy+1`. Moves are up 0, right 1, down 2,
//! left 3; a move followed by its opposite is a branch (down-up or right-left after up or
//! left: "up down", "left right") or a terminator ("down up", "right left"). Each chain
//! starts at the next BOC vertex and ends when its branches are all terminated.
//! "Permissible" codes draw the edges between pixels of one label (the graph starts with no
//! edges), "impermissible" ones the edges between different labels (it starts with all).

/// A pixel's bit in the byte-per-pixel graph the encoder builds: joined to its left
/// neighbour (`x - 1`).
pub(super) const LEFT: u8 = 0b0010;
/// As [`LEFT`]: joined to its upper neighbour (`y - 1`).
pub(super) const UP: u8 = 0b1000;

/// The moves, as stored.
pub(super) const MOVE_UP: u8 = 0;
pub(super) const MOVE_RIGHT: u8 = 1;
pub(super) const MOVE_DOWN: u8 = 2;
pub(super) const MOVE_LEFT: u8 = 3;
/// No move yet (so nothing pairs with the next one).
const NONE: u8 = 0xff;

/// Reused buffers for decoding one slice's crack code.
#[derive(Default)]
pub(super) struct Scratch {
    nodes: Vec<(u32, u32)>,
    pub codepoints: Vec<u8>,
    stack: Vec<(u32, u32)>,
}

/// Reads a little-endian integer of `width` bytes at `*at`, which must end by `end`.
fn read(code: &[u8], at: &mut usize, width: usize, end: usize) -> Result<u64, String> {
    let stop = at.checked_add(width).filter(|&s| s <= end);
    let bytes = stop
        .and_then(|s| code.get(*at..s))
        .ok_or("the crack code's chain index breaks off")?;
    *at += width;
    Ok(bytes
        .iter()
        .rev()
        .fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// Parses the BOC index of `code` into `s.nodes` and returns where the moves start.
fn read_index(code: &[u8], sx: u32, sy: u32, s: &mut Scratch) -> Result<usize, String> {
    s.nodes.clear();
    let head = code
        .get(..4)
        .ok_or("a crack code shorter than its index size")?;
    let end = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = end
        .checked_add(4)
        .filter(|&e| e <= code.len())
        .ok_or("the crack code's index size runs past its end")?;
    let xw = super::header::byte_width(u64::from(sx) + 1);
    let yw = super::header::byte_width(u64::from(sy) + 1);
    let mut at = 4;
    let rows = read(code, &mut at, yw, end)?;
    let mut y = 0u64;
    for _ in 0..rows {
        y = y.saturating_add(read(code, &mut at, yw, end)?);
        let chains = read(code, &mut at, xw, end)?;
        let mut x = 0u64;
        for _ in 0..chains {
            x = x.saturating_add(read(code, &mut at, xw, end)?);
            if x > u64::from(sx) || y > u64::from(sy) {
                return Err(format!(
                    "a chain starts at corner ({x}, {y}), outside the {sx}x{sy} slice"
                ));
            }
            s.nodes.push((x as u32, y as u32));
        }
    }
    Ok(end)
}

/// Unpacks 2-bit difference-coded moves into `out`.
pub(super) fn unpack_moves(packed: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(packed.len() * 4);
    let mut last = 0u8;
    for &byte in packed {
        for j in 0..4 {
            last = (last + ((byte >> (2 * j)) & 0b11)) & 0b11;
            out.push(last);
        }
    }
}

/// Which pixels of a slice join their left and upper neighbours: one bit per pixel, rows of
/// `words` 64-bit words (bit `x % 64` of word `x / 64`). Bits of the first column (`left`)
/// and first row (`up`), and past `sx`, mean nothing.
#[derive(Default)]
pub(super) struct Graph {
    pub sx: usize,
    pub sy: usize,
    pub words: usize,
    pub left: Vec<u64>,
    pub up: Vec<u64>,
}

impl Graph {
    /// Resets to an `sx × sy` slice with every pixel joined (`all`) or none.
    fn reset(&mut self, sx: usize, sy: usize, all: bool) {
        self.sx = sx;
        self.sy = sy;
        self.words = sx.div_ceil(64);
        let fill = if all { u64::MAX } else { 0 };
        for bits in [&mut self.left, &mut self.up] {
            bits.clear();
            bits.resize(self.words * sy, fill);
        }
    }

    /// The row `y` of `bits`.
    pub fn row<'a>(&self, bits: &'a [u64], y: usize) -> &'a [u64] {
        &bits[y * self.words..(y + 1) * self.words]
    }
}

/// Draws the crack code `code` of an `sx × sy` slice into `graph`, which it resets. `model`
/// is the markov model of a markov-coded stream.
pub(super) fn decode_slice(
    code: &[u8],
    sx: u32,
    sy: u32,
    permissible: bool,
    model: Option<&super::markov::Model>,
    graph: &mut Graph,
    s: &mut Scratch,
) -> Result<(), String> {
    let start = read_index(code, sx, sy, s)?;
    let moves = &code[start..];
    match model {
        Some(model) => model.decode(moves, &mut s.codepoints),
        None => unpack_moves(moves, &mut s.codepoints),
    }
    graph.reset(sx as usize, sy as usize, !permissible);
    let mut walk = Walk {
        sx,
        sy,
        permissible,
        graph,
        x: 0,
        y: 0,
    };
    let mut next_node = 0;
    let mut open: u64 = 0;
    let mut last = NONE;
    let mut pending: Option<u8> = None;
    for &cp in &s.codepoints {
        if open == 0 {
            let Some(&(x, y)) = s.nodes.get(next_node) else {
                break;
            };
            next_node += 1;
            (walk.x, walk.y) = (x, y);
            open = 1;
            s.stack.clear();
        }
        if cp ^ last != 0b10 {
            // A plain move: the one before it stands.
            if let Some(p) = pending.replace(cp) {
                walk.apply(p, &mut s.stack)?;
            }
            last = cp;
            continue;
        }
        // The move undoes the last one: together they are a branch or a terminator, in
        // place of that last move.
        if cp == MOVE_UP || cp == MOVE_LEFT {
            pending = Some(TERM);
            open -= 1;
        } else {
            pending = Some(BRANCH);
            open += 1;
        }
        last = NONE;
        if open == 0 {
            if let Some(p) = pending.take() {
                walk.apply(p, &mut s.stack)?;
            }
        }
    }
    Ok(())
}

/// Symbols besides the four moves.
const BRANCH: u8 = 0x10;
const TERM: u8 = 0x20;

/// A position on the corner grid, drawing into the connectivity graph as it moves.
struct Walk<'a> {
    sx: u32,
    sy: u32,
    permissible: bool,
    graph: &'a mut Graph,
    x: u32,
    y: u32,
}

impl Walk<'_> {
    /// Marks (permissible) or clears (impermissible) the `left` (or up) bit of pixel
    /// `(x, y)`, where it is a bit the components read (not the first column or row).
    #[inline]
    fn edge(&mut self, x: u32, y: u32, left: bool) {
        let inside = if left {
            x >= 1 && x < self.sx && y < self.sy
        } else {
            y >= 1 && y < self.sy && x < self.sx
        };
        if !inside {
            return;
        }
        let g = &mut *self.graph;
        let at = y as usize * g.words + x as usize / 64;
        let bits = if left { &mut g.left } else { &mut g.up };
        if let Some(w) = bits.get_mut(at) {
            let bit = 1u64 << (x % 64);
            if self.permissible {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    #[inline]
    fn apply(&mut self, symbol: u8, stack: &mut Vec<(u32, u32)>) -> Result<(), String> {
        let (x, y) = (self.x, self.y);
        let off = || off_slice(self.sx, self.sy);
        match symbol {
            MOVE_UP => {
                let y = y.checked_sub(1).ok_or_else(off)?;
                self.edge(x, y, true);
                self.y = y;
            }
            MOVE_DOWN => {
                if y >= self.sy {
                    return Err(off());
                }
                self.edge(x, y, true);
                self.y = y + 1;
            }
            MOVE_RIGHT => {
                if x >= self.sx {
                    return Err(off());
                }
                self.edge(x, y, false);
                self.x = x + 1;
            }
            MOVE_LEFT => {
                let x = x.checked_sub(1).ok_or_else(off)?;
                self.edge(x, y, false);
                self.x = x;
            }
            BRANCH => stack.push((x, y)),
            _ => {
                if let Some((x, y)) = stack.pop() {
                    (self.x, self.y) = (x, y);
                }
            }
        }
        Ok(())
    }
}

/// The error of a move off the slice (kept out of line: it never happens in valid data).
#[cold]
fn off_slice(sx: u32, sy: u32) -> String {
    format!("a crack code moves off the {sx}x{sy} slice")
}
