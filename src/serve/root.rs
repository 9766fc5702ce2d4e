//! One root of a serve session: where it is, what is left out of it, its remembered state,
//! what the last scan reported and what the client decided for it.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::emit::HeldBriefs;
use super::reports::{Reported, Reports};
use super::{msg, OpResult, Server};
use crate::beneath::{At, Beneath, Expect, Stamp};
use crate::exclude::Excludes;
use crate::model::{Meta, Vv};
use crate::names;
use crate::paths::{check_rel, RootSpec, WirePath};
use crate::state::{Records, RootState};

/// A directory's mode and mtime to set once this session's writes in it are done.
#[derive(Debug)]
pub(super) struct DirMeta {
    /// The directory, below the root.
    pub(super) rel: WirePath,
    /// Its permission bits.
    pub(super) mode: u32,
    /// Its mtime (ns).
    pub(super) mtime: i64,
    /// Decided by the plan (else as it was before this session wrote in it).
    pub(super) decided: bool,
}

/// One root of the session: where it is, its state, and what the client decided for it.
#[derive(Debug)]
pub(super) struct RootCtx {
    /// Its absolute path on this peer.
    pub(super) abs: PathBuf,
    /// The root is a single file whose other entries are siblings in its directory.
    pub(super) siblings: bool,
    /// What is left out of the scan (and so of deletions).
    pub(super) excludes: Excludes,
    /// Something differs from the remembered state: new, changed or deleted entries.
    pub(super) dirty: bool,
    /// What this peer held after the last sync.
    pub(super) state: RootState,
    /// What the last scan reported for each entry.
    pub(super) reported: Reports,
    /// Records the client sent for this root, in the order they came.
    pub(super) set: Records,
    /// The briefs the scan summed up instead of sending, until the client asks for them.
    pub(super) held_briefs: Option<HeldBriefs>,
    /// Every frame the scan sent for this root, where it summed the root up.
    pub(super) said: Option<Vec<u8>>,
    /// The walk met no mount inside the tree: a watch on its directories sees every change
    /// below it.
    pub(super) watchable: bool,
    /// The root's parent directory, opened on first use: the root itself is an entry of it,
    /// and so are a single-file root's conflict copies.
    pub(super) parent: OnceCell<Beneath>,
    /// The root directory, opened on first use (never through a symlink): every write below
    /// it goes through this handle.
    pub(super) dir: OnceCell<Beneath>,
    /// Where this session changed an entry, what it left there ([`RootCtx::expect`],
    /// [`RootCtx::placed_id`]). One map of both, by the path's bytes: a first sync places
    /// every file of the root.
    left: RefCell<HashMap<Box<[u8]>, Left>>,
    /// Directories made or decided in this session: their permission bits and mtime, applied
    /// once they are filled (a 0555 directory would refuse its own entries).
    pub(super) dir_meta: RefCell<Vec<DirMeta>>,
    /// Directories whose mode and mtime before this session's writes are noted already.
    pub(super) dir_noted: RefCell<HashSet<WirePath>>,
    /// What the root's filesystem holds (probed once a session, before the first walk).
    pub(super) holds: std::cell::Cell<Option<super::probe::Holds>>,
    /// The scratch directory rsync writes into: its name in the base, a locked handle, and
    /// whether that base is the root itself (else its parent).
    pub(super) scratch: Option<(Vec<u8>, OwnedFd, bool)>,
    /// The scratch directory's registration for removal if the serve is stopped.
    pub(super) scratch_live: Option<u64>,
    /// A flush failed to make what was placed durable: no commit records it.
    pub(super) unflushed: Option<String>,
    /// Files were placed without being made durable one by one (batched copies, rsync's) and
    /// no flush has covered them yet: the commit flushes them first.
    pub(super) unsynced: std::cell::Cell<bool>,
    /// The partial files a run cut short left in the scratch directory, found as it was
    /// prepared: a copy rsync resumed from one is checked against its digest before it is placed.
    pub(super) partials: HashSet<Vec<u8>>,
    /// The scratch directory was made for a streamed copy's partial file, not for rsync: it
    /// goes once that copy is done.
    pub(super) scratch_for_stream: bool,
    /// Emptied mount points ([`crate::proto::Emptied`]): the deletions below them are recorded
    /// only as the client decides, never as reported.
    pub(super) guarded: Vec<WirePath>,
    /// Names that share an inode in the root, as the walk found them and this session linked
    /// them: a step on one name moves the ctime of all ([`RootCtx::inode_moved`]).
    pub(super) links: RefCell<LinkGroups>,
    /// Which metadata beyond mode and mtime the scan read, and this session sets.
    pub(super) meta: crate::extra::MetaOpts,
    /// The serve runs as root (reads and sets owners, `trusted.*` and `security.*`).
    pub(super) as_root: bool,
}

