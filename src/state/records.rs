//! A root's records held as the state file encodes them: one buffer of postcard records and
//! where each begins, in path order. A million records cost their encoded bytes and a word
//! each, not a decoded [`Record`] apiece (a few hundred bytes with its metadata inline); a
//! record is decoded where it is looked at.

use std::cmp::Ordering;

use crate::model::Record;
use crate::paths::WirePath;

/// Records of one root, sorted by path, one a path.
#[derive(Debug, Default)]
pub struct Records {
    /// Encoded records, possibly among other bytes (the state file they were read from).
    bytes: Vec<u8>,
    /// Where each record begins in `bytes`, in path order.
    at: Vec<u64>,
}

/// The postcard varint at the start of `b` and its length, if sound.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The path an encoded record begins with (postcard: its length, then its bytes).
fn rel_of(b: &[u8]) -> &[u8] {
    let (len, n) = varint(b).expect("a record checked as it was taken in");
    &b[n..n + len as usize]
}

impl Records {
    /// Records encoded one after another in `bytes[start..]`, `count` of them as a state
    /// file's body holds them: each is decoded once to check it. Returns them with where
    /// the last one ends. They are put in path order, the first of each path kept.
    pub fn take(bytes: Vec<u8>, start: usize, count: u64) -> Result<(Records, usize), String> {
        let mut at = Vec::with_capacity(count.min(bytes.len() as u64) as usize);
        let mut pos = start;
        for _ in 0..count {
            let rest = bytes.get(pos..).unwrap_or_default();
            let (_, after) = postcard::take_from_bytes::<Record>(rest)
                .map_err(|e| format!("checksum right but undecodable ({e})"))?;
            at.push(pos as u64);
            pos += rest.len() - after.len();
        }
        let mut r = Records { bytes, at };
        r.settle();
        Ok((r, pos))
    }

    /// `records` encoded, in the order given (sorted by path, one a path).
    pub fn from_vec(records: &[Record]) -> Records {
        let mut r = Records::default();
        for rec in records {
            r.push(rec);
        }
        r
    }

    /// Adds a record after the others (`settle` puts them in order).
    pub fn push(&mut self, rec: &Record) {
        self.at.push(self.bytes.len() as u64);
        let bytes = std::mem::take(&mut self.bytes);
        self.bytes = postcard::to_extend(rec, bytes).expect("a Vec takes every write");
    }

    /// Sorts by path (stable: of two records of a path the first stays) unless already so,
    /// and lets go of spare room.
    pub fn settle(&mut self) {
        let sorted = self
            .at
            .windows(2)
            .all(|w| self.rel(w[0] as usize) < self.rel(w[1] as usize));
        if !sorted {
            let bytes = &self.bytes;
            self.at
                .sort_by(|a, b| rel_of(&bytes[*a as usize..]).cmp(rel_of(&bytes[*b as usize..])));
            self.at.dedup_by(|later, first| {
                rel_of(&bytes[*later as usize..]) == rel_of(&bytes[*first as usize..])
            });
        }
        self.at.shrink_to_fit();
    }

    /// The bytes after byte `end` of those the records were taken from.
    pub fn tail(&self, end: usize) -> &[u8] {
        &self.bytes[end..]
    }

    /// The path of the record at byte `pos`.
    fn rel(&self, pos: usize) -> &[u8] {
        rel_of(&self.bytes[pos..])
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The path of the `i`th record.
    pub fn rel_at(&self, i: usize) -> &[u8] {
        self.rel(self.at[i] as usize)
    }

    /// The `i`th record, decoded.
    pub fn get(&self, i: usize) -> Record {
        postcard::take_from_bytes::<Record>(&self.bytes[self.at[i] as usize..])
            .expect("a record checked as it was taken in")
            .0
    }

    /// The `i`th record as encoded.
    pub fn encoded(&self, i: usize) -> &[u8] {
        let from = &self.bytes[self.at[i] as usize..];
        let (_, after) =
            postcard::take_from_bytes::<Record>(from).expect("a record checked as it was taken in");
        &from[..from.len() - after.len()]
    }

    /// Where the record of `rel` is (`Ok`), or would go (`Err`).
    pub fn search(&self, rel: &WirePath) -> Result<usize, usize> {
        self.at
            .binary_search_by(|p| self.rel(*p as usize).cmp(rel.as_bytes()))
    }

    /// Whether the `i`th record is of `rel`.
    pub fn is_at(&self, i: usize, rel: &WirePath) -> bool {
        i < self.at.len() && self.rel_at(i).cmp(rel.as_bytes()) == Ordering::Equal
    }

    /// Every record, decoded one at a time, in path order.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The records, in path order and with their index, of those for which `skip` (given the
    /// index and the path) is false, each decoded only then: a walk over what a scan did not
    /// see decodes none of those it saw.
    pub fn iter_unless<'a>(
        &'a self,
        mut skip: impl FnMut(usize, &[u8]) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, Record)> + 'a {
        (0..self.len())
            .filter(move |&i| !skip(i, self.rel_at(i)))
            .map(|i| (i, self.get(i)))
    }

    /// Whether these are exactly `records`, in this order.
    pub fn same_as(&self, records: &[Record]) -> bool {
        records.len() == self.len() && self.iter().zip(records).all(|(a, b)| a == *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vv;

    fn rec(rel: &str, n: u64) -> Record {
        Record {
            rel: WirePath::from(rel),
            meta: None,
            vv: Vv(vec![(1, n)]),
        }
    }

    #[test]
    fn records_are_found_in_path_order_the_first_of_a_path_kept() {
        let mut r = Records::default();
        for x in [
            rec("b", 1),
            rec("a/x", 2),
            rec("a-b", 3),
            rec("b", 4),
            rec("", 5),
        ] {
            r.push(&x);
        }
        r.settle();
        let rels: Vec<String> = r.iter().map(|x| x.rel.to_string()).collect();
        assert_eq!(rels, ["", "a-b", "a/x", "b"]);
        assert_eq!(r.get(r.search(&WirePath::from("b")).unwrap()), rec("b", 1));
        assert_eq!(r.search(&WirePath::from("a")), Err(1));
        let again = Records::from_vec(&r.iter().collect::<Vec<_>>());
        let mut bytes = vec![9, 9];
        for i in 0..again.len() {
            bytes.extend_from_slice(again.encoded(i));
        }
        let (taken, end) = Records::take(bytes, 2, 4).unwrap();
        assert_eq!(end, taken.bytes.len());
        assert!(taken.same_as(&r.iter().collect::<Vec<_>>()));
    }
}
