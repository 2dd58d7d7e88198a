//! One HDF5 dataset, read the hidefix/kerchunk way: libhdf5 (behind `hdf5-metno`'s global
//! lock) only tells us the dataset's shape, type, chunking, filter pipeline and where each
//! chunk's bytes sit in the file; the bytes are then read with `pread` and decoded on the
//! rayon pool with our own codecs (shuffle, deflate via libdeflate, Blosc), so many chunks
//! decode at once. Datasets we cannot decode ourselves (contiguous or compact storage,
//! filters we do not know, big-endian types) are read through the library instead.
//!
//! Axes: HDF5 (and h5py) list a dataset's dimensions slowest first; BigArrays.jl wrote its
//! Julia `(x, y, z[, c])` arrays reversed, so an h5py dataset `(c,) z, y, x` is our Fortran
//! `(x, y, z[, c])`. Boxes here are in that Fortran order, padded to four axes with 1s; a
//! C-ordered HDF5 chunk is then byte for byte a Fortran box.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use rayon::prelude::*;

use crate::codec::{blosc, ChunkLayout};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::interrupt;

/// A box extent or corner in Fortran axis order `[x, y, z, c]`.
pub type Dims = [u64; 4];

/// The id HDF5 registers for the Blosc filter (PyTables, hdf5plugin, HDF5.jl).
pub const BLOSC_FILTER_ID: i32 = 32001;
/// HDF5's "undefined address": a chunk that was never allocated.
const HADDR_UNDEF: u64 = u64::MAX;

/// Runs `f` with a typed element for `dtype`: `$T` is bound to the Rust type.
macro_rules! with_element {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::U8 => {
                type $T = u8;
                $body
            }
            DType::I8 => {
                type $T = i8;
                $body
            }
            DType::U16 => {
                type $T = u16;
                $body
            }
            DType::I16 => {
                type $T = i16;
                $body
            }
            DType::U32 => {
                type $T = u32;
                $body
            }
            DType::I32 => {
                type $T = i32;
                $body
            }
            DType::U64 => {
                type $T = u64;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err(Error::invalid(format!(
                "{other} HDF5 datasets are not supported"
            ))),
        }
    };
}

/// One step of an HDF5 filter pipeline that we decode ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Shuffle,
    Deflate,
    Blosc,
}

/// Where one stored chunk's bytes are.
#[derive(Debug, Clone, Copy)]
struct RawChunk {
    addr: u64,
    size: u64,
    /// Bit i set: filter i of the pipeline was skipped for this chunk.
    filter_mask: u32,
}

#[derive(Debug)]
enum Storage {
    /// Chunked with filters we decode: read by address.
    Chunks {
        chunk: Dims,
        pipeline: Vec<Filter>,
        index: HashMap<Dims, RawChunk>,
        file: File,
    },
    /// Anything else: hyperslab reads through libhdf5.
    Library,
}

/// The output of a read: a Fortran-ordered `[x, y, z, c]` buffer that several tasks fill,
/// each a different box.
#[derive(Clone, Copy)]
pub struct OutBuf {
    ptr: *mut u8,
    shape: Dims,
    itemsize: usize,
}
// SAFETY: `OutBuf` is only created by `OutBuf::new` from a live `&mut [u8]` of exactly
// `shape` × `itemsize` bytes, and it is only written through `paint`, which bounds-checks
// every box against `shape`. The readers that share it (`H5Dataset::read`, the h5s and
// aligned readers) hand each task a different box of the output, so no two threads touch
// the same byte, and they finish every task before the `&mut [u8]` borrow ends.
unsafe impl Send for OutBuf {}
unsafe impl Sync for OutBuf {}

impl OutBuf {
    /// Wraps `out`, which must hold `shape` voxels of `itemsize` bytes.
    pub fn new(out: &mut [u8], shape: Dims, itemsize: usize) -> Result<Self> {
        let needed = shape
            .iter()
            .try_fold(itemsize as u64, |n, &d| n.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok());
        if needed != Some(out.len()) {
            return Err(Error::invalid(format!(
                "buffer holds {} bytes, a box of shape {shape:?} needs {needed:?}",
                out.len()
            )));
        }
        Ok(OutBuf {
            ptr: out.as_mut_ptr(),
            shape,
            itemsize,
        })
    }

