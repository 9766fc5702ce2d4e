//! Every byte a peer sends is checked here before the client uses any of it: the handshake,
//! the scan (each root's path, each entry's path and what it says), the answers fetched after
//! it, kept versions. A peer is trusted with what it syncs and nothing else: an answer that
//! breaks a rule is refused whole, and the peer is left out of the run.
//!
//! The checks are pure (frames in, listings or a refusal out), so they are fuzzed as they are
//! (`fuzz/`): [`check_scan`] runs a whole scan conversation through them.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::listing::{RootScan, Scanned};
use crate::model::{fingerprint_held, fingerprint_new, Brief, Kept, Kind, Vv};
use crate::names;
use crate::paths::{check_rel, RootSpec, WirePath};
use crate::plan::{Briefs, Listing, Seen};
use crate::proto::{Entry, Response, Summary};

/// Bytes of one name (a path component) at most: Linux's `NAME_MAX`.
pub const NAME_MAX: usize = 255;
/// Bytes of a path at most: Linux's `PATH_MAX`, less its NUL.
pub const PATH_MAX: usize = 4095;
/// Bytes of a peer's version string at most.
pub const VERSION_MAX: usize = 64;
/// Bytes of a peer's error text kept; the rest is cut, and the cut is marked.
pub const ERROR_MAX: usize = 1024;
/// Bytes of a kept version's id at most.
pub const ID_MAX: usize = 128;
/// What one answer of a peer may make the client hold (a root's scan, the briefs behind a
/// summary, a list of kept versions), in bytes of the client's memory as [`Budget`] counts
/// them: some 2.5 million entries in full, or 10 million in brief, where an honest tree of a
/// million entries takes at most half of it (and much less where most of it is in sync).
pub const HOLD_LIMIT: u64 = 1 << 30;
// One root's briefs fill from one answer, under one budget: `plan::Briefs` and `plan::Paths`
// mark where each path ends in 4 bytes, which this keeps enough.
const _: () = assert!(HOLD_LIMIT < 1 << 32);

/// What one entry in full costs the client beside its path and texts: the map's key and value
/// and the map's share of nodes around them (measured: a map of a million entries with short
/// paths takes 380 bytes an entry).
const ENTRY_COST: u64 = 360;
/// What one brief costs beside its path: fingerprint, size, flag, offset, and the index that
/// settling sorts by.
const BRIEF_COST: u64 = 48;
/// What a kept version's record costs beside its path, id and link target.
const KEPT_COST: u64 = 160;
/// Bytes of a peer's text quoted in a message about it.
const QUOTE_MAX: usize = 200;

/// Why a peer's answer is refused; the caller names the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(what: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(what.into()))
}

/// A target's [`crate::proto::Response::Partial`] for a file of `size` bytes: some of its
/// bytes, never more than it has (a copy resumed there sends only the rest).
pub fn check_partial(len: u64, size: u64) -> Result<u64, Refused> {
    if len == 0 || len > size {
        return refuse(format!(
            "says it holds {len} bytes of a {size}-byte file already"
        ));
    }
    Ok(len)
}

/// A peer's bytes quoted in a message: escaped for a terminal, cut after [`QUOTE_MAX`] bytes.
pub fn quote(bytes: &[u8]) -> String {
    let cut = bytes.len().min(QUOTE_MAX);
    let mut s = format!("\"{}\"", crate::report::text::escape(&bytes[..cut]));
    if cut < bytes.len() {
        let _ = write!(s, "… ({} bytes)", bytes.len());
    }
    s
}

/// A peer's error text, cut to [`ERROR_MAX`] bytes (on a character boundary) with a mark that
/// says so: an error is shown and kept, never an unbounded one.
pub fn clip(mut text: String) -> String {
    if text.len() <= ERROR_MAX {
        return text;
    }
    let all = text.len();
    let mut cut = ERROR_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    let _ = write!(text, "… [cut: {all} bytes]");
    text
}

/// The start of a frame, for a message about a frame that makes no sense where it came:
/// at most `max` characters of its debug form, never more formatted than that.
pub fn glimpse(r: &Response, max: usize) -> String {
    struct Upto(String, usize);
    impl std::fmt::Write for Upto {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.1 == 0 {
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
                self.1 -= 1;
            }
            Ok(())
        }
    }
    let mut out = Upto(String::new(), max);
    let _ = write!(out, "{r:?}");
    out.0
}

/// What the handshake says about the peer: its home is empty (it has none) or absolute and
/// clean, and its version is a short printable word.
pub fn check_hello(home: &WirePath, version: &str) -> Result<(), Refused> {
    if version.is_empty()
        || version.len() > VERSION_MAX
        || !version.bytes().all(|b| b.is_ascii_graphic())
    {
        return refuse(format!(
            "protocol error: a version string {} (1 to {VERSION_MAX} printable characters expected)",
            quote(version.as_bytes())
        ));
    }
    if home.is_empty() {
        return Ok(());
    }
    let clean =
        home.as_bytes().len() <= PATH_MAX && RootSpec::Absolute(home.clone()).check().is_ok();
    if !clean {
        return refuse(format!(
            "protocol error: a home directory {} (an absolute path without `.`, `..` or empty components expected)",
            quote(home.as_bytes())
        ));
    }
    Ok(())
}

/// The absolute path root `spec` names on a peer whose home is `home` (empty: it has none),
/// as that peer's serve resolves it; `None` where it names none (then no answer but an error
/// is right).
pub fn expected_root(spec: &RootSpec, home: &WirePath) -> Option<WirePath> {
    let home = match (home.is_empty(), spec) {
        (true, RootSpec::Home(_)) => return None,
        (true, RootSpec::Absolute(_)) => std::path::Path::new("/"),
        (false, _) => home.as_path(),
    };
    spec.resolve(home).ok().map(|p| WirePath::from_path(&p))
}

