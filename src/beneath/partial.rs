//! The one thing a run cut short leaves behind on purpose: the partial data of a copy, kept in
//! partial directories ([`names::partial_dir_name`]) inside the root's scratch directory, so
//! the next run of the same version sends only what is missing: the streaming copier's in the
//! scratch directory itself, named by digest; rsync's beside each file it receives there
//! (`--partial-dir` is relative), under the file's name. Everything else in the scratch
//! directory is a killed run's debris and goes, as before; partial data older than
//! [`PARTIAL_AGE`], anything in a partial directory that is not a regular file, and rsync's
//! own temp files go too, once no receiver can still be writing them. Never through a
//! symlink: every step is relative to a directory handle opened with `O_NOFOLLOW`.
//!
//! rsync writes its temp files beside the files it receives in the scratch directory (a
//! rename within one directory: a temp directory of their own made every file's rename one
//! across directories, which the kernel serializes, and a first sync of many small files
//! took twice as long). A receiver cut short renames its temp file to the partial file beside
//! it: so rsync's temp files anywhere in the scratch directory are waited for and kept as the
//! partial directories' are.

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
/// outright left in the scratch directory, never to be resumed from. A user's file of that
/// shape that rsync received (`.profile.backup`) is taken for one too: it stays a little
/// longer after a run cut short, and goes with the next clear all the same.
fn rsync_temp(name: &[u8]) -> bool {
    name.len() >= 9
        && name[0] == b'.'
        && name[name.len() - 7] == b'.'
        && name[name.len() - 6..].iter().all(u8::is_ascii_alphanumeric)
}

/// How long an rsync temp file in the scratch directory stays unchanged before it is taken
/// for the leftover of a receiver killed outright. A receiver whose run was cut short outlives
/// its serve (sshd started it, not the serve, and nothing of the serve's locks covers it): it
/// writes what it still holds, then renames its temp file to the partial file. Until then its
/// temp file is the only copy of that data, and the next run must neither remove it nor
/// start its own copy before the partial file is there.
pub const RECEIVER_QUIET: Duration = Duration::from_secs(2);

/// How long [`wait_for_receivers`] waits at most.
pub const RECEIVER_WAIT: Duration = Duration::from_secs(10);

/// Whether the inode `st` changed less than [`RECEIVER_QUIET`] before `now`: every write and
/// rename moves its ctime.
fn busy(st: &rfs::Stat, now: SystemTime) -> bool {
    #[allow(clippy::unnecessary_cast)]
    let changed = UNIX_EPOCH
        + Duration::new(
            (st.st_ctime as i64).max(0) as u64,
            (st.st_ctime_nsec as i64).clamp(0, 999_999_999) as u32,
        );
    // A ctime a little ahead of the clock (another host's, on a network filesystem) counts as
    // now; one far ahead says nothing of a writer.
    now.duration_since(changed).map_or_else(
        |ahead| ahead.duration() < RECEIVER_WAIT,
        |age| age < RECEIVER_QUIET,
    )
}

/// The rsync temp files anywhere in the directory `dir` (the scratch directory, the tree rsync
/// received there, the partial directories in both) that changed within [`RECEIVER_QUIET`]:
/// a receiver may still be writing or renaming them.
fn busy_temps(dir: BorrowedFd<'_>) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut n = 0;
    for name in names_in(dir)? {
        let st = match rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Renamed or removed meanwhile: that receiver is done with it.
            Err(_) => continue,
        };
        match kind_of(&st) {
            rfs::FileType::RegularFile if rsync_temp(&name) && busy(&st, now) => n += 1,
            rfs::FileType::Directory => match dir_at(dir, &name) {
                Ok(sub) => n += busy_temps(sub.as_fd())?,
                // Removed or replaced meanwhile: nothing of a receiver's below it.
                Err(e) if gone_or_replaced(&e) => {}
                Err(e) => return Err(e),
            },
            _ => {}
        }
    }
    Ok(n)
}

