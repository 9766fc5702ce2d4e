//! What the last scan of a root reported for each entry: pushed in walk order (path order)
//! while the scan runs, then sorted once, so the commit and the client's follow-up requests
//! find entries by search and the state's records can be walked beside them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::model::{Meta, Vv};
use crate::paths::WirePath;
use crate::state::{rel_of, RootState};

/// What this peer reported for one entry in the last scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
/// saw it ([`crate::beneath::Stamp::id`]; 0: none): a replacement checks that the entry is
/// still that version. Flat lists rather than a map, in path order as the walk comes.
///
/// An entry exactly as its state record says (most of a re-check) is kept by the record's
/// index in the state: 20 bytes, where a path and a report would cost about a hundred. The
/// rest (every entry of a first sync) are kept encoded, about 130 bytes for a file where a
/// decoded path and report would cost over 350.
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// Entries as recorded: the record's index and the stamp's id in four words.
    recorded: Vec<[u32; 5]>,
    /// The rest, each its path, report and stamp id encoded ([`Listed`]) one after another.
    listed: Vec<u8>,
    /// Where each of those begins in `listed`, in path order up to `sorted`.
    list: Vec<u64>,
    /// How much of `list` is known to be in path order.
    sorted: usize,
}

/// A report kept with its path, as encoded: the path first, so it is read without decoding
/// the rest, then the stamp's id (in two words: postcard has no `u128` varint), read without
/// decoding the report.
#[derive(Serialize)]
struct ListedRef<'a> {
    #[serde(with = "serde_bytes")]
    rel: &'a [u8],
    stamp: [u64; 2],
    rep: &'a Reported,
}

/// [`ListedRef`], decoded.
#[derive(Deserialize)]
struct Listed {
    rel: WirePath,
    #[allow(dead_code)] // read by `Head`
    stamp: [u64; 2],
    rep: Reported,
}

/// The start of a [`ListedRef`]: its path, where it lies, and its stamp's id.
#[derive(Deserialize)]
struct Head<'a> {
    #[allow(dead_code)] // decoded to get past it
    #[serde(borrow, with = "serde_bytes")]
    rel: &'a [u8],
    stamp: [u64; 2],
}

/// The one report every entry kept by its record's index has.
static AS_RECORDED: Reported = Reported::AsRecorded;

/// Where a walk beside the state's records has come to in both lists ([`Reports::has`]).
#[derive(Debug, Default)]
pub(super) struct Cursor {
    recorded: usize,
    list: usize,
}

impl Reports {
    /// Adds the report of an entry the scan has not reported yet. Lookups see it after the
    /// next [`Reports::sort`].
    pub(super) fn push(&mut self, rel: WirePath, rep: Reported, stamp: u128) {
        self.list.push(self.listed.len() as u64);
        let item = ListedRef {
            rel: rel.as_bytes(),
            stamp: [stamp as u64, (stamp >> 64) as u64],
            rep: &rep,
        };
        let bytes = std::mem::take(&mut self.listed);
        self.listed = postcard::to_extend(&item, bytes).expect("a Vec takes every write");
    }

    /// The path of the `i`th listed report.
    fn rel_at(&self, i: usize) -> &[u8] {
        rel_of(&self.listed[self.list[i] as usize..])
    }

    /// The `i`th listed report, decoded as far as `T` (a [`Listed`], or its [`Head`]).
    fn listed_at<'a, T: Deserialize<'a>>(&'a self, i: usize) -> T {
        postcard::take_from_bytes(&self.listed[self.list[i] as usize..])
            .expect("a report this serve encoded")
            .0
    }

    /// Adds the report of an entry the scan has not reported yet: by its record's index
    /// where it is exactly as `record` (its index among the state's, if it has one) says, else
    /// by its path.
    pub(super) fn report(
        &mut self,
        rel: &WirePath,
        rep: Reported,
        record: Option<usize>,
        stamp: u128,
    ) {
        match (rep, record) {
            (Reported::AsRecorded, Some(i)) => self.push_recorded(i, stamp),
            (rep, _) => self.push(rel.clone(), rep, stamp),
        }
    }

    /// Adds the report of an entry exactly as the state's `index`th record says.
    pub(super) fn push_recorded(&mut self, index: usize, stamp: u128) {
        let w = |n: u32| (stamp >> (32 * n)) as u32;
        self.recorded.push([index as u32, w(0), w(1), w(2), w(3)]);
    }

