//! `zstd` (`level`, `checksum`): one Zstandard frame with its content size, and a content
//! checksum when `checksum` is true, as numcodecs' `Zstd` writes through libzstd. Decoding
//! goes straight into the output; frames without a content size and several frames in a
//! row decode too.

use serde_json::Value;

use super::chain::{read_bounded, Compressor};
use super::{config, CodecError, CodecSpec};
use crate::codec::transport::{self, Compression};
use crate::error::{Error, Result};

/// The `zstd` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Zstd {
    level: i32,
    checksum: bool,
}

impl Zstd {
    /// numcodecs' defaults: level 0 (libzstd's default, 3), no checksum.
    pub(super) fn parse(spec: &CodecSpec) -> Result<Self> {
        let level = config::int(spec, "level", Some(0), -131072, 22)?;
        Ok(Zstd {
            level: level as i32,
            checksum: config::boolean(spec, "checksum", false)?,
        })
    }
}

impl Compressor for Zstd {
    fn spec(&self) -> CodecSpec {
        CodecSpec::new(
            "zstd",
            [
                ("level", Value::from(self.level)),
                ("checksum", Value::from(self.checksum)),
            ],
        )
    }
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let n = transport::decompress_into(Compression::Zstd, input, out)
            .map_err(|e| CodecError::new("zstd", e))?;
        if n != out.len() {
            return Err(CodecError::new(
                "zstd",
                format!("decompresses to {n} bytes, expected {}", out.len()),
            ));
        }
        Ok(())
    }
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        let dec = zstd::stream::read::Decoder::with_buffer(input)
            .map_err(|e| CodecError::new("zstd", format!("corrupt zstd data: {e}")))?;
        read_bounded("zstd", dec, limit)
    }
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>> {
        let fail = |e: std::io::Error| Error::invalid(format!("zstd compression failed: {e}"));
        let mut c = zstd::bulk::Compressor::new(self.level).map_err(fail)?;
        c.include_checksum(self.checksum).map_err(fail)?;
        c.include_contentsize(true).map_err(fail)?;
        c.compress(input).map_err(fail)
    }
}
