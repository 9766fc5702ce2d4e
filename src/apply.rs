//! Carrying out what a root's plan asks of each peer's own tree, through its `synk --serve`:
//! conflict renames, keeping versions, local clones and removals before the copies, and the new
//! sync state after them. Peers work concurrently; each one's steps run in plan order.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use futures::future::join_all;

use crate::paths::WirePath;
use crate::peer::{OpError, Peer};
use crate::plan::{PeerId, Plan};
use crate::proto::Request;
use crate::report::{Event, Reporter};

/// Records per frame.
const RECORD_BATCH: usize = 2048;
/// Entries per Keep request.
const KEEP_BATCH: usize = 1024;

/// One root's changes to peers' trees.
pub struct Apply<'a> {
    /// All peers of the run.
    pub peers: &'a [Peer],
    /// The root's index in the scan request.
    pub root: u32,
    /// The root as the user named it, for messages.
    pub display: &'a str,
    /// For a single-file root with conflict copies beside it: every peer taking part, told
    /// first that the root's other entries are its siblings.
    pub siblings: Vec<PeerId>,
}

/// Entries whose step failed on a peer.
pub type Failed = HashSet<(PeerId, WirePath)>;

/// One request for a peer and the entry it is about, for messages.
struct Step {
    rel: WirePath,
    req: Request,
}

