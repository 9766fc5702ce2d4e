//! One root's part of a run: decide, change each peer's tree, copy, commit, report, log.

use std::collections::{BTreeSet, HashSet};

use crate::apply::{keeps_in_writes, Apply};
use crate::cli::Cli;
use crate::model::{Kind, Role};
use crate::oplog::OpLog;
use crate::paths::WirePath;
use crate::peer::{Peer, RootScan};
use crate::plan::{self, Listing, PeerId, Plan, Problem};
use crate::report::{text, Event, Reporter, RootDoc, RootPlan};
use crate::transfer::relay::NoRoute;
use crate::transfer::rsync::Tuning;
use crate::transfer::{RootTransfer, WireStats};

use super::Root;

/// One root's part of the run.
pub(super) struct RootRun<'a> {
    /// The root's index among the run's roots.
    pub(super) index: usize,
    /// The root.
    pub(super) root: &'a Root,
    /// The connected peers.
    pub(super) peers: &'a [Peer],
    /// Each peer's scan of every root (`None`: the peer is out of the run).
    pub(super) scans: &'a [Option<Vec<RootScan>>],
    /// `--master`.
    pub(super) forced: Option<PeerId>,
    /// Each peer's role.
    pub(super) roles: &'a [Role],
    /// The command line.
    pub(super) cli: &'a Cli,
    /// The operations log.
    pub(super) log: &'a OpLog,
    /// `--compress`, `--bwlimit`.
    pub(super) tuning: Tuning,
    /// `--max-size`.
    pub(super) max_size: Option<u64>,
    /// Relay pairs that could not connect earlier in the run.
    pub(super) no_route: &'a NoRoute,
}

