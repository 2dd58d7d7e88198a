//! [`ShardReader`]: fetches only the index entries and chunk ranges a cutout needs, with
//! cached minishard indexes, and restarts reads of shards replaced mid-read.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::index::{decode_minishard_index, minishard_range, MinishardIndex};
use super::{ShardingSpec, ENTRY};
use crate::error::{Error, Result};
use crate::store::ReadStore;

/// Ranges of one shard closer than this are fetched by one request (the bytes between come
/// along); farther ones by separate, concurrent requests.
const COALESCE_GAP: u64 = 32 << 10;
/// Range requests in flight per shard read.
const RANGE_CONCURRENCY: usize = 16;
/// Default bytes of decoded minishard indexes a reader keeps.
pub const DEFAULT_INDEX_CACHE_BYTES: usize = 64 << 20;
/// Reads of a shard that another writer replaced mid-read are restarted this often.
const CHANGED_RETRIES: usize = 3;

/// Decoded minishard indexes kept between reads, keyed by `(shard, minishard)`, within a
/// byte budget; the oldest go first.
#[derive(Debug, Default)]
pub(super) struct IndexCache {
    pub(super) minishards: HashMap<(u64, u64), Arc<MinishardIndex>>,
    /// The version tag (ETag) of the shard file each shard's cached indexes came from.
    tags: HashMap<u64, String>,
    order: VecDeque<(u64, u64)>,
    bytes: usize,
    budget: usize,
}

impl IndexCache {
    fn insert(&mut self, key: (u64, u64), index: Arc<MinishardIndex>) {
        let cost = index.bytes();
        if cost > self.budget {
            return;
        }
        if let Some(old) = self.minishards.insert(key, index) {
            self.bytes -= old.bytes();
        } else {
            self.order.push_back(key);
        }
        self.bytes += cost;
        while self.bytes > self.budget {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.minishards.remove(&k) {
                self.bytes -= old.bytes();
            }
        }
    }

    fn forget_shard(&mut self, shard: u64) {
        let gone: Vec<_> = self
            .order
            .iter()
            .filter(|k| k.0 == shard)
            .copied()
            .collect();
        for k in gone {
            if let Some(old) = self.minishards.remove(&k) {
                self.bytes -= old.bytes();
            }
        }
        self.order.retain(|k| k.0 != shard);
        self.tags.remove(&shard);
    }
}

/// Reads chunks of one sharded scale by range requests, caching indexes.
#[derive(Debug)]
pub struct ShardReader {
    store: Arc<dyn ReadStore>,
    spec: ShardingSpec,
    /// The scale's key prefix.
    prefix: String,
    cache: Mutex<IndexCache>,
}

impl ShardReader {
    /// A reader of the shards under `prefix` in `store`, with an empty index cache.
    pub fn new(store: Arc<dyn ReadStore>, spec: ShardingSpec, prefix: &str) -> Self {
        ShardReader {
            store,
            spec,
            prefix: prefix.to_string(),
            cache: Mutex::new(IndexCache {
                budget: DEFAULT_INDEX_CACHE_BYTES,
                ..Default::default()
            }),
        }
    }

    /// The scale's sharding spec.
    pub fn spec(&self) -> &ShardingSpec {
        &self.spec
    }

    /// The store key of a shard file.
    pub fn shard_key(&self, shard: u64) -> String {
        format!("{}/{}", self.prefix, self.spec.shard_name(shard))
    }

    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, IndexCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops what is cached about `shard` (after rewriting it).
    pub fn forget(&self, shard: u64) {
        self.cache().forget_shard(shard);
    }

