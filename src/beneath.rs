//! Reaching entries below a root without ever leaving it: every create, rename, unlink, mkdir,
//! chmod, utimes, symlink and link goes relative to a directory handle opened on the root,
//! and every directory on the way to an entry is opened from the one above it, never through
//! a symlink. A symlink swapped into a parent at any moment fails the walk instead of
//! redirecting a write.
//!
//! Where the kernel has `openat2`, a directory below the root is opened in one call with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; elsewhere one `O_NOFOLLOW | O_DIRECTORY` open per
//! component does the same. The root's own path is the user's: a symlink in it (`/home` on
//! another disk) is followed once, when the root is opened.
//!
//! The few names synk writes beside an entry itself (temp files) are made here too, with
//! `O_EXCL` in the entry's own directory, so a new version reaches its name by one `rename`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, ResolveFlags, Timespec};

use crate::{names, os};

pub mod partial;

/// What identifies one version of an entry on this host without reading it: a new inode, a
/// write, a chmod or a rename over it all change the stamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Status change time (ns): moves on every write, chmod, link or rename of the inode.
    pub ctime: i64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime: i64,
}

impl Stamp {
    /// The stamp of a file's metadata as std reads it.
    pub fn of_metadata(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            ctime: ns(md.ctime(), md.ctime_nsec()),
            size: md.size(),
            mtime: ns(md.mtime(), md.mtime_nsec()),
        }
    }

    /// The stamp in 128 bits, to keep one per entry cheaply: equal stamps give equal ids,
    /// and no id is 0 (0 stands for "none").
    pub fn id(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for v in [
            self.dev,
            self.ino,
            self.ctime as u64,
            self.size,
            self.mtime as u64,
        ] {
            h.update(&v.to_le_bytes());
        }
        h.digest128().max(1)
    }

    /// The stamp of an `lstat`/`fstat` result.
    pub fn of(st: &rfs::Stat) -> Stamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            #[allow(clippy::unnecessary_cast)]
            ctime: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            size: st.st_size as u64,
            #[allow(clippy::unnecessary_cast)]
            mtime: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
        }
    }
}

/// The kind of an `lstat` result.
pub fn kind_of(st: &rfs::Stat) -> rfs::FileType {
    rfs::FileType::from_raw_mode(st.st_mode)
}

/// How directories below a root are opened on this host, found out once.
static RESOLVE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const OPENAT2: u8 = 1;
const WALK: u8 = 2;

/// Flags of every directory handle: enough to anchor `*at` calls, no read permission needed.
fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A directory every write below it stays inside.
#[derive(Debug)]
pub struct Beneath {
    fd: OwnedFd,
    path: PathBuf,
}

/// An entry below a [`Beneath`]: its parent directory's handle and its name there.
#[derive(Debug)]
pub struct At {
    dir: OwnedFd,
    name: Vec<u8>,
    /// The whole path, for messages only: never opened.
    shown: PathBuf,
}

