//! `_core.Layer`: one class over every format's [`Volume`], so the Python `BigArray` never
//! asks which format it holds. Argument conversion only; format-specific operations (an
//! `info` update, copying stored chunks) ask the volume for its Precomputed self.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use super::errors::to_pyerr;
use super::mapping_store::MappingStore;
use super::{detached, zeros};
use crate::codec::{registry, Compression, Encoding};
use crate::dtype::DType;
use crate::error::{Error, Result};
#[cfg(feature = "hdf5")]
use crate::format::hdf5::dataset::H5Compression;
#[cfg(feature = "hdf5")]
use crate::format::hdf5::h5s::H5sArray;
use crate::format::precomputed::BigArray;
use crate::format::precomputed::LayerSpec;
use crate::geometry::Bbox;
use crate::open::{self, Format, OpenOptions};
use crate::store::{self, Handle, Store};
use crate::volume::{ReadTarget, Volume};

/// Outputs at least this large are allocated zeroed (see `Layer::read_many`): glibc serves
/// them with fresh pages (its mmap threshold never exceeds 32 MiB), which calloc need not
/// clear.
const ZEROED_OUTPUT_MIN: usize = 32 << 20;

/// A chunk the store holds: its box's start and stop, and its stored size in bytes.
type StoredChunk = ([i64; 3], [i64; 3], u64);

/// The store a layer URL names, or the Python mapping given as `store=`.
pub(super) fn open_store(
    url: &str,
    mapping: Option<Py<PyAny>>,
    create: bool,
    storage_options: &[(String, String)],
) -> Result<Handle> {
    match mapping {
        Some(_) if !storage_options.is_empty() => Err(Error::invalid(format!(
            "storage_options key {:?} does not apply with store= (a Python mapping)",
            storage_options[0].0
        ))),
        Some(mapping) => Ok(Handle::from(
            Arc::new(MappingStore::new(mapping, url)) as Arc<dyn Store>
        )),
        None => store::open_url_with(url, create, storage_options),
    }
}

/// `storage_options` as sorted `(key, value)` pairs (sorted so messages are stable).
pub(super) fn store_options(options: Option<HashMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = options.unwrap_or_default().into_iter().collect();
    pairs.sort();
    pairs
}

/// `compression=` as the engine takes it: "auto" is the encoding's default (gzip for raw,
/// none for jpeg/png/blosc), `None` plain chunks.
fn compression(name: Option<&str>) -> Result<Option<Compression>> {
    match name {
        Some("auto") => Ok(None),
        other => Ok(Some(Compression::parse(other.unwrap_or("none"))?)),
    }
}

/// H5s's `compression=`: the HDF5 filter of new block files.
#[cfg(feature = "hdf5")]
fn h5s_compression(name: Option<&str>) -> Result<H5Compression> {
    Ok(match name {
        None => H5Compression::None,
        Some("auto" | "blosc") => H5Compression::Blosc,
        Some("gzip" | "deflate") => H5Compression::Deflate,
        Some(other) => {
            return Err(Error::invalid(format!(
                "compression {other:?} is not supported for h5s (\"blosc\", \"gzip\"/\"deflate\", None)"
            )))
        }
    })
}

/// `(start, stop)` pairs as boxes.
fn boxes(pairs: Option<Vec<([i64; 3], [i64; 3])>>) -> PyResult<Option<Vec<Bbox>>> {
    pairs
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(start, stop)| Bbox::new(start, stop))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()
        .map_err(to_pyerr)
}

/// One scale of a layer in any format, as the engine sees it. Use `bigarrays.BigArray`.
#[pyclass(frozen, module = "bigarrays._core")]
pub struct Layer {
    inner: Arc<dyn Volume>,
}

impl Layer {
    fn precomputed(&self) -> Option<&BigArray> {
        self.inner.as_any().downcast_ref::<BigArray>()
    }
}

