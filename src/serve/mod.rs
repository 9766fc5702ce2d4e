//! `synk --serve`: the peer side of the protocol, spoken on stdin/stdout.
//!
//! The server scans what it is asked to and carries out the copier's writes. It only ever
//! touches paths inside the roots of the last scan request, refuses entry paths that could
//! escape them, never follows a symlink on the way to an entry, and never writes a file in
//! place: bytes go to a temp file beside the target, which is checked against what the master
//! read, fsynced and renamed over the old one.
//!
//! This file runs the conversation; each job has a room of its own: `root.rs` (a root of the
//! session), `scanning.rs` with `emit.rs` and `reports.rs` (scans, briefs, summaries),
//! `recheck.rs` and `watch.rs` (re-checks from memory, `--watch`), `keep.rs` (what leaves a
//! tree goes into the version store), `write.rs` (what the copiers write), `commit.rs` (the
//! new state) and `restore.rs` (kept versions listed and put back).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Retention;
use crate::paths::WirePath;
use crate::proto::{
    read_frame, write_frame, FrameError, Request, Response, CHUNK, MAGIC, PROTOCOL_VERSION,
};
use crate::scan;
use crate::state;
use crate::versions::Store;

mod commit;
mod emit;
mod extra;
mod keep;
mod locks;
mod probe;
mod recheck;
mod reports;
mod restore;
mod resume;
mod root;
mod rsync;
mod scanning;
mod stage;
mod watch;
mod write;

/// Kept versions per [`Response::Versions`] frame.
const VERSIONS_BATCH: usize = 1024;

/// Serves one client on this process's stdin and stdout until the client hangs up.
pub fn run(ahead: Option<&str>) -> Result<(), FrameError> {
    rsync::stop_on_signals();
    // The first requests, given on the command line (`--serve=HEX`), come before stdin.
    let ahead = match ahead.map(hex::decode).transpose() {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(e) => return Err(FrameError::Io(io::Error::other(format!("--serve: {e}")))),
    };
    let mut server = Server::new(crate::os::home_dir());
    server.client = Some(libc::STDIN_FILENO);
    server.cache_dir = crate::os::cache_dir(server.home.as_deref());
    server.with_state(state::state_dir(server.home.as_deref()));
    let mut r =
        BufReader::with_capacity(CHUNK + 64, io::Cursor::new(ahead).chain(io::stdin().lock()));
    let mut w = BufWriter::with_capacity(CHUNK + 64, io::stdout().lock());
    let res = server.serve(&mut r, &mut w);
    // The client is gone (done, or killed mid-run): directories made in this session still
    // get their modes and times, and scratch directories go with what is left in them, but
    // for the partial data of copies cut short (kept for the next run to resume from).
    server.finish_dirs();
    server.abandon_scratch();
    // The scanned roots are plain memory, and the process ends here: freeing a big tree's
    // records one by one would only keep the client, which waits for this exit, waiting.
    std::mem::forget(std::mem::take(&mut server.roots));
    res
}

/// The state of one serve session.
pub struct Server {
    home: Option<PathBuf>,
    /// Where digests of earlier scans are kept (`None`: hash everything every time).
    pub cache_dir: Option<PathBuf>,
    /// Where sync state and kept versions live (`None`: nowhere; nothing is deleted then).
    state_dir: Option<PathBuf>,
    /// This peer's stable key (0 without a state directory).
    key: u64,
    /// The kept-version store.
    store: Option<Store>,
    /// How long kept versions stay, as the client's config says.
    retention: Retention,
    /// The store was pruned in this session.
    pruned: bool,
    /// The store was pruned as this session's first locked scan began.
    pruned_early: bool,
    /// What each root's filesystem holds, probed once a session ([`probe::probe`]).
    probed: std::cell::RefCell<std::collections::HashMap<std::path::PathBuf, probe::Holds>>,
    /// Which metadata beyond mode and mtime the last scan read, and this session sets.
    meta: crate::extra::MetaOpts,
    /// This serve runs as root: it reads and sets owners, `trusted.*` and `security.*`.
    root: bool,
    /// The roots of the last scan; later requests refer to them by index.
    roots: Vec<Option<root::RootCtx>>,
    /// The watch over the scanned roots (`--watch`, and re-checks), made on first use;
    /// `Err`: impossible.
    watch: Option<Result<watch::Watch, String>>,
    /// The last walk, while a scan may answer with it again (see [`recheck`]).
    last_walk: Option<recheck::LastWalk>,
    /// Scans that walked the tree (the others answered from memory).
    walks: u32,
    /// The per-root locks this session holds (made on first use, with a state directory).
    locks: Option<locks::Locks>,
    /// The conversation's input, watched while waiting for a lock (`None`: not a descriptor).
    client: Option<std::os::unix::io::RawFd>,
    /// Warnings for the client, sent before the next answer that carries them.
    warnings: Vec<String>,
}

