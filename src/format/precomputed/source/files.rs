//! One object per chunk (`<scale key>/<x0-x1_y0-y1_z0-z1>`, with a transport suffix on file
//! systems): fetched with suffix probing ([`ChunkStore`]), sized by probing or listing, and
//! replaced chunk by chunk, conditionally where the store can.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use super::{block_on, conflicts_after, next_unless_closed};
use super::{Budget, ChunkEncoder, ChunkSource, Fetched};
use crate::codec::Compression;
use crate::error::{Error, Result};
use crate::format::precomputed::{ChunkStore, Stored};
use crate::format::sizes::{stored_sizes, SizeQuery};
use crate::geometry::{Bbox, ChunkGrid};
use crate::store::PutMode;
use crate::{interrupt, runtime};

/// Chunks written per round of fetch → encode → store; bounds the encoded bytes held.
const WRITE_BATCH: usize = 64;

/// The chunk objects of one scale.
#[derive(Debug)]
pub(crate) struct ChunkFiles {
    chunks: Arc<ChunkStore>,
    /// The scale's directory (`info`'s `key`).
    dir: String,
    grid: ChunkGrid,
    compression: Compression,
    concurrency: usize,
}

impl ChunkFiles {
    pub(crate) fn new(
        chunks: Arc<ChunkStore>,
        dir: &str,
        grid: ChunkGrid,
        compression: Compression,
        concurrency: usize,
    ) -> Self {
        ChunkFiles {
            chunks,
            dir: dir.to_string(),
            grid,
            compression,
            concurrency,
        }
    }

    /// Writes one batch of chunks (see [`ChunkSource::write`]).
    fn write_batch(&self, bbox: &Bbox, cells: &[[u64; 3]], encode: &ChunkEncoder) -> Result<()> {
        let compression = self.compression;
        let chunks = self.chunks.clone();
        let mut todo: Vec<usize> = (0..cells.len()).collect();
        for round in 1.. {
            let mut existing: Vec<(Option<Stored>, PutMode)> =
                vec![(None, PutMode::Overwrite); cells.len()];
            let partial = todo
                .iter()
                .filter(|&&i| !bbox.contains(&self.grid.chunk_box(cells[i])))
                .map(|&i| (i, self.key_of(cells[i])));
            for (i, found) in block_on(
                futures::stream::iter(partial)
                    .map(|(i, key)| {
                        let chunks = chunks.clone();
                        async move {
                            chunks
                                .fetch_for_update(&key, compression)
                                .await
                                .map(|f| (i, f))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            )? {
                existing[i] = found;
            }
            let encoded: Vec<(usize, String, Bytes)> =
                interrupt::install(&runtime::cpu(), |cancel| {
                    todo.par_iter()
                        .map(|&i| {
                            interrupt::cancelled(cancel)?;
                            let old = existing[i]
                                .0
                                .as_ref()
                                .map(|(b, declared)| (&b[..], *declared));
                            Ok((i, self.key_of(cells[i]), encode(cells[i], old)?))
                        })
                        .collect::<Result<_>>()
                })?;
            let existing = &existing;
            let outcomes = block_on(
                futures::stream::iter(encoded)
                    .map(|(i, key, bytes)| {
                        let chunks = chunks.clone();
                        async move {
                            let mode = &existing[i].1;
                            let stored = chunks.put_if(&key, bytes, compression, mode).await?;
                            Ok::<_, Error>((i, stored))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<_>>(),
            )?;
            let url_of = |i: usize| self.chunks.store().url_of(&self.key_of(cells[i]));
            match conflicts_after(round, outcomes, url_of)? {
                Some(again) => todo = again,
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

impl ChunkSource for ChunkFiles {
    fn key_of(&self, g: [u64; 3]) -> String {
        format!("{}/{}", self.dir, self.grid.chunk_name(g))
    }

    fn compression(&self) -> Compression {
        self.compression
    }

    fn fetch(&self, cells: &[[u64; 3]], budget: Budget) -> Fetched {
        let keys: Vec<String> = cells.iter().map(|&g| self.key_of(g)).collect();
        let concurrency = self.concurrency;
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency);
        let chunks = self.chunks.clone();
        runtime::io().spawn(async move {
            let mut results = futures::stream::iter(keys.into_iter().enumerate())
                .map(|(i, key)| {
                    let (chunks, budget) = (chunks.clone(), budget.clone());
                    async move {
                        // The semaphore is never closed, so acquiring cannot fail.
                        let held = budget
                            .permits
                            .acquire_many_owned(budget.cost)
                            .await
                            .ok()
                            .map(Arc::new);
                        (i, chunks.fetch_declared(&key).await, held)
                    }
                })
                .buffer_unordered(concurrency);
            while let Some((i, result, held)) = next_unless_closed(&tx, &mut results).await {
                let failed = result.is_err();
                if tx.send((i, result, held)).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }

    /// Each chunk's objects are probed for their size (a file's metadata, a HEAD request),
    /// except that a remote store asked about much of a scale lists the scale's objects
    /// instead (see [`stored_sizes`]); a chunk stored under several transport suffixes
    /// counts once, with its largest.
    fn sizes(&self, cells: &[[u64; 3]]) -> Result<Vec<Option<u64>>> {
        let keys: Vec<String> = cells.iter().map(|&g| self.key_of(g)).collect();
        let chunks = &self.chunks;
        let query = SizeQuery {
            store: chunks.store(),
            total: self.grid.grid_shape().iter().product(),
            concurrency: self.concurrency,
            probe: |key: String| async move { chunks.stored_size(&key).await },
            listed_as: without_transport_suffix,
        };
        stored_sizes(query, &keys)
    }

    fn write(&self, bbox: &Bbox, cells: &[[u64; 3]], encode: &ChunkEncoder) -> Result<()> {
        for batch in cells.chunks(WRITE_BATCH) {
            interrupt::check()?;
            self.write_batch(bbox, batch, encode)?;
        }
        Ok(())
    }
}

/// A chunk object's key without its transport suffix (`.gz`, ...).
fn without_transport_suffix(key: &str) -> &str {
    Compression::PROBE_ORDER
        .iter()
        .filter(|c| !c.suffix().is_empty())
        .find_map(|c| key.strip_suffix(c.suffix()))
        .unwrap_or(key)
}
