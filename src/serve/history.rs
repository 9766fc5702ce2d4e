//! The server's memory: scanning against the remembered state, keeping versions before
//! anything is replaced or deleted, committing the new state, listing and restoring versions.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::Digest as _;

use super::emit::{Emitter, HeldBriefs};
use super::recheck::{self, Asked, FileId, LastWalk, Marks, Now, RootId};
use super::reports::{Reported, Reports};
use super::{msg, sync_parent, watch, OpResult, Server};
use crate::cache::DigestCache;
use crate::exclude::Excludes;
use crate::model::{now_ms, Content, Digest, Kept, Kind, Meta, Record, Vv, Why};
use crate::names;
use crate::paths::{RootSpec, WirePath};
use crate::proto::{write_frame, Entry, FrameError, Response, CHUNK, ENTRY_BATCH};
use crate::scan::{self, Found};
use crate::state::{sort_by_path, RootState};
use crate::versions::Take;

/// One root of the session: where it is, its state, and what the client decided for it.
#[derive(Debug)]
pub(super) struct RootCtx {
    pub(super) abs: PathBuf,
    /// The root is a single file whose other entries are siblings in its directory.
    pub(super) siblings: bool,
    /// What is left out of the scan (and so of deletions).
    excludes: Excludes,
    /// Something differs from the remembered state: new, changed or deleted entries.
    dirty: bool,
    state: RootState,
    reported: Reports,
    /// Records the client sent for this root, in the order they came.
    set: Vec<Record>,
    /// The briefs the scan summed up instead of sending, until the client asks for them.
    held_briefs: Option<HeldBriefs>,
    /// Every frame the scan sent for this root, where it summed the root up.
    said: Option<Vec<u8>>,
    /// The walk met no mount inside the tree: a watch on its directories sees every change
    /// below it.
    watchable: bool,
}

impl RootCtx {
    /// Nothing changed since the walk, none to record, and the briefs behind its summary
    /// still held: the walk's answer still stands for this root.
    fn as_walked(&self) -> bool {
        self.watchable
            && !self.dirty
            && self.set.is_empty()
            && !self.state.absorbs()
            && self.held_briefs.is_some()
            && self.said.is_some()
    }

    /// The metadata this peer reported for an entry, if it holds one.
    pub(super) fn meta(&self, rel: &WirePath) -> Option<&Meta> {
        self.held(rel).and_then(|(m, _)| m)
    }

    /// What this peer reported for an entry it could read: its metadata (`None`: deleted)
    /// and version.
    fn held(&self, rel: &WirePath) -> Option<(Option<&Meta>, Option<&Vv>)> {
        match self.reported.get(rel)? {
            Reported::AsRecorded => self.state.get(rel).map(|r| (r.meta.as_ref(), Some(&r.vv))),
            Reported::Held(h) => Some((h.0.as_ref(), h.1.as_ref())),
            Reported::Unknown => None,
        }
    }
}

fn below_any(rel: &WirePath, dirs: &[WirePath]) -> bool {
    dirs.iter().any(|d| rel != d && rel.below(d).is_some())
}

impl Server {
    fn resolve(&self, spec: &RootSpec) -> Result<PathBuf, String> {
        match &self.home {
            Some(home) => spec.resolve(home).map_err(|e| format!("{spec}: {e}")),
            None if matches!(spec, RootSpec::Home(_)) => {
                Err(format!("{spec}: this peer has no home directory"))
            }
            None => spec
                .resolve(Path::new("/"))
                .map_err(|e| format!("{spec}: {e}")),
        }
    }