    /// The buffer's shape, Fortran order `[x, y, z, c]`.
    pub fn shape(&self) -> Dims {
        self.shape
    }

    /// Copies the box of extent `ext` at `src_at` in `src` (a Fortran box of `src_shape`)
    /// to `dst_at` in this buffer; `src = None` writes zeros.
    ///
    /// # Safety
    /// No other thread may read or write the destination box while this runs (see the
    /// `Send` proof above). Bounds are checked here.
    pub unsafe fn paint(
        &self,
        src: Option<(&[u8], Dims, Dims)>,
        dst_at: Dims,
        ext: Dims,
    ) -> Result<()> {
        let item = self.itemsize as u64;
        let fits = |at: Dims, shape: Dims| (0..4).all(|i| at[i] + ext[i] <= shape[i]);
        if !fits(dst_at, self.shape) {
            return Err(Error::internal(format!(
                "box {ext:?} at {dst_at:?} outside output {:?}",
                self.shape
            )));
        }
        if let Some((bytes, shape, at)) = src {
            if !fits(at, shape) || (shape.iter().product::<u64>() * item) as usize > bytes.len() {
                return Err(Error::internal(format!(
                    "box {ext:?} at {at:?} outside source {shape:?}"
                )));
            }
        }
        if ext.contains(&0) {
            return Ok(());
        }
        let run = (ext[0] * item) as usize;
        let d = self.shape;
        for c in 0..ext[3] {
            for z in 0..ext[2] {
                for y in 0..ext[1] {
                    let di = (((dst_at[3] + c) * d[2] + dst_at[2] + z) * d[1] + dst_at[1] + y)
                        * d[0]
                        + dst_at[0];
                    // SAFETY: `fits` checked that the run lies inside the buffer of
                    // `shape` × `itemsize` bytes that `new` was given; the caller owns the box.
                    let dst = unsafe { self.ptr.add((di * item) as usize) };
                    match src {
                        Some((bytes, s, at)) => {
                            let si = (((at[3] + c) * s[2] + at[2] + z) * s[1] + at[1] + y) * s[0]
                                + at[0];
                            let si = (si * item) as usize;
                            let from = &bytes[si..si + run];
                            // SAFETY: `from` is a checked slice of `run` bytes; the
                            // destination run is in bounds (above) and does not overlap it
                            // (the output is a buffer of its own).
                            unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), dst, run) };
                        }
                        // SAFETY: as above.
                        None => unsafe { std::ptr::write_bytes(dst, 0, run) },
                    }
                }
            }
        }
        Ok(())
    }
}

/// `hdf5-metno`'s error, named by the file it concerns.
pub fn h5_error(path: &Path, what: &str, e: hdf5::Error) -> Error {
    Error::decode(&path.display().to_string(), format!("{what}: {e}"))
}

/// The dtype of an HDF5 datatype, if we store it.
fn dtype_of(desc: &TypeDescriptor) -> Option<DType> {
    Some(match desc {
        TypeDescriptor::Unsigned(IntSize::U1) => DType::U8,
        TypeDescriptor::Unsigned(IntSize::U2) => DType::U16,
        TypeDescriptor::Unsigned(IntSize::U4) => DType::U32,
        TypeDescriptor::Unsigned(IntSize::U8) => DType::U64,
        TypeDescriptor::Integer(IntSize::U1) => DType::I8,
        TypeDescriptor::Integer(IntSize::U2) => DType::I16,
        TypeDescriptor::Integer(IntSize::U4) => DType::I32,
        TypeDescriptor::Integer(IntSize::U8) => DType::I64,
        TypeDescriptor::Float(FloatSize::U4) => DType::F32,
        TypeDescriptor::Float(FloatSize::U8) => DType::F64,
        _ => return None,
    })
}

/// Reverses HDF5 dims (slowest first) into Fortran `[x, y, z, c]`, padding with 1s.
pub fn fortran_dims(h5: &[usize]) -> Option<Dims> {
    if h5.is_empty() || h5.len() > 4 {
        return None;
    }
    let mut dims = [1u64; 4];
    for (i, &n) in h5.iter().rev().enumerate() {
        dims[i] = n as u64;
    }
    Some(dims)
}

/// An open HDF5 dataset with its chunk index; shared by the threads that read it.
#[derive(Debug)]
pub struct H5Dataset {
    path: PathBuf,
    name: String,
    rank: usize,
    dtype: DType,
    shape: Dims,
    storage: Storage,
}