impl Beneath {
    /// Opens the directory at `path` (symlinks in `path` itself are followed: it is the user's).
    pub fn open(path: &Path) -> io::Result<Beneath> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Beneath {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory `rel` below this one, as a base of its own (never through a symlink).
    pub fn below(&self, rel: &[u8]) -> io::Result<Beneath> {
        Ok(Beneath {
            fd: self.dir(rel)?,
            path: self.shown(rel),
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's handle.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `rel` below this directory, for messages.
    pub fn shown(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(OsStr::from_bytes(rel))
        }
    }

    /// Opens the directory `rel` below this one (empty: this one), never through a symlink.
    pub fn dir(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        if rel.is_empty() {
            return rfs::openat(&self.fd, ".", dir_flags(), Mode::empty()).map_err(Into::into);
        }
        check(rel)?;
        if RESOLVE.load(Ordering::Relaxed) != WALK {
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&self.fd, rel, dir_flags(), Mode::empty(), how) {
                Ok(fd) => {
                    RESOLVE.store(OPENAT2, Ordering::Relaxed);
                    return Ok(fd);
                }
                // Not in this kernel, or refused by a seccomp filter: walk instead, from now on.
                Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM)
                    if RESOLVE.load(Ordering::Relaxed) == UNKNOWN =>
                {
                    RESOLVE.store(WALK, Ordering::Relaxed);
                }
                Err(e) => return Err(self.explain(rel, e.into())),
            }
        }
        let mut fd = self.dir(b"")?;
        for comp in rel.split(|b| *b == b'/') {
            fd = rfs::openat(&fd, comp, dir_flags(), Mode::empty())
                .map_err(|e| self.explain(rel, e.into()))?;
        }
        Ok(fd)
    }

    /// Opens the directory `rel`, making each missing directory on the way (and `rel` itself)
    /// with `mode`, never through a symlink.
    pub fn dir_creating(&self, rel: &[u8], mode: u32) -> io::Result<OwnedFd> {
        match self.dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        check(rel)?;
        let mut fd = self.dir(b"")?;
        for comp in rel.split(|b| *b == b'/') {
            match rfs::mkdirat(&fd, comp, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(self.explain(rel, e.into())),
            }
            fd = rfs::openat(&fd, comp, dir_flags(), Mode::empty())
                .map_err(|e| self.explain(rel, e.into()))?;
        }
        Ok(fd)
    }

    /// The entry `rel` (not empty): its parent directory, which must exist, and its name.
    pub fn at(&self, rel: &[u8]) -> io::Result<At> {
        let (parent, name) = split(rel)?;
        Ok(At {
            dir: self.dir(parent)?,
            name: name.to_vec(),
            shown: self.shown(rel),
        })
    }

    /// As [`Beneath::at`], making missing parent directories with `mode`.
    pub fn at_creating(&self, rel: &[u8], mode: u32) -> io::Result<At> {
        let (parent, name) = split(rel)?;
        Ok(At {
            dir: self.dir_creating(parent, mode)?,
            name: name.to_vec(),
            shown: self.shown(rel),
        })
    }

    /// An error that names the path and, where a component is a symlink or not a directory,
    /// says so.
    fn explain(&self, rel: &[u8], e: io::Error) -> io::Error {
        let shown = self.shown(rel);
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a symlink or non-directory on the way (refusing to write through it)",
                    shown.display()
                ),
            ),
            _ => io::Error::new(e.kind(), format!("{}: {}", shown.display(), msg_of(&e))),
        }
    }
}

/// An I/O error's text without "(os error N)".
fn msg_of(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Refuses a relative path that could leave or alias its base: the caller checked it already
/// (see `paths::check_rel`); this is the last line.
fn check(rel: &[u8]) -> io::Result<()> {
    let bad = rel.first() == Some(&b'/')
        || rel.contains(&0)
        || rel
            .split(|b| *b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: refused: not a plain relative path",
                Path::new(OsStr::from_bytes(rel)).display()
            ),
        ));
    }
    Ok(())
}

/// `a/b/c` into `a/b` and `c`.
fn split(rel: &[u8]) -> io::Result<(&[u8], &[u8])> {
    if rel.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an entry needs a name below its base",
        ));
    }
    check(rel)?;
    Ok(match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    })
}

/// What a replacement expects to find at the name it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the name must still be free (`RENAME_NOREPLACE`).
    Absent,
    /// The version the decision saw: a stamp with this [`Stamp::id`].
    Same(u128),
}

/// Why a replacement did not happen.
#[derive(Debug)]
pub enum Refused {
    /// The entry is not the version the decision saw any more (edited meanwhile): the new
    /// version did not replace it.
    Changed(PathBuf),
    /// Anything else.
    Io(io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Changed(p) => write!(
                f,
                "{}: changed while synk was copying; that version stays",
                p.display()
            ),
            Refused::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused::Io(e)
    }
}

