//! The streaming copier's resumable copies: a big file is written into a partial file in the
//! root's scratch directory, named by the digest of the version being copied, and renamed
//! into place once it is whole and checked. A copy cut short leaves it there (see
//! [`crate::beneath::partial`]); the next copy of the same version finds it
//! ([`crate::proto::Request::Partial`]), keeps its bytes and receives only the rest, and the
//! file is checked whole against the master's SHA-512 before it is placed.

use std::fs::File;
use std::io::{self, Read, Seek};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use sha2::Digest as _;

use super::write::refuse_directory;
use super::{Fail, OpResult, Server};
use crate::beneath::{kind_of, At};
use crate::model::Digest;
use crate::names;
use crate::paths::WirePath;
use crate::proto::{Response, CHUNK};
use crate::scan::MODE_BITS;

/// Where a received file is written.
pub(super) enum Out {
    /// A temp file beside the entry.
    Temp(crate::beneath::Temp),
    /// The partial file of its version in the scratch directory.
    Partial(Box<PartialFile>),
}

impl Out {
    /// The open file.
    pub(super) fn file(&self) -> &File {
        match self {
            Out::Temp(t) => t.file(),
            Out::Partial(p) => &p.file,
        }
    }

    /// The open file, to write.
    pub(super) fn file_mut(&mut self) -> &mut File {
        match self {
            Out::Temp(t) => t.file_mut(),
            Out::Partial(p) => &mut p.file,
        }
    }

    /// Takes in the bytes just written, for a partial file's check of the whole.
    pub(super) fn seen(&mut self, bytes: &[u8]) {
        if let Out::Partial(p) = self {
            p.hash.update(bytes);
        }
    }
}

/// An open partial file: locked, its kept bytes hashed already.
pub(super) struct PartialFile {
    file: File,
    hash: sha2::Sha512,
    digest: Digest,
}

/// The partial file's name for `digest`, below the scratch directory.
pub(super) fn partial_rel(digest: &Digest) -> Vec<u8> {
    let mut rel = names::partial_dir_name();
    rel.push(b'/');
    rel.extend_from_slice(digest.hex().as_bytes());
    rel
}

impl Server {
    /// Whether the scratch directory of `root` is beside the entry `rel` rather than in the
    /// root (a single-file root and its siblings).
    fn dir_root(&self, root: u32, rel: &WirePath) -> Result<bool, String> {
        let ctx = self.ctx(root)?;
        Ok(!rel.is_empty() && !ctx.siblings)
    }

    /// The scratch directory's partial file for `digest`, the scratch directory prepared on
    /// first use.
    fn partial_at(&self, root: u32, rel: &WirePath, digest: &Digest) -> Result<At, Fail> {
        let ctx = self.ctx(root)?;
        let Some((name, _, dir)) = &ctx.scratch else {
            return Err(Fail::Error(format!(
                "root #{root}: no scratch directory prepared"
            )));
        };
        if *dir != self.dir_root(root, rel)? {
            return Err(Fail::Error(format!(
                "{rel}: not where the scratch directory is"
            )));
        }
        let scratch = self
            .rsync_base(root, *dir)?
            .below(name)
            .map_err(|e| Fail::Error(e.to_string()))?;
        scratch
            .at(&partial_rel(digest))
            .map_err(|e| Fail::Error(e.to_string()))
    }

    /// Answers [`crate::proto::Request::Partial`].
    pub(super) fn partial(&mut self, root: u32, rel: &WirePath, digest: Digest) -> Response {
        let held = (|| -> Result<u64, Fail> {
            let dir = self.dir_root(root, rel)?;
            if self.ctx(root)?.scratch.is_none() {
                self.prepare(root, dir)?;
                self.ctx_mut(root)?.scratch_for_stream = true;
            }
            let at = self.partial_at(root, rel, &digest)?;
            Ok(match at.lstat() {
                Ok(Some(st)) if kind_of(&st) == rfs::FileType::RegularFile => st.st_size as u64,
                _ => 0,
            })
        })();
        match held {
            Ok(len) if len > 0 => Response::Partial { len },
            // No partial data (or no scratch directory to keep it in): the old file's blocks.
            _ => self.blocks(root, rel),
        }
    }

