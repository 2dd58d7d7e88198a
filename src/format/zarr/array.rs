//! One Zarr array (or one level of an OME-Zarr image): opened from its metadata, created,
//! described, and presented both in its own axis order ([`NdVolume`]) and through the 3D
//! [`Volume`] seam with its axes reversed (see the module notes of `zarr`).

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::chunk_key::ChunkKeyEncoding;
use super::codecs::{ChunkRepr, CodecChain, CodecSpec};
use super::group::GroupMetadata;
use super::group_update::update_attributes;
use super::metadata::{ArrayMetadata, ZarrFormat};
use super::ome::{Multiscale, MultiscaleDataset};
use crate::cache::{CacheStats, ChunkCache};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::format::sizes::{stored_sizes, SizeQuery};
use crate::geometry::{Bbox, BoxCopy};
use crate::nd::{NdBox, NdGrid};
use crate::open::OpenOptions;
use crate::store::{Handle, Small};
use crate::stored::StoredChunks;
use crate::volume::{NdTarget, NdVolume, ReadTarget, Volume};
use crate::{interrupt, runtime};

/// Metadata files larger than this are refused before they are parsed: real ones are a few
/// KiB, and a hostile one must not exhaust memory.
const MAX_METADATA_BYTES: usize = 16 << 20;

/// The OME-Zarr level an array is, within its image.
#[derive(Debug, Clone)]
pub(super) struct Level {
    pub(super) multiscale: Multiscale,
    pub(super) index: usize,
}

/// One Zarr array in a store.
#[derive(Debug)]
pub struct ZarrArray {
    pub(super) store: Handle,
    /// The array's directory inside the store, with a trailing `/` (or empty).
    pub(super) prefix: String,
    pub(super) meta: ArrayMetadata,
    pub(super) chain: Arc<CodecChain>,
    /// The grid of stored objects: chunks, or shards of a sharded array.
    pub(super) grid: NdGrid,
    pub(super) concurrency: usize,
    pub(super) fill_missing: bool,
    /// Decoded stored chunks kept for later reads (`OpenOptions::cache_bytes`), keyed by
    /// their first element: a sharded array's inner chunks each on their own.
    pub(super) cache: Option<Arc<ChunkCache<Vec<u64>>>>,
    level: Option<Level>,
    /// How many leading axes of extent 1 the 3D view drops (an OME-Zarr `t` of one
    /// timepoint), and whether what is left fits its four axes.
    pub(super) view_lead: usize,
}

/// What [`ZarrArray::create`] makes.
#[derive(Debug, Clone)]
pub struct ZarrSpec {
    /// Zarr v2 or v3.
    pub zarr_format: ZarrFormat,
    /// The array's shape.
    pub shape: Vec<u64>,
    /// The element type.
    pub dtype: DType,
    /// The chunk shape (the inner chunk of a sharded array).
    pub chunks: Vec<u64>,
    /// The shard shape (v3 only): chunks are packed into shards of this shape.
    pub shards: Option<Vec<u64>>,
    /// The codecs (of each inner chunk, when sharded); `None`: `bytes` + `zstd` level 0, as
    /// zarr-python writes by default.
    pub codecs: Option<Vec<CodecSpec>>,
    /// One element of the fill value, little-endian; `None`: zeros.
    pub fill_value: Option<Vec<u8>>,
    /// Names of the axes (v3 `dimension_names`).
    pub dimension_names: Option<Vec<Option<String>>>,
    /// User attributes.
    pub attributes: Map<String, Value>,
}

