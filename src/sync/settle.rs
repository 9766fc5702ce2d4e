//! Between scan and decision: what peers sent in brief is settled, and what is not in sync
//! everywhere is fetched in full ([`plan::settle`]). A root that every peer summed up the same
//! is in sync as a whole; where the sums differ, the briefs behind them are fetched first.

use futures::future::join_all;

use crate::model::Kind;
use crate::paths::{RootSpec, WirePath};
use crate::peer::{check, OpError, Peer, RootScan, Scanned};
use crate::plan;
use crate::report::{text, Event, Reporter};

/// Settles root `root`: as a whole where every peer summed it up the same, else what every
/// peer sent in brief (fetching the briefs behind any summary first, [`plan::settle`]), and
/// fetches the rest in full, so the decision sees every entry that is not in sync everywhere.
/// A peer whose answer fails is left out of the root; one whose connection broke, out of the
/// run.
pub(super) async fn settle_root(
    peers: &[Peer],
    scans: &mut [Option<Vec<RootScan>>],
    root: usize,
    max_size: Option<u64>,
    rep: &Reporter,
) {
    settle_briefs(peers, scans, root, max_size, rep).await;
    respell(scans, root);
}

/// Where some peer's filesystem takes a name's NFC and NFD spellings for one, its names are
/// spelled as the other peers spell them ([`plan::respell`]). Every name is in full by then:
/// such a peer folds names, so nothing was settled in brief.
fn respell(scans: &mut [Option<Vec<RootScan>>], root: usize) {
    let normalizes: Vec<bool> = scans
        .iter()
        .map(|s| scanned(s, root).is_some_and(|s| s.holds.is_some_and(|h| h.normalizes)))
        .collect();
    if !normalizes.contains(&true) {
        return;
    }
    let mut views: Vec<Option<&mut plan::Listing>> = scans
        .iter_mut()
        .map(|s| scanned_mut(s, root).map(|s| &mut s.listing))
        .collect();
    for (p, from, to) in plan::respell(&mut views, &normalizes) {
        tracing::debug!(peer = p, "{from:?} is {to:?} there");
    }
}

/// What every peer sent in brief is settled, and the rest fetched (see [`settle_root`]).
async fn settle_briefs(
    peers: &[Peer],
    scans: &mut [Option<Vec<RootScan>>],
    root: usize,
    max_size: Option<u64>,
    rep: &Reporter,
) {
    if settle_summaries(scans, root, max_size) {
        return;
    }
    let mut prefetched = fetch_summed(peers, scans, root, rep).await;
    // Where a peer's filesystem takes some names for one, the decision must see every name
    // of the root at once: a name in sync everywhere may collide with a new one.
    let folds = scans.iter().any(|s| {
        scanned(s, root).is_some_and(|s| s.holds.is_some_and(|h| h.folds_case || h.normalizes))
    });
    let lone = if folds {
        None
    } else {
        settle_lone(scans, root)
    };
    let mut settled = if let Some(settled) = lone {
        settled
    } else {
        let briefs: Vec<Option<&plan::Briefs>> = scans
            .iter()
            .map(|s| scanned(s, root).map(|s| &s.briefs))
            .collect();
        if briefs.iter().flatten().all(|b| b.is_empty()) {
            return;
        }
        if folds {
            plan::settle_none(&briefs)
        } else {
            plan::settle(&briefs, max_size)
        }
    };
    if let Some(p) = lone_holder(scans, root, &settled).filter(|_| !folds) {
        // Fetched window by window as the root is carried out (see RootRun::sync_in_windows).
        if let Some(s) = scanned_mut(&mut scans[p], root) {
            s.deferred = std::mem::take(&mut settled.want[p]);
        }
    }
    // What came in full behind the briefs is not asked for again.
    for (p, full) in prefetched.iter_mut().enumerate() {
        if full.is_empty() {
            continue;
        }
        let (got, rest) = take_wanted(&settled.want[p], full);
        settled.want[p] = rest;
        if let Some(s) = scanned_mut(&mut scans[p], root) {
            s.listing.extend(got);
        }
    }
    let fetched = join_all(
        settled
            .want
            .into_iter()
            .enumerate()
            .filter(|(_, want)| !want.is_empty())
            .map(|(p, want)| async move {
                let mut listing = plan::Listing::new();
                let r = peers[p]
                    .conn
                    .lock()
                    .await
                    .detail(root as u32, want.iter().collect(), &mut listing)
                    .await;
                (p, r.map(|()| listing))
            }),
    )
    .await;
    for (p, scan) in scans.iter_mut().enumerate() {
        if let Some(s) = scanned_mut(scan, root) {
            s.briefs = plan::Briefs::default();
            s.settled = settled.held[p];
        }
    }
    for (p, r) in fetched {
        match r {
            Ok(full) => {
                if let Some(s) = scanned_mut(&mut scans[p], root) {
                    s.listing.extend(full);
                }
            }
            Err(e) => leave_out(scans, p, root, e, rep),
        }
    }
}

