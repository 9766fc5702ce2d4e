//! One run of the client: connect, scan, decide, copy, report.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use futures::future::join_all;

use crate::apply::Apply;
use crate::cli::Cli;
use crate::config;
use crate::oplog::{self, OpLog};
use crate::paths::{absolutize, entry_display, root_spec, RootSpec, WirePath};
use crate::peer::{self, Peer, RootScan};
use crate::plan::{self, Listing, PeerId, Plan, Problem, Seen};
use crate::proto::Kind;
use crate::report::{peer_line, Reporter};
use crate::restore;
use crate::transfer::rsync::Tuning;
use crate::transfer::RootTransfer;
use crate::versions::Retention;

/// Exit status: everything in sync.
pub const EXIT_OK: i32 = 0;
/// Exit status: some path not synced.
pub const EXIT_UNSYNCED: i32 = 1;
/// Exit status: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: in sync, but conflicting versions were kept under conflict names.
pub const EXIT_CONFLICTS: i32 = 3;
/// Exit status: a dry run found something it would change.
pub const EXIT_PENDING: i32 = 4;

/// A requested path: how it is shown and how it travels.
struct Root {
    display: String,
    spec: RootSpec,
}

/// Runs synk as the client and returns the exit status.
pub async fn run(cli: Cli, rep: &Reporter) -> i32 {
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            rep.error(e);
            return EXIT_USAGE;
        }
    };
    let cwd = match std::env::current_dir() {
        Ok(c) => c,
        Err(e) => {
            rep.error(format!("cannot read the current directory: {e}"));
            return EXIT_USAGE;
        }
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(dirs::home_dir);
    if let Some(code) = edit_tracked(&cli, &cwd, home.as_deref(), rep) {
        return code;
    }
    let remotes = cli.remote_peers(&cfg);
    if remotes.is_empty() {
        rep.error("no peers: give -h HOST, or list peers in synk.conf (see synk.conf(5))");
        return EXIT_USAGE;
    }
    let paths: Vec<PathBuf> = if cli.paths.is_empty() {
        cfg.paths
            .iter()
            .map(|v| config::expand_path(v, home.as_deref()))
            .collect()
    } else {
        cli.paths.clone()
    };
    if paths.is_empty() {
        rep.error("nothing to sync: give PATH, or add `path` lines to synk.conf (synk --add PATH)");
        return EXIT_USAGE;
    }
    let roots: Vec<Root> = paths
        .iter()
        .map(|p| Root {
            display: absolutize(p, &cwd).display().to_string(),
            spec: root_spec(p, &cwd, home.as_deref()),
        })
        .collect();
    if let Some(bad) = roots.iter().find(|r| r.spec.check().is_err()) {
        rep.error(format!("{}: not a path synk can sync", bad.display));
        return EXIT_USAGE;
    }

    let specs: Vec<_> = std::iter::once(None)
        .chain(remotes.into_iter().map(Some))
        .collect();
    let forced = match &cli.master {
        None => None,
        Some(name) => match specs.iter().position(|s| match s {
            None => name == "localhost",
            Some(s) => *name == s.to_string() || *name == s.destination() || *name == s.host,
        }) {
            Some(i) => Some(i),
            None => {
                rep.error(format!("--master {name}: not one of the peers"));
                return EXIT_USAGE;
            }
        },
    };

    let opts = cli.connect_options(&cfg);
    let connected = join_all(specs.into_iter().map(|s| peer::connect(s, &opts))).await;
    // From here on, peer ids index the peers that answered; the others were reported.
    let mut peers: Vec<Peer> = Vec::new();
    let mut forced_id = None;
    for (i, c) in connected.into_iter().enumerate() {
        match c {
            Ok(p) => {
                if let Some(note) = &p.installed {
                    rep.say(1, format!("{}: {note}", p.name));
                }
                if forced == Some(i) {
                    forced_id = Some(peers.len());
                }
                peers.push(p);
            }
            Err(e) => rep.error(format!("{e:#}")),
        }
    }
    if forced.is_some() && forced_id.is_none() {
        rep.error("the --master peer is unreachable: nothing synced");
        close_all(&peers).await;
        return EXIT_UNSYNCED;
    }
    if peers.len() < 2 {
        rep.error("fewer than two peers reachable: nothing can be synced");
        close_all(&peers).await;
        return EXIT_UNSYNCED;
    }
    let specs_wire: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
    let retention = cfg.retention;
    if cli.versions.is_some() {
        let n = restore::list(&peers, &specs_wire[0], &roots[0].display, rep).await;
        close_all(&peers).await;
        return exit_code(rep, n == 0);
    }
    let excludes: Vec<String> = cfg.excludes.iter().chain(&cli.excludes).cloned().collect();
    let mut scans = scan_all(&peers, &specs_wire, retention, &excludes, rep).await;
    if cli.restore.is_some() {
        let first = |p: PeerId| match scans.get(p) {
            Some(Some(s)) => s.first().and_then(|r| r.as_ref().ok()),
            _ => None,
        };
        let abs: Vec<Option<WirePath>> = (0..peers.len())
            .map(|p| first(p).map(|(a, _)| a.clone()))
            .collect();
        let exists = |p: PeerId, rel: &WirePath| {
            first(p).is_some_and(|(_, l)| {
                matches!(
                    l.get(rel),
                    Some(Seen {
                        state: Ok(Some(_)),
                        ..
                    })
                )
            })
        };
        let n = restore::restore(
            &peers,
            &specs_wire[0],
            &roots[0].display,
            &abs,
            cli.at,
            &exists,
            rep,
        )
        .await;
        if n == 0 {
            close_all(&peers).await;
            return exit_code(rep, false);
        }
        scans = scan_all(&peers, &specs_wire, retention, &excludes, rep).await;
    }
    let log = if cli.dry_run {
        OpLog::none()
    } else {
        match cli
            .log
            .clone()
            .or(cfg.log.clone())
            .or_else(oplog::default_path)
        {
            Some(path) => OpLog::open(&path).unwrap_or_else(|e| {
                rep.warn(format!(
                    "{}: cannot open the operations log: {e}",
                    path.display()
                ));
                OpLog::none()
            }),
            None => OpLog::none(),
        }
    };
    let mut dead: HashSet<PeerId> = (0..peers.len()).filter(|i| scans[*i].is_none()).collect();
    for (i, root) in roots.iter().enumerate() {
        let ctx = RootRun {
            index: i,
            root,
            peers: &peers,
            scans: &scans,
            forced: forced_id,
            cli: &cli,
            log: &log,
            tuning: Tuning {
                compress: cli.compress || cfg.compress.unwrap_or(false),
                bwlimit: cli.bwlimit.or(cfg.bwlimit),
            },
            max_size: cli.max_size.or(cfg.max_size),
        };
        let lost = ctx.sync(&dead, rep).await;
        dead.extend(lost);
    }
    close_all(&peers).await;
    exit_code(rep, false)
}

