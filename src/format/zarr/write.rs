//! Writing a Zarr array: each object (chunk or shard) the box touches is made anew from the
//! box's elements, read-modify-written where the box covers it in part, and put
//! conditionally where the store can, so overlapping writers lose nothing (a shard's inner
//! chunks that the box does not touch keep their stored bytes, undecoded).

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use super::array::ZarrArray;
use super::codecs::{ChunkRepr, CodecError};
use crate::error::{Error, Result};
use crate::format::rmw::{block_on, conflicts_after};
use crate::nd::{copy_region, fill_region, NdBox, NdGrid};
use crate::store::{Object, PutMode, PutOptions};
use crate::{interrupt, runtime};

/// Objects written per round of fetch → encode → store; bounds the encoded bytes held.
const WRITE_BATCH: usize = 64;

/// What to do with one object.
enum Outcome {
    /// Store these bytes.
    Put(Bytes),
    /// Nothing to store: every element is the fill value and nothing was found stored.
    Skip,
    /// Every element is the fill value now: remove what is stored.
    Delete,
}

impl ZarrArray {
    /// Writes `data` (the C-ordered elements of `region`) into `region`.
    pub(super) fn write_nd(&self, region: &NdBox, data: &[u8]) -> Result<()> {
        interrupt::begin();
        let itemsize = self.meta.dtype.itemsize();
        let url = crate::Volume::url(self);
        if region.ndim() != self.meta.shape.len() {
            return Err(Error::invalid(format!(
                "{url}: box of {} axes for an array of {}",
                region.ndim(),
                self.meta.shape.len()
            )));
        }
        if !self.bounds_nd().contains(region) {
            return Err(Error::OutOfBounds {
                reason: format!(
                    "{url}: box {:?}..{:?} reaches outside the array's shape {:?}",
                    region.start,
                    (0..region.ndim())
                        .map(|a| region.stop(a))
                        .collect::<Vec<_>>(),
                    self.meta.shape
                ),
            });
        }
        if region.num_bytes(itemsize) != Some(data.len()) {
            return Err(Error::invalid(format!(
                "{url}: buffer holds {} bytes, the box needs {:?}",
                data.len(),
                region.num_bytes(itemsize)
            )));
        }
        self.store.writer(&self.prefix)?;
        let cells = self.grid.chunks_touching(region);
        let written = cells.chunks(WRITE_BATCH).try_for_each(|batch| {
            interrupt::check()?;
            self.write_batch(region, data, batch)
        });
        // Whatever happened, the cache must not keep what the store may no longer hold.
        self.forget_cached(region);
        written
    }

    /// Drops the cached stored chunks (a sharded array's inner chunks) that `region` touches.
    pub(super) fn forget_cached(&self, region: &NdBox) {
        let Some(cache) = &self.cache else { return };
        let chunk = match self.chain.sharding() {
            Some(s) => s.inner_chunk_shape().to_vec(),
            None => self.meta.chunk_shape.clone(),
        };
        let grid = NdGrid {
            shape: self.meta.shape.clone(),
            chunk,
        };
        for cell in grid.chunks_touching(region) {
            cache.remove(grid.chunk_box(&cell).start);
        }
    }

