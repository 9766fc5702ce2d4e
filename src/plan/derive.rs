//! From decisions to actions: the directories that something new inside keeps, each decided
//! entry's renames, keeps, removes, copies and records, and the copies that become local
//! clones because a target already holds the content.

use std::collections::{HashMap, HashSet};

use super::entry::{Overrode, Version};
use super::meta::differences;
use super::{
    Clone, Conflict, Copy, Input, Listing, Override, PeerId, Plan, Remove, Rename, Seen, Touch,
};
use crate::model::{Content, Digest, Kind, Meta, Order, Record, Role, Vv};
use crate::names::conflict_name;
use crate::paths::WirePath;

/// The decision for one path, before actions are derived from it.
pub(super) struct Decided<'a> {
    /// The path.
    pub(super) rel: &'a WirePath,
    /// What each peer that holds or remembers it holds.
    pub(super) versions: Vec<Version<'a>>,
    /// Peers that take part: every available peer not left out of this path.
    pub(super) peers: Vec<PeerId>,
    /// A peer holding the winning version (`None`: the entry is deleted).
    pub(super) winner: Option<PeerId>,
    /// One peer per conflicting version that loses the name.
    pub(super) losers: Vec<PeerId>,
    /// Concurrent changes a send-only peer's version overrode.
    pub(super) overrode: Option<Overrode>,
    /// Each peer's role here (none where `--master` has a version).
    pub(super) roles: &'a [Role],
}

/// The key under which the decision itself counts a version, where no peer's counter orders
/// the group's version after a send-only peer's own (peers' keys are never 0).
const DECIDED: u64 = 0;

impl Decided<'_> {
    fn role(&self, p: PeerId) -> Role {
        self.roles.get(p).copied().unwrap_or_default()
    }

    fn version(&self, p: PeerId) -> Option<&Version<'_>> {
        self.versions.iter().find(|v| v.peer == p)
    }

    fn winner_meta(&self) -> Option<&Meta> {
        self.winner
            .and_then(|w| self.version(w))
            .and_then(|v| v.meta)
    }

    /// The version vector every peer records: it contains every version seen of the peers
    /// that may send (a receive-only peer's own changes never count). Where a send-only
    /// peer keeps another version than the group's with no less history, the decision counts
    /// one more under its own key: the next run then finds that peer's version older, not
    /// concurrent, and is quiet.
    fn joined(&self) -> Vv {
        let joined = self
            .versions
            .iter()
            .filter(|v| self.role(v.peer).sends())
            .filter_map(|v| v.vv)
            .fold(Vv::default(), |acc, v| acc.join(v));
        let want = Content::of(self.winner_meta());
        let level = self.versions.iter().any(|v| {
            self.role(v.peer).send_only
                && Content::of(v.meta) != want
                && v.vv.cloned().unwrap_or_default() == joined
        });
        if level {
            joined.bumped(DECIDED, 0)
        } else {
            joined
        }
    }

    /// Whether taking the group's version on `p` reverts a change made there: `p` is
    /// receive-only and holds a version the group (`group`: its history) never had.
    fn reverts(&self, p: PeerId, group: &Vv) -> bool {
        if !self.role(p).receive_only {
            return false;
        }
        match self.version(p) {
            None => false,
            Some(v) => match v.vv {
                None => v.meta.is_some(),
                Some(mine) => !matches!(mine.compare(group), Order::Before | Order::Equal),
            },
        }
    }

    /// The send-only peer whose version replaces `p`'s concurrent change (a version it
    /// holds, kept before it goes), if it does.
    fn overridden_by(&self, p: PeerId) -> Option<PeerId> {
        let o = self.overrode.as_ref()?;
        let mine = Content::of(Some(self.version(p)?.meta?));
        o.peers
            .iter()
            .any(|h| self.version(*h).map(|v| Content::of(v.meta)) == Some(mine.clone()))
            .then_some(o.by)
    }

    /// Notes why `p`'s version is replaced, where a role is the reason.
    fn note(&self, p: PeerId, group: &Vv, plan: &mut Plan) {
        if self.reverts(p, group) {
            plan.reverts.push((p, self.rel.clone()));
        } else if let Some(by) = self.overridden_by(p) {
            plan.overrides.push(Override {
                rel: self.rel.clone(),
                peer: p,
                by,
            });
        }
    }
}

