//! Copying chunks between two scales as their stored bytes. When both share geometry,
//! encoding and transport compression, a copy need not re-encode: gzip compression costs ten
//! times what decompression does, so a transcoding copy spends most of its time producing
//! the bytes it already read. Each chunk is still decoded once, to check it, so a corrupt
//! source chunk fails the copy instead of spreading.

use std::collections::BTreeMap;

use bytes::Bytes;
use rayon::prelude::*;

use super::array::BigArray;
use super::source::stop_fetching;
use crate::codec::{self, Compression, GzipLevel};
use crate::error::{Error, Result};
use crate::geometry::Bbox;
use crate::stored::{StoredChunk, StoredChunks, StoredForm, StoredLayout};
use crate::volume::Volume;
use crate::{interrupt, runtime};

impl BigArray {
    /// Copies the chunks of `bbox` from `src` as their stored bytes, when that gives the same
    /// layer a decoding copy would: same data type, channels, chunk grid and encoding, `bbox`
    /// made of whole chunks, and every stored chunk compressed as this scale writes (its
    /// handle's compression, or the shard data encoding). With `only`, just the chunks
    /// touching one of those boxes are copied. Chunks `src` lacks are not written: the
    /// destination's stay as they are (absent in a new layer, so a sparse source stays
    /// sparse; a caller copying over existing data writes zeros there itself). Returns
    /// `false`, having written nothing, when the scales or any chunk do not qualify: the
    /// caller then copies by decoding.
    pub fn copy_stored_from(
        &self,
        src: &BigArray,
        bbox: &Bbox,
        only: Option<&[Bbox]>,
    ) -> Result<bool> {
        interrupt::begin();
        self.check_supported()?;
        src.check_supported()?;
        let grid = self.scale().grid;
        let encoding = &self.scale().encoding;
        if self.dtype() != src.dtype()
            || self.num_channels() != src.num_channels()
            || grid != src.scale().grid
            || *encoding != src.scale().encoding
            || !self.bounds().contains(bbox)
        {
            return Ok(false);
        }
        let cells = self.cells_of(bbox, only);
        if cells.iter().any(|&g| !bbox.contains(&grid.chunk_box(g))) {
            return Ok(false);
        }
        let target = self.compression();
        // Everything fetched first: a chunk stored otherwise must leave the layer untouched.
        let (keys, mut fetched) = src.fetch_cells(&cells);
        let mut stored: Vec<Option<(Bytes, Compression)>> = vec![None; cells.len()];
        let io = runtime::io();
        loop {
            match interrupt::recv(&io, &mut fetched) {
                Ok(Some((i, found, _held))) => stored[i] = found?,
                Ok(None) => break,
                Err(e) => {
                    stop_fetching(&mut fetched);
                    return Err(e);
                }
            }
        }
        let qualifies = stored.iter().all(|s| match s {
            Some((bytes, declared)) => !bytes.is_empty() && declared.resolve(bytes) == target,
            None => true,
        });
        if !qualifies {
            return Ok(false);
        }
        // Only the chunks the source holds.
        let (present, stored): (Vec<usize>, Vec<(Bytes, Compression)>) = stored
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .unzip();
        let bytes: Vec<Bytes> = interrupt::install(&runtime::cpu(), |cancel| {
            present
                .par_iter()
                .zip(stored)
                .map(|(&i, (bytes, declared))| {
                    interrupt::cancelled(cancel)?;
                    let layout = self.layout(&grid.chunk_box(cells[i]));
                    let url = src.store.url_of(&keys[i]);
                    codec::decode_as(encoding, &url, &bytes, declared, &layout, |_| ())?;
                    Ok(bytes)
                })
                .collect::<Result<_>>()
        })?;
        let written: Vec<[u64; 3]> = present.iter().map(|&i| cells[i]).collect();
        let result = self.put_encoded(&written, bytes, bbox);
        if let Some(cache) = &self.cache {
            for &cell in &cells {
                cache.remove(cell);
            }
        }
        result.map(|()| true)
    }

