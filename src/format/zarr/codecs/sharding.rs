//! `sharding_indexed`: the array-to-bytes codec that packs a chunk (a shard) as a grid of
//! inner chunks, each encoded by its own chain, plus an index of `(offset, nbytes)` uint64
//! pairs per inner chunk in C order (both `2^64 - 1` for a missing one), itself encoded by
//! `index_codecs` (fixed-size: `bytes` and `crc32c`) and stored at the start or the end.
//! Inner chunks are written in Morton order as zarr-python writes them, so shards match its
//! bytes; readers take any order and any layout the index describes.

use std::ops::Range;

use rayon::prelude::*;
use serde_json::Value;

use super::chain::{usize_shape, CodecChain};
use super::{config, ChunkRepr, CodecError, CodecSpec};
use crate::codec::scratch;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// A missing inner chunk's offset and size.
const MISSING: u64 = u64::MAX;
/// Bytes per index entry before the index codecs.
const ENTRY_LEN: usize = 16;
/// The most inner chunks a shard may have (an index of 2 GiB); more is hostile metadata.
const MAX_INNER_CHUNKS: u64 = 1 << 27;

/// Where a shard keeps its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexLocation {
    /// Before the inner chunks.
    Start,
    /// After the inner chunks (zarr-python's default: one suffix request reads it).
    End,
}

/// The `sharding_indexed` codec: inner chunk shape, inner chain, index chain, location.
#[derive(Debug)]
pub struct ShardingCodec {
    chunk_shape: Vec<u64>,
    inner: CodecChain,
    index: CodecChain,
    location: IndexLocation,
    inner_repr: ChunkRepr,
}

