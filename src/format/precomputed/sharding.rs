//! The sharded precomputed format (`neuroglancer_uint64_sharded_v1`): chunk ids (compressed
//! Morton codes), the hash that sends an id to a shard and minishard, and the byte layout of
//! a shard file (shard index → minishard indexes → chunk data). Reading goes through
//! [`ShardReader`], which fetches only the ranges a cutout needs and caches indexes;
//! writing builds whole shard files with [`encode_shard`].
//!
//! Every offset and length read from a shard is checked against the file size before it is
//! used, so a corrupt or hostile shard is a `ChunkDecodeError` naming the file, never a
//! panic or a huge allocation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::Encoding;
use crate::codec::{transport, Compression};
use crate::error::{Error, Result};
use crate::geometry::ChunkGrid;
use crate::store::ReadStore;

/// Bytes of one shard-index entry (two uint64) and of one minishard-index row triple.
const ENTRY: u64 = 16;
const ROW: usize = 24;
/// A decoded minishard index larger than this is refused (it would describe 11M chunks).
const MAX_MINISHARD_INDEX: usize = 256 << 20;
/// Ranges of one shard closer than this are fetched by one request (the bytes between come
/// along); farther ones by separate, concurrent requests.
const COALESCE_GAP: u64 = 32 << 10;
/// Range requests in flight per shard read.
const RANGE_CONCURRENCY: usize = 16;
/// Default bytes of decoded minishard indexes a reader keeps.
pub const DEFAULT_INDEX_CACHE_BYTES: usize = 64 << 20;
/// Reads of a shard that another writer replaced mid-read are restarted this often.
const CHANGED_RETRIES: usize = 3;
/// "auto" sharding: a shard holds the largest power-of-two block of chunks whose
/// uncompressed size stays at or below this.
pub const AUTO_SHARD_BYTES: u64 = 256 << 20;
/// Above this many minishard bits the shard index alone (16 bytes per minishard) would be
/// 64 GiB: such a spec is refused when read.
const MAX_MINISHARD_BITS: u32 = 32;
/// Writers build the shard index in memory: at most 16 MiB of it.
const MAX_WRITE_MINISHARD_BITS: u32 = 20;
/// "auto" sharding: at most this many minishards per shard (a 1 KiB shard index).
const AUTO_MINISHARD_BITS: u32 = 6;

/// The hash applied to `chunk_id >> preshift_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardHash {
    Identity,
    Murmur,
}

/// A scale's `sharding` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingSpec {
    pub preshift_bits: u32,
    pub hash: ShardHash,
    pub minishard_bits: u32,
    pub shard_bits: u32,
    /// Whether minishard indexes are gzipped (`minishard_index_encoding`).
    pub minishard_index_gzip: bool,
    /// Whether each chunk is gzipped (`data_encoding`).
    pub data_gzip: bool,
}

impl ShardingSpec {
    /// Parses a `sharding` object. Errors are `(field, reason)`, the field relative to the
    /// sharding object.
    pub fn parse(v: &Value) -> std::result::Result<Self, (String, String)> {
        let err = |f: &str, r: &str| (f.to_string(), r.to_string());
        let o = v.as_object().ok_or_else(|| err("", "not an object"))?;
        match o.get("@type").and_then(Value::as_str) {
            Some("neuroglancer_uint64_sharded_v1") => {}
            _ => {
                return Err(err(
                    "@type",
                    "not \"neuroglancer_uint64_sharded_v1\" (the only sharding this reads)",
                ))
            }
        }
        let bits = |f: &str| -> std::result::Result<u32, (String, String)> {
            o.get(f)
                .and_then(Value::as_u64)
                .filter(|&n| n <= 64)
                .map(|n| n as u32)
                .ok_or_else(|| err(f, "missing or not an integer in 0..=64"))
        };
        let preshift_bits = bits("preshift_bits")?;
        let minishard_bits = bits("minishard_bits")?;
        let shard_bits = bits("shard_bits")?;
        if minishard_bits > MAX_MINISHARD_BITS {
            return Err(err(
                "minishard_bits",
                "above 32 (the shard index alone would exceed 64 GiB)",
            ));
        }
        if minishard_bits + shard_bits > 64 {
            return Err(err("shard_bits", "minishard_bits + shard_bits exceeds 64"));
        }
        let hash = match o.get("hash").and_then(Value::as_str) {
            Some("identity") => ShardHash::Identity,
            Some("murmurhash3_x86_128") => ShardHash::Murmur,
            _ => return Err(err("hash", "not \"identity\" or \"murmurhash3_x86_128\"")),
        };
        let gzip = |f: &str| match o.get(f) {
            None | Some(Value::Null) => Ok(false),
            Some(v) => match v.as_str() {
                Some("raw") => Ok(false),
                Some("gzip") => Ok(true),
                _ => Err(err(f, "not \"raw\" or \"gzip\"")),
            },
        };
        Ok(ShardingSpec {
            preshift_bits,
            hash,
            minishard_bits,
            shard_bits,
            minishard_index_gzip: gzip("minishard_index_encoding")?,
            data_gzip: gzip("data_encoding")?,
        })
    }

