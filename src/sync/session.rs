//! The peers of a run, kept connected across runs in periodic (`--every`) and watch (`--watch`)
//! mode: a peer that drops is named and reconnected with backoff while the others go on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::cli::Cli;
use crate::config::PeerSpec;
use crate::model::{Retention, Role};
use crate::oplog::OpLog;
use crate::paths::RootSpec;
use crate::peer::{self, Conn, ConnectOptions, OpError, Peer, RootScan};
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
/// How long a run waits for another synk run on the same paths to finish on a peer, unless
/// `--lock-wait` says otherwise.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(600);

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
    /// Let scans remove what killed runs left in the trees (never on a dry run).
    pub tidy: bool,
    /// How long to wait for another run's locks on a peer.
    pub lock_wait: Duration,
    /// `--no-xattrs`, `--no-acls`, `--no-owner`, `--numeric-ids`, `--no-hard-links`.
    pub meta: crate::extra::MetaOpts,
}

/// How one peer's scan ended.
enum PeerScan {
    /// Scanned: each root scanned, or why not.
    Scanned(Vec<RootScan>),
    /// Another run holds a lock the scan needs there: nothing scanned, nothing held.
    Busy,
    /// No scan: none was asked for, or it failed (and said why).
    Nothing,
}

impl PeerScan {
    fn done(self) -> Option<Vec<RootScan>> {
        match self {
            PeerScan::Scanned(s) => Some(s),
            PeerScan::Busy | PeerScan::Nothing => None,
        }
    }
}

/// The peers: every one that was asked for (localhost first), and those connected now.
pub(super) struct Session {
    specs: Vec<Option<PeerSpec>>,
    opts: ConnectOptions,
    /// `--master`, as an index into `specs`.
    forced: Option<usize>,
    /// Each peer's role, in `specs` order (missing: a normal peer).
    pub roles: Vec<Role>,
    /// Connected peers, in `specs` order; `spec_of[i]` is the index of `peers[i]`.
    pub peers: Vec<Peer>,
    spec_of: Vec<usize>,
    /// When a peer that dropped may be tried again, and the wait after that.
    retry: HashMap<usize, (Instant, Duration)>,
    /// This host alone is enough (`--versions`, or `--restore` with no other peer).
    pub alone: bool,
}

impl Session {
    /// Lists every peer of the session in the `--json` document, with its role and whether
    /// it is connected (one that is not has no `round_trips`).
    pub fn json_peers(&self, rep: &Reporter) {
        if !rep.json() {
            return;
        }
        let listed = self.specs.iter().enumerate().map(|(i, spec)| {
            let peer = self.spec_of.iter().position(|s| *s == i);
            let name = match (peer, spec) {
                (Some(p), _) => self.peers[p].name.clone(),
                (None, Some(spec)) => spec.to_string(),
                (None, None) => "localhost".to_string(),
            };
            let role = self.roles.get(i).copied().unwrap_or_default();
            (name, role.words(), peer.is_some())
        });
        rep.json_peers(listed.collect());
    }

