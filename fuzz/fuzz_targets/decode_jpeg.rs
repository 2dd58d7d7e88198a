//! Fuzzes the `jpeg` decoder (see `harness.rs` for what is checked).
#![no_main]

mod harness;

use bigarrays::DType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(data, "jpeg", &[DType::U8], &[1, 3]));
