//! The server's writes for the copiers: reading a file for the streaming copier, and
//! receiving files, directories and symlinks, each through a verified temp file beside its
//! target, fsynced and renamed into place only if what stands there is still the version the
//! decision saw. Every path is reached through the root's directory handle ([`At`]).
//!
//! A file is read with SHA-512, the digest every peer records, so a file that changed since
//! it was scanned is never sent as that version. A target checks what it wrote against the
//! master's bytes with the cheaper [`Check`]: that is every target's CPU per byte.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use sha2::Digest as _;

use super::resume::Out;
use super::root::DirMeta;
use super::{protocol_error, Fail, OpResult, Server};
use crate::beneath::{kind_of, At, Expect, Refused, Stamp};
use crate::model::Digest;
use crate::paths::WirePath;
use crate::proto::{
    block_fingerprint, read_frame, write_frame, Check, FrameError, Request, Response, CHUNK,
    MAX_BLOCKS, ZEROS,
};
use crate::scan::MODE_BITS;

/// Refuses to replace a directory at `at`: synk never replaces a tree with a file.
pub(super) fn refuse_directory(at: &At) -> Result<(), Fail> {
    match at.lstat() {
        Ok(Some(st)) if kind_of(&st) == rustix::fs::FileType::Directory => {
            Err(Fail::Error(format!(
                "{}: is a directory; synk never replaces a tree",
                at.shown().display()
            )))
        }
        _ => Ok(()),
    }
}

impl From<Refused> for Fail {
    fn from(r: Refused) -> Fail {
        match r {
            Refused::Changed(p) => Fail::Changed(format!(
                "{}: changed since the scan (saved meanwhile?); that version stays",
                p.display()
            )),
            Refused::Io(e) => Fail::Error(e.to_string()),
        }
    }
}

/// How a file is received: the mode and time it gets, its [`Check`]'s seed, and, for a
/// resumable copy, the version's digest and the bytes of its partial file kept; whether the
/// version it replaces is kept first; and whether it is made durable later, with others.
pub(super) struct Incoming {
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) seed: u64,
    pub(super) partial: Option<(Digest, u64)>,
    pub(super) keep: bool,
    pub(super) batched: bool,
}

