//! Fuzzes the `info` parser: any bytes give an `Info` or an error, never a panic; an `Info`
//! that parses writes JSON that parses again to the same scales.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("parse_info").expect("a harness")(data));
