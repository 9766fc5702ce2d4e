//! The decision: given every peer's scan of one root, with what each held after the last sync,
//! what must change where.
//!
//! Pure: no I/O, no clocks, no peers; every rule is unit-tested (`tests.rs`).
//!
//! Per entry (the root itself and everything below it, the union over all peers):
//! - a version is judged against the peer's remembered state: changed on one peer (or on
//!   several to the same content), it goes everywhere, whatever the mtimes say;
//! - deleted on one peer and unchanged elsewhere: deleted everywhere (kept as a version);
//! - modified on one peer and deleted on another: the modification wins;
//! - changed on several peers to different contents: a conflict; the newest keeps the name
//!   (a directory always does), every other version is kept beside it under a conflict name;
//! - no history for an entry (first sync, a new peer): the newest mtime wins; equal mtimes
//!   with different content are a conflict as above;
//! - metadata (mode, mtime) never conflicts: the winning content takes each field's newest
//!   change on any peer (a content change on one peer and a chmod on another merge), and the
//!   peers holding that content with other metadata are given it ([`Touch`]);
//! - a directory that must stay because something new is inside it stays;
//! - `--master` makes a peer's version win outright wherever it has one;
//! - roles ([`Role`]): the decision is made among the peers that may send (every one but a
//!   receive-only peer); a send-only peer's change wins over the others' concurrent ones
//!   (theirs are kept as versions, no conflict copy) and nothing reaches it; a receive-only
//!   peer takes the group's version, its own changes reverted; a deletion never reaches a
//!   no-delete peer. `--master` wins over every role where it has a version;
//! - an entry a peer cannot read leaves that peer out of it and of everything below it;
//! - a root that is empty now on a peer that held entries is never a mass deletion: that peer
//!   is left out of the root (unless the user confirms);
//! - nor is a mount point below the root that is emptied now (the peer says which): that peer
//!   is left out of that subtree (unless the user confirms);
//! - fifos, sockets and devices are reported and skipped.

mod actions;
mod derive;
mod entry;
pub mod extra;
mod links;
mod meta;
#[cfg(test)]
mod meta_tests;
mod names;
#[cfg(test)]
mod names_tests;
mod records;
#[cfg(test)]
mod role_tests;
mod settle;
mod spell;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{Content, Kind, Meta, Role, Vv};
use crate::paths::WirePath;
pub use actions::{Action, Verb};
use derive::{actions_of, clones, keep_needed_directories, Decided};
use entry::{verdict, versions_of, Verdict, Version};
pub use links::{link_names, Link};
pub use meta::differences;
pub use names::{Collision, Fold};
pub use records::Records;
pub use settle::{settle, settle_none, Briefs, Paths, Settled};
pub use spell::respell;

/// Index of a peer in the run's peer list (0 is always localhost).
pub type PeerId = usize;

/// Entries of peers: each a peer and a path below the root.
pub type PeerEntries = std::collections::HashSet<(PeerId, WirePath)>;

/// One entry as a peer reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Its metadata (`None`: deleted since the last sync, or a remembered deletion), or why
    /// it cannot be read.
    pub state: Result<Option<Meta>, String>,
    /// Its version vector; `None` when the peer has no history of the entry.
    pub vv: Option<Vv>,
    /// New, changed or deleted since the last sync (a remembered deletion is not).
    pub changed: bool,
}

/// What one peer holds under one root: every entry by relative path.
pub type Listing = BTreeMap<WirePath, Seen>;

/// One entry to carry from its master to peers that lack it or hold something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Path below the root (empty: the root itself).
    pub rel: WirePath,
    /// A peer holding the winning version.
    pub master: PeerId,
    /// Peers that must receive it.
    pub targets: Vec<PeerId>,
    /// The winning version's metadata.
    pub meta: Meta,
    /// Where the master holds the version, when not at `rel`: a send-only peer's losing
    /// version stays under its own name there, and the others take it under its conflict
    /// name.
    pub source: Option<WirePath>,
}

/// An entry a peer takes out of its tree, into its version store (directories: removed once
/// empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remove {
    /// The entry.
    pub rel: WirePath,
    /// The peer.
    pub peer: PeerId,
    /// A deletion (else it makes room for another kind of entry).
    pub deleted: bool,
}

/// A conflict's losing version, renamed on the peer holding it and then copied everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// The entry.
    pub rel: WirePath,
    /// The peer holding the losing version.
    pub peer: PeerId,
    /// Its conflict name.
    pub to: WirePath,
}