fn spec(name: &str, configuration: Value) -> CodecSpec {
    CodecSpec {
        name: name.to_string(),
        configuration: match configuration {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

/// `bytes` (little-endian where the type has a byte order) + `zstd` level 0: zarr-python's
/// default chain.
fn default_codecs(dtype: DType) -> Vec<CodecSpec> {
    let bytes = if dtype.component_size() > 1 {
        spec("bytes", serde_json::json!({"endian": "little"}))
    } else {
        spec("bytes", serde_json::json!({}))
    };
    vec![
        bytes,
        spec("zstd", serde_json::json!({"level": 0, "checksum": false})),
    ]
}

/// Reads a metadata file, `None` when absent; one over [`MAX_METADATA_BYTES`] is refused
/// after reading at most one byte more than that.
fn read_small(store: &Handle, key: &str) -> Result<Option<Bytes>> {
    let found = interrupt::block_on(
        &runtime::io(),
        crate::store::get_small(&**store, key, MAX_METADATA_BYTES),
    )?;
    match found {
        Small::Absent => Ok(None),
        Small::Value(bytes) => Ok(Some(bytes)),
        Small::TooLarge(size) => Err(Error::invalid(format!(
            "{}: {size} bytes or more, more than the {MAX_METADATA_BYTES} a Zarr metadata \
             file may hold",
            store.url_of(key)
        ))),
    }
}

/// What a store directory holds: an array, a group, or nothing Zarr.
enum Node {
    Array(ArrayMetadata),
    Group(GroupMetadata),
    Nothing,
}

fn read_node(store: &Handle, dir: &str) -> Result<Node> {
    let key = |name: &str| format!("{dir}{name}");
    if let Some(json) = read_small(store, &key("zarr.json"))? {
        let url = store.url_of(&key("zarr.json"));
        let value: Value = serde_json::from_slice(&json)
            .map_err(|e| Error::invalid(format!("{url}: not JSON: {e}")))?;
        return Ok(match value.get("node_type").and_then(Value::as_str) {
            Some("group") => Node::Group(GroupMetadata::parse_v3(&url, &json)?),
            _ => Node::Array(ArrayMetadata::parse_v3(&url, &json)?),
        });
    }
    let attrs = read_small(store, &key(".zattrs"))?;
    if let Some(zarray) = read_small(store, &key(".zarray"))? {
        let url = store.url_of(&key(".zarray"));
        return Ok(Node::Array(ArrayMetadata::parse_v2(
            &url,
            &zarray,
            attrs.as_deref(),
        )?));
    }
    if let Some(zgroup) = read_small(store, &key(".zgroup"))? {
        let url = store.url_of(&key(".zgroup"));
        return Ok(Node::Group(GroupMetadata::parse_v2(
            &url,
            &zgroup,
            attrs.as_deref(),
        )?));
    }
    Ok(Node::Nothing)
}

impl ZarrArray {
    /// Whether the store holds Zarr metadata at its root (an array or a group).
    pub fn detect(store: &Handle) -> Result<bool> {
        Ok(!matches!(read_node(store, "")?, Node::Nothing))
    }

    /// Opens the array at the store's root, or level `options.mip` of the OME-Zarr image
    /// there.
    pub fn open(store: Handle, options: &OpenOptions) -> Result<Self> {
        match read_node(&store, "")? {
            Node::Nothing => Err(Error::NotFound {
                url: store.url_of(""),
                reason: "no Zarr array or group here (no 'zarr.json', '.zarray' or '.zgroup')"
                    .into(),
            }),
            Node::Array(meta) => {
                if options.mip != 0 {
                    return Err(Error::invalid(format!(
                        "{}: mip={} asked of a single Zarr array (mip 0 only; levels are the \
                         datasets of an OME-Zarr image)",
                        store.url_of(""),
                        options.mip
                    )));
                }
                Self::with_metadata(store, String::new(), meta, None, options)
            }
            Node::Group(group) => {
                let url = store.url_of("");
                let multiscales = Multiscale::from_attributes(&url, &group.attributes)?
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{url}: a Zarr group without OME-Zarr multiscales; open one of its \
                             arrays by its path"
                        ))
                    })?;
                let multiscale = multiscales[0].clone();
                let count = multiscale.datasets.len();
                let dataset = multiscale.datasets.get(options.mip).ok_or_else(|| {
                    Error::invalid(format!(
                        "{url}: mip {} is not one of the image's {count} levels",
                        options.mip
                    ))
                })?;
                let prefix = format!("{}/", dataset.path.trim_matches('/'));
                let Node::Array(meta) = read_node(&store, &prefix)? else {
                    return Err(Error::invalid(format!(
                        "{}: level {} ({:?}) of the OME-Zarr image is not a Zarr array",
                        store.url_of(&prefix),
                        options.mip,
                        dataset.path
                    )));
                };
                let level = Level {
                    multiscale,
                    index: options.mip,
                };
                Self::with_metadata(store, prefix, meta, Some(level), options)
            }
        }
    }

    fn with_metadata(
        store: Handle,
        prefix: String,
        meta: ArrayMetadata,
        level: Option<Level>,
        options: &OpenOptions,
    ) -> Result<Self> {
        let url = store.url_of(&prefix);
        let repr = ChunkRepr {
            shape: meta.chunk_shape.clone(),
            dtype: meta.dtype,
            fill_value: meta.fill_value.clone(),
        };
        let file = match meta.zarr_format {
            ZarrFormat::V3 => "zarr.json",
            ZarrFormat::V2 => ".zarray",
        };
        let chain = CodecChain::new(&meta.codecs, &repr).map_err(|e| {
            let at = store.url_of(&format!("{prefix}{file}"));
            Error::invalid(format!("{at}: field 'codecs': {e}"))
        })?;
        if let Some(level) = &level {
            let axes = level.multiscale.axes.len();
            if axes != meta.shape.len() {
                return Err(Error::invalid(format!(
                    "{url}: the OME-Zarr multiscales name {axes} axes, the array has {}",
                    meta.shape.len()
                )));
            }
        }
        let grid = NdGrid {
            shape: meta.shape.clone(),
            chunk: meta.chunk_shape.clone(),
        };
        let mut view_lead = 0;
        while meta.shape.len() - view_lead > 4 && meta.shape[view_lead] == 1 {
            view_lead += 1;
        }
        Ok(ZarrArray {
            store,
            prefix,
            meta,
            chain: Arc::new(chain),
            grid,
            concurrency: options.concurrency.max(1),
            fill_missing: options.fill_missing,
            cache: (options.cache_bytes > 0)
                .then(|| Arc::new(ChunkCache::new(options.cache_bytes))),
            level,
            view_lead,
        })
    }

    /// Writes the metadata of a new array at the store's root and opens it. An existing
    /// array or group there is an error unless `overwrite` is set (then its chunks are
    /// removed first, so none of them reads back under the new metadata).
    pub fn create(
        store: Handle,
        spec: &ZarrSpec,
        overwrite: bool,
        options: &OpenOptions,
    ) -> Result<Self> {
        interrupt::begin();
        let url = store.url_of("");
        let meta = build_metadata(&url, spec)?;
        let files = meta.to_files()?;
        // Parse what we are about to write: every check of `open` runs before anything is
        // stored, and the file reads back.
        let array = Self::with_metadata(
            store.clone(),
            String::new(),
            reparse(&store, "", &files)?,
            None,
            options,
        )?;
        clear_node(&store, "", overwrite)?;
        put_files(&store, "", &files)?;
        Ok(array)
    }

    /// Creates an OME-Zarr image at the store's root and opens its level 0: a group whose
    /// attributes hold `multiscale` (with its one dataset, the level) and `spec.attributes`,
    /// and the level's array at the dataset's path. The NGFF version follows the Zarr
    /// format (0.5 for v3, 0.4 for v2), and the level is laid out as that version requires:
    /// v3 arrays name their axes in `dimension_names`, v2 arrays key chunks with `/`.
    pub fn create_image(
        store: Handle,
        spec: &ZarrSpec,
        mut multiscale: Multiscale,
        overwrite: bool,
        options: &OpenOptions,
    ) -> Result<Self> {
        interrupt::begin();
        let url = store.url_of("");
        if multiscale.datasets.len() != 1 {
            return Err(Error::invalid(format!(
                "{url}: a new OME-Zarr image has one level, not {}",
                multiscale.datasets.len()
            )));
        }
        if multiscale.axes.len() != spec.shape.len() {
            return Err(Error::invalid(format!(
                "{url}: {} OME-Zarr axes for an array of shape {:?}",
                multiscale.axes.len(),
                spec.shape
            )));
        }
        let mut meta = build_metadata(&url, spec)?;
        // The user's attributes belong to the image (the group), not to one of its levels.
        meta.attributes = Map::new();
        multiscale.version = match spec.zarr_format {
            ZarrFormat::V3 => {
                meta.dimension_names = Some(
                    multiscale
                        .axes
                        .iter()
                        .map(|a| Some(a.name.clone()))
                        .collect(),
                );
                "0.5".into()
            }
            ZarrFormat::V2 => {
                meta.chunk_key_encoding = ChunkKeyEncoding::V2 { separator: '/' };
                "0.4".into()
            }
        };
        let prefix = level_prefix(&url, &multiscale.datasets[0].path)?;
        let files = meta.to_files()?;
        let level = Level {
            multiscale: multiscale.clone(),
            index: 0,
        };
        let array = Self::with_metadata(
            store.clone(),
            prefix.clone(),
            reparse(&store, &prefix, &files)?,
            Some(level),
            options,
        )?;
        let mut group = GroupMetadata {
            zarr_format: spec.zarr_format,
            attributes: spec.attributes.clone(),
        };
        Multiscale::write_attributes(&[multiscale], &mut group.attributes);
        clear_node(&store, "", overwrite)?;
        put_files(&store, &prefix, &files)?;
        // The group last: until it is there, nothing opens the image half made.
        put_files(&store, "", &group.to_files()?)?;
        Ok(array)
    }

    /// Adds (or replaces) level `index` of the OME-Zarr image this array is a level of:
    /// an array of `shape` with this level's chunking, codecs and fill value, at the path of
    /// the dataset `index` where the image has one (what was stored there is removed) and at
    /// `"{index}"` where it is the next one; then the image's `multiscales` get the level's
    /// `scale` and `translation`. Other multiscales and attributes of the group are kept.
    pub fn add_level(
        &self,
        index: usize,
        shape: Vec<u64>,
        scale: Vec<f64>,
        translation: Option<Vec<f64>>,
    ) -> Result<()> {
        interrupt::begin();
        let url = self.store.url_of("");
        if self.level.is_none() {
            return Err(Error::invalid(format!(
                "{}: a plain Zarr array has no levels to add; create an OME-Zarr image                  (BigArray.create(..., format='zarr', ome=True)) to build a pyramid",
                self.url()
            )));
        }
        let rank = self.meta.shape.len();
        if shape.len() != rank
            || scale.len() != rank
            || translation.as_ref().is_some_and(|t| t.len() != rank)
        {
            return Err(Error::invalid(format!(
                "{url}: a level of a {rank}-dimensional image needs {rank} extents, scales and                  translations"
            )));
        }
        // The group as stored now, not as this handle opened it: levels added since are kept.
        let Node::Group(group) = read_node(&self.store, "")? else {
            return Err(Error::invalid(format!(
                "{url}: the OME-Zarr image's group is gone"
            )));
        };
        let path = level_path(&url, &image_datasets(&url, &group.attributes)?, index)?;
        let dataset = MultiscaleDataset {
            path: path.clone(),
            scale,
            translation,
        };
        let mut meta = self.meta.clone();
        meta.shape = shape;
        let prefix = level_prefix(&url, &path)?;
        let files = meta.to_files()?;
        let options = OpenOptions {
            concurrency: self.concurrency,
            ..OpenOptions::default()
        };
        Self::with_metadata(
            self.store.clone(),
            prefix.clone(),
            reparse(&self.store, &prefix, &files)?,
            None,
            &options,
        )?;
        // A replaced level's chunks would read back under its new shape: removed first.
        interrupt::block_on(
            &runtime::io(),
            self.store
                .writer(&prefix)?
                .delete_dir(prefix.trim_end_matches('/')),
        )?;
        put_files(&self.store, &prefix, &files)?;
        // The group last, by read-modify-write: another process adding a level meanwhile
        // keeps its own.
        update_attributes(&self.store, group.zarr_format, |attributes| {
            let mut multiscales = Multiscale::from_attributes(&url, attributes)?
                .filter(|m| !m.is_empty())
                .ok_or_else(|| Error::invalid(format!("{url}: the group holds no multiscales")))?;
            let datasets = &mut multiscales[0].datasets;
            let now = level_path(&url, datasets, index)?;
            if now != dataset.path {
                return Err(Error::invalid(format!(
                    "{url}: level {index} moved to path {now:?} while being written at {:?}",
                    dataset.path
                )));
            }
            match datasets.get_mut(index) {
                Some(d) => *d = dataset.clone(),
                None => datasets.push(dataset.clone()),
            }
            Multiscale::write_attributes(&multiscales, attributes);
            Ok(())
        })
    }

    /// The multiscale image this array is a level of (as it was when opened), and which.
    pub fn multiscale(&self) -> Option<(&Multiscale, usize)> {
        self.level.as_ref().map(|l| (&l.multiscale, l.index))
    }

    /// The array's metadata.
    pub fn metadata(&self) -> &ArrayMetadata {
        &self.meta
    }

    /// The store key of the object of grid cell `cell`.
    pub(super) fn key_of(&self, cell: &[u64]) -> String {
        format!("{}{}", self.prefix, self.meta.chunk_key_encoding.key(cell))
    }

    /// What one stored object (chunk or shard) decodes to.
    pub(super) fn repr(&self) -> ChunkRepr {
        ChunkRepr {
            shape: self.meta.chunk_shape.clone(),
            dtype: self.meta.dtype,
            fill_value: self.meta.fill_value.clone(),
        }
    }

    /// The array's extent.
    pub(super) fn bounds_nd(&self) -> NdBox {
        NdBox::of_shape(&self.meta.shape)
    }

    /// Axes of the 3D view, or why there is none.
    pub(super) fn view_rank(&self) -> Result<usize> {
        let rank = self.meta.shape.len() - self.view_lead;
        if rank > 4 {
            return Err(Error::invalid(format!(
                "{}: a {}-dimensional Zarr array has no (x, y, z, c) view; index it in its \
                 own axes",
                self.url(),
                self.meta.shape.len()
            )));
        }
        Ok(rank)
    }

    /// The view's `[x, y, z]` extent and channel count of an N-d `shape`: its last axes
    /// reversed, 1 where the array has fewer.
    fn view_of(&self, shape: &[u64]) -> ([u64; 3], u64) {
        let rank = shape.len() - self.view_lead;
        let axis = |k: usize| {
            if k < rank {
                shape[shape.len() - 1 - k]
            } else {
                1
            }
        };
        ([axis(0), axis(1), axis(2)], axis(3))
    }

    /// The N-d box of a 3D box of the view (which must lie inside the bounds): every
    /// channel, the dropped leading axes at 0.
    pub(super) fn nd_of(&self, bbox: &Bbox) -> NdBox {
        let rank = self.meta.shape.len() - self.view_lead;
        let mut start = vec![0; self.meta.shape.len()];
        let mut shape = vec![1; self.meta.shape.len()];
        let n = self.meta.shape.len();
        for k in 0..rank.min(3) {
            start[n - 1 - k] = bbox.start[k] as u64;
            shape[n - 1 - k] = (bbox.stop[k] - bbox.start[k]) as u64;
        }
        if rank == 4 {
            shape[n - 4] = self.meta.shape[n - 4];
        }
        NdBox::new(start, shape)
    }
}

