//! Scanning against the remembered state: each entry reported with its version, in full or in
//! brief (or a whole root summed up), the full entries behind briefs on request, and a re-check
//! answered from memory where a watch vouches that nothing changed since the last walk.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::emit::Emitter;
use super::probe::Holds;
use super::recheck::{self, Asked, FileId, LastWalk, Marks, Now, RootId};
use super::reports::{Cursor, Reported};
use super::root::{self, RootCtx};
use super::{msg, watch, Server};
use crate::cache::extra::ExtraCache;
use crate::cache::DigestCache;
use crate::exclude::Excludes;
use crate::model::{next_version, now_ms, Kind, Record};
use crate::paths::{RootSpec, WirePath};
use crate::proto::{write_frame, Emptied, Entry, FrameError, Response, ENTRY_BATCH, MAX_WARNING};
use crate::scan::{self, Found};
use crate::state::RootState;

fn below_any(rel: &WirePath, dirs: &[WirePath]) -> bool {
    dirs.iter().any(|d| rel != d && rel.below(d).is_some())
}

impl Server {
    /// Scans every root, reporting each entry with its version against the remembered state,
    /// then the remembered entries that are gone.
    pub(super) fn scan<W: Write>(
        &mut self,
        roots: &[RootSpec],
        excludes: &[String],
        brief: bool,
        tidy: bool,
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
        self.finish_dirs();
        self.roots.clear();
        // synk's own state and cache, left out of any root that holds them.
        let own: Vec<PathBuf> = [
            self.state_dir.clone(),
            self.cache_dir.as_ref().map(|d| d.join("synk")),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, spec) in roots.iter().enumerate() {
            let index = i as u32;
            let loaded = self.resolve(spec).and_then(|abs| {
                let own = root::own_below(&abs, &own).map_err(|e| format!("{spec}: {e}"))?;
                let ex = Excludes::new(&abs, excludes)
                    .map_err(|e| format!("{spec}: {e}"))?
                    .with_own(own);
                RootState::load(self.state_dir.as_deref(), &abs)
                    .map(|st| (abs, st, ex))
                    .map_err(|e| format!("{spec}: {}", scan::io_msg(&e)))
            });
            let (abs, mut state, excludes) = match loaded {
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
            for moved in state.moved_aside() {
                write_frame(w, &Response::Warning(moved_aside(&abs, &moved)))?;
            }
            let mut ctx = RootCtx::new(abs, excludes, state);
            (ctx.meta, ctx.as_root) = (self.meta, self.root);
            let res = self.scan_one(index, &mut ctx, brief, tidy, w);
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
        tidy: bool,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let abs = ctx.abs.clone();
        // Once a session, and never on a dry run (`tidy` off): the probe writes a temp file.
        if let Some(known) = self.probed.borrow().get(&abs) {
            ctx.holds.set(Some(*known));
        }
        let holds = if tidy {
            let h = ctx.holds();
            if let Some(h) = ctx.holds.get() {
                self.probed.borrow_mut().insert(abs.clone(), h);
            }
            h
        } else {
            ctx.holds.get().unwrap_or_default()
        };
        // The header goes out with the first entries, so a failure on the root itself can
        // still replace it.
        let header = Response::Root {
            index,
            result: Ok(WirePath::from_path(&abs)),
        };
        // Held briefs go beside the caches (the temp directory may be memory).
        let spill = self.cache_dir.as_ref().map(|d| d.join("synk"));
        let mut out = Emitter::new(w, header, brief, spill);
        let now = now_ms();
        let key = self.key;
        let mut unknown_dirs: Vec<WirePath> = Vec::new();
        let mut cache = DigestCache::for_root(self.cache_dir.as_deref(), &abs);
        let state = &ctx.state;
        let reported = &mut ctx.reported;
        let excludes = &ctx.excludes;
        let mut dirty = false;
        let mut hint = 0;
        let (opts, as_root) = (self.meta, self.root);
        let extra = opts.xattrs || opts.acls || (opts.owner && as_root);
        let mut xcache = if extra {
            ExtraCache::for_root(self.cache_dir.as_deref(), &abs, &opts, as_root)
        } else {
            ExtraCache::at(None, &opts, as_root)
        };
        let walk = scan::WalkOpts {
            tidy,
            nfc: holds.normalizes,
        };
        let walked = scan::scan_root(&abs, &mut cache, excludes, walk, &mut |mut found: Found| {
            if !opts.links {
                if let Ok(m) = &mut found.state {
                    m.extra.link = None;
                }
            }
            if extra {
                with_extra(&abs, &mut found, (&opts, as_root), &mut xcache);
            }
            let base = state.get_near(&found.rel, &mut hint);
            // A record found leaves the hint just past it.
            let record = base.as_ref().map(|_| hint - 1);
            let stamp = found.stamp.map_or(0, |s| s.id());
            let (entry, rep) = versioned(found, base.as_ref(), key, now, &holds, (&opts, as_root));
            dirty |= entry.changed;
            if matches!(rep, Reported::Unknown) && entry.state.is_err() {
                unknown_dirs.push(entry.rel.clone());
            }
            reported.report(&entry.rel, rep, record, stamp);
            out.push(entry);
        });
        reported.sort();
        cache.save();
        xcache.save();
        let mounts = match walked {
            Ok(w) => {
                ctx.watchable = !w.other_device;
                *ctx.links.get_mut() = w.links.into();

                if w.setid > 0 {
                    out.note(format!(
                        "{}: {} entries carry setuid or setgid bits; synk neither compares nor copies them",
                        abs.display(),
                        w.setid
                    ))?;
                }
                w.mounts
            }
            Err(e) => {
                return out.replace(Response::Root {
                    index,
                    result: Err(msg(&abs, e)),
                })
            }
        };
        // Remembered entries that are gone: deleted here since the last sync, or tombstones.
        // Nothing below an unreadable directory is taken as deleted.
        let mut at = Cursor::default();
        let mut gone = Vec::new();
        // A record the walk reported is passed over undecoded: in a tree in sync, every one.
        let seen = &*reported;
        let unseen = state.records_unless(|i, rel| seen.has(i, rel, &mut at));
        for (i, r) in unseen {
            let is_dir = matches!(&r.meta, Some(m) if m.kind == Kind::Dir);
            if below_any(&r.rel, &unknown_dirs) || excludes.excludes(&r.rel, is_dir) {
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
            gone.push((i, r.rel.clone(), rep));
            out.push(Entry {
                rel: r.rel,
                state: Ok(None),
                vv: Some(vv),
                changed: gone_now,
            });
        }
        if !gone.is_empty() {
            for (i, rel, rep) in gone {
                reported.report(&rel, rep, Some(i), 0);
            }
            reported.sort();
        }
        ctx.dirty = dirty;
        ctx.state.see_mounts(mounts);
        (ctx.held_briefs, ctx.said) = out.finish()?.map(|s| (s.held, s.said)).unzip();
        // What the client needs to know of names and links here, before it decides; said
        // again with the rest where the scan is answered from memory.
        let told = crate::proto::encode(&Response::Holds(Holds {
            as_root: self.root,
            ..holds
        }))?;
        w.write_all(&told)?;
        if let Some(said) = &mut ctx.said {
            said.extend_from_slice(&told);
        }
        let emptied = emptied_mounts(ctx);
        if !emptied.is_empty() {
            // Their deletions are recorded only where the client confirms them.
            ctx.guarded = emptied.iter().map(|e| e.rel.clone()).collect();
            write_frame(w, &Response::Emptied(emptied))?;
        }
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
        match self.ctx(root) {
            Ok(ctx) => send_held(ctx, rels, true, w),
            Err(e) => write_frame(w, &Response::Failed(e)),
        }
    }

    /// Answers [`crate::proto::Request::Briefs`]: the briefs the last scan of root `root`
    /// summed up, as it would have sent them, then the full entries of those of `also` it
    /// summed up (others are left out: it does not hold them), then `Done`.
    pub(super) fn held_briefs<W: Write>(
        &mut self,
        root: u32,
        also: Vec<WirePath>,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let held = self.ctx_mut(root).and_then(|ctx| {
            ctx.held_briefs.take().ok_or_else(|| {
                msg(
                    &ctx.abs,
                    "no briefs held back in the last scan (asked twice?)",
                )
            })
        });
        let mut frames = match held {
            Ok(frames) => frames,
            Err(e) => return write_frame(w, &Response::Failed(e)),
        };
        frames.send_to(w)?;
        match self.ctx(root) {
            Ok(ctx) => send_held(ctx, also, false, w),
            Err(e) => write_frame(w, &Response::Failed(e)),
        }
    }
}

/// Sends the full entries of `rels` that the last scan of `ctx` sent in brief or summed up, in
/// batches, then `Done`. A path it did not report ends the answer with `Failed` where `strict`,
/// and is left out where not.
fn send_held<W: Write>(
    ctx: &RootCtx,
    rels: Vec<WirePath>,
    strict: bool,
    w: &mut W,
) -> Result<(), FrameError> {
    let mut batch = Vec::with_capacity(ENTRY_BATCH.min(rels.len()));
    for rel in rels {
        let Some((meta, vv)) = ctx.held(&rel) else {
            if strict {
                let e = format!("{rel:?}: not in brief in the last scan");
                return write_frame(w, &Response::Failed(e));
            }
            continue;
        };
        // Briefs are of entries unchanged since the last sync, or new ones without history.
        batch.push(Entry {
            state: Ok(meta),
            changed: vv.is_none(),
            vv,
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

/// The warning that a root's state file (or one it would absorb) was moved aside.
fn moved_aside(root: &std::path::Path, m: &crate::state::Moved) -> String {
    let text = format!(
        "{}: unreadable sync state ({}); moved it aside to {}. {} is synced as if for the first time here: nothing is deleted because of it, and every version replaced is kept",
        m.file.display(),
        m.why,
        m.to.display(),
        root.display()
    );
    let mut end = text.len().min(MAX_WARNING);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Directories below the root that were mount points at the last sync (or are now), with
/// nothing below them now though more than one entry was recorded there: an unmounted disk,
/// not the user deleting everything on it (as the root's own guard in the decision).
fn emptied_mounts(ctx: &RootCtx) -> Vec<Emptied> {
    let mut candidates: Vec<&WirePath> = ctx.state.mounts().iter().collect();
    // The walk's own mount points are in the state's next record (see_mounts): ask it.
    candidates.extend(ctx.state.seen_mounts());
    candidates.retain(|m| !m.is_empty());
    if candidates.is_empty() || !ctx.dirty {
        return Vec::new();
    }
    candidates.sort();
    candidates.dedup();
    // Per candidate: entries held below it now, and entries gone below it since the sync.
    let mut held = vec![0u64; candidates.len()];
    let mut gone = vec![0u64; candidates.len()];
    for (rel, rep, index) in ctx.reported.iter(&ctx.state) {
        let now = match rep.as_ref() {
            Reported::AsRecorded => index
                .map(|i| ctx.state.record_at(i))
                .or_else(|| ctx.state.get(&rel))
                .is_some_and(|r| r.meta.is_some()),
            Reported::Held(h) if h.0.is_none() => {
                // Deleted since the sync (a remembered deletion is reported as recorded).
                for (i, m) in candidates.iter().enumerate() {
                    if rel.below(m).is_some_and(|b| !b.is_empty()) {
                        gone[i] += 1;
                    }
                }
                continue;
            }
            Reported::Held(_) | Reported::Unknown => true,
        };
        if now {
            for (i, m) in candidates.iter().enumerate() {
                if rel.below(m).is_some_and(|b| !b.is_empty()) {
                    held[i] += 1;
                }
            }
        }
    }
    candidates
        .into_iter()
        .enumerate()
        .filter(|(i, _)| held[*i] == 0 && gone[*i] > 1)
        .map(|(i, m)| Emptied {
            rel: m.clone(),
            held: gone[i],
        })
        .collect()
}

/// Adds to an entry found its xattrs, ACLs and owner, as `opts` asks of a serve run as root
/// or not (an error reading them makes the entry one that could not be read: nothing is
/// decided on half of it). What `cache` knows of an entry with its stamp is not read again;
/// what is known of it now is noted for the next scan (entries come in path order).
fn with_extra(
    abs: &std::path::Path,
    found: &mut Found,
    (opts, root): (&crate::extra::MetaOpts, bool),
    cache: &mut ExtraCache,
) {
    let Ok(meta) = &mut found.state else { return };
    // Specials carry nothing that is read.
    let stamp = found.stamp.filter(|_| meta.kind != Kind::Special);
    let known = stamp.and_then(|s| cache.lookup(&found.rel, &s));
    let read = known.map(Ok).unwrap_or_else(|| {
        let path = if found.rel.is_empty() {
            abs.to_path_buf()
        } else {
            abs.join(found.rel.as_path())
        };
        crate::extra::read(&path, &meta.kind, opts, root)
    });
    if let (Ok(e), Some(s)) = (&read, stamp) {
        cache.note(&found.rel, s, e);
    }
    match read {
        Ok(e) => {
            // The walk found the hard links; the attributes are read here.
            let link = meta.extra.link.take();
            meta.extra = crate::model::Extra { link, ..e };
        }
        Err(e) => {
            found.state = Err(format!(
                "cannot read extended attributes: {}",
                scan::io_msg(&e)
            ))
        }
    }
}

/// `found` with what this serve does not read (an option turned it off, or only root reads
/// it) taken as recorded, as what a filesystem cannot hold is: never a change here, and the
/// entry stays as recorded, so its brief matches the other peers'.
fn as_unread(
    found: &mut crate::model::Meta,
    recorded: &crate::model::Meta,
    opts: &crate::extra::MetaOpts,
    root: bool,
) {
    if std::mem::discriminant(&found.kind) != std::mem::discriminant(&recorded.kind) {
        return;
    }
    let e = &mut found.extra;
    if !(opts.owner && root) {
        e.owner = recorded.extra.owner.clone();
    }
    if !opts.xattrs {
        e.xattrs = recorded.extra.xattrs;
    }
    if !(opts.xattrs && root) {
        e.sys = recorded.extra.sys;
    }
    if !opts.acls {
        e.acl = recorded.extra.acl;
    }
}

/// The entry to report for what the walk found, given the remembered record.
fn versioned(
    found: Found,
    base: Option<&Record>,
    key: u64,
    now: u64,
    holds: &Holds,
    reads: (&crate::extra::MetaOpts, bool),
) -> (Entry, Reported) {
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
        Ok(mut meta) => {
            if let Some(old) = base.and_then(|b| b.meta.as_ref()) {
                holds.as_held(&mut meta, old);
                as_unread(&mut meta, old, reads.0, reads.1);
            }
            let ctime_ms = found.stamp.map_or(0, |s| s.ctime.max(0) as u64 / 1_000_000);
            let (vv, changed) = match base {
                None => (None, true),
                Some(b) => {
                    let (vv, changed) = next_version(b, &meta, key, now, ctime_ms);
                    (Some(vv), changed)
                }
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::model::{Retention, Vv};
    use crate::proto::{encode, read_frame, Request};
    use crate::state;

    /// A serve of `home` with its state in `home/state`, over `reqs` (after the handshake):
    /// its answers.
    fn converse(home: &Path, reqs: &[Request]) -> Vec<Response> {
        let hello = Request::Hello {
            magic: crate::proto::MAGIC,
            protocol: crate::proto::PROTOCOL_VERSION,
            version: "test".into(),
        };
        let mut input = encode(&hello).unwrap();
        for r in reqs {
            input.extend(encode(r).unwrap());
        }
        let mut server = Server::new(Some(home.to_path_buf()));
        server.with_state(Some(home.join("state")));
        let mut out = Vec::new();
        server.serve(&mut &input[..], &mut out).unwrap();
        let mut r = &out[..];
        let mut resps = Vec::new();
        while let Ok(resp) = read_frame::<Response, _>(&mut r) {
            resps.push(resp);
        }
        assert!(matches!(resps.remove(0), Response::Hello { .. }));
        resps
    }

    fn scan() -> Request {
        Request::Scan {
            roots: vec![RootSpec::Home(WirePath::from("notes"))],
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: true,
            tidy: true,
            lock: true,
            meta: crate::extra::MetaOpts::default(),
        }
    }

    fn commit() -> Request {
        Request::Commit { root: 0 }
    }

    fn emptied(resps: &[Response]) -> Vec<Emptied> {
        resps
            .iter()
            .filter_map(|r| match r {
                Response::Emptied(e) => Some(e.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn records(home: &Path) -> state::RootState {
        state::RootState::load(Some(&home.join("state")), &home.join("notes")).unwrap()
    }

    #[test]
    fn an_emptied_mount_point_is_told_and_its_records_kept_until_confirmed() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let notes = h.join("notes");
        fs::create_dir_all(notes.join("m/sub")).unwrap();
        for f in ["m/a", "m/sub/b", "x"] {
            fs::write(notes.join(f), f).unwrap();
        }
        converse(h, &[scan(), commit()]);
        // As if the last walk had found a disk mounted at m.
        let mut st = records(h);
        st.see_mounts(vec![WirePath::from("m")]);
        st.save(st.records().collect()).unwrap();
        assert_eq!(records(h).mounts(), [WirePath::from("m")]);

        // Unmounted: m is an empty directory now.
        fs::remove_dir_all(notes.join("m")).unwrap();
        fs::create_dir(notes.join("m")).unwrap();
        let resps = converse(h, &[scan(), commit()]);
        let want = Emptied {
            rel: WirePath::from("m"),
            held: 3,
        };
        assert_eq!(emptied(&resps), std::slice::from_ref(&want));
        // Committed as reported, but below m as before: held entries, still a mount point.
        let st = records(h);
        for rel in ["m/a", "m/sub", "m/sub/b"] {
            let r = st.get(&WirePath::from(rel)).unwrap();
            assert!(r.meta.is_some(), "{rel}");
        }
        assert_eq!(st.mounts(), [WirePath::from("m")]);
        // The next run says so again; a missing m too.
        fs::remove_dir(notes.join("m")).unwrap();
        let resps = converse(h, &[scan(), commit()]);
        assert_eq!(emptied(&resps), [want]);

        // Confirmed: the client sends the deletions' records; they stand, and m is a mount
        // point no more.
        let gone = |rel: &str| crate::model::Record {
            rel: WirePath::from(rel),
            meta: None,
            vv: Vv(vec![(9, 9)]),
        };
        let set = ["m", "m/a", "m/sub", "m/sub/b"].map(gone).to_vec();
        converse(h, &[scan(), Request::Records { root: 0, set }, commit()]);
        let st = records(h);
        assert!(st.get(&WirePath::from("m/a")).unwrap().meta.is_none());
        assert!(st.mounts().is_empty());
        let resps = converse(h, &[scan()]);
        assert!(emptied(&resps).is_empty());
    }

    #[test]
    fn a_commit_that_changes_no_record_keeps_what_the_scan_reported() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        fs::create_dir_all(h.join("notes")).unwrap();
        for f in ["a", "b"] {
            fs::write(h.join("notes").join(f), f).unwrap();
        }
        converse(h, &[scan(), commit()]);
        // A record sent as the state has it: the commit writes nothing, and what the scan
        // reported (b as recorded) still answers the client.
        let same = records(h).get(&WirePath::from("a")).unwrap();
        let resps = converse(
            h,
            &[
                scan(),
                Request::Records {
                    root: 0,
                    set: vec![same],
                },
                commit(),
                Request::Detail {
                    root: 0,
                    rels: vec![WirePath::from("b")],
                },
            ],
        );
        assert!(
            !resps.iter().any(|r| matches!(r, Response::Failed(_))),
            "{resps:?}"
        );
        let b_in_full = resps.iter().any(|r| {
            matches!(r, Response::Entries(es) if es.iter().any(|e| e.rel == WirePath::from("b")))
        });
        assert!(b_in_full, "{resps:?}");
    }

    #[test]
    fn attributes_known_by_their_stamp_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "x").unwrap();
        let store = dir.path().join("x.extras");
        let opts = crate::extra::MetaOpts::default();
        let found = || {
            let mut got = None;
            let (mut digests, none) = (DigestCache::disabled(), Excludes::none());
            scan::scan_root(&f, &mut digests, &none, Default::default(), &mut |e| {
                got = Some(e)
            })
            .unwrap();
            let mut got = got.unwrap();
            got.state.as_mut().unwrap().extra.link = Some(WirePath::from("g"));
            got
        };
        let extra_of = |found: &Found| found.state.as_ref().unwrap().extra.clone();
        // Not what the file holds: where it is reported, the cache answered.
        let planted = crate::model::Extra {
            xattrs: Some([7; 16]),
            ..Default::default()
        };
        let first = found();
        let mut c = ExtraCache::at(Some(store.clone()), &opts, false).settled();
        c.note(&first.rel, first.stamp.unwrap(), &planted);
        c.save();
        let mut hit = first.clone();
        let mut c = ExtraCache::at(Some(store.clone()), &opts, false).settled();
        with_extra(&f, &mut hit, (&opts, false), &mut c);
        c.save();
        let linked = crate::model::Extra {
            link: Some(WirePath::from("g")),
            ..planted.clone()
        };
        assert_eq!(extra_of(&hit), linked, "the walk's hard link is kept");
        // Its ctime moved: read again, and what is read is kept for the next scan.
        std::thread::sleep(std::time::Duration::from_millis(30));
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let mut changed = found();
        let mut c = ExtraCache::at(Some(store.clone()), &opts, false).settled();
        with_extra(&f, &mut changed, (&opts, false), &mut c);
        let read = crate::extra::read(&f, &Kind::File, &opts, false).unwrap();
        assert_ne!(read.xattrs, planted.xattrs);
        let want = crate::model::Extra {
            link: Some(WirePath::from("g")),
            ..read.clone()
        };
        assert_eq!(extra_of(&changed), want);
        c.save();
        let mut c = ExtraCache::at(Some(store), &opts, false);
        assert_eq!(c.lookup(&changed.rel, &changed.stamp.unwrap()), Some(read));
    }

    #[test]
    fn no_mount_point_no_guard() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let notes = h.join("notes");
        fs::create_dir_all(notes.join("m")).unwrap();
        fs::write(notes.join("m/a"), "a").unwrap();
        fs::write(notes.join("m/b"), "b").unwrap();
        converse(h, &[scan(), commit()]);
        fs::remove_file(notes.join("m/a")).unwrap();
        fs::remove_file(notes.join("m/b")).unwrap();
        let resps = converse(h, &[scan(), commit()]);
        assert!(emptied(&resps).is_empty());
        let st = records(h);
        assert!(st.get(&WirePath::from("m/a")).unwrap().meta.is_none());
    }

    #[test]
    fn a_damaged_state_file_is_warned_of_once_and_the_root_scanned_afresh() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        fs::create_dir_all(h.join("notes")).unwrap();
        fs::write(h.join("notes/a"), "a").unwrap();
        converse(h, &[scan(), commit()]);
        let file = state::file_for(&h.join("state"), &h.join("notes"));
        let mut bytes = fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&file, bytes).unwrap();
        let resps = converse(h, &[scan(), commit()]);
        let warnings: Vec<&String> = resps
            .iter()
            .filter_map(|r| match r {
                Response::Warning(w) => Some(w),
                _ => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{resps:?}");
        let moved = format!("{}.corrupt-", file.display());
        assert!(
            warnings[0].starts_with(&file.display().to_string()),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains(&moved), "{}", warnings[0]);
        assert!(warnings[0].len() <= MAX_WARNING);
        // No history: every entry is new to this peer.
        let entries: Vec<&Entry> = resps
            .iter()
            .filter_map(|r| match r {
                Response::Entries(e) => Some(e),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(entries.iter().all(|e| e.vv.is_none()), "{entries:?}");
        let resps = converse(h, &[scan()]);
        assert!(!resps.iter().any(|r| matches!(r, Response::Warning(_))));
    }
}
