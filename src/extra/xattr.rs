//! Extended attributes on disk: listed and read without following a symlink, hashed in a
//! fixed order, and replaced through a descriptor of the entry itself.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::Errno;

pub use crate::model::{class_of, Class, Xattr, ACL_NAMES};

/// Longest attribute name Linux takes (`XATTR_NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Largest attribute value Linux takes (`XATTR_SIZE_MAX`).
pub const MAX_VALUE: usize = 64 << 10;
/// Most attributes of one entry synk carries.
pub const MAX_COUNT: usize = 1024;
/// Most bytes (names and values) of one entry's attributes synk carries.
pub const MAX_TOTAL: usize = 1 << 20;

/// Whether `list` is within synk's bounds for one entry: names of a kept class and at most
/// [`MAX_NAME`] bytes with no NUL, values at most [`MAX_VALUE`], at most [`MAX_COUNT`] of them
/// and [`MAX_TOTAL`] bytes in all, each name once. The error names what is wrong.
pub fn check(list: &[Xattr]) -> Result<(), String> {
    if list.len() > MAX_COUNT {
        return Err(format!(
            "{} extended attributes (at most {MAX_COUNT})",
            list.len()
        ));
    }
    let mut total = 0usize;
    for (i, x) in list.iter().enumerate() {
        let shown = String::from_utf8_lossy(&x.name[..x.name.len().min(64)]).into_owned();
        if x.name.is_empty() || x.name.len() > MAX_NAME || x.name.contains(&0) {
            return Err(format!("bad extended attribute name {shown:?}"));
        }
        if class_of(&x.name).is_none() {
            return Err(format!("extended attribute {shown:?} of no kept namespace"));
        }
        if x.value.len() > MAX_VALUE {
            return Err(format!(
                "extended attribute {shown:?}: value over {MAX_VALUE} bytes"
            ));
        }
        if list[..i].iter().any(|y| y.name == x.name) {
            return Err(format!("extended attribute {shown:?} twice"));
        }
        total += x.name.len() + x.value.len();
    }
    if total > MAX_TOTAL {
        return Err(format!(
            "extended attributes of {total} bytes (at most {MAX_TOTAL})"
        ));
    }
    Ok(())
}