/// The metadata of a new array as `spec` describes it, or why it cannot be made.
fn build_metadata(url: &str, spec: &ZarrSpec) -> Result<ArrayMetadata> {
    let rank = spec.shape.len();
    if spec.chunks.len() != rank {
        return Err(Error::invalid(format!(
            "{url}: chunks {:?} must have one entry per axis of shape {:?}",
            spec.chunks, spec.shape
        )));
    }
    let mut codecs = spec
        .codecs
        .clone()
        .unwrap_or_else(|| default_codecs(spec.dtype));
    let mut chunk_shape = spec.chunks.clone();
    if let Some(shards) = &spec.shards {
        if spec.zarr_format != ZarrFormat::V3 {
            return Err(Error::invalid(format!(
                "{url}: shards= needs zarr_format=3 (Zarr v2 has no sharding)"
            )));
        }
        if shards.len() != rank
            || shards
                .iter()
                .zip(&spec.chunks)
                .any(|(&s, &c)| c == 0 || s == 0 || s % c != 0)
        {
            return Err(Error::invalid(format!(
                "{url}: shards {shards:?} must be whole multiples of chunks {:?} along \
                 every axis",
                spec.chunks
            )));
        }
        codecs = vec![spec_sharding(&spec.chunks, codecs)];
        chunk_shape = shards.clone();
    }
    let chunk_key_encoding = match spec.zarr_format {
        ZarrFormat::V3 => ChunkKeyEncoding::Default { separator: '/' },
        ZarrFormat::V2 => ChunkKeyEncoding::V2 { separator: '.' },
    };
    let fill_value = spec
        .fill_value
        .clone()
        .unwrap_or_else(|| vec![0; spec.dtype.itemsize()]);
    // Written with every configuration spelled out, defaults filled in (`{"name": "gzip"}`
    // becomes gzip level 5), as zarr-python writes them and needs to read them.
    let repr = ChunkRepr {
        shape: chunk_shape.clone(),
        dtype: spec.dtype,
        fill_value: fill_value.clone(),
    };
    let codecs = CodecChain::new(&codecs, &repr)
        .map_err(|e| Error::invalid(format!("{url}: {e}")))?
        .specs();
    Ok(ArrayMetadata {
        zarr_format: spec.zarr_format,
        shape: spec.shape.clone(),
        chunk_shape,
        dtype: spec.dtype,
        fill_value,
        chunk_key_encoding,
        codecs,
        dimension_names: spec.dimension_names.clone(),
        attributes: spec.attributes.clone(),
    })
}

