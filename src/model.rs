//! The vocabulary every layer shares: what an entry is ([`Meta`], [`Kind`], [`Digest`]), its
//! version ([`Vv`], [`Record`]) and what decides whether two versions are the same
//! ([`Content`], [`fingerprint`]), an entry in brief ([`Brief`]), and a kept version
//! ([`Kept`]) with how long such versions stay ([`Retention`]).
//!
//! The wire protocol carries these, the stores keep them and the decision reasons about them;
//! none of those is needed to say what they are.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::paths::WirePath;

mod attrs;
pub use attrs::{class_of, Class, MetaOpts, Xattr, ACL_NAMES, NO_SYS};

/// A SHA-512 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(#[serde(with = "serde_big_array::BigArray")] pub [u8; 64]);

impl Digest {
    /// Digest of a finished hasher.
    pub fn from_hasher(h: sha2::Sha512) -> Self {
        use sha2::Digest as _;
        Digest(h.finalize().into())
    }

    /// Digest of a byte string (symlink targets).
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha512::new();
        h.update(bytes);
        Self::from_hasher(h)
    }

    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first seven hex digits, as the `-v` lines show them.
    pub fn short(&self) -> String {
        self.hex()[..7].to_string()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.hex()[..16])
    }
}

/// What kind of filesystem object an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target.
    Symlink(WirePath),
    /// A fifo, socket or device: reported, never synced.
    Special,
}

impl Kind {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink(_) => "symlink",
            Kind::Special => "special file",
        }
    }
}

/// What a peer knows about one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// File, directory, symlink or special.
    pub kind: Kind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
    /// SHA-512 of the content (files) or of the target (symlinks); none for the rest.
    pub digest: Option<Digest>,
    /// What `rsync -aHAXS` keeps beyond mode and mtime (empty where none is read).
    pub extra: Extra,
}

/// Metadata beyond kind, size, mode and mtime: owner, extended attributes, ACLs and hard links.
/// Each part is `None` where the entry has none or the peer does not read it.
///
/// Stored and sent as a list of tagged parts ([`Part`]), so a later kind of metadata adds a
/// variant and what was written before it still decodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extra {
    /// Owner and group ids, as the peer that scanned the entry numbers them.
    pub owner: Option<Owner>,
    /// A hash of the entry's `user.*` extended attributes (names and values); none: it has
    /// none.
    pub xattrs: Option<[u8; 16]>,
    /// A hash of the entry's POSIX ACLs (access and default) beyond what its mode says.
    pub acl: Option<[u8; 16]>,
    /// For a name that shares its inode with others in the root: the first of those names in
    /// the root's order (the one the others are linked to).
    pub link: Option<WirePath>,
    /// A hash of its `trusted.*` and `security.*` attributes, read only where the scanning
    /// serve runs as root (none elsewhere, so a peer that cannot see them never differs).
    pub sys: Option<[u8; 16]>,
}

/// Owner and group of an entry: ids as the peer that scanned it numbers them, and (without
/// `--numeric-ids`) their names in that peer's `/etc/passwd` and `/etc/group`, by which peers
/// compare and set them (an id without a name there is taken as it is, as rsync does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The owning user's id.
    pub uid: u32,
    /// The owning group's id.
    pub gid: u32,
    /// The owning user's name, if it has one and names are compared.
    pub user: Option<String>,
    /// The owning group's name, if it has one and names are compared.
    pub group: Option<String>,
}

/// How owners compare across peers: by name where the scanning peer had one, else by id.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Who<'a> {
    /// By name.
    Name(&'a str),
    /// By number.
    Id(u32),
}

impl Owner {
    /// What identifies the owning user and group across peers.
    pub fn key(&self) -> (Who<'_>, Who<'_>) {
        fn who(n: &Option<String>, id: u32) -> Who<'_> {
            n.as_deref().map_or(Who::Id(id), Who::Name)
        }
        (who(&self.user, self.uid), who(&self.group, self.gid))
    }
}

