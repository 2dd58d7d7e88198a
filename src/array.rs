//! `BigArray`: one scale of a layer. Reads plan the chunks a box touches, fetch them
//! concurrently on the IO runtime, and decode each on the CPU pool straight into the
//! caller's buffer. Writes paint the box into chunks (read-modify-write only for partly
//! covered ones), encode them in parallel and store them concurrently.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ndarray::{ArrayD, ArrayViewD, IxDyn, ShapeBuilder};
use rayon::prelude::*;

use crate::codec::{self, transport, ChunkLayout, Compression};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::format::precomputed::{ChunkStore, Encoding, Info, LayerSpec, Scale, Stored};
use crate::geometry::{Bbox, BoxCopy};
use crate::runtime;
use crate::store::{self, Store};

/// `info` files larger than this are refused rather than read into memory.
const MAX_INFO_BYTES: usize = 64 << 20;
/// Chunks written per round of fetch → encode → store; bounds the encoded bytes held.
const WRITE_BATCH: usize = 64;

/// How to open a layer.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Index into `info["scales"]`; 0 is full resolution.
    pub mip: usize,
    /// Missing chunks read as zeros (`true`) or raise [`Error::MissingChunk`].
    pub fill_missing: bool,
    /// Transport compression of the chunks this handle writes; `None` picks the encoding's
    /// default ([`codec::default_compression`]: gzip for raw and compressed_segmentation,
    /// none for jpeg, png and blosc, as CloudVolume does).
    pub compression: Option<Compression>,
    /// Store requests in flight at once.
    pub concurrency: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            mip: 0,
            fill_missing: true,
            compression: None,
            concurrency: 64,
        }
    }
}

/// One scale of a Neuroglancer Precomputed layer.
#[derive(Debug)]
pub struct BigArray {
    chunks: Arc<ChunkStore>,
    info: Info,
    options: OpenOptions,
}

/// The output buffer of a read, shared by the decode tasks.
#[derive(Clone, Copy)]
struct SharedOut(*mut u8);
// SAFETY: the pointer is only dereferenced through `BoxCopy::copy_to_ptr` by tasks of one
// read, each writing the voxels of a different chunk; chunks are disjoint boxes, so no two
// tasks touch the same byte, and the read waits for every task before the buffer's borrow
// ends (`in_place_scope`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method rather than a field access so that closures capture the whole `SharedOut`
    /// (and with it the `Send` proof), not the bare pointer.
    fn ptr(self) -> *mut u8 {
        self.0
    }
}

impl BigArray {
    /// Opens the layer at `url` (a path, `file://` or `memory://`).
    pub fn open(url: &str, options: OpenOptions) -> Result<Self> {
        Self::open_store(store::open_url(url, false)?, options)
    }

    /// Opens the layer held by `store`.
    pub fn open_store(store: Arc<dyn Store>, options: OpenOptions) -> Result<Self> {
        let url = store.url_of("info");
        let bytes = block_on(store.get("info"))?.ok_or_else(|| Error::LayerNotFound {
            url: store.url_of(""),
        })?;
        let text = transport::decompress_small(&url, &bytes, MAX_INFO_BYTES)?;
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
        store: Arc<dyn Store>,
        spec: &LayerSpec,
        overwrite: bool,
        options: OpenOptions,
    ) -> Result<Self> {
        let url = store.url_of("info");
        let info = Info::new(&url, spec)?;
        let encoding = &info.scales[0].encoding;
        if let Encoding::Unsupported(name) = encoding {
            return Err(Error::invalid(format!(
                "{url}: encoding {name:?} cannot be written (supported: \"raw\", \"jpeg\", \"png\", \
                 \"compressed_segmentation\", \"blosc\", \"blosclz\")"
            )));
        }
        if let Err((field, reason)) = codec::check(encoding, spec.dtype, spec.num_channels) {
            return Err(Error::invalid(format!("{url}: {reason} (field '{field}')")));
        }
        if !overwrite && block_on(store.get("info"))?.is_some() {
            return Err(Error::LayerExists {
                url: store.url_of(""),
            });
        }
        block_on(store.put("info", Bytes::from(info.to_json())))?;
        Self::with_info(store, info, options)
    }

