//! Re-checks from memory. A session that scans again (`--every`, `--watch`) watches its roots
//! from its second scan on; where the watch saw nothing change since the last walk, every
//! root of that walk was summed up, and nothing was asked of the peer in between but reads,
//! the next scan answers with the same summaries instead of walking the tree again.
//!
//! Only where the watch sees every change: on local filesystems (another host's write to an
//! NFS export raises no inotify event here), and for at most [`FULL_WALK_EVERY`] (a write
//! through a shared mapping raises none either), as Syncthing and Mutagen pair their watchers
//! with full rescans.

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

/// The request a scan answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Asked {
    /// The roots, as the client named them.
    pub(super) roots: Vec<RootSpec>,
    /// The client's exclude patterns.
    pub(super) excludes: Vec<String>,
}

/// A walk whose answer can be given again.
#[derive(Debug)]
pub(super) struct LastWalk {
    /// What it answered.
    pub(super) asked: Asked,
    /// Each root's frames as the walk sent them (its header, its own entry, its summary),
    /// in the order asked.
    pub(super) said: Vec<Vec<u8>>,
    /// Each root's state file once the walk was done (a walk writes none).
    pub(super) files: Vec<Option<FileId>>,
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
        };
        let id = FileId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (4, 5),
            ctime: (6, 7),
        };
        let last = LastWalk {
            asked: asked.clone(),
            said: vec![b"frames".to_vec()],
            files: vec![Some(id)],
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
        let rewritten = [Some(FileId { size: 4, ..id })];
        let same = [Some(id)];
        let minute = Duration::from_secs(60);
        for (now, answers, why) in [
            (
                Now {
                    asked: &asked,
                    changed: false,
                    files: &same,
                    age: minute,
                },
                true,
                "as walked",
            ),
            (
                Now {
                    asked: &asked,
                    changed: true,
                    files: &same,
                    age: minute,
                },
                false,
                "a change seen",
            ),
            (
                Now {
                    asked: &asked,
                    changed: false,
                    files: &same,
                    age: FULL_WALK_EVERY,
                },
                false,
                "too old",
            ),
            (
                Now {
                    asked: &other_root,
                    changed: false,
                    files: &same,
                    age: minute,
                },
                false,
                "another root",
            ),
            (
                Now {
                    asked: &other_excludes,
                    changed: false,
                    files: &same,
                    age: minute,
                },
                false,
                "other excludes",
            ),
            (
                Now {
                    asked: &asked,
                    changed: false,
                    files: &rewritten,
                    age: minute,
                },
                false,
                "state rewritten",
            ),
            (
                Now {
                    asked: &asked,
                    changed: false,
                    files: &[None],
                    age: minute,
                },
                false,
                "state gone",
            ),
        ] {
            assert_eq!(last.answers(&now), answers, "{why}");
        }
    }

    #[test]
    fn pseudo_filesystems_and_missing_paths_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!watch_sees_all(Path::new("/proc")));
        assert!(!watch_sees_all(&dir.path().join("missing")));
    }
}