/// One part of [`Extra`] as it is encoded. New variants go at the end: postcard numbers
/// variants by position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// [`Extra::owner`].
    Owner(Owner),
    /// [`Extra::xattrs`].
    Xattrs([u8; 16]),
    /// [`Extra::acl`].
    Acl([u8; 16]),
    /// [`Extra::link`].
    Link(WirePath),
    /// [`Extra::sys`].
    Sys([u8; 16]),
}

/// [`Part`] borrowed from an [`Extra`]: the same encoding, without a copy of the parts.
#[derive(Serialize)]
#[serde(rename = "Part")]
enum PartRef<'a> {
    Owner(&'a Owner),
    Xattrs(&'a [u8; 16]),
    Acl(&'a [u8; 16]),
    Link(&'a WirePath),
    Sys(&'a [u8; 16]),
}

impl Serialize for Extra {
    /// A list of [`Part`]s, those present, in variant order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // Destructured, so a field added to Extra without a part here does not compile.
        let Extra {
            owner,
            xattrs,
            acl,
            link,
            sys,
        } = self;
        let parts = [
            owner.as_ref().map(PartRef::Owner),
            xattrs.as_ref().map(PartRef::Xattrs),
            acl.as_ref().map(PartRef::Acl),
            link.as_ref().map(PartRef::Link),
            sys.as_ref().map(PartRef::Sys),
        ];
        let mut seq = s.serialize_seq(Some(parts.iter().flatten().count()))?;
        for p in parts.iter().flatten() {
            seq.serialize_element(p)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    /// A list of [`Part`]s in any order (a later one of a kind wins), read straight into
    /// their fields.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Extra, D::Error> {
        struct Parts;
        impl<'de> serde::de::Visitor<'de> for Parts {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of metadata parts")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Extra, A::Error> {
                let mut e = Extra::default();
                while let Some(p) = seq.next_element::<Part>()? {
                    match p {
                        Part::Owner(o) => e.owner = Some(o),
                        Part::Xattrs(h) => e.xattrs = Some(h),
                        Part::Acl(h) => e.acl = Some(h),
                        Part::Link(l) => e.link = Some(l),
                        Part::Sys(h) => e.sys = Some(h),
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_seq(Parts)
    }
}

impl Extra {
    /// Feeds every part to a fingerprint, tagged, so two different `Extra`s never feed the
    /// same bytes.
    pub fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        if let Some(o) = &self.owner {
            // By what peers compare, so peers numbering one user differently agree.
            for w in [o.key().0, o.key().1] {
                match w {
                    Who::Name(n) => {
                        h.update(b"n");
                        h.update(&(n.len() as u64).to_le_bytes());
                        h.update(n.as_bytes());
                    }
                    Who::Id(id) => {
                        h.update(b"o");
                        h.update(&id.to_le_bytes());
                    }
                }
            }
        }
        if let Some(x) = &self.xattrs {
            h.update(b"x");
            h.update(x);
        }
        if let Some(a) = &self.acl {
            h.update(b"a");
            h.update(a);
        }
        if let Some(l) = &self.link {
            h.update(b"l");
            h.update(&(l.as_bytes().len() as u64).to_le_bytes());
            h.update(l.as_bytes());
        }
        if let Some(x) = &self.sys {
            h.update(b"s");
            h.update(x);
        }
    }
}

/// An entry unchanged since the last sync, in brief: the client compares fingerprints across
/// peers and asks for the full entry only where they differ, so an in-sync tree costs a few
/// dozen bytes per entry on the wire and in the client's memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brief {
    /// Path relative to the root (never the root itself: that is always a full entry).
    pub rel: WirePath,
    /// [`fingerprint`] of the entry's content and version.
    pub fp: [u8; 16],
    /// Size in bytes (files; 0 otherwise), for `--max-size`.
    pub size: u64,
    /// A remembered deletion, not an entry held now.
    pub gone: bool,
}

/// A version vector: for each peer key that changed the entry's content, that peer's counter.
/// Sorted by key, no zero counters.
///
/// The few highest keys are no peer's ([`Field`]): under them the vector keeps the clock of
/// each metadata field's last change, so the state and the wire carry it with the version,
/// and an entry whose metadata never changed since its first sync pays nothing for it. They
/// never order versions ([`Vv::compare`]): metadata never makes a conflict, its newest change
/// wins field by field ([`Vv::stamp`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vv(pub Vec<(u64, u64)>);

/// A metadata field whose changes are judged on their own: each has a key of its own in the
/// [`Vv`], above every peer's, under which the vector keeps when it last changed (ms since the
/// epoch, by the status-change clock of the host that saw the change, kept unique per entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The permission bits.
    Mode,
    /// The modification time.
    Mtime,
    /// [`Extra::link`]: which name of the root a file shares its inode with. A metadata
    /// field, not content: making or breaking a link between names of the same content
    /// copies no byte, and two peers that differ in it never conflict.
    Link,
    /// The extended attributes ([`Extra::xattrs`]).
    Xattrs,
    /// The POSIX ACLs ([`Extra::acl`]).
    Acl,
    /// Owner and group ([`Extra::owner`]).
    Owner,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 6] = [
        Field::Mode,
        Field::Mtime,
        Field::Xattrs,
        Field::Acl,
        Field::Owner,
        Field::Link,
    ];

    /// The lowest key a field may use: peer keys stay below it ([`Vv::is_field_key`]).
    pub const FIRST_KEY: u64 = u64::MAX - 15;

    /// Its key in a [`Vv`].
    pub fn key(self) -> u64 {
        match self {
            Field::Mode => u64::MAX,
            Field::Mtime => u64::MAX - 1,
            Field::Link => u64::MAX - 5,
            Field::Xattrs => u64::MAX - 2,
            Field::Acl => u64::MAX - 3,
            Field::Owner => u64::MAX - 4,
        }
    }

    /// Its name, as `-v` and `--json` say it.
    pub fn name(self) -> &'static str {
        match self {
            Field::Mode => "mode",
            Field::Mtime => "mtime",
            Field::Link => "link",
            Field::Xattrs => "xattrs",
            Field::Acl => "acl",
            Field::Owner => "owner",
        }
    }

    /// Whether the field differs between two entries of the same kind (a symlink has no mode
    /// of its own). An owner differs only where both sides read one: a peer that is not root
    /// reads none, and never takes one.
    pub fn differs(self, a: &Meta, b: &Meta) -> bool {
        match self {
            Field::Mode => !matches!(a.kind, Kind::Symlink(_)) && a.mode != b.mode,
            Field::Mtime => a.mtime != b.mtime,
            Field::Link => a.extra.link != b.extra.link,
            Field::Xattrs => {
                a.extra.xattrs != b.extra.xattrs
                    || matches!((a.extra.sys, b.extra.sys), (Some(x), Some(y)) if x != y)
            }
            Field::Acl => a.extra.acl != b.extra.acl,
            Field::Owner => match (&a.extra.owner, &b.extra.owner) {
                (Some(x), Some(y)) => x.key() != y.key(),
                _ => false,
            },
        }
    }

    /// Whether `m` has a value of the field: of changes equally old (a first sync), a value
    /// wins over none, so a peer that reads or holds none takes nothing away.
    pub fn has(self, m: &Meta) -> bool {
        match self {
            // No link is a value too: a file of its own.
            Field::Mode | Field::Mtime | Field::Link => true,
            Field::Xattrs => m.extra.xattrs.is_some(),
            Field::Acl => m.extra.acl.is_some(),
            Field::Owner => m.extra.owner.is_some(),
        }
    }

    /// Takes the field's value from `from` into `to`.
    pub fn take(self, to: &mut Meta, from: &Meta) {
        match self {
            Field::Mode => to.mode = from.mode,
            Field::Mtime => to.mtime = from.mtime,
            Field::Link => to.extra.link = from.extra.link.clone(),
            Field::Xattrs => {
                to.extra.xattrs = from.extra.xattrs;
                if from.extra.sys.is_some() {
                    to.extra.sys = from.extra.sys;
                }
            }
            Field::Acl => to.extra.acl = from.extra.acl,
            Field::Owner => {
                if from.extra.owner.is_some() {
                    to.extra.owner = from.extra.owner.clone();
                }
            }
        }
    }
}

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The same history.
    Equal,
    /// The left one is strictly older: every counter ≤, one <.
    Before,
    /// The left one is strictly newer.
    After,
    /// Neither contains the other: changed independently.
    Concurrent,
}

impl Vv {
    /// Whether this vector is one synk makes: keys strictly ascending, as every lookup's
    /// binary search needs (a peer's made-up order would have them miss counters).
    pub fn is_sound(&self) -> bool {
        self.0.windows(2).all(|w| w[0].0 < w[1].0)
    }

    /// The counter of `key` (0 when absent).
    pub fn get(&self, key: u64) -> u64 {
        self.0
            .binary_search_by_key(&key, |(k, _)| *k)
            .map(|i| self.0[i].1)
            .unwrap_or(0)
    }

    /// This vector with `key`'s counter moved past both its current value and `now_ms`: the
    /// clock only keeps counters unique across crashes, it never orders peers.
    pub fn bumped(&self, key: u64, now_ms: u64) -> Vv {
        let next = self.get(key).saturating_add(1).max(now_ms);
        let mut v = self.0.clone();
        match v.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => v[i].1 = next,
            Err(i) => v.insert(i, (key, next)),
        }
        Vv(v)
    }

    /// The least vector that contains both.
    pub fn join(&self, other: &Vv) -> Vv {
        let mut out: BTreeMap<u64, u64> = self.0.iter().copied().collect();
        for (k, c) in &other.0 {
            let e = out.entry(*k).or_default();
            *e = (*e).max(*c);
        }
        Vv(out.into_iter().collect())
    }

    /// Whether `key` is a [`Field`]'s, not a peer's.
    pub fn is_field_key(key: u64) -> bool {
        key >= Field::FIRST_KEY
    }

    /// When `field` last changed (0: never since the entry's first sync).
    pub fn stamp(&self, field: Field) -> u64 {
        self.get(field.key())
    }

    /// This vector with `field`'s change clock moved past both its current value and `at_ms`
    /// (the change's time on the host that saw it).
    pub fn stamped(&self, field: Field, at_ms: u64) -> Vv {
        self.bumped(field.key(), at_ms)
    }

    /// Compares two content histories: the [`Field`] clocks never order versions.
    pub fn compare(&self, other: &Vv) -> Order {
        let (mut less, mut more) = (false, false);
        let keys = self
            .0
            .iter()
            .chain(other.0.iter())
            .map(|(k, _)| *k)
            .filter(|k| !Vv::is_field_key(*k));
        for k in keys {
            match self.get(k).cmp(&other.get(k)) {
                Ordering::Less => less = true,
                Ordering::Greater => more = true,
                Ordering::Equal => {}
            }
        }
        match (less, more) {
            (false, false) => Order::Equal,
            (true, false) => Order::Before,
            (false, true) => Order::After,
            (true, true) => Order::Concurrent,
        }
    }
}

