//! The serve protocol: what client and `synk --serve` say to each other over the SSH channel.
//!
//! Every message is one frame: a 4-byte big-endian length, then a `postcard` body of at most
//! [`MAX_FRAME`] bytes. The client speaks first with [`Request::Hello`]; the server answers with
//! [`Response::Hello`]. Anything else first, a wrong magic, or an oversized frame is garbage and
//! ends the conversation with an error, never a panic or a wait for bytes that will not come.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::model::{Brief, Digest, Kept, Meta, Owner, Record, Retention, Vv};
pub use crate::model::{MetaOpts, Xattr};
use crate::paths::{RootSpec, WirePath};

/// Bumped on every incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 15;
/// Opens every handshake so a stray banner or a different program is recognised at once.
pub const MAGIC: [u8; 4] = *b"SYNK";
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 8 << 20;
/// Size of the file chunks the streaming copier sends.
pub const CHUNK: usize = 256 << 10;
/// A chunk of zeros: what a hole's bytes hash as.
pub static ZEROS: [u8; CHUNK] = [0; CHUNK];
/// Bytes of rsync's output a serve sends back at most, of each stream.
pub const RSYNC_OUTPUT: usize = 64 << 10;
/// Entries per scan frame: big enough to amortise framing, small enough to show progress.
pub const ENTRY_BATCH: usize = 512;

/// One path below a root (`rel` empty: the root itself) as a peer holds it now, with its
/// version: a scanned entry, or one the peer's state remembers that is gone now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the root.
    pub rel: WirePath,
    /// Its metadata (`None`: deleted), or why it could not be read.
    pub state: Result<Option<Meta>, String>,
    /// Its version; `None` when the peer's state has no record of the entry.
    pub vv: Option<Vv>,
    /// It is new, changed or deleted since the last sync (a remembered deletion is not).
    pub changed: bool,
}

/// Every entry below a root in one line, sent where each is unchanged since the last sync:
/// what their [`Brief`]s would say, summed. Peers whose summaries agree hold the same briefs,
/// so an in-sync tree costs one frame per peer; where they differ, the client asks for the
/// briefs themselves ([`Request::Briefs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The wrapping sum of every brief's hash ([`Summary::add`]): the same in any order.
    pub sum: u128,
    /// How many briefs.
    pub count: u64,
    /// How many of them are entries held now (not remembered deletions).
    pub held: u64,
    /// The largest size among them, for `--max-size`.
    pub largest: u64,
}

impl Summary {
    /// Adds one brief.
    pub fn add(&mut self, b: &Brief) {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&(b.rel.as_bytes().len() as u64).to_le_bytes());
        h.update(b.rel.as_bytes());
        h.update(&b.fp);
        h.update(&b.size.to_le_bytes());
        h.update(&[u8::from(b.gone)]);
        self.sum = self.sum.wrapping_add(h.digest128());
        self.count += 1;
        self.held += u64::from(!b.gone);
        self.largest = self.largest.max(b.size);
    }

    /// The summary of `briefs`.
    pub fn of<'a>(briefs: impl IntoIterator<Item = &'a Brief>) -> Self {
        let mut s = Summary::default();
        briefs.into_iter().for_each(|b| s.add(b));
        s
    }
}

