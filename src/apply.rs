//! Carrying out what a root's plan asks of each peer's own tree, through its `synk --serve`:
//! conflict renames, keeping versions, local clones and removals before the copies, and the new
//! sync state after them. Peers work concurrently; each one's steps run in plan order.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use futures::future::join_all;

use crate::paths::WirePath;
use crate::peer::{OpError, Peer};
use crate::plan::{PeerEntries, PeerId, Plan};
use crate::proto::{encode, Request};
use crate::report::{Event, Reporter};

/// Records per frame.
const RECORD_BATCH: usize = 2048;

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
pub type Failed = PeerEntries;

/// One request for a peer and the entry it is about, for messages.
struct Step {
    rel: WirePath,
    req: Request,
}

impl Step {
    /// The entries this step is about.
    fn rels(&self) -> Vec<&WirePath> {
        match &self.req {
            Request::Keep { rels, .. } => rels.iter().collect(),
            _ => vec![&self.rel],
        }
    }

    /// Every path this step touches: its entries, and where a rename moves one to.
    fn touched(&self) -> Vec<&WirePath> {
        let mut v = self.rels();
        if let Request::Rename { to, .. } = &self.req {
            v.push(to);
        }
        v
    }
}

/// True when `a` and `b` are the same entry or one is inside the other (the root, empty, is
/// around everything).
fn related(a: &WirePath, b: &WirePath) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let inside = |outer: &[u8], inner: &[u8]| {
        outer.is_empty()
            || inner == outer
            || (inner.starts_with(outer) && inner.get(outer.len()) == Some(&b'/'))
    };
    inside(a, b) || inside(b, a)
}

/// Steps a batch holds at most: every request of a batch is written before its answers are
/// read, so these bound what the answers fill of the pipes meanwhile (a few bytes each, well
/// within a pipe and the serve's buffer), at one round trip per this many.
const BATCH_MAX: usize = 4096;

/// The entries a batch's steps touch, to tell in a few lookups whether a path is
/// [`related`] to one of them.
#[derive(Default)]
struct Touched(std::collections::BTreeSet<Vec<u8>>);