    pub fn to_json(&self) -> Value {
        let enc = |gzip: bool| if gzip { "gzip" } else { "raw" };
        json!({
            "@type": "neuroglancer_uint64_sharded_v1",
            "preshift_bits": self.preshift_bits,
            "hash": match self.hash {
                ShardHash::Identity => "identity",
                ShardHash::Murmur => "murmurhash3_x86_128",
            },
            "minishard_bits": self.minishard_bits,
            "shard_bits": self.shard_bits,
            "minishard_index_encoding": enc(self.minishard_index_gzip),
            "data_encoding": enc(self.data_gzip),
        })
    }

    /// The "auto" parameters for a scale: identity hash, so a shard is a rectangular block
    /// of `2^k` chunks, `k` the largest with `2^k * chunk_bytes <= AUTO_SHARD_BYTES` (and no
    /// more than the grid holds). Up to 64 minishards per shard, consecutive Morton runs of
    /// chunks sharing one; gzip data except for jpeg and png (as CloudVolume picks), gzip
    /// minishard indexes. `None` when the grid needs more than 64 Morton bits.
    pub fn auto(grid: &ChunkGrid, chunk_bytes: u64, encoding: &Encoding) -> Option<Self> {
        let total: u32 = morton_bits(grid)?.iter().sum();
        let mut k = 0;
        while k < total && chunk_bytes.saturating_mul(1 << (k + 1)) <= AUTO_SHARD_BYTES {
            k += 1;
        }
        let minishard_bits = k.min(AUTO_MINISHARD_BITS);
        Some(ShardingSpec {
            preshift_bits: k - minishard_bits,
            hash: ShardHash::Identity,
            minishard_bits,
            shard_bits: total - k,
            minishard_index_gzip: true,
            data_gzip: encoding.codec().gzip_in_shards(),
        })
    }

