//! Walking a root and describing every entry: kind, size, mode, mtime and SHA-512.
//!
//! The walk itself is sequential (it is cheap); hashing is spread over every core with rayon,
//! one file per task, each file streamed through a fixed buffer so memory stays flat whatever
//! the file size.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rayon::prelude::*;
use sha2::Digest as _;

use crate::beneath::Stamp;
use crate::cache::DigestCache;
use crate::exclude::Excludes;
use crate::model::{Digest, Kind, Meta};
use crate::names;
use crate::paths::WirePath;

/// Read buffer for hashing: large enough that syscalls vanish from the profile.
const HASH_BUF: usize = 256 << 10;

/// The permission bits synk reads, compares and writes: never setuid or setgid, which a peer
/// must not be able to plant on another (and a peer without them is not "different").
pub const MODE_BITS: u32 = 0o1777;

/// The setuid and setgid bits, left out of every mode synk reads or writes.
pub const SETID_BITS: u32 = 0o6000;

/// Modification time of `md` in nanoseconds since the epoch.
pub fn mtime_ns(md: &Metadata) -> i64 {
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

/// An I/O error's message without the "(os error N)" that says nothing to a user.
pub(crate) fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Describes an entry from its `lstat` metadata, hashing files and link targets.
pub fn describe(path: &Path, md: &Metadata) -> Result<Meta, String> {
    let ft = md.file_type();
    let base = |kind, size, digest| Meta {
        kind,
        size,
        mode: md.mode() & MODE_BITS,
        mtime: mtime_ns(md),
        digest,
        extra: Default::default(),
    };
    if ft.is_file() {
        hash_file(path).map(|(m, _)| m)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| io_msg(&e))?;
        let target = WirePath::from_path(&target);
        let digest = Digest::of(target.as_bytes());
        Ok(base(Kind::Symlink(target), 0, Some(digest)))
    } else if ft.is_dir() {
        Ok(base(Kind::Dir, 0, None))
    } else {
        Ok(base(Kind::Special, 0, None))
    }
}

/// Opens `path` for reading without following a symlink swapped in since it was listed, and
/// without blocking on a fifo swapped in.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Hashes a regular file without following a symlink swapped in since the walk, and refuses
/// a result if the file changed while it was being read. Also the stamp of what was hashed.
pub fn hash_file(path: &Path) -> Result<(Meta, Stamp), String> {
    let mut f = open_nofollow(path).map_err(|e| io_msg(&e))?;
    let before = f.metadata().map_err(|e| io_msg(&e))?;
    if !before.file_type().is_file() {
        return Err("changed type while being scanned".into());
    }
    let digest = if before.len() >= PIPELINE_MIN {
        hash_pipelined(&mut f)
    } else {
        hash_reader(&mut f)
    }
    .map_err(|e| io_msg(&e))?;
    let after = f.metadata().map_err(|e| io_msg(&e))?;
    if after.len() != before.len() || mtime_ns(&after) != mtime_ns(&before) {
        return Err("changed while being read; run synk again when it is quiet".into());
    }
    let meta = Meta {
        kind: Kind::File,
        size: after.len(),
        mode: after.mode() & MODE_BITS,
        mtime: mtime_ns(&after),
        digest: Some(digest),
        extra: Default::default(),
    };
    Ok((meta, Stamp::of_metadata(&after)))
}

/// SHA-512 of everything `r` yields, read in fixed-size chunks.
pub fn hash_reader(r: &mut impl Read) -> io::Result<Digest> {
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0u8; HASH_BUF];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Digest::from_hasher(hasher))
}

/// Files at least this large are read on a second thread while the first hashes.
const PIPELINE_MIN: u64 = 16 << 20;