/// Milliseconds since the epoch, for [`Vv::bumped`].
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What synk compares to decide whether two versions are the same: kind, and the digest of
/// files and symlinks. Mode and mtime travel with a version but do not make a new one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Content {
    /// A directory.
    Dir,
    /// A file with this SHA-512.
    File(Digest),
    /// A symlink with this target.
    Symlink(WirePath),
    /// Deleted.
    Gone,
}

impl Content {
    /// The content of an entry's metadata (`None`: deleted).
    pub fn of(meta: Option<&Meta>) -> Content {
        match meta {
            None => Content::Gone,
            Some(m) => match &m.kind {
                Kind::Dir => Content::Dir,
                Kind::Symlink(t) => Content::Symlink(t.clone()),
                Kind::File => Content::File(m.digest.unwrap_or(Digest([0; 64]))),
                Kind::Special => Content::Gone,
            },
        }
    }
}

/// A 128-bit fingerprint of what decides whether two peers hold the same version of an
/// entry: its [`Content`] and its version vector. Equal fingerprints on every peer mean the
/// entry is in sync (see [`Brief`]); each field is length- or tag-prefixed so
/// no two different inputs feed the hasher the same bytes.
pub fn fingerprint(content: &Content, vv: &Vv) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    match content {
        Content::Dir => h.update(b"d"),
        Content::File(d) => {
            h.update(b"f");
            h.update(&d.0);
        }
        Content::Symlink(t) => {
            h.update(b"l");
            h.update(&(t.as_bytes().len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        Content::Gone => h.update(b"g"),
    }
    h.update(&(vv.0.len() as u64).to_le_bytes());
    for (k, c) in &vv.0 {
        h.update(&k.to_le_bytes());
        h.update(&c.to_le_bytes());
    }
    h.digest128().to_le_bytes()
}

/// The fingerprint of an entry a peer sends in brief with its history: [`fingerprint`] of its
/// content and version (with its metadata clocks), and its mode and mtime, so two peers that
/// hold the same content with the same history but different metadata are never taken as in
/// sync. `None`: a remembered deletion.
pub fn fingerprint_held(meta: Option<&Meta>, vv: &Vv) -> [u8; 16] {
    let content = fingerprint(&Content::of(meta), vv);
    let Some(m) = meta else {
        return content;
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"held");
    h.update(&content);
    h.update(&m.mode.to_le_bytes());
    h.update(&m.mtime.to_le_bytes());
    m.extra.hash_into(&mut h);
    h.digest128().to_le_bytes()
}

/// The fingerprint of an entry a peer has no history of (a first sync): its kind, content,
/// size, mode and mtime, tagged apart from [`fingerprint`]'s. Peers that all hold an entry
/// with the same one hold the same thing and need nothing but a record (which each makes
/// itself, with an empty version vector, as the decision would).
pub fn fingerprint_new(meta: &Meta) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"new");
    let content = fingerprint(&Content::of(Some(meta)), &Vv::default());
    h.update(&content);
    h.update(&meta.size.to_le_bytes());
    h.update(&meta.mode.to_le_bytes());
    h.update(&meta.mtime.to_le_bytes());
    meta.extra.hash_into(&mut h);
    h.digest128().to_le_bytes()
}

