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
/// that the winner does not. A name absent from every view is the same everywhere (settled,
/// or copied to every target in an earlier window of a first sync): the serve checks that it
/// holds the version.
pub fn link_names(plan: &mut Plan, views: &[Option<&Listing>]) {
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
            // In no listing: settled (the same on every peer, so not listed) or, in windows,
            // copied in an earlier window. The serve checks it holds the version.
            None => holder_lacks(to),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Record, Vv};
    use crate::plan::{Copy, Seen, Touch};

    fn file(d: u8, link: Option<&str>) -> Meta {
        Meta {
            kind: Kind::File,
            size: 3,
            mode: 0o644,
            mtime: 10,
            digest: Some(Digest([d; 64])),
            extra: crate::model::Extra {
                link: link.map(WirePath::from),
                ..Default::default()
            },
        }
    }

    fn copy(rel: &str, meta: Meta) -> Copy {
        Copy {
            rel: WirePath::from(rel),
            master: 0,
            targets: vec![1],
            meta,
            source: None,
        }
    }

    fn listing(entries: &[(&str, Meta)]) -> Listing {
        entries
            .iter()
            .map(|(rel, m)| {
                (
                    WirePath::from(*rel),
                    Seen {
                        state: Ok(Some(m.clone())),
                        vv: Some(Vv(vec![(1, 1)])),
                        changed: false,
                    },
                )
            })
            .collect()
    }

    /// (copies, touches of peer 1, what peer 1 holds) → (links made, copies left, clones).
    type Case = (
        Vec<Copy>,
        Vec<Touch>,
        Vec<(&'static str, Meta)>,
        usize,
        usize,
        usize,
    );

    #[test]
    fn a_linked_name_is_linked_where_its_first_name_ends_the_same() {
        let touch = |rel: &str, was: Meta, meta: Meta| Touch {
            rel: WirePath::from(rel),
            peer: 1,
            was,
            meta,
        };
        let cases: Vec<(&str, Case)> = vec![
            (
                "both copied: one transfer, then a link",
                (
                    vec![copy("a", file(1, None)), copy("b", file(1, Some("a")))],
                    vec![],
                    vec![],
                    1,
                    1,
                    0,
                ),
            ),
            (
                "the first name held already: a link, no transfer",
                (
                    vec![copy("b", file(1, Some("a")))],
                    vec![],
                    vec![("a", file(1, None))],
                    1,
                    0,
                    0,
                ),
            ),
            (
                "the first name ends with another content: a copy of its own",
                (
                    vec![copy("b", file(1, Some("a")))],
                    vec![],
                    vec![("a", file(2, None))],
                    0,
                    1,
                    0,
                ),
            ),
            (
                "the first name is itself linked (a chain): a copy of its own",
                (
                    vec![copy("c", file(1, Some("b")))],
                    vec![],
                    vec![("b", file(1, Some("a"))), ("a", file(1, None))],
                    0,
                    1,
                    0,
                ),
            ),
            (
                "a name linked to one no listing holds (settled everywhere): a link the serve checks",
                (vec![copy("b", file(1, Some("x")))], vec![], vec![], 1, 0, 0),
            ),
            (
                "a link made elsewhere: made here without a copy",
                (
                    vec![],
                    vec![touch("b", file(1, None), file(1, Some("a")))],
                    vec![("a", file(1, None)), ("b", file(1, None))],
                    1,
                    0,
                    0,
                ),
            ),
            (
                "a link broken elsewhere: broken here by a local copy",
                (
                    vec![],
                    vec![touch("b", file(1, Some("a")), file(1, None))],
                    vec![("a", file(1, None)), ("b", file(1, Some("a")))],
                    0,
                    0,
                    1,
                ),
            ),
        ];
        for (name, (copies, touches, held, links, left, clones)) in cases {
            let mut plan = Plan {
                copies,
                touches,
                ..Plan::default()
            };
            for c in &plan.copies.clone() {
                plan.records.push(
                    1,
                    Record {
                        rel: c.rel.clone(),
                        meta: Some(c.meta.clone()),
                        vv: Vv(vec![(1, 2)]),
                    },
                );
            }
            let mine = listing(&held);
            let nothing = Listing::new();
            let views = [Some(&nothing), Some(&mine)];
            link_names(&mut plan, &views);
            assert_eq!(plan.links.len(), links, "{name}: links");
            assert_eq!(plan.copies.len(), left, "{name}: copies");
            assert_eq!(plan.clones.len(), clones, "{name}: clones");
            // A name copied as a file of its own is recorded as one.
            for c in &plan.copies {
                let r = plan.records.of(1).find(|r| r.rel == c.rel).unwrap();
                assert_eq!(r.meta.as_ref().unwrap().extra.link, None, "{name}");
            }
        }
    }
}
