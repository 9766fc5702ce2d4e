//! Re-checks from memory. A session that scans again (`--every`, `--watch`) watches its roots
//! from its second scan on; where the watch saw nothing change since the last walk, every
//! root of that walk was summed up, and nothing was asked of the peer in between but reads,
//! the next scan answers with the same summaries instead of walking the tree again.
//!
//! Only where the watch sees every change: on local filesystems (another host's write to an
//! NFS export raises no inotify event here), with no mount inside the tree, the same mounts and
//! the same directories at the roots' paths as when the walk began (a watch follows inodes, and
//! an unmount raises no event), and for at most [`FULL_WALK_EVERY`]: a write through a shared
//! mapping, or through a hard link from outside the tree, raises no event either, as Syncthing
//! and Mutagen pair their watchers with full rescans.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::paths::RootSpec;

/// How long one walk's summaries may stand in for later ones.
pub(super) const FULL_WALK_EVERY: Duration = Duration::from_secs(600);

/// What identifies one version of a file or directory: another client's sync that changed
/// this peer's records changes the state directory, even where it wrote nothing under the
/// root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// `path` as it is now (`None`: there is none).
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

/// A fingerprint of the mounts at, above and below `roots`: a mount or unmount over a root or
/// inside a tree changes it (others on the host do not). `None` where the kernel does not say.
pub(super) fn mounts(roots: &[PathBuf]) -> Option<u64> {
    let table = fs::read("/proc/self/mountinfo").ok()?;
    Some(mounts_in(&table, roots))
}

/// Mount points are bytes, like any path: a table is read as such.
fn mounts_in(table: &[u8], roots: &[PathBuf]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for line in table.split(|&b| b == b'\n') {
        // The fifth field is the mount point, with space, tab, newline and \ as octal escapes.
        let Some(point) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(OsString::from_vec(unescape(point)));
        if roots
            .iter()
            .any(|r| r.starts_with(&point) || point.starts_with(r))
        {
            h.update(line);
            h.update(b"\n");
        }
    }
    h.digest()
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 4..];
            }
            None => {
                out.push(b'\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// Whether a walk of `roots` can be answered again from a watch's account: every root on a
/// filesystem a watch sees whole ([`watch_sees_all`]), none inside another, and no single
/// file among several roots (the watch on the file's directory would drop the others' events
/// there).
pub(super) fn repeatable(roots: &[PathBuf]) -> bool {
    let nested = roots.iter().enumerate().any(|(i, a)| {
        roots
            .iter()
            .skip(i + 1)
            .any(|b| a.starts_with(b) || b.starts_with(a))
    });
    let file_among_others = roots.len() > 1 && !roots.iter().all(|p| p.is_dir());
    !nested && !file_among_others && roots.iter().all(|p| watch_sees_all(p))
}

/// What a later scan checks against a walk besides the watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Marks {
    /// What each root's path led to.
    pub(super) roots: Vec<Option<RootId>>,
    /// The mounts at, above and below the roots ([`mounts`]).
    pub(super) mounts: u64,
    /// The state directory's list of state files: every commit renames one into it, whichever
    /// client's and whichever root's (`None`: this peer keeps no state).
    pub(super) state: Option<FileId>,
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
    /// The marks as the walk began.
    pub(super) marks: Marks,
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
    /// The marks now (`None`: unknowable).
    pub(super) marks: Option<&'a Marks>,
    /// Time since the walk began.
    pub(super) age: Duration,
}

impl LastWalk {
    /// Whether this walk's summaries answer the scan described by `now`.
    pub(super) fn answers(&self, now: &Now) -> bool {
        !now.changed
            && now.age < FULL_WALK_EVERY
            && *now.asked == self.asked
            && now.marks == Some(&self.marks)
    }
}

/// Whether a change under `path` raises an inotify event here, whoever makes it: true on the
/// local filesystems Linux runs from; false on network and FUSE mounts, and where unsure.
pub(super) fn watch_sees_all(path: &Path) -> bool {
    crate::os::local_fs(path)
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
        let marks = Marks {
            roots: vec![Some(root)],
            mounts: 42,
            state: Some(id),
        };
        let last = LastWalk {
            asked: asked.clone(),
            said: vec![b"frames".to_vec()],
            marks: marks.clone(),
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
        let committed = Marks {
            state: Some(FileId { size: 4, ..id }),
            ..marks.clone()
        };
        let mounted_over = Marks {
            roots: vec![Some(RootId { it: (2, 1), ..root })],
            ..marks.clone()
        };
        let gone = Marks {
            roots: vec![None],
            ..marks.clone()
        };
        let remounted = Marks {
            mounts: 43,
            ..marks.clone()
        };
        let minute = Duration::from_secs(60);
        let now = Now {
            asked: &asked,
            changed: false,
            marks: Some(&marks),
            age: minute,
        };
        #[rustfmt::skip]
        let cases = [
            (Now { ..now }, true, "as walked"),
            (Now { changed: true, ..now }, false, "a change seen"),
            (Now { age: FULL_WALK_EVERY, ..now }, false, "too old"),
            (Now { asked: &other_root, ..now }, false, "another root"),
            (Now { asked: &other_excludes, ..now }, false, "other excludes"),
            (Now { asked: &in_full, ..now }, false, "asked in full"),
            (Now { marks: Some(&committed), ..now }, false, "a state file committed"),
            (Now { marks: Some(&mounted_over), ..now }, false, "another directory at the path"),
            (Now { marks: Some(&gone), ..now }, false, "root gone"),
            (Now { marks: Some(&remounted), ..now }, false, "a mount or unmount"),
            (Now { marks: None, ..now }, false, "marks unknown"),
        ];
        for (now, answers, why) in cases {
            assert_eq!(last.answers(&now), answers, "{why}");
        }
    }

    #[test]
    fn only_mounts_at_above_or_below_a_root_count() {
        let table = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:5 / /data rw - ext4 /dev/vdb rw
31 30 0:6 / /data/notes/nfs\\040share rw - nfs srv:/x rw
32 22 0:7 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
";
        let roots = [PathBuf::from("/data/notes")];
        let h = mounts_in(table.as_bytes(), &roots);
        // The table's hash over `roots` without the lines `drop` picks.
        let without = |drop: &dyn Fn(&str) -> bool| {
            let rest: String = table
                .lines()
                .filter(|l| !drop(l))
                .map(|l| format!("{l}\n"))
                .collect();
            mounts_in(rest.as_bytes(), &roots)
        };
        // A container's mount elsewhere comes and goes unseen.
        assert_eq!(without(&|l| l.contains("docker")), h);
        // The mount below the root (its name unescaped), and the one above it, count.
        assert_ne!(without(&|l| l.contains("nfs")), h);
        assert_ne!(without(&|l| l.starts_with("30 ")), h);
        assert_eq!(unescape(b"/a\\040b\\134c\\x"), b"/a b\\c\\x");
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
        let roots = [root.clone()];
        assert!(mounts(&roots).is_some_and(|m| Some(m) == mounts(&roots)));
    }

    #[test]
    fn pseudo_filesystems_and_missing_paths_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!watch_sees_all(Path::new("/proc")));
        assert!(!watch_sees_all(&dir.path().join("missing")));
    }
}