/// Checks an entry path: it stays below its root ([`check_rel`]), within the system's limits
/// ([`NAME_MAX`], [`PATH_MAX`]), and names none of synk's own temp files or scratch
/// directories (see [`names::is_own`]) in any component.
pub fn check_entry_path(rel: &WirePath) -> Result<(), Refused> {
    let b = rel.as_bytes();
    let bad = |why: &str| refuse(format!("sent an invalid entry path {}: {why}", quote(b)));
    if let Err(e) = check_rel(rel) {
        return bad(&e.to_string());
    }
    if b.len() > PATH_MAX {
        return bad(&format!("longer than {PATH_MAX} bytes"));
    }
    for c in b.split(|x| *x == b'/') {
        if c.len() > NAME_MAX {
            return bad(&format!("a name longer than {NAME_MAX} bytes"));
        }
        if names::is_own(c) {
            return bad("the name of one of synk's own temp files or scratch directories");
        }
    }
    Ok(())
}

/// Checks a hard link a peer says entry `rel` has ([`crate::model::Extra::link`]): only a
/// file has one, to another entry path of the root that comes before it in the root's order
/// (the first name of its group), so no name links to itself and links make no cycle. That
/// the name linked to is a file with the same version, itself linked to nothing, is checked
/// where links are made ([`crate::plan::link_names`]): a link that fails it is not made.
pub fn check_link(rel: &WirePath, kind: &Kind, to: &WirePath) -> Result<(), Refused> {
    let bad = |why: &str| {
        refuse(format!(
            "sent {} as a hard link to {}: {why}",
            quote(rel.as_bytes()),
            quote(to.as_bytes())
        ))
    };
    if *kind != Kind::File {
        return bad("only a file has hard links");
    }
    if to.is_empty() || check_entry_path(to).is_err() {
        return bad("not an entry path below the root");
    }
    if to >= rel {
        return bad("a name links to one before it in the root's order");
    }
    Ok(())
}

/// How much of the client's memory one peer's answer holds, and the most it may
/// ([`HOLD_LIMIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    used: u64,
    limit: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(HOLD_LIMIT)
    }
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Budget { used: 0, limit }
    }

    /// Counts `bytes` more, or refuses the answer that would hold them.
    pub fn charge(&mut self, bytes: u64) -> Result<(), Refused> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return refuse(format!(
                "sent more than this client holds for one answer of a peer ({} MiB): refused",
                self.limit >> 20
            ));
        }
        Ok(())
    }
}

/// What one entry costs the client's memory.
fn entry_cost(e: &Entry) -> u64 {
    let texts = match &e.state {
        Ok(Some(m)) => match &m.kind {
            Kind::Symlink(t) => t.as_bytes().len(),
            _ => 0,
        },
        Ok(None) => 0,
        Err(text) => text.len(),
    };
    // Owner names and a hard link's first name are held with the entry too.
    let extra = match &e.state {
        Ok(Some(m)) => {
            let owner = m.extra.owner.as_ref().map_or(0, |o| {
                o.user.as_ref().map_or(0, String::len) + o.group.as_ref().map_or(0, String::len)
            });
            owner + m.extra.link.as_ref().map_or(0, |l| l.as_bytes().len())
        }
        _ => 0,
    };
    let vv = e.vv.as_ref().map_or(0, |v| v.0.len() * 16);
    ENTRY_COST + (e.rel.as_bytes().len() + texts + vv + extra) as u64
}

/// Checks the entries of one answer and adds them to `listing`: every path as
/// [`check_entry_path`] says, once; a file or symlink with its digest, anything else
/// without; a link's target within [`PATH_MAX`] and without NUL; error texts
/// [`clip`]ped. With `asked`, each entry must be one of them, and is crossed off. Returns
/// the bytes of the files among them.
pub fn take_entries(
    entries: Vec<Entry>,
    listing: &mut Listing,
    budget: &mut Budget,
    mut asked: Option<&mut HashSet<WirePath>>,
) -> Result<u64, Refused> {
    let mut bytes = 0u64;
    for e in entries {
        check_entry_path(&e.rel)?;
        budget.charge(entry_cost(&e))?;
        if let Some(asked) = asked.as_deref_mut() {
            if !asked.remove(&e.rel) {
                return refuse(format!(
                    "protocol error: sent {}, which was not asked for (or twice)",
                    quote(e.rel.as_bytes())
                ));
            }
        }
        if !e.vv.as_ref().is_none_or(Vv::is_sound) {
            return refuse(format!(
                "sent {} with a version vector out of order",
                quote(e.rel.as_bytes())
            ));
        }
        let state = match e.state {
            Ok(Some(m)) => {
                // The decision and the copiers rely on every file and symlink carrying its
                // digest, and on nothing else carrying one.
                let needs = matches!(m.kind, Kind::File | Kind::Symlink(_));
                if needs != m.digest.is_some() {
                    return refuse(format!(
                        "sent {} without the digest its kind needs",
                        quote(e.rel.as_bytes())
                    ));
                }
                if let Kind::Symlink(t) = &m.kind {
                    let t = t.as_bytes();
                    if t.is_empty() || t.len() > PATH_MAX || t.contains(&0) {
                        return refuse(format!(
                            "sent {} as a symlink to {}, which no symlink can hold",
                            quote(e.rel.as_bytes()),
                            quote(t)
                        ));
                    }
                }
                if let Some(to) = &m.extra.link {
                    check_link(&e.rel, &m.kind, to)?;
                }
                if let Some(o) = &m.extra.owner {
                    let names = [&o.user, &o.group];
                    if !names
                        .into_iter()
                        .all(|n| n.as_deref().is_none_or(crate::extra::name_ok))
                    {
                        return refuse(format!(
                            "sent {} with an owner name no system can hold",
                            quote(e.rel.as_bytes())
                        ));
                    }
                }
                if m.kind == Kind::File {
                    bytes = bytes.saturating_add(m.size);
                }
                Ok(Some(m))
            }
            Ok(None) => Ok(None),
            Err(text) => Err(clip(text)),
        };
        let seen = Seen {
            state,
            vv: e.vv,
            changed: e.changed,
        };
        match listing.entry(e.rel) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(seen);
            }
            std::collections::btree_map::Entry::Occupied(o) => {
                return refuse(format!(
                    "protocol error: sent {} twice",
                    quote(o.key().as_bytes())
                ))
            }
        }
    }
    Ok(bytes)
}