/// A directory that something new inside must keep stays: its deletion is undone, and a file
/// or symlink that replaced it concurrently is kept under a conflict name instead.
pub(super) fn keep_needed_directories(decided: &mut [Decided<'_>]) {
    let mut needed: HashSet<WirePath> = HashSet::new();
    for d in decided.iter_mut().rev() {
        let is_dir = matches!(d.winner_meta(), Some(m) if m.kind == Kind::Dir);
        if needed.contains(d.rel) && !is_dir {
            // Among the versions of the peers that may send.
            let sends = |v: &&Version<'_>| d.role(v.peer).sends();
            let dir = d
                .versions
                .iter()
                .filter(sends)
                .find(|v| v.meta.is_some_and(|m| m.kind == Kind::Dir))
                .map(|v| v.peer);
            if let Some(dir) = dir {
                let others: Vec<PeerId> = d
                    .versions
                    .iter()
                    .filter(sends)
                    .filter(|v| v.meta.is_some_and(|m| m.kind != Kind::Dir))
                    .map(|v| v.peer)
                    .collect();
                let mut losers: Vec<PeerId> = Vec::new();
                for p in others {
                    let c = d.version(p).map(|v| Content::of(v.meta));
                    if !losers
                        .iter()
                        .any(|l| d.version(*l).map(|v| Content::of(v.meta)) == c)
                    {
                        losers.push(p);
                    }
                }
                d.winner = Some(dir);
                d.losers = losers;
                d.overrode = None;
            }
        }
        if d.winner.is_some() && !d.rel.is_empty() {
            needed.insert(WirePath::default());
            needed.extend(d.rel.ancestors());
        }
    }
}

/// Adds the actions and records of one decided path to `plan`.
pub(super) fn actions_of(d: &Decided<'_>, input: &Input<'_>, plan: &mut Plan) {
    let vv = d.joined();
    let rel = d.rel;
    let record = |meta: Option<&Meta>| Record {
        rel: rel.clone(),
        meta: meta.cloned(),
        vv: vv.clone(),
    };
    let Some(won) = d.winner_meta() else {
        // A deletion: every peer holding the entry takes it out, but a send-only peer, and a
        // no-delete peer where it is not a revert.
        for &p in &d.peers {
            let Some(v) = d.version(p) else { continue };
            if v.meta.is_some() {
                let role = d.role(p);
                if role.send_only {
                    plan.kept_own.push((p, rel.clone()));
                    continue;
                }
                if role.no_delete && !d.reverts(p, &vv) {
                    // It keeps the entry and its record.
                    continue;
                }
                plan.removes.push(Remove {
                    rel: rel.clone(),
                    peer: p,
                    deleted: true,
                });
                d.note(p, &vv, plan);
            } else if v.vv == Some(&vv)
                && !(input.confirm_empty && input.emptied_over(p, rel).is_some())
            {
                // Recorded as reported; but deletions below an emptied mount point are
                // recorded only as decided (the serve keeps their old records otherwise).
                continue;
            }
            plan.records.push(p, record(None));
        }
        return;
    };
    let winner = d.winner.expect("a winner");
    // A send-only winner's version goes as it is: nothing reaches that peer.
    let merged = (!d.role(winner).send_only)
        .then(|| super::meta::merged(&d.versions, winner, &d.losers, &|p| d.role(p).sends()))
        .flatten();
    let meta = merged.as_ref().unwrap_or(won);
    let want = Content::of(Some(meta));
    let mut kept = Vec::new();
    // Nothing reaches a send-only peer.
    let takes = |p: &PeerId| !d.role(*p).send_only;
    for &l in &d.losers {
        let lm = d
            .version(l)
            .and_then(|v| v.meta)
            .expect("a loser holds a version");
        // A single-file root's copy goes beside it, outside the root: it has no record there.
        let sibling = rel.is_empty().then_some(input.file_name).flatten();
        let named = sibling.map_or(rel.clone(), |n| WirePath(n.to_vec()));
        let to = conflict_name(&named, lm.mtime, &input.names[l]);
        // A send-only loser keeps its version under its name; the others take it under the
        // conflict name from there.
        let stays = d.role(l).send_only;
        if !stays {
            plan.renames.push(Rename {
                rel: rel.clone(),
                peer: l,
                to: to.clone(),
            });
        }
        let targets: Vec<PeerId> = d
            .peers
            .iter()
            .copied()
            .filter(|p| *p != l && takes(p))
            .collect();
        for &p in d.peers.iter().filter(|p| sibling.is_none() && takes(p)) {
            plan.records.push(
                p,
                Record {
                    rel: to.clone(),
                    meta: Some(lm.clone()),
                    vv: vv.clone(),
                },
            );
        }
        if !targets.is_empty() {
            plan.copies.push(Copy {
                rel: to.clone(),
                master: l,
                targets,
                meta: lm.clone(),
                source: stays.then(|| rel.clone()),
            });
        }
        kept.push((l, to));
    }
    if !kept.is_empty() {
        plan.conflicts.push(Conflict {
            rel: rel.clone(),
            winner,
            kept,
        });
    }
    let mut targets = Vec::new();
    for &p in &d.peers {
        let v = d.version(p);
        let holds = v.and_then(|v| v.meta);
        let send_only = d.role(p).send_only;
        let renamed = d.losers.contains(&p) && !send_only;
        match holds {
            Some(m) if !renamed && Content::of(Some(m)) == want => {
                let differs = !differences(m, meta).is_empty();
                if differs && !send_only {
                    plan.touches.push(Touch {
                        rel: rel.clone(),
                        peer: p,
                        was: m.clone(),
                        meta: meta.clone(),
                    });
                    plan.records.push(p, record(Some(meta)));
                } else if v.and_then(|v| v.vv) != Some(&vv) {
                    // A send-only peer records the metadata it keeps.
                    plan.records
                        .push(p, record(Some(if send_only { m } else { meta })));
                }
                continue;
            }
            _ if send_only => {
                // It keeps its own version (a losing one is told as a conflict).
                if v.is_some() && !d.losers.contains(&p) {
                    plan.kept_own.push((p, rel.clone()));
                }
                continue;
            }
            Some(m)
                if m.kind == Kind::Dir
                    && meta.kind != Kind::Dir
                    && d.role(p).no_delete
                    && !d.reverts(p, &vv) =>
            {
                // Replacing a directory deletes what is in it: a no-delete peer keeps it.
                continue;
            }
            Some(m) if !renamed => {
                let same_kind = (m.kind == Kind::Dir) == (meta.kind == Kind::Dir);
                if same_kind {
                    // A file or symlink replaced by another: kept before the copy lands.
                    plan.keeps.push((p, rel.clone()));
                } else {
                    plan.removes.push(Remove {
                        rel: rel.clone(),
                        peer: p,
                        deleted: false,
                    });
                }
            }
            _ => {}
        }
        if !renamed {
            d.note(p, &vv, plan);
        }
        targets.push(p);
        plan.records.push(p, record(Some(meta)));
    }
    if !targets.is_empty() {
        plan.copies.push(Copy {
            rel: rel.clone(),
            master: winner,
            targets,
            meta: meta.clone(),
            source: None,
        });
    }
}

/// Moves copies of files a target already holds elsewhere (a rename, a duplicate) out of the
/// copies and into local clones: no bytes cross the network for them.
pub(super) fn clones(
    copies: &mut [Copy],
    renames: &[Rename],
    views: &[Option<&Listing>],
) -> Vec<Clone> {
    let mut index: HashMap<PeerId, HashMap<Digest, &WirePath>> = HashMap::new();
    let mut out = Vec::new();
    // Every (target, entry) some copy writes: a clone must not read from one of those. Only
    // needed where a target holds files to clone from (not on a first sync to empty peers,
    // where this set would be the largest thing in memory).
    let has_files: Vec<bool> = views
        .iter()
        .map(|v| {
            v.is_some_and(|l| {
                l.values()
                    .any(|s| matches!(&s.state, Ok(Some(m)) if m.kind == Kind::File))
            })
        })
        .collect();
    let written: HashSet<(PeerId, WirePath)> = copies
        .iter()
        .flat_map(|c| c.targets.iter().map(|t| (*t, &c.rel)))
        .filter(|(t, _)| has_files[*t])
        .map(|(t, rel)| (t, rel.clone()))
        .collect();
    for c in copies.iter_mut() {
        if c.meta.kind != Kind::File {
            continue;
        }
        let Some(digest) = c.meta.digest else {
            continue;
        };
        c.targets.retain(|&t| {
            let Some(listing) = views[t] else { return true };
            let files = index.entry(t).or_insert_with(|| {
                listing
                    .iter()
                    .filter_map(|(rel, s)| match &s.state {
                        Ok(Some(m)) if m.kind == Kind::File => Some((m.digest?, rel)),
                        _ => None,
                    })
                    .filter(|(_, rel)| !renames.iter().any(|r| r.peer == t && &&r.rel == rel))
                    // Not from a path a copy rewrites there: its content changes first.
                    .filter(|(_, rel)| !written.contains(&(t, (*rel).clone())))
                    .collect()
            });
            // Only into a free path or over a file: a directory there goes first.
            let free = !matches!(listing.get(&c.rel), Some(Seen { state: Ok(Some(m)), .. }) if m.kind == Kind::Dir);
            match files.get(&digest) {
                Some(from) if free && **from != c.rel => {
                    out.push(Clone {
                        rel: c.rel.clone(),
                        peer: t,
                        from: (*from).clone(),
                        meta: c.meta.clone(),
                    });
                    false
                }
                _ => true,
            }
        });
    }
    out
}