/// Client to server.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// First frame: who is calling.
    Hello {
        /// Always [`MAGIC`].
        magic: [u8; 4],
        /// The client's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The client's crate version, for messages.
        version: String,
    },
    /// Scan these roots; later requests name a root by its index in this list.
    Scan {
        /// The paths the user asked for.
        roots: Vec<RootSpec>,
        /// How long kept versions stay on this peer.
        retention: Retention,
        /// Gitignore-style patterns left out (with each root's `.synkignore`).
        excludes: Vec<String>,
        /// Report entries unchanged since the last sync as [`Brief`]s, and a root where every
        /// entry below is unchanged as one [`Summary`].
        brief: bool,
        /// Remove what killed runs left in the trees (synk's own temp files and scratch
        /// directories that no live run holds); never on a dry run.
        tidy: bool,
        /// Hold the roots' locks first, taking any not held yet without waiting: answered
        /// [`Response::Locked`] before the scan, which does not follow where one is busy.
        lock: bool,
        /// Which metadata beyond mode and mtime is read (and later set), hard links included.
        meta: MetaOpts,
    },
    /// Wait up to `wait_ms` for a change under the roots of the last scan
    /// ([`Response::Watched`]); `reset` first forgets the changes seen so far.
    Watch {
        /// How long to wait at most.
        wait_ms: u32,
        /// Forget earlier changes first.
        reset: bool,
    },
    /// Root `root` is a single file: its other entries (conflict copies) are siblings in its
    /// directory.
    Siblings {
        /// Index into the last scan's roots.
        root: u32,
    },
    /// Keep a conflict's losing version under another name in the same tree (and in the
    /// version store).
    Rename {
        /// Index into the last scan's roots.
        root: u32,
        /// The entry.
        rel: WirePath,
        /// Its new name.
        to: WirePath,
    },
    /// Take an entry out of the tree into the version store (files and symlinks) or remove an
    /// empty directory.
    Remove {
        /// Index into the last scan's roots.
        root: u32,
        /// The entry.
        rel: WirePath,
        /// A deletion (else the entry is being replaced by another kind).
        deleted: bool,
    },
    /// Keep these entries' current versions before copies replace them.
    Keep {
        /// Index into the last scan's roots.
        root: u32,
        /// The entries.
        rels: Vec<WirePath>,
    },
    /// Make `rel` a copy of `from`, a file this peer already holds (a rename, or the same
    /// content elsewhere): no bytes cross the network.
    Clone {
        /// Index into the last scan's roots.
        root: u32,
        /// The local file with the wanted content.
        from: WirePath,
        /// The entry to create or replace.
        rel: WirePath,
        /// Permission bits to set.
        mode: u32,
        /// Modification time to set (ns).
        mtime: i64,
        /// What the bytes must hash to.
        digest: Digest,
    },
    /// Make `rel` another name of `to`, a file this peer holds with the wanted version (as
    /// the scan found it, or as this session wrote it): a hard link, no bytes sent. Where the
    /// filesystem holds no hard links, a local copy.
    Link {
        /// Index into the last scan's roots.
        root: u32,
        /// The file to link to: the first name of its group in the root's order.
        to: WirePath,
        /// The entry to create or replace.
        rel: WirePath,
        /// The wanted version: `to` must hold it (its content, size, mode and mtime).
        meta: Meta,
    },
    /// New state records for a root, sent before [`Request::Commit`] (no answer).
    Records {
        /// Index into the last scan's roots.
        root: u32,
        /// Records replacing what the peer reported.
        set: Vec<Record>,
    },
    /// Write the root's new state: what was reported, overridden by [`Request::Records`].
    Commit {
        /// Index into the last scan's roots.
        root: u32,
    },
    /// List the kept versions of a path and everything below it ([`Response::Versions`]
    /// frames, then [`Response::Done`]).
    Versions {
        /// The path.
        path: RootSpec,
    },
    /// Put a kept version back at entry `rel` of root `root` (the current one is kept in
    /// turn).
    Restore {
        /// Index into the last scan's roots.
        root: u32,
        /// The entry.
        rel: WirePath,
        /// The version's id in the store.
        id: String,
    },
    /// Before rsync writes into a root: create its missing parents (and the root itself when
    /// it is a directory) and the root's scratch directory in its base, empty, where rsync
    /// writes ([`Response::Scratch`] names it); [`Request::Place`] then moves each planned
    /// file into place.
    Prepare {
        /// Index into the last scan's roots.
        root: u32,
        /// The root is a directory (else rsync's base is the root's parent).
        dir: bool,
    },
    /// After rsync: remove the scratch directory and what is left in it, and make what was
    /// placed durable (rsync writes without an fsync).
    Cleanup {
        /// Index into the last scan's roots.
        root: u32,
        /// As in [`Request::Prepare`].
        dir: bool,
    },
    /// Send a file's bytes as [`Response::Data`] frames, then [`Response::ReadDone`].
    ReadFile {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
    },
    /// Receive a file: [`Request::Data`] and [`Request::Same`] frames follow, then
    /// [`Request::End`] or [`Request::Abort`].
    WriteFile {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// Permission bits to set.
        mode: u32,
        /// Modification time to set (ns).
        mtime: i64,
        /// The seed of this transfer's [`Check`], drawn by the client.
        seed: u64,
        /// Keep the version it replaces first, as [`Request::Keep`] would (the file is not
        /// placed where that fails): the keep travels with the copy, not a round trip ahead.
        keep: bool,
        /// One of many: made durable with the others, by a flush of the filesystem before
        /// the root's next commit, not on its own.
        batched: bool,
    },
    /// A chunk of the file being written.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The file is complete: verify and move it into place.
    End {
        /// The [`Check`] of every byte the master read, which hashed to the file's SHA-512:
        /// the target keeps the file only if what it wrote has the same.
        check: [u8; 16],
    },
    /// The file will not be completed: discard it.
    Abort,
    /// Create a directory (or fix the mode and time of an existing one).
    MakeDir {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// Permission bits.
        mode: u32,
        /// Modification time (ns).
        mtime: i64,
    },
    /// Create or replace a symlink.
    Symlink {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// What the link points to.
        target: WirePath,
        /// Modification time (ns).
        mtime: i64,
    },
    /// The full entries of these paths of root `root`, as the last scan found them, where it
    /// sent them as [`Brief`]s or summed them up: [`Response::Entries`] frames, then
    /// [`Response::Done`].
    Detail {
        /// Index into the last scan's roots.
        root: u32,
        /// Paths below the root.
        rels: Vec<WirePath>,
    },
    /// The [`block_fingerprint`]s of the file this peer holds at `rel`, one per [`CHUNK`]
    /// ([`Response::Blocks`]; none where it holds no regular file): the streaming copier
    /// sends only the blocks that differ.
    Blocks {
        /// Index into the last scan's roots.
        root: u32,
        /// Path below the root.
        rel: WirePath,
    },
    /// The briefs the last scan of root `root` summed up ([`Response::Summary`]):
    /// [`Response::Briefs`] frames, then the full entries of those of `also` among them
    /// ([`Response::Entries`] frames, as [`Request::Detail`] would send them), then
    /// [`Response::Done`]. `also` are the paths the client expects to need in full (another
    /// peer changed them), so settling a root with a few changes costs one round trip.
    Briefs {
        /// Index into the last scan's roots.
        root: u32,
        /// Paths below the root to send in full too, where they are among the briefs.
        also: Vec<WirePath>,
    },
    /// Inside a file transfer, instead of [`Request::Data`]: the next `len` bytes are those of
    /// the old file at the same offset.
    Same {
        /// How many bytes (at most [`CHUNK`]).
        len: u32,
    },
    /// Run rsync on this peer with these arguments and `names` on its standard input (a remote
    /// master's copy to a target it reaches itself). [`Response::RsyncDone`] answers, and the
    /// serve ends. A serve kills the rsync (its whole process group) the moment the client
    /// hangs up: a channel without a pty delivers no signal to a remote process.
    RunRsync {
        /// rsync's arguments, program name excluded.
        args: Vec<WirePath>,
        /// What rsync reads on its standard input (`--files-from=- --from0`).
        #[serde(with = "serde_bytes")]
        names: Vec<u8>,
        /// The source directory, where it is this peer's: the names whose files there have
        /// holes go in a second run with `--sparse` added
        /// (see `transfer::rsync::split_by_holes`).
        holes: Option<WirePath>,
    },
    /// Move files rsync wrote into the root's scratch directory into place, each only if it
    /// is complete (the planned size and mtime) and the entry it replaces is still the
    /// version the decision saw ([`Response::Placed`], one outcome per item).
    Place {
        /// Index into the last scan's roots.
        root: u32,
        /// The files, each at its path below the root (the same below the scratch directory).
        items: Vec<Placing>,
    },
    /// Take the locks of these roots, waiting up to `wait_ms` for another run to release them
    /// ([`Response::Waiting`] when it starts to wait), then [`Response::Done`], or
    /// [`Response::Failed`] holding none of them.
    Lock {
        /// The paths the user asked for.
        roots: Vec<RootSpec>,
        /// How long to wait at most.
        wait_ms: u32,
    },
    /// Release every lock this session holds (no answer).
    Unlock,
    /// Inside a file transfer, instead of [`Request::Data`]: the next `len` bytes (at most
    /// [`CHUNK`]) are zeros the master holds as a hole; the target seeks past them, so the
    /// hole stays one.
    Hole {
        /// How many bytes.
        len: u32,
    },
    /// Give a file or symlink this peer holds new metadata (a symlink: its mtime only), if it
    /// is still the version the scan saw.
    SetMeta {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// Permission bits.
        mode: u32,
        /// Modification time (ns).
        mtime: i64,
    },
    /// The partial data of version `digest` of the file at `rel` a copy cut short left in
    /// this peer's scratch directory ([`Response::Partial`]), or, where none is, the same
    /// answer as [`Request::Blocks`].
    Partial {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// The version being copied.
        digest: Digest,
    },
    /// [`Request::ReadFile`] that sends nothing before byte `from` (still read, for the
    /// digest of the whole file).
    ReadFrom {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// The first byte to send.
        from: u64,
    },
    /// [`Request::WriteFile`] into the partial file of version `digest` in the scratch
    /// directory (made by [`Request::Partial`]), keeping its first `from` bytes: kept if the
    /// copy is cut short, and checked whole against `digest` before it is placed.
    WritePartial {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// Permission bits to set.
        mode: u32,
        /// Modification time to set (ns).
        mtime: i64,
        /// The seed of this transfer's [`Check`], drawn by the client.
        seed: u64,
        /// The version being copied.
        digest: Digest,
        /// Bytes of the partial file kept; the data that follows starts there.
        from: u64,
    },
    /// The extended attributes and ACLs (of the kinds the scan read) of these entries of the
    /// last scan: [`Response::Attrs`] frames, then [`Response::Done`].
    Attrs {
        /// Index into the last scan's roots.
        root: u32,
        /// Entries below that root.
        rels: Vec<WirePath>,
    },
    /// Give a file or directory this peer holds the extended attributes, ACLs or owner of
    /// another peer's version, if it is still the version the scan saw or this session left.
    SetExtra {
        /// Index into the last scan's roots.
        root: u32,
        /// Entry below that root.
        rel: WirePath,
        /// Its `user.*` attributes, and with `sys` its `trusted.*` and `security.*` ones
        /// (`None`: leave them).
        xattrs: Option<Vec<Xattr>>,
        /// Whether `xattrs` holds the `trusted.*` and `security.*` ones (read as root).
        sys: bool,
        /// Its ACL attributes (`None`: leave them).
        acl: Option<Vec<Xattr>>,
        /// Its owner (`None`: leave it; a serve that is not root never sets one).
        owner: Option<Owner>,
    },
}

