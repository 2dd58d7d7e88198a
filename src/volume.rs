//! [`Volume`]: an opened layer of any format, as the rest of the engine and the bindings see
//! it. Each format (Precomputed, BigArrays.jl's H5s directories and aligned sections, single
//! HDF5 datasets) implements the few required methods; [`VolumeExt`] gives every volume the
//! typed `ndarray` API and the async pair on top of them.
//!
//! Voxels cross this seam as Fortran-ordered `[x, y, z, c]` little-endian bytes of the
//! volume's data type, boxes in absolute voxel coordinates ([`Bbox`]).

use std::any::Any;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};

use crate::cache::CacheStats;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::geometry::{Bbox, BoxCopy};
use crate::nd::NdBox;
use crate::runtime;
use crate::stored::StoredChunks;

/// An opened layer (one scale of it) in any format.
///
/// Reads fill every byte of their output: voxels outside [`Volume::bounds`], and in missing
/// chunks when the volume was opened to fill them, read as 0. Writes are the format's own
/// (read-modify-write of partly covered chunks); read-only formats refuse them.
pub trait Volume: Send + Sync + std::fmt::Debug {
    /// The format's name: `"precomputed"`, `"h5s"`, `"aligned"` or `"hdf5"`.
    fn format(&self) -> &'static str;

    /// Where the volume lives, as a URL (never with credentials).
    fn url(&self) -> String;

    /// The voxel type.
    fn dtype(&self) -> DType;

    /// Channels per voxel.
    fn num_channels(&self) -> usize;

    /// The voxels that exist, in absolute coordinates.
    fn bounds(&self) -> Bbox;

    /// The storage unit: the chunk (Precomputed), the block (H5s), one section (aligned)
    /// or the HDF5 chunk shape. Reads and writes aligned to it touch the fewest objects.
    fn chunk_shape(&self) -> [u64; 3];

    /// Voxel size in nanometres; `(1, 1, 1)` for formats that record none.
    fn resolution(&self) -> [f64; 3] {
        [1.0; 3]
    }

    /// Which scale (mip level) of its layer this volume is; 0 is full resolution.
    fn mip(&self) -> usize {
        0
    }

    /// How many scales the layer has.
    fn num_mips(&self) -> usize {
        1
    }

    /// How chunks are encoded (`"raw"`, `"jpeg"`, ...), or the format's name where the
    /// format has a single way.
    fn encoding(&self) -> String {
        self.format().to_string()
    }

    /// The format's metadata as JSON text: the Precomputed `info`, H5s's `config.json`, a
    /// summary for the other HDF5 layouts.
    fn metadata_json(&self) -> String;

    /// Whether writes can succeed: the format and its store take them.
    fn writable(&self) -> bool {
        false
    }

    /// Reads each target's box into its buffer. Chunks shared by several boxes are fetched
    /// and decoded once where the format allows it.
    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()>;

    /// Writes `data` (the box's voxels, as [`Volume::read_many`] returns them) into `bbox`.
    /// With `only`, just the storage units touching one of those boxes are written (the
    /// rest of `data` is ignored); formats without that refinement write all of `bbox`.
    fn write_from_only(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        let _ = (bbox, data, only);
        Err(Error::invalid(format!(
            "{} layers are read-only: {}",
            self.format(),
            self.url()
        )))
    }

    /// The storage units of `bbox` that hold data, each with its stored size in bytes,
    /// learned without fetching data where the format can tell; `None` when it cannot (then
    /// every unit may hold data).
    fn stored_chunks(&self, bbox: &Bbox) -> Result<Option<Vec<(Bbox, u64)>>> {
        let _ = bbox;
        Ok(None)
    }

    /// Hit and miss counters of the decoded-chunk cache; `None` without one.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }

    /// The volume's chunks as stored bytes, for formats whose chunks may be the voxels as
    /// they are or gzipped (see [`crate::stored`]); `None` for the others.
    fn stored(&self) -> Option<&dyn StoredChunks> {
        None
    }

