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
    decode_rows(bytes, layout, &mut rows)
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
/// made. Every voxel of every row is written when this succeeds.
pub fn decode_rows<R: ChunkRows + ?Sized>(
    bytes: &[u8],
    layout: &ChunkLayout,
    rows: &mut R,
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
        1 => Decoder::<u8>::run(&header, &sections, rows),
        2 => Decoder::<u16>::run(&header, &sections, rows),
        4 => Decoder::<u32>::run(&header, &sections, rows),
        _ => Decoder::<u64>::run(&header, &sections, rows),
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
    values: &'a [u8],
    width: usize,
    pos: usize,
    zeros: u64,
}

impl<'a> Windows<'a> {
    fn new(s: &Sections<'a>, width: usize) -> Self {
        Windows {
            words: s.windows,
            values: s.values,
            width,
            pos: 0,
            zeros: 0,
        }
    }

    /// The bit pattern of window value `index`.
    fn value(&self, index: u64) -> Result<u64, String> {
        let w = self.width;
        if self.values.is_empty() {
            // The package gives no boundaries at all when the stream has no values.
            return Ok(0);
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| {
                let at = i.checked_mul(w)?;
                self.values.get(at..at.checked_add(w)?)
            })
            .map(read_le)
            .ok_or_else(|| {
                format!(
                    "window value {index} is past the {} values",
                    self.values.len() / w
                )
            })
    }

    /// Fills `row` with the next blocks' bit patterns. Blocks past the end of the words
    /// are index 0, as in the package (its window array starts zeroed).
    fn fill(&mut self, row: &mut [u64]) -> Result<(), String> {
        let zero = self.value(0)?;
        let mut i = 0;
        while i < row.len() {
            if self.zeros > 0 {
                let n = usize::try_from(self.zeros)
                    .unwrap_or(usize::MAX)
                    .min(row.len() - i);
                row[i..i + n].fill(zero);
                i += n;
                self.zeros -= n as u64;
                continue;
            }
            let Some(word) = self.words.get(self.pos..self.pos + self.width) else {
                row[i..].fill(zero);
                return Ok(());
            };
            self.pos += self.width;
            let word = read_le(word);
            if word & 1 == 1 {
                self.zeros = word >> 1;
            } else {
                row[i] = if word >> 1 == 0 {
                    zero
                } else {
                    self.value(word >> 1)?
                };
                i += 1;
            }
        }
        Ok(())
    }
}

/// One slice's state: its boundary bits (a row of `words` words a row, as
/// [`Runs::label`] reads them), the runs of the other voxels, the global number of its
/// first component, and (once settled) its labels.
struct Slice<T> {
    bits: Vec<u64>,
    runs: Runs,
    base: u64,
    labels: Vec<T>,
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
}

