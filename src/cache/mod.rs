//! A peer's record of digests it already computed, so a re-check reads only what changed.
//!
//! One file per root under `$XDG_CACHE_HOME/synk/` (`~/.cache/synk/`), keyed by the entry's
//! path and trusted while its device, inode, size, mtime and ctime hold — the stamp git's
//! index trusts too: content cannot change without the ctime changing. Entries touched in the
//! last seconds before a scan are not recorded (a write in the same clock tick could go
//! unseen). A cache that is missing, unreadable, garbled or from another version is simply
//! ignored from the first bad record on: it can cost time, never correctness.
//!
//! A scan walks in path order (as the scan module says), and the file is kept in that order
//! too, so a scan reads the last scan's records as a stream beside its walk and writes the next
//! file as a stream: a million entries cost a read buffer and a write buffer, not a table in
//! memory. Where the walk finds every record as it was, nothing is written at all.
//!
//! The same store keeps, in a file of its own, what [`crate::extra::read`] found of each
//! entry ([`extra::ExtraCache`]): the ctime moves on every change of xattrs, ACLs and owner
//! as on every write, so the same stamp vouches for them.

pub mod extra;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::beneath::Stamp;
use crate::paths::WirePath;

use crate::model::Digest;

/// The first bytes of a cache file.
const MAGIC: &[u8; 8] = b"synkdig\0";
/// Bumped whenever the file format or the meaning of a stamp changes.
const FORMAT: u32 = 6;
/// Magic, format, what the records hold (see [`Store::key`]).
const HEADER: usize = 8 + 4 + 8;
/// What a record remembers of its entry: a digest, or what [`extra::ExtraCache`] packs.
const PAYLOAD: usize = 64;
/// A record's fixed part after its path: device, inode, size, mtime, ctime, payload, and the
/// checksum of the whole record.
const FIXED: usize = 5 * 8 + PAYLOAD + 8;
/// The longest path a record holds (longer ones are not recorded: Linux's `PATH_MAX` is 4096).
const MAX_PATH: usize = 1 << 16;
/// The key of a digest cache's header: digests depend on nothing but the file.
const DIGESTS: u64 = 0;
/// Entries changed this recently before the scan began are not trusted later.
const SETTLE_NS: i64 = 2_000_000_000;
/// Read and write buffers: a few syscalls a megabyte.
const BUF: usize = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    rel: Vec<u8>,
    stamp: Stamp,
    payload: [u8; PAYLOAD],
}

impl Default for Record {
    fn default() -> Self {
        Record {
            rel: Vec::new(),
            stamp: Stamp::default(),
            payload: [0; PAYLOAD],
        }
    }
}

impl Record {
    /// Appends the record's bytes, its checksum last.
    #[cfg(test)]
    fn write_to(&self, out: &mut Vec<u8>) {
        encode_record(&self.rel, &self.stamp, &self.payload, out)
    }

    /// The next record of `r` (`None` at a clean end), reading its bytes into `buf`; an error
    /// for a record cut short, too long or whose checksum does not hold.
    #[cfg(test)]
    fn read_from(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<Record>> {
        let mut rec = Record::default();
        Ok(rec.read_in(r, buf)?.then_some(rec))
    }

    /// Reads the next record of `r` into this one, its path's buffer reused (`false` at a
    /// clean end), its bytes into `buf`; an error for a record cut short, too long or whose
    /// checksum does not hold.
    fn read_in(&mut self, r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut len = [0u8; 4];
        match r.read(&mut len[..1])? {
            0 => return Ok(false),
            _ => r.read_exact(&mut len[1..])?,
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_PATH {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "path too long"));
        }
        buf.clear();
        buf.extend_from_slice(&len);
        buf.resize(4 + n + FIXED, 0);
        r.read_exact(&mut buf[4..])?;
        let body = buf.len() - 8;
        if xxhash_rust::xxh3::xxh3_64(&buf[..body]).to_le_bytes() != buf[body..] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "checksum"));
        }
        let word = |i: usize| u64_at(buf, 4 + n + i * 8);
        self.rel.clear();
        self.rel.extend_from_slice(&buf[4..4 + n]);
        self.stamp = Stamp {
            dev: word(0),
            ino: word(1),
            size: word(2),
            mtime: word(3) as i64,
            ctime: word(4) as i64,
        };
        self.payload = buf[4 + n + 40..body].try_into().expect("a payload");
        Ok(true)
    }
}

