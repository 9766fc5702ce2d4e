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

    /// Peer `p`'s root as that peer has it: the home-relative path resolved against its own
    /// home, as `--versions` shows it.
    fn root_on(&self, p: usize) -> std::borrow::Cow<'_, str> {
        match self.abs.get(p) {
            Some(Some(abs)) => String::from_utf8_lossy(abs.as_bytes()),
            _ => std::borrow::Cow::Borrowed(self.root),
        }
    }

    /// How entry `rel` is named in a line about peer `p`: as that peer has it.
    fn path_on(&self, p: usize, rel: &WirePath) -> WirePath {
        match self.abs.get(p) {
            Some(Some(abs)) if rel.is_empty() => abs.clone(),
            Some(Some(abs)) => {
                let mut v = abs.as_bytes().to_vec();
                if !v.ends_with(b"/") {
                    v.push(b'/');
                }
                v.extend_from_slice(rel.as_bytes());
                WirePath(v)
            }
            _ => self.path_of(rel),
        }
    }

    /// Where a conflict copy `to` is on peer `p`: a single-file root's copies sit beside it.
    fn copy_path_on(&self, p: usize, to: &WirePath) -> WirePath {
        let root = self.root_on(p);
        match std::path::Path::new(&*root).parent() {
            Some(dir) if !self.root_is_dir => WirePath::from_path(&dir.join(to.as_path())),
            _ => self.path_on(p, to),
        }
    }

    /// Where a conflict copy `to` is, below the root as the user named it.
    fn copy_path(&self, to: &WirePath) -> WirePath {
        match std::path::Path::new(self.root).parent() {
            Some(dir) if !self.root_is_dir => WirePath::from_path(&dir.join(to.as_path())),
            _ => self.path_of(to),
        }
    }

    /// Peer `p` as its conflict copies name it: `localhost (vm)` where the name a copy
    /// carries is not the peer's name.
    fn copy_owner(&self, p: usize) -> String {
        match self.labels.get(p) {
            Some(label) if *label != self.names[p] => format!("{} ({label})", self.names[p]),
            _ => self.name(p),
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
                path: p.path_on(c.master, &c.rel),
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
                path: p.path_on(*peer, rel),
            });
        }
        for c in &p.plan.conflicts {
            self.emit(Event::Conflict {
                path: p.path_of(&c.rel),
                winner: p.name(c.winner),
                kept: c
                    .kept
                    .iter()
                    .map(|(peer, to)| (p.copy_owner(*peer), p.copy_path(to)))
                    .collect(),
            });
        }
        for problem in &p.plan.problems {
            if let Problem::TooBig { rel, size } = problem {
                // Told once at the end of the run, all together.
                self.skipped_too_big(p.path_of(rel), *size);
                continue;
            }
            self.emit(match problem {
                Problem::Unreadable { rel, peer, error } => Event::Unreadable {
                    peer: p.name(*peer),
                    path: p.path_on(*peer, rel),
                    error: error.clone(),
                },
                Problem::Special { rel, peers } => Event::Special {
                    path: p.path_of(rel),
                    peers: peers.iter().map(|peer| p.name(*peer)).collect(),
                },
                Problem::EmptyRoot { peer, held } => Event::EmptyRoot {
                    peer: p.name(*peer),
                    root: p.root_on(*peer).into_owned(),
                    held: *held,
                },
                Problem::EmptySubtree {
                    peer, path, held, ..
                } => Event::EmptySubtree {
                    peer: p.name(*peer),
                    path: path.clone(),
                    held: *held,
                },
                Problem::TooBig { .. } => continue,
                Problem::NoSymlinks { peer, rels } => Event::NoSymlinks {
                    peer: p.name(*peer),
                    first: p.path_of(&rels[0]),
                    count: rels.len(),
                },
                Problem::Collision { peer, names } => Event::NameCollision {
                    peer: p.name(*peer),
                    paths: names.iter().map(|n| p.path_of(n)).collect(),
                },
                Problem::Missing => Event::Missing {
                    root: p.root.to_string(),
                },
                Problem::EmptyGroup { peer, held } => Event::EmptyGroup {
                    peer: p.name(*peer),
                    root: p.root_on(*peer).into_owned(),
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
                path: p.path_on(*peer, rel),
            });
        }
        for o in p.plan.overrides.iter().filter(|o| !skip(o.peer, &o.rel)) {
            self.emit(Event::SendOnlyWins {
                path: p.path_on(o.peer, &o.rel),
                peer: p.name(o.peer),
                by: p.name(o.by),
            });
        }
    }

    /// `-v`, after a root's plan was carried out: each deletion and each conflict copy made,
    /// with the peer and its own path, but where `skip` says that step did not happen.
    pub fn done(&self, p: &RootPlan<'_>, skip: &dyn Fn(PeerId, &WirePath) -> bool) {
        for r in &p.plan.renames {
            if !skip(r.peer, &r.rel) {
                self.emit(Event::KeptAsCopy {
                    peer: p.name(r.peer),
                    path: p.path_on(r.peer, &r.rel),
                    to: p.copy_path_on(r.peer, &r.to),
                });
            }
        }
        for r in p.plan.removes.iter().filter(|r| r.deleted) {
            if !skip(r.peer, &r.rel) {
                self.emit(Event::Deleted {
                    peer: p.name(r.peer),
                    path: p.path_on(r.peer, &r.rel),
                });
            }
        }
    }

    /// `-n`: what would change, one line per action.
    pub fn dry_run(&self, p: &RootPlan<'_>) {
        for a in p.plan.actions() {
            self.emit(Event::WouldDo {
                verb: a.verb,
                path: p.path_on(a.peer, &a.rel),
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
                        path: p.path_on(peer, rel),
                        seen: l.get(rel).cloned(),
                    });
                }
            }
        }
    }
}
