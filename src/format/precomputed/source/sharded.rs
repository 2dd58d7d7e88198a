//! Chunks packed into shard files (`neuroglancer_uint64_sharded_v1`): fetched by range
//! requests through the [`ShardReader`] (one task per shard, or piece of one), sized from the
//! indexes, and replaced shard by shard: a shard the write covers whole is built directly,
//! any other read, merged and put back, conditionally where the store can.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use super::{block_on, conflicts_after, next_unless_closed};
use super::{Budget, ChunkEncoder, ChunkSource, Fetched};
use crate::codec::Compression;
use crate::error::{Error, Result};
use crate::format::precomputed::sharding::{self, ShardReader};
use crate::geometry::{Bbox, ChunkGrid};
use crate::store::{Handle, PutMode, PutOptions};
use crate::{interrupt, runtime};

/// The chunks of one shard a write touches: the shard number and `(grid cell, chunk id)`.
type ShardCells = (u64, Vec<([u64; 3], u64)>);

/// The chunks of one sharded scale.
#[derive(Debug)]
pub(crate) struct ShardedChunks {
    store: Handle,
    reader: Arc<ShardReader>,
    grid: ChunkGrid,
    /// Bytes of one decoded chunk (all channels), for sizing write batches.
    chunk_bytes: u64,
    concurrency: usize,
}

impl ShardedChunks {
    pub(crate) fn new(
        store: Handle,
        reader: Arc<ShardReader>,
        grid: ChunkGrid,
        voxel_bytes: usize,
        concurrency: usize,
    ) -> Self {
        let chunk_bytes = grid.chunk.iter().product::<u64>() * voxel_bytes as u64;
        ShardedChunks {
            store,
            reader,
            grid,
            chunk_bytes,
            concurrency,
        }
    }

    /// The compressed Morton codes (sharded chunk ids) of grid cells.
    fn chunk_ids(&self, cells: &[[u64; 3]]) -> Vec<u64> {
        let bits = sharding::morton_bits(&self.grid).unwrap_or([0; 3]);
        cells
            .iter()
            .map(|&g| sharding::compressed_morton(g, bits))
            .collect()
    }

    /// The indexes and ids of `ids` grouped by the shard that holds each, in shard order.
    fn by_shard(&self, ids: &[u64]) -> BTreeMap<u64, Vec<(usize, u64)>> {
        let mut groups: BTreeMap<u64, Vec<(usize, u64)>> = Default::default();
        for (i, &id) in ids.iter().enumerate() {
            groups
                .entry(self.reader.spec().locate(id).0)
                .or_default()
                .push((i, id));
        }
        groups
    }