    /// The transport compression each chunk carries inside a shard.
    pub fn data_compression(&self) -> Compression {
        if self.data_gzip {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// `(shard, minishard)` of a chunk id.
    pub fn locate(&self, chunk_id: u64) -> (u64, u64) {
        let shifted = chunk_id.checked_shr(self.preshift_bits).unwrap_or(0);
        let h = match self.hash {
            ShardHash::Identity => shifted,
            ShardHash::Murmur => murmur_low64(shifted),
        };
        let minishard = h & low_mask(self.minishard_bits);
        let shard = h.checked_shr(self.minishard_bits).unwrap_or(0) & low_mask(self.shard_bits);
        (shard, minishard)
    }

    /// The file name of a shard: lowercase hex, `ceil(shard_bits / 4)` digits, `.shard`.
    pub fn shard_name(&self, shard: u64) -> String {
        let width = self.shard_bits.div_ceil(4) as usize;
        format!("{shard:0width$x}.shard")
    }

    /// Bytes of the shard index at the start of every shard file.
    pub fn index_len(&self) -> u64 {
        ENTRY << self.minishard_bits
    }

    /// Whether shards are rectangular blocks of the grid (identity hash, and every Morton bit
    /// of the grid falls in `preshift + minishard + shard`), and if so the per-axis number of
    /// grid bits inside one shard.
    pub fn shard_block_bits(&self, grid: &ChunkGrid) -> Option<[u32; 3]> {
        let bits = morton_bits(grid)?;
        let inner = self.preshift_bits + self.minishard_bits;
        if self.hash != ShardHash::Identity || bits.iter().sum::<u32>() > inner + self.shard_bits {
            return None;
        }
        // The low `inner` bits of a compressed Morton code, axis by axis.
        let mut block = [0u32; 3];
        let mut left = inner;
        for i in 0..64 {
            for d in 0..3 {
                if left > 0 && i < bits[d] {
                    block[d] += 1;
                    left -= 1;
                }
            }
        }
        Some(block)
    }
}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// MurmurHash3_x86_128, seed 0, of the 8 little-endian bytes of `x`; the low 64 bits
/// (`out[1] << 32 | out[0]`), as neuroglancer, TensorStore and CloudVolume use it.
pub fn murmur_low64(x: u64) -> u64 {
    let bytes = x.to_le_bytes();
    // Reading from a byte slice cannot fail.
    let h = murmur3::murmur3_x86_128(&mut &bytes[..], 0).unwrap_or(0);
    // The crate returns h4:h3:h2:h1 from high to low, so out[0] = h1, out[1] = h2.
    h as u64
}

/// `ceil(log2(grid_shape[d]))` per axis, or `None` when the sum exceeds 64 (the volume
/// cannot be sharded).
pub fn morton_bits(grid: &ChunkGrid) -> Option<[u32; 3]> {
    let bits = grid.grid_shape().map(|n| {
        if n <= 1 {
            0
        } else {
            64 - (n - 1).leading_zeros()
        }
    });
    (bits.iter().sum::<u32>() <= 64).then_some(bits)
}

/// The compressed Morton code of grid cell `g` given the per-axis bit counts.
pub fn compressed_morton(g: [u64; 3], bits: [u32; 3]) -> u64 {
    let mut out = 0u64;
    let mut j = 0;
    let max = bits.iter().copied().max().unwrap_or(0);
    for i in 0..max {
        for d in 0..3 {
            if i < bits[d] {
                out |= ((g[d] >> i) & 1) << j;
                j += 1;
            }
        }
    }
    out
}

/// One chunk in a minishard index: its id and byte range in the shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    pub id: u64,
    pub range: (u64, u64),
}

/// A decoded minishard index, sorted by chunk id.
#[derive(Debug, Default)]
pub struct MinishardIndex(Vec<ChunkEntry>);

impl MinishardIndex {
    pub fn find(&self, id: u64) -> Option<Range<u64>> {
        self.0
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| self.0[i].range.0..self.0[i].range.1)
    }

    /// The byte ranges of its chunks in the shard file.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.0.iter().map(|e| e.range.0..e.range.1)
    }

    fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<ChunkEntry>() + 64
    }
}

