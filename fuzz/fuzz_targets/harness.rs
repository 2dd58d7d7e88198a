//! What every decoder target checks: any bytes, decoded as a chunk of a shape, channel count
//! and dtype taken from the first four bytes, give exactly that chunk's voxels or an error —
//! never a panic, an over-read or an unbounded allocation.

use bigarrays::codec::{decode_as, ChunkLayout};
use bigarrays::format::precomputed::Encoding;
use bigarrays::{Compression, DType};

#[allow(dead_code)] // not every target uses both entry points
pub fn check(data: &[u8], encoding: &str, dtypes: &[DType], channels: &[usize]) {
    check_declared(data, encoding, Compression::None, dtypes, channels)
}

/// [`check`] for bytes whose key suffix or `Content-Encoding` declared `declared`.
pub fn check_declared(
    data: &[u8],
    encoding: &str,
    declared: Compression,
    dtypes: &[DType],
    channels: &[usize],
) {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let layout = ChunkLayout {
        shape: [
            usize::from(a % 64) + 1,
            usize::from(b % 64) + 1,
            usize::from(c % 16) + 1,
        ],
        channels: channels[usize::from(d >> 4) % channels.len()],
        dtype: dtypes[usize::from(d & 15) % dtypes.len()],
    };
    let encoding = Encoding::parse(encoding);
    if let Ok(n) = decode_as(&encoding, "fuzz", rest, declared, &layout, |v| v.len()) {
        assert_eq!(n, layout.raw_len());
    }
}
