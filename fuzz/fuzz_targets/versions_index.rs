//! A versions index's bytes as a serve reads them: framed records, the list ending at the
//! first torn or undecodable one, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kept = synk::versions::decode_index(data);
    // Each record took at least its 4-byte frame.
    assert!(kept.len() * 4 <= data.len());
});