/// Checks one [`Response::Attrs`] answer: each entry one of those `asked` (crossed off, so
/// none comes twice), each list within [`crate::extra::xattr::check`]'s bounds and of the
/// `classes` asked for.
pub fn take_attrs(
    got: Vec<(WirePath, Vec<crate::extra::xattr::Xattr>)>,
    asked: &mut HashSet<WirePath>,
    classes: &[crate::extra::xattr::Class],
) -> Result<Vec<(WirePath, Vec<crate::extra::xattr::Xattr>)>, Refused> {
    for (rel, list) in &got {
        if !asked.remove(rel) {
            return refuse(format!(
                "protocol error: sent the attributes of {}, which were not asked for (or twice)",
                quote(rel.as_bytes())
            ));
        }
        if let Err(e) = crate::extra::xattr::check(list) {
            return refuse(format!("sent {} with {e}", quote(rel.as_bytes())));
        }
        let kept = |x: &crate::extra::xattr::Xattr| {
            crate::extra::xattr::class_of(&x.name).is_some_and(|c| classes.contains(&c))
        };
        if !list.iter().all(kept) || !list.windows(2).all(|w| w[0].name < w[1].name) {
            return refuse(format!(
                "sent {} with attributes not asked for or out of order",
                quote(rel.as_bytes())
            ));
        }
    }
    Ok(got)
}

/// Checks briefs (never the root itself; paths as [`check_entry_path`] says) and adds them
/// to `into`.
pub fn take_briefs(
    briefs: Vec<Brief>,
    into: &mut Briefs,
    budget: &mut Budget,
) -> Result<(), Refused> {
    for b in briefs {
        if b.rel.is_empty() {
            return refuse("protocol error: the root in brief");
        }
        check_entry_path(&b.rel)?;
        budget.charge(BRIEF_COST + b.rel.as_bytes().len() as u64)?;
        into.push(b);
    }
    Ok(())
}

/// Notes a peer may send per root at most; more are dropped.
const MAX_NOTES: usize = 8;
/// Characters of a note kept at most.
const NOTE_CHARS: usize = 512;
/// Emptied mount points one root may name at most.
const MAX_EMPTIED: usize = 4096;

/// What the client makes of one frame of a scan's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// More to come: entries taken so far in all, and bytes of files in this frame.
    Progress {
        /// Entries (and briefs, and entries summed up) so far.
        entries: u64,
        /// Bytes of the files in this frame.
        bytes: u64,
    },
    /// The scan's answer is complete.
    Done,
    /// The peer's answer to the locks asked with the scan, before any root: its stable key,
    /// and the path whose lock another run holds, if one does (then no scan follows).
    Locked {
        /// The peer's stable key.
        key: u64,
        /// The busy lock's path.
        busy: bool,
    },
}

/// The answer to a scan of `roots`, frame by frame, each checked before it is taken: the
/// roots in order, each the very path that was asked for on this peer
/// ([`expected_root`]), then its entries, in full or in brief, or a summary as its last
/// word.
pub struct ScanCheck<'a> {
    roots: &'a [RootSpec],
    home: &'a WirePath,
    out: Vec<RootScan>,
    budget: Budget,
    seen: u64,
    /// The answer to the locks came.
    locked: bool,
    /// The path of a lock another run holds, as the peer said.
    pub busy: Option<WirePath>,
}

impl<'a> ScanCheck<'a> {
    /// Ready for the answer to a scan of `roots` by a peer whose home is `home`.
    pub fn new(roots: &'a [RootSpec], home: &'a WirePath) -> Self {
        ScanCheck {
            roots,
            home,
            out: Vec::with_capacity(roots.len()),
            budget: Budget::default(),
            seen: 0,
            locked: false,
            busy: None,
        }
    }

