//! Settling what is in sync before the decision. Peers report entries unchanged since the last
//! sync in brief (path and fingerprint); a path whose brief every peer sent with the same
//! fingerprint is in sync and needs nothing. Only the other briefs are asked for in full, so the
//! client never holds every peer's full listing of a tree that is mostly in sync.

use crate::model::Brief;
use crate::paths::WirePath;

/// Where a path ends in a buffer of paths. Four bytes, not eight: what a peer sends for one
/// root is held to a budget far below 4 GiB (`peer::check::HOLD_LIMIT`, which asserts so
/// where it is set).
fn end_of(buffer: &[u8]) -> u32 {
    u32::try_from(buffer.len()).expect("a peer's paths for one root are held to well below 4 GiB")
}

/// One peer's briefs for one root, packed: the paths back to back in one buffer, the rest in
/// columns (a few dozen bytes an entry, against a few hundred for a full entry in a map).
#[derive(Debug, Default)]
pub struct Briefs {
    names: Vec<u8>,
    ends: Vec<u32>,
    fps: Vec<[u8; 16]>,
    sizes: Vec<u64>,
    gone: Vec<bool>,
}

impl Briefs {
    /// Adds one brief.
    pub fn push(&mut self, b: Brief) {
        self.names.extend_from_slice(b.rel.as_bytes());
        self.ends.push(end_of(&self.names));
        self.fps.push(b.fp);
        self.sizes.push(b.size);
        self.gone.push(b.gone);
    }

    /// How many briefs there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No briefs at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The path of brief `i`.
    pub fn rel(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.names[start..self.ends[i] as usize]
    }

    /// The paths alone, where they came in strictly increasing path order (as a serve walks):
    /// what [`settle`] wants of the one peer that sent briefs where the others sent none, and
    /// in that order, without a copy of a million paths beside the briefs. Otherwise the
    /// briefs back.
    pub fn into_paths(self) -> Result<Paths, Briefs> {
        let ordered = (1..self.len()).all(|i| self.rel(i - 1) < self.rel(i));
        if !ordered {
            return Err(self);
        }
        Ok(Paths {
            bytes: self.names,
            ends: self.ends,
        })
    }

    /// Brief indices in path order.
    fn sorted(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.rel(*a as usize).cmp(self.rel(*b as usize)));
        order
    }
}

/// Paths kept one after another in one buffer: a million cost their bytes and a word each,
/// not a [`WirePath`] apiece (the paths a first sync fetches window by window).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Paths {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Paths {
    /// Adds a path after the others.
    pub fn push(&mut self, rel: &[u8]) {
        self.bytes.extend_from_slice(rel);
        self.ends.push(end_of(&self.bytes));
    }

    /// How many paths there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No paths at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th path.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Paths `from..to` (as far as there are), each a [`WirePath`] of its own.
    pub fn slice(&self, from: usize, to: usize) -> Vec<WirePath> {
        (from..to.min(self.len()))
            .map(|i| WirePath(self.get(i).to_vec()))
            .collect()
    }

    /// Every path, in order.
    pub fn iter(&self) -> impl Iterator<Item = WirePath> + '_ {
        (0..self.len()).map(|i| WirePath(self.get(i).to_vec()))
    }
}

impl FromIterator<WirePath> for Paths {
    fn from_iter<I: IntoIterator<Item = WirePath>>(iter: I) -> Self {
        let mut p = Paths::default();
        for rel in iter {
            p.push(rel.as_bytes());
        }
        p
    }
}

/// What settling found for one root.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Per peer: the paths it sent in brief that the decision needs in full.
    pub want: Vec<Paths>,
    /// Per peer: entries it holds now that are in sync on every peer (not in its view, but
    /// counted by the empty-root check).
    pub held: Vec<usize>,
    /// Paths found in sync on every peer.
    pub in_sync: usize,
}

/// Settles nothing: every brief of every peer is wanted in full (where the decision must see
/// every name, [`super::names`]).
pub fn settle_none(briefs: &[Option<&Briefs>]) -> Settled {
    Settled {
        want: briefs
            .iter()
            .map(|b| {
                let mut want = Paths::default();
                for i in 0..b.map_or(0, Briefs::len) {
                    want.push(b.expect("briefs where there are some").rel(i));
                }
                want
            })
            .collect(),
        held: vec![0; briefs.len()],
        in_sync: 0,
    }
}

