//! Bindings of the HDF5 layouts (H5s block directories, aligned sections, single datasets):
//! argument conversion only; `bigarrays.BigArray` picks this class for those formats.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use super::{detached, errors::to_pyerr};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::format::aligned::AlignedArray;
use crate::format::h5s::H5sArray;
use crate::format::hdf5_file::{H5Compression, H5File};
use crate::geometry::Bbox;

enum Inner {
    H5s(H5sArray),
    Aligned(AlignedArray),
    File(H5File),
}

impl Inner {
    fn dtype(&self) -> DType {
        match self {
            Inner::H5s(a) => a.dtype(),
            Inner::Aligned(a) => a.dtype(),
            Inner::File(f) => f.dataset().dtype(),
        }
    }

    fn channels(&self) -> usize {
        match self {
            Inner::H5s(a) => a.num_channels(),
            Inner::Aligned(_) => 1,
            Inner::File(f) => f.dataset().shape()[3] as usize,
        }
    }

    fn bounds(&self) -> Result<Bbox> {
        match self {
            Inner::H5s(a) => Ok(a.bounds()),
            Inner::Aligned(a) => Ok(a.bounds()),
            Inner::File(f) => f.bounds(),
        }
    }
}

/// An HDF5-backed layer, as the engine sees it. Use `bigarrays.BigArray`.
#[pyclass(frozen, module = "bigarrays._core")]
pub struct HdfLayer {
    inner: Inner,
    format: &'static str,
}

