//! The crackle header: 24 bytes in format version 0, 29 in version 1 (a 64-bit label
//! section length and a CRC-8 over the fields that say how to read the rest).
//!
//! ```text
//! 'crkl' | version u8 | format u16 | sx u32 | sy u32 | sz u32 | log2(grid) u8
//!        | label bytes (u32 in v0, u64 in v1) | crc8 (v1 only, over bytes 5..28)
//! format bits: 0-1 log2 data width, 2-3 log2 stored width, 4 permissible cracks,
//!              5-6 label format, 7 Fortran order, 8 signed, 9-12 markov order,
//!              13 labels not sorted
//! ```

/// The label section holds one key per connected component.
pub(super) const FLAT: u8 = 0;
/// The label section holds pins (the "condensed", variable-width form).
pub(super) const CONDENSED_PINS: u8 = 2;

/// Bytes of a version 0 header.
const V0_BYTES: usize = 24;
/// Bytes of a version 1 header.
pub(super) const V1_BYTES: usize = 29;
/// The grid size the package writes: one grid per slice for any slice it can hold.
const LOG2_GRID: u8 = 31;

/// A parsed header; sizes are as stored, checked against the layout by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub version: u8,
    pub label_format: u8,
    pub permissible: bool,
    pub signed: bool,
    pub data_width: usize,
    pub stored_width: usize,
    pub sx: u32,
    pub sy: u32,
    pub sz: u32,
    pub log2_grid: u8,
    pub num_label_bytes: u64,
    pub markov_order: u8,
    /// What is wrong with the header's CRC-8 (version 1), if anything. The caller reports
    /// it after decoding the rest, so that fuzzing reaches past it.
    pub crc_error: Option<String>,
}

impl Header {
    /// The header at the start of `b`; its CRC-8 is checked in version 1.
    pub fn parse(b: &[u8]) -> Result<Header, String> {
        if b.len() < V0_BYTES || &b[..4] != b"crkl" {
            return Err("not a crackle stream (no 'crkl' header)".into());
        }
        let version = b[4];
        let label_bytes = match version {
            0 => u64::from(u32_at(b, 20)),
            1 => {
                if b.len() < V1_BYTES {
                    return Err(format!("{} bytes cannot hold a v1 header", b.len()));
                }
                u64::from_le_bytes(b[20..28].try_into().unwrap_or_default())
            }
            v => return Err(format!("format version {v} is not 0 or 1")),
        };
        let format = u16::from_le_bytes([b[5], b[6]]);
        let crc_error = (version > 0 && crc8(&b[5..28]) != b[28]).then(|| {
            format!(
                "header CRC-8 mismatch: stored {}, computed {}",
                b[28],
                crc8(&b[5..28])
            )
        });
        Ok(Header {
            version,
            label_format: ((format >> 5) & 0b11) as u8,
            permissible: format & 0b1_0000 != 0,
            signed: (format >> 8) & 1 != 0,
            data_width: 1 << (format & 0b11),
            stored_width: 1 << ((format >> 2) & 0b11),
            sx: u32_at(b, 7),
            sy: u32_at(b, 11),
            sz: u32_at(b, 15),
            log2_grid: b[19],
            num_label_bytes: label_bytes,
            markov_order: ((format >> 9) & 0b1111) as u8,
            crc_error,
        })
    }

    /// A version 1 header as the package writes it: Fortran order, sorted labels, one grid
    /// per slice.
    pub fn v1(
        data_width: usize,
        stored_width: usize,
        permissible: bool,
        shape: [u32; 3],
        num_label_bytes: u64,
    ) -> Header {
        Header {
            version: 1,
            label_format: FLAT,
            permissible,
            signed: false,
            data_width,
            stored_width,
            sx: shape[0],
            sy: shape[1],
            sz: shape[2],
            log2_grid: LOG2_GRID,
            num_label_bytes,
            markov_order: 0,
            crc_error: None,
        }
    }

    /// The header's bytes (version 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let format: u16 = (self.data_width.trailing_zeros() as u16)
            | ((self.stored_width.trailing_zeros() as u16) << 2)
            | (u16::from(self.permissible) << 4)
            | (u16::from(self.label_format) << 5)
            | (1 << 7)
            | (u16::from(self.signed) << 8)
            | (u16::from(self.markov_order & 0b1111) << 9);
        let mut out = Vec::with_capacity(V1_BYTES);
        out.extend_from_slice(b"crkl");
        out.push(1);
        out.extend_from_slice(&format.to_le_bytes());
        for n in [self.sx, self.sy, self.sz] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(self.log2_grid);
        out.extend_from_slice(&self.num_label_bytes.to_le_bytes());
        let crc = crc8(&out[5..]);
        out.push(crc);
        out
    }

    /// Bytes of the header itself.
    pub fn header_bytes(&self) -> usize {
        if self.version == 0 {
            V0_BYTES
        } else {
            V1_BYTES
        }
    }

    /// Bytes of the z index: one u32 per slice, plus its CRC-32C in version 1.
    pub fn z_index_bytes(&self) -> usize {
        4 * (self.sz as usize + usize::from(self.version > 0))
    }

    /// Bytes of the stored markov model: 5 bits per row of `4^order` rows, as the
    /// package rounds them.
    pub fn markov_model_bytes(&self) -> usize {
        if self.markov_order == 0 {
            return 0;
        }
        (self.markov_rows() * 5 + 4) / 8
    }

    /// Rows of the markov model: one per context of `order` earlier moves.
    pub fn markov_rows(&self) -> usize {
        1usize << (2 * u32::from(self.markov_order.min(15)))
    }

    /// Whether every slice is one grid (the package never writes anything else; smaller
    /// grids are reserved for random access within a slice).
    pub fn one_grid_per_slice(&self) -> bool {
        let grid = 1u64.checked_shl(u32::from(self.log2_grid)).unwrap_or(0);
        grid >= u64::from(self.sx.max(self.sy))
    }
}

/// The package's CRC-8: polynomial 0xe7 (reflected), initial value 0xff.
pub(super) fn crc8(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xff;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xe7
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The little-endian u32 at `at`; the caller has checked the length.
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The byte width the package picks for values up to `x`.
pub(super) fn byte_width(x: u64) -> usize {
    if x <= u64::from(u8::MAX) {
        1
    } else if x <= u64::from(u16::MAX) {
        2
    } else if x <= u64::from(u32::MAX) {
        4
    } else {
        8
    }
}
