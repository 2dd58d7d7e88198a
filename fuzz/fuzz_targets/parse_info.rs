//! Fuzzes the `info` parser: any bytes give an `Info` or an error, never a panic; an `Info`
//! that parses writes JSON that parses again to the same scales.
#![no_main]

use bigarrays::codec;
use bigarrays::Info;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = Info::parse("fuzz/info", data) else {
        return;
    };
    for scale in &info.scales {
        let _ = codec::check(&scale.encoding, info.data_type, info.num_channels);
    }
    let again = Info::parse("fuzz/info", info.to_json().as_bytes());
    let again = again.expect("an info we parsed must parse again once written");
    assert_eq!(again.scales.len(), info.scales.len());
});