impl Server {
    /// Answers [`crate::proto::Request::ReadFile`]: the file's bytes in whole chunks, then
    /// the digest of what was sent.
    pub(super) fn read_file<W: Write>(
        &self,
        root: u32,
        rel: &WirePath,
        from: u64,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let opened = self
            .ctx(root)
            .and_then(|c| c.at(rel, false))
            .and_then(|at| at.open_read().map_err(|e| e.to_string()));
        let mut f = match opened {
            Ok(f) => f,
            Err(e) => return write_frame(w, &Response::Failed(e)),
        };
        let mut hasher = sha2::Sha512::new();
        let mut buf = vec![0u8; CHUNK];
        let size = f.metadata().map_or(0, |m| m.len());
        // What a resumed copy's target holds already is read for the digest, not sent.
        let mut offset = 0u64;
        while offset < from {
            let want = (from - offset).min(CHUNK as u64) as usize;
            match fill(&mut f, &mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    offset += n as u64;
                }
                Err(e) => return write_frame(w, &Response::Failed(format!("{rel}: {e}"))),
            }
        }
        loop {
            // A whole chunk inside a hole goes as one, unread: the targets keep it a hole.
            if let Some(len) = hole_at(&f, offset, size) {
                hasher.update(&ZEROS[..len]);
                if let Err(e) = f.seek(io::SeekFrom::Start(offset + len as u64)) {
                    return write_frame(w, &Response::Failed(format!("{rel}: {e}")));
                }
                write_frame(w, &Response::Hole { len: len as u32 })?;
                offset += len as u64;
                continue;
            }
            // Whole chunks but the last: the streaming copier matches them block by block.
            match fill(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    write_frame(w, &Response::Data(buf[..n].to_vec()))?;
                    offset += n as u64;
                }
                Err(e) => return write_frame(w, &Response::Failed(format!("{rel}: {e}"))),
            }
        }
        write_frame(w, &Response::ReadDone(Digest::from_hasher(hasher)))
    }

    /// Answers [`crate::proto::Request::Blocks`]: the block fingerprints of the regular file
    /// at `rel`, none where there is none (or it is too big to list).
    pub(super) fn blocks(&self, root: u32, rel: &WirePath) -> Response {
        let Ok(at) = self.ctx(root).and_then(|c| c.at(rel, false)) else {
            return Response::Blocks(Vec::new());
        };
        let listed = || -> io::Result<Vec<[u8; 16]>> {
            let mut f = match at.open_read() {
                Ok(f) => f,
                Err(_) => return Ok(Vec::new()),
            };
            let md = f.metadata()?;
            if md.len() > MAX_BLOCKS as u64 * CHUNK as u64 {
                return Ok(Vec::new());
            }
            let mut out = Vec::with_capacity(md.len().div_ceil(CHUNK as u64) as usize);
            let mut buf = vec![0u8; CHUNK];
            loop {
                match fill(&mut f, &mut buf)? {
                    0 => return Ok(out),
                    n => out.push(block_fingerprint(&buf[..n])),
                }
            }
        };
        Response::Blocks(listed().unwrap_or_default())
    }

    /// Receives a file. The outer error is a broken conversation; the inner one a failed
    /// write, reported after the client's data has been drained so the stream stays in step.
    pub(super) fn write_file<R: Read>(
        &self,
        root: u32,
        rel: &WirePath,
        how: Incoming,
        r: &mut R,
    ) -> Result<OpResult, FrameError> {
        let Incoming {
            mode,
            mtime,
            seed,
            partial,
            keep,
            batched,
        } = how;
        let mut sink = self.ctx(root).map_err(Fail::Error).and_then(|ctx| {
            let at = ctx.at(rel, true)?;
            refuse_directory(&at)?;
            // Where no scratch directory could be made (its answer to Partial was the old
            // file's blocks), a fresh copy goes through a temp file: not resumable, but it goes.
            let out = match partial {
                Some((_, 0)) if ctx.scratch.is_none() => {
                    Out::Temp(at.temp().map_err(|e| Fail::Error(e.to_string()))?)
                }
                Some((digest, from)) => {
                    Out::Partial(Box::new(self.open_partial(root, rel, digest, from)?))
                }
                None => Out::Temp(at.temp().map_err(|e| Fail::Error(e.to_string()))?),
            };
            Ok((at, out))
        });
        let mut offset = partial.map_or(0, |(_, from)| from);
        let mut flushed = offset;
        let mut written = Check::new(seed);
        // The old file, opened at the first block that is the same in it.
        let mut old: Option<File> = None;
        let check = loop {
            if let Ok((_, tmp)) = &sink {
                if offset - flushed >= WRITEBACK_STEP {
                    start_writeback(tmp.file(), flushed, offset);
                    flushed = offset;
                }
            }
            match read_frame(r)? {
                Request::Data(d) => {
                    if let Ok((at, tmp)) = &mut sink {
                        if let Err(e) = tmp.file_mut().write_all(&d) {
                            sink = Err(Fail::Error(format!("{}: {e}", at.shown().display())));
                        } else {
                            written.update(&d);
                            tmp.seen(&d);
                        }
                    }
                    offset += d.len() as u64;
                }
                Request::Same { len } => {
                    let len = (len as usize).min(CHUNK);
                    if let Ok((at, tmp)) = &mut sink {
                        let copied = same_block(&mut old, at, offset, len).and_then(|block| {
                            tmp.file_mut().write_all(&block)?;
                            Ok(block)
                        });
                        match copied {
                            Ok(block) => {
                                written.update(&block);
                                tmp.seen(&block);
                            }
                            Err(e) => {
                                sink = Err(Fail::Error(format!("{}: {e}", at.shown().display())))
                            }
                        }
                    }
                    offset += len as u64;
                }
                Request::Hole { len } => {
                    let len = (len as usize).min(CHUNK);
                    if let Ok((at, tmp)) = &mut sink {
                        match tmp.file_mut().seek(io::SeekFrom::Current(len as i64)) {
                            Ok(_) => {
                                written.update(&ZEROS[..len]);
                                tmp.seen(&ZEROS[..len]);
                            }
                            Err(e) => {
                                sink = Err(Fail::Error(format!("{}: {e}", at.shown().display())))
                            }
                        }
                    }
                    offset += len as u64;
                }
                Request::End { check } => break check,
                Request::Abort => {
                    // The master could not send that version (changed since the scan): what
                    // arrived of it is nothing to resume from.
                    if let Ok((_, Out::Partial(p))) = sink {
                        self.drop_partial(root, &p);
                    }
                    return Ok(Err(Fail::Error(format!(
                        "{rel}: transfer abandoned; old version kept"
                    ))));
                }
                _ => return Err(protocol_error("unexpected frame inside a file transfer")),
            }
        };
        let (at, tmp) = match sink {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        // A hole at the end is a length, not a write.
        if let Err(e) = tmp.file().set_len(offset) {
            return Ok(Err(Fail::Error(format!("{}: {e}", at.shown().display()))));
        }
        if written.value() != check {
            if let Out::Partial(p) = tmp {
                // Not what the master sent: nothing of it is worth resuming from.
                self.drop_partial(root, &p);
            }
            return Ok(Err(Fail::Error(format!(
                "{}: received bytes do not match what the master read; old version kept",
                at.shown().display()
            ))));
        }
        // Kept only now, once the new version is whole: a copy that fails keeps nothing.
        if keep {
            if let Err(e) = self.keep(root, std::slice::from_ref(rel)) {
                return Ok(Err(e));
            }
        }
        let tmp = match tmp {
            Out::Temp(tmp) => tmp,
            Out::Partial(p) => return Ok(self.place_partial(root, rel, &at, *p, mode, mtime)),
        };
        let ctx = self.ctx(root).map_err(Fail::Error);
        Ok(ctx.and_then(|ctx| {
            let expect = Some(ctx.expect(rel));
            let stamp = tmp.place_as(&at, mode & MODE_BITS, mtime, expect, !batched)?;
            ctx.placed(rel, stamp.id());
            if batched {
                ctx.unsynced.set(true);
            }
            Ok(())
        }))
    }

    /// Creates a directory (or decides the mode and time of an existing one). Its permission
    /// bits and mtime are applied once it is filled ([`Server::finish_dirs`]): until then the
    /// owner may write into it, whatever its mode will be.
    pub(super) fn make_dir(&self, root: u32, rel: &WirePath, mode: u32, mtime: i64) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, true)?;
        let made = at
            .mkdir((mode & MODE_BITS) | 0o700)
            .map_err(|e| Fail::Error(e.to_string()))?;
        let mut widened = made && mode & 0o700 != 0o700;
        if !made {
            // There already: writable by its owner while it is filled.
            if let Ok(Some(st)) = at.lstat() {
                let now = st.st_mode & 0o7777;
                if now & 0o700 != 0o700 {
                    at.set_mode(now | 0o700)
                        .map_err(|e| Fail::Error(e.to_string()))?;
                    widened = true;
                }
            }
        }
        if widened {
            // Given its mode even if the serve is stopped before it is filled.
            ctx.narrow_on_stop(rel, mode & MODE_BITS, mtime);
        }
        ctx.dir_meta.borrow_mut().push(DirMeta {
            rel: rel.clone(),
            mode: mode & MODE_BITS,
            mtime,
            decided: true,
        });
        Ok(())
    }

    /// Answers [`crate::proto::Request::SetMeta`]: gives a file its mode and mtime, a symlink
    /// its mtime, if it is still the very version the scan saw (or this session left there);
    /// one changed since is left for the next run.
    pub(super) fn set_meta(&self, root: u32, rel: &WirePath, mode: u32, mtime: i64) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, false)?;
        let st = at
            .lstat()
            .map_err(|e| Fail::Error(e.to_string()))?
            .ok_or_else(|| {
                Fail::Changed(format!("{}: gone since the scan", at.shown().display()))
            })?;
        let same = match ctx.expect(rel) {
            Expect::Same(id) => Stamp::of(&st).id() == id,
            Expect::Absent => false,
        };
        if !same {
            return Err(Fail::Changed(format!(
                "{}: changed since the scan (saved meanwhile?); left for the next run",
                at.shown().display()
            )));
        }
        match kind_of(&st) {
            // Where the filesystem keeps no modes, chmod may fail (or do nothing): the mtime
            // still goes on.
            rustix::fs::FileType::RegularFile if ctx.holds().modes => at
                .set_mode(mode & MODE_BITS)
                .map_err(|e| Fail::Error(e.to_string()))?,
            rustix::fs::FileType::RegularFile => {}
            rustix::fs::FileType::Symlink => {}
            _ => {
                return Err(Fail::Error(format!(
                    "{}: neither a file nor a symlink",
                    at.shown().display()
                )))
            }
        }
        at.set_mtime(mtime)
            .map_err(|e| Fail::Error(e.to_string()))?;
        let now = at
            .lstat()
            .map_err(|e| Fail::Error(e.to_string()))?
            .ok_or_else(|| Fail::Changed(format!("{}: gone", at.shown().display())))?;
        ctx.placed(rel, Stamp::of(&now).id());
        Ok(())
    }

    /// Creates or replaces a symlink, as a symlink (never followed).
    pub(super) fn symlink(
        &self,
        root: u32,
        rel: &WirePath,
        target: &WirePath,
        mtime: i64,
    ) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, true)?;
        refuse_directory(&at)?;
        let stamp = at.symlink(target.as_bytes(), mtime, Some(ctx.expect(rel)))?;
        ctx.placed(rel, stamp.id());
        Ok(())
    }

    /// Gives every directory made or decided in this session its permission bits and mtime,
    /// deepest first (a directory's own mtime moves as its entries are made).
    pub(super) fn finish_dirs(&self) {
        for ctx in self.roots.iter().flatten() {
            let mut dirs = std::mem::take(&mut *ctx.dir_meta.borrow_mut());
            ctx.dir_noted.borrow_mut().clear();
            // Deepest first; of one directory, the plan's decision over what it was before.
            dirs.sort_by(|a, b| b.rel.cmp(&a.rel).then(b.decided.cmp(&a.decided)));
            dirs.dedup_by(|later, first| later.rel == first.rel);
            for DirMeta {
                rel,
                mode,
                mtime,
                decided,
            } in dirs
            {
                let Ok(at) = ctx.at(&rel, false) else {
                    continue;
                };
                // A directory synk only wrote in gets its mtime back and keeps its mode; one
                // the plan decided gets the plan's bits and keeps its own setuid/setgid (a
                // shared group directory stays one). A failure shows at the commit: the
                // directory is not recorded as arrived.
                if decided {
                    let setid = match at.lstat() {
                        Ok(Some(st)) => st.st_mode & 0o6000,
                        _ => 0,
                    };
                    if let Err(e) = at.set_mode((mode & MODE_BITS) | setid) {
                        tracing::warn!("{e}");
                    }
                }
                if let Err(e) = at.set_mtime(mtime) {
                    tracing::warn!("{e}");
                }
            }
        }
        crate::beneath::narrowed();
    }
}

