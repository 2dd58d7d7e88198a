//! `gzip` (`level` 0–9): one gzip member, as numcodecs' `GZip` writes it through Python's
//! `gzip` module: no file name, modification time 0, the deflate stream of zlib at `level`.
//! Decoding goes straight into the output with libdeflate; encoding uses zlib's algorithm
//! (zlib-rs) so the bytes match zarr-python's.

use std::io::Write;

use flate2::write::DeflateEncoder;
use serde_json::Value;

use super::chain::{read_bounded, Compressor};
use super::{config, CodecError, CodecSpec};
use crate::codec::transport::{self, Compression};
use crate::error::{Error, Result};

/// The `gzip` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gzip {
    level: u32,
}

impl Gzip {
    /// numcodecs' default level is 1; v3 metadata always names one.
    pub(super) fn parse(spec: &CodecSpec) -> Result<Self> {
        let level = config::int(spec, "level", Some(1), 0, 9)?;
        Ok(Gzip {
            level: level as u32,
        })
    }
}

impl Compressor for Gzip {
    fn spec(&self) -> CodecSpec {
        CodecSpec::new("gzip", [("level", Value::from(self.level))])
    }
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let n = transport::decompress_into(Compression::Gzip, input, out)
            .map_err(|e| CodecError::new("gzip", e))?;
        if n != out.len() {
            return Err(CodecError::new(
                "gzip",
                format!("inflates to {n} bytes, expected {}", out.len()),
            ));
        }
        Ok(())
    }
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        read_bounded("gzip", flate2::read::MultiGzDecoder::new(input), limit)
    }
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>> {
        // Python's gzip header: no flags, mtime 0, XFL 2 at level 9 and 4 at level 1, OS 255.
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]);
        let mut enc = DeflateEncoder::new(out, flate2::Compression::new(self.level));
        enc.write_all(input)
            .map_err(|e| Error::invalid(format!("gzip compression failed: {e}")))?;
        let mut out = enc
            .finish()
            .map_err(|e| Error::invalid(format!("gzip compression failed: {e}")))?;
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(out)
    }
}
