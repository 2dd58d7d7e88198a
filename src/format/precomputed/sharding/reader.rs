//! [`ShardReader`]: fetches only the index entries and chunk ranges a cutout needs, with
//! cached shard and minishard indexes, and restarts reads of shards replaced mid-read.
//!
//! At cloud latency the round trips a read waits for one after another cost more than the
//! bytes: a shard is looked up in two rounds at most (its shard index, whole where it is
//! small, then the minishard indexes it needs, each round's requests sent at once) and read
//! in one more; [`ShardReader::locate`] and [`ShardReader::read_located`] let a caller look
//! up every shard of a batch at once before fetching any data.

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
/// A shard index up to this size is fetched and cached whole on a shard's first lookup (one
/// request, which also tells the file's size and version), so later lookups of any of its
/// minishards skip that round trip; a larger one is fetched entry by entry.
const WHOLE_INDEX_BYTES: u64 = 64 << 10;
/// Default bytes of decoded minishard indexes and whole shard indexes a reader keeps.
pub const DEFAULT_INDEX_CACHE_BYTES: usize = 64 << 20;
/// Reads of a shard that other writers keep replacing mid-read are restarted this often
/// (after a pause that doubles each time) before the read fails: it is never pieced
/// together from two versions.
const CHANGED_RETRIES: u32 = 12;

/// A whole shard index (its `2^minishard_bits` 16-byte entries) and the size of the file it
/// came from.
#[derive(Debug, Clone)]
pub(super) struct ShardIndex {
    entries: Bytes,
    file_len: u64,
}

/// What the cache holds: a shard's whole index, or one of its decoded minishard indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cached {
    Shard(u64),
    Minishard(u64, u64),
}

impl Cached {
    fn shard(self) -> u64 {
        match self {
            Cached::Shard(s) | Cached::Minishard(s, _) => s,
        }
    }
}

/// Indexes kept between reads: decoded minishard indexes keyed by `(shard, minishard)` and
/// small shard indexes whole, within one byte budget; the oldest go first.
#[derive(Debug, Default)]
pub(super) struct IndexCache {
    pub(super) minishards: HashMap<(u64, u64), Arc<MinishardIndex>>,
    pub(super) shards: HashMap<u64, ShardIndex>,
    /// The version tag (ETag) of the shard file each shard's cached indexes came from.
    tags: HashMap<u64, String>,
    order: VecDeque<Cached>,
    bytes: usize,
    budget: usize,
}

impl IndexCache {
    fn cost(&self, key: Cached) -> Option<usize> {
        match key {
            Cached::Shard(s) => self.shards.get(&s).map(|i| i.entries.len()),
            Cached::Minishard(s, m) => self.minishards.get(&(s, m)).map(|i| i.bytes()),
        }
    }

    fn remove(&mut self, key: Cached) {
        if let Some(cost) = self.cost(key) {
            self.bytes -= cost;
        }
        match key {
            Cached::Shard(s) => {
                self.shards.remove(&s);
            }
            Cached::Minishard(s, m) => {
                self.minishards.remove(&(s, m));
            }
        }
    }

    /// Counts `key`'s `cost` in (its value already stored) and evicts the oldest entries
    /// while over budget.
    fn admit(&mut self, key: Cached, old: Option<usize>, cost: usize) {
        match old {
            Some(old) => self.bytes -= old,
            None => self.order.push_back(key),
        }
        self.bytes += cost;
        while self.bytes > self.budget {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            self.remove(k);
        }
    }

    fn insert(&mut self, key: (u64, u64), index: Arc<MinishardIndex>) {
        let cost = index.bytes();
        if cost > self.budget {
            return;
        }
        let old = self.minishards.insert(key, index).map(|o| o.bytes());
        self.admit(Cached::Minishard(key.0, key.1), old, cost);
    }

    fn insert_shard(&mut self, shard: u64, index: ShardIndex) {
        let cost = index.entries.len();
        if cost > self.budget {
            return;
        }
        let old = self.shards.insert(shard, index).map(|o| o.entries.len());
        self.admit(Cached::Shard(shard), old, cost);
    }

    fn forget_shard(&mut self, shard: u64) {
        let gone: Vec<_> = self
            .order
            .iter()
            .filter(|k| k.shard() == shard)
            .copied()
            .collect();
        for k in gone {
            self.remove(k);
        }
        self.order.retain(|k| k.shard() != shard);
        self.tags.remove(&shard);
    }
}

