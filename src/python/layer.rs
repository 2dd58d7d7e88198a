//! `_core.Layer`: one class over every format's [`Volume`], so the Python `BigArray` never
//! asks which format it holds. Argument conversion only; format-specific operations (an
//! `info` update, copying stored chunks) ask the volume for its Precomputed self.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use super::async_calls::{self, Call, Work};
use super::errors::to_pyerr;
use super::interrupt::CancelToken;
use super::mapping_store::MappingStore;
use super::{detached, zeros};
use crate::codec::{registry, Compression, Encoding, GzipLevel};
use crate::dtype::DType;
use crate::error::{Error, Result};
#[cfg(feature = "hdf5")]
use crate::format::hdf5::dataset::H5Compression;
#[cfg(feature = "hdf5")]
use crate::format::hdf5::h5s::H5sArray;
use crate::format::precomputed::BigArray;
use crate::format::precomputed::LayerSpec;
use crate::format::zarr::codecs::CodecSpec;
use crate::format::zarr::metadata::ZarrFormat;
use crate::format::zarr::ome::Multiscale;
use crate::format::zarr::{ZarrArray, ZarrSpec};
use crate::geometry::Bbox;
use crate::nd::NdBox;
use crate::open::{self, Format, OpenOptions};
use crate::store::{self, Handle, Store};
use crate::volume::{NdTarget, NdVolume, ReadTarget, Volume};

/// Outputs at least this large are allocated zeroed (see `Layer::read_many`): glibc serves
/// them with fresh pages (its mmap threshold never exceeds 32 MiB), which calloc need not
/// clear.
const ZEROED_OUTPUT_MIN: usize = 32 << 20;

/// A chunk the store holds: its box's start and stop, and its stored size in bytes.
type StoredChunk = ([i64; 3], [i64; 3], u64);
/// A stored unit of an N-dimensional array: start, stop, stored bytes.
type StoredUnit = (Vec<u64>, Vec<u64>, u64);

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

/// `compress_level=` as the engine takes it: `None` is [`GzipLevel::DEFAULT`].
fn gzip_level(level: Option<i64>) -> Result<GzipLevel> {
    level.map_or(Ok(GzipLevel::DEFAULT), |n| {
        GzipLevel::new(n, "compress_level")
    })
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

/// The output arrays of one read: large ones calloc'd (fresh zero pages from the kernel
/// cost nothing until written, so the read skips writing zeros and a sparse cutout never
/// touches most of its pages), smaller ones uninitialised (calloc would clear reused heap
/// blocks that the read overwrites).
struct Outputs<'py> {
    arrays: Vec<Bound<'py, PyArray1<u8>>>,
    lens: Vec<usize>,
    zeroed: Vec<bool>,
}

/// One output's memory, as a read target takes it.
enum Buffer<'a> {
    Zeroed(&'a mut [u8]),
    Uninit(&'a mut [MaybeUninit<u8>]),
}

impl<'py> Outputs<'py> {
    fn new(py: Python<'py>, lens: &[usize]) -> PyResult<Self> {
        let mut arrays = Vec::with_capacity(lens.len());
        let mut zeroed = Vec::with_capacity(lens.len());
        for &len in lens {
            let z = len >= ZEROED_OUTPUT_MIN;
            arrays.push(if z {
                zeros(py, len)?
            } else {
                // SAFETY: an uninitialised array is sound to create; the read writes every
                // byte before Python can see it (on failure it is dropped unseen).
                unsafe { PyArray1::<u8>::new(py, len, false) }
            });
            zeroed.push(z);
        }
        Ok(Outputs {
            arrays,
            lens: lens.to_vec(),
            zeroed,
        })
    }

    /// Output `i`'s memory. The caller holds the arrays' `readwrite` guards for as long as
    /// the buffer lives, and hands each out once.
    #[allow(clippy::mut_from_ref)]
    fn buffer(&self, i: usize) -> Buffer<'_> {
        let array = &self.arrays[i];
        let (data, len) = (array.data(), self.lens[i]);
        if self.zeroed[i] {
            // SAFETY: `zeros` allocated `len` initialised (zero) bytes at `data`, kept alive
            // by `arrays` and exclusively borrowed by the caller's guards for the whole read;
            // no Python code runs on it meanwhile (not yet returned).
            Buffer::Zeroed(unsafe { std::slice::from_raw_parts_mut(data, len) })
        } else {
            // SAFETY: as above, except that the bytes are uninitialised, which a
            // `MaybeUninit` slice may be.
            Buffer::Uninit(unsafe {
                std::slice::from_raw_parts_mut(data.cast::<MaybeUninit<u8>>(), len)
            })
        }
    }
}

