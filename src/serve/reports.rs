//! What the last scan of a root reported for each entry: pushed in walk order while the scan
//! runs, then sorted once, so the commit and the client's follow-up requests find entries by
//! search and the state's records can be walked beside them.

use crate::model::{Meta, Vv};
use crate::paths::WirePath;

/// What this peer reported for one entry in the last scan.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reported {
    /// Exactly as its state record says, metadata and version: nothing is kept twice (most
    /// entries of a re-check).
    AsRecorded,
    /// Present (or deleted, `None`) with this version.
    Held(Box<(Option<Meta>, Option<Vv>)>),
    /// Unreadable, or a special file: its old record stays.
    Unknown,
}

/// Every entry one scan reported, one report per path, with the id of its stamp as the scan
/// saw it ([`crate::beneath::Stamp::id`]; 0: none): a replacement checks that the entry is still that
/// version. A flat list rather than a map: a million entries cost their paths and a few words
/// each, and a walk that comes in nearly sorted order sorts in about one pass.
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// The stamp's id in two words: a `u128` would align each report to 16 bytes, and pad
    /// it by 8.
    list: Vec<(WirePath, Reported, [u64; 2])>,
    /// How much of `list` is known to be in path order.
    sorted: usize,
}

impl Reports {
    /// Adds the report of an entry the scan has not reported yet. Lookups see it after the
    /// next [`Reports::sort`].
    pub(super) fn push(&mut self, rel: WirePath, rep: Reported, stamp: u128) {
        self.list
            .push((rel, rep, [stamp as u64, (stamp >> 64) as u64]));
    }

    /// Puts every report in path order (stable: of two reports of one path the first stays).
    pub(super) fn sort(&mut self) {
        self.list.sort_by(|a, b| a.0.cmp(&b.0));
        self.list.dedup_by(|later, first| later.0 == first.0);
        self.sorted = self.list.len();
    }

    /// How many entries were reported.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// The report of `rel`, among those sorted.
    pub(super) fn get(&self, rel: &WirePath) -> Option<&Reported> {
        self.list[..self.sorted]
            .binary_search_by(|(r, _, _)| r.cmp(rel))
            .ok()
            .map(|i| &self.list[i].1)
    }

    /// The id of the stamp the scan saw `rel` with, among those sorted (0: none).
    pub(super) fn stamp(&self, rel: &WirePath) -> u128 {
        self.list[..self.sorted]
            .binary_search_by(|(r, _, _)| r.cmp(rel))
            .map_or(0, |i| {
                let [lo, hi] = self.list[i].2;
                u128::from(lo) | u128::from(hi) << 64
            })
    }

    /// Whether `rel` was reported (among those sorted), for paths asked in path order: `at` (0 for the first) only
    /// moves forward, so walking a sorted list beside the reports costs one pass over both.
    /// The path is given as its bytes: a state record's, read without decoding the record.
    pub(super) fn contains_ordered(&self, rel: &[u8], at: &mut usize) -> bool {
        let list = &self.list[..self.sorted];
        while list.get(*at).is_some_and(|(r, _, _)| r.as_bytes() < rel) {
            *at += 1;
        }
        list.get(*at).is_some_and(|(r, _, _)| r.as_bytes() == rel)
    }

    /// Every report, in path order once sorted.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&WirePath, &Reported)> {
        self.list.iter().map(|(r, rep, _)| (r, rep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_found_once_sorted_and_the_first_of_a_path_stays() {
        let mut r = Reports::default();
        for (rel, rep) in [
            ("b", Reported::AsRecorded),
            ("a/x", Reported::Unknown),
            ("a-b", Reported::AsRecorded),
            ("a", Reported::Held(Box::new((None, None)))),
            ("b", Reported::Unknown),
        ] {
            r.push(WirePath::from(rel), rep, 0);
        }
        assert_eq!(r.get(&WirePath::from("b")), None, "not sorted yet");
        r.sort();
        let order: Vec<String> = r.iter().map(|(rel, _)| rel.to_string()).collect();
        assert_eq!(order, ["a", "a-b", "a/x", "b"]);
        assert_eq!(r.get(&WirePath::from("b")), Some(&Reported::AsRecorded));
        assert_eq!(r.get(&WirePath::from("a/x")), Some(&Reported::Unknown));
        assert!(r.get(&WirePath::from("a")).is_some());
        assert!(r.get(&WirePath::from("a/y")).is_none());
        // Reports added later are found after the next sort.
        r.push(WirePath::from("a/y"), Reported::Unknown, 0);
        assert!(r.get(&WirePath::from("a/y")).is_none());
        r.sort();
        assert!(r.get(&WirePath::from("a/y")).is_some());
        // Asked in path order, with one cursor: the same answers as a search.
        let mut at = 0;
        for rel in ["", "a", "a-a", "a-b", "a/x", "a/y", "a/z", "b", "c"] {
            assert_eq!(
                r.contains_ordered(rel.as_bytes(), &mut at),
                r.get(&WirePath::from(rel)).is_some(),
                "{rel}"
            );
        }
    }
}
