//! Listing kept versions and putting one back (the current one is kept in turn).

use std::fs;
use std::path::Path;

use super::keep::copy_to_temp;
use super::{msg, OpResult, Server};
use crate::model::{Digest, Kept, Kind, Why};
use crate::paths::{RootSpec, WirePath};
use crate::scan;
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

    /// Puts a kept version back at `path`, keeping what is there now.
    pub(super) fn restore(&self, path: &WirePath, id: &str) -> OpResult {
        let path = path.as_path().to_path_buf();
        if !path.is_absolute()
            || crate::paths::check_rel(&WirePath(path.as_os_str().as_encoded_bytes()[1..].to_vec()))
                .is_err()
        {
            return Err(msg(&path, "refused: not a plain absolute path"));
        }
        let store = self.store()?;
        let kept = store
            .list(&path)
            .into_iter()
            .find(|k| k.id == id && k.path.as_path() == path)
            .ok_or_else(|| msg(&path, "no such kept version"))?;
        let obj = store
            .object_path(id)
            .ok_or_else(|| msg(&path, "no such kept version"))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(|e| msg(parent, e))?;
        Self::refuse_directory(&path)?;
        if let Ok(md) = fs::symlink_metadata(&path) {
            let now = scan::describe(&path, &md).map_err(|e| msg(&path, e.as_str()))?;
            store
                .keep(&path, &now, Why::Overwritten, Take::Link)
                .map_err(|e| msg(&path, e))?;
        }
        match &kept.meta.kind {
            Kind::Symlink(target) => super::write::install_symlink(&path, target, kept.meta.mtime),
            Kind::File => {
                let digest = kept.meta.digest.unwrap_or(Digest([0; 64]));
                let tmp = copy_to_temp(&obj, &path, &digest)?;
                Self::install(tmp, &path, kept.meta.mode, kept.meta.mtime)
            }
            _ => Err(msg(&path, "kept version is not a file or symlink")),
        }
    }
}