    /// Puts every report in path order (stable: of two reports of one path the first stays).
    pub(super) fn sort(&mut self) {
        let listed = &self.listed;
        let rel = |at: &u64| rel_of(&listed[*at as usize..]);
        self.list.sort_by(|a, b| rel(a).cmp(rel(b)));
        self.list.dedup_by(|later, first| rel(later) == rel(first));
        self.sorted = self.list.len();
        self.listed.shrink_to_fit();
        self.recorded.sort_by_key(|r| r[0]);
        self.recorded.dedup_by_key(|r| r[0]);
    }

    /// How many entries were reported.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.list.len() + self.recorded.len()
    }

    /// Where `rel` is among the sorted reports: in the list, or by its record in `state`.
    fn find(&self, rel: &WirePath, state: &RootState) -> Option<Found> {
        let listed = &self.listed;
        let sorted = &self.list[..self.sorted];
        if let Ok(i) =
            sorted.binary_search_by(|at| rel_of(&listed[*at as usize..]).cmp(rel.as_bytes()))
        {
            return Some(Found::Listed(i));
        }
        let index = state.index_of(rel)? as u32;
        self.recorded
            .binary_search_by_key(&index, |r| r[0])
            .ok()
            .map(Found::Recorded)
    }

    /// The report of `rel`, among those sorted (`state`: the records the scan was against),
    /// with the index of its record where it is as recorded.
    pub(super) fn get(
        &self,
        rel: &WirePath,
        state: &RootState,
    ) -> Option<(Cow<'_, Reported>, Option<usize>)> {
        match self.find(rel, state)? {
            Found::Listed(i) => Some((Cow::Owned(self.listed_at::<Listed>(i).rep), None)),
            Found::Recorded(i) => Some((
                Cow::Borrowed(&AS_RECORDED),
                Some(self.recorded[i][0] as usize),
            )),
        }
    }

    /// The id of the stamp the scan saw `rel` with, among those sorted (0: none).
    pub(super) fn stamp(&self, rel: &WirePath, state: &RootState) -> u128 {
        match self.find(rel, state) {
            Some(Found::Listed(i)) => {
                let [lo, hi] = self.listed_at::<Head>(i).stamp;
                u128::from(lo) | u128::from(hi) << 64
            }
            Some(Found::Recorded(i)) => {
                let r = &self.recorded[i];
                (1..5).fold(0, |id, n| id | u128::from(r[n]) << (32 * (n - 1)))
            }
            None => 0,
        }
    }

    /// Whether the state's `index`th record, of path `rel`, was reported (among those
    /// sorted), for records asked in order: `at` only moves forward, so walking the state
    /// beside the reports costs one pass over both. The path is given as its bytes: a
    /// state record's, read without decoding the record.
    pub(super) fn has(&self, index: usize, rel: &[u8], at: &mut Cursor) -> bool {
        let rec = &self.recorded;
        while rec
            .get(at.recorded)
            .is_some_and(|r| (r[0] as usize) < index)
        {
            at.recorded += 1;
        }
        if rec.get(at.recorded).is_some_and(|r| r[0] as usize == index) {
            return true;
        }
        while at.list < self.sorted && self.rel_at(at.list) < rel {
            at.list += 1;
        }
        at.list < self.sorted && self.rel_at(at.list) == rel
    }

    /// Every report, in path order once sorted (`state`: the records the scan was against),
    /// with the index of its record where it is as recorded.
    pub(super) fn iter<'a>(
        &'a self,
        state: &'a RootState,
    ) -> impl Iterator<Item = (WirePath, Cow<'a, Reported>, Option<usize>)> + 'a {
        let mut recorded = self.recorded.iter().peekable();
        let mut next = 0;
        std::iter::from_fn(move || {
            let next_recorded = recorded.peek().map(|r| state.rel_at(r[0] as usize));
            let listed = (next < self.list.len()).then(|| self.rel_at(next));
            match (next_recorded, listed) {
                (Some(a), b) if b.is_none_or(|b| b >= &*a) => {
                    let rel = WirePath(a.into_owned());
                    let index = recorded.next().map(|r| r[0] as usize);
                    Some((rel, Cow::Borrowed(&AS_RECORDED), index))
                }
                (_, Some(_)) => {
                    let item: Listed = self.listed_at(next);
                    next += 1;
                    Some((item.rel, Cow::Owned(item.rep), None))
                }
                _ => None,
            }
        })
    }
}

