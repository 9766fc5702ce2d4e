//! A root's rsync pairs: every target's scratch directory prepared, each master's copies
//! spread as a relay tree ([`relay::Fanout`]), and the targets cleaned up and made durable
//! after. A pair whose master cannot reach its target is handed back to be streamed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};

use super::{relay, rsync, RootTransfer, WireStats};
use crate::paths::WirePath;
use crate::peer::OpError;
use crate::plan::{Copy, PeerId};
use crate::proto::{Placement, Placing, Request, Response};
use crate::report::{Event, Progress, Reporter};

/// One master's copies and the targets that need exactly those.
type Group<'c> = (&'c [&'c Copy], Vec<PeerId>);

impl RootTransfer<'_> {
    /// The rsync job for a pair, and how `-v` tells it.
    pub(super) fn rsync_job(
        &self,
        m: PeerId,
        t: PeerId,
        copies: &[&Copy],
        scratch: &WirePath,
    ) -> (rsync::Job, Event) {
        let peers = self.peers;
        let client_runs = self.client_runs(m, t);
        let side = |p: PeerId| {
            let abs = self.abs[p].clone().unwrap_or_default();
            let base = if self.root_is_dir {
                abs
            } else {
                WirePath::from_path(abs.as_path().parent().unwrap_or(std::path::Path::new("/")))
            };
            let remote = peers[p].spec.as_ref().map(|s| rsync::Remote {
                dest: s.destination(),
                port: s.port,
                control: client_runs
                    .then(|| {
                        peers[p]
                            .session
                            .as_ref()
                            .map(|s| s.control_socket().to_path_buf())
                    })
                    .flatten(),
                ssh_config: if client_runs {
                    self.ssh_config.clone()
                } else {
                    None
                },
                no_remote_command: client_runs && peers[p].remote_command,
            });
            rsync::Side { remote, base }
        };
        // A directory root lists its entries; a file root is the one name in its parent.
        let names = if self.root_is_dir {
            copies
                .iter()
                .map(|c| {
                    if c.rel.is_empty() {
                        WirePath(b".".to_vec())
                    } else {
                        c.rel.clone()
                    }
                })
                .collect()
        } else {
            // Other entries of a file root are its siblings (conflict copies). The root's own
            // name is the client's, never what a peer reported.
            let name = WirePath(self.name.unwrap_or(b".").to_vec());
            copies
                .iter()
                .map(|c| {
                    if c.rel.is_empty() {
                        name.clone()
                    } else {
                        c.rel.clone()
                    }
                })
                .collect()
        };
        let mut src = side(m);
        if !client_runs {
            // The master runs rsync: its own files are local to it.
            src.remote = None;
        }
        // Into the target's scratch directory, never into its tree.
        let mut dst = side(t);
        dst.base = dst.base.join(scratch);
        let job = rsync::Job {
            src,
            dst,
            names,
            tuning: self.tuning,
            sparse: false,
        };
        let shown = Event::Rsync {
            on: (!client_runs).then(|| self.name(m).to_string()),
            command: job.display(!client_runs),
        };
        (job, shown)
    }

    /// Runs every rsync pair, each master's copies spreading as a relay tree, into the
    /// targets' `scratch` directories (those that could not prepare one are left out).
    /// Returns the pairs to retry with the streaming copier.
    pub(super) async fn run_rsyncs(
        &self,
        pairs: &[(PeerId, PeerId, Vec<&Copy>)],
        scratch: BTreeMap<PeerId, WirePath>,
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        wire: &Mutex<WireStats>,
    ) -> BTreeSet<(PeerId, PeerId)> {
        // One Prepare (made with the target's directories) and one Cleanup per target: its
        // runs from different masters share them.
        let dir = self.root_is_dir;
        let ready: BTreeSet<PeerId> = scratch.keys().copied().collect();
        // Targets that need the same copies from the same master share one fan-out.
        let mut groups: BTreeMap<(PeerId, Vec<&WirePath>), Group> = BTreeMap::new();
        for (m, t, copies) in pairs.iter().filter(|(_, t, _)| ready.contains(t)) {
            let key = (*m, copies.iter().map(|c| &c.rel).collect());
            groups.entry(key).or_insert((copies, Vec::new())).1.push(*t);
        }
        let scratch = &scratch;
        let fallback: BTreeSet<(PeerId, PeerId)> =
            join_all(groups.into_iter().map(|((m, _), (copies, targets))| {
                self.fan_out(m, copies, targets, scratch, rep, lost, wire)
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        // Cleanup also makes what rsync wrote durable before any state records it. A target
        // whose copies all went by rsync (none streamed instead) gets its commit right behind,
        // its answer owed.
        let cleaned = join_all(ready.iter().map(|t| {
            let fallback = &fallback;
            async move {
                let cleanup = Request::Cleanup {
                    root: self.root,
                    dir,
                };
                let tail = match self.commit_with.get(t) {
                    Some(frames) if !fallback.iter().any(|(_, f)| f == t) => frames.as_slice(),
                    _ => &[],
                };
                let mut conn = self.peers[*t].conn.lock().await;
                let answer = match conn.pipeline_then([&cleanup], tail).await {
                    Ok(mut a) => a.pop().expect("one answer for one request"),
                    Err(e) => return (*t, Err(OpError::Lost(e))),
                };
                if !tail.is_empty() {
                    conn.owe(self.display.to_string());
                    self.commit_sent.lock().expect("commits lock").insert(*t);
                }
                (*t, answer)
            }
        }))
        .await;
        for (t, r) in cleaned {
            if let Err(e) = r {
                self.fail(rep, lost, t, WirePath::from(self.display), e);
                // What may not be on its disk is not recorded there: its state stays as it was.
                lost.lock().expect("lost set lock").insert(t);
            }
        }
        fallback
    }

    /// Carries `copies` from master `m` to `targets` with rsync as a pipelined tree
    /// ([`relay::Fanout`]): each target that has a unit feeds it on. Returns the pairs to
    /// stream instead.
    #[allow(clippy::too_many_arguments)]
    async fn fan_out(
        &self,
        m: PeerId,
        copies: &[&Copy],
        targets: Vec<PeerId>,
        scratch: &BTreeMap<PeerId, WirePath>,
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        wire: &Mutex<WireStats>,
    ) -> Vec<(PeerId, PeerId)> {
        let units = relay::units(copies);
        let known = self.no_route.lock().expect("no-route lock").clone();
        let mut plan = relay::Fanout::new(m, &targets, units.len()).knowing(known);
        let mut running = FuturesUnordered::new();
        let mut fallback = Vec::new();
        loop {
            while let Some(job) = plan.start() {
                let unit = &units[job.unit];
                let into = &scratch[&job.to];
                running.push(async move {
                    let outcome = self.rsync_pair(job.from, job.to, unit, into, rep).await;
                    // What arrived moves into place now: the target may feed it on next.
                    let placed = match &outcome {
                        rsync::Outcome::Done(_) => self.place(job.to, unit, rep, lost).await,
                        _ => false,
                    };
                    (job, outcome, placed)
                });
            }
            let Some((job, outcome, placed)) = running.next().await else {
                break;
            };
            let (from, t) = (job.from, job.to);
            let ended = match outcome {
                rsync::Outcome::Done(_) if placed => relay::Ended::Done,
                // Not all of it went into place: the target neither holds the unit nor
                // feeds it on (what did not arrive was reported with its path).
                rsync::Outcome::Done(_) => relay::Ended::Failed,
                rsync::Outcome::Unreachable(_) => relay::Ended::Unreachable,
                rsync::Outcome::Failed(_) => relay::Ended::Failed,
            };
            match (plan.finished(job, ended), outcome) {
                (_, rsync::Outcome::Done(stats)) => {
                    rep.emit(Event::RsyncDone {
                        from: self.name(from).to_string(),
                        to: self.name(t).to_string(),
                        literal: stats.literal,
                        matched: stats.matched,
                    });
                    wire.lock().expect("wire stats lock").add(stats);
                }
                (
                    relay::Then::Retry,
                    rsync::Outcome::Unreachable(why) | rsync::Outcome::Failed(why),
                ) => {
                    rep.emit(Event::RelayFailed {
                        from: self.name(from).to_string(),
                        root: self.display.to_string(),
                        to: self.name(t).to_string(),
                        why,
                    });
                }
                (_, rsync::Outcome::Unreachable(why)) if !self.client_runs(m, t) => {
                    rep.emit(Event::StreamThrough {
                        master: self.name(m).to_string(),
                        target: self.name(t).to_string(),
                        why,
                    });
                    fallback.push((m, t));
                }
                (_, rsync::Outcome::Unreachable(why) | rsync::Outcome::Failed(why)) => {
                    rep.emit(Event::RsyncFailed {
                        from: self.name(from).to_string(),
                        to: self.name(t).to_string(),
                        path: WirePath::from(self.display),
                        why,
                    });
                }
            }
        }
        // Relay pairs that did not connect are not tried again in this run.
        self.no_route
            .lock()
            .expect("no-route lock")
            .extend(plan.no_route());
        fallback
    }

    /// One rsync run from `from` (the master or a relay) to `t`.
    async fn rsync_pair(
        &self,
        from: PeerId,
        t: PeerId,
        copies: &[&Copy],
        scratch: &WirePath,
        rep: &Reporter,
    ) -> rsync::Outcome {
        let (job, shown) = self.rsync_job(from, t, copies, scratch);
        // The -v line says the command; the trace, how many entries it carries.
        tracing::debug!(entries = job.names.len(), "rsync run");
        rep.emit(shown);
        let spinner = rep.spinner(Progress::Rsync {
            from: self.name(from).to_string(),
            to: self.name(t).to_string(),
        });
        let outcome = if self.client_runs(from, t) {
            rsync::run_local(&job).await
        } else {
            let session = self.peers[from]
                .session
                .clone()
                .expect("remote peers have a session");
            let command = self.peers[from]
                .serve_command
                .as_deref()
                .unwrap_or("synk --serve");
            rsync::run_remote(session, command, &job).await
        };
        spinner.finish_and_clear();
        // The client waited for the run: a round trip (at least) to its remote end.
        let remote = if self.peers[from].is_local() { t } else { from };
        self.peers[remote].conn.lock().await.add_round_trip();
        outcome
    }

    /// Moves `copies`, which rsync wrote into target `t`'s scratch directory, into place there
    /// ([`Request::Place`]). Returns whether every one of them is in place; each that is not
    /// is reported with its path.
    async fn place(
        &self,
        t: PeerId,
        copies: &[&Copy],
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
    ) -> bool {
        let items: Vec<Placing> = copies
            .iter()
            .map(|c| Placing {
                rel: c.rel.clone(),
                size: c.meta.size,
                mtime: c.meta.mtime,
                mode: c.meta.mode,
                digest: c.meta.digest.expect("files carry a digest"),
            })
            .collect();
        let req = Request::Place {
            root: self.root,
            items,
        };
        let mut conn = self.peers[t].conn.lock().await;
        let answer = match conn.call(&req).await {
            Ok(Response::Placed(done)) if done.len() == copies.len() => done,
            Ok(Response::Failed(m)) => {
                drop(conn);
                self.fail(
                    rep,
                    lost,
                    t,
                    WirePath::from(self.display),
                    OpError::Failed(m),
                );
                return false;
            }
            Ok(other) => {
                let e = conn.unexpected(&other);
                drop(conn);
                self.fail(rep, lost, t, WirePath::from(self.display), OpError::Lost(e));
                return false;
            }
            Err(e) => {
                drop(conn);
                self.fail(rep, lost, t, WirePath::from(self.display), OpError::Lost(e));
                return false;
            }
        };
        drop(conn);
        let mut all = true;
        for (c, done) in copies.iter().zip(answer) {
            let e = match done {
                Placement::Done => continue,
                // A peer's text: cut, as every error it sends.
                Placement::Changed(m) => OpError::Changed(crate::peer::check::clip(m)),
                Placement::Failed(m) => OpError::Failed(crate::peer::check::clip(m)),
            };
            all = false;
            self.fail(rep, lost, t, self.path_of(&c.rel), e);
        }
        all
    }

    /// Whether this host runs the pair's rsync (it is one of the ends) or the master does.
    fn client_runs(&self, m: PeerId, t: PeerId) -> bool {
        self.peers[m].is_local() || self.peers[t].is_local()
    }
}
