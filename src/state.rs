//! Sync state: what each peer held after the last sync it took part in, so a change is judged
//! against that memory and never by comparing clocks across hosts.
//!
//! Every peer has a stable random key (created once, kept in `$XDG_STATE_HOME/synk/key`) and,
//! per synced root, a state file with one [`Record`] per entry: its metadata (or a tombstone for
//! an entry deleted by a sync) and a version vector ([`Vv`](crate::model::Vv)). A peer that
//! finds an entry changed since its record bumps its own counter in the entry's vector, so
//! versions made on different peers are ordered by causality (Syncthing does the same), and two
//! vectors that neither dominates are a conflict.
//!
//! A state file covers a root and everything below it. A later sync of a path inside an already
//! recorded root uses and updates that root's file (so `synk --restore ~/notes/a` sees the same
//! history as `synk ~/notes`); a sync of a parent root absorbs the files of the roots below it.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::model::{Digest, Record};
use crate::paths::WirePath;

/// Bumped whenever the state file format changes; an unknown format is an error, never ignored
/// (ignoring it would turn every remembered deletion into a resurrection).
const FORMAT: u32 = 1;

#[derive(Deserialize)]
struct Stored {
    format: u32,
    /// The absolute root the records are relative to.
    root: WirePath,
    /// Sorted by `rel`.
    records: Vec<Record>,
}

/// [`Stored`] as it is written, borrowing the records (the same bytes: postcard encodes a
/// slice as it does a `Vec`), field for field: the save and load tests read back what it
/// writes.
#[derive(Serialize)]
struct StoredRef<'a> {
    format: u32,
    root: &'a WirePath,
    records: &'a [Record],
}

/// Sorts `records` by path (stable), keeping the first record of each path.
pub fn sort_by_path(records: &mut Vec<Record>) {
    records.sort_by(|a, b| a.rel.cmp(&b.rel));
    records.dedup_by(|later, first| later.rel == first.rel);
}

/// Where a peer keeps its state: `$XDG_STATE_HOME/synk` (`~/.local/state/synk`).
pub fn state_dir(home: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/state")))
        .map(|d| d.join("synk"))
}

/// This peer's stable key, created on first use.
pub fn peer_key(dir: &Path) -> io::Result<u64> {
    let file = dir.join("key");
    if let Ok(text) = fs::read_to_string(&file) {
        if let Ok(k) = u64::from_str_radix(text.trim(), 16) {
            return Ok(k);
        }
    }
    let key = crate::os::random_u64()?.max(1);
    fs::create_dir_all(dir)?;
    atomic::write(&file, format!("{key:016x}\n").as_bytes())?;
    // Two first runs at once: whichever rename came last is the key for good.
    let text = fs::read_to_string(&file)?;
    u64::from_str_radix(text.trim(), 16).map_err(io::Error::other)
}

/// The state file of `root` in the state directory `dir`.
pub fn file_for(dir: &Path, root: &Path) -> PathBuf {
    let d = Digest::of(root.as_os_str().as_encoded_bytes());
    dir.join("roots").join(format!("{}.state", &d.hex()[..32]))
}

/// The remembered state of one root on this peer.
#[derive(Debug, Default)]
pub struct RootState {
    /// The state file this root's records live in (its own or an ancestor root's).
    file: Option<PathBuf>,
    /// The root of that file.
    file_root: PathBuf,
    /// `rel` of the scanned root inside the file's root (empty when they are the same).
    prefix: WirePath,
    /// Records of the scanned root, relative to it.
    /// Sorted by path, one record a path: looked up by binary search (no map, no second copy
    /// of each path).
    records: Vec<Record>,
    /// Records of the file outside the scanned root, kept as they are.
    others: Vec<Record>,
    /// State files of roots below this one, absorbed on save.
    absorbed: Vec<PathBuf>,
}

/// The first fields of a state file, as [`Stored`] begins.
#[derive(Deserialize)]
struct StoredHead {
    format: u32,
    root: WirePath,
}

/// Enough of a state file's start to hold its head: a root path is shorter than PATH_MAX.
const HEAD_BYTES: u64 = 8 << 10;

/// The root a state file belongs to, read from its first bytes only: a run of one small root
/// must not decode every other root's records to learn where they live.
fn read_root(file: &Path) -> Option<WirePath> {
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    fs::File::open(file)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .ok()?;
    let (h, _) = postcard::take_from_bytes::<StoredHead>(&head).ok()?;
    (h.format == FORMAT).then_some(h.root)
}

fn read_stored(file: &Path) -> io::Result<Option<Stored>> {
    let bytes = match fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode_stored(&bytes, file).map(Some)
}

/// The records a state file's bytes hold, as a load reads them (for fuzzing: no file).
pub fn decode_state(bytes: &[u8]) -> io::Result<Vec<Record>> {
    decode_stored(bytes, Path::new("state")).map(|s| s.records)
}