/// Names that share an inode in a root, each group found from any of its names at once
/// (a tree of many hard links is not searched name by name).
#[derive(Debug, Default)]
pub(super) struct LinkGroups {
    groups: Vec<Vec<WirePath>>,
    group_of: HashMap<WirePath, usize>,
}

impl From<Vec<Vec<WirePath>>> for LinkGroups {
    fn from(groups: Vec<Vec<WirePath>>) -> Self {
        let mut group_of = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            for n in g {
                group_of.insert(n.clone(), i);
            }
        }
        LinkGroups { groups, group_of }
    }
}

impl LinkGroups {
    /// `rel` is a file of its own now.
    fn unlink(&mut self, rel: &WirePath) {
        if let Some(g) = self.group_of.remove(rel) {
            self.groups[g].retain(|n| n != rel);
        }
    }

    /// `rel` is a hard link to `to` now.
    fn link(&mut self, rel: &WirePath, to: &WirePath) {
        self.unlink(rel);
        let g = match self.group_of.get(to) {
            Some(g) => *g,
            None => {
                self.groups.push(vec![to.clone()]);
                self.group_of.insert(to.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.groups[g].push(rel.clone());
        self.group_of.insert(rel.clone(), g);
    }

    /// The other names of `rel`'s inode (`None`: it is in no group).
    fn others(&self, rel: &WirePath) -> Option<Vec<WirePath>> {
        let g = self.group_of.get(rel)?;
        Some(
            self.groups[*g]
                .iter()
                .filter(|n| *n != rel)
                .cloned()
                .collect(),
        )
    }
}

impl RootCtx {
    /// A root of the session at `abs`, not scanned yet.
    pub(super) fn new(abs: PathBuf, excludes: Excludes, state: RootState) -> RootCtx {
        RootCtx {
            abs,
            siblings: false,
            excludes,
            dirty: false,
            state,
            reported: Reports::default(),
            set: Records::default(),
            held_briefs: None,
            said: None,
            watchable: false,
            parent: OnceCell::new(),
            dir: OnceCell::new(),
            left: RefCell::default(),
            dir_meta: RefCell::default(),
            dir_noted: RefCell::default(),
            holds: Default::default(),
            scratch: None,
            scratch_live: None,
            unflushed: None,
            unsynced: std::cell::Cell::new(false),
            partials: HashSet::new(),
            scratch_for_stream: false,
            guarded: Vec::new(),
            meta: crate::extra::MetaOpts::none(),
            as_root: false,
            links: RefCell::default(),
        }
    }

    /// Notes that `rel` is a file of its own now.
    pub(super) fn unlinked(&self, rel: &WirePath) {
        self.links.borrow_mut().unlink(rel);
    }

    /// Notes that `rel` is now a hard link to `to`.
    pub(super) fn linked(&self, rel: &WirePath, to: &WirePath) {
        self.links.borrow_mut().link(rel, to);
    }

    /// A step on `rel` (a hard link made, moved or removed) changed the ctime of the inode
    /// it had when its stamp was `before`: `rel` and every other name of the root linked to
    /// it, still as this session expected them, are expected with their new stamp (else the
    /// next step on one, or the commit, would take it for a change the user made).
    pub(super) fn inode_moved(&self, rel: &WirePath, before: Stamp) {
        let mut names: Vec<WirePath> = self.links.borrow().others(rel).unwrap_or_default();
        names.push(rel.clone());
        for name in names {
            let Some(now) = self.expected_now(&name, before.id()) else {
                continue;
            };
            if (now.dev, now.ino, now.size, now.mtime)
                != (before.dev, before.ino, before.size, before.mtime)
            {
                continue;
            }
            if self.placed_id(&name).is_some() {
                self.placed(&name, now.id());
            } else {
                self.now_at(&name, Some(now.id()));
            }
        }
    }

    /// What stands at `name` now, where this session expected the stamp with id `id` there.
    fn expected_now(&self, name: &WirePath, id: u128) -> Option<Stamp> {
        if self.expect(name) != Expect::Same(id) {
            return None;
        }
        let st = self.at(name, false).ok()?.lstat().ok()??;
        Some(Stamp::of(&st))
    }

    /// The root's own name in its parent.
    fn name(&self) -> &[u8] {
        self.abs
            .file_name()
            .map_or(&b""[..], |n| n.as_encoded_bytes())
    }

    /// The handle on the root's parent directory, made (with its own parents: they are above
    /// the tree, the user's to name) where `create` says so.
    pub(super) fn parent(&self, create: bool) -> Result<&Beneath, String> {
        if let Some(b) = self.parent.get() {
            return Ok(b);
        }
        let dir = self.abs.parent().unwrap_or(Path::new("/"));
        if create && !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| msg(dir, e))?;
        }
        let b = Beneath::open(dir).map_err(|e| msg(dir, e))?;
        Ok(self.parent.get_or_init(|| b))
    }

    /// Registers directory `rel`, made writable by its owner to be filled, to get `mode` and
    /// `mtime` should the serve be stopped first ([`crate::beneath::on_stop_narrow`]).
    pub(super) fn narrow_on_stop(&self, rel: &WirePath, mode: u32, mtime: i64) {
        let base = if rel.is_empty() {
            self.parent(false).map(|p| (p, self.name()))
        } else {
            self.dir().map(|d| (d, rel.as_bytes()))
        };
        if let Ok((base, rel)) = base {
            crate::beneath::on_stop_narrow(base, rel, mode, mtime);
        }
    }

    /// The handle on the root directory itself (opened from its parent, never through a
    /// symlink: a root that is one is not a directory root).
    pub(super) fn dir(&self) -> Result<&Beneath, String> {
        self.dir_made(false)
    }

    /// As [`RootCtx::dir`], making the root directory (and its parents) where it is missing
    /// and `create` says so.
    fn dir_made(&self, create: bool) -> Result<&Beneath, String> {
        if let Some(b) = self.dir.get() {
            return Ok(b);
        }
        let parent = self.parent(create)?;
        if create {
            let at = parent.at(self.name()).map_err(|e| e.to_string())?;
            at.mkdir(0o755).map_err(|e| e.to_string())?;
        }
        let b = parent.below(self.name()).map_err(|e| e.to_string())?;
        Ok(self.dir.get_or_init(|| b))
    }

    /// Notes the mode and mtime of the directory holding `rel` before this session writes in
    /// it, so it gets them back once filled ([`super::Server::finish_dirs`]): a directory's
    /// mtime is part of its version, and synk's own writes are no change to it. A directory
    /// the plan gives new ones keeps those instead.
    pub(super) fn touching(&self, rel: &WirePath) {
        if rel.is_empty() || self.siblings {
            return;
        }
        let parent = match rel.as_bytes().iter().rposition(|b| *b == b'/') {
            Some(i) => WirePath(rel.as_bytes()[..i].to_vec()),
            None => WirePath::default(),
        };
        self.note_dir(parent);
    }

    /// Notes the mode and mtime of directory `dir` (below the root, or the root itself) before
    /// this session writes in it: see [`RootCtx::touching`].
    pub(super) fn note_dir(&self, dir: WirePath) {
        if self.siblings || !self.dir_noted.borrow_mut().insert(dir.clone()) {
            return;
        }
        let parent = dir;
        let Ok(at) = self.at(&parent, false) else {
            return;
        };
        if let Ok(Some(st)) = at.lstat() {
            if crate::beneath::kind_of(&st) == rustix::fs::FileType::Directory {
                let stamp = crate::beneath::Stamp::of(&st);
                self.dir_meta.borrow_mut().push(DirMeta {
                    rel: parent,
                    mode: st.st_mode & crate::scan::MODE_BITS,
                    mtime: stamp.mtime,
                    decided: false,
                });
            }
        }
    }

    /// What the root's filesystem holds: probed on first use, in the root or, where it is not
    /// there yet, in its parent (everything, until one of them can be tried).
    pub(super) fn holds(&self) -> super::probe::Holds {
        if let Some(h) = self.holds.get() {
            return h;
        }
        match super::probe::probe(self) {
            Some(h) => {
                self.holds.set(Some(h));
                h
            }
            // Not possible yet (no parent either, or the root is a file): tried again next time.
            None => Default::default(),
        }
    }

    /// Entry `rel` of this root, for a read or a write: checked to stay inside the root, to be
    /// no name synk keeps for itself, and beside a single-file root to be one of its conflict
    /// copies. With `create`, missing directories on the way below the root are made.
    pub(super) fn at(&self, rel: &WirePath, create: bool) -> Result<At, String> {
        check_rel(rel).map_err(|e| format!("{rel}: refused: {e}"))?;
        if rel.as_bytes().split(|b| *b == b'/').any(names::is_own) {
            return Err(format!("{rel}: refused: a name synk keeps for itself"));
        }
        if self.excludes.is_own(rel) {
            return Err(format!(
                "{rel}: refused: synk's own state or cache on this peer, never synced"
            ));
        }
        if rel.is_empty() {
            return self
                .parent(create)?
                .at(self.name())
                .map_err(|e| e.to_string());
        }
        if self.siblings {
            let ok = !rel.as_bytes().contains(&b'/')
                && names::is_conflict_copy_of(self.name(), rel.as_bytes());
            if !ok {
                return Err(msg(
                    &self.abs,
                    format!(
                        "{rel}: refused: beside a single file only its conflict copies are written"
                    )
                    .as_str(),
                ));
            }
            return self
                .parent(false)?
                .at(rel.as_bytes())
                .map_err(|e| e.to_string());
        }
        let dir = self.dir_made(create)?;
        if create {
            self.touching(rel);
        }
        let at = if create {
            dir.at_creating(rel.as_bytes(), 0o755)
        } else {
            dir.at(rel.as_bytes())
        };
        at.map_err(|e| e.to_string())
    }

    /// What replacing entry `rel` must find there: as this session left it, else as the scan
    /// saw it, else nothing.
    pub(super) fn expect(&self, rel: &WirePath) -> Expect {
        if let Some(l) = self.left.borrow().get(rel.as_bytes()) {
            return match id_of(l.now) {
                0 => Expect::Absent,
                id => Expect::Same(id),
            };
        }
        match self.reported.stamp(rel, &self.state) {
            0 => Expect::Absent,
            id => Expect::Same(id),
        }
    }

    /// Notes what stands at `rel` now that this session changed it (`None`: nothing).
    pub(super) fn now_at(&self, rel: &WirePath, id: Option<u128>) {
        let now = words(id.unwrap_or(0));
        let mut left = self.left.borrow_mut();
        match left.get_mut(rel.as_bytes()) {
            Some(l) => l.now = now,
            None => {
                let placed = [0; 2];
                left.insert(rel.as_bytes().into(), Left { now, placed });
            }
        }
    }

    /// The stamp id of the file this session wrote at `rel` with a decided version, as it
    /// was in place (kept up to date where a step of this session moved its ctime).
    pub(super) fn placed_id(&self, rel: &WirePath) -> Option<u128> {
        let left = self.left.borrow();
        let id = id_of(left.get(rel.as_bytes())?.placed);
        (id != 0).then_some(id)
    }

    /// Notes a file this session placed with its decided version. Where it replaced a name
    /// of a file with other names in the root, that file lost a name: its other names are
    /// expected as they are now (see [`RootCtx::inode_moved`]).
    pub(super) fn placed(&self, rel: &WirePath, id: u128) {
        let old = self.expect(rel);
        self.now_at(rel, Some(id));
        if let Some(l) = self.left.borrow_mut().get_mut(rel.as_bytes()) {
            l.placed = words(id);
        }
        if let Expect::Same(old) = old {
            self.name_lost(rel, old);
        }
    }

    /// The file whose stamp had id `old` lost its name `rel` (replaced or moved away): its
    /// other names in the root that were expected with that same stamp, and are still
    /// another file than what stands at `rel` now, are expected as they are now.
    pub(super) fn name_lost(&self, rel: &WirePath, old: u128) {
        let Some(others) = self.links.borrow().others(rel) else {
            return;
        };
        let here = self
            .at(rel, false)
            .ok()
            .and_then(|a| a.lstat().ok().flatten())
            .map(|st| {
                let s = Stamp::of(&st);
                (s.dev, s.ino)
            });
        for name in others {
            let Some(now) = self.expected_now(&name, old) else {
                continue;
            };
            if Some((now.dev, now.ino)) == here {
                continue;
            }
            self.now_at(&name, Some(now.id()));
            if let Some(l) = self.left.borrow_mut().get_mut(name.as_bytes()) {
                if id_of(l.placed) != 0 {
                    l.placed = words(now.id());
                }
            }
        }
    }

    /// The root's filesystem takes a name's NFC and NFD spellings for one (as probed).
    pub(super) fn normalizes(&self) -> bool {
        self.holds.get().is_some_and(|h| h.normalizes)
    }

    /// `rel` as this serve spells it (see [`RootCtx::normalizes`]).
    pub(super) fn spelled<'a>(&self, rel: &'a WirePath) -> std::borrow::Cow<'a, WirePath> {
        match rel.nfc().filter(|_| self.normalizes()) {
            Some(n) => std::borrow::Cow::Owned(n),
            None => std::borrow::Cow::Borrowed(rel),
        }
    }

    /// Nothing changed since the walk, none to record, and the briefs behind its summary
    /// still held: the walk's answer still stands for this root.
    pub(super) fn as_walked(&self) -> bool {
        self.watchable
            && !self.dirty
            && self.set.is_empty()
            && !self.state.must_write()
            && self.held_briefs.is_some()
            && self.said.is_some()
    }

    /// The metadata this peer reported for an entry, if it holds one.
    pub(super) fn meta(&self, rel: &WirePath) -> Option<Meta> {
        self.held(rel).and_then(|(m, _)| m)
    }

    /// What this peer reported for an entry it could read: its metadata (`None`: deleted)
    /// and version.
    pub(super) fn held(&self, rel: &WirePath) -> Option<(Option<Meta>, Option<Vv>)> {
        let (rep, index) = self.reported.get(rel, &self.state)?;
        match (rep.into_owned(), index) {
            (Reported::AsRecorded, Some(i)) => {
                let r = self.state.record_at(i);
                Some((r.meta, Some(r.vv)))
            }
            (Reported::AsRecorded, None) => self.state.get(rel).map(|r| (r.meta, Some(r.vv))),
            (Reported::Held(h), _) => Some(*h),
            (Reported::Unknown, _) => None,
        }
    }
}

