//! A peer's record of digests it already computed, so a re-check reads only what changed.
//!
//! One file per root under `$XDG_CACHE_HOME/synk/` (`~/.cache/synk/`), keyed by the entry's
//! device and inode and trusted while size, mtime, ctime and a hash of the path hold — the
//! stamp git's index trusts too: content cannot change without the ctime changing. Entries
//! touched in the last seconds before a scan are not recorded (a write in the same clock tick
//! could go unseen). A cache that is missing, unreadable, garbled or from another version is
//! simply ignored: it can cost time, never correctness.
//!
//! Every re-check reads the whole file, so it is laid out to be used as read: fixed-width
//! records sorted by device and inode behind a checksummed header, nothing to decode.
//!
//! The same store keeps, in a file of its own, what [`crate::extra::read`] found of each
//! entry ([`extra::ExtraCache`]): the ctime moves on every change of xattrs, ACLs and owner
//! as on every write, so the same stamp vouches for them.

pub mod extra;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::beneath::Stamp;
use crate::paths::WirePath;

use crate::model::Digest;

/// The first bytes of a cache file.
const MAGIC: &[u8; 8] = b"synkdig\0";
/// Bumped whenever the file format or the meaning of a stamp changes.
const FORMAT: u32 = 5;
/// Magic, format, record count, checksum of the records, what the records hold (see
/// [`Store::key`]).
const HEADER: usize = 8 + 4 + 8 + 8 + 8;
/// Device, inode, size, mtime, ctime, name hash, payload.
const RECORD: usize = 6 * 8 + PAYLOAD;
/// What a record remembers of its entry: a digest, or what [`extra::ExtraCache`] packs.
const PAYLOAD: usize = 64;
/// The key of a digest cache's header: digests depend on nothing but the file.
const DIGESTS: u64 = 0;
/// Entries changed this recently before the scan began are not trusted later.
const SETTLE_NS: i64 = 2_000_000_000;

/// What identifies the file itself, whatever its name: device and inode.
fn file_of(s: &Stamp) -> (u64, u64) {
    (s.dev, s.ino)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    stamp: Stamp,
    /// xxh3 of the entry's path: where inode numbers are not stable (some FUSE mounts), another
    /// file that comes back under this one's inode is still not taken for it.
    name: u64,
    payload: [u8; PAYLOAD],
}

impl Record {
    fn write_to(&self, out: &mut Vec<u8>) {
        let s = &self.stamp;
        for n in [
            s.dev,
            s.ino,
            s.size,
            s.mtime as u64,
            s.ctime as u64,
            self.name,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.payload);
    }

    /// The record in `b`, exactly [`RECORD`] bytes.
    fn read_from(b: &[u8]) -> Record {
        let n = |i: usize| u64_at(b, i * 8);
        Record {
            stamp: Stamp {
                dev: n(0),
                ino: n(1),
                size: n(2),
                mtime: n(3) as i64,
                ctime: n(4) as i64,
            },
            name: n(5),
            payload: b[48..RECORD].try_into().expect("a payload"),
        }
    }
}

/// The little-endian word at byte `at` of `b`.
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The device and inode a record in `b` is keyed by: its first two words.
fn key_at(b: &[u8]) -> (u64, u64) {
    (u64_at(b, 0), u64_at(b, 8))
}

fn name_of(rel: &WirePath) -> u64 {
    xxhash_rust::xxh3::xxh3_64(rel.as_bytes())
}

/// Writes a cache file of `records` to `w`, sorted by device and inode (one record each),
/// as it encodes them: a million records need no second copy in memory.
fn encode_to(key: u64, mut records: Vec<Record>, w: &mut impl Write) -> std::io::Result<()> {
    records.sort_unstable_by_key(|r| file_of(&r.stamp));
    records.dedup_by_key(|r| file_of(&r.stamp));
    let mut one = Vec::with_capacity(RECORD);
    // The checksum leads the records, so they are encoded twice (a few ns each), not held.
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    for r in &records {
        one.clear();
        r.write_to(&mut one);
        sum.update(&one);
    }
    w.write_all(MAGIC)?;
    w.write_all(&FORMAT.to_le_bytes())?;
    w.write_all(&(records.len() as u64).to_le_bytes())?;
    w.write_all(&sum.digest().to_le_bytes())?;
    w.write_all(&key.to_le_bytes())?;
    for r in &records {
        one.clear();
        r.write_to(&mut one);
        w.write_all(&one)?;
    }
    Ok(())
}

/// A cache file's bytes for `records` (see [`encode_to`]).
#[cfg(test)]
fn encode(key: u64, records: Vec<Record>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_to(key, records, &mut out).expect("a Vec takes every write");
    out
}

