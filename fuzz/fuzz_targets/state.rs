//! A state file's bytes as a serve loads them: anything on disk decodes to records or to an
//! error, never a panic, and the same whether read whole or in chunks with the records left in
//! the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = synk::state::decode(data);
    let file = std::env::temp_dir().join(format!("synk-fuzz-state-{}", std::process::id()));
    std::fs::write(&file, data).expect("a temp file");
    let chunked = synk::state::decode_at(&file);
    assert_eq!(whole, chunked);
});