/// A file a target makes from a file it already holds with the same content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clone {
    /// The entry to create or replace.
    pub rel: WirePath,
    /// The peer.
    pub peer: PeerId,
    /// The file there with the wanted content.
    pub from: WirePath,
    /// The wanted version's metadata.
    pub meta: Meta,
}

/// New metadata for an entry a peer already holds with the winning content: only the fields
/// that differ are set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The entry.
    pub rel: WirePath,
    /// The peer.
    pub peer: PeerId,
    /// The metadata it holds now, for messages.
    pub was: Meta,
    /// The metadata it takes.
    pub meta: Meta,
}

/// A conflict, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The entry.
    pub rel: WirePath,
    /// The peer whose version keeps the name.
    pub winner: PeerId,
    /// Each other version: the peer it came from and its new name.
    pub kept: Vec<(PeerId, WirePath)>,
}

/// Why an entry or a peer is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A peer could not read the entry: it is left out of it and of everything below it.
    Unreadable {
        /// The entry.
        rel: WirePath,
        /// The peer that failed.
        peer: PeerId,
        /// Its error.
        error: String,
    },
    /// A fifo, socket or device: never synced.
    Special {
        /// The entry.
        rel: WirePath,
        /// The peers holding one.
        peers: Vec<PeerId>,
    },
    /// The root is empty or missing on a peer that held entries after the last sync.
    EmptyRoot {
        /// The peer.
        peer: PeerId,
        /// How many entries it held.
        held: usize,
    },
    /// A directory that was a mount point at the last sync is empty or missing on a peer
    /// now: that peer is left out of it and of everything below it.
    EmptySubtree {
        /// The peer.
        peer: PeerId,
        /// The directory.
        rel: WirePath,
        /// How many entries below it are gone.
        held: u64,
        /// The directory's absolute path on that peer.
        path: WirePath,
    },
    /// A file over `--max-size` on some peer: the entry is left alone everywhere.
    TooBig {
        /// The entry.
        rel: WirePath,
        /// The biggest version's size.
        size: u64,
    },
    /// No peer has the root at all.
    Missing,
    /// Names that are one name on this peer's filesystem (case, NFC/NFD): the peer is left
    /// out of all of them and of what is below them; the other peers sync them as usual.
    Collision {
        /// The peer whose filesystem folds them together.
        peer: PeerId,
        /// The names, in path order.
        names: Vec<WirePath>,
    },
    /// Symlinks that cannot be made on this peer's filesystem: the peer is left out of them,
    /// the others sync them.
    NoSymlinks {
        /// The peer.
        peer: PeerId,
        /// The symlinks it would have taken.
        rels: Vec<WirePath>,
    },
    /// No peer that may send holds or remembers anything of the root, while this
    /// receive-only peer holds entries there: reverting would empty it, so it is left out of
    /// the root (unless the user confirms).
    EmptyGroup {
        /// The receive-only peer.
        peer: PeerId,
        /// How many entries it holds.
        held: usize,
    },
}

impl Problem {
    /// The peer this problem leaves out of the root's sync and commit (an emptied root or
    /// group), if it leaves one out.
    pub fn left_out(&self) -> Option<PeerId> {
        match self {
            Problem::EmptyRoot { peer, .. } | Problem::EmptyGroup { peer, .. } => Some(*peer),
            _ => None,
        }
    }
}

/// A change on a peer that a send-only peer's concurrent change overrode: that peer's version
/// is kept in its version store and replaced (no conflict copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The entry.
    pub rel: WirePath,
    /// The peer whose version is replaced.
    pub peer: PeerId,
    /// The send-only peer whose version wins.
    pub by: PeerId,
}

/// Everything the decision produced for one root, in the order it is carried out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Conflict copies: losing versions get their new names first.
    pub renames: Vec<Rename>,
    /// Versions that copies will replace, kept first (same-kind replacements).
    pub keeps: Vec<(PeerId, WirePath)>,
    /// Files made from content a target already holds.
    pub clones: Vec<Clone>,
    /// Entries to take out: deletions and kind changes, children before parents.
    pub removes: Vec<Remove>,
    /// Metadata given to entries that hold the winning content already, parents first.
    pub touches: Vec<Touch>,
    /// Copies, parents before children.
    pub copies: Vec<Copy>,
    /// Names made as hard links once the copies are done ([`link_names`]).
    pub links: Vec<Link>,
    /// Per peer: the records its state takes when the run is over (where they differ from
    /// what it reported).
    pub records: Records,
    /// Conflicts resolved by keeping both versions.
    pub conflicts: Vec<Conflict>,
    /// Entries and peers left out, and why.
    pub problems: Vec<Problem>,
    /// Changes made on a receive-only peer, undone: its version is kept, then replaced by
    /// the group's (or taken out where the group has none).
    pub reverts: Vec<(PeerId, WirePath)>,
    /// Changes a send-only peer's concurrent change overrode.
    pub overrides: Vec<Override>,
    /// Entries where a send-only peer keeps a version other than the group's.
    pub kept_own: Vec<(PeerId, WirePath)>,
}