impl Request {
    /// The root a request names and the entry paths in it that the serve looks up in what it
    /// holds of that root (its scan, state and this session's changes), to spell them as
    /// it does where its filesystem takes a name's NFC and NFD spellings for one. Not
    /// [`Request::Detail`] and [`Request::Attrs`]: their answers name the entries as asked.
    pub fn entry_paths_mut(&mut self) -> Option<(u32, Vec<&mut WirePath>)> {
        use Request as R;
        let (root, paths) = match self {
            R::Rename { root, rel, to } => (*root, vec![rel, to]),
            R::Clone {
                root, from, rel, ..
            }
            | R::Link {
                root,
                to: from,
                rel,
                ..
            } => (*root, vec![from, rel]),
            R::Keep { root, rels } => (*root, rels.iter_mut().collect()),
            R::Records { root, set } => {
                let mut v = Vec::new();
                for r in set.iter_mut() {
                    v.push(&mut r.rel);
                    if let Some(l) = r.meta.as_mut().and_then(|m| m.extra.link.as_mut()) {
                        v.push(l);
                    }
                }
                (*root, v)
            }
            R::Place { root, items } => (*root, items.iter_mut().map(|i| &mut i.rel).collect()),
            R::Remove { root, rel, .. }
            | R::Restore { root, rel, .. }
            | R::ReadFile { root, rel }
            | R::WriteFile { root, rel, .. }
            | R::MakeDir { root, rel, .. }
            | R::Symlink { root, rel, .. }
            | R::Blocks { root, rel }
            | R::SetMeta { root, rel, .. }
            | R::Partial { root, rel, .. }
            | R::ReadFrom { root, rel, .. }
            | R::WritePartial { root, rel, .. }
            | R::SetExtra { root, rel, .. } => (*root, vec![rel]),
            R::Hello { .. }
            | R::Scan { .. }
            | R::Watch { .. }
            | R::Siblings { .. }
            | R::Commit { .. }
            | R::Versions { .. }
            | R::Prepare { .. }
            | R::Cleanup { .. }
            | R::Data(_)
            | R::End { .. }
            | R::Abort
            | R::Detail { .. }
            | R::Attrs { .. }
            | R::Briefs { .. }
            | R::Same { .. }
            | R::RunRsync { .. }
            | R::Lock { .. }
            | R::Unlock
            | R::Hole { .. } => return None,
        };
        Some((root, paths))
    }
}

