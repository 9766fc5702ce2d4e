//! Replacing a file whole or not at all: the new contents go to a temp file beside it, are
//! made durable, and the temp file is renamed over it. A crash leaves the old file or the new
//! one, never a mix, and at worst a temp file that scans skip and later runs remove.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{names, os};

/// Writes `bytes` to a temp file beside `path`, fsyncs it and renames it over `path`.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |w| w.write_all(bytes))
}

/// A temp file beside the file being replaced, removed unless it was renamed into place.
struct Temp {
    path: std::path::PathBuf,
    file: fs::File,
    placed: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A new temp file in `dir`, of synk's exact temp shape ([`names::is_temp_name`]), with the
/// permission bits of the file it will replace (0600 for a new one).
fn temp_in(dir: &Path, like: &Path) -> io::Result<Temp> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = fs::metadata(like).map_or(0o600, |m| m.permissions().mode() & 0o777);
    loop {
        let name = names::temp_name(os::random_u64()?);
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => {
                return Ok(Temp {
                    path,
                    file,
                    placed: false,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` to `path` whole, as [`write()`] does, unless something is there already:
/// then that stays, and false says so. The durable temp file is hard-linked into place, which
/// never replaces, so of several writers at once the first one's contents stand for everyone.
/// Where the filesystem has no hard links, it is renamed into place without replacing
/// (`RENAME_NOREPLACE`), or, where even that is missing, as [`write()`] does.
pub fn create(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = temp_in(dir, path)?;
    tmp.file.write_all(bytes)?;
    tmp.file.sync_all()?;
    let made = match fs::hard_link(&tmp.path, path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        // No hard links there: a rename that never replaces, where the filesystem has one.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
            use rustix::fs::{renameat_with, RenameFlags, CWD};
            match renameat_with(CWD, &tmp.path, CWD, path, RenameFlags::NOREPLACE) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => return Ok(false),
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                    fs::rename(&tmp.path, path)?
                }
                Err(e) => return Err(e.into()),
            }
            tmp.placed = true;
            true
        }
        Err(e) => return Err(e),
    };
    if made {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(made)
}

/// As [`write()`], with the contents written by `fill` through a buffer: a big state
/// file goes to disk as it is encoded, never whole in memory.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    write_file(path, |f| {
        let mut w = io::BufWriter::new(f);
        fill(&mut w)?;
        w.flush()
    })
}

/// As [`write_with`], with the temp file itself to fill: one that writes a header it can
/// only know at the end can seek back to it.
pub fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = temp_in(dir, path)?;
    fill(&mut tmp.file)?;
    tmp.file.sync_all()?;
    fs::rename(&tmp.path, path)?;
    tmp.placed = true;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
