//! A root's records held as the state file encodes them, in path order: in memory (one buffer
//! of postcard records and where each begins) or, for a state file read whole and found sound,
//! left in that file and read a block at a time. A million records then cost the serve a word
//! each, not their encoded bytes (about 110 apiece) nor a decoded [`Record`] (a few hundred with
//! its metadata inline): a record is decoded where it is looked at, and the walk looks at them
//! in order.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::model::Record;
use crate::paths::WirePath;

/// Records of one root, sorted by path, one a path.
#[derive(Debug, Default)]
pub struct Records {
    /// Where each record begins, in path order: in the buffer, or in the file.
    at: Vec<u64>,
    store: Store,
}

#[derive(Debug)]
enum Store {
    /// Encoded records, possibly among other bytes (the state file they were read from).
    Mem(Vec<u8>),
    /// Records left in the state file they were read from.
    File(Paged),
}

impl Default for Store {
    fn default() -> Self {
        Store::Mem(Vec::new())
    }
}

/// How many records one read of a state file brings in.
pub(super) const BLOCK: usize = 64;

/// What a read of a whole state file found of its records, to leave them there: where each
/// begins and where the last ends, and of each block of [`BLOCK`] records its first path and
/// the xxh3 of its bytes.
#[derive(Debug, Default)]
pub(super) struct Blocks {
    pub(super) at: Vec<u64>,
    pub(super) end: u64,
    pub(super) firsts: Vec<Box<[u8]>>,
    pub(super) sums: Vec<u64>,
}

/// Records left in their state file: the file stays open (a later commit renames another over
/// its name, never writes into it), and each block of [`BLOCK`] records is checked against the
/// sum taken when the file was read whole, so a file changed in place since is never taken
/// for what was read. A block that cannot be read, or does not match, stops the serve (a
/// panic naming the file) before anything is decided or recorded from it.
#[derive(Debug)]
struct Paged {
    file: File,
    /// Its name, for the message should it fail.
    path: PathBuf,
    /// Where the records end.
    end: u64,
    /// The first path of each block: a search reads one block.
    firsts: Vec<Box<[u8]>>,
    /// The xxh3 of each block's bytes.
    sums: Vec<u64>,
    /// The block read last: its number and its bytes.
    block: Mutex<(usize, Vec<u8>)>,
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

/// The path an encoded record begins with (postcard: its length, then its bytes), or
/// anything else this process encoded path first.
pub(crate) fn rel_of(b: &[u8]) -> &[u8] {
    let (len, n) = varint(b).expect("encoded by this process, or checked as it was taken in");
    &b[n..n + len as usize]
}

/// The record at the start of `b`, and its length.
fn decode(b: &[u8]) -> (Record, usize) {
    let (r, after) =
        postcard::take_from_bytes::<Record>(b).expect("a record checked as it was taken in");
    (r, b.len() - after.len())
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
        let mut r = Records {
            at,
            store: Store::Mem(bytes),
        };
        r.settle();
        Ok((r, pos))
    }

    /// Records left in `file` (named `path`), found sound by a read of the whole file, in
    /// strictly ascending path order, where `blocks` says.
    pub(super) fn in_file(file: File, path: PathBuf, blocks: Blocks) -> Records {
        let paged = Paged {
            file,
            path,
            end: blocks.end,
            firsts: blocks.firsts,
            sums: blocks.sums,
            block: Mutex::new((usize::MAX, Vec::new())),
        };
        Records {
            at: blocks.at,
            store: Store::File(paged),
        }
    }

    /// `records` encoded, in the order given (sorted by path, one a path).
    pub fn from_vec(records: &[Record]) -> Records {
        let mut r = Records::default();
        for rec in records {
            r.push(rec);
        }
        r
    }

    /// Adds a record after the others (`settle` puts them in order). Records left in their
    /// file are read into memory first.
    pub fn push(&mut self, rec: &Record) {
        self.read_into_memory();
        let Store::Mem(bytes) = &mut self.store else {
            unreachable!("just read into memory")
        };
        self.at.push(bytes.len() as u64);
        let taken = std::mem::take(bytes);
        *bytes = postcard::to_extend(rec, taken).expect("a Vec takes every write");
    }

