//! Fetching the extended attributes and ACLs of entries a peer holds, for targets that need
//! the same values.

use std::collections::HashSet;

use super::check;
use super::conn::{Conn, OpError};
use crate::extra::xattr::{Class, Xattr};
use crate::paths::WirePath;
use crate::proto::{Request, Response};

/// Paths per [`Request::Attrs`].
const ATTRS_BATCH: usize = 256;

impl Conn {
    /// The attributes of entries `rels` of root `root` of the last scan, of `classes`, each
    /// checked ([`check::take_attrs`]): every one the serve could read, and how many it could
    /// not (it warns of each, and leaves its entry out).
    pub async fn attrs(
        &mut self,
        root: u32,
        rels: &[WirePath],
        classes: &[Class],
    ) -> Result<(Vec<(WirePath, Vec<Xattr>)>, usize), OpError> {
        let mut out = Vec::with_capacity(rels.len());
        let mut unread = 0;
        for slice in rels.chunks(ATTRS_BATCH) {
            let mut asked: HashSet<WirePath> = slice.iter().cloned().collect();
            let req = Request::Attrs {
                root,
                rels: asked.iter().cloned().collect(),
            };
            self.send(&req).await.map_err(OpError::Lost)?;
            self.flush().await.map_err(OpError::Lost)?;
            loop {
                match self.recv().await.map_err(OpError::Lost)? {
                    Response::Attrs(got) => out.extend(
                        check::take_attrs(got, &mut asked, classes)
                            .map_err(|e| OpError::Lost(self.refused(e)))?,
                    ),
                    // Those not sent could not be read there (the serve warned of each): their
                    // entries' attributes are left for the next run.
                    Response::Done => {
                        unread += asked.len();
                        break;
                    }
                    Response::Failed(m) => return Err(OpError::Failed(m)),
                    other => return Err(OpError::Lost(self.unexpected(&other))),
                }
            }
        }
        Ok((out, unread))
    }
}
