//! The `raw` encoding: little-endian voxels in Fortran `[x, y, z, c]` order, no header.
//! Decoding is a length check; the length rule lives in `transport::with_decompressed`.

use crate::error::Result;

use super::transport::{self, Compression};

/// Calls `f` with the voxels of a stored raw chunk that must hold `expected_len` bytes;
/// `declared` is the transport compression its key suffix or `Content-Encoding` names.
pub fn decode<R>(
    key: &str,
    stored: &[u8],
    declared: Compression,
    expected_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    transport::with_decompressed(key, stored, declared, expected_len, f)
}

/// The stored bytes of a raw chunk.
pub fn encode(voxels: &[u8], compression: Compression) -> Result<Vec<u8>> {
    compression.compress(voxels)
}
