//! What a root's filesystem holds of an entry's metadata: on Linux's own filesystems
//! everything; elsewhere found by trying it once a session on a temp file of synk's own in
//! the root: whether permission bits stick (exFAT, FAT, many
//! CIFS and FUSE mounts fake them) and how fine its mtimes are (exFAT: 10 ms, FAT: 2 s). What
//! a filesystem cannot hold is never taken as a change there: the scan reports the recorded
//! value instead, and a copy that arrived is recorded though the disk rounded its time.

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, Mode, Timespec, Timestamps};

use super::root::RootCtx;
use crate::model::Meta;
use crate::paths::WirePath;

/// What a filesystem holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holds {
    /// Permission bits set are read back as set.
    pub(crate) modes: bool,
    /// The step of its mtimes, in ns (1: to the nanosecond).
    pub(crate) mtime_step: i64,
    /// `user.*` extended attributes set are kept.
    pub(crate) xattrs: bool,
    /// POSIX ACLs set are kept.
    pub(crate) acls: bool,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            modes: true,
            mtime_step: 1,
            xattrs: true,
            acls: true,
        }
    }
}

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

/// The time the probe sets: an odd second and the last nanosecond, so any rounding shows.
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

const PROBE_SECS: i64 = 1_700_000_001;
const PROBE_NS: i64 = 999_999_999;

/// Tries root `ctx`'s filesystem on a temp file in the root directory (`None` where the root
/// is no directory there yet, or none could be made). The directory's mtime is given back.
pub(super) fn probe(ctx: &RootCtx) -> Option<Holds> {
    // A native Linux filesystem holds modes and nanosecond mtimes: it is not tried, so an
    // in-sync run on it writes nothing, not even a ctime on its root.
    // (`f_type`'s width differs between C libraries.)
    #[allow(clippy::unnecessary_cast)]
    if rfs::statfs(&ctx.abs).is_ok_and(|fs| holds_everything(fs.f_type as i64)) {
        return Some(Holds::default());
    }
    let root = ctx.at(&WirePath::default(), false).ok()?;
    let st = root.lstat().ok()??;
    if crate::beneath::kind_of(&st) != rfs::FileType::Directory {
        return None;
    }
    // Where synk's cache directory is on the same filesystem, the probe runs there: the root
    // is not written at all (its ctime stays, on every run).
    let dev = st.st_dev;
    let cache = crate::os::cache_dir(crate::os::home_dir().as_deref()).map(|d| d.join("synk"));
    if let Some(cache) = cache {
        if rfs::stat(&cache).is_ok_and(|c| c.st_dev == dev) {
            if let Ok(tmp) = tempfile::Builder::new()
                .prefix(".probe")
                .tempfile_in(&cache)
            {
                return Some(try_on(tmp.as_file().as_fd()));
            }
        }
    }
    let before = crate::beneath::Stamp::of(&st).mtime;
    let tried = ctx
        .at(&WirePath::from("probe"), false)
        .ok()
        .and_then(|at| at.temp().ok())
        .map(|tmp| try_on(tmp.file().as_fd()));
    // The temp file is gone (dropped); so is its trace on the directory.
    let _ = root.set_mtime(before);
    tried
}

/// What a temp file `fd` on the filesystem keeps: modes set, and how fine an mtime.
fn try_on(fd: std::os::fd::BorrowedFd<'_>) -> Holds {
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
            (want - got + 1).clamp(1, 2_000_000_000)
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
    Holds {
        modes,
        mtime_step,
        xattrs,
        acls,
    }
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
            "permission bits (chmod has no effect), extended attributes, ACLs, mtimes finer than 10 ms"
        );
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
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "no trace");
        assert_eq!(
            std::fs::metadata(&root).unwrap().modified().unwrap(),
            before
        );
    }
}
