//! What `rsync -a` keeps besides content, end to end over a real sshd (see `common/mod.rs`):
//! a change to an entry's metadata alone is a change, it propagates, it never makes a
//! conflict copy, and the run after it is quiet.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::exfat::Exfat;
use common::*;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// No conflict copy anywhere below the scene's tree `rel` on `peer`.
fn no_conflict_copies(s: &Scene, peer: &str, rel: &str) {
    for e in fs::read_dir(s.path(peer, rel)).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().contains("synk-conflict"),
            "{peer}: {name:?}"
        );
    }
}

#[test]
fn a_mode_change_after_a_sync_goes_everywhere_with_its_old_value_named() {
    let s = scene!("meta-chmod");
    let t = now() - 500;
    s.write(LOCAL, "d/run.sh", "#!/bin/sh\n", t);
    chmod(&s.path(LOCAL, "d/run.sh"), 0o644);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    chmod(&s.path("beta", "d/run.sh"), 0o750);
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(mode(&s.path(p, "d/run.sh")), 0o750, "on {p}");
        no_conflict_copies(&s, p, "d");
    }
    assert_same_everywhere(&s, &all, "d/run.sh");
    let said = stdout(&out);
    assert!(
        said.contains("mode 0644 -> 0750"),
        "the old mode named: {said}"
    );
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0));
    assert_nothing_done(&again);
}

#[test]
fn a_touch_alone_goes_everywhere_and_json_names_the_old_time() {
    let s = scene!("meta-touch");
    let t = now() - 5000;
    s.write(LOCAL, "d/f", "same", t);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    // An older time than before: a touch wins by being the change, not by being newer.
    set_mtime(&s.path("alpha", "d/f"), t - 100);
    let out = s.synk(&peers, &[os("--json"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(mtime(&s.path(p, "d/f")), t - 100, "on {p}");
        no_conflict_copies(&s, p, "d");
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = doc["roots"][0]["entries"].as_array().expect("entries");
    let f = entries
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with("f")))
        .expect("the touched file");
    let changes = f["metadata"].as_array().expect("metadata changes");
    assert!(
        changes
            .iter()
            .any(|c| c["field"] == "mtime" && c["peer"] == LOCAL && c["was"] != c["now"]),
        "{f}"
    );
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_nothing_done(&again);
}

#[test]
fn new_content_on_one_peer_and_a_mode_change_on_another_merge() {
    let s = scene!("meta-merge");
    let t = now() - 500;
    s.write(LOCAL, "d/f", "v1", t);
    chmod(&s.path(LOCAL, "d/f"), 0o644);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    s.write("alpha", "d/f", "v2, longer", t + 100);
    chmod(&s.path("beta", "d/f"), 0o600);
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(s.read(p, "d/f").as_deref(), Some(&b"v2, longer"[..]), "{p}");
        assert_eq!(mode(&s.path(p, "d/f")), 0o600, "the new mode on {p}");
        assert_eq!(mtime(&s.path(p, "d/f")), t + 100, "the new mtime on {p}");
        no_conflict_copies(&s, p, "d");
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_nothing_done(&again);
}

#[test]
fn directory_and_symlink_times_are_kept_and_a_new_entry_moves_its_directory() {
    let s = scene!("meta-dirs");
    let t = now() - 5000;
    s.write(LOCAL, "d/sub/f", "x", t);
    std::os::unix::fs::symlink("sub/f", s.path(LOCAL, "d/link")).unwrap();
    set_mtime(&s.path(LOCAL, "d/link"), t - 7);
    set_mtime(&s.path(LOCAL, "d/sub"), t - 20);
    chmod(&s.path(LOCAL, "d/sub"), 0o750);
    set_mtime(&s.path(LOCAL, "d"), t - 30);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    assert_eq!(s.synk(&peers, &[&s.arg("d")]).status.code(), Some(0));
    for p in all {
        assert_eq!(mtime(&s.path(p, "d/link")), t - 7, "symlink on {p}");
        assert_eq!(mtime(&s.path(p, "d/sub")), t - 20, "directory on {p}");
        assert_eq!(mode(&s.path(p, "d/sub")), 0o750, "directory on {p}");
        assert_eq!(mtime(&s.path(p, "d")), t - 30, "root on {p}");
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_nothing_done(&again);
    // A file made in a directory on one peer: its directory's new mtime goes with it.
    s.write("beta", "d/sub/g", "y", t);
    let made = mtime(&s.path("beta", "d/sub"));
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(mtime(&s.path(p, "d/sub")), made, "directory on {p}");
        assert_eq!(mode(&s.path(p, "d/sub")), 0o750, "directory on {p}");
    }
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_nothing_done(&again);
}

/// Bytes of disk `p` takes.
fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().blocks() * 512
}