/// One file for [`Request::Place`]: where it goes and the version the plan expects there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placing {
    /// Path below the root.
    pub rel: WirePath,
    /// The planned size.
    pub size: u64,
    /// The planned modification time (ns).
    pub mtime: i64,
    /// The planned permission bits.
    pub mode: u32,
    /// The master's digest of the file: a copy resumed from partial data is checked whole
    /// against it before it is placed.
    pub digest: Digest,
}

/// What became of one [`Placing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// In place.
    Done,
    /// Not placed: the entry there changed since the scan (edited meanwhile) and stays.
    Changed(String),
    /// Not placed, for this reason (the copy did not arrive complete, say).
    Failed(String),
}

/// Longest [`Response::Warning`] a serve sends and a client takes in.
pub const MAX_WARNING: usize = 1024;

/// A directory below a root that was a mount point at the last sync (or is one now) and is
/// empty or missing now, though entries were recorded below it: an unmounted disk, not a
/// deletion, until the user confirms it ([`Response::Emptied`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emptied {
    /// The directory, below the root.
    pub rel: WirePath,
    /// How many entries below it are gone since the last sync.
    pub held: u64,
}

/// What a root's filesystem holds, as its serve probed it once a session ([`Response::Holds`]):
/// what it cannot hold is never taken as a change there, and names it treats as one are never
/// given it as two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    /// Permission bits set are read back as set.
    pub modes: bool,
    /// The step of its mtimes, in ns (1: to the nanosecond; at most [`MAX_MTIME_STEP`]).
    pub mtime_step: i64,
    /// `user.*` extended attributes set are kept.
    pub xattrs: bool,
    /// POSIX ACLs set are kept.
    pub acls: bool,
    /// Names that differ only in case are one name there (exFAT, FAT, CIFS, macOS).
    pub folds_case: bool,
    /// A name's NFC and NFD spellings are one name there.
    pub normalizes: bool,
    /// Symlinks can be made there.
    pub symlinks: bool,
    /// Hard links can be made there.
    pub hard_links: bool,
    /// The serve runs as root: it reads and sets owners, `trusted.*` and `security.*` there
    /// (told by the serve, not probed).
    pub as_root: bool,
}