impl Touched {
    /// Whether `r` is one of them, inside one of them, or holds one of them.
    fn clashes(&self, r: &WirePath) -> bool {
        let r = r.as_bytes();
        if self.0.is_empty() {
            return false;
        }
        if r.is_empty() || self.0.contains(r) || self.0.contains(&b""[..]) {
            return true;
        }
        let outer = r
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.0.contains(&r[..i]));
        let mut below = r.to_vec();
        below.push(b'/');
        let inner = self
            .0
            .range::<[u8], _>((
                std::ops::Bound::Included(below.as_slice()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|x| x.starts_with(&below));
        outer || inner
    }
}

/// Cuts a peer's steps, in order, into batches sent together: a step goes into the current
/// batch unless it touches an entry a step already there touches (the same one, or one inside
/// the other), so a step on an entry is sent only once every earlier step on it was answered,
/// and left out when one of those failed. Unrelated steps go in one round trip, up to
/// [`BATCH_MAX`] of them.
fn batches(steps: Vec<Step>) -> Vec<Vec<Step>> {
    let mut out: Vec<Vec<Step>> = Vec::new();
    let mut seen = Touched::default();
    for s in steps {
        let clash = s.touched().iter().any(|r| seen.clashes(r));
        if clash || out.last().is_none_or(|b| b.len() >= BATCH_MAX) {
            out.push(Vec::new());
            seen.0.clear();
        }
        seen.0
            .extend(s.touched().into_iter().map(|r| r.as_bytes().to_vec()));
        out.last_mut().expect("a batch").push(s);
    }
    out
}

/// The keeps of `plan` that can travel with the copy they are for (each `(target, path)` of
/// `inline`, a copy in the serve channel that can keep as it writes): those whose peer has no
/// other step before the copies on that entry, one around it or one inside it (a rename, a
/// clone, a removal), nor new metadata for the entry itself. The rest are kept first.
pub fn keeps_in_writes(plan: &Plan, inline: &PeerEntries) -> PeerEntries {
    let mut out: PeerEntries = plan
        .keeps
        .iter()
        .filter(|k| inline.contains(k))
        .cloned()
        .collect();
    if out.is_empty() {
        return out;
    }
    let mut others: Vec<(PeerId, &WirePath)> = Vec::new();
    for r in &plan.renames {
        others.extend([(r.peer, &r.rel), (r.peer, &r.to)]);
    }
    for c in &plan.clones {
        others.extend([(c.peer, &c.rel), (c.peer, &c.from)]);
    }
    others.extend(plan.removes.iter().map(|r| (r.peer, &r.rel)));
    out.retain(|(p, rel)| {
        !others.iter().any(|(q, x)| q == p && related(x, rel))
            && !plan.touches.iter().any(|t| t.peer == *p && t.rel == *rel)
    });
    out
}

impl Apply<'_> {
    /// Every peer's steps before the copies, in order: renames, keeps (but those of `in_writes`,
    /// which their copies make), clones, removals, new metadata.
    fn steps(&self, plan: &Plan, in_writes: &PeerEntries) -> BTreeMap<PeerId, Vec<Step>> {
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
        for (p, rel) in plan.keeps.iter().filter(|k| !in_writes.contains(*k)) {
            keeps.entry(*p).or_default().push(rel.clone());
        }
        // One request an entry, all in one round trip: an entry that cannot be kept (saved
        // meanwhile, unreadable) holds back its own copy only, never the others'.
        for (p, rels) in keeps {
            for rel in rels {
                steps.entry(p).or_default().push(Step {
                    rel: rel.clone(),
                    req: Request::Keep {
                        root,
                        rels: vec![rel],
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

    /// Runs every peer's steps before the copies, unrelated ones sent together ([`batches`]),
    /// but the keeps of `in_writes` ([`keeps_in_writes`]: their copies keep as they write).
    /// Returns the peers whose connection broke and the entries whose step failed on a peer:
    /// nothing may replace those there afterwards, since their old version could not be kept.
    pub async fn before_copies(
        &self,
        plan: &Plan,
        in_writes: &PeerEntries,
        rep: &Reporter,
    ) -> (HashSet<PeerId>, Failed) {
        self.run(self.steps(plan, in_writes), HashSet::new(), rep)
            .await
    }

    /// Makes the plan's hard links once the copies are done: each where the name it links to
    /// is there (no step on either failed, its peer not lost). Returns the peers whose
    /// connection broke and the entries whose link failed.
    pub async fn links(
        &self,
        plan: &Plan,
        lost: &HashSet<PeerId>,
        failed: &Failed,
        rep: &Reporter,
    ) -> (HashSet<PeerId>, Failed) {
        let mut steps: BTreeMap<PeerId, Vec<Step>> = BTreeMap::new();
        let mut skipped = HashSet::new();
        for l in &plan.links {
            if lost.contains(&l.peer) {
                continue;
            }
            if failed.contains(&(l.peer, l.to.clone())) || failed.contains(&(l.peer, l.rel.clone()))
            {
                skipped.insert((l.peer, l.rel.clone()));
                continue;
            }
            steps.entry(l.peer).or_default().push(Step {
                rel: l.rel.clone(),
                req: Request::Link {
                    root: self.root,
                    to: l.to.clone(),
                    rel: l.rel.clone(),
                    meta: l.meta.clone(),
                },
            });
        }
        let (gone, mut bad) = self.run(steps, HashSet::new(), rep).await;
        bad.extend(skipped);
        (gone, bad)
    }

    /// Runs each peer's steps in order, unrelated ones sent together ([`batches`]), leaving
    /// out steps on entries of `failed`.
    async fn run(
        &self,
        steps: BTreeMap<PeerId, Vec<Step>>,
        failed: Failed,
        rep: &Reporter,
    ) -> (HashSet<PeerId>, Failed) {
        let lost = Mutex::new(HashSet::new());
        let failed = Mutex::new(failed);
        join_all(steps.into_iter().map(|(p, steps)| {
            let (lost, failed) = (&lost, &failed);
            async move {
                let peer = &self.peers[p];
                let mut conn = peer.conn.lock().await;
                for batch in batches(steps) {
                    // Steps on entries whose earlier step failed are left out.
                    let batch: Vec<Step> = {
                        let f = failed.lock().expect("failed set lock");
                        batch
                            .into_iter()
                            .filter(|s| !s.rels().iter().any(|r| f.contains(&(p, (*r).clone()))))
                            .collect()
                    };
                    if batch.is_empty() {
                        continue;
                    }
                    let answers = match conn.pipeline(batch.iter().map(|s| &s.req)).await {
                        Ok(a) => a,
                        Err(e) => {
                            rep.emit(Event::Failed {
                                error: format!("{e:#}"),
                            });
                            lost.lock().expect("lost set lock").insert(p);
                            return;
                        }
                    };
                    for (s, answer) in batch.iter().zip(answers) {
                        let Err(e) = answer else { continue };
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
                        f.extend(s.rels().into_iter().map(|r| (p, r.clone())));
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

    /// [`Apply::commit`] without waiting for the answers: each peer's commit is sent, and its
    /// answer is owed ([`crate::peer::Conn::owe`], about this root), read before the next one
    /// anyone waits for or as the run ends, where its failure is told. A one-shot run thus
    /// spends no round trip of its own on it.
    pub async fn commit_owed(&self, plan: &Plan, peers: &[PeerId], rep: &Reporter) {
        join_all(peers.iter().map(|&p| async move {
            let peer = &self.peers[p];
            let mut conn = peer.conn.lock().await;
            let sent = async {
                send_records(&mut conn, self.root, plan, p).await?;
                conn.send(&Request::Commit { root: self.root }).await?;
                conn.flush().await
            }
            .await;
            match sent {
                Ok(()) => conn.owe(self.display.to_string()),
                Err(e) => rep.emit(Event::RootFailed {
                    peer: peer.name.clone(),
                    root: self.display.to_string(),
                    error: format!("{e:#}"),
                }),
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

impl Apply<'_> {
    /// Peer `p`'s records of `plan` and its commit, encoded, to send with other requests
    /// (`Err`: a frame too big, which [`Apply::commit`] would fail with as well).
    pub fn commit_frames(&self, plan: &Plan, p: PeerId) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        for req in record_requests(self.root, plan, p) {
            frames.push(encode(&req)?);
        }
        frames.push(encode(&Request::Commit { root: self.root })?);
        Ok(frames)
    }
}

/// Peer `p`'s records of `plan` as requests, in batches that stay well below the frame limit.
fn record_requests(root: u32, plan: &Plan, p: PeerId) -> impl Iterator<Item = Request> + '_ {
    let mut records = plan.records.of(p).peekable();
    std::iter::from_fn(move || {
        records.peek()?;
        let set: Vec<_> = records.by_ref().take(RECORD_BATCH).cloned().collect();
        Some(Request::Records { root, set })
    })
}

/// Sends peer `p`'s records of `plan` in batches that stay well below the frame limit.
async fn send_records(
    conn: &mut crate::peer::Conn,
    root: u32,
    plan: &Plan,
    p: PeerId,
) -> anyhow::Result<()> {
    for req in record_requests(root, plan, p) {
        conn.send(&req).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(req: Request) -> Step {
        let rel = match &req {
            Request::Keep { rels, .. } => rels[0].clone(),
            Request::Rename { rel, .. } | Request::Remove { rel, .. } => rel.clone(),
            _ => WirePath::default(),
        };
        Step { rel, req }
    }

    fn w(s: &str) -> WirePath {
        WirePath::from(s)
    }

    fn keep(rels: &[&str]) -> Step {
        step(Request::Keep {
            root: 0,
            rels: rels.iter().map(|r| w(r)).collect(),
        })
    }

    fn remove(rel: &str) -> Step {
        step(Request::Remove {
            root: 0,
            rel: w(rel),
            deleted: true,
        })
    }

    fn sizes(b: &[Vec<Step>]) -> Vec<usize> {
        b.iter().map(Vec::len).collect()
    }

    #[test]
    fn a_keep_travels_with_its_copy_unless_another_step_touches_that_entry_first() {
        use crate::plan::{Clone as PlanClone, Remove, Rename, Touch};
        let meta = crate::model::Meta {
            kind: crate::model::Kind::File,
            size: 1,
            mode: 0o644,
            mtime: 0,
            digest: Some(crate::model::Digest::of(b"x")),
            extra: Default::default(),
        };
        let base = || Plan {
            keeps: vec![(1, w("d/a")), (1, w("d/b")), (2, w("d/a")), (2, w("c"))],
            ..Plan::default()
        };
        // Inline copies of d/a to 1 and 2, d/b to 1; c goes by rsync.
        let inline: PeerEntries = [(1, w("d/a")), (1, w("d/b")), (2, w("d/a"))]
            .into_iter()
            .collect();
        let folded = |plan: &Plan| {
            let mut v: Vec<(PeerId, String)> = keeps_in_writes(plan, &inline)
                .into_iter()
                .map(|(p, r)| (p, r.to_string()))
                .collect();
            v.sort();
            v
        };
        let all = vec![(1, "d/a".into()), (1, "d/b".into()), (2, "d/a".into())];
        assert_eq!(folded(&base()), all);
        // (another step, what still travels with its copy)
        let cases: Vec<(Plan, Vec<(PeerId, String)>)> = vec![
            (
                Plan {
                    renames: vec![Rename {
                        rel: w("d/a"),
                        peer: 1,
                        to: w("d/a.conflict"),
                    }],
                    ..base()
                },
                vec![(1, "d/b".into()), (2, "d/a".into())],
            ),
            (
                Plan {
                    // Removing the directory around them, on peer 2 only.
                    removes: vec![Remove {
                        rel: w("d"),
                        peer: 2,
                        deleted: true,
                    }],
                    ..base()
                },
                vec![(1, "d/a".into()), (1, "d/b".into())],
            ),
            (
                Plan {
                    clones: vec![PlanClone {
                        rel: w("e"),
                        peer: 1,
                        from: w("d/b"),
                        meta: meta.clone(),
                    }],
                    ..base()
                },
                vec![(1, "d/a".into()), (2, "d/a".into())],
            ),
            (
                Plan {
                    // New metadata for the directory around them is no reason; for the
                    // entry itself it is.
                    touches: vec![
                        Touch {
                            rel: w("d"),
                            peer: 1,
                            was: meta.clone(),
                            meta: meta.clone(),
                        },
                        Touch {
                            rel: w("d/a"),
                            peer: 2,
                            was: meta.clone(),
                            meta: meta.clone(),
                        },
                    ],
                    ..base()
                },
                vec![(1, "d/a".into()), (1, "d/b".into())],
            ),
        ];
        for (i, (plan, want)) in cases.into_iter().enumerate() {
            assert_eq!(folded(&plan), want, "case {i}");
        }
    }

    #[test]
    fn entries_and_what_is_inside_them_are_related_and_nothing_else() {
        assert!(related(&w("a"), &w("a")));
        assert!(related(&w("a"), &w("a/b")));
        assert!(related(&w("a/b/c"), &w("a")));
        assert!(related(&w(""), &w("x")));
        assert!(!related(&w("a"), &w("ab")));
        assert!(!related(&w("a/b"), &w("a/c")));
        // The set a batch keeps answers as related does, pair by pair.
        let paths = [
            "", "a", "a/b", "a/b/c", "ab", "a/c", "a.b", "a0", "b", "a/bc",
        ];
        for x in paths {
            let mut t = Touched::default();
            t.0.insert(x.as_bytes().to_vec());
            for r in paths {
                assert_eq!(t.clashes(&w(r)), related(&w(x), &w(r)), "{x:?} {r:?}");
            }
        }
        assert!(!Touched::default().clashes(&w("")));
    }

    #[test]
    fn unrelated_steps_travel_together_and_a_later_step_on_an_entry_waits() {
        // Keeps of different entries, then removals of others: one batch.
        let b = batches(vec![keep(&["a", "b"]), remove("c"), remove("d/e")]);
        assert_eq!(sizes(&b), [3]);
        // A removal inside a directory renamed before it waits for the rename's answer.
        let rename = step(Request::Rename {
            root: 0,
            rel: w("d"),
            to: w("d.conflict"),
        });
        let b = batches(vec![rename, keep(&["x"]), remove("d/e"), remove("y")]);
        assert_eq!(sizes(&b), [2, 2]);
        // Whatever comes after a step on the root waits for it.
        let b = batches(vec![
            step(Request::Siblings { root: 0 }),
            keep(&["a"]),
            remove("b"),
        ]);
        assert_eq!(sizes(&b), [1, 2]);
        // A step on the renamed-to name waits too.
        let rename = step(Request::Rename {
            root: 0,
            rel: w("f"),
            to: w("g"),
        });
        assert_eq!(sizes(&batches(vec![rename, keep(&["g"])])), [1, 1]);
        assert!(batches(Vec::new()).is_empty());
        // Many unrelated steps: a round trip per BATCH_MAX of them.
        let many: Vec<Step> = (0..BATCH_MAX * 2 + 1)
            .map(|i| keep(&[&format!("f{i}")]))
            .collect();
        assert_eq!(sizes(&batches(many)), [BATCH_MAX, BATCH_MAX, 1]);
    }
}
