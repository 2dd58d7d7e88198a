//! `blosc` (`cname`, `clevel`, `shuffle`, `typesize`, `blocksize`): one Blosc-1 buffer, as
//! numcodecs' `Blosc` writes it with c-blosc 1.x (the same library, built by `blosc-src`, so
//! encoded bytes match). The c-blosc calls live in `crate::codec::blosc`, shared with the
//! Precomputed encoding. `shuffle` is zarr-python's string or numcodecs' integer
//! (0 none, 1 byte, 2 bit, -1 bit for one-byte types and byte otherwise).

use serde_json::Value;

use super::chain::Compressor;
use super::{config, CodecError, CodecSpec};
use crate::codec::blosc as c_blosc;
use crate::error::Result;

/// The compressors this build of c-blosc has (no snappy).
const CNAMES: [&str; 5] = ["blosclz", "lz4", "lz4hc", "zlib", "zstd"];
const SHUFFLES: [&str; 3] = ["noshuffle", "shuffle", "bitshuffle"];

/// The `blosc` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Blosc {
    cname: &'static str,
    clevel: u8,
    /// 0 none, 1 byte, 2 bit.
    shuffle: u8,
    typesize: usize,
    blocksize: usize,
}

impl Blosc {
    /// `itemsize` is the array's element size: the default `typesize`, and what decides
    /// numcodecs' automatic shuffle.
    pub(super) fn parse(spec: &CodecSpec, itemsize: usize) -> Result<Self> {
        let name = config::string(spec, "cname", Some("lz4"))?;
        let cname = CNAMES.into_iter().find(|&c| c == name).ok_or_else(|| {
            config::bad(spec, "cname", format!("is {name:?}, not one of {CNAMES:?}"))
        })?;
        let shuffle = match spec.configuration.get("shuffle") {
            None | Some(Value::Null) => 1,
            Some(Value::String(s)) => SHUFFLES.iter().position(|&x| x == s).ok_or_else(|| {
                config::bad(
                    spec,
                    "shuffle",
                    format!("is {s:?}, not one of {SHUFFLES:?}"),
                )
            })? as u8,
            Some(v) => match v.as_i64() {
                Some(-1) if itemsize == 1 => 2,
                Some(-1) => 1,
                Some(n @ 0..=2) => n as u8,
                _ => {
                    return Err(config::bad(
                        spec,
                        "shuffle",
                        format!("is {v}, not a shuffle name or -1, 0, 1, 2"),
                    ))
                }
            },
        };
        let typesize = config::int(spec, "typesize", Some(itemsize as i64), 1, 255)? as usize;
        Ok(Blosc {
            cname,
            clevel: config::int(spec, "clevel", Some(5), 0, 9)? as u8,
            shuffle,
            typesize,
            blocksize: config::int(spec, "blocksize", Some(0), 0, i64::from(i32::MAX))? as usize,
        })
    }
}

fn corrupt(e: c_blosc::BloscDecodeError) -> CodecError {
    CodecError::new("blosc", e.to_string())
}

impl Compressor for Blosc {
    fn spec(&self) -> CodecSpec {
        CodecSpec::new(
            "blosc",
            [
                ("typesize", Value::from(self.typesize)),
                ("cname", Value::from(self.cname)),
                ("clevel", Value::from(self.clevel)),
                ("shuffle", Value::from(SHUFFLES[usize::from(self.shuffle)])),
                ("blocksize", Value::from(self.blocksize)),
            ],
        )
    }
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        c_blosc::decompress_into(input, out).map_err(corrupt)
    }
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        let n = c_blosc::decompressed_len(input).map_err(corrupt)?;
        if n > limit {
            return Err(CodecError::new(
                "blosc",
                format!("claims {n} bytes, more than the {limit} expected at most"),
            ));
        }
        let mut out = vec![0u8; n];
        self.decode_exact(input, &mut out)?;
        Ok(out)
    }
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>> {
        c_blosc::compress(
            input,
            self.cname,
            self.clevel,
            self.shuffle,
            self.typesize,
            self.blocksize,
        )
    }
}
