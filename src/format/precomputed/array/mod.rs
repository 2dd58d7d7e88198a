//! `BigArray`: one scale of a layer. Reads plan the chunks a box touches, fetch them
//! concurrently on the IO runtime through the scale's chunk source (chunk files or shards,
//! see `source`), and decode each on the CPU pool straight into the caller's buffer. Writes
//! paint the box into chunks (over their old voxels only for partly covered ones), and the
//! chunk source stores them by read-modify-write.
//!
//! This file opens, creates and describes a scale and implements [`Volume`]; `read` and
//! `write` hold the two paths. Reads and writes block the calling thread;
//! async callers use [`VolumeExt::read_async`](crate::VolumeExt::read_async) and
//! `write_async` (tokio panics when its runtime's threads block).

use std::sync::Arc;

use bytes::Bytes;

use super::sharding::{self, ShardReader};
use super::source::{block_on, ChunkFiles, ChunkSource, ShardedChunks};
use super::{ChunkStore, Info, LayerSpec, Scale};
use crate::cache::{CacheStats, ChunkCache};
use crate::codec::{self, transport, ChunkLayout, Compression};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Bbox;
use crate::interrupt;
use crate::open::OpenOptions;
use crate::store::{self, Handle};
use crate::stored::StoredChunks;
use crate::volume::{OutBuffer, ReadTarget, Volume};

mod read;
mod write;

/// `info` files larger than this are refused rather than read into memory.
const MAX_INFO_BYTES: usize = 64 << 20;
/// How many times `update_info` merges again after other writers changed `info` between its
/// read and its put (each time, another writer's update landed), before it gives up.
const INFO_RETRIES: usize = 32;