/// A 64 MiB image holding 8 KiB of data in two places, with holes before, between and after.
fn sparse_image(p: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = fs::File::create(p).unwrap();
    for at in [5 << 20, 40 << 20] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0xa5; 4096]).unwrap();
    }
    f.set_len(64 << 20).unwrap();
}

#[test]
fn holes_stay_holes_with_either_copier() {
    for copier in ["rsync", "stream"] {
        let s = scene!(&format!("meta-sparse-{copier}"));
        let t = now() - 500;
        let img = s.path(LOCAL, "d/disk.img");
        sparse_image(&img);
        set_mtime(&img, t);
        s.own(LOCAL, &img);
        // A dense file beside it: the same rsync job, split into a run without `--sparse`.
        let dense = s.path(LOCAL, "d/dense.bin");
        fs::write(
            &dense,
            (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        s.own(LOCAL, &dense);
        assert!(disk_usage(&img) < 1 << 20, "the image is sparse here");
        // alpha gets it from localhost; beta from alpha where alpha is the master.
        let peers = ["alpha", "beta"];
        let out = s.synk(&peers, &[os("--copier"), os(copier), &s.arg("d")]);
        assert_eq!(out.status.code(), Some(0), "{copier}: {}", stderr(&out));
        for p in peers {
            let there = s.path(p, "d/disk.img");
            assert_eq!(sha512(&there), sha512(&img), "{copier}: content on {p}");
            assert_eq!(fs::metadata(&there).unwrap().len(), 64 << 20);
            let used = disk_usage(&there);
            assert!(used < 1 << 20, "{copier}: {p} holds {used} bytes on disk");
            let d = s.path(p, "d/dense.bin");
            assert_eq!(sha512(&d), sha512(&dense), "{copier}: dense file on {p}");
        }
        // A change in the middle: still sparse wherever it lands, from another master.
        let alpha = s.path("alpha", "d/disk.img");
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::OpenOptions::new().write(true).open(&alpha).unwrap();
            f.seek(SeekFrom::Start(20 << 20)).unwrap();
            f.write_all(b"changed").unwrap();
        }
        set_mtime(&alpha, t + 10);
        let out = s.synk(&peers, &[os("--copier"), os(copier), &s.arg("d")]);
        assert_eq!(out.status.code(), Some(0), "{copier}: {}", stderr(&out));
        for p in [LOCAL, "beta"] {
            let there = s.path(p, "d/disk.img");
            assert_eq!(sha512(&there), sha512(&alpha), "{copier}: content on {p}");
            let used = disk_usage(&there);
            assert!(used < 1 << 20, "{copier}: {p} holds {used} bytes on disk");
        }
        // Moved: each peer makes the new name from the copy it holds, still sparse.
        let want = sha512(&alpha);
        fs::create_dir_all(s.path(LOCAL, "d/vm")).unwrap();
        fs::rename(s.path(LOCAL, "d/disk.img"), s.path(LOCAL, "d/vm/disk.img")).unwrap();
        let out = s.synk(&peers, &[os("--copier"), os(copier), &s.arg("d")]);
        assert_eq!(out.status.code(), Some(0), "{copier}: {}", stderr(&out));
        for p in peers {
            let there = s.path(p, "d/vm/disk.img");
            assert_eq!(sha512(&there), want, "{copier}: moved on {p}");
            let used = disk_usage(&there);
            assert!(
                used < 1 << 20,
                "{copier}: moved, {p} holds {used} bytes on disk"
            );
        }
    }
}

/// A small file that is all hole (`truncate -s 10K`) goes in the serve channel like any small
/// file, arrives with its content, and its master's connection survives it.
#[test]
fn a_small_file_that_is_all_hole_travels_in_the_serve_channel() {
    let s = scene!("meta-small-hole");
    let t = now() - 500;
    let f = s.path(LOCAL, "d/empty.img");
    fs::create_dir_all(f.parent().unwrap()).unwrap();
    fs::File::create(&f).unwrap().set_len(10 << 10).unwrap();
    set_mtime(&f, t);
    s.own(LOCAL, &f);
    s.write(LOCAL, "d/after", "after the hole", t);
    let out = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("synk: stream localhost:"),
        "{}",
        stdout(&out)
    );
    for p in ["alpha", "beta"] {
        assert_eq!(sha512(&s.path(p, "d/empty.img")), sha512(&f), "on {p}");
        assert_eq!(
            s.read(p, "d/after").as_deref(),
            Some(&b"after the hole"[..])
        );
    }
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A shared group directory (setgid) that synk writes in keeps its bit on the target.
#[test]
fn a_setgid_directory_written_in_keeps_its_bit() {
    let s = scene!("meta-setgid");
    let t = now() - 500;
    s.write(LOCAL, "d/shared/a", "one", t);
    ok_run(&s, &["alpha"], "d");
    let dir = s.path("alpha", "d/shared");
    chmod(&dir, 0o2775);
    // Taken as the directory's own change on alpha (its mode, setgid aside): let it settle.
    ok_run(&s, &["alpha"], "d");
    s.write(LOCAL, "d/shared/b", "two", t + 10);
    ok_run(&s, &["alpha"], "d");
    assert_eq!(s.read("alpha", "d/shared/b").as_deref(), Some(&b"two"[..]));
    let mode = fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o2000, 0o2000, "setgid kept: {mode:o}");
}