    /// The grid cell whose full box is `cell`.
    fn cell_at(&self, cell: &Bbox) -> Result<[u64; 3]> {
        let grid = self.scale().grid;
        let mut g = [0; 3];
        for (d, at) in g.iter_mut().enumerate() {
            let from = cell.start[d] - grid.voxel_offset[d];
            let on_grid = from >= 0
                && (from as u64).is_multiple_of(grid.chunk[d])
                && (from as u64) < grid.size[d];
            if !on_grid {
                return Err(Error::internal(format!(
                    "{}: {cell:?} is not a chunk of the scale",
                    self.url()
                )));
            }
            *at = from as u64 / grid.chunk[d];
        }
        Ok(g)
    }

    /// Writes pre-encoded chunks, each replacing what was stored for it.
    fn put_encoded(&self, cells: &[[u64; 3]], bytes: Vec<Bytes>, bbox: &Bbox) -> Result<()> {
        let by_cell: BTreeMap<[u64; 3], Bytes> = cells.iter().copied().zip(bytes).collect();
        let encode = |g: [u64; 3], _old: Option<(&[u8], Compression)>| {
            by_cell
                .get(&g)
                .cloned()
                .ok_or_else(|| Error::internal(format!("no stored chunk for cell {g:?}")))
        };
        self.source.write(bbox, cells, &encode)
    }
}

impl StoredChunks for BigArray {
    /// Unsharded `raw` scales, stored as they are or gzipped.
    fn stored_layout(&self) -> Option<StoredLayout> {
        let scale = self.scale();
        if self.check_supported().is_err() || scale.sharded || scale.encoding.name() != "raw" {
            return None;
        }
        let form = stored_form(self.compression())?;
        Some(StoredLayout {
            origin: scale.grid.voxel_offset,
            chunk: scale.grid.chunk,
            form,
            padded: false,
        })
    }

    fn fetch_stored(&self, cells: &[Bbox]) -> Result<Option<Vec<Option<StoredChunk>>>> {
        interrupt::begin();
        let cells: Vec<[u64; 3]> = cells
            .iter()
            .map(|c| self.cell_at(c))
            .collect::<Result<_>>()?;
        let (keys, mut fetched) = self.fetch_cells(&cells);
        let mut stored: Vec<Option<StoredChunk>> = vec![None; cells.len()];
        let io = runtime::io();
        loop {
            match interrupt::recv(&io, &mut fetched) {
                Ok(Some((i, found, _held))) => {
                    let Some((bytes, declared)) = found? else {
                        continue;
                    };
                    let form = match stored_form(declared.resolve(&bytes)) {
                        Some(form) if !bytes.is_empty() => form,
                        _ => {
                            stop_fetching(&mut fetched);
                            return Ok(None);
                        }
                    };
                    let url = self.store.url_of(&keys[i]);
                    stored[i] = Some(StoredChunk { bytes, form, url });
                }
                Ok(None) => break,
                Err(e) => {
                    stop_fetching(&mut fetched);
                    return Err(e);
                }
            }
        }
        Ok(Some(stored))
    }

    /// Chunks in this handle's transport compression.
    fn put_stored(&self, chunks: Vec<(Bbox, Bytes)>) -> Result<()> {
        interrupt::begin();
        if chunks.is_empty() {
            return Ok(());
        }
        let grid = self.scale().grid;
        let mut cells = Vec::with_capacity(chunks.len());
        let mut bytes = Vec::with_capacity(chunks.len());
        for (cell, b) in chunks {
            cells.push(self.cell_at(&cell)?);
            bytes.push(b);
        }
        // Every chunk is written whole: the box spanning them all covers each.
        let hull = cells
            .iter()
            .map(|&g| grid.chunk_box(g))
            .reduce(|a, b| Bbox {
                start: std::array::from_fn(|d| a.start[d].min(b.start[d])),
                stop: std::array::from_fn(|d| a.stop[d].max(b.stop[d])),
            })
            .unwrap_or_else(|| grid.bounds());
        let result = self.put_encoded(&cells, bytes, &hull);
        if let Some(cache) = &self.cache {
            for &cell in &cells {
                cache.remove(cell);
            }
        }
        result
    }

    fn gzip_level(&self) -> GzipLevel {
        self.options().gzip_level
    }
}

/// The stored form of chunks with transport compression `compression`, if it has one.
fn stored_form(compression: Compression) -> Option<StoredForm> {
    match compression {
        Compression::None => Some(StoredForm::Raw),
        Compression::Gzip => Some(StoredForm::Gzip),
        Compression::Zstd | Compression::Brotli => None,
    }
}
