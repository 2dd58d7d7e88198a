//! `zlib` (`level` 0–9): a zlib stream (RFC 1950), numcodecs' `Zlib` (`zlib.compress`), which
//! Zarr v2 arrays name as their compressor. Decoding goes straight into the output with
//! libdeflate; encoding uses zlib's algorithm (zlib-rs) so the bytes match numcodecs'.

use std::io::Write;

use flate2::write::ZlibEncoder;
use serde_json::Value;

use super::chain::{read_bounded, Compressor};
use super::{config, CodecError, CodecSpec};
use crate::codec::transport;
use crate::error::{Error, Result};

/// The `zlib` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Zlib {
    level: u32,
}

impl Zlib {
    /// numcodecs' default level is 1.
    pub(super) fn parse(spec: &CodecSpec) -> Result<Self> {
        let level = config::int(spec, "level", Some(1), 0, 9)?;
        Ok(Zlib {
            level: level as u32,
        })
    }
}

impl Compressor for Zlib {
    fn spec(&self) -> CodecSpec {
        CodecSpec::new("zlib", [("level", Value::from(self.level))])
    }
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let n =
            transport::zlib_decompress_into(input, out).map_err(|e| CodecError::new("zlib", e))?;
        if n != out.len() {
            return Err(CodecError::new(
                "zlib",
                format!("inflates to {n} bytes, expected {}", out.len()),
            ));
        }
        Ok(())
    }
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        read_bounded("zlib", flate2::read::ZlibDecoder::new(input), limit)
    }
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>> {
        let out = Vec::with_capacity(input.len() / 2 + 64);
        let mut enc = ZlibEncoder::new(out, flate2::Compression::new(self.level));
        enc.write_all(input)
            .and_then(|()| enc.try_finish())
            .map_err(|e| Error::invalid(format!("zlib compression failed: {e}")))?;
        enc.finish()
            .map_err(|e| Error::invalid(format!("zlib compression failed: {e}")))
    }
}