    /// The concrete volume, for format-specific operations (a Precomputed `info` update).
    fn as_any(&self) -> &dyn Any;

    /// The array in its own rank and axis order, for formats that have one (Zarr); `None`
    /// for the `[x, y, z, c]` formats.
    fn nd(&self) -> Option<&dyn NdVolume> {
        None
    }
}

/// A volume whose array has its own rank and axis order (Zarr), read and written as
/// zarr-python and TensorStore present it: boxes of indices from 0 in the array's axis
/// order, elements C-ordered (last axis fastest), little-endian.
///
/// Reads fill what lies outside the array, and missing chunks, with the array's fill value;
/// writes must lie inside the array.
pub trait NdVolume: Send + Sync {
    /// The array's shape.
    fn shape(&self) -> Vec<u64>;

    /// The storage unit (a chunk, or a shard of a sharded array): boxes aligned to it
    /// touch the fewest objects.
    fn chunk_shape(&self) -> Vec<u64>;

    /// The read unit: the chunk, or a sharded array's inner chunk.
    fn read_chunk_shape(&self) -> Vec<u64> {
        self.chunk_shape()
    }

    /// One element of the fill value, little-endian.
    fn fill_value(&self) -> Vec<u8>;

    /// Each axis's name where the metadata gives one (Zarr v3 `dimension_names`, OME-Zarr
    /// `axes`).
    fn dimension_names(&self) -> Vec<Option<String>>;

    /// Each axis's unit where the metadata gives one (OME-Zarr `axes`).
    fn units(&self) -> Vec<Option<String>> {
        vec![None; self.shape().len()]
    }

    /// Each axis's physical size of one element (OME-Zarr `scale`; 1 elsewhere).
    fn scale(&self) -> Vec<f64> {
        vec![1.0; self.shape().len()]
    }

    /// Each axis's physical position of the first element (OME-Zarr `translation`; 0
    /// elsewhere).
    fn translation(&self) -> Vec<f64> {
        vec![0.0; self.shape().len()]
    }

    /// Reads each target's box into its buffer; chunks shared by several boxes are fetched
    /// and decoded once.
    fn read_regions(&self, targets: &mut [NdTarget<'_>]) -> Result<()>;

    /// The storage units (chunks, or shards of a sharded array) touching `region` that hold
    /// data, each clipped to the array, with its stored size in bytes: learned without
    /// fetching them (file sizes, HEAD requests or listings).
    fn stored_units(&self, region: &NdBox) -> Result<Vec<(NdBox, u64)>>;

    /// Writes `data` (the box's elements, as [`NdVolume::read_regions`] returns them) into
    /// `region`, which must lie inside the array.
    fn write_region(&self, region: &NdBox, data: &[u8]) -> Result<()>;
}

/// Where an N-dimensional read puts one box ([`NdVolume::read_regions`]): a buffer of
/// exactly the box's bytes, which may start uninitialised.
#[derive(Debug)]
pub struct NdTarget<'a> {
    pub(crate) region: NdBox,
    pub(crate) out: OutBuffer,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> NdTarget<'a> {
    /// Reads `region` into `out`, whatever it holds now.
    pub fn new(region: NdBox, out: &'a mut [u8]) -> Self {
        Self::uninit(region, slice_as_uninit(out))
    }

    /// Reads `region` into memory not yet initialised; after a successful read every byte is.
    pub fn uninit(region: NdBox, out: &'a mut [MaybeUninit<u8>]) -> Self {
        NdTarget {
            region,
            out: OutBuffer {
                ptr: out.as_mut_ptr().cast(),
                len: out.len(),
                zeroed: false,
            },
            _borrow: PhantomData,
        }
    }

    /// Reads `region` into `out`, which holds zeros already: a zero fill value (missing
    /// chunks, outside the array) is not written again (see [`ReadTarget::zeroed`]).
    pub fn zeroed(region: NdBox, out: &'a mut [u8]) -> Self {
        let mut target = Self::new(region, out);
        target.out.zeroed = true;
        target
    }

    /// The box this target receives.
    pub fn region(&self) -> &NdBox {
        &self.region
    }
}

/// Initialised bytes seen as bytes that may be overwritten before they are read.
fn slice_as_uninit(out: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has `u8`'s layout, and the reads this feeds only write
    // initialised bytes, so the slice stays initialised for its owner.
    unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) }
}

