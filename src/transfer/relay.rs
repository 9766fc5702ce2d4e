//! Relay fan-out: which peer feeds which, and with what. A master's copies are cut into units
//! (about [`UNIT_BYTES`] of files each); a target that has received a unit feeds it on to others
//! while it receives the next, so the copies spread as a pipelined tree instead of the master's
//! link carrying one stream per target. Pure: the driver in `super` runs the transfers it hands
//! out.

use std::collections::BTreeSet;

use crate::model::Kind;
use crate::plan::{Copy, PeerId};

/// Targets the master feeds at once: up to three targets get everything straight from it, as
/// concurrent runs (on a fast link the master's CPU, not its link, is the limit).
pub const MASTER_UPLOADS: usize = 3;
/// Transfers each relay runs at once.
pub const UPLOADS: usize = 2;
/// File bytes per unit at least: big enough that starting a transfer (an SSH handshake) is
/// noise next to it, small enough that relays start early.
pub const UNIT_BYTES: u64 = 64 << 20;
/// Units at most: a bigger transfer gets bigger units, so scheduling stays cheap.
pub const MAX_UNITS: u64 = 64;

/// Cuts a master's copies into units, in plan order (parents first): files and symlinks in runs
/// of about [`UNIT_BYTES`] (more for a transfer over [`MAX_UNITS`] of them); the directories go
/// with the last unit (rsync makes missing parents on the way, and sets each directory's mode
/// and time from the master's in every run that passes through it).
pub fn units<'c>(copies: &[&'c Copy]) -> Vec<Vec<&'c Copy>> {
    // Sizes come from a peer: summed without overflow, however big it says they are.
    let total = copies
        .iter()
        .filter(|c| c.meta.kind != Kind::Dir)
        .map(|c| c.meta.size)
        .fold(0u64, u64::saturating_add);
    let per = UNIT_BYTES.max(total.div_ceil(MAX_UNITS));
    let mut out: Vec<Vec<&Copy>> = vec![Vec::new()];
    let mut bytes = 0;
    let mut dirs = Vec::new();
    for c in copies {
        if c.meta.kind == Kind::Dir {
            dirs.push(*c);
            continue;
        }
        if bytes >= per {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes = c.meta.size.saturating_add(bytes);
        out.last_mut().expect("one unit at least").push(*c);
    }
    out.last_mut().expect("one unit at least").extend(dirs);
    out
}

/// One transfer: unit `unit` from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The master or a relay holding the unit.
    pub from: PeerId,
    /// The target.
    pub to: PeerId,
    /// Index into [`units`].
    pub unit: usize,
}

/// How a transfer ended, as far as the schedule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The target has the unit.
    Done,
    /// The source could not reach the target at all.
    Unreachable,
    /// It ran and failed.
    Failed,
}

/// What the driver does after a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Nothing: the target has the unit.
    Go,
    /// A relay failed; the target gets the unit from elsewhere.
    Retry,
    /// The master's run failed (a file it could not read or the target could not write): the
    /// target goes without this unit and gets the others.
    Failed,
    /// The master cannot reach the target: it gets nothing more from this fan-out.
    GiveUp,
}

/// (relay, target) pairs where the relay could not connect to the target, learned during one
/// run: later fan-outs of the run (other roots, other windows, other masters) do not try them
/// again, each try being an SSH handshake that fails.
pub type NoRoute = std::sync::Mutex<BTreeSet<(PeerId, PeerId)>>;

/// The schedule of one master's units to its targets.
#[derive(Debug)]
pub struct Fanout {
    /// The master first, then the targets.
    peers: Vec<Slot>,
    /// Per unit, the peers that hold it or are receiving it.
    spread: Vec<usize>,
    /// (source, target) slot pairs where the source could not reach the target.
    unreachable: BTreeSet<(usize, usize)>,
}

#[derive(Debug)]
struct Slot {
    peer: PeerId,
    /// Upload slots free.
    free: usize,
    /// The unit being received, if any.
    receiving: Option<usize>,
    holds: Vec<bool>,
    held: usize,
    /// Units still to start here, each with whether only the master may send it.
    pending: std::collections::BTreeMap<usize, bool>,
}

impl Fanout {
    /// A schedule for `units` units to `targets`, all held by `master` at first.
    pub fn new(master: PeerId, targets: &[PeerId], units: usize) -> Self {
        let mut peers = vec![Slot {
            peer: master,
            free: MASTER_UPLOADS,
            receiving: None,
            holds: vec![true; units],
            held: units,
            pending: Default::default(),
        }];
        peers.extend(targets.iter().map(|t| Slot {
            peer: *t,
            free: UPLOADS,
            receiving: None,
            holds: vec![false; units],
            held: 0,
            pending: (0..units).map(|u| (u, false)).collect(),
        }));
        Fanout {
            peers,
            spread: vec![1; units],
            unreachable: BTreeSet::new(),
        }
    }

