//! BigArrays.jl's H5sBigArray: a directory of HDF5 block files plus `config.json`.
//!
//! Block id `g` (0-based) on an axis covers `[globalOffset + g*blockSize, globalOffset +
//! (g+1)*blockSize)` and lives in `<prefix><a1>-<b1>_<a2>-<b2>_<a3>-<b3>[_<a4>-<b4>].h5`,
//! ranges 1-based inclusive and relative to `globalOffset`. Each file holds one dataset
//! (`img`, or `main` in 2016 data) of the whole block, h5py axes `(c,) z, y, x`. The layer's
//! bounds are the union of the blocks found in the directory and, for layers bigarrays
//! created, the `size` key it adds to `config.json` (an extension BigArrays.jl ignores).

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::dataset::{self, DatasetSpec, Dims, H5Compression, H5Dataset, OutBuf};
use super::metadata_file;
use super::open_files::OpenFiles;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Bbox;
use crate::store::{self, local_path, PutMode};
use crate::volume::{read_each, write_each, ReadTarget, Volume};
use crate::{interrupt, runtime};

/// Dataset names, newest first.
const DATASET_NAMES: [&str; 2] = ["img", "main"];
const DEFAULT_BLOCK: [u64; 3] = [1024, 1024, 128];
const DEFAULT_CHUNK: [u64; 3] = [32, 32, 4];
/// `config.json` files larger than this are refused.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Offsets and extents stay below 2^62 so that every sum of two fits in `i64`.
const MAX_COORD: u64 = 1 << 62;
/// The largest block (HDF5 file) edge and channel count a config may declare.
const MAX_BLOCK_EDGE: u64 = 1 << 32;
const MAX_CHANNELS: u64 = 65536;
/// How many times a block write rebuilds a block that other writers replaced meanwhile
/// before it gives up (each rebuild means another writer's write of that block landed).
const WRITE_RETRIES: usize = 64;

/// Julia type names of `dataType`.
const JULIA_TYPES: [(&str, DType); 10] = [
    ("UInt8", DType::U8),
    ("Int8", DType::I8),
    ("UInt16", DType::U16),
    ("Int16", DType::I16),
    ("UInt32", DType::U32),
    ("Int32", DType::I32),
    ("UInt64", DType::U64),
    ("Int64", DType::I64),
    ("Float32", DType::F32),
    ("Float64", DType::F64),
];

/// Parses a Julia type name (or a NumPy one) of a type H5s layers hold: the NumPy names of
/// the types Julia names lack (float16, complex) are refused too.
pub fn parse_julia_type(name: &str) -> Option<DType> {
    JULIA_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, d)| d)
        .or_else(|| DType::parse(name).filter(|&d| julia_type(d).is_some()))
}

/// The Julia name of a type.
pub fn julia_type(dtype: DType) -> Option<&'static str> {
    JULIA_TYPES
        .iter()
        .find(|(_, d)| *d == dtype)
        .map(|&(n, _)| n)
}

/// What a `config.json` says.
#[derive(Debug, Clone)]
pub struct H5sConfig {
    /// The block file name prefix (`h5FilePrefix`), a plain file name with no separators.
    pub prefix: String,
    /// The voxel type.
    pub dtype: DType,
    /// The voxel coordinate where block 0 starts (`globalOffset`).
    pub global_offset: [i64; 3],
    /// The edge of each block file in voxels, `(x, y, z)`.
    pub block: [u64; 3],
    /// The HDF5 chunk edge inside each block file, `(x, y, z)`.
    pub chunk: [u64; 3],
    /// Channels per voxel.
    pub channels: usize,
    /// The filter of block files this layer creates.
    pub compression: H5Compression,
    /// bigarrays' extension: the declared `(x, y, z)` extent.
    pub size: Option<[u64; 3]>,
    /// The file as read (unknown keys kept).
    pub json: Map<String, Value>,
}

fn u64_list(url: &str, field: &str, v: &Value) -> Result<Vec<u64>> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| Error::info(url, field, "must be a list of non-negative integers"))
}

