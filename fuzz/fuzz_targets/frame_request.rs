//! A request as a serve reads it: a length-prefixed frame, or a body alone. Garbage is an
//! error, never a panic, a hang or an allocation beyond the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synk::proto::{encode, read_frame, Request};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(req) = read_frame::<Request, _>(&mut r) {
        // What decodes encodes again, and reads back the same.
        let again = encode(&req).expect("a decoded request encodes");
        let back: Request = read_frame(&mut &again[..]).expect("and decodes again");
        assert_eq!(format!("{req:?}"), format!("{back:?}"));
    }
    let _ = postcard::from_bytes::<Request>(data);
});
