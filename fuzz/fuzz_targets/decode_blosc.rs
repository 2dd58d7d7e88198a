//! Fuzzes the `blosc` decoder (see `harness.rs` for what is checked).
#![no_main]

mod harness;

use bigarrays::DType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(
    data,
    "blosc",
    &[DType::U8, DType::U16, DType::U32, DType::F64],
    &[1, 2]
));
