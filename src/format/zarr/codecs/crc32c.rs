//! `crc32c`: appends the CRC-32C (Castagnoli) of the bytes as 4 little-endian bytes;
//! decoding checks and strips it without copying.

use super::{CodecError, CodecSpec};

/// Bytes the checksum adds.
pub(super) const LEN: usize = 4;

pub(super) fn spec() -> CodecSpec {
    CodecSpec::new("crc32c", [])
}

/// The bytes before the checksum, once it matches.
pub(super) fn check(input: &[u8]) -> Result<&[u8], CodecError> {
    let Some(split) = input.len().checked_sub(LEN) else {
        return Err(CodecError::new(
            "crc32c",
            format!("{} bytes is shorter than the 4-byte checksum", input.len()),
        ));
    };
    let (data, sum) = input.split_at(split);
    let stored = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    let actual = ::crc32c::crc32c(data);
    if stored != actual {
        return Err(CodecError::new(
            "crc32c",
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    Ok(data)
}

/// Appends the checksum.
pub(super) fn append(data: &mut Vec<u8>) {
    let sum = ::crc32c::crc32c(data);
    data.extend_from_slice(&sum.to_le_bytes());
}