/// The `scales` of an `info` update `ours` made from `base` (the `info` its handle read),
/// merged into `stored` (the `info` there now): the stored scales in their order, each
/// replaced by ours where we changed it and dropped where we removed it, then the scales
/// only we have. Scales are told apart by `key`. The stored scales keep their indexes, so
/// a handle that added one finds it where it put it for as long as nobody removes one.
fn merge_scales(
    base: &serde_json::Map<String, serde_json::Value>,
    ours: &serde_json::Map<String, serde_json::Value>,
    stored: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    use serde_json::Value;
    let scales = |info: &serde_json::Map<String, Value>| -> Vec<Value> {
        info.get("scales")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let key = |scale: &Value| scale.get("key").and_then(Value::as_str).map(str::to_owned);
    let find = |list: &[Value], k: &Option<String>| list.iter().find(|s| key(s) == *k).cloned();
    let (base, ours, stored) = (scales(base), scales(ours), scales(stored));
    let mut out = Vec::new();
    for theirs in &stored {
        let k = key(theirs);
        match (find(&ours, &k), find(&base, &k)) {
            (Some(mine), before) if Some(&mine) != before.as_ref() => out.push(mine),
            (None, Some(_)) => {}
            _ => out.push(theirs.clone()),
        }
    }
    for mine in &ours {
        if find(&stored, &key(mine)).is_none() {
            out.push(mine.clone());
        }
    }
    Value::Array(out)
}
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
        // An info that is too large (refused having read at most one byte more than the
        // bound), or a gzip/zstd body that is corrupt or inflates past the bound, is bad
        // metadata: an InfoError, not a chunk's ChunkDecodeError.
        let bad = |reason: String| Error::info(&url, "info", reason);
        let bytes = match block_on(store::get_small(&*store, "info", MAX_INFO_BYTES))? {
            store::Small::Absent => {
                return Err(Error::LayerNotFound {
                    url: store.url_of(""),
                })
            }
            store::Small::Value(bytes) => bytes,
            store::Small::TooLarge(size) => {
                return Err(bad(format!(
                    "{size} bytes or more, more than the {MAX_INFO_BYTES} an info may hold"
                )))
            }
        };
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
    ///
    /// Where the store has conditional puts, scales that other writers added to the stored
    /// `info` since this handle read it are kept (see [`merge_scales`]), and the put is made
    /// only if `info` is still the version merged with, else merged again: two processes
    /// adding scales at once both keep theirs. Elsewhere the last writer wins.
    pub fn update_info(&self, json: &str) -> Result<Self> {
        interrupt::begin();
        let store = self.store.clone();
        let url = store.url_of("info");
        let new = Info::parse(&url, json.as_bytes())?;
        Self::check_kept(&url, &self.info, &new)?;
        let writer = store.writer("info")?;
        if !writer.conditional_puts() {
            block_on(writer.put("info", Bytes::from(new.to_json())))?;
            return Self::with_info(store, new, self.options.clone());
        }
        let base = self.info.json();
        for _ in 0..INFO_RETRIES {
            let (merged, mode) = match block_on(writer.get("info"))? {
                // Removed meanwhile: this info is the layer's again, unless one comes first.
                None => (new.clone(), store::PutMode::IfAbsent),
                Some(object) => {
                    let text = transport::decompress_small(&url, &object.bytes, MAX_INFO_BYTES)
                        .map_err(|e| match e {
                            Error::ChunkDecode { reason, .. } => Error::info(&url, "info", reason),
                            e => e,
                        })?;
                    let stored = Info::parse(&url, &text)?;
                    let merged = if stored.json() == base {
                        new.clone()
                    } else {
                        let scales = merge_scales(base, new.json(), stored.json());
                        let mut json = new.json().clone();
                        json.insert("scales".into(), scales);
                        let text = serde_json::to_vec(&json)
                            .map_err(|e| Error::internal(e.to_string()))?;
                        let merged = Info::parse(&url, &text)?;
                        Self::check_kept(&url, &stored, &merged)?;
                        merged
                    };
                    let mode = object
                        .version
                        .map_or(store::PutMode::Overwrite, store::PutMode::IfVersion);
                    (merged, mode)
                }
            };
            let options = store::PutOptions {
                mode,
                content_encoding: None,
            };
            if block_on(writer.put_opts("info", Bytes::from(merged.to_json()), options))? {
                return Self::with_info(store, merged, self.options.clone());
            }
            // Another writer's info landed between the read and the put: merge again.
            interrupt::check()?;
        }
        Err(Error::store(
            &url,
            format!(
                "changed by other writers {INFO_RETRIES} times while this update was merged \
                 into it; it was not updated"
            ),
        ))
    }

    /// Refuses an `info` that changes what the stored chunks mean.
    fn check_kept(url: &str, old: &Info, new: &Info) -> Result<()> {
        let (old0, new0) = (&old.scales[0], &new.scales[0]);
        let kept = [
            ("data_type", new.data_type == old.data_type),
            ("num_channels", new.num_channels == old.num_channels),
            ("scales[0].key", new0.key == old0.key),
            ("scales[0].size", new0.grid.size == old0.grid.size),
            (
                "scales[0].voxel_offset",
                new0.grid.voxel_offset == old0.grid.voxel_offset,
            ),
            ("scales[0].chunk_sizes", new0.grid.chunk == old0.grid.chunk),
        ];
        match kept.iter().find(|(_, same)| !same) {
            Some((field, _)) => Err(Error::info(url, *field, "an info update cannot change it")),
            None => Ok(()),
        }
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
                    options.gzip_level,
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

    fn stored(&self) -> Option<&dyn StoredChunks> {
        Some(self)
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

#[cfg(test)]
mod tests {
    use super::merge_scales;
    use serde_json::{json, Map, Value};

    fn info(scales: &[(&str, u64)]) -> Map<String, Value> {
        let scales: Vec<Value> = scales
            .iter()
            .map(|(k, size)| json!({"key": k, "size": [*size, 1, 1]}))
            .collect();
        let Value::Object(map) = json!({ "scales": scales }) else {
            unreachable!()
        };
        map
    }

    fn keys(scales: &Value) -> Vec<(String, u64)> {
        scales
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key"].as_str().unwrap().to_string(),
                    s["size"][0].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn scales_others_added_stay_where_they_are_and_ours_follow() {
        let base = info(&[("1", 64), ("2", 32)]);
        // We changed "2", removed nothing, added "8"; they added "4" and "16".
        let ours = info(&[("1", 64), ("2", 33), ("8", 8)]);
        let stored = info(&[("1", 64), ("2", 32), ("4", 16), ("16", 4)]);
        let merged = keys(&merge_scales(&base, &ours, &stored));
        let want = [("1", 64), ("2", 33), ("4", 16), ("16", 4), ("8", 8)];
        assert_eq!(merged, want.map(|(k, n)| (k.to_string(), n)));
        // A scale we removed goes; one they changed and we did not keeps their change.
        let ours = info(&[("1", 64)]);
        let stored = info(&[("1", 64), ("2", 31), ("4", 16)]);
        let merged = keys(&merge_scales(&base, &ours, &info(&[("1", 64), ("2", 32)])));
        assert_eq!(merged, [("1".to_string(), 64)]);
        let ours = info(&[("1", 64), ("2", 32), ("8", 8)]);
        let merged = keys(&merge_scales(&base, &ours, &stored));
        let want = [("1", 64), ("2", 31), ("4", 16), ("8", 8)];
        assert_eq!(merged, want.map(|(k, n)| (k.to_string(), n)));
    }
}
