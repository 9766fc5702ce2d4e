//! Keeping what is replaced or deleted: an entry leaves the tree only into the version store,
//! a conflict's losing version is renamed and kept, and a file this peer already holds is
//! cloned locally instead of sent. Every step first checks that the entry is still the
//! version the decision saw: one the user saved meanwhile is left for the next run.

use std::io::{Read, Write};

use sha2::Digest as _;

use super::root::RootCtx;
use super::write::refuse_directory;
use super::{Fail, OpResult, Server};
use crate::beneath::{kind_of, At, Expect, Stamp, Temp};
use crate::model::{Digest, Kind, Meta, Why};
use crate::paths::WirePath;
use crate::proto::CHUNK;
use crate::scan::{self, MODE_BITS};
use crate::versions::{Store, Take};

/// Why the entry at `at` was not kept: changed while the store got ready for it (left for
/// the next run, as [`Server::still`] leaves one), or an error.
fn not_kept(at: &At, e: std::io::Error) -> Fail {
    let shown = at.shown().display();
    if e.get_ref()
        .is_some_and(|i| i.is::<crate::versions::Changed>())
    {
        Fail::Changed(format!(
            "{shown}: changed since the scan (saved meanwhile?); left for the next run"
        ))
    } else {
        Fail::Error(format!("{shown}: {e}"))
    }
}

/// What stands at `at` now: its stamp and kind (`None`: nothing).
fn standing(at: &At) -> Result<Option<(Stamp, rustix::fs::FileType)>, Fail> {
    let st = at.lstat().map_err(|e| Fail::Error(e.to_string()))?;
    Ok(st.map(|st| (Stamp::of(&st), kind_of(&st))))
}

