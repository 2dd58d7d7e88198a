//! Reading: the chunks every box touches are fetched once through the scale's chunk source
//! (within an in-flight byte budget) and painted on the CPU pool straight into the callers'
//! buffers, decoded in place where a chunk lies wholly inside a zeroed output.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::BigArray;
use crate::cache::Entry;
use crate::codec;
use crate::error::{Error, Result};
use crate::format::first_error::FirstError;
use crate::format::precomputed::source::{stop_fetching, Budget, Fetched};
use crate::format::precomputed::Stored;
use crate::geometry::{Bbox, BoxCopy};
use crate::volume::{OutBuffer, Volume};
use crate::{interrupt, runtime};

/// Bytes a read may hold fetched and not yet painted, at least, from local stores (which
/// answer in microseconds: a few chunks per core keep decoding busy) and from remote ones
/// (whose latency needs many requests in flight: 64 chunks of 1 MiB, the default
/// `concurrency`). Either is a small fraction of a large read's output.
const MIN_INFLIGHT_BYTES: usize = 16 << 20;
const MIN_INFLIGHT_BYTES_REMOTE: usize = 64 << 20;

/// Permits of the in-flight budget are KiB, so that they fit tokio's `u32` counts.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The rows of a chunk that lies wholly inside a zeroed output buffer, for decoders that
/// write in place ([`codec::decodes_into_rows`]).
struct OutputRows {
    /// From the chunk's box to the output's; its region is the whole chunk.
    copy: BoxCopy,
    out: OutBuffer,
}

impl codec::ChunkRows for OutputRows {
    fn row(&mut self, c: usize, y: usize, z: usize) -> &mut [u8] {
        let (at, len) = self.copy.dst_row(c, y, z);
        // SAFETY: `dst_row` checks that the row lies in the region, which lies inside the
        // output box, so `at + len <= out.len`. The buffer is valid for the whole read and
        // initialised (zeroed: `Painter::in_place_target` hands out no other kind). Only
        // this chunk's task touches the region's bytes (see `OutBuffer`), and the slice
        // borrows `self`, so no two rows handed out here are alive at once.
        unsafe { std::slice::from_raw_parts_mut(self.out.ptr.add(at), len) }
    }
}

/// Paints decoded (or cached, or missing) chunks into the buffers of one many-box read.
struct Painter<'a> {
    array: &'a BigArray,
    /// Each box, where its voxels go, and whether that buffer already holds zeros.
    targets: &'a [(Bbox, OutBuffer)],
    /// For each chunk, the indices of the targets it overlaps.
    users: &'a std::collections::BTreeMap<[u64; 3], Vec<usize>>,
}