/// Why a request that changes a tree was not carried out.
#[derive(Debug)]
pub(crate) enum Fail {
    /// It failed; the message names the path.
    Error(String),
    /// The entry changed since the scan (the user saved it meanwhile): that version stays,
    /// and the next run reconciles it.
    Changed(String),
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Error(m)
    }
}

type OpResult = Result<(), Fail>;

/// `PATH: error`, for an I/O error or a plain reason.
fn msg(path: &Path, e: impl IntoMsg) -> String {
    format!("{}: {}", path.display(), e.into_msg())
}

/// What [`msg`] accepts: I/O errors lose their "(os error N)", reasons pass as they are.
trait IntoMsg {
    fn into_msg(self) -> String;
}

impl IntoMsg for io::Error {
    fn into_msg(self) -> String {
        scan::io_msg(&self)
    }
}

impl IntoMsg for &str {
    fn into_msg(self) -> String {
        self.to_string()
    }
}

fn reply(w: &mut impl Write, res: OpResult) -> Result<(), FrameError> {
    match res {
        Ok(()) => write_frame(w, &Response::Done),
        Err(Fail::Error(e)) => write_frame(w, &Response::Failed(e)),
        Err(Fail::Changed(e)) => write_frame(w, &Response::Changed(e)),
    }
}

impl Server {
    /// Where root `root`'s filesystem takes a name's NFC and NFD spellings for one, the
    /// entry paths of `req` are spelled in NFC: as the walk reports every name there, and as
    /// this serve keeps them in its state and notes.
    fn spell(&self, req: &mut Request) {
        if let Some((root, paths)) = req.entry_paths_mut() {
            if self.ctx(root).is_ok_and(root::RootCtx::normalizes) {
                paths.into_iter().for_each(WirePath::make_nfc);
            }
        }
    }

    /// A server resolving home-relative roots against `home`, without a digest cache.
    pub fn new(home: Option<PathBuf>) -> Self {
        Server {
            home,
            cache_dir: None,
            state_dir: None,
            key: 0,
            store: None,
            retention: Retention::default(),
            pruned: false,
            pruned_early: false,
            probed: Default::default(),
            meta: crate::extra::MetaOpts::none(),
            root: crate::extra::is_root(),
            roots: Vec::new(),
            watch: None,
            last_walk: None,
            walks: 0,
            locks: None,
            client: None,
            warnings: Vec::new(),
        }
    }