    /// Scans every root, reporting each entry with its version against the remembered state,
    /// then the remembered entries that are gone.
    pub(super) fn scan<W: Write>(
        &mut self,
        roots: &[RootSpec],
        excludes: &[String],
        brief: bool,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let asked = Asked {
            roots: roots.to_vec(),
            excludes: excludes.to_vec(),
            brief,
        };
        // Resolved once for the checks around the walk; a root that does not resolve fails in
        // the walk below, and nothing is answered from memory.
        let abs = self.resolve_all(roots);
        // Every scan before this one walked (a session's first always does).
        let again = self.walks > 0;
        if let (Some(last), Some(abs)) = (self.last_walk.take(), &abs) {
            if self.answers_again(&last, &asked, abs) {
                for said in &last.said {
                    w.write_all(said)?;
                }
                self.last_walk = Some(last);
                return write_frame(w, &Response::ScanDone);
            }
        }
        // A session that scans again in brief watches its roots from here on, where a watch
        // can tell whether this walk still holds at the next scan (see `recheck`). A one-shot
        // run's only scan marks nothing and watches nothing.
        let began = Instant::now();
        let repeatable = abs
            .as_deref()
            .filter(|a| again && brief && recheck::repeatable(a));
        let before = repeatable.and_then(|a| self.walk_marks(a));
        self.walks += 1;
        if let Some(abs) = repeatable {
            self.watch_for_recheck(abs);
        }
        self.roots.clear();
        for (i, spec) in roots.iter().enumerate() {
            let index = i as u32;
            let loaded = self.resolve(spec).and_then(|abs| {
                let ex = Excludes::new(&abs, excludes).map_err(|e| format!("{spec}: {e}"))?;
                RootState::load(self.state_dir.as_deref(), &abs)
                    .map(|st| (abs, st, ex))
                    .map_err(|e| format!("{spec}: {}", scan::io_msg(&e)))
            });
            let (abs, state, excludes) = match loaded {
                Ok(x) => x,
                Err(e) => {
                    self.roots.push(None);
                    write_frame(
                        w,
                        &Response::Root {
                            index,
                            result: Err(e),
                        },
                    )?;
                    continue;
                }
            };
            let mut ctx = RootCtx {
                abs: abs.clone(),
                siblings: false,
                excludes,
                dirty: false,
                state,
                reported: Reports::default(),
                set: Vec::new(),
                held_briefs: None,
                said: None,
                watchable: false,
            };
            let res = self.scan_one(index, &mut ctx, brief, w);
            self.roots.push(Some(ctx));
            res?;
        }
        self.last_walk = match (repeatable, before) {
            (Some(abs), Some(before)) => self.walk_to_repeat(asked, abs, began, before),
            _ => None,
        };
        write_frame(w, &Response::ScanDone)
    }

    /// Watches `abs` from now on (roots on filesystems where a watch sees every change): the
    /// walk about to begin sees what came before.
    fn watch_for_recheck(&mut self, abs: &[PathBuf]) {
        // Made anew before every walk: it then watches every directory there is as the walk
        // begins (notify drops some failures to watch a directory made later), at the inodes
        // the roots' paths lead to now.
        match watch::Watch::new(abs) {
            Ok(w) => self.watch = Some(Ok(w)),
            // Keep what --watch had, though no answer comes from it now.
            Err(e) => match &self.watch {
                Some(Ok(old)) => old.set_broken(),
                _ => self.watch = Some(Err(e.to_string())),
            },
        }
    }

    /// Every root of `roots` resolved, if each resolves.
    fn resolve_all(&self, roots: &[RootSpec]) -> Option<Vec<PathBuf>> {
        roots.iter().map(|s| self.resolve(s).ok()).collect()
    }

    /// What a later scan checks against a walk: the roots' identities, the mounts at and
    /// below them and the state directory, as they are now (`None`: unknowable here).
    fn walk_marks(&self, abs: &[PathBuf]) -> Option<Marks> {
        Some(Marks {
            roots: abs.iter().map(|r| RootId::of(r)).collect(),
            mounts: recheck::mounts(abs)?,
            state: FileId::of(
                self.state_dir
                    .as_deref()
                    .map(|d| d.join("roots"))
                    .as_deref(),
            ),
        })
    }

    /// The walk just done, if a later scan may answer with it: every root summed up, nothing
    /// to record, a sound watch over exactly these roots since before the walk began, and
    /// the marks as they were then (another client's commit during the walk changes the
    /// state directory).
    fn walk_to_repeat(
        &self,
        asked: Asked,
        abs: &[PathBuf],
        began: Instant,
        before: Marks,
    ) -> Option<LastWalk> {
        let watched = matches!(&self.watch, Some(Ok(w)) if w.covers(abs));
        if !watched || self.walk_marks(abs).as_ref() != Some(&before) {
            return None;
        }
        let said = self
            .roots
            .iter()
            .map(|c| c.as_ref().filter(|c| c.as_walked())?.said.clone())
            .collect::<Option<Vec<_>>>()?;
        Some(LastWalk {
            asked,
            said,
            marks: before,
            began,
        })
    }

