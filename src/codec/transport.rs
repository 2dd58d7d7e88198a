//! Transport compression: gzip, zstd and brotli around a chunk's bytes, in every convention
//! found in the wild (a `.gz`/`.br`/`.zstd` key suffix, `Content-Encoding` on the object, or
//! compressed bytes under the plain key as BigArrays.jl writes them). Reads sniff the magic
//! bytes of gzip and zstd and never trust a suffix alone for them; brotli has no magic
//! number, so it is decoded only where the suffix or `Content-Encoding` declares it.
//! Decoding is bounded by the size the metadata promises, so a bomb cannot exhaust memory.

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor, DecompressionError, Decompressor};

use crate::error::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const ZSTD_LEVEL: i32 = 3;
/// CloudVolume's (cloudfiles') default brotli quality, "a good balance between compression
/// speed and compression rate"; 22 is brotli's default window (4 MiB).
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW: u32 = 22;

/// A libdeflate gzip level, 1 (fastest) to 12 (smallest): how hard the gzip a handle writes
/// (chunk transport, shard data, minishard indexes) works. A write-time choice: the stored
/// bytes do not record it, and any level reads the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GzipLevel(u8);

impl GzipLevel {
    /// Level 6: the best measured speed/ratio trade-off for whole chunks.
    pub const DEFAULT: GzipLevel = GzipLevel(6);
    /// The fastest level.
    pub const MIN: u8 = 1;
    /// The smallest output (libdeflate's slowest level).
    pub const MAX: u8 = 12;

    /// The level `level`; an error naming `field` (the option it came from) outside
    /// [`MIN`](Self::MIN)..=[`MAX`](Self::MAX).
    pub fn new(level: i64, field: &str) -> Result<Self> {
        match u8::try_from(level) {
            Ok(n) if (Self::MIN..=Self::MAX).contains(&n) => Ok(GzipLevel(n)),
            _ => Err(Error::invalid(format!(
                "{field}={level} is not a gzip level: {} (fastest) to {} (smallest)",
                Self::MIN,
                Self::MAX
            ))),
        }
    }

    /// The level as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for GzipLevel {
    fn default() -> Self {
        GzipLevel::DEFAULT
    }
}

/// Byte-level compression applied to a whole chunk when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is.
    None,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
    /// `br`: brotli, as cloudfiles writes it (`compress="br"`).
    Brotli,
}

impl Compression {
    /// Every variant, in the order readers probe key suffixes (CloudVolume's order).
    pub const PROBE_ORDER: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Brotli,
        Compression::Zstd,
    ];

    /// The key suffix CloudVolume uses on file systems.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zstd",
            Compression::Brotli => ".br",
        }
    }

    /// The HTTP `Content-Encoding` that declares this compression in object stores.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Brotli => Some("br"),
        }
    }

    /// The compression a `Content-Encoding` value declares (`None` for identity or unknown
    /// values, which are then sniffed like any other bytes).
    pub fn from_content_encoding(value: &str) -> Self {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            "br" => Compression::Brotli,
            _ => Compression::None,
        }
    }

    /// Parses a user's `compression=` value (`None` is passed as "none" or "").
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "" | "none" | "raw" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "br" | "brotli" => Ok(Compression::Brotli),
            other => Err(Error::invalid(format!(
                "compression {other:?} is not one of None, \"gzip\", \"zstd\", \"br\""
            ))),
        }
    }

    /// The sniffed compression of `bytes` (`None` when no magic matches; brotli never
    /// matches, having no magic number).
    pub fn sniff(bytes: &[u8]) -> Self {
        if bytes.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if bytes.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Compresses `data` (gzip at [`GzipLevel::DEFAULT`]).
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>> {
        self.compress_at(data, GzipLevel::DEFAULT)
    }

    /// Compresses `data`, gzip at `level` (zstd and brotli keep their fixed levels).
    pub fn compress_at(self, data: &[u8], level: GzipLevel) -> Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => gzip_at(data, level),
            Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)
                .map_err(|e| Error::invalid(format!("zstd compression failed: {e}"))),
            Compression::Brotli => {
                use std::io::Write;
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                {
                    let mut w = brotli::CompressorWriter::new(
                        &mut out,
                        64 << 10,
                        BROTLI_QUALITY,
                        BROTLI_WINDOW,
                    );
                    w.write_all(data)
                        .and_then(|()| w.flush())
                        .map_err(|e| Error::invalid(format!("brotli compression failed: {e}")))?;
                }
                Ok(out)
            }
        }
    }

    /// How bytes stored with this declared compression are to be decoded: brotli when
    /// declared (it cannot be sniffed), otherwise whatever the magic bytes say.
    pub fn resolve(self, bytes: &[u8]) -> Self {
        match self {
            Compression::Brotli => Compression::Brotli,
            _ => Compression::sniff(bytes),
        }
    }
}