    /// Opens (or makes) the partial file of `digest` for a copy that keeps its first `from`
    /// bytes: those are hashed, the rest cut off.
    pub(super) fn open_partial(
        &self,
        root: u32,
        rel: &WirePath,
        digest: Digest,
        from: u64,
    ) -> Result<PartialFile, Fail> {
        let at = self.partial_at(root, rel, &digest)?;
        let err = |e: &dyn std::fmt::Display| Fail::Error(format!("{}: {e}", at.shown().display()));
        let fd = rfs::openat(
            at.dir(),
            at.name(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| err(&e))?;
        let st = rfs::fstat(&fd).map_err(|e| err(&e))?;
        if kind_of(&st) != rfs::FileType::RegularFile {
            return Err(err(&"not a regular file"));
        }
        if rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(err(&"in use by another copy"));
        }
        let mut file = File::from(fd);
        if from > st.st_size as u64 {
            return Err(err(&format!(
                "asked to keep {from} bytes of {}",
                st.st_size
            )));
        }
        file.set_len(from).map_err(|e| err(&e))?;
        let mut hash = sha2::Sha512::new();
        let mut buf = vec![0u8; CHUNK];
        let mut left = from;
        while left > 0 {
            let n = buf.len().min(left as usize);
            file.read_exact(&mut buf[..n]).map_err(|e| err(&e))?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(io::SeekFrom::Start(from)).map_err(|e| err(&e))?;
        Ok(PartialFile { file, hash, digest })
    }

    /// Removes the scratch directory a streamed copy made, but for partial data (a copy
    /// that failed midway): that copy is done. One rsync uses as well stays until rsync's
    /// cleanup.
    pub(super) fn release_stream_scratch(&mut self, root: u32) {
        let Ok(ctx) = self.ctx_mut(root) else {
            return;
        };
        if !std::mem::take(&mut ctx.scratch_for_stream) {
            return;
        }
        let (scratch, live) = (ctx.scratch.take(), ctx.scratch_live.take());
        crate::beneath::forget(live);
        let Some((name, fd, dir)) = scratch else {
            return;
        };
        drop(fd);
        if let Ok(base) = self.rsync_base(root, dir) {
            let _ = crate::beneath::partial::clear(base.fd(), &name, true);
        }
    }

    /// Removes a partial file whose bytes are not the master's.
    pub(super) fn drop_partial(&self, root: u32, p: &PartialFile) {
        let Some((_, scratch, _)) = self.ctx(root).ok().and_then(|c| c.scratch.as_ref()) else {
            return;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(dir) = rfs::openat(scratch, names::partial_dir_name(), flags, Mode::empty()) {
            let name = p.digest.hex();
            let _ = rfs::unlinkat(&dir, name.as_str(), AtFlags::empty());
        }
    }

    /// Checks a partial file whole against its digest, gives it its mode and time, makes it
    /// durable and renames it over the entry at `to` if that is still the version the
    /// decision saw.
    pub(super) fn place_partial(
        &self,
        root: u32,
        rel: &WirePath,
        to: &At,
        p: PartialFile,
        mode: u32,
        mtime: i64,
    ) -> OpResult {
        let whole = Digest::from_hasher(p.hash.clone());
        if whole != p.digest {
            let shown = to.shown().display().to_string();
            self.drop_partial(root, &p);
            return Err(Fail::Error(format!(
                "{shown}: the resumed copy does not match the master's digest; old version kept"
            )));
        }
        let placed = self.rename_partial(root, rel, to, &p, mode, mtime);
        if placed.is_err() {
            // Whole, but not placed (the entry changed meanwhile): like rsync's copy in the
            // scratch directory, it goes.
            self.drop_partial(root, &p);
        }
        placed
    }

    fn rename_partial(
        &self,
        root: u32,
        rel: &WirePath,
        to: &At,
        p: &PartialFile,
        mode: u32,
        mtime: i64,
    ) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = self.partial_at(root, rel, &p.digest)?;
        let err = |e: &dyn std::fmt::Display| Fail::Error(format!("{}: {e}", to.shown().display()));
        rfs::fchmod(&p.file, Mode::from_raw_mode(mode & MODE_BITS)).map_err(|e| err(&e))?;
        p.file.sync_all().map_err(|e| err(&e))?;
        let t = rfs::Timespec {
            tv_sec: mtime.div_euclid(1_000_000_000),
            tv_nsec: mtime.rem_euclid(1_000_000_000) as _,
        };
        let times = rfs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rfs::futimens(&p.file, &times).map_err(|e| err(&e))?;
        refuse_directory(to)?;
        let stamp = at.rename_over(to, Some(ctx.expect(rel)))?;
        to.sync_dir();
        ctx.placed(rel, stamp.id());
        Ok(())
    }
}
