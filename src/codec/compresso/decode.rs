//! The compresso decoder. It reads the stream one z slice at a time: the slice's boundary
//! bits from the run-length coded windows, its components and their ids, then the
//! boundary voxels from their neighbours and the locations. A slice's boundary voxels may
//! copy the next slice's non-boundary ones, so each slice is labelled one slice ahead; the
//! rare location that points there looks the voxel up in the next slice's runs, so a slice
//! is painted, settled and handed to the output one row at a time, while the row is in
//! cache.

use super::cc::{Runs, Slices3d};
use super::{read_le, ChunkLayout, ChunkRows, CompressoDecodeError, Header, Label, HEADER_LEN};

/// Decodes a chunk into `layout.raw_len()` little-endian labels (Fortran order).
pub fn decode(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, CompressoDecodeError> {
    let mut out = vec![0u8; layout.raw_len()];
    decode_into(bytes, layout, &mut out)?;
    Ok(out)
}

/// [`decode`] into `out`, which must hold `layout.raw_len()` bytes.
pub(super) fn decode_into(
    bytes: &[u8],
    layout: &ChunkLayout,
    out: &mut [u8],
) -> Result<(), CompressoDecodeError> {
    if out.len() != layout.raw_len() {
        return Err(CompressoDecodeError(format!(
            "output holds {} bytes, the chunk {}",
            out.len(),
            layout.raw_len()
        )));
    }
    let row_len = layout.shape[0] * layout.dtype.itemsize();
    let mut rows = Contiguous {
        out,
        sy: layout.shape[1],
        row_len,
    };
    // The caller reads the chunk back at once: its rows should stay in cache.
    decode_checked(bytes, layout, &mut rows, false)
}

/// The rows of one contiguous Fortran-ordered single-channel chunk.
struct Contiguous<'a> {
    out: &'a mut [u8],
    sy: usize,
    row_len: usize,
}

impl ChunkRows for Contiguous<'_> {
    fn row(&mut self, _: usize, y: usize, z: usize) -> &mut [u8] {
        let start = (z * self.sy + y) * self.row_len;
        &mut self.out[start..start + self.row_len]
    }
}

/// Decodes a chunk into wherever `rows` puts each row: no decoded copy of the chunk is
/// made. Every voxel of every row is written when this succeeds. On x86-64 the rows are
/// written with non-temporal stores, which skip the cache: a reader's output is written
/// once and, when large, is not read back while it would still be in cache, and a store
/// that misses the cache otherwise first reads the line it overwrites.
pub fn decode_rows<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    rows: &mut R,
) -> Result<(), CompressoDecodeError> {
    let result = decode_checked(bytes, layout, rows, true);
    stream::fence();
    result
}

/// [`decode_rows`], its rows written with non-temporal stores where `streaming`.
fn decode_checked<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    rows: &mut R,
    streaming: bool,
) -> Result<(), CompressoDecodeError> {
    let header = Header::parse(bytes).map_err(CompressoDecodeError)?;
    if layout.channels != 1 {
        return Err(CompressoDecodeError(format!(
            "compresso holds 1 channel, the layer has {}",
            layout.channels
        )));
    }
    if header.shape != layout.shape {
        return Err(CompressoDecodeError(format!(
            "the stream is {:?} voxels, the chunk {:?}",
            header.shape, layout.shape
        )));
    }
    if header.width != layout.dtype.itemsize() {
        return Err(CompressoDecodeError(format!(
            "the stream holds {}-byte labels, the layer {}",
            header.width, layout.dtype
        )));
    }
    let sections = Sections::split(bytes, &header).map_err(CompressoDecodeError)?;
    let result = match header.width {
        1 => Decoder::<u8>::run(&header, &sections, rows, streaming),
        2 => Decoder::<u16>::run(&header, &sections, rows, streaming),
        4 => Decoder::<u32>::run(&header, &sections, rows, streaming),
        _ => Decoder::<u64>::run(&header, &sections, rows, streaming),
    };
    result.map_err(CompressoDecodeError)
}

/// The stream's variable-length sections, each checked to lie inside it.
struct Sections<'a> {
    ids: &'a [u8],
    values: &'a [u8],
    locations: &'a [u8],
    windows: &'a [u8],
}