/// Holds every peer to the rule of a root that is a single file (no peer holds it as a
/// directory): the only entries beside it are its conflict copies, named after the client's
/// own root spec ([`check::file_root`]). A peer that sent anything else is named, with what
/// it sent, and left out of the run before anything is decided: nothing it sent is used.
pub(super) fn check_file_roots(
    peers: &[Peer],
    scans: &mut [Option<Vec<RootScan>>],
    specs: &[RootSpec],
    rep: &Reporter,
) {
    for (root, spec) in specs.iter().enumerate() {
        let is_dir = scans.iter().any(|scan| {
            scanned(scan, root).is_some_and(|s| {
                matches!(
                    s.listing.get(&WirePath::default()),
                    Some(plan::Seen { state: Ok(Some(m)), .. }) if m.kind == Kind::Dir
                )
            })
        });
        if is_dir {
            continue;
        }
        for (p, scan) in scans.iter_mut().enumerate() {
            let Some(s) = scanned_mut(scan, root) else {
                continue;
            };
            if let Err(e) = check::file_root(spec.file_name(), &mut s.listing, &s.deferred) {
                let name = &peers[p].name;
                rep.emit(Event::Failed {
                    error: format!("{name}: {e}; {name} is left out of this run"),
                });
                *scan = None;
            }
        }
    }
}

/// Bytes of paths named in a request for briefs at most (see [`changed_paths`]).
const ALSO_BYTES: usize = 64 << 10;

/// Replaces each summary of root `root` that did not settle it with the briefs behind it.
/// Where it asks, it asks for the entries other peers sent in full (their changes) too, in
/// full where that peer summed them up: settling then needs no round trip of its own for them
/// ([`take_wanted`]). Returns those, per peer.
async fn fetch_summed(
    peers: &[Peer],
    scans: &mut [Option<Vec<RootScan>>],
    root: usize,
    rep: &Reporter,
) -> Vec<plan::Listing> {
    let also = changed_paths(scans, root);
    let summed = join_all(scans.iter().enumerate().filter_map(|(p, scan)| {
        let summary = scanned(scan, root)?.summary?;
        let also = also.clone();
        Some(async move {
            let r = peers[p]
                .conn
                .lock()
                .await
                .briefs(root as u32, &summary, also)
                .await;
            (p, r)
        })
    }))
    .await;
    let mut prefetched: Vec<plan::Listing> = scans.iter().map(|_| plan::Listing::new()).collect();
    for (p, r) in summed {
        match r {
            Ok((briefs, full)) => {
                if let Some(s) = scanned_mut(&mut scans[p], root) {
                    s.briefs = briefs;
                    s.summary = None;
                    prefetched[p] = full;
                }
            }
            Err(e) => leave_out(scans, p, root, e, rep),
        }
    }
    prefetched
}

