//! rsync's staging area: rsync writes a root's copies into a scratch directory of the root's
//! own, never into the tree, and the serve moves into place only the names the client's plan
//! gave it, each only if it arrived complete and the entry it replaces is still the version
//! the decision saw. Whatever else rsync (or the peer feeding it) wrote there is removed.
//!
//! The scratch directory is made here, through the base's directory handle, and checked to be
//! a real directory this user owns; it is locked while the session uses it, so a scan
//! elsewhere never takes it for a killed run's debris.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use std::fs::File;
use std::io;

use super::write::refuse_directory;
use super::{msg, Fail, OpResult, Server};

use crate::beneath::{self, kind_of, partial, Beneath};
use crate::model::Digest;
use crate::model::Record;
use crate::names;
use crate::paths::WirePath;
use crate::proto::{Placement, Placing};
use crate::scan::MODE_BITS;

impl Server {
    /// The directory rsync's names are relative to for root `root`: the root itself where it
    /// is a directory, else its parent.
    pub(super) fn rsync_base(&self, root: u32, dir: bool) -> Result<&Beneath, String> {
        let ctx = self.ctx(root)?;
        if dir {
            ctx.dir()
        } else {
            ctx.parent(false)
        }
    }

    /// Answers [`crate::proto::Request::Prepare`]: the root's parents, the root itself where
    /// it is a directory, and an empty scratch directory in its base, held locked until the
    /// session ends. Returns the scratch directory's name.
    pub(super) fn prepare(&mut self, root: u32, dir: bool) -> Result<WirePath, Fail> {
        // Prepared already this session (the streaming copier's resumable copies use it too).
        let ctx = self.ctx_mut(root)?;
        if let Some((name, _, was_dir)) = &ctx.scratch {
            if *was_dir == dir {
                let name = WirePath(name.clone());
                // rsync uses it now: its Cleanup releases it, not the end of a streamed copy.
                ctx.scratch_for_stream = false;
                return Ok(name);
            }
            return Err(Fail::Error(format!(
                "{}: scratch directory prepared for another kind of root",
                ctx.abs.display()
            )));
        }
        let seed = {
            let ctx = self.ctx(root)?;
            if dir {
                let at = ctx.at(&WirePath::default(), true)?;
                at.mkdir(0o755).map_err(|e| Fail::Error(e.to_string()))?;
                // The scratch directory comes and goes in the root: no change to the root.
                ctx.note_dir(WirePath::default());
            } else {
                ctx.parent(true)?;
            }
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&self.key.to_le_bytes());
            h.update(ctx.abs.as_os_str().as_encoded_bytes());
            h.digest()
        };
        let name = names::scratch_name(seed);
        let base = self.rsync_base(root, dir)?;
        let fd = scratch_dir(base, &name)?;
        let shown = |e: &dyn std::fmt::Display| {
            Fail::Error(format!("{}: {e}", base.shown(&name).display()))
        };
        // A receiver of a run cut short may still be writing its temp file, or renaming it to
        // the partial file this run resumes from: that partial file is waited for. The
        // debris goes first (but rsync's temp files), so the wait looks at little.
        partial::clear_inside(fd.as_fd(), false).map_err(|e| shown(&e))?;
        if !partial::wait_for_receivers(fd.as_fd(), partial::RECEIVER_WAIT)
            .map_err(|e| shown(&e))?
        {
            tracing::warn!(
                "{}: an rsync receiver of an earlier run still writes there",
                base.shown(&name).display()
            );
        }
        // Debris of a killed run: nothing in it may be taken for this run's copies, but for
        // the partial data of copies cut short, which rsync resumes from.
        let partials = partial::clear_inside(fd.as_fd(), true).map_err(|e| shown(&e))?;
        partial_dir(fd.as_fd()).map_err(|e| shown(&e))?;
        let live = beneath::on_stop_remove(base.fd(), &name, true);
        let ctx = self.ctx_mut(root)?;
        ctx.scratch = Some((name.clone(), fd, dir));
        ctx.scratch_live = live;
        ctx.partials = partials.into_iter().collect();
        Ok(WirePath(name))
    }

    /// Answers [`crate::proto::Request::Place`]: moves each file rsync wrote into the scratch
    /// directory into place, if it arrived complete and what it replaces is still the version
    /// the decision saw.
    pub(super) fn place(&self, root: u32, items: &[Placing]) -> Result<Vec<Placement>, String> {
        let ctx = self.ctx(root)?;
        let Some((name, _, dir)) = &ctx.scratch else {
            return Err(format!("root #{root}: no scratch directory prepared"));
        };
        let base = self.rsync_base(root, *dir)?;
        let scratch = base.below(name).map_err(|e| e.to_string())?;
        Ok(items
            .iter()
            .map(|item| match self.place_one(root, &scratch, item) {
                Ok(()) => Placement::Done,
                Err(Fail::Changed(m)) => Placement::Changed(m),
                Err(Fail::Error(m)) => Placement::Failed(m),
            })
            .collect())
    }

    fn place_one(&self, root: u32, scratch: &Beneath, item: &Placing) -> OpResult {
        let ctx = self.ctx(root)?;
        // rsync's names are relative to its base: a file root's own name, or an entry below a
        // directory root.
        let below_base: Vec<u8> = if item.rel.is_empty() || ctx.siblings {
            let file = if item.rel.is_empty() {
                ctx.abs.file_name().map(|n| n.as_encoded_bytes().to_vec())
            } else {
                Some(item.rel.as_bytes().to_vec())
            };
            file.ok_or_else(|| format!("{}: no file name", ctx.abs.display()))?
        } else {
            item.rel.as_bytes().to_vec()
        };
        let dest = ctx.at(&item.rel, true)?;
        let src = scratch
            .at(&below_base)
            .map_err(|e| Fail::Error(e.to_string()))?;
        let complete = match src.lstat() {
            Ok(Some(st)) => {
                let s = beneath::Stamp::of(&st);
                kind_of(&st) == rfs::FileType::RegularFile
                    && s.size == item.size
                    && ctx.holds().same_time(s.mtime, item.mtime)
            }
            _ => false,
        };
        if !complete {
            return Err(Fail::Error(format!(
                "{}: the copy did not arrive complete; old version kept",
                dest.shown().display()
            )));
        }
        // rsync's own check covers the file it rebuilt; one resumed from a partial file a
        // run cut short is checked whole against the master's digest too.
        if ctx.partials.contains(&below_base) {
            verify(&src, item.digest)?;
        }
        refuse_directory(&dest)?;
        src.set_mode(item.mode & MODE_BITS)
            .map_err(|e| Fail::Error(e.to_string()))?;
        let stamp = src.rename_over(&dest, Some(ctx.expect(&item.rel)))?;
        ctx.placed(&item.rel, stamp.id());
        // rsync fsyncs nothing: until a cleanup flushes it, the commit must. That one flush
        // makes the rename durable too (a directory fsync per file cost a journal commit
        // each: a third of a first sync of many small files).
        ctx.unsynced.set(true);
        // What a streamed copy of this version cut short earlier left is of no use now.
        if ctx.partials.contains(item.digest.hex().as_bytes()) {
            if let Ok(stale) = scratch.at(&super::resume::partial_rel(&item.digest)) {
                let _ = stale.unlink();
            }
        }
        Ok(())
    }

    /// Answers [`crate::proto::Request::Cleanup`]: the scratch directory removed with what is
    /// left in it, and what was placed made durable. Where it fails before its flush, the
    /// commit flushes what was placed itself (`RootCtx::unsynced`).
    pub(super) fn cleanup(&mut self, root: u32, dir: bool) -> OpResult {
        let one_fs = self.one_filesystem(root);
        let (scratch, live) = {
            let ctx = self.ctx_mut(root)?;
            (ctx.scratch.take(), ctx.scratch_live.take())
        };
        beneath::forget(live);
        let base = self.rsync_base(root, dir)?;
        if let Some((name, fd, _)) = scratch {
            drop(fd);
            // What rsync left of a copy that failed midway stays for the next run.
            let _ = partial::clear(base.fd(), &name, true);
        }
        let flushed = flush(base.path(), one_fs);
        let ctx = self.ctx_mut(root)?;
        match &flushed {
            // Everything placed so far is on disk for good.
            Ok(()) => ctx.unsynced.set(false),
            Err(e) => ctx.unflushed = Some(e.clone()),
        }
        flushed.map_err(Fail::Error)
    }
}