/// The store prefix (with a trailing `/`) of an image level's relative `path`; paths that
/// would leave the image (`..`, absolute) are refused.
fn level_prefix(url: &str, path: &str) -> Result<String> {
    let path = path.trim_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(Error::invalid(format!(
            "{url}: the level path {path:?} is not a relative path inside the image"
        )));
    }
    Ok(format!("{path}/"))
}

/// The datasets of the first multiscale of an image group's `attributes`.
fn image_datasets(url: &str, attributes: &Map<String, Value>) -> Result<Vec<MultiscaleDataset>> {
    let multiscales = Multiscale::from_attributes(url, attributes)?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::invalid(format!("{url}: the group holds no multiscales")))?;
    Ok(multiscales[0].datasets.clone())
}

/// The path of level `index` among `datasets`: its dataset's, or `"{index}"` for the next
/// level.
fn level_path(url: &str, datasets: &[MultiscaleDataset], index: usize) -> Result<String> {
    match datasets.get(index) {
        Some(d) => Ok(d.path.clone()),
        None if index == datasets.len() => Ok(index.to_string()),
        None => Err(Error::invalid(format!(
            "{url}: level {index} cannot follow the image's {} levels",
            datasets.len()
        ))),
    }
}

/// Makes room for a new node at `prefix`: an array or group already there is an error
/// unless `overwrite` is set, and then everything under it is removed.
fn clear_node(store: &Handle, prefix: &str, overwrite: bool) -> Result<()> {
    if matches!(read_node(store, prefix)?, Node::Nothing) {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::LayerExists {
            url: store.url_of(prefix),
        });
    }
    interrupt::block_on(
        &runtime::io(),
        store
            .writer(prefix)?
            .delete_dir(prefix.trim_end_matches('/')),
    )
}

