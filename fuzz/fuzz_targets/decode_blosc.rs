//! Any bytes, decoded as a `blosc` chunk of a shape taken from the first bytes, must give
//! voxels or an error: never a panic, an over-read or an unbounded allocation.
#![no_main]

use bigarrays::codec::{decode, ChunkLayout};
use bigarrays::format::precomputed::Encoding;
use bigarrays::DType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let dtypes = [DType::U8, DType::U16, DType::U32, DType::F64];
    let channels = [1, 2];
    let layout = ChunkLayout {
        shape: [
            usize::from(a % 64) + 1,
            usize::from(b % 64) + 1,
            usize::from(c % 16) + 1,
        ],
        channels: channels[usize::from(d >> 4) % channels.len()],
        dtype: dtypes[usize::from(d & 15) % dtypes.len()],
    };
    let encoding = Encoding::parse("blosc");
    if let Ok(n) = decode(&encoding, "fuzz", rest, &layout, |v| v.len()) {
        assert_eq!(n, layout.raw_len());
    }
});
