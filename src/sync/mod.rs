//! The client: connect, scan, decide, copy, report; once, or again and again (`--every`,
//! `--watch`). `session.rs` keeps the peers, `settle.rs` settles what they sent in brief,
//! `root.rs` decides and carries out one root, and `windows.rs` a big first sync of one in
//! windows.

use std::path::PathBuf;

use futures::future::join_all;

use crate::cli::Cli;
use crate::config::{self, PeerSpec};
use crate::model::Role;
use crate::oplog::{self, OpLog};
use crate::paths::{absolutize, root_spec, RootSpec, WirePath};
use crate::peer::{Peer, RootScan};
use crate::plan::{PeerId, Seen};
use crate::report::{Event, Reporter};
use crate::restore;
use crate::transfer::rsync::Tuning;

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

mod extra;
mod root;
mod session;
mod settle;
mod windows;

use session::{Session, Settings};

/// A requested path: how it is shown and how it travels.
struct Root {
    display: String,
    spec: RootSpec,
}

/// Runs synk as the client and returns the exit status.
pub async fn run(cli: Cli, rep: &Reporter) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(c) => c,
        Err(e) => {
            rep.emit(Event::NoCurrentDir {
                error: e.to_string(),
            });
            return EXIT_USAGE;
        }
    };
    let home = crate::os::home_dir();
    // Before the config is read: `--add` makes a profile's file that does not exist yet.
    if let Some(code) = edit_tracked(&cli, &cwd, home.as_deref(), rep) {
        return code;
    }
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            rep.emit(Event::Failed {
                error: e.to_string(),
            });
            return EXIT_USAGE;
        }
    };
    if cli.state {
        return state_index(home.as_deref(), rep);
    }
    let excludes: Vec<String> = cfg.excludes.iter().chain(&cli.excludes).cloned().collect();
    if let Err((pattern, error)) = crate::exclude::Excludes::check(&excludes) {
        rep.emit(Event::BadExclude { pattern, error });
        return EXIT_USAGE;
    }
    let remotes = cli.remote_peers(&cfg);
    let specs: Vec<Option<PeerSpec>> = std::iter::once(None)
        .chain(remotes.iter().cloned().map(Some))
        .collect();
    // Before anything else about peers: `synk --no-delete ~/x` names ~/x, not "no peers".
    let roles = match roles_of(cli.role_options(), cli.config_roles(&cfg), &specs) {
        Ok(r) => r,
        Err(e) => {
            rep.emit(*e);
            return EXIT_USAGE;
        }
    };
    // The kept versions of this host alone need no other peer.
    let alone = remotes.is_empty() && (cli.versions.is_some() || cli.restore.is_some());
    if remotes.is_empty() && !alone {
        rep.emit(Event::NoPeers);
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
        rep.emit(Event::NothingToSync);
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
        rep.emit(Event::NotSyncable {
            path: bad.display.clone(),
        });
        return EXIT_USAGE;
    }

    let forced = match &cli.master {
        None => None,
        Some(name) => match find_peer(&specs, name) {
            Some(i) => Some(i),
            None => {
                rep.emit(Event::UnknownMaster { name: name.clone() });
                return EXIT_USAGE;
            }
        },
    };

    let refill = match &cli.refill {
        None => None,
        Some(name) => match find_peer(&specs, name) {
            Some(i) => Some(i),
            None => {
                rep.emit(Event::UnknownRolePeer {
                    option: "--refill".into(),
                    name: name.clone(),
                });
                return EXIT_USAGE;
            }
        },
    };

    // A refill may fill any peer: a send-only one takes what it is refilled with, this run.
    let mut roles = roles;
    if let Some(role) = refill.and_then(|i| roles.get_mut(i)) {
        role.send_only = false;
    }
    let opts = cli.connect_options(&cfg);
    let settings = Settings {
        retention: cfg.retention,
        excludes,
        tuning: Tuning {
            compress: cli.compress || cfg.compress.unwrap_or(false),
            // 0 is no limit, as for rsync: `--bwlimit 0` lifts a limit synk.conf sets.
            bwlimit: cli.bwlimit.or(cfg.bwlimit).filter(|r| *r > 0),
        },
        max_size: cli.max_size.or(cfg.max_size),
        log: open_log(&cli, &cfg, rep),
        // -vv shows every peer's version of every entry, and --restore looks up what each
        // peer holds: both need every entry in full.
        // --refill too: what the emptied peer lacks is known only from the others' full
        // listings, once its record of what it held is set aside.
        brief: cli.verbose < 2 && cli.restore.is_none() && refill.is_none(),
        tidy: !cli.dry_run,
        lock_wait: cli.lock_wait.unwrap_or(session::LOCK_WAIT),
        meta: crate::extra::MetaOpts {
            xattrs: !(cli.no_xattrs || cfg.no_xattrs),
            acls: !(cli.no_acls || cfg.no_acls),
            owner: !(cli.no_owner || cfg.no_owner),
            numeric_ids: cli.numeric_ids || cfg.numeric_ids,
            links: !(cli.no_hard_links || cfg.no_hard_links),
        },
    };
    rep.max_size(settings.max_size);
    let mut session = Session::new(specs, opts, forced);
    session.roles = roles;
    // A listing of kept versions lists what the peers it reaches hold, this host's at least:
    // one peer away (named as unreachable, exit 1) does not hide the others'.
    session.alone = alone || cli.versions.is_some();
    if cli.every.is_none() && !cli.watch {
        // A one-shot run stops at once on a signal, every child with it.
        session::stop_on_signals(false);
    }
    if cli.every.is_some() || cli.watch {
        let interval = cli.every.unwrap_or(DEFAULT_WATCH_INTERVAL);
        return session::repeat(&mut session, &cli, &roots, &settings, interval, rep).await;
    }
    let started = std::time::Instant::now();
    // Scans start on each peer as soon as it is connected, except for --versions.
    let specs: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
    let scan = cli
        .versions
        .is_none()
        .then_some((specs.as_slice(), &settings));
    let scans = session.connect_scan(scan, rep).await;
    if !session.ready(rep) {
        session.json_peers(rep);
        session.close().await;
        rep.end_run(EXIT_UNSYNCED, started.elapsed().as_secs_f64(), cli.dry_run);
        return EXIT_UNSYNCED;
    }
    let mut scans = scans;
    if let Some(p) = refill {
        forget_deletions(&mut scans, p);
    }
    let code = once(&mut session, &cli, &roots, &settings, scans, rep).await;
    let failures = rep.failures();
    session.close_telling(rep).await;
    // A commit whose answer came as the run ended and told of a failure.
    let code = if rep.failures() > failures {
        EXIT_UNSYNCED
    } else {
        code
    };
    rep.end_run(code, started.elapsed().as_secs_f64(), cli.dry_run);
    code
}