/// Appends a record's bytes to `out`: its path's length and bytes, the stamp, the payload,
/// and the checksum of all that.
fn encode_record(rel: &[u8], s: &Stamp, payload: &[u8; PAYLOAD], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
    out.extend_from_slice(rel);
    for n in [s.dev, s.ino, s.size, s.mtime as u64, s.ctime as u64] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(payload);
    let sum = xxhash_rust::xxh3::xxh3_64(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// The little-endian word at byte `at` of `b`.
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A cache file's header for records written under `key`.
fn header(key: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[12..].copy_from_slice(&key.to_le_bytes());
    h
}

/// `file` opened past its header, if it is a cache file of this format written under `key`.
fn open_cache(file: &Path, key: u64) -> Option<BufReader<File>> {
    let mut r = BufReader::with_capacity(BUF, File::open(file).ok()?);
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h).ok()?;
    (h == header(key)).then_some(r)
}

/// The last scan's records, read in path order as lookups ask for them.
struct Known {
    r: BufReader<File>,
    /// The record lookups have reached, unless `ended`.
    at: Record,
    /// Where `at` begins, counted from the end of the header, and how long it is (unless
    /// `ended`).
    at_pos: u64,
    at_len: u64,
    /// The one read before it, its buffers reused.
    spare: Record,
    /// The end, or a bad record: nothing after it is trusted.
    ended: bool,
    buf: Vec<u8>,
}

impl Known {
    fn open(file: &Path, key: u64) -> Option<Known> {
        let mut k = Known {
            r: open_cache(file, key)?,
            at: Record::default(),
            at_pos: 0,
            at_len: 0,
            spare: Record::default(),
            ended: false,
            buf: Vec::new(),
        };
        k.ended = !matches!(k.at.read_in(&mut k.r, &mut k.buf), Ok(true));
        k.at_len = k.buf.len() as u64;
        Some(k)
    }

    /// Moves to the next record; one not strictly after the last ends the file.
    fn next(&mut self) {
        let read = self.spare.read_in(&mut self.r, &mut self.buf);
        if matches!(read, Ok(true)) && self.spare.rel > self.at.rel {
            std::mem::swap(&mut self.at, &mut self.spare);
            self.at_pos += self.at_len;
            self.at_len = self.buf.len() as u64;
        } else {
            self.ended = true;
        }
    }

    /// The record of `rel`, for paths asked in path order.
    fn find(&mut self, rel: &[u8]) -> Option<&Record> {
        while !self.ended && self.at.rel.as_slice() < rel {
            self.next();
        }
        (!self.ended && self.at.rel == rel).then_some(&self.at)
    }

    /// The length of the record `upto` bytes into the records, if it is, byte for byte, the
    /// record of `rel`, `stamp` and `payload` (`encoded` and `theirs`: buffers to reuse).
    fn repeats(
        &self,
        upto: u64,
        (rel, stamp, payload): (&[u8], &Stamp, &[u8; PAYLOAD]),
        encoded: &mut Vec<u8>,
        theirs: &mut Vec<u8>,
    ) -> Option<u64> {
        // In a tree in sync, nearly every note: the lookup just read and checked this very
        // record (a record's bytes follow from its fields). It does not move the reader.
        if !self.ended && self.at_pos == upto && self.at.rel == rel {
            return (self.at.stamp == *stamp && self.at.payload == *payload).then_some(self.at_len);
        }
        // Else the lookups may have gone past it (a scan notes digests it had to read
        // after later lookups): compare bytes.
        encoded.clear();
        encode_record(rel, stamp, payload, encoded);
        theirs.resize(encoded.len(), 0);
        let read = self.r.get_ref().read_exact_at(theirs, HEADER as u64 + upto);
        (read.is_ok() && theirs == encoded).then_some(encoded.len() as u64)
    }
}

/// The next cache file, as the scan notes its records. While every record noted is the next
/// of the last file, byte for byte, nothing is written: that file says it already.
enum Next {
    /// The notes so far are the first `upto` bytes of the last file's records (those
    /// [`Known`] reads).
    Same { upto: u64 },
    /// A new file, being written, and its registration for removal should the serve be
    /// stopped before it is renamed into place ([`crate::beneath::on_stop_remove`]).
    Writing(BufWriter<tempfile::NamedTempFile>, Option<u64>),
    /// Writing failed (or there is no file): the rest is not recorded.
    Off,
}

/// The records of one cache file for one scan: lookups from the last scan, records for the
/// next, both streamed in path order.
struct Store {
    file: Option<PathBuf>,
    /// What the records hold and under which options they were read: a file written under
    /// another key is ignored.
    key: u64,
    known: Option<Known>,
    next: Next,
    /// The path of the last record noted: notes out of order are dropped.
    last: Option<Vec<u8>>,
    /// Entries changed after this instant (ns) are not recorded.
    trusted_before: i64,
    /// One record's bytes, reused.
    one: Vec<u8>,
    /// The old file's bytes where a note is compared with them.
    theirs: Vec<u8>,
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
/// next. Both go in path order, the walk's.
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

    /// The digest recorded for the file at `rel` with this stamp, if it is unchanged. Asked
    /// in path order: a path before the last one asked is not found.
    pub fn lookup(&mut self, rel: &WirePath, stamp: &Stamp) -> Option<Digest> {
        self.0.lookup(rel, stamp).map(Digest)
    }

    /// Records the digest of the file at `rel` for the next scan (found by a lookup or just
    /// computed), unless the file changed too recently to trust. Noted in path order; what
    /// is not noted is forgotten.
    pub fn note(&mut self, rel: &WirePath, stamp: Stamp, digest: Digest) {
        self.0.note(rel, stamp, digest.0)
    }

    /// Writes what this scan noted, where it differs from the last (temp file and rename;
    /// errors only cost the next scan time).
    pub fn save(self) {
        self.0.save()
    }
}

impl Store {
    /// The store kept in `file`, of records written under `key`.
    fn at(file: Option<PathBuf>, key: u64) -> Self {
        let known = file.as_deref().and_then(|f| Known::open(f, key));
        let next = match &file {
            Some(_) => Next::Same { upto: 0 },
            None => Next::Off,
        };
        Store {
            file,
            key,
            known,
            next,
            last: None,
            trusted_before: now_ns() - SETTLE_NS,
            one: Vec::new(),
            theirs: Vec::new(),
        }
    }

    /// The payload recorded for the entry at `rel` with this stamp, if it is unchanged.
    fn lookup(&mut self, rel: &WirePath, stamp: &Stamp) -> Option<[u8; PAYLOAD]> {
        let r = self.known.as_mut()?.find(rel.as_bytes())?;
        (r.stamp == *stamp).then_some(r.payload)
    }

    /// Records a payload for the next scan, unless the entry changed too recently to trust.
    fn note(&mut self, rel: &WirePath, stamp: Stamp, payload: [u8; PAYLOAD]) {
        let rel = rel.as_bytes();
        if matches!(self.next, Next::Off)
            || stamp.mtime.max(stamp.ctime) >= self.trusted_before
            || rel.len() > MAX_PATH
            || self.last.as_ref().is_some_and(|l| rel <= l.as_slice())
        {
            return;
        }
        let last = self.last.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(rel);
        if let Next::Same { upto } = &mut self.next {
            let fields = (rel, &stamp, &payload);
            let same = self
                .known
                .as_ref()
                .and_then(|k| k.repeats(*upto, fields, &mut self.one, &mut self.theirs));
            if let Some(len) = same {
                *upto += len;
                return;
            }
            self.diverge();
        }
        if let Next::Writing(w, live) = &mut self.next {
            self.one.clear();
            encode_record(rel, &stamp, &payload, &mut self.one);
            if w.write_all(&self.one).is_err() {
                // The temp file goes with the writer: nothing is left to remove on a stop.
                crate::beneath::forget(*live);
                self.next = Next::Off;
            }
        }
    }

    /// Starts the new file: the header, then the old file's records the notes matched so far.
    fn diverge(&mut self) {
        let Next::Same { upto } = self.next else {
            return;
        };
        let file = self.file.as_deref().expect("a store that notes has a file");
        let start = || -> io::Result<BufWriter<tempfile::NamedTempFile>> {
            let dir = file.parent().expect("cache file has a directory");
            std::fs::create_dir_all(dir)?;
            let mut w = BufWriter::with_capacity(BUF, tempfile::NamedTempFile::new_in(dir)?);
            w.write_all(&header(self.key))?;
            // From the file the notes were compared with (another scan may have renamed a
            // new one over its name since), without moving its reader.
            let old = self.known.as_ref().map(|k| k.r.get_ref());
            let (mut at, end) = (HEADER as u64, HEADER as u64 + upto);
            let mut buf = vec![0u8; BUF];
            while at < end {
                let want = buf.len().min((end - at) as usize);
                let n = match old {
                    Some(o) => o.read_at(&mut buf[..want], at)?,
                    None => 0,
                };
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                w.write_all(&buf[..n])?;
                at += n as u64;
            }
            Ok(w)
        };
        self.next = match start() {
            Ok(w) => {
                // A signal must not leave it behind: it lives for the whole scan.
                let tmp = w.get_ref().path();
                let live = tmp
                    .parent()
                    .and_then(|d| std::fs::File::open(d).ok())
                    .zip(tmp.file_name())
                    .and_then(|(d, name)| {
                        use std::os::fd::AsFd;
                        crate::beneath::on_stop_remove(d.as_fd(), name.as_encoded_bytes(), false)
                    });
                Next::Writing(w, live)
            }
            Err(e) => {
                tracing::debug!("cache {}: {e}", file.display());
                Next::Off
            }
        };
    }

    /// Writes what this scan noted, where it differs from the last file (temp file and
    /// rename; errors only cost the next scan time).
    fn save(mut self) {
        if let Next::Same { upto } = self.next {
            // Every record of the last file noted again, and nothing after them.
            let len = self.known.as_ref().map(|k| k.r.get_ref().metadata());
            if matches!(len, Some(Ok(m)) if m.len() == HEADER as u64 + upto) {
                return;
            }
            self.diverge();
        }
        let Next::Writing(w, live) = self.next else {
            return;
        };
        let file = self
            .file
            .as_deref()
            .expect("a store that writes has a file");
        let done = w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|tmp| tmp.persist(file).map(drop).map_err(|e| e.error));
        crate::beneath::forget(live);
        if let Err(e) = done {
            tracing::debug!("cache {}: {e}", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::scan_root;
    use crate::scan::Found;
    use std::os::unix::fs::MetadataExt;

    /// Every file's digest, as a scan with `cache` reports it, in path order.
    fn digests_of(root: &Path, cache: &mut DigestCache) -> Vec<Digest> {
        let mut got = Vec::new();
        scan_root(
            root,
            cache,
            &crate::exclude::Excludes::none(),
            crate::scan::WalkOpts {
                tidy: true,
                nfc: false,
            },
            &mut |e: Found| got.extend(e.state.unwrap().digest),
        )
        .unwrap();
        got
    }

    fn digest_of(root: &Path, cache: &mut DigestCache) -> Digest {
        let got = digests_of(root, cache);
        assert_eq!(got.len(), 1, "one file");
        got[0]
    }

    /// A cache whose clock says the files were written long ago.
    fn settled(file: &Path) -> DigestCache {
        let mut c = DigestCache::at(Some(file.to_path_buf()));
        c.0.trusted_before = i64::MAX;
        c
    }

    /// A record of `rel` whose stamp and payload follow from `n`, changed at `mtime`/`ctime`.
    fn rec(rel: &str, n: u8, (mtime, ctime): (i64, i64)) -> Record {
        Record {
            rel: rel.as_bytes().to_vec(),
            stamp: Stamp {
                dev: 1,
                ino: u64::from(n),
                size: 10,
                mtime,
                ctime,
            },
            payload: [n; PAYLOAD],
        }
    }

    /// Asserts `store` is the very file `before` described: not written again.
    fn not_written_again(store: &Path, before: &std::fs::Metadata) {
        let after = std::fs::metadata(store).unwrap();
        assert_eq!(
            (before.ino(), before.mtime_nsec()),
            (after.ino(), after.mtime_nsec()),
            "not written again"
        );
    }

    /// A cache file of `records`, as given.
    fn encode(key: u64, records: &[Record]) -> Vec<u8> {
        let mut out = header(key).to_vec();
        for r in records {
            r.write_to(&mut out);
        }
        out
    }

    /// The records a cache file holds, up to the first bad one.
    fn decode(bytes: &[u8]) -> Vec<Record> {
        let (mut r, mut buf, mut out) = (&bytes[HEADER..], Vec::new(), Vec::new());
        while let Ok(Some(rec)) = Record::read_from(&mut r, &mut buf) {
            out.push(rec);
        }
        out
    }

    fn stamp_of(p: &Path) -> Stamp {
        Stamp::of_metadata(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn known_stamps_are_not_read_again_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let store = dir.path().join("cache/x.digests");
        std::fs::write(&f, "one").unwrap();
        let mut c = settled(&store);
        assert_eq!(digest_of(&f, &mut c), Digest::of(b"one"));
        c.save();
        // Plant a different digest under the file's current stamp: a re-check that trusts the
        // cache reports it, which proves the file was not read.
        let fake = Digest::of(b"planted");
        let planted = Record {
            rel: Vec::new(),
            stamp: stamp_of(&f),
            payload: fake.0,
        };
        std::fs::write(&store, encode(DIGESTS, std::slice::from_ref(&planted))).unwrap();
        assert_eq!(digest_of(&f, &mut settled(&store)), fake);
        // The same stamp under another path (an inode handed out again) is not trusted.
        let elsewhere = Record {
            rel: b"other".to_vec(),
            ..planted.clone()
        };
        std::fs::write(&store, encode(DIGESTS, &[elsewhere])).unwrap();
        assert_eq!(digest_of(&f, &mut settled(&store)), Digest::of(b"one"));
        std::fs::write(&store, encode(DIGESTS, &[planted])).unwrap();
        // Any write moves the ctime, even one that restores size and mtime.
        let md = std::fs::metadata(&f).unwrap();
        std::fs::write(&f, "two").unwrap();
        filetime::set_file_mtime(&f, filetime::FileTime::from_last_modification_time(&md)).unwrap();
        assert_eq!(digest_of(&f, &mut settled(&store)), Digest::of(b"two"));
    }

    #[test]
    fn recent_changes_and_broken_caches_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let store = dir.path().join("x.digests");
        std::fs::write(&f, "new").unwrap();
        // Written just now: not recorded.
        let mut c = DigestCache::at(Some(store.clone()));
        assert_eq!(digest_of(&f, &mut c), Digest::of(b"new"));
        c.save();
        assert_eq!(std::fs::read(&store).unwrap(), header(DIGESTS));
        // Garbage in the cache file is ignored, and replaced.
        std::fs::write(&store, b"\xff\xff garbage").unwrap();
        let mut c = settled(&store);
        assert_eq!(digest_of(&f, &mut c), Digest::of(b"new"));
        c.save();
        assert_eq!(decode(&std::fs::read(&store).unwrap()).len(), 1);
    }

    /// A tree of files `a`, `b/c`, `b-d` and `e`, its cache file after a settled scan, and the
    /// digests that scan reported.
    fn tree(dir: &Path) -> (PathBuf, PathBuf, Vec<Digest>) {
        let root = dir.join("t");
        std::fs::create_dir_all(root.join("b")).unwrap();
        for f in ["a", "b/c", "b-d", "e"] {
            std::fs::write(root.join(f), f).unwrap();
        }
        let store = dir.join("x.digests");
        let mut c = settled(&store);
        let got = digests_of(&root, &mut c);
        c.save();
        (root, store, got)
    }

    #[test]
    fn records_go_in_path_order_and_a_scan_that_changes_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store, first) = tree(dir.path());
        let rels: Vec<Vec<u8>> = decode(&std::fs::read(&store).unwrap())
            .into_iter()
            .map(|r| r.rel)
            .collect();
        assert_eq!(rels, [&b"a"[..], b"b-d", b"b/c", b"e"]);
        let before = std::fs::metadata(&store).unwrap();
        let mut c = settled(&store);
        assert_eq!(digests_of(&root, &mut c), first);
        c.save();
        not_written_again(&store, &before);
    }

    #[test]
    fn what_follows_the_records_noted_again_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store, first) = tree(dir.path());
        let whole = std::fs::read(&store).unwrap();
        // Junk after the last record: every record is noted again, the junk is not kept.
        let mut junk = whole.clone();
        junk.extend_from_slice(b"junk");
        std::fs::write(&store, &junk).unwrap();
        let mut c = settled(&store);
        assert_eq!(digests_of(&root, &mut c), first);
        c.save();
        assert_eq!(std::fs::read(&store).unwrap(), whole);
        // The last entry gone: the records before it are kept, byte for byte.
        std::fs::remove_file(root.join("e")).unwrap();
        let mut c = settled(&store);
        digests_of(&root, &mut c);
        c.save();
        let now = decode(&std::fs::read(&store).unwrap());
        let rels: Vec<&[u8]> = now.iter().map(|r| r.rel.as_slice()).collect();
        assert_eq!(rels, [&b"a"[..], b"b-d", b"b/c"]);
        assert_eq!(now[..], decode(&whole)[..3]);
    }

    #[test]
    fn notes_behind_the_lookups_or_without_one_keep_the_file_exact() {
        let rec = |rel: &str, n: u8| rec(rel, n, (5, 5));
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("x");
        let (a, b, c) = (rec("a", 1), rec("b", 2), rec("c", 3));
        std::fs::write(&store, encode(DIGESTS, &[a.clone(), b.clone(), c.clone()])).unwrap();
        let before = std::fs::metadata(&store).unwrap();
        let look = |s: &mut DigestCache, r: &Record| s.lookup(&WirePath(r.rel.clone()), &r.stamp);
        let note = |s: &mut DigestCache, r: &Record| {
            s.note(&WirePath(r.rel.clone()), r.stamp, Digest(r.payload))
        };
        // A new file whose digest is read while later lookups go on, and never noted (it
        // changed as it was read): the notes of the rest come behind the lookups.
        let mut s = settled(&store);
        assert!(look(&mut s, &a).is_some());
        note(&mut s, &a);
        assert!(look(&mut s, &rec("a1", 9)).is_none());
        assert!(look(&mut s, &b).is_some());
        assert!(look(&mut s, &c).is_some());
        note(&mut s, &b);
        note(&mut s, &c);
        s.save();
        not_written_again(&store, &before);
        // One looked up but not noted, the next noted without a lookup: written anew, exact.
        let mut s = settled(&store);
        assert!(look(&mut s, &a).is_some());
        note(&mut s, &a);
        assert!(look(&mut s, &b).is_some());
        note(&mut s, &c);
        s.save();
        assert_eq!(decode(&std::fs::read(&store).unwrap()), [a, c]);
    }

    #[test]
    fn a_change_in_the_middle_keeps_the_records_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store, _) = tree(dir.path());
        let old = decode(&std::fs::read(&store).unwrap());
        // Plant digests for every record, to tell what a later scan took from the cache.
        let planted: Vec<Record> = old
            .iter()
            .map(|r| Record {
                payload: Digest::of(&r.rel).0,
                ..r.clone()
            })
            .collect();
        std::fs::write(&store, encode(DIGESTS, &planted)).unwrap();
        std::fs::remove_file(root.join("b-d")).unwrap();
        std::fs::write(root.join("b/c"), "changed").unwrap();
        std::fs::write(root.join("b/new"), "new").unwrap();
        let mut c = settled(&store);
        let got = digests_of(&root, &mut c);
        c.save();
        let expect = [
            Digest::of(b"a"),
            Digest::of(b"changed"),
            Digest::of(b"new"),
            Digest::of(b"e"),
        ];
        assert_eq!(got, expect, "the unchanged from the cache, the rest read");
        let now = decode(&std::fs::read(&store).unwrap());
        let rels: Vec<&[u8]> = now.iter().map(|r| r.rel.as_slice()).collect();
        assert_eq!(rels, [&b"a"[..], b"b/c", b"b/new", b"e"]);
        assert_eq!(now[0], planted[0], "kept as it was");
        assert_eq!(now[3], planted[3], "kept as it was");
        assert_eq!(now[1].payload, Digest::of(b"changed").0);
    }

    #[test]
    fn a_torn_flipped_or_disordered_file_is_trusted_up_to_the_damage() {
        let rec = |rel: &str, n: u8| rec(rel, n, (-5, i64::MAX));
        let good = encode(DIGESTS, &[rec("a", 1), rec("b", 2), rec("c", 3)]);
        let at = |bytes: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("x");
            std::fs::write(&store, bytes).unwrap();
            let mut c = DigestCache::at(Some(store));
            ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    c.lookup(&WirePath::from(*r), &rec(r, i as u8 + 1).stamp)
                        .is_some()
                })
                .collect::<Vec<bool>>()
        };
        assert_eq!(at(&good), [true, true, true]);
        let one = (good.len() - HEADER) / 3;
        // Cut anywhere: in the header, or inside the second record.
        for len in [0, 7, HEADER - 1] {
            assert_eq!(at(&good[..len]), [false; 3], "cut at {len}");
        }
        assert_eq!(at(&good[..HEADER + one + 5]), [true, false, false]);
        // One byte changed: in the header, or the second record's path, stamp or checksum.
        for (byte, expect) in [
            (0, [false; 3]),
            (9, [false; 3]),
            (13, [false; 3]),
            (HEADER + one + 4, [true, false, false]),
            (HEADER + one + 10, [true, false, false]),
            (HEADER + 2 * one - 1, [true, false, false]),
        ] {
            let mut bad = good.clone();
            bad[byte] ^= 1;
            assert_eq!(at(&bad), expect, "byte {byte}");
        }
        // Another key: another kind of cache, or read under other options.
        let mut other = good.clone();
        other[HEADER - 1] ^= 1;
        assert_eq!(at(&other), [false; 3]);
        // Out of order: the record that goes back ends what is trusted.
        let back = encode(DIGESTS, &[rec("a", 1), rec("c", 3), rec("b", 2)]);
        assert_eq!(at(&back), [true, false, true]);
    }
}
