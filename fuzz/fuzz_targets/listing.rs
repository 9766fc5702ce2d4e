//! A scan's answer as the client checks it (`synk::peer::check::check_scan`): the frames a
//! peer sent for a scan of `~/.profile`, `~/notes` and `/srv/data` from a peer whose home is
//! `/h`. Whatever it accepts keeps the client's promises: each root is the one asked for,
//! every entry path stays below its root within the system's limits and is none of synk's
//! own names, a root held as a single file has nothing beside it but its own conflict
//! copies, a hard link is a file's, to an earlier entry path of the same root, and what a
//! root's filesystem holds is told at most once, with an mtime step some filesystem has.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synk::model::Kind;
use synk::paths::{RootSpec, WirePath};
use synk::peer::check::{check_entry_path, check_scan, expected_root};
use synk::proto::{read_frame, Response};

fuzz_target!(|data: &[u8]| {
    let roots = [
        RootSpec::Home(WirePath::from(".profile")),
        RootSpec::Home(WirePath::from("notes")),
        RootSpec::Absolute(WirePath::from("/srv/data")),
    ];
    let home = WirePath::from("/h");
    let mut frames = Vec::new();
    let mut r = data;
    while let Ok(f) = read_frame::<Response, _>(&mut r) {
        frames.push(f);
    }
    let Ok(scans) = check_scan(&roots, &home, frames) else {
        return;
    };
    assert_eq!(scans.len(), roots.len());
    for (spec, scan) in roots.iter().zip(&scans) {
        let Ok(s) = scan else { continue };
        assert_eq!(Some(&s.abs), expected_root(spec, &home).as_ref());
        if let Some(h) = &s.holds {
            assert!((1..=synk::proto::MAX_MTIME_STEP).contains(&h.mtime_step), "{h:?}");
        }
        for (rel, seen) in &s.listing {
            assert!(check_entry_path(rel).is_ok(), "{rel:?}");
            // A hard link is a file's, to an earlier entry path of its root.
            if let Ok(Some(m)) = &seen.state {
                if let Some(to) = &m.extra.link {
                    assert!(m.kind == Kind::File && to < rel, "{rel:?} -> {to:?}");
                    assert!(check_entry_path(to).is_ok() && !to.is_empty(), "{to:?}");
                }
            }
        }
        for i in 0..s.briefs.len() {
            let rel = WirePath(s.briefs.rel(i).to_vec());
            assert!(!rel.is_empty() && check_entry_path(&rel).is_ok(), "{rel:?}");
        }
        let own_file = matches!(
            s.listing.get(&WirePath::default()).map(|seen| &seen.state),
            Some(Ok(Some(m))) if m.kind != Kind::Dir
        );
        if own_file {
            let name = spec.file_name().expect("a file root has a name");
            for rel in s.listing.keys().filter(|r| !r.is_empty()) {
                assert!(
                    synk::names::conflict_of(rel.as_bytes(), name).is_some(),
                    "{rel:?} beside {spec}"
                );
            }
        }
    }
});