    /// Keeps sync state and versions in `dir`. Without one, the server still scans and copies
    /// but refuses to delete or replace anything it could not keep.
    pub fn with_state(&mut self, dir: Option<PathBuf>) {
        self.key = match dir.as_deref().map(state::peer_key) {
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                tracing::warn!("no sync state: {e}");
                0
            }
            None => 0,
        };
        self.store = dir.as_deref().filter(|_| self.key != 0).map(Store::new);
        self.state_dir = dir.filter(|_| self.key != 0);
    }

    /// Runs the handshake, then answers requests until end of input.
    pub fn serve<R: Read, W: Write>(&mut self, r: &mut R, w: &mut W) -> Result<(), FrameError> {
        match read_frame(r)? {
            Request::Hello {
                magic, protocol, ..
            } if magic == MAGIC => {
                write_frame(
                    w,
                    &Response::Hello {
                        magic: MAGIC,
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        rsync: which::which("rsync").is_ok(),
                        home: self
                            .home
                            .as_deref()
                            .map(WirePath::from_path)
                            .unwrap_or_default(),
                    },
                )?;
                w.flush()?;
                if protocol != PROTOCOL_VERSION {
                    // The client reports the mismatch; nothing more to say. Nothing more is
                    // read either: a client sends its scan behind the handshake, and this
                    // serve could not read it.
                    return Ok(());
                }
            }
            _ => return Err(protocol_error("the first frame was not a synk handshake")),
        }
        loop {
            let mut req = match read_frame(r) {
                Err(FrameError::Closed) => return Ok(()),
                other => other?,
            };
            self.spell(&mut req);
            // Anything but a read may change what the last walk saw or what its summary
            // stands for; the next scan walks again. Records and a commit count as reads
            // here: the next scan finds them in the root's context and its state file.
            let reads = matches!(
                req,
                Request::Scan { .. }
                    | Request::Detail { .. }
                    | Request::Blocks { .. }
                    | Request::Versions { .. }
                    | Request::ReadFile { .. }
                    | Request::ReadFrom { .. }
                    | Request::Watch { .. }
                    | Request::Records { .. }
                    | Request::Commit { .. }
                    | Request::Lock { .. }
                    | Request::Unlock
            );
            if !reads {
                self.last_walk = None;
            }
            match req {
                Request::Scan {
                    roots,
                    retention,
                    excludes,
                    brief,
                    tidy,
                    lock,
                    meta,
                } => {
                    self.retention = retention;
                    self.meta = meta;
                    if !lock || self.lock_for_scan(&roots, w)? {
                        if lock && tidy && !std::mem::replace(&mut self.pruned_early, true) {
                            // Kept versions are pruned as a run begins, under its locks, so a
                            // run with nothing to commit here prunes too and tells what
                            // pruning found; a commit prunes again after the run's own keeps.
                            self.prune_store();
                            for warning in self.warnings.drain(..) {
                                write_frame(w, &Response::Warning(warning))?;
                            }
                        }
                        self.scan(&roots, &excludes, brief, tidy, w)?
                    }
                }
                Request::Lock { roots, wait_ms } => {
                    self.lock(&roots, Duration::from_millis(wait_ms.into()), w)?
                }
                Request::Unlock => self.unlock(),
                Request::Detail { root, rels } => self.detail(root, rels, w)?,
                Request::Briefs { root, also } => self.held_briefs(root, also, w)?,
                Request::Blocks { root, rel } => write_frame(w, &self.blocks(root, &rel))?,
                Request::Rename { root, rel, to } => reply(w, self.rename(root, &rel, &to))?,
                Request::Remove { root, rel, deleted } => {
                    reply(w, self.remove(root, &rel, deleted))?
                }
                Request::Keep { root, rels } => reply(w, self.keep(root, &rels))?,
                Request::Clone {
                    root,
                    from,
                    rel,
                    mode,
                    mtime,
                    digest,
                } => reply(w, self.clone_local(root, &from, &rel, mode, mtime, digest))?,
                Request::Link {
                    root,
                    to,
                    rel,
                    meta,
                } => reply(w, self.link(root, &to, &rel, &meta))?,
                Request::Records { root, set } => {
                    // No answer: a failure shows at the commit.
                    if let Err(Fail::Error(e) | Fail::Changed(e)) = self.records(root, set) {
                        tracing::warn!("{e}");
                    }
                }
                Request::Commit { root } => {
                    let res = self.commit(root);
                    for warning in self.warnings.drain(..) {
                        write_frame(w, &Response::Warning(warning))?;
                    }
                    reply(w, res)?
                }
                Request::Versions { path } => match self.versions(&path) {
                    Ok(v) => {
                        // In batches that stay below the frame limit, then Done.
                        for batch in v.chunks(VERSIONS_BATCH) {
                            write_frame(w, &Response::Versions(batch.to_vec()))?;
                        }
                        write_frame(w, &Response::Done)?
                    }
                    Err(e) => write_frame(w, &Response::Failed(e))?,
                },
                Request::Restore { root, rel, id } => reply(w, self.restore(root, &rel, &id))?,
                Request::Siblings { root } => reply(w, self.siblings(root))?,
                Request::Watch { wait_ms, reset } => {
                    let answer = self.watch(Duration::from_millis(wait_ms.into()), reset);
                    write_frame(w, &answer)?
                }
                Request::Prepare { root, dir } => match self.prepare(root, dir) {
                    Ok(name) => write_frame(w, &Response::Scratch(name))?,
                    Err(e) => reply(w, Err(e))?,
                },
                Request::RunRsync { args, names, holes } => {
                    write_frame(w, &self.run_rsync(args, names, holes))?;
                    w.flush()?;
                    // The conversation of a remote rsync ends with it.
                    return Ok(());
                }
                Request::Place { root, items } => match self.place(root, &items) {
                    Ok(done) => write_frame(w, &Response::Placed(done))?,
                    Err(e) => write_frame(w, &Response::Failed(e))?,
                },
                Request::Cleanup { root, dir } => reply(w, self.cleanup(root, dir))?,
                Request::ReadFile { root, rel } => self.read_file(root, &rel, 0, w)?,
                Request::ReadFrom { root, rel, from } => self.read_file(root, &rel, from, w)?,
                Request::WriteFile {
                    root,
                    rel,
                    mode,
                    mtime,
                    seed,
                    keep,
                    batched,
                } => {
                    let how = write::Incoming {
                        mode,
                        mtime,
                        seed,
                        partial: None,
                        keep,
                        batched,
                    };
                    let res = self.write_file(root, &rel, how, r)?;
                    reply(w, res)?
                }
                Request::WritePartial {
                    root,
                    rel,
                    mode,
                    mtime,
                    seed,
                    digest,
                    from,
                } => {
                    let how = write::Incoming {
                        mode,
                        mtime,
                        seed,
                        partial: Some((digest, from)),
                        keep: false,
                        batched: false,
                    };
                    let res = self.write_file(root, &rel, how, r)?;
                    self.release_stream_scratch(root);
                    reply(w, res)?
                }
                Request::Partial { root, rel, digest } => {
                    let answer = self.partial(root, &rel, digest);
                    write_frame(w, &answer)?
                }
                Request::MakeDir {
                    root,
                    rel,
                    mode,
                    mtime,
                } => reply(w, self.make_dir(root, &rel, mode, mtime))?,
                Request::Symlink {
                    root,
                    rel,
                    target,
                    mtime,
                } => reply(w, self.symlink(root, &rel, &target, mtime))?,
                Request::SetMeta {
                    root,
                    rel,
                    mode,
                    mtime,
                } => reply(w, self.set_meta(root, &rel, mode, mtime))?,
                Request::Attrs { root, rels } => self.attrs(root, rels, w)?,
                Request::SetExtra {
                    root,
                    rel,
                    xattrs,
                    sys,
                    acl,
                    owner,
                } => reply(w, self.set_extra(root, &rel, xattrs, sys, acl, owner))?,
                Request::Hello { .. }
                | Request::Data(_)
                | Request::Same { .. }
                | Request::Hole { .. }
                | Request::End { .. }
                | Request::Abort => {
                    return Err(protocol_error("unexpected frame outside a file transfer"))
                }
            }
            w.flush()?;
        }
    }

    /// Waits for a change under the roots of the last scan.
    fn watch(&mut self, wait: Duration, reset: bool) -> Response {
        let roots: Vec<PathBuf> = self.roots.iter().flatten().map(|c| c.abs.clone()).collect();
        let watch = self
            .watch
            .get_or_insert_with(|| watch::Watch::new(&roots).map_err(|e| e.to_string()));
        match watch {
            Ok(w) => {
                if reset {
                    w.reset();
                }
                Response::Watched {
                    changed: w.wait(wait),
                    supported: true,
                }
            }
            Err(e) => {
                tracing::debug!("cannot watch: {e}");
                std::thread::sleep(wait);
                Response::Watched {
                    changed: false,
                    supported: false,
                }
            }
        }
    }
}