/// The coarsest mtime step a peer may report: FAT's 2 s.
pub const MAX_MTIME_STEP: i64 = 2_000_000_000;

impl Default for Holds {
    fn default() -> Self {
        Holds {
            modes: true,
            mtime_step: 1,
            xattrs: true,
            acls: true,
            folds_case: false,
            normalizes: false,
            symlinks: true,
            hard_links: true,
            as_root: false,
        }
    }
}

/// Server to client.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello {
        /// Always [`MAGIC`].
        magic: [u8; 4],
        /// The server's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The server's crate version.
        version: String,
        /// Whether rsync is on the server's PATH.
        rsync: bool,
        /// The server's home directory.
        home: WirePath,
    },
    /// Answers [`Request::Watch`].
    Watched {
        /// Something changed under the roots.
        changed: bool,
        /// This peer can watch at all (else the client looks at intervals).
        supported: bool,
    },
    /// Kept versions, answering [`Request::Versions`] in batches; [`Response::Done`] ends them.
    Versions(Vec<Kept>),
    /// Start of root `index`'s entries: its absolute path there, or why it cannot be scanned.
    Root {
        /// Index into the request's roots.
        index: u32,
        /// Resolved absolute path, or the error.
        result: Result<WirePath, String>,
    },
    /// Entries of the current root.
    Entries(Vec<Entry>),
    /// All roots scanned.
    ScanDone,
    /// A chunk of the file being read.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The file was read to its end; this is the digest of the bytes sent.
    ReadDone(Digest),
    /// The request succeeded.
    Done,
    /// The request failed; the message names the path.
    Failed(String),
    /// Entries of the current root in brief (unchanged since the last sync, or with no history
    /// yet); also the answer to [`Request::Briefs`].
    Briefs(Vec<Brief>),
    /// Answers [`Request::Blocks`].
    Blocks(Vec<[u8; 16]>),
    /// After a root's entries: every entry below it is unchanged since the last sync, and this
    /// is their briefs in sum; the briefs themselves are held for [`Request::Briefs`].
    Summary(Summary),
    /// The request was not carried out because the entry changed since the scan (the user
    /// saved it meanwhile): that version stays, and the next run reconciles it.
    Changed(String),
    /// Answers [`Request::Prepare`]: the name of the root's scratch directory in its base.
    Scratch(WirePath),
    /// Answers [`Request::Place`]: one outcome per item, in order.
    Placed(Vec<Placement>),
    /// Something the user should know about a root, said once (setuid bits left out, say).
    Note(String),
    /// Answers [`Request::RunRsync`]: rsync's exit code (`None`: killed by a signal), its
    /// standard output and the end of its standard error.
    RsyncDone {
        /// The exit code.
        code: Option<i32>,
        /// Its standard output (`--stats`), at most [`RSYNC_OUTPUT`] bytes.
        #[serde(with = "serde_bytes")]
        stdout: Vec<u8>,
        /// The last [`RSYNC_OUTPUT`] bytes of its standard error.
        #[serde(with = "serde_bytes")]
        stderr: Vec<u8>,
    },
    /// Something the user should know (at most [`MAX_WARNING`] bytes), at any point of the
    /// conversation: it answers nothing, and the next frame is the answer awaited.
    Warning(String),
    /// After a root's entries: its emptied mount points ([`Emptied`]).
    Emptied(Vec<Emptied>),
    /// After a root's entries: what its filesystem holds ([`Holds`]), at most once a root.
    Holds(Holds),
    /// First answer to a [`Request::Scan`] with `lock`: this peer's stable key (clients lock
    /// peers in its order), and the lock found busy, if one was: then nothing is held and no
    /// scan follows.
    Locked {
        /// The peer's stable key.
        key: u64,
        /// The path whose lock another run holds.
        busy: Option<WirePath>,
    },
    /// Answering [`Request::Lock`]: another run holds the lock of this path; waiting for it.
    Waiting(WirePath),
    /// Instead of [`Response::Data`]: the next `len` bytes (at most [`CHUNK`], a whole chunk
    /// but the last) are a hole in the master's file, zeros that take no disk; sent as
    /// [`Request::Hole`], never as bytes.
    Hole {
        /// How many bytes.
        len: u32,
    },
    /// Answers [`Request::Partial`] where this peer holds partial data of that version: its
    /// length, which a copy resumed there need not send again.
    Partial {
        /// Bytes held, from the start of the file.
        len: u64,
    },
    /// Answering [`Request::Attrs`]: entries and their attributes, sorted by name.
    Attrs(Vec<(WirePath, Vec<Xattr>)>),
}