/// The length of the hole chunk at `offset` of `f` (`size` bytes long): where the whole
/// chunk there (or the rest of the file, if shorter) holds no data, by `SEEK_DATA`; `None`
/// where it holds some, or the filesystem cannot tell (the file's offset is then `offset`
/// again).
fn hole_at(f: &File, offset: u64, size: u64) -> Option<usize> {
    if offset >= size {
        return None;
    }
    let len = (size - offset).min(CHUNK as u64);
    // SEEK_DATA moves the file's offset: it goes back where the reading is.
    let hole = match rustix::fs::seek(f, rustix::fs::SeekFrom::Data(offset)) {
        Ok(data) => data >= offset + len,
        // No data after `offset`: the rest is a hole.
        Err(rustix::io::Errno::NXIO) => true,
        Err(_) => false,
    };
    if !hole && rustix::fs::seek(f, rustix::fs::SeekFrom::Start(offset)).is_err() {
        return None;
    }
    hole.then_some(len as usize)
}

/// Bytes a received file is written ahead of the disk at most before its write-back is
/// started (see [`start_writeback`]).
const WRITEBACK_STEP: u64 = 8 << 20;

/// Starts writing bytes `from..to` of `f` to disk, without waiting. A received file is fsynced
/// before it is renamed into place; begun as the bytes arrive, the disk writes while the
/// network carries the rest, instead of all of it at the end (the kernel alone would start
/// only once a tenth of memory is dirty). Failing is harmless: the fsync writes what is left.
fn start_writeback(f: &File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a descriptor this file owns.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                from as libc::off64_t,
                (to - from) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, from, to);
}