/// Reads `boxes` (needing `lens` bytes each) into new flat uint8 arrays, the GIL released
/// meanwhile: the sync `read_many` and the async batches share it.
pub(super) fn read_boxes<'py>(
    py: Python<'py>,
    volume: &dyn Volume,
    boxes: Vec<Bbox>,
    lens: &[usize],
) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
    let outputs = Outputs::new(py, lens)?;
    let guards: Vec<_> = outputs.arrays.iter().map(|a| a.readwrite()).collect();
    let mut targets: Vec<ReadTarget<'_>> = boxes
        .into_iter()
        .enumerate()
        .map(|(i, bbox)| match outputs.buffer(i) {
            Buffer::Zeroed(out) => ReadTarget::zeroed(bbox, out),
            Buffer::Uninit(out) => ReadTarget::uninit(bbox, out),
        })
        .collect();
    detached(py, move || volume.read_many(&mut targets))?;
    drop(guards);
    Ok(outputs.arrays)
}

/// Reads `regions` of the array's own axes into new flat uint8 arrays, as [`read_boxes`].
pub(super) fn read_nd<'py>(
    py: Python<'py>,
    nd: &dyn NdVolume,
    regions: Vec<NdBox>,
    lens: &[usize],
) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
    let outputs = Outputs::new(py, lens)?;
    let guards: Vec<_> = outputs.arrays.iter().map(|a| a.readwrite()).collect();
    let mut targets: Vec<NdTarget<'_>> = regions
        .into_iter()
        .enumerate()
        .map(|(i, region)| match outputs.buffer(i) {
            Buffer::Zeroed(out) => NdTarget::zeroed(region, out),
            Buffer::Uninit(out) => NdTarget::uninit(region, out),
        })
        .collect();
    detached(py, move || nd.read_regions(&mut targets))?;
    drop(guards);
    Ok(outputs.arrays)
}

/// One scale of a layer in any format, as the engine sees it. Use `bigarrays.BigArray`.
#[pyclass(frozen, module = "bigarrays._core")]
pub struct Layer {
    inner: Arc<dyn Volume>,
}

impl Layer {
    fn submit(&self, work: Work, token: Py<CancelToken>, done: Py<PyAny>) {
        async_calls::submit(Call {
            volume: self.inner.clone(),
            work,
            token,
            done,
        });
    }

    fn precomputed(&self) -> Option<&BigArray> {
        self.inner.as_any().downcast_ref::<BigArray>()
    }

    /// The N-dimensional view, or an error naming the format that has none.
    fn nd_or_err(&self) -> PyResult<&dyn NdVolume> {
        self.inner.nd().ok_or_else(|| {
            to_pyerr(Error::invalid(format!(
                "{}: {} layers are indexed (x, y, z[, c]), not in axes of their own",
                self.inner.url(),
                self.inner.format()
            )))
        })
    }

    /// The boxes `[starts[i], stops[i])` and the bytes each needs.
    fn boxes(
        &self,
        starts: Vec<[i64; 3]>,
        stops: Vec<[i64; 3]>,
    ) -> PyResult<(Vec<Bbox>, Vec<usize>)> {
        if starts.len() != stops.len() {
            return Err(to_pyerr(Error::invalid(
                "starts and stops differ in length",
            )));
        }
        let bytes_per_voxel = self.inner.dtype().itemsize() * self.inner.num_channels();
        let mut boxes = Vec::with_capacity(starts.len());
        let mut lens = Vec::with_capacity(starts.len());
        for (start, stop) in starts.into_iter().zip(stops) {
            let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
            let len = bbox
                .num_voxels()
                .and_then(|n| n.checked_mul(bytes_per_voxel))
                .ok_or_else(|| {
                    to_pyerr(Error::invalid(format!("box {bbox:?} is too large to read")))
                })?;
            boxes.push(bbox);
            lens.push(len);
        }
        Ok((boxes, lens))
    }