/// What this session left at a path it changed: the stamp id of what stands there now (0:
/// nothing), and of the file it placed there with a decided version (0: none). Ids in two
/// words each: a `u128` would align the entry to 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Left {
    now: [u64; 2],
    placed: [u64; 2],
}

/// A stamp id in two words.
fn words(id: u128) -> [u64; 2] {
    [id as u64, (id >> 64) as u64]
}

/// The stamp id two words hold.
fn id_of(w: [u64; 2]) -> u128 {
    u128::from(w[0]) | u128::from(w[1]) << 64
}

/// Where synk's own directories (`own`: its state and cache on this peer) lie below the
/// root at `abs`, as paths below it, to be left out of every scan and write (`synk ~` must
/// not sync a peer's key, state and kept versions to the others, nor take theirs in); a root
/// inside one of them is refused. Compared as written and, where they exist, resolved.
pub(super) fn own_below(abs: &Path, own: &[PathBuf]) -> Result<Vec<WirePath>, String> {
    let forms = |p: &Path| -> Vec<PathBuf> {
        let mut v = vec![p.to_path_buf()];
        v.extend(std::fs::canonicalize(p).ok().filter(|c| c != p));
        v
    };
    let roots = forms(abs);
    let mut below = Vec::new();
    for dir in own {
        for d in forms(dir) {
            for r in &roots {
                if r.starts_with(&d) {
                    return Err(format!(
                        "{} is synk's own state or cache on this peer, never synced",
                        d.display()
                    ));
                }
                if let Ok(rel) = d.strip_prefix(r) {
                    let rel = WirePath(rel.as_os_str().as_encoded_bytes().to_vec());
                    if !below.contains(&rel) {
                        below.push(rel);
                    }
                }
            }
        }
    }
    Ok(below)
}

