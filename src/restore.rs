//! `--versions PATH` and `--restore PATH [--at TIME]`: the kept versions of a path on every
//! peer, and bringing one back (the sync that follows carries it to the other peers).

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::model::Kept;
use crate::paths::{RootSpec, WirePath};
use crate::peer::check::VersionsCheck;
use crate::peer::{OpError, Peer};
use crate::plan::PeerId;
use crate::proto::{Request, Response};
use crate::report::{Event, Reporter};

/// Every peer's kept versions of `spec` and below (a peer that cannot answer is reported).
async fn gather(peers: &[Peer], spec: &RootSpec, rep: &Reporter) -> Vec<(PeerId, Kept)> {
    let answers = join_all(peers.iter().map(|peer| async move {
        let mut conn = peer.conn.lock().await;
        let req = Request::Versions { path: spec.clone() };
        let mut all = Vec::new();
        // Only versions of the path asked about, as many as a client holds.
        let mut check = VersionsCheck::new(spec, &peer.caps.home);
        let mut next = conn.call(&req).await;
        loop {
            match next {
                Ok(Response::Versions(v)) => {
                    if let Err(e) = check.take(&v) {
                        return Err(Event::Failed {
                            error: format!("{:#}", conn.refused(e)),
                        });
                    }
                    all.extend(v)
                }
                Ok(Response::Done) => return Ok(all),
                Ok(Response::Failed(m)) => {
                    return Err(Event::PeerFailed {
                        peer: peer.name.clone(),
                        error: m,
                    })
                }
                Ok(other) => {
                    return Err(Event::Failed {
                        error: format!("{:#}", conn.unexpected(&other)),
                    })
                }
                Err(e) => {
                    return Err(Event::Failed {
                        error: format!("{e:#}"),
                    })
                }
            }
            next = conn.recv().await;
        }
    }))
    .await;
    let mut out = Vec::new();
    for (p, a) in answers.into_iter().enumerate() {
        match a {
            Ok(v) => out.extend(v.into_iter().map(|k| (p, k))),
            Err(e) => rep.emit(e),
        }
    }
    out
}

/// Prints the kept versions of `spec` on every peer, by path then time.
pub async fn list(peers: &[Peer], spec: &RootSpec, display: &str, rep: &Reporter) {
    let mut all = gather(peers, spec, rep).await;
    all.sort_by(|(pa, a), (pb, b)| {
        (a.path.as_bytes(), a.replaced, *pa).cmp(&(b.path.as_bytes(), b.replaced, *pb))
    });
    if all.is_empty() {
        rep.emit(Event::NoVersions {
            path: display.to_string(),
        });
    }
    rep.versions(
        all.into_iter()
            .map(|(p, kept)| (peers[p].name.clone(), kept))
            .collect(),
    );
}