/// The paths below root `root` that some peer sent in full, the first of them up to
/// [`ALSO_BYTES`] (the rest are asked for once settled, if need be).
fn changed_paths(scans: &[Option<Vec<RootScan>>], root: usize) -> Vec<WirePath> {
    let mut paths = std::collections::BTreeSet::new();
    for s in scans.iter().filter_map(|s| scanned(s, root)) {
        paths.extend(s.listing.keys().filter(|rel| !rel.is_empty()));
    }
    // Sent to every peer that summed the root up, and worth a round trip only when small.
    let mut bytes = 0;
    paths
        .into_iter()
        .take_while(|r| {
            bytes += r.as_bytes().len() + 8;
            bytes < ALSO_BYTES
        })
        .cloned()
        .collect()
}

/// Splits `want` into the entries `full` holds (taken out of it) and the paths still to fetch.
fn take_wanted(want: &plan::Paths, full: &mut plan::Listing) -> (plan::Listing, plan::Paths) {
    let mut got = plan::Listing::new();
    let mut rest = plan::Paths::default();
    for i in 0..want.len() {
        let rel = WirePath(want.get(i).to_vec());
        match full.remove_entry(&rel) {
            Some((rel, seen)) => {
                got.insert(rel, seen);
            }
            None => rest.push(rel.as_bytes()),
        }
    }
    (got, rest)
}

fn scanned(scan: &Option<Vec<RootScan>>, root: usize) -> Option<&Scanned> {
    scan.as_ref()?[root].as_ref().ok()
}

fn scanned_mut(scan: &mut Option<Vec<RootScan>>, root: usize) -> Option<&mut Scanned> {
    scan.as_mut()?[root].as_mut().ok()
}

/// Peer `p` could not answer for root `root` while listings were compared.
fn leave_out(
    scans: &mut [Option<Vec<RootScan>>],
    p: usize,
    root: usize,
    e: OpError,
    rep: &Reporter,
) {
    match e {
        // Still in step: only this root is left out there (reported with it).
        OpError::Failed(m) | OpError::Changed(m) => {
            if let Some(s) = scans[p].as_mut() {
                s[root] = Err(text::while_comparing(&m));
            }
        }
        // The conversation broke: the peer is left out of the run.
        OpError::Lost(e) => {
            rep.emit(Event::WhileComparing {
                peer: None,
                error: format!("{e:#}"),
            });
            scans[p] = None;
        }
    }
}

/// Where every peer that scanned root `root` summed it up, and all the same: every entry
/// below it is in sync, and each peer holds what its summary counts. Not where a file is over
/// `max_size`, which the decision reports.
fn settle_summaries(
    scans: &mut [Option<Vec<RootScan>>],
    root: usize,
    max_size: Option<u64>,
) -> bool {
    let mut first = None;
    for scan in scans.iter() {
        let Some(s) = scanned(scan, root) else {
            continue;
        };
        match (s.summary, first) {
            (None, _) => return false,
            (Some(a), Some(b)) if a != b => return false,
            (Some(a), _) => first = Some(a),
        }
    }
    let Some(summary) = first else {
        return false;
    };
    if max_size.is_some_and(|m| summary.largest > m) {
        return false;
    }
    for scan in scans.iter_mut() {
        if let Some(s) = scanned_mut(scan, root) {
            s.summary = None;
            s.settled = summary.held as usize;
        }
    }
    true
}

/// Settles root `root` where one peer sent briefs and at least one other has a listing of
/// it but sent none (a first sync to peers that hold nothing), as [`plan::settle`] would:
/// all of that peer's briefs are wanted, in path order. Its paths become that list, without
/// a copy of them beside the briefs. `None` (and the briefs as they were) otherwise.
fn settle_lone(scans: &mut [Option<Vec<RootScan>>], root: usize) -> Option<plan::Settled> {
    let mut listed = 0;
    let mut holder = None;
    for (p, scan) in scans.iter().enumerate() {
        let Some(s) = scanned(scan, root) else {
            continue;
        };
        listed += 1;
        if !s.briefs.is_empty() {
            if holder.is_some() {
                return None;
            }
            holder = Some(p);
        }
    }
    let p = holder.filter(|_| listed > 1)?;
    let s = scanned_mut(&mut scans[p], root)?;
    match std::mem::take(&mut s.briefs).into_paths() {
        Ok(paths) => {
            let mut want = vec![plan::Paths::default(); scans.len()];
            want[p] = paths;
            Some(plan::Settled {
                want,
                held: vec![0; scans.len()],
                in_sync: 0,
            })
        }
        Err(briefs) => {
            s.briefs = briefs;
            None
        }
    }
}