impl ShardingCodec {
    /// Parses the configuration for shards of `repr` (the shard's shape, data type and fill).
    pub(super) fn parse(spec: &CodecSpec, repr: &ChunkRepr) -> Result<Self> {
        let chunk_shape = config::shape(spec, "chunk_shape")?;
        if chunk_shape.len() != repr.shape.len() {
            return Err(config::bad(
                spec,
                "chunk_shape",
                format!(
                    "{chunk_shape:?} has rank {}, the shard {:?} has rank {}",
                    chunk_shape.len(),
                    repr.shape,
                    repr.shape.len()
                ),
            ));
        }
        if chunk_shape.iter().zip(&repr.shape).any(|(c, s)| s % c != 0) {
            return Err(config::bad(
                spec,
                "chunk_shape",
                format!(
                    "{chunk_shape:?} does not divide the shard shape {:?}",
                    repr.shape
                ),
            ));
        }
        let inner_repr = repr.with_shape(chunk_shape.clone());
        let inner = CodecChain::new(&config::codecs(spec, "codecs")?, &inner_repr)
            .map_err(|e| config::bad(spec, "codecs", e))?;
        let location = match config::string(spec, "index_location", Some("end"))? {
            "start" => IndexLocation::Start,
            "end" => IndexLocation::End,
            other => {
                return Err(config::bad(
                    spec,
                    "index_location",
                    format!("is {other:?}, not \"start\" or \"end\""),
                ))
            }
        };
        let per_shard: Vec<u64> = repr
            .shape
            .iter()
            .zip(&chunk_shape)
            .map(|(s, c)| s / c)
            .collect();
        let n = per_shard
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_INNER_CHUNKS)
            .ok_or_else(|| {
                config::bad(
                    spec,
                    "chunk_shape",
                    format!("makes more than {MAX_INNER_CHUNKS} inner chunks per shard"),
                )
            })?;
        let index_repr = index_repr(&per_shard);
        let index = match spec.configuration.get("index_codecs") {
            // zarr-python's default: little-endian bytes and a checksum.
            None | Some(Value::Null) => CodecChain::new(
                &[
                    CodecSpec::new("bytes", [("endian", Value::from("little"))]),
                    CodecSpec::new("crc32c", []),
                ],
                &index_repr,
            )?,
            Some(_) => CodecChain::new(&config::codecs(spec, "index_codecs")?, &index_repr)
                .map_err(|e| config::bad(spec, "index_codecs", e))?,
        };
        if index.fixed_encoded_len(n as usize * ENTRY_LEN).is_none() {
            return Err(config::bad(
                spec,
                "index_codecs",
                "must encode to a fixed size (bytes and crc32c only)",
            ));
        }
        Ok(ShardingCodec {
            chunk_shape,
            inner,
            index,
            location,
            inner_repr,
        })
    }

    /// The codec as zarr-python writes it.
    pub(super) fn spec(&self) -> CodecSpec {
        let list = |c: &CodecChain| Value::from_iter(c.specs().iter().map(CodecSpec::to_json));
        let location = match self.location {
            IndexLocation::Start => "start",
            IndexLocation::End => "end",
        };
        CodecSpec::new(
            "sharding_indexed",
            [
                ("chunk_shape", Value::from(self.chunk_shape.clone())),
                ("codecs", list(&self.inner)),
                ("index_codecs", list(&self.index)),
                ("index_location", Value::from(location)),
            ],
        )
    }

    /// The shape of one inner chunk.
    pub fn inner_chunk_shape(&self) -> &[u64] {
        &self.chunk_shape
    }

    /// The chain each inner chunk goes through.
    pub fn inner(&self) -> &CodecChain {
        &self.inner
    }

    /// What an inner chunk holds (its shape, the array's data type and fill value).
    pub fn inner_repr(&self) -> &ChunkRepr {
        &self.inner_repr
    }

    /// Where shards keep their index.
    pub fn index_location(&self) -> IndexLocation {
        self.location
    }

    /// Inner chunks per shard along each axis, for a shard of `shard_shape`.
    pub fn chunks_per_shard(&self, shard_shape: &[u64]) -> Vec<u64> {
        shard_shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(s, c)| s.div_ceil(*c))
            .collect()
    }

    /// Inner chunks in a shard of `shard_shape`, checked against hostile sizes.
    fn count(&self, shard_shape: &[u64]) -> Result<usize, CodecError> {
        if shard_shape.len() != self.chunk_shape.len()
            || shard_shape
                .iter()
                .zip(&self.chunk_shape)
                .any(|(s, c)| s % c != 0)
        {
            return Err(CodecError::new(
                "sharding_indexed",
                format!(
                    "inner chunks {:?} do not tile the shard {shard_shape:?}",
                    self.chunk_shape
                ),
            ));
        }
        self.chunks_per_shard(shard_shape)
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_INNER_CHUNKS)
            .map(|n| n as usize)
            .ok_or_else(|| CodecError::new("sharding_indexed", "too many inner chunks per shard"))
    }

    /// Encoded index length in bytes (16 bytes per inner chunk, plus what the index codecs
    /// add, e.g. crc32c's 4).
    pub fn index_len(&self, shard_shape: &[u64]) -> u64 {
        let n: u64 = self.chunks_per_shard(shard_shape).iter().product();
        let raw = usize::try_from(n.saturating_mul(ENTRY_LEN as u64)).unwrap_or(usize::MAX);
        self.index
            .fixed_encoded_len(raw)
            .map_or(u64::MAX, |n| n as u64)
    }

    /// Where the index lies in a shard of `shard_len` bytes, `None` when the shard is too
    /// short to hold it.
    pub fn index_range(&self, shard_shape: &[u64], shard_len: u64) -> Option<Range<u64>> {
        let n = self.index_len(shard_shape);
        let start = shard_len.checked_sub(n)?;
        Some(match self.location {
            IndexLocation::Start => 0..n,
            IndexLocation::End => start..shard_len,
        })
    }

    /// Parses an encoded index: one entry per inner chunk in C order, None for missing
    /// (offset and nbytes both 2^64-1). Entries pointing past `shard_len` (when known) are
    /// errors.
    pub fn decode_index(
        &self,
        index: &[u8],
        shard_shape: &[u64],
        shard_len: Option<u64>,
    ) -> Result<Vec<Option<(u64, u64)>>, CodecError> {
        let err = |r: String| CodecError::new("sharding_indexed", r);
        let n = self.count(shard_shape)?;
        let expected = self.index_len(shard_shape);
        if index.len() as u64 != expected {
            return Err(err(format!(
                "the shard index holds {} bytes, expected {expected}",
                index.len()
            )));
        }
        let per_shard = self.chunks_per_shard(shard_shape);
        let raw = self
            .index
            .decode(index, &index_repr(&per_shard))
            .map_err(|e| err(format!("shard index: {e}")))?;
        let mut out = Vec::with_capacity(n);
        for (i, e) in raw.chunks_exact(ENTRY_LEN).enumerate() {
            let mut words = e.chunks_exact(8).map(|w| {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                u64::from_le_bytes(b)
            });
            let (offset, nbytes) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
            if offset == MISSING && nbytes == MISSING {
                out.push(None);
                continue;
            }
            let end = offset.checked_add(nbytes).filter(|&end| end != u64::MAX);
            match (end, shard_len) {
                (None, _) => {
                    return Err(err(format!(
                        "index entry {i} (offset {offset}, {nbytes} bytes) overflows"
                    )))
                }
                (Some(end), Some(len)) if end > len => {
                    return Err(err(format!(
                        "index entry {i} (offset {offset}, {nbytes} bytes) points past the \
                         shard's end ({len} bytes)"
                    )))
                }
                _ => out.push(Some((offset, nbytes))),
            }
        }
        Ok(out)
    }

    /// Builds a whole shard from encoded inner chunks (C order, None = missing), index at
    /// the configured location, chunks in the order zarr-python writes them (Morton order
    /// over the inner-chunk grid), so the bytes are identical to its.
    pub fn encode_shard(&self, inner: &[Option<Vec<u8>>], shard_shape: &[u64]) -> Result<Vec<u8>> {
        let n = self
            .count(shard_shape)
            .map_err(|e| Error::invalid(e.to_string()))?;
        if inner.len() != n {
            return Err(Error::invalid(format!(
                "a shard of {shard_shape:?} has {n} inner chunks, {} given",
                inner.len()
            )));
        }
        let per_shard = self.chunks_per_shard(shard_shape);
        let index_len = self.index_len(shard_shape) as usize;
        let mut entries = vec![(MISSING, MISSING); n];
        let body_len: usize = inner.iter().flatten().map(Vec::len).sum();
        let mut out = Vec::with_capacity(body_len + index_len);
        // With the index first, offsets count its bytes too (zarr-python shifts them).
        if self.location == IndexLocation::Start {
            out.resize(index_len, 0);
        }
        for i in morton_order(&per_shard) {
            // zarr-python leaves empty buffers out of the shard.
            if let Some(chunk) = inner[i].as_ref().filter(|c| !c.is_empty()) {
                entries[i] = (out.len() as u64, chunk.len() as u64);
                out.extend_from_slice(chunk);
            }
        }
        let raw: Vec<u8> = entries
            .iter()
            .flat_map(|&(o, n)| o.to_le_bytes().into_iter().chain(n.to_le_bytes()))
            .collect();
        let index = self.index.encode(&raw, &index_repr(&per_shard))?;
        match self.location {
            IndexLocation::Start => out[..index_len].copy_from_slice(&index),
            IndexLocation::End => out.extend_from_slice(&index),
        }
        Ok(out)
    }

    /// Decodes a whole shard (the chunk `repr`) into `target`, missing inner chunks as the
    /// fill value. Inner chunks that are contiguous in the shard (they span every axis but
    /// the first) decode straight into `target`.
    pub(super) fn decode_shard_into(
        &self,
        shard: &[u8],
        repr: &ChunkRepr,
        target: &mut [u8],
    ) -> Result<(), CodecError> {
        let err = |r: String| CodecError::new("sharding_indexed", r);
        let range = self
            .index_range(&repr.shape, shard.len() as u64)
            .ok_or_else(|| {
                err(format!(
                    "{} bytes is shorter than the shard index ({} bytes)",
                    shard.len(),
                    self.index_len(&repr.shape)
                ))
            })?;
        let index = &shard[range.start as usize..range.end as usize];
        let entries = self.decode_index(index, &repr.shape, Some(shard.len() as u64))?;
        if target.is_empty() {
            return Ok(());
        }
        let per_shard = self.chunks_per_shard(&repr.shape);
        let outer = usize_shape(&repr.shape)?;
        let block = usize_shape(&self.chunk_shape)?;
        let inner_repr = repr.with_shape(self.chunk_shape.clone());
        let Some((&b0, _)) = block.split_first() else {
            // Rank 0: one inner chunk, the whole shard.
            return self.decode_inner(
                shard,
                entries.first().copied().flatten(),
                &inner_repr,
                target,
                &[],
                &[],
                &[],
            );
        };
        // Inner chunks sharing their first coordinate form a contiguous slab of `target`
        // (C order), so slabs decode in parallel without sharing any output byte.
        let mut slab_shape = outer.clone();
        slab_shape[0] = b0;
        let slab_len = slab_shape.iter().product::<usize>() * repr.dtype.itemsize();
        let per_slab: usize = per_shard[1..].iter().map(|&d| d as usize).product();
        target
            .par_chunks_mut(slab_len)
            .zip(entries.par_chunks(per_slab))
            .enumerate()
            .try_for_each(|(c0, (slab, group))| {
                for (j, entry) in group.iter().enumerate() {
                    let mut coords = unravel(j, &per_shard[1..]);
                    coords.insert(0, c0);
                    let mut offset: Vec<usize> =
                        coords.iter().zip(&block).map(|(c, b)| c * b).collect();
                    offset[0] = 0;
                    self.decode_inner(
                        shard,
                        *entry,
                        &inner_repr,
                        slab,
                        &slab_shape,
                        &offset,
                        &coords,
                    )?;
                }
                Ok(())
            })
    }

    /// Decodes one inner chunk (or fills it when missing) into its place at `offset` in
    /// `dst` (shape `dst_shape`), straight into `dst` where the place is contiguous.
    #[allow(clippy::too_many_arguments)]
    fn decode_inner(
        &self,
        shard: &[u8],
        entry: Option<(u64, u64)>,
        inner_repr: &ChunkRepr,
        dst: &mut [u8],
        dst_shape: &[usize],
        offset: &[usize],
        coords: &[usize],
    ) -> Result<(), CodecError> {
        let block = usize_shape(&inner_repr.shape)?;
        let (outer, place) = (
            boxed(&vec![0; dst_shape.len()], dst_shape),
            boxed(offset, &block),
        );
        let Some((o, n)) = entry else {
            crate::nd::fill_region(dst, &outer, &place, &inner_repr.fill_value);
            return Ok(());
        };
        // `decode_index` checked the entry against the shard's length.
        let bytes = &shard[o as usize..(o + n) as usize];
        let wrap = |e: CodecError| {
            CodecError::new("sharding_indexed", format!("inner chunk {coords:?}: {e}"))
        };
        let item = inner_repr.dtype.itemsize();
        let len = block.iter().product::<usize>() * item;
        if let Some(start) = crate::nd::contiguous_offset(&outer, &place, item) {
            let out = &mut dst[start..start + len];
            return self.inner.decode_into(bytes, inner_repr, out).map_err(wrap);
        }
        scratch::with_decoded(len, |tmp| {
            self.inner
                .decode_into(bytes, inner_repr, tmp)
                .map_err(wrap)?;
            crate::nd::copy_region(tmp, &place, dst, &outer, &place, item);
            Ok(())
        })
    }

    /// Encodes a whole shard (the chunk `repr`): inner chunks holding only the fill value are
    /// left out, as zarr-python does by default (`write_empty_chunks=False`).
    pub(super) fn encode_array(&self, data: &[u8], repr: &ChunkRepr) -> Result<Vec<u8>> {
        let bad = |e: CodecError| Error::invalid(e.to_string());
        let n = self.count(&repr.shape).map_err(bad)?;
        let per_shard = self.chunks_per_shard(&repr.shape);
        let outer = usize_shape(&repr.shape).map_err(bad)?;
        let block = usize_shape(&self.chunk_shape).map_err(bad)?;
        let inner_repr = repr.with_shape(self.chunk_shape.clone());
        let item = repr.dtype.itemsize();
        let inner_len = block.iter().product::<usize>() * item;
        let whole = boxed(&vec![0; outer.len()], &outer);
        let contiguous = outer.len() < 2 || outer[1..] == block[1..];
        // Inner chunks encode in parallel, each thread gathering its chunk into its own
        // buffer where the chunk is not contiguous in the shard.
        let chunks = (0..n)
            .into_par_iter()
            .map_init(
                || vec![0u8; if contiguous { 0 } else { inner_len }],
                |tmp, i| {
                    let chunk: &[u8] = if contiguous {
                        &data[i * inner_len..(i + 1) * inner_len]
                    } else {
                        let offset: Vec<usize> = unravel(i, &per_shard)
                            .iter()
                            .zip(&block)
                            .map(|(c, b)| c * b)
                            .collect();
                        let place = boxed(&offset, &block);
                        crate::nd::copy_region(data, &whole, tmp, &place, &place, item);
                        tmp
                    };
                    if inner_repr.is_all_fill(chunk) {
                        Ok(None)
                    } else {
                        self.inner.encode(chunk, &inner_repr).map(Some)
                    }
                },
            )
            .collect::<Result<Vec<_>>>()?;
        self.encode_shard(&chunks, &repr.shape)
    }
}