/// SHA-512 of `r`, with reading overlapped with hashing: a reader thread fills buffers that
/// this thread hashes, so the copy out of the page cache costs no hashing time.
pub fn hash_pipelined(r: &mut (impl Read + Send)) -> io::Result<Digest> {
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        empty_tx.send(vec![0u8; HASH_BUF]).expect("receiver alive");
    }
    let mut hasher = sha2::Sha512::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                let res = loop {
                    match r.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let done = !matches!(res, Ok(n) if n > 0);
                if full_tx.send(res.map(|n| (buf, n))).is_err() || done {
                    return;
                }
            }
        });
        loop {
            match full_rx.recv() {
                Ok(Ok((_, 0))) | Err(_) => return Ok(()),
                Ok(Ok((buf, n))) => {
                    hasher.update(&buf[..n]);
                    // The reader may already have stopped; then the buffer is simply dropped.
                    let _ = empty_tx.send(buf);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    })?;
    Ok(Digest::from_hasher(hasher))
}

/// Scans `root` and hands every entry to `sink` as soon as it is known.
///
/// A missing root yields no entries. An error on the root itself is returned; an error below
/// it becomes an entry carrying the message, so one unreadable file does not hide the rest.
///
/// Entries come to `sink` in path order (as [`WirePath`]s sort, byte for byte): the walk
/// lists each directory in that order, a subdirectory's entries where its name and a slash
/// sort, so the state, the caches and the reports can all be walked beside it as streams.
///
/// Files whose stamp `cache` knows are not read again; every digest is noted in it for the
/// next scan. Entries `excludes` matches are skipped, directories with everything below them.
/// Names synk owns ([`crate::names::is_own`]) are skipped too; with [`WalkOpts::tidy`], those
/// a killed run left are removed (never on a dry run).
pub fn scan_root(
    root: &Path,
    cache: &mut DigestCache,
    excludes: &Excludes,
    opts: WalkOpts,
    sink: &mut dyn FnMut(Found),
) -> io::Result<Walked> {
    let mut walked = Walked::default();
    let md = match fs::symlink_metadata(root) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(walked),
        Err(e) => return Err(e),
    };
    let mut out = Ordered {
        root,
        cache,
        sink,
        pending: Vec::new(),
        to_hash: 0,
        links: Links::default(),
    };
    if md.is_dir() {
        walk(root, &md, excludes, opts, &mut out, &mut walked);
    } else if md.is_file() {
        walked.note(&md, md.dev());
        // A file root's copies are written beside it: what a killed one left is there.
        if let Some(parent) = root.parent().filter(|_| opts.tidy) {
            tidy_beside(parent);
        }
        out.file(FileAt::of(WirePath::default(), &md));
    } else {
        walked.note(&md, md.dev());
        out.found(
            Found {
                rel: WirePath::default(),
                state: describe(root, &md),
                stamp: Some(Stamp::of_metadata(&md)),
            },
            None,
        );
    }
    out.flush();
    walked.links = out.links.groups();
    Ok(walked)
}

/// How many files waiting to be hashed are hashed together, on every core.
const CHUNK: usize = 4096;

/// A file's digest to note in the cache for the next scan, with the stamp the walk saw.
type Note = Option<(Stamp, Digest)>;

/// An entry on its way to the sink.
enum Pending {
    /// Described (boxed: a described entry is several times the size of a file to hash).
    Ready(Box<Found>, Note),
    /// A file still to hash.
    Hash(FileAt),
}

/// The walk's entries on their way to the sink, kept in path order: files the cache does not
/// know wait to be hashed in chunks, on every core, and what comes after them waits with
/// them, so memory holds a chunk, not the tree.
struct Ordered<'a> {
    root: &'a Path,
    cache: &'a mut DigestCache,
    sink: &'a mut dyn FnMut(Found),
    /// Entries from the first file still to hash on, in path order.
    pending: Vec<Pending>,
    /// How many of them are files to hash.
    to_hash: usize,
    links: Links,
}

