//! The `sharding` object of a scale: the hash that sends a chunk id to a shard and
//! minishard, and chunk ids themselves (compressed Morton codes of grid cells).

use serde_json::{json, Value};

use super::{Encoding, ENTRY};
use crate::codec::Compression;
use crate::geometry::ChunkGrid;

/// "auto" sharding: a shard holds the largest power-of-two block of chunks whose
/// uncompressed size stays at or below this.
pub const AUTO_SHARD_BYTES: u64 = 256 << 20;
/// Above this many minishard bits the shard index alone (16 bytes per minishard) would be
/// 64 GiB: such a spec is refused when read.
const MAX_MINISHARD_BITS: u32 = 32;
/// "auto" sharding: at most this many minishards per shard (a 1 KiB shard index).
const AUTO_MINISHARD_BITS: u32 = 6;

/// The hash applied to `chunk_id >> preshift_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardHash {
    /// `identity`: the value itself.
    Identity,
    /// `murmurhash3_x86_128`: the low 64 bits of MurmurHash3 x86 128 (seed 0).
    Murmur,
}

/// A scale's `sharding` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingSpec {
    /// Low bits of the chunk id dropped before hashing, so neighbours share a minishard.
    pub preshift_bits: u32,
    /// The hash applied to the shifted id.
    pub hash: ShardHash,
    /// Bits of the hash that pick the minishard within a shard.
    pub minishard_bits: u32,
    /// Bits of the hash, above the minishard bits, that pick the shard.
    pub shard_bits: u32,
    /// Whether minishard indexes are gzipped (`minishard_index_encoding`).
    pub minishard_index_gzip: bool,
    /// Whether each chunk is gzipped (`data_encoding`).
    pub data_gzip: bool,
}

impl ShardingSpec {
    /// Parses a `sharding` object. Errors are `(field, reason)`, the field relative to the
    /// sharding object.
    pub fn parse(v: &Value) -> std::result::Result<Self, (String, String)> {
        let err = |f: &str, r: &str| (f.to_string(), r.to_string());
        let o = v.as_object().ok_or_else(|| err("", "not an object"))?;
        match o.get("@type").and_then(Value::as_str) {
            Some("neuroglancer_uint64_sharded_v1") => {}
            _ => {
                return Err(err(
                    "@type",
                    "not \"neuroglancer_uint64_sharded_v1\" (the only sharding this reads)",
                ))
            }
        }
        let bits = |f: &str| -> std::result::Result<u32, (String, String)> {
            o.get(f)
                .and_then(Value::as_u64)
                .filter(|&n| n <= 64)
                .map(|n| n as u32)
                .ok_or_else(|| err(f, "missing or not an integer in 0..=64"))
        };
        let preshift_bits = bits("preshift_bits")?;
        let minishard_bits = bits("minishard_bits")?;
        let shard_bits = bits("shard_bits")?;
        if minishard_bits > MAX_MINISHARD_BITS {
            return Err(err(
                "minishard_bits",
                "above 32 (the shard index alone would exceed 64 GiB)",
            ));
        }
        if minishard_bits + shard_bits > 64 {
            return Err(err("shard_bits", "minishard_bits + shard_bits exceeds 64"));
        }
        let hash = match o.get("hash").and_then(Value::as_str) {
            Some("identity") => ShardHash::Identity,
            Some("murmurhash3_x86_128") => ShardHash::Murmur,
            _ => return Err(err("hash", "not \"identity\" or \"murmurhash3_x86_128\"")),
        };
        let gzip = |f: &str| match o.get(f) {
            None | Some(Value::Null) => Ok(false),
            Some(v) => match v.as_str() {
                Some("raw") => Ok(false),
                Some("gzip") => Ok(true),
                _ => Err(err(f, "not \"raw\" or \"gzip\"")),
            },
        };
        Ok(ShardingSpec {
            preshift_bits,
            hash,
            minishard_bits,
            shard_bits,
            minishard_index_gzip: gzip("minishard_index_encoding")?,
            data_gzip: gzip("data_encoding")?,
        })
    }

    /// The `sharding` object as stored in `info`.
    pub fn to_json(&self) -> Value {
        let enc = |gzip: bool| if gzip { "gzip" } else { "raw" };
        json!({
            "@type": "neuroglancer_uint64_sharded_v1",
            "preshift_bits": self.preshift_bits,
            "hash": match self.hash {
                ShardHash::Identity => "identity",
                ShardHash::Murmur => "murmurhash3_x86_128",
            },
            "minishard_bits": self.minishard_bits,
            "shard_bits": self.shard_bits,
            "minishard_index_encoding": enc(self.minishard_index_gzip),
            "data_encoding": enc(self.data_gzip),
        })
    }