/// The peer of `specs` (`None`: this host) that `name` names: `localhost`, or a peer as
/// given to `-h`, its destination or its host.
fn find_peer(specs: &[Option<PeerSpec>], name: &str) -> Option<usize> {
    specs.iter().position(|s| match s {
        None => name == "localhost",
        Some(s) => *name == s.to_string() || *name == s.destination() || *name == s.host,
    })
}

/// Each peer's role, in `specs` order: the role options (`options`: option, HOST, role)
/// and the config's `peer` lines where its peers are in force (`lines`); or the usage error
/// that says why there are none: a HOST that is not a peer, a peer both send-only and
/// receive-only, or no peer that may send.
fn roles_of(
    options: Vec<(&'static str, &str, Role)>,
    lines: &[(PeerSpec, Role)],
    specs: &[Option<PeerSpec>],
) -> Result<Vec<Role>, Box<Event>> {
    let mut roles = vec![Role::default(); specs.len()];
    for (option, name, role) in options {
        let Some(p) = find_peer(specs, name) else {
            return Err(Box::new(Event::UnknownRolePeer {
                option: option.to_string(),
                name: name.to_string(),
            }));
        };
        roles[p] = roles[p].with(role);
    }
    for (spec, role) in lines {
        let at = if spec.is_local() {
            Some(0)
        } else {
            specs.iter().position(|s| s.as_ref() == Some(spec))
        };
        if let Some(p) = at {
            roles[p] = roles[p].with(*role);
        }
    }
    if let Some(p) = roles.iter().position(|r| r.send_only && r.receive_only) {
        let peer = specs[p]
            .as_ref()
            .map_or_else(|| "localhost".to_string(), PeerSpec::to_string);
        return Err(Box::new(Event::BothWays { peer }));
    }
    if roles.iter().all(|r| !r.sends()) {
        return Err(Box::new(Event::NoSender));
    }
    Ok(roles)
}

/// Without `--every` or `--watch`, how often `--watch` looks anyway.
const DEFAULT_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// One run: a sync, or `--versions`, or `--restore` and the sync after it.
async fn once(
    session: &mut Session,
    cli: &Cli,
    roots: &[Root],
    settings: &Settings,
    before: Vec<Option<Vec<RootScan>>>,
    rep: &Reporter,
) -> i32 {
    session.json_peers(rep);
    let peers = &session.peers;
    let specs: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
    if cli.versions.is_some() {
        // None kept is an answer, not a failure: 0, as for a listing that has some.
        restore::list(peers, &specs[0], &roots[0].display, rep).await;
        return exit_code(rep);
    }
    let mut scans = None;
    if cli.restore.is_some() {
        let first = |p: PeerId| match before.get(p) {
            Some(Some(s)) => s.first().and_then(|r| r.as_ref().ok()),
            _ => None,
        };
        let abs: Vec<Option<WirePath>> = (0..peers.len())
            .map(|p| first(p).map(|s| s.abs.clone()))
            .collect();
        let exists = |p: PeerId, rel: &WirePath| {
            first(p).is_some_and(|s| {
                matches!(
                    s.listing.get(rel),
                    Some(Seen {
                        state: Ok(Some(_)),
                        ..
                    })
                )
            })
        };
        let ask = restore::Ask {
            roots: &abs,
            at: cli.at,
            exists: &exists,
            dry_run: cli.dry_run,
            log: &settings.log,
        };
        let n = restore::restore(peers, &specs[0], &roots[0].display, &ask, rep).await;
        if n == 0 {
            return exit_code(rep);
        }
    } else {
        scans = Some(before);
    }
    session.run_once(cli, roots, settings, scans, rep).await;
    exit_code(rep)
}

/// `--refill`: peer `p`'s record of what it held and no longer holds is set aside, so its
/// emptied root (or mount point) is a new peer's: every entry the others hold is copied to
/// it, and nothing it lost is taken for a deletion anywhere.
fn forget_deletions(scans: &mut [Option<Vec<RootScan>>], p: PeerId) {
    for s in scans.get_mut(p).into_iter().flatten().flatten().flatten() {
        s.listing.retain(|_, seen| !matches!(seen.state, Ok(None)));
        s.emptied.clear();
    }
}

/// The operations log: `--log`, synk.conf's `log`, or the default; none for a dry run.
fn open_log(cli: &Cli, cfg: &config::Config, rep: &Reporter) -> OpLog {
    if cli.dry_run {
        return OpLog::none();
    }
    match cli
        .log
        .clone()
        .or(cfg.log.clone())
        .or_else(oplog::default_path)
    {
        Some(path) => OpLog::open(&path).unwrap_or_else(|e| {
            rep.emit(Event::NoLog {
                path: path.display().to_string(),
                error: e.to_string(),
            });
            OpLog::none()
        }),
        None => OpLog::none(),
    }
}

/// `--state`: every state file of this host and the root it belongs to.
fn state_index(home: Option<&std::path::Path>, rep: &Reporter) -> i32 {
    let Some(dir) = crate::state::state_dir(home) else {
        rep.emit(Event::NoConfigDir);
        return EXIT_USAGE;
    };
    rep.emit(Event::StateFiles {
        dir: dir.display().to_string(),
        files: crate::state::index(&dir)
            .into_iter()
            .map(|(file, root)| (file.display().to_string(), root))
            .collect(),
    });
    EXIT_OK
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
        rep.emit(Event::NoConfigDir);
        return Some(EXIT_USAGE);
    };
    let value = config::path_value(&absolutize(path, cwd), home);
    let shown = file.display().to_string();
    let res = if adding {
        config::add_path(&file, &value).map(|added| {
            rep.emit(Event::Tracked {
                path: value.clone(),
                file: shown.clone(),
                already: !added,
            });
            EXIT_OK
        })
    } else {
        config::forget_path(&file, &value).map(|n| {
            let (path, file) = (value.clone(), shown.clone());
            if n == 0 {
                rep.emit(Event::NotTracked { path, file });
                EXIT_UNSYNCED
            } else {
                rep.emit(Event::Untracked { path, file });
                EXIT_OK
            }
        })
    };
    Some(res.unwrap_or_else(|e| {
        rep.emit(Event::ConfigNotEdited {
            file: shown,
            error: e.to_string(),
        });
        EXIT_USAGE
    }))
}

