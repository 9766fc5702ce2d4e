//! Re-checks from memory. A session that scans again (`--every`, `--watch`) watches its roots
//! from its second scan on; where the watch saw nothing change since the last walk, every
//! root of that walk was summed up, and nothing was asked of the peer in between but reads,
//! the next scan answers with the same summaries instead of walking the tree again.
//!
//! Only where the watch sees every change: on local filesystems (another host's write to an
//! NFS export raises no inotify event here), with no mount inside the tree, no hard-linked file
//! (written through another path, it raises no event here), the same mounts and the same
//! directories at the roots' paths as when the walk began (a watch follows inodes, and an
//! unmount raises no event), and for at most [`FULL_WALK_EVERY`] (a write through a shared
//! mapping raises none either), as Syncthing and Mutagen pair their watchers with full
//! rescans.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::paths::RootSpec;

/// How long one walk's summaries may stand in for later ones.
pub(super) const FULL_WALK_EVERY: Duration = Duration::from_secs(600);

/// What identifies one version of a state file: another client's sync that changed this
/// peer's records changes it, even where it wrote nothing under the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// The state file at `path` as it is now (`None`: there is none).
    pub(super) fn of(path: Option<&Path>) -> Option<FileId> {
        let md = fs::metadata(path?).ok()?;
        Some(FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }
}

/// What a root's path led to: the directory or file itself and the directory holding it. A
/// watch follows inodes, not paths: a root unmounted, mounted over, moved or replaced is another
/// root to it, seen by no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RootId {
    it: (u64, u64),
    parent: (u64, u64),
}

impl RootId {
    /// `root` as it is now (`None`: it or its directory is gone).
    pub(super) fn of(root: &Path) -> Option<RootId> {
        let id = |p: &Path| fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()));
        Some(RootId {
            it: id(root)?,
            parent: id(root.parent().unwrap_or(root))?,
        })
    }
}

/// A fingerprint of this host's mounts: a mount or unmount anywhere (over a root, inside a
/// tree) changes it. `None` where the kernel does not say.
pub(super) fn mounts() -> Option<u64> {
    let table = fs::read("/proc/self/mountinfo").ok()?;
    Some(xxhash_rust::xxh3::xxh3_64(&table))
}

/// The request a scan answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Asked {
    /// The roots, as the client named them.
    pub(super) roots: Vec<RootSpec>,
    /// The client's exclude patterns.
    pub(super) excludes: Vec<String>,
    /// Unchanged entries in brief (a summary is an answer to that only).
    pub(super) brief: bool,
}

/// A walk whose answer can be given again.
#[derive(Debug)]
pub(super) struct LastWalk {
    /// What it answered.
    pub(super) asked: Asked,
    /// Each root's frames as the walk sent them (its header, its own entry, its summary),
    /// in the order asked.
    pub(super) said: Vec<Vec<u8>>,
    /// Each root's state file as the walk read it.
    pub(super) files: Vec<Option<FileId>>,
    /// What each root's path led to.
    pub(super) roots: Vec<Option<RootId>>,
    /// This host's mounts.
    pub(super) mounts: u64,
    /// When the walk began.
    pub(super) began: Instant,
}

/// What stands between a scan and the last walk's answer, as the serve sees it now.
#[derive(Debug)]
pub(super) struct Now<'a> {
    /// The request.
    pub(super) asked: &'a Asked,
    /// The watch saw a change since the walk began, or there is no watch over these roots.
    pub(super) changed: bool,
    /// Each root's state file now.
    pub(super) files: &'a [Option<FileId>],
    /// What each root's path leads to now.
    pub(super) roots: &'a [Option<RootId>],
    /// This host's mounts now.
    pub(super) mounts: Option<u64>,
    /// Time since the walk began.
    pub(super) age: Duration,
}

impl LastWalk {
    /// Whether this walk's summaries answer the scan described by `now`.
    pub(super) fn answers(&self, now: &Now) -> bool {
        !now.changed
            && now.age < FULL_WALK_EVERY
            && *now.asked == self.asked
            && now.files == self.files.as_slice()
            && now.roots == self.roots.as_slice()
            && now.mounts == Some(self.mounts)
    }
}

