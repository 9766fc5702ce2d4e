//! What [`crate::extra::read`] found of each entry (files, directories and symlinks alike),
//! remembered by the entry's stamp, so a re-check reads the attributes only of entries whose
//! ctime moved: every setxattr, ACL change and chown moves it.
//!
//! What is read depends on the options and on whether the serve runs as root, so those are
//! the key of the file's header: a cache read under others is ignored whole. Owners are kept
//! by number; their names are looked up again on every hit (a rename in `/etc/passwd` moves
//! no file's ctime).

use std::path::{Path, PathBuf};

use super::{file_for, Store, PAYLOAD};
use crate::beneath::Stamp;
use crate::extra::{owner_of, MetaOpts};
use crate::model::Extra;
use crate::paths::WirePath;

const OWNER: u8 = 1;
const XATTRS: u8 = 2;
const ACL: u8 = 4;
const SYS: u8 = 8;
/// Flags, uid, gid and three hashes.
const USED: usize = 1 + 4 + 4 + 3 * 16;

/// The header key of a cache of attributes read under `opts`, as root or not: never that of a
/// digest cache.
fn key_of(opts: &MetaOpts, root: bool) -> u64 {
    [opts.xattrs, opts.acls, opts.owner, root]
        .iter()
        .enumerate()
        .fold(1 << 32, |k, (i, on)| k | (u64::from(*on) << i))
}

/// `e` as a record's payload (all but its hard link, which the walk finds).
fn pack(e: &Extra) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    let mut flags = 0;
    if let Some(o) = &e.owner {
        flags |= OWNER;
        p[1..5].copy_from_slice(&o.uid.to_le_bytes());
        p[5..9].copy_from_slice(&o.gid.to_le_bytes());
    }
    for (bit, at, hash) in [(XATTRS, 9, e.xattrs), (ACL, 25, e.acl), (SYS, 41, e.sys)] {
        if let Some(h) = hash {
            flags |= bit;
            p[at..at + 16].copy_from_slice(&h);
        }
    }
    p[0] = flags;
    p
}

