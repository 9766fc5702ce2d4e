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

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::atomic;
use crate::model::{Digest, Meta, Record};
use crate::paths::WirePath;

mod records;
pub(crate) use records::rel_of;
use records::Blocks;
pub use records::{Records, Reuse};

/// Opens every state file of [`FORMAT`] 2 on: a file that begins otherwise is of format 1 (a
/// bare postcard body, whose first byte is its format) or no state file at all.
const MAGIC: [u8; 8] = *b"SYNKSTAT";

/// The format written: bumped whenever the state file format changes. An unknown format is
/// never read as if it were this one (that would turn every remembered deletion into a
/// resurrection): such a file is moved aside like a damaged one.
const FORMAT: u32 = 3;

/// The format before entries kept [`crate::model::Extra`]: still read, and written anew as
/// [`FORMAT`] at the next commit.
const FORMAT_2: u32 = 2;

/// The format before the header and its checksum: still read, and written anew as [`FORMAT`]
/// at the next commit.
const OLD_FORMAT: u32 = 1;

/// A record as formats 1 and 2 stored it: its metadata had no [`crate::model::Extra`].
#[derive(Deserialize)]
struct Record2 {
    rel: WirePath,
    meta: Option<Meta2>,
    vv: crate::model::Vv,
}

/// [`Meta`] as formats 1 and 2 stored it.
#[derive(Deserialize)]
struct Meta2 {
    kind: crate::model::Kind,
    size: u64,
    mode: u32,
    mtime: i64,
    digest: Option<Digest>,
}

impl From<Record2> for Record {
    fn from(r: Record2) -> Record {
        Record {
            rel: r.rel,
            meta: r.meta.map(|m| Meta {
                kind: m.kind,
                size: m.size,
                mode: m.mode,
                mtime: m.mtime,
                digest: m.digest,
                extra: Default::default(),
            }),
            vv: r.vv,
        }
    }
}

/// The body of a format 2 state file.
#[derive(Deserialize)]
struct Body2 {
    root: WirePath,
    records: Vec<Record2>,
    mounts: Vec<WirePath>,
}

/// The header before the body: [`MAGIC`], the format (u32), the body's length (u64) and the
/// xxh3-128 of the body, little-endian.
const HEADER: usize = 8 + 4 + 8 + 16;

/// A format 1 file, whole.
#[derive(Deserialize)]
struct OldStored {
    format: u32,
    /// The absolute root the records are relative to.
    root: WirePath,
    /// Sorted by `rel`.
    records: Vec<Record2>,
}

/// A state file's content, decoded and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The absolute root its records are relative to.
    pub root: WirePath,
    /// Its records, as stored.
    pub records: Vec<Record>,
    /// Directories recorded as mount points.
    pub mounts: Vec<WirePath>,
    /// The format it was written in.
    pub format: u32,
}

/// Decodes a state file's bytes, checking its header and checksum; a format 1 file is read
/// as before. `Err` says what is wrong, for the message that moves the file aside.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    decode_held(bytes.to_vec()).map(Decoded::from)
}

/// Decodes the state file at `path` as a serve loads it: read in chunks, its records left in
/// the file where they can be ([`decode_file`]). The same answer as [`decode`] of its bytes.
pub fn decode_at(path: &Path) -> Result<Decoded, String> {
    match read_stored(path) {
        Loaded::Sound(s) => Ok(Decoded::from(s)),
        Loaded::Bad(why) => Err(why),
        Loaded::Missing => Err(format!("{}: no such file", path.display())),
    }
}

impl From<Held> for Decoded {
    fn from(s: Held) -> Self {
        Decoded {
            root: s.root,
            records: s.records.iter().collect(),
            mounts: s.mounts,
            format: s.format,
        }
    }
}

/// A state file's content as [`decode_held`] keeps it: its records still encoded.
struct Held {
    root: WirePath,
    records: Records,
    mounts: Vec<WirePath>,
    format: u32,
}

/// As [`decode`], keeping the file's bytes as the records' own (a format 3 file's records
/// are used as they are encoded, never decoded all at once).
fn decode_held(bytes: Vec<u8>) -> Result<Held, String> {
    if !bytes.starts_with(&MAGIC) {
        let (old, _) = postcard::take_from_bytes::<OldStored>(&bytes)
            .map_err(|e| format!("not a synk state file ({e})"))?;
        if old.format != OLD_FORMAT {
            return Err(format!(
                "format {}, which this synk does not read",
                old.format
            ));
        }
        let records: Vec<Record> = old.records.into_iter().map(Record::from).collect();
        return Ok(Held {
            root: old.root,
            records: Records::from_vec(&records),
            mounts: Vec::new(),
            format: OLD_FORMAT,
        });
    }
    let Some(header) = bytes.get(..HEADER) else {
        return Err(format!(
            "cut short ({} bytes, less than its header)",
            bytes.len()
        ));
    };
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != FORMAT && format != FORMAT_2 {
        return Err(format!("format {format}, which this synk does not read"));
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let body = &bytes[HEADER..];
    if body.len() as u64 != len {
        return Err(format!(
            "{} bytes where its header says {len}: cut short or grown",
            body.len()
        ));
    }
    if xxhash_rust::xxh3::xxh3_128(body).to_le_bytes() != header[20..HEADER] {
        return Err("its checksum does not match its contents".into());
    }
    let undecodable = |e: postcard::Error| format!("checksum right but undecodable ({e})");
    if format == FORMAT_2 {
        let (b, rest) = postcard::take_from_bytes::<Body2>(body).map_err(undecodable)?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after its records", rest.len()));
        }
        let records: Vec<Record> = b.records.into_iter().map(Record::from).collect();
        return Ok(Held {
            root: b.root,
            records: Records::from_vec(&records),
            mounts: b.mounts,
            format,
        });
    }
    // The body as [`write_state`] writes it: the root, the records as a sequence (their
    // count, then each), the mount points.
    let (root, rest) = postcard::take_from_bytes::<WirePath>(body).map_err(undecodable)?;
    let (count, rest) = postcard::take_from_bytes::<usize>(rest).map_err(undecodable)?;
    let start = bytes.len() - rest.len();
    let (records, end) = Records::take(bytes, start, count as u64)?;
    let tail = records.tail(end);
    let (mounts, rest) = postcard::take_from_bytes::<Vec<WirePath>>(tail).map_err(undecodable)?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after its records", rest.len()));
    }
    Ok(Held {
        root,
        records,
        mounts,
        format,
    })
}

