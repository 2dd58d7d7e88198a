//! Fuzzes the Zarr metadata parsers (v2 and v3 arrays, groups, OME-Zarr multiscales): any
//! bytes give metadata or an error, never a panic; metadata that parses writes files that
//! parse again to the same metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bigarrays::fuzzing::target("parse_zarr_metadata").expect("a harness")(data));