/// Where a report was found.
enum Found {
    Listed(usize),
    Recorded(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    /// A state of records at `rels`, in a directory of its own.
    fn state(rels: &[&str]) -> (tempfile::TempDir, RootState) {
        let dir = tempfile::tempdir().unwrap();
        let mut st = RootState::load(Some(&dir.path().join("s")), &dir.path().join("r")).unwrap();
        let records = rels
            .iter()
            .map(|r| Record {
                rel: WirePath::from(*r),
                meta: None,
                vv: Vv(vec![(1, 1)]),
            })
            .collect();
        st.save(records).unwrap();
        let st = RootState::load(Some(&dir.path().join("s")), &dir.path().join("r")).unwrap();
        (dir, st)
    }

    #[test]
    fn reports_are_found_once_sorted_and_the_first_of_a_path_stays() {
        // Records at "a-b" (index 0) and "c" (index 1), reported as recorded.
        let (_dir, st) = state(&["a-b", "c"]);
        let mut r = Reports::default();
        for (rel, rep) in [
            ("b", Reported::AsRecorded),
            ("a/x", Reported::Unknown),
            ("a", Reported::Held(Box::new((None, None)))),
            ("b", Reported::Unknown),
        ] {
            r.push(WirePath::from(rel), rep, 7);
        }
        r.push_recorded(1, u128::MAX - 1);
        r.push_recorded(0, 1 << 100 | 5);
        assert_eq!(r.get(&WirePath::from("b"), &st), None, "not sorted yet");
        r.sort();
        assert_eq!(r.len(), 5);
        let order: Vec<(String, Option<usize>)> = r
            .iter(&st)
            .map(|(rel, _, i)| (rel.to_string(), i))
            .collect();
        let at = |rel: &str, i| (rel.to_string(), i);
        assert_eq!(
            order,
            [
                at("a", None),
                at("a-b", Some(0)),
                at("a/x", None),
                at("b", None),
                at("c", Some(1))
            ]
        );
        let get = |rel: &str| {
            r.get(&WirePath::from(rel), &st)
                .map(|(rep, _)| rep.into_owned())
        };
        assert_eq!(
            get("b"),
            Some(Reported::AsRecorded),
            "the first of a path stays"
        );
        assert_eq!(get("a/x"), Some(Reported::Unknown));
        assert_eq!(get("a-b"), Some(Reported::AsRecorded));
        assert_eq!(get("a"), Some(Reported::Held(Box::new((None, None)))));
        assert_eq!(r.get(&WirePath::from("c"), &st).unwrap().1, Some(1));
        assert!(get("a").is_some());
        assert!(get("a/y").is_none());
        assert_eq!(r.stamp(&WirePath::from("c"), &st), u128::MAX - 1);
        assert_eq!(r.stamp(&WirePath::from("a-b"), &st), 1 << 100 | 5);
        assert_eq!(r.stamp(&WirePath::from("a"), &st), 7);
        assert_eq!(r.stamp(&WirePath::from("d"), &st), 0);
        // Reports added later are found after the next sort.
        r.push(WirePath::from("a/y"), Reported::Unknown, 0);
        assert!(get_after(&r, "a/y", &st).is_none());
        r.sort();
        assert!(get_after(&r, "a/y", &st).is_some());
        // The state's records asked in path order, with one cursor: the same answers as a
        // search, for records reported either way.
        let mut at = Cursor::default();
        assert!(r.has(0, b"a-b", &mut at));
        assert!(r.has(1, b"c", &mut at));
        let mut at = Cursor::default();
        for (i, rel) in ["", "a", "a-a", "a/x", "a/y", "a/z", "b", "bb"]
            .into_iter()
            .enumerate()
        {
            // Indexes past the state's: only the listed reports can answer.
            assert_eq!(
                r.has(10 + i, rel.as_bytes(), &mut at),
                r.get(&WirePath::from(rel), &st).is_some(),
                "{rel}"
            );
        }
    }

    fn get_after(r: &Reports, rel: &str, st: &RootState) -> Option<Reported> {
        r.get(&WirePath::from(rel), st)
            .map(|(rep, _)| rep.into_owned())
    }
}
