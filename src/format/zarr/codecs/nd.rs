//! Byte-level helpers of the codecs: byte swapping, transposition, fill-value checks
//! (copying blocks in and out of a larger array is `crate::nd`'s). Loops work on whole
//! rows (memcpy) or on fixed-size elements the compiler unrolls and vectorises.

/// Reverses the bytes of every `width`-byte component of `data` in place.
pub(super) fn swap_in_place(data: &mut [u8], width: usize) {
    fn go<const N: usize>(data: &mut [u8]) {
        for c in data.chunks_exact_mut(N) {
            c.reverse();
        }
    }
    match width {
        2 => go::<2>(data),
        4 => go::<4>(data),
        8 => go::<8>(data),
        _ => {}
    }
}

/// Copies `src` into `dst` (same length) reversing every `width`-byte component.
pub(super) fn copy_swapped(src: &[u8], dst: &mut [u8], width: usize) {
    fn go<const N: usize>(src: &[u8], dst: &mut [u8]) {
        for (d, s) in dst.chunks_exact_mut(N).zip(src.chunks_exact(N)) {
            for i in 0..N {
                d[i] = s[N - 1 - i];
            }
        }
    }
    match width {
        2 => go::<2>(src, dst),
        4 => go::<4>(src, dst),
        8 => go::<8>(src, dst),
        _ => dst.copy_from_slice(src),
    }
}

/// Whether `data` is nothing but repetitions of `pattern`.
pub(super) fn is_all(data: &[u8], pattern: &[u8]) -> bool {
    if pattern.is_empty() || !data.len().is_multiple_of(pattern.len()) {
        return false;
    }
    if pattern.iter().all(|&b| b == pattern[0]) {
        let b = pattern[0];
        return data.iter().all(|&x| x == b);
    }
    data.chunks_exact(pattern.len()).all(|c| c == pattern)
}

/// C-order strides (in elements) of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Writes into `dst` the array `src` (shape `shape`, C order) with its axes permuted:
/// `dst`'s axis `i` is `src`'s axis `perm[i]` (NumPy's `transpose(src, perm)`). The copy
/// runs in square tiles over the two axes that are contiguous on either side (the last axis
/// of `dst` and the one that is `src`'s last axis), so reads and writes both stay in cache;
/// when both are the same axis, rows are copied whole.
pub(super) fn permute(src: &[u8], shape: &[usize], perm: &[usize], item: usize, dst: &mut [u8]) {
    let rank = shape.len();
    if rank < 2 || perm.iter().enumerate().all(|(i, &p)| i == p) {
        dst.copy_from_slice(src);
        return;
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    if out_shape.contains(&0) {
        return;
    }
    let ss = strides(shape);
    let in_strides: Vec<usize> = perm.iter().map(|&p| ss[p]).collect();
    let out_strides = strides(&out_shape);
    let last = rank - 1;
    // The output axis that is the input's last (contiguous) axis.
    let a = perm.iter().position(|&p| p == last).unwrap_or(last);
    let t = Tile {
        rows: if a == last { 1 } else { out_shape[a] },
        cols: out_shape[last],
        in_row: if a == last { 0 } else { in_strides[a] },
        in_col: in_strides[last],
        out_row: if a == last { 0 } else { out_strides[a] },
    };
    let outer: Vec<usize> = (0..rank).filter(|&i| i != a && i != last).collect();
    let mut idx = vec![0usize; outer.len()];
    loop {
        let in_base: usize = idx
            .iter()
            .zip(&outer)
            .map(|(i, &ax)| i * in_strides[ax])
            .sum();
        let out_base: usize = idx
            .iter()
            .zip(&outer)
            .map(|(i, &ax)| i * out_strides[ax])
            .sum();
        match item {
            1 => t.copy::<1>(src, in_base, dst, out_base),
            2 => t.copy::<2>(src, in_base, dst, out_base),
            4 => t.copy::<4>(src, in_base, dst, out_base),
            8 => t.copy::<8>(src, in_base, dst, out_base),
            _ => t.copy::<16>(src, in_base, dst, out_base),
        }
        // Odometer over the other axes.
        let mut k = outer.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < out_shape[outer[k]] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// One 2-D plane of a permuted copy: `rows` x `cols` elements, with element strides in the
/// input (`in_row`, `in_col`) and the output (`out_row`, and 1 along columns).
struct Tile {
    rows: usize,
    cols: usize,
    in_row: usize,
    in_col: usize,
    out_row: usize,
}

impl Tile {
    fn copy<const N: usize>(&self, src: &[u8], in_base: usize, dst: &mut [u8], out_base: usize) {
        const T: usize = 32;
        if self.in_col == 1 {
            for r in 0..self.rows {
                let s = (in_base + r * self.in_row) * N;
                let d = (out_base + r * self.out_row) * N;
                dst[d..d + self.cols * N].copy_from_slice(&src[s..s + self.cols * N]);
            }
            return;
        }
        for r0 in (0..self.rows).step_by(T) {
            for c0 in (0..self.cols).step_by(T) {
                for r in r0..(r0 + T).min(self.rows) {
                    let s_row = in_base + r * self.in_row;
                    let d_row = out_base + r * self.out_row;
                    for c in c0..(c0 + T).min(self.cols) {
                        let s = (s_row + c * self.in_col) * N;
                        let d = (d_row + c) * N;
                        dst[d..d + N].copy_from_slice(&src[s..s + N]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_matches_the_definition() {
        let shape = [3usize, 4, 5];
        let src: Vec<u8> = (0..60u8).collect();
        for perm in [
            [0, 1, 2],
            [2, 1, 0],
            [1, 0, 2],
            [0, 2, 1],
            [2, 0, 1],
            [1, 2, 0],
        ] {
            let mut dst = vec![0u8; 60];
            permute(&src, &shape, &perm, 1, &mut dst);
            let os: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let mut n = 0;
            for a in 0..os[0] {
                for b in 0..os[1] {
                    for c in 0..os[2] {
                        let mut i = [0usize; 3];
                        i[perm[0]] = a;
                        i[perm[1]] = b;
                        i[perm[2]] = c;
                        assert_eq!(dst[n] as usize, i[0] * 20 + i[1] * 5 + i[2]);
                        n += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn swaps() {
        let mut d: Vec<u8> = [1, 2].repeat(5);
        assert!(is_all(&d, &[1, 2]));
        swap_in_place(&mut d, 2);
        assert_eq!(d[..2], [2, 1]);
        let mut e = vec![0u8; 8];
        copy_swapped(&[1, 2, 3, 4, 5, 6, 7, 8], &mut e, 4);
        assert_eq!(e, [4, 3, 2, 1, 8, 7, 6, 5]);
    }
}