/// How many records a cache file's `bytes` hold; `None` for anything but a whole, intact
/// file of this format, written under `key`, with its records in order.
fn decode(key: u64, bytes: &[u8]) -> Option<usize> {
    let head = bytes.get(..HEADER)?;
    if &head[..8] != MAGIC || head[8..12] != FORMAT.to_le_bytes() || u64_at(head, 28) != key {
        return None;
    }
    let body = &bytes[HEADER..];
    if (body.len() / RECORD) as u64 != u64_at(head, 12)
        || body.len() % RECORD != 0
        || xxhash_rust::xxh3::xxh3_64(body) != u64_at(head, 20)
    {
        return None;
    }
    // Strictly ascending, so a binary search finds the one record of a file.
    let mut keys = body.chunks_exact(RECORD).map(key_at);
    let mut last = keys.next();
    for k in keys {
        if last >= Some(k) {
            return None;
        }
        last = Some(k);
    }
    Some(body.len() / RECORD)
}

/// The records of one cache file for one scan: lookups from the last scan, records for the
/// next.
struct Store {
    file: Option<PathBuf>,
    /// What the records hold and under which options they were read: a file written under
    /// another key is ignored.
    key: u64,
    /// The cache file as read: records of the last scan from [`HEADER`] on, sorted by device
    /// and inode.
    bytes: Vec<u8>,
    /// How many records `bytes` holds (searched where they are: a copy of their keys apart
    /// would cost 16 bytes an entry more).
    count: usize,
    /// Which records this scan found unchanged.
    seen: Vec<AtomicBool>,
    /// Records this scan made.
    fresh: Mutex<Vec<Record>>,
    /// Entries changed after this instant (ns) are not recorded.
    trusted_before: i64,
    /// Some record was made, not found: the file must be written again.
    missed: AtomicBool,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The file of `root`'s cache below `cache_dir` ending in `.{ext}`.
fn file_for(cache_dir: Option<&Path>, root: &Path, ext: &str) -> Option<PathBuf> {
    cache_dir.map(|d| {
        let key = Digest::of(root.as_os_str().as_encoded_bytes()).hex();
        d.join("synk").join(format!("{}.{ext}", &key[..32]))
    })
}

/// The digests of one root's files for one scan: lookups from the last scan, records for the
/// next.
pub struct DigestCache(Store);

impl DigestCache {
    /// A cache that remembers nothing.
    pub fn disabled() -> Self {
        Self::at(None)
    }

    /// The cache of `root` below `cache_dir` (the user's, `~/.cache`; `None`: no cache).
    pub fn for_root(cache_dir: Option<&Path>, root: &Path) -> Self {
        Self::at(file_for(cache_dir, root, "digests"))
    }

    /// The cache kept in `file`.
    pub fn at(file: Option<PathBuf>) -> Self {
        DigestCache(Store::at(file, DIGESTS))
    }

    /// The digest recorded for the file at `rel` with this stamp, if it is unchanged.
    pub fn lookup(&self, rel: &WirePath, stamp: &Stamp) -> Option<Digest> {
        self.0.lookup(rel, stamp).map(Digest)
    }

    /// Remembers a freshly computed digest, unless the file changed too recently to trust.
    pub fn keep(&self, rel: &WirePath, stamp: Stamp, digest: Digest) {
        self.0.keep(rel, stamp, digest.0)
    }

    /// Writes what this scan saw (temp file and rename; errors only cost the next scan time).
    pub fn save(self) {
        self.0.save()
    }
}

impl Store {
    /// The store kept in `file`, of records written under `key`.
    fn at(file: Option<PathBuf>, key: u64) -> Self {
        let read = file.as_deref().and_then(|f| std::fs::read(f).ok());
        let (bytes, count) = read
            .and_then(|b| decode(key, &b).map(|count| (b, count)))
            .unwrap_or_default();
        Store {
            file,
            key,
            bytes,
            seen: (0..count).map(|_| AtomicBool::new(false)).collect(),
            count,
            fresh: Mutex::new(Vec::new()),
            trusted_before: now_ns() - SETTLE_NS,
            missed: AtomicBool::new(false),
        }
    }

    /// The `i`th record of the last scan.
    fn known(&self, i: usize) -> Record {
        Record::read_from(&self.bytes[HEADER + i * RECORD..HEADER + (i + 1) * RECORD])
    }

    /// Which record of the last scan is keyed by `key` (device and inode), by binary search.
    fn find(&self, key: (u64, u64)) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match key_at(&self.bytes[HEADER + mid * RECORD..]).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The payload recorded for the entry at `rel` with this stamp, if it is unchanged.
    fn lookup(&self, rel: &WirePath, stamp: &Stamp) -> Option<[u8; PAYLOAD]> {
        if let Some(i) = self.find(file_of(stamp)) {
            let known = self.known(i);
            if known.stamp == *stamp && known.name == name_of(rel) {
                self.seen[i].store(true, Ordering::Relaxed);
                return Some(known.payload);
            }
        }
        self.missed.store(true, Ordering::Relaxed);
        None
    }

    /// Remembers a fresh payload, unless the entry changed too recently to trust.
    fn keep(&self, rel: &WirePath, stamp: Stamp, payload: [u8; PAYLOAD]) {
        if self.file.is_some() && stamp.mtime.max(stamp.ctime) < self.trusted_before {
            self.fresh.lock().expect("cache lock").push(Record {
                stamp,
                name: name_of(rel),
                payload,
            });
            // Made without a lookup first, it still must be written.
            self.missed.store(true, Ordering::Relaxed);
        }
    }

