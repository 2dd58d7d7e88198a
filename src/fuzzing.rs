//! The fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` (nightly, coverage-guided)
//! and by `tests/fuzz_replay.rs` (stable, part of `cargo test`: replays the committed corpus
//! and runs a short seeded mutation loop). Not part of the public API.
//!
//! Every harness takes arbitrary bytes and checks that the code under test gives a value or
//! an error, never a panic, an out-of-range slice or an unbounded allocation, and that what
//! it gives is consistent (a decoded chunk has exactly its layout's size, a shard's chunks
//! lie inside the file, an `info` that parses parses again once written).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::codec::Encoding;
use crate::codec::{self, decode_as, transport, ChunkLayout};
use crate::error::Result;
use crate::format::precomputed::sharding::{self, ShardHash, ShardReader, ShardingSpec};
use crate::format::zarr::group::GroupMetadata;
use crate::format::zarr::metadata::{ArrayMetadata, ZarrFormat};
use crate::format::zarr::ome::Multiscale;
use crate::store::{self, Listed, Object, Ranged, ReadStore};
use crate::{Compression, DType, Info};

/// Any bytes, decoded as a chunk of a shape, channel count and dtype taken from the first four
/// bytes, give exactly that chunk's voxels or an error.
pub fn check_decode(data: &[u8], encoding: &str, dtypes: &[DType], channels: &[usize]) {
    check_decode_declared(data, encoding, Compression::None, dtypes, channels)
}

/// [`check_decode`] for bytes whose key suffix or `Content-Encoding` declared `declared`.
pub fn check_decode_declared(
    data: &[u8],
    encoding: &str,
    declared: Compression,
    dtypes: &[DType],
    channels: &[usize],
) {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let layout = ChunkLayout {
        shape: [
            usize::from(a % 64) + 1,
            usize::from(b % 64) + 1,
            usize::from(c % 16) + 1,
        ],
        channels: channels[usize::from(d >> 4) % channels.len()],
        dtype: dtypes[usize::from(d & 15) % dtypes.len()],
    };
    let encoding = Encoding::parse(encoding);
    if let Ok(n) = decode_as(&encoding, "fuzz", rest, declared, &layout, |v| v.len()) {
        assert_eq!(n, layout.raw_len());
    }
}

/// Any bytes give an `Info` or an error; an `Info` that parses writes JSON that parses again
/// to the same number of scales.
pub fn check_info(data: &[u8]) {
    let Ok(info) = Info::parse("fuzz/info", data) else {
        return;
    };
    for scale in &info.scales {
        let _ = codec::check(&scale.encoding, info.data_type, info.num_channels);
        assert!(!scale.key.is_empty() && !scale.key.starts_with('/'));
        assert!(scale
            .key
            .split('/')
            .all(|p| p != ".." && p != "." && !p.is_empty()));
    }
    let again = Info::parse("fuzz/info", info.to_json().as_bytes());
    let again = again.expect("an info we parsed must parse again once written");
    assert_eq!(again.scales.len(), info.scales.len());
}