/// A shared volume is a volume: `Arc<dyn Volume>` gets [`VolumeExt`]'s async methods, which
/// move a clone of the handle onto a blocking thread.
impl<V: Volume + ?Sized> Volume for Arc<V> {
    fn format(&self) -> &'static str {
        (**self).format()
    }
    fn url(&self) -> String {
        (**self).url()
    }
    fn dtype(&self) -> DType {
        (**self).dtype()
    }
    fn num_channels(&self) -> usize {
        (**self).num_channels()
    }
    fn bounds(&self) -> Bbox {
        (**self).bounds()
    }
    fn chunk_shape(&self) -> [u64; 3] {
        (**self).chunk_shape()
    }
    fn resolution(&self) -> [f64; 3] {
        (**self).resolution()
    }
    fn mip(&self) -> usize {
        (**self).mip()
    }
    fn num_mips(&self) -> usize {
        (**self).num_mips()
    }
    fn encoding(&self) -> String {
        (**self).encoding()
    }
    fn metadata_json(&self) -> String {
        (**self).metadata_json()
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        (**self).read_many(targets)
    }
    fn write_from_only(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        (**self).write_from_only(bbox, data, only)
    }
    fn stored_chunks(&self, bbox: &Bbox) -> Result<Option<Vec<(Bbox, u64)>>> {
        (**self).stored_chunks(bbox)
    }
    fn cache_stats(&self) -> Option<CacheStats> {
        (**self).cache_stats()
    }
    fn stored(&self) -> Option<&dyn StoredChunks> {
        (**self).stored()
    }
    fn as_any(&self) -> &dyn Any {
        (**self).as_any()
    }
    fn nd(&self) -> Option<&dyn NdVolume> {
        (**self).nd()
    }
}

/// Where a read puts one box: a buffer of exactly the box's bytes, which may start
/// uninitialised. On success the read has written every byte.
#[derive(Debug)]
pub struct ReadTarget<'a> {
    pub(crate) bbox: Bbox,
    pub(crate) out: OutBuffer,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> ReadTarget<'a> {
    /// Reads `bbox` into `out`, whatever it holds now.
    pub fn new(bbox: Bbox, out: &'a mut [u8]) -> Self {
        let out = OutBuffer {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            zeroed: false,
        };
        ReadTarget {
            bbox,
            out,
            _borrow: PhantomData,
        }
    }

    /// Reads `bbox` into memory not yet initialised; after a successful read every byte is.
    pub fn uninit(bbox: Bbox, out: &'a mut [MaybeUninit<u8>]) -> Self {
        let out = OutBuffer {
            ptr: out.as_mut_ptr().cast(),
            len: out.len(),
            zeroed: false,
        };
        ReadTarget {
            bbox,
            out,
            _borrow: PhantomData,
        }
    }

    /// Reads `bbox` into `out`, which holds zeros already: zeros (missing chunks, outside
    /// the bounds) are not written again, so the pages of a sparse read's empty parts are
    /// never touched (calloc'd memory costs nothing until written). Bytes of `out` that are
    /// not zero show through where the read writes nothing.
    pub fn zeroed(bbox: Bbox, out: &'a mut [u8]) -> Self {
        let mut target = Self::new(bbox, out);
        target.out.zeroed = true;
        target
    }

    /// The box this target receives.
    pub fn bbox(&self) -> &Bbox {
        &self.bbox
    }

    /// The buffer as initialised bytes (zero-filled first unless it holds zeros already),
    /// for formats that read through safe slices.
    pub fn initialized(&mut self) -> &mut [u8] {
        if !self.out.zeroed {
            // SAFETY: `out` is valid for writes of `len` bytes while `'a` lasts (it came from
            // a `&'a mut` slice we borrow exclusively).
            unsafe { std::ptr::write_bytes(self.out.ptr, 0, self.out.len) };
            self.out.zeroed = true;
        }
        // SAFETY: as above, and every byte is initialised now (zeroed).
        unsafe { std::slice::from_raw_parts_mut(self.out.ptr, self.out.len) }
    }
}