    /// Writes one batch of shards. A shard the box covers in part is read, merged and put
    /// back, again if another writer replaced it in between.
    fn write_batch(
        &self,
        batch: &[ShardCells],
        covers_shard: &(dyn Fn([u64; 3], usize) -> bool + Sync),
        encode: &ChunkEncoder,
    ) -> Result<()> {
        let reader = &self.reader;
        let spec = reader.spec();
        let store = self.store.clone();
        let conditional = store.conditional_puts();
        let mut todo: Vec<usize> = (0..batch.len()).collect();
        for round in 1.. {
            // The existing contents of shards the box covers only in part.
            let partial = todo
                .iter()
                .filter(|&&i| !covers_shard(batch[i].1[0].0, batch[i].1.len()))
                .map(|&i| (i, reader.shard_key(batch[i].0)));
            let files = block_on(
                futures::stream::iter(partial)
                    .map(|(i, key)| {
                        let store = store.clone();
                        async move {
                            let found = store.get(&key).await?;
                            Ok::<_, Error>((i, key, found))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            )?;
            let mut existing: Vec<BTreeMap<u64, Bytes>> = vec![Default::default(); batch.len()];
            let mut modes: Vec<PutMode> = vec![PutMode::Overwrite; batch.len()];
            for (i, _, found) in &files {
                modes[*i] = match found {
                    // A server that named no version gets a plain put.
                    Some(object) => object
                        .version
                        .clone()
                        .map_or(PutMode::Overwrite, PutMode::IfVersion),
                    None if conditional => PutMode::IfAbsent,
                    None => PutMode::Overwrite,
                };
            }
            interrupt::install(&runtime::cpu(), |cancel| {
                files
                    .into_par_iter()
                    .filter_map(|(i, key, found)| found.map(|object| (i, key, object.bytes)))
                    .map(|(i, key, file)| {
                        interrupt::cancelled(cancel)?;
                        sharding::decode_shard(spec, &store.url_of(&key), &file).map(|c| (i, c))
                    })
                    .collect::<Result<Vec<_>>>()
            })?
            .into_iter()
            .for_each(|(i, chunks)| existing[i] = chunks);
            // Encode every touched chunk in parallel, then assemble the shards.
            let jobs: Vec<(usize, [u64; 3], u64)> = todo
                .iter()
                .flat_map(|&i| batch[i].1.iter().map(move |&(g, id)| (i, g, id)))
                .collect();
            let shards: Vec<(usize, String, Vec<u8>)> =
                interrupt::install(&runtime::cpu(), |cancel| -> Result<_> {
                    let encoded: Vec<(usize, u64, Bytes)> = jobs
                        .par_iter()
                        .map(|&(i, g, id)| {
                            interrupt::cancelled(cancel)?;
                            // Shard data carries no transport declaration: gzip is
                            // recognised by its magic.
                            let old = existing[i].get(&id).map(|b| (&b[..], Compression::None));
                            Ok((i, id, encode(g, old)?))
                        })
                        .collect::<Result<_>>()?;
                    for (i, id, bytes) in encoded {
                        existing[i].insert(id, bytes);
                    }
                    todo.par_iter()
                        .map(|&i| {
                            let shard = reader.shard_key(batch[i].0);
                            Ok((i, shard, sharding::encode_shard(spec, &existing[i])?))
                        })
                        .collect::<Result<_>>()
                })?;
            drop(existing);
            // Shard objects never carry Content-Encoding.
            let modes = &modes;
            let outcomes = block_on(
                futures::stream::iter(shards)
                    .map(|(i, key, bytes)| {
                        let store = store.clone();
                        async move {
                            let options = PutOptions {
                                mode: modes[i].clone(),
                                content_encoding: None,
                            };
                            let stored = store
                                .writer(&key)?
                                .put_opts(&key, Bytes::from(bytes), options)
                                .await?;
                            Ok::<_, Error>((i, stored))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            );
            // Before any error (or interruption) returns: some of these shards may have been
            // replaced, and stores without versions cannot tell the cached indexes are stale.
            for (shard, _) in batch {
                reader.forget(*shard);
            }
            let outcomes = outcomes?;
            let url_of = |i: usize| store.url_of(&reader.shard_key(batch[i].0));
            match conflicts_after(round, outcomes, url_of)? {
                Some(again) => todo = again,
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

impl ChunkSource for ShardedChunks {
    fn key_of(&self, g: [u64; 3]) -> String {
        let id = self.chunk_ids(&[g])[0];
        let shard = self.reader.spec().locate(id).0;
        format!("{} (chunk {id})", self.reader.shard_key(shard))
    }

    /// The shard's `data_encoding`.
    fn compression(&self) -> Compression {
        self.reader.spec().data_compression()
    }

    /// One task per shard (or piece of one), each reading just the index entries and chunk
    /// ranges it needs.
    fn fetch(&self, cells: &[[u64; 3]], budget: Budget) -> Fetched {
        let ids = self.chunk_ids(cells);
        let concurrency = self.concurrency;
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency.max(ids.len().min(4096)));
        let groups = self.by_shard(&ids);
        // Each shard's chunks are read in pieces of at most half the in-flight budget, so
        // that two pieces overlap (one decoding while the next is fetched).
        let Budget { permits, cost } = budget;
        let per_piece = (permits.available_permits() / 2 / cost as usize).max(1);
        let pieces = groups.into_iter().flat_map(move |(shard, members)| {
            let pieces: Vec<_> = members.chunks(per_piece).map(<[_]>::to_vec).collect();
            pieces.into_iter().map(move |piece| (shard, piece))
        });
        let reader = self.reader.clone();
        runtime::io().spawn(async move {
            let mut results = futures::stream::iter(pieces)
                .map(|(shard, members)| {
                    let (reader, permits) = (reader.clone(), permits.clone());
                    let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
                    let group_cost = cost.saturating_mul(n);
                    async move {
                        let held = permits
                            .acquire_many_owned(group_cost)
                            .await
                            .ok()
                            .map(Arc::new);
                        let ids: Vec<u64> = members.iter().map(|m| m.1).collect();
                        (members, reader.read(shard, &ids).await, held)
                    }
                })
                .buffer_unordered(concurrency);
            while let Some((members, result, held)) = next_unless_closed(&tx, &mut results).await {
                match result {
                    Ok(found) => {
                        for ((i, _), bytes) in members.into_iter().zip(found) {
                            // Shard data carries no transport declaration: gzip
                            // data_encoding is recognised by its magic, as for chunk files.
                            let stored = bytes.map(|b| (b, Compression::None));
                            if tx.send((i, Ok(stored), held.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send((members[0].0, Err(e), held)).await;
                        return;
                    }
                }
            }
        });
        rx
    }

    /// From the shard and minishard indexes, shards looked up concurrently.
    fn sizes(&self, cells: &[[u64; 3]]) -> Result<Vec<Option<u64>>> {
        let ids = self.chunk_ids(cells);
        let groups = self.by_shard(&ids);
        let looked_up = block_on(
            futures::stream::iter(groups)
                .map(|(shard, members)| {
                    let reader = self.reader.clone();
                    async move {
                        // Polled on the calling thread: see `ChunkFiles::probed_sizes`.
                        interrupt::check()?;
                        let ids: Vec<u64> = members.iter().map(|m| m.1).collect();
                        let sizes = reader.chunk_sizes(shard, &ids).await?;
                        Ok::<_, Error>((members, sizes))
                    }
                })
                .buffer_unordered(self.concurrency)
                .try_collect::<Vec<_>>(),
        )?;
        let mut sizes = vec![None; cells.len()];
        for (members, found) in looked_up {
            for ((i, _), size) in members.into_iter().zip(found) {
                sizes[i] = size;
            }
        }
        Ok(sizes)
    }

    /// The chunks are grouped by shard; a shard whose every chunk is replaced and which the
    /// box covers whole is built directly, any other is read whole, merged and rewritten
    /// (one atomic put per shard). Shards are handled in batches that bound the memory held.
    fn write(&self, bbox: &Bbox, cells: &[[u64; 3]], encode: &ChunkEncoder) -> Result<()> {
        let grid = self.grid;
        let spec = self.reader.spec().clone();
        let ids = self.chunk_ids(cells);
        let mut groups: BTreeMap<u64, Vec<([u64; 3], u64)>> = Default::default();
        for (&g, &id) in cells.iter().zip(&ids) {
            groups.entry(spec.locate(id).0).or_default().push((g, id));
        }
        let block = spec.shard_block_bits(&grid);
        let gshape = grid.grid_shape();
        // Whether the box covers every voxel of the shard holding cell `g` (only knowable
        // when shards are grid blocks) and `written` cells of it are all it has.
        let covers_shard = |g: [u64; 3], written: usize| {
            let Some(block) = block else {
                return false;
            };
            let lo: [u64; 3] = std::array::from_fn(|d| (g[d] >> block[d]) << block[d]);
            let hi: [u64; 3] =
                std::array::from_fn(|d| (lo[d] + (1u64 << block[d])).min(gshape[d]) - 1);
            let shard_box = Bbox {
                start: grid.chunk_box(lo).start,
                stop: grid.chunk_box(hi).stop,
            };
            let count: u64 = (0..3).map(|d| hi[d] + 1 - lo[d]).product();
            bbox.contains(&shard_box) && count == written as u64
        };
        let inner_bits = (spec.preshift_bits + spec.minishard_bits).min(40);
        let shard_bytes = self.chunk_bytes.saturating_mul(1 << inner_bits).max(1);
        let per_batch = ((1u64 << 30) / shard_bytes).clamp(1, 64) as usize;
        let groups: Vec<ShardCells> = groups.into_iter().collect();
        for batch in groups.chunks(per_batch) {
            interrupt::check()?;
            self.write_batch(batch, &covers_shard, encode)?;
        }
        Ok(())
    }
}