/// Counts and hashes what goes through it: the body of a state file on its way to disk.
struct Summing<W> {
    inner: W,
    hash: xxhash_rust::xxh3::Xxh3,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a state file atomically: header, then the body as it is encoded (a big state goes
/// to disk without a second copy in memory), then the header's length and checksum. The body
/// is the absolute root the records are relative to (first: see [`read_root`]), the records
/// sorted by `rel` as postcard encodes a sequence (their count, then each as held), and the
/// directories that were mount points at the last sync, sorted.
fn write_state(
    file: &Path,
    root: &WirePath,
    records: &Records,
    mounts: &[WirePath],
) -> io::Result<()> {
    atomic::write_file(file, |f| {
        f.write_all(&[0; HEADER])?;
        let mut w = Summing {
            inner: io::BufWriter::new(&mut *f),
            hash: xxhash_rust::xxh3::Xxh3::new(),
            len: 0,
        };
        postcard::to_io(root, &mut w).map_err(io::Error::other)?;
        postcard::to_io(&records.len(), &mut w).map_err(io::Error::other)?;
        for i in 0..records.len() {
            w.write_all(&records.encoded(i))?;
        }
        postcard::to_io(mounts, &mut w).map_err(io::Error::other)?;
        w.flush()?;
        let (len, check) = (w.len, w.hash.digest128());
        drop(w);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&check.to_le_bytes());
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&header)
    })
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
    let read = || -> io::Result<Option<u64>> {
        match fs::read_to_string(&file) {
            Ok(text) => Ok(u64::from_str_radix(text.trim(), 16).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(k) = read()? {
        return Ok(k);
    }
    // Never 0 (the decision's own key) nor a metadata field's (`Vv::is_field_key`).
    let key = crate::os::random_u64()?.clamp(1, crate::model::Field::FIRST_KEY - 1);
    let text = format!("{key:016x}\n");
    // Two first runs at once (serves started together on a fresh peer): the first key made
    // is the key for good, and every serve goes on with that one, never with its own key a
    // later one replaced (the key names this peer's state and its scratch directories).
    if !atomic::create(&file, text.as_bytes())? && read()?.is_none() {
        // Something unreadable as a key was there: a key of this run's replaces it.
        atomic::write(&file, text.as_bytes())?;
    }
    read()?.ok_or_else(|| io::Error::other(format!("{}: not a key", file.display())))
}

/// The state file of `root` in the state directory `dir`.
pub fn file_for(dir: &Path, root: &Path) -> PathBuf {
    let d = Digest::of(root.as_os_str().as_encoded_bytes());
    dir.join("roots").join(format!("{}.state", &d.hex()[..32]))
}

/// Every state file in the state directory `dir` and the root it belongs to (`None`: not
/// readable as one), by root; the files are named by a hash of their root (`synk --state`).
pub fn index(dir: &Path) -> Vec<(PathBuf, Option<WirePath>)> {
    let Ok(list) = fs::read_dir(dir.join("roots")) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Option<WirePath>)> = list
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension() == Some("state".as_ref()))
        .map(|p| {
            let root = read_root(&p);
            (p, root)
        })
        .collect();
    out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    out
}

/// A state file that could not be read, moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Where it was.
    pub file: PathBuf,
    /// Where it is now: beside, as `NAME.state.corrupt-YYYYMMDD-HHMMSS`.
    pub to: PathBuf,
    /// What was wrong with it.
    pub why: String,
}

/// An I/O error's message without the "(os error N)" that says nothing to a user.
fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Moves an unreadable state file aside (kept, never deleted), under a name no later load
/// reads as a state file.
fn move_aside(file: &Path, why: String) -> io::Result<Moved> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = crate::units::stamp_of(secs);
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let mut to = file.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut n = 1;
    while fs::symlink_metadata(&to).is_ok() {
        n += 1;
        to = file.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
    }
    fs::rename(file, &to).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: unreadable sync state ({why}), and it cannot be moved aside: {}",
                file.display(),
                io_msg(&e)
            ),
        )
    })?;
    Ok(Moved {
        file: file.to_path_buf(),
        to,
        why,
    })
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
    /// Records of the scanned root, relative to it, held encoded: sorted by path, one record a
    /// path, looked up by binary search (no map, no second copy of each path).
    records: Records,
    /// Records of the file outside the scanned root, kept as they are.
    others: Vec<Record>,
    /// State files of roots below this one, absorbed on save.
    absorbed: Vec<PathBuf>,
    /// Directories below the scanned root (relative to it) that were mount points at the last
    /// sync, sorted.
    mounts: Vec<WirePath>,
    /// Mount points of the file outside the scanned root, kept as they are.
    other_mounts: Vec<WirePath>,
    /// The mount points the last walk found below the root (`None`: no walk told).
    seen_mounts: Option<Vec<WirePath>>,
    /// The file is of an older format: written anew at the next commit.
    migrate: bool,
    /// State files that could not be read on the way, moved aside.
    moved: Vec<Moved>,
}

