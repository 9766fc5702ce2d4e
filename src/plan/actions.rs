//! Every action of a plan, peer by peer: what a dry run says it would do, what the operations
//! log records and what `--json` lists.

use std::collections::HashSet;

use super::{Listing, PeerId, Plan};
use crate::paths::WirePath;

/// What an action does to an entry on one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// A conflict's losing version takes its conflict name.
    Rename,
    /// The version there is kept in the version store: a conflict copy made there, or a
    /// version a copy replaces or another kind of entry displaces.
    Keep,
    /// The entry is written there: copied from another peer, or cloned from a file it holds.
    Copy,
    /// The entry is deleted there (and kept as a version).
    Delete,
    /// The entry there holds the winning content already and takes its metadata.
    Meta,
    /// A change made on a receive-only peer is undone: the group's version is written there,
    /// or the entry taken out where the group has none (its own version kept first).
    Revert,
}

/// One action on one peer's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The peer.
    pub peer: PeerId,
    /// The entry, below the root.
    pub rel: WirePath,
    /// What happens to it.
    pub verb: Verb,
    /// Where the written version comes from: the master of a copy, the peer itself for a
    /// clone.
    pub from: Option<PeerId>,
}

impl Action {
    /// A copy that creates its entry: the peer holds nothing there now (`views`: each peer's
    /// listing of the root).
    pub fn creates(&self, views: &[Option<&Listing>]) -> bool {
        self.verb == Verb::Copy
            && !views[self.peer]
                .and_then(|l| l.get(&self.rel))
                .is_some_and(|s| matches!(s.state, Ok(Some(_))))
    }
}

impl Plan {
    /// Every action of the plan: renames (each with the conflict copy it keeps), keeps,
    /// clones, removes, metadata set, then copies to each of their targets; a write or removal that undoes
    /// a receive-only peer's change is a revert.
    pub fn actions(&self) -> Vec<Action> {
        let reverts: HashSet<(PeerId, &WirePath)> =
            self.reverts.iter().map(|(p, rel)| (*p, rel)).collect();
        let act = |peer, rel: &WirePath, verb, from| Action {
            peer,
            rel: rel.clone(),
            verb: match verb {
                Verb::Copy | Verb::Delete if reverts.contains(&(peer, rel)) => Verb::Revert,
                v => v,
            },
            from,
        };
        let mut out = Vec::new();
        for r in &self.renames {
            out.push(act(r.peer, &r.rel, Verb::Rename, None));
            out.push(act(r.peer, &r.to, Verb::Keep, None));
        }
        for (p, rel) in &self.keeps {
            out.push(act(*p, rel, Verb::Keep, None));
        }
        for c in &self.clones {
            out.push(act(c.peer, &c.rel, Verb::Copy, Some(c.peer)));
        }
        for r in &self.removes {
            let verb = if r.deleted { Verb::Delete } else { Verb::Keep };
            out.push(act(r.peer, &r.rel, verb, None));
        }
        for t in &self.touches {
            out.push(act(t.peer, &t.rel, Verb::Meta, None));
        }
        for c in &self.copies {
            for t in &c.targets {
                out.push(act(*t, &c.rel, Verb::Copy, Some(c.master)));
            }
        }
        for l in &self.links {
            out.push(act(l.peer, &l.rel, Verb::Copy, Some(l.peer)));
        }
        out
    }
}