impl<'a> Sections<'a> {
    fn split(bytes: &'a [u8], h: &Header) -> Result<Sections<'a>, String> {
        let ww = h.window_width();
        let index = if h.version == 1 {
            2 * h.shape[2] * h.index_width()
        } else {
            0
        };
        let len = |count: u64, width: usize, what: &str| {
            usize::try_from(count)
                .ok()
                .and_then(|c| c.checked_mul(width))
                .filter(|&n| n <= bytes.len())
                .ok_or_else(|| {
                    format!("{count} {what} do not fit in a {}-byte stream", bytes.len())
                })
        };
        let ids = len(h.id_size, h.width, "ids")?;
        let values = len(u64::from(h.value_size), ww, "window values")?;
        let locations = len(h.location_size, h.width, "locations")?;
        let fixed = [ids, values, locations, index]
            .iter()
            .try_fold(HEADER_LEN, |a, &n| a.checked_add(n))
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "{} ids, {} window values and {} locations run past the end of a \
                     {}-byte stream",
                    h.id_size,
                    h.value_size,
                    h.location_size,
                    bytes.len()
                )
            })?;
        let (ids, rest) = bytes[HEADER_LEN..].split_at(ids);
        let (values, rest) = rest.split_at(values);
        let (locations, rest) = rest.split_at(locations);
        let windows = &rest[..bytes.len() - fixed];
        // The package reads as many whole window words as there are bytes.
        let windows = &windows[..windows.len() / ww * ww];
        Ok(Sections {
            ids,
            values,
            locations,
            windows,
        })
    }
}

/// Reads the run-length coded windows in block order, one z row of blocks at a time.
struct Windows<'a> {
    words: &'a [u8],
    /// The window values, read once per chunk (a chunk has at most as many as its stream
    /// has bytes, so this is bounded by the input). Empty when the stream has none: the
    /// package then gives no boundaries at all.
    values: Vec<u64>,
    width: usize,
    pos: usize,
    zeros: u64,
}

impl<'a> Windows<'a> {
    fn new(s: &Sections<'a>, width: usize) -> Self {
        Windows {
            words: s.windows,
            values: s.values.chunks_exact(width).map(read_le).collect(),
            width,
            pos: 0,
            zeros: 0,
        }
    }

    /// The bit pattern of window value `index`.
    #[inline]
    fn value(&self, index: u64) -> Result<u64, String> {
        if self.values.is_empty() {
            return Ok(0);
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| self.values.get(i))
            .copied()
            .ok_or_else(|| {
                format!(
                    "window value {index} is past the {} values",
                    self.values.len()
                )
            })
    }

    /// Fills `row` with the next blocks' bit patterns. Blocks past the end of the words
    /// are index 0, as in the package (its window array starts zeroed).
    fn fill(&mut self, row: &mut [u64]) -> Result<(), String> {
        match self.width {
            // The default 4×4×1 windows' 16 bits: the words read as `u16`s.
            2 => self.fill_with::<2>(row),
            _ => self.fill_with::<0>(row),
        }
    }

    /// [`Windows::fill`] for words of `W` bytes (0: any width).
    #[inline(always)]
    fn fill_with<const W: usize>(&mut self, row: &mut [u64]) -> Result<(), String> {
        let zero = self.value(0)?;
        let width = if W == 0 { self.width } else { W };
        let mut i = 0;
        while i < row.len() {
            if self.zeros > 0 {
                let n = usize::try_from(self.zeros)
                    .unwrap_or(usize::MAX)
                    .min(row.len() - i);
                for v in &mut row[i..i + n] {
                    *v = zero;
                }
                i += n;
                self.zeros -= n as u64;
                continue;
            }
            let Some(word) = self.words.get(self.pos..self.pos + width) else {
                row[i..].fill(zero);
                return Ok(());
            };
            self.pos += width;
            let word = match word {
                &[a, b] if W == 2 => u64::from(u16::from_le_bytes([a, b])),
                _ => read_le(word),
            };
            if word & 1 == 1 {
                self.zeros = word >> 1;
            } else {
                row[i] = self.value(word >> 1)?;
                i += 1;
            }
        }
        Ok(())
    }
}

/// One slice's state: its boundary bits (a row of `words` words a row, as
/// [`Runs::label`] reads them), the runs of the other voxels and the global number of its
/// first component. Its labels go straight to the output; the few locations that read a
/// settled voxel of the slice below read it back from there.
struct Slice {
    bits: Vec<u64>,
    runs: Runs,
    base: u64,
}