/// Waits until no rsync receiver of a run cut short is still writing in the scratch directory
/// `scratch` (its temp files are gone, renamed to partial files, or unchanged for
/// [`RECEIVER_QUIET`]), up to `max`. Called with the scratch directory locked,
/// before a run takes over what is in it: so the partial file a dying receiver is about to
/// leave is there for this run to resume from, never half-written and never removed with the
/// temp file it still is. Returns whether the receivers were done in time.
pub fn wait_for_receivers(scratch: BorrowedFd<'_>, max: Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + max;
    loop {
        if busy_temps(scratch)? == 0 {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Empties the scratch directory `scratch` but for partial data, and prunes that: what is old
/// or not a regular file goes. Partial data is kept in a partial directory
/// ([`names::partial_dir_name`]) in the scratch directory itself (the streaming copier's, by
/// digest) and in any directory below it (rsync's: `--partial-dir` is relative, so a file's
/// partial data sits in a partial directory beside where it is received). rsync's temp files
/// go only with `temps` (not while a receiver cut short may still be renaming its temp file
/// to the partial one: only as a run starts or ends), and only those unchanged for
/// [`RECEIVER_QUIET`]. Returns the partial files kept, as paths below the scratch directory
/// without the partial directory (`d/f` for rsync's `d/NAME/f`: the name rsync receives);
/// a directory is removed when nothing stayed in it.
pub fn clear_inside(scratch: BorrowedFd<'_>, temps: bool) -> io::Result<Vec<Vec<u8>>> {
    // A receiver cut short may rename its temp file while a partial directory is read: then
    // it is read again, so the partial file it became is counted.
    for _ in 0..3 {
        if let Some(kept) = clear_pass(scratch, temps)? {
            return Ok(kept);
        }
    }
    clear_pass(scratch, temps)?
        .ok_or_else(|| io::Error::other("the partial directory kept changing while it was cleared"))
}

/// One pass of [`clear_inside`]; `None` where an entry was renamed away while it ran.
fn clear_pass(scratch: BorrowedFd<'_>, temps: bool) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut pass = Pass {
        partial: names::partial_dir_name(),
        temps,
        clock: SystemTime::now(),
        now: now(),
        kept: Vec::new(),
    };
    if pass.dir(scratch, &[])?.is_none() {
        return Ok(None);
    }
    pass.kept.sort();
    Ok(Some(pass.kept))
}

/// What stayed of an entry a [`Pass`] cleared.
enum Stayed {
    Nothing,
    /// An rsync temp file a receiver may still write or rename into the partial directory
    /// beside it.
    Temp,
    /// A directory, for what stayed in it.
    Below,
}

/// One pass of [`clear_inside`] over the scratch directory's tree.
struct Pass {
    /// [`names::partial_dir_name`].
    partial: Vec<u8>,
    temps: bool,
    clock: SystemTime,
    /// Seconds since the epoch, for [`fresh`].
    now: i64,
    /// The partial files kept so far, below the scratch directory.
    kept: Vec<Vec<u8>>,
}

impl Pass {
    /// Clears the directory `dir`, at `prefix` below the scratch directory: returns whether
    /// anything stayed in it, `None` where an entry was renamed away meanwhile.
    fn dir(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> io::Result<Option<bool>> {
        let (mut stayed, mut temps) = (false, false);
        for n in names_in(dir)? {
            if n == self.partial {
                continue;
            }
            match self.debris(dir, &n, prefix)? {
                Some(Stayed::Nothing) => {}
                Some(Stayed::Temp) => (stayed, temps) = (true, true),
                Some(Stayed::Below) => stayed = true,
                None => return Ok(None),
            }
        }
        // Last, and whether it was listed or not: a receiver cut short makes the partial
        // directory as it renames its temp file there, which may have been since the listing.
        // While an rsync temp file stays beside it, a receiver may still do so: then it stays.
        match self.partial(dir, prefix, temps)? {
            Some(s) => stayed |= s,
            None => return Ok(None),
        }
        Ok(Some(stayed))
    }

    /// Removes `name` in `dir` (at `prefix` below the scratch directory), and what is in it
    /// where it is a directory, but for partial data and rsync's temp files a receiver may
    /// still be writing ([`keep_temp`]): those stay, and the directories holding them.
    /// Returns what stayed.
    fn debris(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        prefix: &[u8],
    ) -> io::Result<Option<Stayed>> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(Some(Stayed::Nothing)),
            Err(e) => return Err(e.into()),
        };
        match kind_of(&st) {
            rfs::FileType::RegularFile
                if rsync_temp(name) && keep_temp(&st, self.temps, self.clock) =>
            {
                Ok(Some(Stayed::Temp))
            }
            rfs::FileType::Directory => {
                let sub = match dir_at(dir, name) {
                    Ok(sub) => sub,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        return Ok(Some(Stayed::Nothing))
                    }
                    // Replaced by something else meanwhile (a symlink: unlinked, never
                    // followed).
                    Err(e) if gone_or_replaced(&e) => {
                        return remove_tree(dir, name).map(|()| Some(Stayed::Nothing))
                    }
                    Err(e) => return Err(e),
                };
                let rel = join(prefix, name);
                let Some(kept) = self.dir(sub.as_fd(), &rel)? else {
                    return Ok(None);
                };
                drop(sub);
                if kept {
                    return Ok(Some(Stayed::Below));
                }
                match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(Some(Stayed::Nothing)),
                    // A receiver renamed something in meanwhile (its partial file, maybe):
                    // the pass starts over, so what it left is counted.
                    Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            _ => remove_tree(dir, name).map(|()| Some(Stayed::Nothing)),
        }
    }

    /// Prunes the partial directory in `dir` (at `prefix` below the scratch directory):
    /// fresh regular files stay. The directory goes when none does and, `beside` false, no
    /// rsync temp file stayed in `dir`. Returns whether it stayed.
    fn partial(
        &mut self,
        dir: BorrowedFd<'_>,
        prefix: &[u8],
        beside: bool,
    ) -> io::Result<Option<bool>> {
        let name = self.partial.as_slice();
        let partial = match dir_at(dir, name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Some(false)),
            // Not a directory (a symlink put there): not ours to keep.
            Err(e) if gone_or_replaced(&e) => return remove_tree(dir, name).map(|()| Some(false)),
            Err(e) => return Err(e),
        };
        let mut stayed = false;
        for n in names_in(partial.as_fd())? {
            let st = match rfs::statat(&partial, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            // The inode's change time: rsync may give a partial file the source's old mtime,
            // but every write and rename moves the ctime.
            #[allow(clippy::unnecessary_cast)]
            let changed = st.st_ctime as i64;
            if kind_of(&st) == rfs::FileType::RegularFile
                && fresh(changed, self.now)
                && (!rsync_temp(&n) || keep_temp(&st, self.temps, self.clock))
            {
                self.kept.push(join(prefix, &n));
                stayed = true;
            } else {
                remove_tree(partial.as_fd(), &n)?;
            }
        }
        if stayed || beside {
            return Ok(Some(true));
        }
        drop(partial);
        match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(Some(false)),
            // Something came in after the listing.
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// `prefix/name`, or `name` where `prefix` is empty (`WirePath::join`'s rule; `paths` is a
/// layer above this one).
fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        v.extend_from_slice(prefix);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// Whether opening a directory that was listed failed because it is no longer one there.
fn gone_or_replaced(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
    )
}

/// Whether an rsync temp file stays in a clear: always where a receiver cut short may still
/// be renaming it (`temps` false), else while it changed within [`RECEIVER_QUIET`] of `clock`.
fn keep_temp(st: &rfs::Stat, temps: bool, clock: SystemTime) -> bool {
    !temps || busy(st, clock)
}

/// Removes the scratch directory `name` in `dir` with what is in it, but for partial data
/// worth keeping and rsync's temp files a receiver may still write ([`clear_inside`],
/// `temps` as there): then the directory stays, holding only those.
pub fn clear(dir: BorrowedFd<'_>, name: &[u8], temps: bool) -> io::Result<()> {
    let fd = match dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        // Not a directory: nothing of a scratch directory to keep.
        Err(_) => return remove_tree(dir, name),
    };
    if clear_inside(fd.as_fd(), temps)?.is_empty() {
        drop(fd);
        match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            // rsync's temp files that stayed, or what came in meanwhile: for the next clear.
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
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

    /// An rsync receiver cut short, as it ends: `writes` more writes to its temp file `temp`
    /// 200 ms apart, then the rename to the partial file `partial` (its directory made first,
    /// as rsync makes it).
    fn receiver(
        temp: std::path::PathBuf,
        partial: std::path::PathBuf,
        writes: usize,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for _ in 0..writes {
                std::thread::sleep(Duration::from_millis(200));
                let mut f = fs::OpenOptions::new().append(true).open(&temp).unwrap();
                std::io::Write::write_all(&mut f, b"more").unwrap();
            }
            fs::create_dir_all(partial.parent().unwrap()).unwrap();
            fs::rename(&temp, &partial).unwrap();
        })
    }

    #[test]
    fn a_run_waits_for_a_receiver_cut_short_then_clears_what_a_killed_one_left() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("scratch");
        let p = s.join(std::ffi::OsStr::from_bytes(&names::partial_dir_name()));
        fs::create_dir_all(&p).unwrap();
        let scratch = dir_at(rfs::CWD, s.as_os_str().as_bytes()).unwrap();
        // A receiver cut short still writes its temp file, then renames it to the partial
        // file: the wait ends with the partial file there, and a clear keeps it.
        fs::write(p.join(".big.Ab12Cd"), "half").unwrap();
        let receiver = receiver(p.join(".big.Ab12Cd"), p.join("big"), 5);
        std::thread::sleep(Duration::from_millis(50));
        assert!(wait_for_receivers(scratch.as_fd(), RECEIVER_WAIT).unwrap());
        receiver.join().unwrap();
        assert_eq!(
            fs::read(p.join("big")).unwrap(),
            b"halfmoremoremoremoremore"
        );
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            [b"big".to_vec()]
        );
        // A receiver killed outright left its temp file: once it has been still for a while
        // it is taken for that, and goes.
        fs::write(p.join(".big.Zz9876"), "temp").unwrap();
        let started = std::time::Instant::now();
        assert!(!wait_for_receivers(scratch.as_fd(), Duration::from_millis(100)).unwrap());
        assert!(wait_for_receivers(scratch.as_fd(), RECEIVER_WAIT).unwrap());
        assert!(started.elapsed() >= RECEIVER_QUIET - Duration::from_millis(100));
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            [b"big".to_vec()]
        );
        assert!(!p.join(".big.Zz9876").exists());
    }

    #[test]
    fn a_temp_file_beside_what_rsync_received_is_waited_for_and_kept_until_still() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("scratch");
        let p = s
            .join("sub/deep")
            .join(std::ffi::OsStr::from_bytes(&names::partial_dir_name()));
        fs::create_dir_all(s.join("sub/deep")).unwrap();
        fs::write(s.join("sub/done"), "x").unwrap();
        fs::write(s.join("sub/deep/.big.Ab12Cd"), "half").unwrap();
        let base = dir_at(rfs::CWD, d.path().as_os_str().as_bytes()).unwrap();
        // A client hung up: the receiver, cut short too, may still be writing it.
        clear(base.as_fd(), b"scratch", false).unwrap();
        assert!(s.join("sub/deep/.big.Ab12Cd").exists());
        assert!(!s.join("sub/done").exists(), "debris gone");
        // The next run waits while it is written, then for the rename to the partial file
        // beside it (the receiver makes the partial directory).
        let scratch = dir_at(rfs::CWD, s.as_os_str().as_bytes()).unwrap();
        let receiver = receiver(s.join("sub/deep/.big.Ab12Cd"), p.join("big"), 3);
        assert!(wait_for_receivers(scratch.as_fd(), RECEIVER_WAIT).unwrap());
        receiver.join().unwrap();
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            [b"sub/deep/big".to_vec()]
        );
        assert_eq!(fs::read(p.join("big")).unwrap(), b"halfmoremoremore");
        // One a receiver killed outright left, still for a while, goes.
        fs::write(s.join("sub/.gone.Zz9876"), "temp").unwrap();
        assert!(!wait_for_receivers(scratch.as_fd(), Duration::from_millis(100)).unwrap());
        assert!(wait_for_receivers(scratch.as_fd(), RECEIVER_WAIT).unwrap());
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            [b"sub/deep/big".to_vec()]
        );
        assert!(!s.join("sub/.gone.Zz9876").exists());
        // Once rsync took the partial file, the emptied tree goes.
        fs::remove_file(p.join("big")).unwrap();
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert!(!s.join("sub").exists(), "the emptied tree goes");
    }

    #[test]
    fn rsync_partial_files_beside_what_it_received_are_kept_by_path() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("scratch");
        let pdn = std::ffi::OsStr::from_bytes(&names::partial_dir_name()).to_owned();
        // Two files of one name in two directories, each cut short; debris beside them.
        for dir in ["a/b", "c"] {
            fs::create_dir_all(s.join(dir).join(&pdn)).unwrap();
            fs::write(s.join(dir).join(&pdn).join("f"), dir).unwrap();
            fs::write(s.join(dir).join("done"), "x").unwrap();
        }
        // A partial directory that is a symlink, and one holding no regular file.
        fs::create_dir_all(s.join("e")).unwrap();
        std::os::unix::fs::symlink("/etc", s.join("e").join(&pdn)).unwrap();
        fs::create_dir_all(s.join("g").join(&pdn).join("dir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", s.join("g").join(&pdn).join("f")).unwrap();
        let scratch = dir_at(rfs::CWD, s.as_os_str().as_bytes()).unwrap();
        assert_eq!(
            clear_inside(scratch.as_fd(), true).unwrap(),
            [b"a/b/f".to_vec(), b"c/f".to_vec()]
        );
        assert_eq!(
            fs::read(s.join("a/b").join(&pdn).join("f")).unwrap(),
            b"a/b"
        );
        assert_eq!(fs::read(s.join("c").join(&pdn).join("f")).unwrap(), b"c");
        assert!(!s.join("a/b/done").exists() && !s.join("c/done").exists());
        assert!(
            !s.join("e").exists() && !s.join("g").exists(),
            "nothing kept there"
        );
        assert!(Path::new("/etc/passwd").exists());
        // Once rsync took them, the directories that held them go too.
        fs::remove_file(s.join("a/b").join(&pdn).join("f")).unwrap();
        fs::remove_file(s.join("c").join(&pdn).join("f")).unwrap();
        let base = dir_at(rfs::CWD, d.path().as_os_str().as_bytes()).unwrap();
        clear(base.as_fd(), b"scratch", true).unwrap();
        assert!(!s.exists());
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
        // rsync's temp file stays while a receiver may still be writing it.
        assert_eq!(left, [".big.Ab12Cd", "big", "old"]);
        assert!(!s.join("sub").exists(), "debris gone");
        assert!(Path::new("/etc/passwd").exists());
        fs::remove_file(p.join(".big.Ab12Cd")).unwrap();
        fs::remove_file(p.join("big")).unwrap();
        fs::remove_file(p.join("old")).unwrap();
        clear(base.as_fd(), b"scratch", true).unwrap();
        assert!(!s.exists(), "an empty scratch directory goes");
    }
}