#[test]
fn what_an_exfat_peer_cannot_hold_is_never_a_change_there() {
    let s = scene!("meta-exfat");
    let Some(_disk) = Exfat::mount(&s, "alpha", &s.dir("alpha")) else {
        return;
    };
    let t = now() - 500;
    s.write(LOCAL, "d/f", "some text", t);
    chmod(&s.path(LOCAL, "d/f"), 0o640);
    let xattr = |p: &Path| {
        let mut buf = [0u8; 64];
        let n = rustix::fs::lgetxattr(p, "user.color", &mut buf[..]).ok()?;
        Some(buf[..n].to_vec())
    };
    rustix::fs::lsetxattr(
        s.path(LOCAL, "d/f"),
        "user.color",
        b"blue",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    s.mkdir(LOCAL, "d/sub");
    chmod(&s.path(LOCAL, "d/sub"), 0o750);
    // Times to the nanosecond, which exFAT (through FUSE here) rounds to the second.
    let fine = filetime::FileTime::from_unix_time(t, 123_456_789);
    filetime::set_file_mtime(s.path(LOCAL, "d/f"), fine).unwrap();
    let peers = ["alpha", "beta"];
    let first = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(s.read("alpha", "d/f").as_deref(), Some(&b"some text"[..]));
    // The first sync there names that peer and what its filesystem lacks, once.
    let told = stderr(&first);
    assert!(
        told.contains(&format!("{}: ", s.shown("alpha")))
            && told.contains("its filesystem keeps no permission bits (chmod has no effect), extended attributes, ACLs, mtimes finer than 1000 ms"),
        "{told}"
    );
    assert_eq!(
        told.matches("keeps no").count(),
        1,
        "once, not per file: {told}"
    );
    for _ in 0..2 {
        let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert_nothing_done(&again);
        assert!(!stderr(&again).contains("keeps no"), "named once");
    }
    // exFAT's own modes never reach the others, nor its lack of xattrs.
    for p in [LOCAL, "beta"] {
        assert_eq!(
            xattr(&s.path(p, "d/f")).as_deref(),
            Some(&b"blue"[..]),
            "{p}"
        );
        assert_eq!(mode(&s.path(p, "d/f")), 0o640, "{p}");
        assert_eq!(mode(&s.path(p, "d/sub")), 0o750, "{p}");
        let m = fs::metadata(s.path(p, "d/f")).unwrap();
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&m),
            fine,
            "{p}"
        );
    }
    // A real change there still is one.
    s.write("alpha", "d/f", "edited on exfat", t + 100);
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        s.read("beta", "d/f").as_deref(),
        Some(&b"edited on exfat"[..])
    );
    assert_eq!(
        mode(&s.path("beta", "d/f")),
        0o640,
        "the recorded mode, not exFAT's"
    );
}
