//! Extended attributes, ACLs and owners end to end over a real sshd (see `common/mod.rs`):
//! they go with a copy, a change to them alone is a change that propagates (and a removal
//! too), each option turns its part off, and a peer that is not root never sets an owner.
//! The client's own peer (localhost) runs as root here, and so does peer `rho`; the others
//! run as users `synkt-*`.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

fn set_x(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

fn remove_x(p: &Path, name: &str) {
    rustix::fs::lremovexattr(p, name).unwrap();
}

/// The value of attribute `name` of `p`, if it has one.
fn get_x(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// An access ACL in the kernel's form: owner rw, the named user `uid` r, group r, others
/// nothing (what `setfacl -m u:UID:r` makes of a 0640 file).
fn acl(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, uid),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

#[test]
fn a_read_only_file_takes_its_attributes_on_a_peer_that_is_not_root() {
    use std::os::unix::fs::PermissionsExt;
    let s = scene!("xattr-ro");
    let t = now() - 500;
    let f = s.write(LOCAL, "d/f", "read only", t);
    set_x(&f, "user.color", b"blue");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o444)).unwrap();
    let peers = ["alpha", "beta"];
    // Synced, the attribute there with the mode, and the next run quiet.
    let synced_as = |value: &[u8]| {
        let out = s.synk(&peers, &[&s.arg("d")]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        for p in peers {
            let there = s.path(p, "d/f");
            assert_eq!(get_x(&there, "user.color").as_deref(), Some(value), "{p}");
            assert_eq!(fs::metadata(&there).unwrap().mode() & 0o7777, 0o444, "{p}");
        }
        assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    };
    synced_as(b"blue");
    // A change of it alone reaches them too, and leaves the file read-only.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    set_x(&f, "user.color", b"red");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o444)).unwrap();
    synced_as(b"red");
}

#[test]
fn user_xattrs_go_with_a_copy_and_a_change_or_removal_of_them_goes_everywhere() {
    let s = scene!("xattr-user");
    let t = now() - 500;
    let f = s.write(LOCAL, "d/f", "content", t);
    set_x(&f, "user.color", b"blue");
    let sub = s.mkdir(LOCAL, "d/sub");
    set_x(&sub, "user.dir", b"1");
    set_mtime(&sub, t);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(
            get_x(&s.path(p, "d/f"), "user.color").as_deref(),
            Some(&b"blue"[..]),
            "{p}"
        );
        assert_eq!(
            get_x(&s.path(p, "d/sub"), "user.dir").as_deref(),
            Some(&b"1"[..]),
            "{p}"
        );
    }
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // A change on one peer, and an attribute added: everywhere, named in -v.
    let on_beta = s.path("beta", "d/f");
    set_x(&on_beta, "user.color", b"red");
    set_x(&on_beta, "user.new", b"");
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("xattrs"), "{}", stdout(&out));
    for p in all {
        let there = s.path(p, "d/f");
        assert_eq!(
            get_x(&there, "user.color").as_deref(),
            Some(&b"red"[..]),
            "{p}"
        );
        assert_eq!(get_x(&there, "user.new").as_deref(), Some(&b""[..]), "{p}");
        assert_eq!(s.read(p, "d/f").as_deref(), Some(&b"content"[..]), "{p}");
    }
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // A removal on another: gone everywhere; the content never moved.
    remove_x(&s.path("alpha", "d/f"), "user.color");
    remove_x(&s.path("alpha", "d/sub"), "user.dir");
    let out = s.synk(&peers, &[os("--json"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.to_string().contains("\"xattrs\""), "{doc}");
    for p in all {
        assert_eq!(get_x(&s.path(p, "d/f"), "user.color"), None, "{p}");
        assert_eq!(
            get_x(&s.path(p, "d/f"), "user.new").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(get_x(&s.path(p, "d/sub"), "user.dir"), None, "{p}");
    }
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
}

#[test]
fn acls_go_with_a_copy_and_a_change_goes_everywhere() {
    let s = scene!("xattr-acl");
    let t = now() - 500;
    let f = s.write(LOCAL, "d/f", "content", t);
    let beta = user("beta").uid;
    set_x(&f, ACCESS, &acl(beta));
    let sub = s.mkdir(LOCAL, "d/sub");
    set_x(&sub, DEFAULT, &acl(beta));
    set_mtime(&sub, t);
    let peers = ["alpha", "beta"];
    let all = [LOCAL, "alpha", "beta"];
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in all {
        assert_eq!(get_x(&s.path(p, "d/f"), ACCESS), Some(acl(beta)), "{p}");
        assert_eq!(mode(&s.path(p, "d/f")) & 0o777, 0o640, "{p}");
        assert_eq!(get_x(&s.path(p, "d/sub"), DEFAULT), Some(acl(beta)), "{p}");
    }
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // Another named user on alpha (its owner may): everywhere.
    let gamma = user("gamma").uid;
    set_x(&s.path("alpha", "d/f"), ACCESS, &acl(gamma));
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("acl"), "{}", stdout(&out));
    for p in all {
        assert_eq!(get_x(&s.path(p, "d/f"), ACCESS), Some(acl(gamma)), "{p}");
    }
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
}

#[test]
fn each_option_turns_its_part_off_on_the_command_line_and_in_synk_conf() {
    let s = scene!("xattr-off");
    let t = now() - 500;
    let f = s.write(LOCAL, "d/f", "content", t);
    set_x(&f, "user.color", b"blue");
    set_x(&f, ACCESS, &acl(user("beta").uid));
    let peers = ["alpha"];
    let out = s.synk(&peers, &[os("--no-xattrs"), os("--no-acls"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let there = s.path("alpha", "d/f");
    assert_eq!(s.read("alpha", "d/f").as_deref(), Some(&b"content"[..]));
    assert_eq!(get_x(&there, "user.color"), None, "--no-xattrs");
    assert_eq!(get_x(&there, ACCESS), None, "--no-acls");
    // Off in synk.conf: a change to them is no change either.
    let conf = s.home(LOCAL).join(".config/synk");
    fs::create_dir_all(&conf).unwrap();
    fs::write(
        conf.join("synk.conf"),
        "no-xattrs\nno-acls\nno-owner\nnumeric-ids\n",
    )
    .unwrap();
    set_x(&f, "user.color", b"green");
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    assert_eq!(get_x(&there, "user.color"), None);
    // On again: what the master holds goes.
    fs::remove_file(conf.join("synk.conf")).unwrap();
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(get_x(&there, "user.color").as_deref(), Some(&b"green"[..]));
    assert_eq!(get_x(&there, ACCESS), Some(acl(user("beta").uid)));
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
}

#[test]
fn a_peer_that_is_not_root_never_sets_an_owner_and_never_fails_for_it() {
    let s = scene!("xattr-owner");
    let t = now() - 500;
    let f = s.write(LOCAL, "d/f", "content", t);
    std::os::unix::fs::lchown(&f, Some(12345), Some(12345)).unwrap();
    let peers = ["alpha"];
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let there = s.path("alpha", "d/f");
    let alpha = user("alpha");
    let md = fs::metadata(&there).unwrap();
    assert_eq!((md.uid(), md.gid()), (alpha.uid, alpha.gid));
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // A chown on the root peer: nothing fails where it cannot be set, and it settles.
    std::os::unix::fs::lchown(&f, Some(23456), None).unwrap();
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("rror"), "{}", stderr(&out));
    assert_eq!(fs::metadata(&there).unwrap().uid(), alpha.uid);
    assert_eq!(
        fs::metadata(&f).unwrap().uid(),
        23456,
        "the root peer keeps its own"
    );
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
}

#[test]
fn attributes_go_with_a_copy_by_either_copier_and_with_a_new_version() {
    for copier in ["rsync", "stream"] {
        let s = scene!(&format!("xattr-copier-{copier}"));
        let t = now() - 500;
        let f = s.write(LOCAL, "d/f", "content", t);
        set_x(&f, "user.color", b"blue");
        set_x(&f, ACCESS, &acl(user("beta").uid));
        let peers = ["alpha", "beta"];
        let run = |s: &Scene| {
            let out = s.synk(&peers, &[os("--copier"), os(copier), &s.arg("d")]);
            assert_eq!(out.status.code(), Some(0), "{copier}: {}", stderr(&out));
        };
        run(&s);
        // A new content on alpha replaces the file (a new inode): its attributes go along.
        let on_alpha = s.write("alpha", "d/f", "new content, longer", t + 100);
        set_x(&on_alpha, "user.color", b"green");
        set_x(&on_alpha, ACCESS, &acl(user("beta").uid));
        run(&s);
        for p in [LOCAL, "beta"] {
            let there = s.path(p, "d/f");
            assert_eq!(
                s.read(p, "d/f").as_deref(),
                Some(&b"new content, longer"[..])
            );
            assert_eq!(
                get_x(&there, "user.color").as_deref(),
                Some(&b"green"[..]),
                "{copier}: {p}"
            );
            assert_eq!(
                get_x(&there, ACCESS),
                Some(acl(user("beta").uid)),
                "{copier}: {p}"
            );
        }
        assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    }
}

#[test]
fn root_to_root_owners_and_trusted_attributes_are_kept_and_a_chown_goes_everywhere() {
    let s = scene!("xattr-root");
    let t = now() - 500;
    let (alpha, beta, gamma) = (user("alpha"), user("beta"), user("gamma"));
    let named = s.write(LOCAL, "d/named", "by name", t);
    std::os::unix::fs::lchown(&named, Some(alpha.uid), Some(beta.gid)).unwrap();
    set_x(&named, "trusted.synk", b"kept as root");
    set_x(&named, "user.synk", b"for anyone");
    // Ids without a name in /etc/passwd and /etc/group travel as numbers, as rsync's do.
    let numbered = s.write(LOCAL, "d/numbered", "by number", t);
    std::os::unix::fs::lchown(&numbered, Some(54321), Some(54322)).unwrap();
    let dir = s.path(LOCAL, "d/sub");
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::lchown(&dir, Some(gamma.uid), Some(gamma.gid)).unwrap();
    set_mtime(&dir, t);
    let peers = [ROOT];
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let owner = |p: &str, rel: &str| {
        let md = fs::symlink_metadata(s.path(p, rel)).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(owner(ROOT, "d/named"), (alpha.uid, beta.gid));
    assert_eq!(owner(ROOT, "d/numbered"), (54321, 54322));
    assert_eq!(owner(ROOT, "d/sub"), (gamma.uid, gamma.gid));
    let there = s.path(ROOT, "d/named");
    assert_eq!(
        get_x(&there, "trusted.synk").as_deref(),
        Some(&b"kept as root"[..])
    );
    assert_eq!(
        get_x(&there, "user.synk").as_deref(),
        Some(&b"for anyone"[..])
    );
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // A chown alone on the root peer is a change: it comes back, content untouched.
    std::os::unix::fs::lchown(&there, Some(gamma.uid), None).unwrap();
    set_x(&there, "trusted.synk", b"changed there");
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(owner(LOCAL, "d/named"), (gamma.uid, beta.gid));
    assert_eq!(
        get_x(&named, "trusted.synk").as_deref(),
        Some(&b"changed there"[..])
    );
    assert_eq!(s.read(LOCAL, "d/named").as_deref(), Some(&b"by name"[..]));
    assert_nothing_done(&s.synk(&peers, &[os("-v"), &s.arg("d")]));
    // With --numeric-ids, the numbers themselves.
    std::os::unix::fs::lchown(&numbered, Some(beta.uid), Some(54323)).unwrap();
    let out = s.synk(&peers, &[os("--numeric-ids"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(owner(ROOT, "d/numbered"), (beta.uid, 54323));
}