/// The one peer that holds anything under root `root`, when every other peer that scanned it
/// holds nothing below the root and has no history there, and it sent more than a window of
/// entries, all in brief (but the root itself, always sent in full): a first sync to new
/// peers, carried out in windows.
fn lone_holder(
    scans: &[Option<Vec<RootScan>>],
    root: usize,
    settled: &plan::Settled,
) -> Option<usize> {
    let mut holder = None;
    for (p, scan) in scans.iter().enumerate() {
        let Some(scanned) = scanned(scan, root) else {
            continue;
        };
        // Anything below the root, or a root that cannot be listed (that peer stays out of
        // the whole tree, which a later window could not tell).
        let below = scanned
            .listing
            .iter()
            .any(|(rel, seen)| !rel.is_empty() || seen.state.is_err());
        if below {
            return None;
        }
        if settled.want[p].is_empty() && settled.held[p] == 0 {
            continue;
        }
        if holder.is_some() {
            return None;
        }
        holder = Some(p);
    }
    holder.filter(|p| settled.want[*p].len() > super::windows::WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::WirePath;
    use crate::peer::Scanned;
    use crate::sync::windows::WINDOW;

    fn scanned(listing: &[&str]) -> Option<Vec<RootScan>> {
        let mut s = Scanned::default();
        for rel in listing {
            s.listing.insert(
                WirePath::from(*rel),
                plan::Seen {
                    state: Ok(None),
                    vv: None,
                    changed: true,
                },
            );
        }
        Some(vec![Ok(s)])
    }

    fn settled(want: &[usize], held: &[usize]) -> plan::Settled {
        plan::Settled {
            want: want
                .iter()
                .map(|n| vec![WirePath::default(); *n].into_iter().collect())
                .collect(),
            held: held.to_vec(),
            in_sync: 0,
        }
    }

    #[test]
    fn one_peer_with_briefs_beside_empty_peers_is_settled_as_settle_would() {
        use crate::model::Brief;
        let with = |rels: &[&str]| {
            let mut s = scanned(&[""]);
            if let Some(Ok(sc)) = s.as_mut().map(|v| &mut v[0]) {
                for (i, rel) in rels.iter().enumerate() {
                    sc.briefs.push(Brief {
                        rel: WirePath::from(*rel),
                        fp: [i as u8; 16],
                        size: 1,
                        gone: false,
                    });
                }
            }
            s
        };
        let general = |scans: &[Option<Vec<RootScan>>]| {
            let briefs: Vec<_> = scans
                .iter()
                .map(|s| super::scanned(s, 0).map(|s| &s.briefs))
                .collect();
            plan::settle(&briefs, None)
        };
        // One holder, two empty peers, one left out: its paths, moved.
        let mut scans = vec![with(&["a", "a/b", "b"]), with(&[]), None, with(&[])];
        let want = general(&scans);
        assert_eq!(settle_lone(&mut scans, 0), Some(want));
        assert!(super::scanned(&scans[0], 0).unwrap().briefs.is_empty());
        // Out of path order, a second holder, or no other listing: settled the general way,
        // the briefs left as they were.
        for mut scans in [
            vec![with(&["b", "a"]), with(&[])],
            vec![with(&["a"]), with(&["a"])],
            vec![with(&["a"]), None],
        ] {
            assert_eq!(settle_lone(&mut scans, 0), None);
            assert!(!super::scanned(&scans[0], 0).unwrap().briefs.is_empty());
        }
    }

    #[test]
    fn a_root_every_peer_summed_up_the_same_is_in_sync_as_a_whole() {
        use crate::proto::Summary;
        let sum = |sum: u128, largest: u64| Summary {
            sum,
            count: 3,
            held: 2,
            largest,
        };
        let with = |summary: Option<Summary>| {
            let mut s = scanned(&[""]);
            if let Some(Ok(sc)) = s.as_mut().map(|v| &mut v[0]) {
                sc.summary = summary;
            }
            s
        };
        let failed = || Some(vec![Err("cannot scan".to_string())]);
        let settled_of = |scans: &[Option<Vec<RootScan>>]| -> Vec<Option<(usize, bool)>> {
            scans
                .iter()
                .map(|s| super::scanned(s, 0).map(|s| (s.settled, s.summary.is_some())))
                .collect()
        };
        // (peers, max_size, settles?)
        type Scans = Vec<Option<Vec<RootScan>>>;
        let cases: Vec<(Scans, Option<u64>, bool)> = vec![
            (
                vec![with(Some(sum(7, 5))), with(Some(sum(7, 5)))],
                None,
                true,
            ),
            // A peer left out of the run or failing on the root does not count.
            (vec![with(Some(sum(7, 5))), None, failed()], None, true),
            (
                vec![with(Some(sum(7, 5))), with(Some(sum(8, 5)))],
                None,
                false,
            ),
            // A peer that sent its entries (a change, or no history).
            (vec![with(Some(sum(7, 5))), with(None)], None, false),
            (vec![with(None), with(None)], None, false),
            (vec![None, failed()], None, false),
            // A file over --max-size is the decision's to report.
            (
                vec![with(Some(sum(7, 5))), with(Some(sum(7, 5)))],
                Some(5),
                true,
            ),
            (
                vec![with(Some(sum(7, 5))), with(Some(sum(7, 5)))],
                Some(4),
                false,
            ),
        ];
        for (i, (mut scans, max, settles)) in cases.into_iter().enumerate() {
            let before = settled_of(&scans);
            assert_eq!(settle_summaries(&mut scans, 0, max), settles, "case {i}");
            let after = settled_of(&scans);
            if settles {
                // Every peer holds what the summary counts; the summaries are used up.
                assert!(after.iter().flatten().all(|s| *s == (2, false)), "case {i}");
            } else {
                assert_eq!(after, before, "case {i}: untouched");
            }
        }
    }

    #[test]
    fn only_a_big_first_sync_from_one_peer_to_peers_holding_nothing_goes_in_windows() {
        let big = WINDOW + 1;
        let empty = || scanned(&[]);
        // One holder, everyone else empty (a root that exists as a bare directory counts).
        let scans = vec![scanned(&[""]), empty(), scanned(&[""]), None];
        assert_eq!(
            lone_holder(&scans, 0, &settled(&[big, 0, 0, 0], &[0; 4])),
            Some(0)
        );
        let scans = vec![empty(), scanned(&[""]), empty()];
        assert_eq!(
            lone_holder(&scans, 0, &settled(&[0, big, 0], &[0; 3])),
            Some(1)
        );
        // Not big enough to bother.
        let scans = vec![empty(), empty()];
        assert_eq!(
            lone_holder(&scans, 0, &settled(&[WINDOW, 0], &[0; 2])),
            None
        );
        // Another peer holds something, in brief, in full or settled.
        assert_eq!(lone_holder(&scans, 0, &settled(&[big, 1], &[0; 2])), None);
        assert_eq!(lone_holder(&scans, 0, &settled(&[big, 0], &[0, 3])), None);
        let scans = vec![empty(), scanned(&["", "gone"])];
        assert_eq!(lone_holder(&scans, 0, &settled(&[big, 0], &[0; 2])), None);
        // A peer whose root cannot be listed is left out of the whole tree: no windows.
        let mut unreadable = scanned(&[""]);
        if let Some(Ok(s)) = unreadable.as_mut().map(|v| &mut v[0]) {
            s.listing
                .values_mut()
                .for_each(|seen| seen.state = Err("denied".into()));
        }
        let scans = vec![empty(), unreadable];
        assert_eq!(lone_holder(&scans, 0, &settled(&[big, 0], &[0; 2])), None);
        // The holder itself sent something in full: a change to judge against history.
        let scans = vec![scanned(&["x"]), empty()];
        assert_eq!(lone_holder(&scans, 0, &settled(&[big, 0], &[0; 2])), None);
    }
}
