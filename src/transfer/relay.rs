//! Relay fan-out: which peer feeds which, and with what. A master's copies are cut into units
//! (about [`UNIT_BYTES`] of files each); a target that has received a unit feeds it on to others
//! while it receives the next, so the copies spread as a pipelined tree instead of the master's
//! link carrying one stream per target. Pure: the driver in `super` runs the transfers it hands
//! out.

use std::collections::BTreeSet;

use crate::plan::{Copy, PeerId};
use crate::proto::Kind;

/// Targets the master feeds at once: up to three targets get everything straight from it, as
/// concurrent runs (on a fast link the master's CPU, not its link, is the limit).
pub const MASTER_UPLOADS: usize = 3;
/// Transfers each relay runs at once.
pub const UPLOADS: usize = 2;
/// File bytes per unit: big enough that starting a transfer (an SSH handshake) is noise next to
/// it, small enough that relays start early.
pub const UNIT_BYTES: u64 = 64 << 20;

/// Cuts a master's copies into units, in plan order (parents first): files and symlinks in runs
/// of about [`UNIT_BYTES`]; every directory in the last unit, so its mode and time are set
/// after everything inside it has landed (rsync makes missing parents on the way).
pub fn units<'c>(copies: &[&'c Copy]) -> Vec<Vec<&'c Copy>> {
    let mut out: Vec<Vec<&Copy>> = vec![Vec::new()];
    let mut bytes = 0;
    let mut dirs = Vec::new();
    for c in copies {
        if c.meta.kind == Kind::Dir {
            dirs.push(*c);
            continue;
        }
        if bytes >= UNIT_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += c.meta.size;
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
    /// The master failed the target: it gets nothing more from this fan-out.
    GiveUp,
}

/// The schedule of one master's units to its targets.
#[derive(Debug)]
pub struct Fanout {
    master: PeerId,
    /// Per peer that takes part (the master and every target): free upload slots, whether a
    /// transfer into it runs, the units it holds, and whether it may relay.
    peers: Vec<Slot>,
    /// (unit, target, master only) still to start.
    pending: BTreeSet<(usize, PeerId, bool)>,
}

#[derive(Debug)]
struct Slot {
    peer: PeerId,
    free: usize,
    /// The unit being received, if any.
    receiving: Option<usize>,
    holds: Vec<bool>,
    relays: bool,
    given_up: bool,
}

impl Fanout {
    /// A schedule for `units` units to `targets`, all held by `master` at first.
    pub fn new(master: PeerId, targets: &[PeerId], units: usize) -> Self {
        let mut peers = vec![Slot {
            peer: master,
            free: MASTER_UPLOADS,
            receiving: None,
            holds: vec![true; units],
            relays: true,
            given_up: false,
        }];
        peers.extend(targets.iter().map(|t| Slot {
            peer: *t,
            free: UPLOADS,
            receiving: None,
            holds: vec![false; units],
            relays: true,
            given_up: false,
        }));
        let pending = (0..units)
            .flat_map(|u| targets.iter().map(move |t| (u, *t, false)))
            .collect();
        Fanout {
            master,
            peers,
            pending,
        }
    }

    fn slot(&mut self, p: PeerId) -> &mut Slot {
        self.peers
            .iter_mut()
            .find(|s| s.peer == p)
            .expect("a peer of this fan-out")
    }

    /// Peers that hold `unit` or are receiving it.
    fn spread(&self, unit: usize) -> usize {
        self.peers
            .iter()
            .filter(|s| s.holds[unit] || s.receiving == Some(unit))
            .count()
    }

    /// The next transfer that can start now. Each target receives one unit at a time; relays
    /// go before the master, the rarest unit first (counting those on their way), to the target
    /// that holds the fewest.
    pub fn start(&mut self) -> Option<Job> {
        let master = self.master;
        let mut sources: Vec<usize> = (0..self.peers.len())
            .filter(|i| self.peers[*i].free > 0 && self.peers[*i].relays)
            .collect();
        sources.sort_by_key(|i| {
            let s = &self.peers[*i];
            (s.peer == master, usize::MAX - s.free, *i)
        });
        for i in sources {
            let src = &self.peers[i];
            let best = self
                .pending
                .iter()
                .filter(|(u, t, master_only)| {
                    let to = self.peers.iter().find(|s| s.peer == *t).expect("target");
                    src.holds[*u] && to.receiving.is_none() && (!master_only || src.peer == master)
                })
                .min_by_key(|(u, t, _)| {
                    let to = self.peers.iter().find(|s| s.peer == *t).expect("target");
                    let held = to.holds.iter().filter(|h| **h).count();
                    (self.spread(*u), held, *u, *t)
                })
                .copied();
            if let Some(key @ (unit, to, _)) = best {
                self.pending.remove(&key);
                let from = self.peers[i].peer;
                self.peers[i].free -= 1;
                self.slot(to).receiving = Some(unit);
                return Some(Job { from, to, unit });
            }
        }
        None
    }

    /// A transfer ended. A target that got a unit feeds it on from now on. Where a relay
    /// failed, the target gets the unit from another source (from the master, if the relay ran
    /// and failed; a relay that could not reach its target relays no more). Where the master
    /// failed, the target is given up.
    pub fn finished(&mut self, job: Job, ended: Ended) -> Then {
        self.slot(job.from).free += 1;
        self.slot(job.to).receiving = None;
        match ended {
            Ended::Done => {
                self.slot(job.to).holds[job.unit] = true;
                Then::Go
            }
            _ if job.from != self.master => {
                if ended == Ended::Unreachable {
                    self.slot(job.from).relays = false;
                }
                let master_only = ended == Ended::Failed;
                self.pending.insert((job.unit, job.to, master_only));
                Then::Retry
            }
            _ => {
                self.pending.retain(|(_, t, _)| *t != job.to);
                let to = self.slot(job.to);
                to.given_up = true;
                to.relays = to.holds.iter().any(|h| *h);
                Then::GiveUp
            }
        }
    }

    /// Nothing is left to start (transfers may still be running).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::WirePath;
    use crate::proto::Meta;

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
    fn a_relay_that_cannot_reach_its_target_relays_no_more() {
        let r = rounds(0, &[1, 2, 3, 4, 5], 1, |j| {
            if j.from == 1 {
                Ended::Unreachable
            } else {
                Ended::Done
            }
        });
        let all: Vec<Job> = r.iter().flatten().copied().collect();
        assert_eq!(all.iter().filter(|j| j.from == 1).count(), 1, "{r:?}");
        let mut fed: Vec<PeerId> = all.iter().filter(|j| j.from != 1).map(|j| j.to).collect();
        fed.sort_unstable();
        assert_eq!(fed, [1, 2, 3, 4, 5]);
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
    fn a_target_the_master_failed_is_given_up() {
        let mut f = Fanout::new(0, &[1], 3);
        let j = f.start().unwrap();
        assert_eq!((j.from, j.to), (0, 1));
        assert_eq!(f.finished(j, Ended::Unreachable), Then::GiveUp);
        assert!(f.is_empty());
        assert_eq!(f.start(), None);
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
            },
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