    /// Whether `last` still answers a scan asking `asked`: see [`LastWalk::answers`].
    fn answers_again(&self, last: &LastWalk, asked: &Asked, abs: &[PathBuf]) -> bool {
        let changed = match &self.watch {
            Some(Ok(w)) => w.take_changed() || !w.covers(abs),
            _ => true,
        };
        // Records sent since, and not yet committed, are a change to come.
        if !self
            .roots
            .iter()
            .all(|c| c.as_ref().is_some_and(RootCtx::as_walked))
        {
            return false;
        }
        last.answers(&Now {
            asked,
            changed,
            marks: self.walk_marks(abs).as_ref(),
            age: last.began.elapsed(),
        })
    }

    fn scan_one<W: Write>(
        &self,
        index: u32,
        ctx: &mut RootCtx,
        brief: bool,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let abs = ctx.abs.clone();
        // The header goes out with the first entries, so a failure on the root itself can
        // still replace it.
        let header = Response::Root {
            index,
            result: Ok(WirePath::from_path(&abs)),
        };
        let mut out = Emitter::new(w, header, brief);
        let now = now_ms();
        let key = self.key;
        let mut unknown_dirs: Vec<WirePath> = Vec::new();
        let cache = DigestCache::for_root(self.cache_dir.as_deref(), &abs);
        let state = &ctx.state;
        let reported = &mut ctx.reported;
        let excludes = &ctx.excludes;
        let mut dirty = false;
        let mut hint = 0;
        let walked = scan::scan_root(&abs, &cache, excludes, &mut |found: Found| {
            let base = state.get_near(&found.rel, &mut hint);
            let (entry, rep) = versioned(found, base, key, now);
            dirty |= entry.changed;
            if matches!(rep, Reported::Unknown) && entry.state.is_err() {
                unknown_dirs.push(entry.rel.clone());
            }
            reported.push(entry.rel.clone(), rep);
            out.push(entry);
        });
        reported.sort();
        cache.save();
        match walked {
            Ok(w) => ctx.watchable = !w.other_device,
            Err(e) => {
                return out.replace(Response::Root {
                    index,
                    result: Err(msg(&abs, e)),
                })
            }
        }
        // Remembered entries that are gone: deleted here since the last sync, or tombstones.
        // Nothing below an unreadable directory is taken as deleted.
        let mut at = 0;
        let mut gone = Vec::new();
        for r in state.records() {
            let is_dir = matches!(&r.meta, Some(m) if m.kind == Kind::Dir);
            if reported.contains_ordered(&r.rel, &mut at)
                || below_any(&r.rel, &unknown_dirs)
                || excludes.excludes(&r.rel, is_dir)
            {
                continue;
            }
            let gone_now = r.meta.is_some();
            dirty |= gone_now;
            let vv = if gone_now {
                r.vv.bumped(key, now)
            } else {
                r.vv.clone()
            };
            let rep = if gone_now {
                Reported::Held(Box::new((None, Some(vv.clone()))))
            } else {
                Reported::AsRecorded
            };
            gone.push((r.rel.clone(), rep));
            out.push(Entry {
                rel: r.rel.clone(),
                state: Ok(None),
                vv: Some(vv),
                changed: gone_now,
            });
        }
        if !gone.is_empty() {
            for (rel, rep) in gone {
                reported.push(rel, rep);
            }
            reported.sort();
        }
        ctx.dirty = dirty;
        (ctx.held_briefs, ctx.said) = out.finish()?.map(|s| (s.held, s.said)).unzip();
        Ok(())
    }

    /// Answers [`crate::proto::Request::Detail`]: the full entries behind briefs of the last
    /// scan, in batches, then `Done` (or `Failed` for a path the scan did not report).
    pub(super) fn detail<W: Write>(
        &self,
        root: u32,
        rels: Vec<WirePath>,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let ctx = match self.ctx(root) {
            Ok(c) => c,
            Err(e) => return write_frame(w, &Response::Failed(e)),
        };
        let mut batch = Vec::with_capacity(ENTRY_BATCH.min(rels.len()));
        for rel in rels {
            let Some((meta, vv)) = ctx.held(&rel) else {
                return write_frame(
                    w,
                    &Response::Failed(format!("{rel:?}: not in brief in the last scan")),
                );
            };
            // Briefs are of entries unchanged since the last sync, or new ones without history.
            batch.push(Entry {
                state: Ok(meta.cloned()),
                vv: vv.cloned(),
                changed: vv.is_none(),
                rel,
            });
            if batch.len() >= ENTRY_BATCH {
                write_frame(w, &Response::Entries(std::mem::take(&mut batch)))?;
            }
        }
        if !batch.is_empty() {
            write_frame(w, &Response::Entries(batch))?;
        }
        write_frame(w, &Response::Done)
    }

