//! Reading a small value (a metadata file) without downloading an oversized one: at most
//! `limit + 1` bytes are asked for, so a hostile 100 MB `zarr.json` or `info` costs one
//! short ranged read before it is refused.

use bytes::Bytes;

use super::ReadStore;
use crate::error::Result;

/// What [`get_small`] found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Small {
    /// Nothing is stored there.
    Absent,
    /// The value, at most the limit long.
    Value(Bytes),
    /// A value of more than the limit: its size in bytes (at least `limit + 1`).
    TooLarge(u64),
}

/// The value of `key` when it holds at most `limit` bytes, read with one ranged request of
/// `limit + 1` bytes. Where the ranged read fails (an HTTP server that ignores `Range`) or
/// comes back inconsistent, the size is probed first and the value fetched whole only when
/// it fits.
pub async fn get_small(store: &dyn ReadStore, key: &str, limit: usize) -> Result<Small> {
    let limit = limit as u64;
    if let Ok(found) = store.get_range(key, 0..limit + 1).await {
        let Some(ranged) = found else {
            return Ok(Small::Absent);
        };
        let got = ranged.bytes.len() as u64;
        if got > limit || ranged.size > limit {
            return Ok(Small::TooLarge(ranged.size.max(got)));
        }
        if got == ranged.size {
            return Ok(Small::Value(ranged.bytes));
        }
    }
    match store.size(key).await? {
        None => Ok(Small::Absent),
        Some(size) if size > limit => Ok(Small::TooLarge(size)),
        Some(_) => Ok(match store.get_bytes(key).await? {
            None => Small::Absent,
            Some(bytes) if bytes.len() as u64 > limit => Small::TooLarge(bytes.len() as u64),
            Some(bytes) => Small::Value(bytes),
        }),
    }
}
