//! Names that are one name on some peer's filesystem, end to end over a real sshd (see
//! `common/mod.rs`): `Readme` and `README` with one peer's tree on exFAT (case-insensitive),
//! and a name's NFC and NFD spellings on filesystems that keep them apart.

#[macro_use]
mod common;

use std::fs;

use common::exfat::Exfat;
use common::nfcfs::NfcFs;
use common::*;

/// The names in `peer`'s directory `rel` of the scene, sorted.
fn names(s: &Scene, peer: &str, rel: &str) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(s.path(peer, rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn names_one_on_an_exfat_peer_are_a_collision_there_and_kept_everywhere_else() {
    let s = scene!("names-exfat");
    let Some(_disk) = Exfat::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    let t = now() - 500;
    s.write(LOCAL, "d/Readme", "lower", t);
    s.write(LOCAL, "d/README", "UPPER", t + 1);
    s.write(LOCAL, "d/other", "x", t);
    let peers = ["alpha", "beta"];
    let both = vec![
        "README".to_string(),
        "Readme".to_string(),
        "other".to_string(),
    ];
    let check = |run: usize| {
        for p in [LOCAL, "beta"] {
            assert_eq!(names(&s, p, "d"), both, "run {run}: {p}");
            assert_eq!(s.read(p, "d/Readme").as_deref(), Some(&b"lower"[..]), "{p}");
            assert_eq!(s.read(p, "d/README").as_deref(), Some(&b"UPPER"[..]), "{p}");
        }
        // Neither reached exFAT, where one would have overwritten the other.
        assert_eq!(
            names(&s, "alpha", "d"),
            vec!["other".to_string()],
            "run {run}"
        );
    };
    let first = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    let told = stderr(&first);
    assert_eq!(first.status.code(), Some(3), "{told}");
    check(1);
    // The first sync there names what its filesystem lacks, case included.
    assert!(
        told.contains(&format!("{}: ", s.shown("alpha")))
            && told.contains("names that differ only in case (it is case-insensitive)"),
        "{told}"
    );
    let collision = |text: &str| {
        text.lines().any(|l| {
            l.contains("conflict:")
                && l.contains("README")
                && l.contains("Readme")
                && l.contains("are one name on synkt-alpha@")
        })
    };
    assert!(collision(&told), "{told}");
    // Run 2 in JSON, run 3 in -v: the same, nothing deleted, nothing flips.
    let second = s.synk(&peers, &[os("--json"), &s.arg("d")]);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    check(2);
    let doc: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    let problems = doc["roots"][0]["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["problem"] == "name-collision"
            && p["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("synkt-alpha@"))
            && p["names"] == serde_json::json!(["README", "Readme"])),
        "{doc}"
    );
    assert!(
        doc["conflicts"].as_array().is_some_and(|c| c
            .iter()
            .any(|l| collision(&format!("conflict: {}", l.as_str().unwrap())))),
        "{doc}"
    );
    let third = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    let said = format!("{}{}", stdout(&third), stderr(&third));
    assert_eq!(third.status.code(), Some(3), "{said}");
    check(3);
    assert!(!said.contains("deleted on"), "{said}");
    assert!(collision(&said), "{said}");
    // Renamed away on the client, the other goes to exFAT too.
    fs::rename(s.path(LOCAL, "d/README"), s.path(LOCAL, "d/README.old")).unwrap();
    let fixed = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/Readme").as_deref(), Some(&b"lower"[..]), "{p}");
        assert_eq!(
            s.read(p, "d/README.old").as_deref(),
            Some(&b"UPPER"[..]),
            "{p}"
        );
    }
}

#[test]
fn a_case_variant_only_the_exfat_peer_holds_stays_there_and_deletes_nothing() {
    let s = scene!("names-variant");
    let Some(_disk) = Exfat::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    let t = now() - 500;
    s.write(LOCAL, "d/Readme", "ours", t);
    s.write("beta", "d/Readme", "ours", t);
    s.write("alpha", "d/README", "exfat's", t + 10);
    let peers = ["alpha", "beta"];
    for run in 1..=3 {
        let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(3), "run {run}: {said}");
        assert!(!said.contains("deleted on"), "{said}");
        for p in [LOCAL, "beta"] {
            assert_eq!(
                names(&s, p, "d"),
                vec!["Readme".to_string()],
                "run {run}: {p}"
            );
            assert_eq!(s.read(p, "d/Readme").as_deref(), Some(&b"ours"[..]));
        }
        assert_eq!(
            names(&s, "alpha", "d"),
            vec!["README".to_string()],
            "run {run}"
        );
        assert_eq!(
            s.read("alpha", "d/README").as_deref(),
            Some(&b"exfat's"[..])
        );
    }
}

