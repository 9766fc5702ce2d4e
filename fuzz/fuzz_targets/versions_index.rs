//! A versions index's bytes as a serve reads them: framed records, bad bytes skipped up to the
//! next record's magic, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let index = synk::versions::decode_index(data);
    // Each record took at least its 4-byte frame.
    assert!(index.records.len() * 4 <= data.len());
});