impl H5sConfig {
    /// Parses `config.json`, accepting the older key spellings (`prefix`, `blocksz`/`chunksz`,
    /// and `chunkSize` meaning the block size when `innerChunkSize` is present).
    pub fn parse(url: &str, text: &str) -> Result<Self> {
        let json: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| Error::info(url, "(file)", format!("not a JSON object: {e}")))?;
        let get = |k: &str| json.get(k).filter(|v| !v.is_null());
        let prefix = match get("h5FilePrefix").or_else(|| get("prefix")) {
            None => "block_".to_string(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| Error::info(url, "h5FilePrefix", "must be a string"))?
                .to_string(),
        };
        // Block files are `<dir>/<prefix>...`: a prefix with a path separator could name a
        // file outside the layer's directory.
        if prefix.contains(['/', '\\', '\0']) || prefix == "." || prefix == ".." {
            return Err(Error::info(
                url,
                "h5FilePrefix",
                format!("{prefix:?} is not a plain file-name prefix (no '/', '\\' or '..')"),
            ));
        }
        let type_name = get("dataType")
            .ok_or_else(|| Error::info(url, "dataType", "missing"))?
            .as_str()
            .ok_or_else(|| Error::info(url, "dataType", "must be a string"))?;
        let dtype = parse_julia_type(type_name).ok_or_else(|| {
            Error::info(url, "dataType", format!("unsupported type {type_name:?}"))
        })?;
        let (block_key, chunk_key) = if get("innerChunkSize").is_some() {
            ("chunkSize", "innerChunkSize")
        } else if get("blockSize").is_some() {
            ("blockSize", "chunkSize")
        } else {
            (
                "blocksz",
                if get("chunksz").is_some() {
                    "chunksz"
                } else {
                    "chunkSize"
                },
            )
        };
        let block = match get(block_key) {
            Some(v) => u64_list(url, block_key, v)?,
            None => DEFAULT_BLOCK.to_vec(),
        };
        let chunk = match get(chunk_key) {
            Some(v) => u64_list(url, chunk_key, v)?,
            None => DEFAULT_CHUNK.to_vec(),
        };
        if !(3..=4).contains(&block.len()) || block.contains(&0) {
            return Err(Error::info(
                url,
                block_key,
                "must be 3 or 4 positive integers",
            ));
        }
        if block[..3].iter().any(|&b| b > MAX_BLOCK_EDGE)
            || block.get(3).is_some_and(|&c| c > MAX_CHANNELS)
        {
            return Err(Error::info(
                url,
                block_key,
                format!("holds a block edge above 2^32 or more than {MAX_CHANNELS} channels"),
            ));
        }
        if chunk.len() != block.len() || chunk.contains(&0) {
            return Err(Error::info(
                url,
                chunk_key,
                format!("must be {} positive integers", block.len()),
            ));
        }
        let channels = if block.len() == 4 {
            block[3] as usize
        } else {
            1
        };
        let offset: Vec<i64> = match get("globalOffset") {
            None => vec![0; 3],
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| Error::info(url, "globalOffset", "must be a list of integers"))?,
        };
        if offset.iter().any(|&o| o.unsigned_abs() >= MAX_COORD) {
            return Err(Error::info(
                url,
                "globalOffset",
                "holds a value beyond ±2^62",
            ));
        }
        if offset.len() < 3 || offset.len() > 4 || offset.get(3).is_some_and(|&c| c != 0) {
            return Err(Error::info(
                url,
                "globalOffset",
                "must be 3 integers (or 4 with a channel offset of 0)",
            ));
        }
        let compression = match get("compression").map(|v| v.as_str()) {
            None => H5Compression::Blosc,
            Some(Some(c)) => match c.to_ascii_lowercase().as_str() {
                "blosc" | "blosclz" => H5Compression::Blosc,
                "deflate" | "gzip" | "zlib" => H5Compression::Deflate,
                "none" | "" => H5Compression::None,
                other => {
                    return Err(Error::info(
                        url,
                        "compression",
                        format!("unknown compression {other:?} (blosc, deflate, gzip, none)"),
                    ))
                }
            },
            Some(None) => return Err(Error::info(url, "compression", "must be a string")),
        };
        let size = match get("size") {
            None => None,
            Some(v) => {
                let s = u64_list(url, "size", v)?;
                Some(
                    s.get(..3)
                        .and_then(|s| <[u64; 3]>::try_from(s).ok())
                        .filter(|s| s.iter().all(|&n| n < MAX_COORD))
                        .ok_or_else(|| Error::info(url, "size", "must be 3 integers below 2^62"))?,
                )
            }
        };
        Ok(H5sConfig {
            prefix,
            dtype,
            global_offset: [offset[0], offset[1], offset[2]],
            block: [block[0], block[1], block[2]],
            chunk: [chunk[0], chunk[1], chunk[2]],
            channels,
            compression,
            size,
            json,
        })
    }

    /// The `config.json` of a new layer, in BigArrays.jl's current spelling.
    pub fn new_json(
        dtype: DType,
        global_offset: [i64; 3],
        size: [u64; 3],
        block: [u64; 3],
        chunk: [u64; 3],
        channels: usize,
        compression: H5Compression,
    ) -> Result<String> {
        let julia = julia_type(dtype)
            .ok_or_else(|| Error::invalid(format!("dtype {dtype} cannot be stored in h5s")))?;
        let four = |v: [u64; 3], c: u64| -> Vec<u64> {
            let mut v = v.to_vec();
            if channels > 1 {
                v.push(c);
            }
            v
        };
        let value = json!({
            "h5FilePrefix": "block_",
            "dataType": julia,
            "globalOffset": global_offset,
            "blockSize": four(block, channels as u64),
            "chunkSize": four(chunk, channels as u64),
            "compression": match compression {
                H5Compression::Blosc => "blosc",
                H5Compression::Deflate => "deflate",
                H5Compression::None => "none",
            },
            "size": size,
        });
        serde_json::to_string_pretty(&value).map_err(|e| Error::internal(e.to_string()))
    }
}