/// Files from this size on are sent as deltas by the streaming copier; smaller ones whole
/// (asking the target what it holds would cost more than sending them).
pub const DELTA_MIN: u64 = 2 * CHUNK as u64;
/// Blocks a [`Response::Blocks`] lists at most (a 64 GiB file, a 4 MiB frame): bigger files
/// go whole.
pub const MAX_BLOCKS: usize = 1 << 18;

/// The fingerprint of one block of a file, for [`Request::Blocks`]: its length and xxh3-128.
/// A match is only a hint; the whole file's [`Check`] is compared before it replaces anything.
pub fn block_fingerprint(block: &[u8]) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(block.len() as u64).to_le_bytes());
    h.update(block);
    h.digest128().to_le_bytes()
}

/// A running check of a file's bytes as the streaming copier moves them: xxh3-128. The master
/// hashes what it reads with SHA-512 (the digest every peer records) and the copy goes on only
/// if that matches; this check then vouches that each target wrote those very bytes, for a
/// fraction of SHA-512's CPU per byte on every target. Its seed is drawn afresh by the client
/// for each transfer, so no content can be made ahead of time to collide with another's
/// check (which would let `Same` blocks from a crafted old file pass as the new one).
#[derive(Clone)]
pub struct Check(xxhash_rust::xxh3::Xxh3);