/// The first fields of a format 1 state file, as [`OldStored`] begins.
#[derive(Deserialize)]
struct StoredHead {
    format: u32,
    root: WirePath,
}

/// Enough of a state file's start to hold its head: a root path is shorter than PATH_MAX.
const HEAD_BYTES: u64 = 8 << 10;

/// The root a state file belongs to, read from its first bytes only: a run of one small root
/// must not decode every other root's records to learn where they live. The body's checksum
/// is checked when the file is read whole.
fn read_root(file: &Path) -> Option<WirePath> {
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    fs::File::open(file)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .ok()?;
    if head.starts_with(&MAGIC) {
        let format = u32::from_le_bytes(head.get(8..12)?.try_into().ok()?);
        if format != FORMAT && format != FORMAT_2 {
            return None;
        }
        let (root, _) = postcard::take_from_bytes::<WirePath>(head.get(HEADER..)?).ok()?;
        return Some(root);
    }
    let (h, _) = postcard::take_from_bytes::<StoredHead>(&head).ok()?;
    (h.format == OLD_FORMAT).then_some(h.root)
}

/// What reading a state file found.
enum Loaded {
    /// No file.
    Missing,
    /// A sound one.
    Sound(Held),
    /// One that cannot be read, decoded or checked, and why.
    Bad(String),
}

fn read_stored(file: &Path) -> Loaded {
    let read = fs::File::open(file).and_then(|f| decode_file(f, file));
    match read {
        Ok(Ok(d)) => Loaded::Sound(d),
        Ok(Err(why)) => Loaded::Bad(why),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Loaded::Missing,
        Err(e) => Loaded::Bad(io_msg(&e)),
    }
}

/// A state file smaller than this (some 30,000 records) is read whole into memory: held, it
/// costs less than read three times in chunks. (Unit tests page every file, to exercise the
/// pages; the end-to-end tests, with small states, read them whole.)
const PAGED_FROM: u64 = if cfg!(test) { 1 } else { 4 << 20 };

/// As [`decode_held`], from the open file `path`: a file of this [`FORMAT`] on a local
/// filesystem, of [`PAGED_FROM`] bytes or more, is read in chunks, its checksum first, then
/// each record decoded once to check it, and its records are left in the file
/// ([`Records::in_file`]), so a million of them cost a word each. Any other file, one whose
/// records are out of order, or one on a network filesystem (where a file renamed over by
/// another host's commit may not stay readable through an open handle), is read whole into
/// memory.
fn decode_file(mut f: fs::File, path: &Path) -> io::Result<Result<Held, String>> {
    let size = f.metadata()?.len();
    let mut head = [0u8; HEADER];
    let ours = size >= HEADER as u64
        && size >= PAGED_FROM
        && f.read_exact(&mut head).is_ok()
        && head.starts_with(&MAGIC)
        && head[8..12] == FORMAT.to_le_bytes()
        && crate::os::local_fs(path);
    let whole = |mut f: fs::File| -> io::Result<Result<Held, String>> {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.seek(SeekFrom::Start(0))?;
        f.read_to_end(&mut bytes)?;
        Ok(decode_held(bytes))
    };
    if !ours {
        return whole(f);
    }
    let len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    let body = size - HEADER as u64;
    if body != len {
        return Ok(Err(format!(
            "{body} bytes where its header says {len}: cut short or grown"
        )));
    }
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => sum.update(&buf[..n]),
        }
    }
    drop(buf);
    if sum.digest128().to_le_bytes() != head[20..HEADER] {
        return Ok(Err("its checksum does not match its contents".into()));
    }
    let mut w = Window {
        f: &f,
        pos: HEADER as u64,
        buf: Vec::new(),
        cur: 0,
        eof: false,
    };
    let read = (|| -> Result<_, String> {
        let root: WirePath = w.take()?;
        let count: usize = w.take()?;
        // Every record takes more than two bytes: a count beyond is not believed up front.
        let mut blocks = Blocks {
            at: Vec::with_capacity(count.min(len as usize / 2)),
            ..Blocks::default()
        };
        let mut sum = xxhash_rust::xxh3::Xxh3::new();
        let mut last: Option<WirePath> = None;
        let mut ordered = true;
        for i in 0..count {
            if i % records::BLOCK == 0 && i > 0 {
                blocks.sums.push(sum.digest());
                sum.reset();
            }
            blocks.at.push(w.pos());
            let (r, raw) = w.take_raw::<Record>()?;
            sum.update(raw);
            if i % records::BLOCK == 0 {
                blocks.firsts.push(r.rel.as_bytes().into());
            }
            ordered &= last.as_ref().is_none_or(|l| *l < r.rel);
            last = Some(r.rel);
        }
        if count > 0 {
            blocks.sums.push(sum.digest());
        }
        blocks.end = w.pos();
        let mounts: Vec<WirePath> = w.take()?;
        if w.pos() != size {
            return Err(format!("{} bytes after its records", size - w.pos()));
        }
        Ok((root, blocks, mounts, ordered))
    })();
    let (root, blocks, mounts, ordered) = match read {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    if !ordered {
        return whole(f);
    }
    let records = Records::in_file(f, path.to_path_buf(), blocks);
    Ok(Ok(Held {
        root,
        records,
        mounts,
        format: FORMAT,
    }))
}

/// A state file read forward in chunks, for decoding one value after another.
struct Window<'f> {
    f: &'f fs::File,
    /// Where in the file `buf` begins.
    pos: u64,
    buf: Vec<u8>,
    /// How much of `buf` is decoded.
    cur: usize,
    eof: bool,
}