#[pymethods]
impl Layer {
    /// Opens the layer at `url` in its format (detected unless `format` names it).
    #[staticmethod]
    #[pyo3(signature = (url, *, compression, mip = 0, fill_missing = true, concurrency = 64, store = None,
                        storage_options = None, cache_bytes = 0, format = None, dataset = None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        url: &str,
        compression: Option<&str>,
        mip: usize,
        fill_missing: bool,
        concurrency: usize,
        store: Option<Py<PyAny>>,
        storage_options: Option<HashMap<String, String>>,
        cache_bytes: usize,
        format: Option<&str>,
        dataset: Option<String>,
    ) -> PyResult<Layer> {
        let options = OpenOptions {
            mip,
            fill_missing,
            compression: self::compression(compression).map_err(to_pyerr)?,
            concurrency,
            cache_bytes,
            format: format.map(Format::parse).transpose().map_err(to_pyerr)?,
            dataset,
            storage_options: store_options(storage_options),
        };
        let inner = detached(py, move || match store {
            // A Python mapping holds keys, so only Precomputed layers. `url` is a key prefix
            // there, not a path: only what the caller asked for can name another format.
            Some(mapping) => {
                let asked = options
                    .format
                    .or(options.dataset.as_ref().map(|_| Format::Hdf5));
                if let Some(format) = asked.filter(|f| f.is_hdf5()) {
                    return Err(Error::invalid(format!(
                        "format {:?} reads local files: store= does not apply",
                        format.name()
                    )));
                }
                let store = open_store(url, Some(mapping), false, &options.storage_options)?;
                Ok(Arc::new(BigArray::open_store(store, options)?) as Arc<dyn Volume>)
            }
            None => open::open(url, &options),
        })?;
        Ok(Layer { inner })
    }

    /// Creates a Precomputed layer (its `info`) and opens it.
    #[staticmethod]
    #[pyo3(signature = (url, *, shape, dtype, chunks, voxel_offset, resolution, num_channels, encoding,
                        layer_type, overwrite, compression, encoding_options = None, concurrency = 64,
                        store = None, storage_options = None, sharding = None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        url: &str,
        shape: [u64; 3],
        dtype: &str,
        chunks: [u64; 3],
        voxel_offset: [i64; 3],
        resolution: [f64; 3],
        num_channels: usize,
        encoding: String,
        layer_type: String,
        overwrite: bool,
        compression: Option<&str>,
        encoding_options: Option<&str>,
        concurrency: usize,
        store: Option<Py<PyAny>>,
        storage_options: Option<HashMap<String, String>>,
        sharding: Option<&str>,
    ) -> PyResult<Layer> {
        let sharding = match sharding {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|_| {
                to_pyerr(Error::invalid(
                    "sharding must be JSON (\"auto\" or an object)",
                ))
            })?),
        };
        let encoding_options = match encoding_options {
            None => Default::default(),
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    return Err(to_pyerr(Error::invalid(
                        "encoding_options must be a JSON object",
                    )))
                }
            },
        };
        let storage_options = store_options(storage_options);
        let dtype = DType::parse(dtype)
            .ok_or_else(|| to_pyerr(Error::invalid(format!("dtype {dtype:?} is not supported"))))?;
        let options = OpenOptions {
            compression: self::compression(compression).map_err(to_pyerr)?,
            concurrency,
            ..OpenOptions::default()
        };
        let inner = detached(py, move || {
            let store = open_store(url, store, true, &storage_options)?;
            // A bad option value names the field of the info it would have gone in, as it
            // did when the info parse found it.
            registry::check_option_keys(&encoding_options)?;
            let encoding =
                Encoding::from_scale(&encoding, &encoding_options).map_err(|(field, reason)| {
                    Error::info(&store.url_of("info"), format!("scales[0].{field}"), reason)
                })?;
            let spec = LayerSpec {
                shape,
                dtype,
                chunks,
                voxel_offset,
                resolution,
                num_channels,
                encoding,
                layer_type,
                sharding,
            };
            BigArray::create_in(store, &spec, overwrite, options)
        })?;
        Ok(Layer {
            inner: Arc::new(inner),
        })
    }

    /// Creates an H5s layer (BigArrays.jl's `config.json`) in directory `url`.
    #[cfg(feature = "hdf5")]
    #[staticmethod]
    #[pyo3(signature = (url, *, shape, dtype, block, chunk, voxel_offset, num_channels, compression, overwrite))]
    #[allow(clippy::too_many_arguments)]
    fn create_h5s(
        py: Python<'_>,
        url: &str,
        shape: [u64; 3],
        dtype: &str,
        block: [u64; 3],
        chunk: [u64; 3],
        voxel_offset: [i64; 3],
        num_channels: usize,
        compression: Option<&str>,
        overwrite: bool,
    ) -> PyResult<Layer> {
        let dtype = DType::parse(dtype)
            .ok_or_else(|| to_pyerr(Error::invalid(format!("dtype {dtype:?} is not supported"))))?;
        let compression = h5s_compression(compression).map_err(to_pyerr)?;
        let inner = detached(py, move || {
            H5sArray::create(
                url,
                dtype,
                voxel_offset,
                shape,
                block,
                chunk,
                num_channels,
                compression,
                overwrite,
            )
        })?;
        Ok(Layer {
            inner: Arc::new(inner),
        })
    }

    /// The format's metadata as JSON text: the `info` (unknown keys included),
    /// `config.json` for H5s, a summary for the other HDF5 layouts.
    fn metadata_json(&self) -> String {
        self.inner.metadata_json()
    }

    /// Replaces the stored `info` (same data type, channels and full-resolution scale) and
    /// returns a handle on it. Precomputed layers only.
    fn update_info(&self, py: Python<'_>, json: &str) -> PyResult<Layer> {
        let Some(array) = self.precomputed() else {
            return Err(to_pyerr(Error::invalid(format!(
                "{}: {} layers have no info to update",
                self.inner.url(),
                self.inner.format()
            ))));
        };
        let inner = detached(py, || array.update_info(json))?;
        Ok(Layer {
            inner: Arc::new(inner),
        })
    }

    /// `"precomputed"`, `"h5s"`, `"aligned"` or `"hdf5"`.
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format()
    }

    /// Whether the format takes writes (the store may still refuse them).
    #[getter]
    fn writable(&self) -> bool {
        self.inner.writable()
    }

    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    #[getter]
    fn mip(&self) -> usize {
        self.inner.mip()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    #[getter]
    fn num_channels(&self) -> usize {
        self.inner.num_channels()
    }

    #[getter]
    fn size(&self) -> [u64; 3] {
        self.inner.bounds().shape()
    }

    #[getter]
    fn voxel_offset(&self) -> [i64; 3] {
        self.inner.bounds().start
    }

    /// The storage unit: the chunk, H5s block, one section, or the HDF5 chunk shape.
    #[getter]
    fn chunks(&self) -> [u64; 3] {
        self.inner.chunk_shape()
    }

    #[getter]
    fn resolution(&self) -> [f64; 3] {
        self.inner.resolution()
    }

    /// The chunk encoding, or the format's name for the HDF5 layouts.
    #[getter]
    fn encoding(&self) -> String {
        self.inner.encoding()
    }

    #[getter]
    fn num_mips(&self) -> usize {
        self.inner.num_mips()
    }

    /// Reads `[start, stop)` as a flat uint8 buffer of Fortran-ordered voxels.
    fn read<'py>(
        &self,
        py: Python<'py>,
        start: [i64; 3],
        stop: [i64; 3],
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let mut arrays = self.read_many(py, vec![start], vec![stop])?;
        arrays
            .pop()
            .ok_or_else(|| to_pyerr(Error::invalid("no box to read")))
    }

    /// Reads each `[starts[i], stops[i])` into its own flat uint8 buffer of Fortran-ordered
    /// voxels, fetching and decoding every chunk they touch once.
    fn read_many<'py>(
        &self,
        py: Python<'py>,
        starts: Vec<[i64; 3]>,
        stops: Vec<[i64; 3]>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
        if starts.len() != stops.len() {
            return Err(to_pyerr(Error::invalid(
                "starts and stops differ in length",
            )));
        }
        let bytes_per_voxel = self.inner.dtype().itemsize() * self.inner.num_channels();
        let mut arrays = Vec::with_capacity(starts.len());
        let mut boxes = Vec::with_capacity(starts.len());
        for (start, stop) in starts.into_iter().zip(stops) {
            let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
            let len = bbox
                .num_voxels()
                .and_then(|n| n.checked_mul(bytes_per_voxel))
                .ok_or_else(|| {
                    to_pyerr(Error::invalid(format!("box {bbox:?} is too large to read")))
                })?;
            // Large outputs are calloc'd: fresh zero pages from the kernel cost nothing until
            // written, so the read skips writing zeros (missing chunks, outside the bounds)
            // and a sparse cutout never touches most of its pages. Smaller ones start
            // uninitialised: calloc would clear reused heap blocks that the read overwrites.
            let zeroed = len >= ZEROED_OUTPUT_MIN;
            let array = if zeroed {
                zeros(py, len)?
            } else {
                // SAFETY: an uninitialised array is sound to create; the read writes every
                // byte before Python can see it (on failure it is dropped unseen).
                unsafe { PyArray1::<u8>::new(py, len, false) }
            };
            boxes.push((bbox, len, zeroed));
            arrays.push(array);
        }
        // The guards hold numpy's borrow flags, so no other Rust code can borrow the arrays.
        let guards: Vec<_> = arrays.iter().map(|a| a.readwrite()).collect();
        let mut targets: Vec<ReadTarget<'_>> = Vec::with_capacity(arrays.len());
        for (array, (bbox, len, zeroed)) in arrays.iter().zip(boxes) {
            let data = array.data();
            targets.push(if zeroed {
                // SAFETY: `zeros` allocated `len` initialised (zero) bytes at `data`, kept
                // alive by `arrays` and exclusively borrowed by `guards` for the whole read;
                // no Python code runs on it meanwhile (not yet returned).
                ReadTarget::zeroed(bbox, unsafe { std::slice::from_raw_parts_mut(data, len) })
            } else {
                // SAFETY: as above, except that the bytes are uninitialised, which a
                // `MaybeUninit` slice may be.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(data.cast::<MaybeUninit<u8>>(), len) };
                ReadTarget::uninit(bbox, out)
            });
        }
        let inner = &self.inner;
        detached(py, move || inner.read_many(&mut targets))?;
        drop(guards);
        Ok(arrays)
    }

    /// Hit/miss counters and size of the decoded-chunk cache; None without one.
    fn cache_stats(&self) -> Option<HashMap<&'static str, u64>> {
        self.inner.cache_stats().map(|s| {
            HashMap::from([
                ("hits", s.hits),
                ("misses", s.misses),
                ("entries", s.entries as u64),
                ("bytes", s.bytes as u64),
                ("budget", s.budget as u64),
            ])
        })
    }

    /// Copies the chunks of `[start, stop)` (only those touching a box of `only`, when
    /// given) from `src` as stored bytes when the two scales allow it (see
    /// `BigArray::copy_stored_from`); chunks `src` lacks are not written. False, having
    /// written nothing, if the scales do not allow it (formats other than Precomputed
    /// never do).
    #[pyo3(signature = (src, start, stop, only = None))]
    fn copy_stored_from(
        &self,
        py: Python<'_>,
        src: PyRef<'_, Layer>,
        start: [i64; 3],
        stop: [i64; 3],
        only: Option<Vec<([i64; 3], [i64; 3])>>,
    ) -> PyResult<bool> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let only = boxes(only)?;
        let (Some(dst), Some(src)) = (self.precomputed(), src.precomputed()) else {
            return Ok(false);
        };
        detached(py, move || {
            dst.copy_stored_from(src, &bbox, only.as_deref())
        })
    }

    /// The storage units of `[start, stop)` that hold data, as `(start, stop, stored
    /// bytes)`, learned without fetching data; None when the format cannot tell (then every
    /// unit may hold data).
    fn stored_chunks(
        &self,
        py: Python<'_>,
        start: [i64; 3],
        stop: [i64; 3],
    ) -> PyResult<Option<Vec<StoredChunk>>> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let inner = &self.inner;
        let chunks = detached(py, move || inner.stored_chunks(&bbox))?;
        Ok(chunks.map(|chunks| {
            chunks
                .into_iter()
                .map(|(b, size)| (b.start, b.stop, size))
                .collect()
        }))
    }

    /// Writes `[start, stop)` from a flat uint8 buffer of Fortran-ordered voxels; with
    /// `only`, just the chunks touching one of those boxes where the format can.
    #[pyo3(signature = (start, stop, data, only = None))]
    fn write(
        &self,
        py: Python<'_>,
        start: [i64; 3],
        stop: [i64; 3],
        data: PyReadonlyArray1<'_, u8>,
        only: Option<Vec<([i64; 3], [i64; 3])>>,
    ) -> PyResult<()> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let only = boxes(only)?;
        let data = data.as_slice()?;
        let inner = &self.inner;
        detached(py, move || {
            inner.write_from_only(&bbox, data, only.as_deref())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Layer({:?}, format={:?}, mip={})",
            self.inner.url(),
            self.inner.format(),
            self.inner.mip()
        )
    }
}
