//! A peer's record of digests it already computed, so a re-check reads only what changed.
//!
//! One file per root under `$XDG_CACHE_HOME/synk/` (`~/.cache/synk/`), keyed by the entry's
//! device and inode and trusted while size, mtime, ctime and a hash of the path hold — the
//! stamp git's index trusts too: content cannot change without the ctime changing. A few
//! dozen bytes an entry, in a sorted array. Entries touched in the last seconds before a scan are
//! not recorded (a write in the same clock tick could go unseen). A cache that is missing,
//! unreadable or from another version is simply ignored: it can cost time, never correctness.

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::paths::WirePath;

use crate::proto::Digest;

/// Bumped whenever the file format or the meaning of a stamp changes.
const FORMAT: u32 = 3;
/// Entries changed this recently before the scan began are not trusted later.
const SETTLE_NS: i64 = 2_000_000_000;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    ctime: i64,
}

impl Stamp {
    /// The modification time (ns) the stamp holds.
    pub fn mtime(&self) -> i64 {
        self.mtime
    }

    /// The size the stamp holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What identifies the file itself, whatever its name: device and inode.
    fn file(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The stamp of a file's current metadata.
    pub fn of(md: &Metadata) -> Self {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: ns(md.mtime(), md.mtime_nsec()),
            ctime: ns(md.ctime(), md.ctime_nsec()),
        }
    }
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct Record {
    stamp: Stamp,
    /// xxh3 of the entry's path: where inode numbers are not stable (some FUSE mounts), another
    /// file that comes back under this one's inode is still not taken for it.
    name: u64,
    digest: Digest,
}

fn name_of(rel: &WirePath) -> u64 {
    xxhash_rust::xxh3::xxh3_64(rel.as_bytes())
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    records: Vec<Record>,
}

/// The cache of one root for one scan: lookups from the last scan, records for the next.
pub struct DigestCache {
    file: Option<PathBuf>,
    /// Records of the last scan, sorted by device and inode.
    known: Vec<Record>,
    /// The device and inode of each of `known`, apart: a search touches 16 bytes an entry
    /// instead of a whole record, so it stays in the processor's caches.
    keys: Vec<(u64, u64)>,
    /// Which of `known` this scan found unchanged.
    seen: Vec<AtomicBool>,
    /// Digests this scan computed.
    fresh: Mutex<Vec<Record>>,
    /// Entries changed after this instant (ns) are not recorded.
    trusted_before: i64,
    /// Some digest was computed, not found: the file must be written again.
    missed: AtomicBool,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl DigestCache {
    /// A cache that remembers nothing.
    pub fn disabled() -> Self {
        Self::at(None)
    }

    /// The cache of `root` below `cache_dir` (the user's, `~/.cache`; `None`: no cache).
    pub fn for_root(cache_dir: Option<&Path>, root: &Path) -> Self {
        let file = cache_dir.map(|d| {
            let key = Digest::of(root.as_os_str().as_encoded_bytes()).hex();
            d.join("synk").join(format!("{}.digests", &key[..32]))
        });
        Self::at(file)
    }

    /// The cache kept in `file`.
    pub fn at(file: Option<PathBuf>) -> Self {
        let mut known: Vec<Record> = file
            .as_deref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| postcard::from_bytes::<Stored>(&bytes).ok())
            .filter(|s| s.format == FORMAT)
            .map(|s| s.records)
            .unwrap_or_default();
        known.sort_unstable_by_key(|r| r.stamp.file());
        known.dedup_by_key(|r| r.stamp.file());
        DigestCache {
            file,
            seen: known.iter().map(|_| AtomicBool::new(false)).collect(),
            keys: known.iter().map(|r| r.stamp.file()).collect(),
            known,
            fresh: Mutex::new(Vec::new()),
            trusted_before: now_ns() - SETTLE_NS,
            missed: AtomicBool::new(false),
        }
    }

