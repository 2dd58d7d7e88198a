//! Ranges cut out of a whole value, for stores that can only hand out whole values (a
//! Python mapping, a test store holding one file). Such a store implements the range
//! methods of [`ReadStore`](super::ReadStore) by fetching the value and calling these, so
//! the cost is visible where it is paid.

use std::ops::Range;

use bytes::Bytes;

use super::Ranged;
use crate::error::{Error, Result};

/// `range` of `whole`, short (or empty) where it reaches past the end; no ETag.
pub fn range_of(whole: &Bytes, range: Range<u64>) -> Ranged {
    let size = whole.len() as u64;
    let (a, b) = (range.start.min(size), range.end.min(size));
    // Both are at most `whole.len()`, so they fit a usize.
    Ranged {
        bytes: whole.slice(a as usize..b.max(a) as usize),
        size,
        e_tag: None,
    }
}

/// Each of `ranges` of `whole`; one reaching past the end is an error naming `url`.
pub fn ranges_of(url: &str, whole: &Bytes, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
    ranges
        .iter()
        .map(|r| {
            let (a, b) = (usize::try_from(r.start), usize::try_from(r.end));
            match (a, b) {
                (Ok(a), Ok(b)) if a <= b && b <= whole.len() => Ok(whole.slice(a..b)),
                _ => Err(Error::store(
                    url,
                    format!("range {r:?} outside the object's {} bytes", whole.len()),
                )),
            }
        })
        .collect()
}
