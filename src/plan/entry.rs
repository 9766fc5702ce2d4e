//! The decision for one entry, from every peer's version of it and what that peer held after
//! the last sync (its version vector).

use crate::model::{Content, Kind, Meta, Order, Vv};

use super::{PeerId, Seen};

/// What one peer holds at a path, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Version<'a> {
    /// The peer.
    pub peer: PeerId,
    /// `None`: deleted since the last sync (or a remembered deletion).
    pub meta: Option<&'a Meta>,
    /// `None`: this peer has no history of the entry.
    pub vv: Option<&'a Vv>,
}

impl Version<'_> {
    fn content(&self) -> Content {
        Content::of(self.meta)
    }
}

/// The outcome for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `winner` (a peer holding the winning version; `None`: the entry is deleted) goes
    /// everywhere. `losers` hold versions that changed concurrently: each is kept under a
    /// conflict name.
    Win {
        /// A peer holding the winning version, or `None` for a deletion.
        winner: Option<PeerId>,
        /// One peer per conflicting version that loses the name.
        losers: Vec<PeerId>,
        /// Concurrent changes a send-only peer's version overrode (no conflict copy).
        overrode: Option<Overrode>,
    },
}

/// Changes made elsewhere that a send-only peer's concurrent change overrode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Overrode {
    /// The send-only peer whose version won.
    pub by: PeerId,
    /// One peer per overridden version.
    pub peers: Vec<PeerId>,
}

/// A verdict with nothing overridden.
fn win(winner: Option<PeerId>, losers: Vec<PeerId>) -> Verdict {
    Verdict::Win {
        winner,
        losers,
        overrode: None,
    }
}

/// Newest modification time first; ties broken by content so that every client picks the same.
fn newest<'a>(vs: &[Version<'a>]) -> Version<'a> {
    *vs.iter()
        .filter(|v| v.meta.is_some())
        .max_by(|a, b| {
            let (ma, mb) = (a.meta.expect("present"), b.meta.expect("present"));
            ma.mtime
                .cmp(&mb.mtime)
                .then_with(|| ma.digest.map(|d| d.0).cmp(&mb.digest.map(|d| d.0)))
                .then_with(|| b.peer.cmp(&a.peer))
        })
        .expect("a present version")
}

/// One peer per distinct content, in the order given.
fn distinct<'a>(vs: &[Version<'a>]) -> Vec<Version<'a>> {
    let mut out: Vec<Version<'a>> = Vec::new();
    for v in vs {
        if !out.iter().any(|o| o.content() == v.content()) {
            out.push(*v);
        }
    }
    out
}

