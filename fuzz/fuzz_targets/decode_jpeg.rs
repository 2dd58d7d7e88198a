//! Fuzzes the `jpeg` decoder (see `bigarrays::fuzzing` for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_jpeg").expect("a harness")(data));
