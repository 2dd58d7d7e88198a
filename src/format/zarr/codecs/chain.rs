//! [`CodecChain`]: a validated codec list (array-to-array codecs, exactly one array-to-bytes
//! codec, bytes-to-bytes codecs) and the decode and encode passes through it.
//!
//! Decoding avoids chunk-sized temporaries where the chain allows: a compressor directly
//! above the array-to-bytes codec inflates straight into the caller's buffer, checksums are
//! checked and stripped without copying, big-endian data is swapped in place, and
//! consecutive transposes compose into one tiled copy.

use std::borrow::Cow;
use std::io::Read;

use super::blosc::Blosc;
use super::bytes::Bytes;
use super::gzip::Gzip;
use super::lz4::Lz4;
use super::sharding::ShardingCodec;
use super::transpose::{inverse, Transpose};
use super::zlib::Zlib;
use super::zstd::Zstd;
use super::{crc32c, nd, ChunkRepr, CodecError, CodecSpec};
use crate::codec::scratch;
use crate::error::{Error, Result};

/// A bytes-to-bytes codec that compresses.
pub(super) trait Compressor: Send + Sync + std::fmt::Debug {
    /// The codec as zarr-python writes it.
    fn spec(&self) -> CodecSpec;
    /// Decompresses into exactly `out`: more or fewer bytes are an error, and decompression
    /// stops at the end of `out`.
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError>;
    /// Decompresses data of unknown size, failing past `limit` bytes.
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError>;
    /// Compresses.
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>>;
}

/// Reads a decompressing stream to its end, failing past `limit` bytes.
pub(super) fn read_bounded(
    codec: &'static str,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::new(codec, format!("corrupt {codec} data: {e}")))?;
    if out.len() > limit {
        return Err(CodecError::new(
            codec,
            format!("decompresses past the {limit} bytes expected at most"),
        ));
    }
    Ok(out)
}

/// The array-to-bytes codec.
#[derive(Debug)]
enum ArrayToBytes {
    Bytes(Bytes),
    Sharding(Box<ShardingCodec>),
}

/// A bytes-to-bytes codec.
#[derive(Debug)]
enum BytesToBytes {
    Crc32c,
    Compress(Box<dyn Compressor>),
}

/// A validated codec chain for chunks of one shape and data type.
#[derive(Debug)]
pub struct CodecChain {
    transposes: Vec<Transpose>,
    /// The transposes composed: the stored array's axis `i` is the chunk's axis `perm[i]`;
    /// `None` when that is the identity.
    perm: Option<Vec<usize>>,
    array_to_bytes: ArrayToBytes,
    bytes_to_bytes: Vec<BytesToBytes>,
    rank: usize,
}

/// Encoded bytes allowed for a chunk whose encoded size is not fixed (a shard, or data
/// below two compressors): twice the decoded size plus 1 MiB, far above what any codec adds,
/// so that a decompression bomb stops there.
fn unknown_limit(decoded: usize) -> usize {
    decoded.saturating_mul(2).saturating_add(1 << 20)
}

