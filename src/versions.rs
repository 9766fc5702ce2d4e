//! Kept versions: every version synk overwrites or deletes on a peer is kept there, so it can be
//! listed (`synk --versions`) and brought back (`synk --restore`).
//!
//! The store is `$XDG_STATE_HOME/synk/versions/`: the versions themselves in `objects/`, and an
//! append-only `index` of [`Kept`] records. A deleted entry is renamed into the store and
//! an overwritten one hard-linked there before the new version is renamed over it, so keeping a
//! version costs no copy when the store is on the root's filesystem (elsewhere it is copied).
//! The store is outside every synced tree and never scanned. Old versions are pruned by the
//! [`Retention`] of the client's synk.conf(5).
//!
//! Bad bytes cost no version: each index record is framed with a magic, its length and a
//! checksum, so a torn or garbled record is skipped and reading goes on at the next magic;
//! every object has a sidecar (`objects/ID.kept`, the same record) written before the object
//! itself, so an object the index lost is found again; and a damaged index is rebuilt before
//! anything is pruned, never pruned from as it is.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::beneath::At;
use crate::model::{Kept, Kind, Meta, Retention, Why};
use crate::paths::WirePath;

/// The error of [`Store::keep_at`] when the entry changed while the store was being made
/// ready for it: nothing was taken.
#[derive(Debug)]
pub struct Changed;

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("changed while it was being kept")
    }
}

impl std::error::Error for Changed {}

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

/// Opens every index record: the place reading starts again after bad bytes.
const MAGIC: [u8; 4] = *b"SKv2";
/// A record's frame before its body: [`MAGIC`], the body's length (u32, big-endian) and the
/// body's xxh3-64 (little-endian).
const FRAME_HEAD: usize = 4 + 4 + 8;
/// No record is this long (a path is at most a few KiB): a longer length is garbage.
const MAX_RECORD: usize = 1 << 20;
/// The extension of an object's sidecar.
const SIDECAR: &str = "kept";

/// One index record in its frame (the bytes of a sidecar too).
pub fn encode_record(k: &Kept) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(k).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(FRAME_HEAD + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// What an index holds, as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// Every sound record, in the order written.
    pub records: Vec<Kept>,
    /// Bytes were skipped: a torn or garbled record, whatever it was.
    pub damaged: bool,
    /// Written in the format before record frames (read as then; rewritten on the next change).
    pub old: bool,
}

/// The record framed at the start of `bytes`, with its frame's length, if one is there whole
/// and sound.
fn record_at(bytes: &[u8]) -> Option<(Kept, usize)> {
    if !bytes.starts_with(&MAGIC) || bytes.len() < FRAME_HEAD {
        return None;
    }
    let len = u32::from_be_bytes(bytes[4..8].try_into().ok()?) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(FRAME_HEAD..FRAME_HEAD + len)?;
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != bytes[8..FRAME_HEAD] {
        return None;
    }
    let (k, rest) = postcard::take_from_bytes::<Kept>(body).ok()?;
    rest.is_empty().then_some((k, FRAME_HEAD + len))
}

/// Reads an index: each sound record, skipping bad bytes up to the next magic. An index with
/// no framed record at all is read as the older format (length-prefixed records, the first
/// bad one ending it).
pub fn decode_index(bytes: &[u8]) -> Index {
    let mut out = Index::default();
    let mut at = 0;
    while at < bytes.len() {
        match record_at(&bytes[at..]) {
            Some((k, n)) => {
                out.records.push(k);
                at += n;
            }
            None => {
                out.damaged = true;
                at += 1;
                at += bytes[at..]
                    .windows(MAGIC.len())
                    .position(|w| w == MAGIC)
                    .unwrap_or(bytes.len() - at);
            }
        }
    }
    if out.records.is_empty() && !bytes.is_empty() {
        return decode_old(bytes);
    }
    out
}

