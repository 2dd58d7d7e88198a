use super::encode::stream;
use super::*;

fn layout(shape: [usize; 3], dtype: DType) -> ChunkLayout {
    ChunkLayout {
        shape,
        channels: 1,
        dtype,
    }
}

/// A label field of `distinct` labels in blobs, offset to exercise wide ids.
fn field(shape: [usize; 3], distinct: u64, offset: u64, seed: u64) -> Vec<u64> {
    let n = shape.iter().product::<usize>() as u64;
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let blob = (i / 3 + (s % 2)) % distinct;
            blob.wrapping_add(offset)
        })
        .collect()
}

fn to_bytes(v: &[u64], dtype: DType) -> Vec<u8> {
    let w = dtype.itemsize();
    v.iter()
        .flat_map(|x| x.to_le_bytes()[..w].to_vec())
        .collect()
}

#[test]
fn round_trips_every_width_both_connectivities() {
    for dtype in [DType::U8, DType::U16, DType::U32, DType::U64] {
        let max = u64::MAX >> (64 - 8 * dtype.itemsize());
        for shape in [[1, 1, 1], [5, 4, 3], [13, 7, 5], [17, 1, 9], [1, 19, 2]] {
            for (distinct, offset) in [(1, 0), (2, 5), (7, max - 3), (1000, 1 << 53)] {
                let labels: Vec<u64> = field(shape, distinct, offset, 7)
                    .iter()
                    .map(|v| v & max)
                    .collect();
                let bytes = to_bytes(&labels, dtype);
                let l = layout(shape, dtype);
                let enc = encode(&bytes, &l).unwrap();
                assert_eq!(
                    decode(&enc, &l).unwrap(),
                    bytes,
                    "{dtype} {shape:?} {distinct}"
                );
                let typed: Vec<u64> = labels.clone();
                for (conn, z) in [(6, false), (4, false)] {
                    let s = match dtype.itemsize() {
                        1 => stream::<u8>(
                            &typed.iter().map(|&v| v as u8).collect::<Vec<_>>(),
                            shape,
                            [4, 4, 1],
                            conn,
                            z,
                        ),
                        2 => stream::<u16>(
                            &typed.iter().map(|&v| v as u16).collect::<Vec<_>>(),
                            shape,
                            [4, 4, 1],
                            conn,
                            z,
                        ),
                        4 => stream::<u32>(
                            &typed.iter().map(|&v| v as u32).collect::<Vec<_>>(),
                            shape,
                            [4, 4, 1],
                            conn,
                            z,
                        ),
                        _ => stream::<u64>(&typed, shape, [4, 4, 1], conn, z),
                    }
                    .unwrap();
                    assert_eq!(
                        decode(&s, &l).unwrap(),
                        bytes,
                        "{dtype} {shape:?} conn {conn}"
                    );
                }
            }
        }
    }
}

/// A 6×5×3 uint16 field (one label at the top of the range), and what PyPI compresso 3.3.3
/// wrote for it: `compress(a)`, `connectivity=6`, `random_access_z_index=False` and
/// `steps=(2, 3, 2)`.
const PYPI_LABELS: [u16; 90] = [
    65535, 7, 2007, 1007, 7, 2007, 1007, 7, 2007, 1007, 1007, 1007, 2007, 2007, 1007, 1007, 1007,
    2007, 1007, 2007, 1007, 1007, 7, 1007, 1007, 2007, 1007, 1007, 7, 1007, 2007, 2007, 1007, 7,
    1007, 7, 2007, 1007, 1007, 1007, 2007, 7, 7, 7, 7, 2007, 1007, 7, 7, 1007, 7, 2007, 2007, 7,
    2007, 2007, 2007, 7, 1007, 1007, 2007, 2007, 2007, 7, 1007, 1007, 2007, 1007, 2007, 1007, 2007,
    2007, 1007, 1007, 1007, 1007, 7, 2007, 1007, 7, 2007, 2007, 2007, 1007, 1007, 2007, 7, 7, 1007,
    1007,
];
const PYPI_DEFAULT: &[&str] = &[
    "6370736f01020600050003000404010c00000000000000090000003300000000",
    "00000004ef03ef03d70707000700d707ef03d707d707ef03ef03070000000100",
    "0b000c001313231311317fb3fefe0600ffff0e00de0703000e00de07f6030e00",
    "de07de07de07de07f603de070e00f603de070e00f6030e00f603f603f603f603",
    "de070e00de07f603f6030e00de07de070e00de070e00f603f603f603de07f603",
    "0100f603f6030e000e00de07de07de07f603de070e000a000400020010000c00",
    "06000300100008000400030002050500130f",
];
const PYPI_SIX: &[&str] = &[
    "6370736f000206000500030004040107000000000000000a0000004100000000",
    "00000006ef03ef03d707d707d707ef030700000001000b000d000f0013133333",
    "fefe7ffffeff0600ffff0e00de0703000e00de07f6030e00de07f603de07de07",
    "f603f603de07f603de07f603f6030e000300f6030500f603f6030e00f6030e00",
    "f6030e00f603f603de070e000e000e000e00de07f6030e000e00f6030e00de07",
    "de070e0001000e00de070e00f603f603f603de07f6030100f603f6030e000e00",
    "de07de07de07f60310000c000800020012000c00060003000e000a0004000300",
];
const PYPI_NO_INDEX: &[&str] = &[
    "6370736f00020600050003000404010c00000000000000090000003300000000",
    "00000004ef03ef03d70707000700d707ef03d707d707ef03ef03070000000100",
    "0b000c001313231311317fb3fefe0600ffff0e00de0703000e00de07f6030e00",
    "de07de07de07de07f603de070e00f60305000e00f6030e00f603f603f6030400",
    "de070e00de07f603f6030e00de07de070e00de070e00f603f603f603de07f603",
    "0100f603f6030e000e00de07de07de07f60304000e000a000400020010000c00",
    "060003001000080004000300",
];
const PYPI_STEPS_2_3_2: &[&str] = &[
    "6370736f01020600050003000203020c000000000000000c0000003300000000",
    "00000004ef03ef03d70707000700d707ef03d707d707ef03ef03070001000b00",
    "0f002e0037003f00c500cf00ca037b05bf0bc70f0600ffff0e00de0703000e00",
    "de07f6030e00de07de07de07de07f603de070e00f603de070e00f6030e00f603",
    "f603f603f603de070e00de07f603f6030e00de07de070e00de070e00f603f603",
    "f603de07f6030100f603f6030e000e00de07de07de07f603de07140016001200",
    "0e0010000c0006000a00080004000200030002050500130f",
];

