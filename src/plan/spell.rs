//! One entry under two spellings. A peer whose filesystem takes a name's NFC and NFD
//! spellings for one reports every name in NFC (its walk respells them), while peers that keep
//! names byte for byte hold the spelling they were given (NFD, from a Mac). Before the
//! decision, such a peer's names are respelled as the others spell them, so the two are one
//! entry: compared, copied and recorded as one, never a copy of itself beside itself. Its
//! serve takes either spelling for the same entry.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{Listing, PeerId};
use crate::paths::WirePath;

/// Respells the names of every peer in `normalizes` as the other peers spell them, where
/// those hold exactly one other spelling of the name and none holds it as that peer does.
/// Returns, per peer, each name respelled (as it reported it, and as it is now).
pub fn respell(
    views: &mut [Option<&mut Listing>],
    normalizes: &[bool],
) -> Vec<(PeerId, WirePath, WirePath)> {
    let normalizing = |p: PeerId| normalizes.get(p).copied().unwrap_or(false);
    // The NFC key of each name the byte-for-byte peers spell otherwise, with its spellings,
    // and every name they hold as it is.
    let mut other: BTreeMap<WirePath, BTreeSet<WirePath>> = BTreeMap::new();
    let mut as_is: HashSet<&WirePath> = HashSet::new();
    for (p, view) in views.iter().enumerate() {
        let Some(l) = view.as_deref().filter(|_| !normalizing(p)) else {
            continue;
        };
        for rel in l.keys().filter(|r| !r.as_bytes().is_ascii()) {
            match rel.nfc() {
                Some(key) => {
                    other.entry(key).or_default().insert(rel.clone());
                }
                None => {
                    as_is.insert(rel);
                }
            }
        }
    }
    let spelling = |rel: &WirePath| -> Option<WirePath> {
        match other.get(rel) {
            Some(set) if set.len() == 1 && !as_is.contains(rel) => set.first().cloned(),
            _ => None,
        }
    };
    let mut moves: Vec<(PeerId, WirePath, WirePath)> = Vec::new();
    for (p, view) in views.iter().enumerate() {
        let Some(l) = view.as_deref().filter(|_| normalizing(p)) else {
            continue;
        };
        for rel in l.keys().filter(|r| !r.as_bytes().is_ascii()) {
            if let Some(to) = spelling(rel).filter(|to| !l.contains_key(to)) {
                moves.push((p, rel.clone(), to));
            }
        }
    }
    // The hard-link leader an entry names is a name too.
    let links: Vec<(PeerId, WirePath, WirePath)> = views
        .iter()
        .enumerate()
        .filter(|(p, _)| normalizing(*p))
        .filter_map(|(p, v)| Some((p, v.as_deref()?)))
        .flat_map(|(p, l)| {
            l.iter().filter_map(move |(rel, seen)| {
                let link = seen.state.as_ref().ok()?.as_ref()?.extra.link.as_ref()?;
                Some((p, rel.clone(), link.clone()))
            })
        })
        .filter_map(|(p, rel, link)| Some((p, rel, spelling(&link)?)))
        .collect();
    for (p, rel, to) in links {
        if let Some(Some(Ok(Some(m)))) = views[p]
            .as_deref_mut()
            .map(|l| l.get_mut(&rel).map(|s| s.state.as_mut()))
        {
            m.extra.link = Some(to);
        }
    }
    for (p, from, to) in &moves {
        if let Some(l) = views[*p].as_deref_mut() {
            if let Some(seen) = l.remove(from) {
                l.insert(to.clone(), seen);
            }
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Meta};
    use crate::plan::Seen;

    fn listing(names: &[&str]) -> Listing {
        names
            .iter()
            .map(|n| {
                let meta = Meta {
                    kind: Kind::File,
                    size: 1,
                    mode: 0o644,
                    mtime: 1,
                    digest: None,
                    extra: Default::default(),
                };
                let seen = Seen {
                    state: Ok(Some(meta)),
                    vv: None,
                    changed: true,
                };
                (WirePath::from(*n), seen)
            })
            .collect()
    }

    fn names(l: &Listing) -> Vec<String> {
        l.keys()
            .map(|k| String::from_utf8(k.as_bytes().to_vec()).unwrap())
            .collect()
    }

    const NFC: &str = "caf\u{e9}";
    const NFD: &str = "cafe\u{301}";

    #[test]
    fn a_normalizing_peer_takes_the_others_spelling() {
        let nfc_dir = format!("{NFC}/x");
        let nfd_dir = format!("{NFD}/x");
        // (byte-for-byte peers' names, the normalizing peer's names, what it holds after)
        type Case<'a> = (Vec<Vec<&'a str>>, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            // One other spelling: taken, directories and what is below them alike.
            (
                vec![vec![NFD, &nfd_dir]],
                vec![NFC, &nfc_dir],
                vec![NFD, &nfd_dir],
            ),
            // The same spelling everywhere: nothing to do.
            (vec![vec![NFC]], vec![NFC], vec![NFC]),
            // A byte peer holds both spellings: two names, left for the collision report.
            (vec![vec![NFC, NFD]], vec![NFC], vec![NFC]),
            // Two byte peers, one spelling each: the same.
            (vec![vec![NFC], vec![NFD]], vec![NFC], vec![NFC]),
            // Two byte peers agreeing on the other spelling.
            (vec![vec![NFD], vec![NFD]], vec![NFC], vec![NFD]),
            // ASCII and names only it holds stay.
            (
                vec![vec!["a", NFD]],
                vec!["a", "\u{e9}t\u{e9}", NFC],
                vec!["a", NFD, "\u{e9}t\u{e9}"],
            ),
        ];
        for (i, (bytes, norm, want)) in cases.into_iter().enumerate() {
            let mut ls: Vec<Listing> = bytes.iter().map(|n| listing(n)).collect();
            ls.push(listing(&norm));
            let mut normalizes = vec![false; ls.len() - 1];
            normalizes.push(true);
            let before: Vec<Listing> = ls[..ls.len() - 1].to_vec();
            let mut views: Vec<Option<&mut Listing>> = ls.iter_mut().map(Some).collect();
            respell(&mut views, &normalizes);
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(names(ls.last().unwrap()), want, "case {i}");
            assert_eq!(
                &ls[..ls.len() - 1],
                &before[..],
                "case {i}: byte peers untouched"
            );
        }
    }

    #[test]
    fn a_link_leader_is_respelled_too_and_gone_peers_are_skipped() {
        let mut byte = listing(&[NFD, "b"]);
        let mut norm = listing(&[NFC, "b"]);
        if let Ok(Some(m)) = &mut norm.get_mut(&WirePath::from("b")).unwrap().state {
            m.extra.link = Some(WirePath::from(NFC));
        }
        let mut views = vec![Some(&mut byte), None, Some(&mut norm)];
        let moved = respell(&mut views, &[false, true, true]);
        assert_eq!(moved, vec![(2, WirePath::from(NFC), WirePath::from(NFD))]);
        let b = &norm[&WirePath::from("b")];
        let link = b
            .state
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .extra
            .link
            .clone();
        assert_eq!(link, Some(WirePath::from(NFD)));
    }
}