/// What a shard index decodes to: `per_shard + [2]` uint64s, missing entries all ones.
fn index_repr(per_shard: &[u64]) -> ChunkRepr {
    let mut shape = per_shard.to_vec();
    shape.push(2);
    ChunkRepr {
        shape,
        dtype: DType::U64,
        fill_value: vec![0xff; 8],
    }
}

/// The C-order coordinates of linear index `i` in a grid of `shape`.
/// The box at `start` of `shape` (elements), as `crate::nd` takes it.
fn boxed(start: &[usize], shape: &[usize]) -> crate::nd::NdBox {
    let wide = |v: &[usize]| v.iter().map(|&n| n as u64).collect();
    crate::nd::NdBox::new(wide(start), wide(shape))
}

fn unravel(mut i: usize, shape: &[u64]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for (ax, &d) in shape.iter().enumerate().rev() {
        let d = d as usize;
        out[ax] = i % d;
        i /= d;
    }
    out
}

/// The C-order linear indexes of a grid of `shape` sorted by zarr-python's Morton code:
/// bits interleaved from the lowest, axis 0 first at each level, an axis dropping out once
/// its extent's bits are used.
pub(super) fn morton_order(shape: &[u64]) -> Vec<usize> {
    let bits: Vec<u32> = shape
        .iter()
        .map(|&c| 64 - (c.saturating_sub(1)).leading_zeros())
        .collect();
    let max = bits.iter().copied().max().unwrap_or(0);
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let mut keyed: Vec<(u128, usize)> = (0..n)
        .map(|i| {
            let c = unravel(i, shape);
            let (mut code, mut out_bit) = (0u128, 0);
            for level in 0..max {
                for (ax, &b) in bits.iter().enumerate() {
                    if level < b {
                        code |= (((c[ax] >> level) & 1) as u128) << out_bit;
                        out_bit += 1;
                    }
                }
            }
            (code, i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}