    /// This schedule, told of (relay, target) pairs known not to connect: they are never
    /// scheduled. The master's own pairs are not taken from it (it is tried, and a target it
    /// cannot reach is streamed through the client).
    pub fn knowing(mut self, no_route: impl IntoIterator<Item = (PeerId, PeerId)>) -> Self {
        let known: Vec<(usize, usize)> = no_route
            .into_iter()
            .filter_map(|(a, b)| Some((self.find_slot(a)?, self.find_slot(b)?)))
            .filter(|(a, _)| *a != 0)
            .collect();
        self.unreachable.extend(known);
        self
    }

    /// The (relay, target) pairs this schedule knows not to connect: those it was told of and
    /// those it learned, for the fan-outs after it.
    pub fn no_route(&self) -> impl Iterator<Item = (PeerId, PeerId)> + '_ {
        self.unreachable
            .iter()
            .map(|&(a, b)| (self.peers[a].peer, self.peers[b].peer))
    }

    fn find_slot(&self, p: PeerId) -> Option<usize> {
        self.peers.iter().position(|s| s.peer == p)
    }

    fn slot_of(&self, p: PeerId) -> usize {
        self.find_slot(p).expect("a peer of this fan-out")
    }

    /// The next transfer that can start now. Each target receives one unit at a time; relays
    /// go before the master, the rarest unit first (counting those on their way), to the target
    /// that holds the fewest.
    pub fn start(&mut self) -> Option<Job> {
        let mut sources: Vec<usize> = (0..self.peers.len())
            .filter(|i| self.peers[*i].free > 0 && self.peers[*i].held > 0)
            .collect();
        sources.sort_by_key(|i| (*i == 0, usize::MAX - self.peers[*i].free, *i));
        for src in sources {
            // (spread of the unit, units the target holds, unit, target): the least wins.
            let mut best: Option<(usize, usize, usize, usize)> = None;
            for (k, to) in self.peers.iter().enumerate().skip(1) {
                if k == src || to.receiving.is_some() || self.unreachable.contains(&(src, k)) {
                    continue;
                }
                for (&u, &master_only) in &to.pending {
                    if !self.peers[src].holds[u] || (master_only && src != 0) {
                        continue;
                    }
                    let key = (self.spread[u], to.held, u, k);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
            }
            if let Some((_, _, unit, k)) = best {
                self.peers[k].pending.remove(&unit);
                self.peers[k].receiving = Some(unit);
                self.peers[src].free -= 1;
                self.spread[unit] += 1;
                return Some(Job {
                    from: self.peers[src].peer,
                    to: self.peers[k].peer,
                    unit,
                });
            }
        }
        None
    }

    /// A transfer ended. A target that got a unit feeds it on from now on. Where a relay
    /// failed, the target gets the unit from another source (from the master, if the relay ran
    /// and failed; a relay that could not reach the target is not asked for it again). Where
    /// the master's run failed the target goes without that unit; where the master could not
    /// reach it, without the rest.
    pub fn finished(&mut self, job: Job, ended: Ended) -> Then {
        let (src, k) = (self.slot_of(job.from), self.slot_of(job.to));
        self.peers[src].free += 1;
        self.peers[k].receiving = None;
        if ended == Ended::Done {
            let to = &mut self.peers[k];
            to.holds[job.unit] = true;
            to.held += 1;
            return Then::Go;
        }
        self.spread[job.unit] -= 1;
        match (src, ended) {
            (0, Ended::Unreachable) => {
                self.peers[k].pending.clear();
                Then::GiveUp
            }
            (0, _) => Then::Failed,
            (_, Ended::Unreachable) => {
                self.unreachable.insert((src, k));
                self.peers[k].pending.insert(job.unit, false);
                Then::Retry
            }
            _ => {
                self.peers[k].pending.insert(job.unit, true);
                Then::Retry
            }
        }
    }

    /// Nothing is left to start (transfers may still be running). The driver needs no such
    /// test: it stops when nothing starts and nothing runs.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.peers.iter().all(|s| s.pending.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Meta;
    use crate::paths::WirePath;

    /// Runs a schedule in rounds where every started transfer ends together, `ended` deciding
    /// each outcome; returns the rounds.
    fn rounds(
        master: PeerId,
        targets: &[PeerId],
        units: usize,
        ended: impl Fn(&Job) -> Ended,
    ) -> Vec<Vec<Job>> {
        let mut f = Fanout::new(master, targets, units);
        let mut out = Vec::new();
        while !f.is_empty() {
            let mut round = Vec::new();
            while let Some(j) = f.start() {
                round.push(j);
            }
            assert!(!round.is_empty(), "stalled with work pending: {f:?}");
            for j in &round {
                f.finished(*j, ended(j));
            }
            out.push(round);
        }
        out
    }

    fn pairs(r: &[Job]) -> Vec<(PeerId, PeerId)> {
        r.iter().map(|j| (j.from, j.to)).collect()
    }

    #[test]
    fn sizes_a_peer_made_up_cut_into_units_without_overflow() {
        let all = [
            copy("a", Kind::File, u64::MAX),
            copy("b", Kind::File, u64::MAX),
            copy("c", Kind::File, 1),
        ];
        let refs: Vec<&Copy> = all.iter().collect();
        let got = units(&refs);
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 3, "{got:?}");
    }

    #[test]
    fn one_unit_to_eight_targets_spreads_as_a_tree() {
        let r = rounds(0, &[1, 2, 3, 4, 5, 6, 7, 8], 1, |_| Ended::Done);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(pairs(&r[0]), [(0, 1), (0, 2), (0, 3)]);
        // Then the three relays feed the other five, sparing the master.
        assert_eq!(r[1].len(), 5);
        assert!(r[1].iter().all(|j| j.from != 0), "{r:?}");
        for s in [1, 2, 3] {
            assert!(r[1].iter().filter(|j| j.from == s).count() <= UPLOADS);
        }
    }

    #[test]
    fn many_units_pipeline_so_eight_targets_cost_little_more_than_one() {
        // Every target takes one unit per round: 16 rounds is the floor for 16 units.
        let targets = [1, 2, 3, 4, 5, 6, 7, 8];
        let r = rounds(0, &targets, 16, |_| Ended::Done);
        assert!(r.len() <= 19, "{} rounds", r.len());
        let mut got: Vec<(PeerId, usize)> = r.iter().flatten().map(|j| (j.to, j.unit)).collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 8 * 16, "every target gets every unit once");
        // No source ever runs more than its slots, no target receives two at once.
        for round in &r {
            for p in 0..=8 {
                let up = round.iter().filter(|j| j.from == p).count();
                assert!(up <= if p == 0 { MASTER_UPLOADS } else { UPLOADS });
                assert!(round.iter().filter(|j| j.to == p).count() <= 1);
            }
        }
        // The master sends a fraction of the 128 transfers.
        let from_master = r.iter().flatten().filter(|j| j.from == 0).count();
        assert!(from_master <= 40, "{from_master} from the master");
    }

    #[test]
    fn targets_start_on_different_units_so_they_can_trade() {
        let r = rounds(0, &[1, 2, 3], 4, |_| Ended::Done);
        let units: Vec<usize> = r[0].iter().map(|j| j.unit).collect();
        assert_eq!(units, [0, 1, 2]);
        // The next round the targets pass their units to each other.
        assert!(r[1].iter().any(|j| j.from != 0), "{r:?}");
    }

    #[test]
    fn up_to_three_targets_are_fed_by_the_master_at_once() {
        let r = rounds(3, &[1, 2], 1, |_| Ended::Done);
        assert_eq!(
            r.iter().map(|x| pairs(x)).collect::<Vec<_>>(),
            [[(3, 1), (3, 2)]]
        );
        let r = rounds(0, &[1, 2, 3, 4], 1, |_| Ended::Done);
        assert_eq!(pairs(&r[1]), [(1, 4)], "a fourth comes from a relay");
    }

    #[test]
    fn a_relay_is_not_asked_again_for_a_target_it_cannot_reach() {
        // 1 cannot reach 4 (a target only the master reaches); it still feeds others.
        let r = rounds(0, &[1, 2, 3, 4, 5], 2, |j| {
            if (j.from, j.to) == (1, 4) {
                Ended::Unreachable
            } else {
                Ended::Done
            }
        });
        let all: Vec<Job> = r.iter().flatten().copied().collect();
        let tried = all.iter().filter(|j| (j.from, j.to) == (1, 4)).count();
        assert!(tried <= 1, "{r:?}");
        assert!(all.iter().any(|j| j.from == 1 && j.to != 4), "{r:?}");
        let mut fed: Vec<(PeerId, usize)> = all
            .iter()
            .filter(|j| (j.from, j.to) != (1, 4))
            .map(|j| (j.to, j.unit))
            .collect();
        fed.sort_unstable();
        fed.dedup();
        assert_eq!(fed.len(), 5 * 2, "every target gets every unit: {r:?}");
    }

    #[test]
    fn pairs_known_not_to_connect_are_never_tried() {
        // From an earlier fan-out of the run: 1 cannot reach 4, 2 cannot reach 1, and the
        // master 0 once could not reach 3 as a relay (still tried as the master here).
        let mut f = Fanout::new(0, &[1, 2, 3, 4], 2).knowing([(1, 4), (2, 1), (0, 3), (9, 1)]);
        let mut all = Vec::new();
        while !f.is_empty() {
            let round: Vec<Job> = std::iter::from_fn(|| f.start()).collect();
            assert!(!round.is_empty(), "stalled: {f:?}");
            for j in &round {
                f.finished(*j, Ended::Done);
            }
            all.extend(round);
        }
        assert!(
            !all.iter()
                .any(|j| matches!((j.from, j.to), (1, 4) | (2, 1))),
            "{all:?}"
        );
        assert!(all.iter().any(|j| (j.from, j.to) == (0, 3)), "{all:?}");
        // What it knew is handed on; a pair it learns joins it.
        let mut f = Fanout::new(0, &[1, 2, 3, 4], 1).knowing([(1, 4)]);
        let relay = loop {
            let j = f.start().unwrap();
            f.finished(j, Ended::Done);
            if let Some(j) = f.start().filter(|j| j.from != 0) {
                break j;
            }
        };
        f.finished(relay, Ended::Unreachable);
        let known: Vec<_> = f.no_route().collect();
        assert!(
            known.contains(&(1, 4)) && known.contains(&(relay.from, relay.to)),
            "{known:?}"
        );
        let mut fed: Vec<(PeerId, usize)> = all.iter().map(|j| (j.to, j.unit)).collect();
        fed.sort_unstable();
        fed.dedup();
        assert_eq!(fed.len(), 4 * 2, "every target gets every unit: {all:?}");
    }

    #[test]
    fn a_relay_run_that_failed_is_retried_from_the_master() {
        let r = rounds(0, &[1, 2, 3, 4], 1, |j| {
            if j.from == 1 {
                Ended::Failed
            } else {
                Ended::Done
            }
        });
        assert_eq!(pairs(&r[1]), [(1, 4)]);
        assert_eq!(pairs(&r[2]), [(0, 4)]);
    }

    #[test]
    fn a_target_the_master_cannot_reach_is_given_up_one_it_failed_is_not() {
        let mut f = Fanout::new(0, &[1], 3);
        let j = f.start().unwrap();
        assert_eq!((j.from, j.to), (0, 1));
        assert_eq!(f.finished(j, Ended::Unreachable), Then::GiveUp);
        assert!(f.is_empty());
        assert_eq!(f.start(), None);
        // A run that failed (one file it could not write) costs that unit, not the others.
        let mut f = Fanout::new(0, &[1], 3);
        let j = f.start().unwrap();
        assert_eq!(f.finished(j, Ended::Failed), Then::Failed);
        let mut rest = Vec::new();
        while let Some(j) = f.start() {
            rest.push(j.unit);
            f.finished(j, Ended::Done);
        }
        assert_eq!(rest.len(), 2);
        assert!(!rest.contains(&j.unit));
    }

    #[test]
    fn a_huge_transfer_is_cut_into_at_most_max_units() {
        let files: Vec<Copy> = (0..1000)
            .map(|i| copy(&format!("f{i}"), Kind::File, 1 << 30))
            .collect();
        let refs: Vec<&Copy> = files.iter().collect();
        let u = units(&refs);
        assert!(u.len() as u64 <= MAX_UNITS + 1, "{} units", u.len());
        assert_eq!(u.iter().map(Vec::len).sum::<usize>(), 1000);
    }

    fn copy(rel: &str, kind: Kind, size: u64) -> Copy {
        Copy {
            rel: WirePath(rel.as_bytes().to_vec()),
            master: 0,
            targets: vec![1],
            meta: Meta {
                kind,
                size,
                mode: 0o644,
                mtime: 0,
                digest: None,
                extra: Default::default(),
            },
            source: None,
        }
    }

    #[test]
    fn units_hold_about_unit_bytes_with_directories_last() {
        let d = copy("d", Kind::Dir, 0);
        let big = copy("d/big", Kind::File, UNIT_BYTES);
        let a = copy("d/a", Kind::File, 10);
        let b = copy("d/b", Kind::File, 10);
        let all = [&d, &big, &a, &b];
        let u = units(&all);
        let names: Vec<Vec<String>> = u
            .iter()
            .map(|u| u.iter().map(|c| c.rel.to_string()).collect())
            .collect();
        assert_eq!(names, [vec!["d/big"], vec!["d/a", "d/b", "d"]]);
        assert_eq!(units(&[&a, &b]).len(), 1);
        assert_eq!(units(&[&d]).len(), 1);
    }
}