/// `--add PATH` / `--forget PATH`: edits the tracked paths and returns the exit status, or
/// `None` when neither was asked for.
fn edit_tracked(
    cli: &Cli,
    cwd: &std::path::Path,
    home: Option<&std::path::Path>,
    rep: &Reporter,
) -> Option<i32> {
    let (path, adding) = match (&cli.add, &cli.forget) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => return None,
    };
    let Some(file) = cli.config_to_edit() else {
        rep.error("no configuration directory to keep tracked paths in (is HOME set?)");
        return Some(EXIT_USAGE);
    };
    let value = config::path_value(&absolutize(path, cwd), home);
    let shown = file.display();
    let res = if adding {
        config::add_path(&file, &value).map(|added| {
            let said = if added {
                "now tracked in"
            } else {
                "was already tracked in"
            };
            rep.say(0, format!("{value} {said} {shown}"));
            EXIT_OK
        })
    } else {
        config::forget_path(&file, &value).map(|n| {
            if n == 0 {
                rep.error(format!("{value} is not tracked in {shown}"));
                EXIT_UNSYNCED
            } else {
                rep.say(
                    0,
                    format!(
                        "{value} is no longer tracked in {shown} (its files stay where they are)"
                    ),
                );
                EXIT_OK
            }
        })
    };
    Some(res.unwrap_or_else(|e| {
        rep.error(format!("{shown}: {e}"));
        EXIT_USAGE
    }))
}

/// The exit status after a run: errors first, then conflicts, then changes a dry run found.
fn exit_code(rep: &Reporter, nothing_found: bool) -> i32 {
    if rep.failures() > 0 || nothing_found {
        EXIT_UNSYNCED
    } else if rep.conflicts() > 0 {
        EXIT_CONFLICTS
    } else if rep.any_pending() {
        EXIT_PENDING
    } else {
        EXIT_OK
    }
}

/// Scans every root on every live peer at once.
async fn scan_all(
    peers: &[Peer],
    roots: &[RootSpec],
    retention: Retention,
    excludes: &[String],
    rep: &Reporter,
) -> Vec<Option<Vec<RootScan>>> {
    let scans = peers.iter().map(|peer| async move {
        let spinner = rep.spinner(format!("scanning {}", peer.name));
        let mut conn = peer.conn.lock().await;
        let res = conn
            .scan(roots, retention, excludes, |entries, _| {
                spinner.set_position(entries)
            })
            .await;
        spinner.finish_and_clear();
        match res {
            Ok(s) => Some(s),
            Err(e) => {
                rep.error(format!("{e:#}"));
                None
            }
        }
    });
    join_all(scans).await
}

