//! Copying chunks between two volumes of different formats as their stored bytes. A
//! Precomputed `raw` chunk is Fortran-ordered little-endian `[x, y, z, c]`, which is byte for
//! byte a C-ordered `(c, z, y, x)` Zarr chunk with the `bytes` codec, and a gzip-transported
//! one is a gzip stream as Zarr's `gzip` codec stores it. Each such format describes its
//! stored form and fetches and puts chunks in it ([`StoredChunks`], handed out by
//! [`Volume::stored`]); [`copy_stored`] moves chunks between any two volumes whose forms
//! agree, knowing neither format.
//!
//! Each chunk is still decoded once (its gzip stream inflated, its length checked), so a
//! corrupt source chunk fails the copy instead of spreading. Chunks on the edge of either
//! volume are written by decoding, since formats store them differently (Precomputed
//! truncates them to the bounds, Zarr pads them to the full chunk with the fill value).

use bytes::Bytes;
use rayon::prelude::*;

use crate::codec::{transport, Compression, GzipLevel};
use crate::error::{Error, Result};
use crate::geometry::{Bbox, BoxCopy};
use crate::volume::Volume;
use crate::{interrupt, runtime};

/// How a stored chunk's bytes hold its voxels: Fortran-ordered little-endian `[x, y, z, c]`
/// (C-ordered `(c, z, y, x)`), as they are or as one gzip stream of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredForm {
    /// The voxels as they are.
    Raw,
    /// A gzip stream of the voxels.
    Gzip,
}

/// How a volume stores its chunks, when they are voxels in a [`StoredForm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLayout {
    /// Where the chunk grid starts, in absolute voxel coordinates: grid cells are the boxes
    /// `origin + g * chunk`.
    pub origin: [i64; 3],
    /// The chunk shape in voxels.
    pub chunk: [u64; 3],
    /// The form new chunks are stored in.
    pub form: StoredForm,
    /// Whether edge chunks are stored full-size, padded (Zarr), rather than truncated to the
    /// bounds (Precomputed).
    pub padded: bool,
}

/// A volume's chunks as their stored bytes ([`Volume::stored`]).
pub trait StoredChunks {
    /// How the chunks are stored, when they are the voxels as they are or gzipped; `None`
    /// otherwise (another encoding or codec, a transposing or big-endian chain, shards).
    fn stored_layout(&self) -> Option<StoredLayout>;

    /// The stored bytes of the chunks whose full grid-cell boxes (of the layout's grid, edge
    /// cells not clipped) are `cells`, each `None` where absent; `None` for all of them when
    /// one is stored in a form the volume cannot describe (another transport compression).
    fn fetch_stored(&self, cells: &[Bbox]) -> Result<Option<Vec<Option<StoredChunk>>>>;

    /// Stores chunks given as bytes in the layout's form, each replacing the chunk of its
    /// full grid-cell box, which must lie inside the bounds.
    fn put_stored(&self, chunks: Vec<(Bbox, Bytes)>) -> Result<()>;

    /// The gzip level chunks are compressed with when they come to this volume inflated
    /// (the handle's choice where it has one).
    fn gzip_level(&self) -> GzipLevel {
        GzipLevel::DEFAULT
    }
}

/// A chunk's stored bytes, their form, and where they are stored (for messages).
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// The bytes as stored.
    pub bytes: Bytes,
    /// How they hold the voxels.
    pub form: StoredForm,
    /// The URL of the object holding them.
    pub url: String,
}