/// The attributes a payload packs, owners named as `numeric` says; `None` for a payload
/// [`pack`] cannot have made.
fn unpack(p: &[u8; PAYLOAD], numeric: bool) -> Option<Extra> {
    let flags = p[0];
    if flags & !(OWNER | XATTRS | ACL | SYS) != 0 || p[USED..].iter().any(|b| *b != 0) {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes"));
    let hash = |bit: u8, at: usize| {
        (flags & bit != 0).then(|| p[at..at + 16].try_into().expect("16 bytes"))
    };
    Some(Extra {
        owner: (flags & OWNER != 0).then(|| owner_of(word(1), word(5), numeric)),
        xattrs: hash(XATTRS, 9),
        acl: hash(ACL, 25),
        sys: hash(SYS, 41),
        link: None,
    })
}

/// The attributes of one root's entries for one scan, read under one set of options.
pub struct ExtraCache {
    store: Store,
    numeric: bool,
}

impl ExtraCache {
    /// The cache of `root` below `cache_dir` (`None`: no cache) for a scan under `opts`,
    /// as root or not (`as_root`).
    pub fn for_root(cache_dir: Option<&Path>, root: &Path, opts: &MetaOpts, as_root: bool) -> Self {
        Self::at(file_for(cache_dir, root, "extras"), opts, as_root)
    }

    /// The cache kept in `file`.
    pub fn at(file: Option<PathBuf>, opts: &MetaOpts, as_root: bool) -> Self {
        ExtraCache {
            store: Store::at(file, key_of(opts, as_root)),
            numeric: opts.numeric_ids,
        }
    }

    /// The attributes recorded for the entry at `rel` with this stamp, if it is unchanged
    /// (without a hard link: the walk tells that). Asked in path order, as
    /// [`super::DigestCache::lookup`].
    pub fn lookup(&mut self, rel: &WirePath, stamp: &Stamp) -> Option<Extra> {
        unpack(&self.store.lookup(rel, stamp)?, self.numeric)
    }

    /// Records the attributes of the entry at `rel` for the next scan (found by a lookup or
    /// just read), unless it changed too recently to trust. Noted in path order, as
    /// [`super::DigestCache::note`].
    pub fn note(&mut self, rel: &WirePath, stamp: Stamp, extra: &Extra) {
        self.store.note(rel, stamp, pack(extra))
    }

    /// Writes what this scan saw (errors only cost the next scan time).
    pub fn save(self) {
        self.store.save()
    }

    /// The cache, taking entries changed just now as settled (for tests elsewhere).
    #[cfg(test)]
    pub fn settled(mut self) -> Self {
        self.store.trusted_before = i64::MAX;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Owner;

    fn owner(uid: u32, gid: u32) -> Owner {
        owner_of(uid, gid, true)
    }

    #[test]
    fn attributes_pack_and_unpack_as_they_were_read() {
        let full = Extra {
            owner: Some(owner(1000, 4_000_000_000)),
            xattrs: Some([1; 16]),
            acl: Some([2; 16]),
            sys: Some(crate::extra::NO_SYS),
            link: None,
        };
        let only_acl = Extra {
            acl: Some([0xff; 16]),
            ..Extra::default()
        };
        for e in [Extra::default(), full.clone(), only_acl] {
            assert_eq!(unpack(&pack(&e), true), Some(e.clone()), "{e:?}");
        }
        // Names come from this host's databases on the way out, not from the record.
        let named = unpack(&pack(&full), false).unwrap().owner.unwrap();
        assert_eq!(named, owner_of(1000, 4_000_000_000, false));
        // A hard link is the walk's to tell, never the cache's.
        let linked = Extra {
            link: Some(WirePath::from("a")),
            ..full.clone()
        };
        assert_eq!(unpack(&pack(&linked), true), Some(full.clone()));
        // Payloads pack cannot make: unknown flags, bytes past the end.
        let mut bad = pack(&full);
        bad[0] |= 16;
        assert_eq!(unpack(&bad, true), None);
        let mut bad = pack(&full);
        bad[USED] = 1;
        assert_eq!(unpack(&bad, true), None);
    }

    #[test]
    fn keys_tell_every_option_and_root_apart() {
        let mut seen = std::collections::HashSet::new();
        for bits in 0..16u8 {
            let opts = MetaOpts {
                xattrs: bits & 1 != 0,
                acls: bits & 2 != 0,
                owner: bits & 4 != 0,
                ..MetaOpts::default()
            };
            assert!(seen.insert(key_of(&opts, bits & 8 != 0)), "{bits}");
        }
        assert!(!seen.contains(&super::super::DIGESTS));
    }

    /// A cache whose clock says the entries were changed long ago.
    fn settled(file: &Path, opts: &MetaOpts, as_root: bool) -> ExtraCache {
        ExtraCache::at(Some(file.to_path_buf()), opts, as_root).settled()
    }

    fn stamp(p: &Path) -> Stamp {
        Stamp::of_metadata(&std::fs::symlink_metadata(p).unwrap())
    }

    #[test]
    fn a_hit_reuses_a_moved_ctime_or_other_options_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("cache/x.extras");
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let rel = WirePath::from("d");
        let opts = MetaOpts::default();
        // Not what reading the directory gives: a hit is known to come from the cache.
        let planted = Extra {
            xattrs: Some([7; 16]),
            acl: Some([8; 16]),
            ..Extra::default()
        };
        let mut c = settled(&store, &opts, false);
        assert_eq!(c.lookup(&rel, &stamp(&d)), None);
        c.note(&rel, stamp(&d), &planted);
        c.save();
        let mut c = settled(&store, &opts, false);
        assert_eq!(c.lookup(&rel, &stamp(&d)), Some(planted.clone()));
        // Under another name (an inode handed out again), it is not trusted.
        assert_eq!(c.lookup(&WirePath::from("e"), &stamp(&d)), None);
        // Another option, or root-ness, and the whole file is another's.
        let no_acls = MetaOpts {
            acls: false,
            ..opts
        };
        assert_eq!(
            settled(&store, &no_acls, false).lookup(&rel, &stamp(&d)),
            None
        );
        assert_eq!(settled(&store, &opts, true).lookup(&rel, &stamp(&d)), None);
        // --numeric-ids reads the same; only the names it gives differ.
        let numeric = MetaOpts {
            numeric_ids: true,
            ..opts
        };
        let mut n = settled(&store, &numeric, false);
        assert_eq!(n.lookup(&rel, &stamp(&d)), Some(planted.clone()));
        // A change of mode (as of xattrs, ACLs or owner) moves the ctime: read again.
        let before = stamp(&d);
        std::thread::sleep(std::time::Duration::from_millis(30));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let after = stamp(&d);
        assert_ne!(before.ctime, after.ctime);
        assert_eq!(settled(&store, &opts, false).lookup(&rel, &after), None);
        // Entries changed just before the scan are not kept.
        let mut recent = ExtraCache::at(Some(store.clone()), &opts, false);
        recent.note(&rel, after, &Extra::default());
        recent.save();
        assert_eq!(settled(&store, &opts, false).lookup(&rel, &after), None);
    }
}