impl Plan {
    /// True when something is wrong enough that the run must not exit 0.
    pub fn has_failures(&self) -> bool {
        self.problems.iter().any(|p| {
            !matches!(
                p,
                Problem::Special { .. } | Problem::TooBig { .. } | Problem::NoSymlinks { .. }
            )
        })
    }

    /// True when the plan changes nothing on any peer (records aside).
    pub fn is_noop(&self) -> bool {
        self.renames.is_empty()
            && self.clones.is_empty()
            && self.removes.is_empty()
            && self.touches.is_empty()
            && self.copies.is_empty()
            && self.links.is_empty()
    }
}

/// A directory below a root that was a mount point at the last sync on a peer (or is one
/// now), empty or missing there now though entries were recorded below it, as that peer's
/// serve tells after the root's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emptied {
    /// The directory, below the root.
    pub rel: WirePath,
    /// How many entries below it are gone.
    pub held: u64,
    /// Its absolute path on that peer, for messages.
    pub path: WirePath,
}

/// What the decision is given for one root.
pub struct Input<'a> {
    /// Each peer's listing, or `None` when that peer could not scan the root.
    pub views: &'a [Option<&'a Listing>],
    /// Peer names, for conflict copies' names.
    pub names: &'a [String],
    /// `--master`.
    pub forced: Option<PeerId>,
    /// The user confirmed that roots found empty were emptied on purpose.
    pub confirm_empty: bool,
    /// For a root that is a single file, its name: its conflict copies go beside it.
    pub file_name: Option<&'a [u8]>,
    /// `--max-size`: entries with a bigger file version anywhere are left alone.
    pub max_size: Option<u64>,
    /// Per peer, entries it holds that were settled in sync before the decision and so are
    /// not in its view ([`settle()`]); missing: none.
    pub settled: &'a [usize],
    /// Per peer, its role; missing: a normal peer.
    pub roles: &'a [Role],
    /// Per peer, its emptied mount points; missing: none. Each leaves that peer out of its
    /// subtree, unless `confirm_empty`.
    pub emptied: &'a [Vec<Emptied>],
    /// Per peer, how its filesystem compares names; missing: byte by byte.
    pub folds: &'a [Fold],
    /// The peers whose filesystem under this root holds no symlinks (exFAT, FAT): left out of
    /// every symlink, named once.
    pub no_symlinks: &'a [PeerId],
}

impl Input<'_> {
    /// Peer `p`'s role.
    fn role(&self, p: PeerId) -> Role {
        self.roles.get(p).copied().unwrap_or_default()
    }

    /// Whether peer `p`'s versions may win: it is not receive-only, or it is the `--master`.
    fn sends(&self, p: PeerId) -> bool {
        self.role(p).sends() || self.forced == Some(p)
    }

    /// The emptied mount point of peer `p` at or above `rel`, if any.
    fn emptied_over(&self, p: PeerId, rel: &WirePath) -> Option<&Emptied> {
        self.emptied
            .get(p)?
            .iter()
            .find(|e| rel.below(&e.rel).is_some())
    }
}

/// Whether a peer's listing of a root (with `settled` entries in sync besides) holds or
/// remembers nothing of it: no entry below it, present or deleted, and no root but a
/// directory.
fn knows_nothing(listing: &Listing, settled: usize) -> bool {
    settled == 0
        && listing.iter().all(|(rel, seen)| {
            rel.is_empty() && matches!(&seen.state, Ok(Some(m)) if m.kind == Kind::Dir)
        })
}

/// What a peer holds of a root: its entries below it, or the root itself where it is not a
/// directory.
fn holds(listing: &Listing, settled: usize) -> usize {
    let held = |(rel, s): (&WirePath, &Seen)| match &s.state {
        Ok(Some(m)) => !rel.is_empty() || m.kind != Kind::Dir,
        _ => false,
    };
    settled + listing.iter().filter(|e| held(*e)).count()
}

