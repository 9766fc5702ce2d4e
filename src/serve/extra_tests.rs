//! Setting owners and attributes on a serve: by name as root, by number with
//! `--numeric-ids`, `trusted.*` only when the values were read as root, and nothing a peer
//! sends past the bounds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::tests::{converse, w};
use crate::extra::xattr::Xattr;
use crate::extra::MetaOpts;
use crate::model::{Owner, Retention};
use crate::paths::RootSpec;
use crate::proto::{Request, Response};

fn scan(meta: MetaOpts) -> Request {
    Request::Scan {
        roots: vec![RootSpec::Home(w("d"))],
        retention: Retention::default(),
        excludes: Vec::new(),
        brief: false,
        tidy: true,
        lock: false,
        meta,
    }
}

fn set(rel: &str, xattrs: Option<Vec<Xattr>>, sys: bool, owner: Option<Owner>) -> Request {
    Request::SetExtra {
        root: 0,
        rel: w(rel),
        xattrs,
        sys,
        acl: None,
        owner,
    }
}

fn x(name: &str, value: &str) -> Xattr {
    Xattr {
        name: name.into(),
        value: value.into(),
    }
}

fn get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).ok()?;
    Some(buf[..n].to_vec())
}

/// The answers after the scan's.
fn answers(resps: Vec<Response>) -> Vec<Response> {
    let at = resps
        .iter()
        .position(|r| matches!(r, Response::ScanDone))
        .expect("scanned");
    resps.into_iter().skip(at + 1).collect()
}

#[test]
fn as_root_an_owner_is_set_by_name_or_by_number_and_trusted_only_from_root() {
    if !crate::extra::is_root() {
        eprintln!("skipped: not root");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let d = home.path().join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), "x").unwrap();
    fs::write(d.join("g"), "y").unwrap();
    let nobody = Owner {
        uid: 4242,
        gid: 4343,
        user: Some("nobody".into()),
        group: Some("daemon".into()),
    };
    let by_number = Owner {
        user: Some("root".into()),
        ..nobody.clone()
    };
    let reqs = [
        scan(MetaOpts::default()),
        set(
            "f",
            Some(vec![x("trusted.t", "1"), x("user.u", "2")]),
            true,
            Some(nobody.clone()),
        ),
        set("f", Some(vec![x("user.u", "3")]), false, None),
    ];
    let (res, resps) = converse(home.path(), &reqs);
    res.unwrap();
    let got = answers(resps);
    assert!(got.iter().all(|r| matches!(r, Response::Done)), "{got:?}");
    let md = fs::metadata(d.join("f")).unwrap();
    let ids = (
        crate::extra::owners::users().id("nobody").unwrap(),
        crate::extra::owners::groups().id("daemon").unwrap(),
    );
    assert_eq!((md.uid(), md.gid()), ids, "by name");
    assert_eq!(get(&d.join("f"), "user.u").as_deref(), Some(&b"3"[..]));
    assert_eq!(
        get(&d.join("f"), "trusted.t").as_deref(),
        Some(&b"1"[..]),
        "values not read as root leave trusted.* alone"
    );
    let numeric = MetaOpts {
        numeric_ids: true,
        ..MetaOpts::default()
    };
    let (res, resps) = converse(
        home.path(),
        &[scan(numeric), set("g", None, false, Some(by_number))],
    );
    res.unwrap();
    assert!(matches!(answers(resps)[..], [Response::Done]));
    let md = fs::metadata(d.join("g")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4242, 4343), "--numeric-ids");
    // --no-owner: never set.
    let off = MetaOpts {
        owner: false,
        ..MetaOpts::default()
    };
    let root = Owner {
        uid: 0,
        gid: 0,
        user: None,
        group: None,
    };
    let (res, _) = converse(home.path(), &[scan(off), set("g", None, false, Some(root))]);
    res.unwrap();
    assert_eq!(fs::metadata(d.join("g")).unwrap().uid(), 4242);
}

#[test]
fn attributes_past_the_bounds_or_through_a_symlink_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path().join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), "x").unwrap();
    std::os::unix::fs::symlink("f", d.join("l")).unwrap();
    let many: Vec<Xattr> = (0..2000).map(|i| x(&format!("user.{i}"), "")).collect();
    let reqs = [
        scan(MetaOpts::default()),
        set("f", Some(vec![x("user.a\0b", "1")]), false, None),
        set("f", Some(vec![x("system.nfs4_acl", "1")]), false, None),
        set("f", Some(many), false, None),
        set(
            "f",
            Some(vec![x("user.a", &"v".repeat(70_000))]),
            false,
            None,
        ),
        set(
            "f",
            Some(vec![x("user.a", "1"), x("user.a", "2")]),
            false,
            None,
        ),
        Request::SetExtra {
            root: 0,
            rel: w("f"),
            xattrs: Some(vec![x("system.posix_acl_access", "")]),
            sys: false,
            acl: None,
            owner: None,
        },
        set("l", Some(vec![x("user.a", "1")]), false, None),
        set("../f", Some(vec![x("user.a", "1")]), false, None),
    ];
    let (res, resps) = converse(home.path(), &reqs);
    res.unwrap();
    let got = answers(resps);
    assert_eq!(got.len(), 8, "{got:?}");
    for (i, r) in got[..6].iter().enumerate() {
        assert!(matches!(r, Response::Failed(_)), "{i}: {r:?}");
    }
    // A symlink takes no attributes (and never passes them on to its target).
    assert_eq!(get(&d.join("f"), "user.a"), None);
    assert!(
        !matches!(got[7], Response::Done),
        "outside the root: {:?}",
        got[7]
    );
}

#[test]
fn an_entry_gone_since_the_scan_leaves_the_others_attributes_to_go() {
    use crate::proto::{encode, read_frame};
    let home = tempfile::tempdir().unwrap();
    let d = home.path().join("d");
    fs::create_dir(&d).unwrap();
    for f in ["a", "b", "c"] {
        fs::write(d.join(f), f).unwrap();
    }
    // One session: the scan, then b removed, then the attributes of all three asked for.
    let mut server = super::Server::new(Some(home.path().to_path_buf()));
    server.with_state(Some(home.path().join(".state")));
    let mut serve = |req: &Request| -> Vec<Response> {
        let mut input = encode(&super::tests::hello()).unwrap();
        input.extend(encode(req).unwrap());
        let mut out = Vec::new();
        server.serve(&mut &input[..], &mut out).unwrap();
        let mut r = &out[..];
        std::iter::from_fn(|| read_frame::<Response, _>(&mut r).ok()).collect()
    };
    serve(&scan(MetaOpts::default()));
    fs::remove_file(d.join("b")).unwrap();
    let frames = serve(&Request::Attrs {
        root: 0,
        rels: vec![w("a"), w("b"), w("c")],
    });
    let warned = frames
        .iter()
        .any(|f| matches!(f, Response::Warning(m) if m.contains("left for the next run")));
    assert!(warned, "{frames:?}");
    let answered: Vec<_> = frames
        .iter()
        .flat_map(|f| match f {
            Response::Attrs(got) => got.iter().map(|(rel, _)| rel.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(answered, [w("a"), w("c")]);
    assert!(matches!(frames.last(), Some(Response::Done)), "{frames:?}");
}
