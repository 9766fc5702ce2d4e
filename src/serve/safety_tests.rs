//! The serve's writes against a world that moves: a parent swapped for a symlink, an edit
//! saved between the scan and the copy, rsync's staging, directory modes, setuid bits, and
//! what a scan may remove.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::tests::{end, hello, scan_home, w, SEED};
use super::Server;
use crate::model::Digest;
use crate::names;
use crate::paths::WirePath;
use crate::proto::{encode, read_frame, Placement, Placing, Request, Response};
use std::os::unix::ffi::OsStrExt;

/// A serve session on `home` that keeps its roots between calls, as one client's would.
struct Session {
    server: Server,
}

impl Session {
    fn new(home: &Path) -> Session {
        let mut server = Server::new(Some(home.to_path_buf()));
        server.with_state(Some(home.join(".state")));
        Session { server }
    }

    /// The responses to `reqs` (the handshake's left out).
    fn ask(&mut self, reqs: &[Request]) -> Vec<Response> {
        let mut input = encode(&hello()).unwrap();
        for r in reqs {
            input.extend(encode(r).unwrap());
        }
        let mut out = Vec::new();
        self.server.serve(&mut &input[..], &mut out).unwrap();
        let mut r = &out[..];
        let mut resps = Vec::new();
        while let Ok(resp) = read_frame::<Response, _>(&mut r) {
            resps.push(resp);
        }
        resps.remove(0);
        resps
    }

    /// The last response to `reqs`.
    fn last(&mut self, reqs: &[Request]) -> Response {
        self.ask(reqs).pop().expect("an answer")
    }
}

/// Streams `content` to entry `rel` of root 0.
fn stream(rel: &str, content: &[u8], mode: u32) -> Vec<Request> {
    vec![
        Request::WriteFile {
            root: 0,
            rel: w(rel),
            mode,
            mtime: 1_000_000_000,
            seed: SEED,
            keep: false,
            batched: false,
        },
        Request::Data(content.to_vec()),
        end(content),
    ]
}

fn dir_root(home: &Path) -> std::path::PathBuf {
    let root = home.join("t");
    fs::create_dir_all(root.join("sub")).unwrap();
    root
}

#[test]
fn a_parent_swapped_for_a_symlink_after_the_scan_is_never_written_through() {
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    fs::remove_dir(root.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("sub")).unwrap();
    for reqs in [
        stream("sub/f", b"evil", 0o644),
        vec![Request::MakeDir {
            root: 0,
            rel: w("sub/d"),
            mode: 0o755,
            mtime: 0,
        }],
        vec![Request::Symlink {
            root: 0,
            rel: w("sub/l"),
            target: w("/etc/passwd"),
            mtime: 0,
        }],
    ] {
        match s.last(&reqs) {
            Response::Failed(m) => assert!(m.contains("symlink"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn an_edit_saved_after_the_scan_is_never_overwritten() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("f"), "scanned").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    // The user saves (same size, so only the inode's ctime tells).
    fs::write(root.join("f"), "edited!").unwrap();
    match s.last(&stream("f", b"incoming", 0o644)) {
        Response::Changed(m) => assert!(m.contains("changed since the scan"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(root.join("f")).unwrap(), b"edited!");
    // A name that was free at the scan and is taken now is not taken over either.
    fs::write(root.join("new"), "mine").unwrap();
    assert!(matches!(
        s.last(&stream("new", b"incoming", 0o644)),
        Response::Changed(_)
    ));
    assert_eq!(fs::read(root.join("new")).unwrap(), b"mine");
    // Nor kept, removed or renamed away under the scan's description.
    for req in [
        Request::Keep {
            root: 0,
            rels: vec![w("f")],
        },
        Request::Remove {
            root: 0,
            rel: w("f"),
            deleted: true,
        },
    ] {
        assert!(matches!(s.last(&[req]), Response::Changed(_)));
    }
    assert_eq!(fs::read(root.join("f")).unwrap(), b"edited!");
    let left: Vec<_> = fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(left.len(), 3, "no temp left: {left:?}");
}

#[test]
fn a_keep_then_a_copy_replaces_the_version_the_scan_saw() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("f"), "old").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let keep = Request::Keep {
        root: 0,
        rels: vec![w("f")],
    };
    let mut reqs = vec![keep];
    reqs.extend(stream("f", b"new", 0o640));
    assert!(matches!(s.last(&reqs), Response::Done));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
    assert_eq!(fs::metadata(root.join("f")).unwrap().mode() & 0o7777, 0o640);
}

#[test]
fn a_copy_that_keeps_as_it_writes_keeps_the_version_it_replaces_or_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("f"), "old").unwrap();
    fs::write(root.join("g"), "old g").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let keeping = |rel: &str, content: &[u8]| {
        let mut reqs = stream(rel, content, 0o644);
        if let Request::WriteFile { keep, .. } = &mut reqs[0] {
            *keep = true;
        }
        reqs
    };
    assert!(matches!(s.last(&keeping("f", b"new")), Response::Done));
    assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
    fn files(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => files(&e.path(), out),
                Ok(t) if t.is_file() => out.extend(fs::read(e.path())),
                _ => {}
            }
        }
    }
    let mut kept = Vec::new();
    files(&home.path().join(".state"), &mut kept);
    assert!(kept.iter().any(|k| k == b"old"), "the old version is kept");
    // Saved since the scan: neither kept nor replaced, and no temp file left.
    fs::write(root.join("g"), "edited").unwrap();
    assert!(matches!(
        s.last(&keeping("g", b"incoming")),
        Response::Changed(_)
    ));
    assert_eq!(fs::read(root.join("g")).unwrap(), b"edited");
    let left: Vec<_> = fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(left.len(), 3, "no temp left: {left:?}");
}