    /// Starts records made mostly of these ones (in memory): see [`Reuse`].
    pub fn reuse(mut self) -> Reuse {
        self.read_into_memory();
        Reuse {
            from: self,
            at: Vec::new(),
        }
    }

    /// Reads records left in their file into memory.
    fn read_into_memory(&mut self) {
        if let Store::File(_) = self.store {
            let mut bytes = Vec::new();
            let mut at = Vec::with_capacity(self.at.len());
            for i in 0..self.len() {
                at.push(bytes.len() as u64);
                bytes.extend_from_slice(&self.encoded(i));
            }
            *self = Records {
                at,
                store: Store::Mem(bytes),
            };
        }
    }

    /// Sorts by path (stable: of two records of a path the first stays) unless already so,
    /// and lets go of spare room. (Records left in their file were found so as it was read.)
    pub fn settle(&mut self) {
        self.settle_keeping(false);
    }

    /// Sorts by path as [`Records::settle`] does, but of two records of a path the one pushed
    /// later stays: records sent for one path again correct the earlier ones.
    pub fn settle_keeping_last(&mut self) {
        self.settle_keeping(true);
    }

    /// Sorts by path (stable) unless already so, keeping the first or the `last` record of
    /// each path, and lets go of spare room.
    fn settle_keeping(&mut self, last: bool) {
        let Store::Mem(bytes) = &self.store else {
            return;
        };
        let rel = |p: &u64| rel_of(&bytes[*p as usize..]);
        if !self.at.windows(2).all(|w| rel(&w[0]) < rel(&w[1])) {
            self.at.sort_by(|a, b| rel(a).cmp(rel(b)));
            // Of equal paths the later stays later: to keep it, it takes the first's place.
            self.at.dedup_by(|later, first| {
                let same = rel(later) == rel(first);
                if same && last {
                    *first = *later;
                }
                same
            });
        }
        self.at.shrink_to_fit();
    }

    /// The bytes after byte `end` of those the records were taken from (in memory).
    pub fn tail(&self, end: usize) -> &[u8] {
        match &self.store {
            Store::Mem(bytes) => &bytes[end..],
            Store::File(_) => &[],
        }
    }

    /// Calls `f` with the bytes of the `i`th record (and maybe more after it).
    fn with<R>(&self, i: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.store {
            Store::Mem(bytes) => f(&bytes[self.at[i] as usize..]),
            Store::File(p) => {
                let no = i / BLOCK;
                let mut block = p.block.lock().unwrap_or_else(|e| e.into_inner());
                if block.0 != no {
                    block.0 = usize::MAX;
                    let read = read_block(&p.file, &self.at, p.end, no, &mut block.1);
                    if let Err(e) = read {
                        panic!(
                            "{}: sync state unreadable while in use: {e}",
                            p.path.display()
                        );
                    }
                    if xxhash_rust::xxh3::xxh3_64(&block.1) != p.sums[no] {
                        panic!(
                            "{}: sync state changed in place while in use",
                            p.path.display()
                        );
                    }
                    block.0 = no;
                }
                let off = (self.at[i] - self.at[no * BLOCK]) as usize;
                f(&block.1[off..])
            }
        }
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
    pub fn rel_at(&self, i: usize) -> Cow<'_, [u8]> {
        match &self.store {
            Store::Mem(bytes) => Cow::Borrowed(rel_of(&bytes[self.at[i] as usize..])),
            Store::File(_) => Cow::Owned(self.with(i, |b| rel_of(b).to_vec())),
        }
    }

    /// How the path of the `i`th record sorts against `rel` (`None`: there is no `i`th).
    pub fn cmp_at(&self, i: usize, rel: &[u8]) -> Option<Ordering> {
        (i < self.len()).then(|| self.with(i, |b| rel_of(b).cmp(rel)))
    }

