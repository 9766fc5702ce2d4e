//! Listing kept versions and putting one back (the current one is kept in turn).

use super::keep::copy_to_temp;
use super::write::refuse_directory;
use super::{Fail, OpResult, Server};
use crate::beneath::{At, Expect, Stamp};
use crate::model::{Digest, Kept, Kind, Why};
use crate::paths::{RootSpec, WirePath};
use crate::scan::{self, MODE_BITS};
use crate::versions::Take;

impl Server {
    /// The kept versions of a path and everything below it.
    pub(super) fn versions(&self, spec: &RootSpec) -> Result<Vec<Kept>, String> {
        let abs = self.resolve(spec)?;
        Ok(self
            .store
            .as_ref()
            .map(|s| s.list(&abs))
            .unwrap_or_default())
    }

    /// Puts kept version `id` back at entry `rel` of root `root`, keeping what is there now.
    pub(super) fn restore(&self, root: u32, rel: &WirePath, id: &str) -> OpResult {
        let ctx = self.ctx(root)?;
        let at = ctx.at(rel, true)?;
        let path = at.shown().to_path_buf();
        let store = self.store()?;
        let kept = store
            .list(&path)
            .into_iter()
            .find(|k| k.id == id && k.path.as_path() == path)
            .ok_or_else(|| Fail::Error(format!("{}: no such kept version", path.display())))?;
        let obj = store
            .object_path(id)
            .ok_or_else(|| Fail::Error(format!("{}: no such kept version", path.display())))?;
        refuse_directory(&at)?;
        let expect = match at.lstat().map_err(|e| Fail::Error(e.to_string()))? {
            Some(st) => {
                let md =
                    std::fs::symlink_metadata(&path).map_err(|e| Fail::Error(e.to_string()))?;
                let now = scan::describe(&path, &md)
                    .map_err(|e| Fail::Error(format!("{}: {e}", path.display())))?;
                store
                    .keep_at(&at, &path, &now, Why::Overwritten, Take::Link, None)
                    .map_err(|e| Fail::Error(format!("{}: {e}", path.display())))?;
                match at.lstat().map_err(|e| Fail::Error(e.to_string()))? {
                    Some(after) if Stamp::of(&after).ino == Stamp::of(&st).ino => {
                        Expect::Same(Stamp::of(&after).id())
                    }
                    _ => Expect::Absent,
                }
            }
            None => Expect::Absent,
        };
        let stamp = match &kept.meta.kind {
            Kind::Symlink(target) => {
                at.symlink(target.as_bytes(), kept.meta.mtime, Some(expect))?
            }
            Kind::File => {
                let digest = kept.meta.digest.unwrap_or(Digest([0; 64]));
                let dir = obj.parent().unwrap_or(std::path::Path::new("/"));
                let objects =
                    crate::beneath::Beneath::open(dir).map_err(|e| Fail::Error(e.to_string()))?;
                let name = obj.file_name().map_or(&b""[..], |n| n.as_encoded_bytes());
                let src: At = objects.at(name).map_err(|e| Fail::Error(e.to_string()))?;
                let tmp = copy_to_temp(&src, &at, &digest)?;
                tmp.place(
                    &at,
                    kept.meta.mode & MODE_BITS,
                    kept.meta.mtime,
                    Some(expect),
                )?
            }
            _ => {
                return Err(Fail::Error(format!(
                    "{}: kept version is not a file or symlink",
                    path.display()
                )))
            }
        };
        ctx.placed(rel, stamp.id());
        Ok(())
    }
}
