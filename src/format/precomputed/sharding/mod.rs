//! The sharded precomputed format (`neuroglancer_uint64_sharded_v1`): chunk ids (compressed
//! Morton codes), the hash that sends an id to a shard and minishard, and the byte layout of
//! a shard file (shard index → minishard indexes → chunk data). Reading goes through
//! `ShardReader`, which fetches only the ranges a cutout needs and caches indexes;
//! writing builds whole shard files with [`encode_shard`].
//!
//! Every offset and length read from a shard is checked against the file size before it is
//! used, so a corrupt or hostile shard is a `ChunkDecodeError` naming the file, never a
//! panic or a huge allocation.

mod index;
mod reader;
mod spec;
mod writer;

use super::Encoding;

pub(crate) use index::decode_minishard_index;
pub(crate) use reader::{Located, ShardReader};
pub use spec::AUTO_SHARD_BYTES;
pub use spec::{compressed_morton, morton_bits, murmur_low64, ShardHash, ShardingSpec};
pub use writer::{decode_shard, encode_shard};

/// Bytes of one shard-index entry (two uint64) and of one minishard-index row triple.
const ENTRY: u64 = 16;
const ROW: usize = 24;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::codec::GzipLevel;
    use crate::error::Error;
    use crate::geometry::ChunkGrid;

    #[test]
    fn murmurhash_matches_the_reference_vectors() {
        assert_eq!(murmur_low64(0), 0x4772b084e028ae41);
        assert_eq!(murmur_low64(1), 0xe8bd67d616d4ce9a);
        assert_eq!(murmur_low64(42), 0xc20b94f95119f47a);
    }

    #[test]
    fn compressed_morton_matches_the_reference_vectors() {
        let bits = [4, 2, 1];
        assert_eq!(compressed_morton([1, 0, 0], bits), 1);
        assert_eq!(compressed_morton([0, 1, 0], bits), 2);
        assert_eq!(compressed_morton([2, 0, 1], bits), 0b1100);
        assert_eq!(compressed_morton([2, 3, 0], bits), 0b11010);
        assert_eq!(compressed_morton([9, 2, 1], bits), 0b1010101);
        let grid = ChunkGrid {
            voxel_offset: [0; 3],
            size: [79, 80, 144],
            chunk: [20, 20, 12],
        };
        assert_eq!(morton_bits(&grid), Some([2, 2, 4]));
    }

    fn spec(minishard_bits: u32, gzip: bool) -> ShardingSpec {
        ShardingSpec {
            preshift_bits: 1,
            hash: ShardHash::Murmur,
            minishard_bits,
            shard_bits: 0,
            minishard_index_gzip: gzip,
            data_gzip: false,
        }
    }

    #[test]
    fn shards_round_trip() {
        for gzip in [false, true] {
            let s = spec(2, gzip);
            let chunks: BTreeMap<u64, Bytes> = (0..40u64)
                .map(|id| (id * 3, Bytes::from(vec![id as u8; id as usize + 1])))
                .collect();
            let file = Bytes::from(encode_shard(&s, &chunks, GzipLevel::DEFAULT).unwrap());
            assert_eq!(decode_shard(&s, "f", &file).unwrap(), chunks);
        }
    }

    #[test]
    fn corrupt_shards_are_decode_errors() {
        let s = spec(1, false);
        let chunks: BTreeMap<u64, Bytes> = (0..8u64)
            .map(|id| (id, Bytes::from(vec![1u8; 10])))
            .collect();
        let good = encode_shard(&s, &chunks, GzipLevel::DEFAULT).unwrap();
        let check = |file: Vec<u8>, what: &str| {
            let e = decode_shard(&s, "the/0.shard", &Bytes::from(file)).unwrap_err();
            assert!(matches!(e, Error::ChunkDecode { .. }), "{e}");
            assert!(e.to_string().contains("the/0.shard"), "{e}");
            assert!(e.to_string().contains(what), "{e}: expected {what}");
        };
        // A shard-index entry past the end.
        let mut f = good.clone();
        f[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        check(f, "inside");
        // A minishard index whose length is not a multiple of 24.
        let mut f = good.clone();
        let end = u64::from_le_bytes(f[8..16].try_into().unwrap());
        f[8..16].copy_from_slice(&(end - 1).to_le_bytes());
        check(f, "multiple of 24");
        // A chunk size past the end (the last row of minishard 0's index).
        let mut f = good.clone();
        let end = 32 + u64::from_le_bytes(f[8..16].try_into().unwrap()) as usize;
        f[end - 8..end].copy_from_slice(&(1u64 << 40).to_le_bytes());
        check(f, "past the end");
        // Overlapping chunks: the second chunk's gap goes negative.
        let mut f = good.clone();
        let start = 32 + u64::from_le_bytes(f[0..8].try_into().unwrap()) as usize;
        let n = (end - start) / 24;
        f[start + 8 * (n + 1)..start + 8 * (n + 2)].copy_from_slice(&(-5i64 as u64).to_le_bytes());
        check(f, "overlap");
        check(good[..20].to_vec(), "shorter");
    }

    #[test]
    fn auto_shards_are_blocks_within_the_budget() {
        let grid = ChunkGrid {
            voxel_offset: [0; 3],
            size: [2048, 2048, 1024],
            chunk: [64, 64, 64],
        };
        let s = ShardingSpec::auto(&grid, 64 * 64 * 64, &Encoding::raw()).unwrap();
        // 256 MiB / 256 KiB = 1024 chunks per shard.
        assert_eq!(s.preshift_bits + s.minishard_bits, 10);
        assert_eq!(s.shard_bits, 5 + 5 + 4 - 10);
        assert_eq!(s.shard_block_bits(&grid), Some([4, 3, 3]));
        let small = ChunkGrid {
            voxel_offset: [0; 3],
            size: [100, 100, 100],
            chunk: [64, 64, 64],
        };
        let s = ShardingSpec::auto(&small, 64 * 64 * 64, &Encoding::raw()).unwrap();
        assert_eq!((s.shard_bits, s.preshift_bits + s.minishard_bits), (0, 3));
        assert_eq!(s.shard_name(0), "0.shard");
    }

    #[test]
    fn reader_fetches_chunks_and_misses() {
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://shard-reader", true).unwrap(),
        );
        let s = ShardingSpec {
            shard_bits: 1,
            ..spec(2, true)
        };
        let chunks: BTreeMap<u64, Bytes> = (0..64u64)
            .filter(|id| s.locate(*id).0 == 1 && id % 5 != 0)
            .map(|id| (id, Bytes::from(vec![id as u8; 100 + id as usize])))
            .collect();
        let reader = ShardReader::new(store.clone(), s.clone(), "scale");
        let io = crate::runtime::io();
        io.block_on(store.put(
            &reader.shard_key(1),
            Bytes::from(encode_shard(&s, &chunks, GzipLevel::DEFAULT).unwrap()),
        ))
        .unwrap();
        let ids: Vec<u64> = (0..64u64).filter(|id| s.locate(*id).0 == 1).collect();
        for _ in 0..2 {
            // The second round finds the minishard indexes in the cache.
            let got = io.block_on(reader.read(1, &ids)).unwrap();
            for (id, bytes) in ids.iter().zip(got) {
                assert_eq!(bytes, chunks.get(id).cloned(), "chunk {id}");
            }
        }
        assert!(!reader.cache().minishards.is_empty());
        reader.forget(1);
        assert!(reader.cache().minishards.is_empty());
        // An absent shard: every chunk missing.
        assert_eq!(
            io.block_on(reader.read(0, &[0, 1])).unwrap(),
            vec![None, None]
        );
    }

    #[test]
    fn small_shard_indexes_are_cached_whole_and_large_ones_read_by_entry() {
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://shard-index-sizes", true).unwrap(),
        );
        let io = crate::runtime::io();
        // 2^2 entries (64 bytes) are cached whole; 2^13 (128 KiB) are read entry by entry.
        for minishard_bits in [2, 13] {
            let s = ShardingSpec {
                preshift_bits: 0,
                hash: ShardHash::Identity,
                ..spec(minishard_bits, true)
            };
            let chunks: BTreeMap<u64, Bytes> = (0..40u64)
                .filter(|id| id % 3 != 0)
                .map(|id| (id, Bytes::from(vec![id as u8; 10 + id as usize])))
                .collect();
            let reader = ShardReader::new(store.clone(), s.clone(), &format!("m{minishard_bits}"));
            io.block_on(store.put(
                &reader.shard_key(0),
                Bytes::from(encode_shard(&s, &chunks, GzipLevel::DEFAULT).unwrap()),
            ))
            .unwrap();
            for ids in [vec![1, 2, 3], (0..40).collect::<Vec<u64>>()] {
                let got = io.block_on(reader.read(0, &ids)).unwrap();
                for (id, bytes) in ids.iter().zip(got) {
                    assert_eq!(bytes, chunks.get(id).cloned(), "chunk {id}");
                }
            }
            assert_eq!(reader.cache().shards.contains_key(&0), minishard_bits == 2);
            reader.forget(0);
            assert!(reader.cache().shards.is_empty());
        }
    }

    #[test]
    fn cached_indexes_of_a_rewritten_shard_are_not_used() {
        // Another handle rewrites the shard with one more chunk (id 2) before the chunk this
        // reader cached (id 5): same-sized raw chunks shift, so the cached offsets of id 5
        // would now name id 2's bytes. The version (ETag) check catches it and re-reads them.
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::ObjectStoreBackend::from_url("memory://shard-rewritten", true).unwrap(),
        );
        let s = ShardingSpec {
            preshift_bits: 0,
            hash: ShardHash::Identity,
            ..spec(0, false)
        };
        let chunk = |id: u64| Bytes::from(vec![id as u8; 64]);
        let reader = ShardReader::new(store.clone(), s.clone(), "scale");
        let io = crate::runtime::io();
        let put = |ids: &[u64]| {
            let chunks: BTreeMap<u64, Bytes> = ids.iter().map(|&id| (id, chunk(id))).collect();
            let file = Bytes::from(encode_shard(&s, &chunks, GzipLevel::DEFAULT).unwrap());
            io.block_on(store.put(&reader.shard_key(0), file)).unwrap();
        };
        put(&[1, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5])).unwrap(),
            vec![Some(chunk(5))]
        );
        put(&[1, 2, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5])).unwrap(),
            vec![Some(chunk(5))]
        );
        assert_eq!(
            io.block_on(reader.read(0, &[2])).unwrap(),
            vec![Some(chunk(2))]
        );
        // And with every index cached: the chunk request itself carries the check.
        put(&[0, 1, 2, 5]);
        assert_eq!(
            io.block_on(reader.read(0, &[5, 2])).unwrap(),
            vec![Some(chunk(5)), Some(chunk(2))]
        );
    }
}
