//! A response as the client reads it: a length-prefixed frame, or a body alone. Garbage is an
//! error, never a panic, a hang or an allocation beyond the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synk::proto::{encode, read_frame, Response};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(resp) = read_frame::<Response, _>(&mut r) {
        let again = encode(&resp).expect("a decoded response encodes");
        let back: Response = read_frame(&mut &again[..]).expect("and decodes again");
        assert_eq!(format!("{resp:?}"), format!("{back:?}"));
    }
    let _ = postcard::from_bytes::<Response>(data);
});