/// A gzip stream of `data` at `level`, made with this thread's compressor for that level.
fn gzip_at(data: &[u8], level: GzipLevel) -> Result<Vec<u8>> {
    COMPRESSORS.with_borrow_mut(|slots| {
        let i = usize::from(level.get() - GzipLevel::MIN);
        let c = match &mut slots[i] {
            Some(c) => c,
            slot => {
                // GzipLevel holds only levels libdeflate takes, so this never fails.
                let lvl = CompressionLvl::new(i32::from(level.get()))
                    .map_err(|_| Error::internal(format!("gzip level {}", level.get())))?;
                slot.insert(Compressor::new(lvl))
            }
        };
        let mut out = vec![0; c.gzip_compress_bound(data.len())];
        let n = c
            .gzip_compress(data, &mut out)
            .map_err(|e| Error::invalid(format!("gzip compression failed: {e}")))?;
        out.truncate(n);
        Ok(out)
    })
}

/// Levels a thread may hold a compressor for.
const LEVELS: usize = GzipLevel::MAX as usize - GzipLevel::MIN as usize + 1;

thread_local! {
    /// Each thread's libdeflate compressor per level, made on first use: a compressor holds
    /// its level's match-finder tables (up to about a MB at the top levels), so making one
    /// per chunk would cost more than compressing a small chunk, and most threads only ever
    /// use one level.
    static COMPRESSORS: RefCell<[Option<Compressor>; LEVELS]> =
        const { RefCell::new([const { None }; LEVELS]) };
    static DECOMPRESSOR: RefCell<Decompressor> = RefCell::new(Decompressor::new());
    /// Each thread's zstd decompression context, made on first use: a fresh one per chunk
    /// (what `zstd::bulk::decompress_to_buffer` does) allocates and initialises its tables
    /// every time, which a shard of many small inner chunks pays once per inner chunk.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses one zstd frame into `out` with this thread's context.
fn zstd_into(bytes: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let cap = out.len();
    let fail = |e: std::io::Error| {
        format!("zstd data does not decompress into the expected {cap} bytes: {e}")
    };
    ZSTD_DECOMPRESSOR.with_borrow_mut(|slot| {
        let d = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(fail)?),
        };
        d.decompress_to_buffer(bytes, out).map_err(fail)
    })
}