/// An H5s layer on local disk.
#[derive(Debug)]
pub struct H5sArray {
    dir: PathBuf,
    config: H5sConfig,
    bounds: Bbox,
    fill_missing: bool,
    /// Whether block files are replaced under the directory lock (see `write_block`).
    locks: bool,
    /// Open block datasets with their chunk indexes (indexing a block costs a full scan of
    /// its chunk B-tree, so each is indexed once).
    open: OpenFiles<H5Dataset>,
}

/// Removes the block files of the H5s layer in `dir` before it is overwritten, so the new
/// layer starts empty: the files named as blocks (`<prefix>a-b_c-d_e-f[_g-h].h5`, and their
/// temporary files `...h5#<n>`) with the
/// old `config.json`'s prefix (read leniently: any JSON naming `h5FilePrefix` or `prefix`)
/// and with the prefix new layers get. Other files, and subdirectories, stay.
fn remove_blocks(dir: &Path) -> Result<()> {
    let config = std::fs::read(dir.join("config.json")).ok();
    let old: Option<Value> = config.and_then(|b| serde_json::from_slice(&b).ok());
    let mut prefixes = vec!["block_".to_string()];
    for field in ["h5FilePrefix", "prefix"] {
        if let Some(p) = old
            .as_ref()
            .and_then(|v| v.get(field))
            .and_then(|p| p.as_str())
        {
            prefixes.push(p.to_string());
        }
    }
    let url = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::store(&url, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::store(&url, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // Killed writers' temporary files of blocks go too.
        let block = store::temporary_of(name).unwrap_or(name);
        let is_block = prefixes
            .iter()
            .any(|p| parse_block_name(p, block).is_some());
        if is_block && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::store(&entry.path().display().to_string(), e))?;
        }
    }
    Ok(())
}

