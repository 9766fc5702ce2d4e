//! The server's writes: rsync's scratch directory, reading a file for the streaming copier,
//! and receiving files, directories and symlinks, each through a verified temp file beside
//! its target, fsynced and renamed into place.
//!
//! A file is read with SHA-512, the digest every peer records, so a file that changed since
//! it was scanned is never sent as that version. A target checks what it wrote against the
//! master's bytes with the cheaper [`Check`]: that is every target's CPU per byte.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::{msg, protocol_error, to_filetime, OpResult, Server};
use crate::model::Digest;
use crate::names::{self, RSYNC_TEMP_DIR};
use crate::paths::WirePath;
use crate::proto::{
    block_fingerprint, read_frame, write_frame, Check, FrameError, Request, Response, CHUNK,
    MAX_BLOCKS,
};
use crate::scan;

impl Server {
    /// The directory rsync writes into for root `root`, and its scratch directory there.
    fn rsync_base(&self, root: u32, dir: bool) -> Result<(PathBuf, PathBuf), String> {
        let (path, _) = self.locate(root, &WirePath::default())?;
        let base = if dir {
            path
        } else {
            path.parent().unwrap_or(Path::new("/")).to_path_buf()
        };
        let scratch = base.join(RSYNC_TEMP_DIR);
        Ok((base, scratch))
    }

