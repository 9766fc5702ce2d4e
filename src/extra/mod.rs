//! Metadata beyond mode and mtime on disk ([`crate::model::Extra`]): extended attributes and
//! POSIX ACLs (kept as hashes in the state and the scan, their values fetched from a peer that
//! holds them only where another needs them), and owners (by name, as rsync keeps them).

pub mod owners;
pub mod xattr;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::model::{Extra, Kind, Owner};
use xattr::Class;

pub use crate::model::{MetaOpts, NO_SYS};

/// Whether this process runs as root (and so reads and sets `trusted.*`, `security.*` and
/// owners).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The extra metadata of the entry at `path` (never a symlink's target) of kind `kind`, as
/// `opts` asks and this serve can read (`root`). Symlinks carry no attributes; specials
/// nothing.
pub fn read(path: &Path, kind: &Kind, opts: &MetaOpts, root: bool) -> io::Result<Extra> {
    let mut e = Extra::default();
    if *kind == Kind::Special {
        return Ok(e);
    }
    if opts.owner && root {
        let md = std::fs::symlink_metadata(path)?;
        e.owner = Some(owner_of(md.uid(), md.gid(), opts.numeric_ids));
    }
    if matches!(kind, Kind::Symlink(_)) {
        return Ok(e);
    }
    let classes = opts.classes(root);
    let list = xattr::read(path, &classes)?;
    e.xattrs = xattr::hash_of(&list, &[Class::User]);
    e.acl = xattr::hash_of(&list, &[Class::Acl]);
    if classes.contains(&Class::Sys) {
        e.sys = Some(xattr::hash_of(&list, &[Class::Sys]).unwrap_or(NO_SYS));
    }
    Ok(e)
}

/// An owner as this host names it (by number only with `numeric`).
pub fn owner_of(uid: u32, gid: u32, numeric: bool) -> Owner {
    let (user, group) = if numeric {
        (None, None)
    } else {
        (
            owners::users().name(uid).map(str::to_string),
            owners::groups().name(gid).map(str::to_string),
        )
    };
    Owner {
        uid,
        gid,
        user,
        group,
    }
}

/// The ids on this host of an owner another peer described: by name where it named them and
/// the name is known here, else its number (as rsync does).
pub fn local_ids(o: &Owner) -> (u32, u32) {
    let uid = o.user.as_deref().and_then(|n| owners::users().id(n));
    let gid = o.group.as_deref().and_then(|n| owners::groups().id(n));
    (uid.unwrap_or(o.uid), gid.unwrap_or(o.gid))
}

/// Whether an owner name is one a peer may send: a short name of printable characters
/// without `:` or `/`.
pub fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| !c.is_control() && c != ':' && c != '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_options_and_privilege() {
        let all = MetaOpts::default();
        assert_eq!(all.classes(false), [Class::User, Class::Acl]);
        assert_eq!(all.classes(true), [Class::User, Class::Sys, Class::Acl]);
        let no_x = MetaOpts {
            xattrs: false,
            ..all
        };
        assert_eq!(no_x.classes(true), [Class::Acl]);
        assert!(MetaOpts::none().classes(true).is_empty());
        assert!(name_ok("www-data") && !name_ok("a:b") && !name_ok("") && !name_ok("a\nb"));
    }

    #[test]
    fn an_owner_is_read_only_as_root_and_names_by_number_with_numeric_ids() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let e = read(&f, &Kind::File, &MetaOpts::default(), false).unwrap();
        assert_eq!(e.owner, None);
        let e = read(&f, &Kind::File, &MetaOpts::default(), true).unwrap();
        let o = e.owner.unwrap();
        assert_eq!(o.uid, std::fs::metadata(&f).unwrap().uid());
        assert_eq!(e.sys, Some(NO_SYS));
        let n = owner_of(o.uid, o.gid, true);
        assert_eq!((&n.user, &n.group), (&None, &None));
        assert_eq!(local_ids(&n), (o.uid, o.gid));
        let named = Owner {
            uid: 12345,
            gid: 12345,
            user: Some("root".into()),
            group: Some("no-such-group-here".into()),
        };
        assert_eq!(local_ids(&named), (0, 12345));
    }
}