/// Whether voxel `x` of the row of boundary bits `row` is a boundary voxel.
#[inline]
fn is_boundary(row: &[u64], x: usize) -> bool {
    (row[x / 64] >> (x % 64)) & 1 != 0
}

/// The component (from 1) of the run of `runs` that holds `x`, if any.
fn run_at(runs: &[(u32, u32, u32)], x: usize) -> Option<u32> {
    runs.iter()
        .find(|r| x < r.1 as usize)
        .filter(|r| r.0 as usize <= x)
        .map(|r| r.2)
}

struct Decoder<'a, T: Label> {
    h: &'a Header,
    s: &'a Sections<'a>,
    sx: usize,
    sy: usize,
    sz: usize,
    nx: usize,
    /// Words of boundary bits a row.
    words: usize,
    window_row: Vec<u64>,
    /// For connectivity 6: the 3-D component of each 2-D one.
    number: Option<Vec<u32>>,
    table: Vec<T>,
    /// Whether rows go to the output with non-temporal stores.
    streaming: bool,
}

impl<'a, T: Label> Decoder<'a, T> {
    fn run<R: ChunkRows + ?Sized>(
        h: &Header,
        s: &Sections,
        rows: &mut R,
        streaming: bool,
    ) -> Result<(), String> {
        let [sx, sy, sz] = h.shape;
        if sx == 0 || sy == 0 || sz == 0 {
            // No voxels, so no rows to write (and no row of bits to chunk by).
            return Ok(());
        }
        let mut d = Decoder::<T> {
            h,
            s,
            sx,
            sy,
            sz,
            nx: sx.div_ceil(h.steps[0]),
            words: sx.div_ceil(64),
            window_row: vec![0; sx.div_ceil(h.steps[0]) * sy.div_ceil(h.steps[1])],
            number: None,
            table: Vec::new(),
            streaming,
        };
        if h.connectivity == 6 {
            d.number = Some(d.join_slices()?);
        }
        let new_slice = || Slice {
            bits: vec![0; sx.div_ceil(64) * sy],
            runs: Runs::default(),
            base: 0,
        };
        // `cur` is settled row by row while `next` is only labelled (a location may name
        // one of its voxels); `prev`'s boundary bits are what connectivity 6 sees below.
        let (mut prev, mut cur, mut next) = (new_slice(), new_slice(), new_slice());
        // The row being settled and the one settled before it.
        let mut lines = (vec![T::default(); sx], vec![T::default(); sx]);
        let mut windows = Windows::new(s, h.window_width());
        let mut base = 0u64;
        let mut locations = s.locations.chunks_exact(T::WIDTH);
        if sz > 0 {
            d.boundaries(0, &mut windows, &mut cur.bits)?;
            base = d.label(&mut cur, base);
        }
        for z in 0..sz {
            if z + 1 < sz {
                d.boundaries(z + 1, &mut windows, &mut next.bits)?;
                base = d.label(&mut next, base);
            }
            d.fill_table(&cur)?;
            let near = Near {
                prev: (z > 0).then_some(&prev),
                cur: &cur,
                next: (z + 1 < sz).then_some(&next),
            };
            d.settle(&near, &mut locations, rows, z, &mut lines)?;
            std::mem::swap(&mut prev, &mut cur);
            std::mem::swap(&mut cur, &mut next);
        }
        Ok(())
    }

    /// The boundary bits of slice `z`, reading the next row of windows where `z` starts
    /// one. The bits past `sx` are set, so that runs end there.
    fn boundaries(
        &mut self,
        z: usize,
        windows: &mut Windows,
        out: &mut [u64],
    ) -> Result<(), String> {
        let [xs, ys, zs] = self.h.steps;
        if z.is_multiple_of(zs) {
            windows.fill(&mut self.window_row)?;
        }
        let (sx, words) = (self.sx, self.words);
        let pad = if sx % 64 == 0 {
            0
        } else {
            u64::MAX << (sx % 64)
        };
        if self.h.steps == [4, 4, 1] {
            self.boundaries_4x4(out, pad);
            return Ok(());
        }
        let zshift = xs * ys * (z % zs);
        // A window holds at most 64 bits, so a block row's bits and their shift fit a word.
        let mask = u64::MAX >> (64 - xs);
        for (y, row) in out.chunks_exact_mut(words).enumerate() {
            let shift = zshift + xs * (y % ys);
            let blocks = &self.window_row[(y / ys) * self.nx..][..self.nx];
            row.fill(0);
            for (xb, &w) in blocks.iter().enumerate() {
                let bits = (w >> shift) & mask;
                let x = xb * xs;
                let (i, at) = (x / 64, x % 64);
                row[i] |= bits << at;
                // A block that straddles two words (widths that do not divide 64).
                if at + xs > 64 {
                    if let Some(word) = row.get_mut(i + 1) {
                        *word |= bits >> (64 - at);
                    }
                }
            }
            if let Some(last) = row.last_mut() {
                *last |= pad;
            }
        }
        Ok(())
    }