/// The attributes of the entry at `path` (never its symlink's target) in the given classes,
/// sorted by name. A filesystem that keeps none (`ENOTSUP`) has none; attributes past synk's
/// bounds are an error, as is any other failure to read them.
pub fn read(path: &Path, classes: &[Class]) -> io::Result<Vec<Xattr>> {
    if classes.is_empty() {
        return Ok(Vec::new());
    }
    let mut small = [0u8; 512];
    let names: Vec<u8> = match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(0) | Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => small[..n].to_vec(),
        Err(Errno::RANGE) => {
            let n = rustix::fs::llistxattr_query(path)?;
            let mut big = vec![0u8; n.max(1)];
            let n = rustix::fs::llistxattr(path, &mut big[..])?;
            big.truncate(n);
            big
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !class_of(name).is_some_and(|c| classes.contains(&c)) {
            continue;
        }
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        let value = match rustix::fs::lgetxattr_query(path, &cname) {
            // Removed between the list and now.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) => {
                let mut v = vec![0u8; n];
                match rustix::fs::lgetxattr(path, &cname, &mut v[..]) {
                    Ok(got) => {
                        v.truncate(got);
                        v
                    }
                    Err(Errno::NODATA) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        out.push(Xattr {
            name: name.to_vec(),
            value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    check(&out).map_err(io::Error::other)?;
    Ok(out)
}

/// A 128-bit hash of attributes (sorted by name), or none where there are none.
pub fn hash(list: &[Xattr]) -> Option<[u8; 16]> {
    if list.is_empty() {
        return None;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for x in list {
        h.update(&(x.name.len() as u64).to_le_bytes());
        h.update(&x.name);
        h.update(&(x.value.len() as u64).to_le_bytes());
        h.update(&x.value);
    }
    Some(h.digest128().to_le_bytes())
}

/// The hash of the attributes of `list` in `classes`.
pub fn hash_of(list: &[Xattr], classes: &[Class]) -> Option<[u8; 16]> {
    let part: Vec<Xattr> = list
        .iter()
        .filter(|x| class_of(&x.name).is_some_and(|c| classes.contains(&c)))
        .cloned()
        .collect();
    hash(&part)
}

/// Makes the attributes of the open entry `fd` in `classes` exactly `want`'s of those
/// classes: sets what differs, removes what `want` lacks.
pub fn replace(fd: BorrowedFd<'_>, classes: &[Class], want: &[Xattr]) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let n = match rustix::fs::flistxattr(fd, &mut buf[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) if want.is_empty() => 0,
        Err(e) => return Err(e.into()),
    };
    let held: Vec<Vec<u8>> = buf[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty() && class_of(n).is_some_and(|c| classes.contains(&c)))
        .map(<[u8]>::to_vec)
        .collect();
    for name in &held {
        if !want.iter().any(|x| &x.name == name) {
            let cname = std::ffi::CString::new(name.clone()).map_err(io::Error::other)?;
            match rustix::fs::fremovexattr(fd, &cname) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut cur = vec![0u8; MAX_VALUE];
    for x in want
        .iter()
        .filter(|x| class_of(&x.name).is_some_and(|c| classes.contains(&c)))
    {
        let cname = std::ffi::CString::new(x.name.clone()).map_err(io::Error::other)?;
        let same =
            rustix::fs::fgetxattr(fd, &cname, &mut cur[..]).is_ok_and(|n| cur[..n] == x.value[..]);
        if !same {
            rustix::fs::fsetxattr(fd, &cname, &x.value, rustix::fs::XattrFlags::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(name: &str, value: &str) -> Xattr {
        Xattr {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn names_values_and_counts_are_bounded() {
        assert!(check(&[
            x("user.a", "1"),
            x("trusted.b", ""),
            x("system.posix_acl_access", "")
        ])
        .is_ok());
        let cases: Vec<(&str, Vec<Xattr>)> = vec![
            ("empty name", vec![x("", "1")]),
            ("unknown namespace", vec![x("system.nfs4_acl", "1")]),
            ("no namespace", vec![x("mime", "1")]),
            // Privilege, as setuid is: never taken from a peer.
            ("file capabilities", vec![x("security.capability", "1")]),
            ("NUL in name", vec![x("user.a\0b", "1")]),
            (
                "long name",
                vec![x(&format!("user.{}", "n".repeat(300)), "1")],
            ),
            ("big value", vec![x("user.a", &"v".repeat(MAX_VALUE + 1))]),
            ("twice", vec![x("user.a", "1"), x("user.a", "2")]),
            (
                "too many",
                (0..=MAX_COUNT)
                    .map(|i| x(&format!("user.{i}"), ""))
                    .collect(),
            ),
            (
                "too much",
                (0..20)
                    .map(|i| x(&format!("user.{i}"), &"v".repeat(MAX_VALUE)))
                    .collect(),
            ),
        ];
        for (name, list) in cases {
            assert!(check(&list).is_err(), "{name}");
        }
    }

    #[test]
    fn hashes_tell_sets_apart_and_classes_split() {
        assert_eq!(hash(&[]), None);
        let a = hash(&[x("user.a", "bc")]);
        assert_ne!(a, hash(&[x("user.ab", "c")]));
        assert_ne!(a, hash(&[x("user.a", "bd")]));
        let all = [
            x("security.s", "1"),
            x("system.posix_acl_access", "2"),
            x("user.a", "bc"),
        ];
        assert_eq!(hash_of(&all, &[Class::User]), a);
        assert_eq!(hash_of(&all, &[Class::Acl]), hash(&[all[1].clone()]));
    }

    #[test]
    fn attributes_are_read_replaced_and_removed_here() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let file = std::fs::File::open(&f).unwrap();
        use std::os::fd::AsFd;
        let want = vec![x("user.a", "1"), x("user.b", "2")];
        if replace(file.as_fd(), &[Class::User], &want).is_err() {
            eprintln!("skipped: this filesystem holds no user xattrs");
            return;
        }
        assert_eq!(read(&f, &[Class::User]).unwrap(), want);
        replace(file.as_fd(), &[Class::User], &want[1..]).unwrap();
        assert_eq!(read(&f, &[Class::User]).unwrap(), want[1..]);
        replace(file.as_fd(), &[Class::User], &[]).unwrap();
        assert_eq!(read(&f, &[Class::User]).unwrap(), []);
        // Never through a symlink.
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        replace(file.as_fd(), &[Class::User], &want).unwrap();
        assert_eq!(read(&l, &[Class::User]).unwrap(), []);
    }

    #[test]
    fn file_capabilities_are_never_read_as_root() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        // vfs_cap_data, revision 2, effective: CAP_SETUID permitted.
        let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
        cap.extend((1u32 << 7).to_le_bytes());
        cap.extend([0u8; 12]);
        let none = rustix::fs::XattrFlags::empty();
        let set = rustix::fs::setxattr(&f, "security.capability", &cap, none);
        if set.is_err() || rustix::fs::setxattr(&f, "trusted.t", b"1", none).is_err() {
            eprintln!("skipped: not root, or no security xattrs here");
            return;
        }
        assert_eq!(read(&f, &[Class::Sys]).unwrap(), [x("trusted.t", "1")]);
    }
}
