//! Writing: the box is painted into every chunk it touches (over the old voxels of chunks it
//! covers in part), and the chunk source stores them by read-modify-write.

use bytes::Bytes;

use super::BigArray;
use crate::codec::{self, Compression};
use crate::error::{Error, Result};
use crate::geometry::{Bbox, BoxCopy};
use crate::interrupt;
use crate::volume::Volume;

impl BigArray {
    /// [`BigArray::write_from`], writing only the chunks that touch one of the boxes `only`
    /// (all of them with `None`): the others in `bbox` keep what they hold, or stay absent.
    /// Copies use it to leave the chunks a sparse source lacks unwritten.
    pub(super) fn write_box(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        interrupt::begin();
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
        let result = self.write_chunks(bbox, data, only);
        // Whatever happened, the cache must not keep what the store may no longer hold.
        if let Some(cache) = &self.cache {
            for cell in self.scale().grid.chunks_touching(bbox) {
                cache.remove(cell);
            }
        }
        result
    }

    fn write_chunks(&self, bbox: &Bbox, data: &[u8], only: Option<&[Bbox]>) -> Result<()> {
        let cells = self.cells_of(bbox, only);
        let compression = self.compression();
        let encode = |g: [u64; 3], old: Option<(&[u8], Compression)>| {
            let url = self.store.url_of(&self.source.key_of(g));
            let bytes = self.repaint_chunk(g, bbox, data, old, compression, &url)?;
            Ok(Bytes::from(bytes))
        };
        self.source.write(bbox, &cells, &encode)
    }

    /// The stored bytes of chunk `g` once `bbox`'s part of `data` is painted over it: over
    /// `old` (its stored bytes and declared compression) where the box covers the chunk only
    /// in part, else over nothing. Both write paths store this; `url` names the chunk.
    fn repaint_chunk(
        &self,
        g: [u64; 3],
        bbox: &Bbox,
        data: &[u8],
        old: Option<(&[u8], Compression)>,
        compression: Compression,
        url: &str,
    ) -> Result<Vec<u8>> {
        let chunk_box = self.scale().grid.chunk_box(g);
        let Some(region) = chunk_box.intersect(bbox) else {
            unreachable!("chunks_touching returns only overlapping chunks")
        };
        let (channels, itemsize) = (self.num_channels(), self.dtype().itemsize());
        let paint = BoxCopy::new(bbox, &chunk_box, &region, channels, itemsize);
        let layout = self.layout(&chunk_box);
        let encoding = &self.scale().encoding;
        codec::with_scratch(paint.dst_len(), |voxels| {
            if region != chunk_box {
                match old.filter(|(b, _)| !b.is_empty()) {
                    Some((old, declared)) => {
                        codec::decode_as(encoding, url, old, declared, &layout, |v| {
                            voxels.copy_from_slice(v)
                        })?
                    }
                    None => voxels.fill(0),
                }
            }
            paint.copy(data, voxels);
            let level = self.options.gzip_level;
            codec::encode(encoding, voxels, &layout, compression, level).map_err(|e| match e {
                Error::InvalidArgument { reason } => Error::invalid(format!("{url}: {reason}")),
                other => other,
            })
        })
    }
}