    /// [`Decoder::boundaries`] for the package's default 4×4×1 windows: each word of four
    /// rows' bits is sixteen windows' 16 bits transposed, a 4-bit nibble per window and
    /// row, which two delta swaps per four windows do instead of a shift per window and row.
    fn boundaries_4x4(&self, out: &mut [u64], pad: u64) {
        let (nx, words) = (self.nx, self.words);
        for (yb, rows) in out.chunks_mut(4 * words).enumerate() {
            let blocks = &self.window_row[yb * nx..][..nx];
            for w in 0..words {
                // The sixteen windows of this word (fewer in a row's last word: the rest
                // are no voxels, and their bits are the padding's).
                let mut group = [0u64; 16];
                let here = &blocks[16 * w..nx.min(16 * w + 16)];
                group[..here.len()].copy_from_slice(here);
                // Four windows to a u64, window j in bits 16j.., its row r in nibble r;
                // transposed, bits 16r.. hold row r of the four windows, window j in
                // nibble j: the 16 bits of row r at x = 16k.. for the k-th four windows.
                let lanes = [0, 1, 2, 3].map(|k| {
                    let mut a = group[4 * k..4 * k + 4]
                        .iter()
                        .enumerate()
                        .fold(0u64, |a, (j, &v)| a | ((v & 0xffff) << (16 * j)));
                    let t = (a ^ (a >> 12)) & 0x0000_f0f0_0000_f0f0;
                    a ^= t ^ (t << 12);
                    let t = (a ^ (a >> 24)) & 0x0000_0000_ff00_ff00;
                    a ^= t ^ (t << 24);
                    a
                });
                for (r, row) in rows.chunks_exact_mut(words).enumerate() {
                    row[w] = lanes.iter().enumerate().fold(0u64, |acc, (k, &a)| {
                        acc | ((a >> (16 * r)) & 0xffff) << (16 * k)
                    });
                }
            }
            for row in rows.chunks_exact_mut(words) {
                if let Some(last) = row.last_mut() {
                    *last |= pad;
                }
            }
        }
    }

    /// Connectivity 6: labels every slice and joins their components in 3-D, giving the
    /// 3-D component of each 2-D one.
    fn join_slices(&mut self) -> Result<Vec<u32>, String> {
        let mut windows = Windows::new(self.s, self.h.window_width());
        let mut bits = vec![0u64; self.words * self.sy];
        let (mut below, mut here) = (Runs::default(), Runs::default());
        let mut slices = Slices3d::default();
        let (mut base, mut below_base) = (0u32, 0u32);
        let too_many = || "more than 2^32 components".to_string();
        for z in 0..self.sz {
            self.boundaries(z, &mut windows, &mut bits)?;
            let count = here.label(&bits, self.words, self.sx);
            slices.add(count).ok_or_else(too_many)?;
            if z > 0 {
                slices.join_runs(&below, below_base, &here, base);
            }
            std::mem::swap(&mut below, &mut here);
            below_base = base;
            base = base.checked_add(count).ok_or_else(too_many)?;
        }
        Ok(slices.numbering().0)
    }

    /// Finds slice `slice`'s components, numbered from `base`; returns the number of 2-D
    /// components so far.
    fn label(&mut self, slice: &mut Slice, base: u64) -> u64 {
        slice.base = base;
        base + u64::from(slice.runs.label(&slice.bits, self.words, self.sx))
    }