#[cfg(test)]
impl Meta {
    /// A directory's metadata as a peer would send it (mode 755, time 0), for tests.
    pub(crate) fn test_dir() -> Meta {
        Meta {
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            mtime: 0,
            digest: None,
            extra: Default::default(),
        }
    }
}

/// One entry as a peer held it after a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Path below the root.
    pub rel: WirePath,
    /// The entry's metadata, or `None` for a deletion that was synced (a tombstone), so a peer
    /// that missed the sync is told to delete rather than asked to bring the entry back.
    pub meta: Option<Meta>,
    /// Its version.
    pub vv: Vv,
}

/// The version of an entry this peer holds as `meta`, given its record `base`, and whether it
/// changed since: a new content counts under the peer's `key` (at `now_ms`), and each metadata
/// field that differs from the record moves that field's clock to its change time (`ctime_ms`,
/// when the inode last changed here), so the newest change of each field wins everywhere.
pub fn next_version(
    base: &Record,
    meta: &Meta,
    key: u64,
    now_ms: u64,
    ctime_ms: u64,
) -> (Vv, bool) {
    let Some(old) = base.meta.as_ref() else {
        return (base.vv.bumped(key, now_ms), true);
    };
    let mut vv = base.vv.clone();
    let mut changed = false;
    if Content::of(Some(old)) != Content::of(Some(meta)) {
        vv = vv.bumped(key, now_ms);
        changed = true;
    }
    // Only between entries of one kind: another kind is a new content, whose fields are its own.
    if std::mem::discriminant(&old.kind) == std::mem::discriminant(&meta.kind) {
        for f in Field::ALL.into_iter().filter(|f| f.differs(old, meta)) {
            vv = vv.stamped(f, ctime_ms);
            changed = true;
        }
    }
    (vv, changed)
}

