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

/// Scans `root` and hands every entry to `sink` as soon as it is known (in no fixed order).
///
/// A missing root yields no entries. An error on the root itself is returned; an error below
/// it becomes an entry carrying the message, so one unreadable file does not hide the rest.
///
/// Files whose stamp `cache` knows are not read again; every digest computed is offered to it.
/// Entries `excludes` matches are skipped, directories with everything below them. Names synk
/// owns ([`crate::names::is_own`]) are skipped too; with [`WalkOpts::tidy`], those a killed
/// run left are removed (never on a dry run).
pub fn scan_root(
    root: &Path,
    cache: &DigestCache,
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
    let mut files = Files::default();
    if md.is_dir() {
        walk(root, &md, excludes, opts, sink, &mut files, &mut walked);
    } else if md.is_file() {
        walked.note(&md, md.dev());
        files.push(FileAt::of(WirePath::default(), &md));
    } else {
        walked.note(&md, md.dev());
        sink(Found {
            rel: WirePath::default(),
            state: describe(root, &md),
            stamp: Some(Stamp::of_metadata(&md)),
        });
    }
    walked.links = link_groups(&mut files);
    hash_all(root, files, cache, sink);
    Ok(walked)
}

/// How many files waiting to be hashed make one chunk of [`Files`].
const CHUNK: usize = 4096;

/// The regular files a walk found, waiting to be hashed, in walk order and in chunks: hashing
/// lets go of each chunk once it is done with it, so the memory of what waits is reused by
/// what the scan reports, instead of both being held for every file at once.
#[derive(Default)]
struct Files {
    chunks: Vec<Vec<FileAt>>,
}

impl Files {
    fn push(&mut self, f: FileAt) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(f),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(f);
                self.chunks.push(c);
            }
        }
    }

    /// The file at `(chunk, index)`.
    fn at(&mut self, (c, i): (usize, usize)) -> &mut FileAt {
        &mut self.chunks[c][i]
    }
}