impl Ordered<'_> {
    /// An entry described, next in path order.
    fn found(&mut self, f: Found, note: Note) {
        if self.pending.is_empty() {
            self.emit(f, note);
        } else {
            self.pending.push(Pending::Ready(Box::new(f), note));
            if self.pending.len() >= 4 * CHUNK {
                self.flush();
            }
        }
    }

    /// A regular file, next in path order: described from the cache where it knows the
    /// stamp, else hashed with the next chunk.
    fn file(&mut self, mut f: FileAt) {
        if f.shared {
            self.links.name(&mut f);
        }
        match self.cache.lookup(&f.rel, &f.stamp) {
            Some(digest) => {
                let stamp = f.stamp;
                self.found(f.cached(digest), Some((stamp, digest)));
            }
            None => {
                self.pending.push(Pending::Hash(f));
                self.to_hash += 1;
                if self.to_hash >= CHUNK {
                    self.flush();
                }
            }
        }
    }

    /// Hashes the files waiting, then passes everything waiting on, in order.
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let root = self.root;
        let resolve = |p: Pending| match p {
            Pending::Ready(f, note) => (*f, note),
            Pending::Hash(f) => file_entry(root, f),
        };
        let done: Vec<(Found, Note)> = if self.to_hash > 1 {
            pending.into_par_iter().map(resolve).collect()
        } else {
            pending.into_iter().map(resolve).collect()
        };
        self.to_hash = 0;
        for (f, note) in done {
            self.emit(f, note);
        }
    }

    fn emit(&mut self, f: Found, note: Note) {
        if let Some((stamp, digest)) = note {
            self.cache.note(&f.rel, stamp, digest);
        }
        (self.sink)(f);
    }
}

/// The regular files that share an inode (device and inode) within the root, as the walk
/// meets them in path order: each name but the first of its group gets that first name as its
/// [`crate::model::Extra::link`]. A file linked only to names outside the root (or excluded,
/// or into synk's version store) is in no group: it is just a file. Only files with more than
/// one link are looked at, so a tree without hard links costs one comparison a file.
#[derive(Default)]
struct Links {
    names: std::collections::HashMap<(u64, u64), Vec<WirePath>>,
}

impl Links {
    /// Adds `f` (a file with more than one link) to its inode's group.
    fn name(&mut self, f: &mut FileAt) {
        let names = self.names.entry((f.stamp.dev, f.stamp.ino)).or_default();
        if let Some(first) = names.first() {
            f.link = Some(first.clone());
        }
        names.push(f.rel.clone());
    }

    /// The groups of more than one name, each in path order.
    fn groups(self) -> Vec<Vec<WirePath>> {
        let mut groups: Vec<Vec<WirePath>> =
            self.names.into_values().filter(|n| n.len() > 1).collect();
        groups.sort_unstable();
        groups
    }
}

/// How a walk goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOpts {
    /// Remove what a killed run of synk left (never on a dry run).
    pub tidy: bool,
    /// Report every name in NFC: the filesystem takes a name's NFC and NFD spellings for
    /// one, so either finds the entry, and peers that keep names byte for byte can be matched
    /// to the one spelling.
    pub nfc: bool,
}

/// What a walk saw of the tree beyond its entries: where a watch over the root's directories
/// would miss changes, and where other filesystems are mounted inside it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walked {
    /// A directory or file on another filesystem than the root (a mount inside the tree).
    pub other_device: bool,
    /// Entries whose setuid or setgid bits were left out of their mode.
    pub setid: u64,
    /// Directories below the root on another filesystem than their parent's: mount points.
    pub mounts: Vec<WirePath>,
    /// Names of files that share an inode within the root, each group in the root's order
    /// (see [`crate::model::Extra::link`]).
    pub links: Vec<Vec<WirePath>>,
}

impl Walked {
    fn note(&mut self, md: &Metadata, root_dev: u64) {
        self.other_device |= md.dev() != root_dev;
        self.setid += u64::from(md.mode() & SETID_BITS != 0);
    }
}