impl Painter<'_> {
    /// Copies `voxels` (the whole chunk at `cell`, or zeros when `None`) into every target
    /// the chunk overlaps.
    fn paint(&self, cell: [u64; 3], voxels: Option<&[u8]>) {
        let a = self.array;
        let chunk_box = a.scale().grid.chunk_box(cell);
        let (channels, itemsize) = (a.num_channels(), a.dtype().itemsize());
        for &r in self.users.get(&cell).into_iter().flatten() {
            let (bbox, out) = &self.targets[r];
            let Some(region) = chunk_box.intersect(bbox) else {
                continue;
            };
            if voxels.is_none() && out.zeroed {
                continue;
            }
            let copy = BoxCopy::new(&chunk_box, bbox, &region, channels, itemsize);
            // SAFETY: see `OutBuffer`: target `r`'s buffer is written only by the tasks of
            // this read, each for a different chunk, and chunks are disjoint boxes, so this
            // task owns the region's bytes. `voxels` holds the whole chunk
            // (`layout.raw_len() == copy.src_len()`: decoders and the cache hand over exactly
            // that many bytes).
            match voxels {
                Some(v) => unsafe { copy.copy_to_ptr(v, out.ptr) },
                None => unsafe { copy.zero_ptr(out.ptr) },
            }
        }
    }

    /// How many leading bytes of chunk `cell`'s decoded voxels its targets read, when that
    /// is at most half of them (a cutout ending early along the chunk's z axis): a gzip
    /// stream decoder can stop there, which beats decoding the whole chunk with libdeflate.
    fn short_prefix(&self, cell: [u64; 3], raw_len: usize) -> Option<usize> {
        let a = self.array;
        let chunk_box = a.scale().grid.chunk_box(cell);
        let (channels, itemsize) = (a.num_channels(), a.dtype().itemsize());
        let mut end = 0;
        for &r in self.users.get(&cell)? {
            let bbox = &self.targets[r].0;
            if let Some(region) = chunk_box.intersect(bbox) {
                end =
                    end.max(BoxCopy::new(&chunk_box, bbox, &region, channels, itemsize).src_end());
            }
        }
        (end <= raw_len / 2).then_some(end)
    }

    /// Where chunk `cell` can be decoded in place: only into a target it alone overlaps,
    /// wholly inside it, which already holds zeros (so is initialised memory).
    fn in_place_target(&self, cell: [u64; 3]) -> Option<OutputRows> {
        let [r] = self.users.get(&cell)?.as_slice() else {
            return None;
        };
        let (bbox, out) = &self.targets[*r];
        let chunk_box = self.array.scale().grid.chunk_box(cell);
        if !out.zeroed || !bbox.contains(&chunk_box) {
            return None;
        }
        let (channels, itemsize) = (self.array.num_channels(), self.array.dtype().itemsize());
        let copy = BoxCopy::new(&chunk_box, bbox, &chunk_box, channels, itemsize);
        Some(OutputRows { copy, out: *out })
    }

    /// A chunk from the cache: its voxels, zeros for an empty entry (a zero-length chunk
    /// file), or missing.
    fn paint_entry(&self, cell: [u64; 3], key: &str, entry: &Entry) -> Result<()> {
        match entry {
            None if !self.array.options.fill_missing => {
                return Err(Error::MissingChunk {
                    key: self.array.store.url_of(key),
                })
            }
            Some(v) if !v.is_empty() => self.paint(cell, Some(v)),
            _ => self.paint(cell, None),
        }
        Ok(())
    }

    /// A chunk as fetched: decoded and painted, then remembered if the handle caches.
    fn paint_fetched(&self, cell: [u64; 3], key: &str, found: Option<Stored>) -> Result<()> {
        let a = self.array;
        let cache = a.cache.as_deref();
        let entry: Entry = match found {
            None => None,
            // Zero-length: background, as CloudVolume has it.
            Some((bytes, _)) if bytes.is_empty() => Some(Arc::from(Vec::new())),
            Some((bytes, declared)) => {
                let url = a.store.url_of(key);
                let layout = a.layout(&a.scale().grid.chunk_box(cell));
                let encoding = &a.scale().encoding;
                // A chunk the cache keeps must be decoded whole, into a buffer of its own;
                // otherwise it may go straight into the output, or only its start be decoded.
                if cache.is_none() {
                    if codec::decodes_into_rows(encoding) {
                        if let Some(mut rows) = self.in_place_target(cell) {
                            return codec::decode_rows_as(
                                encoding, &url, &bytes, declared, &layout, &mut rows,
                            );
                        }
                    }
                    if let Some(prefix) = self.short_prefix(cell, layout.raw_len()) {
                        let paint = |voxels: &[u8]| self.paint(cell, Some(voxels));
                        let decoded = codec::decode_prefix_as(
                            encoding, &bytes, declared, &layout, prefix, paint,
                        );
                        if decoded.is_some() {
                            return Ok(());
                        }
                    }
                }
                codec::decode_as(encoding, &url, &bytes, declared, &layout, |voxels| {
                    self.paint(cell, Some(voxels));
                    if let Some(cache) = cache {
                        cache.insert(cell, Some(Arc::from(voxels)));
                    }
                })?;
                return Ok(());
            }
        };
        let result = self.paint_entry(cell, key, &entry);
        if let Some(cache) = cache {
            cache.insert(cell, entry);
        }
        result
    }
}

