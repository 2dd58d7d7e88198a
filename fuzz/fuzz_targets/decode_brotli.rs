//! Fuzzes brotli transport decompression (a chunk found under `<key>.br` or with
//! `Content-Encoding: br`) around the raw and compressed_segmentation encodings: the
//! exact-size path and the bounded one (see `bigarrays::fuzzing` for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_brotli").expect("a harness")(data));