impl Server {
    /// The version store, or why there is none.
    pub(super) fn store(&self) -> Result<&Store, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "this peer has no state directory to keep versions in".to_string())
    }

    /// The metadata of entry `rel`, provided it is still the version the decision saw (the
    /// same stamp as the scan's, or as this session left it): one changed since (the user
    /// saved it meanwhile) is left for the next run, never kept, replaced or deleted under a
    /// description that is no longer true. An entry the scan did not report is described as
    /// it is now.
    fn still(ctx: &RootCtx, rel: &WirePath, at: &At, now: Stamp) -> Result<Meta, Fail> {
        let same = match ctx.expect(rel) {
            Expect::Same(id) => now.id() == id,
            Expect::Absent => false,
        };
        match ctx.meta(rel) {
            Some(m) if same => Ok(m),
            Some(_) => Err(Fail::Changed(format!(
                "{}: changed since the scan (saved meanwhile?); left for the next run",
                at.shown().display()
            ))),
            None => {
                let md = std::fs::symlink_metadata(at.shown());
                md.map_err(|e| e.to_string())
                    .and_then(|md| scan::describe(at.shown(), &md))
                    .map_err(|e| Fail::Error(format!("{}: {e}", at.shown().display())))
            }
        }
    }

    /// Keeps the entry at `at` as `meta` describes it, provided it still has the stamp `now`
    /// when it is taken ([`Store::keep_at`]).
    fn keep_still(&self, at: &At, meta: &Meta, why: Why, take: Take, now: Stamp) -> OpResult {
        self.store()?
            .keep_at(at, at.shown(), meta, why, take, Some(now.id()))
            .map(drop)
            .map_err(|e| not_kept(at, e))
    }

    /// Takes an entry out of the tree: files and symlinks into the version store, empty
    /// directories removed. Gone already is fine.
    pub(super) fn remove(&self, root: u32, rel: &WirePath, deleted: bool) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, false)?;
        ctx.touching(rel);
        let Some((now, kind)) = standing(&at)? else {
            return Ok(());
        };
        if kind == rustix::fs::FileType::Directory {
            // What a killed run left there is not the user's: it never keeps a directory alive.
            if let Ok(dir) = ctx
                .dir()
                .and_then(|d| d.dir(rel.as_bytes()).map_err(|e| e.to_string()))
            {
                if let Ok(list) = rustix::fs::Dir::read_from(&dir) {
                    for e in list.flatten() {
                        crate::beneath::remove_if_stale(
                            std::os::fd::AsFd::as_fd(&dir),
                            e.file_name().to_bytes(),
                        );
                    }
                }
            }
            return at.rmdir().map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOTEMPTY) {
                    Fail::Error(format!(
                        "{}: directory holds entries this sync did not expect; kept",
                        at.shown().display()
                    ))
                } else {
                    Fail::Error(e.to_string())
                }
            });
        }
        let meta = Self::still(ctx, rel, &at, now)?;
        let why = if deleted {
            Why::Deleted
        } else {
            Why::Overwritten
        };
        self.keep_still(&at, &meta, why, Take::Move, now)?;
        at.sync_dir();
        ctx.now_at(rel, None);
        ctx.inode_moved(rel, now);
        Ok(())
    }

    /// Gives a conflict's losing version another name, keeping it in the store as well.
    pub(super) fn rename(&self, root: u32, rel: &WirePath, to: &WirePath) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, false)?;
        let dest = ctx.at(to, false)?;
        ctx.touching(rel);
        ctx.touching(to);
        let Some((now, _)) = standing(&at)? else {
            return Err(Fail::Error(format!("{}: gone", at.shown().display())));
        };
        let meta = Self::still(ctx, rel, &at, now)?;
        if meta.kind != Kind::Dir {
            self.keep_still(&at, &meta, Why::Conflict, Take::Link, now)?;
        }
        // The name must be free: a conflict copy never replaces anything.
        let stamp = at
            .rename_over(&dest, Some(Expect::Absent))
            .map_err(|e| match e {
                crate::beneath::Refused::Changed(p) => Fail::Error(format!(
                    "{}: exists already; conflict copy not made",
                    p.display()
                )),
                other => other.into(),
            })?;
        dest.sync_dir();
        ctx.now_at(rel, None);
        ctx.placed(to, stamp.id());
        ctx.inode_moved(rel, now);
        Ok(())
    }

    /// Keeps the current versions of entries that copies are about to replace.
    pub(super) fn keep(&self, root: u32, rels: &[WirePath]) -> OpResult {
        let ctx = self.ctx(root)?;
        for rel in rels {
            let at = ctx.at(rel, false)?;
            let Some((now, kind)) = standing(&at)? else {
                continue;
            };
            if !matches!(
                kind,
                rustix::fs::FileType::RegularFile | rustix::fs::FileType::Symlink
            ) {
                continue;
            }
            let meta = Self::still(ctx, rel, &at, now)?;
            self.keep_still(&at, &meta, Why::Overwritten, Take::Link, now)?;
            // A hard link moves the ctime: the copy that follows must expect that, and so
            // must steps on the other names of the same file.
            if let Some((after, _)) = standing(&at)? {
                if after.ino == now.ino && after.size == now.size && after.mtime == now.mtime {
                    ctx.now_at(rel, Some(after.id()));
                }
            }
            ctx.inode_moved(rel, now);
        }
        Ok(())
    }

    /// Makes `rel` a hard link to `to`, which must still be the file the scan saw or this
    /// session placed, with `meta`'s size, mode and mtime: the plan decided that it holds
    /// `meta`'s content. A filesystem without hard links gets a verified local copy.
    pub(super) fn link(&self, root: u32, to: &WirePath, rel: &WirePath, meta: &Meta) -> OpResult {
        let ctx = self.ctx(root)?;
        let src = ctx.at(to, false)?;
        let dest = ctx.at(rel, true)?;
        refuse_directory(&dest)?;
        ctx.touching(rel);
        let changed = || {
            Fail::Changed(format!(
                "{}: not the version to link to; {} left for the next run",
                src.shown().display(),
                dest.shown().display()
            ))
        };
        let Some((before, kind)) = standing(&src)? else {
            return Err(changed());
        };
        let holds = ctx.holds();
        // Placed by this session with its decided version, or as the scan saw it with the
        // digest wanted.
        let known = ctx.placed_id(to) == Some(before.id())
            || ctx.meta(to).is_some_and(|m| m.digest == meta.digest);
        let same = kind == rustix::fs::FileType::RegularFile
            && known
            && ctx.expect(to) == Expect::Same(before.id())
            && before.size == meta.size
            && holds.same_time(before.mtime, meta.mtime)
            && meta.kind == Kind::File;
        if !same {
            return Err(changed());
        }
        if let Some((there, _)) = standing(&dest)? {
            if (there.dev, there.ino) == (before.dev, before.ino) {
                ctx.linked(rel, to);
                ctx.placed(rel, there.id());
                return Ok(());
            }
        }
        let linked = if holds.hard_links {
            src.link_over(&dest, Some(ctx.expect(rel)))
        } else {
            Err(crate::beneath::Refused::Io(
                std::io::ErrorKind::Unsupported.into(),
            ))
        };
        if linked.is_err() {
            // The link was made under a temp name and taken back: the ctime moved anyway.
            ctx.inode_moved(to, before);
        }
        let stamp = match linked {
            Ok(stamp) => stamp,
            Err(crate::beneath::Refused::Io(e)) if no_links_here(&e) => {
                let digest = meta.digest.ok_or_else(changed)?;
                let tmp = copy_to_temp(&src, &dest, &digest)?;
                let stamp = tmp.place(
                    &dest,
                    meta.mode & MODE_BITS,
                    meta.mtime,
                    Some(ctx.expect(rel)),
                )?;
                ctx.placed(rel, stamp.id());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // What stood at `rel` lost that name first, then `rel` joins `to`'s names.
        ctx.placed(rel, stamp.id());
        ctx.linked(rel, to);
        ctx.inode_moved(rel, before);
        Ok(())
    }

    /// Copies a file this peer holds to another entry, verified against `digest`.
    pub(super) fn clone_local(
        &self,
        root: u32,
        from: &WirePath,
        rel: &WirePath,
        mode: u32,
        mtime: i64,
        digest: Digest,
    ) -> OpResult {
        let ctx = self.ctx(root)?;
        let src = ctx.at(from, false)?;
        let dest = ctx.at(rel, true)?;
        refuse_directory(&dest)?;
        let before = standing(&dest)?;
        let tmp = copy_to_temp(&src, &dest, &digest)?;
        let stamp = tmp.place(&dest, mode & MODE_BITS, mtime, Some(ctx.expect(rel)))?;
        ctx.placed(rel, stamp.id());
        // A name that was linked to others is a file of its own now (a link broken).
        if let Some((before, _)) = before {
            ctx.inode_moved(rel, before);
            ctx.unlinked(rel);
        }
        Ok(())
    }
}

/// The filesystem (or its mount) refuses hard links (EPERM, EOPNOTSUPP, ENOSYS, EMLINK,
/// EXDEV; the message in front of it keeps only its kind).
fn no_links_here(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::PermissionDenied | K::Unsupported | K::TooManyLinks | K::CrossesDevices
    )
}