/// A regular file the walk found, waiting to be hashed: what describing it needs and no more
/// (its path is rebuilt from the root).
struct FileAt {
    rel: WirePath,
    stamp: Stamp,
    mode: u32,
    /// More than one name links to its inode (anywhere on its filesystem).
    shared: bool,
    /// The first name of the root that shares its inode, where that is another name.
    link: Option<WirePath>,
}

impl FileAt {
    fn of(rel: WirePath, md: &Metadata) -> Self {
        FileAt {
            rel,
            stamp: Stamp::of_metadata(md),
            mode: md.mode() & MODE_BITS,
            shared: md.nlink() > 1,
            link: None,
        }
    }

    fn cached(self, digest: Digest) -> Found {
        Found {
            stamp: Some(self.stamp),
            rel: self.rel,
            state: Ok(Meta {
                kind: Kind::File,
                size: self.stamp.size,
                mode: self.mode,
                mtime: self.stamp.mtime,
                digest: Some(digest),
                extra: crate::model::Extra {
                    link: self.link,
                    ..Default::default()
                },
            }),
        }
    }

    fn path(&self, root: &Path) -> PathBuf {
        if self.rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(self.rel.as_path())
        }
    }
}

/// One name of a directory being walked, where its path sorts.
enum Step {
    /// An entry described at once (symlinks, specials, what could not be read).
    Found(Found),
    /// A regular file.
    File(FileAt),
    /// A directory's own entry: it is listed here, so that an unreadable one is reported as
    /// such.
    Dir(WirePath, PathBuf, Metadata),
    /// Everything below a directory: its path and a slash.
    Below(WirePath),
}

/// Walks a directory tree depth first in path order ([`scan_root`]), passing entries to
/// `out` as it meets them.
fn walk(
    root: &Path,
    root_md: &Metadata,
    excludes: &Excludes,
    opts: WalkOpts,
    out: &mut Ordered,
    walked: &mut Walked,
) {
    use std::collections::HashMap;
    let root_dev = root_md.dev();
    walked.note(root_md, root_dev);
    // Directories whose own entry went out, their steps waiting for their turn (the names that
    // sort between `d` and `d/`, like `d.txt`, come first). Steps, not the listing: an entry of
    // a listing holds its directory open.
    let mut listed: HashMap<WirePath, Vec<Step>> = HashMap::new();
    let mut stack: Vec<std::vec::IntoIter<Step>> = vec![vec![
        Step::Dir(WirePath::default(), root.to_path_buf(), root_md.clone()),
        Step::Below(WirePath::default()),
    ]
    .into_iter()];
    while let Some(steps) = stack.last_mut() {
        let Some(step) = steps.next() else {
            stack.pop();
            continue;
        };
        match step {
            Step::Found(f) => out.found(f, None),
            Step::File(f) => out.file(f),
            Step::Dir(rel, path, md) => {
                match fs::read_dir(&path).and_then(|rd| rd.collect::<io::Result<Vec<_>>>()) {
                    Ok(children) => {
                        let entry = Found {
                            rel: rel.clone(),
                            state: describe(&path, &md),
                            stamp: Some(Stamp::of_metadata(&md)),
                        };
                        out.found(entry, None);
                        let dir = (&rel, path.as_path(), &md, root_dev);
                        let steps = steps_of(dir, children, excludes, opts, walked);
                        listed.insert(rel, steps);
                    }
                    Err(e) => out.found(
                        Found {
                            rel,
                            state: Err(format!("cannot list directory: {}", io_msg(&e))),
                            stamp: None,
                        },
                        None,
                    ),
                }
            }
            Step::Below(rel) => {
                if let Some(steps) = listed.remove(&rel) {
                    stack.push(steps.into_iter());
                }
            }
        }
    }
}

