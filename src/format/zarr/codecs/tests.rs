//! The codec chain against zarr-python's, numcodecs' and TensorStore's bytes (`tests/data/zarr_codecs`),
//! round trips, and hostile input.

use serde_json::{json, Value};

use super::*;

fn repr(shape: &[u64], dtype: DType, fill: &[u8]) -> ChunkRepr {
    ChunkRepr {
        shape: shape.to_vec(),
        dtype,
        fill_value: fill.to_vec(),
    }
}

fn specs(v: Value) -> Vec<CodecSpec> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| CodecSpec::from_json(c).unwrap())
        .collect()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 13) % 251) as u8).collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn peer_chunks_decode_bit_exactly_and_encode_identically() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zarr_codecs");
    if !dir.exists() {
        // The published crate leaves the fixtures out (Cargo.toml `exclude`).
        eprintln!(
            "skipped: {} is not in this copy of the crate",
            dir.display()
        );
        return;
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let mut differ = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape: Vec<u64> = serde_json::from_value(case["shape"].clone()).unwrap();
        let dtype = DType::parse(case["dtype"].as_str().unwrap()).unwrap();
        let r = repr(&shape, dtype, &hex(case["fill_value"].as_str().unwrap()));
        let chain = CodecChain::new(&specs(case["codecs"].clone()), &r)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stored = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let raw = std::fs::read(dir.join(format!("{name}.raw"))).unwrap();
        let got = chain
            .decode(&stored, &r)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == raw, "{name}: decoded bytes differ");
        // What we write is zarr-python's form (TensorStore leaves defaults out).
        if !name.starts_with("v2_") && !name.starts_with("ts_") {
            let written: Vec<Value> = chain.specs().iter().map(CodecSpec::to_json).collect();
            assert_eq!(Value::from(written), case["codecs"], "{name}: specs");
        }
        let ours = chain.encode(&raw, &r).unwrap();
        assert_eq!(chain.decode(&ours, &r).unwrap(), raw, "{name}: round trip");
        if ours != stored {
            differ.push(name.to_string());
        }
    }
    // zlib-rs's deflate matches Python's zlib at level 9 but not at levels 1 and 5 (it
    // matches TensorStore's zlib at 5); lz4_flex is not the LZ4 reference compressor. TensorStore's gzip header names Unix (we write Python's "unknown" OS) and
    // it writes inner chunks in C order where zarr-python (and we) use Morton order.
    // Everything else is byte for byte the peer's.
    assert_eq!(
        differ,
        [
            "gzip_u16",
            "transpose_gzip_u16",
            "v2_zlib_u16",
            "v2_lz4_i32",
            "v2_gzip_u8",
            "ts_gzip_u16",
            "ts_shard_start_u16",
            "ts_shard_end_u16"
        ],
        "encodings that differ from zarr-python's"
    );
}

#[test]
fn every_codec_round_trips_for_every_dtype() {
    let chains = [
        json!([{"name": "bytes", "configuration": {"endian": "little"}}]),
        json!([{"name": "bytes", "configuration": {"endian": "big"}}]),
        json!([{"name": "transpose", "configuration": {"order": [2, 0, 1]}},
               {"name": "bytes", "configuration": {"endian": "big"}},
               {"name": "crc32c"}]),
        json!([{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 3}}]),
        json!([{"name": "bytes"}, {"name": "zlib", "configuration": {"level": 9}}]),
        json!([{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 1, "checksum": true}}]),
        json!([{"name": "bytes"}, {"name": "lz4"}]),
        json!([{"name": "bytes"}, {"name": "blosc", "configuration":
               {"cname": "lz4hc", "clevel": 5, "shuffle": "bitshuffle", "blocksize": 0}}]),
        json!([{"name": "bytes"}, {"name": "crc32c"}, {"name": "zstd"}, {"name": "gzip"}]),
        json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 3, 5],
               "codecs": [{"name": "transpose", "configuration": {"order": [1, 2, 0]}},
                          {"name": "bytes", "configuration": {"endian": "big"}},
                          {"name": "gzip", "configuration": {"level": 1}}],
               "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}],
               "index_location": "start"}}, {"name": "zstd"}]),
    ];
    for chain_json in chains {
        for dtype in DType::ALL {
            let r = repr(&[4, 6, 5], dtype, &vec![0; dtype.itemsize()]);
            let chain = CodecChain::new(&specs(chain_json.clone()), &r)
                .unwrap_or_else(|e| panic!("{chain_json}: {e}"));
            let raw = data(r.byte_len().unwrap());
            let enc = chain.encode(&raw, &r).unwrap();
            assert_eq!(chain.decode(&enc, &r).unwrap(), raw, "{chain_json} {dtype}");
        }
    }
}