    /// Writes what this scan saw (temp file and rename; errors only cost the next scan time).
    fn save(self) {
        let Some(file) = &self.file else { return };
        // Every file found by its stamp and none gone: the file on disk says it all already.
        if !self.missed.load(Ordering::Relaxed)
            && self.seen.iter().all(|s| s.load(Ordering::Relaxed))
        {
            return;
        }
        let mut records = std::mem::take(&mut *self.fresh.lock().expect("cache lock"));
        records.extend(
            (0..self.count)
                .filter(|i| self.seen[*i].load(Ordering::Relaxed))
                .map(|i| self.known(i)),
        );
        let write = || -> std::io::Result<()> {
            let dir = file.parent().expect("cache file has a directory");
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            encode_to(self.key, records, &mut w)?;
            w.flush()?;
            drop(w);
            tmp.persist(file).map_err(|e| e.error)?;
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
            crate::scan::WalkOpts {
                tidy: true,
                nfc: false,
            },
            &mut |e: Found| got = e.state.unwrap().digest,
        )
        .unwrap();
        got.expect("one file")
    }

    /// A cache whose clock says the files were written long ago.
    fn settled(file: &Path) -> DigestCache {
        let mut c = DigestCache::at(Some(file.to_path_buf()));
        c.0.trusted_before = i64::MAX;
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
        let planted = Record {
            stamp: Stamp::of_metadata(&std::fs::metadata(&f).unwrap()),
            name: name_of(&WirePath::default()),
            payload: fake.0,
        };
        std::fs::write(&store, encode(DIGESTS, vec![planted])).unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), fake);
        // The same stamp under another path (an inode handed out again) is not trusted.
        let elsewhere = Record {
            name: name_of(&WirePath(b"other".to_vec())),
            ..planted
        };
        std::fs::write(&store, encode(DIGESTS, vec![elsewhere])).unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), Digest::of(b"one"));
        std::fs::write(&store, encode(DIGESTS, vec![planted])).unwrap();
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
        assert_eq!(decode(DIGESTS, &std::fs::read(&store).unwrap()), Some(0));
        // Garbage in the cache file is ignored.
        std::fs::write(&store, b"\xff\xff garbage").unwrap();
        assert_eq!(digest_of(&f, &settled(&store)), Digest::of(b"new"));
    }

    /// A record of file (dev 1, `ino`) whose digest is that of `ino`'s bytes.
    fn record(ino: u64) -> Record {
        Record {
            stamp: Stamp {
                dev: 1,
                ino,
                size: ino * 10,
                mtime: -5,
                ctime: i64::MAX,
            },
            name: ino.wrapping_mul(7),
            payload: Digest::of(&ino.to_le_bytes()).0,
        }
    }

    #[test]
    fn records_read_back_in_order_whatever_order_they_were_kept_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("x.digests");
        std::fs::write(
            &store,
            encode(DIGESTS, vec![record(9), record(2), record(5), record(2)]),
        )
        .unwrap();
        let c = DigestCache::at(Some(store));
        assert_eq!(c.0.count, 3);
        for (i, ino) in [2, 5, 9].into_iter().enumerate() {
            assert_eq!(c.0.known(i), record(ino));
        }
    }

    #[test]
    fn a_torn_flipped_or_disordered_file_is_ignored_whole() {
        let good = encode(DIGESTS, vec![record(1), record(2), record(3)]);
        assert_eq!(decode(DIGESTS, &good), Some(3));
        // Cut anywhere: short of a record, of the header, or a whole record gone.
        for len in [
            0,
            7,
            HEADER - 1,
            HEADER,
            good.len() - 1,
            good.len() - RECORD,
        ] {
            assert_eq!(decode(DIGESTS, &good[..len]), None, "cut at {len}");
        }
        // Any one byte changed, in the header or a record.
        for at in [
            0,
            8,
            12,
            20,
            28,
            HEADER,
            HEADER + RECORD + 50,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert_eq!(decode(DIGESTS, &bad), None, "byte {at}");
        }
        // Records out of order, checksum and all made right: a search could not find them.
        let mut body = Vec::new();
        for ino in [2, 1] {
            record(ino).write_to(&mut body);
        }
        let mut disordered = good[..HEADER].to_vec();
        disordered[12..20].copy_from_slice(&2u64.to_le_bytes());
        disordered[20..28].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        disordered.extend_from_slice(&body);
        assert_eq!(decode(DIGESTS, &disordered), None);
        disordered.truncate(HEADER + RECORD);
        disordered[12..20].copy_from_slice(&1u64.to_le_bytes());
        let one = xxhash_rust::xxh3::xxh3_64(&disordered[HEADER..]);
        disordered[20..28].copy_from_slice(&one.to_le_bytes());
        assert_eq!(decode(DIGESTS, &disordered), Some(1));
    }
}
