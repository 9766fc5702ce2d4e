//! Kept versions: every version synk overwrites or deletes on a peer is kept there, so it can be
//! listed (`synk --versions`) and brought back (`synk --restore`).
//!
//! The store is `$XDG_STATE_HOME/synk/versions/`: the versions themselves in `objects/`, and an
//! append-only `index` of framed [`Kept`] records. A deleted entry is renamed into the store and
//! an overwritten one hard-linked there before the new version is renamed over it, so keeping a
//! version costs no copy when the store is on the root's filesystem (elsewhere it is copied).
//! The store is outside every synced tree and never scanned. Old versions are pruned by the
//! [`Retention`] of the client's synk.conf(5).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{Kept, Kind, Meta, Retention, Why};
use crate::paths::WirePath;

/// How an entry goes into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Rename it away (it is being deleted).
    Move,
    /// Hard-link it (a new version will be renamed over it).
    Link,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The records an index's bytes hold, oldest first, as a store reads them; a record torn by a
/// crash ends the list.
pub fn decode_index(bytes: &[u8]) -> Vec<Kept> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(body) = rest.get(4..4 + len) else {
            break;
        };
        match postcard::from_bytes::<Kept>(body) {
            Ok(k) => out.push(k),
            Err(_) => break,
        }
        rest = &rest[4 + len..];
    }
    out
}

/// The store of one peer.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Holds an exclusive `flock` on the index while alive.
struct Locked(File);

impl Locked {
    fn new(f: File) -> io::Result<Locked> {
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Locked(f))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Store {
    /// The store below a peer's state directory.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("versions"),
        }
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    fn object(&self, id: &str) -> PathBuf {
        self.dir.join("objects").join(id)
    }

    fn lock(&self) -> io::Result<Locked> {
        fs::create_dir_all(self.dir.join("objects"))?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(self.index())?;
        Locked::new(f)
    }

    /// Keeps the entry at `path` (described by `meta`) as a version.
    pub fn keep(&self, path: &Path, meta: &Meta, why: Why, take: Take) -> io::Result<Kept> {
        let mut lock = self.lock()?;
        let replaced = now_ns();
        let mut rand = [0u8; 4];
        crate::os::random_bytes(&mut rand)?;
        let id = format!("{replaced}-{:08x}", u32::from_le_bytes(rand));
        let obj = self.object(&id);
        let kept = Kept {
            path: WirePath::from_path(path),
            id,
            meta: meta.clone(),
            replaced,
            why,
        };
        // The record first: a crash (or a full disk) after it leaves a record without its
        // object, which listings skip; the other order would leave a version no one can find.
        let body = postcard::to_stdvec(&kept).map_err(io::Error::other)?;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        lock.0.write_all(&frame)?;
        lock.0.sync_data()?;
        let linked = match take {
            Take::Move => fs::rename(path, &obj),
            Take::Link if matches!(meta.kind, Kind::Symlink(_)) => {
                std::os::unix::fs::symlink(fs::read_link(path)?, &obj)
            }
            Take::Link => fs::hard_link(path, &obj),
        };
        if let Err(e) = linked {
            // Another filesystem (or no hard links): copy, then remove what was moved.
            match &meta.kind {
                Kind::File => copy_durably(path, &obj)?,
                Kind::Symlink(_) => std::os::unix::fs::symlink(fs::read_link(path)?, &obj)?,
                _ => return Err(e),
            }
            if take == Take::Move {
                fs::remove_file(path)?;
            }
        }
        Ok(kept)
    }

    /// Every kept record, oldest first; a record torn by a crash ends the list.
    fn read_all(&self) -> Vec<Kept> {
        let Ok(bytes) = fs::read(self.index()) else {
            return Vec::new();
        };
        decode_index(&bytes)
    }

    /// The versions kept of `path` and of everything below it, oldest first.
    pub fn list(&self, path: &Path) -> Vec<Kept> {
        let base = WirePath::from_path(path);
        self.read_all()
            .into_iter()
            .filter(|k| k.path.below(&base).is_some())
            .filter(|k| self.object(&k.id).symlink_metadata().is_ok())
            .collect()
    }