impl CodecChain {
    /// Validates the chain (order of kinds, exactly one array->bytes codec, configurations,
    /// transpose order a permutation of the rank, sharding inner shape dividing the chunk
    /// shape, ...). Unknown codec names or bad configurations -> InvalidArgument naming the
    /// codec and field.
    pub fn new(specs: &[CodecSpec], repr: &ChunkRepr) -> Result<Self> {
        let rank = repr.shape.len();
        if repr.fill_value.len() != repr.dtype.itemsize() {
            return Err(Error::invalid(format!(
                "fill value of {} bytes for data type {} of {} bytes",
                repr.fill_value.len(),
                repr.dtype,
                repr.dtype.itemsize()
            )));
        }
        let mut transposes = Vec::new();
        let mut array_to_bytes = None;
        let mut bytes_to_bytes = Vec::new();
        let mut shape = repr.shape.clone();
        for (i, spec) in specs.iter().enumerate() {
            let misplaced = |kind: &str| {
                Error::invalid(format!(
                    "codec {:?} (number {} in the chain) is {kind} and cannot come {}",
                    spec.name,
                    i + 1,
                    if array_to_bytes.is_some() {
                        "after the array-to-bytes codec"
                    } else {
                        "before the array-to-bytes codec"
                    }
                ))
            };
            match spec.name.as_str() {
                "transpose" => {
                    if array_to_bytes.is_some() {
                        return Err(misplaced("array-to-array"));
                    }
                    let t = Transpose::parse(spec, rank)?;
                    shape = t.order.iter().map(|&a| shape[a]).collect();
                    transposes.push(t);
                }
                "bytes" | "sharding_indexed" => {
                    if array_to_bytes.is_some() {
                        return Err(Error::invalid(format!(
                            "codec {:?} (number {}): a chain has exactly one array-to-bytes codec",
                            spec.name,
                            i + 1
                        )));
                    }
                    let inner = repr.with_shape(shape.clone());
                    array_to_bytes = Some(if spec.name == "bytes" {
                        ArrayToBytes::Bytes(Bytes::parse(spec, repr.dtype)?)
                    } else {
                        ArrayToBytes::Sharding(Box::new(ShardingCodec::parse(spec, &inner)?))
                    });
                }
                name => {
                    let c = match name {
                        "crc32c" => BytesToBytes::Crc32c,
                        "gzip" => BytesToBytes::Compress(Box::new(Gzip::parse(spec)?)),
                        "zlib" => BytesToBytes::Compress(Box::new(Zlib::parse(spec)?)),
                        "zstd" => BytesToBytes::Compress(Box::new(Zstd::parse(spec)?)),
                        "lz4" => BytesToBytes::Compress(Box::new(Lz4::parse(spec)?)),
                        "blosc" => BytesToBytes::Compress(Box::new(Blosc::parse(
                            spec,
                            repr.dtype.itemsize(),
                        )?)),
                        _ => {
                            return Err(Error::invalid(format!(
                                "unknown codec {name:?}: supported are bytes, transpose, \
                                 sharding_indexed, gzip, zlib, zstd, blosc, lz4, crc32c"
                            )))
                        }
                    };
                    if array_to_bytes.is_none() {
                        return Err(misplaced("bytes-to-bytes"));
                    }
                    bytes_to_bytes.push(c);
                }
            }
        }
        let array_to_bytes = array_to_bytes.ok_or_else(|| {
            Error::invalid(
                "the codec chain has no array-to-bytes codec (\"bytes\" or \"sharding_indexed\")",
            )
        })?;
        let mut perm: Vec<usize> = (0..rank).collect();
        for t in &transposes {
            perm = t.order.iter().map(|&a| perm[a]).collect();
        }
        let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
        Ok(CodecChain {
            transposes,
            perm: (!identity).then_some(perm),
            array_to_bytes,
            bytes_to_bytes,
            rank,
        })
    }

    /// The codecs as zarr-python writes them (defaults filled in), for metadata.
    pub fn specs(&self) -> Vec<CodecSpec> {
        let mut out: Vec<CodecSpec> = self.transposes.iter().map(Transpose::spec).collect();
        out.push(match &self.array_to_bytes {
            ArrayToBytes::Bytes(b) => b.spec(),
            ArrayToBytes::Sharding(s) => s.spec(),
        });
        out.extend(self.bytes_to_bytes.iter().map(|c| match c {
            BytesToBytes::Crc32c => crc32c::spec(),
            BytesToBytes::Compress(c) => c.spec(),
        }));
        out
    }

    /// The sharding codec when the chain is exactly one `sharding_indexed` codec (the array's
    /// chunks are shards that the engine reads inner chunk by inner chunk).
    pub fn sharding(&self) -> Option<&ShardingCodec> {
        match &self.array_to_bytes {
            ArrayToBytes::Sharding(s) if self.perm.is_none() && self.bytes_to_bytes.is_empty() => {
                Some(s)
            }
            _ => None,
        }
    }