impl<'a, T: Label> Decoder<'a, T> {
    fn run<R: ChunkRows + ?Sized>(h: &Header, s: &Sections, rows: &mut R) -> Result<(), String> {
        let [sx, sy, sz] = h.shape;
        if sx == 0 || sy == 0 || sz == 0 {
            // No voxels, so no rows to write (and no row of bits to chunk by).
            return Ok(());
        }
        let sxy = sx * sy;
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
        };
        if h.connectivity == 6 {
            d.number = Some(d.join_slices()?);
        }
        let new_slice = || Slice::<T> {
            bits: vec![0; sx.div_ceil(64) * sy],
            runs: Runs::default(),
            base: 0,
            labels: vec![T::default(); sxy],
        };
        // `cur` is settled row by row while `next` is only labelled (a location may name
        // one of its voxels); `prev`, settled, is what `cur`'s locations see below.
        let (mut prev, mut cur, mut next) = (new_slice(), new_slice(), new_slice());
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
            let below = (z > 0).then_some(&prev);
            let above = (z + 1 < sz).then_some(&next);
            d.settle(&mut cur, below, above, &mut locations, rows, z)?;
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
        let zshift = xs * ys * (z % zs);
        // A window holds at most 64 bits, so a block row's bits and their shift fit a word.
        let mask = u64::MAX >> (64 - xs);
        let pad = if sx % 64 == 0 {
            0
        } else {
            u64::MAX << (sx % 64)
        };
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
    fn label(&mut self, slice: &mut Slice<T>, base: u64) -> u64 {
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
    fn fill_table(&mut self, slice: &Slice<T>) -> Result<(), String> {
        let count = slice.runs.count();
        self.table.clear();
        self.table.push(T::default());
        for c in 0..u64::from(count) {
            let label = self.id(slice.base + c)?;
            self.table.push(label);
        }
        Ok(())
    }

    /// Paints slice `cur`'s runs with their ids and settles its boundary voxels in raster
    /// order from their neighbours or the next locations, one row at a time, handing each
    /// row to `rows` while it is still in cache. A voxel not settled yet reads as 0 (the
    /// package's labels start so), wherever a location points at it.
    fn settle<R: ChunkRows + ?Sized>(
        &self,
        cur: &mut Slice<T>,
        prev: Option<&Slice<T>>,
        next: Option<&Slice<T>>,
        locations: &mut std::slice::ChunksExact<u8>,
        rows: &mut R,
        z: usize,
    ) -> Result<(), String> {
        let (sx, sy) = (self.sx, self.sy);
        let six = self.h.connectivity == 6;
        let words = self.words;
        let bits = &cur.bits;
        let runs = &cur.runs;
        let table = &self.table;
        let mut take = || {
            locations
                .next()
                .map(T::read)
                .ok_or("the locations run out before the boundary voxels")
        };
        for y in 0..sy {
            let (done, rest) = cur.labels.split_at_mut(y * sx);
            let line = &mut rest[..sx];
            let up = if y > 0 {
                &done[(y - 1) * sx..]
            } else {
                &[][..]
            };
            let row = runs.row(y);
            for &(start, end, c) in row {
                line[start as usize..end as usize].fill(table[c as usize]);
            }
            let above = match y {
                0 => &[][..],
                _ => &bits[(y - 1) * words..][..words],
            };
            let below = prev.map(|p| (&p.bits[y * words..][..words], &p.labels[y * sx..]));
            // The boundary voxels are the gaps between the row's runs: a gap's first voxel
            // has a non-boundary voxel on its left (unless it starts the row), the others a
            // boundary voxel; its last one a non-boundary voxel on its right (unless it
            // ends the row).
            for k in 0..=row.len() {
                let start = if k == 0 { 0 } else { row[k - 1].1 as usize };
                let end = row.get(k).map_or(sx, |r| r.0 as usize);
                for x in start..end {
                    if x == start && x > 0 {
                        line[x] = line[x - 1];
                        continue;
                    }
                    if y > 0 && !is_boundary(above, x) {
                        line[x] = up[x];
                        continue;
                    }
                    if let (true, Some((bits, labels))) = (six, below) {
                        if !is_boundary(bits, x) {
                            line[x] = labels[x];
                            continue;
                        }
                    }
                    let code = take()?.to_u64();
                    let bad = |what: &str| format!("location {code} points {what} the chunk");
                    line[x] = match code {
                        0 if x > 0 => line[x - 1],
                        // Painted already where it is the next run's first voxel.
                        1 if x + 1 < sx => match x + 1 == end {
                            true => line[x + 1],
                            false => T::default(),
                        },
                        2 if y > 0 => up[x],
                        3 if y + 1 < sy => match run_at(runs.row(y + 1), x) {
                            Some(c) => table[c as usize],
                            None => T::default(),
                        },
                        4 => below
                            .map(|(_, labels)| labels[x])
                            .ok_or_else(|| bad("below"))?,
                        5 => {
                            let n = next.ok_or_else(|| bad("above"))?;
                            match run_at(n.runs.row(y), x) {
                                Some(c) => self.id(n.base + u64::from(c) - 1)?,
                                None => T::default(),
                            }
                        }
                        0..=3 => return Err(bad("outside")),
                        6 => take()?,
                        _ => T::from_u64(code - 7),
                    };
                }
            }
            let out = rows.row(0, y, z);
            if cfg!(target_endian = "little") {
                // The labels' own bytes are the little-endian row.
                let bytes: &[u8] = bytemuck::cast_slice(line);
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
            } else {
                for (o, &label) in out.chunks_exact_mut(T::WIDTH).zip(line.iter()) {
                    label.write(o);
                }
            }
        }
        Ok(())
    }
}
