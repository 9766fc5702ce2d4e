//! What a root's filesystem holds: on Linux's own filesystems everything; elsewhere found by
//! trying it once a session in a scratch directory of synk's own: whether permission bits
//! stick (exFAT, FAT, many CIFS and FUSE mounts fake them), how fine its mtimes are (exFAT:
//! 10 ms, FAT: 2 s), whether it folds case or Unicode normalization, and whether symlinks and
//! hard links can be made. What a filesystem cannot hold of an entry's metadata is never
//! taken as a change there: the scan reports the recorded value instead, and a copy that
//! arrived is recorded though the disk rounded its time. Names it takes for one are told to
//! the client, whose decision keeps them apart ([`crate::plan::Fold`]).

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};

use super::root::RootCtx;
use crate::model::Meta;
use crate::names;
use crate::paths::WirePath;

pub(crate) use crate::proto::Holds;

impl Holds {
    /// What it cannot hold, for the note a first sync there shows; `None`: everything.
    pub(crate) fn lacks(&self) -> Option<String> {
        let mut out = Vec::new();
        if !self.modes {
            out.push("permission bits (chmod has no effect)".to_string());
        }
        if !self.xattrs {
            out.push("extended attributes".to_string());
        }
        if !self.acls {
            out.push("ACLs".to_string());
        }
        if self.mtime_step > 1 {
            out.push(format!(
                "mtimes finer than {} ms",
                self.mtime_step as f64 / 1e6
            ));
        }
        if self.folds_case {
            out.push("names that differ only in case (it is case-insensitive)".to_string());
        }
        if self.normalizes {
            out.push("names that differ only in Unicode normalization (NFC/NFD)".to_string());
        }
        if !self.symlinks {
            out.push("symlinks".to_string());
        }
        if !self.hard_links {
            out.push("hard links".to_string());
        }
        (!out.is_empty()).then(|| out.join(", "))
    }

    /// `found` as this peer holds it, given its record `recorded` of the same kind: the
    /// fields its filesystem cannot hold are taken as recorded, never as a change (a mode
    /// whatever the content; a rounded time only of the same content: a new content brings
    /// its own).
    pub(crate) fn as_held(&self, found: &mut Meta, recorded: &Meta) {
        if std::mem::discriminant(&found.kind) != std::mem::discriminant(&recorded.kind) {
            return;
        }
        if !self.modes {
            found.mode = recorded.mode;
            // Nor owners: such a filesystem gives every file the mount's.
            found.extra.owner = recorded.extra.owner.clone();
        }
        if !self.xattrs {
            found.extra.xattrs = recorded.extra.xattrs;
            found.extra.sys = recorded.extra.sys;
        }
        if !self.acls {
            found.extra.acl = recorded.extra.acl;
        }
        if !self.hard_links {
            found.extra.link.clone_from(&recorded.extra.link);
        }
        let same =
            crate::model::Content::of(Some(found)) == crate::model::Content::of(Some(recorded));
        if same && self.same_time(found.mtime, recorded.mtime) {
            found.mtime = recorded.mtime;
        }
    }

    /// Whether `on_disk` is `wanted` as this filesystem rounds times.
    pub(crate) fn same_time(&self, on_disk: i64, wanted: i64) -> bool {
        let d = wanted - on_disk;
        d == 0 || (self.mtime_step > 1 && (0..self.mtime_step).contains(&d))
    }
}

/// Whether a filesystem (its `statfs` magic) is one of Linux's own, which keep permission
/// bits and nanosecond mtimes: ext2/3/4, XFS, Btrfs, tmpfs, ZFS, F2FS, overlayfs, bcachefs,
/// ReiserFS, JFS, NILFS.
fn holds_everything(magic: i64) -> bool {
    const NATIVE: [i64; 11] = [
        0xEF53,     // ext2/3/4
        0x58465342, // XFS
        0x9123683E, // Btrfs
        0x01021994, // tmpfs
        0x2FC12FC1, // ZFS
        0xF2F52010, // F2FS
        0x794C7630, // overlayfs
        0xCA451A4E, // bcachefs
        0x52654973, // ReiserFS
        0x3153464A, // JFS
        0x3434,     // NILFS
    ];
    NATIVE.contains(&magic)
}

/// The time the probe sets: an odd second and the last nanosecond, so any rounding shows.
const PROBE_SECS: i64 = 1_700_000_001;
const PROBE_NS: i64 = 999_999_999;