    /// A session of the peers `specs` (`None`: this host), none connected yet.
    pub fn new(specs: Vec<Option<PeerSpec>>, opts: ConnectOptions, forced: Option<usize>) -> Self {
        Session {
            specs,
            opts,
            forced,
            roles: Vec::new(),
            peers: Vec::new(),
            spec_of: Vec::new(),
            retry: HashMap::new(),
            alone: false,
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
        let ahead = scan.map(|(roots, s)| {
            Conn::scan_request(roots, s.retention, &s.excludes, s.brief, s.tidy, s.meta)
        });
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
        let mut scans: Vec<PeerScan> = old_scans
            .into_iter()
            .map(|s| s.unwrap_or(PeerScan::Nothing))
            .collect();
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
                    scans.insert(at, scanned.unwrap_or(PeerScan::Nothing));
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
        if let Some((roots, s)) = scan {
            if scans.iter().any(|x| matches!(x, PeerScan::Busy)) {
                self.take_turns(roots, s, rep, &mut scans).await;
            }
        }
        scans.into_iter().map(PeerScan::done).collect()
    }

    /// Another run held a lock a scan needed on some peer (the scan went out with a try at
    /// the locks, so the common case costs no round trip): every lock the first try took is
    /// released, then the peers are locked one at a time in the order of their keys, waiting
    /// up to `--lock-wait` on each (every client takes that order, so two never wait for each
    /// other in a circle), and scanned again. A peer that cannot be locked is out of the run.
    async fn take_turns(
        &self,
        roots: &[RootSpec],
        s: &Settings,
        rep: &Reporter,
        scans: &mut [PeerScan],
    ) {
        let mut order: Vec<(u64, PeerId)> = Vec::new();
        for (p, scan) in scans.iter().enumerate() {
            if matches!(scan, PeerScan::Nothing) {
                continue;
            }
            let mut conn = self.peers[p].conn.lock().await;
            if matches!(scan, PeerScan::Scanned(_)) {
                // Its answer was read whole: the serve reads this next.
                if let Err(e) = conn.unlock().await {
                    rep.emit(Event::Failed {
                        error: format!("{e:#}"),
                    });
                    continue;
                }
            }
            order.push((conn.key().unwrap_or(0), p));
        }
        order.sort_unstable();
        let mut locked = Vec::new();
        for p in scans.iter_mut() {
            *p = PeerScan::Nothing;
        }
        for (_, p) in order {
            let peer = &self.peers[p];
            let mut conn = peer.conn.lock().await;
            let waiting = |path: &crate::paths::WirePath| {
                rep.emit(Event::WaitingForLock {
                    peer: peer.name.clone(),
                    path: path.clone(),
                })
            };
            match conn.lock(roots, s.lock_wait, waiting).await {
                Ok(()) => locked.push(p),
                Err(OpError::Failed(error) | OpError::Changed(error)) => {
                    rep.emit(Event::PeerFailed {
                        peer: peer.name.clone(),
                        error,
                    })
                }
                Err(OpError::Lost(e)) => rep.emit(Event::Failed {
                    error: format!("{e:#}"),
                }),
            }
        }
        let again = join_all(
            locked
                .iter()
                .map(|p| scan_peer(&self.peers[*p], roots, s, false, rep)),
        )
        .await;
        for (p, scan) in locked.into_iter().zip(again) {
            scans[p] = match scan {
                // Held since the lock above: cannot be, but never scanned unlocked.
                PeerScan::Busy => {
                    rep.emit(Event::PeerFailed {
                        peer: self.peers[p].name.clone(),
                        error: "lost its lock between locking and scanning".into(),
                    });
                    PeerScan::Nothing
                }
                other => other,
            };
        }
    }

    /// Releases every peer's locks (a run is over; `--every` and `--watch` hold none between
    /// runs), and tells what the peers warned of meanwhile.
    async fn unlock_all(&self, dead: &HashSet<PeerId>, rep: &Reporter) {
        join_all(self.peers.iter().enumerate().map(|(p, peer)| async move {
            let mut conn = peer.conn.lock().await;
            tell_warnings(peer, &mut conn, rep);
            if !dead.contains(&p) {
                // A peer that hangs up now is found out by the next request.
                let _ = conn.unlock().await;
            }
        }))
        .await;
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
        if self.peers.len() < 2 && !(self.alone && self.peers.len() == 1) {
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
        join_all(self.peers.iter().map(|peer| async move {
            match scan_peer(peer, roots, s, false, rep).await {
                PeerScan::Busy => {
                    // This session's locks, taken when it connected, are gone.
                    rep.emit(Event::PeerFailed {
                        peer: peer.name.clone(),
                        error: "another synk run holds a lock this run needs".into(),
                    });
                    None
                }
                other => other.done(),
            }
        }))
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
        let roles: Vec<Role> = self
            .spec_of
            .iter()
            .map(|i| self.roles.get(*i).copied().unwrap_or_default())
            .collect();
        self.json_peers(rep);
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
                roles: &roles,
                cli,
                log: &s.log,
                tuning: s.tuning,
                max_size: s.max_size,
                no_route: &no_route,
            };
            let lost = run.sync(&dead, rep).await;
            dead.extend(lost);
        }
        self.unlock_all(&dead, rep).await;
        self.tell_round_trips(rep).await;
        self.drop_peers(&dead).await;
    }

