//! Fuzzes the `compressed_segmentation` decoder (see `harness.rs` for what is checked).
#![no_main]

mod harness;

use bigarrays::DType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(
    data,
    "compressed_segmentation",
    &[DType::U32, DType::U64],
    &[1, 2, 3]
));