/// The exit status after a run: errors first, then changes a dry run found (a conflict it
/// found is one: nothing was kept yet), then conflicts.
fn exit_code(rep: &Reporter) -> i32 {
    if rep.failures() > 0 {
        EXIT_UNSYNCED
    } else if rep.any_pending() {
        EXIT_PENDING
    } else if rep.conflicts() > 0 {
        EXIT_CONFLICTS
    } else {
        EXIT_OK
    }
}

/// Ends every peer's conversation.
async fn close_all(peers: &[Peer]) {
    join_all(peers.iter().map(|p| async move {
        p.conn.lock().await.close().await;
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(hosts: &[&str]) -> Vec<Option<PeerSpec>> {
        std::iter::once(None)
            .chain(
                hosts
                    .iter()
                    .map(|h| Some(PeerSpec::parse(h, None).unwrap())),
            )
            .collect()
    }

    fn role(words: &[&str]) -> Role {
        let mut r = Role::default();
        for w in words {
            assert!(r.add(w));
        }
        r
    }

    #[test]
    fn roles_come_from_options_and_config_lines_by_peer() {
        let specs = specs(&["me@build", "backup"]);
        let lines = [
            (
                PeerSpec::parse("backup", None).unwrap(),
                role(&["no-delete"]),
            ),
            (
                PeerSpec::parse("elsewhere", None).unwrap(),
                role(&["send-only"]),
            ),
        ];
        let options = vec![
            ("--send-only", "build", role(&["send-only"])),
            ("--receive-only", "backup", role(&["receive-only"])),
        ];
        let roles = roles_of(options, &lines, &specs).unwrap();
        assert_eq!(
            roles.iter().map(Role::words).collect::<Vec<_>>(),
            [vec![], vec!["send-only"], vec!["receive-only", "no-delete"]]
        );
    }

    #[test]
    fn roles_that_name_no_peer_or_leave_no_sender_are_usage_errors() {
        let specs = specs(&["a"]);
        let unknown = roles_of(
            vec![("--no-delete", "/root/x", role(&["no-delete"]))],
            &[],
            &specs,
        );
        assert!(
            matches!(unknown.as_ref().map_err(|e| &**e), Err(Event::UnknownRolePeer { option, name }) if option == "--no-delete" && name == "/root/x"),
            "{unknown:?}"
        );
        let both = roles_of(
            vec![
                ("--send-only", "a", role(&["send-only"])),
                ("--receive-only", "a", role(&["receive-only"])),
            ],
            &[],
            &specs,
        );
        assert!(
            matches!(both.as_ref().map_err(|e| &**e), Err(Event::BothWays { peer }) if peer == "a"),
            "{both:?}"
        );
        let none = roles_of(
            vec![
                ("--receive-only", "a", role(&["receive-only"])),
                ("--receive-only", "localhost", role(&["receive-only"])),
            ],
            &[],
            &specs,
        );
        assert!(
            matches!(none.as_ref().map_err(|e| &**e), Err(Event::NoSender)),
            "{none:?}"
        );
        assert!(roles_of(
            vec![("--receive-only", "a", role(&["receive-only"]))],
            &[],
            &specs
        )
        .is_ok());
    }
}
