//! Relay fan-out: which peer feeds which. A target that has received a master's copies feeds
//! others in turn, so the copies spread as a tree instead of the master's link carrying one
//! stream per target. Pure: the driver in `super` runs the transfers it hands out.

use std::collections::VecDeque;

use crate::plan::PeerId;

/// Targets the master feeds at once: up to three targets get everything straight from it, as
/// concurrent runs (on a fast link the master's CPU, not its link, is the limit).
pub const MASTER_UPLOADS: usize = 3;
/// Targets each relay feeds at once: from the fourth target on, copies spread as a tree, so no
/// one link carries the whole fan-out.
pub const UPLOADS: usize = 2;

/// The schedule of one master's copies to its targets.
#[derive(Debug)]
pub struct Fanout {
    master: PeerId,
    /// Sources with their free upload slots: the master first, then targets that hold the
    /// copies, in the order they got them.
    sources: Vec<(PeerId, usize)>,
    /// Targets still to feed; `true`: only from the master (a relay failed them).
    pending: VecDeque<(PeerId, bool)>,
}

impl Fanout {
    /// A schedule for `targets`, all fed from `master` at first.
    pub fn new(master: PeerId, targets: &[PeerId]) -> Self {
        Fanout {
            master,
            sources: vec![(master, MASTER_UPLOADS)],
            pending: targets.iter().map(|t| (*t, false)).collect(),
        }
    }

    /// The next transfer that can start now, as (source, target). Relays go first, each the
    /// one with the most free slots, to spare the master's link.
    pub fn start(&mut self) -> Option<(PeerId, PeerId)> {
        let master = self.master;
        for k in 0..self.pending.len() {
            let (t, master_only) = self.pending[k];
            let pick = self
                .sources
                .iter()
                .enumerate()
                .filter(|(_, (s, free))| *free > 0 && (!master_only || *s == master))
                .max_by_key(|(i, (s, free))| (*s != master, *free, usize::MAX - i))
                .map(|(i, _)| i);
            if let Some(i) = pick {
                self.sources[i].1 -= 1;
                self.pending.remove(k);
                return Some((self.sources[i].0, t));
            }
        }
        None
    }

    /// A transfer ended. A target that got the copies feeds others from now on; one a relay
    /// failed is fed again from the master (`true` returned: it is not done with yet).
    pub fn finished(&mut self, source: PeerId, target: PeerId, ok: bool) -> bool {
        if let Some(s) = self.sources.iter_mut().find(|(p, _)| *p == source) {
            s.1 += 1;
        }
        if ok {
            self.sources.push((target, UPLOADS));
            false
        } else if source != self.master {
            self.pending.push_back((target, true));
            true
        } else {
            false
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

    /// Runs a schedule in rounds where every started transfer ends together, `ok` deciding
    /// each outcome; returns the rounds, each a list of (source, target).
    fn rounds(
        master: PeerId,
        targets: &[PeerId],
        ok: impl Fn(PeerId, PeerId) -> bool,
    ) -> Vec<Vec<(PeerId, PeerId)>> {
        let mut f = Fanout::new(master, targets);
        let mut out = Vec::new();
        while !f.is_empty() {
            let mut round = Vec::new();
            while let Some(x) = f.start() {
                round.push(x);
            }
            assert!(!round.is_empty(), "stalled with work pending: {f:?}");
            for &(s, t) in &round {
                f.finished(s, t, ok(s, t));
            }
            out.push(round);
        }
        out
    }

    #[test]
    fn eight_targets_spread_as_a_tree_in_two_rounds() {
        let r = rounds(0, &[1, 2, 3, 4, 5, 6, 7, 8], |_, _| true);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0], [(0, 1), (0, 2), (0, 3)]);
        // Then the three relays feed the other five, sparing the master.
        let from_master = r[1].iter().filter(|(s, _)| *s == 0).count();
        assert_eq!((r[1].len(), from_master), (5, 0), "{r:?}");
        for s in [1, 2, 3] {
            assert!(r[1].iter().filter(|(x, _)| *x == s).count() <= UPLOADS);
        }
        let mut fed: Vec<PeerId> = r.iter().flatten().map(|(_, t)| *t).collect();
        fed.sort_unstable();
        assert_eq!(fed, [1, 2, 3, 4, 5, 6, 7, 8], "each target fed once");
    }

    #[test]
    fn up_to_three_targets_are_fed_by_the_master_at_once() {
        assert_eq!(rounds(3, &[1, 2], |_, _| true), [[(3, 1), (3, 2)]]);
        assert_eq!(
            rounds(0, &[1, 2, 3], |_, _| true),
            [[(0, 1), (0, 2), (0, 3)]]
        );
        // A fourth comes from a relay, never from the busy master.
        assert_eq!(rounds(0, &[1, 2, 3, 4], |_, _| true)[1], [(1, 4)]);
    }

    #[test]
    fn a_target_a_relay_failed_is_fed_from_the_master() {
        // Peer 1 cannot reach anyone itself.
        let r = rounds(0, &[1, 2, 3, 4], |s, _| s != 1);
        assert_eq!(
            r,
            [vec![(0, 1), (0, 2), (0, 3)], vec![(1, 4)], vec![(0, 4)]]
        );
    }

    #[test]
    fn a_target_the_master_failed_is_given_up() {
        let mut f = Fanout::new(0, &[1]);
        assert_eq!(f.start(), Some((0, 1)));
        assert!(!f.finished(0, 1, false));
        assert!(f.is_empty());
        assert_eq!(f.start(), None);
    }
}
