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
use crate::codec::{Compression, GzipLevel};
use crate::error::{Error, Result};
use crate::format::precomputed::sharding::{self, Located, ShardReader};
use crate::geometry::{Bbox, ChunkGrid};
use crate::store::{Handle, PutMode, PutOptions};
use crate::{interrupt, runtime};

/// The chunks of one shard a write touches: the shard number and `(grid cell, chunk id)`.
type ShardCells = (u64, Vec<([u64; 3], u64)>);

/// Chunks of one shard a read fetches together: the shard number, `(index in the read,
/// chunk id)`, and where they lie (or why they could not be looked up).
type Piece = (u64, Vec<(usize, u64)>, Result<Located>);

/// Where a read's fetched chunks go ([`Fetched`] is the other end).
type Sender = tokio::sync::mpsc::Sender<(
    usize,
    Result<Option<crate::format::precomputed::Stored>>,
    super::Held,
)>;

/// The chunks of one sharded scale.
#[derive(Debug)]
pub(crate) struct ShardedChunks {
    store: Handle,
    reader: Arc<ShardReader>,
    grid: ChunkGrid,
    /// Bytes of one decoded chunk (all channels), for sizing write batches.
    chunk_bytes: u64,
    concurrency: usize,
    /// The gzip level of shard data and minishard indexes written.
    gzip_level: GzipLevel,
}