/// Where chunks lie in one version of a shard file ([`ShardReader::locate`]).
#[derive(Debug, Clone)]
pub struct Located {
    /// Each chunk's byte range in the file, in the order asked; `None`: absent.
    pub ranges: Vec<Option<Range<u64>>>,
    /// The version (ETag) of the file the indexes came from, which the data requests must
    /// find again; `None` where the store names none.
    tag: Option<String>,
}

impl Located {
    /// Where the chunks at positions `at` (of the ids looked up) lie, in that order.
    pub fn part(&self, at: impl IntoIterator<Item = usize>) -> Located {
        Located {
            ranges: at.into_iter().map(|i| self.ranges[i].clone()).collect(),
            tag: self.tag.clone(),
        }
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
        let groups = coalesce(ranges);
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
        Ok(Some(pick(ranges, &parts)))
    }

    /// The bytes of `ranges` of shard-index entries of `key` (absent: `None`), coalesced and
    /// fetched concurrently as [`ShardReader::fetch_ranges`] does, with the file's size and
    /// version, which every answer must agree on (else [`Error::Changed`]). A file shorter
    /// than the ranges is a decode error naming it.
    async fn fetch_versioned(
        &self,
        key: &str,
        ranges: &[Range<u64>],
    ) -> Result<Option<(Vec<Bytes>, u64, Option<String>)>> {
        let groups = coalesce(ranges);
        let fetched: Vec<Option<crate::store::Ranged>> = futures::stream::iter(groups.clone())
            .map(|g| self.store.get_range(key, g))
            .buffered(RANGE_CONCURRENCY)
            .try_collect()
            .await?;
        let url = || self.store.url_of(key);
        let mut parts = Vec::with_capacity(groups.len());
        let mut version: Option<(u64, Option<String>)> = None;
        for (g, got) in groups.iter().zip(fetched) {
            let Some(got) = got else {
                return Ok(None);
            };
            if got.bytes.len() as u64 != g.end - g.start {
                return Err(Error::decode(
                    &url(),
                    "corrupt shard: shorter than its index",
                ));
            }
            match &version {
                Some((size, tag)) if (*size, tag) != (got.size, &got.e_tag) => {
                    return Err(Error::Changed { url: url() })
                }
                Some(_) => {}
                None => version = Some((got.size, got.e_tag.clone())),
            }
            parts.push((g.start, got.bytes));
        }
        let Some((size, tag)) = version else {
            return Ok(None);
        };
        Ok(Some((pick(ranges, &parts), size, tag)))
    }

    /// The stored bytes (still in `data_encoding`) of the chunks `ids` of `shard`, in the
    /// same order; `None` for absent chunks. Costs at most three rounds of range requests:
    /// the shard index (or its entries), minishard indexes, chunk data (each round's
    /// requests coalesced and sent at once), and fewer when indexes are cached.
    ///
    /// Every answer of one read must come from the version of the shard file the first one
    /// came from (the same ETag, where the store has them), and cached indexes are used only
    /// with the version they came from: a shard another writer replaces in between is read
    /// again from the start (up to `CHANGED_RETRIES` times), never pieced together from
    /// two versions.
    pub async fn read(&self, shard: u64, ids: &[u64]) -> Result<Vec<Option<Bytes>>> {
        let located = self.locate(shard, ids).await?;
        self.read_located(shard, ids, &located).await
    }

    /// Where the chunks `ids` of `shard` lie, from its shard index and minishard indexes
    /// (cached ones where they are of the same version): two rounds of requests at most,
    /// none when every index needed is cached. A shard replaced in between is looked up
    /// again, as [`ShardReader::read`] says.
    pub async fn locate(&self, shard: u64, ids: &[u64]) -> Result<Located> {
        self.locate_from(shard, ids, true).await
    }

    /// [`ShardReader::locate`], from the cache only where `use_cache`. A chunk the cached
    /// indexes say is absent may have been added since (nothing fetched from that version
    /// confirms it), so where every chunk asked for is absent by the cache's word, the
    /// shard is looked up again from the store.
    async fn locate_from(&self, shard: u64, ids: &[u64], mut use_cache: bool) -> Result<Located> {
        for round in 0..CHANGED_RETRIES {
            match self.locate_version(shard, ids, use_cache).await {
                Ok(Lookup::Found(located)) => return Ok(located),
                Ok(Lookup::Unconfirmed) => {}
                Err(Error::Changed { .. }) => changed_pause(round).await,
                Err(e) => return Err(e),
            }
            self.forget(shard);
            use_cache = false;
        }
        Err(self.changed_too_often(shard))
    }