    /// Takes the next frame, or refuses it.
    pub fn take(&mut self, frame: Response) -> Result<Took, Refused> {
        match frame {
            Response::Root { index, result } => {
                let index = index as usize;
                let result = match result {
                    Ok(abs) => Ok(Scanned::new(self.root_path(index, abs)?)),
                    Err(e) => Err(clip(e)),
                };
                if index == self.out.len() && index < self.roots.len() {
                    self.out.push(result);
                    self.budget = Budget::default();
                } else if index + 1 == self.out.len() && result.is_err() {
                    // A failure on the root after its header: replaces it.
                    self.out[index] = result;
                    self.budget = Budget::default();
                } else {
                    return refuse(format!("protocol error: root #{index} out of order"));
                }
                Ok(self.progress(0))
            }
            Response::Entries(entries) => {
                let n = entries.len() as u64;
                let (scanned, budget) = self.current("entries")?;
                let bytes = take_entries(entries, &mut scanned.listing, budget, None)?;
                self.seen = self.seen.saturating_add(n);
                Ok(self.progress(bytes))
            }
            Response::Briefs(briefs) => {
                let n = briefs.len() as u64;
                let (scanned, budget) = self.current("entries")?;
                take_briefs(briefs, &mut scanned.briefs, budget)?;
                self.seen = self.seen.saturating_add(n);
                Ok(self.progress(0))
            }
            Response::Summary(summary) => {
                let (scanned, _) = self.current("a summary")?;
                // The root's last word: nothing below it may have gone in brief or in full,
                // or the sum would stand for entries it does not cover.
                if !scanned.briefs.is_empty() || scanned.listing.keys().any(|r| !r.is_empty()) {
                    return refuse("protocol error: a root summed up after entries below it");
                }
                if summary.held > summary.count {
                    return refuse("protocol error: a summary holding more entries than it counts");
                }
                scanned.summary = Some(summary);
                self.seen = self.seen.saturating_add(summary.count);
                Ok(self.progress(0))
            }
            Response::Locked { key, busy } if self.out.is_empty() && !self.locked => {
                self.locked = true;
                if let Some(path) = &busy {
                    if path.as_bytes().len() > PATH_MAX || path.as_bytes().contains(&0) {
                        return refuse("protocol error: a busy lock's path past PATH_MAX");
                    }
                    self.busy = Some(path.clone());
                }
                Ok(Took::Locked {
                    key,
                    busy: busy.is_some(),
                })
            }
            Response::Note(note) => {
                let (scanned, _) = self.current("a note")?;
                // A few short lines at most: a peer cannot fill the client's memory here.
                if scanned.notes.len() < MAX_NOTES {
                    scanned
                        .notes
                        .push(clip(note.chars().take(NOTE_CHARS).collect()));
                }
                Ok(self.progress(0))
            }
            Response::Emptied(list) => {
                let (scanned, _) = self.current("mount points")?;
                if scanned.emptied.len() + list.len() > MAX_EMPTIED {
                    return refuse("protocol error: too many emptied mount points");
                }
                for e in list {
                    check_entry_path(&e.rel)?;
                    if e.rel.is_empty() {
                        return refuse("protocol error: the root as a mount point");
                    }
                    let path = scanned.abs.join(&e.rel);
                    scanned.emptied.push(crate::plan::Emptied {
                        rel: e.rel,
                        held: e.held,
                        path,
                    });
                }
                Ok(self.progress(0))
            }
            Response::Holds(holds) => {
                // After a summary too: it is no entry.
                let Some(Ok(scanned)) = self.out.last_mut() else {
                    return refuse("protocol error: what a filesystem holds outside a root");
                };
                if scanned.holds.is_some() {
                    return refuse("protocol error: a root's filesystem told twice");
                }
                if !(1..=crate::proto::MAX_MTIME_STEP).contains(&holds.mtime_step) {
                    return refuse("protocol error: an mtime step out of range");
                }
                scanned.holds = Some(holds);
                Ok(self.progress(0))
            }
            Response::ScanDone if self.out.len() == self.roots.len() => Ok(Took::Done),
            Response::ScanDone => refuse(format!(
                "protocol error: {} roots answered of {}",
                self.out.len(),
                self.roots.len()
            )),
            other => refuse(format!(
                "protocol error: unexpected {}",
                glimpse(&other, 60)
            )),
        }
    }

    /// Every root's scan, once [`ScanCheck::take`] said [`Took::Done`]. A root the peer
    /// holds as a single file is checked as [`file_root`] says.
    pub fn finish(mut self) -> Result<Vec<RootScan>, Refused> {
        for (spec, scan) in self.roots.iter().zip(&mut self.out) {
            let Ok(s) = scan else { continue };
            let own_file = matches!(
                s.listing.get(&WirePath::default()),
                Some(Seen { state: Ok(Some(m)), .. }) if m.kind != Kind::Dir
            );
            if own_file {
                file_root(spec.file_name(), &mut s.listing, &s.deferred)?;
            }
        }
        Ok(self.out)
    }

    fn progress(&self, bytes: u64) -> Took {
        Took::Progress {
            entries: self.seen,
            bytes,
        }
    }

    /// The root a peer reports for root #`index` must be the one asked for, resolved with
    /// the peer's own home: any other answer would have the client read and write elsewhere.
    fn root_path(&self, index: usize, abs: WirePath) -> Result<WirePath, Refused> {
        let Some(spec) = self.roots.get(index) else {
            return refuse(format!("protocol error: root #{index} out of order"));
        };
        match expected_root(spec, self.home) {
            Some(want) if want == abs => Ok(abs),
            Some(want) => refuse(format!(
                "protocol error: reported {} as root {spec}, which is {} there",
                quote(abs.as_bytes()),
                quote(want.as_bytes())
            )),
            None => refuse(format!(
                "protocol error: reported {} as root {spec}, which names no path there",
                quote(abs.as_bytes())
            )),
        }
    }

    /// The root whose entries are coming, and its budget: one that scanned, not summed up.
    fn current(&mut self, what: &str) -> Result<(&mut Scanned, &mut Budget), Refused> {
        let Some(Ok(scanned)) = self.out.last_mut() else {
            return refuse(format!("protocol error: {what} outside a root"));
        };
        if scanned.summary.is_some() {
            return refuse("protocol error: entries after a root's summary");
        }
        Ok((scanned, &mut self.budget))
    }
}

/// The whole answer to a scan of `roots` by a peer whose home is `home`, checked frame by
/// frame as [`ScanCheck`] does: what the client would take, or why it refuses it.
pub fn check_scan(
    roots: &[RootSpec],
    home: &WirePath,
    frames: impl IntoIterator<Item = Response>,
) -> Result<Vec<RootScan>, Refused> {
    let mut check = ScanCheck::new(roots, home);
    for frame in frames {
        if check.take(frame)? == Took::Done {
            return check.finish();
        }
    }
    refuse("connection lost")
}

/// For a root that is a single file (no peer holds it as a directory): the only entries
/// beside it are its conflict copies, named exactly as synk names them
/// ([`names::conflict_of`] the root's own name `name`, from the client's own root spec).
/// A remembered deletion of another name (the root was a directory once) is dropped: it is
/// not this root's. Anything else is refused, `deferred` paths too: the peer would have the
/// client write beside the root, outside what the user asked for.
pub fn file_root(
    name: Option<&[u8]>,
    listing: &mut Listing,
    deferred: &crate::plan::Paths,
) -> Result<(), Refused> {
    let allowed = |rel: &WirePath| {
        rel.is_empty() || name.is_some_and(|n| names::conflict_of(rel.as_bytes(), n).is_some())
    };
    let mut drop = Vec::new();
    for (rel, seen) in listing.iter() {
        if allowed(rel) {
            continue;
        }
        if matches!(seen.state, Ok(None)) {
            drop.push(rel.clone());
            continue;
        }
        return refuse(beside(rel));
    }
    for rel in drop {
        listing.remove(&rel);
    }
    match deferred.iter().find(|r| !allowed(r)) {
        Some(rel) => refuse(beside(&rel)),
        None => Ok(()),
    }
}

