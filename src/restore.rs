//! `--versions PATH` and `--restore PATH [--at TIME]`: the kept versions of a path on every
//! peer, and bringing one back (the sync that follows carries it to the other peers).

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::paths::{RootSpec, WirePath};
use crate::peer::{OpError, Peer};
use crate::plan::PeerId;
use crate::proto::{Kind, Request, Response};
use crate::report::Reporter;
use crate::versions::{short_digest, Kept};

/// Every peer's kept versions of `spec` and below (a peer that cannot answer is reported).
async fn gather(peers: &[Peer], spec: &RootSpec, rep: &Reporter) -> Vec<(PeerId, Kept)> {
    let answers = join_all(peers.iter().map(|peer| async move {
        let mut conn = peer.conn.lock().await;
        let req = Request::Versions { path: spec.clone() };
        match conn.call(&req).await {
            Ok(Response::Versions(v)) => Ok(v),
            Ok(Response::Failed(m)) => Err(format!("{}: {m}", peer.name)),
            Ok(other) => Err(format!("{:#}", conn.unexpected(&other))),
            Err(e) => Err(format!("{e:#}")),
        }
    }))
    .await;
    let mut out = Vec::new();
    for (p, a) in answers.into_iter().enumerate() {
        match a {
            Ok(v) => out.extend(v.into_iter().map(|k| (p, k))),
            Err(e) => rep.error(e),
        }
    }
    out
}

fn when(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000).max(0) as u64;
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Prints the kept versions of `spec` on every peer, by path then time. Returns how many.
pub async fn list(peers: &[Peer], spec: &RootSpec, display: &str, rep: &Reporter) -> usize {
    let mut all = gather(peers, spec, rep).await;
    all.sort_by(|(pa, a), (pb, b)| {
        (a.path.as_bytes(), a.replaced, *pa).cmp(&(b.path.as_bytes(), b.replaced, *pb))
    });
    if all.is_empty() {
        rep.say(0, format!("no kept versions of {display} on any peer"));
    }
    for (p, k) in &all {
        let size = match &k.meta.kind {
            Kind::Dir => "dir".to_string(),
            Kind::Symlink(t) => format!("-> {t}"),
            _ => k.meta.size.to_string(),
        };
        rep.say(
            0,
            format!(
                "{}\t{}\t{size}\t{}\t{}\t{}",
                peers[*p].name,
                when(k.replaced),
                short_digest(k.meta.digest.as_ref()),
                k.why.word(),
                k.path
            ),
        );
    }
    all.len()
}

/// Which kept version of each path to bring back. `at`: the version that was current then
/// (it had been written by then and was replaced after); otherwise the newest, for paths that
/// `exists` says are gone now (the caller counts the path asked for as gone, so a file's
/// older version comes back).
pub fn choose(
    all: &[(PeerId, Kept)],
    at: Option<i64>,
    exists: &dyn Fn(PeerId, &WirePath) -> bool,
) -> Vec<(PeerId, Kept)> {
    let mut by_path: BTreeMap<&WirePath, Vec<&(PeerId, Kept)>> = BTreeMap::new();
    for v in all {
        by_path.entry(&v.1.path).or_default().push(v);
    }
    let mut out = Vec::new();
    for (path, vs) in by_path {
        let pick = match at {
            Some(t) => vs
                .iter()
                .filter(|(_, k)| k.meta.mtime <= t && t < k.replaced)
                .min_by_key(|(p, k)| (k.replaced, *p)),
            None => vs
                .iter()
                .max_by_key(|(p, k)| (k.replaced, usize::MAX - p))
                .filter(|(p, _)| !exists(*p, path)),
        };
        if let Some(v) = pick {
            out.push((*v).clone());
        }
    }
    out
}

/// Puts the chosen versions back on the peers that kept them. Returns how many were restored.
pub async fn restore(
    peers: &[Peer],
    spec: &RootSpec,
    display: &str,
    at: Option<i64>,
    exists: &dyn Fn(PeerId, &WirePath) -> bool,
    rep: &Reporter,
) -> usize {
    let all = gather(peers, spec, rep).await;
    let chosen = choose(&all, at, exists);
    if chosen.is_empty() {
        rep.error(format!(
            "{display}: no kept version to restore{}",
            at.map(|t| format!(" at {}", when(t))).unwrap_or_default()
        ));
        return 0;
    }
    let mut restored = 0;
    for (p, k) in chosen {
        let peer = &peers[p];
        let mut conn = peer.conn.lock().await;
        let req = Request::Restore {
            path: k.path.clone(),
            id: k.id.clone(),
        };
        match conn.op(&req).await {
            Ok(()) => {
                restored += 1;
                rep.say(
                    0,
                    format!(
                        "restored {} on {} (the version replaced {})",
                        k.path,
                        peer.name,
                        when(k.replaced)
                    ),
                );
            }
            Err(OpError::Failed(m)) => rep.error(format!("{}: {m}", peer.name)),
            Err(OpError::Lost(e)) => rep.error(format!("{e:#}")),
        }
    }
    restored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Meta;
    use crate::versions::Why;

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
            },
            replaced,
            why: Why::Overwritten,
        }
    }

    #[test]
    fn the_newest_or_the_one_current_at_a_time_is_chosen() {
        let all = vec![
            (0, kept("/d/a", 10, 20)),
            (1, kept("/d/a", 20, 30)),
            (0, kept("/d/b", 5, 40)),
        ];
        let none = |_: PeerId, _: &WirePath| false;
        let ids =
            |v: Vec<(PeerId, Kept)>| v.into_iter().map(|(p, k)| (p, k.id)).collect::<Vec<_>>();
        assert_eq!(
            ids(choose(&all, None, &none)),
            [(1, "30".into()), (0, "40".into())]
        );
        assert_eq!(
            ids(choose(&all, Some(15), &none)),
            [(0, "20".into()), (0, "40".into())]
        );
        assert_eq!(
            ids(choose(&all, Some(25), &none)),
            [(1, "30".into()), (0, "40".into())]
        );
        assert_eq!(ids(choose(&all, Some(50), &none)), []);
        // Below a directory, without a time: only what is gone now.
        let a_exists = |_: PeerId, p: &WirePath| p.as_bytes() == b"/d/a";
        assert_eq!(ids(choose(&all, None, &a_exists)), [(0, "40".into())]);
    }
}