/// Copies the file at `src` into a locked temp file beside `dest`, checking the bytes against
/// `digest`. Its holes stay holes (`SEEK_DATA`, `SEEK_HOLE`): a sparse image cloned or relinked
/// on a peer costs that peer its data, not its size.
pub(super) fn copy_to_temp(src: &At, dest: &At, digest: &Digest) -> Result<Temp, Fail> {
    use rustix::fs::{seek, SeekFrom};
    use std::io::Seek;
    let err = |at: &At, e: std::io::Error| Fail::Error(format!("{}: {e}", at.shown().display()));
    let mut tmp = dest.temp().map_err(|e| Fail::Error(e.to_string()))?;
    let mut f = src.open_read().map_err(|e| Fail::Error(e.to_string()))?;
    let size = f.metadata().map_err(|e| err(src, e))?.len();
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < size {
        // Where the next data is (a filesystem that cannot tell: here), and where it ends.
        let data = match seek(&f, SeekFrom::Data(offset)) {
            Ok(d) => d.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => offset,
        };
        for at in (offset..data).step_by(CHUNK) {
            hasher.update(&crate::proto::ZEROS[..(data - at).min(CHUNK as u64) as usize]);
        }
        offset = data;
        if offset >= size {
            break;
        }
        let end = seek(&f, SeekFrom::Hole(offset)).map_or(size, |h| h.min(size));
        f.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| err(src, e))?;
        let out = tmp.file_mut();
        out.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| err(dest, e))?;
        while offset < end {
            let want = (end - offset).min(CHUNK as u64) as usize;
            let n = f.read(&mut buf[..want]).map_err(|e| err(src, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| err(dest, e))?;
            offset += n as u64;
        }
        if offset < end {
            // Shorter than it said: changed, as the digest will tell.
            break;
        }
    }
    // A hole at the end is the file's length.
    tmp.file_mut().set_len(offset).map_err(|e| err(dest, e))?;
    if Digest::from_hasher(hasher) != *digest {
        return Err(Fail::Changed(format!(
            "{}: changed since the scan; not copied",
            src.shown().display()
        )));
    }
    Ok(tmp)
}