    fn changed_too_often(&self, shard: u64) -> Error {
        Error::store(
            &self.store.url_of(&self.shard_key(shard)),
            format!(
                "other writers replaced this shard {CHANGED_RETRIES} times in a row while it \
                 was being read; nothing was read from it (read again)"
            ),
        )
    }

    /// The stored bytes of the chunks `ids` of `shard` where `located` (their
    /// [`ShardReader::locate`]) says they lie: one round of requests, which must find the
    /// version of the file the indexes came from; a shard replaced since is looked up and
    /// read again.
    pub async fn read_located(
        &self,
        shard: u64,
        ids: &[u64],
        located: &Located,
    ) -> Result<Vec<Option<Bytes>>> {
        match self.fetch_located(shard, located).await {
            Err(Error::Changed { .. }) => self.forget(shard),
            done => return done,
        }
        for round in 1..CHANGED_RETRIES {
            changed_pause(round - 1).await;
            let again = match self.locate_from(shard, ids, false).await {
                Ok(located) => self.fetch_located(shard, &located).await,
                Err(e) => Err(e),
            };
            match again {
                Err(Error::Changed { .. }) => self.forget(shard),
                done => return done,
            }
        }
        Err(self.changed_too_often(shard))
    }

    /// The sizes in bytes of the chunks `ids` of `shard` as stored (in `data_encoding`),
    /// `None` for absent chunks, learned from the shard index and minishard indexes alone:
    /// the chunk data is never fetched, so nothing would confirm cached indexes: they are
    /// looked up from the store (and cached for reads), and a shard replaced in between is
    /// looked up again.
    pub async fn chunk_sizes(&self, shard: u64, ids: &[u64]) -> Result<Vec<Option<u64>>> {
        let located = self.locate_from(shard, ids, false).await?;
        Ok(located
            .ranges
            .into_iter()
            .map(|r| r.map(|r| r.end - r.start))
            .collect())
    }

    /// The chunks of `shard` where `located` says they lie, in one round of requests.
    async fn fetch_located(&self, shard: u64, located: &Located) -> Result<Vec<Option<Bytes>>> {
        let key = self.shard_key(shard);
        // Chunk ranges, fetched in offset order so the store can merge neighbours.
        let mut found: Vec<(usize, Range<u64>)> = located
            .ranges
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.clone().map(|r| (i, r)))
            .collect();
        found.sort_unstable_by_key(|(_, r)| r.start);
        let mut out = vec![None; located.ranges.len()];
        if found.is_empty() {
            return Ok(out);
        }
        let ranges: Vec<_> = found.iter().map(|(_, r)| r.clone()).collect();
        let Some(parts) = self
            .fetch_ranges(&key, &ranges, located.tag.as_deref())
            .await?
        else {
            return Ok(out);
        };
        for ((i, _), part) in found.into_iter().zip(parts) {
            out[i] = Some(part);
        }
        Ok(out)
    }

    /// Where the chunks `ids` of `shard` lie in the shard file, from its shard index and
    /// minishard indexes (cached ones where they are of the same version and `use_cache`),
    /// and the version tag of the file they came from; [`Lookup::Unconfirmed`] where every
    /// chunk is absent and the cache alone said so.
    async fn locate_version(&self, shard: u64, ids: &[u64], use_cache: bool) -> Result<Lookup> {
        let key = self.shard_key(shard);
        let url = self.store.url_of(&key);
        let absent = || {
            Lookup::Found(Located {
                ranges: vec![None; ids.len()],
                tag: None,
            })
        };
        let mut minishards: Vec<u64> = ids.iter().map(|&id| self.spec.locate(id).1).collect();
        minishards.sort_unstable();
        minishards.dedup();
        let (mut known, index, mut tag) = if !use_cache {
            (HashMap::new(), None, None)
        } else {
            let cache = self.cache();
            let known: HashMap<u64, Arc<MinishardIndex>> = minishards
                .iter()
                .filter_map(|&m| cache.minishards.get(&(shard, m)).map(|i| (m, i.clone())))
                .collect();
            let index = cache.shards.get(&shard).cloned();
            (known, index, cache.tags.get(&shard).cloned())
        };
        // Whether the store was asked about this shard in this lookup; if not, and every
        // chunk is absent, nothing fetched later confirms the cached version is current.
        let mut fetched = false;
        let missing: Vec<u64> = minishards
            .iter()
            .copied()
            .filter(|m| !known.contains_key(m))
            .collect();
        if !missing.is_empty() {
            let entry = |m: u64| m * ENTRY..(m + 1) * ENTRY;
            let in_index = |index: &Bytes, m: u64| {
                let r = entry(m);
                index.slice(r.start as usize..r.end as usize)
            };
            // The missing minishards' shard-index entries: from the cached index, else in
            // one round of requests (the whole index where it is small), whose answers also
            // tell the file's size and version.
            let index_len = self.spec.index_len();
            let mut whole = None;
            let (entries, file_len): (Vec<Bytes>, u64) = match index {
                Some(index) => (
                    missing
                        .iter()
                        .map(|&m| in_index(&index.entries, m))
                        .collect(),
                    index.file_len,
                ),
                None => {
                    let ranges: Vec<_> = if index_len <= WHOLE_INDEX_BYTES {
                        std::iter::once(0..index_len).collect()
                    } else {
                        missing.iter().map(|&m| entry(m)).collect()
                    };
                    let Some((parts, file_len, fresh)) =
                        self.fetch_versioned(&key, &ranges).await?
                    else {
                        return Ok(absent());
                    };
                    fetched = true;
                    if !known.is_empty() && fresh != tag {
                        // Indexes cached from another version of the file: start again.
                        return Err(Error::Changed { url });
                    }
                    tag = fresh;
                    if index_len <= WHOLE_INDEX_BYTES {
                        let entries = parts[0].clone();
                        let picked = missing.iter().map(|&m| in_index(&entries, m)).collect();
                        whole = Some(ShardIndex { entries, file_len });
                        (picked, file_len)
                    } else {
                        (parts, file_len)
                    }
                }
            };
            let mut wanted = Vec::new();
            for (&m, e) in missing.iter().zip(&entries) {
                match minishard_range(&self.spec, &url, m, e, file_len)? {
                    Some(r) => wanted.push((m, r)),
                    None => {
                        known.insert(m, Arc::new(MinishardIndex::default()));
                    }
                }
            }
            if !wanted.is_empty() {
                let ranges: Vec<_> = wanted.iter().map(|(_, r)| r.clone()).collect();
                let Some(parts) = self.fetch_ranges(&key, &ranges, tag.as_deref()).await? else {
                    return Ok(absent());
                };
                fetched = true; // these answers came from the version `tag` names
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
            if let Some(whole) = whole {
                cache.insert_shard(shard, whole);
            }
            for &m in &missing {
                if let Some(index) = known.get(&m) {
                    cache.insert((shard, m), index.clone());
                }
            }
        }
        let ranges: Vec<Option<Range<u64>>> = ids
            .iter()
            .map(|&id| {
                let m = self.spec.locate(id).1;
                known.get(&m).and_then(|idx| idx.find(id))
            })
            .collect();
        if !fetched && !ids.is_empty() && ranges.iter().all(Option::is_none) {
            return Ok(Lookup::Unconfirmed);
        }
        Ok(Lookup::Found(Located { ranges, tag }))
    }
}

