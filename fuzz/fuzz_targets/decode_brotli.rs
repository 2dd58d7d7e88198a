//! Fuzzes brotli transport decompression (a chunk found under `<key>.br` or with
//! `Content-Encoding: br`) around the raw and compressed_segmentation encodings: the
//! exact-size path and the bounded one (see `harness.rs` for what is checked).
#![no_main]

mod harness;

use bigarrays::{Compression, DType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::check_declared(data, "raw", Compression::Brotli, &[DType::U8, DType::U32], &[1, 2]);
    harness::check_declared(
        data,
        "compressed_segmentation",
        Compression::Brotli,
        &[DType::U32],
        &[1],
    );
});
