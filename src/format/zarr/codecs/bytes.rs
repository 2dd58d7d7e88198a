//! `bytes`: the array-to-bytes codec that lays elements out in C order, little- or
//! big-endian (`endian`, absent for one-byte types). Little-endian data is the decoded form
//! itself, so it passes through uncopied.

use std::borrow::Cow;

use serde_json::Value;

use super::{config, nd, CodecError, CodecSpec};
use crate::dtype::DType;
use crate::error::Result;

/// The `bytes` codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bytes {
    /// Big-endian on storage.
    big: bool,
    /// Bytes per byte-swapped component (1: nothing to swap).
    width: usize,
}

impl Bytes {
    pub(super) fn parse(spec: &CodecSpec, dtype: DType) -> Result<Self> {
        // zarr-python reads an absent `endian` as the system's (little) byte order.
        let big = match config::string(spec, "endian", Some("little"))? {
            "little" => false,
            "big" => true,
            other => {
                return Err(config::bad(
                    spec,
                    "endian",
                    format!("is {other:?}, not \"little\" or \"big\""),
                ))
            }
        };
        Ok(Bytes {
            big,
            width: dtype.component_size(),
        })
    }

    pub(super) fn spec(&self) -> CodecSpec {
        if self.width == 1 {
            return CodecSpec::new("bytes", []);
        }
        let endian = if self.big { "big" } else { "little" };
        CodecSpec::new("bytes", [("endian", Value::from(endian))])
    }

    /// Whether stored bytes differ from decoded ones.
    pub(super) fn swaps(&self) -> bool {
        self.big && self.width > 1
    }

    /// Turns stored bytes already in their final place into decoded ones.
    pub(super) fn decode_in_place(&self, data: &mut [u8]) {
        if self.swaps() {
            nd::swap_in_place(data, self.width);
        }
    }

    /// Decodes stored bytes into `out`, which must be exactly their size.
    pub(super) fn decode_into(&self, stored: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        if stored.len() != out.len() {
            return Err(CodecError::new(
                "bytes",
                format!(
                    "{} bytes stored, the chunk's shape and data type need {}",
                    stored.len(),
                    out.len()
                ),
            ));
        }
        if self.swaps() {
            nd::copy_swapped(stored, out, self.width);
        } else {
            out.copy_from_slice(stored);
        }
        Ok(())
    }

    /// Encodes decoded bytes (borrowed back when little-endian).
    pub(super) fn encode<'a>(&self, decoded: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        if !self.swaps() {
            return decoded;
        }
        let mut v = decoded.into_owned();
        nd::swap_in_place(&mut v, self.width);
        Cow::Owned(v)
    }
}