impl Apply<'_> {
    /// Every peer's steps before the copies, in order: renames, keeps, clones, removals, new
    /// metadata.
    fn steps(&self, plan: &Plan) -> BTreeMap<PeerId, Vec<Step>> {
        let root = self.root;
        let mut steps: BTreeMap<PeerId, Vec<Step>> = BTreeMap::new();
        for &p in &self.siblings {
            steps.entry(p).or_default().push(Step {
                rel: WirePath::default(),
                req: Request::Siblings { root },
            });
        }
        for r in &plan.renames {
            steps.entry(r.peer).or_default().push(Step {
                rel: r.rel.clone(),
                req: Request::Rename {
                    root,
                    rel: r.rel.clone(),
                    to: r.to.clone(),
                },
            });
        }
        let mut keeps: BTreeMap<PeerId, Vec<WirePath>> = BTreeMap::new();
        for (p, rel) in &plan.keeps {
            keeps.entry(*p).or_default().push(rel.clone());
        }
        for (p, rels) in keeps {
            for batch in rels.chunks(KEEP_BATCH) {
                steps.entry(p).or_default().push(Step {
                    rel: batch[0].clone(),
                    req: Request::Keep {
                        root,
                        rels: batch.to_vec(),
                    },
                });
            }
        }
        for c in &plan.clones {
            steps.entry(c.peer).or_default().push(Step {
                rel: c.rel.clone(),
                req: Request::Clone {
                    root,
                    from: c.from.clone(),
                    rel: c.rel.clone(),
                    mode: c.meta.mode,
                    mtime: c.meta.mtime,
                    digest: c.meta.digest.expect("files carry digests"),
                },
            });
        }
        for r in &plan.removes {
            steps.entry(r.peer).or_default().push(Step {
                rel: r.rel.clone(),
                req: Request::Remove {
                    root,
                    rel: r.rel.clone(),
                    deleted: r.deleted,
                },
            });
        }
        for t in &plan.touches {
            let req = match t.meta.kind {
                // A directory's mode and mtime are set once it is filled.
                crate::model::Kind::Dir => Request::MakeDir {
                    root,
                    rel: t.rel.clone(),
                    mode: t.meta.mode,
                    mtime: t.meta.mtime,
                },
                _ => Request::SetMeta {
                    root,
                    rel: t.rel.clone(),
                    mode: t.meta.mode,
                    mtime: t.meta.mtime,
                },
            };
            steps.entry(t.peer).or_default().push(Step {
                rel: t.rel.clone(),
                req,
            });
        }
        steps
    }

    /// Runs every peer's steps before the copies. Returns the peers whose connection broke and
    /// the entries whose step failed on a peer: nothing may replace those there afterwards,
    /// since their old version could not be kept.
    pub async fn before_copies(&self, plan: &Plan, rep: &Reporter) -> (HashSet<PeerId>, Failed) {
        let lost = Mutex::new(HashSet::new());
        let failed = Mutex::new(HashSet::new());
        let steps = self.steps(plan);
        join_all(steps.into_iter().map(|(p, steps)| {
            let (lost, failed) = (&lost, &failed);
            async move {
                let peer = &self.peers[p];
                let mut conn = peer.conn.lock().await;
                for s in steps {
                    let rels: Vec<&WirePath> = match &s.req {
                        Request::Keep { rels, .. } => rels.iter().collect(),
                        _ => vec![&s.rel],
                    };
                    {
                        let f = failed.lock().expect("failed set lock");
                        if rels.iter().any(|r| f.contains(&(p, (*r).clone()))) {
                            continue;
                        }
                    }
                    match conn.op(&s.req).await {
                        Ok(()) => {}
                        Err(e @ (OpError::Failed(_) | OpError::Changed(_))) => {
                            rep.emit(match e {
                                OpError::Changed(error) => Event::ChangedMeanwhile {
                                    peer: peer.name.clone(),
                                    error,
                                },
                                other => Event::PeerFailed {
                                    peer: peer.name.clone(),
                                    error: other.to_string(),
                                },
                            });
                            let mut f = failed.lock().expect("failed set lock");
                            f.extend(rels.into_iter().map(|r| (p, r.clone())));
                        }
                        Err(OpError::Lost(e)) => {
                            rep.emit(Event::Failed {
                                error: format!("{e:#}"),
                            });
                            lost.lock().expect("lost set lock").insert(p);
                            return;
                        }
                    }
                }
            }
        }))
        .await;
        (
            lost.into_inner().expect("lost set lock"),
            failed.into_inner().expect("failed set lock"),
        )
    }

    /// Writes the root's new sync state on every peer in `peers`: each checks every record
    /// against its disk and keeps its old one where the change did not arrive.
    pub async fn commit(&self, plan: &Plan, peers: &[PeerId], rep: &Reporter) {
        join_all(peers.iter().map(|&p| async move {
            let peer = &self.peers[p];
            let mut conn = peer.conn.lock().await;
            let res = match send_records(&mut conn, self.root, plan, p).await {
                Ok(()) => conn.op(&Request::Commit { root: self.root }).await,
                Err(e) => Err(OpError::Lost(e)),
            };
            if let Err(e) = res {
                rep.emit(Event::RootFailed {
                    peer: peer.name.clone(),
                    root: self.display.to_string(),
                    error: e.to_string(),
                });
            }
        }))
        .await;
    }

    /// Gives every peer in `peers` its records of `plan`, to be written by a later
    /// [`Apply::commit`]; returns the peers whose connection broke.
    pub async fn records(&self, plan: &Plan, peers: &[PeerId], rep: &Reporter) -> HashSet<PeerId> {
        let broke = join_all(peers.iter().map(|&p| async move {
            let peer = &self.peers[p];
            let mut conn = peer.conn.lock().await;
            match send_records(&mut conn, self.root, plan, p).await {
                Ok(()) => None,
                Err(e) => {
                    rep.emit(Event::RootFailed {
                        peer: peer.name.clone(),
                        root: self.display.to_string(),
                        error: format!("{e:#}"),
                    });
                    Some(p)
                }
            }
        }))
        .await;
        broke.into_iter().flatten().collect()
    }
}

/// Sends peer `p`'s records of `plan` in batches that stay well below the frame limit.
async fn send_records(
    conn: &mut crate::peer::Conn,
    root: u32,
    plan: &Plan,
    p: PeerId,
) -> anyhow::Result<()> {
    let mut records = plan.records.of(p).peekable();
    while records.peek().is_some() {
        let set: Vec<_> = records.by_ref().take(RECORD_BATCH).cloned().collect();
        conn.send(&Request::Records { root, set }).await?;
    }
    Ok(())
}