    /// The id of 2-D component `global` (counted across slices from 0).
    fn id(&self, global: u64) -> Result<T, String> {
        let id = match &self.number {
            Some(number) => usize::try_from(global)
                .ok()
                .and_then(|g| number.get(g))
                .map(|&n| u64::from(n))
                .ok_or("a component outside the 3-D numbering")?,
            None => global,
        };
        usize::try_from(id)
            .ok()
            .and_then(|i| self.s.ids.get(i.checked_mul(T::WIDTH)?..)?.get(..T::WIDTH))
            .map(T::read)
            .ok_or_else(|| {
                format!(
                    "component {id} has no id ({} ids)",
                    self.s.ids.len() / T::WIDTH
                )
            })
    }

    /// The ids of `slice`'s components, from index 1 (index 0 is the boundary's 0).
    fn fill_table(&mut self, slice: &Slice) -> Result<(), String> {
        let count = slice.runs.count();
        self.table.clear();
        self.table.push(T::default());
        for c in 0..u64::from(count) {
            let label = self.id(slice.base + c)?;
            self.table.push(label);
        }
        Ok(())
    }

    /// Paints slice `cur`'s runs with their ids and settles its boundary voxels, one row at
    /// a time in a row of scratch (in cache), then hands the row to `rows`. The package
    /// settles boundary voxels in raster order from the left neighbour, else the upper one,
    /// else (connectivity 6) the one below, where that is not a boundary voxel, else from
    /// the next location. The first two need no location and no order, so they go by bit
    /// masks a word at a time: a run's paint reaches one voxel past it (the boundary voxel
    /// right of a run copies it), and stretches under non-boundary voxels copy the row
    /// above. Only the rest, the few voxels at corners, go one by one, in raster order (a
    /// location may read the voxel before). A voxel not settled yet reads as 0 (the
    /// package's labels start so), wherever a location points at it.
    fn settle<R: ChunkRows + ?Sized>(
        &self,
        near: &Near,
        locations: &mut std::slice::ChunksExact<u8>,
        rows: &mut R,
        z: usize,
        lines: &mut (Vec<T>, Vec<T>),
    ) -> Result<(), String> {
        let (sx, sy, words) = (self.sx, self.sy, self.words);
        let cur = near.cur;
        let runs = &cur.runs;
        let table = &self.table;
        // The bits of voxels inside the row, per word.
        let valid = |w: usize| match sx - 64 * w {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        let mut take = || {
            locations
                .next()
                .map(T::read)
                .ok_or("the locations run out before the boundary voxels")
        };
        for y in 0..sy {
            let (line, up) = (&mut lines.0[..sx], &lines.1[..sx]);
            for &(start, end, c) in runs.row(y) {
                let end = (end as usize + 1).min(sx);
                line[start as usize..end].fill(table[c as usize]);
            }
            let bits = &cur.bits[y * words..][..words];
            let above = (y > 0).then(|| &cur.bits[(y - 1) * words..][..words]);
            // A boundary voxel's left neighbour is a boundary voxel (or it starts the row).
            let mut carry = 1;
            for (w, &b) in bits.iter().enumerate() {
                let rest = b & ((b << 1) | carry) & valid(w);
                carry = b >> 63;
                let mut ups = match above {
                    Some(a) => rest & !a[w],
                    None => 0,
                };
                while ups != 0 {
                    let from = 64 * w + ups.trailing_zeros() as usize;
                    let n = (!(ups >> (from % 64))).trailing_zeros() as usize;
                    line[from..from + n].copy_from_slice(&up[from..from + n]);
                    // Clears the lowest stretch of ones.
                    ups &= ups.wrapping_add(ups & ups.wrapping_neg());
                }
                let mut corners = match above {
                    Some(a) => rest & a[w],
                    None => rest,
                };
                while corners != 0 {
                    let x = 64 * w + corners.trailing_zeros() as usize;
                    corners &= corners - 1;
                    line[x] = self.corner([x, y, z], (line, up), near, &mut take, rows)?;
                }
            }
            let out = rows.row(0, y, z);
            if cfg!(target_endian = "little") {
                // The labels' own bytes are the little-endian row.
                let bytes: &[u8] = bytemuck::cast_slice(line);
                let n = bytes.len().min(out.len());
                if self.streaming {
                    stream::copy(&mut out[..n], &bytes[..n]);
                } else {
                    out[..n].copy_from_slice(&bytes[..n]);
                }
            } else {
                for (o, &label) in out.chunks_exact_mut(T::WIDTH).zip(line.iter()) {
                    label.write(o);
                }
            }
            std::mem::swap(&mut lines.0, &mut lines.1);
        }
        Ok(())
    }

    /// The label of boundary voxel `(x, y)` of slice `z` that neither its left nor its
    /// upper neighbour settles: the one below's (connectivity 6) or the next location's.
    #[inline(never)]
    fn corner<R: ChunkRows + ?Sized>(
        &self,
        [x, y, z]: [usize; 3],
        (line, up): (&[T], &[T]),
        near: &Near,
        take: &mut impl FnMut() -> Result<T, &'static str>,
        rows: &mut R,
    ) -> Result<T, String> {
        let (sx, sy, words) = (self.sx, self.sy, self.words);
        // The settled label of voxel `(x, y)` of the slice below, read back from the output.
        let mut below = |x: usize| T::read(&rows.row(0, y, z - 1)[x * T::WIDTH..]);
        if let (6, Some(p)) = (self.h.connectivity, near.prev) {
            if !is_boundary(&p.bits[y * words..][..words], x) {
                return Ok(below(x));
            }
        }
        let code = take()?.to_u64();
        let bad = |what: &str| format!("location {code} points {what} the chunk");
        let cur = near.cur;
        Ok(match code {
            0 if x > 0 => line[x - 1],
            // Painted already where it is a run's first voxel; not settled yet otherwise.
            1 if x + 1 < sx => match is_boundary(&cur.bits[y * words..][..words], x + 1) {
                false => line[x + 1],
                true => T::default(),
            },
            2 if y > 0 => up[x],
            3 if y + 1 < sy => match run_at(cur.runs.row(y + 1), x) {
                Some(c) => self.table[c as usize],
                None => T::default(),
            },
            4 if z > 0 => below(x),
            4 => return Err(bad("below")),
            5 => {
                let n = near.next.ok_or_else(|| bad("above"))?;
                match run_at(n.runs.row(y), x) {
                    Some(c) => self.id(n.base + u64::from(c) - 1)?,
                    None => T::default(),
                }
            }
            0..=3 => return Err(bad("outside")),
            6 => take()?,
            _ => T::from_u64(code - 7),
        })
    }
}

/// The slice being settled and its neighbours along z, where the chunk has them.
struct Near<'s> {
    prev: Option<&'s Slice>,
    cur: &'s Slice,
    next: Option<&'s Slice>,
}