#[test]
fn no_commit_records_what_a_cleanup_could_not_make_durable() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("f"), "old").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    s.server.ctx_mut(0).unwrap().unflushed = Some("t: syncfs: I/O error".into());
    let Response::Failed(m) = s.last(&[Request::Commit { root: 0 }]) else {
        panic!("a commit behind a failed cleanup went through")
    };
    assert!(m.contains("I/O error") && m.contains("not saved"), "{m}");
    // The next scan starts afresh.
    s.ask(&[scan_home("t")]);
    assert!(matches!(
        s.last(&[Request::Commit { root: 0 }]),
        Response::Done
    ));
}

#[test]
fn rsync_lands_in_scratch_and_only_planned_complete_files_move_into_place() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("old"), "before").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let Response::Scratch(scratch) = s.last(&[Request::Prepare { root: 0, dir: true }]) else {
        panic!("no scratch")
    };
    assert!(names::is_scratch_name(scratch.as_bytes()));
    let sd = root.join(scratch.as_path());
    assert!(fs::symlink_metadata(&sd).unwrap().is_dir());
    // What rsync would write: the planned files, one short, and a name nobody planned.
    let put = |rel: &str, content: &str, mtime: i64| {
        let p = sd.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
    };
    put("sub/a", "aaa", 5);
    put("old", "after", 6);
    put("short", "half", 7);
    put("unplanned", "extra", 8);
    let item = |rel: &str, size: u64, mtime: i64| Placing {
        rel: w(rel),
        size,
        mtime: mtime * 1_000_000_000,
        mode: 0o4755,
        digest: Digest::of(b""),
    };
    let place = Request::Place {
        root: 0,
        items: vec![item("sub/a", 3, 5), item("old", 5, 6), item("short", 9, 7)],
    };
    let Response::Placed(done) = s.last(&[place]) else {
        panic!()
    };
    assert_eq!(done[..2], [Placement::Done, Placement::Done]);
    assert!(matches!(&done[2], Placement::Failed(m) if m.contains("did not arrive")));
    assert_eq!(fs::read(root.join("sub/a")).unwrap(), b"aaa");
    assert_eq!(fs::read(root.join("old")).unwrap(), b"after");
    assert!(!root.join("short").exists() && !root.join("unplanned").exists());
    // setuid never arrives from another peer.
    assert_eq!(
        fs::metadata(root.join("sub/a")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(matches!(
        s.last(&[Request::Cleanup { root: 0, dir: true }]),
        Response::Done
    ));
    assert!(!sd.exists(), "scratch and what is left in it removed");
}

#[test]
fn partial_data_outlives_a_run_and_a_resumed_copy_is_checked_whole() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let prepare = |s: &mut Session| {
        let Response::Scratch(scratch) = s.last(&[Request::Prepare { root: 0, dir: true }]) else {
            panic!("no scratch")
        };
        root.join(scratch.as_path())
    };
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let sd = prepare(&mut s);
    let pdn = std::ffi::OsStr::from_bytes(&names::partial_dir_name()).to_owned();
    let pd = sd.join(&pdn);
    assert!(pd.is_dir(), "made for the streaming copier's partial files");
    // A run cut short: rsync kept half of "big" and of "sub/other", each in the partial
    // directory beside where it was received; a temp of its own and other debris are left
    // too, and a stray file of the same name in the wrong directory.
    let sub_pd = sd.join("sub").join(&pdn);
    fs::create_dir_all(&sub_pd).unwrap();
    fs::write(pd.join("big"), "half").unwrap();
    fs::write(sub_pd.join("other"), "part").unwrap();
    fs::write(pd.join(".big.Xy12Zz"), "temp").unwrap();
    fs::write(sd.join("debris"), "x").unwrap();
    fs::write(sd.join("sub/debris"), "x").unwrap();
    s.server.abandon_scratch();
    drop(s);
    assert_eq!(
        fs::read(pd.join("big")).unwrap(),
        b"half",
        "a hung-up session keeps partial data"
    );
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    assert!(
        sd.exists(),
        "a scan keeps a scratch directory holding partial data"
    );
    assert_eq!(prepare(&mut s), sd);
    assert!(!sd.join("debris").exists() && !pd.join(".big.Xy12Zz").exists());
    assert!(!sd.join("sub/debris").exists());
    assert_eq!(fs::read(sub_pd.join("other")).unwrap(), b"part");
    // The resumed copies arrive; one is not the master's version.
    for (rel, content) in [("big", "whole"), ("sub/other", "wrong")] {
        fs::write(sd.join(rel), content).unwrap();
        filetime::set_file_mtime(sd.join(rel), filetime::FileTime::from_unix_time(5, 0)).unwrap();
    }
    let item = |rel: &str, digest: Digest| Placing {
        rel: w(rel),
        size: 5,
        mtime: 5_000_000_000,
        mode: 0o644,
        digest,
    };
    let place = Request::Place {
        root: 0,
        items: vec![
            item("big", Digest::of(b"whole")),
            item("sub/other", Digest::of(b"right")),
        ],
    };
    let Response::Placed(done) = s.last(&[place]) else {
        panic!()
    };
    assert_eq!(done[0], Placement::Done);
    assert!(
        matches!(&done[1], Placement::Failed(m) if m.contains("does not match the master's digest")),
        "{done:?}"
    );
    assert_eq!(fs::read(root.join("big")).unwrap(), b"whole");
    assert!(!root.join("sub/other").exists());
    fs::remove_file(pd.join("big")).unwrap();
    assert!(matches!(
        s.last(&[Request::Cleanup { root: 0, dir: true }]),
        Response::Done
    ));
    assert_eq!(
        fs::read(sub_pd.join("other")).unwrap(),
        b"part",
        "the partial data of a copy not done stays"
    );
    assert!(!pd.exists(), "an emptied partial directory goes");
    fs::remove_file(sub_pd.join("other")).unwrap();
    s.server.abandon_scratch();
    drop(s);
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    assert!(
        !sd.exists(),
        "a scratch directory with no partial data left goes"
    );
}

