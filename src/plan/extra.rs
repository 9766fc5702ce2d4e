//! Which targets must be given owners, extended attributes and ACLs after the copies, and
//! which peer holds the values: the scan carries only their hashes, so the values are fetched
//! from a peer that holds the wanted ones, only for the entries that need them.

use super::{Listing, PeerId, Plan};
use crate::model::NO_SYS;
use crate::model::{Content, Field, Kind, Meta, Owner};
use crate::paths::WirePath;

/// What one target needs beyond its content, mode and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The target.
    pub peer: PeerId,
    /// The entry.
    pub rel: WirePath,
    /// Its attributes must be replaced: by those of this peer's entry (`None`: by none).
    pub xattrs: Option<Option<(PeerId, WirePath)>>,
    /// The values read as root (`trusted.*`, `security.*`) are part of them.
    pub sys: bool,
    /// Its ACLs must be replaced: by those of this peer's entry (`None`: by none).
    pub acl: Option<Option<(PeerId, WirePath)>>,
    /// Its owner must become this one.
    pub owner: Option<Owner>,
}

/// What each target of `plan` needs after its copies, clones and metadata changes: a copy or
/// clone arrives without attributes or owner (it is a new inode), a touched entry has those
/// it held. `views` are the peers' listings, where the values are looked for.
pub fn needs(plan: &Plan, views: &[Option<&Listing>]) -> Vec<Need> {
    let mut out = Vec::new();
    for c in &plan.copies {
        let at = (c.master, c.source.clone().unwrap_or_else(|| c.rel.clone()));
        for &p in &c.targets {
            out.extend(need(p, &c.rel, None, &c.meta, Some(&at), views));
        }
    }
    for c in &plan.clones {
        out.extend(need(c.peer, &c.rel, None, &c.meta, None, views));
    }
    for t in &plan.touches {
        out.extend(need(t.peer, &t.rel, Some(&t.was), &t.meta, None, views));
    }
    out
}

fn need(
    peer: PeerId,
    rel: &WirePath,
    held: Option<&Meta>,
    want: &Meta,
    first: Option<&(PeerId, WirePath)>,
    views: &[Option<&Listing>],
) -> Option<Need> {
    if want.kind == Kind::Special {
        return None;
    }
    let empty = Meta {
        extra: Default::default(),
        ..want.clone()
    };
    let held = held.unwrap_or(&empty);
    let has_sys = want.extra.sys.is_some_and(|s| s != NO_SYS);
    let xattrs = Field::Xattrs.differs(held, want) || (held.extra.sys.is_none() && has_sys);
    let acl = Field::Acl.differs(held, want);
    let owner = match (&held.extra.owner, &want.extra.owner) {
        (_, None) => None,
        (None, Some(w)) => Some(w.clone()),
        (Some(h), Some(w)) => (h.key() != w.key()).then(|| w.clone()),
    };
    if !xattrs && !acl && owner.is_none() {
        return None;
    }
    let holder = |same: &dyn Fn(&Meta) -> bool| -> Option<(PeerId, WirePath)> {
        let content = Content::of(Some(want));
        let at = |(p, r): &(PeerId, WirePath)| {
            let m = views
                .get(*p)?
                .as_ref()?
                .get(r)?
                .state
                .as_ref()
                .ok()?
                .as_ref()?;
            (Content::of(Some(m)) == content && same(m)).then(|| (*p, r.clone()))
        };
        first.and_then(at).or_else(|| {
            (0..views.len())
                .filter(|p| *p != peer)
                .find_map(|p| at(&(p, rel.clone())))
        })
    };
    let xattrs = xattrs.then(|| {
        (want.extra.xattrs.is_some() || has_sys).then(|| {
            holder(&|m: &Meta| m.extra.xattrs == want.extra.xattrs && m.extra.sys == want.extra.sys)
        })
    });
    let acl = acl.then(|| {
        want.extra
            .acl
            .is_some()
            .then(|| holder(&|m: &Meta| m.extra.acl == want.extra.acl))
    });
    // Wanted values no peer holds (changed meanwhile) are left for the next run.
    let xattrs = match xattrs {
        Some(Some(None)) => None,
        Some(Some(Some(h))) => Some(Some(h)),
        Some(None) => Some(None),
        None => None,
    };
    let acl = match acl {
        Some(Some(None)) => None,
        Some(Some(Some(h))) => Some(Some(h)),
        Some(None) => Some(None),
        None => None,
    };
    if xattrs.is_none() && acl.is_none() && owner.is_none() {
        return None;
    }
    Some(Need {
        peer,
        rel: rel.clone(),
        sys: want.extra.sys.is_some(),
        xattrs,
        acl,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Extra};
    use crate::plan::{Copy, Seen, Touch};

    fn file(x: Option<u8>, acl: Option<u8>) -> Meta {
        Meta {
            kind: Kind::File,
            size: 1,
            mode: 0o644,
            mtime: 1,
            digest: Some(Digest([1; 64])),
            extra: Extra {
                xattrs: x.map(|b| [b; 16]),
                acl: acl.map(|b| [b; 16]),
                ..Default::default()
            },
        }
    }

    fn listing(m: &Meta) -> Listing {
        let mut l = Listing::new();
        l.insert(
            WirePath::from("f"),
            Seen {
                state: Ok(Some(m.clone())),
                vv: None,
                changed: false,
            },
        );
        l
    }

    #[test]
    fn targets_need_what_they_lack_from_a_peer_that_holds_it() {
        let f = WirePath::from("f");
        let master = file(Some(1), Some(2));
        let (l0, l2) = (listing(&master), listing(&file(Some(9), None)));
        let views = [Some(&l0), None, Some(&l2)];
        let mut plan = Plan::default();
        plan.copies.push(Copy {
            rel: f.clone(),
            master: 0,
            targets: vec![1],
            meta: master.clone(),
            source: None,
        });
        // A copy arrives bare: both from the master.
        let n = needs(&plan, &views);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].xattrs, Some(Some((0, f.clone()))));
        assert_eq!(n[0].acl, Some(Some((0, f.clone()))));
        // A touched peer with other xattrs and no ACL: only what differs.
        plan.copies.clear();
        plan.touches.push(Touch {
            rel: f.clone(),
            peer: 2,
            was: file(Some(9), Some(2)),
            meta: master.clone(),
        });
        let n = needs(&plan, &views);
        assert_eq!(
            (n[0].peer, &n[0].xattrs, &n[0].acl),
            (2, &Some(Some((0, f.clone()))), &None)
        );
        // A removal needs no values.
        plan.touches[0].meta = file(None, Some(2));
        let n = needs(&plan, &views);
        assert_eq!(n[0].xattrs, Some(None));
        // Only mode and mtime differ: nothing.
        plan.touches[0].was = file(None, Some(2));
        assert!(needs(&plan, &views).is_empty());
        // A bare copy wanting nothing needs nothing.
        plan.touches.clear();
        plan.copies.push(Copy {
            rel: f,
            master: 0,
            targets: vec![1],
            meta: file(None, None),
            source: None,
        });
        assert!(needs(&plan, &views).is_empty());
    }
}