/// Copies with non-temporal stores (x86-64's SSE2, which every x86-64 CPU has; a plain copy
/// elsewhere), by hand because no well-kept crate offers a streaming `memcpy`.
mod stream {
    /// Copies `src` into `dst` (of the same length), the whole 64-byte cache lines of `dst`
    /// with non-temporal stores and its ends, which may share a line with a neighbouring
    /// chunk's row (an unaligned cutout), with plain ones: a non-temporal store of part of
    /// a line costs the memory a read, and another core's copy of the line. [`fence`] must
    /// follow before another thread reads `dst`.
    #[inline]
    pub(super) fn copy(dst: &mut [u8], src: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
            let head = dst.as_ptr().align_offset(64).min(dst.len());
            let (dst_head, dst) = dst.split_at_mut(head);
            let (src_head, src) = src.split_at(head);
            dst_head.copy_from_slice(src_head);
            let lines = dst.len() / 64 * 64;
            let (dst, dst_tail) = dst.split_at_mut(lines);
            let (src, src_tail) = src.split_at(lines);
            for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
                // SAFETY: SSE2 is part of x86-64. `s` and `d` are 16 bytes each (chunks
                // of `src` and `dst`, valid for reads and writes by the borrows); `d`
                // starts 16-byte aligned (`dst` starts a cache line, past `head`, and the
                // chunks are 16 bytes), as the streaming store requires; the load is
                // unaligned.
                unsafe {
                    let v = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
                    _mm_stream_si128(d.as_mut_ptr().cast::<__m128i>(), v);
                }
            }
            dst_tail.copy_from_slice(src_tail);
        }
        #[cfg(not(target_arch = "x86_64"))]
        dst.copy_from_slice(src);
    }

    /// Orders this thread's non-temporal stores before its later stores, so that whatever
    /// hands the output to another thread (a lock, a channel) comes after them.
    #[inline]
    pub(super) fn fence() {
        // SAFETY: SSE (for `sfence`) is part of x86-64; the fence has no other effect.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_sfence()
        };
    }
}