/// The steps of one directory's `children`, in the order their paths sort: a subdirectory
/// twice, its own entry at its name and what is below it at its name and a slash.
/// `dir` is the directory's path below the root, its path, its metadata and the root's
/// device.
fn steps_of(
    (rel, path, md, root_dev): (&WirePath, &Path, &Metadata, u64),
    children: Vec<fs::DirEntry>,
    excludes: &Excludes,
    opts: WalkOpts,
    walked: &mut Walked,
) -> Vec<Step> {
    let mut keyed: Vec<(Vec<u8>, Step)> = Vec::with_capacity(children.len());
    for child in children {
        let mut name = WirePath(child.file_name().into_encoded_bytes());
        if opts.nfc {
            name.make_nfc();
        }
        if names::is_own(name.as_bytes()) {
            if opts.tidy {
                tidy_up(path, name.as_bytes());
            }
            continue;
        }
        let child_rel = rel.join(&name);
        let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
        if excludes.excludes(&child_rel, is_dir) {
            continue;
        }
        // An lstat relative to the open directory: no walk of the whole path per entry.
        let cmd = child.metadata();
        if let Ok(cmd) = &cmd {
            walked.note(cmd, root_dev);
        }
        let key = name.0;
        match cmd {
            Ok(cmd) if cmd.is_dir() => {
                if cmd.dev() != md.dev() {
                    walked.mounts.push(child_rel.clone());
                }
                let mut below = key.clone();
                below.push(b'/');
                keyed.push((below, Step::Below(child_rel.clone())));
                keyed.push((key, Step::Dir(child_rel, child.path(), cmd)));
            }
            Ok(cmd) if cmd.is_file() => keyed.push((key, Step::File(FileAt::of(child_rel, &cmd)))),
            Ok(cmd) => {
                let state = describe(&child.path(), &cmd);
                let found = Found {
                    rel: child_rel,
                    state,
                    stamp: Some(Stamp::of_metadata(&cmd)),
                };
                keyed.push((key, Step::Found(found)));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // gone since listing
            Err(e) => keyed.push((
                key,
                Step::Found(Found {
                    rel: child_rel,
                    state: Err(io_msg(&e)),
                    stamp: None,
                }),
            )),
        }
    }
    // Sorted by index: a step is a few hundred bytes, a sort moves each O(log n) times.
    // Stable: two names one in NFC keep the listing's order.
    let mut order: Vec<usize> = (0..keyed.len()).collect();
    order.sort_by(|&a, &b| keyed[a].0.cmp(&keyed[b].0));
    let mut steps: Vec<Option<Step>> = keyed.into_iter().map(|(_, step)| Some(step)).collect();
    order
        .into_iter()
        .map(|i| steps[i].take().expect("each index once"))
        .collect()
}

/// One entry the walk found: its path below the root and its metadata, or why it can't be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Path relative to the root.
    pub rel: WirePath,
    /// Its metadata, or the error.
    pub state: Result<Meta, String>,
    /// What identified it on this host as it was described (none where it could not be read).
    pub stamp: Option<Stamp>,
}

/// Removes what a killed run left at `name` in the directory `dir`, if no live run owns it
/// ([`crate::beneath::remove_if_stale`]).
/// [`tidy_up`] of every name of synk's own shape in `dir`, the directory of a file root.
fn tidy_beside(dir: &Path) {
    let Ok(list) = fs::read_dir(dir) else { return };
    for name in list.flatten().map(|e| e.file_name()) {
        if names::is_own(name.as_encoded_bytes()) {
            tidy_up(dir, name.as_encoded_bytes());
        }
    }
}

fn tidy_up(dir: &Path, name: &[u8]) {
    use rustix::fs::{Mode, OFlags};
    if let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        crate::beneath::remove_if_stale(std::os::fd::AsFd::as_fd(&fd), name);
    }
}

