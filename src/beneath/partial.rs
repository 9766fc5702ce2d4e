//! The one thing a run cut short leaves behind on purpose: the partial data of a copy, kept in
//! a directory of its own inside the root's scratch directory ([`names::partial_dir_name`]),
//! so the next run of the same version sends only what is missing. Everything else in the
//! scratch directory is a killed run's debris and goes, as before; partial data older than
//! [`PARTIAL_AGE`], anything in the partial directory that is not a regular file, and rsync's
//! own temp files there go too. Never through a symlink: every step is relative to a directory
//! handle opened with `O_NOFOLLOW`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use super::{kind_of, remove_tree};
use crate::names;

/// How long partial data is kept for a later run to resume from.
pub const PARTIAL_AGE: Duration = Duration::from_secs(3 * 24 * 3600);

fn dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn names_in(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    Ok(out)
}

/// Whether `name` has the shape of rsync's temp files (`.NAME.XXXXXX`): one a receiver killed
/// outright left in the partial directory, never to be resumed from.
fn rsync_temp(name: &[u8]) -> bool {
    name.len() >= 9
        && name[0] == b'.'
        && name[name.len() - 7] == b'.'
        && name[name.len() - 6..].iter().all(u8::is_ascii_alphanumeric)
}

/// Whether partial data last changed at `changed` (seconds since the epoch) is kept at `now`.
pub fn fresh(changed: i64, now: i64) -> bool {
    now - changed <= PARTIAL_AGE.as_secs() as i64
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Empties the scratch directory `scratch` but for its partial directory, and prunes that:
/// what is old or not a regular file goes, and with `temps` rsync's temp files too (not while
/// a receiver cut short may still be renaming its temp file to the partial one: only as a run
/// starts or ends). Returns the names of the partial files kept; the partial directory itself
/// is removed when none is.
pub fn clear_inside(scratch: BorrowedFd<'_>, temps: bool) -> io::Result<Vec<Vec<u8>>> {
    let keep = names::partial_dir_name();
    for n in names_in(scratch)? {
        if n != keep {
            remove_tree(scratch, &n)?;
        }
    }
    let partial = match dir_at(scratch, &keep) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        // Not a directory (a symlink put there): not ours to keep.
        Err(_) => {
            remove_tree(scratch, &keep)?;
            return Ok(Vec::new());
        }
    };
    let now = now();
    let mut kept = Vec::new();
    for n in names_in(partial.as_fd())? {
        let st = rfs::statat(&partial, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
        // The inode's change time: rsync may give a partial file the source's old mtime, but
        // every write and rename moves the ctime.
        #[allow(clippy::unnecessary_cast)]
        let changed = st.st_ctime as i64;
        if kind_of(&st) == rfs::FileType::RegularFile
            && fresh(changed, now)
            && !(temps && rsync_temp(&n))
        {
            kept.push(n);
        } else {
            remove_tree(partial.as_fd(), &n)?;
        }
    }
    if kept.is_empty() {
        drop(partial);
        match rfs::unlinkat(scratch, keep.as_slice(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    kept.sort();
    Ok(kept)
}

/// Removes the scratch directory `name` in `dir` with what is in it, but for partial data
/// worth keeping ([`clear_inside`], `temps` as there): then the directory stays, holding only
/// that.
pub fn clear(dir: BorrowedFd<'_>, name: &[u8], temps: bool) -> io::Result<()> {
    let fd = match dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        // Not a directory: nothing of a scratch directory to keep.
        Err(_) => return remove_tree(dir, name),
    };
    if clear_inside(fd.as_fd(), temps)?.is_empty() {
        drop(fd);
        return remove_tree(dir, name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    #[test]
    fn rsync_temp_names_are_told_from_partial_files() {
        assert!(rsync_temp(b".big.iso.a1B2c3"));
        assert!(rsync_temp(b".x.Zz0099"));
        assert!(!rsync_temp(b"big.iso"));
        assert!(!rsync_temp(b".bashrc"));
        assert!(!rsync_temp(b".a.b"));
    }

    #[test]
    fn partial_data_is_kept_for_three_days() {
        let now = 1_000_000_000;
        assert!(fresh(now, now));
        assert!(fresh(now - 3 * 24 * 3600, now));
        assert!(!fresh(now - 3 * 24 * 3600 - 1, now));
    }

    #[test]
    fn only_fresh_partial_files_outlive_a_clear() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("scratch");
        let p = s.join(std::ffi::OsStr::from_bytes(&names::partial_dir_name()));
        fs::create_dir_all(s.join("sub")).unwrap();
        fs::write(s.join("sub/done"), "x").unwrap();
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("big"), "half").unwrap();
        fs::write(p.join(".big.Ab12Cd"), "temp").unwrap();
        fs::create_dir(p.join("dir")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("link")).unwrap();
        let old = p.join("old");
        fs::write(&old, "stale").unwrap();
        let f = fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - PARTIAL_AGE - Duration::from_secs(60))
            .unwrap();
        drop(f);
        // Its age is its ctime's, which setting the mtime moves: an old mtime alone (rsync's
        // partial file of an old source) keeps it.
        let base = dir_at(rfs::CWD, d.path().as_os_str().as_bytes()).unwrap();
        clear(base.as_fd(), b"scratch", true).unwrap();
        let mut left: Vec<_> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["big", "old"]);
        assert!(!s.join("sub").exists(), "debris gone");
        assert!(Path::new("/etc/passwd").exists());
        fs::remove_file(p.join("big")).unwrap();
        fs::remove_file(p.join("old")).unwrap();
        clear(base.as_fd(), b"scratch", true).unwrap();
        assert!(!s.exists(), "an empty scratch directory goes");
    }
}
