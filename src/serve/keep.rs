//! Keeping what is replaced or deleted: an entry leaves the tree only into the version store,
//! a conflict's losing version is renamed and kept, and a file this peer already holds is
//! cloned locally instead of sent.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::Digest as _;

use super::{msg, sync_parent, OpResult, Server};
use crate::model::{Digest, Kind, Meta, Why};
use crate::names;
use crate::paths::WirePath;
use crate::proto::CHUNK;
use crate::scan;
use crate::versions::{Store, Take};

impl Server {
    /// The version store, or why there is none.
    pub(super) fn store(&self) -> Result<&Store, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "this peer has no state directory to keep versions in".to_string())
    }

    /// The metadata of the entry at `path` as scanned, provided it is still that version: one
    /// changed since the scan (the user saved it meanwhile) is left for the next run, never
    /// deleted or replaced under a description that is no longer true. An entry the scan did
    /// not report is described as it is now.
    fn meta_of(&self, root: u32, rel: &WirePath, path: &Path) -> Result<Meta, String> {
        let md = fs::symlink_metadata(path).map_err(|e| msg(path, e))?;
        match self.ctx(root)?.meta(rel) {
            Some(m) => {
                let same = match &m.kind {
                    Kind::File => {
                        md.is_file() && md.len() == m.size && scan::mtime_ns(&md) == m.mtime
                    }
                    Kind::Symlink(t) => fs::read_link(path)
                        .is_ok_and(|l| l.as_os_str().as_encoded_bytes() == t.as_bytes()),
                    Kind::Dir => md.is_dir(),
                    Kind::Special => true,
                };
                if same {
                    Ok(m.clone())
                } else {
                    Err(msg(path, "changed since the scan; left for the next run"))
                }
            }
            None => scan::describe(path, &md).map_err(|e| msg(path, e.as_str())),
        }
    }

    /// Takes an entry out of the tree: files and symlinks into the version store, empty
    /// directories removed. Gone already is fine.
    pub(super) fn remove(&self, root: u32, rel: &WirePath, deleted: bool) -> OpResult {
        let (_, path) = self.locate(root, rel)?;
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(msg(&path, e)),
        };
        if md.is_dir() {
            // Temps of a killed run are not the user's: they never keep a directory alive.
            if let Ok(list) = fs::read_dir(&path) {
                for e in list.flatten() {
                    if names::is_temp_name(e.file_name().as_encoded_bytes()) {
                        scan::remove_if_stale(&e.path());
                    }
                }
            }
            return fs::remove_dir(&path).map_err(|e| {
                if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                    msg(
                        &path,
                        "directory holds entries this sync did not expect; kept",
                    )
                } else {
                    msg(&path, e)
                }
            });
        }
        let meta = self.meta_of(root, rel, &path)?;
        let why = if deleted {
            Why::Deleted
        } else {
            Why::Overwritten
        };
        self.store()?
            .keep(&path, &meta, why, Take::Move)
            .map_err(|e| msg(&path, e))?;
        sync_parent(&path);
        Ok(())
    }

    /// Gives a conflict's losing version another name, keeping it in the store as well.
    pub(super) fn rename(&self, root: u32, rel: &WirePath, to: &WirePath) -> OpResult {
        let (_, path) = self.locate(root, rel)?;
        let (_, dest) = self.locate(root, to)?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(msg(&dest, "exists already; conflict copy not made"));
        }
        let meta = self.meta_of(root, rel, &path)?;
        if meta.kind != Kind::Dir {
            self.store()?
                .keep(&path, &meta, Why::Conflict, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
        fs::rename(&path, &dest).map_err(|e| msg(&path, e))?;
        sync_parent(&dest);
        Ok(())
    }

    /// Keeps the current versions of entries that copies are about to replace.
    pub(super) fn keep(&self, root: u32, rels: &[WirePath]) -> OpResult {
        for rel in rels {
            let (_, path) = self.locate(root, rel)?;
            match fs::symlink_metadata(&path) {
                Ok(md) if md.is_file() || md.file_type().is_symlink() => {}
                _ => continue,
            }
            let meta = self.meta_of(root, rel, &path)?;
            self.store()?
                .keep(&path, &meta, Why::Overwritten, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
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
        let (_, src) = self.locate(root, from)?;
        let (base, path) = self.locate(root, rel)?;
        Self::ensure_parents(&base, rel)?;
        Self::refuse_directory(&path)?;
        let tmp = copy_to_temp(&src, &path, &digest)?;
        Self::install(tmp, &path, mode, mtime)
    }
}

/// Copies `src` into a locked temp file beside `dest`, checking the bytes against `digest`.
pub(super) fn copy_to_temp(
    src: &Path,
    dest: &Path,
    digest: &Digest,
) -> Result<tempfile::NamedTempFile, String> {
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let mut tmp = super::temp_beside(dest)?;
    let mut f = fs::File::open(src).map_err(|e| msg(src, e))?;
    let mut hasher = sha2::Sha512::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| msg(src, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(|e| msg(dir, e))?;
    }
    if Digest::from_hasher(hasher) != *digest {
        return Err(msg(src, "changed since the scan; not copied"));
    }
    Ok(tmp)
}