    /// The regions `[starts[i], starts[i] + shapes[i])` of the array's own axes and the
    /// bytes each needs.
    fn regions(
        &self,
        starts: Vec<Vec<u64>>,
        shapes: Vec<Vec<u64>>,
    ) -> PyResult<(Vec<NdBox>, Vec<usize>)> {
        if starts.len() != shapes.len() {
            return Err(to_pyerr(Error::invalid(
                "starts and shapes differ in length",
            )));
        }
        let itemsize = self.inner.dtype().itemsize();
        let regions: Vec<NdBox> = starts
            .into_iter()
            .zip(shapes)
            .map(|(start, shape)| NdBox::new(start, shape))
            .collect();
        let lens = regions
            .iter()
            .map(|r| {
                r.num_bytes(itemsize).ok_or_else(|| {
                    to_pyerr(Error::invalid(format!("box {r:?} is too large to read")))
                })
            })
            .collect::<PyResult<Vec<usize>>>()?;
        Ok((regions, lens))
    }
}

/// Write access to the caller's output buffers, each checked to hold exactly `lens[i]`
/// bytes; numpy refuses two that overlap (or the same array twice).
fn writable<'py>(
    outs: &[Bound<'py, PyArray1<u8>>],
    lens: &[usize],
) -> PyResult<Vec<numpy::PyReadwriteArray1<'py, u8>>> {
    if outs.len() != lens.len() {
        return Err(to_pyerr(Error::invalid(format!(
            "{} output buffers for {} boxes",
            outs.len(),
            lens.len()
        ))));
    }
    outs.iter()
        .zip(lens)
        .enumerate()
        .map(|(i, (out, &len))| {
            let have = out.len()?;
            if have != len {
                return Err(to_pyerr(Error::invalid(format!(
                    "output buffer {i} holds {have} bytes; its box needs {len}"
                ))));
            }
            Ok(out.try_readwrite()?)
        })
        .collect()
}

/// A Zarr codec chain given as v3 JSON: a list of `{"name": ..., "configuration": {...}}`.
fn parse_codecs(text: &str) -> Result<Vec<CodecSpec>> {
    let bad =
        || Error::invalid("codecs must be a list of {\"name\": ..., \"configuration\": {...}}");
    let serde_json::Value::Array(items) = serde_json::from_str(text).map_err(|_| bad())? else {
        return Err(bad());
    };
    items
        .into_iter()
        .map(|item| {
            let name = item.get("name").and_then(|n| n.as_str()).ok_or_else(bad)?;
            let configuration = match item.get("configuration") {
                None => Default::default(),
                Some(serde_json::Value::Object(map)) => map.clone(),
                Some(_) => return Err(bad()),
            };
            Ok(CodecSpec {
                name: name.to_string(),
                configuration,
            })
        })
        .collect()
}