/// Which kept version of each entry to bring back, entries named below the root on every peer
/// (`roots[p]`: the root's absolute path on peer `p`). `at`: the version that was current then
/// (the latest written by then among those replaced after it); otherwise the newest, for
/// entries that `exists` says are gone now (the root itself always counts as gone, so a
/// file's older version comes back).
pub fn choose(
    all: &[(PeerId, Kept)],
    roots: &[Option<WirePath>],
    at: Option<i64>,
    exists: &dyn Fn(PeerId, &WirePath) -> bool,
) -> Vec<(PeerId, Kept)> {
    let mut by_rel: BTreeMap<WirePath, Vec<&(PeerId, Kept)>> = BTreeMap::new();
    for v in all {
        let Some(Some(root)) = roots.get(v.0) else {
            continue;
        };
        if let Some(rel) = v.1.path.below(root) {
            by_rel.entry(rel).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (rel, vs) in by_rel {
        let pick = match at {
            Some(t) => vs
                .iter()
                .filter(|(_, k)| k.meta.mtime <= t && t < k.replaced)
                .max_by_key(|(p, k)| (k.meta.mtime, k.replaced, usize::MAX - p)),
            None => vs
                .iter()
                .max_by_key(|(p, k)| (k.replaced, usize::MAX - p))
                .filter(|(p, _)| rel.is_empty() || !exists(*p, &rel)),
        };
        if let Some(v) = pick {
            out.push((*v).clone());
        }
    }
    out
}

/// What `--restore` is asked for, besides the path.
pub struct Ask<'a> {
    /// The root's absolute path on each peer (see [`choose`]).
    pub roots: &'a [Option<WirePath>],
    /// `--at`.
    pub at: Option<i64>,
    /// Whether an entry below the root exists now on a peer.
    pub exists: &'a dyn Fn(PeerId, &WirePath) -> bool,
    /// `-n`: say what would be restored, restore nothing.
    pub dry_run: bool,
    /// The operations log, where each restore is a `restored` line.
    pub log: &'a crate::oplog::OpLog,
}

/// Puts the chosen versions back on the peers that kept them. Returns how many were restored.
pub async fn restore(
    peers: &[Peer],
    spec: &RootSpec,
    display: &str,
    ask: &Ask<'_>,
    rep: &Reporter,
) -> usize {
    let all = gather(peers, spec, rep).await;
    let chosen = choose(&all, ask.roots, ask.at, ask.exists);
    let (at, dry_run) = (ask.at, ask.dry_run);
    if chosen.is_empty() {
        rep.emit(Event::NothingToRestore {
            path: display.to_string(),
            at,
        });
        return 0;
    }
    if dry_run {
        for (p, k) in chosen {
            rep.pending();
            rep.emit(Event::WouldRestore {
                peer: peers[p].name.clone(),
                path: k.path,
                replaced: k.replaced,
            });
        }
        return 0;
    }
    let mut restored = 0;
    for (p, k) in chosen {
        let peer = &peers[p];
        let mut conn = peer.conn.lock().await;
        // Chosen below this peer's root, so `below` holds; the serve checks it again.
        let rel = ask
            .roots
            .get(p)
            .and_then(Option::as_ref)
            .and_then(|root| k.path.below(root))
            .unwrap_or_default();
        let logged = rel.to_string();
        let req = Request::Restore {
            root: 0,
            rel,
            id: k.id.clone(),
        };
        match conn.op(&req).await {
            Ok(()) => {
                restored += 1;
                ask.log.line(display, &logged, &peer.name, "restored", None);
                rep.emit(Event::Restored {
                    peer: peer.name.clone(),
                    path: k.path,
                    replaced: k.replaced,
                });
            }
            Err(OpError::Failed(m)) => rep.emit(Event::PeerFailed {
                peer: peer.name.clone(),
                error: m,
            }),
            Err(OpError::Changed(error)) => rep.emit(Event::ChangedMeanwhile {
                peer: peer.name.clone(),
                error,
            }),
            Err(OpError::Lost(e)) => rep.emit(Event::Failed {
                error: format!("{e:#}"),
            }),
        }
    }
    restored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Meta, Why};

    fn kept(path: &str, mtime: i64, replaced: i64) -> Kept {
        Kept {
            path: WirePath(path.as_bytes().to_vec()),
            id: format!("{replaced}"),
            meta: Meta {
                kind: Kind::File,
                size: 1,
                mode: 0o644,
                mtime,
                digest: None,
                extra: Default::default(),
            },
            replaced,
            why: Why::Overwritten,
        }
    }

    #[test]
    fn the_newest_or_the_one_current_at_a_time_is_chosen() {
        // Peers 0 and 1 have the root at different absolute paths.
        let roots = [
            Some(WirePath(b"/h0/d".to_vec())),
            Some(WirePath(b"/h1/d".to_vec())),
        ];
        let all = vec![
            (0, kept("/h0/d/a", 10, 20)),
            (1, kept("/h1/d/a", 20, 30)),
            (0, kept("/h0/d/b", 5, 40)),
            (1, kept("/elsewhere/b", 5, 50)),
        ];
        let none = |_: PeerId, _: &WirePath| false;
        let ids =
            |v: Vec<(PeerId, Kept)>| v.into_iter().map(|(p, k)| (p, k.id)).collect::<Vec<_>>();
        assert_eq!(
            ids(choose(&all, &roots, None, &none)),
            [(1, "30".into()), (0, "40".into())]
        );
        assert_eq!(
            ids(choose(&all, &roots, Some(15), &none)),
            [(0, "20".into()), (0, "40".into())]
        );
        assert_eq!(
            ids(choose(&all, &roots, Some(25), &none)),
            [(1, "30".into()), (0, "40".into())]
        );
        assert_eq!(ids(choose(&all, &roots, Some(50), &none)), []);
        // Without a time: only what is gone now.
        let a_exists = |_: PeerId, rel: &WirePath| rel.as_bytes() == b"a";
        assert_eq!(
            ids(choose(&all, &roots, None, &a_exists)),
            [(0, "40".into())]
        );
    }
}