/// Stores metadata `files` under `prefix`.
fn put_files(store: &Handle, prefix: &str, files: &[(&'static str, Vec<u8>)]) -> Result<()> {
    for (name, bytes) in files {
        let key = format!("{prefix}{name}");
        interrupt::block_on(
            &runtime::io(),
            store.writer(&key)?.put(&key, Bytes::from(bytes.clone())),
        )?;
    }
    Ok(())
}

/// `sharding_indexed` around `inner` codecs, index little-endian with a crc32c, at the end:
/// zarr-python's default.
fn spec_sharding(chunks: &[u64], inner: Vec<CodecSpec>) -> CodecSpec {
    let inner: Vec<Value> = inner.into_iter().map(codec_json).collect();
    spec(
        "sharding_indexed",
        serde_json::json!({
            "chunk_shape": chunks,
            "codecs": inner,
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        }),
    )
}

fn codec_json(c: CodecSpec) -> Value {
    let mut v = Map::new();
    v.insert("name".into(), Value::String(c.name));
    if !c.configuration.is_empty() {
        v.insert("configuration".into(), Value::Object(c.configuration));
    }
    Value::Object(v)
}

/// The metadata `files` (as [`ArrayMetadata::to_files`] makes them, to be stored under
/// `prefix`) parsed back.
fn reparse(
    store: &Handle,
    prefix: &str,
    files: &[(&'static str, Vec<u8>)],
) -> Result<ArrayMetadata> {
    let get = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, b)| &b[..]);
    let url = |name: &str| store.url_of(&format!("{prefix}{name}"));
    match (get("zarr.json"), get(".zarray")) {
        (Some(json), _) => ArrayMetadata::parse_v3(&url("zarr.json"), json),
        (None, Some(zarray)) => ArrayMetadata::parse_v2(&url(".zarray"), zarray, get(".zattrs")),
        (None, None) => Err(Error::internal("Zarr metadata without a metadata file")),
    }
}

impl NdVolume for ZarrArray {
    fn shape(&self) -> Vec<u64> {
        self.meta.shape.clone()
    }

    fn chunk_shape(&self) -> Vec<u64> {
        self.meta.chunk_shape.clone()
    }

    fn read_chunk_shape(&self) -> Vec<u64> {
        match self.chain.sharding() {
            Some(sharding) => sharding.inner_chunk_shape().to_vec(),
            None => self.meta.chunk_shape.clone(),
        }
    }

    fn fill_value(&self) -> Vec<u8> {
        self.meta.fill_value.clone()
    }

    fn stored_units(&self, region: &NdBox) -> Result<Vec<(NdBox, u64)>> {
        let whole = NdBox::of_shape(&self.meta.shape);
        let Some(inside) = region.intersect(&whole) else {
            return Ok(Vec::new());
        };
        let cells = self.grid.chunks_touching(&inside);
        let sizes = self.object_sizes(&cells)?;
        Ok(cells
            .iter()
            .zip(sizes)
            .filter_map(|(cell, size)| {
                let size = size.filter(|&s| s > 0)?;
                Some((self.grid.chunk_box(cell).intersect(&whole)?, size))
            })
            .collect())
    }

    fn dimension_names(&self) -> Vec<Option<String>> {
        if let Some(level) = &self.level {
            return level
                .multiscale
                .axes
                .iter()
                .map(|a| Some(a.name.clone()))
                .collect();
        }
        self.meta
            .dimension_names
            .clone()
            .unwrap_or_else(|| vec![None; self.meta.shape.len()])
    }

    fn units(&self) -> Vec<Option<String>> {
        match &self.level {
            Some(level) => level
                .multiscale
                .axes
                .iter()
                .map(|a| a.unit.clone())
                .collect(),
            None => vec![None; self.meta.shape.len()],
        }
    }

    fn scale(&self) -> Vec<f64> {
        match &self.level {
            Some(level) => level.multiscale.datasets[level.index].scale.clone(),
            None => vec![1.0; self.meta.shape.len()],
        }
    }

    fn translation(&self) -> Vec<f64> {
        self.level
            .as_ref()
            .and_then(|l| l.multiscale.datasets[l.index].translation.clone())
            .unwrap_or_else(|| vec![0.0; self.meta.shape.len()])
    }

    fn read_regions(&self, targets: &mut [NdTarget<'_>]) -> Result<()> {
        let requests: Vec<_> = targets.iter().map(|t| (t.region.clone(), t.out)).collect();
        // SAFETY: each target's buffer comes from a `&mut` borrow its `NdTarget` holds for
        // this call, exclusively.
        unsafe { self.read_raw(&requests) }
    }

    fn write_region(&self, region: &NdBox, data: &[u8]) -> Result<()> {
        self.write_nd(region, data)
    }
}

impl Volume for ZarrArray {
    fn format(&self) -> &'static str {
        "zarr"
    }

    fn url(&self) -> String {
        let url = self.store.url_of(&self.prefix);
        url.trim_end_matches('/').to_string()
    }

    fn dtype(&self) -> DType {
        self.meta.dtype
    }

    fn num_channels(&self) -> usize {
        self.view_of(&self.meta.shape).1 as usize
    }

    fn bounds(&self) -> Bbox {
        let ([x, y, z], _) = self.view_of(&self.meta.shape);
        Bbox {
            start: [0; 3],
            stop: [x as i64, y as i64, z as i64],
        }
    }

    fn chunk_shape(&self) -> [u64; 3] {
        self.view_of(&self.meta.chunk_shape).0
    }

    fn resolution(&self) -> [f64; 3] {
        let scale = NdVolume::scale(self);
        let n = scale.len();
        let at = |k: usize| if k < n { scale[n - 1 - k] } else { 1.0 };
        [at(0), at(1), at(2)]
    }

    fn mip(&self) -> usize {
        self.level.as_ref().map_or(0, |l| l.index)
    }

    fn num_mips(&self) -> usize {
        self.level
            .as_ref()
            .map_or(1, |l| l.multiscale.datasets.len())
    }

    fn encoding(&self) -> String {
        let names: Vec<&str> = self.meta.codecs.iter().map(|c| c.name.as_str()).collect();
        names.join("+")
    }

    fn metadata_json(&self) -> String {
        match self.meta.to_files() {
            Ok(files) => files
                .into_iter()
                .find(|(n, _)| *n == "zarr.json" || *n == ".zarray")
                .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
        }
    }

    fn writable(&self) -> bool {
        self.store.writer("").is_ok()
    }

    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        self.view_rank()?;
        let bounds = Volume::bounds(self);
        let itemsize = self.meta.dtype.itemsize();
        let channels = self.num_channels();
        let mut direct = Vec::new();
        for target in targets.iter_mut() {
            let bbox = *target.bbox();
            if bounds.contains(&bbox) {
                // C-ordered (c, z, y, x) is Fortran-ordered [x, y, z, c]: the same bytes.
                direct.push((self.nd_of(&bbox), target.out));
                continue;
            }
            // Partly outside: the fill value there, the inside read apart and copied in.
            let out = target.initialized();
            let fill = self.meta.fill_value.clone();
            for element in out.chunks_exact_mut(itemsize) {
                element.copy_from_slice(&fill);
            }
            if let Some(inside) = bbox.intersect(&bounds) {
                let region = self.nd_of(&inside);
                let mut part = vec![0; region.num_bytes(itemsize).unwrap_or(0)];
                self.read_regions(&mut [NdTarget::new(region, &mut part)])?;
                BoxCopy::new(&inside, &bbox, &inside, channels, itemsize).copy(&part, out);
            }
        }
        // SAFETY: each buffer comes from a `ReadTarget` that holds its `&mut` borrow for this
        // call, exclusively.
        unsafe { self.read_raw(&direct) }
    }

    fn write_from_only(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        self.view_rank()?;
        if !Volume::bounds(self).contains(bbox) {
            return Err(Error::OutOfBounds {
                reason: format!(
                    "{}: box {bbox:?} reaches outside the array's bounds {:?}",
                    self.url(),
                    Volume::bounds(self)
                ),
            });
        }
        crate::volume::write_each(self, bbox, data, only, |part, piece| {
            self.write_nd(&self.nd_of(part), piece)
        })
    }

    fn stored_chunks(&self, bbox: &Bbox) -> Result<Option<Vec<(Bbox, u64)>>> {
        self.view_rank()?;
        let Some(inside) = bbox.intersect(&Volume::bounds(self)) else {
            return Ok(Some(Vec::new()));
        };
        let cells = self.grid.chunks_touching(&self.nd_of(&inside));
        let sizes = self.object_sizes(&cells)?;
        let mut found = Vec::new();
        for (cell, size) in cells.iter().zip(sizes) {
            if let Some(size) = size.filter(|&s| s > 0) {
                let b = self.grid.chunk_box(cell);
                let (mut lo, _) = self.view_of(&b.start);
                // Axes the array lacks (z of a 2-D array) start at 0, not at the extent 1
                // `view_of` gives them.
                for start in lo.iter_mut().skip(self.meta.shape.len() - self.view_lead) {
                    *start = 0;
                }
                let (extent, _) = self.view_of(&b.shape);
                let stop = [0, 1, 2].map(|k| (lo[k] + extent[k]) as i64);
                let b = Bbox {
                    start: lo.map(|v| v as i64),
                    stop,
                };
                if let Some(b) = b.intersect(&Volume::bounds(self)) {
                    found.push((b, size));
                }
            }
        }
        Ok(Some(found))
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    fn stored(&self) -> Option<&dyn StoredChunks> {
        Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn nd(&self) -> Option<&dyn NdVolume> {
        Some(self)
    }
}

impl ZarrArray {
    /// The stored size of each grid cell's object, `None` where absent: probed, or listed
    /// where a remote store is asked about much of the array (see [`stored_sizes`]).
    pub(super) fn object_sizes(&self, cells: &[Vec<u64>]) -> Result<Vec<Option<u64>>> {
        let keys: Vec<String> = cells.iter().map(|c| self.key_of(c)).collect();
        let store = &self.store;
        let query = SizeQuery {
            store,
            total: self.grid.grid_shape().iter().product(),
            concurrency: self.concurrency,
            probe: |key: String| async move { store.size(&key).await },
            listed_as: |key| key,
        };
        stored_sizes(query, &keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::zarr::ome::Axis;

    fn image(version: &str) -> Multiscale {
        Multiscale {
            version: version.into(),
            name: None,
            axes: ["z", "y", "x"]
                .map(|n| Axis {
                    name: n.into(),
                    kind: Some("space".into()),
                    unit: Some("micrometer".into()),
                })
                .to_vec(),
            datasets: vec![MultiscaleDataset {
                path: "0".into(),
                scale: vec![1.0, 0.5, 0.5],
                translation: None,
            }],
            kind: None,
            metadata: None,
            scale: None,
            translation: None,
        }
    }

    #[test]
    fn images_are_created_and_gain_levels() {
        for zarr_format in [ZarrFormat::V3, ZarrFormat::V2] {
            let url = format!("memory://zarr-image-{zarr_format:?}");
            let store = crate::store::open_url(&url, true).unwrap();
            let spec = ZarrSpec {
                zarr_format,
                shape: vec![4, 8, 8],
                dtype: DType::U8,
                chunks: vec![2, 4, 4],
                shards: None,
                codecs: None,
                fill_value: None,
                dimension_names: None,
                attributes: Map::new(),
            };
            let options = OpenOptions::default();
            let level0 =
                ZarrArray::create_image(store.clone(), &spec, image("0.4"), false, &options)
                    .unwrap();
            assert_eq!(level0.prefix, "0/");
            let version = level0.multiscale().unwrap().0.version.clone();
            assert_eq!(
                version,
                if zarr_format == ZarrFormat::V3 {
                    "0.5"
                } else {
                    "0.4"
                }
            );
            level0
                .add_level(
                    1,
                    vec![4, 4, 4],
                    vec![1.0, 1.0, 1.0],
                    Some(vec![0.0, 0.25, 0.25]),
                )
                .unwrap();
            let opened = ZarrArray::open(
                store.clone(),
                &OpenOptions {
                    mip: 1,
                    ..OpenOptions::default()
                },
            )
            .unwrap();
            assert_eq!(opened.meta.shape, vec![4, 4, 4]);
            assert_eq!(opened.meta.chunk_shape, vec![2, 4, 4]);
            assert_eq!(NdVolume::translation(&opened), vec![0.0, 0.25, 0.25]);
            assert_eq!(Volume::num_mips(&opened), 2);
            // Level 3 cannot follow 2 levels; an image is not made twice without overwrite.
            assert!(level0.add_level(3, vec![1; 3], vec![1.0; 3], None).is_err());
            let again = ZarrArray::create_image(store, &spec, image("0.4"), false, &options);
            assert!(matches!(again, Err(Error::LayerExists { .. })));
        }
    }
}
