//! Names that are one name on some peer's filesystem (case, NFC/NFD), table by table: that
//! peer is out of them, the others sync them, nothing is deleted or overwritten, and the
//! next run decides the same.

use super::tests::{dir, w};
use super::*;
use crate::model::Digest;

fn file(content: &str) -> Meta {
    super::tests::file(content, 5)
}

/// Held now, in sync since the last run.
fn held(m: Meta) -> Seen {
    Seen {
        state: Ok(Some(m)),
        vv: Some(Vv(vec![(1, 1)])),
        changed: false,
    }
}

/// New since the last run.
fn new(m: Meta) -> Seen {
    Seen {
        state: Ok(Some(m)),
        vv: None,
        changed: true,
    }
}

/// Deleted on peer 0 since the last run.
fn gone() -> Seen {
    Seen {
        state: Ok(None),
        vv: Some(Vv(vec![(0, 1), (1, 1)])),
        changed: true,
    }
}

/// A listing with the root directory (held) and `entries`.
fn listing(entries: Vec<(&str, Seen)>) -> Listing {
    let mut l: Listing = entries.into_iter().map(|(r, s)| (w(r), s)).collect();
    l.insert(WirePath::default(), held(dir()));
    l
}

const CASE: Fold = Fold {
    case: true,
    unicode: false,
};
const NFC: Fold = Fold {
    case: false,
    unicode: true,
};
const PLAIN: Fold = Fold {
    case: false,
    unicode: false,
};

fn run(ls: &[Listing], folds: &[Fold]) -> Plan {
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names: Vec<String> = ["alpha", "beta", "exfat"].map(String::from).to_vec();
    decide(&Input {
        views: &views,
        names: &names,
        forced: None,
        confirm_empty: false,
        file_name: None,
        max_size: None,
        settled: &[],
        roles: &[],
        emptied: &[],
        folds,
        no_symlinks: &[],
    })
}

/// Each copy as (path, targets).
fn copies(plan: &Plan) -> Vec<(String, Vec<PeerId>)> {
    plan.copies
        .iter()
        .map(|c| (c.rel.to_string(), c.targets.clone()))
        .collect()
}

/// Each collision as (peer, names).
type Told = Vec<(PeerId, Vec<String>)>;

fn collisions(plan: &Plan) -> Told {
    plan.problems
        .iter()
        .filter_map(|p| match p {
            Problem::Collision { peer, names } => {
                Some((*peer, names.iter().map(|n| n.to_string()).collect()))
            }
            _ => None,
        })
        .collect()
}

fn collision(peer: PeerId, names: &[&str]) -> Told {
    vec![(peer, names.iter().map(|n| n.to_string()).collect())]
}

#[test]
fn names_one_on_a_case_insensitive_peer_never_reach_it_and_stay_everywhere() {
    let folds = [PLAIN, PLAIN, CASE];
    // Run 1: both names new on alpha.
    let first = run(
        &[
            listing(vec![("Readme", new(file("a"))), ("README", new(file("b")))]),
            listing(vec![]),
            listing(vec![]),
        ],
        &folds,
    );
    assert_eq!(collisions(&first), collision(2, &["README", "Readme"]));
    assert_eq!(
        copies(&first),
        vec![("README".into(), vec![1]), ("Readme".into(), vec![1])]
    );
    assert!(first.removes.is_empty() && first.renames.is_empty());
    assert!(first.has_failures());
    // Runs 2 and 3: alpha and beta hold both, exfat neither; the same, nothing moves.
    for _ in 0..2 {
        let again = run(
            &[
                listing(vec![
                    ("Readme", held(file("a"))),
                    ("README", held(file("b"))),
                ]),
                listing(vec![
                    ("Readme", held(file("a"))),
                    ("README", held(file("b"))),
                ]),
                listing(vec![]),
            ],
            &folds,
        );
        assert_eq!(collisions(&again), collision(2, &["README", "Readme"]));
        assert!(again.is_noop(), "{again:?}");
    }
    // Where no peer folds case, both names go everywhere.
    let plain = run(
        &[
            listing(vec![("Readme", new(file("a"))), ("README", new(file("b")))]),
            listing(vec![]),
            listing(vec![]),
        ],
        &[],
    );
    assert!(collisions(&plain).is_empty());
    assert_eq!(
        copies(&plain),
        vec![("README".into(), vec![1, 2]), ("Readme".into(), vec![1, 2])]
    );
}

#[test]
fn a_case_variant_held_by_the_folding_peer_alone_is_matched_to_nothing_and_deleted_nowhere() {
    // exfat holds README, the others Readme (in sync among themselves); then a new Readme
    // on alpha meets an exfat that held nothing; then exfat's README is in sync but alpha
    // has a new readme beside it.
    let cases: Vec<(Vec<Listing>, Told)> = vec![
        (
            vec![
                listing(vec![("Readme", held(file("a")))]),
                listing(vec![("Readme", held(file("a")))]),
                listing(vec![("README", new(file("e")))]),
            ],
            collision(2, &["README", "Readme"]),
        ),
        (
            vec![
                listing(vec![
                    ("Readme", held(file("a"))),
                    ("readme", new(file("n"))),
                ]),
                listing(vec![("Readme", held(file("a")))]),
                listing(vec![("Readme", held(file("a")))]),
            ],
            collision(2, &["Readme", "readme"]),
        ),
    ];
    for (i, (ls, want)) in cases.into_iter().enumerate() {
        let plan = run(&ls, &[PLAIN, PLAIN, CASE]);
        assert_eq!(collisions(&plan), want, "case {i}");
        assert!(plan.removes.is_empty(), "case {i}: {:?}", plan.removes);
        assert!(
            plan.copies.iter().all(|c| !c.targets.contains(&2)),
            "case {i}: nothing reaches exfat: {:?}",
            plan.copies
        );
        assert!(plan.clones.iter().all(|c| c.peer != 2), "case {i}");
    }
}