impl Check {
    /// A check with this transfer's seed.
    pub fn new(seed: u64) -> Check {
        Check(xxhash_rust::xxh3::Xxh3::with_seed(seed))
    }

    /// A seed no one can know before the client draws it: a random key per process (as std's
    /// hash maps use against crafted collisions) and a new one for every call.
    pub fn draw_seed() -> u64 {
        use std::hash::BuildHasher as _;
        std::hash::RandomState::new().hash_one(0u8)
    }

    /// Takes in the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The check of every byte so far.
    pub fn value(&self) -> [u8; 16] {
        self.0.digest128().to_le_bytes()
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The other side closed the stream.
    #[error("connection closed")]
    Closed,
    /// A length prefix over [`MAX_FRAME`]: the stream is not synk's.
    #[error("garbled protocol stream (frame of {0} bytes; does a login script print to stdout?)")]
    TooLarge(usize),
    /// A body that does not decode.
    #[error("garbled protocol frame: {0}")]
    Decode(#[from] postcard::Error),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serialises `msg` into a length-prefixed frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    // The body goes in behind room for its length: no second pass to put the length first.
    let mut buf = postcard::to_extend(msg, vec![0u8; 4])?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

fn check_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

fn map_eof(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Closed
    } else {
        FrameError::Io(e)
    }
}

/// Reads one frame from a blocking reader (the server side).
pub fn read_frame<T: for<'de> Deserialize<'de>, R: Read>(r: &mut R) -> Result<T, FrameError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).map_err(map_eof)?;
    let mut body = vec![0u8; check_len(prefix)?];
    r.read_exact(&mut body).map_err(map_eof)?;
    Ok(postcard::from_bytes(&body)?)
}

/// Writes one frame to a blocking writer (the server side); the caller flushes.
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads one frame from an async reader (the client side).
pub async fn read_frame_async<T, R>(r: &mut R) -> Result<T, FrameError>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await.map_err(map_eof)?;
    let mut body = vec![0u8; check_len(prefix)?];
    r.read_exact(&mut body).await.map_err(map_eof)?;
    Ok(postcard::from_bytes(&body)?)
}