impl Server {
    /// Removes every root's scratch directory and what is in it: the client hung up before
    /// it cleaned up (a run cut short).
    pub(super) fn abandon_scratch(&mut self) {
        for root in 0..self.roots.len() as u32 {
            let Ok(ctx) = self.ctx_mut(root) else {
                continue;
            };
            let (scratch, live) = (ctx.scratch.take(), ctx.scratch_live.take());
            beneath::forget(live);
            let Some((name, fd, dir)) = scratch else {
                continue;
            };
            drop(fd);
            if let Ok(base) = self.rsync_base(root, dir) {
                // The one thing a run cut short leaves on purpose: its copies' partial data.
                // rsync's receiver, cut short too, may be renaming its temp file to the
                // partial one right now: its temp files stay until the next run.
                let _ = partial::clear(base.fd(), &name, false);
            }
        }
    }
}

/// Makes (or opens) the scratch directory `name` in `base`, checked to be a real directory
/// of this user's, and locks it.
fn scratch_dir(base: &Beneath, name: &[u8]) -> Result<OwnedFd, Fail> {
    let shown = base.shown(name);
    let err = |e: &dyn std::fmt::Display| Fail::Error(format!("{}: {e}", shown.display()));
    match rfs::mkdirat(base.fd(), name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(err(&e)),
    }
    let fd = rfs::openat(
        base.fd(),
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        err(&format!(
            "{e} (not a directory of synk's: refusing to use it)"
        ))
    })?;
    let st = rfs::fstat(&fd).map_err(|e| err(&e))?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(err(&"owned by another user: refusing to use it"));
    }
    if rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(err(&"in use by another synk run"));
    }
    Ok(fd)
}