    /// The encoded size of every chunk when it is fixed (no compressor, no sharding): what
    /// shard indexes need.
    pub(super) fn fixed_encoded_len(&self, decoded: usize) -> Option<usize> {
        if !matches!(self.array_to_bytes, ArrayToBytes::Bytes(_)) {
            return None;
        }
        self.bytes_to_bytes
            .iter()
            .try_fold(decoded, |n, c| match c {
                BytesToBytes::Crc32c => n.checked_add(crc32c::LEN),
                BytesToBytes::Compress(_) => None,
            })
    }

    /// `repr`'s decoded size, checked against the chain's rank and `out`.
    fn check_repr(&self, repr: &ChunkRepr, len: usize) -> Result<(), CodecError> {
        if repr.shape.len() != self.rank {
            return Err(CodecError::new(
                "chain",
                format!(
                    "a chunk of rank {} for a chain built for rank {}",
                    repr.shape.len(),
                    self.rank
                ),
            ));
        }
        match repr.byte_len() {
            Some(n) if n == len => Ok(()),
            n => Err(CodecError::new(
                "chain",
                format!(
                    "the output holds {len} bytes, the chunk {:?} of {} needs {n:?}",
                    repr.shape, repr.dtype
                ),
            )),
        }
    }

    /// Decodes one stored chunk into `out`: exactly the chunk's C-ordered elements in
    /// little-endian bytes, `out.len() == product(shape) * itemsize`. Decodes straight into
    /// `out` wherever the chain allows (bytes LE + gzip/zstd/blosc without transpose
    /// allocate no chunk-sized temporary). A decoded size other than expected is an error
    /// (decompression stops at the expected size, never allocating beyond it).
    pub fn decode_into(
        &self,
        encoded: &[u8],
        repr: &ChunkRepr,
        out: &mut [u8],
    ) -> Result<(), CodecError> {
        self.check_repr(repr, out.len())?;
        let Some(perm) = &self.perm else {
            return self.decode_array(encoded, repr, out);
        };
        let stored_shape: Vec<u64> = perm.iter().map(|&a| repr.shape[a]).collect();
        let stored = repr.with_shape(stored_shape);
        scratch::with_decoded(out.len(), |tmp| {
            self.decode_array(encoded, &stored, tmp)?;
            let shape = usize_shape(&stored.shape)?;
            nd::permute(tmp, &shape, &inverse(perm), repr.dtype.itemsize(), out);
            Ok(())
        })
    }