#[test]
fn big_endian_swaps_components_of_complex() {
    let r = repr(&[2], DType::C64, &[0; 8]);
    let chain = CodecChain::new(
        &specs(json!([{"name": "bytes", "configuration": {"endian": "big"}}])),
        &r,
    )
    .unwrap();
    let raw = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    let enc = chain.encode(&raw, &r).unwrap();
    assert_eq!(enc, [4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13]);
}

#[test]
fn bad_chains_are_refused_naming_the_codec_and_field() {
    let r = repr(&[4, 4], DType::U16, &[0, 0]);
    let cases = [
        (json!([{"name": "bytes"}, {"name": "snappy"}]), "snappy"),
        (json!([{"name": "gzip"}, {"name": "bytes"}]), "gzip"),
        (json!([{"name": "bytes"}, {"name": "bytes"}]), "exactly one"),
        (
            json!([{"name": "transpose", "configuration": {"order": [0, 0]}}, {"name": "bytes"}]),
            "order",
        ),
        (
            json!([{"name": "transpose", "configuration": {"order": [0, 1, 2]}}, {"name": "bytes"}]),
            "order",
        ),
        (json!([{"name": "crc32c"}]), "crc32c"),
        (json!([]), "array-to-bytes"),
        (
            json!([{"name": "bytes", "configuration": {"endian": "middle"}}]),
            "endian",
        ),
        (
            json!([{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 12}}]),
            "level",
        ),
        (
            json!([{"name": "bytes"}, {"name": "blosc", "configuration": {"shuffle": "twice"}}]),
            "shuffle",
        ),
        (
            json!([{"name": "bytes"}, {"name": "blosc", "configuration": {"cname": "snappy"}}]),
            "cname",
        ),
        (
            json!([{"name": "bytes"}, {"name": "zstd", "configuration": {"checksum": 1}}]),
            "checksum",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [3, 4], "codecs": [{"name": "bytes"}]}}]),
            "chunk_shape",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 0], "codecs": [{"name": "bytes"}]}}]),
            "chunk_shape",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2]}}]),
            "codecs",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2], "codecs": [{"name": "bytes"}], "index_codecs": [{"name": "bytes"}, {"name": "gzip"}]}}]),
            "index_codecs",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2], "codecs": [{"name": "bytes"}], "index_location": "middle"}}]),
            "index_location",
        ),
        (
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2], "codecs": [{"name": "nope"}]}}]),
            "nope",
        ),
    ];
    for (chain, needle) in cases {
        let err = CodecChain::new(&specs(chain.clone()), &r).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{chain}: {err}"
        );
        assert!(err.to_string().contains(needle), "{chain}: {err}");
    }
    let huge = repr(&[1 << 40, 1 << 20], DType::U8, &[0]);
    let chain = json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [1, 1], "codecs": [{"name": "bytes"}]}}]);
    assert!(CodecChain::new(&specs(chain), &huge).is_err());
}

#[test]
fn hostile_bytes_are_errors_never_panics() {
    let r = repr(&[16, 16], DType::U32, &[0; 4]);
    let raw = data(r.byte_len().unwrap());
    for chain_json in [
        json!([{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 5}}]),
        json!([{"name": "bytes"}, {"name": "zlib", "configuration": {"level": 5}}]),
        json!([{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 3, "checksum": true}}]),
        json!([{"name": "bytes"}, {"name": "lz4"}]),
        json!([{"name": "bytes"}, {"name": "blosc", "configuration": {"cname": "zstd"}}]),
        json!([{"name": "bytes"}, {"name": "crc32c"}]),
        json!([{"name": "bytes"}, {"name": "crc32c"}, {"name": "gzip"}]),
        json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [4, 8],
               "codecs": [{"name": "bytes"}, {"name": "zstd"}]}}]),
    ] {
        let chain = CodecChain::new(&specs(chain_json.clone()), &r).unwrap();
        let enc = chain.encode(&raw, &r).unwrap();
        for cut in [0, 1, 3, enc.len() / 2, enc.len() - 1] {
            assert!(
                chain.decode(&enc[..cut], &r).is_err(),
                "{chain_json} cut at {cut}"
            );
        }
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x41;
            if let Ok(v) = chain.decode(&bad, &r) {
                assert_eq!(v.len(), raw.len());
            }
        }
        // A chunk of another size is an error, not a short or long read.
        let other = repr(&[16, 15], DType::U32, &[0; 4]);
        let mut out = vec![0u8; other.byte_len().unwrap()];
        assert!(
            chain.decode_into(&enc, &other, &mut out).is_err(),
            "{chain_json}"
        );
        assert!(
            chain.decode_into(&enc, &r, &mut out).is_err(),
            "{chain_json}"
        );
    }
}