/// Why a version was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Why {
    /// A copy replaced it.
    Overwritten,
    /// A synced deletion removed it.
    Deleted,
    /// It lost a conflict (it also stays in the tree under a conflict name).
    Conflict,
}

/// One kept version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The absolute path the version had.
    pub path: WirePath,
    /// Its object's name in the store.
    pub id: String,
    /// Its metadata when it was kept.
    pub meta: Meta,
    /// When it was replaced (ns since the epoch, this peer's clock).
    pub replaced: i64,
    /// Why it was kept.
    pub why: Why,
}

/// A peer's role in its group (`--send-only`, `--receive-only`, `--no-delete`, or the same
/// words on a synk.conf `peer` line): what it sends and what it takes. The default is a
/// normal peer, which does both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Role {
    /// Its changes and deletions go to the others; nothing another peer does changes it.
    pub send_only: bool,
    /// It takes every change; its own changes never travel, they are reverted.
    pub receive_only: bool,
    /// Deletions decided elsewhere never reach it.
    pub no_delete: bool,
}

impl Role {
    /// Every role word, as the command line and synk.conf spell it.
    pub const WORDS: [&'static str; 3] = ["send-only", "receive-only", "no-delete"];

    /// Adds the role `word` names; false when it names none.
    pub fn add(&mut self, word: &str) -> bool {
        match word {
            "send-only" => self.send_only = true,
            "receive-only" => self.receive_only = true,
            "no-delete" => self.no_delete = true,
            _ => return false,
        }
        true
    }

    /// Both roles' words together.
    pub fn with(mut self, other: Role) -> Role {
        self.send_only |= other.send_only;
        self.receive_only |= other.receive_only;
        self.no_delete |= other.no_delete;
        self
    }

    /// Its words, in [`Role::WORDS`] order; none for a normal peer.
    pub fn words(&self) -> Vec<&'static str> {
        let on = [self.send_only, self.receive_only, self.no_delete];
        Self::WORDS
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(w, _)| *w)
            .collect()
    }

    /// Whether its versions may win anywhere: every peer's but a receive-only one's.
    pub fn sends(&self) -> bool {
        !self.receive_only
    }
}