impl ShardedChunks {
    pub(crate) fn new(
        store: Handle,
        reader: Arc<ShardReader>,
        grid: ChunkGrid,
        voxel_bytes: usize,
        concurrency: usize,
        gzip_level: GzipLevel,
    ) -> Self {
        let chunk_bytes = grid.chunk.iter().product::<u64>() * voxel_bytes as u64;
        ShardedChunks {
            store,
            reader,
            grid,
            chunk_bytes,
            concurrency,
            gzip_level,
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

    /// [`ChunkSource::fetch`]'s work, sending each chunk's bytes to `tx` as they come (a
    /// future of its own, so tests can drive it round by round).
    fn fetch_task(
        &self,
        cells: &[[u64; 3]],
        budget: Budget,
        tx: Sender,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let ids = self.chunk_ids(cells);
        let concurrency = self.concurrency;
        let groups = self.by_shard(&ids);
        // Each shard's chunks are read in pieces of at most half the in-flight budget, so
        // that two pieces overlap (one decoding while the next is fetched).
        let Budget { permits, cost } = budget;
        let per_piece = (permits.available_permits() / 2 / cost as usize).max(1);
        let reader = self.reader.clone();
        async move {
            let lookups = futures::stream::iter(groups)
                .map(|(shard, members)| {
                    let reader = reader.clone();
                    async move {
                        let ids: Vec<u64> = members.iter().map(|m| m.1).collect();
                        let located = reader.locate(shard, &ids).await;
                        (shard, members, located)
                    }
                })
                .buffer_unordered(concurrency);
            // A shard's pieces, each with where its chunks lie; a failed lookup goes on as
            // one piece that carries its error.
            let pieces = lookups.flat_map(move |(shard, members, located)| {
                let pieces: Vec<Piece> = match located {
                    Err(e) => vec![(shard, members, Err(e))],
                    Ok(located) => members
                        .chunks(per_piece)
                        .enumerate()
                        .map(|(k, piece)| {
                            let at = k * per_piece..k * per_piece + piece.len();
                            (shard, piece.to_vec(), Ok(located.part(at)))
                        })
                        .collect(),
                };
                futures::stream::iter(pieces)
            });
            let mut results = pieces
                .map(|(shard, members, located)| {
                    let (reader, permits) = (reader.clone(), permits.clone());
                    let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
                    let group_cost = cost.saturating_mul(n);
                    async move {
                        let located = match located {
                            Ok(located) => located,
                            Err(e) => return (members, Err(e), None),
                        };
                        let held = permits
                            .acquire_many_owned(group_cost)
                            .await
                            .ok()
                            .map(Arc::new);
                        let ids: Vec<u64> = members.iter().map(|m| m.1).collect();
                        let result = reader.read_located(shard, &ids, &located).await;
                        (members, result, held)
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
        }
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
                            Ok((
                                i,
                                shard,
                                sharding::encode_shard(spec, &existing[i], self.gzip_level)?,
                            ))
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

    /// Every shard's indexes are looked up at once (two rounds of requests at most, none
    /// where they are cached), and each shard's chunk data is fetched as soon as its own
    /// lookup is done, in pieces within the in-flight budget: a batch costs three round
    /// trips in a row at most, however many shards it touches (up to `concurrency`).
    fn fetch(&self, cells: &[[u64; 3]], budget: Budget) -> Fetched {
        let (tx, rx) = tokio::sync::mpsc::channel(self.concurrency.max(cells.len().min(4096)));
        runtime::io().spawn(self.fetch_task(cells, budget, tx));
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

#[cfg(test)]
mod tests {
    //! Round trips counted, not timed: a store that holds every request at a gate until the
    //! read can send no more, then lets them all through as one round.

    use std::ops::Range;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::format::precomputed::sharding::{encode_shard, ShardHash, ShardingSpec};
    use crate::store::{Listed, Object, Ranged, ReadStore, Store};

    #[derive(Debug, Default)]
    struct Gate {
        waiting: Vec<tokio::sync::oneshot::Sender<()>>,
        round: usize,
        /// Each request let through: its round and byte range (`None`: a whole object).
        log: Vec<(usize, Option<Range<u64>>)>,
    }

    #[derive(Debug)]
    struct Gated {
        inner: Arc<dyn Store>,
        gate: Arc<Mutex<Gate>>,
    }

    impl Gated {
        async fn pass(&self, range: Option<Range<u64>>) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.gate.lock().unwrap().waiting.push(tx);
            let _ = rx.await;
            let mut gate = self.gate.lock().unwrap();
            let round = gate.round;
            gate.log.push((round, range));
        }
    }

    #[async_trait]
    impl ReadStore for Gated {
        fn url_of(&self, key: &str) -> String {
            self.inner.url_of(key)
        }
        async fn get(&self, key: &str) -> Result<Option<Object>> {
            self.pass(None).await;
            self.inner.get(key).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>> {
            self.pass(Some(range.clone())).await;
            self.inner.get_range(key, range).await
        }
        async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
            self.pass(None).await;
            self.inner.get_ranges(key, ranges).await
        }
        async fn get_range_if(
            &self,
            key: &str,
            range: Range<u64>,
            tag: Option<&str>,
        ) -> Result<Option<Bytes>> {
            self.pass(Some(range.clone())).await;
            self.inner.get_range_if(key, range, tag).await
        }
        async fn size(&self, key: &str) -> Result<Option<u64>> {
            self.inner.size(key).await
        }
        async fn list(&self, dir: &str) -> Result<Vec<Listed>> {
            self.inner.list(dir).await
        }
    }

    /// Fetches `cells`, letting the gate's requests through a round at a time; the rounds
    /// it took and each cell's bytes.
    fn fetch_in_rounds(
        chunks: &ShardedChunks,
        gate: &Mutex<Gate>,
        cells: &[[u64; 3]],
    ) -> (usize, Vec<Option<Bytes>>) {
        crate::runtime::io().block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel(cells.len().max(1));
            let budget = Budget {
                permits: Arc::new(Semaphore::new(1 << 20)),
                cost: 1,
            };
            let mut task = std::pin::pin!(chunks.fetch_task(cells, budget, tx));
            let mut got = vec![None; cells.len()];
            let (mut rounds, mut quiet, mut seen) = (0, 0, 0);
            for _ in 0..100_000 {
                let done = futures::poll!(task.as_mut()).is_ready();
                let mut progressed = false;
                while let Ok((i, found, _held)) = rx.try_recv() {
                    got[i] = found.unwrap().map(|(bytes, _)| bytes);
                    progressed = true;
                }
                if done {
                    return (rounds, got);
                }
                let waiting = gate.lock().unwrap().waiting.len();
                if progressed || waiting != seen {
                    (quiet, seen) = (0, waiting);
                } else if quiet < 3 {
                    // Nothing new: poll a few more times (a stream may have yielded),
                    // then every request the read can send now is at the gate.
                    quiet += 1;
                } else {
                    assert!(waiting > 0, "the read waits on nothing at the gate");
                    rounds += 1;
                    let mut g = gate.lock().unwrap();
                    g.round = rounds;
                    for tx in g.waiting.drain(..) {
                        let _ = tx.send(());
                    }
                    (quiet, seen) = (0, 0);
                }
                tokio::task::yield_now().await;
            }
            panic!("the read did not finish");
        })
    }

    #[test]
    fn a_batch_costs_three_rounds_cold_and_one_warm() {
        let memory: Arc<dyn Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://sharded-rounds", true).unwrap(),
        );
        let gate = Arc::new(Mutex::new(Gate::default()));
        let gated: Arc<dyn ReadStore> = Arc::new(Gated {
            inner: memory.clone(),
            gate: gate.clone(),
        });
        // 8x8x2 chunks, ids of 7 bits: 4 shards of 4 minishards of 8 chunks.
        let grid = ChunkGrid {
            voxel_offset: [0; 3],
            size: [32, 32, 8],
            chunk: [4, 4, 4],
        };
        let spec = ShardingSpec {
            preshift_bits: 3,
            hash: ShardHash::Identity,
            minishard_bits: 2,
            shard_bits: 2,
            minishard_index_gzip: true,
            data_gzip: false,
        };
        let reader = Arc::new(ShardReader::new(gated.clone(), spec.clone(), "s"));
        let chunks = ShardedChunks::new(
            Handle::read_only(gated, "test"),
            reader.clone(),
            grid,
            1,
            64,
            GzipLevel::DEFAULT,
        );
        let cells: Vec<[u64; 3]> = (0..8)
            .flat_map(|x| (0..8).flat_map(move |y| (0..2).map(move |z| [x, y, z])))
            .collect();
        let ids = chunks.chunk_ids(&cells);
        let content =
            |id: u64, version: u8| Bytes::from(vec![id as u8 ^ version; 40 + id as usize]);
        let put = |version: u8| {
            for shard in 0..4 {
                // Every seventh chunk absent.
                let packed: BTreeMap<u64, Bytes> = ids
                    .iter()
                    .filter(|&&id| spec.locate(id).0 == shard && id % 7 != 0)
                    .map(|&id| (id, content(id, version)))
                    .collect();
                let file = Bytes::from(encode_shard(&spec, &packed, GzipLevel::DEFAULT).unwrap());
                crate::runtime::io()
                    .block_on(memory.put(&reader.shard_key(shard), file))
                    .unwrap();
            }
        };
        let expect = |version: u8| -> Vec<Option<Bytes>> {
            ids.iter()
                .map(|&id| (id % 7 != 0).then(|| content(id, version)))
                .collect()
        };
        put(0);
        let index_len = spec.index_len();
        let index_requests = |gate: &Mutex<Gate>| {
            let g = gate.lock().unwrap();
            g.log
                .iter()
                .filter(|(_, r)| r.as_ref().is_some_and(|r| r.end <= index_len))
                .count()
        };

        // Cold: shard indexes, minishard indexes, data; each shard's index in one request.
        let (rounds, got) = fetch_in_rounds(&chunks, &gate, &cells);
        assert_eq!(got, expect(0));
        assert!(rounds <= 3, "a cold batch took {rounds} rounds");
        assert_eq!(index_requests(&gate), 4, "{:?}", gate.lock().unwrap().log);

        // Warm: the data alone, in one round.
        gate.lock().unwrap().log.clear();
        let (rounds, got) = fetch_in_rounds(&chunks, &gate, &cells);
        assert_eq!(got, expect(0));
        assert_eq!(rounds, 1);
        assert_eq!(index_requests(&gate), 0);

        // A part of the batch, still warm.
        gate.lock().unwrap().log.clear();
        let (rounds, got) = fetch_in_rounds(&chunks, &gate, &cells[..9]);
        assert_eq!(got, expect(0)[..9].to_vec());
        assert_eq!(rounds, 1);

        // Another writer replaces every shard: the cached indexes no longer hold, and the
        // read notices it by the version of its answers, then looks the shards up again.
        put(1);
        let (_, got) = fetch_in_rounds(&chunks, &gate, &cells);
        assert_eq!(got, expect(1));
    }
}