/// Decodes a state file's bytes (`file`, for messages).
fn decode_stored(bytes: &[u8], file: &Path) -> io::Result<Stored> {
    let stored: Stored = postcard::from_bytes(bytes)
        .map_err(|e| io::Error::other(format!("{}: unreadable state: {e}", file.display())))?;
    if stored.format != FORMAT {
        return Err(io::Error::other(format!(
            "{}: state written by another synk version (format {}); move it away to start afresh",
            file.display(),
            stored.format
        )));
    }
    Ok(stored)
}

impl RootState {
    /// Loads the state of `root` from `dir` (`None`: this peer keeps no state). A root inside
    /// an already recorded root uses that root's records.
    pub fn load(dir: Option<&Path>, root: &Path) -> io::Result<RootState> {
        let Some(dir) = dir else {
            return Ok(RootState::default());
        };
        let mut candidates = vec![root.to_path_buf()];
        candidates.extend(root.ancestors().skip(1).map(Path::to_path_buf));
        for base in candidates {
            let file = file_for(dir, &base);
            let Some(stored) = read_stored(&file)? else {
                continue;
            };
            if stored.root.as_path() != base {
                continue; // a hash collision: not ours
            }
            let prefix = root
                .strip_prefix(&base)
                .map(WirePath::from_path)
                .unwrap_or_default();
            let mut st = RootState {
                file: Some(file),
                file_root: base,
                prefix: prefix.clone(),
                ..RootState::default()
            };
            if prefix.is_empty() {
                // The file's own root: every record is ours as it is (no copy of each path).
                st.records = stored.records;
            } else {
                for r in stored.records {
                    match r.rel.below(&prefix) {
                        Some(rel) => st.records.push(Record { rel, ..r }),
                        None => st.others.push(r),
                    }
                }
            }
            if st.prefix.is_empty() {
                st.absorb_below(dir, root)?;
            }
            st.settle();
            return Ok(st);
        }
        let mut st = RootState {
            file: Some(file_for(dir, root)),
            file_root: root.to_path_buf(),
            ..RootState::default()
        };
        st.absorb_below(dir, root)?;
        st.settle();
        Ok(st)
    }

    /// Sorts the records by path, keeping the first of each path (a root's own records come
    /// before those absorbed from roots below it).
    fn settle(&mut self) {
        sort_by_path(&mut self.records);
        self.records.shrink_to_fit();
    }

    /// Takes in the records of state files of roots below `root`, where this root has none.
    fn absorb_below(&mut self, dir: &Path, root: &Path) -> io::Result<()> {
        let Ok(list) = fs::read_dir(dir.join("roots")) else {
            return Ok(());
        };
        for e in list.flatten() {
            let path = e.path();
            if Some(&path) == self.file.as_ref() || path.extension() != Some("state".as_ref()) {
                continue;
            }
            let Some(its_root) = read_root(&path) else {
                continue;
            };
            let below = match its_root.as_path().strip_prefix(root) {
                Ok(below) if !below.as_os_str().is_empty() => WirePath::from_path(below),
                _ => continue,
            };
            let Ok(Some(stored)) = read_stored(&path) else {
                continue;
            };
            for r in stored.records {
                let rel = below.join(&r.rel);
                self.records.push(Record { rel, ..r });
            }
            self.absorbed.push(path);
        }
        Ok(())
    }

    /// The record of an entry below the scanned root.
    pub fn get(&self, rel: &WirePath) -> Option<&Record> {
        self.records
            .binary_search_by(|r| r.rel.cmp(rel))
            .ok()
            .map(|i| &self.records[i])
    }

    /// As [`RootState::get`], for lookups that mostly come in path order: `hint` is where the
    /// last one left off, and a lookup of the record just after it costs one comparison.
    pub fn get_near(&self, rel: &WirePath, hint: &mut usize) -> Option<&Record> {
        if let Some(r) = self.records.get(*hint).filter(|r| r.rel == *rel) {
            *hint += 1;
            return Some(r);
        }
        match self.records.binary_search_by(|r| r.rel.cmp(rel)) {
            Ok(i) => {
                *hint = i + 1;
                Some(&self.records[i])
            }
            Err(i) => {
                *hint = i;
                None
            }
        }
    }

