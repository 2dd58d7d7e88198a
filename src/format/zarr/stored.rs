//! A Zarr array's side of stored-bytes copies (see [`crate::stored`]): an unsharded array
//! whose chain is `bytes` (little-endian) alone or followed by `gzip`, and whose chunks hold
//! every channel and one element along the axes the 3D view drops, stores each chunk as
//! C-ordered `(c, z, y, x)` elements, plain or as one gzip stream: the bytes of a Precomputed
//! `raw` chunk. Any other chain (a transpose, big-endian, zstd, sharding) has no such form,
//! and copies decode.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::array::ZarrArray;
use super::codecs::CodecSpec;
use crate::error::{Error, Result};
use crate::format::rmw::block_on;
use crate::geometry::Bbox;
use crate::interrupt;
use crate::stored::{StoredChunk, StoredChunks, StoredForm, StoredLayout};
use crate::volume::Volume;

impl ZarrArray {
    /// Whether `spec` is the `bytes` codec writing this array's elements little-endian.
    fn little_endian(&self, spec: &CodecSpec) -> bool {
        spec.name == "bytes"
            && (self.meta.dtype.component_size() == 1
                || spec.configuration.get("endian").and_then(|e| e.as_str()) == Some("little"))
    }

    /// The store key of the chunk whose full box in the 3D view is `cell`.
    fn stored_key(&self, cell: &Bbox) -> Result<String> {
        let chunk = Volume::chunk_shape(self);
        let n = self.meta.shape.len();
        let rank = n - self.view_lead;
        let mut index = vec![0; n];
        for k in 0..rank.min(3) {
            let start = cell.start[k];
            if start < 0
                || !(start as u64).is_multiple_of(chunk[k])
                || start as u64 >= self.meta.shape[n - 1 - k]
            {
                return Err(Error::internal(format!(
                    "{}: {cell:?} is not a chunk of the array",
                    self.url()
                )));
            }
            index[n - 1 - k] = start as u64 / chunk[k];
        }
        Ok(self.key_of(&index))
    }
}

impl StoredChunks for ZarrArray {
    fn stored_layout(&self) -> Option<StoredLayout> {
        let rank = self.view_rank().ok()?;
        if self.chain.sharding().is_some() {
            return None;
        }
        let specs = self.chain.specs();
        let form = match specs.as_slice() {
            [bytes] if self.little_endian(bytes) => StoredForm::Raw,
            [bytes, gzip] if self.little_endian(bytes) && gzip.name == "gzip" => StoredForm::Gzip,
            _ => return None,
        };
        let (shape, chunk) = (&self.meta.shape, &self.meta.chunk_shape);
        let n = shape.len();
        // A dropped axis chunked by more than one element, or channels split across chunks,
        // would put other bytes in a chunk than the view's voxels.
        if chunk[..self.view_lead].iter().any(|&c| c != 1)
            || (rank == 4 && chunk[n - 4] != shape[n - 4])
        {
            return None;
        }
        Some(StoredLayout {
            origin: [0; 3],
            chunk: Volume::chunk_shape(self),
            form,
            padded: true,
        })
    }

    /// An empty object (all fill, as writes leave it) counts as absent.
    fn fetch_stored(&self, cells: &[Bbox]) -> Result<Option<Vec<Option<StoredChunk>>>> {
        interrupt::begin();
        let Some(layout) = self.stored_layout() else {
            return Ok(None);
        };
        let keys: Vec<String> = cells
            .iter()
            .map(|c| self.stored_key(c))
            .collect::<Result<_>>()?;
        let store = self.store.clone();
        let found = block_on(
            futures::stream::iter(keys)
                .map(|key| {
                    let store = store.clone();
                    async move {
                        interrupt::check()?;
                        let object = store.get(&key).await?;
                        Ok::<_, Error>(object.filter(|o| !o.bytes.is_empty()).map(|o| {
                            StoredChunk {
                                bytes: o.bytes,
                                form: layout.form,
                                url: store.url_of(&key),
                            }
                        }))
                    }
                })
                .buffered(self.concurrency)
                .try_collect::<Vec<_>>(),
        )?;
        Ok(Some(found))
    }

    /// Each chunk overwritten whole.
    fn put_stored(&self, chunks: Vec<(Bbox, Bytes)>) -> Result<()> {
        interrupt::begin();
        let puts: Vec<(String, Bytes)> = chunks
            .iter()
            .map(|(cell, bytes)| Ok((self.stored_key(cell)?, bytes.clone())))
            .collect::<Result<_>>()?;
        let store = self.store.clone();
        let put = block_on(
            futures::stream::iter(puts)
                .map(|(key, bytes)| {
                    let store = store.clone();
                    async move {
                        interrupt::check()?;
                        store.writer(&key)?.put(&key, bytes).await
                    }
                })
                .buffer_unordered(self.concurrency)
                .try_collect::<Vec<()>>(),
        );
        // Whatever happened, the cache must not keep what the store may no longer hold.
        for (cell, _) in &chunks {
            if let Some(part) = self.nd_of(cell).intersect(&self.bounds_nd()) {
                self.forget_cached(&part);
            }
        }
        put.map(|_| ())
    }
}
