//! Extended attributes, ACLs and owners: read for another peer that needs them, and set on
//! an entry of this one (through a handle of the entry itself, never through a symlink).

use std::io::Write;

use super::root::RootCtx;
use super::{Fail, OpResult, Server};
use crate::beneath::{kind_of, Expect, Stamp};
use crate::extra::xattr::{self, Class, Xattr};
use crate::model::{Meta, Owner};
use crate::paths::WirePath;
use crate::proto::{write_frame, FrameError, Response};

/// Bytes of attributes per [`Response::Attrs`] frame (one entry's are at most
/// [`xattr::MAX_TOTAL`]; a frame stays well below [`crate::proto::MAX_FRAME`]).
const FRAME_BYTES: usize = 4 << 20;

impl Server {
    /// Answers [`crate::proto::Request::Attrs`]: the attributes of entries of the last scan
    /// that the scan read, in frames, then `Done` (or `Failed`); an entry gone or unreadable
    /// since is left out, with a warning.
    pub(super) fn attrs<W: Write>(
        &self,
        root: u32,
        rels: Vec<WirePath>,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let ctx = match self.ctx(root) {
            Ok(c) => c,
            Err(e) => return write_frame(w, &Response::Failed(e)),
        };
        let classes = ctx.meta.classes(ctx.as_root);
        let (mut batch, mut bytes) = (Vec::new(), 0usize);
        for rel in rels {
            if ctx.meta(&ctx.spelled(&rel)).is_none() {
                let e = format!("{rel:?}: not an entry of the last scan");
                return write_frame(w, &Response::Failed(e));
            }
            let list = match xattr::read(&path_of(ctx, &rel), &classes) {
                Ok(l) => l,
                // Gone or unreadable since the scan: this entry's attributes wait for the next
                // run, and every other entry's still go.
                Err(e) => {
                    let e = format!(
                        "{}: {e}; its attributes are left for the next run",
                        path_of(ctx, &rel).display()
                    );
                    write_frame(w, &Response::Warning(e))?;
                    continue;
                }
            };
            bytes += list
                .iter()
                .map(|x| x.name.len() + x.value.len())
                .sum::<usize>();
            batch.push((rel, list));
            if bytes >= FRAME_BYTES {
                write_frame(w, &Response::Attrs(std::mem::take(&mut batch)))?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            write_frame(w, &Response::Attrs(batch))?;
        }
        write_frame(w, &Response::Done)
    }

    /// Answers [`crate::proto::Request::SetExtra`]: gives an entry another peer's owner,
    /// attributes and ACLs, each only if this session keeps it, the serve may set it (owners
    /// as root only, never an error otherwise) and the filesystem holds it (else left out
    /// quietly: the first sync there named what it cannot hold). A file must still be the
    /// version the scan saw or this session left.
    pub(super) fn set_extra(
        &self,
        root: u32,
        rel: &WirePath,
        xattrs: Option<Vec<Xattr>>,
        sys: bool,
        acl: Option<Vec<Xattr>>,
        owner: Option<Owner>,
    ) -> OpResult {
        let ctx = self.ctx(root)?;
        for (list, classes) in [
            (&xattrs, &[Class::User, Class::Sys][..]),
            (&acl, &[Class::Acl][..]),
        ] {
            let Some(list) = list else { continue };
            xattr::check(list)?;
            if list
                .iter()
                .any(|x| !xattr::class_of(&x.name).is_some_and(|c| classes.contains(&c)))
            {
                return Err(Fail::Error("attributes of another kind than asked".into()));
            }
        }
        if let Some(o) = &owner {
            if ![&o.user, &o.group]
                .into_iter()
                .all(|n| n.as_deref().is_none_or(crate::extra::name_ok))
            {
                return Err(Fail::Error("a bad owner name".into()));
            }
        }
        let at = ctx.at(rel, false)?;
        let gone = || Fail::Changed(format!("{}: gone since the scan", at.shown().display()));
        let st = at
            .lstat()
            .map_err(|e| Fail::Error(e.to_string()))?
            .ok_or_else(gone)?;
        let kind = kind_of(&st);
        if kind == rustix::fs::FileType::RegularFile {
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
        }
        let holds = ctx.holds();
        let err = |e: std::io::Error| Fail::Error(format!("{}: {e}", at.shown().display()));
        // The owner first: a chown drops file capabilities (`security.capability`).
        if let Some(o) = owner.filter(|_| ctx.meta.owner && ctx.as_root && holds.modes) {
            let (uid, gid) = if ctx.meta.numeric_ids {
                (o.uid, o.gid)
            } else {
                crate::extra::local_ids(&o)
            };
            if (st.st_uid, st.st_gid) != (uid, gid) {
                at.chown(uid, gid).map_err(err)?;
            }
        }
        let mut sets: Vec<(Vec<Class>, Vec<Xattr>)> = Vec::new();
        if let Some(list) = xattrs.filter(|_| ctx.meta.xattrs && holds.xattrs) {
            let mut classes = vec![Class::User];
            if sys && ctx.as_root {
                classes.push(Class::Sys);
            }
            sets.push((classes, list));
        }
        if let Some(list) = acl.filter(|_| ctx.meta.acls && holds.acls) {
            sets.push((vec![Class::Acl], list));
        }
        let attrs_fit = matches!(
            kind,
            rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory
        );
        if !sets.is_empty() && attrs_fit {
            let set = || -> std::io::Result<()> {
                use std::os::fd::AsFd;
                let fd = at.open_attrs()?;
                for (classes, list) in &sets {
                    xattr::replace(fd.as_fd(), classes, list)?;
                }
                Ok(())
            };
            match set() {
                // user.* needs write permission, which a read-only file (0444) or directory
                // (0555) lacks for its owner too: as rsync does, its owner makes it writable
                // for a moment.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !ctx.as_root => {
                    let mode = st.st_mode & 0o7777;
                    at.set_mode(mode | 0o600).map_err(err)?;
                    let res = set();
                    at.set_mode(mode).map_err(err)?;
                    res.map_err(err)?;
                }
                res => res.map_err(err)?,
            }
        }
        if kind == rustix::fs::FileType::RegularFile {
            // Its ctime moved: what the commit finds there is still what this session left.
            let now = at.lstat().map_err(err)?.ok_or_else(gone)?;
            ctx.placed(rel, Stamp::of(&now).id());
        }
        Ok(())
    }
}

