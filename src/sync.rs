//! One run of the client: connect, scan, decide, copy, report.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use futures::future::join_all;

use crate::cli::Cli;
use crate::paths::{absolutize, entry_display, root_spec, RootSpec, WirePath};
use crate::peer::{self, Peer, RootScan};
use crate::plan::{self, Listing, PeerId, Problem};
use crate::proto::Kind;
use crate::report::{peer_line, Reporter};
use crate::transfer::RootTransfer;

/// Exit status: everything in sync.
pub const EXIT_OK: i32 = 0;
/// Exit status: some path not synced.
pub const EXIT_UNSYNCED: i32 = 1;
/// Exit status: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;

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
    let remotes = cli.remote_peers(&cfg);
    if remotes.is_empty() {
        rep.error("no peers: give -h HOST, or list peers in synk.conf (see synk.conf(5))");
        return EXIT_USAGE;
    }
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
    let roots: Vec<Root> = cli
        .paths
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
    let scans = scan_all(&peers, &specs_wire, rep).await;
    let mut dead: HashSet<PeerId> = (0..peers.len()).filter(|i| scans[*i].is_none()).collect();
    for (i, root) in roots.iter().enumerate() {
        let ctx = RootRun {
            index: i,
            root,
            peers: &peers,
            scans: &scans,
            forced: forced_id,
            cli: &cli,
        };
        let lost = ctx.sync(&dead, rep).await;
        dead.extend(lost);
    }
    close_all(&peers).await;
    if rep.failures() > 0 {
        EXIT_UNSYNCED
    } else {
        EXIT_OK
    }
}

/// Scans every root on every live peer at once.
async fn scan_all(
    peers: &[Peer],
    roots: &[RootSpec],
    rep: &Reporter,
) -> Vec<Option<Vec<RootScan>>> {
    let scans = peers.iter().map(|peer| async move {
        let spinner = rep.spinner(format!("scanning {}", peer.name));
        let mut conn = peer.conn.lock().await;
        let res = conn
            .scan(roots, |entries, _| spinner.set_position(entries))
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
}

impl RootRun<'_> {
    fn path_of(&self, rel: &WirePath) -> String {
        entry_display(&self.root.display, rel)
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
                    rep.error(format!("{}: {e}", self.peers[p].name));
                    views.push(None);
                    abs.push(None);
                }
                None => {
                    views.push(None);
                    abs.push(None);
                }
            }
        }
        let plan = plan::decide(&views, self.forced);
        tracing::debug!(
            root = %self.root.display,
            copies = plan.copies.len(),
            problems = plan.problems.len(),
            "decided"
        );
        self.report(&plan, &views, rep);
        if plan.copies.is_empty() {
            return HashSet::new();
        }
        let root_is_dir = views
            .iter()
            .flatten()
            .filter_map(|l| l.get(&WirePath::default()))
            .any(|s| matches!(s, Ok(m) if m.kind == Kind::Dir));
        let transfer = RootTransfer {
            peers: self.peers,
            root: self.index as u32,
            abs: &abs,
            root_is_dir,
            display: &self.root.display,
            copier: self.cli.copier,
            ssh_config: self.cli.ssh_config.clone(),
            dry_run: self.cli.dry_run,
        };
        transfer.execute(&plan, rep).await
    }

    fn report(&self, plan: &plan::Plan, views: &[Option<&Listing>], rep: &Reporter) {
        let name = |p: &PeerId| self.peers[*p].name.as_str();
        report_peers(plan, views, self.peers, rep, &|rel| self.path_of(rel));
        for p in &plan.problems {
            match p {
                Problem::Conflict { rel, peers, reason } => {
                    let who: Vec<&str> = peers.iter().map(name).collect();
                    rep.error(format!(
                        "conflict: {}: {reason} on {}; left untouched (use --master HOST to pick one)",
                        self.path_of(rel),
                        who.join(", ")
                    ));
                }
                Problem::Unreadable { rel, peer, error } => rep.error(format!(
                    "{}: {}: {error}; left untouched everywhere",
                    name(peer),
                    self.path_of(rel)
                )),
                Problem::Special { rel, peers } => {
                    let who: Vec<&str> = peers.iter().map(name).collect();
                    rep.warn(format!(
                        "{}: special file on {} skipped",
                        self.path_of(rel),
                        who.join(", ")
                    ));
                }
                Problem::Missing => {
                    rep.error(format!("{}: no such file on any peer", self.root.display))
                }
            }
        }
    }
}

/// `-v`: every peer's version of each entry that differs (`-vv`: of every entry).
fn report_peers(
    plan: &plan::Plan,
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
            Problem::Conflict { rel, .. } | Problem::Unreadable { rel, .. } => Some(rel),
            _ => None,
        });
        plan.copies.iter().map(|c| &c.rel).chain(problems).collect()
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