/// What one lookup of a shard's indexes found.
enum Lookup {
    /// Where the chunks lie, in a version the data requests will confirm (or one just
    /// fetched).
    Found(Located),
    /// Every chunk absent by the cached indexes' word alone: look up again.
    Unconfirmed,
}

/// Waits before reading a shard again that other writers replaced in round `round` (from
/// 0): not at all after the first change (one rewrite is the common case), then 1 ms
/// doubling each round up to 128 ms, plus jitter, so that readers of a hot shard do not
/// all retry at once.
async fn changed_pause(round: u32) {
    let Some(round) = round.checked_sub(1) else {
        return;
    };
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() % 1000);
    let pause = (1u64 << round.min(7)) * 1000 + u64::from(jitter);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}

/// `ranges` in offset order, those less than [`COALESCE_GAP`] apart merged: the requests
/// that fetch them.
fn coalesce(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut order: Vec<&Range<u64>> = ranges.iter().collect();
    order.sort_unstable_by_key(|r| r.start);
    let mut groups: Vec<Range<u64>> = Vec::new();
    for r in order {
        match groups.last_mut() {
            Some(g) if r.start <= g.end.saturating_add(COALESCE_GAP) => g.end = g.end.max(r.end),
            _ => groups.push(r.clone()),
        }
    }
    groups
}

/// Each of `ranges` cut from the fetched `parts` (each a group's start and bytes, in offset
/// order, together covering every range: [`coalesce`]'s groups).
fn pick(ranges: &[Range<u64>], parts: &[(u64, Bytes)]) -> Vec<Bytes> {
    ranges
        .iter()
        .map(|r| {
            // The group holding r: the last one starting at or before it.
            let at = parts.partition_point(|(start, _)| *start <= r.start) - 1;
            let (start, bytes) = &parts[at];
            bytes.slice((r.start - start) as usize..(r.end - start) as usize)
        })
        .collect()
}