    /// The digest recorded for the file at `rel` with this stamp, if it is unchanged.
    pub fn lookup(&self, rel: &WirePath, stamp: &Stamp) -> Option<Digest> {
        let at = self.keys.binary_search(&stamp.file());
        match at {
            Ok(i) if self.known[i].stamp == *stamp && self.known[i].name == name_of(rel) => {
                self.seen[i].store(true, Ordering::Relaxed);
                Some(self.known[i].digest)
            }
            _ => {
                self.missed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Remembers a freshly computed digest, unless the file changed too recently to trust.
    pub fn keep(&self, rel: &WirePath, stamp: Stamp, digest: Digest) {
        if self.file.is_some() && stamp.mtime.max(stamp.ctime) < self.trusted_before {
            self.fresh.lock().expect("cache lock").push(Record {
                stamp,
                name: name_of(rel),
                digest,
            });
        }
    }

    /// Writes what this scan saw (temp file and rename; errors only cost the next scan time).
    pub fn save(self) {
        let Some(file) = self.file else { return };
        let seen: Vec<bool> = self.seen.into_iter().map(AtomicBool::into_inner).collect();
        // Every file found by its stamp and none gone: the file on disk says it all already.
        if !self.missed.into_inner() && seen.iter().all(|s| *s) {
            return;
        }
        let mut records = self.fresh.into_inner().expect("cache lock");
        records.extend(
            self.known
                .into_iter()
                .zip(seen)
                .filter_map(|(r, seen)| seen.then_some(r)),
        );
        let stored = Stored {
            format: FORMAT,
            records,
        };
        let write = || -> std::io::Result<()> {
            let dir = file.parent().expect("cache file has a directory");
            std::fs::create_dir_all(dir)?;
            let bytes = postcard::to_stdvec(&stored).map_err(std::io::Error::other)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&bytes)?;
            tmp.persist(&file).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("digest cache {}: {e}", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::scan_root;
    use crate::scan::Found;

    fn digest_of(root: &Path, cache: &DigestCache) -> Digest {
        let mut got = None;
        scan_root(
            root,
            cache,
            &crate::exclude::Excludes::none(),
            &mut |e: Found| got = e.state.unwrap().digest,
        )
        .unwrap();
        got.expect("one file")
    }

    /// A cache whose clock says the files were written long ago.
    fn settled(file: &Path) -> DigestCache {
        let mut c = DigestCache::at(Some(file.to_path_buf()));
        c.trusted_before = i64::MAX;
        c
    }

    #[test]
    fn known_stamps_are_not_read_again_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let store = dir.path().join("cache/x.digests");
        std::fs::write(&f, "one").unwrap();
        let c = settled(&store);
        assert_eq!(digest_of(&f, &c), Digest::of(b"one"));
        c.save();
        // Plant a different digest under the file's current stamp: a re-check that trusts the
        // cache reports it, which proves the file was not read.
        let fake = Digest::of(b"planted");
        let stored = Stored {
            format: FORMAT,
            records: vec![Record {
                stamp: Stamp::of(&std::fs::metadata(&f).unwrap()),
                name: name_of(&WirePath::default()),
                digest: fake,
            }],
        };
        std::fs::write(&store, postcard::to_stdvec(&stored).unwrap()).unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), fake);
        // The same stamp under another path (an inode handed out again) is not trusted.
        let elsewhere = Stored {
            format: FORMAT,
            records: vec![Record {
                name: name_of(&WirePath(b"other".to_vec())),
                ..stored.records[0]
            }],
        };
        std::fs::write(&store, postcard::to_stdvec(&elsewhere).unwrap()).unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), Digest::of(b"one"));
        std::fs::write(&store, postcard::to_stdvec(&stored).unwrap()).unwrap();
        // Any write moves the ctime, even one that restores size and mtime.
        let md = std::fs::metadata(&f).unwrap();
        std::fs::write(&f, "two").unwrap();
        filetime::set_file_mtime(&f, filetime::FileTime::from_last_modification_time(&md)).unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), Digest::of(b"two"));
    }

    #[test]
    fn recent_changes_and_broken_caches_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let store = dir.path().join("x.digests");
        std::fs::write(&f, "new").unwrap();
        // Written just now: not recorded.
        let c = DigestCache::at(Some(store.clone()));
        assert_eq!(digest_of(&f, &c), Digest::of(b"new"));
        c.save();
        let saved: Stored = postcard::from_bytes(&std::fs::read(&store).unwrap()).unwrap();
        assert!(saved.records.is_empty());
        // Garbage in the cache file is ignored.
        std::fs::write(&store, b"\xff\xff garbage").unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), Digest::of(b"new"));
    }
}
