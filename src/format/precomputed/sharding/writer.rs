//! Whole shard files, as writers build them and as read-modify-writes take them apart.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::index::{check_no_overlap, decode_minishard_index, minishard_range};
use super::{ShardingSpec, ENTRY, ROW};
use crate::codec::{Compression, GzipLevel};
use crate::error::{Error, Result};

/// Writers build the shard index in memory: at most 16 MiB of it.
const MAX_WRITE_MINISHARD_BITS: u32 = 20;

/// Every chunk of a whole shard file, id → stored bytes (still in `data_encoding`).
pub fn decode_shard(spec: &ShardingSpec, url: &str, file: &Bytes) -> Result<BTreeMap<u64, Bytes>> {
    let len = file.len() as u64;
    let index_len = spec.index_len();
    if len < index_len {
        return Err(Error::decode(
            url,
            format!("corrupt shard: {len} bytes, shorter than its {index_len}-byte index"),
        ));
    }
    let mut chunks = BTreeMap::new();
    let mut all = Vec::new();
    for m in 0..(1u64 << spec.minishard_bits) {
        let at = (m * ENTRY) as usize;
        let Some(r) = minishard_range(spec, url, m, &file[at..at + ENTRY as usize], len)? else {
            continue;
        };
        let index =
            decode_minishard_index(spec, url, &file[r.start as usize..r.end as usize], len)?;
        all.extend(index.0.iter().copied());
        for e in index.0 {
            chunks.insert(e.id, file.slice(e.range.0 as usize..e.range.1 as usize));
        }
    }
    check_no_overlap(url, &mut all)?;
    Ok(chunks)
}

/// A shard file holding `chunks` (id → bytes already in `data_encoding`), laid out as
/// TensorStore writes it: the shard index, then for each minishard its chunks in id order
/// followed by its index (gzipped at `level` where the spec says so).
pub fn encode_shard(
    spec: &ShardingSpec,
    chunks: &BTreeMap<u64, Bytes>,
    level: GzipLevel,
) -> Result<Vec<u8>> {
    if spec.minishard_bits > MAX_WRITE_MINISHARD_BITS {
        return Err(Error::invalid(format!(
            "sharding: minishard_bits {} is above {MAX_WRITE_MINISHARD_BITS}, too large a \
             shard index to write",
            spec.minishard_bits
        )));
    }
    let mut by_minishard: BTreeMap<u64, Vec<(u64, &Bytes)>> = BTreeMap::new();
    for (&id, bytes) in chunks {
        by_minishard
            .entry(spec.locate(id).1)
            .or_default()
            .push((id, bytes));
    }
    let index_len = spec.index_len() as usize;
    let data: usize = chunks.values().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(index_len + data + chunks.len() * ROW);
    out.resize(index_len, 0);
    for (m, list) in by_minishard {
        let n = list.len();
        let mut rows = vec![0u64; 3 * n];
        let (mut prev_id, mut prev_end) = (0u64, index_len as u64);
        for (i, (id, bytes)) in list.into_iter().enumerate() {
            let start = out.len() as u64;
            rows[i] = id.wrapping_sub(prev_id);
            rows[n + i] = start - prev_end;
            rows[2 * n + i] = bytes.len() as u64;
            out.extend_from_slice(bytes);
            prev_id = id;
            prev_end = out.len() as u64;
        }
        let mut index: Vec<u8> = rows.iter().flat_map(|w| w.to_le_bytes()).collect();
        if spec.minishard_index_gzip {
            index = Compression::Gzip.compress_at(&index, level)?;
        }
        let start = out.len() - index_len;
        out.extend_from_slice(&index);
        let end = out.len() - index_len;
        let at = (m * ENTRY) as usize;
        out[at..at + 8].copy_from_slice(&(start as u64).to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&(end as u64).to_le_bytes());
    }
    Ok(out)
}