impl RootRun<'_> {
    /// Peer `p`'s name.
    pub(super) fn name(&self, p: PeerId) -> &str {
        &self.peers[p].name
    }

    /// Every peer's name, in peer order.
    pub(super) fn names(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.name.clone()).collect()
    }

    /// A plan of this root, as the report tells it.
    pub(super) fn told<'a>(
        &'a self,
        plan: &'a Plan,
        views: &'a [Option<&'a Listing>],
        names: &'a [String],
        abs: &'a [Option<WirePath>],
        root_is_dir: bool,
    ) -> RootPlan<'a> {
        RootPlan {
            root: &self.root.display,
            plan,
            views,
            names,
            labels: self
                .peers
                .iter()
                .map(|p| crate::names::conflict_peer(&p.label))
                .collect(),
            abs,
            roles: self.roles,
            root_is_dir,
        }
    }

    /// Decides and carries out this root; returns peers whose connection broke.
    pub(super) async fn sync(&self, dead: &HashSet<PeerId>, rep: &Reporter) -> HashSet<PeerId> {
        let started = std::time::Instant::now();
        let (views, settled, abs) = self.views(dead, rep);
        if let Some((holder, deferred)) = self.deferred(&views) {
            return self
                .sync_in_windows(holder, deferred, &views, &abs, started, rep)
                .await;
        }
        let root_is_dir = root_is_dir(&views);
        let plan = self.decide(&views, &settled, root_is_dir);
        let committing = committing(&plan, &views);
        let one_shot = !self.cli.dry_run && self.cli.every.is_none() && !self.cli.watch;
        // In a one-shot run, a peer with nothing to record, whose scan found nothing changed,
        // has nothing to commit: its state already says what it holds, and its serve is not
        // waited for.
        let to_commit: Vec<PeerId> = committing
            .iter()
            .copied()
            .filter(|&p| one_shot && !in_sync_here(&plan, views[p], p))
            .collect();
        let (lost, wire, committed) = self
            .carry_out(&plan, &views, &abs, root_is_dir, &to_commit, rep)
            .await;
        if one_shot {
            // Its answers are read as the run ends, while the serves finish.
            let live: Vec<PeerId> = to_commit
                .into_iter()
                .filter(|p| !lost.contains(p) && !committed.contains(p))
                .collect();
            self.apply().commit_owed(&plan, &live, rep).await;
        } else if !self.cli.dry_run {
            let live: Vec<PeerId> = committing
                .into_iter()
                .filter(|p| !lost.contains(p))
                .collect();
            self.apply().commit(&plan, &live, rep).await;
        }
        if rep.json() {
            let names = self.names();
            let doc = RootDoc::of(&self.told(&plan, &views, &names, &abs, root_is_dir));
            let seconds = started.elapsed().as_secs_f64();
            rep.add_json_root(doc, wire.literal, wire.matched, seconds);
        }
        lost
    }

    /// Each peer's view of the root (`None`: left out), what settling found in sync there,
    /// and the root's absolute path there.
    #[allow(clippy::type_complexity)]
    fn views(
        &self,
        dead: &HashSet<PeerId>,
        rep: &Reporter,
    ) -> (Vec<Option<&Listing>>, Vec<usize>, Vec<Option<WirePath>>) {
        let mut views: Vec<Option<&Listing>> = Vec::new();
        let mut settled: Vec<usize> = Vec::new();
        let mut abs: Vec<Option<WirePath>> = Vec::new();
        for (p, scan) in self.scans.iter().enumerate() {
            let this = match scan {
                Some(s) if !dead.contains(&p) => Some(&s[self.index]),
                _ => None,
            };
            match this {
                Some(Ok(scanned)) => {
                    for note in &scanned.notes {
                        rep.emit(Event::PeerNote {
                            peer: self.name(p).to_string(),
                            note: note.clone(),
                        });
                    }
                    views.push(Some(&scanned.listing));
                    settled.push(scanned.settled);
                    abs.push(Some(scanned.abs.clone()));
                }
                Some(Err(e)) => {
                    rep.emit(Event::PeerFailed {
                        peer: self.name(p).to_string(),
                        error: e.clone(),
                    });
                    views.push(None);
                    settled.push(0);
                    abs.push(None);
                }
                None => {
                    views.push(None);
                    settled.push(0);
                    abs.push(None);
                }
            }
        }
        (views, settled, abs)
    }

    /// Changes to the peers' trees for this root.
    pub(super) fn apply(&self) -> Apply<'_> {
        Apply {
            peers: self.peers,
            root: self.index as u32,
            display: &self.root.display,
            siblings: Vec::new(),
        }
    }

    /// The decision for this root, from each peer's view.
    pub(super) fn decide(
        &self,
        views: &[Option<&Listing>],
        settled: &[usize],
        root_is_dir: bool,
    ) -> Plan {
        let names: Vec<String> = self.peers.iter().map(|p| p.label.clone()).collect();
        let emptied = self.emptied(views);
        let folds = self.folds(views);
        let no_symlinks: Vec<PeerId> = (0..self.peers.len())
            .filter(|p| self.holds(views, *p).is_some_and(|h| !h.symlinks))
            .collect();
        let mut plan = plan::decide(&plan::Input {
            views,
            names: &names,
            forced: self.forced,
            confirm_empty: self.cli.confirm_empty,
            file_name: self.root.spec.file_name().filter(|_| !root_is_dir),
            max_size: self.max_size,
            settled,
            roles: self.roles,
            emptied: &emptied,
            folds: &folds,
            no_symlinks: &no_symlinks,
        });
        plan::link_names(&mut plan, views);
        tracing::debug!(
            root = %crate::report::text::escape(self.root.display.as_bytes()),
            copies = plan.copies.len(),
            removes = plan.removes.len(),
            conflicts = plan.conflicts.len(),
            problems = plan.problems.len(),
            "decided"
        );
        plan
    }

    /// What peer `p`'s filesystem under this root holds, where it is in the decision and
    /// told.
    pub(super) fn holds(
        &self,
        views: &[Option<&Listing>],
        p: PeerId,
    ) -> Option<crate::proto::Holds> {
        match (views.get(p), self.scans.get(p)) {
            (Some(Some(_)), Some(Some(roots))) => roots[self.index].as_ref().ok()?.holds,
            _ => None,
        }
    }

    /// Per peer in the decision, how its filesystem under this root compares names.
    fn folds(&self, views: &[Option<&Listing>]) -> Vec<plan::Fold> {
        (0..self.peers.len())
            .map(|p| {
                self.holds(views, p)
                    .map(|h| plan::Fold {
                        case: h.folds_case,
                        unicode: h.normalizes,
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Per peer in the decision, the mount points it says are emptied below this root.
    fn emptied(&self, views: &[Option<&Listing>]) -> Vec<Vec<plan::Emptied>> {
        self.scans
            .iter()
            .enumerate()
            .map(|(p, scan)| match (views.get(p), scan) {
                (Some(Some(_)), Some(roots)) => roots[self.index]
                    .as_ref()
                    .map(|s| s.emptied.clone())
                    .unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Reports a plan and carries it out (unless `--dry-run`): returns the peers whose
    /// connection broke, what crossed the wire, and the peers whose commit travelled with
    /// their copies (of those in `commit`, whose commits are due once the plan is carried out;
    /// see [`RootTransfer::commits_with_copies`]), its answer owed.
    pub(super) async fn carry_out(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        abs: &[Option<WirePath>],
        root_is_dir: bool,
        commit: &[PeerId],
        rep: &Reporter,
    ) -> (HashSet<PeerId>, WireStats, BTreeSet<PeerId>) {
        let names = self.names();
        let told = self.told(plan, views, &names, abs, root_is_dir);
        rep.plan(&told);
        if self.cli.dry_run {
            if !plan.is_noop() {
                rep.pending();
            }
            rep.dry_run(&told);
        }
        let mut lost = HashSet::new();
        if plan.is_noop() {
            return (lost, WireStats::default(), BTreeSet::new());
        }
        let siblings = if !root_is_dir && !plan.renames.is_empty() {
            committing(plan, views)
        } else {
            Vec::new()
        };
        let apply = Apply {
            siblings,
            ..self.apply()
        };
        let mut transfer = RootTransfer {
            peers: self.peers,
            root: self.index as u32,
            abs,
            root_is_dir,
            name: self.root.spec.file_name(),
            display: &self.root.display,
            copier: self.cli.copier,
            ssh_config: self.cli.ssh_config.clone(),
            dry_run: self.cli.dry_run,
            tuning: self.tuning,
            no_route: self.no_route,
            keep_in_write: Default::default(),
            commit_with: Default::default(),
            commit_sent: Default::default(),
        };
        let mut copies_plan = None;
        let mut failed = HashSet::new();
        if !self.cli.dry_run {
            // A small file's copy keeps what it replaces as it writes: no round trip first.
            let inline = transfer.inline_targets(plan, &HashSet::new());
            transfer.keep_in_write = keeps_in_writes(plan, &inline);
            // And where nothing else is left to do there, the commit goes behind the copies.
            if !commit.is_empty()
                && plan.links.is_empty()
                && self.extra_needs(plan, views).is_empty()
            {
                for p in transfer.commits_with_copies(plan, &inline, commit) {
                    if let Ok(frames) = apply.commit_frames(plan, p) {
                        transfer.commit_with.insert(p, frames);
                    }
                }
            }
            let (gone, step_failed) = apply
                .before_copies(plan, &transfer.keep_in_write, rep)
                .await;
            lost = gone;
            failed = step_failed;
            if !failed.is_empty() {
                // Never replace what could not be kept first.
                let mut p = plan.clone();
                for c in &mut p.copies {
                    c.targets.retain(|t| !failed.contains(&(*t, c.rel.clone())));
                }
                copies_plan = Some(p);
            }
        }
        let (copies_lost, wire) = transfer
            .execute(copies_plan.as_ref().unwrap_or(plan), &lost, rep)
            .await;
        lost.extend(copies_lost);
        if !self.cli.dry_run && !plan.links.is_empty() {
            let (gone, link_failed) = apply.links(plan, &lost, &failed, rep).await;
            lost.extend(gone);
            failed.extend(link_failed);
        }
        if !self.cli.dry_run {
            let skip =
                |p: PeerId, rel: &WirePath| lost.contains(&p) || failed.contains(&(p, rel.clone()));
            let gone = self.give_extra(plan, views, &skip, rep).await;
            lost.extend(gone);
        }
        if !self.cli.dry_run {
            // What a failed step or a lost peer did not do is not logged as done.
            let skip =
                |p: PeerId, rel: &WirePath| lost.contains(&p) || failed.contains(&(p, rel.clone()));
            self.log_actions(plan, views, &skip);
            rep.role_outcomes(&told, &skip);
            rep.done(&told, &skip);
        }
        let committed = transfer.commit_sent.into_inner().expect("commits lock");
        (lost, wire, committed)
    }

    fn log_actions(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        skip: &dyn Fn(PeerId, &WirePath) -> bool,
    ) {
        for a in plan.actions() {
            if skip(a.peer, &a.rel) {
                continue;
            }
            self.log.line(
                &self.root.display,
                &a.rel.to_string(),
                self.name(a.peer),
                text::action_word(&a, views),
                a.from.map(|f| self.name(f)),
            );
        }
    }
}

/// True when some peer holds the root as a directory.
pub(super) fn root_is_dir(views: &[Option<&Listing>]) -> bool {
    views
        .iter()
        .flatten()
        .filter_map(|l| l.get(&WirePath::default()))
        .any(|s| matches!(&s.state, Ok(Some(m)) if m.kind == Kind::Dir))
}

/// Peer `p` holds every entry as its state says and takes no record of `plan`: a commit there
/// would change nothing.
fn in_sync_here(plan: &Plan, view: Option<&Listing>, p: PeerId) -> bool {
    plan.records.of(p).next().is_none() && view.is_some_and(|l| l.values().all(|s| !s.changed))
}

/// Peers whose state is written: every one that scanned the root and was not left out.
fn committing(plan: &Plan, views: &[Option<&Listing>]) -> Vec<PeerId> {
    let left_out: HashSet<PeerId> = plan.problems.iter().filter_map(Problem::left_out).collect();
    (0..views.len())
        .filter(|p| views[*p].is_some() && !left_out.contains(p))
        .collect()
}