    /// The bytes of `ranges` of `key` (absent: `None`). Ranges less than [`COALESCE_GAP`]
    /// apart share one request; the requests run concurrently. A short answer (a file that
    /// ends early) is a decode error naming the file.
    async fn fetch_ranges(
        &self,
        key: &str,
        ranges: &[Range<u64>],
        tag: Option<&str>,
    ) -> Result<Option<Vec<Bytes>>> {
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_unstable_by_key(|&i| ranges[i].start);
        let mut groups: Vec<Range<u64>> = Vec::new();
        for &i in &order {
            let r = &ranges[i];
            match groups.last_mut() {
                Some(g) if r.start <= g.end.saturating_add(COALESCE_GAP) => {
                    g.end = g.end.max(r.end)
                }
                _ => groups.push(r.clone()),
            }
        }
        let fetched: Vec<Option<Bytes>> = futures::stream::iter(groups.clone())
            .map(|g| self.store.get_range_if(key, g, tag))
            .buffered(RANGE_CONCURRENCY)
            .try_collect()
            .await?;
        let mut parts = Vec::with_capacity(groups.len());
        for (g, got) in groups.iter().zip(fetched) {
            let Some(bytes) = got else {
                return Ok(None);
            };
            if bytes.len() as u64 != g.end - g.start {
                return Err(Error::decode(
                    &self.store.url_of(key),
                    format!("corrupt shard: the file ends before byte {}", g.end),
                ));
            }
            parts.push((g.start, bytes));
        }
        let out = ranges
            .iter()
            .map(|r| {
                // The group holding r: the last one starting at or before it.
                let at = parts.partition_point(|(start, _)| *start <= r.start) - 1;
                let (start, bytes) = &parts[at];
                bytes.slice((r.start - start) as usize..(r.end - start) as usize)
            })
            .collect();
        Ok(Some(out))
    }

    /// The stored bytes (still in `data_encoding`) of the chunks `ids` of `shard`, in the
    /// same order; `None` for absent chunks. Costs at most three rounds of range requests:
    /// shard-index entries, minishard indexes, chunk data (each coalesced by the store), and
    /// fewer when indexes are cached.
    ///
    /// Every answer of one read must come from the version of the shard file the first one
    /// came from (the same ETag, where the store has them), and cached indexes are used only
    /// with the version they came from: a shard another writer replaces in between is read
    /// again from the start (up to `CHANGED_RETRIES` times), never pieced together from
    /// two versions.
    pub async fn read(&self, shard: u64, ids: &[u64]) -> Result<Vec<Option<Bytes>>> {
        for _ in 0..CHANGED_RETRIES {
            match self.read_version(shard, ids, true).await {
                Err(Error::Changed { .. }) => self.forget(shard),
                done => return done,
            }
        }
        // A shard rewritten this often: read whatever is there, as a store without
        // versions would.
        self.forget(shard);
        self.read_version(shard, ids, false).await
    }

    /// The sizes in bytes of the chunks `ids` of `shard` as stored (in `data_encoding`),
    /// `None` for absent chunks, learned from the shard index and minishard indexes alone:
    /// the chunk data is never fetched. Indexes are cached as [`ShardReader::read`] caches
    /// them, and a shard replaced in between is looked up again.
    pub async fn chunk_sizes(&self, shard: u64, ids: &[u64]) -> Result<Vec<Option<u64>>> {
        for _ in 0..CHANGED_RETRIES {
            match self.locate(shard, ids, true).await {
                Err(Error::Changed { .. }) => self.forget(shard),
                Ok((ranges, _)) => {
                    return Ok(ranges
                        .into_iter()
                        .map(|r| r.map(|r| r.end - r.start))
                        .collect())
                }
                Err(e) => return Err(e),
            }
        }
        self.forget(shard);
        let (ranges, _) = self.locate(shard, ids, false).await?;
        Ok(ranges
            .into_iter()
            .map(|r| r.map(|r| r.end - r.start))
            .collect())
    }

    async fn read_version(
        &self,
        shard: u64,
        ids: &[u64],
        checked: bool,
    ) -> Result<Vec<Option<Bytes>>> {
        let key = self.shard_key(shard);
        let (located, tag) = self.locate(shard, ids, checked).await?;
        // Chunk ranges, fetched in offset order so the store can merge neighbours.
        let mut found: Vec<(usize, Range<u64>)> = located
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .collect();
        found.sort_unstable_by_key(|(_, r)| r.start);
        let mut out = vec![None; ids.len()];
        if found.is_empty() {
            return Ok(out);
        }
        let ranges: Vec<_> = found.iter().map(|(_, r)| r.clone()).collect();
        let tag = if checked { tag.as_deref() } else { None };
        let Some(parts) = self.fetch_ranges(&key, &ranges, tag).await? else {
            return Ok(out);
        };
        for ((i, _), part) in found.into_iter().zip(parts) {
            out[i] = Some(part);
        }
        Ok(out)
    }