    /// The `i`th record, decoded.
    pub fn get(&self, i: usize) -> Record {
        self.with(i, |b| decode(b).0)
    }

    /// The `i`th record as encoded.
    pub fn encoded(&self, i: usize) -> Cow<'_, [u8]> {
        match &self.store {
            Store::Mem(bytes) => {
                let from = &bytes[self.at[i] as usize..];
                Cow::Borrowed(&from[..decode(from).1])
            }
            Store::File(_) => Cow::Owned(self.with(i, |b| b[..decode(b).1].to_vec())),
        }
    }

    /// Where the record of `rel` is (`Ok`), or would go (`Err`).
    pub fn search(&self, rel: &WirePath) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        if let Store::File(p) = &self.store {
            // The last block whose first path is not after `rel` holds it, if any does.
            let b = p.firsts.partition_point(|f| **f <= *rel.as_bytes());
            if b == 0 {
                return Err(0);
            }
            (lo, hi) = ((b - 1) * BLOCK, (b * BLOCK).min(self.len()));
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.cmp_at(mid, rel.as_bytes()).expect("within") {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Whether the `i`th record is of `rel`.
    pub fn is_at(&self, i: usize, rel: &WirePath) -> bool {
        self.cmp_at(i, rel.as_bytes()) == Some(Ordering::Equal)
    }

    /// Every record, decoded one at a time, in path order.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The records, in path order and with their index, of those for which `skip` (given the
    /// index and the path) is false, each decoded only then: a walk over what a scan did not
    /// see decodes none of those it saw. `skip` sees the path where it lies, so it must not
    /// look at these records itself.
    pub fn iter_unless<'a>(
        &'a self,
        mut skip: impl FnMut(usize, &[u8]) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, Record)> + 'a {
        // The path is looked at where it lies: no copy of each, even from the file.
        (0..self.len())
            .filter(move |&i| !self.with(i, |b| skip(i, rel_of(b))))
            .map(|i| (i, self.get(i)))
    }

    /// Whether the records are left in their file.
    #[cfg(test)]
    pub fn in_file_now(&self) -> bool {
        matches!(self.store, Store::File(_))
    }

    /// Whether these are exactly the records `other` holds, in the same order: compared as
    /// encoded, which postcard makes one encoding a record.
    pub fn same_records(&self, other: &Records) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.encoded(i) == other.encoded(i))
    }

    /// Whether these are exactly `records`, in this order.
    #[cfg(test)]
    pub fn same_as(&self, records: &[Record]) -> bool {
        records.len() == self.len() && self.iter().zip(records).all(|(a, b)| a == *b)
    }
}

/// Records built from others (`from`) without a copy of those taken: each is taken where it
/// lies in their buffer, and records from elsewhere are encoded after them in the same
/// buffer (offsets already taken stay valid as it grows). The new state of a first sync,
/// whose client sends a record for every entry, then costs no second copy of them.
#[derive(Debug)]
pub struct Reuse {
    from: Records,
    /// Where each taken record begins in `from`'s buffer, in the order taken.
    at: Vec<u64>,
}

impl Reuse {
    /// The records taken from, in path order.
    pub fn from(&self) -> &Records {
        &self.from
    }

    /// Takes the `i`th record of [`Reuse::from`].
    pub fn take(&mut self, i: usize) {
        self.at.push(self.from.at[i]);
    }

    /// Takes a record from elsewhere.
    pub fn push(&mut self, rec: &Record) {
        let Store::Mem(bytes) = &mut self.from.store else {
            unreachable!("read into memory")
        };
        self.at.push(bytes.len() as u64);
        let taken = std::mem::take(bytes);
        *bytes = postcard::to_extend(rec, taken).expect("a Vec takes every write");
    }

    /// The records taken, settled ([`Records::settle`]): of two of a path the first taken
    /// stays.
    pub fn finish(self) -> Records {
        let mut r = Records {
            at: self.at,
            store: self.from.store,
        };
        r.settle();
        r
    }
}