/// Parses `<prefix>a-b_c-d_e-f[_g-h].h5` into the 1-based inclusive ranges.
fn parse_block_name(prefix: &str, name: &str) -> Option<Vec<(i64, i64)>> {
    let body = name.strip_prefix(prefix)?.strip_suffix(".h5")?;
    let ranges: Option<Vec<(i64, i64)>> = body
        .split('_')
        .map(|r| {
            let (a, b) = r.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    // Bounded like the config's coordinates, so that offset arithmetic cannot overflow.
    let small = |v: i64| v.unsigned_abs() < MAX_COORD;
    ranges.filter(|r| {
        (3..=4).contains(&r.len()) && r.iter().all(|&(a, b)| a <= b && small(a) && small(b))
    })
}

impl H5sArray {
    /// Opens the layer in directory `dir` (a path or `file://` URL).
    pub fn open(dir: &str, fill_missing: bool) -> Result<Self> {
        let dir = local_path::path_of(dir)?;
        let config_path = dir.join("config.json");
        let url = config_path.display().to_string();
        let text = metadata_file::read_text(&dir, &config_path, MAX_CONFIG_BYTES)?;
        let config = H5sConfig::parse(&url, &text)?;
        // The bounds: the declared size for layers bigarrays created (their edge blocks are
        // whole files that stick out of it), else every block file in the directory.
        let mut lo = [i64::MAX; 3];
        let mut hi = [i64::MIN; 3];
        let mut extend = |a: [i64; 3], b: [i64; 3]| {
            for i in 0..3 {
                lo[i] = lo[i].min(a[i]);
                hi[i] = hi[i].max(b[i]);
            }
        };
        let off = config.global_offset;
        if let Some(size) = config.size {
            extend(off, [0, 1, 2].map(|i| off[i] + size[i] as i64));
        } else {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| Error::store(&dir.display().to_string(), e))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(ranges) = name
                    .to_str()
                    .and_then(|n| parse_block_name(&config.prefix, n))
                else {
                    continue;
                };
                extend(
                    [0, 1, 2].map(|i| off[i] + ranges[i].0 - 1),
                    [0, 1, 2].map(|i| off[i] + ranges[i].1),
                );
            }
        }
        let bounds = if lo[0] == i64::MAX {
            Bbox::new(config.global_offset, config.global_offset)?
        } else {
            Bbox::new(lo, hi)?
        };
        Ok(H5sArray {
            locks: store::directory_locks_work(&dir),
            dir,
            config,
            bounds,
            fill_missing,
            open: OpenFiles::default(),
        })
    }

    /// Writes a BigArrays.jl-compatible `config.json` in `dir` and opens the new layer.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        dir: &str,
        dtype: DType,
        global_offset: [i64; 3],
        size: [u64; 3],
        block: [u64; 3],
        chunk: [u64; 3],
        channels: usize,
        compression: H5Compression,
        overwrite: bool,
    ) -> Result<Self> {
        if block.contains(&0) || chunk.contains(&0) || channels == 0 {
            return Err(Error::invalid(
                "block, chunk sizes and channels must be positive",
            ));
        }
        let path = local_path::path_of(dir)?;
        let config_path = path.join("config.json");
        if config_path.exists() && !overwrite {
            return Err(Error::LayerExists {
                url: path.display().to_string(),
            });
        }
        let text = H5sConfig::new_json(
            dtype,
            global_offset,
            size,
            block,
            chunk,
            channels,
            compression,
        )?;
        let url = config_path.display().to_string();
        if overwrite {
            remove_blocks(&path)?;
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::store(&url, e))?;
        std::fs::write(&config_path, text).map_err(|e| Error::store(&url, e))?;
        Self::open(dir, true)
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &H5sConfig {
        &self.config
    }

    /// The layer directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of block `g`.
    fn block_path(&self, g: [u64; 3]) -> PathBuf {
        let b = self.config.block;
        let mut name = self.config.prefix.clone();
        for i in 0..3 {
            if i > 0 {
                name.push('_');
            }
            name.push_str(&format!("{}-{}", g[i] * b[i] + 1, (g[i] + 1) * b[i]));
        }
        if self.is_4d() {
            name.push_str(&format!("_1-{}", self.config.channels));
        }
        name.push_str(".h5");
        self.dir.join(name)
    }

    /// The blocks `bbox` touches (inside the grid origin), with each block's box.
    fn blocks_touching(&self, bbox: &Bbox) -> Vec<([u64; 3], Bbox)> {
        let (off, b) = (self.config.global_offset, self.config.block);
        let Some(clipped) = bbox.intersect(&self.bounds) else {
            return Vec::new();
        };
        let lo = [0, 1, 2].map(|i| ((clipped.start[i] - off[i]).max(0) as u64) / b[i]);
        let hi = [0, 1, 2].map(|i| ((clipped.stop[i] - off[i]).max(0) as u64).div_ceil(b[i]));
        let mut out = Vec::new();
        for z in lo[2]..hi[2] {
            for y in lo[1]..hi[1] {
                for x in lo[0]..hi[0] {
                    let g = [x, y, z];
                    let start = [0, 1, 2].map(|i| off[i] + (g[i] * b[i]) as i64);
                    let stop = [0, 1, 2].map(|i| start[i] + b[i] as i64);
                    if let Ok(block_box) = Bbox::new(start, stop) {
                        out.push((g, block_box));
                    }
                }
            }
        }
        out
    }

    /// The open dataset of block `g`, or `None` when its file does not exist.
    fn dataset(&self, g: [u64; 3]) -> Result<Option<Arc<H5Dataset>>> {
        self.open.get_or_open(&self.block_path(g), |path| {
            let ds = H5Dataset::open(path, &dataset_name(path)?)?;
            if ds.dtype() != self.dtype() {
                return Err(Error::decode(
                    &ds.label(),
                    format!("holds {}, config.json says {}", ds.dtype(), self.dtype()),
                ));
            }
            Ok(ds)
        })
    }

    /// Reads `bbox` into `out` (Fortran `[x, y, z, c]`); outside the bounds and in missing
    /// blocks reads 0.
    fn read_box(&self, bbox: &Bbox, out: &mut [u8]) -> Result<()> {
        interrupt::begin();
        let shape = bbox.shape();
        let channels = self.num_channels() as u64;
        let buf = OutBuf::new(
            out,
            [shape[0], shape[1], shape[2], channels],
            self.dtype().itemsize(),
        )?;
        let blocks = self.blocks_touching(bbox);
        interrupt::install(&runtime::cpu(), |cancel| {
            blocks.par_iter().try_for_each(|&(g, block_box)| {
                interrupt::cancelled(cancel)?;
                let Some(part) = block_box.intersect(bbox) else {
                    return Ok(());
                };
                let dst_at = [0, 1, 2].map(|i| (part.start[i] - bbox.start[i]) as u64);
                let dst_at = [dst_at[0], dst_at[1], dst_at[2], 0];
                let ext = part.shape();
                let ext = [ext[0], ext[1], ext[2], channels];
                match self.dataset(g)? {
                    None if !self.fill_missing => Err(Error::MissingChunk {
                        key: self.block_path(g).display().to_string(),
                    }),
                    // SAFETY: blocks are disjoint, so each task paints its own box of `buf`.
                    None => unsafe { buf.paint(None, dst_at, ext) },
                    Some(ds) => {
                        let src = [0, 1, 2].map(|i| (part.start[i] - block_box.start[i]) as u64);
                        let src = [src[0], src[1], src[2], 0];
                        let dshape = ds.shape();
                        let clip =
                            [0, 1, 2, 3].map(|i| ext[i].min(dshape[i].saturating_sub(src[i])));
                        if clip != ext {
                            // A dataset smaller than its block: the rest reads as 0.
                            // SAFETY: as above.
                            unsafe { buf.paint(None, dst_at, ext)? };
                        }
                        ds.read(src, clip, buf, dst_at, cancel)
                    }
                }
            })
        })?;
        // Voxels outside every block read as 0.
        let covered: u64 = blocks
            .iter()
            .filter_map(|(_, b)| b.intersect(bbox))
            .map(|p| p.shape().iter().product::<u64>())
            .sum();
        if covered != shape.iter().product::<u64>() {
            self.zero_outside(bbox, out, &blocks)?;
        }
        Ok(())
    }

    /// Zeroes the voxels of `bbox` that no block in `blocks` covers.
    fn zero_outside(&self, bbox: &Bbox, out: &mut [u8], blocks: &[([u64; 3], Bbox)]) -> Result<()> {
        let shape = bbox.shape();
        let channels = self.num_channels() as u64;
        let item = self.dtype().itemsize();
        let mut keep = vec![false; shape.iter().product::<u64>() as usize];
        for (_, b) in blocks {
            if let Some(p) = b.intersect(bbox) {
                for z in p.start[2]..p.stop[2] {
                    for y in p.start[1]..p.stop[1] {
                        let row = (((z - bbox.start[2]) as u64 * shape[1]
                            + (y - bbox.start[1]) as u64)
                            * shape[0]) as usize;
                        let a = row + (p.start[0] - bbox.start[0]) as usize;
                        let b = row + (p.stop[0] - bbox.start[0]) as usize;
                        keep[a..b].fill(true);
                    }
                }
            }
        }
        let plane = keep.len();
        for c in 0..channels as usize {
            for (i, &k) in keep.iter().enumerate() {
                if !k {
                    let at = (c * plane + i) * item;
                    out[at..at + item].fill(0);
                }
            }
        }
        Ok(())
    }

    /// Writes `data` (Fortran `[x, y, z, c]`) into `bbox`, which must lie inside the bounds,
    /// block after block, each block file replaced whole (see [`Self::write_block`]).
    fn write_box(&self, bbox: &Bbox, data: &[u8]) -> Result<()> {
        interrupt::begin();
        if !self.bounds.contains(bbox) {
            return Err(Error::OutOfBounds {
                reason: format!(
                    "{}: write box {:?}..{:?} reaches outside the layer bounds {:?}..{:?}; nothing was written",
                    self.dir.display(),
                    bbox.start,
                    bbox.stop,
                    self.bounds.start,
                    self.bounds.stop
                ),
            });
        }
        let shape = bbox.shape();
        let channels = self.num_channels() as u64;
        let item = self.dtype().itemsize();
        let src_shape = [shape[0], shape[1], shape[2], channels];
        let needed = src_shape.iter().product::<u64>() as usize * item;
        if data.len() != needed {
            return Err(Error::invalid(format!(
                "buffer holds {} bytes, the box {bbox:?} needs {needed}",
                data.len()
            )));
        }
        let rank = if channels > 1 || self.is_4d() { 4 } else { 3 };
        let b = self.config.block;
        let c = self.config.chunk;
        let spec = DatasetSpec {
            rank,
            dtype: self.dtype(),
            shape: [b[0], b[1], b[2], channels],
            chunk: [c[0], c[1], c[2], self.chunk_channels()],
            compression: self.config.compression,
            deflate_level: 5,
        };
        for (g, block_box) in self.blocks_touching(bbox) {
            // Between blocks only: each block is replaced whole or not at all, by an
            // interruption as by a crash.
            interrupt::check()?;
            let Some(part) = block_box.intersect(bbox) else {
                continue;
            };
            let e = part.shape();
            let ext: Dims = [e[0], e[1], e[2], channels];
            let src_at = [0, 1, 2].map(|i| (part.start[i] - bbox.start[i]) as u64);
            let mut piece = vec![0u8; ext.iter().product::<u64>() as usize * item];
            let buf = OutBuf::new(&mut piece, ext, item)?;
            // SAFETY: `piece` is this thread's own buffer.
            unsafe {
                buf.paint(
                    Some((data, src_shape, [src_at[0], src_at[1], src_at[2], 0])),
                    [0; 4],
                    ext,
                )?
            };
            let path = self.block_path(g);
            let start = [0, 1, 2].map(|i| (part.start[i] - block_box.start[i]) as u64);
            // Voxels of the block outside the bounds are never read, so a write covering the
            // rest makes a new block file without reading the old one.
            let whole = block_box.intersect(&self.bounds) == Some(part);
            self.write_block(
                &path,
                &spec,
                [start[0], start[1], start[2], 0],
                ext,
                &piece,
                whole,
            )?;
            // Only to free it now: a later lookup would notice the new version anyway.
            self.open.forget(&path);
        }
        Ok(())
    }

    /// Writes the Fortran box `piece` (extent `ext`, at `start` in the block) into the block
    /// file at `path` so that a kill at any moment leaves the old file or the new one, and
    /// two writers of one block (threads or processes) never lose each other's voxels.
    ///
    /// The new block is built in a temporary file `<block>#<n>` beside it (the local
    /// store's names, so `bigarrays fsck` and the next writer clean up a killed writer's),
    /// from a copy of the old file modified in place by libhdf5, or from nothing when the
    /// write covers the block or the block is new. It then replaces the block by a rename
    /// made, like the local store's conditional puts, under the lock on the directory and
    /// only if the block is still the version that was copied (or still absent): otherwise
    /// another writer replaced it meanwhile, and the copy is made again from the new one.
    /// A write covering the block replaces whatever is there, as in buckets. Where
    /// directory locks do not work (NFS) the rename is unconditional: still whole against
    /// a crash, but the last of two overlapping writers of one block wins.
    fn write_block(
        &self,
        path: &Path,
        spec: &DatasetSpec,
        start: Dims,
        ext: Dims,
        piece: &[u8],
        whole: bool,
    ) -> Result<()> {
        let label = path.display().to_string();
        for _ in 0..WRITE_RETRIES {
            let (mut file, temporary) =
                store::create_temporary(path).map_err(|e| Error::store(&label, e))?;
            let published = self
                .build_block(path, &mut file, &temporary, spec, start, ext, piece, whole)
                .and_then(|mode| {
                    drop(file);
                    let published = if self.locks {
                        store::publish(&temporary, path, &mode)
                    } else {
                        std::fs::rename(&temporary, path).map(|()| true)
                    };
                    published.map_err(|e| Error::store(&label, e))
                });
            match published {
                Ok(true) => return Ok(()),
                // Replaced by another writer since it was copied: nothing was published.
                Ok(false) => {
                    let _ = std::fs::remove_file(&temporary);
                    interrupt::check()?;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temporary);
                    return Err(e);
                }
            }
        }
        Err(Error::store(
            &label,
            format!(
                "replaced by other writers {WRITE_RETRIES} times while this write rebuilt it; \
                 this block was not written"
            ),
        ))
    }

    /// Builds the new block file in `temporary` (open as `file`) and returns the condition
    /// under which it may replace the one at `path`.
    #[allow(clippy::too_many_arguments)]
    fn build_block(
        &self,
        path: &Path,
        file: &mut File,
        temporary: &Path,
        spec: &DatasetSpec,
        start: Dims,
        ext: Dims,
        piece: &[u8],
        whole: bool,
    ) -> Result<PutMode> {
        let label = path.display().to_string();
        let old = match File::open(path) {
            Ok(old) => Some(old),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::store(&label, e)),
        };
        let (mode, name, fresh) = match old {
            // A block of 2016 data keeps its dataset name; one that does not open is
            // replaced all the same, being covered.
            Some(_) if whole => (
                PutMode::Overwrite,
                dataset_name(path).unwrap_or_else(|_| DATASET_NAMES[0].to_string()),
                true,
            ),
            None if whole => (PutMode::Overwrite, DATASET_NAMES[0].to_string(), true),
            None => (PutMode::IfAbsent, DATASET_NAMES[0].to_string(), true),
            Some(mut old) => {
                // The version is that of the descriptor copied from, so a rename over the
                // block between the open and the copy fails the condition.
                let meta = old.metadata().map_err(|e| Error::store(&label, e))?;
                // `io::copy` between files is `copy_file_range` on Linux: in the kernel,
                // and a reflink on file systems that share extents.
                std::io::copy(&mut old, file).map_err(|e| Error::store(&label, e))?;
                (
                    PutMode::IfVersion(store::version_of(&meta)),
                    dataset_name(temporary)?,
                    false,
                )
            }
        };
        dataset::write_box(temporary, &name, spec, start, ext, piece, fresh)?;
        // libhdf5 has closed it: the time set now is the file's last change.
        store::stamp(file).map_err(|e| Error::store(&label, e))?;
        Ok(mode)
    }

    fn is_4d(&self) -> bool {
        ["blockSize", "blocksz", "chunkSize"].iter().any(|k| {
            self.config
                .json
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() == 4)
        })
    }

    fn chunk_channels(&self) -> u64 {
        ["innerChunkSize", "chunkSize", "chunksz"]
            .iter()
            .filter_map(|k| self.config.json.get(*k).and_then(Value::as_array))
            .find(|a| a.len() == 4)
            .and_then(|a| a[3].as_u64())
            .unwrap_or(self.config.channels as u64)
            .max(1)
    }
}