#[test]
fn decompression_bombs_stop_at_the_expected_size() {
    let r = repr(&[8, 8], DType::U8, &[0]);
    let zeros = vec![0u8; 64 << 20];
    for chain_json in [
        json!([{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 9}}]),
        json!([{"name": "bytes"}, {"name": "zlib", "configuration": {"level": 9}}]),
        json!([{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 3}}]),
        json!([{"name": "bytes"}, {"name": "lz4"}]),
        json!([{"name": "bytes"}, {"name": "blosc", "configuration": {"cname": "lz4"}}]),
    ] {
        let big = repr(&[64 << 20], DType::U8, &[0]);
        let bomb = CodecChain::new(&specs(chain_json.clone()), &big)
            .unwrap()
            .encode(&zeros, &big)
            .unwrap();
        let chain = CodecChain::new(&specs(chain_json.clone()), &r).unwrap();
        let err = chain.decode(&bomb, &r).unwrap_err();
        assert!(
            err.to_string()
                .contains(chain_json[1]["name"].as_str().unwrap()),
            "{err}"
        );
        // Under a shard the size is unknown: the bound still holds.
        let shard = json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [8, 8],
            "codecs": [{"name": "bytes"}]}}, chain_json[1].clone()]);
        let chain = CodecChain::new(&specs(shard), &r).unwrap();
        assert!(chain.decode(&bomb, &r).is_err());
    }
}

fn sharded(location: &str) -> (CodecChain, ChunkRepr) {
    let r = repr(&[8, 8], DType::U16, &[9, 0]);
    let chain = json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [4, 4],
        "codecs": [{"name": "bytes"}], "index_location": location}}]);
    (CodecChain::new(&specs(chain), &r).unwrap(), r)
}

#[test]
fn shard_indexes_are_checked() {
    let (chain, r) = sharded("end");
    let s = chain.sharding().unwrap();
    assert_eq!(s.chunks_per_shard(&r.shape), [2, 2]);
    assert_eq!(s.index_len(&r.shape), 4 * 16 + 4);
    let raw = data(128);
    let shard = chain.encode(&raw, &r).unwrap();
    let idx = &shard[shard.len() - 68..];
    let entries = s
        .decode_index(idx, &r.shape, Some(shard.len() as u64))
        .unwrap();
    assert!(entries.iter().all(Option::is_some));
    assert_eq!(
        s.index_range(&r.shape, shard.len() as u64).unwrap().start,
        128
    );
    // Past the end, with a valid checksum.
    let rebuild = |entries: &[(u64, u64)]| {
        let mut v: Vec<u8> = entries
            .iter()
            .flat_map(|&(o, n)| o.to_le_bytes().into_iter().chain(n.to_le_bytes()))
            .collect();
        let sum = ::crc32c::crc32c(&v);
        v.extend_from_slice(&sum.to_le_bytes());
        v
    };
    let past = rebuild(&[(0, 32), (32, 32), (64, 32), (100, 32)]);
    let err = s.decode_index(&past, &r.shape, Some(128)).unwrap_err();
    assert!(err.to_string().contains("past"), "{err}");
    assert!(s.decode_index(&past, &r.shape, None).is_ok());
    let overflow = rebuild(&[(u64::MAX - 1, 32), (0, 32), (0, 32), (0, 32)]);
    assert!(s.decode_index(&overflow, &r.shape, None).is_err());
    let half_missing = rebuild(&[(u64::MAX, 32), (0, 32), (0, 32), (0, 32)]);
    assert!(s.decode_index(&half_missing, &r.shape, Some(200)).is_err());
    // Overlapping entries read the same bytes twice: allowed, as nothing is written.
    let mut overlapping = raw[..32].to_vec();
    overlapping.extend(rebuild(&[(0, 32), (0, 32), (u64::MAX, u64::MAX), (0, 32)]));
    let got = chain.decode(&overlapping, &r).unwrap();
    assert_eq!(got[..8], raw[..8]);
    assert_eq!(got[8..10], raw[..2]);
    assert_eq!(got[64..66], [9, 0]);
    // A bad checksum, a short index, a shard shorter than its index.
    let mut bad = shard.clone();
    bad[130] ^= 1;
    assert!(chain
        .decode(&bad, &r)
        .unwrap_err()
        .to_string()
        .contains("crc32c"));
    assert!(s.decode_index(&idx[1..], &r.shape, None).is_err());
    assert!(chain.decode(&shard[..60], &r).is_err());
    assert!(s.index_range(&r.shape, 60).is_none());
}