impl H5Dataset {
    /// Opens dataset `name` of the HDF5 file at `path` and indexes its chunks. A file that is
    /// not HDF5, truncated or corrupt is a [`Error::ChunkDecode`] naming the file.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let file =
            hdf5::File::open(path).map_err(|e| h5_error(path, "cannot open HDF5 file", e))?;
        let ds = file
            .dataset(name)
            .map_err(|e| h5_error(path, &format!("no dataset {name:?}"), e))?;
        let label = || format!("{}:{name}", path.display());
        let h5shape = ds.shape();
        let shape = fortran_dims(&h5shape).ok_or_else(|| {
            Error::decode(
                &label(),
                format!(
                    "datasets of 1 to 4 dimensions are supported, this one has shape {h5shape:?}"
                ),
            )
        })?;
        let datatype = ds
            .dtype()
            .map_err(|e| h5_error(path, "cannot read the datatype", e))?;
        let desc = datatype
            .to_descriptor()
            .map_err(|e| h5_error(path, "cannot read the datatype", e))?;
        let dtype = dtype_of(&desc)
            .ok_or_else(|| Error::decode(&label(), format!("unsupported element type {desc:?}")))?;
        let little = !matches!(datatype.byte_order(), hdf5::datatype::ByteOrder::BigEndian);
        let storage = match (ds.chunk(), little) {
            (Some(chunk), true) => Self::index_chunks(path, &ds, &chunk, &label())?,
            _ => Storage::Library,
        };
        Ok(H5Dataset {
            path: path.to_path_buf(),
            name: name.to_string(),
            rank: h5shape.len(),
            dtype,
            shape,
            storage,
        })
    }

    fn index_chunks(
        path: &Path,
        ds: &hdf5::Dataset,
        chunk: &[usize],
        label: &str,
    ) -> Result<Storage> {
        let mut pipeline = Vec::new();
        for filter in ds.filters() {
            pipeline.push(match filter {
                hdf5::filters::Filter::Shuffle => Filter::Shuffle,
                hdf5::filters::Filter::Deflate(_) => Filter::Deflate,
                hdf5::filters::Filter::Blosc(..) => Filter::Blosc,
                hdf5::filters::Filter::User(id, _) if id == BLOSC_FILTER_ID => Filter::Blosc,
                _ => return Ok(Storage::Library),
            });
        }
        let chunk = fortran_dims(chunk)
            .filter(|c| !c.contains(&0))
            .ok_or_else(|| Error::decode(label, format!("bad chunk shape {chunk:?}")))?;
        let mut index = HashMap::new();
        let mut bad = None;
        ds.chunks_visit(|info| {
            let Some(offset) =
                fortran_dims(&info.offset.iter().map(|&o| o as usize).collect::<Vec<_>>())
            else {
                bad = Some("chunk offset of the wrong rank");
                return -1;
            };
            if info.addr != HADDR_UNDEF {
                let grid = [0, 1, 2, 3].map(|i| {
                    if i < info.offset.len() {
                        offset[i] / chunk[i]
                    } else {
                        0
                    }
                });
                index.insert(
                    grid,
                    RawChunk {
                        addr: info.addr,
                        size: info.size,
                        filter_mask: info.filter_mask,
                    },
                );
            }
            0
        })
        .map_err(|e| h5_error(path, "cannot list the chunks", e))?;
        if let Some(reason) = bad {
            return Err(Error::decode(label, reason));
        }
        let file = File::open(path).map_err(|e| Error::store(&path.display().to_string(), e))?;
        Ok(Storage::Chunks {
            chunk,
            pipeline,
            index,
            file,
        })
    }

    /// The file holding the dataset.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The voxel type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dataset's extent, Fortran order `[x, y, z, c]`.
    pub fn shape(&self) -> Dims {
        self.shape
    }

    /// The HDF5 chunk shape (Fortran order), if chunked.
    pub fn chunk_shape(&self) -> Option<Dims> {
        match &self.storage {
            Storage::Chunks { chunk, .. } => Some(*chunk),
            Storage::Library => None,
        }
    }

    /// Whether chunks are read by address and decoded here (`false`: through libhdf5).
    pub fn reads_by_address(&self) -> bool {
        matches!(self.storage, Storage::Chunks { .. })
    }

    /// `path:dataset`, for messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.path.display(), self.name)
    }

    /// Reads the box `[start, start + ext)` of the dataset (clipped by the caller to its
    /// shape) into `out` at `out_at`, decoding chunks in parallel on the current rayon pool.
    /// Chunks never written read as zeros. Stops with [`Error::Interrupted`] once `cancel`
    /// is set (see `interrupt::install`).
    pub fn read(
        &self,
        start: Dims,
        ext: Dims,
        out: OutBuf,
        out_at: Dims,
        cancel: &AtomicBool,
    ) -> Result<()> {
        if (0..4).any(|i| start[i] + ext[i] > self.shape[i]) {
            return Err(Error::internal(format!(
                "{}: box {start:?}+{ext:?} outside {:?}",
                self.label(),
                self.shape
            )));
        }
        if ext.contains(&0) {
            return Ok(());
        }
        match &self.storage {
            Storage::Library => self.read_library(start, ext, out, out_at),
            Storage::Chunks {
                chunk,
                pipeline,
                index,
                file,
            } => {
                let lo = [0, 1, 2, 3].map(|i| start[i] / chunk[i]);
                let hi = [0, 1, 2, 3].map(|i| (start[i] + ext[i]).div_ceil(chunk[i]));
                let mut cells = Vec::new();
                for c in lo[3]..hi[3] {
                    for z in lo[2]..hi[2] {
                        for y in lo[1]..hi[1] {
                            for x in lo[0]..hi[0] {
                                cells.push([x, y, z, c]);
                            }
                        }
                    }
                }
                cells.into_par_iter().try_for_each(|g| {
                    interrupt::cancelled(cancel)?;
                    let origin = [0, 1, 2, 3].map(|i| g[i] * chunk[i]);
                    // The part of this chunk inside the requested box (and the dataset).
                    let a = [0, 1, 2, 3].map(|i| origin[i].max(start[i]));
                    let b = [0, 1, 2, 3].map(|i| (origin[i] + chunk[i]).min(start[i] + ext[i]));
                    let part = [0, 1, 2, 3].map(|i| b[i] - a[i]);
                    let dst_at = [0, 1, 2, 3].map(|i| out_at[i] + a[i] - start[i]);
                    let src_at = [0, 1, 2, 3].map(|i| a[i] - origin[i]);
                    match index.get(&g) {
                        // SAFETY: each chunk paints its own box of `out` (chunks are disjoint).
                        None => unsafe { out.paint(None, dst_at, part) },
                        Some(raw) => {
                            let bytes = self.decode_chunk(file, raw, pipeline, *chunk)?;
                            // SAFETY: as above.
                            unsafe { out.paint(Some((&bytes, *chunk, src_at)), dst_at, part) }
                        }
                    }
                })
            }
        }
    }

    fn decode_chunk(
        &self,
        file: &File,
        raw: &RawChunk,
        pipeline: &[Filter],
        chunk: Dims,
    ) -> Result<Vec<u8>> {
        let label = || format!("{} (chunk at byte {})", self.label(), raw.addr);
        let expected = chunk.iter().product::<u64>() as usize * self.dtype.itemsize();
        let size = usize::try_from(raw.size)
            .ok()
            .filter(|&n| n <= expected.saturating_mul(2).saturating_add(1 << 20))
            .ok_or_else(|| {
                Error::decode(&label(), format!("implausible chunk size {}", raw.size))
            })?;
        let mut bytes = vec![0u8; size];
        file.read_exact_at(&mut bytes, raw.addr).map_err(|e| {
            Error::decode(
                &label(),
                format!("cannot read {size} bytes (truncated file?): {e}"),
            )
        })?;
        for (i, filter) in pipeline.iter().enumerate().rev() {
            if raw.filter_mask & (1 << i) != 0 {
                continue;
            }
            bytes = match filter {
                Filter::Shuffle => unshuffle(&bytes, self.dtype.itemsize()),
                Filter::Deflate => {
                    let mut out = vec![0u8; expected];
                    let n = libdeflater::Decompressor::new()
                        .zlib_decompress(&bytes, &mut out)
                        .map_err(|e| Error::decode(&label(), format!("deflate: {e}")))?;
                    out.truncate(n);
                    out
                }
                Filter::Blosc => {
                    let layout = ChunkLayout {
                        shape: [expected, 1, 1],
                        channels: 1,
                        dtype: DType::U8,
                    };
                    blosc::decode(&bytes, &layout)
                        .map_err(|e| Error::decode(&label(), format!("blosc: {e}")))?
                }
            };
        }
        if bytes.len() != expected {
            return Err(Error::decode(
                &label(),
                format!(
                    "chunk decodes to {} bytes, expected {expected}",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    /// The box `[start, start + ext)` through libhdf5 (one hyperslab read, under its lock).
    fn read_library(&self, start: Dims, ext: Dims, out: OutBuf, out_at: Dims) -> Result<()> {
        let bytes = with_element!(self.dtype, T => {
            let file = hdf5::File::open(&self.path)
                .map_err(|e| h5_error(&self.path, "cannot open HDF5 file", e))?;
            let ds = file
                .dataset(&self.name)
                .map_err(|e| h5_error(&self.path, "cannot open the dataset", e))?;
            let values = ds
                .as_reader()
                .read_slice::<T, _, ndarray::IxDyn>(self.hyperslab(start, ext))
                .map_err(|e| h5_error(&self.path, "cannot read", e))?;
            let values = values.as_standard_layout();
            let slice = values
                .as_slice()
                .ok_or_else(|| Error::internal("standard layout array is not contiguous"))?;
            Ok(bytemuck::cast_slice::<T, u8>(slice).to_vec())
        })?;
        // SAFETY: the caller hands each read its own box of `out`.
        unsafe { out.paint(Some((&bytes, ext, [0; 4])), out_at, ext) }
    }

    /// The HDF5 hyperslab (slowest axis first) of a Fortran box.
    pub fn hyperslab(&self, start: Dims, ext: Dims) -> hdf5::Hyperslab {
        hyperslab(self.rank, start, ext)
    }
}

/// The HDF5 hyperslab (slowest axis first) of a Fortran box in a dataset of `rank` axes.
pub fn hyperslab(rank: usize, start: Dims, ext: Dims) -> hdf5::Hyperslab {
    let slices: Vec<hdf5::SliceOrIndex> = (0..rank)
        .rev()
        .map(|i| hdf5::SliceOrIndex::SliceCount {
            start: start[i] as usize,
            step: 1,
            count: ext[i] as usize,
            block: 1,
        })
        .collect();
    hdf5::Hyperslab::from(slices)
}

/// Undoes HDF5's shuffle filter: byte j of element i was stored at `j * n + i`.
fn unshuffle(bytes: &[u8], itemsize: usize) -> Vec<u8> {
    if itemsize <= 1 {
        return bytes.to_vec();
    }
    let n = bytes.len() / itemsize;
    let mut out = vec![0u8; bytes.len()];
    for j in 0..itemsize {
        let plane = &bytes[j * n..(j + 1) * n];
        for (i, &b) in plane.iter().enumerate() {
            out[i * itemsize + j] = b;
        }
    }
    // Trailing bytes that do not fill an element are stored as they are.
    let tail = n * itemsize;
    out[tail..].copy_from_slice(&bytes[tail..]);
    out
}

/// Writes the Fortran box `data` (extent `ext`) at `start` of dataset `name` in `path`
/// through libhdf5, creating the file and the dataset (`create` gives shape, chunking and
/// filters) when absent. `fresh`: start a new file even if one is there (truncating it).
pub fn write_box(
    path: &Path,
    name: &str,
    create: &DatasetSpec,
    start: Dims,
    ext: Dims,
    data: &[u8],
    fresh: bool,
) -> Result<()> {
    let file = if !fresh && path.exists() {
        hdf5::File::open_rw(path)
            .map_err(|e| h5_error(path, "cannot open HDF5 file for writing", e))?
    } else {
        hdf5::File::create(path).map_err(|e| h5_error(path, "cannot create HDF5 file", e))?
    };
    let h5ext: Vec<usize> = (0..create.rank).rev().map(|i| ext[i] as usize).collect();
    with_element!(create.dtype, T => {
        let ds = match file.dataset(name) {
            Ok(ds) => ds,
            Err(_) => {
                let h5shape: Vec<usize> = (0..create.rank).rev().map(|i| create.shape[i] as usize).collect();
                let h5chunk: Vec<usize> = (0..create.rank).rev().map(|i| create.chunk[i] as usize).collect();
                let mut builder = file.new_dataset::<T>();
                builder = builder.chunk(h5chunk);
                builder = match create.compression {
                    H5Compression::Blosc => builder.blosc(hdf5::filters::Blosc::BloscLZ, 5, hdf5::filters::BloscShuffle::Byte),
                    H5Compression::Deflate => builder.shuffle().deflate(create.deflate_level),
                    H5Compression::None => builder,
                };
                builder
                    .shape(h5shape)
                    .create(name)
                    .map_err(|e| h5_error(path, &format!("cannot create dataset {name:?}"), e))?
            }
        };
        // A copy: `data` need not be aligned for `T`.
        let n = ext.iter().product::<u64>() as usize;
        if data.len() != n * std::mem::size_of::<T>() {
            return Err(Error::invalid(format!("{}: {} bytes do not fill a box of {ext:?}", path.display(), data.len())));
        }
        let mut values = vec![T::default(); n];
        bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(data);
        let view = ndarray::ArrayView::from_shape(ndarray::IxDyn(&h5ext), &values)
            .map_err(|e| Error::internal(e.to_string()))?;
        ds.as_writer()
            .write_slice(view, hyperslab(create.rank, start, ext))
            .map_err(|e| h5_error(path, "cannot write", e))
    })
}

/// The compression of datasets we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H5Compression {
    /// The Blosc filter (32001), blosclz level 5 with byte shuffle, as BigArrays.jl wrote.
    Blosc,
    /// Shuffle + deflate.
    Deflate,
    /// No filter.
    None,
}

/// How to create a dataset that does not exist yet.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Number of axes: how many leading entries of `shape` and `chunk` count.
    pub rank: usize,
    /// The voxel type.
    pub dtype: DType,
    /// Fortran order.
    pub shape: Dims,
    /// Fortran order.
    pub chunk: Dims,
    /// The filter applied to each chunk.
    pub compression: H5Compression,
    /// The deflate level (0-9), for [`H5Compression::Deflate`].
    pub deflate_level: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_inverts_shuffle() {
        let raw: Vec<u8> = (0..23u8).collect();
        let n = raw.len() / 4;
        let mut shuffled = vec![0u8; raw.len()];
        for i in 0..n {
            for j in 0..4 {
                shuffled[j * n + i] = raw[i * 4 + j];
            }
        }
        shuffled[n * 4..].copy_from_slice(&raw[n * 4..]);
        assert_eq!(unshuffle(&shuffled, 4), raw);
    }

    #[test]
    fn dims_reverse_and_pad() {
        assert_eq!(fortran_dims(&[5, 6, 7]), Some([7, 6, 5, 1]));
        assert_eq!(fortran_dims(&[2, 5, 6, 7]), Some([7, 6, 5, 2]));
        assert_eq!(fortran_dims(&[]), None);
    }

    #[test]
    fn round_trip_through_the_library_and_by_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h5");
        let shape = [20, 10, 6, 1];
        let values: Vec<u16> = (0..1200u16).collect();
        for compression in [
            H5Compression::Blosc,
            H5Compression::Deflate,
            H5Compression::None,
        ] {
            let spec = DatasetSpec {
                rank: 3,
                dtype: DType::U16,
                shape,
                chunk: [8, 4, 4, 1],
                compression,
                deflate_level: 4,
            };
            let _ = std::fs::remove_file(&path);
            write_box(
                &path,
                "img",
                &spec,
                [0; 4],
                shape,
                bytemuck::cast_slice(&values),
                true,
            )
            .unwrap();
            let ds = H5Dataset::open(&path, "img").unwrap();
            assert_eq!(ds.shape(), shape);
            assert!(ds.chunk_shape().is_some());
            let (start, ext) = ([3, 2, 1, 0], [15, 7, 4, 1]);
            let mut out = vec![0u16; 15 * 7 * 4];
            let buf = OutBuf::new(bytemuck::cast_slice_mut(&mut out), ext, 2).unwrap();
            ds.read(start, ext, buf, [0; 4], &AtomicBool::new(false))
                .unwrap();
            for z in 0..4 {
                for y in 0..7 {
                    for x in 0..15 {
                        let want = values[((z + 1) * 10 + y + 2) * 20 + x + 3];
                        assert_eq!(out[(z * 7 + y) * 15 + x], want, "{compression:?}");
                    }
                }
            }
        }
    }
}