/// The index format before record frames: each record a 4-byte big-endian length and a body.
fn decode_old(bytes: &[u8]) -> Index {
    let mut out = Index {
        old: true,
        ..Index::default()
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(len) = rest.get(..4) else {
            out.damaged = true;
            break;
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        match rest
            .get(4..4 + len)
            .and_then(|b| postcard::from_bytes::<Kept>(b).ok())
        {
            Some(k) => out.records.push(k),
            None => {
                out.damaged = true;
                break;
            }
        }
        rest = &rest[4 + len..];
    }
    out
}

/// What a prune did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Versions dropped.
    pub dropped: usize,
    /// Records found again from their objects' sidecars and put back in the index.
    pub found: usize,
    /// The index was damaged: rebuilt from what could be read and the sidecars, and nothing
    /// was pruned this time.
    pub rebuilt: bool,
}

/// The store of one peer.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Holds an exclusive `flock` on the store while alive.
struct Locked {
    _file: File,
}

impl Locked {
    fn new(f: File) -> io::Result<Locked> {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Closing the file releases the lock.
        Ok(Locked { _file: f })
    }
}

impl Store {
    /// The store below a peer's state directory.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("versions"),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    fn object(&self, id: &str) -> PathBuf {
        self.dir.join("objects").join(id)
    }

    fn sidecar(&self, id: &str) -> PathBuf {
        self.dir.join("objects").join(format!("{id}.{SIDECAR}"))
    }

    /// Locks the store. A file of its own, not the index: a prune renames a new index into
    /// place, and a lock on the old one would lock nothing.
    fn lock(&self) -> io::Result<Locked> {
        fs::create_dir_all(self.dir.join("objects"))?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))?;
        Locked::new(f)
    }

    /// The index as it is now.
    fn read_index(&self) -> Index {
        match fs::read(self.index()) {
            Ok(bytes) => decode_index(&bytes),
            Err(_) => Index::default(),
        }
    }

    /// Rewrites the index from `records`, framed (under the lock).
    fn write_index(&self, records: &[Kept]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for k in records {
            bytes.extend(encode_record(k)?);
        }
        crate::atomic::write(&self.index(), &bytes)
    }

    /// Keeps the entry at `path` (described by `meta`) as a version.
    pub fn keep(&self, path: &Path, meta: &Meta, why: Why, take: Take) -> io::Result<Kept> {
        self.keep_with(path, meta, why, |obj, _| self.put(path, obj, meta, take))
    }

    /// As [`Store::keep`], for the entry `at` (whose whole path, for the record, is `path`),
    /// reached through its directory's handle: never through a symlink swapped into its
    /// parents. With `still`, the entry must still have that stamp id when it is taken, after
    /// the store's lock and the record's fsync (an edit saved while they waited is left in
    /// the tree, and the error is [`Changed`]): `meta` describes that version only.
    pub fn keep_at(
        &self,
        at: &At,
        path: &Path,
        meta: &Meta,
        why: Why,
        take: Take,
        still: Option<u128>,
    ) -> io::Result<Kept> {
        use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
        self.keep_with(path, meta, why, |obj, id| {
            if let Some(want) = still {
                let now = at.lstat()?.map(|st| crate::beneath::Stamp::of(&st).id());
                if now != Some(want) {
                    return Err(io::Error::other(Changed));
                }
            }
            let objects = rfs::open(
                self.dir.join("objects"),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let id = id.as_bytes();
            let linked = match take {
                Take::Move => rfs::renameat(at.dir(), at.name(), &objects, id),
                Take::Link if matches!(meta.kind, Kind::Symlink(_)) => {
                    rfs::symlinkat(at.read_link()?.as_slice(), &objects, id)
                }
                Take::Link => rfs::linkat(at.dir(), at.name(), &objects, id, AtFlags::empty()),
            };
            if let Err(e) = linked {
                let e = io::Error::from(e);
                if !elsewhere(&e, take) {
                    return Err(e);
                }
                // Another filesystem (or no hard links): copy, then remove what was moved.
                match &meta.kind {
                    Kind::File => copy_object(&mut at.open_read()?, obj, meta.mtime)?,
                    Kind::Symlink(_) => rfs::symlinkat(at.read_link()?.as_slice(), &objects, id)?,
                    _ => return Err(e),
                }
                if take == Take::Move {
                    at.unlink()?;
                }
            }
            Ok(())
        })
    }

    /// Records a version of `path` under a new id (its sidecar, then its index record), then
    /// has `put` bring the object in (given the object's path and id). The sidecar and the
    /// record first: a crash (or a full disk) after them leaves a record without its object,
    /// which listings skip; the other order would leave a version no one can find.
    fn keep_with(
        &self,
        path: &Path,
        meta: &Meta,
        why: Why,
        put: impl FnOnce(&Path, &str) -> io::Result<()>,
    ) -> io::Result<Kept> {
        let _lock = self.lock()?;
        self.migrate()?;
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
        let frame = encode_record(&kept)?;
        let sidecar = self.sidecar(&kept.id);
        fs::write(&sidecar, &frame)?;
        let res = self.append(&frame).and_then(|()| put(&obj, &kept.id));
        if res.is_err() {
            let _ = fs::remove_file(&sidecar);
        }
        res.map(|()| kept)
    }

    /// Appends one framed record to the index, durably.
    fn append(&self, frame: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.index())?;
        f.write_all(frame)?;
        f.sync_data()
    }

    /// Moves or links the entry at `path` to the object `obj`.
    fn put(&self, path: &Path, obj: &Path, meta: &Meta, take: Take) -> io::Result<()> {
        let linked = match take {
            Take::Move => fs::rename(path, obj),
            Take::Link if matches!(meta.kind, Kind::Symlink(_)) => {
                std::os::unix::fs::symlink(fs::read_link(path)?, obj)
            }
            Take::Link => fs::hard_link(path, obj),
        };
        if let Err(e) = linked {
            if !elsewhere(&e, take) {
                return Err(e);
            }
            // Another filesystem (or no hard links): copy, then remove what was moved.
            match &meta.kind {
                Kind::File => copy_object(&mut File::open(path)?, obj, meta.mtime)?,
                Kind::Symlink(_) => std::os::unix::fs::symlink(fs::read_link(path)?, obj)?,
                _ => return Err(e),
            }
            if take == Take::Move {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Rewrites an index of the older format as framed records (under the lock), so records
    /// appended after it can be read past bad bytes too. Checks the first bytes only, unless
    /// they are not a frame's.
    fn migrate(&self) -> io::Result<()> {
        let mut head = [0u8; 4];
        let n = match File::open(self.index()) {
            Ok(f) => f.take(4).read(&mut head)?,
            Err(_) => return Ok(()),
        };
        if n == 0 || head == MAGIC {
            return Ok(());
        }
        let idx = self.read_index();
        if idx.old {
            self.write_index(&idx.records)?;
        }
        Ok(())
    }

    /// Object ids in `objects/`, and the ids with a sidecar.
    fn objects(&self) -> (HashSet<String>, HashSet<String>) {
        let mut objects = HashSet::new();
        let mut sidecars = HashSet::new();
        let Ok(list) = fs::read_dir(self.dir.join("objects")) else {
            return (objects, sidecars);
        };
        for e in list.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(&format!(".{SIDECAR}")) {
                Some(id) => sidecars.insert(id.to_string()),
                None => objects.insert(name),
            };
        }
        (objects, sidecars)
    }

    /// Every record whose object is there: the index's, and those of objects the index lost
    /// (found again from their sidecars), oldest first; and how many were found again.
    fn read_all(&self) -> (Index, usize) {
        let mut idx = self.read_index();
        let (objects, sidecars) = self.objects();
        let known: HashSet<&str> = idx.records.iter().map(|k| k.id.as_str()).collect();
        let mut found: Vec<Kept> = sidecars
            .iter()
            .filter(|id| objects.contains(*id) && !known.contains(id.as_str()))
            .filter_map(|id| {
                let bytes = fs::read(self.sidecar(id)).ok()?;
                let (k, _) = record_at(&bytes)?;
                (k.id == *id).then_some(k)
            })
            .collect();
        let n = found.len();
        idx.records.append(&mut found);
        idx.records.retain(|k| objects.contains(&k.id));
        let mut seen = HashSet::new();
        idx.records.retain(|k| seen.insert(k.id.clone()));
        idx.records.sort_by_key(|k| k.replaced);
        (idx, n)
    }

    /// The versions kept of `path` and of everything below it, oldest first.
    pub fn list(&self, path: &Path) -> Vec<Kept> {
        let base = WirePath::from_path(path);
        let (idx, _) = self.read_all();
        idx.records
            .into_iter()
            .filter(|k| k.path.below(&base).is_some())
            .collect()
    }

    /// The object of a kept version, to copy back.
    pub fn object_path(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| self.object(id))
    }

    /// Drops versions beyond the retention: more than `versions` newer ones of the same path,
    /// and older than `days`. The newest version of a path is never dropped by age. Objects
    /// the index lost are put back in it first; a damaged index is rebuilt, and nothing is
    /// dropped until a later prune reads it whole.
    pub fn prune(&self, keep: Retention) -> io::Result<Pruned> {
        if !self.dir.join("objects").exists() {
            return Ok(Pruned::default());
        }
        let _lock = self.lock()?;
        let (idx, found) = self.read_all();
        let all = idx.records;
        let mut done = Pruned {
            found,
            rebuilt: idx.damaged,
            ..Pruned::default()
        };
        if idx.damaged || idx.old || found > 0 {
            self.write_index(&all)?;
        }
        if idx.damaged {
            return Ok(done);
        }
        let cutoff = now_ns() - i64::from(keep.days) * 86_400 * 1_000_000_000;
        let mut newer: HashMap<&WirePath, u32> = Default::default();
        let mut drop = vec![false; all.len()];
        for (i, k) in all.iter().enumerate().rev() {
            let n = newer.entry(&k.path).or_default();
            let too_many = keep.versions > 0 && *n >= keep.versions;
            let too_old = keep.days > 0 && *n > 0 && k.replaced < cutoff;
            drop[i] = too_many || too_old;
            *n += 1;
        }
        done.dropped = drop.iter().filter(|d| **d).count();
        if done.dropped == 0 {
            return Ok(done);
        }
        let kept: Vec<Kept> = all
            .iter()
            .zip(&drop)
            .filter(|(_, d)| !**d)
            .map(|(k, _)| k.clone())
            .collect();
        self.write_index(&kept)?;
        for (k, d) in all.iter().zip(&drop) {
            if *d {
                let obj = self.object(&k.id);
                let _ = fs::remove_file(&obj).or_else(|_| fs::remove_dir_all(&obj));
                let _ = fs::remove_file(self.sidecar(&k.id));
            }
        }
        Ok(done)
    }
}