/// Tries root `ctx`'s filesystem in a scratch directory of synk's made in the root, or in its
/// parent where the root is not there yet (a first sync makes it on that filesystem: names
/// that would be one there must be known before). `None` where the root is no directory, or
/// nothing could be made. The directory's mtime is given back.
pub(super) fn probe(ctx: &RootCtx) -> Option<Holds> {
    let root = ctx.at(&WirePath::default(), false).ok()?;
    let (dir, st) = match root.lstat().ok()? {
        Some(st) if crate::beneath::kind_of(&st) == rfs::FileType::Directory => {
            let dir = rfs::openat(root.dir(), root.name(), dir_flags(), Mode::empty()).ok()?;
            (dir, st)
        }
        Some(_) => return None,
        None => {
            let dir = rfs::openat(root.dir(), ".", dir_flags(), Mode::empty()).ok()?;
            let st = rfs::fstat(&dir).ok()?;
            (dir, st)
        }
    };
    // A native Linux filesystem holds modes and nanosecond mtimes: it is not tried, so an
    // in-sync run on it writes nothing, not even a ctime on its root.
    // (`f_type`'s width differs between C libraries.)
    #[allow(clippy::unnecessary_cast)]
    if rfs::fstatfs(&dir).is_ok_and(|fs| holds_everything(fs.f_type as i64)) {
        return Some(Holds::default());
    }
    // Where synk's cache directory is on the same filesystem, the probe runs there: the root
    // is not written at all (its ctime stays, on every run).
    let dev = st.st_dev;
    let cache = crate::os::cache_dir(crate::os::home_dir().as_deref()).map(|d| d.join("synk"));
    if let Some(cache) = cache {
        if rfs::stat(&cache).is_ok_and(|c| c.st_dev == dev) {
            if let Ok(tmp) = tempfile::Builder::new().prefix(".probe").tempdir_in(&cache) {
                let dir = rfs::open(tmp.path(), dir_flags(), Mode::empty()).ok()?;
                return try_in(dir.as_fd());
            }
        }
    }
    let before = crate::beneath::Stamp::of(&st).mtime;
    // A scratch-shaped name: skipped by every scan, removed if the process is stopped.
    let name = names::scratch_name(xxhash_rust::xxh3::xxh3_64(
        &(now_ns() ^ (u64::from(std::process::id()) << 32)).to_le_bytes(),
    ));
    let tried = match rfs::mkdirat(&dir, name.as_slice(), Mode::from_raw_mode(0o700)) {
        Ok(()) => {
            let live = crate::beneath::on_stop_remove(dir.as_fd(), &name, true);
            let tried = rfs::openat(&dir, name.as_slice(), dir_flags(), Mode::empty())
                .ok()
                .and_then(|d| try_in(d.as_fd()));
            let _ = crate::beneath::remove_tree(dir.as_fd(), &name);
            crate::beneath::forget(live);
            tried
        }
        Err(_) => None,
    };
    // The scratch directory is gone; so is its trace on the directory.
    let t = Timespec {
        tv_sec: before.div_euclid(1_000_000_000) as _,
        tv_nsec: before.rem_euclid(1_000_000_000) as _,
    };
    let _ = rfs::futimens(
        &dir,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    );
    tried
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What an empty directory `dir` of synk's own holds: a file `a` made in it shows modes and
/// mtimes; whether `A` finds it, whether an NFC name finds a file made under its NFD
/// spelling, and whether a symlink and a hard link can be made beside it.
fn try_in(dir: BorrowedFd<'_>) -> Option<Holds> {
    let create = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = rfs::openat(dir, "a", create, Mode::from_raw_mode(0o600)).ok()?;
    let (modes, mtime_step, xattrs, acls) = try_on(file.as_fd());
    // The directory holds nothing else: a name found there that was never made is one of
    // ours spelled otherwise. (Inode numbers cannot tell: FUSE filesystems without `use_ino`
    // number each path they are asked for anew.)
    let found = |name: &str| rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let folds_case = found("a") && found("A");
    // "é" written decomposed (e, U+0301), looked up composed (U+00E9).
    let normalizes =
        rfs::openat(dir, "e\u{301}", create, Mode::from_raw_mode(0o600)).is_ok() && found("\u{e9}");
    let symlinks = rfs::symlinkat("a", dir, "l").is_ok()
        && rfs::readlinkat(dir, "l", Vec::new()).is_ok_and(|t| t.as_bytes() == b"a");
    let hard_links = rfs::linkat(dir, "a", dir, "h", AtFlags::empty()).is_ok()
        && rfs::fstat(&file).is_ok_and(|st| st.st_nlink == 2);
    Some(Holds {
        modes,
        mtime_step,
        xattrs,
        acls,
        folds_case,
        normalizes,
        symlinks,
        hard_links,
        as_root: false,
    })
}

/// What a temp file `fd` on the filesystem keeps: modes set, how fine an mtime, `user.*`
/// extended attributes and ACLs.
fn try_on(fd: BorrowedFd<'_>) -> (bool, i64, bool, bool) {
    let stuck = |mode: u32| {
        rfs::fchmod(fd, Mode::from_raw_mode(mode)).is_ok()
            && rfs::fstat(fd).is_ok_and(|st| st.st_mode & 0o7777 == mode)
    };
    let modes = stuck(0o600) && stuck(0o640);
    let t = Timespec {
        tv_sec: PROBE_SECS,
        tv_nsec: PROBE_NS as _,
    };
    let set = rfs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    );
    let mtime_step = match (set, rfs::fstat(fd)) {
        (Ok(()), Ok(st)) => {
            #[allow(clippy::unnecessary_cast)]
            let got = (st.st_mtime as i64) * 1_000_000_000 + st.st_mtime_nsec as i64;
            let want = PROBE_SECS * 1_000_000_000 + PROBE_NS;
            (want - got + 1).clamp(1, crate::proto::MAX_MTIME_STEP)
        }
        _ => 1,
    };
    let xattrs = rfs::fsetxattr(fd, "user.synk-probe", b"1", rfs::XattrFlags::empty()).is_ok()
        && rfs::fgetxattr(fd, "user.synk-probe", &mut [0u8; 4][..]).is_ok_and(|n| n == 1);
    let acls = rfs::fsetxattr(
        fd,
        "system.posix_acl_access",
        &probe_acl(),
        rfs::XattrFlags::empty(),
    )
    .is_ok()
        && rfs::fgetxattr_query(fd, "system.posix_acl_access").is_ok_and(|n| n > 0);
    (modes, mtime_step, xattrs, acls)
}