/// One root's part of the run.
struct RootRun<'a> {
    index: usize,
    root: &'a Root,
    peers: &'a [Peer],
    scans: &'a [Option<Vec<RootScan>>],
    forced: Option<PeerId>,
    cli: &'a Cli,
    log: &'a OpLog,
    tuning: Tuning,
    max_size: Option<u64>,
}

impl RootRun<'_> {
    fn path_of(&self, rel: &WirePath) -> String {
        entry_display(&self.root.display, rel)
    }

    fn name(&self, p: PeerId) -> &str {
        &self.peers[p].name
    }

    /// Decides and carries out this root; returns peers whose connection broke.
    async fn sync(&self, dead: &HashSet<PeerId>, rep: &Reporter) -> HashSet<PeerId> {
        let mut views: Vec<Option<&Listing>> = Vec::new();
        let mut abs: Vec<Option<WirePath>> = Vec::new();
        for (p, scan) in self.scans.iter().enumerate() {
            let this = match scan {
                Some(s) if !dead.contains(&p) => Some(&s[self.index]),
                _ => None,
            };
            match this {
                Some(Ok((a, listing))) => {
                    views.push(Some(listing));
                    abs.push(Some(a.clone()));
                }
                Some(Err(e)) => {
                    rep.error(format!("{}: {e}", self.name(p)));
                    views.push(None);
                    abs.push(None);
                }
                None => {
                    views.push(None);
                    abs.push(None);
                }
            }
        }
        let names: Vec<String> = self.peers.iter().map(|p| p.label.clone()).collect();
        let root_is_dir = views
            .iter()
            .flatten()
            .filter_map(|l| l.get(&WirePath::default()))
            .any(|s| matches!(&s.state, Ok(Some(m)) if m.kind == Kind::Dir));
        let file_name = std::path::Path::new(&self.root.display)
            .file_name()
            .map(|n| n.as_encoded_bytes());
        let plan = plan::decide(&plan::Input {
            views: &views,
            names: &names,
            forced: self.forced,
            confirm_empty: self.cli.confirm_empty,
            file_name: file_name.filter(|_| !root_is_dir),
            max_size: self.max_size,
        });
        tracing::debug!(
            root = %self.root.display,
            copies = plan.copies.len(),
            removes = plan.removes.len(),
            conflicts = plan.conflicts.len(),
            problems = plan.problems.len(),
            "decided"
        );
        self.report(&plan, &views, root_is_dir, rep);
        // Peers whose state is written: every one that scanned the root and was not left out.
        let left_out: HashSet<PeerId> = plan
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::EmptyRoot { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        let committing: Vec<PeerId> = (0..views.len())
            .filter(|p| views[*p].is_some() && !left_out.contains(p))
            .collect();
        if self.cli.dry_run {
            if !plan.is_noop() {
                rep.pending();
            }
            self.show_dry_run(&plan, rep);
        }
        let mut lost = HashSet::new();
        if !plan.is_noop() {
            let siblings = if !root_is_dir && !plan.renames.is_empty() {
                committing.clone()
            } else {
                Vec::new()
            };
            let apply = Apply {
                peers: self.peers,
                root: self.index as u32,
                display: &self.root.display,
                siblings,
            };
            let mut copies_plan = None;
            if !self.cli.dry_run {
                let (gone, failed) = apply.before_copies(&plan, rep).await;
                lost = gone;
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
                abs: &abs,
                root_is_dir,
                display: &self.root.display,
                copier: self.cli.copier,
                ssh_config: self.cli.ssh_config.clone(),
                dry_run: self.cli.dry_run,
                tuning: self.tuning,
            };
            let copies_lost = transfer
                .execute(copies_plan.as_ref().unwrap_or(&plan), &lost, rep)
                .await;
            lost.extend(copies_lost);
            if !self.cli.dry_run {
                self.log_actions(&plan, &views);
            }
        }
        if !self.cli.dry_run {
            let live: Vec<PeerId> = committing
                .into_iter()
                .filter(|p| !lost.contains(p))
                .collect();
            Apply {
                peers: self.peers,
                root: self.index as u32,
                display: &self.root.display,
                siblings: Vec::new(),
            }
            .commit(&plan, &live, rep)
            .await;
        }
        lost
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

    fn log_actions(&self, plan: &Plan, views: &[Option<&Listing>]) {
        for (peer, rel, action, from) in actions(plan) {
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
            self.log.line(
                &self.root.display,
                &rel.to_string(),
                self.name(peer),
                word,
                from.map(|f| self.name(f)),
            );
        }
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

async fn close_all(peers: &[Peer]) {
    join_all(peers.iter().map(|p| async move {
        p.conn.lock().await.close().await;
    }))
    .await;
}
