
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("parse_zarr_shard_index").expect("a harness")(data));
