//! Reading a Zarr array: the objects (chunks or shards) the boxes touch are fetched once on
//! the IO runtime, within an in-flight byte budget; each stored chunk (a shard's inner chunk
//! included) is decoded on the CPU pool and copied into every box it overlaps, straight
//! into the output where it fills a contiguous part of one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::array::ZarrArray;
use super::codecs::{ChunkRepr, CodecChain, CodecError, ShardingCodec};
use crate::cache::Entry;
use crate::error::{Error, Result};
use crate::format::first_error::FirstError;
use crate::nd::{contiguous_offset, copy_region_to_ptr, fill_region_ptr, NdBox, NdGrid};
use crate::store::Handle;
use crate::volume::OutBuffer;
use crate::{interrupt, runtime};

/// Bytes a read may hold fetched and not yet painted, at least (see the Precomputed read).
const MIN_INFLIGHT_BYTES: usize = 16 << 20;
const MIN_INFLIGHT_BYTES_REMOTE: usize = 64 << 20;
/// Objects a read may hold fetched ahead of the painting, per core. A local fetch is a copy
/// out of the page cache, as quick as a decode, so two per core keep the cores busy; more
/// only raises the peak memory (an uncompressed 32 MiB chunk held ahead is 32 MiB more).
/// A remote fetch waits on the network, so more of them stay in flight.
const AHEAD_PER_CORE: usize = 2;
const AHEAD_PER_CORE_REMOTE: usize = 4;

/// A stored chunk as fetched: its box in the array and its encoded bytes (`None`: missing).
pub(super) struct Piece {
    pub(super) bbox: NdBox,
    pub(super) bytes: Option<Bytes>,
}

/// What one fetched object yields, tagged with its index among the objects.
type Fetched = (usize, Result<Vec<Piece>>, Option<Arc<OwnedSemaphorePermit>>);

/// How to fetch one object: whole, or (for a shard the read needs only part of) its index
/// and then the inner chunks in `needed`.
struct Job {
    key: String,
    /// The object's box (the whole chunk or shard, even past the array's edge).
    bbox: NdBox,
    /// For a shard: the inner chunks (C-order index within the shard) the read needs;
    /// `None`: all of them.
    needed: Option<Vec<usize>>,
}

thread_local! {
    /// Each pool thread's decode buffer, kept between chunks (a chunk-sized allocation per
    /// chunk would cost page faults on every one).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decodes with `chain` into a reused buffer of `len` bytes and hands it to `f`.
fn with_decoded<R>(
    chain: &CodecChain,
    encoded: &[u8],
    repr: &ChunkRepr,
    len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, CodecError> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        chain.decode_into(encoded, repr, &mut buf[..len])?;
        Ok(f(&buf[..len]))
    })
}