/// The dataset a block file holds: `img`, or `main` in 2016 data.
fn dataset_name(path: &Path) -> Result<String> {
    let file =
        hdf5::File::open(path).map_err(|e| dataset::h5_error(path, "cannot open HDF5 file", e))?;
    for name in DATASET_NAMES {
        if file.link_exists(name) {
            return Ok(name.to_string());
        }
    }
    Err(Error::decode(
        &path.display().to_string(),
        format!("holds no dataset named {:?}", DATASET_NAMES),
    ))
}

impl Volume for H5sArray {
    fn format(&self) -> &'static str {
        "h5s"
    }

    fn url(&self) -> String {
        local_path::url_of_relative(&self.dir)
    }

    fn dtype(&self) -> DType {
        self.config.dtype
    }

    fn num_channels(&self) -> usize {
        self.config.channels
    }

    fn bounds(&self) -> Bbox {
        self.bounds
    }

    /// One block file.
    fn chunk_shape(&self) -> [u64; 3] {
        self.config.block
    }

    /// `config.json`.
    fn metadata_json(&self) -> String {
        Value::Object(self.config.json.clone()).to_string()
    }

    fn writable(&self) -> bool {
        true
    }

    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        read_each(targets, |bbox, out| self.read_box(bbox, out))
    }

    fn write_from_only(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        write_each(self, bbox, data, only, |b, d| self.write_box(b, d))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::VolumeExt;

    #[test]
    fn block_names_parse() {
        assert_eq!(
            parse_block_name("block_", "block_1-256_1-256_97-128.h5"),
            Some(vec![(1, 256), (1, 256), (97, 128)])
        );
        assert_eq!(
            parse_block_name("block_", "block_1-2_1-2_1-2_1-3.h5").map(|r| r.len()),
            Some(4)
        );
        assert_eq!(parse_block_name("block_", "block_1-2_1-2.h5"), None);
        assert_eq!(parse_block_name("block_", "other_1-2_1-2_1-2.h5"), None);
        assert_eq!(parse_block_name("block_", "block_2-1_1-2_1-2.h5"), None);
    }

    #[test]
    fn many_blocks_round_trip_with_a_bounded_set_of_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("layer").display().to_string();
        let size = [16u64, 16, 10];
        let a = H5sArray::create(
            &url,
            DType::U16,
            [-3, 5, 7],
            size,
            [2, 2, 2],
            [2, 2, 1],
            1,
            H5Compression::Deflate,
            false,
        )
        .unwrap();
        let bbox = Bbox::new([-3, 5, 7], [13, 21, 17]).unwrap();
        let values: Vec<u16> = (0..16 * 16 * 10).map(|v| (v * 7 % 65521) as u16).collect();
        a.write_from(&bbox, bytemuck::cast_slice(&values)).unwrap();
        let a = H5sArray::open(&url, true).unwrap();
        assert_eq!(a.bounds(), bbox);
        let mut out = vec![0u16; values.len()];
        a.read_into(&bbox, bytemuck::cast_slice_mut(&mut out))
            .unwrap();
        assert_eq!(out, values);
        assert_eq!(
            std::fs::read_dir(dir.path().join("layer")).unwrap().count(),
            321
        );
        assert!(a.open.len() <= crate::format::hdf5::open_files::CAPACITY);
    }

    fn small_layer(dir: &Path, compression: H5Compression) -> String {
        let url = dir.join("layer").display().to_string();
        H5sArray::create(
            &url,
            DType::U16,
            [0, 0, 0],
            [16, 16, 8],
            [16, 16, 8],
            [4, 4, 4],
            1,
            compression,
            false,
        )
        .unwrap();
        url
    }

    #[test]
    fn writers_of_one_block_in_other_handles_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = small_layer(dir.path(), H5Compression::Deflate);
        // Four threads with a handle each paint their own voxels of the one block, unaligned
        // to its HDF5 chunks, each write a read-modify-write of the whole block file.
        std::thread::scope(|s| {
            for t in 0..4i64 {
                let url = url.clone();
                s.spawn(move || {
                    let a = H5sArray::open(&url, true).unwrap();
                    for round in 0..6i64 {
                        let at = [t * 4 + 1, round * 2 + 1, round % 4 + 1];
                        let bbox = Bbox::new(at, [at[0] + 3, at[1] + 2, at[2] + 3]).unwrap();
                        let v = vec![(t * 100 + round + 1) as u16; 18];
                        a.write_from(&bbox, bytemuck::cast_slice(&v)).unwrap();
                    }
                });
            }
        });
        let a = H5sArray::open(&url, false).unwrap();
        for t in 0..4i64 {
            for round in 0..6i64 {
                let at = [t * 4 + 1, round * 2 + 1, round % 4 + 1];
                let bbox = Bbox::new(at, [at[0] + 3, at[1] + 2, at[2] + 3]).unwrap();
                let mut out = vec![0u16; 18];
                a.read_into(&bbox, bytemuck::cast_slice_mut(&mut out))
                    .unwrap();
                assert!(
                    out.iter().all(|&v| v == (t * 100 + round + 1) as u16),
                    "{t} {round}: {out:?}"
                );
            }
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("layer"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
    }

    #[test]
    fn a_handle_reads_a_block_another_handle_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = small_layer(dir.path(), H5Compression::Blosc);
        let (reader, writer) = (
            H5sArray::open(&url, true).unwrap(),
            H5sArray::open(&url, true).unwrap(),
        );
        let all = Bbox::new([0, 0, 0], [16, 16, 8]).unwrap();
        let one = Bbox::new([3, 4, 5], [4, 5, 6]).unwrap();
        let mut out = vec![0u16; 1];
        for value in [7u16, 8, 9] {
            // Whole (a new file), then a part of it (a modified copy), then whole again.
            if value == 8 {
                writer
                    .write_from(&one, bytemuck::cast_slice(&[value]))
                    .unwrap();
            } else {
                let v = vec![value; 16 * 16 * 8];
                writer.write_from(&all, bytemuck::cast_slice(&v)).unwrap();
            }
            reader
                .read_into(&one, bytemuck::cast_slice_mut(&mut out))
                .unwrap();
            assert_eq!(out, [value]);
        }
    }

    #[test]
    fn old_spellings() {
        let new = H5sConfig::parse(
            "c",
            r#"{"h5FilePrefix":"b_","dataType":"UInt16","globalOffset":[1,2,3],"blockSize":[8,8,4],"chunkSize":[4,4,2],"compression":"blosc"}"#,
        )
        .unwrap();
        assert_eq!(
            (new.block, new.chunk, new.prefix.as_str()),
            ([8, 8, 4], [4, 4, 2], "b_")
        );
        let old = H5sConfig::parse(
            "c",
            r#"{"prefix":"b_","dataType":"Float32","globalOffset":[0,0,0],"blocksz":[8,8,4],"chunksz":[4,4,2],"compression":"deflate"}"#,
        )
        .unwrap();
        assert_eq!(
            (old.block, old.chunk, old.compression),
            ([8, 8, 4], [4, 4, 2], H5Compression::Deflate)
        );
        let mid = H5sConfig::parse(
            "c",
            r#"{"dataType":"UInt8","chunkSize":[8,8,4],"innerChunkSize":[4,4,2]}"#,
        )
        .unwrap();
        assert_eq!((mid.block, mid.chunk), ([8, 8, 4], [4, 4, 2]));
        for name in ["Complex64", "complex64", "float16"] {
            let text = format!(r#"{{"dataType":"{name}"}}"#);
            let err = H5sConfig::parse("c", &text).unwrap_err();
            assert!(err.to_string().contains("dataType"), "{err}");
        }
    }
}