impl Window<'_> {
    /// Where in the file the next value begins.
    fn pos(&self) -> u64 {
        self.pos + self.cur as u64
    }

    /// The next value.
    fn take<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        self.take_raw().map(|(v, _)| v)
    }

    /// The next value, and its bytes as encoded.
    fn take_raw<T: serde::de::DeserializeOwned>(&mut self) -> Result<(T, &[u8]), String> {
        loop {
            let taken = postcard::take_from_bytes::<T>(&self.buf[self.cur..])
                .map(|(v, rest)| (v, rest.len()));
            match taken {
                Ok((v, rest)) => {
                    let start = self.cur;
                    self.cur = self.buf.len() - rest;
                    return Ok((v, &self.buf[start..self.cur]));
                }
                Err(postcard::Error::DeserializeUnexpectedEnd) if !self.eof => self.fill()?,
                Err(e) => return Err(format!("checksum right but undecodable ({e})")),
            }
        }
    }

    /// Reads the next chunk after what is buffered, letting go of what is decoded.
    fn fill(&mut self) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        self.buf.drain(..self.cur);
        self.pos += self.cur as u64;
        self.cur = 0;
        let have = self.buf.len();
        self.buf.resize(have + (256 << 10), 0);
        let n = self
            .f
            .read_at(&mut self.buf[have..], self.pos + have as u64)
            .map_err(|e| io_msg(&e))?;
        self.buf.truncate(have + n);
        self.eof = n == 0;
        Ok(())
    }
}

/// Whether `records` (sorted by path) hold an entry strictly below `dir`.
fn holds_below(records: &Records, dir: &WirePath) -> bool {
    let n = records.len();
    let held_at = |i| records.get(i).meta.is_some();
    if dir.is_empty() {
        return (0..n).any(|i| !records.rel_at(i).is_empty() && held_at(i));
    }
    let mut prefix = dir.as_bytes().to_vec();
    prefix.push(b'/');
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if *records.rel_at(mid) < *prefix {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo..n)
        .take_while(|i| records.rel_at(*i).starts_with(&prefix))
        .any(held_at)
}