/// Whether a change under `path` raises an inotify event here, whoever makes it: true on the
/// local filesystems Linux runs from; false on network and FUSE mounts, and where unsure.
pub(super) fn watch_sees_all(path: &Path) -> bool {
    // statfs(2) magic numbers, from linux/magic.h (ZFS's from OpenZFS).
    const LOCAL: [i64; 7] = [
        0xEF53,     // ext2, ext3, ext4
        0x58465342, // xfs
        0x9123683E, // btrfs
        0x01021994, // tmpfs
        0xF2F52010, // f2fs
        0x2FC12FC1, // zfs
        0xCA451A4E, // bcachefs
    ];
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct it is given and reads the NUL-terminated path.
    let kind = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return false;
        }
        st.f_type as i64
    };
    LOCAL.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::WirePath;

    #[test]
    fn a_walk_answers_only_an_unchanged_tree_asked_the_same() {
        let asked = Asked {
            roots: vec![RootSpec::Home(WirePath::from("notes"))],
            excludes: vec!["*.tmp".into()],
            brief: true,
        };
        let id = FileId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (4, 5),
            ctime: (6, 7),
        };
        let root = RootId {
            it: (1, 10),
            parent: (1, 9),
        };
        let last = LastWalk {
            asked: asked.clone(),
            said: vec![b"frames".to_vec()],
            files: vec![Some(id)],
            roots: vec![Some(root)],
            mounts: 42,
            began: Instant::now(),
        };
        let other_root = Asked {
            roots: vec![RootSpec::Home(WirePath::from("docs"))],
            ..asked.clone()
        };
        let other_excludes = Asked {
            excludes: vec![],
            ..asked.clone()
        };
        let in_full = Asked {
            brief: false,
            ..asked.clone()
        };
        let rewritten = [Some(FileId { size: 4, ..id })];
        let same = [Some(id)];
        let here = [Some(root)];
        let mounted_over = [Some(RootId { it: (2, 1), ..root })];
        let minute = Duration::from_secs(60);
        let now = Now {
            asked: &asked,
            changed: false,
            files: &same,
            roots: &here,
            mounts: Some(42),
            age: minute,
        };
        for (now, answers, why) in [
            (Now { ..now }, true, "as walked"),
            (
                Now {
                    changed: true,
                    ..now
                },
                false,
                "a change seen",
            ),
            (
                Now {
                    age: FULL_WALK_EVERY,
                    ..now
                },
                false,
                "too old",
            ),
            (
                Now {
                    asked: &other_root,
                    ..now
                },
                false,
                "another root",
            ),
            (
                Now {
                    asked: &other_excludes,
                    ..now
                },
                false,
                "other excludes",
            ),
            (
                Now {
                    asked: &in_full,
                    ..now
                },
                false,
                "asked in full",
            ),
            (
                Now {
                    files: &rewritten,
                    ..now
                },
                false,
                "state rewritten",
            ),
            (
                Now {
                    files: &[None],
                    ..now
                },
                false,
                "state gone",
            ),
            (
                Now {
                    roots: &mounted_over,
                    ..now
                },
                false,
                "another directory at the path",
            ),
            (
                Now {
                    roots: &[None],
                    ..now
                },
                false,
                "root gone",
            ),
            (
                Now {
                    mounts: Some(43),
                    ..now
                },
                false,
                "a mount or unmount",
            ),
            (
                Now {
                    mounts: None,
                    ..now
                },
                false,
                "mounts unknown",
            ),
        ] {
            assert_eq!(last.answers(&now), answers, "{why}");
        }
    }

    #[test]
    fn a_root_is_known_by_its_inode_not_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        fs::create_dir(&root).unwrap();
        let before = RootId::of(&root);
        assert!(before.is_some());
        assert_eq!(RootId::of(&root), before);
        fs::rename(&root, dir.path().join("old")).unwrap();
        assert_eq!(RootId::of(&root), None);
        fs::create_dir(&root).unwrap();
        assert_ne!(RootId::of(&root), before, "replaced");
        assert!(mounts().is_some_and(|m| Some(m) == mounts()));
    }

    #[test]
    fn pseudo_filesystems_and_missing_paths_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!watch_sees_all(Path::new("/proc")));
        assert!(!watch_sees_all(&dir.path().join("missing")));
    }
}
