//! Fuzzes the `png` decoder (see `harness.rs` for what is checked).
#![no_main]

mod harness;

use bigarrays::DType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(data, "png", &[DType::U8, DType::U16], &[1, 2, 3, 4]));
