//! PyO3 bindings: argument conversion and error mapping only. The logic is in the engine;
//! the Python-facing API (`BigArray`, indexing) is in `python/bigarrays/`.

mod errors;
mod hdf5_layer;
mod interrupt;
mod mapping_store;
mod store_conformance;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::array::{BigArray, OpenOptions, OutBuffer};
use crate::codec::Compression;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::format::precomputed::LayerSpec;
use crate::geometry::Bbox;
use crate::store::{self, Handle, Store};
use errors::to_pyerr;
use mapping_store::MappingStore;

/// Allocations above this go through `numpy.zeros`, which raises `MemoryError` (with the
/// size) when the memory is not there; `PyArray1::zeros` would panic on the null pointer.
const CHECKED_ALLOC: usize = 1 << 30;

/// A zeroed flat uint8 array of `len` bytes (calloc-backed: untouched pages cost nothing).
pub(crate) fn zeros(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyArray1<u8>>> {
    if len <= CHECKED_ALLOC {
        return Ok(PyArray1::<u8>::zeros(py, len, false));
    }
    let array = py.import("numpy")?.call_method1("zeros", (len, "uint8"))?;
    array.cast_into::<PyArray1<u8>>().map_err(PyErr::from)
}

/// Runs engine code so that a panic becomes an error instead of crossing into Python.
fn guarded<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Error::from_panic(p)))
}

/// Outputs at least this large are allocated zeroed (see `Layer::read_many`): glibc serves
/// them with fresh pages (its mmap threshold never exceeds 32 MiB), which calloc need not
/// clear.
const ZEROED_OUTPUT_MIN: usize = 32 << 20;

/// Runs engine code with the GIL released. An exception a signal handler raised while the
/// engine waited (see `interrupt`) is raised in place of whatever the call returned: the
/// engine stops on it, but another error may have been recorded first.
fn detached<R: Send>(py: Python<'_>, f: impl FnOnce() -> Result<R> + Send) -> PyResult<R> {
    let result = py.detach(|| guarded(f));
    match interrupt::take_raised() {
        Some(raised) => Err(raised),
        None => result.map_err(to_pyerr),
    }
}