/// Copies the chunks of `bbox` (those touching one of `only`'s boxes, when given) from
/// `src` into `dst` as stored bytes, where their layouts agree: same data type, channels and
/// chunk grid, and `bbox` made of whole destination chunks. Chunks `src` lacks are not
/// written (a sparse source stays sparse). Interior chunks move as their bytes (inflated
/// or compressed when the forms differ); edge chunks of either volume are decoded and
/// written through [`Volume::write_from_only`]. Returns `false`, having written nothing,
/// when the volumes do not allow it, or a source chunk is stored in a form `src` cannot
/// describe: the caller then copies by decoding.
pub fn copy_stored(
    dst: &dyn Volume,
    src: &dyn Volume,
    bbox: &Bbox,
    only: Option<&[Bbox]>,
) -> Result<bool> {
    interrupt::begin();
    let (Some(dst_io), Some(src_io)) = (dst.stored(), src.stored()) else {
        return Ok(false);
    };
    let (Some(to), Some(from)) = (dst_io.stored_layout(), src_io.stored_layout()) else {
        return Ok(false);
    };
    let (dst_bounds, src_bounds) = (dst.bounds(), src.bounds());
    let congruent =
        (0..3).all(|d| (to.origin[d] - from.origin[d]).rem_euclid(to.chunk[d] as i64) == 0);
    if dst.dtype() != src.dtype()
        || dst.num_channels() != src.num_channels()
        || to.chunk != from.chunk
        || !congruent
        || !dst_bounds.contains(bbox)
        || !src_bounds.contains(bbox)
    {
        return Ok(false);
    }
    let cells = cells_of(&to, bbox, only);
    // Every destination chunk is copied whole (as far as the destination reaches).
    if cells.iter().any(|c| {
        c.intersect(&dst_bounds)
            .is_none_or(|inside| !bbox.contains(&inside))
    }) {
        return Ok(false);
    }
    // Everything fetched first: a chunk stored otherwise must leave the destination untouched.
    let Some(fetched) = src_io.fetch_stored(&cells)? else {
        return Ok(false);
    };
    if fetched.len() != cells.len() {
        return Err(Error::internal(format!(
            "{}: {} stored chunks fetched for {} cells",
            src.url(),
            fetched.len(),
            cells.len()
        )));
    }
    let voxel_bytes = src.dtype().itemsize() * src.num_channels();
    let level = dst_io.gzip_level();
    let (channels, itemsize) = (src.num_channels(), src.dtype().itemsize());
    let present: Vec<(Bbox, StoredChunk)> = cells
        .into_iter()
        .zip(fetched)
        .filter_map(|(cell, chunk)| chunk.map(|c| (cell, c)))
        .collect();
    // Each chunk checked, and made into the destination's form: stored bytes for an interior
    // chunk, decoded voxels (of the part inside both volumes) for an edge one.
    enum Made {
        Stored(Bbox, Bytes),
        Decoded(Bbox, Vec<u8>),
    }
    let made: Vec<Made> = interrupt::install(&runtime::cpu(), |cancel| {
        present
            .into_par_iter()
            .map(|(cell, chunk)| {
                let StoredChunk { bytes, form, url } = chunk;
                interrupt::cancelled(cancel)?;
                // The box the source stored: the whole cell, or its part inside the bounds.
                let held = if from.padded || src_bounds.contains(&cell) {
                    cell
                } else {
                    cell.intersect(&src_bounds).unwrap_or(cell)
                };
                let len = held.num_voxels().unwrap_or(0) * voxel_bytes;
                let interior = src_bounds.contains(&cell) && dst_bounds.contains(&cell);
                if interior && form == to.form {
                    check(&url, &bytes, form, len)?;
                    return Ok(Made::Stored(cell, bytes));
                }
                let voxels = inflate(&url, &bytes, form, len)?;
                if interior {
                    let stored = match to.form {
                        StoredForm::Raw => Bytes::from(voxels),
                        StoredForm::Gzip => {
                            Bytes::from(Compression::Gzip.compress_at(&voxels, level)?)
                        }
                    };
                    return Ok(Made::Stored(cell, stored));
                }
                // What the copy writes of the cell: its part inside `bbox` (so inside both
                // volumes; never a padded source's fill beyond its bounds).
                let part = cell.intersect(bbox).unwrap_or(held);
                let copy = BoxCopy::new(&held, &part, &part, channels, itemsize);
                let mut out = vec![0; copy.dst_len()];
                copy.copy(&voxels, &mut out);
                Ok(Made::Decoded(part, out))
            })
            .collect::<Result<_>>()
    })?;
    let mut stored = Vec::new();
    for m in made {
        match m {
            Made::Stored(cell, bytes) => stored.push((cell, bytes)),
            Made::Decoded(part, voxels) => dst.write_from_only(&part, &voxels, None)?,
        }
    }
    dst_io.put_stored(stored)?;
    Ok(true)
}