    /// One batch of objects, read-modify-written until no other writer came in between.
    fn write_batch(&self, region: &NdBox, data: &[u8], cells: &[Vec<u64>]) -> Result<()> {
        let conditional = self.store.conditional_puts();
        let bounds = self.bounds_nd();
        let mut todo: Vec<usize> = (0..cells.len()).collect();
        for round in 1.. {
            // Objects the box covers in part are read first (their versions too).
            let partial: Vec<usize> = todo
                .iter()
                .copied()
                .filter(|&i| {
                    let b = self.grid.chunk_box(&cells[i]);
                    b.intersect(&bounds)
                        .is_none_or(|inside| !region.contains(&inside))
                })
                .collect();
            let read = {
                let mut read = vec![false; cells.len()];
                partial.iter().for_each(|&i| read[i] = true);
                read
            };
            let store = self.store.clone();
            let mut old: Vec<Option<Object>> = vec![None; cells.len()];
            for (i, found) in block_on(
                futures::stream::iter(partial)
                    .map(|i| {
                        let (store, key) = (store.clone(), self.key_of(&cells[i]));
                        async move { store.get(&key).await.map(|found| (i, found)) }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            )? {
                old[i] = found;
            }
            let made: Vec<(usize, Outcome)> = interrupt::install(&runtime::cpu(), |cancel| {
                todo.par_iter()
                    .map(|&i| {
                        interrupt::cancelled(cancel)?;
                        let before = old[i].as_ref().map(|o| &o.bytes);
                        // A conditional store cannot delete only if unchanged: an object read
                        // for this write that becomes all fill is put (empty) under the
                        // version read instead, so that a writer who replaced it meanwhile
                        // is not erased.
                        let keep = conditional && before.is_some();
                        let outcome = self.make_object(&cells[i], region, data, before, keep)?;
                        // An object the box covers whole was not read: left all fill, it is
                        // removed whether or not it was stored.
                        Ok(match outcome {
                            Outcome::Skip if !read[i] => (i, Outcome::Delete),
                            outcome => (i, outcome),
                        })
                    })
                    .collect::<Result<_>>()
            })?;
            let (old, read) = (&old, &read);
            let outcomes = block_on(
                futures::stream::iter(made)
                    .map(|(i, outcome)| {
                        let (store, key) = (self.store.clone(), self.key_of(&cells[i]));
                        async move {
                            let writer = store.writer(&key)?;
                            // Objects the box covers whole were not read: their old
                            // elements all give way to ours, so they are overwritten
                            // whatever another writer stored meanwhile.
                            let mode = match (&old[i], conditional && read[i]) {
                                (_, false) => PutMode::Overwrite,
                                (Some(o), true) => match &o.version {
                                    Some(v) => PutMode::IfVersion(v.clone()),
                                    None => PutMode::Overwrite,
                                },
                                (None, true) => PutMode::IfAbsent,
                            };
                            let stored = match outcome {
                                Outcome::Put(bytes) => {
                                    let options = PutOptions {
                                        mode,
                                        content_encoding: None,
                                    };
                                    writer.put_opts(&key, bytes, options).await?
                                }
                                Outcome::Skip => true,
                                Outcome::Delete => {
                                    writer.delete(&key).await?;
                                    true
                                }
                            };
                            Ok::<_, Error>((i, stored))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            )?;
            let url_of = |i: usize| self.store.url_of(&self.key_of(&cells[i]));
            match conflicts_after(round, outcomes, url_of)? {
                Some(again) => todo = again,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// The new stored bytes of the object at `cell`: `before` (what is stored, if anything)
    /// with `region`'s part of `data` painted over it. An object left all fill is not
    /// stored, unless `keep` asks for it (an empty shard, or a chunk of fill).
    fn make_object(
        &self,
        cell: &[u64],
        region: &NdBox,
        data: &[u8],
        before: Option<&Bytes>,
        keep: bool,
    ) -> Result<Outcome> {
        let bbox = self.grid.chunk_box(cell);
        let made = match self.chain.sharding() {
            None => {
                let old = |buf: &mut [u8]| -> Result<()> {
                    match before {
                        Some(bytes) => self
                            .chain
                            .decode_into(bytes, &self.repr(), buf)
                            .map_err(|e| self.decode_error(&bbox, e)),
                        None => Ok(()),
                    }
                };
                let painted = match self.paint_chunk(&bbox, region, data, old)? {
                    None if keep => Some(self.fill_chunk(&bbox)?),
                    painted => painted,
                };
                painted
                    .map(|decoded| self.chain.encode(&decoded, &self.repr()))
                    .transpose()?
                    .map(Bytes::from)
            }
            Some(sharding) => {
                let inner_shape = sharding.inner_chunk_shape().to_vec();
                let inner_grid = NdGrid {
                    shape: bbox.shape.clone(),
                    chunk: inner_shape.clone(),
                };
                let inner_cells = inner_grid.chunks_touching(&NdBox::of_shape(&bbox.shape));
                let entries = match before {
                    Some(shard) => {
                        let len = shard.len() as u64;
                        let index_len = sharding.index_len(&bbox.shape);
                        if len < index_len {
                            return Err(self.decode_error(
                                &bbox,
                                CodecError::new(
                                    "sharding_indexed",
                                    format!(
                                        "{len} bytes, shorter than its {index_len}-byte shard \
                                         index"
                                    ),
                                ),
                            ));
                        }
                        let range = sharding
                            .index_range(&bbox.shape, len)
                            .map(|r| r.start as usize..r.end as usize)
                            .unwrap_or(0..0);
                        sharding
                            .decode_index(&shard[range], &bbox.shape, Some(len))
                            .map_err(|e| self.decode_error(&bbox, e))?
                    }
                    None => vec![None; inner_cells.len()],
                };
                let repr = ChunkRepr {
                    shape: inner_shape,
                    dtype: self.meta.dtype,
                    fill_value: self.meta.fill_value.clone(),
                };
                let inner: Vec<Option<Vec<u8>>> = inner_cells
                    .par_iter()
                    .enumerate()
                    .map(|(k, local)| {
                        let b = inner_grid.chunk_box(local);
                        let abs = NdBox::new(
                            b.start
                                .iter()
                                .zip(&bbox.start)
                                .map(|(a, o)| a + o)
                                .collect(),
                            b.shape,
                        );
                        let stored = entries.get(k).copied().flatten().and_then(|(at, n)| {
                            before.map(|s| s.slice(at as usize..(at + n) as usize))
                        });
                        if abs.intersect(region).is_none() {
                            // Untouched: its stored bytes move over as they are.
                            return Ok(stored.map(|s| s.to_vec()));
                        }
                        let old = |buf: &mut [u8]| -> Result<()> {
                            match &stored {
                                Some(bytes) => sharding
                                    .inner()
                                    .decode_into(bytes, &repr, buf)
                                    .map_err(|e| self.decode_error(&bbox, e)),
                                None => Ok(()),
                            }
                        };
                        self.paint_chunk(&abs, region, data, old)?
                            .map(|decoded| sharding.inner().encode(&decoded, &repr))
                            .transpose()
                    })
                    .collect::<Result<_>>()?;
                if inner.iter().all(Option::is_none) && !keep {
                    None
                } else {
                    Some(Bytes::from(sharding.encode_shard(&inner, &bbox.shape)?))
                }
            }
        };
        Ok(match (made, before) {
            (Some(bytes), _) => Outcome::Put(bytes),
            (None, None) => Outcome::Skip,
            (None, Some(_)) => Outcome::Delete,
        })
    }

    /// The chunk at `bbox` holding the fill value only.
    fn fill_chunk(&self, bbox: &NdBox) -> Result<Vec<u8>> {
        let itemsize = self.meta.dtype.itemsize();
        let len = bbox.num_bytes(itemsize).ok_or_else(|| {
            Error::invalid(format!(
                "chunk of shape {:?} does not fit in memory",
                bbox.shape
            ))
        })?;
        let mut buf = vec![0u8; len];
        fill_region(&mut buf, bbox, bbox, &self.meta.fill_value);
        Ok(buf)
    }

    /// The elements of the chunk at `bbox` after the write: its old elements (`old` decodes
    /// them into the buffer it is given, already holding the fill value, and leaves it as it
    /// is for a chunk never stored) with `region`'s part of `data` over them; `None` when
    /// every element is the fill value (the chunk need not be stored, as zarr-python's
    /// `write_empty_chunks=False` has it).
    fn paint_chunk(
        &self,
        bbox: &NdBox,
        region: &NdBox,
        data: &[u8],
        old: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Option<Vec<u8>>> {
        let itemsize = self.meta.dtype.itemsize();
        let fill = &self.meta.fill_value;
        let len = bbox.num_bytes(itemsize).ok_or_else(|| {
            Error::invalid(format!(
                "chunk of shape {:?} does not fit in memory",
                bbox.shape
            ))
        })?;
        let mut buf = vec![0u8; len];
        let inside = bbox.intersect(&self.bounds_nd());
        let covered = inside.as_ref().is_some_and(|i| region.contains(i));
        if !fill.iter().all(|&b| b == 0) {
            fill_region(&mut buf, bbox, bbox, fill);
        }
        if !covered {
            old(&mut buf)?;
        }
        if let Some(part) = inside.and_then(|i| i.intersect(region)) {
            copy_region(data, region, &mut buf, bbox, &part, itemsize);
        }
        if buf.chunks_exact(itemsize).all(|e| e == fill.as_slice()) {
            return Ok(None);
        }
        Ok(Some(buf))
    }
}