    /// Every record below the scanned root, in path order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.iter()
    }

    /// True when saving would fold the state files of roots below this one into its own.
    pub fn absorbs(&self) -> bool {
        !self.absorbed.is_empty()
    }

    /// True when nothing is remembered for this root.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Replaces the records of the scanned root (sorted by path, one a path) and writes the
    /// file atomically.
    pub fn save(&mut self, records: Vec<Record>) -> io::Result<()> {
        debug_assert!(records.windows(2).all(|w| w[0].rel < w[1].rel));
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        if records == self.records && self.absorbed.is_empty() {
            return Ok(()); // an in-sync re-check writes nothing
        }
        self.records = records;
        let root = WirePath::from_path(&self.file_root);
        let write = |records: &[Record]| {
            atomic::write_with(&file, |w| {
                let stored = StoredRef {
                    format: FORMAT,
                    root: &root,
                    records,
                };
                postcard::to_io(&stored, w)
                    .map(drop)
                    .map_err(io::Error::other)
            })
        };
        if self.prefix.is_empty() && self.others.is_empty() {
            // The root has a file of its own: its records are the file's, as they are.
            write(&self.records)?;
        } else {
            let mut all: Vec<Record> = self.others.clone();
            all.extend(self.records.iter().map(|r| Record {
                rel: self.prefix.join(&r.rel),
                ..r.clone()
            }));
            all.sort_by(|a, b| a.rel.cmp(&b.rel));
            write(&all)?;
        }
        for f in self.absorbed.drain(..) {
            let _ = fs::remove_file(f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vv;

    fn vv(pairs: &[(u64, u64)]) -> Vv {
        Vv(pairs.to_vec())
    }

    fn rec(rel: &str, n: u64) -> Record {
        Record {
            rel: WirePath(rel.as_bytes().to_vec()),
            meta: None,
            vv: vv(&[(1, n)]),
        }
    }

    #[test]
    fn a_sub_root_uses_and_updates_its_parents_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/data/notes");
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        assert!(st.is_empty());
        let recs: Vec<Record> = ["", "a", "sub", "sub/x"]
            .iter()
            .map(|r| rec(r, 1))
            .collect();
        st.save(recs).unwrap();

        let mut sub = RootState::load(Some(dir.path()), &root.join("sub")).unwrap();
        let rels: Vec<String> = sub.records().map(|r| r.rel.to_string()).collect();
        assert_eq!(rels, ["", "x"]);
        let mut changed: Vec<Record> = sub.records().cloned().collect();
        changed[1].vv = vv(&[(1, 9)]);
        sub.save(changed).unwrap();

        let whole = RootState::load(Some(dir.path()), root).unwrap();
        let x = whole.get(&WirePath(b"sub/x".to_vec())).unwrap();
        assert_eq!(x.vv, vv(&[(1, 9)]));
        assert!(whole.get(&WirePath(b"a".to_vec())).is_some());
        assert_eq!(fs::read_dir(dir.path().join("roots")).unwrap().count(), 1);
    }

    #[test]
    fn a_parent_root_absorbs_the_files_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RootState::load(Some(dir.path()), Path::new("/d/a/f")).unwrap();
        f.save(vec![rec("", 4)]).unwrap();
        let mut top = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        assert_eq!(
            top.get(&WirePath(b"a/f".to_vec())).unwrap().vv,
            vv(&[(1, 4)])
        );
        let recs = top.records().cloned().collect();
        top.save(recs).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("roots")).unwrap().count(), 1);
    }

    #[test]
    fn a_state_files_root_is_read_from_its_head() {
        let dir = tempfile::tempdir().unwrap();
        // Records well past the head's bytes, and a root near PATH_MAX.
        let long = format!("/{}", "d/".repeat(2000));
        let mut st = RootState::load(Some(dir.path()), Path::new(&long)).unwrap();
        let names: Vec<String> = (0..2000).map(|i| format!("f{i:05}")).collect();
        st.save(names.iter().map(|n| rec(n, 1)).collect()).unwrap();
        let file = file_for(dir.path(), Path::new(&long));
        assert!(fs::metadata(&file).unwrap().len() > HEAD_BYTES);
        assert_eq!(read_root(&file), Some(WirePath::from(long.as_str())));
        // Another format, and bytes that are no state at all, name no root.
        let mut other = fs::read(&file).unwrap();
        other[0] = FORMAT as u8 + 1;
        fs::write(&file, &other).unwrap();
        assert_eq!(read_root(&file), None);
        fs::write(&file, b"\xff\xff").unwrap();
        assert_eq!(read_root(&file), None);
    }

    #[test]
    fn lookups_near_the_last_one_find_what_a_search_finds() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        let names = ["", "a", "a-b", "a/x", "a/y", "b"];
        st.save(names.iter().map(|r| rec(r, 1)).collect()).unwrap();
        let mut hint = 0;
        // Walk order, not path order ("a-b" after "a/y"), then misses, repeats and a restart.
        for (rel, found, hint_after) in [
            ("", true, 1),
            ("a", true, 2),
            ("a/x", true, 4),
            ("a/y", true, 5),
            ("a-b", true, 3),
            ("a/w", false, 3),
            ("a/x", true, 4),
            ("a/x", true, 4),
            ("c", false, 6),
            ("b", true, 6),
            ("", true, 1),
        ] {
            let rel = WirePath::from(rel);
            let got = st.get_near(&rel, &mut hint);
            assert_eq!(got.map(|r| &r.rel), found.then_some(&rel), "{rel}");
            assert_eq!(got, st.get(&rel), "{rel}");
            assert_eq!(hint, hint_after, "{rel}");
        }
    }

    #[test]
    fn the_peer_key_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let k = peer_key(dir.path()).unwrap();
        assert_eq!(peer_key(dir.path()).unwrap(), k);
        assert_ne!(k, 0);
    }
}