fn beside(rel: &WirePath) -> String {
    format!(
        "protocol error: sent {} beside a root that is a single file, where only its conflict copies can be",
        quote(rel.as_bytes())
    )
}

/// The answer to a request for the full entries of `rels` ([`crate::proto::Request::Detail`]):
/// exactly those, each once.
pub struct DetailCheck {
    asked: HashSet<WirePath>,
    budget: Budget,
}

impl DetailCheck {
    /// Ready for the answer about `rels`.
    pub fn new(rels: &[WirePath]) -> Self {
        DetailCheck {
            asked: rels.iter().cloned().collect(),
            budget: Budget::default(),
        }
    }

    /// Takes entries of the answer into `listing`.
    pub fn take(&mut self, entries: Vec<Entry>, listing: &mut Listing) -> Result<(), Refused> {
        take_entries(entries, listing, &mut self.budget, Some(&mut self.asked)).map(|_| ())
    }

    /// The answer ended: every path asked for must have come.
    pub fn done(&self) -> Result<(), Refused> {
        match self.asked.iter().next() {
            None => Ok(()),
            Some(rel) => refuse(format!(
                "protocol error: answered without {} ({} asked for not sent)",
                quote(rel.as_bytes()),
                self.asked.len()
            )),
        }
    }
}

/// The briefs behind a summary ([`crate::proto::Request::Briefs`]): checked as in a scan, no
/// more of them than the summary counts, and adding up to it in the end. Behind them, the full
/// entries of the paths asked for `also`: each one that came in brief, once, and no other.
pub struct BriefsCheck {
    want: Summary,
    sum: Summary,
    budget: Budget,
    also: HashSet<WirePath>,
    /// Paths of `also` that came in brief and are still to come in full.
    owed: HashSet<WirePath>,
    /// The fingerprint of each brief of `also`: its full entry must say the same.
    fps: std::collections::HashMap<WirePath, [u8; 16]>,
}

impl BriefsCheck {
    /// Ready for the briefs behind `summary`, and in full those of `also` among them.
    pub fn new(summary: &Summary, also: &[WirePath]) -> Self {
        BriefsCheck {
            want: *summary,
            sum: Summary::default(),
            budget: Budget::default(),
            also: also.iter().cloned().collect(),
            owed: HashSet::new(),
            fps: Default::default(),
        }
    }

    /// Takes briefs of the answer into `into`.
    pub fn take(&mut self, briefs: Vec<Brief>, into: &mut Briefs) -> Result<(), Refused> {
        briefs.iter().for_each(|b| self.sum.add(b));
        if self.sum.count > self.want.count {
            return refuse(format!(
                "protocol error: more briefs than the summary of {} counts",
                self.want.count
            ));
        }
        for b in &briefs {
            if self.also.remove(&b.rel) {
                self.owed.insert(b.rel.clone());
                self.fps.insert(b.rel.clone(), b.fp);
            }
        }
        take_briefs(briefs, into, &mut self.budget)
    }

    /// Takes full entries of the answer into `listing`: each of `also` that came in brief, as
    /// its brief described it (settling went by the brief, the decision goes by the entry).
    pub fn take_full(&mut self, entries: Vec<Entry>, listing: &mut Listing) -> Result<(), Refused> {
        for e in &entries {
            let Some(fp) = self.fps.get(&e.rel) else {
                continue; // not asked for: take_entries refuses it
            };
            let said = match (&e.state, &e.vv) {
                (Ok(meta), Some(vv)) => Some(fingerprint_held(meta.as_ref(), vv)),
                (Ok(Some(meta)), None) => Some(fingerprint_new(meta)),
                _ => None,
            };
            if said != Some(*fp) {
                return refuse(format!(
                    "protocol error: sent {} in full unlike its brief",
                    quote(e.rel.as_bytes())
                ));
            }
        }
        take_entries(entries, listing, &mut self.budget, Some(&mut self.owed)).map(|_| ())
    }

    /// The answer ended: the briefs must add up to the summary, and every one of `also`
    /// among them must have come in full.
    pub fn done(&self) -> Result<(), Refused> {
        if self.sum != self.want {
            return refuse(format!(
                "protocol error: {} briefs do not add up to the summary of {}",
                self.sum.count, self.want.count
            ));
        }
        match self.owed.iter().next() {
            None => Ok(()),
            Some(rel) => refuse(format!(
                "protocol error: answered without {} in full ({} asked for not sent)",
                quote(rel.as_bytes()),
                self.owed.len()
            )),
        }
    }
}

/// A list of kept versions ([`crate::proto::Request::Versions`]): each at or below the path
/// that was asked about (resolved on that peer, [`expected_root`]), with a clean absolute path
/// and an id the store can have made; no more than [`HOLD_LIMIT`] holds.
pub struct VersionsCheck {
    base: Option<WirePath>,
    budget: Budget,
}

impl VersionsCheck {
    /// Ready for the versions of `spec` on a peer whose home is `home`.
    pub fn new(spec: &RootSpec, home: &WirePath) -> Self {
        VersionsCheck {
            base: expected_root(spec, home),
            budget: Budget::default(),
        }
    }