#[test]
fn nfc_and_nfd_spellings_are_two_names_where_no_filesystem_normalizes() {
    let s = scene!("names-nfc");
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let t = now() - 500;
    s.write(LOCAL, &format!("d/{nfc}"), "composed", t);
    s.write("beta", &format!("d/{nfd}"), "decomposed", t);
    let peers = ["alpha", "beta"];
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in [LOCAL, "alpha", "beta"] {
        let mut want = vec![nfc.to_string(), nfd.to_string()];
        want.sort();
        assert_eq!(names(&s, p, "d"), want, "{p}");
        assert_eq!(
            s.read(p, &format!("d/{nfc}")).as_deref(),
            Some(&b"composed"[..])
        );
        assert_eq!(
            s.read(p, &format!("d/{nfd}")).as_deref(),
            Some(&b"decomposed"[..])
        );
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_symlink_never_reaches_an_exfat_peer_and_is_named_once_a_run() {
    let s = scene!("names-symlink");
    let Some(_disk) = Exfat::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    let t = now() - 500;
    s.write(LOCAL, "d/f", "text", t);
    std::os::unix::fs::symlink("f", s.path(LOCAL, "d/l")).unwrap();
    std::os::unix::fs::symlink("f", s.path(LOCAL, "d/m")).unwrap();
    let peers = ["alpha", "beta"];
    for run in 1..=3 {
        let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
        let told = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "run {run}: {told}");
        let named: Vec<&str> = told
            .lines()
            .filter(|l| l.contains("its filesystem holds no symlinks: 2 symlinks not synced there"))
            .collect();
        assert_eq!(named.len(), 1, "run {run}: once, not per symlink: {told}");
        assert!(
            named[0].starts_with("synk: warning: synkt-alpha@"),
            "{told}"
        );
        assert!(
            !told.contains("not implemented"),
            "never tried there: {told}"
        );
        for p in [LOCAL, "beta"] {
            for l in ["d/l", "d/m"] {
                let m = fs::symlink_metadata(s.path(p, l)).unwrap();
                assert!(m.file_type().is_symlink(), "run {run}: {p}: {l}");
            }
        }
        assert_eq!(names(&s, "alpha", "d"), vec!["f".to_string()], "run {run}");
        assert_eq!(s.read("alpha", "d/f").as_deref(), Some(&b"text"[..]));
    }
}

#[test]
fn a_name_and_its_other_spelling_on_a_normalizing_peer_are_one_entry() {
    let s = scene!("names-normalizing");
    let Some(_fs) = NfcFs::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let t = now() - 500;
    // The client spells them decomposed (as a Mac does); alpha's filesystem keeps every name
    // composed, and holds the same two already.
    s.write(LOCAL, &format!("d/{nfd}"), "same", t);
    s.write(LOCAL, &format!("d/{nfd}.d/x"), "below", t);
    s.write("alpha", &format!("d/{nfc}"), "same", t);
    s.write("alpha", &format!("d/{nfc}.d/x"), "below", t);
    let peers = ["alpha", "beta"];
    let one_name = |run: &str| {
        for p in [LOCAL, "beta"] {
            let want = vec![nfd.to_string(), format!("{nfd}.d")];
            assert_eq!(names(&s, p, "d"), want, "{run}: {p} holds one spelling");
        }
        let want = vec![nfc.to_string(), format!("{nfc}.d")];
        assert_eq!(names(&s, "alpha", "d"), want, "{run}: alpha");
    };
    let first = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    one_name("first run");
    assert_eq!(
        s.read("beta", &format!("d/{nfd}.d/x")).as_deref(),
        Some(&b"below"[..])
    );
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
    // An edit on alpha reaches the others under their spelling, and one there comes back.
    s.write("alpha", &format!("d/{nfc}"), "edited on alpha", t + 10);
    let edit = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(edit.status.code(), Some(0), "{}", stderr(&edit));
    one_name("after an edit on alpha");
    for p in [LOCAL, "beta"] {
        assert_eq!(
            s.read(p, &format!("d/{nfd}")).as_deref(),
            Some(&b"edited on alpha"[..]),
            "{p}"
        );
    }
    s.write(LOCAL, &format!("d/{nfd}.d/x"), "edited here", t + 20);
    let back = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
    one_name("after an edit here");
    assert_eq!(
        s.read("alpha", &format!("d/{nfc}.d/x")).as_deref(),
        Some(&b"edited here"[..])
    );
    let last = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    assert_nothing_done(&last);
}