fn compression(name: Option<&str>) -> Result<H5Compression> {
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

#[pymethods]
impl HdfLayer {
    /// Opens `url` as `format` ("h5s", "aligned" or "hdf5"; "hdf5" needs `dataset`).
    #[staticmethod]
    #[pyo3(signature = (url, *, format, dataset = None, fill_missing = true))]
    fn open(
        py: Python<'_>,
        url: &str,
        format: &str,
        dataset: Option<&str>,
        fill_missing: bool,
    ) -> PyResult<HdfLayer> {
        let (inner, format) = detached(py, move || {
            Ok(match format {
                "h5s" => (Inner::H5s(H5sArray::open(url, fill_missing)?), "h5s"),
                "aligned" => (
                    Inner::Aligned(AlignedArray::open(url, fill_missing)?),
                    "aligned",
                ),
                "hdf5" => (
                    Inner::File(H5File::open(url, dataset.unwrap_or("img"))?),
                    "hdf5",
                ),
                other => {
                    return Err(Error::invalid(format!(
                        "format {other:?} is not an HDF5 format (\"h5s\", \"aligned\", \"hdf5\")"
                    )))
                }
            })
        })?;
        Ok(HdfLayer { inner, format })
    }

    /// Creates an H5s layer (BigArrays.jl's `config.json`) in directory `url`.
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
    ) -> PyResult<HdfLayer> {
        let dtype = DType::parse(dtype)
            .ok_or_else(|| to_pyerr(Error::invalid(format!("dtype {dtype:?} is not supported"))))?;
        let compression = self::compression(compression).map_err(to_pyerr)?;
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
        Ok(HdfLayer {
            inner: Inner::H5s(inner),
            format: "h5s",
        })
    }

    #[getter]
    fn format(&self) -> &'static str {
        self.format
    }

    #[getter]
    fn url(&self) -> String {
        let path = match &self.inner {
            Inner::H5s(a) => a.dir().to_path_buf(),
            Inner::Aligned(a) => a.dir().to_path_buf(),
            Inner::File(f) => f.path().to_path_buf(),
        };
        let abs = std::path::absolute(&path).unwrap_or(path);
        crate::store::local_path::url_of(&abs)
    }

    /// HDF5 layouts carry no voxel size: `(1, 1, 1)`.
    #[getter]
    fn resolution(&self) -> [f64; 3] {
        [1.0; 3]
    }

    #[getter]
    fn mip(&self) -> usize {
        0
    }

    #[getter]
    fn num_mips(&self) -> usize {
        1
    }

    /// The format name (`"h5s"`, `"aligned"`, `"hdf5"`).
    #[getter]
    fn encoding(&self) -> &'static str {
        self.format
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    #[getter]
    fn num_channels(&self) -> usize {
        self.inner.channels()
    }

    #[getter]
    fn size(&self) -> PyResult<[u64; 3]> {
        Ok(self.inner.bounds().map_err(to_pyerr)?.shape())
    }

    #[getter]
    fn voxel_offset(&self) -> PyResult<[i64; 3]> {
        Ok(self.inner.bounds().map_err(to_pyerr)?.start)
    }

    /// The storage unit: H5s block size, one section, or the HDF5 chunk shape.
    #[getter]
    fn chunks(&self) -> PyResult<[u64; 3]> {
        Ok(match &self.inner {
            Inner::H5s(a) => a.config().block,
            Inner::Aligned(a) => {
                let s = a.bounds().shape();
                [s[0], s[1], 1]
            }
            Inner::File(f) => {
                let c = f
                    .dataset()
                    .chunk_shape()
                    .unwrap_or_else(|| f.dataset().shape());
                [c[0], c[1], c[2]]
            }
        })
    }

    /// The metadata as JSON text: `config.json` for H5s, a summary otherwise.
    fn info_json(&self) -> String {
        let value = match &self.inner {
            Inner::H5s(a) => serde_json::Value::Object(a.config().json.clone()),
            Inner::Aligned(a) => serde_json::json!({
                "format": "aligned",
                "sections": a.sections().iter().map(|s| s.as_ref().map(|s| serde_json::json!({
                    "name": s.name, "offset": s.offset, "size": s.size,
                }))).collect::<Vec<_>>(),
            }),
            Inner::File(f) => serde_json::json!({
                "format": "hdf5",
                "dataset": f.dataset().label(),
                "shape": f.dataset().shape(),
                "chunks": f.dataset().chunk_shape(),
                "reads_by_address": f.dataset().reads_by_address(),
            }),
        };
        value.to_string()
    }

    /// Reads `[start, stop)` as a flat uint8 buffer of Fortran-ordered voxels.
    fn read<'py>(
        &self,
        py: Python<'py>,
        start: [i64; 3],
        stop: [i64; 3],
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let per_voxel = self.inner.dtype().itemsize() * self.inner.channels();
        let len = bbox
            .num_voxels()
            .and_then(|n| n.checked_mul(per_voxel))
            .ok_or_else(|| {
                to_pyerr(Error::invalid(format!("box {bbox:?} is too large to read")))
            })?;
        let out = super::zeros(py, len)?;
        {
            let mut guard = out.readwrite();
            let buffer = guard.as_slice_mut()?;
            let inner = &self.inner;
            detached(py, move || match inner {
                Inner::H5s(a) => a.read_into(&bbox, buffer),
                Inner::Aligned(a) => a.read_into(&bbox, buffer),
                Inner::File(f) => f.read_into(&bbox, buffer),
            })?;
        }
        Ok(out)
    }

    /// Writes `[start, stop)` from a flat uint8 buffer of Fortran-ordered voxels (H5s only).
    fn write(
        &self,
        py: Python<'_>,
        start: [i64; 3],
        stop: [i64; 3],
        data: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let bbox = Bbox::new(start, stop).map_err(to_pyerr)?;
        let data = data.as_slice()?;
        let inner = &self.inner;
        let format = self.format;
        detached(py, move || match inner {
            Inner::H5s(a) => a.write_from(&bbox, data),
            _ => Err(Error::invalid(format!("{format} layers are read-only"))),
        })
    }

    fn __repr__(&self) -> String {
        format!("HdfLayer({:?}, format={:?})", self.url(), self.format)
    }
}
