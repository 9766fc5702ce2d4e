//! Hard links: a name the winning version says is linked to another name of the root
//! ([`crate::model::Extra::link`]) is made on each target as a hard link to that name, once
//! that name holds the same version there, instead of a second transfer; a link a peer
//! broke is broken on the others by a local copy. Where a target cannot end with the link
//! (the name it links to ends with another version there), the name is an independent file
//! there and recorded as one, so it is never taken for a change on that peer.

use std::collections::{HashMap, HashSet};

use super::{Clone, Listing, PeerId, Plan};
use crate::model::{Content, Kind, Meta};
use crate::paths::WirePath;

/// A name a target makes as another name of a file it holds with the same version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The entry to create or replace.
    pub rel: WirePath,
    /// The peer.
    pub peer: PeerId,
    /// The name it links to: the first of its group in the root's order.
    pub to: WirePath,
    /// The wanted version's metadata (its link field names `to`).
    pub meta: Meta,
}

/// Whether two versions can be one file: the same content, size, mode and mtime.
fn one_file(a: &Meta, b: &Meta) -> bool {
    a.kind == Kind::File
        && b.kind == Kind::File
        && Content::of(Some(a)) == Content::of(Some(b))
        && (a.size, a.mode, a.mtime) == (b.size, b.mode, b.mtime)
}

/// Turns the copies, clones and metadata changes of names the winner links into links on each
/// target where the linked-to name ends with the same version; breaks links a target holds
/// that the winner does not. `windowed`: names absent from `views` were copied to every
/// target in an earlier window of a first sync (the serve checks that they arrived).
pub fn link_names(plan: &mut Plan, views: &[Option<&Listing>], windowed: bool) {
    let wanted = |m: &Meta| m.extra.link.is_some();
    let any = plan.copies.iter().any(|c| wanted(&c.meta))
        || plan.clones.iter().any(|c| wanted(&c.meta))
        || plan
            .touches
            .iter()
            .any(|t| t.meta.extra.link != t.was.extra.link);
    if !any {
        return;
    }
    // What each peer holds of each name linked to once the plan is carried out (without
    // links): only those names are looked up.
    let named: HashSet<WirePath> = plan
        .copies
        .iter()
        .map(|c| &c.meta)
        .chain(plan.clones.iter().map(|c| &c.meta))
        .chain(plan.touches.iter().map(|t| &t.meta))
        .filter_map(|m| m.extra.link.clone())
        .collect();
    let mut copied: HashMap<WirePath, (Meta, Vec<PeerId>)> = HashMap::new();
    for c in plan.copies.iter().filter(|c| named.contains(&c.rel)) {
        copied.insert(c.rel.clone(), (c.meta.clone(), c.targets.clone()));
    }
    let mut given: HashMap<(PeerId, WirePath), Meta> = HashMap::new();
    for t in plan.touches.iter().filter(|t| named.contains(&t.rel)) {
        given.insert((t.peer, t.rel.clone()), t.meta.clone());
    }
    for c in plan.clones.iter().filter(|c| named.contains(&c.rel)) {
        given.insert((c.peer, c.rel.clone()), c.meta.clone());
    }
    let removed: HashSet<(PeerId, WirePath)> = plan
        .removes
        .iter()
        .filter(|r| named.contains(&r.rel))
        .map(|r| (r.peer, r.rel.clone()))
        .collect();
    let held = |p: PeerId, rel: &WirePath| -> Option<Meta> {
        if let Some((m, targets)) = copied.get(rel) {
            if targets.contains(&p) {
                return Some(m.clone());
            }
        }
        if let Some(m) = given.get(&(p, rel.clone())) {
            return Some(m.clone());
        }
        if removed.contains(&(p, rel.clone())) {
            return None;
        }
        match views.get(p).copied().flatten().map(|l| l.get(rel)) {
            Some(Some(seen)) => seen.state.clone().ok().flatten(),
            _ => None,
        }
    };
    let holder_lacks = |rel: &WirePath| views.iter().flatten().all(|l| !l.contains_key(rel));
    // Whether `p` ends with `to` holding the version `m` names.
    let can_link = |p: PeerId, to: &WirePath, m: &Meta| {
        let mut plain = m.clone();
        plain.extra.link = None;
        match held(p, to) {
            Some(there) => there.extra.link.is_none() && one_file(&there, &plain),
            None => windowed && holder_lacks(to),
        }
    };
    let mut links = Vec::new();
    let mut independent: Vec<(PeerId, WirePath)> = Vec::new();
    for c in &mut plan.copies {
        let Some(to) = c.meta.extra.link.clone() else {
            continue;
        };
        c.targets.retain(|&t| {
            if can_link(t, &to, &c.meta) {
                links.push(Link {
                    rel: c.rel.clone(),
                    peer: t,
                    to: to.clone(),
                    meta: c.meta.clone(),
                });
                false
            } else {
                independent.push((t, c.rel.clone()));
                true
            }
        });
    }
    plan.clones.retain(|c| match &c.meta.extra.link {
        Some(to) if can_link(c.peer, to, &c.meta) => {
            links.push(Link {
                rel: c.rel.clone(),
                peer: c.peer,
                to: to.clone(),
                meta: c.meta.clone(),
            });
            false
        }
        Some(_) => {
            independent.push((c.peer, c.rel.clone()));
            true
        }
        None => true,
    });
    let mut breaks = Vec::new();
    plan.touches.retain_mut(|t| {
        if t.meta.extra.link == t.was.extra.link || t.meta.kind != Kind::File {
            return true;
        }
        match &t.meta.extra.link {
            Some(to) if can_link(t.peer, to, &t.meta) => {
                links.push(Link {
                    rel: t.rel.clone(),
                    peer: t.peer,
                    to: to.clone(),
                    meta: t.meta.clone(),
                });
                false
            }
            Some(_) => {
                // It stays what it is there; what else differs is still set.
                independent.push((t.peer, t.rel.clone()));
                t.meta.extra.link.clone_from(&t.was.extra.link);
                t.meta != t.was
            }
            None => {
                // A link the winner broke: the name becomes a file of its own there.
                breaks.push(Clone {
                    rel: t.rel.clone(),
                    peer: t.peer,
                    from: t.rel.clone(),
                    meta: t.meta.clone(),
                });
                false
            }
        }
    });
    plan.copies.retain(|c| !c.targets.is_empty());
    plan.clones.extend(breaks);
    for (p, rel) in independent {
        plan.records.amend(p, &rel, |r| {
            if let Some(m) = &mut r.meta {
                m.extra.link = None;
            }
        });
    }
    plan.links.extend(links);
}
