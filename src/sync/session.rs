//! The peers of a run, kept connected across runs in periodic (`--every`) and watch (`--watch`)
//! mode: a peer that drops is named and reconnected with backoff while the others go on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::cli::Cli;
use crate::config::PeerSpec;
use crate::model::Retention;
use crate::oplog::OpLog;
use crate::paths::RootSpec;
use crate::peer::{self, Conn, ConnectOptions, Peer, RootScan};
use crate::plan::PeerId;
use crate::report::{self, Event, Progress, Reporter};
use crate::transfer::relay::NoRoute;
use crate::transfer::rsync::Tuning;

use super::root::RootRun;
use super::{Root, EXIT_UNSYNCED};

/// The first wait before reconnecting a peer that dropped; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long one watch poll waits on each peer before looking again.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Changes that come together are synced together: quiet this long first.
const DEBOUNCE: Duration = Duration::from_millis(400);
/// The longest the local peer's serve waits for a remote handshake to finish (see
/// [`Session::connect_scan`]).
const LOCAL_HOLD: Duration = Duration::from_millis(250);

/// What every run of a session is given besides the roots.
pub(super) struct Settings {
    /// How long kept versions stay.
    pub retention: Retention,
    /// synk.conf's and `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--compress`, `--bwlimit`.
    pub tuning: Tuning,
    /// `--max-size`.
    pub max_size: Option<u64>,
    /// The operations log.
    pub log: OpLog,
    /// Ask peers for entries unchanged since the last sync in brief ([`crate::plan::settle()`]).
    pub brief: bool,
}

/// The peers: every one that was asked for (localhost first), and those connected now.
pub(super) struct Session {
    specs: Vec<Option<PeerSpec>>,
    opts: ConnectOptions,
    /// `--master`, as an index into `specs`.
    forced: Option<usize>,
    /// Connected peers, in `specs` order; `spec_of[i]` is the index of `peers[i]`.
    pub peers: Vec<Peer>,
    spec_of: Vec<usize>,
    /// When a peer that dropped may be tried again, and the wait after that.
    retry: HashMap<usize, (Instant, Duration)>,
}

impl Session {
    /// A session of the peers `specs` (`None`: this host), none connected yet.
    pub fn new(specs: Vec<Option<PeerSpec>>, opts: ConnectOptions, forced: Option<usize>) -> Self {
        Session {
            specs,
            opts,
            forced,
            peers: Vec::new(),
            spec_of: Vec::new(),
            retry: HashMap::new(),
        }
    }

    /// Connects every peer that is not connected and whose retry time has come.
    pub async fn connect(&mut self, rep: &Reporter) {
        self.connect_scan(None, rep).await;
    }

    /// Connects the peers that are not connected (as [`Session::connect`]) and, with
    /// `scan`, scans the roots on every peer, each one as soon as it is connected: the local
    /// peer's scan and the others' handshakes overlap. Returns the scans in peer order.
    pub async fn connect_scan(
        &mut self,
        scan: Option<(&[RootSpec], &Settings)>,
        rep: &Reporter,
    ) -> Vec<Option<Vec<RootScan>>> {
        let now = Instant::now();
        let mut wanted: Vec<usize> = (0..self.specs.len())
            .filter(|i| !self.spec_of.contains(i))
            .filter(|i| self.retry.get(i).is_none_or(|(at, _)| *at <= now))
            .collect();
        // Remote peers first: each starts `ssh -G`, then its connection, from its first poll,
        // and the handshakes are the long pole.
        wanted.sort_by_key(|i| self.specs[*i].is_none());
        let opts = &self.opts;
        let specs = &self.specs;
        // With a scan to run, the local serve starts once a remote handshake is done (or
        // LOCAL_HOLD has passed): the key exchanges are CPU-bound, a scan run beside them slows
        // every one of them, and no remote listing can arrive before its handshake anyway.
        // Without one there is nothing to keep out of their way.
        let remote_done = tokio::sync::Notify::new();
        let hold = scan.is_some() && wanted.iter().any(|i| specs[*i].is_some());
        let remote_done = &remote_done;
        // A new peer gets the scan right behind the handshake.
        let ahead =
            scan.map(|(roots, s)| Conn::scan_request(roots, s.retention, &s.excludes, s.brief));
        let ahead = ahead.as_ref();
        let fresh = join_all(wanted.iter().map(|i| async move {
            let local = specs[*i].is_none();
            if local && hold {
                let _ = tokio::time::timeout(LOCAL_HOLD, remote_done.notified()).await;
            }
            let peer = peer::connect(specs[*i].clone(), opts, ahead).await;
            if !local {
                // Stored for the local peer if it is not waiting yet.
                remote_done.notify_one();
            }
            let scanned = match (&peer, scan) {
                (Ok(p), Some((roots, s))) => Some(scan_peer(p, roots, s, true, rep).await),
                _ => None,
            };
            (*i, peer, scanned)
        }));
        let old = join_all(self.peers.iter().map(|p| async move {
            match scan {
                Some((roots, s)) => Some(scan_peer(p, roots, s, false, rep).await),
                None => None,
            }
        }));
        let (connected, old_scans) = tokio::join!(fresh, old);
        let mut scans: Vec<Option<Vec<RootScan>>> =
            old_scans.into_iter().map(Option::flatten).collect();
        for (i, c, scanned) in connected {
            match c {
                Ok(p) => {
                    if let Some(done) = &p.installed {
                        rep.emit(Event::Installed {
                            peer: p.name.clone(),
                            was: done.was.clone(),
                            at: done.at.clone(),
                        });
                    }
                    if self.retry.remove(&i).is_some() {
                        rep.emit(Event::Reconnected {
                            peer: p.name.clone(),
                        });
                    }
                    let at = self.spec_of.partition_point(|s| *s < i);
                    self.spec_of.insert(at, i);
                    self.peers.insert(at, p);
                    scans.insert(at, scanned.flatten());
                }
                Err(e) => {
                    let wait = self.retry.get(&i).map_or(FIRST_BACKOFF, |(_, w)| *w);
                    rep.emit(Event::Failed {
                        error: format!("{e:#}"),
                    });
                    self.retry
                        .insert(i, (Instant::now() + wait, (wait * 2).min(MAX_BACKOFF)));
                }
            }
        }
        scans
    }