#[test]
fn shards_leave_out_fill_chunks_and_read_them_back_as_fill() {
    for location in ["start", "end"] {
        let (chain, r) = sharded(location);
        let s = chain.sharding().unwrap();
        let mut raw: Vec<u8> = [9u8, 0].repeat(64);
        raw[2 * 8 + 6] = 1; // row 1, column 3: inner chunk (0, 0)
        raw[2 * 63] = 5; // the last element: inner chunk (1, 1)
        let shard = chain.encode(&raw, &r).unwrap();
        assert_eq!(shard.len(), 2 * 32 + 68, "{location}");
        let range = s.index_range(&r.shape, shard.len() as u64).unwrap();
        let idx = &shard[range.start as usize..range.end as usize];
        let entries = s
            .decode_index(idx, &r.shape, Some(shard.len() as u64))
            .unwrap();
        assert!(entries[0].is_some() && entries[1].is_none() && entries[2].is_none());
        assert_eq!(chain.decode(&shard, &r).unwrap(), raw, "{location}");
        let inner: Vec<Option<Vec<u8>>> = vec![None; 4];
        let empty = s.encode_shard(&inner, &r.shape).unwrap();
        assert_eq!(chain.decode(&empty, &r).unwrap(), [9u8, 0].repeat(64));
        assert!(s.encode_shard(&inner[..3], &r.shape).is_err());
    }
}

#[test]
fn morton_order_is_zarr_pythons() {
    // zarr.core.indexing._morton_order((3, 5)), as zarr-python 3.1 computes it.
    let order = super::sharding::morton_order(&[3, 5]);
    let coords: Vec<(usize, usize)> = order.iter().map(|i| (i / 5, i % 5)).collect();
    assert_eq!(
        coords,
        [
            (0, 0),
            (1, 0),
            (0, 1),
            (1, 1),
            (2, 0),
            (2, 1),
            (0, 2),
            (1, 2),
            (0, 3),
            (1, 3),
            (2, 2),
            (2, 3),
            (0, 4),
            (1, 4),
            (2, 4)
        ]
    );
}

/// Decode throughput on a 256³ uint16 chunk (the bench arrays, one chunk of each):
/// `cargo test --release --lib zarr::codecs::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run by hand in release mode"]
fn speed() {
    let r = repr(&[256, 256, 256], DType::U16, &[0, 0]);
    let n = r.num_elements().unwrap();
    let raw: Vec<u8> = (0..n)
        .flat_map(|i| {
            let (i0, i1, i2) = (i / 65536, (i / 256) % 256, i % 256);
            ((i2 + i1 * i1 / 32 + i0 * i0 * i0) as u16).to_le_bytes()
        })
        .collect();
    let chains = [
        ("bytes", json!([{"name": "bytes"}])),
        (
            "bytes big",
            json!([{"name": "bytes", "configuration": {"endian": "big"}}]),
        ),
        (
            "zstd 0",
            json!([{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 0}}]),
        ),
        (
            "gzip 5",
            json!([{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 5}}]),
        ),
        (
            "blosc lz4",
            json!([{"name": "bytes"}, {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}]),
        ),
        (
            "transpose",
            json!([{"name": "transpose", "configuration": {"order": [2, 1, 0]}}, {"name": "bytes"}]),
        ),
        (
            "shard 64³ zstd 0",
            json!([{"name": "sharding_indexed", "configuration": {"chunk_shape": [64, 64, 64],
            "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 0}}]}}]),
        ),
    ];
    let mut out = vec![0u8; raw.len()];
    for (name, chain_json) in chains {
        let chain = CodecChain::new(&specs(chain_json), &r).unwrap();
        let t = std::time::Instant::now();
        let enc = chain.encode(&raw, &r).unwrap();
        let te = t.elapsed();
        let reps = 5;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            chain.decode_into(&enc, &r, &mut out).unwrap();
        }
        let td = t.elapsed() / reps;
        assert!(out == raw);
        let gbs = |d: std::time::Duration| raw.len() as f64 / d.as_secs_f64() / 1e9;
        eprintln!(
            "{name:>18}: {:>9} bytes, encode {:>6.2} GB/s, decode {:>6.2} GB/s",
            enc.len(),
            gbs(te),
            gbs(td)
        );
    }
}

#[test]
fn zstd_frames_without_a_content_size_and_in_a_row_decode() {
    let r = repr(&[300], DType::U16, &[0, 0]);
    let raw = data(600);
    let chain = CodecChain::new(&specs(json!([{"name": "bytes"}, {"name": "zstd"}])), &r).unwrap();
    // A streaming encoder does not know the size, so its frame does not record it.
    let streamed = ::zstd::stream::encode_all(&raw[..], 3).unwrap();
    assert_eq!(chain.decode(&streamed, &r).unwrap(), raw);
    let mut two = ::zstd::bulk::compress(&raw[..200], 1).unwrap();
    two.extend(::zstd::bulk::compress(&raw[200..], 1).unwrap());
    assert_eq!(chain.decode(&two, &r).unwrap(), raw);
}

#[test]
fn chains_are_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<CodecChain>();
    shared::<ShardingCodec>();
}