/// Whether a rename or hard link into the store failed because the store is elsewhere (another
/// filesystem) or its filesystem has no hard links: a copy does instead. Any other error
/// (EACCES, a full disk) is the answer; a copy would leave the entry in place and pile up
/// a full copy on every run. A rename says so only by EXDEV (its EPERM is a sticky directory's refusal); a hard link by
/// EXDEV, or by EPERM and the like where the filesystem has none.
fn elsewhere(e: &io::Error, take: Take) -> bool {
    match take {
        Take::Move => e.raw_os_error() == Some(libc::EXDEV),
        Take::Link => matches!(
            e.raw_os_error(),
            Some(libc::EXDEV | libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK | libc::ENOSYS)
        ),
    }
}

/// Copies `from` to the object `obj` as every write is made ([`crate::atomic`]: a private
/// temp file beside it, fsync, rename), with the modification time `mtime_ns`: a crash leaves
/// no object cut short, and a kept 0600 file is no one else's to read.
fn copy_object(from: &mut File, obj: &Path, mtime_ns: i64) -> io::Result<()> {
    let t = filetime::FileTime::from_unix_time(
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    crate::atomic::write_file(obj, |f| {
        io::copy(from, f)?;
        filetime::set_file_handle_times(f, None, Some(t))
    })
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
            extra: Default::default(),
        }
    }

    #[test]
    fn a_version_kept_across_filesystems_is_a_private_whole_copy() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tree = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs: another filesystem than the tree's, where there is one.
        let Ok(state) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("skipped: no /dev/shm");
            return;
        };
        let dev = |p: &Path| fs::metadata(p).unwrap().dev();
        if dev(tree.path()) == dev(state.path()) {
            eprintln!("skipped: /dev/shm is the tree's filesystem here");
            return;
        }
        let store = Store::new(state.path());
        let f = tree.path().join("secret");
        fs::write(&f, "private").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let m = Meta {
            mtime: 1_600_000_000_000_000_000,
            ..meta(b"private")
        };
        // Through the tree's handle, as a serve keeps it.
        let at = crate::beneath::Beneath::open(tree.path())
            .unwrap()
            .at(b"secret")
            .unwrap();
        store
            .keep_at(&at, &f, &m, Why::Deleted, Take::Move, None)
            .unwrap();
        assert!(!f.exists(), "moved out of the tree");
        let kept = store.list(tree.path());
        let obj = store.object_path(&kept[0].id).unwrap();
        assert_eq!(fs::read(&obj).unwrap(), b"private");
        let md = fs::metadata(&obj).unwrap();
        assert_eq!(md.mode() & 0o077, 0, "{:o}", md.mode());
        assert_eq!(md.mtime(), 1_600_000_000);
        let objects = obj.parent().unwrap();
        let names: Vec<_> = fs::read_dir(objects).unwrap().flatten().collect();
        assert_eq!(
            names.len(),
            2,
            "the object and its sidecar, no temp: {names:?}"
        );
        // An error that is not about where the store is (here: nothing there) is the answer,
        // not a copy.
        let gone = tree.path().join("gone");
        assert!(store
            .keep(&gone, &meta(b"x"), Why::Deleted, Take::Move)
            .is_err());
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
        assert_eq!(store.prune(keep).unwrap().dropped, 2);
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
            4,
            "two objects and their sidecars"
        );
    }

    fn kept(path: &str, id: &str, replaced: i64) -> Kept {
        Kept {
            path: WirePath::from(path),
            id: id.into(),
            meta: meta(id.as_bytes()),
            replaced,
            why: Why::Deleted,
        }
    }

    #[test]
    fn a_bad_record_costs_that_record_only() {
        let ks: Vec<Kept> = (0..4).map(|i| kept("/t/f", &format!("{i}-0"), i)).collect();
        let frames: Vec<Vec<u8>> = ks.iter().map(|k| encode_record(k).unwrap()).collect();
        let whole = frames.concat();
        let idx = decode_index(&whole);
        assert_eq!(
            (idx.records.clone(), idx.damaged, idx.old),
            (ks.clone(), false, false)
        );
        let others = |i: usize| -> Vec<Kept> {
            let mut v = ks.clone();
            v.remove(i);
            v
        };
        // Any bit of the second record flipped: it alone is lost, and the reader says so.
        let start = frames[0].len();
        for at in start..start + frames[1].len() {
            for bit in 0..8 {
                let mut bad = whole.clone();
                bad[at] ^= 1 << bit;
                let idx = decode_index(&bad);
                assert!(idx.damaged, "byte {at} bit {bit}");
                assert_eq!(idx.records, others(1), "byte {at} bit {bit}");
            }
        }
        // Torn in the middle (an append cut short, then more appended), or at the end.
        let mut torn = frames[0].clone();
        torn.extend_from_slice(&frames[1][..frames[1].len() / 2]);
        torn.extend(frames[2..].concat());
        let idx = decode_index(&torn);
        assert!(idx.damaged);
        assert_eq!(idx.records, others(1));
        let cut = &whole[..whole.len() - 3];
        assert_eq!(decode_index(cut).records, ks[..3]);
        // The format before frames reads as it did.
        let mut old = Vec::new();
        for k in &ks {
            let body = postcard::to_stdvec(k).unwrap();
            old.extend((body.len() as u32).to_be_bytes());
            old.extend(body);
        }
        let idx = decode_index(&old);
        assert_eq!(
            (idx.records, idx.damaged, idx.old),
            (ks.clone(), false, true)
        );
        assert_eq!(decode_index(b""), Index::default());
    }

    /// A store with versions 0..n of `tree/f`, each its own content.
    fn store_of(n: usize) -> (tempfile::TempDir, tempfile::TempDir, Store, Vec<Kept>) {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(state.path());
        let f = tree.path().join("f");
        let kept = (0..n)
            .map(|i| {
                let c = format!("v{i}");
                fs::write(&f, &c).unwrap();
                store
                    .keep(&f, &meta(c.as_bytes()), Why::Deleted, Take::Move)
                    .unwrap()
            })
            .collect();
        (tree, state, store, kept)
    }

    fn contents(store: &Store, kept: &[Kept]) -> Vec<String> {
        kept.iter()
            .map(|k| fs::read_to_string(store.object_path(&k.id).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn versions_stay_listed_and_restorable_through_a_damaged_index() {
        let (tree, _state, store, all) = store_of(4);
        let index = fs::read(store.index()).unwrap();
        let frame = encode_record(&all[0]).unwrap().len();
        // Garble the second record, and cut the last one short.
        let mut bad = index.clone();
        bad[frame + FRAME_HEAD + 2] ^= 0xff;
        bad.truncate(index.len() - 7);
        fs::write(store.index(), &bad).unwrap();
        // Every version is still listed, in order: the index's, and the two its sidecars
        // bring back.
        let listed = store.list(tree.path());
        assert_eq!(listed, all);
        assert_eq!(contents(&store, &listed), ["v0", "v1", "v2", "v3"]);
        // A prune rebuilds the index and drops nothing this time; the next one prunes from
        // the whole list.
        let keep = Retention {
            versions: 2,
            days: 0,
        };
        let done = store.prune(keep).unwrap();
        assert_eq!(
            done,
            Pruned {
                dropped: 0,
                found: 2,
                rebuilt: true
            }
        );
        let idx = store.read_index();
        assert_eq!((idx.records.clone(), idx.damaged), (all.clone(), false));
        assert_eq!(store.prune(keep).unwrap().dropped, 2);
        let listed = store.list(tree.path());
        assert_eq!(contents(&store, &listed), ["v2", "v3"]);
    }

    #[test]
    fn an_object_the_index_lost_is_found_and_kept_by_pruning() {
        let (tree, _state, store, all) = store_of(3);
        // The newest version's record is gone whole (an index rewritten from a short list).
        let frames: Vec<u8> = all[..2]
            .iter()
            .flat_map(|k| encode_record(k).unwrap())
            .collect();
        fs::write(store.index(), frames).unwrap();
        assert_eq!(store.list(tree.path()), all);
        // Pruning to two versions keeps the newest two, the lost one among them.
        let keep = Retention {
            versions: 2,
            days: 0,
        };
        let done = store.prune(keep).unwrap();
        assert_eq!((done.found, done.dropped, done.rebuilt), (1, 1, false));
        let listed = store.list(tree.path());
        assert_eq!(listed, all[1..]);
        assert_eq!(store.read_index().records, all[1..]);
        // An object with neither record nor sidecar is left alone, never pruned.
        fs::write(store.object("1-orphan"), "?").unwrap();
        assert_eq!(store.prune(keep).unwrap().dropped, 0);
        assert!(store.object("1-orphan").exists());
    }

    #[test]
    fn an_index_of_the_older_format_is_read_and_rewritten_on_the_next_keep() {
        let (tree, _state, store, all) = store_of(2);
        let mut old = Vec::new();
        for k in &all {
            let body = postcard::to_stdvec(k).unwrap();
            old.extend((body.len() as u32).to_be_bytes());
            old.extend(body);
        }
        fs::write(store.index(), &old).unwrap();
        assert_eq!(store.list(tree.path()), all);
        let f = tree.path().join("f");
        fs::write(&f, "v2").unwrap();
        let third = store
            .keep(&f, &meta(b"v2"), Why::Deleted, Take::Move)
            .unwrap();
        let idx = store.read_index();
        assert!(!idx.old && !idx.damaged);
        assert_eq!(idx.records, [all[0].clone(), all[1].clone(), third]);
    }
}
