//! Names that are one name on some peer's filesystem: `Readme` and `README` on a
//! case-insensitive one (exFAT, FAT, CIFS, macOS), a name's NFC and NFD spellings on a
//! normalizing one. Synced there as two, one would overwrite the other, and the next scan
//! would take the one not found for a deletion. So such names are a collision on that peer:
//! it is left out of all of them (and of what is below them), the other peers sync them as
//! usual, and the run reports it until the user renames one.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use unicode_normalization::UnicodeNormalization;

use super::{Input, Listing, PeerId, Plan};
use crate::model::Kind;
use crate::paths::WirePath;

/// How a peer's filesystem compares names (as its serve's probe found).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fold {
    /// Names that differ only in case are one name.
    pub case: bool,
    /// A name's NFC and NFD spellings are one name.
    pub unicode: bool,
}

impl Fold {
    /// Whether any two different names can be one here.
    pub fn folds(&self) -> bool {
        self.case || self.unicode
    }

    /// The name `rel` is under this rule: two paths with the same key are one path here.
    /// Case is folded by each character's uppercase (where it is one character, as exFAT's
    /// table does); a name that is no UTF-8 is folded in its ASCII letters only.
    pub fn key(&self, rel: &WirePath) -> Vec<u8> {
        let Ok(s) = std::str::from_utf8(rel.as_bytes()) else {
            return if self.case {
                rel.as_bytes().to_ascii_uppercase()
            } else {
                rel.as_bytes().to_vec()
            };
        };
        let s: String = if self.unicode {
            s.nfc().collect()
        } else {
            s.to_string()
        };
        if !self.case {
            return s.into_bytes();
        }
        s.chars()
            .map(|c| {
                let mut up = c.to_uppercase();
                match (up.next(), up.next()) {
                    (Some(u), None) => u,
                    _ => c,
                }
            })
            .collect::<String>()
            .into_bytes()
    }
}

/// One peer's collision: names that are one name on its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The peer.
    pub peer: PeerId,
    /// The names, in path order (two or more).
    pub names: Vec<WirePath>,
}

/// The collisions a first decision `plan` would make on each peer that folds names: among
/// the names every peer holds after it (those held now anywhere, less its deletions, with
/// its copies and conflict copies). Below a name already in a collision, none is named again
/// (that peer is out of the whole subtree).
pub(super) fn collisions(input: &Input<'_>, available: &[PeerId], plan: &Plan) -> Vec<Collision> {
    let fold = |p: PeerId| input.folds.get(p).copied().unwrap_or_default();
    let folding: Vec<PeerId> = available
        .iter()
        .copied()
        .filter(|p| fold(*p).folds())
        .collect();
    if folding.is_empty() {
        return Vec::new();
    }
    let held = |l: &Listing| -> Vec<WirePath> {
        l.iter()
            .filter(|(rel, s)| !rel.is_empty() && matches!(s.state, Ok(Some(_))))
            .map(|(rel, _)| rel.clone())
            .collect()
    };
    let deleted: HashSet<&WirePath> = plan
        .removes
        .iter()
        .filter(|r| r.deleted)
        .map(|r| &r.rel)
        .collect();
    let mut after: BTreeSet<WirePath> = BTreeSet::new();
    for &p in available {
        if let Some(l) = input.views[p] {
            after.extend(held(l).into_iter().filter(|r| !deleted.contains(r)));
        }
    }
    after.extend(plan.copies.iter().map(|c| c.rel.clone()));
    after.extend(plan.renames.iter().map(|r| r.to.clone()));
    let mut out = Vec::new();
    for p in folding {
        out.extend(
            colliding(fold(p), &after)
                .into_iter()
                .map(|names| Collision { peer: p, names }),
        );
    }
    out
}

/// Per peer whose filesystem holds no symlinks, the symlinks a first decision `plan` would
/// make there, in path order.
pub(super) fn symlinks_out(input: &Input<'_>, plan: &Plan) -> Vec<(PeerId, Vec<WirePath>)> {
    let mut out: Vec<(PeerId, Vec<WirePath>)> = Vec::new();
    for &p in input.no_symlinks {
        let rels: Vec<WirePath> = plan
            .copies
            .iter()
            .filter(|c| matches!(c.meta.kind, Kind::Symlink(_)) && c.targets.contains(&p))
            .map(|c| c.rel.clone())
            .collect();
        if !rels.is_empty() {
            out.push((p, rels));
        }
    }
    out
}

/// The groups of `names` that are one name under `fold`, shallowest first, leaving out any
/// name below a name already in a group.
fn colliding(fold: Fold, names: &BTreeSet<WirePath>) -> Vec<Vec<WirePath>> {
    let mut by_key: BTreeMap<Vec<u8>, Vec<WirePath>> = BTreeMap::new();
    for rel in names {
        by_key.entry(fold.key(rel)).or_default().push(rel.clone());
    }
    let mut groups: Vec<Vec<WirePath>> = by_key.into_values().filter(|g| g.len() > 1).collect();
    let depth = |r: &WirePath| r.as_bytes().iter().filter(|b| **b == b'/').count();
    groups.sort_by_key(|g| (depth(&g[0]), g[0].clone()));
    let mut taken: HashSet<WirePath> = HashSet::new();
    let mut out = Vec::new();
    for g in groups {
        if g.iter().any(|r| r.ancestors().any(|a| taken.contains(&a))) {
            continue;
        }
        taken.extend(g.iter().cloned());
        out.push(g);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<WirePath> {
        names.iter().map(|n| WirePath::from(*n)).collect()
    }

    #[test]
    fn keys_fold_case_and_spelling_as_the_filesystem_does() {
        let case = Fold {
            case: true,
            unicode: false,
        };
        let nfc = Fold {
            case: false,
            unicode: true,
        };
        let both = Fold {
            case: true,
            unicode: true,
        };
        let k = |f: Fold, s: &str| f.key(&WirePath::from(s));
        // (rule, a, b, one name?)
        let cases = [
            (case, "Readme", "README", true),
            (case, "d/Readme", "D/readme", true),
            (case, "Straße", "STRASSE", false),
            (case, "caf\u{e9}", "CAF\u{c9}", true),
            (case, "caf\u{e9}", "cafe\u{301}", false),
            (nfc, "caf\u{e9}", "cafe\u{301}", true),
            (nfc, "Readme", "README", false),
            (both, "CAFE\u{301}", "caf\u{e9}", true),
            (Fold::default(), "Readme", "README", false),
        ];
        for (i, (f, a, b, one)) in cases.into_iter().enumerate() {
            assert_eq!(k(f, a) == k(f, b), one, "case {i}: {a} / {b}");
        }
        // Not UTF-8: ASCII letters only.
        let raw = WirePath(b"A\xff".to_vec());
        assert_eq!(case.key(&raw), case.key(&WirePath(b"a\xff".to_vec())));
    }

    #[test]
    fn a_collision_is_named_once_at_its_shallowest() {
        let case = Fold {
            case: true,
            unicode: false,
        };
        let got = colliding(
            case,
            &set(&[
                "Dir", "Dir/a", "Dir/A", "dir", "dir/a", "x/README", "x/Readme", "x/readme", "y",
            ]),
        );
        assert_eq!(
            got,
            vec![
                vec![WirePath::from("Dir"), WirePath::from("dir")],
                vec![
                    WirePath::from("x/README"),
                    WirePath::from("x/Readme"),
                    WirePath::from("x/readme")
                ],
            ]
        );
        assert!(colliding(Fold::default(), &set(&["a", "A"])).is_empty());
    }
}