    /// The object of a kept version, to copy back.
    pub fn object_path(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| self.object(id))
    }

    /// Drops versions beyond the retention: more than `versions` newer ones of the same path,
    /// and older than `days`. The newest version of a path is never dropped by age.
    pub fn prune(&self, keep: Retention) -> io::Result<usize> {
        if !self.index().exists() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        let all = self.read_all();
        let cutoff = now_ns() - i64::from(keep.days) * 86_400 * 1_000_000_000;
        let mut newer: std::collections::HashMap<&WirePath, u32> = Default::default();
        let mut drop = vec![false; all.len()];
        for (i, k) in all.iter().enumerate().rev() {
            let n = newer.entry(&k.path).or_default();
            let too_many = keep.versions > 0 && *n >= keep.versions;
            let too_old = keep.days > 0 && *n > 0 && k.replaced < cutoff;
            drop[i] = too_many || too_old;
            *n += 1;
        }
        let dropped = drop.iter().filter(|d| **d).count();
        if dropped == 0 {
            return Ok(0);
        }
        let mut bytes = Vec::new();
        for (k, d) in all.iter().zip(&drop) {
            if !d {
                let body = postcard::to_stdvec(k).map_err(io::Error::other)?;
                bytes.extend((body.len() as u32).to_be_bytes());
                bytes.extend(body);
            }
        }
        crate::atomic::write(&self.index(), &bytes)?;
        for (k, d) in all.iter().zip(&drop) {
            if *d {
                let obj = self.object(&k.id);
                let _ = fs::remove_file(&obj).or_else(|_| fs::remove_dir_all(&obj));
            }
        }
        Ok(dropped)
    }
}

fn copy_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::copy(from, to)?;
    File::open(to)?.sync_all()?;
    let md = fs::metadata(from)?;
    filetime::set_file_mtime(to, filetime::FileTime::from_last_modification_time(&md))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Digest;

    fn meta(content: &[u8]) -> Meta {
        Meta {
            kind: Kind::File,
            size: content.len() as u64,
            mode: 0o644,
            mtime: 0,
            digest: Some(Digest::of(content)),
        }
    }

    #[test]
    fn deleted_and_overwritten_versions_are_kept_and_listed() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(state.path());
        let f = tree.path().join("f");
        fs::write(&f, "v1").unwrap();
        store
            .keep(&f, &meta(b"v1"), Why::Overwritten, Take::Link)
            .unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"v1", "linking leaves the file");
        fs::write(tree.path().join("new"), "v2").unwrap();
        fs::rename(tree.path().join("new"), &f).unwrap();
        store
            .keep(&f, &meta(b"v2"), Why::Deleted, Take::Move)
            .unwrap();
        assert!(!f.exists());
        let kept = store.list(tree.path());
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].why, Why::Overwritten);
        let obj = store.object_path(&kept[0].id).unwrap();
        assert_eq!(fs::read(obj).unwrap(), b"v1");
        let obj = store.object_path(&kept[1].id).unwrap();
        assert_eq!(fs::read(obj).unwrap(), b"v2");
        assert!(store.list(&tree.path().join("other")).is_empty());
        assert!(store.object_path("../index").is_none());
    }

    #[test]
    fn pruning_keeps_the_newest_versions_per_path() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(state.path());
        for i in 0..4 {
            let f = tree.path().join("f");
            fs::write(&f, format!("v{i}")).unwrap();
            store
                .keep(
                    &f,
                    &meta(format!("v{i}").as_bytes()),
                    Why::Deleted,
                    Take::Move,
                )
                .unwrap();
        }
        let keep = Retention {
            versions: 2,
            days: 0,
        };
        assert_eq!(store.prune(keep).unwrap(), 2);
        let kept = store.list(tree.path());
        let contents: Vec<Vec<u8>> = kept
            .iter()
            .map(|k| fs::read(store.object_path(&k.id).unwrap()).unwrap())
            .collect();
        assert_eq!(contents, [b"v2".to_vec(), b"v3".to_vec()]);
        assert_eq!(
            fs::read_dir(state.path().join("versions/objects"))
                .unwrap()
                .count(),
            2
        );
    }
}
