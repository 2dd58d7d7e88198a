//! Minishard indexes: which byte range of a shard holds each chunk.

use std::ops::Range;

use super::{ShardingSpec, ROW};
use crate::codec::transport;
use crate::error::{Error, Result};

/// A decoded minishard index larger than this is refused (it would describe 11M chunks).
const MAX_MINISHARD_INDEX: usize = 256 << 20;

/// One chunk in a minishard index: its id and byte range in the shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// The chunk id.
    pub id: u64,
    /// `(start, end)`: the chunk's bytes in the shard file, end exclusive.
    pub range: (u64, u64),
}

/// A decoded minishard index, sorted by chunk id.
#[derive(Debug, Default)]
pub struct MinishardIndex(pub(super) Vec<ChunkEntry>);

impl MinishardIndex {
    /// The byte range of chunk `id` in the shard file, or `None` when it is absent.
    pub fn find(&self, id: u64) -> Option<Range<u64>> {
        self.0
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| self.0[i].range.0..self.0[i].range.1)
    }

    /// The byte ranges of its chunks in the shard file.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.0.iter().map(|e| e.range.0..e.range.1)
    }

    pub(super) fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<ChunkEntry>() + 64
    }
}

/// Decodes the minishard index `stored` of a shard file `file_len` bytes long (`url` names
/// it in errors).
pub(crate) fn decode_minishard_index(
    spec: &ShardingSpec,
    url: &str,
    stored: &[u8],
    file_len: u64,
) -> Result<MinishardIndex> {
    let plain;
    let bytes = if spec.minishard_index_gzip {
        plain = transport::decompress_small(url, stored, MAX_MINISHARD_INDEX)?;
        &plain[..]
    } else {
        stored
    };
    if bytes.len() % ROW != 0 {
        return Err(Error::decode(
            url,
            format!(
                "corrupt shard: a minishard index of {} bytes is not a multiple of 24",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / ROW;
    let word = |row: usize, i: usize| {
        let at = (row * n + i) * 8;
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let index_end = spec.index_len();
    let mut entries = Vec::with_capacity(n);
    let (mut id, mut end) = (0u64, index_end);
    for i in 0..n {
        id = id.wrapping_add(word(0, i));
        let size = word(2, i);
        // Offsets are relative to the end of the previous chunk; a writer that stores chunks
        // out of id order makes the delta negative (uint64 wraparound).
        let start = end.wrapping_add(word(1, i));
        match start.checked_add(size) {
            Some(stop) if stop <= file_len => {
                entries.push(ChunkEntry {
                    id,
                    range: (start, stop),
                });
                end = stop;
            }
            _ => {
                return Err(Error::decode(
                    url,
                    format!(
                        "corrupt shard: chunk {id} lies past the end of the {file_len}-byte file"
                    ),
                ))
            }
        }
    }
    check_no_overlap(url, &mut entries)?;
    entries.sort_unstable_by_key(|e| e.id);
    Ok(MinishardIndex(entries))
}

/// Errors when two chunk ranges overlap (sorts `entries` by offset).
pub(super) fn check_no_overlap(url: &str, entries: &mut [ChunkEntry]) -> Result<()> {
    entries.sort_unstable_by_key(|e| e.range);
    for w in entries.windows(2) {
        if w[1].range.0 < w[0].range.1 {
            return Err(Error::decode(
                url,
                format!(
                    "corrupt shard: chunks {} and {} overlap ({:?} and {:?})",
                    w[0].id, w[1].id, w[0].range, w[1].range
                ),
            ));
        }
    }
    Ok(())
}

/// The byte range of minishard `m`'s index from its 16-byte shard-index entry, checked
/// against the file size.
pub(super) fn minishard_range(
    spec: &ShardingSpec,
    url: &str,
    m: u64,
    entry: &[u8],
    file_len: u64,
) -> Result<Option<Range<u64>>> {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&entry[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (start, end) = (word(0), word(8));
    if start == end {
        return Ok(None);
    }
    let base = spec.index_len();
    match (base.checked_add(start), base.checked_add(end)) {
        (Some(a), Some(b)) if a < b && b <= file_len => Ok(Some(a..b)),
        _ => Err(Error::decode(
            url,
            format!(
                "corrupt shard: minishard {m}'s index [{start}, {end}) does not lie inside \
                 the {file_len}-byte file"
            ),
        )),
    }
}
