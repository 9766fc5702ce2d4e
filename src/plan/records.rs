//! The records a plan gives each peer's state, each kept once however many peers take it.
//!
//! On a first sync every peer takes the same record for every entry; one copy per peer made
//! records the largest part of a plan.

use crate::model::Record;

use super::PeerId;

/// Per peer, the records its state takes when the run is over, in the order they were given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Records {
    /// Each record with the peers that take it.
    shared: Vec<(Record, Vec<PeerId>)>,
}

impl Records {
    /// Gives `peer` the record `r` (sharing it with the peers given the same one just before).
    pub fn push(&mut self, peer: PeerId, r: Record) {
        match self.shared.last_mut() {
            Some((last, peers)) if *last == r && !peers.contains(&peer) => peers.push(peer),
            _ => self.shared.push((r, vec![peer])),
        }
    }

    /// Changes the record `peer` takes for `rel` (if any) by `f`, for that peer alone.
    pub fn amend(
        &mut self,
        peer: PeerId,
        rel: &crate::paths::WirePath,
        f: impl FnOnce(&mut Record),
    ) {
        let Some(i) = self
            .shared
            .iter()
            .rposition(|(r, peers)| r.rel == *rel && peers.contains(&peer))
        else {
            return;
        };
        let mut mine = self.shared[i].0.clone();
        f(&mut mine);
        if self.shared[i].1.len() == 1 {
            self.shared[i].0 = mine;
        } else {
            self.shared[i].1.retain(|p| *p != peer);
            self.shared.insert(i + 1, (mine, vec![peer]));
        }
    }

    /// The records `peer` takes, in order.
    pub fn of(&self, peer: PeerId) -> impl Iterator<Item = &Record> {
        self.shared
            .iter()
            .filter(move |(_, peers)| peers.contains(&peer))
            .map(|(r, _)| r)
    }

    /// Every record with the peers that take it.
    pub fn all(&self) -> impl Iterator<Item = (&Record, &[PeerId])> {
        self.shared.iter().map(|(r, p)| (r, p.as_slice()))
    }

    /// No peer takes any record.
    pub fn is_empty(&self) -> bool {
        self.shared.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vv;
    use crate::paths::WirePath;

    fn rec(rel: &str) -> Record {
        Record {
            rel: WirePath(rel.as_bytes().to_vec()),
            meta: None,
            vv: Vv::default(),
        }
    }

    #[test]
    fn each_peer_sees_its_own_records_in_order_and_equal_ones_are_kept_once() {
        let mut r = Records::default();
        assert!(r.is_empty());
        r.push(0, rec("a"));
        r.push(2, rec("a"));
        r.push(2, rec("b"));
        r.push(1, rec("c"));
        r.push(1, rec("c"));
        r.push(0, rec("c"));
        let of = |p| r.of(p).map(|x| x.rel.to_string()).collect::<Vec<_>>();
        assert_eq!(of(0), ["a", "c"]);
        assert_eq!(of(1), ["c", "c"]);
        assert_eq!(of(2), ["a", "b"]);
        assert!(of(3).is_empty());
        assert_eq!(
            r.all().count(),
            4,
            "a once for two peers; c twice for peer 1"
        );
    }
}
