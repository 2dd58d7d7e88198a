//! Reused per-thread buffers for the three kinds of chunk-sized scratch a read or write
//! needs: a fresh multi-MiB allocation per chunk costs a page fault per 4 KiB page (or a
//! memset of reused heap), as much as decoding the chunk. Each kind has its own buffer, as
//! one may be in use while another is asked for (a write decodes an old chunk while
//! assembling the new one).

use std::cell::RefCell;
use std::thread::LocalKey;

/// Buffers up to this size are kept for the next chunk; larger ones are allocated each time.
const MAX_KEPT: usize = 16 << 20;

thread_local! {
    static ASSEMBLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with `len` bytes of unspecified contents in which writers assemble a chunk's
/// voxels.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with_reused(&ASSEMBLY, len, f)
}

/// As [`with_scratch`], for a decoder's output.
pub(crate) fn with_decoded<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with_reused(&DECODED, len, f)
}

/// As [`with_scratch`], for decompressed transport bytes.
pub(crate) fn with_inflated<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with_reused(&INFLATED, len, f)
}

/// This thread's `pool`, grown to `len`; a fresh zeroed allocation (mapped lazily, so a
/// generous `len` costs only what is written) when `len` is too large to keep or the pool
/// is already lent further up the stack.
fn with_reused<R>(
    pool: &'static LocalKey<RefCell<Vec<u8>>>,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> R {
    pool.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) if len <= MAX_KEPT => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            f(&mut buf[..len])
        }
        _ => f(&mut vec![0u8; len]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_oversized_requests_get_their_own_buffers() {
        let outer = with_scratch(8, |a| {
            a.fill(1);
            with_scratch(8, |b| {
                b.fill(2);
                b.len()
            }) + a.iter().map(|&v| v as usize).sum::<usize>()
        });
        assert_eq!(outer, 16);
        assert_eq!(with_inflated(MAX_KEPT + 1, |b| b.len()), MAX_KEPT + 1);
    }
}