/// How long kept versions stay (synk.conf(5) `keep-versions`, `keep-days`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Versions kept per path at most (0: no limit).
    pub versions: u32,
    /// Days a version is kept at least (0: no limit by age).
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            versions: 10,
            days: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_encodes_as_the_list_of_its_parts_and_reads_any_order() {
        let full = Extra {
            owner: Some(Owner {
                uid: 7,
                gid: 8,
                user: Some("ann".into()),
                group: None,
            }),
            xattrs: Some([1; 16]),
            acl: Some([2; 16]),
            link: Some(WirePath::from("a/b")),
            sys: Some([3; 16]),
        };
        let parts = |e: &Extra| {
            let mut v = Vec::new();
            v.extend(e.owner.clone().map(Part::Owner));
            v.extend(e.xattrs.map(Part::Xattrs));
            v.extend(e.acl.map(Part::Acl));
            v.extend(e.link.clone().map(Part::Link));
            v.extend(e.sys.map(Part::Sys));
            v
        };
        let some = Extra {
            acl: Some([4; 16]),
            ..Extra::default()
        };
        for e in [full.clone(), some, Extra::default()] {
            let bytes = postcard::to_stdvec(&e).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&parts(&e)).unwrap());
            assert_eq!(postcard::from_bytes::<Extra>(&bytes).unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, serde_json::to_string(&parts(&e)).unwrap());
            assert_eq!(serde_json::from_str::<Extra>(&json).unwrap(), e);
        }
        let mut backwards = parts(&full);
        backwards.reverse();
        let bytes = postcard::to_stdvec(&backwards).unwrap();
        assert_eq!(postcard::from_bytes::<Extra>(&bytes).unwrap(), full);
    }

    fn vv(pairs: &[(u64, u64)]) -> Vv {
        Vv(pairs.to_vec())
    }

    #[test]
    fn vectors_order_by_causality() {
        let a = vv(&[(1, 5)]);
        let b = vv(&[(1, 5), (2, 1)]);
        let c = vv(&[(1, 6)]);
        assert_eq!(a.compare(&a), Order::Equal);
        assert_eq!(a.compare(&b), Order::Before);
        assert_eq!(b.compare(&a), Order::After);
        assert_eq!(b.compare(&c), Order::Concurrent);
        assert_eq!(Vv::default().compare(&a), Order::Before);
        assert_eq!(b.join(&c), vv(&[(1, 6), (2, 1)]));
    }

    #[test]
    fn fingerprints_tell_content_and_history_apart() {
        let d = |b: u8| Content::File(Digest([b; 64]));
        let h = vv(&[(1, 5)]);
        let fp = fingerprint(&d(1), &h);
        assert_eq!(fp, fingerprint(&d(1), &vv(&[(1, 5)])), "stable");
        let others = [
            fingerprint(&d(2), &h),
            fingerprint(&d(1), &vv(&[(1, 6)])),
            fingerprint(&d(1), &vv(&[(1, 5), (2, 1)])),
            fingerprint(&Content::Gone, &h),
            fingerprint(&Content::Dir, &h),
            fingerprint(&Content::Symlink(WirePath(b"f".to_vec())), &h),
            fingerprint(&Content::Symlink(WirePath(b"g".to_vec())), &h),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&fp, o, "case {i}");
        }
        // Fixed across builds and hosts: peers compare them.
        let pinned: String = fingerprint(&d(7), &vv(&[(3, 9)]))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(pinned, "b88746c401ed62a6c5bcef914a79f845");
    }

    #[test]
    fn a_brief_tells_metadata_apart() {
        let m = Meta {
            kind: Kind::File,
            size: 1,
            mode: 0o644,
            mtime: 10,
            digest: Some(Digest([1; 64])),
            extra: Default::default(),
        };
        let h = vv(&[(1, 5)]);
        let fp = fingerprint_held(Some(&m), &h);
        assert_eq!(fp, fingerprint_held(Some(&m.clone()), &h));
        let chmod = Meta {
            mode: 0o600,
            ..m.clone()
        };
        let touch = Meta {
            mtime: 11,
            ..m.clone()
        };
        assert_ne!(fp, fingerprint_held(Some(&chmod), &h));
        assert_ne!(fp, fingerprint_held(Some(&touch), &h));
        assert_ne!(fp, fingerprint_held(Some(&m), &h.stamped(Field::Mode, 3)));
        assert_eq!(
            fingerprint_held(None, &h),
            fingerprint(&Content::Gone, &h),
            "a remembered deletion"
        );
    }

    #[test]
    fn field_clocks_never_order_versions() {
        let base = vv(&[(1, 5)]);
        let chmod = base.stamped(Field::Mode, 900);
        assert_eq!(chmod.stamp(Field::Mode), 900);
        assert_eq!(chmod.stamp(Field::Mtime), 0);
        assert_eq!(
            chmod.compare(&base),
            Order::Equal,
            "metadata is no new content"
        );
        let edit = base.bumped(2, 10);
        assert_eq!(chmod.compare(&edit), Order::Before);
        assert_eq!(
            edit.join(&chmod).stamp(Field::Mode),
            900,
            "kept by the join"
        );
        assert_ne!(chmod, base, "yet another version");
        assert!(Vv::is_field_key(Field::Mtime.key()) && !Vv::is_field_key(u64::MAX - 16));
        // A peer's absurd clock is no overflow.
        assert_eq!(
            vv(&[(u64::MAX, u64::MAX)])
                .stamped(Field::Mode, 1)
                .stamp(Field::Mode),
            u64::MAX
        );
    }

    #[test]
    fn a_scan_tells_content_and_each_field_apart() {
        let file = |d: u8, mode: u32, mtime: i64| Meta {
            kind: Kind::File,
            size: 1,
            mode,
            mtime,
            digest: Some(Digest([d; 64])),
            extra: Default::default(),
        };
        let base = Record {
            rel: WirePath::from("f"),
            meta: Some(file(1, 0o644, 10)),
            vv: vv(&[(1, 5)]),
        };
        let key = 3;
        let same = next_version(&base, &file(1, 0o644, 10), key, 100, 200);
        assert_eq!(same, (base.vv.clone(), false));
        let (v, changed) = next_version(&base, &file(1, 0o755, 10), key, 100, 200);
        assert!(changed);
        assert_eq!(
            (v.get(key), v.stamp(Field::Mode), v.stamp(Field::Mtime)),
            (0, 200, 0)
        );
        let (v, _) = next_version(&base, &file(1, 0o644, 11), key, 100, 200);
        assert_eq!(
            (v.get(key), v.stamp(Field::Mode), v.stamp(Field::Mtime)),
            (0, 0, 200)
        );
        let (v, _) = next_version(&base, &file(2, 0o600, 11), key, 100, 200);
        assert_eq!(
            (v.get(key), v.stamp(Field::Mode), v.stamp(Field::Mtime)),
            (100, 200, 200)
        );
        let gone = Record { meta: None, ..base };
        let (v, changed) = next_version(&gone, &file(1, 0o644, 10), key, 100, 200);
        assert!(changed && v.get(key) == 100 && v.stamp(Field::Mode) == 0);
    }

    #[test]
    fn only_vectors_synk_makes_are_sound() {
        let now = 1_765_000_000_000;
        assert!(vv(&[]).is_sound());
        assert!(vv(&[(1, now), (7, 1), (Field::Mode.key(), now)]).is_sound());
        for made_up in [vv(&[(7, 1), (1, now)]), vv(&[(1, 1), (1, 2)])] {
            assert!(!made_up.is_sound(), "{made_up:?}");
        }
        // What bumps and joins make stays sound.
        let made = vv(&[(7, 1)]).bumped(1, now).join(&vv(&[(3, 2), (9, 9)]));
        assert!(made.stamped(Field::Acl, now).is_sound(), "{made:?}");
    }

    #[test]
    fn bumps_move_past_the_clock_and_the_old_counter() {
        let v = vv(&[(3, 100)]);
        assert_eq!(v.bumped(3, 50), vv(&[(3, 101)]));
        assert_eq!(v.bumped(3, 500), vv(&[(3, 500)]));
        assert_eq!(v.bumped(1, 7), vv(&[(1, 7), (3, 100)]));
    }

    #[test]
    fn roles_read_and_say_their_words() {
        let mut r = Role::default();
        assert!(r.words().is_empty() && r.sends());
        assert!(r.add("no-delete") && r.add("receive-only"));
        assert!(!r.add("read-only"));
        assert_eq!(r.words(), ["receive-only", "no-delete"]);
        assert!(!r.sends());
        let s = Role {
            send_only: true,
            ..Role::default()
        };
        assert_eq!(s.with(r).words(), Role::WORDS);
    }

    #[test]
    fn digest_short_form() {
        let d = Digest::of(b"");
        assert_eq!(d.short(), "cf83e13");
        assert_eq!(d.hex().len(), 128);
    }
}
