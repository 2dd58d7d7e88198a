//! The label section: which label each connected component of each slice has.
//!
//! Flat: `num labels u64 | sorted labels (stored width each) | components per slice
//! (byte width of sx·sy each) | one key per component into the labels (byte width of the
//! label count)`.
//!
//! Condensed pins: `background label | num labels u64 | labels | components per slice |
//! widths byte (pin count, depth, component id: log2 each, 2 bits apiece) | per label: pin
//! count, pin start indices (difference coded, byte width of sx·sy·sz), pin depths, component
//! count, component ids (difference coded)`. A pin labels the component under its start
//! voxel in `depth + 1` slices from its own; listed components get their label directly; all
//! others have the background label. Fixed-width pins are reserved (the package reads none).

use super::header::{byte_width, Header, CONDENSED_PINS, FLAT};

/// A pin, resolved to the slices it spans and the pixel it sits on.
#[derive(Debug, Clone, Copy)]
struct Pin {
    /// First slice.
    z0: u64,
    /// One past its last slice.
    z1: u64,
    /// Pixel within the slice.
    loc: u64,
    /// Index into the labels.
    label: u32,
}

#[derive(Debug)]
enum Form<'a> {
    Flat {
        keys: &'a [u8],
        key_width: usize,
    },
    Pins {
        background: u64,
        /// `(component id, label index)`, sorted by id (stable, so later labels win ties as
        /// they do in the package).
        singles: Vec<(u32, u32)>,
        pins: Vec<Pin>,
        /// Pin indices sorted by first slice.
        by_start: Vec<u32>,
    },
}

/// A parsed label section.
#[derive(Debug)]
pub(super) struct Labels<'a> {
    /// The labels as voxel values (sign-extended where the header says signed).
    uniq: Vec<u64>,
    /// Components before each slice: `sz + 1` running totals.
    starts: Vec<u64>,
    form: Form<'a>,
}

/// Where [`Labels::slice_table`] has got to: slices are asked for in order.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    single: usize,
    next_pin: usize,
    active: Vec<u32>,
}

/// A little-endian unsigned integer of `width` bytes.
fn uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
}

/// Reads the `width`-byte field at `*at`, advancing past it.
fn take<'a>(section: &'a [u8], at: &mut usize, len: usize, what: &str) -> Result<&'a [u8], String> {
    let bytes = at
        .checked_add(len)
        .and_then(|end| section.get(*at..end))
        .ok_or_else(|| format!("the label section breaks off in {what}"))?;
    *at += len;
    Ok(bytes)
}

