//! Telling a root's plan: at `-v` every peer's version of each entry that changes (`-vv`: of
//! every entry) and the master of each copy, always the conflicts and the problems, and with
//! `-n` what would be done.

use std::collections::BTreeSet;

use super::event::Event;
use super::{Reporter, RootPlan};
use crate::paths::{entry_display, WirePath};
use crate::plan::{PeerId, Problem};

impl RootPlan<'_> {
    fn name(&self, p: usize) -> String {
        self.names[p].clone()
    }

    /// Peer `p`'s role's words.
    fn role(&self, p: usize) -> Vec<&'static str> {
        self.roles.get(p).map(|r| r.words()).unwrap_or_default()
    }

    /// How entry `rel` is named in lines: below the root as the user named it.
    fn path_of(&self, rel: &WirePath) -> WirePath {
        entry_display(self.root, rel)
    }

    /// Where a conflict copy `to` is: a single-file root's copies sit beside it.
    fn copy_path(&self, to: &WirePath) -> WirePath {
        match std::path::Path::new(self.root).parent() {
            Some(dir) if !self.root_is_dir => WirePath::from_path(&dir.join(to.as_path())),
            _ => self.path_of(to),
        }
    }
}

impl Reporter {
    /// Tells what was decided for a root: `-v` lines, conflicts and problems.
    pub fn plan(&self, p: &RootPlan<'_>) {
        self.peer_versions(p);
        for c in &p.plan.copies {
            self.emit(Event::Master {
                peer: p.name(c.master),
                path: p.path_of(&c.rel),
            });
        }
        for t in &p.plan.touches {
            self.emit(Event::Metadata {
                peer: p.name(t.peer),
                path: p.path_of(&t.rel),
                fields: super::text::touched_fields(t),
            });
        }
        for (peer, rel) in &p.plan.kept_own {
            self.emit(Event::KeepsOwn {
                peer: p.name(*peer),
                path: p.path_of(rel),
            });
        }
        for c in &p.plan.conflicts {
            self.emit(Event::Conflict {
                path: p.path_of(&c.rel),
                winner: p.name(c.winner),
                kept: c
                    .kept
                    .iter()
                    .map(|(peer, to)| (p.name(*peer), p.copy_path(to)))
                    .collect(),
            });
        }
        for problem in &p.plan.problems {
            self.emit(match problem {
                Problem::Unreadable { rel, peer, error } => Event::Unreadable {
                    peer: p.name(*peer),
                    path: p.path_of(rel),
                    error: error.clone(),
                },
                Problem::Special { rel, peers } => Event::Special {
                    path: p.path_of(rel),
                    peers: peers.iter().map(|peer| p.name(*peer)).collect(),
                },
                Problem::EmptyRoot { peer, held } => Event::EmptyRoot {
                    peer: p.name(*peer),
                    root: p.root.to_string(),
                    held: *held,
                },
                Problem::EmptySubtree {
                    peer, path, held, ..
                } => Event::EmptySubtree {
                    peer: p.name(*peer),
                    path: path.clone(),
                    held: *held,
                },
                Problem::TooBig { rel, size } => Event::TooBig {
                    path: p.path_of(rel),
                    size: *size,
                },
                Problem::Missing => Event::Missing {
                    root: p.root.to_string(),
                },
                Problem::EmptyGroup { peer, held } => Event::EmptyGroup {
                    peer: p.name(*peer),
                    root: p.root.to_string(),
                    held: *held,
                },
            });
        }
    }

    /// After a root's plan was carried out: each change a role undid or overrode, but where
    /// `skip` says that peer's step for the entry did not happen.
    pub fn role_outcomes(&self, p: &RootPlan<'_>, skip: &dyn Fn(PeerId, &WirePath) -> bool) {
        for (peer, rel) in p.plan.reverts.iter().filter(|(q, rel)| !skip(*q, rel)) {
            self.emit(Event::Reverted {
                peer: p.name(*peer),
                path: p.path_of(rel),
            });
        }
        for o in p.plan.overrides.iter().filter(|o| !skip(o.peer, &o.rel)) {
            self.emit(Event::SendOnlyWins {
                path: p.path_of(&o.rel),
                peer: p.name(o.peer),
                by: p.name(o.by),
            });
        }
    }

    /// `-n`: what would change, one line per action.
    pub fn dry_run(&self, p: &RootPlan<'_>) {
        for a in p.plan.actions() {
            self.emit(Event::WouldDo {
                verb: a.verb,
                path: p.path_of(&a.rel),
                peer: p.name(a.peer),
                from: a.from.map(|f| p.name(f)),
            });
        }
    }

    /// `-v`: every peer's version of each entry that changes (`-vv`: of every entry).
    fn peer_versions(&self, p: &RootPlan<'_>) {
        if self.verbosity() == 0 {
            return;
        }
        let (plan, views) = (p.plan, p.views);
        let rels: BTreeSet<&WirePath> = if self.verbosity() >= 2 {
            views.iter().flatten().flat_map(|l| l.keys()).collect()
        } else {
            let problems = plan.problems.iter().filter_map(|p| match p {
                Problem::Unreadable { rel, .. } => Some(rel),
                _ => None,
            });
            plan.copies
                .iter()
                .map(|c| &c.rel)
                .chain(plan.removes.iter().map(|r| &r.rel))
                .chain(plan.touches.iter().map(|t| &t.rel))
                .chain(plan.conflicts.iter().map(|c| &c.rel))
                .chain(plan.kept_own.iter().map(|(_, rel)| rel))
                .chain(problems)
                .collect()
        };
        for rel in rels {
            for (peer, v) in views.iter().enumerate() {
                if let Some(l) = v {
                    self.emit(Event::PeerHolds {
                        peer: p.name(peer),
                        role: p.role(peer),
                        path: p.path_of(rel),
                        seen: l.get(rel).cloned(),
                    });
                }
            }
        }
    }
}