/// Decodes the minishard index `stored` of a shard file `file_len` bytes long (`url` names
/// it in errors).
pub(crate) fn decode_minishard_index(
    spec: &ShardingSpec,
    url: &str,
    stored: &[u8],
    file_len: u64,
) -> Result<MinishardIndex> {
    let plain;
    let bytes = if spec.minishard_index_gzip {
        plain = transport::decompress_small(url, stored, MAX_MINISHARD_INDEX)?;
        &plain[..]
    } else {
        stored
    };
    if bytes.len() % ROW != 0 {
        return Err(Error::decode(
            url,
            format!(
                "corrupt shard: a minishard index of {} bytes is not a multiple of 24",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / ROW;
    let word = |row: usize, i: usize| {
        let at = (row * n + i) * 8;
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let index_end = spec.index_len();
    let mut entries = Vec::with_capacity(n);
    let (mut id, mut end) = (0u64, index_end);
    for i in 0..n {
        id = id.wrapping_add(word(0, i));
        let size = word(2, i);
        // Offsets are relative to the end of the previous chunk; a writer that stores chunks
        // out of id order makes the delta negative (uint64 wraparound).
        let start = end.wrapping_add(word(1, i));
        match start.checked_add(size) {
            Some(stop) if stop <= file_len => {
                entries.push(ChunkEntry {
                    id,
                    range: (start, stop),
                });
                end = stop;
            }
            _ => {
                return Err(Error::decode(
                    url,
                    format!(
                        "corrupt shard: chunk {id} lies past the end of the {file_len}-byte file"
                    ),
                ))
            }
        }
    }
    check_no_overlap(url, &mut entries)?;
    entries.sort_unstable_by_key(|e| e.id);
    Ok(MinishardIndex(entries))
}

/// Errors when two chunk ranges overlap (sorts `entries` by offset).
fn check_no_overlap(url: &str, entries: &mut [ChunkEntry]) -> Result<()> {
    entries.sort_unstable_by_key(|e| e.range);
    for w in entries.windows(2) {
        if w[1].range.0 < w[0].range.1 {
            return Err(Error::decode(
                url,
                format!(
                    "corrupt shard: chunks {} and {} overlap ({:?} and {:?})",
                    w[0].id, w[1].id, w[0].range, w[1].range
                ),
            ));
        }
    }
    Ok(())
}

/// The byte range of minishard `m`'s index from its 16-byte shard-index entry, checked
/// against the file size.
fn minishard_range(
    spec: &ShardingSpec,
    url: &str,
    m: u64,
    entry: &[u8],
    file_len: u64,
) -> Result<Option<Range<u64>>> {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&entry[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (start, end) = (word(0), word(8));
    if start == end {
        return Ok(None);
    }
    let base = spec.index_len();
    match (base.checked_add(start), base.checked_add(end)) {
        (Some(a), Some(b)) if a < b && b <= file_len => Ok(Some(a..b)),
        _ => Err(Error::decode(
            url,
            format!(
                "corrupt shard: minishard {m}'s index [{start}, {end}) does not lie inside \
                 the {file_len}-byte file"
            ),
        )),
    }
}

/// Every chunk of a whole shard file, id → stored bytes (still in `data_encoding`).
pub fn decode_shard(spec: &ShardingSpec, url: &str, file: &Bytes) -> Result<BTreeMap<u64, Bytes>> {
    let len = file.len() as u64;
    let index_len = spec.index_len();
    if len < index_len {
        return Err(Error::decode(
            url,
            format!("corrupt shard: {len} bytes, shorter than its {index_len}-byte index"),
        ));
    }
    let mut chunks = BTreeMap::new();
    let mut all = Vec::new();
    for m in 0..(1u64 << spec.minishard_bits) {
        let at = (m * ENTRY) as usize;
        let Some(r) = minishard_range(spec, url, m, &file[at..at + ENTRY as usize], len)? else {
            continue;
        };
        let index =
            decode_minishard_index(spec, url, &file[r.start as usize..r.end as usize], len)?;
        all.extend(index.0.iter().copied());
        for e in index.0 {
            chunks.insert(e.id, file.slice(e.range.0 as usize..e.range.1 as usize));
        }
    }
    check_no_overlap(url, &mut all)?;
    Ok(chunks)
}

/// A shard file holding `chunks` (id → bytes already in `data_encoding`), laid out as
/// TensorStore writes it: the shard index, then for each minishard its chunks in id order
/// followed by its index.
pub fn encode_shard(spec: &ShardingSpec, chunks: &BTreeMap<u64, Bytes>) -> Result<Vec<u8>> {
    if spec.minishard_bits > MAX_WRITE_MINISHARD_BITS {
        return Err(Error::invalid(format!(
            "sharding: minishard_bits {} is above {MAX_WRITE_MINISHARD_BITS}, too large a \
             shard index to write",
            spec.minishard_bits
        )));
    }
    let mut by_minishard: BTreeMap<u64, Vec<(u64, &Bytes)>> = BTreeMap::new();
    for (&id, bytes) in chunks {
        by_minishard
            .entry(spec.locate(id).1)
            .or_default()
            .push((id, bytes));
    }
    let index_len = spec.index_len() as usize;
    let data: usize = chunks.values().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(index_len + data + chunks.len() * ROW);
    out.resize(index_len, 0);
    for (m, list) in by_minishard {
        let n = list.len();
        let mut rows = vec![0u64; 3 * n];
        let (mut prev_id, mut prev_end) = (0u64, index_len as u64);
        for (i, (id, bytes)) in list.into_iter().enumerate() {
            let start = out.len() as u64;
            rows[i] = id.wrapping_sub(prev_id);
            rows[n + i] = start - prev_end;
            rows[2 * n + i] = bytes.len() as u64;
            out.extend_from_slice(bytes);
            prev_id = id;
            prev_end = out.len() as u64;
        }
        let mut index: Vec<u8> = rows.iter().flat_map(|w| w.to_le_bytes()).collect();
        if spec.minishard_index_gzip {
            index = Compression::Gzip.compress(&index)?;
        }
        let start = out.len() - index_len;
        out.extend_from_slice(&index);
        let end = out.len() - index_len;
        let at = (m * ENTRY) as usize;
        out[at..at + 8].copy_from_slice(&(start as u64).to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&(end as u64).to_le_bytes());
    }
    Ok(out)
}

/// Decoded minishard indexes kept between reads, keyed by `(shard, minishard)`, within a
/// byte budget; the oldest go first.
#[derive(Debug, Default)]
struct IndexCache {
    minishards: HashMap<(u64, u64), Arc<MinishardIndex>>,
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

    pub fn spec(&self) -> &ShardingSpec {
        &self.spec
    }

    /// The store key of a shard file.
    pub fn shard_key(&self, shard: u64) -> String {
        format!("{}/{}", self.prefix, self.spec.shard_name(shard))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, IndexCache> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmurhash_matches_the_reference_vectors() {
        assert_eq!(murmur_low64(0), 0x4772b084e028ae41);
        assert_eq!(murmur_low64(1), 0xe8bd67d616d4ce9a);
        assert_eq!(murmur_low64(42), 0xc20b94f95119f47a);
    }

    #[test]
    fn compressed_morton_matches_the_reference_vectors() {
        let bits = [4, 2, 1];
        assert_eq!(compressed_morton([1, 0, 0], bits), 1);
        assert_eq!(compressed_morton([0, 1, 0], bits), 2);
        assert_eq!(compressed_morton([2, 0, 1], bits), 0b1100);
        assert_eq!(compressed_morton([2, 3, 0], bits), 0b11010);
        assert_eq!(compressed_morton([9, 2, 1], bits), 0b1010101);
        let grid = ChunkGrid {
            voxel_offset: [0; 3],
            size: [79, 80, 144],
            chunk: [20, 20, 12],
        };
        assert_eq!(morton_bits(&grid), Some([2, 2, 4]));
    }

    fn spec(minishard_bits: u32, gzip: bool) -> ShardingSpec {
        ShardingSpec {
            preshift_bits: 1,
            hash: ShardHash::Murmur,
            minishard_bits,
            shard_bits: 0,
            minishard_index_gzip: gzip,
            data_gzip: false,
        }
    }

    #[test]
    fn shards_round_trip() {
        for gzip in [false, true] {
            let s = spec(2, gzip);
            let chunks: BTreeMap<u64, Bytes> = (0..40u64)
                .map(|id| (id * 3, Bytes::from(vec![id as u8; id as usize + 1])))
                .collect();
            let file = Bytes::from(encode_shard(&s, &chunks).unwrap());
            assert_eq!(decode_shard(&s, "f", &file).unwrap(), chunks);
        }
    }

    #[test]
    fn corrupt_shards_are_decode_errors() {
        let s = spec(1, false);
        let chunks: BTreeMap<u64, Bytes> = (0..8u64)
            .map(|id| (id, Bytes::from(vec![1u8; 10])))
            .collect();
        let good = encode_shard(&s, &chunks).unwrap();
        let check = |file: Vec<u8>, what: &str| {
            let e = decode_shard(&s, "the/0.shard", &Bytes::from(file)).unwrap_err();
            assert!(matches!(e, Error::ChunkDecode { .. }), "{e}");
            assert!(e.to_string().contains("the/0.shard"), "{e}");
            assert!(e.to_string().contains(what), "{e}: expected {what}");
        };
        // A shard-index entry past the end.
        let mut f = good.clone();
        f[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        check(f, "inside");
        // A minishard index whose length is not a multiple of 24.
        let mut f = good.clone();
        let end = u64::from_le_bytes(f[8..16].try_into().unwrap());
        f[8..16].copy_from_slice(&(end - 1).to_le_bytes());
        check(f, "multiple of 24");
        // A chunk size past the end (the last row of minishard 0's index).
        let mut f = good.clone();
        let end = 32 + u64::from_le_bytes(f[8..16].try_into().unwrap()) as usize;
        f[end - 8..end].copy_from_slice(&(1u64 << 40).to_le_bytes());
        check(f, "past the end");
        // Overlapping chunks: the second chunk's gap goes negative.
        let mut f = good.clone();
        let start = 32 + u64::from_le_bytes(f[0..8].try_into().unwrap()) as usize;
        let n = (end - start) / 24;
        f[start + 8 * (n + 1)..start + 8 * (n + 2)].copy_from_slice(&(-5i64 as u64).to_le_bytes());
        check(f, "overlap");
        check(good[..20].to_vec(), "shorter");
    }

    #[test]
    fn auto_shards_are_blocks_within_the_budget() {
        let grid = ChunkGrid {
            voxel_offset: [0; 3],
            size: [2048, 2048, 1024],
            chunk: [64, 64, 64],
        };
        let s = ShardingSpec::auto(&grid, 64 * 64 * 64, &Encoding::raw()).unwrap();
        // 256 MiB / 256 KiB = 1024 chunks per shard.
        assert_eq!(s.preshift_bits + s.minishard_bits, 10);
        assert_eq!(s.shard_bits, 5 + 5 + 4 - 10);
        assert_eq!(s.shard_block_bits(&grid), Some([4, 3, 3]));
        let small = ChunkGrid {
            voxel_offset: [0; 3],
            size: [100, 100, 100],
            chunk: [64, 64, 64],
        };
        let s = ShardingSpec::auto(&small, 64 * 64 * 64, &Encoding::raw()).unwrap();
        assert_eq!((s.shard_bits, s.preshift_bits + s.minishard_bits), (0, 3));
        assert_eq!(s.shard_name(0), "0.shard");
    }

    #[test]
    fn reader_fetches_chunks_and_misses() {
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://shard-reader", true).unwrap(),
        );
        let s = ShardingSpec {
            shard_bits: 1,
            ..spec(2, true)
        };
        let chunks: BTreeMap<u64, Bytes> = (0..64u64)
            .filter(|id| s.locate(*id).0 == 1 && id % 5 != 0)
            .map(|id| (id, Bytes::from(vec![id as u8; 100 + id as usize])))
            .collect();
        let reader = ShardReader::new(store.clone(), s.clone(), "scale");
        let io = crate::runtime::io();
        io.block_on(store.put(
            &reader.shard_key(1),
            Bytes::from(encode_shard(&s, &chunks).unwrap()),
        ))
        .unwrap();
        let ids: Vec<u64> = (0..64u64).filter(|id| s.locate(*id).0 == 1).collect();
        for _ in 0..2 {
            // The second round finds the minishard indexes in the cache.
            let got = io.block_on(reader.read(1, &ids)).unwrap();
            for (id, bytes) in ids.iter().zip(got) {
                assert_eq!(bytes, chunks.get(id).cloned(), "chunk {id}");
            }
        }
        assert!(!reader.cache().minishards.is_empty());
        reader.forget(1);
        assert!(reader.cache().minishards.is_empty());
        // An absent shard: every chunk missing.
        assert_eq!(
            io.block_on(reader.read(0, &[0, 1])).unwrap(),
            vec![None, None]
        );
    }

    #[test]
    fn cached_indexes_of_a_rewritten_shard_are_not_used() {
        // Another handle rewrites the shard with one more chunk (id 2) before the chunk this
        // reader cached (id 5): same-sized raw chunks shift, so the cached offsets of id 5
        // would now name id 2's bytes. The version (ETag) check catches it and re-reads them.
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://shard-rewritten", true).unwrap(),
        );
        let s = ShardingSpec {
            preshift_bits: 0,
            hash: ShardHash::Identity,
            ..spec(0, false)
        };
        let chunk = |id: u64| Bytes::from(vec![id as u8; 64]);
        let reader = ShardReader::new(store.clone(), s.clone(), "scale");
        let io = crate::runtime::io();
        let put = |ids: &[u64]| {
            let chunks: BTreeMap<u64, Bytes> = ids.iter().map(|&id| (id, chunk(id))).collect();
            let file = Bytes::from(encode_shard(&s, &chunks).unwrap());
            io.block_on(store.put(&reader.shard_key(0), file)).unwrap();
        };
        put(&[1, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5])).unwrap(),
            vec![Some(chunk(5))]
        );
        put(&[1, 2, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5])).unwrap(),
            vec![Some(chunk(5))]
        );
        assert_eq!(
            io.block_on(reader.read(0, &[2])).unwrap(),
            vec![Some(chunk(2))]
        );
        // And with every index cached: the chunk request itself carries the check.
        put(&[0, 1, 2, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5, 2])).unwrap(),
            vec![Some(chunk(5)), Some(chunk(2))]
        );
    }
}
