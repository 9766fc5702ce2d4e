//! One root's part of a run: decide, change each peer's tree, copy, commit, report, log.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{json, Value};

use crate::apply::Apply;
use crate::cli::Cli;
use crate::model::Kind;
use crate::oplog::OpLog;
use crate::paths::{entry_display, WirePath};
use crate::peer::{Peer, RootScan};
use crate::plan::{self, Listing, PeerId, Plan, Problem};
use crate::report::{peer_line, Reporter};
use crate::transfer::relay::NoRoute;
use crate::transfer::rsync::Tuning;
use crate::transfer::{RootTransfer, WireStats};

use super::Root;

/// One root's part of the run.
pub(super) struct RootRun<'a> {
    pub(super) index: usize,
    pub(super) root: &'a Root,
    pub(super) peers: &'a [Peer],
    pub(super) scans: &'a [Option<Vec<RootScan>>],
    pub(super) forced: Option<PeerId>,
    pub(super) cli: &'a Cli,
    pub(super) log: &'a OpLog,
    pub(super) tuning: Tuning,
    pub(super) max_size: Option<u64>,
    /// Relay pairs that could not connect earlier in the run.
    pub(super) no_route: &'a NoRoute,
}

impl RootRun<'_> {
    fn path_of(&self, rel: &WirePath) -> String {
        entry_display(&self.root.display, rel)
    }

    pub(super) fn name(&self, p: PeerId) -> &str {
        &self.peers[p].name
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
        let (lost, wire) = self.carry_out(&plan, &views, &abs, root_is_dir, rep).await;
        if !self.cli.dry_run {
            let live: Vec<PeerId> = committing
                .into_iter()
                .filter(|p| !lost.contains(p))
                .collect();
            self.apply().commit(&plan, &live, rep).await;
        }
        if rep.json() {
            rep.add_json_root(self.json(&plan, &views, wire, started));
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
                    views.push(Some(&scanned.listing));
                    settled.push(scanned.settled);
                    abs.push(Some(scanned.abs.clone()));
                }
                Some(Err(e)) => {
                    rep.error(format!("{}: {e}", self.name(p)));
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

    pub(super) fn apply(&self) -> Apply<'_> {
        Apply {
            peers: self.peers,
            root: self.index as u32,
            display: &self.root.display,
            siblings: Vec::new(),
        }
    }

    pub(super) fn decide(
        &self,
        views: &[Option<&Listing>],
        settled: &[usize],
        root_is_dir: bool,
    ) -> Plan {
        let names: Vec<String> = self.peers.iter().map(|p| p.label.clone()).collect();
        let file_name = std::path::Path::new(&self.root.display)
            .file_name()
            .map(|n| n.as_encoded_bytes());
        let plan = plan::decide(&plan::Input {
            views,
            names: &names,
            forced: self.forced,
            confirm_empty: self.cli.confirm_empty,
            file_name: file_name.filter(|_| !root_is_dir),
            max_size: self.max_size,
            settled,
        });
        tracing::debug!(
            root = %self.root.display,
            copies = plan.copies.len(),
            removes = plan.removes.len(),
            conflicts = plan.conflicts.len(),
            problems = plan.problems.len(),
            "decided"
        );
        plan
    }

    /// Reports a plan and carries it out (unless `--dry-run`): returns the peers whose
    /// connection broke, and what crossed the wire.
    pub(super) async fn carry_out(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        abs: &[Option<WirePath>],
        root_is_dir: bool,
        rep: &Reporter,
    ) -> (HashSet<PeerId>, WireStats) {
        self.report(plan, views, root_is_dir, rep);
        if self.cli.dry_run {
            if !plan.is_noop() {
                rep.pending();
            }
            self.show_dry_run(plan, rep);
        }
        let mut lost = HashSet::new();
        if plan.is_noop() {
            return (lost, WireStats::default());
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
        let mut copies_plan = None;
        let mut failed = HashSet::new();
        if !self.cli.dry_run {
            let (gone, step_failed) = apply.before_copies(plan, rep).await;
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
        let transfer = RootTransfer {
            peers: self.peers,
            root: self.index as u32,
            abs,
            root_is_dir,
            display: &self.root.display,
            copier: self.cli.copier,
            ssh_config: self.cli.ssh_config.clone(),
            dry_run: self.cli.dry_run,
            tuning: self.tuning,
            no_route: self.no_route,
        };
        let (copies_lost, wire) = transfer
            .execute(copies_plan.as_ref().unwrap_or(plan), &lost, rep)
            .await;
        lost.extend(copies_lost);
        if !self.cli.dry_run {
            // What a failed step or a lost peer did not do is not logged as done.
            let skip =
                |p: PeerId, rel: &WirePath| lost.contains(&p) || failed.contains(&(p, rel.clone()));
            self.log_actions(plan, views, &skip);
        }
        (lost, wire)
    }

    fn report(&self, plan: &Plan, views: &[Option<&Listing>], root_is_dir: bool, rep: &Reporter) {
        // A single-file root's conflict copies sit beside it.
        let copy_path = |to: &WirePath| match std::path::Path::new(&self.root.display).parent() {
            Some(dir) if !root_is_dir => dir.join(to.as_path()).display().to_string(),
            _ => self.path_of(to),
        };
        report_peers(plan, views, self.peers, rep, &|rel| self.path_of(rel));
        for c in &plan.copies {
            rep.say(
                1,
                format!("master: {} {}", self.name(c.master), self.path_of(&c.rel)),
            );
        }
        for c in &plan.conflicts {
            let kept: Vec<String> = c
                .kept
                .iter()
                .map(|(p, to)| format!("{}'s as {}", self.name(*p), copy_path(to)))
                .collect();
            rep.conflict(format!(
                "{}: changed on {} and {}; {}'s version keeps the name, {} (every version reaches every peer)",
                self.path_of(&c.rel),
                self.name(c.winner),
                c.kept.iter().map(|(p, _)| self.name(*p)).collect::<Vec<_>>().join(", "),
                self.name(c.winner),
                kept.join(", ")
            ));
        }
        for p in &plan.problems {
            match p {
                Problem::Unreadable { rel, peer, error } => rep.error(format!(
                    "{}: {}: {error}; not synced there (the other peers were)",
                    self.name(*peer),
                    self.path_of(rel)
                )),
                Problem::Special { rel, peers } => {
                    let who: Vec<&str> = peers.iter().map(|p| self.name(*p)).collect();
                    rep.warn(format!(
                        "{}: special file on {} skipped",
                        self.path_of(rel),
                        who.join(", ")
                    ));
                }
                Problem::EmptyRoot { peer, held } => rep.error(format!(
                    "{}: {} is empty or missing there but held {held} entries after the last sync (an unmounted disk?); left out, nothing deleted. If you emptied it on purpose, run again with --confirm-empty",
                    self.name(*peer),
                    self.root.display
                )),
                Problem::TooBig { rel, size } => rep.warn(format!(
                    "{}: {} bytes, over --max-size: skipped (nothing copied or deleted)",
                    self.path_of(rel),
                    size
                )),
                Problem::Missing => {
                    rep.error(format!("{}: no such file on any peer", self.root.display))
                }
            }
        }
    }

    /// `-n`: what would change, one line per action.
    fn show_dry_run(&self, plan: &Plan, rep: &Reporter) {
        for (peer, rel, action, from) in actions(plan) {
            let from = from
                .map(|f| format!(" from {}", self.name(f)))
                .unwrap_or_default();
            rep.say(
                0,
                format!(
                    "would {action} {} on {}{from}",
                    self.path_of(&rel),
                    self.name(peer)
                ),
            );
        }
    }

    /// Every action with the word the log and `--json` use for it.
    fn worded(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
    ) -> Vec<(PeerId, WirePath, &'static str, Option<PeerId>)> {
        actions(plan)
            .into_iter()
            .map(|(peer, rel, action, from)| {
                let created = action == "copy"
                    && !views[peer]
                        .and_then(|l| l.get(&rel))
                        .is_some_and(|s| matches!(s.state, Ok(Some(_))));
                let word = match action {
                    "copy" if created => "created",
                    "copy" => "updated",
                    "delete" => "deleted",
                    "keep" => "version kept",
                    "rename" => "conflict",
                    other => other,
                };
                (peer, rel, word, from)
            })
            .collect()
    }

    fn log_actions(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        skip: &dyn Fn(PeerId, &WirePath) -> bool,
    ) {
        for (peer, rel, word, from) in self.worded(plan, views) {
            if skip(peer, &rel) {
                continue;
            }
            self.log.line(
                &self.root.display,
                &rel.to_string(),
                self.name(peer),
                word,
                from.map(|f| self.name(f)),
            );
        }
    }

    /// This root's part of the `--json` document (see synk(1), JSON OUTPUT).
    pub(super) fn json(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        wire: WireStats,
        started: std::time::Instant,
    ) -> Value {
        let mut entries: BTreeMap<WirePath, Value> = BTreeMap::new();
        let entry = |entries: &mut BTreeMap<WirePath, Value>, rel: &WirePath, decision: &str| {
            entries
                .entry(rel.clone())
                .or_insert_with(
                    || json!({"path": rel.to_string(), "decision": decision, "actions": []}),
                )
                .clone()
        };
        for c in &plan.copies {
            let mut e = entry(&mut entries, &c.rel, "copy");
            e["winner"] = json!(self.name(c.master));
            entries.insert(c.rel.clone(), e);
        }
        for r in &plan.removes {
            let decision = if r.deleted { "delete" } else { "replace" };
            let e = entry(&mut entries, &r.rel, decision);
            entries.insert(r.rel.clone(), e);
        }
        for c in &plan.conflicts {
            let mut e = entry(&mut entries, &c.rel, "conflict");
            e["decision"] = json!("conflict");
            e["winner"] = json!(self.name(c.winner));
            e["kept"] = c
                .kept
                .iter()
                .map(|(p, to)| json!({"peer": self.name(*p), "as": to.to_string()}))
                .collect();
            entries.insert(c.rel.clone(), e);
        }
        for (peer, rel, word, from) in self.worded(plan, views) {
            let mut e = entry(&mut entries, &rel, "copy");
            if let Some(list) = e["actions"].as_array_mut() {
                list.push(json!({
                    "peer": self.name(peer),
                    "action": word,
                    "from": from.map(|f| self.name(f)),
                }));
            }
            entries.insert(rel, e);
        }
        let problems: Vec<Value> = plan
            .problems
            .iter()
            .map(|p| match p {
                Problem::Unreadable { rel, peer, error } => json!({"problem": "unreadable", "path": rel.to_string(), "peer": self.name(*peer), "error": error}),
                Problem::Special { rel, peers } => json!({"problem": "special", "path": rel.to_string(), "peers": peers.iter().map(|p| self.name(*p)).collect::<Vec<_>>()}),
                Problem::EmptyRoot { peer, held } => json!({"problem": "empty-root", "peer": self.name(*peer), "held": held}),
                Problem::TooBig { rel, size } => json!({"problem": "too-big", "path": rel.to_string(), "size": size}),
                Problem::Missing => json!({"problem": "missing"}),
            })
            .collect();
        let bytes: u64 = plan
            .copies
            .iter()
            .filter(|c| c.meta.kind == Kind::File)
            .map(|c| c.meta.size * c.targets.len() as u64)
            .sum();
        json!({
            "root": self.root.display,
            "entries": entries.into_values().collect::<Vec<_>>(),
            "problems": problems,
            "bytes": bytes,
            "literal_bytes": wire.literal,
            "matched_bytes": wire.matched,
            "seconds": started.elapsed().as_secs_f64(),
        })
    }
}

/// Every action of a plan: (peer, entry, verb, from whom).
fn actions(plan: &Plan) -> Vec<(PeerId, WirePath, &'static str, Option<PeerId>)> {
    let mut out = Vec::new();
    for r in &plan.renames {
        out.push((r.peer, r.rel.clone(), "rename", None));
        out.push((r.peer, r.to.clone(), "keep", None));
    }
    for (p, rel) in &plan.keeps {
        out.push((*p, rel.clone(), "keep", None));
    }
    for c in &plan.clones {
        out.push((c.peer, c.rel.clone(), "copy", Some(c.peer)));
    }
    for r in &plan.removes {
        out.push((
            r.peer,
            r.rel.clone(),
            if r.deleted { "delete" } else { "keep" },
            None,
        ));
    }
    for c in &plan.copies {
        for t in &c.targets {
            out.push((*t, c.rel.clone(), "copy", Some(c.master)));
        }
    }
    out
}

/// `-v`: every peer's version of each entry that changes (`-vv`: of every entry).
fn report_peers(
    plan: &Plan,
    views: &[Option<&Listing>],
    peers: &[Peer],
    rep: &Reporter,
    path_of: &dyn Fn(&WirePath) -> String,
) {
    if rep.verbosity() == 0 {
        return;
    }
    let rels: BTreeSet<&WirePath> = if rep.verbosity() >= 2 {
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
            .chain(plan.conflicts.iter().map(|c| &c.rel))
            .chain(problems)
            .collect()
    };
    for rel in rels {
        for (p, v) in views.iter().enumerate() {
            if let Some(l) = v {
                rep.say(1, peer_line(&peers[p].name, &path_of(rel), l.get(rel)));
            }
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

/// Peers whose state is written: every one that scanned the root and was not left out.
fn committing(plan: &Plan, views: &[Option<&Listing>]) -> Vec<PeerId> {
    let left_out: HashSet<PeerId> = plan
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::EmptyRoot { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    (0..views.len())
        .filter(|p| views[*p].is_some() && !left_out.contains(p))
        .collect()
}
