//! Unit tests: streams the PyPI package wrote (crackle-codec 0.55), round trips over random
//! label fields, and hostile streams (every truncation and byte flip of real ones).

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `crackle.compress` of a 4x3x2 uint32 field (defaults: flat labels, no markov model).
const DEFAULT_4X3X2: &str = "63726b6c0182000400000003000000020000001f1100000000000000ae0a000000\
    0900000040856a7703000000000000000005070202000102000400000001010101ceb30400000001000101b6c0\
    55ae660373d6308cd06ae3";

fn default_4x3x2() -> Vec<u8> {
    let mut a = [0u32; 24];
    a[1 + 4] = 5;
    a[2 + 4] = 5;
    a[12] = 7;
    a.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `crackle.compress(a, allow_pins=1, markov_model_order=2)` of a 6x5x4 uint16 field:
/// condensed pins, impermissible cracks, a markov model.
const PINS_MARKOV_6X5X4: &str =
    "63726b6c01c5040600000005000000040000001f2400000000000000fb10000000\
    0f0000000e0000000e000000d9443e8fd00703000000000000000700e803b80b07060404000001000\
    11c03020306010103020406ef96da6eb9c415d862b90500000001000201012e14096fc20616040000\
    00010001022a12de840d2c00050000000100020202f24c15a800050000000100020202f24c15a800f\
    27dff302972eac231b1b24a980f8f8e980f8f8e";

const PINS_MARKOV_VALUES: [u16; 120] = [
    7, 3000, 2000, 2000, 2000, 2000, 3000, 3000, 2000, 2000, 2000, 2000, 1000, 1000, 3000, 3000,
    1000, 1000, 1000, 1000, 3000, 3000, 1000, 1000, 2000, 2000, 1000, 1000, 1000, 1000, 3000, 3000,
    2000, 2000, 2000, 2000, 3000, 3000, 2000, 2000, 2000, 2000, 1000, 1000, 3000, 3000, 1000, 1000,
    1000, 1000, 3000, 3000, 1000, 1000, 2000, 2000, 1000, 1000, 1000, 1000, 3000, 3000, 1000, 1000,
    2000, 2000, 3000, 3000, 1000, 1000, 2000, 2000, 3000, 3000, 1000, 1000, 1000, 1000, 3000, 3000,
    1000, 1000, 1000, 1000, 2000, 2000, 2000, 2000, 1000, 1000, 3000, 3000, 1000, 1000, 2000, 2000,
    3000, 3000, 1000, 1000, 2000, 2000, 3000, 3000, 1000, 1000, 1000, 1000, 3000, 3000, 1000, 1000,
    1000, 1000, 2000, 2000, 2000, 2000, 1000, 1000,
];

fn layout(shape: [usize; 3], dtype: DType) -> ChunkLayout {
    ChunkLayout {
        shape,
        channels: 1,
        dtype,
    }
}

fn decode_vec(bytes: &[u8], layout: &ChunkLayout) -> Result<Vec<u8>, CrackleDecodeError> {
    let mut out = vec![0u8; layout.raw_len()];
    decode_into(bytes, layout, &mut out)?;
    Ok(out)
}

#[test]
fn reads_and_writes_the_packages_default_stream() {
    let l = layout([4, 3, 2], DType::U32);
    let stream = hex(DEFAULT_4X3X2);
    assert_eq!(header::crc8(&stream[5..28]), stream[28]);
    assert_eq!(decode_vec(&stream, &l).unwrap(), default_4x3x2());
    assert_eq!(encode_chunk(&default_4x3x2(), &l).unwrap(), stream);
}

#[test]
fn reads_the_packages_pins_and_markov_stream() {
    let l = layout([6, 5, 4], DType::U16);
    let stream = hex(PINS_MARKOV_6X5X4);
    let h = Header::parse(&stream).unwrap();
    assert_eq!(
        (h.label_format, h.permissible, h.markov_order),
        (2, false, 2)
    );
    let want: Vec<u8> = PINS_MARKOV_VALUES
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(decode_vec(&stream, &l).unwrap(), want);
}

/// A small deterministic generator (xorshift), so the tests need no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A label field of `shape`: `kind` 0 all equal, 1 all distinct, 2 noise over a few labels,
/// 3 blocks of few labels, 4 blocks of many labels above 2^53.
fn field(rng: &mut Rng, shape: [usize; 3], kind: u64, width: usize) -> Vec<u64> {
    let n = shape.iter().product::<usize>();
    let top = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let palette: Vec<u64> = (0..8)
        .map(|_| match kind {
            4 => ((1u64 << 53) + rng.below(1 << 60)) & top,
            _ => rng.next() & top,
        })
        .collect();
    let block = [1 + rng.below(4) as usize, 1 + rng.below(4) as usize, 1];
    (0..n)
        .map(|i| {
            let (x, y, z) = (
                i % shape[0],
                i / shape[0] % shape[1],
                i / shape[0] / shape[1],
            );
            match kind {
                0 => palette[0],
                1 => i as u64 & top,
                2 => palette[rng.below(3) as usize],
                _ => {
                    let cell = (x / block[0]) * 31 + (y / block[1]) * 17 + z * 7;
                    palette[cell % palette.len()]
                }
            }
        })
        .collect()
}

#[test]
fn round_trips_random_fields_of_every_width() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (i, dtype) in [DType::U8, DType::U16, DType::U32, DType::U64]
        .into_iter()
        .cycle()
        .take(80)
        .enumerate()
    {
        let shape = [
            1 + rng.below(20) as usize,
            1 + rng.below(20) as usize,
            1 + rng.below(5) as usize,
        ];
        let width = dtype.itemsize();
        let kind = (i as u64 / 4) % 5;
        let labels = field(&mut rng, shape, kind, width);
        let voxels: Vec<u8> = labels
            .iter()
            .flat_map(|v| v.to_le_bytes()[..width].to_vec())
            .collect();
        let l = layout(shape, dtype);
        let stream = encode_chunk(&voxels, &l).unwrap();
        assert_eq!(
            decode_vec(&stream, &l).unwrap(),
            voxels,
            "{shape:?} {dtype} kind {kind}"
        );
    }
}