/// Groups the regular files that share an inode (device and inode) within the root, and
/// gives each name but the first of its group, in the root's order, that first name as its
/// [`crate::model::Extra::link`]. A file linked only to names outside the root (or excluded,
/// or into synk's version store) is in no group: it is just a file. Only files with more than
/// one link are looked at, so a tree without hard links costs one comparison a file.
fn link_groups(files: &mut Files) -> Vec<Vec<WirePath>> {
    use std::collections::HashMap;
    let mut by_inode: HashMap<(u64, u64), Vec<(usize, usize)>> = HashMap::new();
    for (c, chunk) in files.chunks.iter().enumerate() {
        for (i, f) in chunk.iter().enumerate() {
            if f.shared {
                by_inode
                    .entry((f.stamp.dev, f.stamp.ino))
                    .or_default()
                    .push((c, i));
            }
        }
    }
    let mut groups = Vec::new();
    for (_, mut at) in by_inode {
        if at.len() < 2 {
            continue;
        }
        let names: Vec<WirePath> = {
            at.sort_unstable_by(|a, b| {
                let (a, b) = (&files.chunks[a.0][a.1].rel, &files.chunks[b.0][b.1].rel);
                a.cmp(b)
            });
            at.iter().map(|&p| files.at(p).rel.clone()).collect()
        };
        for &p in &at[1..] {
            files.at(p).link = Some(names[0].clone());
        }
        groups.push(names);
    }
    groups.sort_unstable();
    groups
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
/// (its path is rebuilt from the root; a 100k-file tree waits in a few megabytes).
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

/// Walks a directory tree depth first, emitting directories, symlinks and specials at once and
/// collecting regular files for the parallel hashing stage.
fn walk(
    root: &Path,
    root_md: &Metadata,
    excludes: &Excludes,
    opts: WalkOpts,
    sink: &mut dyn FnMut(Found),
    files: &mut Files,
    walked: &mut Walked,
) {
    let root_dev = root_md.dev();
    walked.note(root_md, root_dev);
    let mut stack = vec![(WirePath::default(), root.to_path_buf(), root_md.clone())];
    while let Some((rel, path, md)) = stack.pop() {
        let listing = fs::read_dir(&path).and_then(|rd| rd.collect::<io::Result<Vec<_>>>());
        let children = match listing {
            Ok(children) => children,
            Err(e) => {
                sink(Found {
                    rel,
                    state: Err(format!("cannot list directory: {}", io_msg(&e))),
                    stamp: None,
                });
                continue;
            }
        };
        sink(Found {
            rel: rel.clone(),
            state: describe(&path, &md),
            stamp: Some(Stamp::of_metadata(&md)),
        });
        // In name order, subdirectories visited in that order too. Directories are reported as
        // the walk meets them, files after the walk (cached ones in walk order), so within a
        // directory files come in the order the sync state keeps them and looking each one up
        // is a step forward (`RootState::get_near`); only the first after a jump searches.
        let mut children: Vec<(WirePath, fs::DirEntry)> = children
            .into_iter()
            .map(|c| {
                let mut name = WirePath(c.file_name().into_encoded_bytes());
                if opts.nfc {
                    name.make_nfc();
                }
                (name, c)
            })
            .collect();
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let subdirs = stack.len();
        for (name, child) in children {
            if names::is_own(name.as_bytes()) {
                if opts.tidy {
                    tidy_up(&path, name.as_bytes());
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
            match cmd {
                Ok(cmd) if cmd.is_dir() => {
                    if cmd.dev() != md.dev() {
                        walked.mounts.push(child_rel.clone());
                    }
                    stack.push((child_rel, child.path(), cmd))
                }
                Ok(cmd) if cmd.is_file() => files.push(FileAt::of(child_rel, &cmd)),
                Ok(cmd) => sink(Found {
                    rel: child_rel,
                    state: describe(&child.path(), &cmd),
                    stamp: Some(Stamp::of_metadata(&cmd)),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // gone since listing
                Err(e) => sink(Found {
                    rel: child_rel,
                    state: Err(io_msg(&e)),
                    stamp: None,
                }),
            }
        }
        stack[subdirs..].reverse();
    }
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

/// Hashes one regular file the cache did not know, and offers the digest to the cache.
fn file_entry(root: &Path, f: FileAt, cache: &DigestCache) -> Found {
    let stamp = f.stamp;
    let hashed = hash_file(&f.path(root));
    if let Ok((
        Meta {
            digest: Some(d),
            mtime,
            size,
            ..
        },
        _,
    )) = &hashed
    {
        // Only what the walk saw is recorded, and only if hashing saw the same file.
        if *mtime == stamp.mtime && *size == stamp.size {
            cache.keep(&f.rel, stamp, *d);
        }
    }
    match hashed {
        Ok((mut meta, stamp)) => Found {
            state: Ok({
                meta.extra.link = f.link;
                meta
            }),
            rel: f.rel,
            stamp: Some(stamp),
        },
        Err(e) => Found {
            rel: f.rel,
            state: Err(e),
            stamp: None,
        },
    }
}

/// Describes files: those the cache knows at once, the rest hashed on every core, passing
/// results to `sink` on this thread as they finish.
fn hash_all(root: &Path, files: Files, cache: &DigestCache, sink: &mut dyn FnMut(Found)) {
    let mut todo = Vec::new();
    // Each chunk is let go of once looked up.
    for chunk in files.chunks {
        for f in chunk {
            match cache.lookup(&f.rel, &f.stamp) {
                Some(digest) => sink(f.cached(digest)),
                None => todo.push(f),
            }
        }
    }
    let files = todo;
    if files.is_empty() {
        return;
    }
    if files.len() == 1 {
        let f = files.into_iter().next().expect("one file");
        sink(file_entry(root, f, cache));
        return;
    }
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            files.into_par_iter().for_each_with(tx, |tx, f| {
                // The receiver outlives this scope; a send error cannot happen.
                let _ = tx.send(file_entry(root, f, cache));
            });
        });
        for entry in rx {
            sink(entry);
        }
    });
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
                &DigestCache::disabled(),
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
                &DigestCache::disabled(),
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
            &DigestCache::disabled(),
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