/// Reads block `no` of the records beginning at `at` and ending at `end` of `file` into `buf`.
fn read_block(
    file: &File,
    at: &[u64],
    end: u64,
    no: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let from = at[no * BLOCK];
    let to = at.get((no + 1) * BLOCK).copied().unwrap_or(end);
    buf.clear();
    buf.resize((to - from) as usize, 0);
    file.read_exact_at(buf, from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vv;

    /// The records pushed in the order given.
    fn pushed(list: &[Record]) -> Records {
        let mut r = Records::default();
        for x in list {
            r.push(x);
        }
        r
    }

    fn rec(rel: &str, n: u64) -> Record {
        Record {
            rel: WirePath::from(rel),
            meta: None,
            vv: Vv(vec![(1, n)]),
        }
    }

    #[test]
    fn records_built_from_others_take_theirs_in_place_and_settle_with_the_first_taken() {
        let mut from = pushed(&[rec("d", 1), rec("b", 2), rec("f", 3)]);
        from.settle();
        let bytes_before = match &from.store {
            Store::Mem(b) => b.len(),
            Store::File(_) => unreachable!(),
        };
        let mut new = from.reuse();
        // From elsewhere, then theirs ("b", "f"; "d" left out), a path taken twice, and an
        // earlier path after later ones: what a merge with kept records pushes last.
        new.push(&rec("a", 9));
        new.take(0);
        new.push(&rec("c", 9));
        new.take(2);
        new.push(&rec("f", 8));
        new.push(&rec("e", 9));
        let r = new.finish();
        let want = [
            rec("a", 9),
            rec("b", 2),
            rec("c", 9),
            rec("e", 9),
            rec("f", 3),
        ];
        assert!(r.same_as(&want), "{:?}", r.iter().collect::<Vec<_>>());
        assert!(r.same_records(&Records::from_vec(&want)));
        // Theirs were not copied: the buffer grew by the records from elsewhere only.
        let Store::Mem(b) = &r.store else { panic!() };
        let own: usize = [rec("a", 9), rec("c", 9), rec("f", 8), rec("e", 9)]
            .iter()
            .map(|x| postcard::to_allocvec(x).unwrap().len())
            .sum();
        assert_eq!(b.len(), bytes_before + own);
    }

    #[test]
    fn records_settled_keeping_the_last_of_a_path_are_compared_as_encoded() {
        let mut r = pushed(&[
            rec("b", 1),
            rec("a", 2),
            rec("b", 3),
            rec("c", 4),
            rec("b", 5),
        ]);
        r.settle_keeping_last();
        let got: Vec<Record> = r.iter().collect();
        assert_eq!(got, [rec("a", 2), rec("b", 5), rec("c", 4)]);
        assert!(r.same_records(&Records::from_vec(&got)));
        assert!(!r.same_records(&Records::from_vec(&got[..2])));
        let other = [rec("a", 2), rec("b", 3), rec("c", 4)];
        assert!(!r.same_records(&Records::from_vec(&other)));
    }

    #[test]
    fn records_are_found_in_path_order_the_first_of_a_path_kept() {
        let mut r = pushed(&[
            rec("b", 1),
            rec("a/x", 2),
            rec("a-b", 3),
            rec("b", 4),
            rec("", 5),
        ]);
        r.settle();
        let rels: Vec<String> = r.iter().map(|x| x.rel.to_string()).collect();
        assert_eq!(rels, ["", "a-b", "a/x", "b"]);
        assert_eq!(r.get(r.search(&WirePath::from("b")).unwrap()), rec("b", 1));
        assert_eq!(r.search(&WirePath::from("a")), Err(1));
        let again = Records::from_vec(&r.iter().collect::<Vec<_>>());
        let mut bytes = vec![9, 9];
        for i in 0..again.len() {
            bytes.extend_from_slice(&again.encoded(i));
        }
        let (taken, end) = Records::take(bytes, 2, 4).unwrap();
        let Store::Mem(all) = &taken.store else {
            panic!("taken into memory")
        };
        assert_eq!(end, all.len());
        assert!(taken.same_as(&r.iter().collect::<Vec<_>>()));
    }
}