    fn with_info(store: Arc<dyn Store>, info: Info, options: OpenOptions) -> Result<Self> {
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
        Ok(BigArray {
            chunks: Arc::new(ChunkStore::new(store)),
            info,
            options,
        })
    }

    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The scale this handle reads and writes.
    pub fn scale(&self) -> &Scale {
        &self.info.scales[self.options.mip]
    }

    pub fn options(&self) -> &OpenOptions {
        &self.options
    }

    pub fn dtype(&self) -> DType {
        self.info.data_type
    }

    pub fn num_channels(&self) -> usize {
        self.info.num_channels
    }

    /// The layer bounds at this scale, in absolute voxel coordinates.
    pub fn bounds(&self) -> Bbox {
        self.scale().grid.bounds()
    }

    /// The URL of the layer root.
    pub fn url(&self) -> String {
        self.chunks
            .store()
            .url_of("")
            .trim_end_matches('/')
            .to_string()
    }

    /// Bytes per voxel, all channels together.
    fn voxel_bytes(&self) -> usize {
        self.dtype().itemsize() * self.num_channels()
    }

    fn chunk_key(&self, g: [u64; 3]) -> String {
        format!("{}/{}", self.scale().key, self.scale().grid.chunk_name(g))
    }

    /// Errors unless this engine can decode and encode the scale's chunks.
    fn check_supported(&self) -> Result<()> {
        let scale = self.scale();
        let url = self.chunks.store().url_of("info");
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
        if scale.sharded {
            return Err(Error::info(
                &url,
                field("sharding"),
                "sharded layers are not supported yet",
            ));
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

    /// Reads `bbox` into `out`: Fortran-ordered `[x, y, z, c]` little-endian voxels. Voxels
    /// outside the bounds, and in missing chunks when `fill_missing` is set, become 0.
    pub fn read_into(&self, bbox: &Bbox, out: &mut [u8]) -> Result<()> {
        self.check_supported()?;
        self.check_buffer(bbox, out.len())?;
        if !self.bounds().contains(bbox) {
            out.fill(0);
        }
        let grid = self.scale().grid;
        let cells = grid.chunks_touching(bbox);
        if cells.is_empty() {
            return Ok(());
        }
        let (channels, itemsize) = (self.num_channels(), self.dtype().itemsize());
        let encoding = &self.scale().encoding;
        let keys: Vec<String> = cells.iter().map(|&g| self.chunk_key(g)).collect();
        let mut fetched = self.fetch_stream(keys.clone());
        let out = SharedOut(out.as_mut_ptr());
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let fail = |e: Error| {
            failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        };
        runtime::cpu().in_place_scope(|scope| {
            while let Some((i, found)) = fetched.blocking_recv() {
                let found = match found {
                    Ok(found) => found,
                    Err(e) => return fail(e),
                };
                let (key, chunk_box) = (&keys[i], grid.chunk_box(cells[i]));
                let Some(region) = chunk_box.intersect(bbox) else {
                    continue;
                };
                let copy = BoxCopy::new(&chunk_box, bbox, &region, channels, itemsize);
                let layout = self.layout(&chunk_box);
                let fill_missing = self.options.fill_missing;
                let fail = &fail;
                scope.spawn(move |_| {
                    let paint = || -> Result<()> {
                        let url = || self.chunks.store().url_of(key);
                        match found {
                            None if !fill_missing => Err(Error::MissingChunk { key: url() }),
                            // Missing, or zero-length (background, as CloudVolume has it).
                            None => {
                                // SAFETY: see `SharedOut`: this task owns the region's bytes.
                                unsafe { copy.zero_ptr(out.ptr()) };
                                Ok(())
                            }
                            Some((bytes, _)) if bytes.is_empty() => {
                                // SAFETY: as above.
                                unsafe { copy.zero_ptr(out.ptr()) };
                                Ok(())
                            }
                            Some((bytes, declared)) => {
                                let key = url();
                                codec::decode_as(
                                    encoding,
                                    &key,
                                    &bytes,
                                    declared,
                                    &layout,
                                    |voxels| {
                                        // SAFETY: see `SharedOut`: this task owns the region's
                                        // bytes; `codec::decode` hands over exactly
                                        // `layout.raw_len() == copy.src_len()` bytes.
                                        unsafe { copy.copy_to_ptr(voxels, out.ptr()) }
                                    },
                                )
                            }
                        }
                    };
                    let result = catch_unwind(AssertUnwindSafe(paint))
                        .unwrap_or_else(|p| Err(Error::from_panic(p)));
                    if let Err(e) = result {
                        fail(e);
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Fetches `keys` concurrently on the IO runtime; results arrive as they complete, tagged
    /// with their index. Dropping the receiver stops the fetching.
    fn fetch_stream(
        &self,
        keys: Vec<String>,
    ) -> tokio::sync::mpsc::Receiver<(usize, Result<Option<Stored>>)> {
        let concurrency = self.options.concurrency;
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency);
        let chunks = self.chunks.clone();
        runtime::io().spawn(async move {
            let mut results = futures::stream::iter(keys.into_iter().enumerate())
                .map(|(i, key)| {
                    let chunks = chunks.clone();
                    async move { (i, chunks.fetch_declared(&key).await) }
                })
                .buffer_unordered(concurrency);
            while let Some((i, result)) = results.next().await {
                let failed = result.is_err();
                if tx.send((i, result)).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }

    /// Writes `data` (Fortran-ordered `[x, y, z, c]` voxels) into `bbox`, which must lie
    /// inside the bounds. Each chunk is replaced atomically.
    pub fn write_from(&self, bbox: &Bbox, data: &[u8]) -> Result<()> {
        self.check_supported()?;
        self.check_buffer(bbox, data.len())?;
        let bounds = self.bounds();
        if !bounds.contains(bbox) {
            return Err(Error::OutOfBounds {
                reason: format!(
                    "{}: write box {:?}..{:?} reaches outside the layer bounds {:?}..{:?}; nothing was written",
                    self.url(),
                    bbox.start,
                    bbox.stop,
                    bounds.start,
                    bounds.stop
                ),
            });
        }
        let cells = self.scale().grid.chunks_touching(bbox);
        for batch in cells.chunks(WRITE_BATCH) {
            self.write_batch(bbox, data, batch)?;
        }
        Ok(())
    }

    fn write_batch(&self, bbox: &Bbox, data: &[u8], cells: &[[u64; 3]]) -> Result<()> {
        let grid = self.scale().grid;
        let (channels, itemsize) = (self.num_channels(), self.dtype().itemsize());
        let compression = self.compression();
        let encoding = &self.scale().encoding;
        // Partly covered chunks keep their other voxels: fetch them first.
        let partial: Vec<(usize, String)> = cells
            .iter()
            .enumerate()
            .filter(|(_, &g)| !bbox.contains(&grid.chunk_box(g)))
            .map(|(i, &g)| (i, self.chunk_key(g)))
            .collect();
        let chunks = self.chunks.clone();
        let mut existing: Vec<Option<Stored>> = vec![None; cells.len()];
        for (i, bytes) in block_on(
            futures::stream::iter(partial)
                .map(|(i, key)| {
                    let chunks = chunks.clone();
                    async move { chunks.fetch_declared(&key).await.map(|b| (i, b)) }
                })
                .buffer_unordered(self.options.concurrency)
                .try_collect::<Vec<_>>(),
        )? {
            existing[i] = bytes;
        }
        let encoded: Vec<(String, Vec<u8>)> = runtime::cpu().install(|| {
            cells
                .par_iter()
                .zip(existing.par_iter())
                .map(|(&g, old)| {
                    let key = self.chunk_key(g);
                    let chunk_box = grid.chunk_box(g);
                    let Some(region) = chunk_box.intersect(bbox) else {
                        unreachable!("chunks_touching returns only overlapping chunks")
                    };
                    let paint = BoxCopy::new(bbox, &chunk_box, &region, channels, itemsize);
                    let layout = self.layout(&chunk_box);
                    let mut voxels = vec![0u8; paint.dst_len()];
                    if let Some((old, declared)) = old.as_ref().filter(|(b, _)| !b.is_empty()) {
                        let url = self.chunks.store().url_of(&key);
                        codec::decode_as(encoding, &url, old, *declared, &layout, |v| {
                            voxels.copy_from_slice(v)
                        })?;
                    }
                    paint.copy(data, &mut voxels);
                    let url = self.chunks.store().url_of(&key);
                    let bytes = codec::encode(encoding, &voxels, &layout, compression).map_err(
                        |e| match e {
                            Error::InvalidArgument { reason } => {
                                Error::invalid(format!("{url}: {reason}"))
                            }
                            other => other,
                        },
                    )?;
                    Ok((key, bytes))
                })
                .collect::<Result<_>>()
        })?;
        block_on(
            futures::stream::iter(encoded)
                .map(|(key, bytes)| {
                    let chunks = chunks.clone();
                    async move { chunks.put(&key, Bytes::from(bytes), compression).await }
                })
                .buffer_unordered(self.options.concurrency)
                .try_collect::<Vec<()>>(),
        )?;
        Ok(())
    }

    /// The transport compression this handle writes.
    pub fn compression(&self) -> Compression {
        self.options
            .compression
            .unwrap_or_else(|| codec::default_compression(&self.scale().encoding))
    }

    /// What a chunk covering `chunk_box` holds once decoded.
    fn layout(&self, chunk_box: &Bbox) -> ChunkLayout {
        ChunkLayout {
            shape: chunk_box.shape().map(|n| n as usize),
            channels: self.num_channels(),
            dtype: self.dtype(),
        }
    }

    /// Shape of a box's voxels as an array: `[x, y, z]`, plus `c` when multi-channel.
    fn array_shape(&self, bbox: &Bbox) -> Vec<usize> {
        let mut shape: Vec<usize> = bbox.shape().iter().map(|&n| n as usize).collect();
        if self.num_channels() > 1 {
            shape.push(self.num_channels());
        }
        shape
    }

    fn check_element<T: Element>(&self) -> Result<()> {
        if T::DTYPE != self.dtype() {
            return Err(Error::invalid(format!(
                "{}: the layer holds {}, not {}",
                self.url(),
                self.dtype(),
                T::DTYPE
            )));
        }
        Ok(())
    }

    /// Reads `bbox` into a new Fortran-ordered array of shape `[x, y, z]` (`[x, y, z, c]`
    /// for multi-channel layers). `T` must match the layer's data type.
    pub fn read<T: Element>(&self, bbox: &Bbox) -> Result<ArrayD<T>> {
        self.check_element::<T>()?;
        let shape = self.array_shape(bbox);
        let n: usize = shape.iter().product();
        let mut values = vec![T::default(); n];
        self.read_into(bbox, bytemuck::cast_slice_mut(&mut values))?;
        ArrayD::from_shape_vec(IxDyn(&shape).f(), values).map_err(|e| Error::invalid(e.to_string()))
    }

    /// Writes an array of shape `[x, y, z]` (`[x, y, z, c]`) into `bbox`.
    pub fn write<T: Element>(&self, bbox: &Bbox, data: ArrayViewD<T>) -> Result<()> {
        self.check_element::<T>()?;
        let shape = self.array_shape(bbox);
        if data.shape() != shape.as_slice() {
            return Err(Error::invalid(format!(
                "array of shape {:?} does not fit box {bbox:?} (needs {shape:?})",
                data.shape()
            )));
        }
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
}

/// Runs a store future to completion from a thread outside the IO runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime::io().block_on(future)
}