/// Writes one frame to an async writer (the client side); the caller flushes.
pub async fn write_frame_async<T, W>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    w.write_all(&encode(msg)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn roundtrip_req(msg: &Request) -> Request {
        let bytes = encode(msg).unwrap();
        read_frame(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn a_summary_is_the_same_in_any_order_and_tells_any_brief_apart() {
        let b = |rel: &str, fp: u8, size: u64, gone: bool| Brief {
            rel: WirePath::from(rel),
            fp: [fp; 16],
            size,
            gone,
        };
        let set = [
            b("a", 1, 5, false),
            b("b/c", 2, 0, true),
            b("d", 3, 9, false),
        ];
        let s = Summary::of(&set);
        assert_eq!((s.count, s.held, s.largest), (3, 2, 9));
        let reversed: Vec<Brief> = set.iter().rev().cloned().collect();
        assert_eq!(Summary::of(&reversed), s);
        // Each case changes one thing of the set.
        let changed = |i: usize, change: fn(&mut Brief)| {
            let mut v = set.to_vec();
            change(&mut v[i]);
            v
        };
        let others = [
            set[..2].to_vec(),
            changed(2, |b| b.rel = WirePath::from("e")),
            changed(2, |b| b.fp = [4; 16]),
            changed(2, |b| b.size = 8),
            changed(1, |b| b.gone = false),
            // Fingerprints swapped between paths.
            vec![b("a", 3, 5, false), set[1].clone(), b("d", 1, 9, false)],
            // A path split differently.
            vec![b("ab", 1, 5, false), b("/c", 2, 0, true), set[2].clone()],
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(Summary::of(o), s, "case {i}");
        }
    }

    #[test]
    fn the_check_is_of_the_bytes_not_of_how_they_were_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let of_seeded = |seed: u64, parts: &[&[u8]]| {
            let mut c = Check::new(seed);
            parts.iter().for_each(|p| c.update(p));
            c.value()
        };
        let of = |parts: &[&[u8]]| of_seeded(1, parts);
        let whole = of(&[&data]);
        assert_eq!(of(&[&data[..1], &data[1..500], &data[500..]]), whole);
        let mut flipped = data.clone();
        flipped[999] ^= 1;
        assert_ne!(of(&[&flipped]), whole);
        assert_ne!(of(&[&data[..999]]), whole);
        assert_ne!(of(&[]), whole);
        // Another transfer, another seed: another check of the same bytes.
        assert_ne!(of_seeded(2, &[&data]), whole);
        assert_ne!(Check::draw_seed(), Check::draw_seed());
    }

    #[test]
    fn requests_round_trip() {
        let hostile = WirePath(b"a b/'\"$(rm -rf ~);\n-x\xff".to_vec());
        let msg = Request::WriteFile {
            root: 3,
            rel: hostile.clone(),
            mode: 0o644,
            mtime: -5,
            seed: u64::MAX,
            keep: true,
            batched: true,
        };
        match roundtrip_req(&msg) {
            Request::WriteFile {
                root,
                rel,
                mode,
                mtime,
                seed,
                keep: true,
                batched: true,
            } => assert_eq!(
                (root, &rel, mode, mtime, seed),
                (3, &hostile, 0o644, -5, u64::MAX)
            ),
            other => panic!("{other:?}"),
        }
        let mut check = Check::new(7);
        check.update(b"x");
        match roundtrip_req(&Request::End {
            check: check.value(),
        }) {
            Request::End { check: c } => assert_eq!(c, check.value()),
            other => panic!("{other:?}"),
        }
        let data = vec![7u8; CHUNK];
        match roundtrip_req(&Request::Data(data.clone())) {
            Request::Data(d) => assert_eq!(d, data),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_round_trip() {
        let entry = Entry {
            rel: WirePath(b"dir/link".to_vec()),
            state: Ok(Some(Meta {
                kind: Kind::Symlink(WirePath(b"../t".to_vec())),
                size: 0,
                mode: 0o777,
                mtime: 1_700_000_000_123_456_789,
                digest: Some(Digest::of(b"../t")),
                extra: crate::model::Extra {
                    owner: Some(crate::model::Owner {
                        uid: 0,
                        gid: 7,
                        user: Some("root".into()),
                        group: None,
                    }),
                    xattrs: Some([1; 16]),
                    acl: None,
                    link: Some(WirePath(b"dir/a".to_vec())),
                    sys: Some([2; 16]),
                },
            })),
            vv: Some(Vv(vec![(7, 3), (9, 1_700_000_000_000)])),
            changed: true,
        };
        let bad = Entry {
            rel: WirePath(b"secret".to_vec()),
            state: Err("Permission denied".into()),
            vv: None,
            changed: false,
        };
        let bytes = encode(&Response::Entries(vec![entry.clone(), bad.clone()])).unwrap();
        match read_frame::<Response, _>(&mut &bytes[..]).unwrap() {
            Response::Entries(v) => assert_eq!(v, vec![entry, bad]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn async_and_blocking_framing_agree() {
        let mut buf = Vec::new();
        write_frame_async(&mut buf, &Response::ScanDone)
            .await
            .unwrap();
        write_frame(&mut buf, &Response::Done).unwrap();
        let mut r = &buf[..];
        assert!(matches!(
            read_frame_async::<Response, _>(&mut r).await.unwrap(),
            Response::ScanDone
        ));
        assert!(matches!(
            read_frame_async::<Response, _>(&mut r).await.unwrap(),
            Response::Done
        ));
        assert!(matches!(
            read_frame_async::<Response, _>(&mut r).await,
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A login banner read as a length prefix.
        let banner = b"Welcome to beta!\n";
        assert!(matches!(
            read_frame::<Request, _>(&mut &banner[..]),
            Err(FrameError::TooLarge(_))
        ));
        // A plausible length followed by nonsense.
        let mut junk = 3u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            read_frame::<Request, _>(&mut &junk[..]),
            Err(FrameError::Decode(_))
        ));
        // Truncated body.
        let mut short = 10u32.to_be_bytes().to_vec();
        short.push(1);
        assert!(matches!(
            read_frame::<Request, _>(&mut &short[..]),
            Err(FrameError::Closed)
        ));
    }
}