#[test]
fn a_rename_that_only_changes_case_is_no_collision() {
    // alpha renamed Readme to README: Readme goes everywhere, README comes, exfat included.
    let plan = run(
        &[
            listing(vec![("Readme", gone()), ("README", new(file("a")))]),
            listing(vec![("Readme", held(file("a")))]),
            listing(vec![("Readme", held(file("a")))]),
        ],
        &[PLAIN, PLAIN, CASE],
    );
    assert!(collisions(&plan).is_empty(), "{:?}", plan.problems);
    let mut removed: Vec<(String, PeerId)> = plan
        .removes
        .iter()
        .map(|r| (r.rel.to_string(), r.peer))
        .collect();
    removed.sort();
    assert_eq!(removed, vec![("Readme".into(), 1), ("Readme".into(), 2)]);
    let reached: Vec<PeerId> = plan
        .copies
        .iter()
        .flat_map(|c| c.targets.clone())
        .chain(plan.clones.iter().map(|c| c.peer))
        .collect();
    assert!(reached.contains(&1) && reached.contains(&2), "{plan:?}");
}

#[test]
fn colliding_directories_keep_the_folding_peer_out_of_both_subtrees() {
    let plan = run(
        &[
            listing(vec![
                ("Dir", new(dir())),
                ("Dir/a", new(file("a"))),
                ("dir", new(dir())),
                ("dir/a", new(file("b"))),
            ]),
            listing(vec![]),
            listing(vec![]),
        ],
        &[PLAIN, PLAIN, CASE],
    );
    assert_eq!(collisions(&plan), collision(2, &["Dir", "dir"]));
    assert_eq!(
        copies(&plan),
        vec![
            ("Dir".into(), vec![1]),
            ("Dir/a".into(), vec![1]),
            ("dir".into(), vec![1]),
            ("dir/a".into(), vec![1]),
        ]
    );
}

#[test]
fn nfc_and_nfd_spellings_collide_only_where_a_filesystem_normalizes() {
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    let ls = [
        listing(vec![(nfc, new(file("composed")))]),
        listing(vec![(nfd, new(file("decomposed")))]),
        listing(vec![]),
    ];
    // The third peer normalizes: it is out of both; the others trade them.
    let plan = run(&ls, &[PLAIN, PLAIN, NFC]);
    let mut names = vec![nfc.to_string(), nfd.to_string()];
    names.sort();
    assert_eq!(collisions(&plan), vec![(2, names)]);
    assert_eq!(
        copies(&plan),
        vec![(nfd.into(), vec![0]), (nfc.into(), vec![1])]
    );
    assert!(plan.removes.is_empty());
    // A case-insensitive filesystem that keeps spellings apart (exFAT) takes both.
    let plan = run(&ls, &[PLAIN, PLAIN, CASE]);
    assert!(collisions(&plan).is_empty());
    assert_eq!(
        copies(&plan),
        vec![(nfd.into(), vec![0, 2]), (nfc.into(), vec![1, 2])]
    );
    // A normalizing peer that holds the other spelling is out of both, and neither moves
    // there or away from it.
    let plan = run(
        &[
            listing(vec![(nfc, held(file("x")))]),
            listing(vec![(nfc, held(file("x")))]),
            listing(vec![(nfd, new(file("x")))]),
        ],
        &[PLAIN, PLAIN, NFC],
    );
    assert_eq!(collisions(&plan).len(), 1);
    assert!(plan.is_noop(), "{plan:?}");
}

#[test]
fn a_peer_without_symlinks_is_left_out_of_them_and_takes_the_rest() {
    let link = Meta {
        kind: Kind::Symlink(w("f")),
        size: 0,
        mode: 0o777,
        mtime: 1,
        digest: Some(Digest::of(b"f")),
        extra: Default::default(),
    };
    let ls = [
        listing(vec![("f", new(file("x"))), ("l", new(link))]),
        listing(vec![]),
        listing(vec![]),
    ];
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names: Vec<String> = ["alpha", "beta", "exfat"].map(String::from).to_vec();
    let plan = decide(&Input {
        views: &views,
        names: &names,
        forced: None,
        confirm_empty: false,
        file_name: None,
        max_size: None,
        settled: &[],
        roles: &[],
        emptied: &[],
        folds: &[],
        no_symlinks: &[2],
    });
    assert_eq!(
        copies(&plan),
        vec![("f".into(), vec![1, 2]), ("l".into(), vec![1])]
    );
    assert_eq!(
        plan.problems,
        vec![Problem::NoSymlinks {
            peer: 2,
            rels: vec![w("l")]
        }]
    );
    assert!(!plan.has_failures());
}
