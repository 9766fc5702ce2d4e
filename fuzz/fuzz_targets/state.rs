//! A state file's bytes as a serve loads them: anything on disk decodes to records or to an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = synk::state::decode(data);
});
