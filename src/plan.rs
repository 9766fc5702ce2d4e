//! The decision: given every peer's scan of one root, what must be copied from whom to whom.
//!
//! Pure: no I/O, no clocks, no peers — just the rules, so every one of them is unit-tested.
//!
//! Per entry (the root itself and everything below it, the union over all peers):
//! - same kind and content everywhere: nothing to do;
//! - otherwise the peer with the newest mtime is the master and every peer that lacks the entry
//!   or differs from it receives the master's version;
//! - two peers sharing the newest mtime with different content, or different kinds (a file
//!   here, a directory there): a conflict, left untouched, with everything below it;
//! - `--master` picks the master outright (resolving ties), but never replaces a directory by a
//!   non-directory or the reverse: that would delete a tree, and deletions are not synced;
//! - an entry some peer cannot read is left alone everywhere, with everything below it, because
//!   synk cannot know what that peer holds;
//! - fifos, sockets and devices are reported and skipped.

use std::collections::{BTreeMap, HashSet};

use crate::paths::WirePath;
use crate::proto::{Kind, Meta};

/// Index of a peer in the run's peer list (0 is always localhost).
pub type PeerId = usize;

/// What one peer holds under one root: every entry by relative path, or why it can't be read.
pub type Listing = BTreeMap<WirePath, Result<Meta, String>>;

/// One entry to carry from its master to out-of-date peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Path below the root (empty: the root itself).
    pub rel: WirePath,
    /// The peer whose version wins.
    pub master: PeerId,
    /// Peers that lack the entry or hold something else.
    pub targets: Vec<PeerId>,
    /// The master's metadata for the entry.
    pub meta: Meta,
}

/// Why an entry is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Different content at the same newest mtime, or different kinds.
    Conflict {
        /// The entry.
        rel: WirePath,
        /// The peers whose versions clash.
        peers: Vec<PeerId>,
        /// Human-readable reason.
        reason: String,
    },
    /// A peer could not read the entry.
    Unreadable {
        /// The entry.
        rel: WirePath,
        /// The peer that failed.
        peer: PeerId,
        /// Its error.
        error: String,
    },
    /// A fifo, socket or device: never synced.
    Special {
        /// The entry.
        rel: WirePath,
        /// The peers holding one.
        peers: Vec<PeerId>,
    },
    /// No peer has the root at all.
    Missing,
}

/// Everything the decision produced for one root.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Copies to perform, parents before children.
    pub copies: Vec<Copy>,
    /// Entries left alone, and why.
    pub problems: Vec<Problem>,
}

impl Plan {
    /// True when something is wrong enough that the run must not exit 0.
    pub fn has_failures(&self) -> bool {
        self.problems
            .iter()
            .any(|p| !matches!(p, Problem::Special { .. }))
    }
}

/// Same content for synk's purposes: directories are equal by kind alone, files by digest,
/// symlinks by target.
pub fn same_content(a: &Meta, b: &Meta) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Dir, Kind::Dir) => true,
        (Kind::File, Kind::File) => a.digest == b.digest,
        (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
        _ => false,
    }
}

fn same_kind(a: &Kind, b: &Kind) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Decides one root. `views[p]` is peer `p`'s listing, or `None` when that peer could not scan
/// it (dead, or the root failed there): such a peer is neither master nor target.
pub fn decide(views: &[Option<&Listing>], forced_master: Option<PeerId>) -> Plan {
    let available: Vec<PeerId> = (0..views.len()).filter(|p| views[*p].is_some()).collect();
    let mut union: BTreeMap<&WirePath, States<'_>> = BTreeMap::new();
    for &p in &available {
        for (rel, state) in views[p].expect("available") {
            union.entry(rel).or_default().push((p, state));
        }
    }
    let mut plan = Plan::default();
    if union.is_empty() {
        if !available.is_empty() {
            plan.problems.push(Problem::Missing);
        }
        return plan;
    }
    // Entries whose subtree is off limits. BTreeMap order puts a parent before its children.
    let mut blocked: HashSet<&WirePath> = HashSet::new();
    let root = WirePath::default();
    for (rel, states) in union {
        let below_blocked = !rel.is_empty()
            && (blocked.contains(&root) || rel.ancestors().any(|a| blocked.contains(&a)));
        if below_blocked {
            continue;
        }
        if let Some(outcome) = decide_entry(rel, &states, &available, forced_master) {
            match outcome {
                Outcome::Copy(c) => plan.copies.push(c),
                Outcome::Problems(ps) => {
                    blocked.insert(rel);
                    plan.problems.extend(ps);
                }
            }
        }
    }
    plan
}