/// Settles the paths every peer (each `Some` in `briefs`, in peer order) sent in brief with the
/// same fingerprint; every other brief is wanted in full. With `max_size`, a file over it is
/// never settled here, so the decision still reports it.
pub fn settle(briefs: &[Option<&Briefs>], max_size: Option<u64>) -> Settled {
    let n = briefs.len();
    let mut out = Settled {
        want: vec![Paths::default(); n],
        held: vec![0; n],
        in_sync: 0,
    };
    let peers: Vec<(usize, &Briefs, Vec<u32>)> = briefs
        .iter()
        .enumerate()
        .filter_map(|(p, b)| b.map(|b| (p, b, b.sorted())))
        .collect();
    let mut at = vec![0usize; peers.len()];
    let head = |k: usize, at: &[usize]| -> Option<(usize, &[u8])> {
        let (_, b, order) = &peers[k];
        order.get(at[k]).map(|i| (*i as usize, b.rel(*i as usize)))
    };
    let mut here: Vec<(usize, usize)> = Vec::with_capacity(peers.len());
    while let Some(min) = (0..peers.len())
        .filter_map(|k| head(k, &at).map(|(_, rel)| rel))
        .min()
    {
        here.clear();
        for k in 0..peers.len() {
            if let Some((i, rel)) = head(k, &at) {
                if rel == min {
                    here.push((k, i));
                }
            }
        }
        let fp = |&(k, i): &(usize, usize)| peers[k].1.fps[i];
        let too_big = |&(k, i): &(usize, usize)| {
            max_size.is_some_and(|m| !peers[k].1.gone[i] && peers[k].1.sizes[i] > m)
        };
        let settled = here.len() == peers.len()
            && here.iter().all(|h| fp(h) == fp(&here[0]))
            && !here.iter().any(too_big);
        if settled {
            out.in_sync += 1;
        }
        for &(k, i) in &here {
            let (p, b, _) = &peers[k];
            if settled {
                out.held[*p] += usize::from(!b.gone[i]);
            } else {
                out.want[*p].push(min);
            }
            at[k] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn briefs(list: &[(&str, u8, bool)]) -> Briefs {
        let mut b = Briefs::default();
        for (rel, fp, gone) in list {
            b.push(Brief {
                rel: WirePath(rel.as_bytes().to_vec()),
                fp: [*fp; 16],
                size: if *gone { 0 } else { 10 * u64::from(*fp) },
                gone: *gone,
            });
        }
        b
    }

    fn wanted(s: &Settled, p: usize) -> Vec<String> {
        s.want[p].iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn paths_in_strict_path_order_are_handed_over_as_they_are() {
        let a = briefs(&[("a", 1, false), ("a/b", 2, false), ("b", 3, true)]);
        let none = Briefs::default();
        let want = settle(&[Some(&a), Some(&none)], None).want.swap_remove(0);
        assert_eq!(a.into_paths().unwrap(), want);
        for list in [
            &[("b", 1, false), ("a", 1, false)][..],
            &[("a", 1, false), ("a", 1, false)][..],
        ] {
            assert_eq!(briefs(list).into_paths().unwrap_err().len(), 2);
        }
    }

    #[test]
    fn same_fingerprint_everywhere_is_settled() {
        // Out of order on purpose: serves send briefs in walk order.
        let a = briefs(&[("b", 1, false), ("a", 1, false), ("gone", 3, true)]);
        let b = briefs(&[("a", 1, false), ("gone", 3, true), ("b", 1, false)]);
        let s = settle(&[Some(&a), Some(&b)], None);
        assert_eq!(s.in_sync, 3);
        assert_eq!(s.held, vec![2, 2], "a remembered deletion is not held");
        assert!(s.want.iter().all(Paths::is_empty));
    }

    #[test]
    fn differing_or_missing_briefs_are_wanted_from_every_peer_that_sent_one() {
        let a = briefs(&[
            ("same", 1, false),
            ("differs", 1, false),
            ("only-a", 1, false),
        ]);
        let b = briefs(&[("same", 1, false), ("differs", 2, false)]);
        let c = briefs(&[
            ("same", 1, false),
            ("differs", 1, false),
            ("only-a", 1, false),
        ]);
        let s = settle(&[Some(&a), Some(&b), Some(&c)], None);
        assert_eq!(s.in_sync, 1);
        assert_eq!(wanted(&s, 0), ["differs", "only-a"]);
        assert_eq!(wanted(&s, 1), ["differs"]);
        assert_eq!(wanted(&s, 2), ["differs", "only-a"]);
        assert_eq!(s.held, vec![1, 1, 1]);
    }

    #[test]
    fn peers_without_a_listing_do_not_count() {
        let a = briefs(&[("x", 1, false)]);
        let b = briefs(&[("x", 1, false)]);
        let s = settle(&[Some(&a), None, Some(&b)], None);
        assert_eq!(s.in_sync, 1);
        assert_eq!(s.held, vec![1, 0, 1]);
        // A peer that sent x in full (not in brief) keeps the row open.
        let empty = Briefs::default();
        let s = settle(&[Some(&a), Some(&empty), Some(&b)], None);
        assert_eq!(s.in_sync, 0);
        assert_eq!(wanted(&s, 0), ["x"]);
        assert_eq!(wanted(&s, 2), ["x"]);
    }

    #[test]
    fn files_over_max_size_are_left_to_the_decision() {
        let a = briefs(&[("small", 1, false), ("big", 9, false), ("gone", 9, true)]);
        let b = briefs(&[("small", 1, false), ("big", 9, false), ("gone", 9, true)]);
        let s = settle(&[Some(&a), Some(&b)], Some(50));
        assert_eq!(s.in_sync, 2);
        assert_eq!(wanted(&s, 0), ["big"]);
        assert_eq!(wanted(&s, 1), ["big"]);
    }

    #[test]
    fn paths_sort_bytewise_not_by_walk_order() {
        let a = briefs(&[("d", 1, false), ("d/x", 1, false), ("d.txt", 1, false)]);
        let b = briefs(&[("d.txt", 1, false), ("d", 1, false), ("d/x", 2, false)]);
        let s = settle(&[Some(&a), Some(&b)], None);
        assert_eq!(s.in_sync, 2);
        assert_eq!(wanted(&s, 0), ["d/x"]);
        assert_eq!(a.len(), 3);
        assert_eq!(a.rel(1), b"d/x");
    }
}