/// The full boxes of the grid cells of `layout` that `bbox` touches, only those touching one
/// of `only`'s boxes when given.
fn cells_of(layout: &StoredLayout, bbox: &Bbox, only: Option<&[Bbox]>) -> Vec<Bbox> {
    let range = |d: usize| {
        let c = layout.chunk[d] as i64;
        let lo = (bbox.start[d] - layout.origin[d]).div_euclid(c);
        let hi = (bbox.stop[d] - layout.origin[d] + c - 1).div_euclid(c);
        lo..hi
    };
    let mut cells = Vec::new();
    for z in range(2) {
        for y in range(1) {
            for x in range(0) {
                let g = [x, y, z];
                let start: [i64; 3] =
                    std::array::from_fn(|d| layout.origin[d] + g[d] * layout.chunk[d] as i64);
                let stop = std::array::from_fn(|d| start[d] + layout.chunk[d] as i64);
                let cell = Bbox { start, stop };
                let wanted =
                    only.is_none_or(|boxes| boxes.iter().any(|b| b.intersect(&cell).is_some()));
                if wanted {
                    cells.push(cell);
                }
            }
        }
    }
    cells
}

/// Checks that `bytes` (in `form`) hold `len` bytes of voxels.
fn check(url: &str, bytes: &[u8], form: StoredForm, len: usize) -> Result<()> {
    match form {
        StoredForm::Raw if bytes.len() == len => Ok(()),
        StoredForm::Raw => Err(Error::decode(
            url,
            format!("{} bytes stored, {len} expected", bytes.len()),
        )),
        StoredForm::Gzip => inflate(url, bytes, form, len).map(drop),
    }
}

/// The `len` bytes of voxels `bytes` (in `form`) hold.
fn inflate(url: &str, bytes: &[u8], form: StoredForm, len: usize) -> Result<Vec<u8>> {
    if form == StoredForm::Raw {
        check(url, bytes, form, len)?;
        return Ok(bytes.to_vec());
    }
    // One byte more than expected, so a stream that inflates past `len` is caught.
    let mut out = vec![0; len + 1];
    let n = transport::decompress_into(Compression::Gzip, bytes, &mut out)
        .map_err(|e| Error::decode(url, e))?;
    if n != len {
        return Err(Error::decode(
            url,
            format!("gzip stream inflates to {n} bytes or more, {len} expected"),
        ));
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(start: [i64; 3], stop: [i64; 3]) -> Bbox {
        Bbox { start, stop }
    }

    #[test]
    fn cells_are_the_full_grid_boxes_a_box_touches() {
        let layout = StoredLayout {
            origin: [16, 0, 8],
            chunk: [16, 16, 8],
            form: StoredForm::Raw,
            padded: false,
        };
        // Full boxes, not clipped to `bbox`: the last x cell reaches past it.
        let cells = cells_of(&layout, &bbox([16, 0, 8], [40, 16, 16]), None);
        assert_eq!(
            cells,
            vec![
                bbox([16, 0, 8], [32, 16, 16]),
                bbox([32, 0, 8], [48, 16, 16])
            ]
        );
        // A box below the origin still finds its cells (the grid extends both ways).
        let below = cells_of(&layout, &bbox([0, 0, 0], [16, 16, 8]), None);
        assert_eq!(below, vec![bbox([0, 0, 0], [16, 16, 8])]);
        let only = [bbox([40, 1, 9], [41, 2, 10])];
        let some = cells_of(&layout, &bbox([16, 0, 8], [48, 16, 16]), Some(&only));
        assert_eq!(some, vec![bbox([32, 0, 8], [48, 16, 16])]);
    }

    #[test]
    fn gzip_chunks_are_checked_by_their_inflated_length() {
        let voxels = vec![7u8; 64];
        let gz = Compression::Gzip.compress(&voxels).unwrap();
        assert_eq!(inflate("k", &gz, StoredForm::Gzip, 64).unwrap(), voxels);
        assert!(check("k", &gz, StoredForm::Gzip, 64).is_ok());
        for wrong in [63, 65] {
            let e = check("k", &gz, StoredForm::Gzip, wrong).unwrap_err();
            assert!(
                matches!(e, Error::ChunkDecode { ref key, .. } if key == "k"),
                "{e}"
            );
        }
        assert!(check("k", &gz[..gz.len() - 4], StoredForm::Gzip, 64).is_err());
        assert!(check("k", &voxels, StoredForm::Raw, 64).is_ok());
        assert!(check("k", &voxels[1..], StoredForm::Raw, 64).is_err());
    }
}
