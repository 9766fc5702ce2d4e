//! Committing a root's new state: the records the client decided, taken only where the
//! decided version arrived on disk, then pruning kept versions once a session.

use rustix::fs::FileType;
use std::path::Path;

use super::reports::{Cursor, Reported, Reports};
use super::root::RootCtx;
use super::stage::recordable;
use super::{msg, OpResult, Server};
use crate::beneath::{kind_of, Expect, Stamp};
use crate::model::{Kind, Record};
use crate::paths::WirePath;
use crate::scan;
use crate::state::{Records, Reuse};
use std::cmp::Ordering;

impl Server {
    /// Records what the client decided for some entries of a root.
    pub(super) fn records(&mut self, root: u32, set: Vec<Record>) -> OpResult {
        let ctx = self.ctx_mut(root)?;
        // Kept encoded: a first sync of a million entries sends a record for each.
        for r in &set {
            ctx.set.push(r);
        }
        Ok(())
    }

    /// Writes the root's new state: every entry as reported, but as decided where the client
    /// said so, and as before where an action failed or the entry could not be read.
    pub(super) fn commit(&mut self, root: u32) -> OpResult {
        // Directories get their modes and times once filled, before the state says so.
        self.finish_dirs();
        let one_fs = self.one_filesystem(root);
        let ctx = self.ctx_mut(root)?;
        if ctx.unsynced.take() {
            // Copies placed without a flush each: one flush for all, before the state says so.
            let dir = if ctx.abs.is_dir() {
                ctx.abs.as_path()
            } else {
                ctx.abs.parent().unwrap_or(Path::new("/"))
            };
            if let Err(e) = super::stage::flush(dir, one_fs) {
                ctx.unflushed = Some(e);
            }
        }
        if let Some(e) = &ctx.unflushed {
            // Its commit may come right behind the cleanup, unanswered yet.
            return Err(format!("{e}; sync state not saved, so the next run copies again").into());
        }
        if !ctx.dirty && ctx.set.is_empty() && !ctx.state.must_write() {
            // An in-sync re-check: the state already says what the scan found.
            self.prune_once();
            return Ok(());
        }
        // Named once: at the root's first sync on that filesystem.
        if ctx.state.is_empty() {
            if let Some(lacks) = ctx.holds().lacks() {
                let line = format!(
                    "{}: its filesystem keeps no {lacks}; modes and times stay as synced there and are never taken as changes, names that would be one there are reported and never overwrite each other",
                    ctx.abs.display()
                );
                self.warnings.push(line);
            }
        }
        let ctx = self.ctx_mut(root)?;
        let set = std::mem::take(&mut ctx.set);
        let new = next_records(ctx, set);
        let abs = ctx.abs.clone();
        let replaced = ctx.state.save_records(new).map_err(|e| {
            msg(
                &abs,
                format!("cannot save sync state: {}", scan::io_msg(&e)).as_str(),
            )
        })?;
        if replaced {
            // The reports name entries by the index of their record among those just
            // replaced: until the next scan nothing goes by them (a write finds nothing
            // expected in its place, so it replaces nothing; a second commit records only what
            // the state says now).
            ctx.reported = Reports::default();
        }
        self.prune_once();
        Ok(())
    }

    /// Prunes kept versions, once a session.
    fn prune_once(&mut self) {
        if !std::mem::replace(&mut self.pruned, true) {
            self.prune_store();
        }
    }

    /// Prunes kept versions as the session's retention says; what it found to tell goes with
    /// the next answer.
    pub(super) fn prune_store(&mut self) {
        if let Some(store) = &self.store {
            match store.prune(self.retention) {
                Ok(done) if done.rebuilt => self.warnings.push(format!(
                    "{}: the index of kept versions was damaged: rebuilt from what could be read and the versions themselves ({} found again); nothing pruned this time",
                    store.dir().display(),
                    done.found
                )),
                Ok(_) => {}
                Err(e) => tracing::warn!("pruning kept versions: {e}"),
            }
        }
    }
}

/// The root's records after this sync, in path order: every entry as reported, but as the
/// client decided (`set`) where the decided version arrived, and as before where an action
/// failed or the entry could not be read. Reports, state and decisions are each in path
/// order, so this is one pass beside the three. A decided record is taken where it lies in
/// `set` (a first sync sends one for every entry: no second copy of them); the others are
/// encoded as they are taken.
fn next_records(ctx: &RootCtx, mut set: Records) -> Records {
    // Of two records sent for one path, the later one stands.
    set.settle_keeping_last();
    let mut new = set.reuse();
    let mut next = 0;
    // Decided entries the scan did not report (made by this sync: conflict copies, every
    // entry of a first sync to an empty peer): no report has their paths.
    let created = |i: usize, new: &mut Reuse| {
        let r = new.from().get(i);
        if recordable(&r) && arrived(ctx, &r) {
            new.take(i);
        }
    };
    let mut hint = 0;
    for (rel, rep, _) in ctx.reported.iter(&ctx.state) {
        while new.from().cmp_at(next, rel.as_bytes()) == Some(Ordering::Less) {
            created(next, &mut new);
            next += 1;
        }
        let decided = new.from().is_at(next, &rel).then_some(next);
        next += usize::from(decided.is_some());
        let held = match (decided.map(|i| (i, new.from().get(i))), rep.as_ref()) {
            // Only what actually arrived: where the decided version is not on disk (its copy
            // failed), the old record stays and the next run tries again.
            (Some((i, r)), _) if recordable(&r) && arrived(ctx, &r) => {
                new.take(i);
                continue;
            }
            (Some(_), _) | (None, Reported::AsRecorded | Reported::Unknown) => None,
            // Gone below an emptied mount point, and not decided: as before (see `guarded`).
            (None, Reported::Held(h)) if h.0.is_none() && guarded(ctx, &rel) => None,
            (None, Reported::Held(h)) => Some(h),
        };
        match held {
            Some(h) => new.push(&Record {
                rel,
                meta: h.0.clone(),
                vv: h.1.clone().unwrap_or_default(),
            }),
            // The old record stays: decoded only here.
            None => {
                if let Some(r) = ctx.state.get_near(&rel, &mut hint) {
                    new.push(&r);
                }
            }
        }
    }
    while next < new.from().len() {
        created(next, &mut new);
        next += 1;
    }
    // Records below unreadable directories were not reported: they stay, unless this sync
    // made something there.
    let mut at = Cursor::default();
    let reported = &ctx.reported;
    let kept = ctx
        .state
        .records_unless(move |i, rel| reported.has(i, rel, &mut at))
        .map(|(_, r)| r);
    // Two runs in path order (reported and created, whose paths differ, then kept), merged
    // by a stable sort of where each begins: of equal paths the first taken stays.
    for r in kept {
        new.push(&r);
    }
    new.finish()
}