    /// Answers [`crate::proto::Request::Briefs`]: the briefs the last scan of root `root`
    /// summed up, as it would have sent them, then `Done`.
    pub(super) fn held_briefs<W: Write>(&mut self, root: u32, w: &mut W) -> Result<(), FrameError> {
        let held = self.ctx_mut(root).and_then(|ctx| {
            ctx.held_briefs.take().ok_or_else(|| {
                msg(
                    &ctx.abs,
                    "no briefs held back in the last scan (asked twice?)",
                )
            })
        });
        match held {
            Ok(frames) => {
                for f in frames {
                    w.write_all(&f)?;
                }
                write_frame(w, &Response::Done)
            }
            Err(e) => write_frame(w, &Response::Failed(e)),
        }
    }

    /// The last walk of `root` stayed on one filesystem (no mount inside the tree).
    pub(super) fn one_filesystem(&self, root: u32) -> bool {
        self.ctx(root).is_ok_and(|c| c.watchable)
    }

    fn ctx(&self, root: u32) -> Result<&RootCtx, String> {
        self.roots
            .get(root as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    fn ctx_mut(&mut self, root: u32) -> Result<&mut RootCtx, String> {
        self.roots
            .get_mut(root as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    fn store(&self) -> Result<&crate::versions::Store, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "this peer has no state directory to keep versions in".to_string())
    }

    /// The metadata of the entry at `path`: as scanned, or read now.
    /// The metadata of the entry at `path` as scanned, provided it is still that version: one
    /// changed since the scan (the user saved it meanwhile) is left for the next run, never
    /// deleted or replaced under a description that is no longer true.
    fn meta_of(&self, root: u32, rel: &WirePath, path: &Path) -> Result<Meta, String> {
        let md = fs::symlink_metadata(path).map_err(|e| msg(path, e))?;
        match self.ctx(root)?.meta(rel) {
            Some(m) => {
                let same = match &m.kind {
                    Kind::File => {
                        md.is_file() && md.len() == m.size && scan::mtime_ns(&md) == m.mtime
                    }
                    Kind::Symlink(t) => fs::read_link(path)
                        .is_ok_and(|l| l.as_os_str().as_encoded_bytes() == t.as_bytes()),
                    Kind::Dir => md.is_dir(),
                    Kind::Special => true,
                };
                if same {
                    Ok(m.clone())
                } else {
                    Err(msg(path, "changed since the scan; left for the next run"))
                }
            }
            None => scan::describe(path, &md).map_err(|e| msg(path, e.as_str())),
        }
    }

    /// Takes an entry out of the tree: files and symlinks into the version store, empty
    /// directories removed. Gone already is fine.
    pub(super) fn remove(&self, root: u32, rel: &WirePath, deleted: bool) -> OpResult {
        let (_, path) = self.locate(root, rel)?;
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(msg(&path, e)),
        };
        if md.is_dir() {
            // Temps of a killed run are not the user's: they never keep a directory alive.
            if let Ok(list) = fs::read_dir(&path) {
                for e in list.flatten() {
                    if names::is_temp_name(e.file_name().as_encoded_bytes()) {
                        scan::remove_if_stale(&e.path());
                    }
                }
            }
            return fs::remove_dir(&path).map_err(|e| {
                if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                    msg(
                        &path,
                        "directory holds entries this sync did not expect; kept",
                    )
                } else {
                    msg(&path, e)
                }
            });
        }
        let meta = self.meta_of(root, rel, &path)?;
        let why = if deleted {
            Why::Deleted
        } else {
            Why::Overwritten
        };
        self.store()?
            .keep(&path, &meta, why, Take::Move)
            .map_err(|e| msg(&path, e))?;
        sync_parent(&path);
        Ok(())
    }