/// Any bytes give Zarr metadata or an error. The first byte picks what the rest is: a v3
/// `zarr.json` of an array, a v2 `.zarray`, a v3 group's `zarr.json` or a v2 group's `.zattrs`
/// (whose OME-Zarr multiscales are parsed too). Metadata that parses writes files that parse
/// again to the same metadata; multiscales written into empty attributes read back the same
/// (but for their version, which the 0.5 layout holds once for all of them).
pub fn check_zarr_metadata(data: &[u8]) {
    let [which, rest @ ..] = data else {
        return;
    };
    let attributes = match which % 4 {
        0 | 1 => {
            let parsed = if which % 4 == 0 {
                ArrayMetadata::parse_v3("fuzz", rest)
            } else {
                ArrayMetadata::parse_v2("fuzz", rest, None)
            };
            let Ok(m) = parsed else {
                return;
            };
            let files = m.to_files().expect("parsed metadata must write");
            let again = match m.zarr_format {
                ZarrFormat::V3 => ArrayMetadata::parse_v3("fuzz", &files[0].1),
                ZarrFormat::V2 => ArrayMetadata::parse_v2("fuzz", &files[0].1, None),
            };
            assert_eq!(again.expect("written metadata must parse again"), m);
            return;
        }
        2 => GroupMetadata::parse_v3("fuzz", rest),
        _ => GroupMetadata::parse_v2("fuzz", br#"{"zarr_format": 2}"#, Some(rest)),
    };
    let Ok(group) = attributes else {
        return;
    };
    let Ok(Some(multiscales)) = Multiscale::from_attributes("fuzz", &group.attributes) else {
        return;
    };
    let mut written = serde_json::Map::new();
    Multiscale::write_attributes(&multiscales, &mut written);
    let again = Multiscale::from_attributes("fuzz", &written)
        .expect("written multiscales must parse again")
        .expect("written multiscales must be found");
    let unversioned = |ms: &[Multiscale]| -> Vec<Multiscale> {
        ms.iter()
            .map(|m| Multiscale {
                version: String::new(),
                ..m.clone()
            })
            .collect()
    };
    assert_eq!(unversioned(&again), unversioned(&multiscales));
}

/// Transport decompression (gzip and zstd sniffed, brotli declared) of a raw chunk whose
/// exact size is known, and the bounded path that metadata (`info`, minishard indexes) takes:
/// the answer is exactly the expected size, or at most the limit, or an error.
pub fn check_transport(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let expected = usize::from(*a) * 64 + usize::from(*b);
    for declared in [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Brotli,
    ] {
        if let Ok(n) = transport::with_decompressed("fuzz", rest, declared, expected, |v| v.len()) {
            assert_eq!(n, expected);
        }
        if let Ok(n) =
            transport::with_decompressed_bounded("fuzz", rest, declared, expected, |v| v.len())
        {
            assert!(n <= expected.max(rest.len()));
        }
    }
    if let Ok(v) = transport::decompress_small("fuzz", rest, expected) {
        assert!(v.len() <= expected.max(rest.len()));
    }
}

/// A sharding spec from one header byte: 0 to 4 minishard bits, either hash, raw or gzip
/// minishard indexes, and a preshift from the second byte; one shard (`shard_bits` 0).
fn spec_from(h: u8, p: u8) -> ShardingSpec {
    ShardingSpec {
        preshift_bits: u32::from(p % 4),
        hash: if h & 0x20 != 0 {
            ShardHash::Murmur
        } else {
            ShardHash::Identity
        },
        minishard_bits: u32::from(h % 5),
        shard_bits: 0,
        minishard_index_gzip: h & 0x08 != 0,
        data_gzip: h & 0x10 != 0,
    }
}

/// A shard file (spec from the first two bytes): decoding it whole gives chunks that lie
/// inside the file, or an error; reading chunks from it by range requests (as a cutout does,
/// through the shard index and minishard indexes) gives chunks inside the file, or an error,
/// and never a chunk that the whole-file decode does not also find.
pub fn check_shard(data: &[u8]) {
    let [h, p, ..] = data else {
        return;
    };
    let spec = spec_from(*h, *p);
    let file = Bytes::copy_from_slice(&data[2..]);
    let whole = sharding::decode_shard(&spec, "fuzz/0.shard", &file);
    if let Ok(chunks) = &whole {
        for bytes in chunks.values() {
            assert!(bytes.len() <= file.len());
        }
    }
    // Ids to ask for: those the whole-file decode found, plus a few small ones and ones
    // read from the file.
    let mut ids: Vec<u64> = (0..8).collect();
    if let Ok(chunks) = &whole {
        ids.extend(chunks.keys().take(64));
    }
    ids.extend(file.chunks_exact(8).take(8).map(|w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        u64::from_le_bytes(b)
    }));
    ids.sort_unstable();
    ids.dedup();
    let store: Arc<dyn ReadStore> = Arc::new(FuzzFiles::one(
        format!("s/{}", spec.shard_name(0)),
        file.clone(),
    ));
    let reader = ShardReader::new(store, spec, "s");
    let got = crate::runtime::io().block_on(reader.read(0, &ids));
    if let Ok(got) = got {
        assert_eq!(got.len(), ids.len());
        for (id, bytes) in ids.iter().zip(got) {
            let Some(bytes) = bytes else { continue };
            assert!(bytes.len() <= file.len());
            if let Ok(chunks) = &whole {
                assert!(
                    chunks.contains_key(id),
                    "range read found chunk {id}, decode did not"
                );
            }
        }
    }
}

