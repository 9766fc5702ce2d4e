//! Metadata beyond mode and mtime as the decision and the wire see it: which parts a run
//! keeps, and extended attributes as values (the serve reads and sets them).

use serde::{Deserialize, Serialize};

/// Which metadata beyond mode and mtime a run keeps (`--no-xattrs`, `--no-acls`,
/// `--no-owner`, `--numeric-ids`): a part that is off is neither read nor compared nor set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaOpts {
    /// Extended attributes: `user.*`, and `trusted.*` and `security.*` as root.
    pub xattrs: bool,
    /// POSIX ACLs.
    pub acls: bool,
    /// Owner and group, where the serve runs as root.
    pub owner: bool,
    /// Owners by number, not by name.
    pub numeric_ids: bool,
    /// Which names share an inode ([`super::Extra::link`]); off with
    /// `--no-hard-links`, when every name is a file of its own.
    pub links: bool,
}

impl Default for MetaOpts {
    fn default() -> Self {
        MetaOpts {
            xattrs: true,
            acls: true,
            owner: true,
            numeric_ids: false,
            links: true,
        }
    }
}

impl MetaOpts {
    /// Nothing beyond mode and mtime.
    pub fn none() -> Self {
        MetaOpts {
            xattrs: false,
            acls: false,
            owner: false,
            numeric_ids: false,
            links: false,
        }
    }

    /// The attribute classes read and set by a serve (`root`: running as root).
    pub fn classes(&self, root: bool) -> Vec<Class> {
        let mut c = Vec::new();
        if self.xattrs {
            c.push(Class::User);
            if root {
                c.push(Class::Sys);
            }
        }
        if self.acls {
            c.push(Class::Acl);
        }
        c
    }
}

/// What [`super::Extra::sys`] says of an entry read as root that has no such attributes.
pub const NO_SYS: [u8; 16] = [0; 16];

/// The ACL attributes: kept apart from the other xattrs ([`super::Extra::acl`]).
pub const ACL_NAMES: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];
/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Its full name, namespace included (`user.mime_type`).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Its value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Which attributes a name belongs to, as synk keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `user.*`: kept wherever the filesystem holds them.
    User,
    /// `trusted.*` and `security.*`: read and set only as root.
    Sys,
    /// The POSIX ACLs.
    Acl,
}

/// The class of attribute `name`, if synk keeps it at all (`system.*` beyond ACLs, say
/// `system.nfs4_acl`, is not; nor are file capabilities, `security.capability`, which grant
/// privilege as setuid does and which a peer must not plant on another either).
pub fn class_of(name: &[u8]) -> Option<Class> {
    if name == b"security.capability" {
        None
    } else if name.starts_with(b"user.") {
        Some(Class::User)
    } else if name.starts_with(b"trusted.") || name.starts_with(b"security.") {
        Some(Class::Sys)
    } else if ACL_NAMES.contains(&name) {
        Some(Class::Acl)
    } else {
        None
    }
}