/// Makes (or opens) the partial directory in the scratch directory `scratch`, where the
/// streaming copier keeps what a copy cut short received (and rsync, of a file it receives
/// there rather than in a directory below); checked to be a real directory (never a symlink).
fn partial_dir(scratch: BorrowedFd<'_>) -> io::Result<()> {
    let name = names::partial_dir_name();
    match rfs::mkdirat(scratch, name.as_slice(), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    rfs::openat(
        scratch,
        name.as_slice(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(())
}

/// Checks the whole file at `src` against the master's digest.
fn verify(src: &beneath::At, digest: Digest) -> Result<(), Fail> {
    let shown = || src.shown().display().to_string();
    let mut f = src
        .open_read()
        .map_err(|e| Fail::Error(format!("{}: {e}", shown())))?;
    let whole = crate::scan::hash_pipelined(&mut f)
        .map_err(|e| Fail::Error(format!("{}: {e}", shown())))?;
    if whole != digest {
        return Err(Fail::Error(format!(
            "{}: the resumed copy does not match the master's digest; old version kept",
            shown()
        )));
    }
    Ok(())
}

/// Whether the records of a root may name `r` at all (never a name synk owns).
pub(super) fn recordable(r: &Record) -> bool {
    !r.rel.as_bytes().split(|b| *b == b'/').any(names::is_own)
}

/// Makes what was written below `dir` durable: rsync renames the files it wrote into place
/// without an fsync, and the state recorded next must not claim what a power cut could still
/// take back. `one_fs`: the tree has no mount inside, so flushing the filesystem that holds
/// `dir` is enough; else every filesystem is. On Linux both wait until the data is on disk;
/// elsewhere `sync` only schedules the writes.
pub(super) fn flush(dir: &Path, one_fs: bool) -> Result<(), String> {
    let f = File::open(dir).map_err(|e| msg(dir, e))?;
    #[cfg(target_os = "linux")]
    if one_fs {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a descriptor this file owns.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(msg(dir, io::Error::last_os_error()));
        }
        return Ok(());
    }
    #[cfg(not(target_os = "linux"))]
    let _ = one_fs;
    drop(f);
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}
