//! Replacing a file whole or not at all: the new contents go to a temp file beside it, are
//! made durable, and the temp file is renamed over it. A crash leaves the old file or the new
//! one, never a mix, and at worst a temp file that scans skip and later runs remove.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::names::{TEMP_PREFIX, TEMP_SUFFIX};

/// Writes `bytes` to a temp file beside `path`, fsyncs it and renames it over `path`.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |w| w.write_all(bytes))
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
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