    /// Checks one batch of the answer.
    pub fn take(&mut self, kept: &[Kept]) -> Result<(), Refused> {
        for k in kept {
            let p = k.path.as_bytes();
            let clean = p.len() <= PATH_MAX && RootSpec::Absolute(k.path.clone()).check().is_ok();
            let below = self.base.as_ref().and_then(|b| k.path.below(b)).is_some();
            if !clean || !below {
                return refuse(format!(
                    "protocol error: listed a kept version of {}, which is not at or below the path asked about",
                    quote(p)
                ));
            }
            let id_ok = !k.id.is_empty()
                && k.id.len() <= ID_MAX
                && k.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !id_ok {
                return refuse(format!(
                    "protocol error: a kept version with the id {}",
                    quote(k.id.as_bytes())
                ));
            }
            let target = match &k.meta.kind {
                Kind::Symlink(t) if t.as_bytes().len() > PATH_MAX => {
                    return refuse("protocol error: a kept symlink's target over PATH_MAX")
                }
                Kind::Symlink(t) => t.as_bytes().len(),
                _ => 0,
            };
            self.budget
                .charge(KEPT_COST + (p.len() + k.id.len() + target) as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Meta, Vv, Why};

    fn w(s: &str) -> WirePath {
        WirePath::from(s)
    }

    fn file(rel: &str) -> Entry {
        Entry {
            rel: w(rel),
            state: Ok(Some(Meta {
                kind: Kind::File,
                size: 3,
                mode: 0o644,
                mtime: 0,
                digest: Some(Digest::of(b"abc")),
                extra: Default::default(),
            })),
            vv: Some(Vv(vec![(1, 1)])),
            changed: true,
        }
    }

    fn gone(rel: &str) -> Entry {
        Entry {
            rel: w(rel),
            state: Ok(None),
            vv: Some(Vv(vec![(1, 2)])),
            changed: true,
        }
    }

    fn root(index: u32, abs: &str) -> Response {
        Response::Root {
            index,
            result: Ok(w(abs)),
        }
    }

    /// A scan of `~/.profile` and `~/notes` by a peer whose home is `/h`.
    fn scan(frames: Vec<Response>) -> Result<Vec<RootScan>, String> {
        let roots = [RootSpec::Home(w(".profile")), RootSpec::Home(w("notes"))];
        check_scan(&roots, &w("/h"), frames).map_err(|e| e.0)
    }

    #[test]
    fn a_handshake_names_a_clean_home_and_a_short_printable_version() {
        for (home, version) in [
            ("/h", "0.1.0"),
            ("", "1.2.3-rc.1+x"),
            ("/", "9"),
            ("/srv/u/", "v"),
        ] {
            assert_eq!(
                check_hello(&w(home), version),
                Ok(()),
                "{home:?} {version:?}"
            );
        }
        let long = "1".repeat(VERSION_MAX + 1);
        for version in ["", "0.1 beta", "0.1\x1b[2J", "caf\u{e9}", long.as_str()] {
            let e = check_hello(&w("/h"), version).unwrap_err().0;
            assert!(e.starts_with("protocol error: a version string"), "{e}");
        }
        let deep = format!("/{}", "d/".repeat(PATH_MAX / 2 + 1));
        for home in ["h", "/h/../etc", "/h//x", "/h/./x", "/h\0", deep.as_str()] {
            let e = check_hello(&w(home), "0.1.0").unwrap_err().0;
            assert!(e.starts_with("protocol error: a home directory"), "{e}");
        }
        // What a peer sent is quoted escaped.
        let e = check_hello(&w("/h"), "\x1b]0;x\x07").unwrap_err().0;
        assert!(e.contains(r#""\x1b]0;x\x07""#), "{e}");
        assert!(!e.contains('\x1b'), "{e}");
    }

    #[test]
    fn a_root_is_what_the_spec_names_with_the_peers_own_home() {
        let notes = RootSpec::Home(w("notes"));
        assert_eq!(expected_root(&notes, &w("/h")), Some(w("/h/notes")));
        assert_eq!(
            expected_root(&RootSpec::Home(w("")), &w("/h")),
            Some(w("/h"))
        );
        assert_eq!(expected_root(&notes, &w("")), None);
        let etc = RootSpec::Absolute(w("/etc/hosts"));
        assert_eq!(expected_root(&etc, &w("")), Some(w("/etc/hosts")));
        assert_eq!(expected_root(&etc, &w("/h")), Some(w("/etc/hosts")));
        assert_eq!(expected_root(&RootSpec::Home(w("../x")), &w("/h")), None);
    }

    #[test]
    fn entry_paths_stay_below_the_root_within_limits_and_off_synks_names() {
        let name = "n".repeat(NAME_MAX);
        let deep = vec![name.as_str(); PATH_MAX / (NAME_MAX + 1)].join("/");
        for ok in [
            "",
            "a",
            "a/b c/d",
            ".synk-notes.tmp",
            "d/.synk-tmp.0123456789ABCDEF",
            "\x1b[2J",
            name.as_str(),
            deep.as_str(),
        ] {
            assert_eq!(check_entry_path(&w(ok)), Ok(()), "{ok:?}");
        }
        let too_long_name = "n".repeat(NAME_MAX + 1);
        let too_long_path = format!("{deep}/{name}/x");
        for (bad, why) in [
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty"),
            ("a\0b", "NUL"),
            (too_long_name.as_str(), "a name longer than 255 bytes"),
            (too_long_path.as_str(), "longer than 4095 bytes"),
            (".synk-tmp.0123456789abcdef", "synk's own"),
            ("d/.synk-scratch.0123456789abcdef/x", "synk's own"),
        ] {
            let e = check_entry_path(&w(bad)).unwrap_err().0;
            assert!(e.starts_with("sent an invalid entry path"), "{e}");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_root_other_than_the_one_asked_for_is_refused() {
        let ok = scan(vec![
            root(0, "/h/.profile"),
            Response::Entries(vec![file("")]),
            root(1, "/h/notes"),
            Response::Entries(vec![file("a")]),
            Response::ScanDone,
        ])
        .unwrap();
        assert_eq!(ok[0].as_ref().unwrap().abs, w("/h/.profile"));
        assert_eq!(ok[1].as_ref().unwrap().listing.len(), 1);
        for (frames, want) in [
            (
                vec![root(0, "/h/.bashrc")],
                r#"protocol error: reported "/h/.bashrc" as root ~/.profile, which is "/h/.profile" there"#,
            ),
            (vec![root(0, "/h")], "as root ~/.profile"),
            (vec![root(0, "/h/.profile/")], "as root ~/.profile"),
            (vec![root(1, "/h/notes")], "root #1 out of order"),
            (
                vec![root(0, "/h/.profile"), root(1, "/h/notes"), root(2, "/h/x")],
                "root #2 out of order",
            ),
            // A root replaced by anything but an error.
            (
                vec![root(0, "/h/.profile"), root(0, "/h/.profile")],
                "root #0 out of order",
            ),
            (
                vec![root(0, "/h/.profile"), Response::ScanDone],
                "1 roots answered of 2",
            ),
            (
                vec![Response::Entries(vec![file("a")])],
                "entries outside a root",
            ),
            (vec![Response::Done], "unexpected Done"),
        ] {
            let e = scan(frames).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // A failure after the header replaces it; its text is cut.
        let failed = scan(vec![
            root(0, "/h/.profile"),
            Response::Root {
                index: 0,
                result: Err("x".repeat(5000)),
            },
            root(1, "/h/notes"),
            Response::ScanDone,
        ])
        .unwrap();
        let e = failed[0].as_ref().unwrap_err();
        assert!(
            e.len() < ERROR_MAX + 40 && e.ends_with("… [cut: 5000 bytes]"),
            "{e}"
        );
    }

    #[test]
    fn beside_a_single_file_root_only_its_conflict_copies_are_taken() {
        let copy = ".profile.synk-conflict-20251125-094640-alpha";
        let taken = scan(vec![
            root(0, "/h/.profile"),
            Response::Entries(vec![file(""), file(copy), gone("old/dir/entry")]),
            root(1, "/h/notes"),
            Response::ScanDone,
        ])
        .unwrap();
        let listing = &taken[0].as_ref().unwrap().listing;
        // The remembered deletion of another name is not this root's: dropped.
        assert_eq!(listing.keys().collect::<Vec<_>>(), [&w(""), &w(copy)]);
        for sibling in [
            ".ssh/authorized_keys",
            ".bashrc",
            ".bashrc.synk-conflict-20251125-094640-alpha",
            ".profile.synk-conflict-20251125-094640-al pha",
        ] {
            let e = scan(vec![
                root(0, "/h/.profile"),
                Response::Entries(vec![file(""), file(sibling)]),
                root(1, "/h/notes"),
                Response::ScanDone,
            ])
            .unwrap_err();
            assert!(
                e.starts_with("protocol error: sent")
                    && e.contains("beside a root that is a single file"),
                "{e}"
            );
        }
        // The rule is the client's own root name's, whatever the listing says.
        let mut held = Listing::new();
        let mut budget = Budget::default();
        take_entries(vec![file(""), file(copy)], &mut held, &mut budget, None).unwrap();
        assert!(file_root(Some(b".bashrc"), &mut held, &Default::default()).is_err());
        assert!(file_root(None, &mut held, &Default::default()).is_err());
        assert!(file_root(Some(b".profile"), &mut held, &Default::default()).is_ok());
        // Entries left to be fetched later count as much.
        assert!(file_root(
            Some(b".profile"),
            &mut held,
            &[w(copy)].into_iter().collect()
        )
        .is_ok());
        assert!(file_root(
            Some(b".profile"),
            &mut held,
            &[w("x")].into_iter().collect()
        )
        .is_err());
    }

    #[test]
    fn an_entry_twice_or_a_link_no_system_can_hold_is_refused() {
        let e = scan(vec![
            root(0, "/h/.profile"),
            root(1, "/h/notes"),
            Response::Entries(vec![file("a"), gone("b")]),
            Response::Entries(vec![file("a")]),
        ])
        .unwrap_err();
        assert_eq!(e, r#"protocol error: sent "a" twice"#);
        for vv in [vec![(7, 1), (1, 1)], vec![(1, 1), (1, 2)]] {
            let e = scan(vec![
                root(0, "/h/.profile"),
                root(1, "/h/notes"),
                Response::Entries(vec![Entry {
                    vv: Some(Vv(vv)),
                    ..file("a")
                }]),
            ])
            .unwrap_err();
            assert_eq!(e, r#"sent "a" with a version vector out of order"#);
        }
        let link = |target: &[u8]| Entry {
            state: Ok(Some(Meta {
                kind: Kind::Symlink(WirePath(target.to_vec())),
                size: 0,
                mode: 0o777,
                mtime: 0,
                digest: Some(Digest::of(target)),
                extra: Default::default(),
            })),
            ..file("l")
        };
        for target in [&b""[..], b"a\0b", &[b'x'; PATH_MAX + 1]] {
            let e = scan(vec![
                root(0, "/h/.profile"),
                root(1, "/h/notes"),
                Response::Entries(vec![link(target)]),
            ])
            .unwrap_err();
            assert!(e.contains("which no symlink can hold"), "{e}");
        }
        let unreadable = Entry {
            state: Err("\x1b[31m".repeat(1000)),
            ..file("u")
        };
        let got = scan(vec![
            root(0, "/h/.profile"),
            root(1, "/h/notes"),
            Response::Entries(vec![unreadable]),
            Response::ScanDone,
        ])
        .unwrap();
        let seen = &got[1].as_ref().unwrap().listing[&w("u")];
        assert!(matches!(&seen.state, Err(e) if e.len() <= ERROR_MAX + 30));
    }

    #[test]
    fn a_hard_link_is_a_files_to_an_earlier_name_of_the_root() {
        let ok = |rel: &str, to: &str| check_link(&w(rel), &Kind::File, &w(to)).is_ok();
        assert!(ok("d/b", "d/a"));
        assert!(ok("z", "a/b/c"));
        assert!(!ok("a", "a"), "itself");
        assert!(!ok("a", "b"), "a later name: no cycles");
        assert!(!ok("b", "../a"), "outside the root");
        assert!(!ok("b", "/etc/passwd"), "absolute");
        assert!(!ok("b", ""), "the root");
        assert!(
            check_link(&w("b"), &Kind::Dir, &w("a")).is_err(),
            "a directory"
        );
    }

    #[test]
    fn an_answer_bigger_than_the_budget_is_refused() {
        let mut budget = Budget::new(10 * ENTRY_COST);
        let mut listing = Listing::new();
        let entries = (0..9).map(|i| file(&format!("f{i}"))).collect();
        take_entries(entries, &mut listing, &mut budget, None).unwrap();
        let e = take_entries(vec![file("x"), file("y")], &mut listing, &mut budget, None)
            .unwrap_err()
            .0;
        assert!(e.starts_with("sent more than this client holds"), "{e}");
        let mut briefs = Briefs::default();
        let mut budget = Budget::new(BRIEF_COST * 3);
        let brief = |rel: &str| Brief {
            rel: w(rel),
            fp: [0; 16],
            size: 0,
            gone: false,
        };
        take_briefs(vec![brief("a"), brief("b")], &mut briefs, &mut budget).unwrap();
        assert!(take_briefs(vec![brief("c")], &mut briefs, &mut budget).is_err());
        // A brief of the root itself, or of a path that escapes, is refused.
        let mut budget = Budget::default();
        assert!(take_briefs(vec![brief("")], &mut briefs, &mut budget).is_err());
        assert!(take_briefs(vec![brief("../x")], &mut briefs, &mut budget).is_err());
    }

    #[test]
    fn a_detail_answer_holds_exactly_what_was_asked() {
        let asked = [w("a"), w("b")];
        let mut listing = Listing::new();
        let mut check = DetailCheck::new(&asked);
        check.take(vec![file("b")], &mut listing).unwrap();
        assert!(check.done().unwrap_err().0.contains(r#"without "a""#));
        check.take(vec![file("a")], &mut listing).unwrap();
        assert_eq!(check.done(), Ok(()));
        for extra in [vec![file("c")], vec![file("a"), file("a")]] {
            let mut check = DetailCheck::new(&asked);
            let e = check.take(extra, &mut Listing::new()).unwrap_err().0;
            assert!(e.contains("which was not asked for (or twice)"), "{e}");
        }
    }

    #[test]
    fn kept_versions_are_of_the_path_asked_about() {
        let kept = |path: &str, id: &str| Kept {
            path: w(path),
            id: id.into(),
            meta: Meta {
                kind: Kind::File,
                size: 1,
                mode: 0o644,
                mtime: 0,
                digest: Some(Digest::of(b"x")),
                extra: Default::default(),
            },
            replaced: 0,
            why: Why::Overwritten,
        };
        let mut check = VersionsCheck::new(&RootSpec::Home(w("notes")), &w("/h"));
        check
            .take(&[kept("/h/notes", "1-a"), kept("/h/notes/d/f", "2-b")])
            .unwrap();
        for (bad, id) in [
            ("/h/notes2/f", "1"),
            ("/h/.ssh/authorized_keys", "1"),
            ("/h/notes/../x", "1"),
            ("h/notes/x", "1"),
            ("/h/notes/x", "../../etc"),
            ("/h/notes/x", ""),
        ] {
            assert!(check.take(&[kept(bad, id)]).is_err(), "{bad:?} {id:?}");
        }
        let mut none = VersionsCheck::new(&RootSpec::Home(w("notes")), &w(""));
        assert!(none.take(&[kept("/h/notes", "1")]).is_err());
    }

    #[test]
    fn peer_text_is_cut_and_quoted_bounded() {
        assert_eq!(clip("short".into()), "short");
        let cut = clip("é".repeat(ERROR_MAX));
        let mark = format!("… [cut: {} bytes]", 2 * ERROR_MAX);
        assert!(cut.starts_with("éé") && cut.ends_with(&mark), "{cut}");
        assert!(cut.len() <= ERROR_MAX + 30);
        let q = quote(&[b'a'; 1000]);
        assert_eq!(q, format!("\"{}\"… (1000 bytes)", "a".repeat(QUOTE_MAX)));
        let big = Response::Failed("y".repeat(1 << 20));
        assert_eq!(glimpse(&big, 12), "Failed(\"yyyy");
    }

    #[test]
    fn what_a_filesystem_holds_is_taken_once_a_root_with_a_step_some_filesystem_has() {
        // The fuzz seed: three roots, the last told to fold case, with whole seconds.
        let seed = include_bytes!("../../fuzz/seeds/listing/holds");
        let frames = || {
            let mut r = &seed[..];
            let mut frames = Vec::new();
            while let Ok(f) = crate::proto::read_frame::<Response, _>(&mut r) {
                frames.push(f);
            }
            frames
        };
        let roots = [
            RootSpec::Home(w(".profile")),
            RootSpec::Home(w("notes")),
            RootSpec::Absolute(w("/srv/data")),
        ];
        let scans = check_scan(&roots, &w("/h"), frames()).unwrap();
        let told = scans[2].as_ref().unwrap().holds.unwrap();
        assert!(told.folds_case && !told.symlinks && !told.modes, "{told:?}");
        assert_eq!(told.mtime_step, 1_000_000_000);
        assert_eq!(scans[0].as_ref().unwrap().holds, None);
        let at = frames()
            .iter()
            .position(|f| matches!(f, Response::Holds(_)))
            .unwrap();
        let twice = {
            let mut f = frames();
            f.insert(at, Response::Holds(told));
            f
        };
        for (bad, says) in [
            (twice, "told twice"),
            (
                {
                    let mut f = frames();
                    f[at] = Response::Holds(crate::proto::Holds {
                        mtime_step: 0,
                        ..told
                    });
                    f
                },
                "out of range",
            ),
        ] {
            let e = check_scan(&roots, &w("/h"), bad).unwrap_err();
            assert!(e.0.contains(says), "{}", e.0);
        }
    }
}
