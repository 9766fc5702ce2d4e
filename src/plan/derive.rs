//! From decisions to actions: the directories that something new inside keeps, each decided
//! entry's renames, keeps, removes, copies and records, and the copies that become local
//! clones because a target already holds the content.

use std::collections::{HashMap, HashSet};

use super::entry::Version;
use super::{Clone, Conflict, Copy, Input, Listing, PeerId, Plan, Remove, Rename, Seen};
use crate::model::{Content, Digest, Kind, Meta, Record, Vv};
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
}

impl Decided<'_> {
    fn version(&self, p: PeerId) -> Option<&Version<'_>> {
        self.versions.iter().find(|v| v.peer == p)
    }

    fn winner_meta(&self) -> Option<&Meta> {
        self.winner
            .and_then(|w| self.version(w))
            .and_then(|v| v.meta)
    }

    /// The version vector every peer records: it contains every version seen.
    fn joined(&self) -> Vv {
        self.versions
            .iter()
            .filter_map(|v| v.vv)
            .fold(Vv::default(), |acc, v| acc.join(v))
    }
}

/// A directory that something new inside must keep stays: its deletion is undone, and a file
/// or symlink that replaced it concurrently is kept under a conflict name instead.
pub(super) fn keep_needed_directories(decided: &mut [Decided<'_>]) {
    let mut needed: HashSet<WirePath> = HashSet::new();
    for d in decided.iter_mut().rev() {
        let is_dir = matches!(d.winner_meta(), Some(m) if m.kind == Kind::Dir);
        if needed.contains(d.rel) && !is_dir {
            let dir = d
                .versions
                .iter()
                .find(|v| v.meta.is_some_and(|m| m.kind == Kind::Dir))
                .map(|v| v.peer);
            if let Some(dir) = dir {
                let others: Vec<PeerId> = d
                    .versions
                    .iter()
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
    let Some(meta) = d.winner_meta() else {
        // A deletion: every peer holding the entry takes it out.
        for &p in &d.peers {
            let Some(v) = d.version(p) else { continue };
            if v.meta.is_some() {
                plan.removes.push(Remove {
                    rel: rel.clone(),
                    peer: p,
                    deleted: true,
                });
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
    let want = Content::of(Some(meta));
    let mut kept = Vec::new();
    for &l in &d.losers {
        let lm = d
            .version(l)
            .and_then(|v| v.meta)
            .expect("a loser holds a version");
        // A single-file root's copy goes beside it, outside the root: it has no record there.
        let sibling = rel.is_empty().then_some(input.file_name).flatten();
        let named = sibling.map_or(rel.clone(), |n| WirePath(n.to_vec()));
        let to = conflict_name(&named, lm.mtime, &input.names[l]);
        plan.renames.push(Rename {
            rel: rel.clone(),
            peer: l,
            to: to.clone(),
        });
        let targets: Vec<PeerId> = d.peers.iter().copied().filter(|p| *p != l).collect();
        for &p in d.peers.iter().filter(|_| sibling.is_none()) {
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
        let renamed = d.losers.contains(&p);
        match holds {
            Some(m) if !renamed && Content::of(Some(m)) == want => {
                if v.and_then(|v| v.vv) != Some(&vv) {
                    plan.records.push(p, record(Some(meta)));
                }
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
        targets.push(p);
        plan.records.push(p, record(Some(meta)));
    }
    if !targets.is_empty() {
        plan.copies.push(Copy {
            rel: rel.clone(),
            master: winner,
            targets,
            meta: meta.clone(),
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