    /// The stored bytes themselves when they already are the decoded chunk of `len` bytes:
    /// no transpose, no bytes-to-bytes codec and a `bytes` codec that swaps nothing. A read
    /// then copies them straight into its output instead of through a decode buffer.
    pub fn decoded_as_stored<'a>(&self, encoded: &'a [u8], len: usize) -> Option<&'a [u8]> {
        (self.stored_as_decoded() && encoded.len() == len).then_some(encoded)
    }

    /// Whether every stored chunk is its decoded bytes as they are (see
    /// [`CodecChain::decoded_as_stored`]): parts of a chunk can then be read in place.
    pub fn stored_as_decoded(&self) -> bool {
        let plain = match &self.array_to_bytes {
            ArrayToBytes::Bytes(b) => !b.swaps(),
            ArrayToBytes::Sharding(_) => false,
        };
        plain && self.perm.is_none() && self.bytes_to_bytes.is_empty()
    }

    /// Decodes one stored chunk into a new buffer.
    pub fn decode(&self, encoded: &[u8], repr: &ChunkRepr) -> Result<Vec<u8>, CodecError> {
        let len = repr
            .byte_len()
            .ok_or_else(|| CodecError::new("chain", "the chunk's size overflows"))?;
        let mut out = vec![0u8; len];
        self.decode_into(encoded, repr, &mut out)?;
        Ok(out)
    }

    /// Runs the bytes-to-bytes codecs backwards, then the array-to-bytes codec, into
    /// `target` (the stored, possibly transposed, array of shape `repr.shape`).
    fn decode_array(
        &self,
        encoded: &[u8],
        repr: &ChunkRepr,
        target: &mut [u8],
    ) -> Result<(), CodecError> {
        let mut cur: Cow<[u8]> = Cow::Borrowed(encoded);
        let mut in_target = false;
        // The encoded size of the array-to-bytes codec's output, when fixed.
        let base = match self.array_to_bytes {
            ArrayToBytes::Bytes(_) => Some(target.len()),
            ArrayToBytes::Sharding(_) => None,
        };
        for (i, codec) in self.bytes_to_bytes.iter().enumerate().rev() {
            match codec {
                BytesToBytes::Crc32c => {
                    cur = match cur {
                        Cow::Borrowed(b) => Cow::Borrowed(crc32c::check(b)?),
                        Cow::Owned(mut v) => {
                            let n = crc32c::check(&v)?.len();
                            v.truncate(n);
                            Cow::Owned(v)
                        }
                    };
                }
                BytesToBytes::Compress(c) => {
                    // The size this codec decodes to: the array-to-bytes output plus the
                    // checksums below it, unless another compressor sits below.
                    let below = base.and_then(|n| {
                        self.bytes_to_bytes[..i].iter().try_fold(n, |n, c| match c {
                            BytesToBytes::Crc32c => n.checked_add(crc32c::LEN),
                            BytesToBytes::Compress(_) => None,
                        })
                    });
                    if i == 0 && base.is_some() {
                        c.decode_exact(&cur, target)?;
                        in_target = true;
                    } else if let Some(n) = below {
                        let mut v = vec![0u8; n];
                        c.decode_exact(&cur, &mut v)?;
                        cur = Cow::Owned(v);
                    } else {
                        cur = Cow::Owned(c.decode_bounded(&cur, unknown_limit(target.len()))?);
                    }
                }
            }
        }
        match &self.array_to_bytes {
            ArrayToBytes::Bytes(b) if in_target => {
                b.decode_in_place(target);
                Ok(())
            }
            ArrayToBytes::Bytes(b) => b.decode_into(&cur, target),
            ArrayToBytes::Sharding(s) => s.decode_shard_into(&cur, repr, target),
        }
    }

    /// Encodes one chunk (its C-ordered little-endian elements).
    pub fn encode(&self, decoded: &[u8], repr: &ChunkRepr) -> Result<Vec<u8>> {
        self.check_repr(repr, decoded.len())
            .map_err(|e| Error::invalid(e.to_string()))?;
        let (data, repr): (Cow<[u8]>, Cow<ChunkRepr>) = match &self.perm {
            None => (Cow::Borrowed(decoded), Cow::Borrowed(repr)),
            Some(perm) => {
                let shape = usize_shape(&repr.shape).map_err(|e| Error::invalid(e.to_string()))?;
                let mut v = vec![0u8; decoded.len()];
                nd::permute(decoded, &shape, perm, repr.dtype.itemsize(), &mut v);
                let stored = perm.iter().map(|&a| repr.shape[a]).collect();
                (Cow::Owned(v), Cow::Owned(repr.with_shape(stored)))
            }
        };
        let mut cur = match &self.array_to_bytes {
            ArrayToBytes::Bytes(b) => b.encode(data),
            ArrayToBytes::Sharding(s) => Cow::Owned(s.encode_array(&data, &repr)?),
        };
        for codec in &self.bytes_to_bytes {
            cur = Cow::Owned(match codec {
                BytesToBytes::Crc32c => {
                    let mut v = cur.into_owned();
                    crc32c::append(&mut v);
                    v
                }
                BytesToBytes::Compress(c) => c.encode(&cur)?,
            });
        }
        Ok(cur.into_owned())
    }
}

/// A shape as `usize`s.
pub(super) fn usize_shape(shape: &[u64]) -> Result<Vec<usize>, CodecError> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| CodecError::new("chain", "shape too large")))
        .collect()
}