/// Every peer's state of one entry (peers lacking it are absent).
type States<'a> = Vec<(PeerId, &'a Result<Meta, String>)>;

enum Outcome {
    Copy(Copy),
    Problems(Vec<Problem>),
}

fn decide_entry(
    rel: &WirePath,
    states: &[(PeerId, &Result<Meta, String>)],
    available: &[PeerId],
    forced: Option<PeerId>,
) -> Option<Outcome> {
    let unreadable: Vec<Problem> = states
        .iter()
        .filter_map(|(p, s)| {
            s.as_ref().err().map(|e| Problem::Unreadable {
                rel: rel.clone(),
                peer: *p,
                error: e.clone(),
            })
        })
        .collect();
    if !unreadable.is_empty() {
        return Some(Outcome::Problems(unreadable));
    }
    let present: Vec<(PeerId, &Meta)> = states
        .iter()
        .filter_map(|(p, s)| s.as_ref().ok().map(|m| (*p, m)))
        .collect();
    let specials: Vec<PeerId> = present
        .iter()
        .filter(|(_, m)| m.kind == Kind::Special)
        .map(|(p, _)| *p)
        .collect();
    if !specials.is_empty() {
        return Some(Outcome::Problems(vec![Problem::Special {
            rel: rel.clone(),
            peers: specials,
        }]));
    }
    let first_meta = present[0].1;
    let everywhere = present.len() == available.len();
    if everywhere && present.iter().all(|(_, m)| same_content(first_meta, m)) {
        return None;
    }
    let forced = forced.and_then(|f| present.iter().find(|(p, _)| *p == f).copied());
    let kinds_clash = present
        .iter()
        .any(|(_, m)| !same_kind(&m.kind, &first_meta.kind));
    let conflict = |peers: Vec<PeerId>, reason: String| {
        Some(Outcome::Problems(vec![Problem::Conflict {
            rel: rel.clone(),
            peers,
            reason,
        }]))
    };
    if kinds_clash {
        let dir_involved = present.iter().any(|(_, m)| m.kind == Kind::Dir);
        if forced.is_none() || dir_involved {
            let kinds: Vec<&str> = present.iter().map(|(_, m)| m.kind.name()).collect();
            let peers = present.iter().map(|(p, _)| *p).collect();
            let mut reason = format!("different kinds ({})", kinds.join(", "));
            if dir_involved {
                reason.push_str("; synk never replaces a directory tree");
            }
            return conflict(peers, reason);
        }
    }
    let (master, meta) = match forced {
        Some(f) => f,
        None => {
            let newest = present.iter().map(|(_, m)| m.mtime).max().expect("present");
            let candidates: Vec<(PeerId, &Meta)> = present
                .iter()
                .filter(|(_, m)| m.mtime == newest)
                .copied()
                .collect();
            let (m0, meta0) = candidates[0];
            if candidates.iter().any(|(_, m)| !same_content(meta0, m)) {
                return conflict(
                    candidates.iter().map(|(p, _)| *p).collect(),
                    "same modification time, different content".into(),
                );
            }
            (m0, meta0)
        }
    };
    let targets: Vec<PeerId> = available
        .iter()
        .copied()
        .filter(|p| *p != master)
        .filter(|p| match present.iter().find(|(q, _)| q == p) {
            Some((_, m)) => !same_content(meta, m),
            None => true,
        })
        .collect();
    if targets.is_empty() {
        return None;
    }
    Some(Outcome::Copy(Copy {
        rel: rel.clone(),
        master,
        targets,
        meta: meta.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Digest;

    fn w(s: &str) -> WirePath {
        WirePath(s.as_bytes().to_vec())
    }
    fn file(content: &str, mtime: i64) -> Result<Meta, String> {
        Ok(Meta {
            kind: Kind::File,
            size: content.len() as u64,
            mode: 0o644,
            mtime,
            digest: Some(Digest::of(content.as_bytes())),
        })
    }
    fn dir(mtime: i64) -> Result<Meta, String> {
        Ok(Meta {
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            mtime,
            digest: None,
        })
    }
    fn link(target: &str, mtime: i64) -> Result<Meta, String> {
        Ok(Meta {
            kind: Kind::Symlink(w(target)),
            size: 0,
            mode: 0o777,
            mtime,
            digest: Some(Digest::of(target.as_bytes())),
        })
    }
    fn listing(entries: &[(&str, Result<Meta, String>)]) -> Listing {
        entries.iter().map(|(r, m)| (w(r), m.clone())).collect()
    }
    fn run(ls: &[Listing]) -> Plan {
        let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
        decide(&views, None)
    }
    fn copies(plan: &Plan) -> Vec<(String, PeerId, Vec<PeerId>)> {
        plan.copies
            .iter()
            .map(|c| (c.rel.to_string(), c.master, c.targets.clone()))
            .collect()
    }

    #[test]
    fn identical_everywhere_does_nothing() {
        let l = listing(&[("", file("x", 5))]);
        // Different mtimes and modes do not matter when the content is the same.
        let mut other = l.clone();
        if let Ok(m) = other.get_mut(&w("")).unwrap() {
            m.mtime = 9;
            m.mode = 0o600;
        }
        assert_eq!(run(&[l, other]), Plan::default());
    }

    #[test]
    fn newest_mtime_wins_and_reaches_every_other_peer() {
        let plan = run(&[
            listing(&[("", file("old", 1))]),
            listing(&[("", file("new", 3))]),
            listing(&[("", file("older", 0))]),
            listing(&[("", file("new", 2))]),
        ]);
        // Peer 3 has the master's content already, with an older mtime: left alone.
        assert_eq!(copies(&plan), vec![("".into(), 1, vec![0, 2])]);
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn a_peer_lacking_the_file_receives_it() {
        let plan = run(&[listing(&[]), listing(&[("", file("a", 1))]), listing(&[])]);
        assert_eq!(copies(&plan), vec![("".into(), 1, vec![0, 2])]);
    }

    #[test]
    fn missing_everywhere_is_a_problem() {
        let plan = run(&[listing(&[]), listing(&[])]);
        assert_eq!(plan.problems, vec![Problem::Missing]);
        assert!(plan.has_failures());
    }

    #[test]
    fn directories_union_and_parents_come_first() {
        let a = listing(&[
            ("", dir(1)),
            ("d", dir(1)),
            ("d/x", file("x", 1)),
            ("top", file("t", 7)),
        ]);
        let b = listing(&[("", dir(9)), ("e", dir(2)), ("e/y", file("y", 2))]);
        let plan = run(&[a, b]);
        assert_eq!(
            copies(&plan),
            vec![
                ("d".into(), 0, vec![1]),
                ("d/x".into(), 0, vec![1]),
                ("e".into(), 1, vec![0]),
                ("e/y".into(), 1, vec![0]),
                ("top".into(), 0, vec![1]),
            ]
        );
    }

    #[test]
    fn equal_mtime_different_content_is_a_conflict() {
        let plan = run(&[
            listing(&[("", file("a", 5))]),
            listing(&[("", file("b", 5))]),
            listing(&[("", file("c", 1))]),
        ]);
        assert!(
            plan.copies.is_empty(),
            "a conflict is never resolved silently"
        );
        match &plan.problems[..] {
            [Problem::Conflict { peers, .. }] => assert_eq!(peers, &vec![0, 1]),
            other => panic!("{other:?}"),
        }
        assert!(plan.has_failures());
    }

    #[test]
    fn forced_master_resolves_a_tie() {
        let ls = [
            listing(&[("", file("a", 5))]),
            listing(&[("", file("b", 5))]),
        ];
        let views: Vec<_> = ls.iter().map(Some).collect();
        let plan = decide(&views, Some(1));
        assert_eq!(copies(&plan), vec![("".into(), 1, vec![0])]);
        // Even an older version wins when forced.
        let ls = [
            listing(&[("", file("a", 9))]),
            listing(&[("", file("b", 5))]),
        ];
        let views: Vec<_> = ls.iter().map(Some).collect();
        assert_eq!(
            copies(&decide(&views, Some(1))),
            vec![("".into(), 1, vec![0])]
        );
    }

    #[test]
    fn forced_master_without_the_entry_falls_back_to_newest() {
        let ls = [
            listing(&[("", dir(1)), ("f", file("a", 9))]),
            listing(&[("", dir(1))]),
            listing(&[("", dir(1)), ("f", file("b", 5))]),
        ];
        let views: Vec<_> = ls.iter().map(Some).collect();
        assert_eq!(
            copies(&decide(&views, Some(1))),
            vec![("f".into(), 0, vec![1, 2])]
        );
    }

    #[test]
    fn file_against_directory_is_a_conflict_that_covers_the_subtree() {
        let plan = run(&[
            listing(&[("", dir(1)), ("x", file("f", 9))]),
            listing(&[("", dir(1)), ("x", dir(2)), ("x/inner", file("i", 3))]),
        ]);
        assert!(plan.copies.is_empty());
        assert!(matches!(&plan.problems[..], [Problem::Conflict { rel, .. }] if *rel == w("x")));
        // Forcing does not let a file replace a directory tree.
        let ls = [
            listing(&[("", file("f", 9))]),
            listing(&[("", dir(2)), ("inner", file("i", 3))]),
        ];
        let views: Vec<_> = ls.iter().map(Some).collect();
        let plan = decide(&views, Some(0));
        assert!(plan.copies.is_empty());
        assert_eq!(plan.problems.len(), 1);
    }

    #[test]
    fn file_against_symlink_conflicts_unless_forced() {
        let ls = [
            listing(&[("", file("f", 9))]),
            listing(&[("", link("target", 3))]),
        ];
        assert!(matches!(&run(&ls).problems[..], [Problem::Conflict { .. }]));
        let views: Vec<_> = ls.iter().map(Some).collect();
        assert_eq!(
            copies(&decide(&views, Some(1))),
            vec![("".into(), 1, vec![0])]
        );
    }

    #[test]
    fn symlinks_compare_by_target() {
        let plan = run(&[
            listing(&[("", dir(1)), ("l", link("a", 1))]),
            listing(&[("", dir(1)), ("l", link("b", 2))]),
        ]);
        assert_eq!(copies(&plan), vec![("l".into(), 1, vec![0])]);
    }

    #[test]
    fn unreadable_entries_are_left_alone_everywhere_with_their_subtree() {
        let plan = run(&[
            listing(&[("", dir(1)), ("d", Err("Permission denied".into()))]),
            listing(&[("", dir(1)), ("d", dir(5)), ("d/f", file("new", 9))]),
            listing(&[("", dir(1)), ("ok", file("o", 1))]),
        ]);
        assert_eq!(copies(&plan), vec![("ok".into(), 2, vec![0, 1])]);
        assert_eq!(
            plan.problems,
            vec![Problem::Unreadable {
                rel: w("d"),
                peer: 0,
                error: "Permission denied".into()
            }]
        );
    }

    #[test]
    fn special_files_are_skipped_without_failing() {
        let special = Ok(Meta {
            kind: Kind::Special,
            size: 0,
            mode: 0o600,
            mtime: 1,
            digest: None,
        });
        let plan = run(&[
            listing(&[("", dir(1)), ("fifo", special)]),
            listing(&[("", dir(1))]),
        ]);
        assert!(plan.copies.is_empty());
        assert!(matches!(&plan.problems[..], [Problem::Special { .. }]));
        assert!(!plan.has_failures());
    }

    #[test]
    fn unavailable_peers_are_neither_master_nor_target() {
        let a = listing(&[("", file("a", 1))]);
        let dead = listing(&[("", file("zzz", 99))]);
        let plan = decide(&[Some(&a), None, Some(&listing(&[]))], None);
        assert_eq!(copies(&plan), vec![("".into(), 0, vec![2])]);
        let _ = dead;
    }

    #[test]
    fn a_conflict_at_the_root_blocks_everything_below() {
        let plan = run(&[
            listing(&[("", dir(1)), ("f", file("x", 1))]),
            listing(&[("", link("elsewhere", 1))]),
        ]);
        assert!(plan.copies.is_empty());
        assert_eq!(plan.problems.len(), 1);
    }
}