    /// The "auto" parameters for a scale: identity hash, so a shard is a rectangular block
    /// of `2^k` chunks, `k` the largest with `2^k * chunk_bytes <= AUTO_SHARD_BYTES` (and no
    /// more than the grid holds). Up to 64 minishards per shard, consecutive Morton runs of
    /// chunks sharing one; gzip data except for jpeg and png (as CloudVolume picks), gzip
    /// minishard indexes. `None` when the grid needs more than 64 Morton bits.
    pub fn auto(grid: &ChunkGrid, chunk_bytes: u64, encoding: &Encoding) -> Option<Self> {
        let total: u32 = morton_bits(grid)?.iter().sum();
        let mut k = 0;
        while k < total && chunk_bytes.saturating_mul(1 << (k + 1)) <= AUTO_SHARD_BYTES {
            k += 1;
        }
        let minishard_bits = k.min(AUTO_MINISHARD_BITS);
        Some(ShardingSpec {
            preshift_bits: k - minishard_bits,
            hash: ShardHash::Identity,
            minishard_bits,
            shard_bits: total - k,
            minishard_index_gzip: true,
            data_gzip: encoding.codec().gzip_in_shards(),
        })
    }

    /// The transport compression each chunk carries inside a shard.
    pub fn data_compression(&self) -> Compression {
        if self.data_gzip {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// `(shard, minishard)` of a chunk id.
    pub fn locate(&self, chunk_id: u64) -> (u64, u64) {
        let shifted = chunk_id.checked_shr(self.preshift_bits).unwrap_or(0);
        let h = match self.hash {
            ShardHash::Identity => shifted,
            ShardHash::Murmur => murmur_low64(shifted),
        };
        let minishard = h & low_mask(self.minishard_bits);
        let shard = h.checked_shr(self.minishard_bits).unwrap_or(0) & low_mask(self.shard_bits);
        (shard, minishard)
    }

    /// The file name of a shard: lowercase hex, `ceil(shard_bits / 4)` digits, `.shard`.
    pub fn shard_name(&self, shard: u64) -> String {
        let width = self.shard_bits.div_ceil(4) as usize;
        format!("{shard:0width$x}.shard")
    }

    /// Bytes of the shard index at the start of every shard file.
    pub fn index_len(&self) -> u64 {
        ENTRY << self.minishard_bits
    }

    /// Whether shards are rectangular blocks of the grid (identity hash, and every Morton bit
    /// of the grid falls in `preshift + minishard + shard`), and if so the per-axis number of
    /// grid bits inside one shard.
    pub fn shard_block_bits(&self, grid: &ChunkGrid) -> Option<[u32; 3]> {
        let bits = morton_bits(grid)?;
        let inner = self.preshift_bits + self.minishard_bits;
        if self.hash != ShardHash::Identity || bits.iter().sum::<u32>() > inner + self.shard_bits {
            return None;
        }
        // The low `inner` bits of a compressed Morton code, axis by axis.
        let mut block = [0u32; 3];
        let mut left = inner;
        for i in 0..64 {
            for d in 0..3 {
                if left > 0 && i < bits[d] {
                    block[d] += 1;
                    left -= 1;
                }
            }
        }
        Some(block)
    }
}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// MurmurHash3_x86_128, seed 0, of the 8 little-endian bytes of `x`; the low 64 bits
/// (`out[1] << 32 | out[0]`), as neuroglancer, TensorStore and CloudVolume use it.
pub fn murmur_low64(x: u64) -> u64 {
    let bytes = x.to_le_bytes();
    // Reading from a byte slice cannot fail.
    let h = murmur3::murmur3_x86_128(&mut &bytes[..], 0).unwrap_or(0);
    // The crate returns h4:h3:h2:h1 from high to low, so out[0] = h1, out[1] = h2.
    h as u64
}

/// `ceil(log2(grid_shape[d]))` per axis, or `None` when the sum exceeds 64 (the volume
/// cannot be sharded).
pub fn morton_bits(grid: &ChunkGrid) -> Option<[u32; 3]> {
    let bits = grid.grid_shape().map(|n| {
        if n <= 1 {
            0
        } else {
            64 - (n - 1).leading_zeros()
        }
    });
    (bits.iter().sum::<u32>() <= 64).then_some(bits)
}

/// The compressed Morton code of grid cell `g` given the per-axis bit counts.
pub fn compressed_morton(g: [u64; 3], bits: [u32; 3]) -> u64 {
    let mut out = 0u64;
    let mut j = 0;
    let max = bits.iter().copied().max().unwrap_or(0);
    for i in 0..max {
        for d in 0..3 {
            if i < bits[d] {
                out |= ((g[d] >> i) & 1) << j;
                j += 1;
            }
        }
    }
    out
}
