//! Uncompressed chunks of a local array, read in slabs straight where they go. Reading such
//! a chunk whole first costs a chunk-sized buffer (page faults and zeroing of fresh memory
//! for every 32 MiB chunk, and the chunk's bytes crossing main memory twice) for bytes the
//! read only copies on. Instead each chunk is read by positional reads of small slabs: into
//! the output itself where a slab is contiguous there, else into a per-thread buffer that
//! stays in cache for the copy out. The slabs of one chunk are read in parallel, so a read of
//! a single large chunk uses every core too.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::ErrorKind;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;

use super::codecs::CodecError;
use super::read::{Painter, Piece};
use crate::error::{Error, Result};
use crate::format::first_error::FirstError;
use crate::nd::{contiguous_offset, copy_region_to_ptr, NdBox};
use crate::{interrupt, runtime};

/// Bytes one positional read brings in when it goes through the per-thread buffer: small
/// enough to stay in a core's cache between the read and the copy out.
const SLAB_BYTES: usize = 256 << 10;
/// Chunks a read works on at once, per core: enough to keep the cores busy, few enough that
/// an interruption is seen soon.
const CHUNKS_PER_CORE: usize = 2;

thread_local! {
    /// Each pool thread's slab buffer, kept between slabs.
    static SLAB: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Tells the read that one chunk is done when the last of its slab tasks drops it.
struct ChunkDone(Sender<()>);

impl Drop for ChunkDone {
    fn drop(&mut self) {
        // The read stops listening only once every chunk is done or it has failed.
        let _ = self.0.send(());
    }
}

/// A run of a chunk's elements that is contiguous in its file: single indices on the axes
/// before `axis`, a range on `axis`, the whole chunk on the axes after it.
struct Slab {
    /// The slab's box, in array coordinates.
    bbox: NdBox,
    /// Where its bytes start in the file.
    offset: u64,
    /// How many bytes it holds.
    len: usize,
}

/// The slabs covering `needed` (a box inside the chunk `chunk`), each at most
/// [`SLAB_BYTES`] unless one element step of the innermost split axis is larger.
fn slabs(chunk: &NdBox, needed: &NdBox, itemsize: usize) -> Vec<Slab> {
    let n = chunk.ndim();
    // Bytes of one index step on each axis, the later axes whole.
    let mut step = vec![itemsize; n];
    for a in (0..n.saturating_sub(1)).rev() {
        step[a] = step[a + 1].saturating_mul(chunk.shape[a + 1] as usize);
    }
    // The outermost axis whose single index fits a slab: split there.
    let axis = (0..n).find(|&a| step[a] <= SLAB_BYTES).unwrap_or(n - 1);
    let per_slab = (SLAB_BYTES / step[axis]).max(1) as u64;
    let outer: Vec<u64> = needed.shape[..axis].to_vec();
    let mut found = Vec::new();
    let mut index = vec![0u64; axis];
    'outer: loop {
        let lo = needed.start[axis];
        let hi = lo + needed.shape[axis];
        let mut at = lo;
        while at < hi {
            let stop = (at + per_slab).min(hi);
            let start: Vec<u64> = (0..n)
                .map(|a| match a.cmp(&axis) {
                    Ordering::Less => needed.start[a] + index[a],
                    Ordering::Equal => at,
                    Ordering::Greater => chunk.start[a],
                })
                .collect();
            let shape: Vec<u64> = (0..n)
                .map(|a| match a.cmp(&axis) {
                    Ordering::Less => 1,
                    Ordering::Equal => stop - at,
                    Ordering::Greater => chunk.shape[a],
                })
                .collect();
            let offset = (0..n).fold(0u64, |o, a| {
                o * chunk.shape[a] + (start[a] - chunk.start[a])
            }) * itemsize as u64;
            found.push(Slab {
                bbox: NdBox::new(start, shape),
                offset,
                len: (stop - at) as usize * step[axis],
            });
            at = stop;
        }
        // The next combination of single indices on the outer axes, last axis fastest.
        for a in (0..axis).rev() {
            index[a] += 1;
            if index[a] < outer[a] {
                continue 'outer;
            }
            index[a] = 0;
        }
        break;
    }
    found
}