/// The number of entries a peer held below the root at the last sync when the root is empty
/// or missing there now and more than one entry is gone; `None` when it is not suddenly empty.
/// `settled`: entries the peer holds that are not in `listing` (settled in sync).
pub fn suddenly_empty(listing: &Listing, settled: usize) -> Option<usize> {
    // Counted below the root only: a single file deleted on purpose is not an empty tree.
    let mut held = settled;
    let mut deleted = 0;
    for (_, seen) in listing.iter().filter(|(rel, _)| !rel.is_empty()) {
        match &seen.state {
            Ok(Some(_)) => held += 1,
            Ok(None) if seen.changed => deleted += 1,
            _ => {}
        }
    }
    // One entry gone is an ordinary deletion, even of the last one.
    (held == 0 && deleted > 1).then_some(deleted)
}

/// Decides one root. Where a peer's filesystem would take some of the names decided for one
/// name, it is decided again with that peer left out of those names ([`names`]).
pub fn decide(input: &Input<'_>) -> Plan {
    let (plan, available) = decide_apart(input, &HashSet::new());
    let found = names::collisions(input, &available, &plan);
    let unlinked = names::symlinks_out(input, &plan);
    if found.is_empty() && unlinked.is_empty() {
        return plan;
    }
    let mut apart: HashSet<(PeerId, WirePath)> = found
        .iter()
        .flat_map(|c| c.names.iter().map(|n| (c.peer, n.clone())))
        .collect();
    apart.extend(
        unlinked
            .iter()
            .flat_map(|(p, rels)| rels.iter().map(|r| (*p, r.clone()))),
    );
    let (mut plan, _) = decide_apart(input, &apart);
    plan.problems
        .extend(found.into_iter().map(|c| Problem::Collision {
            peer: c.peer,
            names: c.names,
        }));
    plan.problems.extend(
        unlinked
            .into_iter()
            .map(|(peer, rels)| Problem::NoSymlinks { peer, rels }),
    );
    plan
}