impl<'a> Labels<'a> {
    /// Parses the label section of a stream with header `h`.
    pub fn parse(h: &Header, section: &'a [u8]) -> Result<Labels<'a>, String> {
        let sw = h.stored_width;
        let value = |b: &[u8]| -> u64 {
            let v = uint(b);
            if h.signed && sw < 8 {
                let shift = 64 - 8 * sw as u32;
                (((v << shift) as i64) >> shift) as u64
            } else {
                v
            }
        };
        let mut at = 0;
        let background = match h.label_format {
            FLAT => None,
            CONDENSED_PINS => Some(value(take(section, &mut at, sw, "the background")?)),
            1 => return Err("fixed-width pin labels are reserved; the package writes none".into()),
            f => return Err(format!("label format {f} is not defined")),
        };
        let n = uint(take(section, &mut at, 8, "the label count")?);
        let uniq_len = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(sw))
            .ok_or("the label count is too large")?;
        let uniq: Vec<u64> = take(section, &mut at, uniq_len, "the labels")?
            .chunks_exact(sw)
            .map(value)
            .collect();
        // The package computes these widths in 32-bit arithmetic.
        let cw = byte_width(u64::from(h.sx.wrapping_mul(h.sy)));
        let sz = h.sz as usize;
        let sxy = u64::from(h.sx) * u64::from(h.sy);
        let counts = take(
            section,
            &mut at,
            sz.checked_mul(cw).ok_or("too many slices")?,
            "the component counts",
        )?;
        let mut starts = Vec::with_capacity(sz + 1);
        let mut total = 0u64;
        starts.push(0);
        for c in counts.chunks_exact(cw) {
            let c = uint(c);
            if c > sxy {
                return Err(format!(
                    "a slice of {sxy} pixels cannot have {c} components"
                ));
            }
            total += c;
            starts.push(total);
        }
        let form = match background {
            None => {
                let key_width = byte_width(n);
                let keys = &section[at..];
                if (keys.len() / key_width) < total as usize {
                    return Err(format!(
                        "{} keys for {total} components",
                        keys.len() / key_width
                    ));
                }
                Form::Flat { keys, key_width }
            }
            Some(background) => {
                let widths = take(section, &mut at, 1, "the pin widths")?[0];
                let npw = 1usize << (widths & 0b11);
                let dw = 1usize << ((widths >> 2) & 0b11);
                let ccw = 1usize << ((widths >> 4) & 0b11);
                let iw = byte_width(u64::from(h.sx.wrapping_mul(h.sy).wrapping_mul(h.sz)));
                let mut singles = Vec::new();
                let mut pins = Vec::new();
                for label in 0..uniq.len() as u32 {
                    let count = uint(take(section, &mut at, npw, "a pin count")?);
                    let (len, depth_len) = usize::try_from(count)
                        .ok()
                        .and_then(|c| Some((c.checked_mul(iw)?, c.checked_mul(dw)?)))
                        .ok_or("a pin count overflows")?;
                    let indices = take(section, &mut at, len, "pin indices")?;
                    let depths = take(section, &mut at, depth_len, "pin depths")?;
                    let mut index = 0u64;
                    for (i, d) in indices.chunks_exact(iw).zip(depths.chunks_exact(dw)) {
                        index = index.wrapping_add(uint(i));
                        let z0 = index / sxy.max(1);
                        if z0 < u64::from(h.sz) {
                            pins.push(Pin {
                                z0,
                                z1: z0.saturating_add(uint(d)).saturating_add(1),
                                loc: index % sxy.max(1),
                                label,
                            });
                        }
                    }
                    let count = uint(take(section, &mut at, npw, "a component count")?);
                    let len = usize::try_from(count)
                        .ok()
                        .and_then(|c| c.checked_mul(ccw))
                        .ok_or("a component count overflows")?;
                    let mut id = 0u32;
                    for c in take(section, &mut at, len, "component ids")?.chunks_exact(ccw) {
                        // Component ids are 32-bit in the package.
                        id = id.wrapping_add(uint(c) as u32);
                        singles.push((id, label));
                    }
                }
                singles.sort_by_key(|s| s.0);
                let mut by_start: Vec<u32> = (0..pins.len() as u32).collect();
                by_start.sort_by_key(|&p| pins[p as usize].z0);
                Form::Pins {
                    background,
                    singles,
                    pins,
                    by_start,
                }
            }
        };
        Ok(Labels { uniq, starts, form })
    }

    /// The components the section gives slice `z`.
    pub fn components(&self, z: usize) -> u64 {
        self.starts[z + 1] - self.starts[z]
    }

    /// Fills `table` with the voxel value of each component of slice `z`; `id_at` gives the
    /// component of a pixel (`x + sx·y`). Slices must come in order, with one `cursor`.
    pub fn slice_table(
        &self,
        z: usize,
        id_at: &dyn Fn(u64) -> Option<u32>,
        cursor: &mut Cursor,
        table: &mut Vec<u64>,
    ) -> Result<(), String> {
        let lo = self.starts[z];
        let n = (self.starts[z + 1] - lo) as usize;
        table.clear();
        match &self.form {
            Form::Flat { keys, key_width } => {
                let kw = *key_width;
                let start = lo as usize * kw;
                let keys = &keys[start..start + n * kw];
                for k in keys.chunks_exact(kw) {
                    let k = uint(k);
                    let v = usize::try_from(k)
                        .ok()
                        .and_then(|k| self.uniq.get(k))
                        .ok_or_else(|| format!("key {k} of {} labels", self.uniq.len()))?;
                    table.push(*v);
                }
            }
            Form::Pins {
                background,
                singles,
                pins,
                by_start,
            } => {
                table.resize(n, *background);
                let hi = lo + n as u64;
                while cursor.single < singles.len() && u64::from(singles[cursor.single].0) < lo {
                    cursor.single += 1;
                }
                while let Some(&(id, label)) = singles.get(cursor.single) {
                    if u64::from(id) >= hi {
                        break;
                    }
                    table[(u64::from(id) - lo) as usize] = self.uniq[label as usize];
                    cursor.single += 1;
                }
                let z = z as u64;
                let mut added = false;
                while let Some(&p) = by_start.get(cursor.next_pin) {
                    if pins[p as usize].z0 > z {
                        break;
                    }
                    cursor.active.push(p);
                    cursor.next_pin += 1;
                    added = true;
                }
                cursor.active.retain(|&p| pins[p as usize].z1 > z);
                if added {
                    // The package applies pins in their stored order.
                    cursor.active.sort_unstable();
                }
                for &p in &cursor.active {
                    let pin = pins[p as usize];
                    if let Some(id) = id_at(pin.loc) {
                        if let Some(t) = table.get_mut(id as usize) {
                            *t = self.uniq[pin.label as usize];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