/// Whether `rel` is at or below one of the root's emptied mount points.
fn guarded(ctx: &RootCtx, rel: &WirePath) -> bool {
    ctx.guarded.iter().any(|m| rel.below(m).is_some())
}

/// Whether the entry on disk is the version `r` records, by what this session knows of it,
/// never by size and mtime alone: a file this session placed must still carry the stamp it
/// had in place; one it did not write must still be the very file the scan saw (same stamp)
/// with the digest the record names. A directory must be one; a symlink must point where the
/// record says; a deletion must be gone.
fn arrived(ctx: &RootCtx, r: &Record) -> bool {
    let at = match ctx.at(&r.rel, false) {
        Ok(at) => at,
        // A directory on the way is gone too: so is a deleted entry (a read, never a write).
        Err(_) => {
            let path = ctx.abs.join(r.rel.as_path());
            return r.meta.is_none()
                && std::fs::symlink_metadata(path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        }
    };
    let st = match at.lstat() {
        Ok(st) => st,
        Err(_) => return false,
    };
    let Some(m) = &r.meta else {
        return st.is_none();
    };
    let Some(st) = st else {
        return false;
    };
    let kind = kind_of(&st);
    let holds = ctx.holds();
    // A mode or mtime the serve could not set (a directory owned by another user) is not
    // recorded as set: the next run would take the old value for a change of this peer's.
    let same_mode = !holds.modes || st.st_mode & scan::MODE_BITS == m.mode & scan::MODE_BITS;
    let found = match &m.kind {
        Kind::Dir => {
            kind == FileType::Directory
                && same_mode
                && holds.same_time(Stamp::of(&st).mtime, m.mtime)
        }
        Kind::Symlink(t) => {
            kind == FileType::Symlink && at.read_link().is_ok_and(|l| l == t.as_bytes())
        }
        Kind::File if kind == FileType::RegularFile => {
            let now = Stamp::of(&st);
            if now.size != m.size || !same_mode || !holds.same_time(now.mtime, m.mtime) {
                return false;
            }
            if let Some(placed) = ctx.placed_id(&r.rel) {
                return placed == now.id();
            }
            let seen = match ctx.expect(&r.rel) {
                Expect::Same(id) => id,
                Expect::Absent => return false,
            };
            seen == now.id() && ctx.meta(&r.rel).is_some_and(|s| s.digest == m.digest)
        }
        _ => false,
    };
    found && super::extra::arrived(ctx, &r.rel, m)
}

#[cfg(test)]
mod tests {
    use super::super::reports::Reports;
    use super::*;
    use crate::exclude::Excludes;
    use crate::model::{Meta, Vv};
    use crate::paths::WirePath;
    use crate::state::RootState;

    fn dir_rec(rel: &str, n: u64) -> Record {
        let meta = Meta::test_dir();
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
            std::fs::create_dir_all(tree.path().join(d)).unwrap();
        }
        // As the records say (mode 0755, mtime 0): a directory arrives with its metadata.
        for d in ["ok", "made", "x/under"] {
            use std::os::unix::fs::PermissionsExt;
            let p = tree.path().join(d);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            let f = std::fs::File::open(&p).unwrap();
            f.set_modified(std::time::UNIX_EPOCH).unwrap();
        }
        let mut state = RootState::load(Some(states.path()), tree.path()).unwrap();
        let old = ["a", "f", "u", "x/under", "y"].map(|r| dir_rec(r, 1));
        state.save(old.to_vec()).unwrap();
        let mut reported = Reports::default();
        let held = |n| Reported::Held(Box::new((dir_rec("", n).meta, Some(Vv(vec![(1, n)])))));
        for (rel, rep) in [
            ("ok", held(2)),
            ("h", held(2)),
            ("f", held(2)),
            ("u", Reported::Unknown),
            ("u2", Reported::Unknown),
        ] {
            reported.push(WirePath::from(rel), rep, 0);
        }
        // "a" as its record, the first, says.
        reported.push_recorded(0, 0);
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
        let mut ctx = RootCtx::new(tree.path().to_path_buf(), Excludes::none(), state);
        ctx.dirty = true;
        ctx.reported = reported;
        let got: Vec<Record> = next_records(&ctx, Records::from_vec(&set)).iter().collect();
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