/// The raw form of a [`ReadTarget`]'s buffer that decode tasks share: `len` bytes at `ptr`,
/// uninitialised or, when `zeroed`, all zeros.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutBuffer {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) zeroed: bool,
}

// SAFETY: an `OutBuffer` is an address, made from a `&mut` borrow that its `ReadTarget`
// holds for the whole read. Within one read, the decode tasks share the buffers and only
// write through `BoxCopy::copy_to_ptr` / `zero_ptr` or `OutputRows`, each task the voxels
// of a different chunk; chunks are disjoint boxes, so no two tasks touch the same byte, and
// the read waits for every task (`in_place_scope`) before returning.
unsafe impl Send for OutBuffer {}
unsafe impl Sync for OutBuffer {}

/// Reads each target in turn through a safe slice: the [`Volume::read_many`] of formats
/// that read box by box.
// Only the HDF5 layouts use it today.
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(crate) fn read_each(
    targets: &mut [ReadTarget<'_>],
    mut read: impl FnMut(&Bbox, &mut [u8]) -> Result<()>,
) -> Result<()> {
    for target in targets {
        let bbox = target.bbox;
        read(&bbox, target.initialized())?;
    }
    Ok(())
}

/// Writes `data` (the voxels of `bbox`) box by box: all of it, or with `only` the part of
/// each of those boxes inside `bbox`. The [`Volume::write_from_only`] of formats whose
/// storage units are not worth planning across boxes.
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(crate) fn write_each(
    volume: &(impl Volume + ?Sized),
    bbox: &Bbox,
    data: &[u8],
    only: Option<&[Bbox]>,
    mut write: impl FnMut(&Bbox, &[u8]) -> Result<()>,
) -> Result<()> {
    let Some(only) = only else {
        return write(bbox, data);
    };
    let (channels, itemsize) = (volume.num_channels(), volume.dtype().itemsize());
    let needed = bbox
        .num_voxels()
        .and_then(|n| n.checked_mul(channels * itemsize));
    if needed != Some(data.len()) {
        return Err(Error::invalid(format!(
            "buffer holds {} bytes, the box {bbox:?} needs {needed:?}",
            data.len()
        )));
    }
    for part in only.iter().filter_map(|b| b.intersect(bbox)) {
        let copy = BoxCopy::new(bbox, &part, &part, channels, itemsize);
        let mut piece = vec![0; copy.dst_len()];
        copy.copy(data, &mut piece);
        write(&part, &piece)?;
    }
    Ok(())
}

/// The typed and async API of every [`Volume`]: arrays of shape `[x, y, z]` (`[x, y, z, c]`
/// for multi-channel volumes) whose element type must match the volume's.
pub trait VolumeExt: Volume {
    /// Reads `bbox` into `out`: Fortran-ordered `[x, y, z, c]` little-endian voxels.
    fn read_into(&self, bbox: &Bbox, out: &mut [u8]) -> Result<()> {
        self.read_many(&mut [ReadTarget::new(*bbox, out)])
    }

    /// Writes `data` (as [`VolumeExt::read_into`] returns it) into `bbox`.
    fn write_from(&self, bbox: &Bbox, data: &[u8]) -> Result<()> {
        self.write_from_only(bbox, data, None)
    }

    /// Reads `bbox` into a new Fortran-ordered array.
    fn read<T: Element>(&self, bbox: &Bbox) -> Result<ArrayD<T>> {
        check_element::<T>(self)?;
        let shape = array_shape(self, bbox);
        let n: usize = shape.iter().product();
        let mut values = vec![T::default(); n];
        self.read_into(bbox, bytemuck::cast_slice_mut(&mut values))?;
        ArrayD::from_shape_vec(IxDyn(&shape).f(), values).map_err(|e| Error::invalid(e.to_string()))
    }

    /// Reads `bbox` into `out`, an array of the caller's in any memory order: straight into
    /// its memory when it is Fortran-contiguous, through a temporary array otherwise.
    fn read_into_view<T: Element>(&self, bbox: &Bbox, mut out: ArrayViewMutD<T>) -> Result<()> {
        check_element::<T>(self)?;
        check_shape(self, bbox, out.shape())?;
        // Fortran order is the standard layout of the reversed axes.
        match out.view_mut().reversed_axes().as_slice_mut() {
            Some(values) => self.read_into(bbox, bytemuck::cast_slice_mut(values)),
            None => {
                out.assign(&self.read::<T>(bbox)?);
                Ok(())
            }
        }
    }

    /// Writes an array into `bbox`.
    fn write<T: Element>(&self, bbox: &Bbox, data: ArrayViewD<T>) -> Result<()> {
        check_element::<T>(self)?;
        check_shape(self, bbox, data.shape())?;
        // Fortran order is the standard layout of the reversed axes.
        let fortran = data.t();
        match fortran.as_slice() {
            Some(values) => self.write_from(bbox, bytemuck::cast_slice(values)),
            None => {
                let values: Vec<T> = fortran.iter().copied().collect();
                self.write_from(bbox, bytemuck::cast_slice(&values))
            }
        }
    }

    /// [`VolumeExt::read`] for async callers, on any executor: the blocking methods must not
    /// run on an executor's threads (they wait for the crate's IO runtime and CPU pool, and
    /// tokio forbids blocking inside its runtime). The read runs on a blocking thread of the
    /// crate's IO runtime; the calling task is free while it does.
    fn read_async<T: Element>(
        &self,
        bbox: Bbox,
    ) -> impl std::future::Future<Output = Result<ArrayD<T>>> + Send
    where
        Self: Clone + Sized + 'static,
    {
        let this = self.clone();
        off_executor(move || this.read::<T>(&bbox))
    }

    /// [`VolumeExt::write`] for async callers, as [`VolumeExt::read_async`]; `data` is moved
    /// into the write.
    fn write_async<T: Element>(
        &self,
        bbox: Bbox,
        data: ArrayD<T>,
    ) -> impl std::future::Future<Output = Result<()>> + Send
    where
        Self: Clone + Sized + 'static,
    {
        let this = self.clone();
        off_executor(move || this.write(&bbox, data.view()))
    }
}

impl<V: Volume + ?Sized> VolumeExt for V {}

/// Shape of a box's voxels as an array: `[x, y, z]`, plus `c` when multi-channel.
fn array_shape<V: Volume + ?Sized>(volume: &V, bbox: &Bbox) -> Vec<usize> {
    let mut shape: Vec<usize> = bbox.shape().iter().map(|&n| n as usize).collect();
    if volume.num_channels() > 1 {
        shape.push(volume.num_channels());
    }
    shape
}

fn check_shape<V: Volume + ?Sized>(volume: &V, bbox: &Bbox, shape: &[usize]) -> Result<()> {
    let needed = array_shape(volume, bbox);
    if shape != needed.as_slice() {
        return Err(Error::invalid(format!(
            "array of shape {shape:?} does not fit box {bbox:?} (needs {needed:?})"
        )));
    }
    Ok(())
}

fn check_element<T: Element>(volume: &(impl Volume + ?Sized)) -> Result<()> {
    if T::DTYPE != volume.dtype() {
        return Err(Error::invalid(format!(
            "{}: the layer holds {}, not {}",
            volume.url(),
            volume.dtype(),
            T::DTYPE
        )));
    }
    Ok(())
}

/// Runs blocking engine work on a blocking thread of the IO runtime, for async callers.
async fn off_executor<R: Send + 'static>(
    work: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    runtime::io()
        .spawn_blocking(move || {
            catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|p| Err(Error::from_panic(p)))
        })
        .await
        .map_err(|e| Error::internal(format!("a blocking read or write task failed: {e}")))?
}
