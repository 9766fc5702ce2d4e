//! Metadata never conflicts: the winning content takes, field by field, the newest change any
//! peer made to that field (each field's change clock rides in the version vector, see
//! [`Field`]), and the peers that hold that content with other metadata are given it.

use std::cmp::Reverse;

use super::entry::Version;
use super::PeerId;
use crate::model::{Content, Field, Meta, Order};

/// The winner's metadata with each [`Field`] taken from the version that changed it last.
///
/// Candidates are the versions of `sends` peers (a receive-only peer's changes never count)
/// of the winner's kind that hold its content or an older one (by their histories): a
/// version changed concurrently (a conflict's loser, one a send-only peer overrode) or one
/// that lost without history keeps its metadata with its own content. Of equal clocks (none
/// changed the field since its first sync, a first sync) a value wins over none (xattrs a
/// peer's filesystem cannot hold are not taken away), then the newest mtime, then the
/// winner, then the lowest peer.
pub(super) fn merged(
    versions: &[Version<'_>],
    winner: PeerId,
    losers: &[PeerId],
    sends: &dyn Fn(PeerId) -> bool,
) -> Option<Meta> {
    let top = versions.iter().find(|v| v.peer == winner)?;
    let won = top.meta?;
    let kind = std::mem::discriminant(&won.kind);
    let content = Content::of(Some(won));
    let older = |v: &Version<'_>| match (v.vv, top.vv) {
        (Some(mine), Some(theirs)) => {
            matches!(mine.compare(theirs), Order::Before | Order::Equal)
        }
        _ => false,
    };
    let candidates: Vec<(&Version<'_>, &Meta)> = versions
        .iter()
        .filter(|v| sends(v.peer) && !losers.contains(&v.peer))
        .filter_map(|v| Some((v, v.meta?)))
        .filter(|(_, m)| std::mem::discriminant(&m.kind) == kind)
        .filter(|(v, m)| Content::of(Some(m)) == content || older(v))
        .collect();
    let mut out = won.clone();
    for f in Field::ALL {
        let best = candidates.iter().max_by_key(|(v, m)| {
            (
                v.vv.map_or(0, |vv| vv.stamp(f)),
                f.has(m),
                m.mtime,
                v.peer == winner,
                Reverse(v.peer),
            )
        });
        if let Some((_, m)) = best {
            f.take(&mut out, m);
        }
    }
    Some(out)
}

/// The fields in which `held`, a version of the same content, differs from `want` (none for
/// another content).
pub fn differences(held: &Meta, want: &Meta) -> Vec<Field> {
    if Content::of(Some(held)) != Content::of(Some(want)) {
        return Vec::new();
    }
    Field::ALL
        .into_iter()
        .filter(|f| f.differs(held, want))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Kind, Vv};

    fn file(d: u8, mode: u32, mtime: i64) -> Meta {
        Meta {
            kind: Kind::File,
            size: 1,
            mode,
            mtime,
            digest: Some(Digest([d; 64])),
            extra: Default::default(),
        }
    }

    fn stamps(mode: u64, mtime: u64) -> Vv {
        let mut v = Vv(vec![(7, 1)]);
        if mode > 0 {
            v = v.stamped(Field::Mode, mode);
        }
        if mtime > 0 {
            v = v.stamped(Field::Mtime, mtime);
        }
        v
    }

    /// (what each peer holds and its clocks, winner, losers, receive-only peers) → (mode, mtime).
    type Case = (
        Vec<(Meta, Option<Vv>)>,
        PeerId,
        Vec<PeerId>,
        Vec<PeerId>,
        (u32, i64),
    );

    #[test]
    fn the_newest_change_of_each_field_wins() {
        let cases: Vec<(&str, Case)> = vec![
            (
                "a chmod on one peer goes everywhere",
                (
                    vec![
                        (file(1, 0o644, 10), Some(stamps(0, 0))),
                        (file(1, 0o755, 10), Some(stamps(50, 0))),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o755, 10),
                ),
            ),
            (
                "a touch on one peer goes everywhere, older or not",
                (
                    vec![
                        (file(1, 0o644, 10), Some(stamps(0, 0))),
                        (file(1, 0o644, 5), Some(stamps(0, 60))),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o644, 5),
                ),
            ),
            (
                "two chmods: the newer wins",
                (
                    vec![
                        (file(1, 0o600, 10), Some(stamps(70, 0))),
                        (file(1, 0o755, 10), Some(stamps(50, 0))),
                    ],
                    1,
                    vec![],
                    vec![],
                    (0o600, 10),
                ),
            ),
            (
                "new content on one peer, a chmod on the other: both",
                (
                    vec![
                        (file(2, 0o644, 99), Some(stamps(0, 90))),
                        (file(1, 0o700, 10), Some(stamps(40, 0))),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o700, 99),
                ),
            ),
            (
                "a chmod here and a touch there merge field by field",
                (
                    vec![
                        (file(1, 0o700, 10), Some(stamps(40, 0))),
                        (file(1, 0o644, 30), Some(stamps(0, 41))),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o700, 30),
                ),
            ),
            (
                "a first sync (no history): the newest mtime's metadata",
                (
                    vec![(file(1, 0o600, 10), None), (file(1, 0o664, 20), None)],
                    0,
                    vec![],
                    vec![],
                    (0o664, 20),
                ),
            ),
            (
                "a conflict's loser keeps its metadata with its content",
                (
                    vec![
                        (file(1, 0o644, 10), Some(stamps(0, 10))),
                        (file(2, 0o777, 9), Some(stamps(80, 20))),
                    ],
                    0,
                    vec![1],
                    vec![],
                    (0o644, 10),
                ),
            ),
            (
                "a concurrent content, even one that is no conflict copy, lends nothing",
                (
                    vec![
                        (file(1, 0o644, 10), Some(Vv(vec![(7, 2)]))),
                        (
                            file(2, 0o777, 90),
                            Some(Vv(vec![(7, 1), (8, 1)]).stamped(Field::Mode, 99)),
                        ),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o644, 10),
                ),
            ),
            (
                "an older content's chmod still counts",
                (
                    vec![
                        (file(1, 0o644, 10), Some(Vv(vec![(7, 2)]))),
                        (
                            file(2, 0o700, 5),
                            Some(Vv(vec![(7, 1)]).stamped(Field::Mode, 99)),
                        ),
                    ],
                    0,
                    vec![],
                    vec![],
                    (0o700, 10),
                ),
            ),
            (
                "a receive-only peer's chmod never counts",
                (
                    vec![
                        (file(1, 0o644, 10), Some(stamps(0, 0))),
                        (file(1, 0o777, 10), Some(stamps(80, 0))),
                    ],
                    0,
                    vec![],
                    vec![1],
                    (0o644, 10),
                ),
            ),
        ];
        for (name, (held, winner, losers, receive_only, want)) in cases {
            let versions: Vec<Version<'_>> = held
                .iter()
                .enumerate()
                .map(|(peer, (m, vv))| Version {
                    peer,
                    meta: Some(m),
                    vv: vv.as_ref(),
                })
                .collect();
            let m = merged(&versions, winner, &losers, &|p| !receive_only.contains(&p))
                .expect("a winner");
            assert_eq!((m.mode, m.mtime), want, "{name}");
            assert_eq!(
                m.digest, held[winner].0.digest,
                "{name}: the winner's content"
            );
        }
    }

    #[test]
    fn a_symlink_has_no_mode_and_a_directory_takes_no_file_metadata() {
        let link = |mtime| Meta {
            kind: Kind::Symlink(crate::paths::WirePath::from("t")),
            size: 0,
            mode: 0o777,
            mtime,
            digest: None,
            extra: Default::default(),
        };
        assert_eq!(differences(&link(1), &link(2)), [Field::Mtime]);
        let dir = Meta {
            kind: Kind::Dir,
            ..file(0, 0o755, 5)
        };
        let versions = [Version {
            peer: 0,
            meta: Some(&dir),
            vv: None,
        }];
        let f = file(1, 0o600, 50);
        let both = [
            versions[0],
            Version {
                peer: 1,
                meta: Some(&f),
                vv: None,
            },
        ];
        let m = merged(&both, 0, &[], &|_| true).unwrap();
        assert_eq!((m.mode, m.mtime), (0o755, 5));
        assert!(
            differences(&f, &file(2, 0o700, 50)).is_empty(),
            "another content"
        );
    }
}
