//! An answer to an Attrs request as the client checks it (`synk::peer::check::take_attrs`):
//! whatever it accepts is of entries asked about, each once, within synk's bounds for
//! extended attributes, of the classes asked for, sorted by name.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use synk::extra::xattr::{check, class_of, Class};
use synk::paths::WirePath;
use synk::peer::check::take_attrs;
use synk::proto::{read_frame, Response};

fuzz_target!(|data: &[u8]| {
    let asked: HashSet<WirePath> = ["a", "b/c", "d"].into_iter().map(WirePath::from).collect();
    let mut left = asked.clone();
    let classes = [Class::User, Class::Acl];
    let mut r = data;
    while let Ok(Response::Attrs(got)) = read_frame::<Response, _>(&mut r) {
        let Ok(took) = take_attrs(got, &mut left, &classes) else {
            return;
        };
        for (rel, list) in took {
            assert!(asked.contains(&rel) && !left.contains(&rel), "{rel:?}");
            assert!(check(&list).is_ok());
            assert!(list
                .iter()
                .all(|x| class_of(&x.name).is_some_and(|c| classes.contains(&c))));
            assert!(list.windows(2).all(|w| w[0].name < w[1].name));
        }
    }
});