/// Decides one entry from the versions of the peers that may send and hold or remember it
/// (at least one). `forced` is the `--master` peer, whose version wins outright where it has
/// one. A version of a `send_only` peer that changed since the last sync wins over the
/// others' concurrent changes; between send-only peers the usual rules apply.
pub(super) fn verdict(
    versions: &[Version<'_>],
    forced: Option<PeerId>,
    send_only: &dyn Fn(PeerId) -> bool,
) -> Verdict {
    let kinds = distinct(versions);
    if kinds.len() == 1 {
        let v = kinds[0];
        return win(v.meta.map(|_| v.peer), vec![]);
    }
    if let Some(f) = forced.and_then(|f| versions.iter().find(|v| v.peer == f)) {
        return win(f.meta.map(|_| f.peer), vec![]);
    }
    // A peer without history of the entry that holds what another peer holds with history
    // (a copy that landed just before a run was killed) shares that history; one that holds
    // something nobody else has cannot be placed, so it is a candidate below.
    let history: Vec<Option<Vv>> = versions
        .iter()
        .map(|v| match v.vv {
            Some(vv) => Some(vv.clone()),
            None => versions
                .iter()
                .filter(|o| o.content() == v.content())
                .filter_map(|o| o.vv)
                .fold(None, |acc: Option<Vv>, vv| {
                    Some(acc.map_or_else(|| vv.clone(), |a| a.join(vv)))
                }),
        })
        .collect();
    // The versions no other version descends from: what changed since the last sync.
    let heads: Vec<(Version<'_>, bool)> = versions
        .iter()
        .zip(&history)
        .filter(|(_, h)| match h {
            None => true,
            Some(mine) => !history
                .iter()
                .flatten()
                .any(|theirs| mine.compare(theirs) == Order::Before),
        })
        .map(|(v, h)| (*v, h.is_some()))
        .collect();
    let (heads, overridden) = send_only_first(&heads, send_only);
    let verdict = among_heads(&distinct(&heads));
    let Verdict::Win { winner, losers, .. } = verdict;
    // Said only where a send-only peer's version is the one that goes everywhere.
    let content = |p: Option<PeerId>| match p {
        Some(p) => versions.iter().find(|v| v.peer == p).map(|v| v.content()),
        None => Some(Content::Gone),
    };
    let won = content(winner);
    let by = heads
        .iter()
        .find(|h| send_only(h.peer) && Some(h.content()) == won)
        .map(|h| h.peer);
    Verdict::Win {
        winner,
        losers,
        overrode: by.filter(|_| !overridden.is_empty()).map(|by| Overrode {
            by,
            peers: overridden,
        }),
    }
}

/// Where a send-only peer changed an entry, the other peers' concurrent versions drop out
/// (one peer per dropped version is returned): those with history, and, where a send-only
/// version is present, every one. A version new to the group meeting a send-only peer's
/// deletion stays in (a new entry there, which modification beats deletion lets in).
/// Send-only versions come first.
fn send_only_first<'a>(
    heads: &[(Version<'a>, bool)],
    send_only: &dyn Fn(PeerId) -> bool,
) -> (Vec<Version<'a>>, Vec<PeerId>) {
    let mine: Vec<Version<'a>> = heads
        .iter()
        .filter(|(v, _)| send_only(v.peer))
        .map(|(v, _)| *v)
        .collect();
    let others = heads.iter().filter(|(v, _)| !send_only(v.peer));
    if mine.is_empty() {
        return (others.map(|(v, _)| *v).collect(), vec![]);
    }
    let present = mine.iter().any(|v| v.meta.is_some());
    let mut kept = mine.clone();
    let mut dropped: Vec<Version<'a>> = Vec::new();
    for (v, has_history) in others {
        if mine.iter().any(|m| m.content() == v.content()) {
            kept.push(*v);
        } else if *has_history || present {
            if !dropped.iter().any(|d| d.content() == v.content()) {
                dropped.push(*v);
            }
        } else {
            kept.push(*v);
        }
    }
    (kept, dropped.iter().map(|v| v.peer).collect())
}

/// The verdict among the changed versions (one per content).
fn among_heads(heads: &[Version<'_>]) -> Verdict {
    if heads.len() == 1 {
        let h = heads[0];
        return win(h.meta.map(|_| h.peer), vec![]);
    }
    let present: Vec<Version<'_>> = heads.iter().filter(|v| v.meta.is_some()).copied().collect();
    if present.len() == 1 {
        // Modified here, deleted there: the modification wins.
        return win(Some(present[0].peer), vec![]);
    }
    // Several versions changed independently. A directory keeps its name (its entries decide
    // for themselves); otherwise the newest keeps it.
    let winner = present
        .iter()
        .find(|v| v.meta.is_some_and(|m| m.kind == Kind::Dir))
        .copied()
        .unwrap_or_else(|| newest(&present));
    let wm = winner.meta.expect("present");
    // A version with history that lost was changed concurrently: a conflict, kept in sight. One
    // without history simply loses to the newest (it is kept as a version), unless the times
    // tie (nothing says which is newer) or a directory takes the name of a file or symlink.
    let losers = present
        .iter()
        .filter(|v| v.content() != winner.content())
        .filter(|v| {
            v.vv.is_some() || wm.kind == Kind::Dir || v.meta.expect("present").mtime == wm.mtime
        })
        .map(|v| v.peer)
        .collect();
    win(Some(winner.peer), losers)
}

/// The versions of the peers that have a say on an entry: those holding or remembering it.
pub(super) fn versions_of<'a>(seen: &[(PeerId, &'a Seen)]) -> Vec<Version<'a>> {
    seen.iter()
        .filter_map(|(p, s)| match &s.state {
            Ok(meta) => Some(Version {
                peer: *p,
                meta: meta.as_ref(),
                vv: s.vv.as_ref(),
            }),
            Err(_) => None,
        })
        .collect()
}
