//! One root of a serve session: where it is, what is left out of it, its remembered state,
//! what the last scan reported and what the client decided for it.

use std::path::{Path, PathBuf};

use super::emit::HeldBriefs;
use super::reports::{Reported, Reports};
use super::{OpResult, Server};
use crate::exclude::Excludes;
use crate::model::{Meta, Record, Vv};
use crate::paths::{RootSpec, WirePath};
use crate::state::RootState;

/// One root of the session: where it is, its state, and what the client decided for it.
#[derive(Debug)]
pub(super) struct RootCtx {
    /// Its absolute path on this peer.
    pub(super) abs: PathBuf,
    /// The root is a single file whose other entries are siblings in its directory.
    pub(super) siblings: bool,
    /// What is left out of the scan (and so of deletions).
    pub(super) excludes: Excludes,
    /// Something differs from the remembered state: new, changed or deleted entries.
    pub(super) dirty: bool,
    /// What this peer held after the last sync.
    pub(super) state: RootState,
    /// What the last scan reported for each entry.
    pub(super) reported: Reports,
    /// Records the client sent for this root, in the order they came.
    pub(super) set: Vec<Record>,
    /// The briefs the scan summed up instead of sending, until the client asks for them.
    pub(super) held_briefs: Option<HeldBriefs>,
    /// Every frame the scan sent for this root, where it summed the root up.
    pub(super) said: Option<Vec<u8>>,
    /// The walk met no mount inside the tree: a watch on its directories sees every change
    /// below it.
    pub(super) watchable: bool,
    /// Emptied mount points ([`crate::proto::Emptied`]): the deletions below them are recorded
    /// only as the client decides, never as reported.
    pub(super) guarded: Vec<WirePath>,
}

impl RootCtx {
    /// Nothing changed since the walk, none to record, and the briefs behind its summary
    /// still held: the walk's answer still stands for this root.
    pub(super) fn as_walked(&self) -> bool {
        self.watchable
            && !self.dirty
            && self.set.is_empty()
            && !self.state.must_write()
            && self.held_briefs.is_some()
            && self.said.is_some()
    }

    /// The metadata this peer reported for an entry, if it holds one.
    pub(super) fn meta(&self, rel: &WirePath) -> Option<&Meta> {
        self.held(rel).and_then(|(m, _)| m)
    }

    /// What this peer reported for an entry it could read: its metadata (`None`: deleted)
    /// and version.
    pub(super) fn held(&self, rel: &WirePath) -> Option<(Option<&Meta>, Option<&Vv>)> {
        match self.reported.get(rel)? {
            Reported::AsRecorded => self.state.get(rel).map(|r| (r.meta.as_ref(), Some(&r.vv))),
            Reported::Held(h) => Some((h.0.as_ref(), h.1.as_ref())),
            Reported::Unknown => None,
        }
    }
}

impl Server {
    /// The absolute path `spec` names on this peer.
    pub(super) fn resolve(&self, spec: &RootSpec) -> Result<PathBuf, String> {
        match &self.home {
            Some(home) => spec.resolve(home).map_err(|e| format!("{spec}: {e}")),
            None if matches!(spec, RootSpec::Home(_)) => {
                Err(format!("{spec}: this peer has no home directory"))
            }
            None => spec
                .resolve(Path::new("/"))
                .map_err(|e| format!("{spec}: {e}")),
        }
    }

    /// Root `root` of the last scan.
    pub(super) fn ctx(&self, root: u32) -> Result<&RootCtx, String> {
        self.roots
            .get(root as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    /// Root `root` of the last scan, to change.
    pub(super) fn ctx_mut(&mut self, root: u32) -> Result<&mut RootCtx, String> {
        self.roots
            .get_mut(root as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| format!("root #{root} was not scanned in this session"))
    }

    /// The last walk of `root` stayed on one filesystem (no mount inside the tree).
    pub(super) fn one_filesystem(&self, root: u32) -> bool {
        self.ctx(root).is_ok_and(|c| c.watchable)
    }

    /// Marks a root as a single file: its other entries are siblings beside it.
    pub(super) fn siblings(&mut self, root: u32) -> OpResult {
        self.ctx_mut(root)?.siblings = true;
        Ok(())
    }
}