/// Reads until `buf` is full or the file ends; the number of bytes read.
fn fill(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `len` bytes of the old file at `path` from `offset`, opening it on first use. A file that
/// changed since its blocks were listed shows in the [`Check`] at the end.
fn same_block(old: &mut Option<File>, at: &At, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    if old.is_none() {
        *old = Some(at.open_read()?);
    }
    let f = old.as_ref().expect("opened above");
    let mut block = vec![0u8; len];
    f.read_exact_at(&mut block, offset)?;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::*;

    #[test]
    fn whole_chunks_of_hole_are_found_and_the_offset_stays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let mut f = File::create(&p).unwrap();
        let c = CHUNK as u64;
        f.seek(SeekFrom::Start(3 * c + 10)).unwrap();
        f.write_all(b"data").unwrap();
        f.set_len(6 * c + 5).unwrap();
        drop(f);
        let f = File::open(&p).unwrap();
        let size = 6 * c + 5;
        let holes: Vec<Option<usize>> = (0..7).map(|i| hole_at(&f, i * c, size)).collect();
        let full = Some(CHUNK);
        assert_eq!(holes, [full, full, full, None, full, full, Some(5)]);
        let mut f = f;
        assert_eq!(
            f.stream_position().unwrap(),
            3 * c,
            "back where the reading is"
        );
        assert_eq!(hole_at(&f, size, size), None, "nothing past the end");
    }
}