fn open_store(
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
fn store_options(options: Option<HashMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = options.unwrap_or_default().into_iter().collect();
    pairs.sort();
    pairs
}

fn options(
    mip: usize,
    fill_missing: bool,
    compression: Option<&str>,
    concurrency: usize,
    cache_bytes: usize,
) -> Result<OpenOptions> {
    Ok(OpenOptions {
        mip,
        fill_missing,
        // "auto": the encoding's default (gzip for raw, none for jpeg/png/blosc).
        compression: match compression {
            Some("auto") => None,
            other => Some(Compression::parse(other.unwrap_or("none"))?),
        },
        concurrency,
        cache_bytes,
    })
}

/// A chunk the store holds: its box's start and stop, and its stored size in bytes.
type StoredChunk = ([i64; 3], [i64; 3], u64);

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

/// One scale of a layer, as the engine sees it. Use `bigarrays.BigArray`.
#[pyclass(frozen, module = "bigarrays._core")]
struct Layer {
    inner: BigArray,
}

#[pymethods]
impl Layer {
    #[staticmethod]
    #[pyo3(signature = (url, *, compression, mip = 0, fill_missing = true, concurrency = 64, store = None,
                        storage_options = None, cache_bytes = 0))]
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
    ) -> PyResult<Layer> {
        let options =
            options(mip, fill_missing, compression, concurrency, cache_bytes).map_err(to_pyerr)?;
        let storage_options = store_options(storage_options);
        let inner = detached(py, move || {
            BigArray::open_store(open_store(url, store, false, &storage_options)?, options)
        })?;
        Ok(Layer { inner })
    }

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
        let spec = LayerSpec {
            shape,
            dtype,
            chunks,
            voxel_offset,
            resolution,
            num_channels,
            encoding,
            encoding_options,
            layer_type,
            sharding,
        };
        let options = options(0, true, compression, concurrency, 0).map_err(to_pyerr)?;
        let inner = detached(py, move || {
            BigArray::create_in(
                open_store(url, store, true, &storage_options)?,
                &spec,
                overwrite,
                options,
            )
        })?;
        Ok(Layer { inner })
    }

    /// The `info` file as JSON text (unknown keys included).
    fn info_json(&self) -> String {
        self.inner.info().to_json()
    }

    /// Replaces the stored `info` (same data type, channels and full-resolution scale) and
    /// returns a handle on it.
    fn update_info(&self, py: Python<'_>, json: &str) -> PyResult<Layer> {
        let inner = detached(py, || self.inner.update_info(json))?;
        Ok(Layer { inner })
    }

    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    #[getter]
    fn mip(&self) -> usize {
        self.inner.options().mip
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
        self.inner.scale().grid.size
    }

    #[getter]
    fn voxel_offset(&self) -> [i64; 3] {
        self.inner.scale().grid.voxel_offset
    }

    #[getter]
    fn chunks(&self) -> [u64; 3] {
        self.inner.scale().grid.chunk
    }

    #[getter]
    fn resolution(&self) -> [f64; 3] {
        self.inner.scale().resolution
    }

    #[getter]
    fn encoding(&self) -> String {
        self.inner.scale().encoding.name().to_string()
    }

    #[getter]
    fn num_mips(&self) -> usize {
        self.inner.info().scales.len()
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
        let mut requests = Vec::with_capacity(starts.len());
        let mut arrays = Vec::with_capacity(starts.len());
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
                // SAFETY: an uninitialised array is sound to create; `read_many_raw` writes
                // every byte before Python can see it (on failure it is dropped unseen).
                unsafe { PyArray1::<u8>::new(py, len, false) }
            };
            let ptr = array.data();
            requests.push((bbox, OutBuffer { ptr, len, zeroed }));
            arrays.push(array);
        }
        // The guards hold numpy's borrow flags, so no other Rust code can borrow the arrays.
        let guards: Vec<_> = arrays.iter().map(|a| a.readwrite()).collect();
        let inner = &self.inner;
        detached(py, move || {
            // SAFETY: each array is freshly allocated with `len` bytes (zeros where marked
            // `zeroed`), held alive by `arrays` and exclusively borrowed by `guards` for the
            // whole call; no Python code runs on it meanwhile (not yet returned).
            unsafe { inner.read_many_raw(&requests) }
        })?;
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
    /// written nothing, if the scales do not allow it.
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
        let (inner, src) = (&self.inner, &src.inner);
        detached(py, move || {
            inner.copy_stored_from(src, &bbox, only.as_deref())
        })
    }

    /// The chunks of `[start, stop)` the store holds, as `(chunk start, chunk stop, stored
    /// bytes)`, learned without fetching chunk data (see `BigArray::chunk_sizes`); absent
    /// chunks are left out.
    fn stored_chunks(
        &self,
        py: Python<'_>,
        start: [i64; 3],
        stop: [i64; 3],
    ) -> PyResult<Vec<StoredChunk>> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let inner = &self.inner;
        let sizes = detached(py, move || inner.chunk_sizes(&bbox))?;
        let grid = self.inner.scale().grid;
        Ok(sizes
            .into_iter()
            .filter_map(|(g, size)| {
                let b = grid.chunk_box(g);
                size.map(|size| (b.start, b.stop, size))
            })
            .collect())
    }

    /// Writes `[start, stop)` from a flat uint8 buffer of Fortran-ordered voxels; with
    /// `only`, just the chunks touching one of those boxes.
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
            "Layer({:?}, mip={})",
            self.inner.url(),
            self.inner.options().mip
        )
    }
}

/// The filesystem path a local URL (a path or `file:` URL) names; None for other schemes.
#[pyfunction]
fn local_path(url: &str) -> PyResult<Option<String>> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case("file")) {
        return Ok(None);
    }
    let path = store::local_path::path_of(url).map_err(to_pyerr)?;
    Ok(Some(path.display().to_string()))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(local_path, m)?)?;
    m.add_class::<Layer>()?;
    m.add_class::<hdf5_layer::HdfLayer>()?;
    m.add_class::<interrupt::CancelToken>()?;
    m.add_function(wrap_pyfunction!(interrupt::bind_cancel_token, m)?)?;
    m.add_function(wrap_pyfunction!(store_conformance::_store_conformance, m)?)?;
    interrupt::register();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
