//! Hard links end to end over a real sshd (see `common/mod.rs`): names that share an inode on
//! one peer share one on every other, the content crosses the wire once per target, a link
//! broken or made on one peer is a change that goes everywhere, and `--no-hard-links` syncs
//! every name as a file of its own.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::exfat::Exfat;
use common::*;

/// Content big enough that a second transfer would show in the bytes sent.
fn body() -> Vec<u8> {
    (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn nlink(p: &std::path::Path) -> u64 {
    fs::metadata(p).unwrap().nlink()
}

/// A tree on the local peer: `d/a` with two more names, `d/sub/b` and `d/z`.
fn linked_tree(s: &Scene) -> usize {
    let t = now() - 500;
    let content = body();
    s.write(LOCAL, "d/a", &content, t);
    fs::create_dir_all(s.path(LOCAL, "d/sub")).unwrap();
    fs::hard_link(s.path(LOCAL, "d/a"), s.path(LOCAL, "d/sub/b")).unwrap();
    fs::hard_link(s.path(LOCAL, "d/a"), s.path(LOCAL, "d/z")).unwrap();
    content.len()
}

fn assert_linked(s: &Scene, peer: &str) {
    let a = inode(&s.path(peer, "d/a"));
    for n in ["d/sub/b", "d/z"] {
        assert_eq!(inode(&s.path(peer, n)), a, "{peer}: {n} is a link to d/a");
    }
    assert_eq!(nlink(&s.path(peer, "d/a")), 3, "{peer}");
}

#[test]
fn hard_links_are_kept_on_every_target_with_one_transfer_each() {
    let s = scene!("links-kept");
    let size = linked_tree(&s);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    let out = s.synk(&peers, &[os("--json"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_linked(&s, p);
        assert_same_everywhere(&s, &all, "d/z");
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let literal = doc["roots"][0]["literal_bytes"].as_u64().unwrap();
    // One transfer per target: twice the content (three names each would be six times).
    assert!(
        literal < 3 * size as u64,
        "{literal} bytes sent for {size} bytes to two targets"
    );
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_link_broken_on_one_peer_goes_everywhere() {
    let s = scene!("links-broken");
    linked_tree(&s);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    // `cp --remove-destination d/a d/z` on beta: the same content, a file of its own.
    let z = s.path("beta", "d/z");
    let t = mtime(&z);
    fs::remove_file(&z).unwrap();
    s.write("beta", "d/z", body(), t);
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        let a = inode(&s.path(p, "d/a"));
        assert_ne!(inode(&s.path(p, "d/z")), a, "{p}: d/z is a file of its own");
        assert_eq!(inode(&s.path(p, "d/sub/b")), a, "{p}: d/sub/b still linked");
        assert_eq!(nlink(&s.path(p, "d/a")), 2, "{p}");
        no_conflict_copies(&s, p);
    }
    assert_same_everywhere(&s, &all, "d/z");
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_link_made_again_after_a_break_goes_everywhere() {
    let s = scene!("links-again");
    linked_tree(&s);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    let z = s.path("beta", "d/z");
    let t = mtime(&z);
    fs::remove_file(&z).unwrap();
    s.write("beta", "d/z", body(), t);
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    // `ln -f d/a d/z` on alpha: linked again everywhere.
    let z = s.path("alpha", "d/z");
    fs::remove_file(&z).unwrap();
    fs::hard_link(s.path("alpha", "d/a"), &z).unwrap();
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_linked(&s, p);
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

/// No conflict copy anywhere in the tree `d` on `peer`.
fn no_conflict_copies(s: &Scene, peer: &str) {
    for dir in ["d", "d/sub"] {
        for e in fs::read_dir(s.path(peer, dir)).unwrap() {
            let name = e.unwrap().file_name();
            assert!(
                !name.to_string_lossy().contains("synk-conflict"),
                "{peer}: {name:?}"
            );
        }
    }
}

#[test]
fn no_hard_links_syncs_every_name_as_a_file_of_its_own() {
    let s = scene!("links-off");
    linked_tree(&s);
    let peers = ["alpha"];
    let out = s.synk(&peers, &[os("--no-hard-links"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let a = inode(&s.path("alpha", "d/a"));
    for n in ["d/sub/b", "d/z"] {
        assert_ne!(inode(&s.path("alpha", n)), a, "{n}");
    }
    assert_same_everywhere(&s, &[LOCAL, "alpha"], "d/z");
    let again = s.synk(&peers, &[os("-v"), os("--no-hard-links"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_peer_without_hard_links_gets_independent_files_and_no_change_there() {
    let s = scene!("links-exfat");
    let Some(_disk) = Exfat::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    linked_tree(&s);
    let peers = ["alpha", "beta"];
    let first = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let told = stderr(&first);
    assert!(
        told.contains(&format!("{}: ", s.shown("alpha"))) && told.contains("hard links"),
        "the peer and what it lacks named: {told}"
    );
    // Modes aside, which exFAT does not keep.
    for n in ["d/a", "d/sub/b", "d/z"] {
        assert_eq!(s.read("alpha", n), Some(body()), "{n} on alpha");
    }
    assert_linked(&s, "beta");
    for _ in 0..2 {
        let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert_nothing_done(&again);
        assert!(!stderr(&again).contains("hard links"), "named once");
    }
    // The others keep their links.
    assert_linked(&s, LOCAL);
    assert_linked(&s, "beta");
}

#[test]
fn a_linked_file_edited_in_place_keeps_its_links_and_every_replaced_version() {
    let s = scene!("links-edit");
    linked_tree(&s);
    let peers = ["alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    // Written through one name: every name of the file holds the new content.
    fs::write(s.path(LOCAL, "d/sub/b"), "edited in place").unwrap();
    set_mtime(&s.path(LOCAL, "d/a"), now() - 10);
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in [LOCAL, "alpha", "beta"] {
        assert_linked(&s, p);
        assert_eq!(
            s.read(p, "d/z").as_deref(),
            Some(&b"edited in place"[..]),
            "{p}"
        );
    }
    // What each target held under each name is kept.
    for name in ["d/a", "d/sub/b", "d/z"] {
        let listed = s.synk(&peers, &[os("--versions"), &s.arg(name)]);
        assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
        let text = stdout(&listed);
        for p in ["alpha", "beta"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{}\t", s.shown(p)))),
                "{name} kept on {p}: {text}"
            );
        }
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_link_whose_first_name_went_in_an_earlier_window_is_still_a_link() {
    // More entries than the client decides at once (10,000): the tree goes in windows, and
    // `zz/late` comes in the last, its first name `a/f00000` in the first.
    let s = scene!("links-windows");
    let root = s.path(LOCAL, "big");
    fs::create_dir_all(root.join("a")).unwrap();
    fs::create_dir_all(root.join("zz")).unwrap();
    for i in 0..50_200 {
        fs::write(root.join(format!("a/f{i:05}")), format!("file {i}\n")).unwrap();
    }
    fs::hard_link(root.join("a/f00000"), root.join("zz/late")).unwrap();
    fs::hard_link(root.join("a/f00000"), root.join("a/f00000-too")).unwrap();
    let out = s.synk(&["alpha"], &[&s.arg("big")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = inode(&s.path("alpha", "big/a/f00000"));
    assert_eq!(
        inode(&s.path("alpha", "big/a/f00000-too")),
        first,
        "same window"
    );
    assert_eq!(
        inode(&s.path("alpha", "big/zz/late")),
        first,
        "a later window"
    );
    let again = s.synk(&["alpha"], &[os("-v"), &s.arg("big")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}

#[test]
fn a_link_made_on_one_peer_between_names_of_the_same_content_goes_everywhere() {
    let s = scene!("links-made");
    let t = now() - 500;
    s.write(LOCAL, "d/a", body(), t);
    s.write(LOCAL, "d/z", body(), t);
    let peers = ["alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    // `ln -f d/a d/z` on beta.
    let z = s.path("beta", "d/z");
    fs::remove_file(&z).unwrap();
    fs::hard_link(s.path("beta", "d/a"), &z).unwrap();
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(inode(&s.path(p, "d/z")), inode(&s.path(p, "d/a")), "{p}");
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_nothing_done(&again);
}