/// A minishard index on its own (raw or gzip, from the first byte), in a file whose length
/// the next two bytes give: entries lie inside the file and do not overlap, or an error.
pub fn check_minishard_index(data: &[u8]) {
    let [h, a, b, rest @ ..] = data else {
        return;
    };
    let spec = spec_from(*h, 0);
    let file_len = spec.index_len() + u64::from(*a) * 256 + u64::from(*b);
    if let Ok(index) = sharding::decode_minishard_index(&spec, "fuzz", rest, file_len) {
        let mut ranges: Vec<Range<u64>> = index.ranges().collect();
        // By (start, end), as the parser checks: an empty range where another chunk
        // starts overlaps nothing.
        ranges.sort_unstable_by_key(|r| (r.start, r.end));
        for r in &ranges {
            assert!(r.start <= r.end && r.end <= file_len);
        }
        for w in ranges.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
    }
}

/// A Zarr codec chain and chunk from JSON (two length bytes, then `{"codecs": [...],
/// "shape": [...], "dtype": ...}`), then stored bytes: hostile chains are refused, decoding
/// gives exactly the chunk's bytes or an error, and what decodes encodes and decodes back
/// to the same bytes; a chain's own specs parse again.
pub fn check_zarr_chain(data: &[u8]) {
    use crate::format::zarr::codecs::{ChunkRepr, CodecChain, CodecSpec};
    use serde_json::Value;
    let [a, b, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*a) << 8 | usize::from(*b);
    if rest.len() < n {
        return;
    }
    let (json, encoded) = rest.split_at(n);
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let Some(Ok(specs)) = v["codecs"].as_array().map(|c| {
        c.iter()
            .map(CodecSpec::from_json)
            .collect::<Result<Vec<_>>>()
    }) else {
        return;
    };
    let shape = v["shape"]
        .as_array()
        .and_then(|s| s.iter().map(Value::as_u64).collect::<Option<Vec<_>>>());
    let (Some(shape), Some(dtype)) = (shape, v["dtype"].as_str().and_then(DType::parse)) else {
        return;
    };
    let repr = ChunkRepr {
        shape,
        dtype,
        fill_value: vec![0x5a; dtype.itemsize()],
    };
    // The harness allocates the decoded chunk: keep it small.
    let Some(len) = repr.byte_len().filter(|&n| n <= 1 << 20) else {
        return;
    };
    let Ok(chain) = CodecChain::new(&specs, &repr) else {
        return;
    };
    CodecChain::new(&chain.specs(), &repr).expect("a chain's own specs must parse again");
    if let Ok(decoded) = chain.decode(encoded, &repr) {
        assert_eq!(decoded.len(), len);
        let again = chain
            .encode(&decoded, &repr)
            .expect("decoded chunks encode");
        assert!(chain.decode(&again, &repr).expect("our encoding decodes") == decoded);
    }
}

/// A Zarr shard of uint8 inner chunks of 2 per axis (rank, index location, index byte order
/// and checksum from the first byte, inner chunks per axis from the next ones), then the
/// shard's bytes: index entries lie inside the shard, and decoding gives exactly the
/// shard's bytes, or an error.
pub fn check_zarr_shard_index(data: &[u8]) {
    use crate::format::zarr::codecs::{ChunkRepr, CodecChain, CodecSpec};
    use serde_json::{json, Value};
    let [h, rest @ ..] = data else {
        return;
    };
    let rank = 1 + usize::from(h % 3);
    if rest.len() < rank {
        return;
    }
    let (dims, file) = rest.split_at(rank);
    let per: Vec<u64> = dims.iter().map(|d| 1 + u64::from(d % 4)).collect();
    let endian = if h & 16 != 0 { "big" } else { "little" };
    let mut index_codecs = vec![json!({"name": "bytes", "configuration": {"endian": endian}})];
    if h & 8 != 0 {
        index_codecs.push(json!({"name": "crc32c"}));
    }
    let location = if h & 4 != 0 { "start" } else { "end" };
    let spec = CodecSpec::new(
        "sharding_indexed",
        [
            ("chunk_shape", json!(vec![2; rank])),
            ("codecs", json!([{"name": "bytes"}])),
            ("index_codecs", Value::from(index_codecs)),
            ("index_location", json!(location)),
        ],
    );
    let repr = ChunkRepr {
        shape: per.iter().map(|p| p * 2).collect(),
        dtype: DType::U8,
        fill_value: vec![0],
    };
    let chain = CodecChain::new(&[spec], &repr).expect("a valid sharding chain");
    let s = chain.sharding().expect("a sharding chain");
    let len = file.len() as u64;
    if let Some(r) = s.index_range(&repr.shape, len) {
        let index = &file[r.start as usize..r.end as usize];
        if let Ok(entries) = s.decode_index(index, &repr.shape, Some(len)) {
            assert_eq!(entries.len() as u64, per.iter().product::<u64>());
            for (offset, nbytes) in entries.into_iter().flatten() {
                assert!(offset + nbytes <= len);
            }
        }
    }
    if let Ok(v) = chain.decode(file, &repr) {
        assert_eq!(Some(v.len()), repr.byte_len());
    }
}