    /// Where the chunks `ids` of `shard` lie in the shard file (`None`: absent), from its
    /// shard index and minishard indexes (cached ones where they are of the same version),
    /// and the version tag of the file they came from.
    async fn locate(
        &self,
        shard: u64,
        ids: &[u64],
        checked: bool,
    ) -> Result<(Vec<Option<Range<u64>>>, Option<String>)> {
        let key = self.shard_key(shard);
        let url = self.store.url_of(&key);
        let mut minishards: Vec<u64> = ids.iter().map(|&id| self.spec.locate(id).1).collect();
        minishards.sort_unstable();
        minishards.dedup();
        let (mut known, mut tag): (HashMap<u64, Arc<MinishardIndex>>, Option<String>) = {
            let cache = self.cache();
            let known = minishards
                .iter()
                .filter_map(|&m| cache.minishards.get(&(shard, m)).map(|i| (m, i.clone())))
                .collect();
            (known, cache.tags.get(&shard).cloned())
        };
        let missing: Vec<u64> = minishards
            .iter()
            .copied()
            .filter(|m| !known.contains_key(m))
            .collect();
        if !missing.is_empty() {
            let entry = |m: u64| m * ENTRY..(m + 1) * ENTRY;
            // The first entry's request also tells the file size.
            let Some(crate::store::Ranged {
                bytes: first,
                size: file_len,
                e_tag: fresh,
            }) = self.store.get_range(&key, entry(missing[0])).await?
            else {
                return Ok((vec![None; ids.len()], None));
            };
            if !known.is_empty() && fresh != tag {
                // Indexes cached from another version of the file: start again.
                return Err(Error::Changed { url });
            }
            tag = fresh;
            let mut entries = vec![first];
            if missing.len() > 1 {
                for &m in &missing[1..] {
                    if entry(m).end > file_len {
                        return Err(Error::decode(&url, "corrupt shard: shorter than its index"));
                    }
                }
                let ranges: Vec<_> = missing[1..].iter().map(|&m| entry(m)).collect();
                let Some(rest) = self
                    .fetch_ranges(&key, &ranges, tag.as_deref().filter(|_| checked))
                    .await?
                else {
                    return Ok((vec![None; ids.len()], None));
                };
                entries.extend(rest);
            }
            let mut wanted = Vec::new();
            for (&m, e) in missing.iter().zip(&entries) {
                if e.len() != ENTRY as usize {
                    return Err(Error::decode(&url, "corrupt shard: shorter than its index"));
                }
                match minishard_range(&self.spec, &url, m, e, file_len)? {
                    Some(r) => wanted.push((m, r)),
                    None => {
                        known.insert(m, Arc::new(MinishardIndex::default()));
                    }
                }
            }
            if !wanted.is_empty() {
                let ranges: Vec<_> = wanted.iter().map(|(_, r)| r.clone()).collect();
                let Some(parts) = self
                    .fetch_ranges(&key, &ranges, tag.as_deref().filter(|_| checked))
                    .await?
                else {
                    return Ok((vec![None; ids.len()], None));
                };
                for ((m, _), part) in wanted.into_iter().zip(parts) {
                    let index = decode_minishard_index(&self.spec, &url, &part, file_len)?;
                    known.insert(m, Arc::new(index));
                }
            }
            let mut cache = self.cache();
            if cache.tags.get(&shard) != tag.as_ref() {
                cache.forget_shard(shard);
            }
            if let Some(t) = &tag {
                cache.tags.insert(shard, t.clone());
            }
            for &m in &missing {
                if let Some(index) = known.get(&m) {
                    cache.insert((shard, m), index.clone());
                }
            }
        }
        let located = ids
            .iter()
            .map(|&id| {
                let m = self.spec.locate(id).1;
                known.get(&m).and_then(|idx| idx.find(id))
            })
            .collect();
        Ok((located, tag))
    }
}