impl ZarrArray {
    /// Reads each box into its buffer (see [`crate::NdVolume::read_regions`]).
    ///
    /// # Safety
    /// Each buffer must be valid for writes of its length for the whole call, and no other
    /// target or thread may touch those bytes meanwhile; one marked `zeroed` must hold zeros.
    pub(super) unsafe fn read_raw(&self, targets: &[(NdBox, OutBuffer)]) -> Result<()> {
        interrupt::begin();
        let itemsize = self.meta.dtype.itemsize();
        let rank = self.meta.shape.len();
        let bounds = self.bounds_nd();
        let fill = &self.meta.fill_value;
        let fill_is_zero = fill.iter().all(|&b| b == 0);
        let mut users: BTreeMap<Vec<u64>, Vec<usize>> = BTreeMap::new();
        for (i, (region, out)) in targets.iter().enumerate() {
            if region.ndim() != rank {
                return Err(Error::invalid(format!(
                    "{}: box of {} axes for an array of {rank}",
                    crate::Volume::url(self),
                    region.ndim()
                )));
            }
            if region.num_bytes(itemsize) != Some(out.len) {
                return Err(Error::invalid(format!(
                    "buffer holds {} bytes, the box {region:?} needs {:?}",
                    out.len,
                    region.num_bytes(itemsize)
                )));
            }
            let filled_already = fill_is_zero && out.zeroed;
            if !bounds.contains(region) && !filled_already {
                // SAFETY: the caller's guarantee: `out` is writable for the box's bytes.
                unsafe { fill_region_ptr(out.ptr, region, region, fill) };
            }
            if let Some(inside) = region.intersect(&bounds) {
                for cell in self.grid.chunks_touching(&inside) {
                    users.entry(cell).or_default().push(i);
                }
            }
        }
        if users.is_empty() {
            return Ok(());
        }
        let painter = Painter {
            array: self,
            targets,
            bounds: &bounds,
            itemsize,
        };
        let sharding = self.chain.sharding();
        let cache = self.cache.as_deref();
        let first_key = users.keys().next().map(|cell| self.key_of(cell));
        if cache.is_none()
            && sharding.is_none()
            && self.chain.stored_as_decoded()
            && first_key.is_some_and(|key| self.store.local_file(&key).is_some())
        {
            return painter.read_local(&users);
        }
        // Stored chunks the cache holds are painted from it; only the rest are fetched.
        let mut cached: Vec<(NdBox, Entry, &[usize])> = Vec::new();
        let mut jobs = Vec::with_capacity(users.len());
        let mut job_readers: Vec<&[usize]> = Vec::with_capacity(users.len());
        for (cell, readers) in &users {
            let bbox = self.grid.chunk_box(cell);
            let mut needed = sharding.and_then(|s| {
                needed_inner(s, &bbox, readers.iter().map(|&r| &targets[r].0), &bounds)
            });
            if let Some(cache) = cache {
                let pieces = match sharding {
                    Some(s) => inner_boxes(s, &bbox),
                    None => vec![bbox.clone()],
                };
                let wanted: Vec<usize> = match &needed {
                    Some(list) => list.clone(),
                    None => (0..pieces.len())
                        .filter(|&i| pieces[i].intersect(&bounds).is_some())
                        .collect(),
                };
                let mut uncached = Vec::new();
                for &i in &wanted {
                    match cache.get(pieces[i].start.clone()) {
                        Some(entry) => cached.push((pieces[i].clone(), entry, readers)),
                        None => uncached.push(i),
                    }
                }
                if uncached.is_empty() {
                    continue;
                }
                if sharding.is_some() && uncached.len() < wanted.len() {
                    needed = Some(uncached);
                }
            }
            jobs.push(Job {
                key: self.key_of(cell),
                bbox,
                needed,
            });
            job_readers.push(readers);
        }
        let failure = FirstError::default();
        let mut fetched = self.fetch(jobs);
        let io = runtime::io();
        runtime::cpu().in_place_scope(|scope| {
            let (painter, failure) = (&painter, &failure);
            for (bbox, entry, readers) in &cached {
                scope.spawn(move |_| {
                    if !failure.stopped() {
                        painter.paint_cached(bbox, entry, readers);
                    }
                });
            }
            loop {
                let (i, result, held) = match interrupt::recv(&io, &mut fetched) {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(e) => {
                        failure.fail(e);
                        return stop_fetching(&mut fetched);
                    }
                };
                let pieces = match result {
                    Ok(pieces) => pieces,
                    Err(e) => {
                        failure.fail(e);
                        return stop_fetching(&mut fetched);
                    }
                };
                if failure.stopped() {
                    return stop_fetching(&mut fetched);
                }
                let readers = job_readers[i];
                for piece in pieces {
                    let held = held.clone();
                    scope.spawn(move |_| {
                        failure.run(|| painter.paint(&piece, readers));
                        drop(held);
                    });
                }
            }
        });
        failure.into_result()
    }

    /// The in-flight budget of one read (KiB permits) and one object's cost in it.
    fn budget(&self) -> (Arc<Semaphore>, u32) {
        let object = self
            .repr()
            .shape
            .iter()
            .fold(self.meta.dtype.itemsize(), |n, &s| {
                n.saturating_mul(s as usize)
            });
        let (least, ahead) = if self.store.is_remote() {
            (MIN_INFLIGHT_BYTES_REMOTE, AHEAD_PER_CORE_REMOTE)
        } else {
            (MIN_INFLIGHT_BYTES, AHEAD_PER_CORE)
        };
        let kib = |b: usize| u32::try_from(b.div_ceil(1024)).unwrap_or(u32::MAX);
        let ahead = (ahead * runtime::threads()).saturating_mul(object);
        let total = kib(least.max(ahead)).min(Semaphore::MAX_PERMITS as u32);
        (
            Arc::new(Semaphore::new(total as usize)),
            kib(object).min(total),
        )
    }