/// A read-only store for the harnesses: the files named in `files` (`None`: absent), and
/// `rest` under every other key. Ranges are cut from whole files (short answers past the end,
/// as the object stores give).
#[derive(Debug)]
struct FuzzFiles {
    files: Vec<(String, Option<Bytes>)>,
    rest: Option<Bytes>,
}

impl FuzzFiles {
    /// One file under `key`, nothing else.
    fn one(key: String, file: Bytes) -> Self {
        FuzzFiles {
            files: vec![(key, Some(file))],
            rest: None,
        }
    }

    fn file(&self, key: &str) -> Option<&Bytes> {
        match self.files.iter().find(|(k, _)| *k == key) {
            Some((_, file)) => file.as_ref(),
            None => self.rest.as_ref(),
        }
    }
}

#[async_trait]
impl ReadStore for FuzzFiles {
    fn url_of(&self, key: &str) -> String {
        format!("fuzz/{key}")
    }
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        Ok(self.file(key).map(|bytes| Object {
            bytes: bytes.clone(),
            content_encoding: None,
            version: None,
        }))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>> {
        Ok(self.file(key).map(|f| store::range_of(f, range)))
    }
    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
        match self.file(key) {
            Some(f) => store::ranges_of(&self.url_of(key), f, ranges).map(Some),
            None => Ok(None),
        }
    }
    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        _tag: Option<&str>,
    ) -> Result<Option<Bytes>> {
        let got = self.get_ranges(key, std::slice::from_ref(&range)).await?;
        Ok(got.and_then(|parts| parts.into_iter().next()))
    }
    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.file(key).map(|f| f.len() as u64))
    }
    async fn list(&self, _dir: &str) -> Result<Vec<Listed>> {
        Ok(Vec::new())
    }
}

/// The Zarr read path end to end: metadata (a v3 `zarr.json` or, by the first byte's low
/// bit, a v2 `.zarray`; its length in the next two bytes), then the bytes every chunk or
/// shard of the array holds. Opening gives an array or an error; an array of at most 64 KiB
/// reads whole, and from its second element on, into buffers of exactly their size or
/// fails with an error, whatever the stored bytes claim (shard indexes past the end,
/// decompression bombs, truncated chunks).
pub fn check_zarr_read(data: &[u8]) {
    use crate::format::zarr::ZarrArray;
    use crate::nd::NdBox;
    use crate::store::Handle;
    use crate::volume::{NdTarget, NdVolume};
    let [which, a, b, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*a) << 8 | usize::from(*b);
    if rest.len() < n {
        return;
    }
    let (meta, chunk) = rest.split_at(n);
    // The metadata file, no other metadata, and the hostile bytes under every chunk key.
    let meta_key = if which & 1 == 0 {
        "zarr.json"
    } else {
        ".zarray"
    };
    let mut files: Vec<(String, Option<Bytes>)> = [".zarray", ".zattrs", ".zgroup", "zarr.json"]
        .into_iter()
        .map(|k| (k.to_string(), None))
        .collect();
    files.insert(
        0,
        (meta_key.to_string(), Some(Bytes::copy_from_slice(meta))),
    );
    let files = FuzzFiles {
        files,
        rest: Some(Bytes::copy_from_slice(chunk)),
    };
    let handle = Handle::read_only(Arc::new(files), "fuzz");
    let Ok(array) = ZarrArray::open(handle, &crate::open::OpenOptions::default()) else {
        return;
    };
    let shape = array.shape();
    let itemsize = array.metadata().dtype.itemsize();
    let whole = NdBox::of_shape(&shape);
    let Some(len) = whole.num_bytes(itemsize).filter(|&n| n <= 1 << 16) else {
        return;
    };
    let mut out = vec![0u8; len];
    let _ = array.read_regions(&mut [NdTarget::new(whole, &mut out)]);
    if shape.iter().all(|&s| s > 1) {
        let inner = NdBox::new(vec![1; shape.len()], shape.iter().map(|s| s - 1).collect());
        let mut out = vec![0u8; inner.num_bytes(itemsize).unwrap_or(0)];
        let _ = array.read_regions(&mut [NdTarget::new(inner, &mut out)]);
    }
}