    /// `-vv` and `--json`: the round trips each peer cost since the last time this was told
    /// (the connection and the scan included).
    async fn tell_round_trips(&self, rep: &Reporter) {
        let mut trips = Vec::new();
        for peer in &self.peers {
            let n = peer.conn.lock().await.take_round_trips();
            rep.emit(Event::RoundTrips {
                peer: peer.name.clone(),
                trips: n,
            });
            trips.push((peer.name.clone(), n));
        }
        rep.json_round_trips(&trips);
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

    /// Ends every conversation and tells what the answers still owed came to (the commits of
    /// a one-shot run): each failed one as a root that failed on that peer, and the warnings
    /// that came with them.
    pub async fn close_telling(&self, rep: &Reporter) {
        join_all(self.peers.iter().map(|peer| async move {
            let mut conn = peer.conn.lock().await;
            let owed = conn.close().await;
            // What the serves warned of while they committed (pruning kept versions).
            tell_warnings(peer, &mut conn, rep);
            for (root, r) in owed {
                if let Err(e) = r {
                    rep.emit(Event::RootFailed {
                        peer: peer.name.clone(),
                        root,
                        error: e.to_string(),
                    });
                }
            }
        }))
        .await;
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

/// Tells what a peer's serve warned of since the last time.
fn tell_warnings(peer: &Peer, conn: &mut Conn, rep: &Reporter) {
    for warning in conn.take_warnings() {
        rep.emit(Event::PeerWarning {
            peer: peer.name.clone(),
            warning,
        });
    }
}

/// Scans the roots on one peer (`sent`: the request went out with the handshake), locking
/// them without waiting; [`PeerScan::Nothing`] (after saying why) when it fails.
async fn scan_peer(
    peer: &Peer,
    roots: &[RootSpec],
    s: &Settings,
    sent: bool,
    rep: &Reporter,
) -> PeerScan {
    let spinner = rep.spinner(Progress::Scanning {
        peer: peer.name.clone(),
    });
    let mut conn = peer.conn.lock().await;
    let progress = |entries, _| spinner.set_position(entries);
    let res = if sent {
        conn.scanned(roots, progress).await
    } else {
        conn.scan(
            roots,
            &Conn::scan_request(roots, s.retention, &s.excludes, s.brief, s.tidy, s.meta),
            progress,
        )
        .await
    };
    spinner.finish_and_clear();
    tell_warnings(peer, &mut conn, rep);
    match res {
        Ok(scan) => PeerScan::Scanned(scan),
        Err(e) if e.downcast_ref::<peer::Busy>().is_some() => PeerScan::Busy,
        Err(e) => {
            rep.emit(Event::Failed {
                error: format!("{e:#}"),
            });
            PeerScan::Nothing
        }
    }
}

/// Listens for SIGINT, SIGTERM and SIGHUP. A one-shot run (`repeating` false) stops at the
/// first at once ([`crate::stop::now`]: every child within a second, exit 128 + the signal).
/// `--every` and `--watch` stop after the current run at the first (the returned flag is set,
/// as the systemd unit expects) and at once at the second.
pub(super) fn stop_on_signals(repeating: bool) -> Arc<AtomicBool> {
    use tokio::signal::unix::SignalKind;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    for (kind, number, name) in [
        (SignalKind::interrupt(), libc::SIGINT, "SIGINT"),
        (SignalKind::terminate(), libc::SIGTERM, "SIGTERM"),
        (SignalKind::hangup(), libc::SIGHUP, "SIGHUP"),
    ] {
        let (stop, seen) = (stop.clone(), seen.clone());
        if let Ok(mut sig) = tokio::signal::unix::signal(kind) {
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    if !repeating || seen.fetch_add(1, Ordering::SeqCst) > 0 {
                        report::notice(Event::StoppedBySignal { signal: name });
                        crate::stop::now(number);
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
    let stop = stop_on_signals(true);
    let mut round = 0u64;
    let mut told_watch = false;
    loop {
        rep.reset();
        let started = Instant::now();
        let specs: Vec<RootSpec> = roots.iter().map(|r| r.spec.clone()).collect();
        let scans = session.connect_scan(Some((&specs, s)), rep).await;
        // A round whose peers are all out is a run too: its log line and its document.
        round += 1;
        let code = if session.ready(rep) {
            session.run_once(cli, roots, s, Some(scans), rep).await;
            super::exit_code(rep)
        } else {
            session.json_peers(rep);
            EXIT_UNSYNCED
        };
        s.log.line(
            "-",
            "-",
            "-",
            &format!("run {round} ended with status {code}"),
            None,
        );
        tracing::debug!(round, code, took = ?started.elapsed(), "run done");
        rep.end_run(code, started.elapsed().as_secs_f64(), false);
        if stop.load(Ordering::SeqCst) {
            session.close().await;
            return code;
        }
        if cli.watch {
            if round == 1 && !told_watch {
                told_watch = true;
                rep.emit(Event::Watching {
                    roots: roots.iter().map(|r| r.display.clone()).collect(),
                    peers: session.peers.iter().map(|p| p.name.clone()).collect(),
                    every: interval,
                });
            }
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
