//! Fuzzes the `crackle` decoder (see `bigarrays::fuzzing` for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_crackle").expect("a harness")(data));