fn protocol_error(what: &str) -> FrameError {
    FrameError::Io(io::Error::new(io::ErrorKind::InvalidData, what.to_string()))
}

#[cfg(test)]
mod extra_tests;
#[cfg(test)]
mod safety_tests;

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{Digest, Kind};
    use crate::paths::RootSpec;
    use crate::proto::{encode, ENTRY_BATCH};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    pub(super) fn hello() -> Request {
        Request::Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            version: "test".into(),
        }
    }

    /// Runs a server over the given requests and returns its responses after the handshake.
    pub(super) fn converse(
        home: &Path,
        reqs: &[Request],
    ) -> (Result<(), FrameError>, Vec<Response>) {
        converse_in(home, None, reqs)
    }

    /// [`converse`] with sync state kept in `state`.
    fn converse_in(
        home: &Path,
        state: Option<&Path>,
        reqs: &[Request],
    ) -> (Result<(), FrameError>, Vec<Response>) {
        let mut input = encode(&hello()).unwrap();
        for r in reqs {
            input.extend(encode(r).unwrap());
        }
        let mut out = Vec::new();
        let mut server = Server::new(Some(home.to_path_buf()));
        server.with_state(state.map(Path::to_path_buf));
        let res = server.serve(&mut &input[..], &mut out);
        let mut r = &out[..];
        let mut resps = Vec::new();
        while let Ok(resp) = read_frame::<Response, _>(&mut r) {
            resps.push(resp);
        }
        assert!(matches!(resps.remove(0), Response::Hello { .. }));
        (res, resps)
    }

    /// Every item of the responses `pick` takes, in order.
    fn gather<T: Clone>(resps: &[Response], pick: impl Fn(&Response) -> Option<&Vec<T>>) -> Vec<T> {
        resps.iter().filter_map(pick).flatten().cloned().collect()
    }

    /// The start of a file transfer to a single-file root.
    pub(super) fn write_file(mode: u32, mtime: i64) -> Request {
        Request::WriteFile {
            root: 0,
            rel: WirePath::default(),
            mode,
            mtime,
            seed: SEED,
            keep: false,
            batched: false,
        }
    }

    pub(super) const SEED: u64 = 0x5eed;

    /// The end of a transfer (of [`write_file`]'s seed) whose master read `content`.
    pub(super) fn end(content: &[u8]) -> Request {
        let mut check = crate::proto::Check::new(SEED);
        check.update(content);
        Request::End {
            check: check.value(),
        }
    }

    pub(super) fn w(s: &str) -> WirePath {
        WirePath(s.as_bytes().to_vec())
    }

    pub(super) fn scan_home(rel: &str) -> Request {
        Request::Scan {
            roots: vec![RootSpec::Home(w(rel))],
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: false,
            tidy: true,
            lock: false,
            meta: crate::extra::MetaOpts::default(),
        }
    }

    #[test]
    fn unchanged_and_new_entries_go_in_brief_and_come_back_in_full_on_request() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir(home.path().join("notes")).unwrap();
        fs::write(home.path().join("notes/a"), "A").unwrap();
        let brief = || Request::Scan {
            roots: vec![RootSpec::Home(w("notes"))],
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: true,
            tidy: true,
            lock: false,
            meta: crate::extra::MetaOpts::default(),
        };
        let detail = |rel: &str| Request::Detail {
            root: 0,
            rels: vec![w(rel)],
        };
        let state = home.path().join("state");
        let entries = |resps: &[Response]| {
            gather(resps, |r| match r {
                Response::Entries(es) => Some(es),
                _ => None,
            })
        };
        let briefs = |resps: &[Response]| {
            gather(resps, |r| match r {
                Response::Briefs(bs) => Some(bs),
                _ => None,
            })
        };
        // First scan: a has no history; it goes in brief (by content, mode and time) and
        // comes back in full as new. The commit records it.
        let (res, resps) = converse_in(
            home.path(),
            Some(&state),
            &[brief(), detail("a"), Request::Commit { root: 0 }],
        );
        res.unwrap();
        let full = entries(&resps);
        assert_eq!(full.len(), 2, "the root, then a on request: {resps:?}");
        let a = &full[1];
        assert!(a.changed && a.vv.is_none());
        let meta = a.state.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(briefs(&resps)[0].fp, crate::model::fingerprint_new(meta));
        // Second scan: a is unchanged (in brief, by content and version), b is new.
        fs::write(home.path().join("notes/b"), "B").unwrap();
        let (res, resps) = converse_in(
            home.path(),
            Some(&state),
            &[brief(), detail("a"), detail("nope")],
        );
        res.unwrap();
        let mut bs = briefs(&resps);
        bs.sort_by(|x, y| x.rel.cmp(&y.rel));
        let names: Vec<String> = bs.iter().map(|b| b.rel.to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        let full = entries(&resps);
        let a = full.iter().find(|e| e.rel == w("a")).unwrap();
        assert!(!a.changed && a.vv.is_some());
        assert_eq!(
            bs[0].fp,
            crate::model::fingerprint_held(
                a.state.as_ref().unwrap().as_ref(),
                a.vv.as_ref().unwrap()
            )
        );
        // A path the scan never reported is refused.
        assert!(matches!(resps.last(), Some(Response::Failed(m)) if m.contains("not in brief")));
    }

    #[test]
    fn a_root_all_unchanged_is_summed_up_and_its_briefs_come_on_request() {
        use crate::model::fingerprint_held;
        use crate::model::Brief;
        use crate::proto::Summary;
        let home = tempfile::tempdir().unwrap();
        let notes = home.path().join("notes");
        fs::create_dir_all(notes.join("many")).unwrap();
        // More than one frame of briefs, and a file that sorts after them.
        for i in 0..(ENTRY_BATCH + 100) {
            fs::write(notes.join(format!("many/{i:04}")), i.to_string()).unwrap();
        }
        fs::write(notes.join("a"), "A").unwrap();
        fs::write(notes.join("zz"), "Z").unwrap();
        let total = ENTRY_BATCH as u64 + 100 + 3; // many/*, many, a, zz
        let state = home.path().join("state");
        let scan = || Request::Scan {
            roots: vec![RootSpec::Home(w("notes"))],
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: true,
            tidy: true,
            lock: false,
            meta: crate::extra::MetaOpts::default(),
        };
        let briefs = |resps: &[Response]| -> Vec<Brief> {
            gather(resps, |r| match r {
                Response::Briefs(bs) => Some(bs),
                _ => None,
            })
        };
        let summaries = |resps: &[Response]| -> Vec<Summary> {
            resps
                .iter()
                .filter_map(|r| match r {
                    Response::Summary(s) => Some(*s),
                    _ => None,
                })
                .collect()
        };
        let commit = Request::Commit { root: 0 };
        // No history yet: everything goes in brief as new, nothing is summed up.
        let (res, resps) = converse_in(home.path(), Some(&state), &[scan(), commit]);
        res.unwrap();
        assert!(summaries(&resps).is_empty());
        assert_eq!(briefs(&resps).len() as u64, total);

        // All as recorded: the root in full, one summary, no briefs; they come on request,
        // once, and add up to the summary.
        let twice = Request::Briefs {
            root: 0,
            also: Vec::new(),
        };
        let (res, resps) = converse_in(
            home.path(),
            Some(&state),
            &[
                scan(),
                Request::Briefs {
                    root: 0,
                    also: vec![w("a"), w("nope"), w("many/0003")],
                },
                twice,
            ],
        );
        res.unwrap();
        let scan_done = resps
            .iter()
            .position(|r| matches!(r, Response::ScanDone))
            .unwrap();
        let (scanned, asked) = resps.split_at(scan_done + 1);
        assert!(briefs(scanned).is_empty());
        let entries: Vec<_> = gather(scanned, |r| match r {
            Response::Entries(es) => Some(es),
            _ => None,
        });
        assert_eq!(entries.len(), 1);
        assert!(entries[0].rel.is_empty());
        let summary = summaries(scanned);
        assert_eq!(summary.len(), 1);
        assert_eq!((summary[0].count, summary[0].held), (total, total));
        assert!(matches!(asked[asked.len() - 2], Response::Done));
        let fetched: Vec<Brief> = briefs(asked);
        assert_eq!(fetched.len() as u64, total);
        assert_eq!(Summary::of(&fetched), summary[0]);
        assert!(matches!(asked.last(), Some(Response::Failed(m)) if m.contains("no briefs held")));
        // Behind the briefs, those asked for in full that it summed up, in the order asked.
        let also: Vec<(String, bool)> = gather(asked, |r| match r {
            Response::Entries(es) => Some(es),
            _ => None,
        })
        .into_iter()
        .map(|e| (e.rel.to_string(), e.changed))
        .collect();
        assert_eq!(
            also,
            [("a".to_string(), false), ("many/0003".to_string(), false)]
        );

        // The briefs held back are those a streamed scan sends: each one's fingerprint is
        // that of the full entry.
        let rels: Vec<WirePath> = fetched.iter().map(|b| b.rel.clone()).collect();
        let (res, resps) = converse_in(
            home.path(),
            Some(&state),
            &[scan(), Request::Detail { root: 0, rels }],
        );
        res.unwrap();
        let full = gather(&resps, |r| match r {
            Response::Entries(es) => Some(es),
            _ => None,
        });
        for b in &fetched {
            let e = full.iter().find(|e| e.rel == b.rel).unwrap();
            let meta = e.state.as_ref().unwrap().as_ref();
            assert_eq!(b.fp, fingerprint_held(meta, e.vv.as_ref().unwrap()));
        }

        // A change after a frame of briefs was held back (a deletion: told after the walk):
        // every other brief goes out, once.
        fs::remove_file(notes.join("zz")).unwrap();
        let (res, resps) = converse_in(home.path(), Some(&state), &[scan()]);
        res.unwrap();
        assert!(summaries(&resps).is_empty());
        let mut sent: Vec<WirePath> = briefs(&resps).into_iter().map(|b| b.rel).collect();
        assert_eq!(sent.len() as u64, total - 1);
        sent.sort();
        sent.dedup();
        assert_eq!(sent.len() as u64, total - 1, "none twice");
        assert!(!sent.contains(&w("zz")));
    }

    #[test]
    fn a_session_that_scans_again_answers_from_memory_until_something_changes() {
        // Where this machine's temp dir is not watched in full (a network or overlay mount),
        // tmpfs is.
        let home = [std::env::temp_dir(), PathBuf::from("/dev/shm")]
            .into_iter()
            .find(|d| recheck::watch_sees_all(d))
            .map(|d| tempfile::tempdir_in(d).unwrap());
        let Some(home) = home else {
            // Said loudly, and a failure where every test must run.
            assert!(
                std::env::var_os("CI").is_none(),
                "no filesystem here whose changes inotify sees in full, and CI is set"
            );
            eprintln!("skipping: no filesystem here whose changes inotify sees in full");
            return;
        };
        let notes = home.path().join("notes");
        fs::create_dir_all(notes.join("sub")).unwrap();
        fs::write(notes.join("a"), "A").unwrap();
        fs::write(notes.join("sub/b"), "B").unwrap();
        let state = home.path().join("state");
        let roots = [RootSpec::Home(w("notes"))];
        let brief_scan = || Request::Scan {
            roots: roots.to_vec(),
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: true,
            tidy: true,
            lock: false,
            meta: crate::extra::MetaOpts::default(),
        };
        let (res, _) = converse_in(
            home.path(),
            Some(&state),
            &[brief_scan(), Request::Commit { root: 0 }],
        );
        res.unwrap();
        let mut server = Server::new(Some(home.path().to_path_buf()));
        server.with_state(Some(state));
        let scan = |server: &mut Server| {
            let mut out = Vec::new();
            server.scan(&roots, &[], true, true, &mut out).unwrap();
            server.commit(0).unwrap();
            out
        };
        // Requests through the request loop, as a client sends them.
        let converse = |server: &mut Server, reqs: &[Request]| {
            let mut input = encode(&hello()).unwrap();
            for r in reqs {
                input.extend(encode(r).unwrap());
            }
            server.serve(&mut &input[..], &mut Vec::new()).unwrap();
        };
        let settle = || std::thread::sleep(Duration::from_millis(300));
        // The first two walk (the second under a watch); the third answers from memory,
        // the very same frames.
        let first = scan(&mut server);
        assert!(!first.is_empty());
        assert_eq!(scan(&mut server), first);
        assert_eq!(server.walks, 2);
        settle();
        assert_eq!(scan(&mut server), first);
        assert_eq!(server.walks, 2);
        // A change below the root: the next scan walks and tells it.
        fs::write(notes.join("sub/b"), "changed").unwrap();
        settle();
        let changed = scan(&mut server);
        assert_eq!(server.walks, 3);
        assert_ne!(changed, first);
        // The commit recorded it: the next walk sums up again, then answers from memory.
        let after = scan(&mut server);
        assert_eq!(server.walks, 4);
        settle();
        assert_eq!(scan(&mut server), after);
        assert_eq!(server.walks, 4);
        // A state file rewritten (as by another client's commit): walk again.
        let file = state::file_for(server.state_dir.as_deref().unwrap(), &notes);
        let bytes = fs::read(&file).unwrap();
        fs::remove_file(&file).unwrap();
        fs::write(&file, bytes).unwrap();
        scan(&mut server);
        assert_eq!(server.walks, 5);
        // A request that writes ends the answers from memory.
        settle();
        let make_dir = Request::MakeDir {
            root: 0,
            rel: w("new"),
            mode: 0o755,
            mtime: 0,
        };
        converse(&mut server, &[brief_scan(), make_dir]);
        assert_eq!(server.walks, 5, "answered from memory");
        converse(&mut server, &[brief_scan()]);
        assert_eq!(server.walks, 6);
    }

    #[test]
    fn scans_home_relative_roots() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir(home.path().join("notes")).unwrap();
        fs::write(home.path().join("notes/a"), "A").unwrap();
        let (res, resps) = converse(home.path(), &[scan_home("notes"), scan_home("absent")]);
        res.unwrap();
        let root_abs = WirePath::from_path(&home.path().join("notes"));
        match &resps[..] {
            [Response::Root {
                index: 0,
                result: Ok(abs),
            }, Response::Entries(es), Response::Holds(_), Response::ScanDone, Response::Root {
                index: 0,
                result: Ok(_),
            }, Response::Holds(_), Response::ScanDone] => {
                assert_eq!(abs, &root_abs);
                assert_eq!(es.len(), 2);
                assert!(es.iter().any(|e| e.rel == w("a")
                    && e.state.as_ref().unwrap().as_ref().unwrap().kind == Kind::File));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_go_through_a_verified_temp_file() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join("f"), "old").unwrap();
        let write = |content: &[u8], read: &[u8]| {
            vec![
                scan_home("f"),
                write_file(0o600, 1_000_000_000_123),
                Request::Data(content.to_vec()),
                end(read),
            ]
        };
        // Not what the master read: refused, old content kept, no temp left behind.
        let (res, resps) = converse(home.path(), &write(b"new", b"other"));
        res.unwrap();
        assert!(matches!(resps.last(), Some(Response::Failed(m)) if m.contains("do not match")));
        assert_eq!(fs::read(home.path().join("f")).unwrap(), b"old");
        assert_eq!(fs::read_dir(home.path()).unwrap().count(), 1);
        // What the master read: replaced, with mode and mtime.
        let (res, resps) = converse(home.path(), &write(b"new", b"new"));
        res.unwrap();
        assert!(matches!(resps.last(), Some(Response::Done)), "{resps:?}");
        let md = fs::metadata(home.path().join("f")).unwrap();
        assert_eq!(fs::read(home.path().join("f")).unwrap(), b"new");
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        assert_eq!(scan::mtime_ns(&md), 1_000_000_000_123);
    }

    #[test]
    fn a_delta_write_takes_the_same_blocks_from_the_old_file() {
        let home = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
        fs::write(home.path().join("f"), &old).unwrap();
        let mut new = old.clone();
        new[CHUNK + 3] ^= 0xff; // the second block differs
        new.truncate(CHUNK * 2 + 5); // and the last is shorter
        let blocks = Request::Blocks {
            root: 0,
            rel: WirePath::default(),
        };
        let (res, resps) = converse(home.path(), &[scan_home("f"), blocks]);
        res.unwrap();
        let Some(Response::Blocks(listed)) = resps.last() else {
            panic!("{resps:?}")
        };
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0], crate::proto::block_fingerprint(&new[..CHUNK]));
        assert_ne!(
            listed[1],
            crate::proto::block_fingerprint(&new[CHUNK..CHUNK * 2])
        );
        let write = |read: &[u8]| {
            vec![
                scan_home("f"),
                write_file(0o600, 0),
                Request::Same { len: CHUNK as u32 },
                Request::Data(new[CHUNK..CHUNK * 2].to_vec()),
                Request::Data(new[CHUNK * 2..].to_vec()),
                end(read),
            ]
        };
        let (res, resps) = converse(home.path(), &write(&new));
        res.unwrap();
        assert!(matches!(resps.last(), Some(Response::Done)), "{resps:?}");
        assert_eq!(fs::read(home.path().join("f")).unwrap(), new);
        // A "same" block that is not the same in the end is caught by the check.
        let mut other = new.clone();
        other[0] ^= 1;
        let (res, resps) = converse(home.path(), &write(&other));
        res.unwrap();
        assert!(matches!(resps.last(), Some(Response::Failed(m)) if m.contains("do not match")));
        assert_eq!(fs::read(home.path().join("f")).unwrap(), new, "kept");
        // No file there: no blocks.
        let (_, resps) = converse(
            home.path(),
            &[
                scan_home("absent"),
                Request::Blocks {
                    root: 0,
                    rel: WirePath::default(),
                },
            ],
        );
        assert!(matches!(resps.last(), Some(Response::Blocks(b)) if b.is_empty()));
    }

    #[test]
    fn aborted_writes_keep_the_old_file() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join("f"), "old").unwrap();
        let (res, resps) = converse(
            home.path(),
            &[
                scan_home("f"),
                write_file(0o644, 0),
                Request::Data(b"new".to_vec()),
                Request::Abort,
            ],
        );
        res.unwrap();
        assert!(matches!(resps.last(), Some(Response::Failed(_))));
        assert_eq!(fs::read(home.path().join("f")).unwrap(), b"old");
        assert_eq!(fs::read_dir(home.path()).unwrap().count(), 1);
    }

    #[test]
    fn escaping_paths_and_unscanned_roots_are_refused() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir(home.path().join("d")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), home.path().join("d/link")).unwrap();
        let mk = |root, rel: &str| Request::MakeDir {
            root,
            rel: w(rel),
            mode: 0o755,
            mtime: 0,
        };
        let (res, resps) = converse(
            home.path(),
            &[
                mk(0, "x"),
                scan_home("d"),
                mk(0, "../escape"),
                mk(0, "/abs"),
                mk(0, "link/inside"),
                mk(1, "x"),
                Request::ReadFile {
                    root: 0,
                    rel: w("../../etc/passwd"),
                },
            ],
        );
        res.unwrap();
        let failures: Vec<&String> = resps
            .iter()
            .filter_map(|r| match r {
                Response::Failed(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(failures.len(), 6, "{resps:?}");
        assert!(failures[0].contains("not scanned"));
        assert!(failures[3].contains("symlink"), "{}", failures[3]);
        assert!(!home.path().join("escape").exists());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn garbage_ends_the_session_with_an_error() {
        let mut out = Vec::new();
        let res = Server::new(None).serve(&mut &b"SSH-2.0-banner\r\n"[..], &mut out);
        assert!(res.is_err());
        let mut input = encode(&hello()).unwrap();
        input.extend(encode(&end(b"")).unwrap());
        let res = Server::new(None).serve(&mut &input[..], &mut Vec::new());
        assert!(res.is_err());
    }

    #[test]
    fn read_file_streams_chunks_and_digest() {
        let home = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..CHUNK * 2 + 5).map(|i| i as u8).collect();
        fs::write(home.path().join("big"), &data).unwrap();
        let (res, resps) = converse(
            home.path(),
            &[
                scan_home("big"),
                Request::ReadFile {
                    root: 0,
                    rel: WirePath::default(),
                },
            ],
        );
        res.unwrap();
        let mut got = Vec::new();
        let mut digest = None;
        for r in resps {
            match r {
                Response::Data(d) => got.extend(d),
                Response::ReadDone(d) => digest = Some(d),
                _ => {}
            }
        }
        assert_eq!(got, data);
        assert_eq!(digest, Some(Digest::of(&data)));
    }

    #[test]
    fn symlinks_and_directories_are_created() {
        let home = tempfile::tempdir().unwrap();
        let (res, resps) = converse(
            home.path(),
            &[
                scan_home("t"),
                Request::MakeDir {
                    root: 0,
                    rel: WirePath::default(),
                    mode: 0o700,
                    mtime: 0,
                },
                Request::MakeDir {
                    root: 0,
                    rel: w("sub"),
                    mode: 0o750,
                    mtime: 5_000_000_000,
                },
                Request::Symlink {
                    root: 0,
                    rel: w("sub/l"),
                    target: w("../nowhere"),
                    mtime: 7_000_000_000,
                },
            ],
        );
        res.unwrap();
        assert!(
            resps
                .iter()
                .skip_while(|r| !matches!(r, Response::ScanDone))
                .skip(1)
                .all(|r| matches!(r, Response::Done)),
            "{resps:?}"
        );
        let l = home.path().join("t/sub/l");
        assert_eq!(fs::read_link(&l).unwrap(), Path::new("../nowhere"));
        assert_eq!(
            scan::mtime_ns(&fs::symlink_metadata(&l).unwrap()),
            7_000_000_000
        );
        let md = fs::metadata(home.path().join("t/sub")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    }
}
