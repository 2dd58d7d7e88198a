//! The markov model for crack codes: a finite-context model of `order` earlier moves that
//! ranks the four next moves; each move is then stored as its rank in 1 to 3 bits.
//!
//! The model lies between the label section and the crack codes: 5 bits per context (LSB
//! first), an index into the 24 orderings of the four moves (in lexicographic order), whose
//! `k`-th 2-bit field is the move of rank `k`. The context is a base-4 number of the last
//! `order` difference-coded moves, the newest the most significant digit. A slice's stream
//! (after its BOC index) starts with one move in its low 2 bits, then ranks as `0`, `10`,
//! `110`, `111` read LSB first; the decoded moves are difference coded like plain ones.

/// The 24 orderings of the moves 0..4, each packed as four 2-bit fields (first lowest), in
/// lexicographic order: how the package numbers them.
const ORDERINGS: [u8; 24] = orderings();

const fn orderings() -> [u8; 24] {
    let mut out = [0u8; 24];
    let mut n = 0;
    let mut a = 0;
    while a < 4 {
        let mut b = 0;
        while b < 4 {
            let mut c = 0;
            while c < 4 {
                if a != b && b != c && a != c {
                    let d = 6 - a - b - c;
                    out[n] = (a | (b << 2) | (c << 4) | (d << 6)) as u8;
                    n += 1;
                }
                c += 1;
            }
            b += 1;
        }
        a += 1;
    }
    out
}

/// A decoded model: the packed ordering of each context.
#[derive(Debug)]
pub(super) struct Model {
    rows: Vec<u8>,
    order: u32,
}

impl Model {
    /// Reads the `rows` contexts of a model of `order` from `stored` (which holds them all:
    /// the caller has checked its length).
    pub fn parse(stored: &[u8], order: u8, rows: usize) -> Result<Model, String> {
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let bit = 5 * r;
            let lo = stored.get(bit / 8).copied().unwrap_or(0);
            let hi = stored.get(bit / 8 + 1).copied().unwrap_or(0);
            let v = ((u16::from(lo) | (u16::from(hi) << 8)) >> (bit % 8)) & 0b11111;
            let ordering = ORDERINGS
                .get(usize::from(v))
                .ok_or_else(|| format!("markov model row {r} names ordering {v} of 24"))?;
            out.push(*ordering);
        }
        Ok(Model {
            rows: out,
            order: u32::from(order),
        })
    }

    /// Decodes a slice's markov-coded moves into `out`, difference decoded like plain moves.
    /// Padding bits at the end decode as extra moves, which no chain reads.
    pub fn decode(&self, stream: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let Some(&first) = stream.first() else {
            return;
        };
        out.reserve(stream.len() * 8);
        let shift = 2 * (self.order - 1);
        let mask = self.rows.len() - 1;
        let mut diff = first & 0b11;
        out.push(diff);
        let mut context = usize::from(diff) << shift;
        let mut pos = 2;
        for i in 0..stream.len() {
            let next = stream.get(i + 1).copied().unwrap_or(0);
            let word = u16::from(stream[i]) | (u16::from(next) << 8);
            while pos < 8 {
                let bits = word >> pos;
                let rank = if bits & 1 == 0 {
                    pos += 1;
                    0
                } else if bits & 0b10 == 0 {
                    pos += 2;
                    1
                } else if bits & 0b100 == 0 {
                    pos += 3;
                    2
                } else {
                    pos += 3;
                    3
                };
                let ordering = self.rows[context & mask];
                diff = (ordering >> (2 * rank)) & 0b11;
                out.push(diff);
                context = (context >> 2) | (usize::from(diff) << shift);
            }
            pos -= 8;
        }
        let mut last = 0u8;
        for m in out.iter_mut() {
            last = (last + *m) & 0b11;
            *m = last;
        }
    }
}