impl BigArray {
    /// [`Volume::read_many`] into raw buffers, which may be uninitialised: on success
    /// every byte of every buffer holds its voxel (zeros outside the bounds and for missing
    /// chunks; those are not written again where the buffer is `zeroed`), and nothing is
    /// ever read from them.
    ///
    /// # Safety
    /// Each buffer must be valid for writes of its length for the whole call, and no other
    /// target or thread may access those bytes meanwhile; a buffer marked `zeroed` must
    /// hold zeros.
    pub(crate) unsafe fn read_many_raw(&self, requests: &[(Bbox, OutBuffer)]) -> Result<()> {
        interrupt::begin();
        self.check_supported()?;
        for (bbox, out) in requests {
            self.check_buffer(bbox, out.len)?;
            if !self.bounds().contains(bbox) && !out.zeroed {
                // SAFETY: the caller's guarantee: `out` is valid for `len` bytes of writes.
                unsafe { std::ptr::write_bytes(out.ptr, 0, out.len) };
            }
        }
        // Each touched chunk once, with the requests it serves.
        let grid = self.scale().grid;
        let mut users: std::collections::BTreeMap<[u64; 3], Vec<usize>> = Default::default();
        for (r, (bbox, _)) in requests.iter().enumerate() {
            for cell in grid.chunks_touching(bbox) {
                users.entry(cell).or_default().push(r);
            }
        }
        let mut cells = Vec::with_capacity(users.len());
        let mut cached = Vec::new();
        for cell in users.keys() {
            match self.cache.as_ref().and_then(|c| c.get(*cell)) {
                Some(entry) => cached.push((*cell, entry)),
                None => cells.push(*cell),
            }
        }
        let failure = FirstError::default();
        let painter = Painter {
            array: self,
            targets: requests,
            users: &users,
        };
        // Everything in the cache: small reads (one chunk) paint on this thread, skipping the
        // IO runtime and the pool's hand-offs, which would cost more than the copy.
        if cells.is_empty() && cached.len() <= 1 {
            for (cell, entry) in cached {
                failure.run(|| painter.paint_entry(cell, &self.chunk_key(cell), &entry));
            }
        } else {
            let (keys, mut fetched) = self.fetch_cells(&cells);
            let io = runtime::io();
            runtime::cpu().in_place_scope(|scope| {
                let (painter, failure) = (&painter, &failure);
                for (cell, entry) in cached {
                    let key = self.chunk_key(cell);
                    scope.spawn(move |_| failure.run(|| painter.paint_entry(cell, &key, &entry)));
                }
                loop {
                    let (i, found, held) = match interrupt::recv(&io, &mut fetched) {
                        Ok(Some(item)) => item,
                        Ok(None) => break,
                        Err(e) => {
                            // The chunk tasks already spawned write into the output buffers,
                            // so the scope still waits for them (they skip their work now
                            // that the read has failed).
                            failure.fail(e);
                            return stop_fetching(&mut fetched);
                        }
                    };
                    let found = match found {
                        Ok(found) => found,
                        Err(e) => return failure.fail(e),
                    };
                    // A chunk failed to decode: the rest of the read is wasted work.
                    if failure.stopped() {
                        return stop_fetching(&mut fetched);
                    }
                    let (cell, key) = (cells[i], &keys[i]);
                    scope.spawn(move |_| {
                        failure.run(|| painter.paint_fetched(cell, key, found));
                        drop(held);
                    });
                }
            });
        }
        failure.into_result()
    }

    /// Starts fetching the stored bytes of `cells`; results arrive as they complete, tagged
    /// with their index in `cells`, next to the keys that name each chunk in errors.
    pub(crate) fn fetch_cells(&self, cells: &[[u64; 3]]) -> (Vec<String>, Fetched) {
        let keys = cells.iter().map(|&g| self.source.key_of(g)).collect();
        (keys, self.source.fetch(cells, self.inflight_budget()))
    }

    /// The in-flight byte budget of one read (in KiB permits) and a chunk's cost in it (its
    /// decoded size, which bounds what is stored for it, give or take a header).
    fn inflight_budget(&self) -> Budget {
        let chunk = self
            .layout(&self.scale().grid.chunk_box([0, 0, 0]))
            .raw_len();
        let least = if self.store.is_remote() {
            MIN_INFLIGHT_BYTES_REMOTE
        } else {
            MIN_INFLIGHT_BYTES
        };
        let budget = kib(least.max(4 * runtime::threads() * chunk));
        let budget = budget.min(Semaphore::MAX_PERMITS as u32);
        Budget {
            permits: Arc::new(Semaphore::new(budget as usize)),
            cost: kib(chunk).min(budget),
        }
    }
}