impl RootState {
    /// Loads the state of `root` from `dir` (`None`: this peer keeps no state). A root inside
    /// an already recorded root uses that root's records. A state file that cannot be read,
    /// decoded or checked is moved aside ([`RootState::moved_aside`]) and the root goes on
    /// without that history; only one that cannot even be moved is an error.
    pub fn load(dir: Option<&Path>, root: &Path) -> io::Result<RootState> {
        let Some(dir) = dir else {
            return Ok(RootState::default());
        };
        let mut moved = Vec::new();
        for base in root.ancestors() {
            let file = file_for(dir, base);
            let stored = match read_stored(&file) {
                Loaded::Missing => continue,
                Loaded::Bad(why) => {
                    moved.push(move_aside(&file, why)?);
                    continue;
                }
                Loaded::Sound(d) => d,
            };
            if stored.root.as_path() != base {
                continue; // a hash collision: not ours
            }
            let prefix = root
                .strip_prefix(base)
                .map(WirePath::from_path)
                .unwrap_or_default();
            let mut st = RootState {
                file: Some(file),
                file_root: base.to_path_buf(),
                prefix: prefix.clone(),
                migrate: stored.format != FORMAT,
                moved,
                ..RootState::default()
            };
            if prefix.is_empty() {
                // The file's own root: every record is ours as it is (no copy of each path).
                st.records = stored.records;
                st.mounts = stored.mounts;
            } else {
                for r in stored.records.iter() {
                    match r.rel.below(&prefix) {
                        Some(rel) => st.records.push(&Record { rel, ..r }),
                        None => st.others.push(r),
                    }
                }
                for m in stored.mounts {
                    match m.below(&prefix) {
                        Some(rel) => st.mounts.push(rel),
                        None => st.other_mounts.push(m),
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
            moved,
            ..RootState::default()
        };
        st.absorb_below(dir, root)?;
        st.settle();
        Ok(st)
    }

    /// Sorts the records by path, keeping the first of each path (a root's own records come
    /// before those absorbed from roots below it), and the mount points.
    fn settle(&mut self) {
        self.records.settle();
        self.mounts.sort();
        self.mounts.dedup();
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
            let stored = match read_stored(&path) {
                Loaded::Sound(d) => d,
                Loaded::Missing => continue,
                Loaded::Bad(why) => {
                    self.moved.push(move_aside(&path, why)?);
                    continue;
                }
            };
            for r in stored.records.iter() {
                let rel = below.join(&r.rel);
                self.records.push(&Record { rel, ..r });
            }
            self.mounts
                .extend(stored.mounts.iter().map(|m| below.join(m)));
            self.absorbed.push(path);
        }
        Ok(())
    }

    /// The state files found unreadable while loading, moved aside since (each told once).
    pub fn moved_aside(&mut self) -> Vec<Moved> {
        std::mem::take(&mut self.moved)
    }

    /// Directories below the scanned root that were mount points at the last sync.
    pub fn mounts(&self) -> &[WirePath] {
        &self.mounts
    }

    /// Tells what the walk found: the directories below the root on another filesystem than
    /// their parent's. They are recorded at the next save, with those recorded before whose
    /// entries the new records still hold (a mount point left out of a sync stays one).
    pub fn see_mounts(&mut self, mut seen: Vec<WirePath>) {
        seen.sort();
        seen.dedup();
        self.seen_mounts = Some(seen);
    }

    /// The mount points the last walk found below the root, as told.
    pub fn seen_mounts(&self) -> &[WirePath] {
        self.seen_mounts.as_deref().unwrap_or(&[])
    }

    /// The mount points to record with `records`: see [`RootState::see_mounts`].
    fn next_mounts(&self, records: &Records) -> Vec<WirePath> {
        let Some(seen) = &self.seen_mounts else {
            return self.mounts.clone();
        };
        let mut out = seen.clone();
        out.extend(
            self.mounts
                .iter()
                .filter(|m| seen.binary_search(m).is_err() && holds_below(records, m))
                .cloned(),
        );
        out.sort();
        out
    }

    /// True when the file must be written even where no record changed: it absorbs the files
    /// of roots below, is of an older format, or its mount points changed.
    pub fn must_write(&self) -> bool {
        self.file.is_some()
            && (!self.absorbed.is_empty()
                || self.migrate
                || self.next_mounts(&self.records) != self.mounts)
    }

    /// The record of an entry below the scanned root.
    pub fn get(&self, rel: &WirePath) -> Option<Record> {
        self.records.search(rel).ok().map(|i| self.records.get(i))
    }

    /// As [`RootState::get`], for lookups that mostly come in path order: `hint` is where the
    /// last one left off, and a lookup of the record just after it costs one comparison.
    pub fn get_near(&self, rel: &WirePath, hint: &mut usize) -> Option<Record> {
        let at = |i: usize| self.records.cmp_at(i, rel.as_bytes());
        match at(*hint) {
            Some(Ordering::Equal) => {
                *hint += 1;
                return Some(self.records.get(*hint - 1));
            }
            // Between the record before the hint and the hint's (or past the last): a path
            // the state does not hold, found without a search.
            Some(Ordering::Greater) | None
                if *hint == 0 || at(*hint - 1) == Some(Ordering::Less) =>
            {
                return None
            }
            _ => {}
        }
        match self.records.search(rel) {
            Ok(i) => {
                *hint = i + 1;
                Some(self.records.get(i))
            }
            Err(i) => {
                *hint = i;
                None
            }
        }
    }

    /// Every record below the scanned root, in path order, decoded one at a time.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.records.iter()
    }

    /// The records below the scanned root, in path order and with their index, of those for
    /// which `skip` (given the index and the path) is false: the others are never decoded.
    pub fn records_unless<'a>(
        &'a self,
        skip: impl FnMut(usize, &[u8]) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, Record)> + 'a {
        self.records.iter_unless(skip)
    }

    /// The `i`th record below the scanned root.
    pub fn record_at(&self, i: usize) -> Record {
        self.records.get(i)
    }

    /// The index of `rel`'s record among the records below the scanned root.
    pub fn index_of(&self, rel: &WirePath) -> Option<usize> {
        self.records.search(rel).ok()
    }

    /// The path of the `i`th record below the scanned root, as its bytes.
    pub fn rel_at(&self, i: usize) -> std::borrow::Cow<'_, [u8]> {
        self.records.rel_at(i)
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
    /// file atomically. Returns whether the records were replaced: not where they are as they
    /// were (nothing is written), nor where writing fails (they stay as read).
    pub fn save(&mut self, records: Vec<Record>) -> io::Result<bool> {
        debug_assert!(records.windows(2).all(|w| w[0].rel < w[1].rel));
        self.save_records(Records::from_vec(&records))
    }

    /// As [`RootState::save`], with the records already encoded (settled: in path order, one
    /// a path): a root of a million entries is never held decoded.
    pub fn save_records(&mut self, new: Records) -> io::Result<bool> {
        debug_assert!((1..new.len()).all(|i| new.rel_at(i - 1) < new.rel_at(i)));
        let Some(file) = self.file.clone() else {
            return Ok(false);
        };
        let mounts = self.next_mounts(&new);
        if mounts == self.mounts && !self.must_write() && self.records.same_records(&new) {
            return Ok(false); // an in-sync re-check writes nothing
        }
        let root = WirePath::from_path(&self.file_root);
        if self.prefix.is_empty() && self.others.is_empty() && self.other_mounts.is_empty() {
            // The root has a file of its own: its records are the file's, as they are.
            write_state(&file, &root, &new, &mounts)?;
        } else {
            let mut all: Vec<Record> = self.others.clone();
            all.extend(new.iter().map(|r| Record {
                rel: self.prefix.join(&r.rel),
                ..r
            }));
            all.sort_by(|a, b| a.rel.cmp(&b.rel));
            let mut all_mounts = self.other_mounts.clone();
            all_mounts.extend(mounts.iter().map(|m| self.prefix.join(m)));
            all_mounts.sort();
            write_state(&file, &root, &Records::from_vec(&all), &all_mounts)?;
        }
        // Only once written: a state that could not be saved stays as it was read.
        self.records = new;
        self.mounts = mounts;
        self.migrate = false;
        for f in self.absorbed.drain(..) {
            let _ = fs::remove_file(f);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vv;
    use serde::Serialize;

    fn vv(pairs: &[(u64, u64)]) -> Vv {
        Vv(pairs.to_vec())
    }

    #[test]
    fn first_runs_at_once_agree_on_the_peer_key() {
        // Serves started together on a fresh peer each make a key: every one of them must
        // go on with the same one (it names the scratch directories partial data is in).
        for _ in 0..20 {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path().join("synk");
            let barrier = std::sync::Barrier::new(8);
            let keys: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            peer_key(&dir).unwrap()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "{keys:x?}");
            assert_eq!(peer_key(&dir).unwrap(), keys[0]);
        }
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
        let mut changed: Vec<Record> = sub.records().collect();
        changed[1].vv = vv(&[(1, 9)]);
        sub.save(changed).unwrap();

        let whole = RootState::load(Some(dir.path()), root).unwrap();
        let x = whole.get(&WirePath(b"sub/x".to_vec())).unwrap();
        assert_eq!(x.vv, vv(&[(1, 9)]));
        assert!(whole.get(&WirePath(b"a".to_vec())).is_some());
        assert_eq!(fs::read_dir(dir.path().join("roots")).unwrap().count(), 1);
    }

    #[test]
    fn the_index_names_each_files_root() {
        let dir = tempfile::tempdir().unwrap();
        assert!(index(dir.path()).is_empty());
        for root in ["/srv/b", "/home/me/a"] {
            let mut st = RootState::load(Some(dir.path()), Path::new(root)).unwrap();
            st.save(vec![rec("", 1)]).unwrap();
        }
        fs::write(dir.path().join("roots/0123.state"), b"not a state file").unwrap();
        let got: Vec<(String, Option<String>)> = index(dir.path())
            .into_iter()
            .map(|(f, r)| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (name, r.map(|r| r.to_string()))
            })
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], ("0123.state".to_string(), None));
        assert_eq!(got[1].1.as_deref(), Some("/home/me/a"));
        assert_eq!(got[2].1.as_deref(), Some("/srv/b"));
        let a = file_for(dir.path(), Path::new("/home/me/a"));
        assert_eq!(got[1].0, a.file_name().unwrap().to_string_lossy());
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
        let recs = top.records().collect();
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
        other[8] = FORMAT as u8 + 1;
        fs::write(&file, &other).unwrap();
        assert_eq!(read_root(&file), None);
        fs::write(&file, b"\xff\xff").unwrap();
        assert_eq!(read_root(&file), None);
        // A format 1 file names its root too.
        fs::write(&file, old_file(&long, &[rec("a", 1)])).unwrap();
        assert_eq!(read_root(&file), Some(WirePath::from(long.as_str())));
    }

    /// A record as formats 1 and 2 wrote it (records without [`crate::model::Extra`]).
    #[derive(Serialize)]
    struct Rec2 {
        rel: WirePath,
        meta: Option<(crate::model::Kind, u64, u32, i64, Option<Digest>)>,
        vv: crate::model::Vv,
    }

    fn rec2(records: &[Record]) -> Vec<Rec2> {
        records
            .iter()
            .map(|r| Rec2 {
                rel: r.rel.clone(),
                meta: r
                    .meta
                    .as_ref()
                    .map(|m| (m.kind.clone(), m.size, m.mode, m.mtime, m.digest)),
                vv: r.vv.clone(),
            })
            .collect()
    }

    /// A format 1 state file, as the synk before the header wrote it.
    fn old_file(root: &str, records: &[Record]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Old {
            format: u32,
            root: WirePath,
            records: Vec<Rec2>,
        }
        postcard::to_stdvec(&Old {
            format: OLD_FORMAT,
            root: WirePath::from(root),
            records: rec2(records),
        })
        .unwrap()
    }

    /// A format 2 state file, as the synk before [`crate::model::Extra`] wrote it.
    fn format2_file(root: &str, records: &[Record]) -> Vec<u8> {
        let body =
            postcard::to_stdvec(&(WirePath::from(root), rec2(records), Vec::<WirePath>::new()))
                .unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_2.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn mounted_dir(rel: &str, n: u64) -> Record {
        Record {
            meta: Some(crate::model::Meta {
                kind: crate::model::Kind::Dir,
                size: 0,
                mode: 0o755,
                mtime: 0,
                digest: None,
                extra: Default::default(),
            }),
            ..rec(rel, n)
        }
    }

    /// The files in the state directory's `roots`, by name.
    fn roots_dir(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("roots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A state file of three records and a mount point in `dir`: its path, its records and
    /// mount points, and its bytes.
    fn small_state(dir: &Path) -> (PathBuf, Vec<Record>, Vec<WirePath>, Vec<u8>) {
        let file = dir.join("f.state");
        let recs = vec![rec("", 1), mounted_dir("m", 2), rec("m/x", 3)];
        let mounts = vec![WirePath::from("m")];
        let all = Records::from_vec(&recs);
        write_state(&file, &WirePath::from("/r"), &all, &mounts).unwrap();
        let good = fs::read(&file).unwrap();
        (file, recs, mounts, good)
    }

    /// `good`'s header over a body that is no state file's, its length and checksum made right.
    fn forged(good: &[u8]) -> Vec<u8> {
        let body = b"\xff\xff\xff\xff";
        let mut forged = good[..HEADER].to_vec();
        forged[12..20].copy_from_slice(&(body.len() as u64).to_le_bytes());
        forged[20..HEADER].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(body).to_le_bytes());
        forged.extend_from_slice(body);
        forged
    }

    #[test]
    fn the_header_vouches_for_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let (_, recs, mounts, good) = small_state(dir.path());
        assert_eq!(
            decode(&good).unwrap(),
            Decoded {
                root: WirePath::from("/r"),
                records: recs.clone(),
                mounts: mounts.clone(),
                format: FORMAT,
            }
        );
        // Every single flipped bit is caught, in the header and in the body.
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        // Cut short anywhere, or grown.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n}");
        }
        let mut grown = good.clone();
        grown.push(0);
        assert!(decode(&grown).unwrap_err().contains("header says"));
        // A sound header over a body that is not one.
        let forged = forged(&good);
        assert!(decode(&forged).unwrap_err().contains("undecodable"));
        // Format 1 reads as before; other formats are refused.
        let old = old_file("/r", &recs);
        assert_eq!(decode(&old).unwrap().format, OLD_FORMAT);
        assert_eq!(decode(&old).unwrap().records, recs);
        // So does format 2, written before entries kept more than mode and mtime.
        let f2 = format2_file("/r", &recs);
        assert_eq!(decode(&f2).unwrap().format, FORMAT_2);
        assert_eq!(decode(&f2).unwrap().records, recs);
        let mut newer = old.clone();
        newer[0] = 3;
        assert!(decode(&newer).unwrap_err().contains("format 3"));
    }

    #[test]
    fn a_damaged_state_file_is_moved_aside_and_the_root_starts_afresh() {
        for damage in ["flip", "cut", "garbage", "format"] {
            let dir = tempfile::tempdir().unwrap();
            let root = Path::new("/data/notes");
            let mut st = RootState::load(Some(dir.path()), root).unwrap();
            st.save(vec![rec("", 1), rec("a", 2), rec("b", 3)]).unwrap();
            let file = file_for(dir.path(), root);
            let mut bytes = fs::read(&file).unwrap();
            match damage {
                "flip" => *bytes.last_mut().unwrap() ^= 0x10,
                "cut" => bytes.truncate(bytes.len() - 5),
                "garbage" => bytes = b"\0\0\0".to_vec(),
                _ => bytes[8] = 7,
            }
            fs::write(&file, &bytes).unwrap();

            let mut st = RootState::load(Some(dir.path()), root).unwrap();
            assert!(st.is_empty(), "{damage}: no history");
            let moved = st.moved_aside();
            assert_eq!(moved.len(), 1, "{damage}");
            assert_eq!(moved[0].file, file);
            let name = moved[0]
                .to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let stem = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(&format!("{stem}.corrupt-")), "{name}");
            assert_eq!(name.len(), stem.len() + ".corrupt-YYYYMMDD-HHMMSS".len());
            assert_eq!(fs::read(&moved[0].to).unwrap(), bytes, "kept as it was");
            assert!(st.moved_aside().is_empty(), "told once");
            // The next save makes a sound file; the next load is quiet, and the file moved
            // aside is never taken for a state file.
            st.save(vec![rec("", 5)]).unwrap();
            let mut again = RootState::load(Some(dir.path()), root).unwrap();
            assert!(again.moved_aside().is_empty(), "{damage}");
            assert_eq!(again.get(&WirePath::default()).unwrap().vv, vv(&[(1, 5)]));
            let mut parent = RootState::load(Some(dir.path()), Path::new("/data")).unwrap();
            assert!(parent.moved_aside().is_empty());
            assert_eq!(roots_dir(dir.path()).len(), 2);
        }
    }

    #[test]
    fn damaged_files_below_and_above_are_moved_aside_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut sub = RootState::load(Some(dir.path()), Path::new("/d/a/sub")).unwrap();
        sub.save(vec![rec("", 1), rec("x", 1)]).unwrap();
        let below = file_for(dir.path(), Path::new("/d/a/sub"));
        let mut bytes = fs::read(&below).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&below, bytes).unwrap();
        // A parent absorbing it: its head names the root, its body fails the check.
        let mut top = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        let moved = top.moved_aside();
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].file, below);
        assert!(top.is_empty() && !top.absorbs());
        top.save(vec![rec("", 1), rec("a/sub/x", 2)]).unwrap();
        // A root below a damaged parent's file.
        let above = file_for(dir.path(), Path::new("/d"));
        fs::write(&above, b"SYNKSTAT").unwrap();
        let mut inner = RootState::load(Some(dir.path()), Path::new("/d/a/sub")).unwrap();
        assert_eq!(inner.moved_aside()[0].file, above);
        assert!(inner.is_empty());
    }

    #[test]
    fn a_format_1_file_is_read_and_written_anew_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/data/notes");
        let file = file_for(dir.path(), root);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let recs = vec![rec("", 1), rec("a", 2)];
        fs::write(&file, old_file("/data/notes", &recs)).unwrap();
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        assert!(st.moved_aside().is_empty());
        assert_eq!(st.records().collect::<Vec<_>>(), recs);
        assert!(st.must_write(), "migrated even where nothing changed");
        st.save(recs.clone()).unwrap();
        let bytes = fs::read(&file).unwrap();
        assert!(bytes.starts_with(&MAGIC));
        assert_eq!(decode(&bytes).unwrap().records, recs);
        let st = RootState::load(Some(dir.path()), root).unwrap();
        assert!(!st.must_write());
    }

    #[test]
    fn a_mount_point_stays_recorded_while_its_entries_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/r");
        let held = vec![rec("", 1), mounted_dir("m", 1), mounted_dir("m/x", 1)];
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        st.see_mounts(vec![WirePath::from("m")]);
        assert!(st.must_write());
        st.save(held.clone()).unwrap();
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        assert_eq!(st.mounts(), [WirePath::from("m")]);
        // Unmounted, its entries' records kept (the sync left it out): still a mount point.
        st.see_mounts(Vec::new());
        assert!(!st.must_write());
        st.save(held.clone()).unwrap();
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        assert_eq!(st.mounts(), [WirePath::from("m")]);
        // Its entries deleted on purpose (tombstones): a plain directory from then on.
        st.see_mounts(Vec::new());
        st.save(vec![rec("", 1), mounted_dir("m", 1), rec("m/x", 2)])
            .unwrap();
        let st = RootState::load(Some(dir.path()), root).unwrap();
        assert!(st.mounts().is_empty());
        // A sub-root sees the mount points below it, relative to itself, and keeps the rest.
        let mut st = RootState::load(Some(dir.path()), root).unwrap();
        st.see_mounts(vec![WirePath::from("m"), WirePath::from("n/o")]);
        st.save(st.records().collect()).unwrap();
        let mut sub = RootState::load(Some(dir.path()), &root.join("n")).unwrap();
        assert_eq!(sub.mounts(), [WirePath::from("o")]);
        sub.see_mounts(Vec::new());
        sub.save(vec![rec("", 3)]).unwrap();
        let st = RootState::load(Some(dir.path()), root).unwrap();
        assert_eq!(st.mounts(), [WirePath::from("m")]);
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
            assert_eq!(got.as_ref().map(|r| &r.rel), found.then_some(&rel), "{rel}");
            assert_eq!(got, st.get(&rel), "{rel}");
            assert_eq!(hint, hint_after, "{rel}");
        }
    }

    /// A state of `n` records below `/d`, saved in `dir`, and the records.
    fn saved(dir: &Path, n: usize) -> Vec<Record> {
        let mut st = RootState::load(Some(dir), Path::new("/d")).unwrap();
        let mut recs: Vec<Record> = (0..n).map(|i| rec(&format!("d{i:05}/f"), 1)).collect();
        recs.insert(0, rec("", 1));
        st.save(recs.clone()).unwrap();
        recs
    }

    #[test]
    fn a_sound_file_leaves_its_records_there_and_every_lookup_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        // More records than one chunk of the read holds (256 KiB).
        let recs = saved(dir.path(), 20_000);
        let st = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        assert!(st.records.in_file_now());
        assert!(st.records.same_as(&recs));
        // In path order, each found where the last left off, with misses between.
        let mut hint = 0;
        for r in &recs {
            let mut before = r.rel.clone();
            before.0.push(b'-');
            assert_eq!(st.get_near(&r.rel, &mut hint).as_ref(), Some(r));
            assert_eq!(st.get_near(&before, &mut hint), None);
        }
        // Out of order, and by search.
        for i in [999, 3, 500, 0, 64, 63, 65, 1000] {
            let r = &recs[i];
            assert_eq!(st.get_near(&r.rel, &mut hint).as_ref(), Some(r), "{i}");
            assert_eq!(st.get(&r.rel).as_ref(), Some(r), "{i}");
            assert_eq!(st.index_of(&r.rel), Some(i));
            assert_eq!(&*st.rel_at(i), r.rel.as_bytes());
        }
        assert_eq!(st.get(&WirePath::from("d0500")), None);
        // A root below takes its records into memory, and finds them the same.
        let sub = RootState::load(Some(dir.path()), Path::new("/d/d00007")).unwrap();
        assert!(!sub.records.in_file_now());
        assert_eq!(sub.records().collect::<Vec<_>>(), [rec("f", 1)]);
    }

    #[test]
    fn a_save_that_fails_leaves_the_records_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let recs = saved(dir.path(), 100);
        let mut st = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        // The state directory's files can no longer be written.
        let roots = dir.path().join("roots");
        fs::rename(&roots, dir.path().join("moved")).unwrap();
        fs::write(&roots, "not a directory").unwrap();
        assert!(st.save(vec![rec("", 2)]).is_err());
        assert!(st.records.same_as(&recs), "as read");
        // Records as they are: nothing to write, nothing replaced.
        fs::remove_file(&roots).unwrap();
        fs::rename(dir.path().join("moved"), &roots).unwrap();
        assert!(!st.save(recs.clone()).unwrap());
        assert!(st.save(vec![rec("", 2)]).unwrap());
        assert_eq!(st.records().collect::<Vec<_>>(), [rec("", 2)]);
    }

    #[test]
    fn a_file_whose_records_are_out_of_order_is_read_into_memory_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_for(dir.path(), Path::new("/d"));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let recs = [rec("b", 1), rec("a", 2), rec("b", 3)];
        write_state(&file, &WirePath::from("/d"), &Records::from_vec(&recs), &[]).unwrap();
        let st = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        assert!(!st.records.in_file_now());
        assert_eq!(st.records().collect::<Vec<_>>(), [rec("a", 2), rec("b", 1)]);
    }

    #[test]
    fn a_damaged_file_read_in_chunks_is_refused_as_one_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (file, recs, mounts, good) = small_state(dir.path());
        let chunked = |bytes: &[u8]| {
            fs::write(&file, bytes).unwrap();
            match read_stored(&file) {
                Loaded::Sound(h) => Ok((h.records.iter().collect::<Vec<_>>(), h.mounts)),
                Loaded::Bad(why) => Err(why),
                Loaded::Missing => Err("missing".into()),
            }
        };
        assert_eq!(chunked(&good), Ok((recs.clone(), mounts.clone())));
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(
                    chunked(&bad).map(|_| ()),
                    decode(&bad).map(|_| ()),
                    "byte {i} bit {bit}"
                );
            }
        }
        for n in 0..good.len() {
            assert!(chunked(&good[..n]).is_err(), "cut at {n}");
        }
        let mut grown = good.clone();
        grown.push(0);
        assert!(chunked(&grown).unwrap_err().contains("header says"));
        let forged = forged(&good);
        assert!(chunked(&forged).unwrap_err().contains("undecodable"));
    }

    #[test]
    #[should_panic(expected = "changed in place while in use")]
    fn records_changed_in_place_while_in_use_are_never_read_as_sound() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let recs = saved(dir.path(), 300);
        let st = RootState::load(Some(dir.path()), Path::new("/d")).unwrap();
        assert_eq!(st.get(&recs[1].rel).as_ref(), Some(&recs[1]));
        let file = fs::OpenOptions::new()
            .write(true)
            .open(file_for(dir.path(), Path::new("/d")))
            .unwrap();
        // A path's digit in the last block, rewritten where it lies.
        let len = file.metadata().unwrap().len();
        let at = (0..len)
            .rev()
            .find(|&i| {
                let mut b = [0u8];
                fs::File::open(file_for(dir.path(), Path::new("/d")))
                    .unwrap()
                    .read_exact_at(&mut b, i)
                    .unwrap();
                b[0] == b'9'
            })
            .unwrap();
        file.write_all_at(b"8", at).unwrap();
        st.get(&recs[299].rel);
    }

    #[test]
    fn the_peer_key_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let k = peer_key(dir.path()).unwrap();
        assert_eq!(peer_key(dir.path()).unwrap(), k);
        assert_ne!(k, 0);
    }
}