/// The entry's path (for reads only: every write goes through the root's handle).
fn path_of(ctx: &RootCtx, rel: &WirePath) -> std::path::PathBuf {
    if rel.is_empty() {
        ctx.abs.clone()
    } else {
        ctx.abs.join(rel.as_path())
    }
}

/// Whether the entry at `rel` has the owner, attributes and ACLs `m` records, as far as this
/// session keeps them and the filesystem holds them: the commit records no value that did not
/// arrive (the next run would take the old one for a change here).
pub(super) fn arrived(ctx: &RootCtx, rel: &WirePath, m: &Meta) -> bool {
    let opts = &ctx.meta;
    if !(opts.xattrs || opts.acls || (opts.owner && ctx.as_root)) {
        return true;
    }
    let Ok(now) = crate::extra::read(&path_of(ctx, rel), &m.kind, opts, ctx.as_root) else {
        return false;
    };
    let holds = ctx.holds();
    let sys = !ctx.as_root || m.extra.sys.is_none() || now.sys == m.extra.sys;
    let xattrs = !opts.xattrs || !holds.xattrs || (now.xattrs == m.extra.xattrs && sys);
    let acl = !opts.acls || !holds.acls || now.acl == m.extra.acl;
    let owner = match (&now.owner, &m.extra.owner) {
        (Some(n), Some(w)) if holds.modes => n.key() == w.key(),
        _ => true,
    };
    xattrs && acl && owner
}