#[test]
fn hostile_streams_are_errors_never_panics() {
    let streams = [
        (hex(DEFAULT_4X3X2), layout([4, 3, 2], DType::U32)),
        (hex(PINS_MARKOV_6X5X4), layout([6, 5, 4], DType::U16)),
    ];
    for (stream, l) in &streams {
        for cut in 0..stream.len() {
            assert!(decode_vec(&stream[..cut], l).is_err(), "cut at {cut}");
        }
        for at in 0..stream.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = stream.clone();
                bad[at] ^= flip;
                // Most flips fail a CRC; none may panic.
                let _ = decode_vec(&bad, l);
            }
        }
        // The shape or width of the layer disagreeing with the stream's.
        assert!(decode_vec(stream, &layout([3, 3, 2], l.dtype)).is_err());
        assert!(decode_vec(stream, &layout(l.shape, DType::U64)).is_err());
    }
}

/// Rewrites a header's fields and its CRC, so the checks past the header are reached.
fn with_header(stream: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut out = stream.to_vec();
    edit(&mut out);
    out[28] = header::crc8(&out[5..28]);
    out
}

#[test]
fn crafted_headers_allocate_nothing_they_do_not_hold() {
    let stream = hex(DEFAULT_4X3X2);
    let l = layout([4, 3, 2], DType::U32);
    // A markov model of order 15 (671 MB) that the data does not hold.
    let markov = with_header(&stream, |b| b[6] |= 0b1111 << 1);
    assert!(decode_vec(&markov, &l).is_err());
    // A label section claimed far longer than the data.
    let labels = with_header(&stream, |b| {
        b[20..28].copy_from_slice(&u64::MAX.to_le_bytes())
    });
    assert!(decode_vec(&labels, &l).is_err());
    // A huge slice claimed by a layer of that shape is refused by the data's lengths.
    let big = with_header(&stream, |b| {
        b[7..11].copy_from_slice(&60_000u32.to_le_bytes())
    });
    let err = decode_vec(&big, &layout([60_000, 3, 2], DType::U32)).unwrap_err();
    assert!(err.to_string().contains("crackle"), "{err}");
    // Several grids per slice and fixed-width pins are named.
    let grid = with_header(&stream, |b| b[19] = 1);
    assert!(decode_vec(&grid, &l)
        .unwrap_err()
        .to_string()
        .contains("grid"));
    let pins = with_header(&stream, |b| b[5] = (b[5] & !0b0110_0000) | (1 << 5));
    assert!(decode_vec(&pins, &l)
        .unwrap_err()
        .to_string()
        .contains("fixed-width"));
}

#[test]
fn refuses_floats_signed_and_channels_naming_the_field() {
    assert_eq!(Crackle.check(DType::F32, 1).unwrap_err().field, "data_type");
    assert_eq!(Crackle.check(DType::I32, 1).unwrap_err().field, "data_type");
    assert_eq!(
        Crackle.check(DType::U32, 2).unwrap_err().field,
        "num_channels"
    );
    assert!(Crackle.check(DType::U64, 1).is_ok());
}