/// Hashes one regular file the cache did not know, with the digest to note for the next
/// scan: only what the walk saw is recorded, and only if hashing saw the same file.
fn file_entry(root: &Path, f: FileAt) -> (Found, Note) {
    let stamp = f.stamp;
    match hash_file(&f.path(root)) {
        Ok((mut meta, hashed)) => {
            let note = meta
                .digest
                .filter(|_| meta.mtime == stamp.mtime && meta.size == stamp.size)
                .map(|d| (stamp, d));
            meta.extra.link = f.link;
            let found = Found {
                state: Ok(meta),
                rel: f.rel,
                stamp: Some(hashed),
            };
            (found, note)
        }
        Err(e) => {
            let found = Found {
                rel: f.rel,
                state: Err(e),
                stamp: None,
            };
            (found, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_walk_for_a_normalizing_filesystem_spells_every_name_in_nfc() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("cafe\u{301}")).unwrap();
        fs::write(r.join("cafe\u{301}/ne\u{301}"), b"x").unwrap();
        for nfc in [false, true] {
            let mut seen = Vec::new();
            let opts = WalkOpts { tidy: false, nfc };
            scan_root(
                r,
                &mut DigestCache::disabled(),
                &Excludes::none(),
                opts,
                &mut |e| {
                    seen.push(String::from_utf8(e.rel.0).unwrap());
                },
            )
            .unwrap();
            seen.sort();
            let want = if nfc {
                ["", "caf\u{e9}", "caf\u{e9}/n\u{e9}"]
            } else {
                ["", "cafe\u{301}", "cafe\u{301}/ne\u{301}"]
            };
            assert_eq!(seen, want, "nfc: {nfc}");
        }
    }

    #[test]
    fn a_walk_tells_of_a_mount_inside_the_tree() {
        let walk = |root: &Path| {
            scan_root(
                root,
                &mut DigestCache::disabled(),
                &Excludes::none(),
                WalkOpts {
                    tidy: true,
                    nfc: false,
                },
                &mut |_| {},
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("r/sub")).unwrap();
        fs::write(dir.path().join("r/sub/f"), "x").unwrap();
        let plain = walk(&dir.path().join("r"));
        assert!(!plain.other_device);
        assert!(plain.mounts.is_empty());
        // /dev holds mounts of its own (pts, shm, mqueue) nearly everywhere.
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if table
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with("/dev/")))
        {
            let dev = walk(Path::new("/dev"));
            assert!(dev.other_device);
            // Each directory mounted right below it is named, relative to the root.
            let below: Vec<&str> = table
                .lines()
                .filter_map(|l| l.split(' ').nth(4)?.strip_prefix("/dev/"))
                .filter(|m| !m.contains('/') && Path::new("/dev").join(m).is_dir())
                .collect();
            for m in below {
                assert!(dev.mounts.contains(&WirePath::from(m)), "{m}: {dev:?}");
            }
        }
    }

    fn scan(root: &Path) -> BTreeMap<Vec<u8>, Result<Meta, String>> {
        let mut out = BTreeMap::new();
        scan_root(
            root,
            &mut DigestCache::disabled(),
            &Excludes::none(),
            WalkOpts {
                tidy: true,
                nfc: false,
            },
            &mut |e| {
                out.insert(e.rel.0, e.state);
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn entries_come_in_path_order_and_a_link_names_the_first_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("t");
        // Names that sort between a directory and its entries ("a" < "a-b" < "a.c" < "a/x"),
        // and more files to hash than one chunk, between others the walk meets.
        for d in ["a/x", "a-b", "m", "z"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in ["a.c", "a0", "a/x/y", "a-b/z", "b", "z/last"] {
            fs::write(r.join(f), f).unwrap();
        }
        for i in 0..CHUNK + 10 {
            fs::write(r.join(format!("m/{i}")), i.to_string()).unwrap();
        }
        fs::hard_link(r.join("b"), r.join("a/x/l")).unwrap();
        fs::hard_link(r.join("b"), r.join("z/l")).unwrap();
        std::os::unix::fs::symlink("b", r.join("a/s")).unwrap();
        let mut seen = Vec::new();
        let mut links = BTreeMap::new();
        let walked = scan_root(
            &r,
            &mut DigestCache::disabled(),
            &Excludes::none(),
            WalkOpts::default(),
            &mut |e| {
                let m = e.state.unwrap();
                if let Some(l) = m.extra.link {
                    links.insert(e.rel.to_string(), l.to_string());
                }
                seen.push(e.rel);
            },
        )
        .unwrap();
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen.len(), CHUNK + 10 + 15);
        assert!(seen == sorted, "in path order, each once");
        let l = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(links, BTreeMap::from([l("b", "a/x/l"), l("z/l", "a/x/l")]));
        let names: Vec<WirePath> = ["a/x/l", "b", "z/l"].map(WirePath::from).to_vec();
        assert_eq!(walked.links, [names]);
    }

    #[test]
    fn scans_a_tree_with_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), b"hello").unwrap();
        fs::write(r.join("a/.synk-tmp.0123456789abcdef"), b"half a copy").unwrap();
        fs::write(r.join("a/.synk-notes.tmp"), b"a user's file").unwrap();
        fs::set_permissions(r.join("a/b/f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("b/f", r.join("a/link")).unwrap();
        let s = scan(r);
        let keys: Vec<_> = s
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            keys,
            ["", "a", "a/.synk-notes.tmp", "a/b", "a/b/f", "a/link"]
        );
        assert!(
            !r.join("a/.synk-tmp.0123456789abcdef").exists(),
            "a killed run's, removed"
        );
        // Beside a file root too, where its copies are written.
        fs::write(r.join("a/b/.synk-tmp.fedcba9876543210"), b"half").unwrap();
        fs::write(r.join("a/b/.synk-tmp.notes"), b"a user's file").unwrap();
        assert_eq!(scan(&r.join("a/b/f")).len(), 1);
        assert!(!r.join("a/b/.synk-tmp.fedcba9876543210").exists());
        assert!(r.join("a/b/.synk-tmp.notes").exists(), "the user's");
        let f = s[&b"a/b/f".to_vec()].as_ref().unwrap();
        assert_eq!(f.kind, Kind::File);
        assert_eq!(f.size, 5);
        assert_eq!(f.mode, 0o640);
        assert_eq!(f.digest, Some(Digest::of(b"hello")));
        let l = s[&b"a/link".to_vec()].as_ref().unwrap();
        assert_eq!(l.kind, Kind::Symlink(WirePath(b"b/f".to_vec())));
        assert_eq!(l.digest, Some(Digest::of(b"b/f")));
        assert_eq!(s[&b"a".to_vec()].as_ref().unwrap().kind, Kind::Dir);
    }

    #[test]
    fn a_file_root_and_a_missing_root() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        fs::write(&f, vec![1u8; 3 * HASH_BUF + 7]).unwrap();
        let s = scan(&f);
        assert_eq!(s.len(), 1);
        let m = s[&Vec::new()].as_ref().unwrap();
        assert_eq!(m.size, (3 * HASH_BUF + 7) as u64);
        assert_eq!(m.digest, Some(Digest::of(&vec![1u8; 3 * HASH_BUF + 7])));
        assert!(scan(&dir.path().join("nope")).is_empty());
    }

    #[test]
    fn pipelined_and_plain_hashing_agree() {
        let data: Vec<u8> = (0..HASH_BUF * 5 + 123).map(|i| (i * 7) as u8).collect();
        let plain = hash_reader(&mut &data[..]).unwrap();
        assert_eq!(hash_pipelined(&mut &data[..]).unwrap(), plain);
        assert_eq!(plain, Digest::of(&data));
        assert_eq!(hash_pipelined(&mut &[][..]).unwrap(), Digest::of(b""));
    }

    #[test]
    fn fifos_are_reported_as_special() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let s = scan(dir.path());
        assert_eq!(s[&b"fifo".to_vec()].as_ref().unwrap().kind, Kind::Special);
    }
}