impl At {
    /// The entry's path, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Its name in its directory.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Its parent directory's handle.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    fn err(&self, e: impl Into<io::Error>) -> io::Error {
        let e = e.into();
        io::Error::new(
            e.kind(),
            format!("{}: {}", self.shown.display(), msg_of(&e)),
        )
    }

    /// `lstat`: `None` when there is nothing at the name.
    pub fn lstat(&self) -> io::Result<Option<rfs::Stat>> {
        match rfs::statat(&self.dir, self.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Opens the regular file at the name for reading, never through a symlink, never
    /// blocking on a fifo.
    pub fn open_read(&self) -> io::Result<File> {
        let fd = rfs::openat(
            &self.dir,
            self.name.as_slice(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(e))?;
        let f = File::from(fd);
        if !f.metadata().map_err(|e| self.err(e))?.is_file() {
            return Err(self.err(io::Error::other("not a regular file")));
        }
        Ok(f)
    }

    /// Opens the file or directory at the name to change its attributes through the handle
    /// (`fsetxattr` takes no `O_PATH` handle): never through a symlink, never blocking on a
    /// fifo, and only a file or directory.
    pub fn open_attrs(&self) -> io::Result<OwnedFd> {
        let fd = rfs::openat(
            &self.dir,
            self.name.as_slice(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(e))?;
        let st = rfs::fstat(&fd).map_err(|e| self.err(e))?;
        match kind_of(&st) {
            rfs::FileType::RegularFile | rfs::FileType::Directory => Ok(fd),
            _ => Err(self.err(io::Error::other("neither a file nor a directory"))),
        }
    }

    /// Gives the entry at the name (a symlink itself, never its target) this owner.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        rfs::chownat(
            &self.dir,
            self.name.as_slice(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(e))
    }

    /// The target of the symlink at the name.
    pub fn read_link(&self) -> io::Result<Vec<u8>> {
        rfs::readlinkat(&self.dir, self.name.as_slice(), Vec::new())
            .map(|c| c.into_bytes())
            .map_err(|e| self.err(e))
    }

    /// A new temp file beside the entry (see [`Temp`]).
    pub fn temp(&self) -> io::Result<Temp> {
        Temp::new_in(&self.dir, self.shown.parent().unwrap_or(Path::new("/")))
    }

    /// Makes a directory at the name with `mode`; `false` when a directory is there already.
    pub fn mkdir(&self, mode: u32) -> io::Result<bool> {
        match rfs::mkdirat(&self.dir, self.name.as_slice(), Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => match self.lstat()? {
                Some(st) if kind_of(&st) == rfs::FileType::Directory => Ok(false),
                _ => Err(self.err(io::Error::other("exists and is not a directory"))),
            },
            Err(e) => Err(self.err(e)),
        }
    }

    /// Sets the permission bits of the file or directory at the name (never of a symlink's
    /// target): the inode is pinned by an `O_PATH` handle first and changed through it.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        let fd = rfs::openat(
            &self.dir,
            self.name.as_slice(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(e))?;
        let st = rfs::fstat(&fd).map_err(|e| self.err(e))?;
        if kind_of(&st) == rfs::FileType::Symlink {
            return Err(self.err(io::Error::other("is a symlink; its mode is not set")));
        }
        chmod_fd(&fd, mode).map_err(|e| self.err(e))
    }

    /// Sets the modification time (ns) of whatever is at the name, a symlink itself included.
    pub fn set_mtime(&self, mtime: i64) -> io::Result<()> {
        let t = timespec(mtime);
        let times = rfs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rfs::utimensat(
            &self.dir,
            self.name.as_slice(),
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(e))
    }

    /// Removes the file or symlink at the name (gone already is fine).
    pub fn unlink(&self) -> io::Result<()> {
        match rfs::unlinkat(&self.dir, self.name.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Removes the empty directory at the name (gone already is fine).
    pub fn rmdir(&self) -> io::Result<()> {
        match rfs::unlinkat(&self.dir, self.name.as_slice(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Makes a symlink to `target` at the name with modification time `mtime`, replacing
    /// what is there as `expect` allows: made under a temp name beside it, then renamed.
    pub fn symlink(
        &self,
        target: &[u8],
        mtime: i64,
        expect: Option<Expect>,
    ) -> Result<Stamp, Refused> {
        let name = temp_name();
        rfs::symlinkat(target, &self.dir, name.as_slice()).map_err(|e| self.err(e))?;
        let tmp = At {
            dir: rfs::openat(&self.dir, ".", dir_flags(), Mode::empty())
                .map_err(|e| self.err(e))?,
            name,
            shown: self.shown.clone(),
        };
        let placed = tmp
            .set_mtime(mtime)
            .map_err(Refused::Io)
            .and_then(|()| tmp.rename_over(self, expect));
        if placed.is_err() {
            let _ = tmp.unlink();
        }
        placed
    }

    /// Renames the entry at this name to `to`'s, as `expect` allows (`None`: over anything
    /// but a directory). Returns the stamp of what now stands at `to`.
    pub fn rename_over(&self, to: &At, expect: Option<Expect>) -> Result<Stamp, Refused> {
        let flags = match expect {
            Some(Expect::Absent) => RenameFlags::NOREPLACE,
            _ => RenameFlags::empty(),
        };
        if let Some(Expect::Same(want)) = expect {
            // The one syscall of window the check leaves.
            match to.lstat()? {
                Some(st) if Stamp::of(&st).id() == want => {}
                _ => return Err(Refused::Changed(to.shown.clone())),
            }
        }
        match rfs::renameat_with(
            &self.dir,
            self.name.as_slice(),
            &to.dir,
            to.name.as_slice(),
            flags,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) if expect == Some(Expect::Absent) => {
                return Err(Refused::Changed(to.shown.clone()))
            }
            // A filesystem without renameat2's flags: check, then rename (one syscall apart).
            Err(rustix::io::Errno::INVAL) if expect == Some(Expect::Absent) => {
                if to.lstat()?.is_some() {
                    return Err(Refused::Changed(to.shown.clone()));
                }
                rfs::renameat(&self.dir, self.name.as_slice(), &to.dir, to.name.as_slice())
                    .map_err(|e| to.err(e))?;
            }
            Err(e) => return Err(Refused::Io(to.err(e))),
        }
        let st = to.lstat()?.ok_or_else(|| {
            to.err(io::Error::other(
                "gone right after it was renamed into place",
            ))
        })?;
        Ok(Stamp::of(&st))
    }

    /// Makes `to` another name of the file at this name, replacing what is there as `expect`
    /// allows: linked under a temp name beside `to`, then renamed over it (never through a
    /// symlink: both ends are names in directories opened beneath the root).
    pub fn link_over(&self, to: &At, expect: Option<Expect>) -> Result<Stamp, Refused> {
        let name = temp_name();
        // The directory handle first: a failure after the link would leave a second name.
        let dir = rfs::openat(&to.dir, ".", dir_flags(), Mode::empty()).map_err(|e| to.err(e))?;
        rfs::linkat(
            &self.dir,
            self.name.as_slice(),
            &to.dir,
            name.as_slice(),
            AtFlags::empty(),
        )
        .map_err(|e| Refused::Io(to.err(e)))?;
        let tmp = At {
            dir,
            name,
            shown: to.shown.clone(),
        };
        let placed = tmp.rename_over(to, expect);
        // A rename between two names of one inode does nothing and leaves the temp name;
        // after a rename that happened it is gone already.
        let _ = tmp.unlink();
        placed
    }

    /// Hard-links the entry at this name as `to` (which must be free).
    pub fn link_as(&self, to: &At) -> io::Result<()> {
        rfs::linkat(
            &self.dir,
            self.name.as_slice(),
            &to.dir,
            to.name.as_slice(),
            AtFlags::empty(),
        )
        .map_err(|e| to.err(e))
    }

    /// Makes a rename below this entry's directory durable. Best effort: a directory without
    /// read permission, or a filesystem that refuses, is left as it is.
    pub fn sync_dir(&self) {
        if let Ok(fd) = rfs::openat(
            &self.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rfs::fsync(&fd);
        }
    }
}

/// chmod through an `O_PATH` handle: by its `/proc/self/fd` link where `/proc` is mounted
/// (what glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` does), else through a readable handle.
fn chmod_fd(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rfs::chmod(proc.as_str(), Mode::from_raw_mode(mode)) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let real = rfs::openat(
        fd,
        "",
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    );
    match real {
        Ok(real) => rfs::fchmod(&real, Mode::from_raw_mode(mode)).map_err(Into::into),
        Err(e) => Err(e.into()),
    }
}

fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Removes `name` in `dir` and, for a directory, everything below it, never following a
/// symlink (what the walk meets is unlinked, not entered).
pub fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in rfs::Dir::read_from(&fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_tree(fd.as_fd(), &n)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long a temp symlink (which cannot be locked) may live before it counts as a killed
/// run's.
const SYMLINK_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes a temp file or scratch directory of synk's named `name` in `dir` if no live run
/// owns it (writers hold an exclusive `flock` on what they write; a temp symlink, which
/// cannot be locked, counts as stale a minute after it was made). Anything not of
/// [`names::is_own`]'s exact shape is never touched. Returns whether it was removed.
pub fn remove_if_stale(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    if !names::is_own(name) {
        return false;
    }
    let Ok(st) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    let kind = kind_of(&st);
    let stale = match kind {
        rfs::FileType::Symlink => {
            #[allow(clippy::unnecessary_cast)]
            let made = st.st_ctime as i64;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            now - made > SYMLINK_TEMP_AGE.as_secs() as i64
        }
        rfs::FileType::RegularFile | rfs::FileType::Directory => {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            match rfs::openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockExclusive).is_ok(),
                Err(_) => false,
            }
        }
        _ => false,
    };
    if !stale {
        return false;
    }
    tracing::debug!(name = %String::from_utf8_lossy(name), "removing what a killed run left");
    let removed = if kind == rfs::FileType::Directory && names::is_scratch_name(name) {
        // A copy's partial data stays for the next run to resume from.
        partial::clear(dir, name, true)
    } else if kind == rfs::FileType::Directory {
        remove_tree(dir, name)
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty()).map_err(Into::into)
    };
    removed.is_ok()
}

/// What a serve is writing that must not outlive it: temp files and scratch directories (but
/// for the partial data of copies cut short, see [`partial`]), each as (a handle on its
/// directory, its name, whether it is a tree).
type Live = Vec<(u64, OwnedFd, Vec<u8>, bool)>;

static LIVE: std::sync::Mutex<(u64, Live)> = std::sync::Mutex::new((0, Vec::new()));

/// Registers `name` in `dir` as something to remove if the process is stopped; the returned
/// id deregisters it ([`forget`]).
pub fn on_stop_remove(dir: BorrowedFd<'_>, name: &[u8], tree: bool) -> Option<u64> {
    let fd = rfs::openat(dir, ".", dir_flags(), Mode::empty()).ok()?;
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.0 += 1;
    let id = live.0;
    live.1.push((id, fd, name.to_vec(), tree));
    Some(id)
}

/// Deregisters what [`on_stop_remove`] registered.
pub fn forget(id: Option<u64>) {
    if let Some(id) = id {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.1.retain(|(i, ..)| *i != id);
    }
}

/// Directories a serve made writable by their owner to fill them, each with the mode and mtime
/// it gets once filled: given on a stop as well ([`on_stop`]), so that a stopped run never
/// leaves one wider than it was, which the next scan would take for a change to spread. One
/// handle per directory they are below (a root), and their paths there: a tree of thousands
/// of read-only directories holds a handle or two, not one each.
type Widened = Vec<(Beneath, Vec<(Vec<u8>, u32, i64)>)>;

static WIDENED: std::sync::Mutex<Widened> = std::sync::Mutex::new(Vec::new());

/// Registers directory `rel` below `base`, made writable by its owner for this session, to
/// get `mode` and `mtime` should the process be stopped before [`narrowed`].
pub fn on_stop_narrow(base: &Beneath, rel: &[u8], mode: u32, mtime: i64) {
    let mut widened = WIDENED.lock().unwrap_or_else(|e| e.into_inner());
    let i = match widened.iter().position(|(b, _)| b.path == base.path) {
        Some(i) => i,
        None => {
            let Ok(fd) = rfs::openat(&base.fd, ".", dir_flags(), Mode::empty()) else {
                return;
            };
            let path = base.path.clone();
            widened.push((Beneath { fd, path }, Vec::new()));
            widened.len() - 1
        }
    };
    widened[i].1.push((rel.to_vec(), mode, mtime));
}

/// Forgets what [`on_stop_narrow`] registered: the session gave those directories their
/// modes and times.
pub fn narrowed() {
    WIDENED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Removes everything registered with [`on_stop_remove`], and gives the directories of
/// [`on_stop_narrow`] their modes and times (deepest first): the process is being stopped.
pub fn on_stop() {
    let mut widened = std::mem::take(&mut *WIDENED.lock().unwrap_or_else(|e| e.into_inner()));
    let live = std::mem::take(&mut LIVE.lock().unwrap_or_else(|e| e.into_inner()).1);
    for (_, dir, name, tree) in live {
        let _ = if tree && names::is_scratch_name(&name) {
            partial::clear(dir.as_fd(), &name, false)
        } else if tree {
            remove_tree(dir.as_fd(), &name)
        } else {
            rfs::unlinkat(&dir, name.as_slice(), AtFlags::empty()).map_err(Into::into)
        };
    }
    for (base, dirs) in &mut widened {
        // Below a directory, its entries' paths sort after its own: backwards, they come first.
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, mode, mtime) in dirs.iter() {
            let Ok(at) = base.at(rel) else { continue };
            let setid = at
                .lstat()
                .ok()
                .flatten()
                .map_or(0, |st| st.st_mode & 0o6000);
            let _ = at.set_mode(mode | setid);
            let _ = at.set_mtime(*mtime);
        }
    }
}

/// A fresh temp name ([`names::is_temp_name`]).
fn temp_name() -> Vec<u8> {
    // Without random bytes (no getrandom, no /dev/urandom) the clock and the pid still make a
    // name unlikely to be taken; O_EXCL settles the rest.
    let r = os::random_u64().unwrap_or_else(|_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        xxhash_rust::xxh3::xxh3_64(&(t ^ (u64::from(std::process::id()) << 32)).to_le_bytes())
    });
    names::temp_name(r)
}

/// A temp file synk is writing beside an entry: made with `O_EXCL` under a fresh
/// [`names::is_temp_name`] name, locked while it lives (a scan elsewhere then knows a live run owns
/// it), removed on drop unless it was renamed into place.
#[derive(Debug)]
pub struct Temp {
    at: At,
    file: File,
    placed: bool,
    /// Its registration for removal if the process is stopped.
    live: Option<u64>,
}

impl Temp {
    fn new_in(dir: &OwnedFd, shown_dir: &Path) -> io::Result<Temp> {
        loop {
            let name = temp_name();
            let made = rfs::openat(
                dir,
                name.as_slice(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            );
            match made {
                Ok(fd) => {
                    let file = File::from(fd);
                    let _ = rfs::flock(&file, rfs::FlockOperation::NonBlockingLockExclusive);
                    let dir = rfs::openat(dir, ".", dir_flags(), Mode::empty())?;
                    let live = on_stop_remove(dir.as_fd(), &name, false);
                    return Ok(Temp {
                        at: At {
                            dir,
                            shown: shown_dir.join(OsStr::from_bytes(&name)),
                            name,
                        },
                        file,
                        placed: false,
                        live,
                    });
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("{}: {}", shown_dir.display(), msg_of(&e.into())),
                    ))
                }
            }
        }
    }

    /// The open file, to write.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file, to write.
    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Gives the file its mode and modification time, makes it durable and renames it over
    /// `to` as `expect` allows. Returns the stamp of the file in place.
    pub fn place(
        self,
        to: &At,
        mode: u32,
        mtime: i64,
        expect: Option<Expect>,
    ) -> Result<Stamp, Refused> {
        self.place_as(to, mode, mtime, expect, true)
    }

    /// [`Temp::place`], made durable on its own only if `durable`: else a flush of the whole
    /// filesystem makes it durable later, with many others (as after rsync's runs).
    pub fn place_as(
        mut self,
        to: &At,
        mode: u32,
        mtime: i64,
        expect: Option<Expect>,
        durable: bool,
    ) -> Result<Stamp, Refused> {
        rfs::fchmod(&self.file, Mode::from_raw_mode(mode)).map_err(|e| to.err(e))?;
        if durable {
            self.file.sync_all().map_err(|e| to.err(e))?;
        }
        let t = timespec(mtime);
        rfs::futimens(
            &self.file,
            &rfs::Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(|e| to.err(e))?;
        let stamp = self.at.rename_over(to, expect)?;
        self.placed = true;
        if durable {
            to.sync_dir();
        }
        Ok(stamp)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        forget(self.live.take());
        if !self.placed {
            let _ = self.at.unlink();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tree() -> (tempfile::TempDir, Beneath) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("root/a/b")).unwrap();
        let b = Beneath::open(&d.path().join("root")).unwrap();
        (d, b)
    }

    fn both_ways(test: impl Fn()) {
        // Where this kernel has openat2, the walk is tried as well.
        for how in [UNKNOWN, WALK] {
            RESOLVE.store(how, Ordering::Relaxed);
            test();
        }
        RESOLVE.store(UNKNOWN, Ordering::Relaxed);
    }

    #[test]
    fn a_symlink_on_the_way_is_never_followed() {
        both_ways(|| {
            let (d, b) = tree();
            let outside = d.path().join("outside");
            fs::create_dir(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, d.path().join("root/a/evil")).unwrap();
            std::os::unix::fs::symlink("b", d.path().join("root/a/inner")).unwrap();
            for rel in [&b"a/evil/x"[..], b"a/inner/x", b"a/evil/deeper/x"] {
                let e = b.at(rel).unwrap_err();
                assert!(e.to_string().contains("symlink"), "{e}");
                let e = b.at_creating(rel, 0o700).unwrap_err();
                assert!(e.to_string().contains("symlink"), "{e}");
            }
            for rel in [&b"../x"[..], b"/etc/x", b"a//x", b"a/./x", b""] {
                assert!(b.at(rel).is_err(), "{rel:?}");
            }
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        });
    }

    #[test]
    fn missing_parents_are_made_and_entries_written_through_temps() {
        both_ways(|| {
            let (d, b) = tree();
            let at = b.at_creating(b"new/deep/f", 0o700).unwrap();
            let mut t = at.temp().unwrap();
            t.file_mut().write_all(b"hello").unwrap();
            let stamp = t
                .place(&at, 0o640, 5_000_000_007, Some(Expect::Absent))
                .unwrap();
            let p = d.path().join("root/new/deep/f");
            let md = fs::metadata(&p).unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"hello");
            assert_eq!(md.mode() & 0o7777, 0o640);
            assert_eq!((md.mtime(), md.mtime_nsec()), (5, 7));
            assert_eq!((stamp.ino, stamp.size), (md.ino(), 5));
            assert_eq!(
                fs::read_dir(p.parent().unwrap()).unwrap().count(),
                1,
                "no temp left"
            );
        });
    }

    #[test]
    fn a_replacement_never_overwrites_what_changed_since_the_decision() {
        let (d, b) = tree();
        let p = d.path().join("root/a/f");
        fs::write(&p, "v1").unwrap();
        let at = b.at(b"a/f").unwrap();
        let seen = Stamp::of(&at.lstat().unwrap().unwrap());
        // The user saves a new version meanwhile.
        fs::write(&p, "edit").unwrap();
        let t = at.temp().unwrap();
        match t.place(&at, 0o644, 0, Some(Expect::Same(seen.id()))) {
            Err(Refused::Changed(shown)) => assert_eq!(shown, p),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&p).unwrap(), b"edit");
        // And a name that was free and is taken now is not taken over.
        let at = b.at(b"a/g").unwrap();
        fs::write(d.path().join("root/a/g"), "mine").unwrap();
        let t = at.temp().unwrap();
        assert!(matches!(
            t.place(&at, 0o644, 0, Some(Expect::Absent)),
            Err(Refused::Changed(_))
        ));
        assert_eq!(fs::read(d.path().join("root/a/g")).unwrap(), b"mine");
        let left: Vec<_> = fs::read_dir(d.path().join("root/a"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 3, "no temp left: {left:?}");
        // The stamp seen is what it replaces.
        let seen = Stamp::of(&at.lstat().unwrap().unwrap());
        let t = at.temp().unwrap();
        t.place(&at, 0o600, 0, Some(Expect::Same(seen.id())))
            .unwrap();
        assert_eq!(fs::read(d.path().join("root/a/g")).unwrap(), b"");
    }

    #[test]
    fn modes_and_times_go_to_the_entry_never_a_symlinks_target() {
        let (d, b) = tree();
        let outside = d.path().join("victim");
        fs::write(&outside, "x").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, d.path().join("root/a/l")).unwrap();
        let at = b.at(b"a/l").unwrap();
        assert!(at.set_mode(0o777).is_err());
        at.set_mtime(9_000_000_000).unwrap();
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::symlink_metadata(d.path().join("root/a/l"))
                .unwrap()
                .mtime(),
            9
        );
        assert_ne!(fs::metadata(&outside).unwrap().mtime(), 9);
        assert!(at.open_read().is_err(), "a symlink is not read through");
        // A directory's mode is set, even one that then forbids writing into it.
        let dir = b.at(b"a/b").unwrap();
        dir.set_mode(0o555).unwrap();
        assert_eq!(
            fs::metadata(d.path().join("root/a/b")).unwrap().mode() & 0o7777,
            0o555
        );
        dir.set_mode(0o755).unwrap();
    }

    #[test]
    fn symlinks_are_made_as_symlinks() {
        let (d, b) = tree();
        let at = b.at(b"a/link").unwrap();
        at.symlink(b"../../etc/passwd", 3_000_000_000, Some(Expect::Absent))
            .unwrap();
        let p = d.path().join("root/a/link");
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("../../etc/passwd"));
        assert_eq!(fs::symlink_metadata(&p).unwrap().mtime(), 3);
        assert_eq!(at.read_link().unwrap(), b"../../etc/passwd");
        // Replacing it needs the stamp it has.
        assert!(matches!(
            at.symlink(b"x", 0, Some(Expect::Absent)),
            Err(Refused::Changed(_))
        ));
        let seen = Stamp::of(&at.lstat().unwrap().unwrap());
        at.symlink(b"x", 0, Some(Expect::Same(seen.id()))).unwrap();
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("x"));
        assert_eq!(fs::read_dir(d.path().join("root/a")).unwrap().count(), 2);
    }

    #[test]
    fn temps_are_made_with_synks_exact_shape() {
        let (d, b) = tree();
        let t = b.at(b"a/f").unwrap().temp().unwrap();
        let names: Vec<_> = fs::read_dir(d.path().join("root/a"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "b")
            .collect();
        assert_eq!(names.len(), 1);
        assert!(
            names::is_temp_name(names[0].as_encoded_bytes()),
            "{names:?}"
        );
        drop(t);
    }

    #[test]
    fn only_stale_debris_of_synks_exact_shape_is_removed() {
        let (d, b) = tree();
        let a = d.path().join("root/a");
        let live = b.at(b"a/f").unwrap().temp().unwrap();
        let live_name = fs::read_dir(&a)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .find(|n| names::is_temp_name(n.as_encoded_bytes()))
            .unwrap();
        let dead = names::temp_name(1);
        let scratch = names::scratch_name(2);
        fs::write(a.join(std::ffi::OsStr::from_bytes(&dead)), "half").unwrap();
        fs::create_dir_all(a.join(std::ffi::OsStr::from_bytes(&scratch)).join("x/y")).unwrap();
        fs::write(
            a.join(std::ffi::OsStr::from_bytes(&scratch)).join("x/y/z"),
            "z",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc",
            a.join(std::ffi::OsStr::from_bytes(&scratch)).join("x/etc"),
        )
        .unwrap();
        fs::write(a.join(".synk-notes.tmp"), "mine").unwrap();
        let dir = b.dir(b"a").unwrap();
        assert!(
            !remove_if_stale(dir.as_fd(), live_name.as_encoded_bytes()),
            "live"
        );
        assert!(remove_if_stale(dir.as_fd(), &dead));
        assert!(remove_if_stale(dir.as_fd(), &scratch));
        assert!(!remove_if_stale(dir.as_fd(), b".synk-notes.tmp"));
        assert!(
            Path::new("/etc/passwd").exists(),
            "a symlink inside is unlinked, not entered"
        );
        let mut left: Vec<_> = fs::read_dir(&a)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        drop(live);
    }

    #[test]
    fn a_dropped_temp_is_removed() {
        let (d, b) = tree();
        let at = b.at(b"a/f").unwrap();
        let t = at.temp().unwrap();
        assert_eq!(fs::read_dir(d.path().join("root/a")).unwrap().count(), 2);
        drop(t);
        assert_eq!(fs::read_dir(d.path().join("root/a")).unwrap().count(), 1);
    }
}
