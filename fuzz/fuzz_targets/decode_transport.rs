
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_transport").expect("a harness")(data));