#[pymethods]
impl Layer {
    /// Opens the layer at `url` in its format (detected unless `format` names it).
    #[staticmethod]
    #[pyo3(signature = (url, *, compression, mip = 0, fill_missing = true, concurrency = 64, store = None,
                        storage_options = None, cache_bytes = 0, format = None, dataset = None,
                        compress_level = None))]
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
        compress_level: Option<i64>,
    ) -> PyResult<Layer> {
        let options = OpenOptions {
            mip,
            fill_missing,
            compression: self::compression(compression).map_err(to_pyerr)?,
            gzip_level: gzip_level(compress_level).map_err(to_pyerr)?,
            concurrency,
            cache_bytes,
            format: format.map(Format::parse).transpose().map_err(to_pyerr)?,
            dataset,
            storage_options: store_options(storage_options),
        };
        let inner = detached(py, move || match store {
            // A Python mapping holds keys, so only Precomputed and Zarr layers. `url` is a key prefix
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
                open::open_store(store, &options)
            }
            None => open::open(url, &options),
        })?;
        Ok(Layer { inner })
    }

    /// Creates a Precomputed layer (its `info`) and opens it.
    #[staticmethod]
    #[pyo3(signature = (url, *, shape, dtype, chunks, voxel_offset, resolution, num_channels, encoding,
                        layer_type, overwrite, compression, encoding_options = None, concurrency = 64,
                        store = None, storage_options = None, sharding = None, compress_level = None))]
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
        compress_level: Option<i64>,
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
            gzip_level: gzip_level(compress_level).map_err(to_pyerr)?,
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

    /// The OME-Zarr multiscales of the image this Zarr array is a level of, as group
    /// attributes in the image's NGFF layout (JSON), and the level's index; `None` for
    /// anything else.
    fn zarr_multiscale(&self) -> Option<(String, usize)> {
        let array = self.inner.as_any().downcast_ref::<ZarrArray>()?;
        let (multiscale, index) = array.multiscale()?;
        let mut attributes = serde_json::Map::new();
        Multiscale::write_attributes(std::slice::from_ref(multiscale), &mut attributes);
        Some((serde_json::Value::Object(attributes).to_string(), index))
    }

    /// Adds (or replaces) level `index` of the OME-Zarr image this array is a level of:
    /// an array of `shape` chunked and encoded as this one, and its `scale` and
    /// `translation` in the image's multiscales. Open it with `mip=index`.
    #[pyo3(signature = (index, shape, scale, translation = None))]
    fn add_zarr_level(
        &self,
        py: Python<'_>,
        index: usize,
        shape: Vec<u64>,
        scale: Vec<f64>,
        translation: Option<Vec<f64>>,
    ) -> PyResult<()> {
        let Some(array) = self.inner.as_any().downcast_ref::<ZarrArray>() else {
            return Err(to_pyerr(Error::invalid(format!(
                "{}: {} layers have no OME-Zarr levels",
                self.inner.url(),
                self.inner.format()
            ))));
        };
        detached(py, move || {
            array.add_level(index, shape, scale, translation)
        })
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
        let (boxes, lens) = self.boxes(starts, stops)?;
        read_boxes(py, &*self.inner, boxes, &lens)
    }

    /// `read_many` into the caller's buffers: `outs[i]` is a writable contiguous flat uint8
    /// array of exactly box `i`'s bytes (e.g. one patch of a batch).
    fn read_many_into(
        &self,
        py: Python<'_>,
        starts: Vec<[i64; 3]>,
        stops: Vec<[i64; 3]>,
        outs: Vec<Bound<'_, PyArray1<u8>>>,
    ) -> PyResult<()> {
        let (boxes, lens) = self.boxes(starts, stops)?;
        let mut guards = writable(&outs, &lens)?;
        let mut targets: Vec<ReadTarget<'_>> = boxes
            .into_iter()
            .zip(guards.iter_mut())
            .map(|(bbox, out)| Ok(ReadTarget::new(bbox, out.as_slice_mut()?)))
            .collect::<PyResult<_>>()?;
        let inner = &self.inner;
        detached(py, move || inner.read_many(&mut targets))
    }

    /// `read_many` for asyncio: queues the read and returns at once. From an engine thread,
    /// later, `done(arrays, None)` gets the flat uint8 arrays or `done(None, exception)`
    /// the error; cancelling `token` stops the read (see `async_calls`).
    fn submit_read_many(
        &self,
        starts: Vec<[i64; 3]>,
        stops: Vec<[i64; 3]>,
        token: Py<CancelToken>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let (boxes, lens) = self.boxes(starts, stops)?;
        self.submit(Work::Read(boxes, lens), token, done);
        Ok(())
    }

    /// `read_nd_many` for asyncio, as `submit_read_many`.
    fn submit_read_nd_many(
        &self,
        starts: Vec<Vec<u64>>,
        shapes: Vec<Vec<u64>>,
        token: Py<CancelToken>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        self.nd_or_err()?;
        let (regions, lens) = self.regions(starts, shapes)?;
        self.submit(Work::ReadNd(regions, lens), token, done);
        Ok(())
    }

    /// `write` for asyncio, as `submit_read_many`: `done(None, None)` once written. `data`
    /// must not change until then.
    #[pyo3(signature = (start, stop, data, token, done, only = None))]
    fn submit_write(
        &self,
        start: [i64; 3],
        stop: [i64; 3],
        data: Bound<'_, PyArray1<u8>>,
        token: Py<CancelToken>,
        done: Py<PyAny>,
        only: Option<Vec<([i64; 3], [i64; 3])>>,
    ) -> PyResult<()> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let only = boxes(only)?;
        let data = data.unbind();
        self.submit(Work::Write { bbox, data, only }, token, done);
        Ok(())
    }

    /// `write_nd` for asyncio, as `submit_write`.
    fn submit_write_nd(
        &self,
        start: Vec<u64>,
        shape: Vec<u64>,
        data: Bound<'_, PyArray1<u8>>,
        token: Py<CancelToken>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        self.nd_or_err()?;
        let region = NdBox::new(start, shape);
        let data = data.unbind();
        self.submit(Work::WriteNd { region, data }, token, done);
        Ok(())
    }

    /// How new chunks are stored when they are the voxels as they are (`"raw"`) or one gzip
    /// stream of them (`"gzip"`), as `crate::stored` describes; None for any other encoding
    /// or chain. Layers of two formats that agree copy chunks as stored bytes.
    fn stored_form(&self) -> Option<&'static str> {
        let layout = self.inner.stored()?.stored_layout()?;
        Some(match layout.form {
            crate::stored::StoredForm::Raw => "raw",
            crate::stored::StoredForm::Gzip => "gzip",
        })
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
    /// `BigArray::copy_stored_from`, or between formats `crate::stored::copy_stored`);
    /// chunks `src` lacks are not written. False, having written nothing, if the scales do
    /// not allow it.
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
        if let (Some(dst), Some(src)) = (self.precomputed(), src.precomputed()) {
            return detached(py, move || {
                dst.copy_stored_from(src, &bbox, only.as_deref())
            });
        }
        // Across formats, through the formats' stored forms (`crate::stored`).
        let (dst, src) = (&*self.inner, &*src.inner);
        detached(py, move || {
            crate::stored::copy_stored(dst, src, &bbox, only.as_deref())
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

    /// As `stored_chunks`, for the box `[start, start + shape)` in the array's own axis
    /// order (Zarr).
    fn stored_chunks_nd(
        &self,
        py: Python<'_>,
        start: Vec<u64>,
        shape: Vec<u64>,
    ) -> PyResult<Vec<StoredUnit>> {
        let nd = self.nd_or_err()?;
        let region = NdBox::new(start, shape);
        let units = detached(py, move || nd.stored_units(&region))?;
        Ok(units
            .into_iter()
            .map(|(b, size)| {
                let stop = (0..b.ndim()).map(|a| b.stop(a)).collect();
                (b.start, stop, size)
            })
            .collect())
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

    // -- the N-dimensional view of formats with their own axes (Zarr) ---------------------

    /// The array's shape in its own axis order; None for the (x, y, z, c) formats.
    #[getter]
    fn nd_shape(&self) -> Option<Vec<u64>> {
        self.inner.nd().map(|nd| nd.shape())
    }

    /// The storage unit (chunk or shard) in the array's axis order; None as `nd_shape`.
    #[getter]
    fn nd_chunks(&self) -> Option<Vec<u64>> {
        self.inner.nd().map(|nd| nd.chunk_shape())
    }

    /// The read unit (a sharded array's inner chunk); None as `nd_shape`.
    #[getter]
    fn nd_read_chunks(&self) -> Option<Vec<u64>> {
        self.inner.nd().map(|nd| nd.read_chunk_shape())
    }

    /// One element of the fill value, little-endian bytes; None as `nd_shape`.
    #[getter]
    fn fill_value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        self.inner
            .nd()
            .map(|nd| pyo3::types::PyBytes::new(py, &nd.fill_value()))
    }

    /// Axis names, units, scale and translation (OME-Zarr `axes` and coordinate
    /// transformations); None as `nd_shape`.
    #[allow(clippy::type_complexity)]
    fn nd_axes(&self) -> Option<(Vec<Option<String>>, Vec<Option<String>>, Vec<f64>, Vec<f64>)> {
        self.inner.nd().map(|nd| {
            (
                nd.dimension_names(),
                nd.units(),
                nd.scale(),
                nd.translation(),
            )
        })
    }

    /// Reads each box `[starts[i], starts[i] + shapes[i])` of the array's own axes into a
    /// flat uint8 buffer of C-ordered elements, fetching and decoding every chunk once.
    fn read_nd_many<'py>(
        &self,
        py: Python<'py>,
        starts: Vec<Vec<u64>>,
        shapes: Vec<Vec<u64>>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
        let nd = self.nd_or_err()?;
        let (regions, lens) = self.regions(starts, shapes)?;
        read_nd(py, nd, regions, &lens)
    }

    /// `read_nd_many` into the caller's buffers, as `read_many_into`.
    fn read_nd_many_into(
        &self,
        py: Python<'_>,
        starts: Vec<Vec<u64>>,
        shapes: Vec<Vec<u64>>,
        outs: Vec<Bound<'_, PyArray1<u8>>>,
    ) -> PyResult<()> {
        let nd = self.nd_or_err()?;
        let (regions, lens) = self.regions(starts, shapes)?;
        let mut guards = writable(&outs, &lens)?;
        let mut targets: Vec<NdTarget<'_>> = regions
            .into_iter()
            .zip(guards.iter_mut())
            .map(|(region, out)| Ok(NdTarget::new(region, out.as_slice_mut()?)))
            .collect::<PyResult<_>>()?;
        detached(py, move || nd.read_regions(&mut targets))
    }

    /// Writes the box `[start, start + shape)` of the array's own axes from a flat uint8
    /// buffer of C-ordered elements.
    fn write_nd(
        &self,
        py: Python<'_>,
        start: Vec<u64>,
        shape: Vec<u64>,
        data: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let nd = self.nd_or_err()?;
        let data = data.as_slice()?;
        let region = NdBox::new(start, shape);
        detached(py, move || nd.write_region(&region, data))
    }

    /// Creates a Zarr array (its metadata) and opens it.
    #[staticmethod]
    #[pyo3(signature = (url, *, zarr_format, shape, dtype, chunks, shards = None, codecs = None,
                        fill_value = None, dimension_names = None, attributes = None,
                        ome = None, overwrite = false, concurrency = 64, store = None,
                        storage_options = None))]
    #[allow(clippy::too_many_arguments)]
    fn create_zarr(
        py: Python<'_>,
        url: &str,
        zarr_format: u8,
        shape: Vec<u64>,
        dtype: &str,
        chunks: Vec<u64>,
        shards: Option<Vec<u64>>,
        codecs: Option<&str>,
        fill_value: Option<Vec<u8>>,
        dimension_names: Option<Vec<Option<String>>>,
        attributes: Option<&str>,
        ome: Option<&str>,
        overwrite: bool,
        concurrency: usize,
        store: Option<Py<PyAny>>,
        storage_options: Option<HashMap<String, String>>,
    ) -> PyResult<Layer> {
        let zarr_format = match zarr_format {
            2 => ZarrFormat::V2,
            3 => ZarrFormat::V3,
            other => {
                return Err(to_pyerr(Error::invalid(format!(
                    "zarr_format={other} is not 2 or 3"
                ))))
            }
        };
        let dtype = DType::parse(dtype)
            .ok_or_else(|| to_pyerr(Error::invalid(format!("dtype {dtype:?} is not supported"))))?;
        let codecs = codecs
            .map(|text| parse_codecs(text).map_err(to_pyerr))
            .transpose()?;
        let attributes = match attributes {
            None => Default::default(),
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return Err(to_pyerr(Error::invalid("attributes must be a JSON object"))),
            },
        };
        // An OME-Zarr image: its one multiscale as an NGFF 0.4 `multiscales` entry, parsed
        // (and so checked) as a reader would.
        let multiscale = match ome {
            None => None,
            Some(text) => {
                let entry: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    to_pyerr(Error::invalid(format!("ome: not a multiscale entry: {e}")))
                })?;
                let mut wrapper = serde_json::Map::new();
                wrapper.insert("multiscales".into(), serde_json::Value::Array(vec![entry]));
                Multiscale::from_attributes(url, &wrapper)
                    .map_err(to_pyerr)?
                    .and_then(|mut list| list.pop())
            }
        };
        let spec = ZarrSpec {
            zarr_format,
            shape,
            dtype,
            chunks,
            shards,
            codecs,
            fill_value,
            dimension_names,
            attributes,
        };
        let storage_options = store_options(storage_options);
        let options = OpenOptions {
            concurrency,
            format: Some(Format::Zarr),
            ..OpenOptions::default()
        };
        let inner = detached(py, move || {
            let store = open_store(url, store, true, &storage_options)?;
            match multiscale {
                Some(m) => ZarrArray::create_image(store, &spec, m, overwrite, &options),
                None => ZarrArray::create(store, &spec, overwrite, &options),
            }
        })?;
        Ok(Layer {
            inner: Arc::new(inner),
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