    /// The `--master` peer's id among the connected ones, or `Err` when it is not connected.
    pub fn forced_id(&self) -> Result<Option<PeerId>, ()> {
        match self.forced {
            None => Ok(None),
            Some(i) => self
                .spec_of
                .iter()
                .position(|s| *s == i)
                .map(Some)
                .ok_or(()),
        }
    }

    /// Whether a run can go ahead; says why not.
    pub fn ready(&self, rep: &Reporter) -> bool {
        if self.forced_id().is_err() {
            rep.emit(Event::MasterUnreachable);
            return false;
        }
        if self.peers.len() < 2 {
            rep.emit(Event::TooFewPeers);
            return false;
        }
        true
    }

    /// Scans every root on every peer at once.
    pub async fn scan(
        &self,
        roots: &[RootSpec],
        s: &Settings,
        rep: &Reporter,
    ) -> Vec<Option<Vec<RootScan>>> {
        join_all(
            self.peers
                .iter()
                .map(|peer| scan_peer(peer, roots, s, false, rep)),
        )
        .await
    }

    /// One sync of every root, from `scans` (or a fresh scan). Peers whose connection broke
    /// are dropped, to be reconnected later.
    pub async fn run_once(
        &mut self,
        cli: &Cli,
        roots: &[Root],
        s: &Settings,
        scans: Option<Vec<Option<Vec<RootScan>>>>,
        rep: &Reporter,
    ) {
        let specs: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
        let mut scans = match scans {
            Some(scans) => scans,
            None => self.scan(&specs, s, rep).await,
        };
        for root in 0..roots.len() {
            super::settle::settle_root(&self.peers, &mut scans, root, s.max_size, rep).await;
        }
        super::settle::check_file_roots(&self.peers, &mut scans, &specs, rep);
        let forced = self.forced_id().unwrap_or(None);
        let mut dead: HashSet<PeerId> = (0..self.peers.len())
            .filter(|i| scans[*i].is_none())
            .collect();
        let no_route = NoRoute::default();
        for (i, root) in roots.iter().enumerate() {
            let run = RootRun {
                index: i,
                root,
                peers: &self.peers,
                scans: &scans,
                forced,
                cli,
                log: &s.log,
                tuning: s.tuning,
                max_size: s.max_size,
                no_route: &no_route,
            };
            let lost = run.sync(&dead, rep).await;
            dead.extend(lost);
        }
        self.drop_peers(&dead).await;
    }

    /// Closes and forgets the given peers; they are tried again after a backoff.
    async fn drop_peers(&mut self, dead: &HashSet<PeerId>) {
        let mut ids: Vec<PeerId> = dead.iter().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for p in ids {
            let peer = self.peers.remove(p);
            let spec = self.spec_of.remove(p);
            self.retry
                .entry(spec)
                .or_insert((Instant::now() + FIRST_BACKOFF, FIRST_BACKOFF * 2));
            peer.conn.lock().await.close().await;
        }
    }