    /// Gives a conflict's losing version another name, keeping it in the store as well.
    pub(super) fn rename(&self, root: u32, rel: &WirePath, to: &WirePath) -> OpResult {
        let (_, path) = self.locate(root, rel)?;
        let (_, dest) = self.locate(root, to)?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(msg(&dest, "exists already; conflict copy not made"));
        }
        let meta = self.meta_of(root, rel, &path)?;
        if meta.kind != Kind::Dir {
            self.store()?
                .keep(&path, &meta, Why::Conflict, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
        fs::rename(&path, &dest).map_err(|e| msg(&path, e))?;
        sync_parent(&dest);
        Ok(())
    }

    /// Keeps the current versions of entries that copies are about to replace.
    pub(super) fn keep(&self, root: u32, rels: &[WirePath]) -> OpResult {
        for rel in rels {
            let (_, path) = self.locate(root, rel)?;
            match fs::symlink_metadata(&path) {
                Ok(md) if md.is_file() || md.file_type().is_symlink() => {}
                _ => continue,
            }
            let meta = self.meta_of(root, rel, &path)?;
            self.store()?
                .keep(&path, &meta, Why::Overwritten, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
        Ok(())
    }

    /// Copies a file this peer holds to another entry, verified against `digest`.
    pub(super) fn clone_local(
        &self,
        root: u32,
        from: &WirePath,
        rel: &WirePath,
        mode: u32,
        mtime: i64,
        digest: Digest,
    ) -> OpResult {
        let (_, src) = self.locate(root, from)?;
        let (base, path) = self.locate(root, rel)?;
        Self::ensure_parents(&base, rel)?;
        Self::refuse_directory(&path)?;
        let tmp = copy_to_temp(&src, &path, &digest)?;
        Self::install(tmp, &path, mode, mtime)
    }

    /// Marks a root as a single file: its other entries are siblings beside it.
    pub(super) fn siblings(&mut self, root: u32) -> OpResult {
        self.ctx_mut(root)?.siblings = true;
        Ok(())
    }

    /// Records what the client decided for some entries of a root.
    pub(super) fn records(&mut self, root: u32, set: Vec<Record>) -> OpResult {
        let ctx = self.ctx_mut(root)?;
        ctx.set.extend(set);
        Ok(())
    }

    /// Writes the root's new state: every entry as reported, but as decided where the client
    /// said so, and as before where an action failed or the entry could not be read.
    pub(super) fn commit(&mut self, root: u32) -> OpResult {
        let ctx = self.ctx_mut(root)?;
        if !ctx.dirty && ctx.set.is_empty() && !ctx.state.absorbs() {
            // An in-sync re-check: the state already says what the scan found.
            return self.prune_once();
        }
        let set = std::mem::take(&mut ctx.set);
        let new = next_records(ctx, set);
        let abs = ctx.abs.clone();
        ctx.state.save(new).map_err(|e| {
            msg(
                &abs,
                format!("cannot save sync state: {}", scan::io_msg(&e)).as_str(),
            )
        })?;
        self.prune_once()
    }

    /// Prunes kept versions, once a session.
    fn prune_once(&mut self) -> OpResult {
        if !self.pruned {
            self.pruned = true;
            if let Some(store) = &self.store {
                if let Err(e) = store.prune(self.retention) {
                    tracing::warn!("pruning kept versions: {e}");
                }
            }
        }
        Ok(())
    }

    /// The kept versions of a path and everything below it.
    pub(super) fn versions(&self, spec: &RootSpec) -> Result<Vec<Kept>, String> {
        let abs = self.resolve(spec)?;
        Ok(self
            .store
            .as_ref()
            .map(|s| s.list(&abs))
            .unwrap_or_default())
    }

    /// Puts a kept version back at `path`, keeping what is there now.
    pub(super) fn restore(&self, path: &WirePath, id: &str) -> OpResult {
        let path = path.as_path().to_path_buf();
        if !path.is_absolute()
            || crate::paths::check_rel(&WirePath(path.as_os_str().as_encoded_bytes()[1..].to_vec()))
                .is_err()
        {
            return Err(msg(&path, "refused: not a plain absolute path"));
        }
        let store = self.store()?;
        let kept = store
            .list(&path)
            .into_iter()
            .find(|k| k.id == id && k.path.as_path() == path)
            .ok_or_else(|| msg(&path, "no such kept version"))?;
        let obj = store
            .object_path(id)
            .ok_or_else(|| msg(&path, "no such kept version"))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(|e| msg(parent, e))?;
        Self::refuse_directory(&path)?;
        if let Ok(md) = fs::symlink_metadata(&path) {
            let now = scan::describe(&path, &md).map_err(|e| msg(&path, e.as_str()))?;
            store
                .keep(&path, &now, Why::Overwritten, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
        match &kept.meta.kind {
            Kind::Symlink(target) => super::write::install_symlink(&path, target, kept.meta.mtime),
            Kind::File => {
                let digest = kept.meta.digest.unwrap_or(Digest([0; 64]));
                let tmp = copy_to_temp(&obj, &path, &digest)?;
                Self::install(tmp, &path, kept.meta.mode, kept.meta.mtime)
            }
            _ => Err(msg(&path, "kept version is not a file or symlink")),
        }
    }
}

/// The root's records after this sync, in path order: every entry as reported, but as the
/// client decided (`set`) where the decided version arrived, and as before where an action
/// failed or the entry could not be read. Reports, state and decisions are each in path
/// order, so this is one pass beside the three.
fn next_records(ctx: &RootCtx, mut set: Vec<Record>) -> Vec<Record> {
    // Of two records sent for one path, the later one stands.
    set.reverse();
    sort_by_path(&mut set);
    let mut set = set.into_iter().peekable();
    let mut new = Vec::with_capacity(ctx.reported.len());
    // Decided entries the scan did not report: made by this sync (conflict copies).
    let mut created = Vec::new();
    let mut hint = 0;
    for (rel, rep) in ctx.reported.iter() {
        while let Some(r) = set.next_if(|r| r.rel < *rel) {
            created.push(r);
        }
        let old = ctx.state.get_near(rel, &mut hint);
        let rec = match (set.next_if(|r| r.rel == *rel), rep) {
            // Only what actually arrived: where the decided version is not on disk (its copy
            // failed), the old record stays and the next run tries again.
            (Some(r), _) if arrived(&ctx.abs, &r) => Some(r),
            (Some(_), _) | (None, Reported::AsRecorded | Reported::Unknown) => old.cloned(),
            (None, Reported::Held(h)) => Some(Record {
                rel: rel.clone(),
                meta: h.0.clone(),
                vv: h.1.clone().unwrap_or_default(),
            }),
        };
        new.extend(rec);
    }
    created.extend(set);
    let created = created.into_iter().filter(|r| arrived(&ctx.abs, r));
    // Records below unreadable directories were not reported: they stay, unless this sync
    // made something there.
    let mut at = 0;
    let kept = ctx
        .state
        .records()
        .filter(|r| !ctx.reported.contains_ordered(&r.rel, &mut at))
        .cloned();
    // Three runs in path order, merged by a stable sort; of equal paths the first pushed stays.
    let reported_end = new.len();
    new.extend(created.chain(kept));
    if new.len() > reported_end {
        sort_by_path(&mut new);
    }
    new
}

/// Whether the entry on disk is the version `r` records: same kind, and for files the same
/// size and mtime (copies set the master's) or else the same digest; symlinks the same target.
fn arrived(root: &Path, r: &Record) -> bool {
    let path = if r.rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(r.rel.as_path())
    };
    let md = fs::symlink_metadata(&path);
    match (&r.meta, md) {
        (None, Err(e)) => e.kind() == io::ErrorKind::NotFound,
        (None, Ok(_)) | (Some(_), Err(_)) => false,
        (Some(m), Ok(md)) => match &m.kind {
            Kind::Dir => md.is_dir(),
            Kind::Symlink(t) => {
                md.file_type().is_symlink()
                    && fs::read_link(&path)
                        .is_ok_and(|l| l.as_os_str().as_encoded_bytes() == t.as_bytes())
            }
            Kind::File if md.is_file() && md.len() == m.size => {
                scan::mtime_ns(&md) == m.mtime
                    || fs::File::open(&path)
                        .and_then(|mut f| scan::hash_pipelined(&mut f))
                        .is_ok_and(|d| Some(d) == m.digest)
            }
            _ => false,
        },
    }
}

/// The entry to report for what the walk found, given the remembered record.
fn versioned(found: Found, base: Option<&Record>, key: u64, now: u64) -> (Entry, Reported) {
    let rel = found.rel;
    match found.state {
        Err(e) => (
            Entry {
                rel,
                state: Err(e),
                vv: base.map(|b| b.vv.clone()),
                changed: false,
            },
            Reported::Unknown,
        ),
        Ok(meta) if meta.kind == Kind::Special => (
            Entry {
                rel,
                state: Ok(Some(meta)),
                vv: None,
                changed: false,
            },
            Reported::Unknown,
        ),
        Ok(meta) => {
            let (vv, changed) = match base {
                None => (None, true),
                Some(b) if Content::of(b.meta.as_ref()) == Content::of(Some(&meta)) => {
                    (Some(b.vv.clone()), false)
                }
                Some(b) => (Some(b.vv.bumped(key, now)), true),
            };
            let rep = match base {
                Some(b) if !changed && b.meta.as_ref() == Some(&meta) => Reported::AsRecorded,
                _ => Reported::Held(Box::new((Some(meta.clone()), vv.clone()))),
            };
            (
                Entry {
                    rel,
                    state: Ok(Some(meta)),
                    vv,
                    changed,
                },
                rep,
            )
        }
    }
}

/// Copies `src` into a locked temp file beside `dest`, checking the bytes against `digest`.
fn copy_to_temp(
    src: &Path,
    dest: &Path,
    digest: &Digest,
) -> Result<tempfile::NamedTempFile, String> {
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let mut tmp = super::temp_beside(dest)?;
    let mut f = fs::File::open(src).map_err(|e| msg(src, e))?;
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| msg(src, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(|e| msg(dir, e))?;
    }
    if Digest::from_hasher(hasher) != *digest {
        return Err(msg(src, "changed since the scan; not copied"));
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_rec(rel: &str, n: u64) -> Record {
        let meta = Meta {
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            mtime: 0,
            digest: None,
        };
        Record {
            rel: WirePath::from(rel),
            meta: Some(meta),
            vv: Vv(vec![(1, n)]),
        }
    }

    #[test]
    fn next_records_take_what_arrived_and_keep_the_rest() {
        let tree = tempfile::tempdir().unwrap();
        let states = tempfile::tempdir().unwrap();
        for d in ["ok", "made", "x/under"] {
            fs::create_dir_all(tree.path().join(d)).unwrap();
        }
        let mut state = RootState::load(Some(states.path()), tree.path()).unwrap();
        let old = ["a", "f", "u", "x/under", "y"].map(|r| dir_rec(r, 1));
        state.save(old.to_vec()).unwrap();
        let mut reported = Reports::default();
        let held = |n| Reported::Held(Box::new((dir_rec("", n).meta, Some(Vv(vec![(1, n)])))));
        for (rel, rep) in [
            ("ok", held(2)),
            ("a", Reported::AsRecorded),
            ("h", held(2)),
            ("f", held(2)),
            ("u", Reported::Unknown),
            ("u2", Reported::Unknown),
        ] {
            reported.push(WirePath::from(rel), rep);
        }
        reported.sort();
        let gone = Record {
            meta: None,
            ..dir_rec("u", 3)
        };
        let set = vec![
            dir_rec("ok", 3),
            dir_rec("nope", 3), // made by this sync, but not on disk: dropped
            dir_rec("made", 3),
            dir_rec("f", 3), // its copy failed: the old record stays
            gone.clone(),
            dir_rec("x/under", 3), // beats the record kept below an unread directory
            dir_rec("ok", 4),      // sent twice: the later stands
        ];
        let ctx = RootCtx {
            abs: tree.path().to_path_buf(),
            siblings: false,
            excludes: Excludes::none(),
            dirty: true,
            state,
            reported,
            set: Vec::new(),
            held_briefs: None,
            said: None,
            watchable: false,
        };
        let got = next_records(&ctx, set);
        let want = vec![
            dir_rec("a", 1),
            dir_rec("f", 1),
            dir_rec("h", 2),
            dir_rec("made", 3),
            dir_rec("ok", 4),
            gone,
            dir_rec("x/under", 3),
            dir_rec("y", 1),
        ];
        assert_eq!(got, want);
    }
}