fn unhex(parts: &[&str]) -> Vec<u8> {
    let s: String = parts.concat();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn matches_pypi_compresso_byte_for_byte_and_reads_its_variants() {
    let shape = [6, 5, 3];
    let l = layout(shape, DType::U16);
    let bytes: Vec<u8> = PYPI_LABELS.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(encode(&bytes, &l).unwrap(), unhex(PYPI_DEFAULT));
    let ours = [
        (stream(&PYPI_LABELS, shape, [4, 4, 1], 6, true), PYPI_SIX),
        (
            stream(&PYPI_LABELS, shape, [4, 4, 1], 4, false),
            PYPI_NO_INDEX,
        ),
        (
            stream(&PYPI_LABELS, shape, [2, 3, 2], 4, true),
            PYPI_STEPS_2_3_2,
        ),
    ];
    for (i, (ours, theirs)) in ours.into_iter().enumerate() {
        assert_eq!(ours.unwrap(), unhex(theirs), "variant {i}");
    }
    for theirs in [PYPI_DEFAULT, PYPI_SIX, PYPI_NO_INDEX, PYPI_STEPS_2_3_2] {
        assert_eq!(decode(&unhex(theirs), &l).unwrap(), bytes);
    }
}

#[test]
fn corrupt_streams_are_errors_not_panics() {
    let l = layout([6, 5, 3], DType::U16);
    for theirs in [PYPI_DEFAULT, PYPI_SIX, PYPI_NO_INDEX, PYPI_STEPS_2_3_2] {
        let good = unhex(theirs);
        for cut in [0, 4, 35, 36, 40, good.len() / 2] {
            assert!(decode(&good[..cut], &l).is_err(), "{cut}");
        }
        for i in 0..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let _ = decode(&bad, &l);
            }
        }
        // A header that disagrees with the layer.
        assert!(decode(&good, &layout([6, 5, 4], DType::U16)).is_err());
        assert!(decode(&good, &layout([6, 5, 3], DType::U32)).is_err());
        // Counts far past the end.
        for (at, width) in [(15, 8), (23, 4), (27, 8)] {
            let mut bad = good.clone();
            bad[at..at + width].fill(0xff);
            assert!(decode(&bad, &l).is_err());
        }
    }
}

/// Every window shape the format allows decodes what was encoded: windows wider than a
/// byte, windows straddling the 64-voxel words of the decoder's boundary bits, rows of
/// several words, deep windows across slices, both connectivities, with and without the z
/// index (without it, boundary voxels may copy the slices below and above).
#[test]
fn round_trips_every_window_shape_across_word_boundaries() {
    let cases: [([usize; 3], [usize; 3]); 8] = [
        ([130, 9, 4], [4, 4, 1]),
        ([130, 9, 4], [3, 5, 1]),
        ([70, 6, 5], [16, 4, 1]),
        ([129, 3, 3], [64, 1, 1]),
        ([65, 7, 6], [9, 7, 1]),
        ([66, 4, 5], [1, 1, 64]),
        ([200, 5, 4], [5, 2, 3]),
        ([64, 64, 3], [8, 8, 1]),
    ];
    for (shape, steps) in cases {
        for (distinct, seed) in [(2, 3), (9, 5), (5000, 11)] {
            let labels: Vec<u64> = field(shape, distinct, 1 << 60, seed);
            let bytes = to_bytes(&labels, DType::U64);
            let l = layout(shape, DType::U64);
            for (conn, z) in [(4, true), (4, false), (6, false)] {
                let s = stream::<u64>(&labels, shape, steps, conn, z).unwrap();
                assert_eq!(
                    decode(&s, &l).unwrap(),
                    bytes,
                    "{shape:?} steps {steps:?} {distinct} labels, conn {conn}, z index {z}"
                );
            }
        }
    }
}