/// Fills `buf` from `file` at `offset`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Painter<'_> {
    /// Reads the chunks `users` names (each with the boxes that want it) from their local
    /// files, a few chunks at a time, checking for interruption while it waits.
    pub(super) fn read_local(&self, users: &BTreeMap<Vec<u64>, Vec<usize>>) -> Result<()> {
        let failure = FirstError::default();
        let (done, finished) = channel();
        let limit = CHUNKS_PER_CORE * runtime::threads();
        runtime::cpu().in_place_scope(|scope| {
            let failure = &failure;
            let mut in_flight = 0;
            for (cell, readers) in users {
                while in_flight >= limit {
                    match finished.recv_timeout(interrupt::POLL) {
                        Ok(()) => in_flight -= 1,
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = interrupt::check() {
                                failure.fail(e);
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => in_flight = 0,
                    }
                    if failure.stopped() {
                        return;
                    }
                }
                in_flight += 1;
                let done = Arc::new(ChunkDone(done.clone()));
                scope.spawn(move |scope| {
                    failure.run(|| self.paint_local(cell, readers, scope, failure, done));
                });
            }
        });
        failure.into_result()
    }

    /// Reads one chunk from its file into the boxes of `readers`, one task per slab.
    fn paint_local<'s>(
        &'s self,
        cell: &[u64],
        readers: &'s [usize],
        scope: &rayon::Scope<'s>,
        failure: &'s FirstError,
        done: Arc<ChunkDone>,
    ) -> Result<()> {
        let a = self.array;
        let chunk = a.grid.chunk_box(cell);
        let Some(inside) = chunk.intersect(self.bounds) else {
            return Ok(());
        };
        let key = a.key_of(cell);
        let url = Arc::new(a.store.url_of(&key));
        let missing = Piece {
            bbox: chunk.clone(),
            bytes: None,
        };
        let Some(path) = a.store.local_file(&key) else {
            return Err(Error::store(&url, "not a local file"));
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return self.paint(&missing, readers),
            Err(e) => return Err(Error::store_caused(&url, e)),
        };
        let meta = file.metadata().map_err(|e| Error::store_caused(&url, e))?;
        if meta.is_dir() {
            return self.paint(&missing, readers);
        }
        let len = chunk.num_bytes(self.itemsize).unwrap_or(usize::MAX);
        if meta.len() != len as u64 {
            let reason = format!(
                "{} bytes stored, an uncompressed chunk of shape {:?} holds {len}",
                meta.len(),
                chunk.shape
            );
            return Err(a.decode_error(&chunk, CodecError::new("bytes", reason)));
        }
        // The part of the chunk any box wants: the slabs cover only that.
        let mut needed: Option<NdBox> = None;
        for &r in readers {
            if let Some(part) = inside.intersect(&self.targets[r].0) {
                needed = Some(match needed {
                    Some(n) => n.union(&part),
                    None => part,
                });
            }
        }
        let Some(needed) = needed else {
            return Ok(());
        };
        let file = Arc::new(file);
        for slab in slabs(&chunk, &needed, self.itemsize) {
            let (file, done, inside, url) =
                (file.clone(), done.clone(), inside.clone(), url.clone());
            scope.spawn(move |_| {
                failure.run(|| {
                    self.paint_slab(&file, &slab, &inside, readers)
                        .map_err(|e| Error::store_caused(&url, e))
                });
                drop(done);
            });
        }
        Ok(())
    }

    /// Reads one slab into the boxes of `readers`: straight into the output where it is
    /// contiguous in one initialised buffer, else through the per-thread slab buffer.
    fn paint_slab(
        &self,
        file: &File,
        slab: &Slab,
        inside: &NdBox,
        readers: &[usize],
    ) -> std::io::Result<()> {
        if let [r] = readers {
            let (region, out) = &self.targets[*r];
            if out.zeroed && inside.contains(&slab.bbox) && region.contains(&slab.bbox) {
                if let Some(at) = contiguous_offset(region, &slab.bbox, self.itemsize) {
                    // SAFETY: `at + len` lies inside the buffer (the slab lies in the region
                    // and is contiguous there), which is initialised (zeroed) and written by
                    // this task alone for the slab's bytes.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(at), slab.len) };
                    return read_exact_at(file, dst, slab.offset);
                }
            }
        }
        SLAB.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < slab.len {
                buf.resize(slab.len, 0);
            }
            let bytes = &mut buf[..slab.len];
            read_exact_at(file, bytes, slab.offset)?;
            for &r in readers {
                let (region, out) = &self.targets[r];
                let part = slab
                    .bbox
                    .intersect(inside)
                    .and_then(|p| p.intersect(region));
                if let Some(part) = part {
                    // SAFETY: see `OutBuffer`: this task alone writes this slab's part of the
                    // buffer, which the read keeps valid; `part` lies in both boxes.
                    unsafe {
                        copy_region_to_ptr(bytes, &slab.bbox, out.ptr, region, &part, self.itemsize)
                    };
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabs_tile_the_needed_box_in_file_order() {
        let chunk = NdBox::new(vec![10, 0, 0], vec![4, 300, 500]);
        let needed = NdBox::new(vec![11, 5, 0], vec![2, 200, 500]);
        let itemsize = 2;
        let found = slabs(&chunk, &needed, itemsize);
        // 500 elements of 2 bytes per row: 262 rows fit a slab; rows 5..205 of planes 11, 12.
        assert_eq!(found.len(), 2);
        for (k, s) in found.iter().enumerate() {
            assert_eq!(s.bbox.start, vec![11 + k as u64, 5, 0]);
            assert_eq!(s.bbox.shape, vec![1, 200, 500]);
            assert_eq!(s.len, 200 * 500 * 2);
            assert_eq!(s.offset, ((1 + k as u64) * 300 * 500 + 5 * 500) * 2);
        }
        // Whole planes fit: several planes per slab, the last one short.
        let small = NdBox::new(vec![0, 0, 0], vec![9, 64, 64]);
        let found = slabs(&small, &small, 4);
        let planes: Vec<u64> = found.iter().map(|s| s.bbox.shape[0]).collect();
        assert_eq!(planes, vec![9]);
        let found = slabs(&small, &small, 8);
        assert_eq!(found.iter().map(|s| s.bbox.shape[0]).sum::<u64>(), 9);
        assert!(found.iter().all(|s| s.len <= SLAB_BYTES));
        // Rows longer than a slab are split along themselves.
        let wide = NdBox::new(vec![0, 0], vec![2, 1 << 20]);
        let found = slabs(&wide, &wide, 1);
        assert_eq!(found.len(), 8);
        assert_eq!(found[1].offset, SLAB_BYTES as u64);
        assert_eq!(found[4].bbox.start, vec![1, 0]);
    }
}