    /// Starts fetching `jobs` on the IO runtime; their pieces arrive as each completes.
    fn fetch(&self, jobs: Vec<Job>) -> tokio::sync::mpsc::Receiver<Fetched> {
        let (permits, cost) = self.budget();
        let concurrency = self.concurrency;
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency);
        let store = self.store.clone();
        let chain = self.chain.clone();
        let inner_grid = chain.sharding().map(|s| NdGrid {
            shape: self.meta.chunk_shape.clone(),
            chunk: s.inner_chunk_shape().to_vec(),
        });
        let shard_shape = self.meta.chunk_shape.clone();
        runtime::io().spawn(async move {
            let mut results = futures::stream::iter(jobs.into_iter().enumerate())
                .map(|(i, job)| {
                    let (store, permits) = (store.clone(), permits.clone());
                    let (chain, inner_grid, shard_shape) =
                        (chain.clone(), inner_grid.clone(), shard_shape.clone());
                    async move {
                        // The semaphore is never closed, so acquiring cannot fail.
                        let held = permits.acquire_many_owned(cost).await.ok().map(Arc::new);
                        let pieces = match (chain.sharding(), &inner_grid) {
                            (Some(s), Some(g)) => {
                                fetch_shard(&store, &job, s, g, &shard_shape).await
                            }
                            _ => store.get_bytes(&job.key).await.map(|bytes| {
                                vec![Piece {
                                    bbox: job.bbox,
                                    bytes,
                                }]
                            }),
                        };
                        (i, pieces, held)
                    }
                })
                .buffer_unordered(concurrency);
            loop {
                let closed = std::pin::pin!(tx.closed());
                let next = match futures::future::select(closed, results.next()).await {
                    futures::future::Either::Left(_) => break,
                    futures::future::Either::Right((next, _)) => next,
                };
                let Some((i, result, held)) = next else { break };
                let failed = result.is_err();
                if tx.send((i, result, held)).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

/// Stops the fetching behind `fetched` and waits for its task to end (see the Precomputed
/// read's `stop_fetching`).
fn stop_fetching(fetched: &mut tokio::sync::mpsc::Receiver<Fetched>) {
    fetched.close();
    while fetched.sender_strong_count() > 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The inner chunks of the shard at `shard` that the read's boxes touch, as C-order
/// indices, or `None` when that is all of them (fetch the shard whole).
fn needed_inner<'a>(
    sharding: &ShardingCodec,
    shard: &NdBox,
    regions: impl Iterator<Item = &'a NdBox>,
    bounds: &NdBox,
) -> Option<Vec<usize>> {
    let grid = NdGrid {
        shape: shard.shape.clone(),
        chunk: sharding.inner_chunk_shape().to_vec(),
    };
    let counts = grid.grid_shape();
    let total: u64 = counts.iter().product();
    let mut needed = std::collections::BTreeSet::new();
    for region in regions {
        let Some(part) = region.intersect(shard).and_then(|p| p.intersect(bounds)) else {
            continue;
        };
        let local = NdBox::new(
            part.start
                .iter()
                .zip(&shard.start)
                .map(|(a, b)| a - b)
                .collect(),
            part.shape.clone(),
        );
        for cell in grid.chunks_touching(&local) {
            let index = cell.iter().zip(&counts).fold(0u64, |n, (&c, &k)| n * k + c);
            needed.insert(index as usize);
        }
    }
    // Most of the shard: one request for all of it beats one per inner chunk.
    if needed.len() as u64 * 2 > total {
        return None;
    }
    Some(needed.into_iter().collect())
}

/// Fetches one shard: whole (one request) when the read needs most of it, else its index
/// and then only the inner chunks it needs (ranged requests, coalesced by the store).
async fn fetch_shard(
    store: &Handle,
    job: &Job,
    sharding: &ShardingCodec,
    inner_grid: &NdGrid,
    shard_shape: &[u64],
) -> Result<Vec<Piece>> {
    let boxes = inner_boxes_of(inner_grid, &job.bbox);
    let inner_box = |i: usize| boxes[i].clone();
    let Some(needed) = &job.needed else {
        let Some(shard) = store.get_bytes(&job.key).await? else {
            return Ok((0..boxes.len())
                .map(|i| Piece {
                    bbox: inner_box(i),
                    bytes: None,
                })
                .collect());
        };
        let len = shard.len() as u64;
        let index = index_range(sharding, shard_shape, len, store, &job.key)?;
        let entries = sharding
            .decode_index(
                &shard[index.start as usize..index.end as usize],
                shard_shape,
                Some(len),
            )
            .map_err(|e| e.at(&store.url_of(&job.key)))?;
        return Ok(entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| Piece {
                bbox: inner_box(i),
                bytes: entry.map(|(at, n)| shard.slice(at as usize..(at + n) as usize)),
            })
            .collect());
    };
    let Some(len) = store.size(&job.key).await? else {
        return Ok(needed
            .iter()
            .map(|&i| Piece {
                bbox: inner_box(i),
                bytes: None,
            })
            .collect());
    };
    let range = index_range(sharding, shard_shape, len, store, &job.key)?;
    let Some(index) = store.get_range(&job.key, range).await? else {
        return Err(Error::store(
            &store.url_of(&job.key),
            "the shard disappeared while it was read",
        ));
    };
    let entries = sharding
        .decode_index(&index.bytes, shard_shape, Some(len))
        .map_err(|e| e.at(&store.url_of(&job.key)))?;
    let present: Vec<(usize, Range<u64>)> = needed
        .iter()
        .filter_map(|&i| {
            entries
                .get(i)
                .copied()
                .flatten()
                .map(|(at, n)| (i, at..at + n))
        })
        .collect();
    let ranges: Vec<Range<u64>> = present.iter().map(|(_, r)| r.clone()).collect();
    let mut got = match store.get_ranges(&job.key, &ranges).await? {
        Some(got) => got.into_iter(),
        None => {
            return Err(Error::store(
                &store.url_of(&job.key),
                "the shard disappeared while it was read",
            ))
        }
    };
    let mut pieces = Vec::with_capacity(needed.len());
    let mut present = present.into_iter().peekable();
    for &i in needed {
        let bytes = match present.peek() {
            Some((j, range)) if *j == i => {
                let want = range.end - range.start;
                let b = got.next().unwrap_or_default();
                present.next();
                if b.len() as u64 != want {
                    return Err(Error::decode(
                        &store.url_of(&job.key),
                        format!(
                            "inner chunk {i} is {want} bytes in the shard index, the shard \
                             gave {}",
                            b.len()
                        ),
                    ));
                }
                Some(b)
            }
            _ => None,
        };
        pieces.push(Piece {
            bbox: inner_box(i),
            bytes,
        });
    }
    Ok(pieces)
}

/// The boxes (in the array) of the inner chunks of the shard at `shard`, in C order: the
/// order of the shard's index.
fn inner_boxes(sharding: &ShardingCodec, shard: &NdBox) -> Vec<NdBox> {
    let grid = NdGrid {
        shape: shard.shape.clone(),
        chunk: sharding.inner_chunk_shape().to_vec(),
    };
    inner_boxes_of(&grid, shard)
}

/// [`inner_boxes`] with the shard's inner grid already made.
fn inner_boxes_of(inner_grid: &NdGrid, shard: &NdBox) -> Vec<NdBox> {
    let cells = inner_grid.chunks_touching(&NdBox::of_shape(&inner_grid.shape));
    cells
        .iter()
        .map(|cell| {
            let b = inner_grid.chunk_box(cell);
            let start = b.start.iter().zip(&shard.start).map(|(a, o)| a + o);
            NdBox::new(start.collect(), b.shape)
        })
        .collect()
}

/// Where a shard of `len` bytes keeps its index; an error naming it when it is too short.
fn index_range(
    sharding: &ShardingCodec,
    shard_shape: &[u64],
    len: u64,
    store: &Handle,
    key: &str,
) -> Result<Range<u64>> {
    sharding.index_range(shard_shape, len).ok_or_else(|| {
        Error::decode(
            &store.url_of(key),
            format!(
                "{len} bytes, shorter than its {}-byte shard index",
                sharding.index_len(shard_shape)
            ),
        )
    })
}

/// Paints decoded chunks into the buffers of one read.
pub(super) struct Painter<'a> {
    pub(super) array: &'a ZarrArray,
    pub(super) targets: &'a [(NdBox, OutBuffer)],
    pub(super) bounds: &'a NdBox,
    pub(super) itemsize: usize,
}

impl Painter<'_> {
    /// Decodes `piece` (or takes the fill value for a missing one) into every box of
    /// `readers` it overlaps.
    pub(super) fn paint(&self, piece: &Piece, readers: &[usize]) -> Result<()> {
        let a = self.array;
        let Some(inside) = piece.bbox.intersect(self.bounds) else {
            return Ok(());
        };
        // A shard fetched whole brings inner chunks no box wants: they are not decoded.
        if !readers
            .iter()
            .any(|&r| inside.intersect(&self.targets[r].0).is_some())
        {
            return Ok(());
        }
        let (chain, repr) = match a.chain.sharding() {
            Some(s) => (
                s.inner(),
                ChunkRepr {
                    shape: piece.bbox.shape.clone(),
                    dtype: a.meta.dtype,
                    fill_value: a.meta.fill_value.clone(),
                },
            ),
            None => (&*a.chain, a.repr()),
        };
        let Some(bytes) = &piece.bytes else {
            if !a.fill_missing {
                return Err(Error::MissingChunk {
                    key: a.store.url_of(&piece_key(a, &piece.bbox)),
                });
            }
            if let Some(cache) = &a.cache {
                cache.insert(piece.bbox.start.clone(), None);
            }
            self.fill(&inside, readers);
            return Ok(());
        };
        let len = piece.bbox.num_bytes(self.itemsize).ok_or_else(|| {
            Error::invalid(format!(
                "chunk of shape {:?} does not fit in memory",
                piece.bbox.shape
            ))
        })?;
        // A chunk the cache keeps is decoded whole into a buffer of its own.
        if let Some(cache) = &a.cache {
            let decoded: Arc<[u8]> = match chain.decoded_as_stored(bytes, len) {
                Some(stored) => Arc::from(stored),
                None => Arc::from(
                    chain
                        .decode(bytes, &repr)
                        .map_err(|e| a.decode_error(&piece.bbox, e))?,
                ),
            };
            self.copy_into(&decoded, &piece.bbox, &inside, readers);
            cache.insert(piece.bbox.start.clone(), Some(decoded));
            return Ok(());
        }
        // Straight into the output: a chunk inside the array that fills a contiguous run of
        // one zeroed buffer (zeroed: initialised memory that the decoder may see).
        if let [r] = readers {
            let (region, out) = &self.targets[*r];
            if out.zeroed && inside == piece.bbox && region.contains(&piece.bbox) {
                if let Some(at) = contiguous_offset(region, &piece.bbox, self.itemsize) {
                    // SAFETY: `at + len` lies inside the buffer (the chunk lies in the region
                    // and is contiguous there), which is initialised (zeroed) and written by
                    // this task alone for the chunk's bytes.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(at), len) };
                    return chain
                        .decode_into(bytes, &repr, dst)
                        .map_err(|e| a.decode_error(&piece.bbox, e));
                }
            }
        }
        // Uncompressed chunks need no decode buffer: their stored bytes are copied straight
        // into each box, saving a pass over the chunk.
        if let Some(decoded) = chain.decoded_as_stored(bytes, len) {
            self.copy_into(decoded, &piece.bbox, &inside, readers);
            return Ok(());
        }
        with_decoded(chain, bytes, &repr, len, |decoded| {
            self.copy_into(decoded, &piece.bbox, &inside, readers)
        })
        .map_err(|e| a.decode_error(&piece.bbox, e))
    }

    /// Paints a stored chunk from the cache: its elements, or the fill value for a chunk
    /// known to be missing.
    fn paint_cached(&self, bbox: &NdBox, entry: &Entry, readers: &[usize]) {
        if let Some(inside) = bbox.intersect(self.bounds) {
            match entry {
                Some(decoded) => self.copy_into(decoded, bbox, &inside, readers),
                None => self.fill(&inside, readers),
            }
        }
    }

    /// Writes the fill value into the part `inside` (of a missing chunk) of every box of
    /// `readers` it overlaps, except where a zeroed buffer holds it already.
    fn fill(&self, inside: &NdBox, readers: &[usize]) {
        let fill = &self.array.meta.fill_value;
        let zero = fill.iter().all(|&b| b == 0);
        for &r in readers {
            let (region, out) = &self.targets[r];
            if let Some(part) = inside.intersect(region) {
                if !(zero && out.zeroed) {
                    // SAFETY: see `OutBuffer`: this task alone writes this chunk's part of
                    // the buffer, which the read keeps valid.
                    unsafe { fill_region_ptr(out.ptr, region, &part, fill) };
                }
            }
        }
    }

    /// Copies the decoded chunk at `bbox` (its part `inside` the array) into every box of
    /// `readers` it overlaps.
    fn copy_into(&self, decoded: &[u8], bbox: &NdBox, inside: &NdBox, readers: &[usize]) {
        for &r in readers {
            let (region, out) = &self.targets[r];
            if let Some(part) = inside.intersect(region) {
                // SAFETY: see `OutBuffer`: this task alone writes this chunk's part of the
                // buffer, which the read keeps valid; `part` lies in both boxes.
                unsafe { copy_region_to_ptr(decoded, bbox, out.ptr, region, &part, self.itemsize) };
            }
        }
    }
}

/// The key that names the chunk at `bbox` in messages.
fn piece_key(a: &ZarrArray, bbox: &NdBox) -> String {
    let cell: Vec<u64> = bbox
        .start
        .iter()
        .zip(&a.meta.chunk_shape)
        .map(|(s, c)| s / c)
        .collect();
    a.key_of(&cell)
}

impl ZarrArray {
    /// A decode failure of the chunk at `bbox`, naming its object.
    pub(super) fn decode_error(&self, bbox: &NdBox, e: CodecError) -> Error {
        e.at(&self.store.url_of(&piece_key(self, bbox)))
    }
}