    /// Answers [`crate::proto::Request::Prepare`]: the root's parents, the root itself where it
    /// is a directory, and rsync's scratch directory, held locked until the session ends.
    pub(super) fn prepare(&mut self, root: u32, dir: bool) -> OpResult {
        let (path, _) = self.locate(root, &WirePath::default())?;
        Self::ensure_parents(&path, &WirePath::default())?;
        let (base, scratch) = self.rsync_base(root, dir)?;
        if dir {
            match fs::symlink_metadata(&base) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(msg(&base, "not a directory")),
                Err(_) => fs::create_dir(&base).map_err(|e| msg(&base, e))?,
            }
        }
        match fs::create_dir(&scratch) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(msg(&scratch, e)),
            _ => {}
        }
        // Held until the session ends: a scan elsewhere must not take it for a killed run's.
        if let Ok(f) = File::open(&scratch) {
            scan::try_lock(&f);
            self.scratch_locks.push(f);
        }
        Ok(())
    }

    /// Answers [`crate::proto::Request::Cleanup`]: the scratch directory removed where empty,
    /// and what rsync wrote made durable.
    pub(super) fn cleanup(&self, root: u32, dir: bool) -> OpResult {
        let (base, scratch) = self.rsync_base(root, dir)?;
        // Not empty: another run is using it, or a killed one left debris that scans skip.
        let _ = fs::remove_dir(&scratch);
        flush(&base, self.one_filesystem(root))
    }

    /// Answers [`crate::proto::Request::ReadFile`]: the file's bytes in whole chunks, then
    /// the digest of what was sent.
    pub(super) fn read_file<W: Write>(
        &self,
        root: u32,
        rel: &WirePath,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let (_, path) = match self.locate(root, rel) {
            Ok(p) => p,
            Err(e) => return write_frame(w, &Response::Failed(e)),
        };
        let opened = scan::open_nofollow(&path).and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(f)
            } else {
                Err(io::Error::other("not a regular file"))
            }
        });
        let mut f = match opened {
            Ok(f) => f,
            Err(e) => return write_frame(w, &Response::Failed(msg(&path, e))),
        };
        let mut hasher = sha2::Sha512::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            // Whole chunks but the last: the streaming copier matches them block by block.
            match fill(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    write_frame(w, &Response::Data(buf[..n].to_vec()))?;
                }
                Err(e) => return write_frame(w, &Response::Failed(msg(&path, e))),
            }
        }
        write_frame(w, &Response::ReadDone(Digest::from_hasher(hasher)))
    }

    /// Answers [`crate::proto::Request::Blocks`]: the block fingerprints of the regular file
    /// at `rel`, none where there is none (or it is too big to list).
    pub(super) fn blocks(&self, root: u32, rel: &WirePath) -> Response {
        let Ok((_, path)) = self.locate(root, rel) else {
            return Response::Blocks(Vec::new());
        };
        let listed = || -> io::Result<Vec<[u8; 16]>> {
            let mut f = scan::open_nofollow(&path)?;
            let md = f.metadata()?;
            if !md.is_file() || md.len() > MAX_BLOCKS as u64 * CHUNK as u64 {
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
        mode: u32,
        mtime: i64,
        seed: u64,
        r: &mut R,
    ) -> Result<OpResult, FrameError> {
        let mut sink = self.locate(root, rel).and_then(|(base, path)| {
            Self::ensure_parents(&base, rel)?;
            Self::refuse_directory(&path)?;
            let tmp = temp_beside(&path)?;
            Ok((path, tmp))
        });
        let mut written = Check::new(seed);
        // The old file, opened at the first block that is the same in it.
        let mut old: Option<File> = None;
        let mut offset = 0u64;
        let mut flushed = 0u64;
        let check = loop {
            if let Ok((_, tmp)) = &sink {
                if offset - flushed >= WRITEBACK_STEP {
                    start_writeback(tmp.as_file(), flushed, offset);
                    flushed = offset;
                }
            }
            match read_frame(r)? {
                Request::Data(d) => {
                    if let Ok((path, tmp)) = &mut sink {
                        if let Err(e) = tmp.write_all(&d) {
                            sink = Err(msg(path, e));
                        } else {
                            written.update(&d);
                        }
                    }
                    offset += d.len() as u64;
                }
                Request::Same { len } => {
                    let len = (len as usize).min(CHUNK);
                    if let Ok((path, tmp)) = &mut sink {
                        let copied = same_block(&mut old, path, offset, len).and_then(|block| {
                            tmp.write_all(&block)?;
                            Ok(block)
                        });
                        match copied {
                            Ok(block) => written.update(&block),
                            Err(e) => sink = Err(msg(path, e)),
                        }
                    }
                    offset += len as u64;
                }
                Request::End { check } => break check,
                Request::Abort => {
                    return Ok(Err(format!("{rel}: transfer abandoned; old version kept")))
                }
                _ => return Err(protocol_error("unexpected frame inside a file transfer")),
            }
        };
        let (path, tmp) = match sink {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if written.value() != check {
            return Ok(Err(msg(
                &path,
                "received bytes do not match what the master read; old version kept",
            )));
        }
        Ok(Self::install(tmp, &path, mode, mtime))
    }

    /// Gives a complete temp file its mode and time, makes it durable and renames it into place.
    pub(super) fn install(
        tmp: tempfile::NamedTempFile,
        path: &Path,
        mode: u32,
        mtime: i64,
    ) -> OpResult {
        let f = tmp.as_file();
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| msg(path, e))?;
        f.sync_all().map_err(|e| msg(path, e))?;
        filetime::set_file_handle_times(f, None, Some(to_filetime(mtime)))
            .map_err(|e| msg(path, e))?;
        tmp.persist(path).map_err(|e| msg(path, e.error))?;
        sync_parent(path);
        Ok(())
    }

    /// Creates a directory (or gives an existing one its mode and time).
    pub(super) fn make_dir(&self, root: u32, rel: &WirePath, mode: u32, mtime: i64) -> OpResult {
        let (base, path) = self.locate(root, rel)?;
        Self::ensure_parents(&base, rel)?;
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(msg(&path, "exists and is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|e| msg(&path, e))?
            }
            Err(e) => return Err(msg(&path, e)),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| msg(&path, e))?;
        filetime::set_file_mtime(&path, to_filetime(mtime)).map_err(|e| msg(&path, e))
    }

    /// Creates or replaces a symlink.
    pub(super) fn symlink(
        &self,
        root: u32,
        rel: &WirePath,
        target: &WirePath,
        mtime: i64,
    ) -> OpResult {
        let (base, path) = self.locate(root, rel)?;
        Self::ensure_parents(&base, rel)?;
        Self::refuse_directory(&path)?;
        install_symlink(&path, target, mtime)
    }
}

/// Makes `path` a symlink to `target` with time `mtime`: made beside it under a temp name,
/// then renamed over whatever is there.
pub(super) fn install_symlink(path: &Path, target: &WirePath, mtime: i64) -> OpResult {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = tempfile::Builder::new()
        .prefix(names::TEMP_PREFIX)
        .suffix(names::TEMP_SUFFIX)
        .make_in(dir, |p| std::os::unix::fs::symlink(target.as_path(), p))
        .map_err(|e| msg(dir, e))?;
    let t = to_filetime(mtime);
    filetime::set_symlink_file_times(tmp.path(), t, t).map_err(|e| msg(path, e))?;
    tmp.persist(path).map_err(|e| msg(path, e.error))?;
    sync_parent(path);
    Ok(())
}

/// A new temp file beside `path`, locked so that scans know a live run is writing it.
pub(super) fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile, String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = tempfile::Builder::new()
        .prefix(names::TEMP_PREFIX)
        .suffix(names::TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| msg(dir, e))?;
    scan::try_lock(tmp.as_file());
    Ok(tmp)
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

/// Makes what was written below `dir` durable: rsync renames the files it wrote into place
/// without an fsync, and the state recorded next must not claim what a power cut could still
/// take back. `one_fs`: the tree has no mount inside, so flushing the filesystem that holds
/// `dir` is enough; else every filesystem is. On Linux both wait until the data is on disk;
/// elsewhere `sync` only schedules the writes.
fn flush(dir: &Path, one_fs: bool) -> OpResult {
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

/// Makes a rename durable. Best effort: some filesystems refuse to fsync a directory.
pub(super) fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
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
fn same_block(old: &mut Option<File>, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    if old.is_none() {
        *old = Some(scan::open_nofollow(path)?);
    }
    let f = old.as_ref().expect("opened above");
    let mut block = vec![0u8; len];
    f.read_exact_at(&mut block, offset)?;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// That the data reached the disk cannot be seen from here; what the caller is told can.
    #[test]
    fn a_flush_succeeds_on_a_directory_and_names_one_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "written by rsync").unwrap();
        for one_fs in [true, false] {
            assert_eq!(flush(dir.path(), one_fs), Ok(()));
            let gone = dir.path().join("gone");
            let e = flush(&gone, one_fs).unwrap_err();
            assert!(e.contains(&*gone.to_string_lossy()), "{e}");
        }
    }
}