/// Decides one root with each (peer, entry) in `apart` left out of that entry and of what is
/// below it. Returns the peers in the decision, too.
fn decide_apart(input: &Input<'_>, apart: &HashSet<(PeerId, WirePath)>) -> (Plan, Vec<PeerId>) {
    let mut plan = Plan::default();
    let mut available: Vec<PeerId> = Vec::new();
    for (p, v) in input.views.iter().enumerate() {
        let Some(listing) = v else { continue };
        match suddenly_empty(listing, input.settled.get(p).copied().unwrap_or(0)) {
            Some(held) if !input.confirm_empty => {
                plan.problems.push(Problem::EmptyRoot { peer: p, held });
            }
            _ => available.push(p),
        }
    }
    if !available.iter().any(|p| input.sends(*p)) {
        // Nothing may win here: the peers that may send are out (and said why).
        return (plan, available);
    }
    empty_group(input, &mut available, &mut plan);
    // Peers left out of an emptied mount point's subtree.
    let mut emptied_out = false;
    if !input.confirm_empty {
        for &p in &available {
            for e in input.emptied.get(p).into_iter().flatten() {
                plan.problems.push(Problem::EmptySubtree {
                    peer: p,
                    rel: e.rel.clone(),
                    held: e.held,
                    path: e.path.clone(),
                });
                emptied_out = true;
            }
        }
    }
    let mut union: BTreeMap<&WirePath, Vec<(PeerId, &Seen)>> = BTreeMap::new();
    for &p in &available {
        for (rel, seen) in input.views[p].expect("available") {
            union.entry(rel).or_default().push((p, seen));
        }
    }
    if union.is_empty() {
        if !available.is_empty() && plan.problems.is_empty() {
            plan.problems.push(Problem::Missing);
        }
        return (plan, available);
    }

    // Peers left out of a subtree: (peer, entry) where the peer could not read the entry.
    let mut blocked: HashSet<(PeerId, WirePath)> = HashSet::new();
    let mut decided: Vec<Decided<'_>> = Vec::new();
    for (rel, seen) in &union {
        let out_of: Vec<PeerId> = available
            .iter()
            .copied()
            .filter(|p| {
                (!blocked.is_empty()
                    && !rel.is_empty()
                    && (blocked.contains(&(*p, WirePath::default()))
                        || rel.ancestors().any(|a| blocked.contains(&(*p, a)))))
                    || (emptied_out && input.emptied_over(*p, rel).is_some())
                    || (!apart.is_empty()
                        && (apart.contains(&(*p, (*rel).clone()))
                            || rel.ancestors().any(|a| apart.contains(&(*p, a)))))
            })
            .collect();
        let seen: Vec<(PeerId, &Seen)> = seen
            .iter()
            .filter(|(p, _)| !out_of.contains(p))
            .copied()
            .collect();
        let mut unreadable = Vec::new();
        for (p, s) in &seen {
            if let Err(e) = &s.state {
                plan.problems.push(Problem::Unreadable {
                    rel: (*rel).clone(),
                    peer: *p,
                    error: e.clone(),
                });
                blocked.insert((*p, (*rel).clone()));
                unreadable.push(*p);
            }
        }
        let specials: Vec<PeerId> = seen
            .iter()
            .filter(|(_, s)| matches!(&s.state, Ok(Some(m)) if m.kind == Kind::Special))
            .map(|(p, _)| *p)
            .collect();
        if !specials.is_empty() {
            plan.problems.push(Problem::Special {
                rel: (*rel).clone(),
                peers: specials,
            });
            continue;
        }
        let versions = versions_of(&seen);
        if versions.is_empty() {
            continue;
        }
        let biggest = versions
            .iter()
            .filter_map(|v| v.meta.filter(|m| m.kind == Kind::File).map(|m| m.size))
            .max();
        if let (Some(max), Some(size)) = (input.max_size, biggest) {
            if size > max {
                plan.problems.push(Problem::TooBig {
                    rel: (*rel).clone(),
                    size,
                });
                continue;
            }
        }
        let peers: Vec<PeerId> = available
            .iter()
            .copied()
            .filter(|p| !out_of.contains(p) && !unreadable.contains(p))
            .collect();
        if in_sync(&versions, peers.len()) {
            // The common case of a re-check: nothing to do, nothing to record.
            continue;
        }
        let forced = input.forced.filter(|f| !unreadable.contains(f));
        // --master wins over every role where it has a version.
        let overrides = forced.is_some_and(|f| versions.iter().any(|v| v.peer == f));
        let roles: &[Role] = if overrides { &[] } else { input.roles };
        let role = |p: PeerId| roles.get(p).copied().unwrap_or_default();
        let candidates: Vec<Version<'_>> = versions
            .iter()
            .filter(|v| role(v.peer).sends())
            .copied()
            .collect();
        let Verdict::Win {
            winner,
            losers,
            overrode,
        } = if candidates.is_empty() {
            // Only receive-only peers hold or remember it: the group has nothing there.
            Verdict::Win {
                winner: None,
                losers: vec![],
                overrode: None,
            }
        } else {
            verdict(&candidates, forced, &|p| role(p).send_only)
        };
        decided.push(Decided {
            rel,
            versions,
            peers,
            winner,
            losers,
            overrode,
            roles,
        });
    }

    keep_needed_directories(&mut decided);
    // Each decision is dropped once its actions are derived: the plan grows as they go.
    for d in decided {
        actions_of(&d, input, &mut plan);
    }
    plan.removes.reverse();
    plan.clones = clones(&mut plan.copies, &plan.renames, input.views);
    plan.copies.retain(|c| !c.targets.is_empty());
    (plan, available)
}

/// Leaves out of the root every receive-only peer that holds entries there while no peer that
/// may send holds or remembers anything of it (a first sync against empty peers): reverting
/// would empty it. Unless the user confirmed.
fn empty_group(input: &Input<'_>, available: &mut Vec<PeerId>, plan: &mut Plan) {
    let settled = |p: PeerId| input.settled.get(p).copied().unwrap_or(0);
    let view = |p: PeerId| input.views[p].expect("available");
    let group_has_nothing = available
        .iter()
        .filter(|p| input.sends(**p))
        .all(|p| knows_nothing(view(*p), settled(*p)));
    if input.confirm_empty || !group_has_nothing {
        return;
    }
    available.retain(|&p| {
        let held = holds(view(p), settled(p));
        if input.sends(p) || held == 0 {
            return true;
        }
        plan.problems.push(Problem::EmptyGroup { peer: p, held });
        false
    });
}

/// Every one of `peers` peers holds the same content and metadata with the same history.
fn in_sync(versions: &[Version<'_>], peers: usize) -> bool {
    let Some(first) = versions.first() else {
        return false;
    };
    let same_meta = |a: Option<&Meta>, b: Option<&Meta>| match (a, b) {
        (Some(a), Some(b)) => differences(a, b).is_empty(),
        _ => true,
    };
    versions.len() == peers
        && first.vv.is_some()
        && versions.iter().all(|v| {
            v.vv == first.vv
                && Content::of(v.meta) == Content::of(first.meta)
                && same_meta(v.meta, first.meta)
        })
}
