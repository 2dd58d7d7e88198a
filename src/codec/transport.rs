//! Transport compression: gzip and zstd around a chunk's bytes, in every convention found in
//! the wild (a `.gz`/`.zstd` key suffix, or compressed bytes under the plain key as
//! BigArrays.jl writes them). Reads sniff magic bytes and never trust a suffix alone.
//! Decoding is bounded by the size the metadata promises, so a bomb cannot exhaust memory.

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor, DecompressionError, Decompressor};

use crate::error::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// libdeflate level 6: the best measured speed/ratio trade-off for whole chunks.
const GZIP_LEVEL: i32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// Byte-level compression applied to a whole chunk when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Every variant, in the order readers probe key suffixes (CloudVolume's order).
    pub const PROBE_ORDER: [Compression; 3] =
        [Compression::None, Compression::Gzip, Compression::Zstd];

    /// The key suffix CloudVolume uses on file systems.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zstd",
        }
    }

    /// The HTTP `Content-Encoding` that declares this compression in object stores.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// Parses a user's `compression=` value (`None` is passed as "none" or "").
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "" | "none" | "raw" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::invalid(format!(
                "compression {other:?} is not one of None, \"gzip\", \"zstd\""
            ))),
        }
    }

    /// The sniffed compression of `bytes` (`None` when no magic matches).
    pub fn sniff(bytes: &[u8]) -> Self {
        if bytes.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if bytes.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Compresses `data`.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => COMPRESSOR.with_borrow_mut(|c| {
                let mut out = vec![0; c.gzip_compress_bound(data.len())];
                let n = c
                    .gzip_compress(data, &mut out)
                    .map_err(|e| Error::invalid(format!("gzip compression failed: {e}")))?;
                out.truncate(n);
                Ok(out)
            }),
            Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)
                .map_err(|e| Error::invalid(format!("zstd compression failed: {e}"))),
        }
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Compressor> = RefCell::new(Compressor::new(
        CompressionLvl::new(GZIP_LEVEL).unwrap_or_default(),
    ));
    static DECOMPRESSOR: RefCell<Decompressor> = RefCell::new(Decompressor::new());
    /// Reused output buffer: a fresh multi-MiB allocation per chunk costs page faults.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the decompressed contents of `bytes`, which must come to exactly
/// `expected_len` bytes. Plain bytes pass through uncopied. A chunk that merely starts with
/// a magic number but is the right length and fails to decompress is taken as plain data.
pub fn with_decompressed<R>(
    key: &str,
    bytes: &[u8],
    expected_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let kind = Compression::sniff(bytes);
    if kind == Compression::None {
        return check_len(key, bytes.len(), expected_len).map(|()| f(bytes));
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.resize(expected_len, 0);
        match decompress_into(kind, bytes, scratch) {
            Ok(n) if n == expected_len => Ok(f(scratch)),
            _ if bytes.len() == expected_len => Ok(f(bytes)),
            Ok(n) => Err(Error::decode(
                key,
                format!("{kind:?} data decompressed to {n} bytes, expected {expected_len}"),
            )),
            Err(reason) => Err(Error::decode(key, reason)),
        }
    })
}

/// Calls `f` with the decompressed contents of `bytes`, whose size is not known in advance
/// (an encoded chunk): decompression stops with an error past `limit` bytes. Plain bytes
/// pass through uncopied.
pub fn with_decompressed_bounded<R>(
    key: &str,
    bytes: &[u8],
    limit: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let kind = Compression::sniff(bytes);
    if kind == Compression::None {
        return Ok(f(bytes));
    }
    // Zeroed allocations are mapped lazily, so a generous limit costs only what is written.
    let mut out = vec![0u8; limit];
    match decompress_into(kind, bytes, &mut out) {
        Ok(n) => Ok(f(&out[..n])),
        Err(reason) => Err(Error::decode(key, reason)),
    }
}

/// Decompresses into `out`, failing rather than growing past it.
fn decompress_into(kind: Compression, bytes: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let cap = out.len();
    match kind {
        Compression::None => Err("not compressed".into()),
        Compression::Gzip => DECOMPRESSOR.with_borrow_mut(|d| {
            d.gzip_decompress(bytes, out).map_err(|e| match e {
                DecompressionError::InsufficientSpace => {
                    format!("gzip data inflates past the expected {cap} bytes")
                }
                DecompressionError::BadData => "corrupt gzip data".to_string(),
            })
        }),
        Compression::Zstd => zstd::bulk::decompress_to_buffer(bytes, out).map_err(|e| {
            format!("zstd data does not decompress into the expected {cap} bytes: {e}")
        }),
    }
}

fn check_len(key: &str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::decode(
            key,
            format!("chunk holds {got} bytes, expected {expected} for its shape and data type"),
        ))
    }
}

/// Decompresses a small metadata file (such as `info`) of unknown size, up to `limit` bytes.
pub fn decompress_small(key: &str, bytes: &[u8], limit: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let kind = Compression::sniff(bytes);
    if kind == Compression::None {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    let read = match kind {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(bytes)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        _ => zstd::stream::read::Decoder::new(bytes)
            .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out)),
    };
    match read {
        Ok(_) if out.len() > limit => {
            Err(Error::decode(key, format!("inflates past {limit} bytes")))
        }
        Ok(_) => Ok(out),
        Err(e) => Err(Error::decode(key, format!("corrupt {kind:?} data: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sniffs() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for kind in Compression::PROBE_ORDER {
            let packed = kind.compress(&data).unwrap();
            assert_eq!(Compression::sniff(&packed), kind);
            let got = with_decompressed("k", &packed, data.len(), |b| b.to_vec()).unwrap();
            assert_eq!(got, data);
        }
    }

    #[test]
    fn bombs_and_wrong_sizes_are_errors() {
        let zeros = vec![0u8; 1 << 20];
        for kind in [Compression::Gzip, Compression::Zstd] {
            let packed = kind.compress(&zeros).unwrap();
            let err = with_decompressed("the/key", &packed, 1000, |_| ()).unwrap_err();
            assert!(err.to_string().contains("the/key"), "{err}");
            assert!(with_decompressed("k", &packed, 2 << 20, |_| ()).is_err());
        }
        assert!(with_decompressed("k", &[1, 2, 3], 4, |_| ()).is_err());
        assert!(with_decompressed("k", &[0x1f, 0x8b, 0, 0, 0], 9, |_| ()).is_err());
    }

    #[test]
    fn plain_chunk_that_starts_like_gzip_is_plain() {
        let mut data = vec![7u8; 64];
        data[..2].copy_from_slice(&GZIP_MAGIC);
        let got = with_decompressed("k", &data, 64, |b| b.to_vec()).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn small_files_are_bounded() {
        let packed = Compression::Gzip.compress(&[b'x'; 5000]).unwrap();
        assert_eq!(decompress_small("info", &packed, 5000).unwrap().len(), 5000);
        assert!(decompress_small("info", &packed, 4999).is_err());
    }
}