#[test]
fn a_symlink_where_the_scratch_directory_goes_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let Response::Scratch(name) = s.last(&[Request::Prepare { root: 0, dir: true }]) else {
        panic!()
    };
    s.last(&[Request::Cleanup { root: 0, dir: true }]);
    // The same (stable) name, planted as a symlink out of the tree.
    std::os::unix::fs::symlink(outside.path(), root.join(name.as_path())).unwrap();
    match s.last(&[Request::Prepare { root: 0, dir: true }]) {
        Response::Failed(m) => assert!(m.contains("refusing"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_read_only_directory_is_filled_then_given_its_mode() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let mut reqs = vec![Request::MakeDir {
        root: 0,
        rel: w("ro"),
        mode: 0o555,
        mtime: 7_000_000_000,
    }];
    reqs.extend(stream("ro/f", b"inside", 0o444));
    reqs.push(Request::Commit { root: 0 });
    assert!(matches!(s.last(&reqs), Response::Done));
    let md = fs::metadata(root.join("ro")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o555);
    assert_eq!(md.mtime(), 7, "its mtime once filled");
    assert_eq!(fs::read(root.join("ro/f")).unwrap(), b"inside");
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn setid_bits_are_neither_reported_nor_written() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("tool"), "#!/bin/sh").unwrap();
    fs::set_permissions(root.join("tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    let mut s = Session::new(home.path());
    let resps = s.ask(&[scan_home("t")]);
    let mode = resps.iter().find_map(|r| match r {
        Response::Entries(es) => es
            .iter()
            .find(|e| e.rel == w("tool"))
            .and_then(|e| e.state.clone().ok().flatten())
            .map(|m| m.mode),
        _ => None,
    });
    assert_eq!(mode, Some(0o755));
    assert!(resps
        .iter()
        .any(|r| matches!(r, Response::Note(n) if n.contains("setuid"))));
    assert!(matches!(
        s.last(&stream("other", b"x", 0o6777)),
        Response::Done
    ));
    assert_eq!(fs::metadata(root.join("other")).unwrap().mode() & 0o7000, 0);
}

#[test]
fn a_dry_runs_scan_removes_nothing_and_user_names_alike_are_synced() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let debris = root.join(std::ffi::OsStr::new(
        std::str::from_utf8(&names::temp_name(42)).unwrap(),
    ));
    fs::write(&debris, "a killed run's").unwrap();
    fs::write(root.join(".synk-notes.tmp"), "the user's").unwrap();
    let mut s = Session::new(home.path());
    let mut dry = scan_home("t");
    if let Request::Scan { tidy, .. } = &mut dry {
        *tidy = false;
    }
    let resps = s.ask(&[dry]);
    assert!(debris.exists(), "a dry run removes nothing");
    let rels: Vec<WirePath> = resps
        .iter()
        .flat_map(|r| match r {
            Response::Entries(es) => es.iter().map(|e| e.rel.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(rels.contains(&w(".synk-notes.tmp")), "{rels:?}");
    assert!(!rels.iter().any(|r| names::is_own(r.as_bytes())));
    s.ask(&[scan_home("t")]);
    assert!(
        !debris.exists(),
        "stale debris of synk's exact shape removed"
    );
    assert!(root.join(".synk-notes.tmp").exists());
}

#[test]
fn names_synk_keeps_for_itself_are_refused_from_the_wire() {
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    let temp = String::from_utf8(names::temp_name(1)).unwrap();
    let scratch = String::from_utf8(names::scratch_name(1)).unwrap();
    for rel in [temp.clone(), format!("{scratch}/x"), format!("sub/{temp}")] {
        match s.last(&stream(&rel, b"x", 0o644)) {
            Response::Failed(m) => assert!(m.contains("keeps for itself"), "{m}"),
            other => panic!("{rel}: {other:?}"),
        }
    }
    assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
}

#[test]
fn synks_own_state_and_cache_inside_a_root_are_never_scanned_nor_written() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join(".local/state/synk");
    fs::create_dir_all(state.join("roots")).unwrap();
    fs::write(state.join("key"), "1234").unwrap();
    fs::create_dir_all(home.path().join(".cache/synk")).unwrap();
    fs::write(home.path().join(".cache/synk/x.digests"), "c").unwrap();
    fs::write(home.path().join("notes"), "n").unwrap();
    let mut server = Server::new(Some(home.path().to_path_buf()));
    server.with_state(Some(state.clone()));
    server.cache_dir = Some(home.path().join(".cache"));
    let mut s = Session { server };
    // `synk ~`: the home holds both.
    let listed: Vec<WirePath> = s
        .ask(&[scan_home("")])
        .into_iter()
        .flat_map(|r| match r {
            Response::Entries(e) => e.into_iter().map(|e| e.rel).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(listed.contains(&w("notes")), "{listed:?}");
    assert!(listed.contains(&w(".cache")), "{listed:?}");
    let own = |r: &WirePath| {
        r.as_bytes().starts_with(b".local/state/synk") || r.as_bytes().starts_with(b".cache/synk")
    };
    assert!(!listed.iter().any(own), "{listed:?}");
    // Nor written, whatever a client asks.
    for reqs in [
        stream(".local/state/synk/key", b"9999", 0o600),
        stream(".cache/synk/planted", b"x", 0o600),
        vec![Request::MakeDir {
            root: 0,
            rel: w(".local/state/synk/versions"),
            mode: 0o755,
            mtime: 0,
        }],
    ] {
        match s.last(&reqs) {
            Response::Failed(m) => assert!(m.contains("synk's own"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fs::read(state.join("key")).unwrap(), b"1234");
    assert!(!home.path().join(".cache/synk/planted").exists());
    // A root inside them is refused.
    let refused = s.ask(&[scan_home(".local/state/synk")]);
    assert!(
        refused.iter().any(
            |r| matches!(r, Response::Root { result: Err(e), .. } if e.contains("synk's own"))
        ),
        "{refused:?}"
    );
}

#[test]
fn an_edit_saved_while_the_store_is_busy_is_not_taken_into_it() {
    use std::os::unix::io::AsRawFd;
    let home = tempfile::tempdir().unwrap();
    let root = dir_root(home.path());
    fs::write(root.join("f"), "scanned").unwrap();
    let mut s = Session::new(home.path());
    s.ask(&[scan_home("t")]);
    // Another serve holds the store (pruning, say) while the user saves by rename.
    let store = home.path().join(".state/versions");
    fs::create_dir_all(&store).unwrap();
    let lock = fs::File::create(store.join("lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let saver = {
        let root = root.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            fs::write(root.join(".f.swp"), "saved meanwhile").unwrap();
            fs::rename(root.join(".f.swp"), root.join("f")).unwrap();
            drop(lock);
        })
    };
    let got = s.last(&[Request::Remove {
        root: 0,
        rel: w("f"),
        deleted: true,
    }]);
    saver.join().unwrap();
    assert!(matches!(got, Response::Changed(_)), "{got:?}");
    assert_eq!(fs::read(root.join("f")).unwrap(), b"saved meanwhile");
}
