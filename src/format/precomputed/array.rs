//! `BigArray`: one scale of a layer. Reads plan the chunks a box touches, fetch them
//! concurrently on the IO runtime through the scale's chunk source (chunk files or shards,
//! see `source`), and decode each on the CPU pool straight into the caller's buffer. Writes
//! paint the box into chunks (over their old voxels only for partly covered ones), and the
//! chunk source stores them by read-modify-write.
//!
//! `BigArray` is the Precomputed [`Volume`]. Reads and writes block the calling thread;
//! async callers use [`VolumeExt::read_async`](crate::VolumeExt::read_async) and
//! `write_async` (tokio panics when its runtime's threads block).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::sharding::{self, ShardReader};
use super::source::ShardedChunks;
use super::source::{block_on, stop_fetching, Budget, ChunkFiles, ChunkSource, Fetched};
use super::{ChunkStore, Info, LayerSpec, Scale, Stored};
use crate::cache::{CacheStats, ChunkCache, Entry};
use crate::codec::{self, transport, ChunkLayout, Compression};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::{Bbox, BoxCopy};
use crate::open::OpenOptions;
use crate::store::{self, Handle};
use crate::volume::{OutBuffer, ReadTarget, Volume};
use crate::{interrupt, runtime};

/// `info` files larger than this are refused rather than read into memory.
const MAX_INFO_BYTES: usize = 64 << 20;
/// One scale of a Neuroglancer Precomputed layer. Cloning is cheap and shares the store,
/// shard reader and cache.
#[derive(Debug, Clone)]
pub struct BigArray {
    pub(crate) store: Handle,
    /// The scale's chunks: one object each, or packed into shards.
    pub(crate) source: Arc<dyn ChunkSource>,
    /// Decoded chunks kept for later reads (`OpenOptions::cache_bytes`).
    pub(crate) cache: Option<Arc<ChunkCache>>,
    info: Info,
    options: OpenOptions,
}

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
    /// Runs one chunk's task, turning an error or a panic into the read's failure.
    fn guarded(&self, fail: &(dyn Fn(Error) + Sync), task: impl FnOnce() -> Result<()>) {
        let result =
            catch_unwind(AssertUnwindSafe(task)).unwrap_or_else(|p| Err(Error::from_panic(p)));
        if let Err(e) = result {
            fail(e);
        }
    }

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
    /// Opens the layer at `url` (a path, `file://` or `memory://`).
    pub fn open(url: &str, options: OpenOptions) -> Result<Self> {
        Self::open_store(store::open_url(url, false)?, options)
    }

    /// Opens the layer held by `store` (an `Arc<dyn Store>`, or a [`Handle`]).
    pub fn open_store(store: impl Into<Handle>, options: OpenOptions) -> Result<Self> {
        let store = store.into();
        interrupt::begin();
        let url = store.url_of("info");
        let bytes = block_on(store.get_bytes("info"))?.ok_or_else(|| Error::LayerNotFound {
            url: store.url_of(""),
        })?;
        // An info that is too large, or a gzip/zstd body that is corrupt or inflates past the
        // bound, is bad metadata: an InfoError, not a chunk's ChunkDecodeError.
        let bad = |reason: String| Error::info(&url, "info", reason);
        if bytes.len() > MAX_INFO_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_INFO_BYTES} an info may hold",
                bytes.len()
            )));
        }
        let text =
            transport::decompress_small(&url, &bytes, MAX_INFO_BYTES).map_err(|e| match e {
                Error::ChunkDecode { reason, .. } => bad(reason),
                e => e,
            })?;
        let info = Info::parse(&url, &text)?;
        Self::with_info(store, info, options)
    }

    /// Writes the `info` of a new layer at `url` and opens it. An existing layer is an error
    /// unless `overwrite` is set.
    pub fn create(
        url: &str,
        spec: &LayerSpec,
        overwrite: bool,
        options: OpenOptions,
    ) -> Result<Self> {
        Self::create_in(store::open_url(url, true)?, spec, overwrite, options)
    }

    /// [`BigArray::create`] in a given store.
    pub fn create_in(
        store: impl Into<Handle>,
        spec: &LayerSpec,
        overwrite: bool,
        options: OpenOptions,
    ) -> Result<Self> {
        let store = store.into();
        interrupt::begin();
        let url = store.url_of("info");
        let info = Info::new(&url, spec)?;
        let encoding = &info.scales[0].encoding;
        if !encoding.codec().supported() {
            let supported: Vec<_> = codec::registry::names().map(|n| format!("{n:?}")).collect();
            let why = match codec::registry::left_out_feature(encoding.name()) {
                Some(_) => format!(": {}", codec::registry::why_unsupported(encoding.name())),
                None => String::new(),
            };
            return Err(Error::invalid(format!(
                "{url}: encoding {:?} cannot be written (supported: {}){why}",
                encoding.name(),
                supported.join(", ")
            )));
        }
        if let Err((field, reason)) = codec::check(encoding, spec.dtype, spec.num_channels) {
            return Err(Error::invalid(format!("{url}: {reason} (field '{field}')")));
        }
        let old = block_on(store.get_bytes("info"))?;
        if !overwrite && old.is_some() {
            return Err(Error::LayerExists {
                url: store.url_of(""),
            });
        }
        if overwrite {
            // An overwritten layer starts empty: old chunks would otherwise read back under
            // the new info (or fail to decode with another data type). Removed first, so a
            // reader never sees the new info over old data.
            for dir in scale_dirs(old.as_deref(), &info) {
                block_on(store.writer(&dir)?.delete_dir(&dir))?;
            }
        }
        block_on(
            store
                .writer("info")?
                .put("info", Bytes::from(info.to_json())),
        )?;
        Self::with_info(store, info, options)
    }

    /// Replaces the layer's `info` with `json` (e.g. to add the scales of a pyramid) and
    /// returns a handle on the new `info` with this handle's options. The data type, channel
    /// count and full-resolution scale must stay as they are: rewriting those would
    /// reinterpret every chunk already stored.
    pub fn update_info(&self, json: &str) -> Result<Self> {
        interrupt::begin();
        let store = self.store.clone();
        let url = store.url_of("info");
        let new = Info::parse(&url, json.as_bytes())?;
        let (old0, new0) = (&self.info.scales[0], &new.scales[0]);
        let kept = [
            ("data_type", new.data_type == self.info.data_type),
            ("num_channels", new.num_channels == self.info.num_channels),
            ("scales[0].key", new0.key == old0.key),
            ("scales[0].size", new0.grid.size == old0.grid.size),
            (
                "scales[0].voxel_offset",
                new0.grid.voxel_offset == old0.grid.voxel_offset,
            ),
            ("scales[0].chunk_sizes", new0.grid.chunk == old0.grid.chunk),
        ];
        if let Some((field, _)) = kept.iter().find(|(_, same)| !same) {
            return Err(Error::info(&url, *field, "an info update cannot change it"));
        }
        block_on(
            store
                .writer("info")?
                .put("info", Bytes::from(new.to_json())),
        )?;
        Self::with_info(store, new, self.options.clone())
    }

    fn with_info(store: Handle, info: Info, options: OpenOptions) -> Result<Self> {
        if options.mip >= info.scales.len() {
            return Err(Error::invalid(format!(
                "{}: mip {} does not exist (the layer has {} scales)",
                store.url_of(""),
                options.mip,
                info.scales.len()
            )));
        }
        if options.concurrency == 0 {
            return Err(Error::invalid("concurrency must be at least 1"));
        }
        let scale = &info.scales[options.mip];
        let voxel_bytes = info.data_type.itemsize() * info.num_channels;
        let source: Arc<dyn ChunkSource> = match &scale.sharding {
            Some(Ok(spec)) => {
                let reader = ShardReader::new(store.reader().clone(), spec.clone(), &scale.key);
                Arc::new(ShardedChunks::new(
                    store.clone(),
                    Arc::new(reader),
                    scale.grid,
                    voxel_bytes,
                    options.concurrency,
                ))
            }
            // An invalid sharding spec fails every read and write (`check_supported`).
            _ => Arc::new(ChunkFiles::new(
                Arc::new(ChunkStore::new(store.clone())),
                &scale.key,
                scale.grid,
                options
                    .compression
                    .unwrap_or_else(|| codec::default_compression(&scale.encoding)),
                options.concurrency,
            )),
        };
        Ok(BigArray {
            store,
            source,
            cache: (options.cache_bytes > 0)
                .then(|| Arc::new(ChunkCache::new(options.cache_bytes))),
            info,
            options,
        })
    }

    /// The layer's parsed `info`.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The scale this handle reads and writes.
    pub fn scale(&self) -> &Scale {
        &self.info.scales[self.options.mip]
    }

    /// The options this handle was opened with.
    pub fn options(&self) -> &OpenOptions {
        &self.options
    }

    /// Bytes per voxel, all channels together.
    fn voxel_bytes(&self) -> usize {
        self.dtype().itemsize() * self.num_channels()
    }

    /// The key naming chunk `g`'s stored bytes (in messages, for a sharded scale).
    pub(crate) fn chunk_key(&self, g: [u64; 3]) -> String {
        self.source.key_of(g)
    }

    /// Errors unless this engine can decode and encode the scale's chunks.
    pub(crate) fn check_supported(&self) -> Result<()> {
        let scale = self.scale();
        let url = self.store.url_of("info");
        let field = |f: &str| format!("scales[{}].{f}", self.options.mip);
        if let Err((name, reason)) =
            codec::check(&scale.encoding, self.dtype(), self.num_channels())
        {
            let name = match name.as_str() {
                "encoding" => field("encoding"),
                _ => name,
            };
            return Err(Error::info(&url, name, reason));
        }
        match &scale.sharding {
            Some(Err((name, reason))) => {
                return Err(Error::info(&url, field(name), reason.clone()))
            }
            Some(Ok(_)) if sharding::morton_bits(&scale.grid).is_none() => {
                return Err(Error::info(
                    &url,
                    field("sharding"),
                    "the chunk grid needs more than 64 Morton bits, so it cannot be sharded",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn check_buffer(&self, bbox: &Bbox, len: usize) -> Result<()> {
        let expected = bbox
            .num_voxels()
            .and_then(|n| n.checked_mul(self.voxel_bytes()));
        if expected != Some(len) {
            return Err(Error::invalid(format!(
                "buffer holds {len} bytes, the box {bbox:?} needs {expected:?}"
            )));
        }
        Ok(())
    }

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
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        // Set once the read has failed or was interrupted: chunk tasks not yet started then
        // skip their work (the buffers are dropped unseen).
        let stop = AtomicBool::new(false);
        let fail = |e: Error| {
            stop.store(true, Ordering::Relaxed);
            failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        };
        let painter = Painter {
            array: self,
            targets: requests,
            users: &users,
        };
        // Everything in the cache: small reads (one chunk) paint on this thread, skipping the
        // IO runtime and the pool's hand-offs, which would cost more than the copy.
        if cells.is_empty() && cached.len() <= 1 {
            for (cell, entry) in cached {
                painter.guarded(&fail, || {
                    painter.paint_entry(cell, &self.chunk_key(cell), &entry)
                });
            }
        } else {
            let (keys, mut fetched) = self.fetch_cells(&cells);
            let io = runtime::io();
            runtime::cpu().in_place_scope(|scope| {
                let (painter, fail, stop) = (&painter, &fail, &stop);
                for (cell, entry) in cached {
                    let key = self.chunk_key(cell);
                    scope.spawn(move |_| {
                        if !stop.load(Ordering::Relaxed) {
                            painter.guarded(fail, || painter.paint_entry(cell, &key, &entry))
                        }
                    });
                }
                loop {
                    let (i, found, held) = match interrupt::recv(&io, &mut fetched) {
                        Ok(Some(item)) => item,
                        Ok(None) => break,
                        Err(e) => {
                            // The chunk tasks already spawned write into the output buffers,
                            // so the scope still waits for them (they skip their work now
                            // that `stop` is set).
                            fail(e);
                            return stop_fetching(&mut fetched);
                        }
                    };
                    let found = match found {
                        Ok(found) => found,
                        Err(e) => return fail(e),
                    };
                    // A chunk failed to decode: the rest of the read is wasted work.
                    if stop.load(Ordering::Relaxed) {
                        return stop_fetching(&mut fetched);
                    }
                    let (cell, key) = (cells[i], &keys[i]);
                    scope.spawn(move |_| {
                        if !stop.load(Ordering::Relaxed) {
                            painter.guarded(fail, || painter.paint_fetched(cell, key, found));
                        }
                        drop(held);
                    });
                }
            });
        }
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The chunks `bbox` touches, only those touching one of the boxes `only` when given.
    pub(crate) fn cells_of(&self, bbox: &Bbox, only: Option<&[Bbox]>) -> Vec<[u64; 3]> {
        let grid = self.scale().grid;
        let cells = grid.chunks_touching(bbox);
        let Some(only) = only else {
            return cells;
        };
        let wanted: std::collections::HashSet<[u64; 3]> =
            only.iter().flat_map(|b| grid.chunks_touching(b)).collect();
        cells.into_iter().filter(|g| wanted.contains(g)).collect()
    }

    /// Which chunks of `bbox` the store holds, without fetching or decoding their data:
    /// each chunk `bbox` touches (its grid cell) with its stored size in bytes, or `None`
    /// when it is absent (it reads as zeros). A sharded scale answers from the shard and
    /// minishard indexes; otherwise each chunk's objects are probed for their size (a
    /// file's metadata, a HEAD request), except that a remote store asked about much of a
    /// scale lists the scale's objects instead (one request per 1000).
    pub fn chunk_sizes(&self, bbox: &Bbox) -> Result<Vec<([u64; 3], Option<u64>)>> {
        interrupt::begin();
        self.check_supported()?;
        let cells = self.scale().grid.chunks_touching(bbox);
        let sizes = self.source.sizes(&cells)?;
        Ok(cells.into_iter().zip(sizes).collect())
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
        let budget = kib(least.max(4 * runtime::cores() * chunk));
        let budget = budget.min(Semaphore::MAX_PERMITS as u32);
        Budget {
            permits: Arc::new(Semaphore::new(budget as usize)),
            cost: kib(chunk).min(budget),
        }
    }

    /// [`BigArray::write_from`], writing only the chunks that touch one of the boxes `only`
    /// (all of them with `None`): the others in `bbox` keep what they hold, or stay absent.
    /// Copies use it to leave the chunks a sparse source lacks unwritten.
    fn write_box(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        interrupt::begin();
        self.check_supported()?;
        self.check_buffer(bbox, data.len())?;
        let bounds = self.bounds();
        if !bounds.contains(bbox) {
            return Err(Error::OutOfBounds {
                reason: format!(
                    "{}: write box {:?}..{:?} reaches outside the layer bounds {:?}..{:?}; nothing was written",
                    self.url(),
                    bbox.start,
                    bbox.stop,
                    bounds.start,
                    bounds.stop
                ),
            });
        }
        let result = self.write_chunks(bbox, data, only);
        // Whatever happened, the cache must not keep what the store may no longer hold.
        if let Some(cache) = &self.cache {
            for cell in self.scale().grid.chunks_touching(bbox) {
                cache.remove(cell);
            }
        }
        result
    }

    fn write_chunks(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        let cells = self.cells_of(bbox, only);
        let compression = self.compression();
        let encode = |g: [u64; 3], old: Option<(&[u8], Compression)>| {
            let url = self.store.url_of(&self.source.key_of(g));
            let bytes = self.repaint_chunk(g, bbox, data, old, compression, &url)?;
            Ok(Bytes::from(bytes))
        };
        self.source.write(bbox, &cells, &encode)
    }

    /// The stored bytes of chunk `g` once `bbox`'s part of `data` is painted over it: over
    /// `old` (its stored bytes and declared compression) where the box covers the chunk only
    /// in part, else over nothing. Both write paths store this; `url` names the chunk.
    fn repaint_chunk(
        &self,
        g: [u64; 3],
        bbox: &Bbox,
        data: &[u8],
        old: Option<(&[u8], Compression)>,
        compression: Compression,
        url: &str,
    ) -> Result<Vec<u8>> {
        let chunk_box = self.scale().grid.chunk_box(g);
        let Some(region) = chunk_box.intersect(bbox) else {
            unreachable!("chunks_touching returns only overlapping chunks")
        };
        let (channels, itemsize) = (self.num_channels(), self.dtype().itemsize());
        let paint = BoxCopy::new(bbox, &chunk_box, &region, channels, itemsize);
        let layout = self.layout(&chunk_box);
        let encoding = &self.scale().encoding;
        codec::with_scratch(paint.dst_len(), |voxels| {
            if region != chunk_box {
                match old.filter(|(b, _)| !b.is_empty()) {
                    Some((old, declared)) => {
                        codec::decode_as(encoding, url, old, declared, &layout, |v| {
                            voxels.copy_from_slice(v)
                        })?
                    }
                    None => voxels.fill(0),
                }
            }
            paint.copy(data, voxels);
            codec::encode(encoding, voxels, &layout, compression).map_err(|e| match e {
                Error::InvalidArgument { reason } => Error::invalid(format!("{url}: {reason}")),
                other => other,
            })
        })
    }

    /// The transport compression this handle writes.
    pub fn compression(&self) -> Compression {
        self.source.compression()
    }

    /// What a chunk covering `chunk_box` holds once decoded.
    pub(crate) fn layout(&self, chunk_box: &Bbox) -> ChunkLayout {
        ChunkLayout {
            shape: chunk_box.shape().map(|n| n as usize),
            channels: self.num_channels(),
            dtype: self.dtype(),
        }
    }
}

impl Volume for BigArray {
    fn format(&self) -> &'static str {
        "precomputed"
    }

    /// The URL of the layer root.
    fn url(&self) -> String {
        self.store.url_of("").trim_end_matches('/').to_string()
    }

    fn dtype(&self) -> DType {
        self.info.data_type
    }

    fn num_channels(&self) -> usize {
        self.info.num_channels
    }

    /// The layer bounds at this scale.
    fn bounds(&self) -> Bbox {
        self.scale().grid.bounds()
    }

    fn chunk_shape(&self) -> [u64; 3] {
        self.scale().grid.chunk
    }

    fn resolution(&self) -> [f64; 3] {
        self.scale().resolution
    }

    fn mip(&self) -> usize {
        self.options.mip
    }

    fn num_mips(&self) -> usize {
        self.info.scales.len()
    }

    fn encoding(&self) -> String {
        self.scale().encoding.name().to_string()
    }

    /// The `info` file (unknown keys included).
    fn metadata_json(&self) -> String {
        self.info.to_json()
    }

    /// False over a read-only store (HTTP).
    fn writable(&self) -> bool {
        self.store.writer("info").is_ok()
    }

    /// Every chunk the boxes touch is fetched and decoded once, however many boxes share
    /// it, and the decoding of all of them shares the CPU pool.
    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        let requests: Vec<(Bbox, OutBuffer)> = targets.iter().map(|t| (t.bbox, t.out)).collect();
        // SAFETY: each buffer comes from a `ReadTarget`, which borrows it exclusively for as
        // long as `targets` lives, and holds zeros where it says so.
        unsafe { self.read_many_raw(&requests) }
    }

    /// `bbox` must lie inside the bounds. Each chunk is replaced atomically; with `only`,
    /// the other chunks in `bbox` keep what they hold, or stay absent (copies leave the
    /// chunks a sparse source lacks unwritten this way).
    fn write_from_only(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        self.write_box(bbox, data, only)
    }

    fn stored_chunks(&self, bbox: &Bbox) -> Result<Option<Vec<(Bbox, u64)>>> {
        let grid = self.scale().grid;
        let sizes = self.chunk_sizes(bbox)?;
        Ok(Some(
            sizes
                .into_iter()
                .filter_map(|(g, size)| size.map(|size| (grid.chunk_box(g), size)))
                .collect(),
        ))
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The scale directories an overwrite of a layer empties: those of every scale of the old
/// `info` (the new info replaces it whole, so all its scales were the layer's) and of the
/// `new` one. The old info is read leniently, as JSON naming `scales[*].key`: one this engine
/// cannot open still names its scales, and one that is not even JSON names none. Keys that
/// could reach outside the layer (empty, absolute, `.` or `..` segments) or name its `info`
/// are skipped: nothing outside the scales' own directories is ever removed.
fn scale_dirs(old: Option<&[u8]>, new: &Info) -> Vec<String> {
    let mut keys: std::collections::BTreeSet<String> =
        new.scales.iter().map(|s| s.key.clone()).collect();
    let old = old.and_then(|bytes| transport::decompress_small("info", bytes, MAX_INFO_BYTES).ok());
    if let Some(Ok(value)) = old.map(|text| serde_json::from_slice::<serde_json::Value>(&text)) {
        let scales = value.get("scales").and_then(|s| s.as_array());
        for scale in scales.into_iter().flatten() {
            if let Some(key) = scale.get("key").and_then(|k| k.as_str()) {
                keys.insert(key.to_string());
            }
        }
    }
    keys.into_iter()
        .map(|k| k.trim_end_matches('/').to_string())
        .filter(|k| {
            !k.is_empty()
                && k != "info"
                && k.split('/').all(|part| !matches!(part, "" | "." | ".."))
        })
        .collect()
}