    /// Ends every conversation.
    pub async fn close(&self) {
        super::close_all(&self.peers).await;
    }

    /// Waits until a peer reports a change under the roots (then a short quiet), `limit`
    /// passes, or `stop` is set. Peers that cannot watch are left to `limit`.
    async fn wait_for_change(&mut self, limit: Duration, stop: &AtomicBool, rep: &Reporter) {
        let deadline = Instant::now() + limit;
        let mut unwatched: HashSet<usize> = HashSet::new();
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            let poll = WATCH_POLL.min(deadline - Instant::now());
            let answers = join_all(self.peers.iter().enumerate().map(|(p, peer)| async move {
                let mut conn = peer.conn.lock().await;
                (p, conn.watch(poll, false).await)
            }))
            .await;
            let mut changed = false;
            let mut dead = HashSet::new();
            for (p, a) in answers {
                match a {
                    Ok(Some(c)) => changed |= c,
                    Ok(None) => {
                        if unwatched.insert(self.spec_of[p]) {
                            rep.emit(Event::CannotWatch {
                                peer: self.peers[p].name.clone(),
                                every: limit,
                            });
                        }
                    }
                    Err(e) => {
                        rep.emit(Event::Failed {
                            error: format!("{e:#}"),
                        });
                        dead.insert(p);
                    }
                }
            }
            if !dead.is_empty() {
                self.drop_peers(&dead).await;
            }
            if self.spec_of.len() < self.specs.len() {
                // Someone to reconnect: go round again soon, not only at the limit.
                self.connect(rep).await;
            }
            if changed {
                tokio::time::sleep(DEBOUNCE).await;
                // Drain what the quiet time collected: the run will see it anyway.
                join_all(self.peers.iter().map(|peer| async move {
                    let _ = peer.conn.lock().await.watch(Duration::ZERO, true).await;
                }))
                .await;
                return;
            }
        }
    }
}

/// Scans the roots on one peer (`sent`: the request went out with the handshake); `None`
/// (after saying why) when it fails.
async fn scan_peer(
    peer: &Peer,
    roots: &[RootSpec],
    s: &Settings,
    sent: bool,
    rep: &Reporter,
) -> Option<Vec<RootScan>> {
    let spinner = rep.spinner(Progress::Scanning {
        peer: peer.name.clone(),
    });
    let mut conn = peer.conn.lock().await;
    let progress = |entries, _| spinner.set_position(entries);
    let res = if sent {
        conn.scanned(roots, progress).await
    } else {
        conn.scan(roots, s.retention, &s.excludes, s.brief, progress)
            .await
    };
    spinner.finish_and_clear();
    match res {
        Ok(scan) => Some(scan),
        Err(e) => {
            rep.emit(Event::Failed {
                error: format!("{e:#}"),
            });
            None
        }
    }
}

/// Stops the loop on SIGINT or SIGTERM after the current run; a second signal exits at once
/// (temp files of a copy cut short are removed by the next run, never synced).
fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    for kind in [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
    ] {
        let (stop, seen) = (stop.clone(), seen.clone());
        if let Ok(mut sig) = tokio::signal::unix::signal(kind) {
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                        std::process::exit(130);
                    }
                    report::notice(Event::Stopping);
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
    }
    stop
}

/// `--every` and `--watch`: sync, then wait for the interval or a change, until stopped.
/// Returns the exit status of the last run.
pub(super) async fn repeat(
    session: &mut Session,
    cli: &Cli,
    roots: &[Root],
    s: &Settings,
    interval: Duration,
    rep: &Reporter,
) -> i32 {
    let stop = stop_on_signals();
    let mut round = 0u64;
    loop {
        rep.reset();
        let started = Instant::now();
        let specs: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
        let scans = session.connect_scan(Some((&specs, s)), rep).await;
        let code = if session.ready(rep) {
            round += 1;
            session.run_once(cli, roots, s, Some(scans), rep).await;
            let code = super::exit_code(rep, false);
            s.log.line(
                "-",
                "-",
                "-",
                &format!("run {round} ended with status {code}"),
                None,
            );
            tracing::debug!(round, code, took = ?started.elapsed(), "run done");
            rep.end_run(code, started.elapsed().as_secs_f64(), false);
            code
        } else {
            EXIT_UNSYNCED
        };
        if stop.load(Ordering::SeqCst) {
            session.close().await;
            return code;
        }
        if cli.watch {
            session.wait_for_change(interval, &stop, rep).await;
        } else {
            let until = Instant::now() + interval;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
            }
        }
        if stop.load(Ordering::SeqCst) {
            session.close().await;
            return code;
        }
    }
}