/// A harness: any bytes in, a panic only on a bug.
pub type Harness = Box<dyn Fn(&[u8]) + Send + Sync>;

/// A harness that needs no state.
type PlainHarness = fn(&[u8]);

/// The harnesses that are not one codec's decoder.
const OTHER_TARGETS: &[(&str, PlainHarness)] = &[
    ("decode_brotli", |d| {
        check_decode_declared(
            d,
            "raw",
            Compression::Brotli,
            &[DType::U8, DType::U32],
            &[1, 2],
        );
        check_decode_declared(
            d,
            "compressed_segmentation",
            Compression::Brotli,
            &[DType::U32],
            &[1],
        );
    }),
    ("parse_info", check_info),
    ("decode_transport", check_transport),
    ("parse_shard", check_shard),
    ("parse_minishard_index", check_minishard_index),
    ("decode_zarr_chain", check_zarr_chain),
    ("parse_zarr_shard_index", check_zarr_shard_index),
    ("parse_zarr_metadata", check_zarr_metadata),
    ("read_zarr_array", check_zarr_read),
];

/// Every harness by the cargo-fuzz target name that runs it (and the `fuzz/corpus/<name>`
/// directory that seeds it): `decode_<name>` for every codec of the registry that has
/// [`codec::FuzzSpec`], in registry order, then the others. Built once: cargo-fuzz looks a
/// target up for every input.
pub fn targets() -> &'static [(String, Harness)] {
    static TARGETS: OnceLock<Vec<(String, Harness)>> = OnceLock::new();
    TARGETS.get_or_init(|| {
        let mut out: Vec<(String, Harness)> = Vec::new();
        for kind in codec::REGISTRY {
            let (Some(spec), Some(&name)) = (kind.fuzz(), kind.names().first()) else {
                continue;
            };
            let harness = move |d: &[u8]| check_decode(d, name, spec.dtypes, spec.channels);
            out.push((format!("decode_{name}"), Box::new(harness)));
        }
        for &(name, f) in OTHER_TARGETS {
            out.push((name.to_string(), Box::new(f)));
        }
        out
    })
}

/// The harness a target name runs.
pub fn target(name: &str) -> Option<&'static Harness> {
    targets().iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

/// A small seeded PRNG (xorshift64*) for the stable mutation loop: no dependency, and the
/// same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One libFuzzer-style mutation of `input`: flip bits, overwrite bytes with interesting
/// values, truncate, insert or duplicate a run, or splice in a little-endian integer.
pub fn mutate(rng: &mut Rng, input: &[u8], max_len: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            2 if !v.is_empty() => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                let byte = rng.next_u64() as u8;
                v.splice(i..i, std::iter::repeat_n(byte, n));
            }
            4 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(32)).min(v.len());
                let at = rng.below(v.len() + 1);
                let run: Vec<u8> = v[a..b].to_vec();
                v.splice(at..at, run);
            }
            5 if v.len() >= 8 => {
                let i = rng.below(v.len() - 7);
                let x = [0, 1, u64::MAX, 1 << 32, 1 << 63, rng.next_u64()][rng.below(6)];
                v[i..i + 8].copy_from_slice(&x.to_le_bytes());
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next_u64() as u8);
            }
        }
    }
    v.truncate(max_len);
    v
}