impl Server {
    /// The absolute path `spec` names on this peer.
    pub(super) fn resolve(&self, spec: &RootSpec) -> Result<PathBuf, String> {
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

    /// Root `root` of the last scan.
    pub(super) fn ctx(&self, root: u32) -> Result<&RootCtx, String> {
        self.roots
            .get(root as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    /// Root `root` of the last scan, to change.
    pub(super) fn ctx_mut(&mut self, root: u32) -> Result<&mut RootCtx, String> {
        self.roots
            .get_mut(root as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    /// The last walk of `root` stayed on one filesystem (no mount inside the tree).
    pub(super) fn one_filesystem(&self, root: u32) -> bool {
        self.ctx(root).is_ok_and(|c| c.watchable)
    }

    /// Marks a root as a single file: its other entries are siblings beside it.
    pub(super) fn siblings(&mut self, root: u32) -> OpResult {
        self.ctx_mut(root)?.siblings = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{own_below, LinkGroups};
    use crate::paths::WirePath;
    use std::path::{Path, PathBuf};

    #[test]
    fn synks_own_directories_are_found_below_a_root_and_a_root_inside_them_refused() {
        let own = [
            PathBuf::from("/h/.local/state/synk"),
            PathBuf::from("/h/.cache/synk"),
        ];
        let rels = |abs: &str| own_below(Path::new(abs), &own);
        assert_eq!(
            rels("/h").unwrap(),
            [
                WirePath::from(".local/state/synk"),
                WirePath::from(".cache/synk")
            ]
        );
        assert_eq!(rels("/h/.cache").unwrap(), [WirePath::from("synk")]);
        assert_eq!(rels("/h/notes").unwrap(), Vec::<WirePath>::new());
        assert_eq!(rels("/h/.cache/synkish").unwrap(), Vec::<WirePath>::new());
        for inside in ["/h/.cache/synk", "/h/.local/state/synk/roots"] {
            assert!(rels(inside).unwrap_err().contains("synk's own"), "{inside}");
        }
    }

    #[test]
    fn link_groups_follow_links_made_and_broken() {
        let w = |s: &str| WirePath::from(s);
        let others = |g: &LinkGroups, rel: &str| -> Option<Vec<String>> {
            g.others(&w(rel))
                .map(|v| v.iter().map(|n| n.to_string()).collect())
        };
        let mut g = LinkGroups::from(vec![vec![w("a"), w("b")], vec![w("c"), w("d")]]);
        assert_eq!(others(&g, "a"), Some(vec!["b".into()]));
        assert_eq!(others(&g, "x"), None);
        // x joins a's inode; b leaves it for c's.
        g.link(&w("x"), &w("a"));
        g.link(&w("b"), &w("c"));
        assert_eq!(others(&g, "a"), Some(vec!["x".into()]));
        assert_eq!(others(&g, "d"), Some(vec!["c".into(), "b".into()]));
        // A link to a name in no group starts one; a name unlinked is in none.
        g.link(&w("y"), &w("z"));
        assert_eq!(others(&g, "z"), Some(vec!["y".into()]));
        g.unlink(&w("x"));
        assert_eq!(others(&g, "x"), None);
        assert_eq!(others(&g, "a"), Some(Vec::new()));
    }
}
