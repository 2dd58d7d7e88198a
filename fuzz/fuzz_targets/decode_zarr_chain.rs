
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("decode_zarr_chain").expect("a harness")(data));
