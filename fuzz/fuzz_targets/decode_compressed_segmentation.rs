//! Fuzzes the `compressed_segmentation` decoder (see `bigarrays::fuzzing` for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_compressed_segmentation").expect("a harness")(data));