/// Calls `f` with the decompressed contents of `bytes`, which must come to exactly
/// `expected_len` bytes. `declared` is the compression the key suffix or `Content-Encoding`
/// names (see [`Compression::resolve`]). Plain bytes pass through uncopied. A chunk that
/// merely starts with a magic number but is the right length and fails to decompress is
/// taken as plain data.
pub fn with_decompressed<R>(
    key: &str,
    bytes: &[u8],
    declared: Compression,
    expected_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let kind = declared.resolve(bytes);
    if kind == Compression::None {
        return check_len(key, bytes.len(), expected_len).map(|()| f(bytes));
    }
    super::scratch::with_inflated(expected_len, |scratch| {
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
/// (an encoded chunk): decompression stops with an error past `limit` bytes. `declared` as
/// in [`with_decompressed`]. Plain bytes pass through uncopied.
pub fn with_decompressed_bounded<R>(
    key: &str,
    bytes: &[u8],
    declared: Compression,
    limit: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let kind = declared.resolve(bytes);
    if kind == Compression::None {
        return Ok(f(bytes));
    }
    super::scratch::with_inflated(limit, |out| match decompress_into(kind, bytes, out) {
        Ok(n) => Ok(f(&out[..n])),
        Err(reason) => Err(Error::decode(key, reason)),
    })
}

/// Fills `out` with the first `out.len()` bytes that `bytes`, a gzip stream of
/// `expected_len` bytes, decompresses to, decoding no further (a stream decoder stops where
/// `out` ends): for readers that need only the start of a chunk. `false` when the data is
/// not gzip (as sniffed or `declared`), breaks off before `out` is full, or declares another
/// size in its trailer (ISIZE, the size mod 2^32): a stream too long or cut off is left to
/// the whole-chunk decoder, which reports it. The checksum covers the whole stream, so it
/// goes unchecked here.
pub fn gunzip_prefix(
    bytes: &[u8],
    declared: Compression,
    expected_len: usize,
    out: &mut [u8],
) -> bool {
    use std::io::Read;
    let size = (expected_len as u32).to_le_bytes();
    declared.resolve(bytes) == Compression::Gzip
        && bytes.len() >= 18
        && bytes[bytes.len() - 4..] == size
        && flate2::bufread::GzDecoder::new(bytes)
            .read_exact(out)
            .is_ok()
}

/// Decompresses into `out`, failing rather than growing past it (Zarr's `gzip` and `zstd`
/// codecs share this).
pub(crate) fn decompress_into(
    kind: Compression,
    bytes: &[u8],
    out: &mut [u8],
) -> Result<usize, String> {
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
        Compression::Zstd => zstd_into(bytes, out),
        Compression::Brotli => brotli_into(bytes, out),
    }
}

/// Decompresses a zlib stream (RFC 1950, Zarr's and numcodecs' `zlib`) into `out`, failing
/// rather than growing past it.
pub(crate) fn zlib_decompress_into(bytes: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let cap = out.len();
    DECOMPRESSOR.with_borrow_mut(|d| {
        d.zlib_decompress(bytes, out).map_err(|e| match e {
            DecompressionError::InsufficientSpace => {
                format!("zlib data inflates past the expected {cap} bytes")
            }
            DecompressionError::BadData => "corrupt zlib data".to_string(),
        })
    })
}

/// Decompresses a brotli stream into `out`, failing if it holds more than `out.len()` bytes.
fn brotli_into(bytes: &[u8], out: &mut [u8]) -> Result<usize, String> {
    use std::io::Read;
    let cap = out.len();
    let mut reader = brotli::Decompressor::new(bytes, 64 << 10);
    let mut n = 0;
    let corrupt = |e: std::io::Error| format!("corrupt brotli data: {e}");
    while n < cap {
        match reader.read(&mut out[n..]) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
    // Full: anything more is past the bound.
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(n),
        Ok(_) => Err(format!(
            "brotli data inflates past the expected {cap} bytes"
        )),
        Err(e) => Err(corrupt(e)),
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
    let mut out = Vec::new();
    let read = match kind {
        Compression::None | Compression::Brotli => return Ok(bytes.to_vec()),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(bytes)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        Compression::Zstd => zstd::stream::read::Decoder::new(bytes)
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
            if kind != Compression::Brotli {
                assert_eq!(Compression::sniff(&packed), kind);
            }
            let got = with_decompressed("k", &packed, kind, data.len(), |b| b.to_vec()).unwrap();
            assert_eq!(got, data);
            let got = with_decompressed_bounded("k", &packed, kind, data.len(), |b| b.to_vec());
            assert_eq!(got.unwrap(), data);
        }
    }

    #[test]
    fn gzip_levels_change_the_bytes_not_the_data_and_are_checked() {
        let data: Vec<u8> = (0..200_000u64).map(|i| ((i * i) % 253) as u8).collect();
        let at = |n| Compression::Gzip.compress_at(&data, GzipLevel::new(n, "lvl").unwrap());
        let (fast, default, small) = (at(1).unwrap(), at(6).unwrap(), at(12).unwrap());
        // The default level is what `compress` writes, bit for bit.
        assert_eq!(default, Compression::Gzip.compress(&data).unwrap());
        assert_ne!(fast, default);
        assert!(small.len() <= default.len() && default.len() <= fast.len());
        for packed in [&fast, &default, &small, &at(1).unwrap()] {
            let got = with_decompressed("k", packed, Compression::None, data.len(), |b| b.to_vec());
            assert_eq!(got.unwrap(), data);
        }
        // zstd and brotli ignore it.
        let level = GzipLevel::new(1, "lvl").unwrap();
        let zstd = Compression::Zstd;
        assert_eq!(
            zstd.compress_at(&data, level).unwrap(),
            zstd.compress(&data).unwrap()
        );
        for bad in [0, 13, -1, 1 << 40] {
            let err = GzipLevel::new(bad, "compress_level")
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("compress_level={bad}")), "{err}");
        }
    }

    #[test]
    fn bombs_and_wrong_sizes_are_errors() {
        let zeros = vec![0u8; 1 << 20];
        for kind in [Compression::Gzip, Compression::Zstd, Compression::Brotli] {
            let packed = kind.compress(&zeros).unwrap();
            let err = with_decompressed("the/key", &packed, kind, 1000, |_| ()).unwrap_err();
            assert!(err.to_string().contains("the/key"), "{err}");
            assert!(with_decompressed("k", &packed, kind, 2 << 20, |_| ()).is_err());
            let err = with_decompressed_bounded("the/key", &packed, kind, 1000, |_| ());
            assert!(err.unwrap_err().to_string().contains("the/key"));
        }
        let none = Compression::None;
        assert!(with_decompressed("k", &[1, 2, 3], none, 4, |_| ()).is_err());
        assert!(with_decompressed("k", &[0x1f, 0x8b, 0, 0, 0], none, 9, |_| ()).is_err());
    }

    #[test]
    fn gzip_prefixes_stop_early_and_refuse_streams_of_another_size() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let packed = Compression::Gzip.compress(&data).unwrap();
        let (mut out, none, n) = (vec![0u8; 1000], Compression::None, data.len());
        assert!(gunzip_prefix(&packed, none, n, &mut out));
        assert_eq!(out, data[..1000]);
        // Declared another size, cut off, not gzip, or shorter than the prefix.
        assert!(!gunzip_prefix(&packed, none, n + 1, &mut out));
        assert!(!gunzip_prefix(
            &packed[..packed.len() - 10],
            none,
            n,
            &mut out
        ));
        assert!(!gunzip_prefix(&data, none, n, &mut out));
        let short = Compression::Gzip.compress(&data[..500]).unwrap();
        assert!(!gunzip_prefix(&short, none, 500, &mut out));
    }

    #[test]
    fn plain_chunk_that_starts_like_gzip_is_plain() {
        let mut data = vec![7u8; 64];
        data[..2].copy_from_slice(&GZIP_MAGIC);
        let got = with_decompressed("k", &data, Compression::None, 64, |b| b.to_vec()).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn small_files_are_bounded() {
        let packed = Compression::Gzip.compress(&[b'x'; 5000]).unwrap();
        assert_eq!(decompress_small("info", &packed, 5000).unwrap().len(), 5000);
        assert!(decompress_small("info", &packed, 4999).is_err());
    }

    #[test]
    fn brotli_is_decoded_only_where_declared_and_corrupt_brotli_is_an_error() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let packed = Compression::Brotli.compress(&data).unwrap();
        // Undeclared, brotli bytes are taken as they are (and are the wrong length here).
        assert!(with_decompressed("k", &packed, Compression::None, data.len(), |_| ()).is_err());
        assert_eq!(
            Compression::from_content_encoding(" BR "),
            Compression::Brotli
        );
        assert_eq!(
            Compression::from_content_encoding("identity"),
            Compression::None
        );
        let br = Compression::Brotli;
        for cut in [0, 1, packed.len() / 2, packed.len() - 1] {
            let err = with_decompressed("the/key", &packed[..cut], br, data.len(), |_| ());
            assert!(err.unwrap_err().to_string().contains("the/key"));
        }
        let mut garbage = packed.clone();
        garbage.extend_from_slice(b"trailing");
        for i in (0..packed.len()).step_by(3) {
            garbage[i] ^= 0xa5;
            let _ = with_decompressed("k", &garbage, br, data.len(), |_| ());
        }
    }
}
