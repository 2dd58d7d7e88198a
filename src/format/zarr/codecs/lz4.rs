//! `lz4` (`acceleration`): numcodecs' `LZ4`, which Zarr v2 arrays name as their compressor:
//! the decoded size as 4 little-endian bytes, then one LZ4 block. lz4_flex (pure Rust)
//! decodes it straight into the output; its encoder takes no acceleration, so encoded
//! bytes are valid LZ4 that differ from numcodecs' own.

use serde_json::Value;

use super::chain::Compressor;
use super::{config, CodecError, CodecSpec};
use crate::error::{Error, Result};

/// The `lz4` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lz4 {
    acceleration: i64,
}

impl Lz4 {
    /// numcodecs' default acceleration is 1.
    pub(super) fn parse(spec: &CodecSpec) -> Result<Self> {
        Ok(Lz4 {
            acceleration: config::int(
                spec,
                "acceleration",
                Some(1),
                i64::from(i32::MIN),
                i64::from(i32::MAX),
            )?,
        })
    }
}

/// The size prefix and the block after it.
fn split(input: &[u8]) -> Result<(usize, &[u8]), CodecError> {
    let [a, b, c, d, block @ ..] = input else {
        return Err(CodecError::new(
            "lz4",
            format!(
                "{} bytes is shorter than the 4-byte size prefix",
                input.len()
            ),
        ));
    };
    let n = u32::from_le_bytes([*a, *b, *c, *d]);
    let n = usize::try_from(n).map_err(|_| CodecError::new("lz4", "size prefix too large"))?;
    Ok((n, block))
}

impl Compressor for Lz4 {
    fn spec(&self) -> CodecSpec {
        CodecSpec::new("lz4", [("acceleration", Value::from(self.acceleration))])
    }
    fn decode_exact(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let (n, block) = split(input)?;
        if n != out.len() {
            return Err(CodecError::new(
                "lz4",
                format!("holds {n} bytes, expected {}", out.len()),
            ));
        }
        match lz4_flex::block::decompress_into(block, out) {
            Ok(got) if got == n => Ok(()),
            Ok(got) => Err(CodecError::new(
                "lz4",
                format!("block decompresses to {got} bytes, its prefix says {n}"),
            )),
            Err(e) => Err(CodecError::new("lz4", format!("corrupt lz4 data: {e}"))),
        }
    }
    fn decode_bounded(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        let (n, _) = split(input)?;
        if n > limit {
            return Err(CodecError::new(
                "lz4",
                format!("claims {n} bytes, more than the {limit} expected at most"),
            ));
        }
        let mut out = vec![0u8; n];
        self.decode_exact(input, &mut out)?;
        Ok(out)
    }
    fn encode(&self, input: &[u8]) -> Result<Vec<u8>> {
        let n = u32::try_from(input.len())
            .map_err(|_| Error::invalid("an lz4 chunk must be smaller than 4 GiB"))?;
        let mut out = vec![0u8; 4 + lz4_flex::block::get_maximum_output_size(input.len())];
        out[..4].copy_from_slice(&n.to_le_bytes());
        let k = lz4_flex::block::compress_into(input, &mut out[4..])
            .map_err(|e| Error::invalid(format!("lz4 compression failed: {e}")))?;
        out.truncate(4 + k);
        Ok(out)
    }
}