/// A POSIX ACL in the kernel's xattr form (version 2; tag, permissions, id per entry) that no
/// mode can say: the owner may read and write, a named user (this one) may read.
fn probe_acl() -> Vec<u8> {
    let me = rustix::process::geteuid().as_raw();
    let entries: [(u16, u16, u32); 5] = [
        (0x01, 6, u32::MAX), // owner
        (0x02, 4, me),       // a named user
        (0x04, 0, u32::MAX), // owning group
        (0x10, 4, u32::MAX), // mask
        (0x20, 0, u32::MAX), // others
    ];
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn what_a_filesystem_cannot_hold_is_taken_as_recorded() {
        let m = |mode, mtime| Meta {
            kind: Kind::File,
            size: 0,
            mode,
            mtime,
            digest: None,
            extra: Default::default(),
        };
        let exfat = Holds {
            modes: false,
            mtime_step: 10_000_000,
            xattrs: false,
            acls: false,
            hard_links: false,
            ..Holds::default()
        };
        let mut recorded = m(0o644, 5_123_456_789);
        recorded.extra.xattrs = Some([3; 16]);
        recorded.extra.acl = Some([4; 16]);
        let mut found = m(0o777, 5_120_000_000);
        exfat.as_held(&mut found, &recorded);
        assert_eq!(found, recorded);
        // A real touch there is still one.
        let mut touched = m(0o777, 9_000_000_000);
        exfat.as_held(&mut touched, &recorded);
        assert_eq!((touched.mode, touched.mtime), (0o644, 9_000_000_000));
        assert_eq!(
            touched.extra, recorded.extra,
            "no xattrs there: as recorded"
        );
        // Where everything is held, nothing is taken.
        let mut chmod = m(0o600, 5_120_000_000);
        Holds::default().as_held(&mut chmod, &recorded);
        assert_eq!((chmod.mode, chmod.mtime), (0o600, 5_120_000_000));
        assert_eq!(Holds::default().lacks(), None);
        assert_eq!(
            exfat.lacks().unwrap(),
            "permission bits (chmod has no effect), extended attributes, ACLs, mtimes finer than 10 ms, hard links"
        );
        // A name linked as recorded, independent on a disk without links: no change.
        let mut linked = recorded.clone();
        linked.extra.link = Some(WirePath::from("a"));
        let mut independent = recorded.clone();
        exfat.as_held(&mut independent, &linked);
        assert_eq!(independent, linked);
    }

    #[test]
    fn this_filesystem_holds_modes_and_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir(&root).unwrap();
        let states = tempfile::tempdir().unwrap();
        let state = crate::state::RootState::load(Some(states.path()), &root).unwrap();
        let ctx = RootCtx::new(root.clone(), crate::exclude::Excludes::none(), state);
        let before = std::fs::metadata(&root).unwrap().modified().unwrap();
        let holds = probe(&ctx).unwrap();
        assert!(holds.modes && holds.xattrs && holds.acls);
        assert!(holds.mtime_step <= 1_000, "{holds:?}");
        assert!(holds.hard_links, "{holds:?}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "no trace");
        assert_eq!(
            std::fs::metadata(&root).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn a_directory_here_tells_case_names_and_links_apart() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rfs::open(dir.path(), dir_flags(), Mode::empty()).unwrap();
        let holds = try_in(fd.as_fd()).unwrap();
        assert!(!holds.folds_case && !holds.normalizes, "{holds:?}");
        assert!(
            holds.symlinks && holds.hard_links && holds.modes,
            "{holds:?}"
        );
    }
}
