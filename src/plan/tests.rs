//! The decision, table by table: base (what each peer held after the last sync, as a version
//! vector) × current (what it holds now).

use super::*;
use crate::model::{Digest, Record};

pub(super) fn w(s: &str) -> WirePath {
    WirePath(s.as_bytes().to_vec())
}

pub(super) fn file(content: &str, mtime: i64) -> Meta {
    Meta {
        kind: Kind::File,
        size: content.len() as u64,
        mode: 0o644,
        mtime,
        digest: Some(Digest::of(content.as_bytes())),
        extra: Default::default(),
    }
}

pub(super) fn dir() -> Meta {
    Meta {
        kind: Kind::Dir,
        size: 0,
        mode: 0o755,
        mtime: 1,
        digest: None,
        extra: Default::default(),
    }
}

fn link(target: &str) -> Meta {
    Meta {
        kind: Kind::Symlink(w(target)),
        size: 0,
        mode: 0o777,
        mtime: 1,
        digest: Some(Digest::of(target.as_bytes())),
        extra: Default::default(),
    }
}

fn vv(pairs: &[(u64, u64)]) -> Vv {
    Vv(pairs.to_vec())
}

/// Held now, with history `v`.
fn held(m: Meta, v: &[(u64, u64)]) -> Seen {
    Seen {
        state: Ok(Some(m)),
        vv: Some(vv(v)),
        changed: false,
    }
}

/// Held now, no history.
fn new(m: Meta) -> Seen {
    Seen {
        state: Ok(Some(m)),
        vv: None,
        changed: true,
    }
}

/// Deleted since the last sync, with history `v`.
fn gone(v: &[(u64, u64)]) -> Seen {
    Seen {
        state: Ok(None),
        vv: Some(vv(v)),
        changed: true,
    }
}

/// A deletion remembered from an earlier sync.
fn tombstone(v: &[(u64, u64)]) -> Seen {
    Seen {
        changed: false,
        ..gone(v)
    }
}

fn listing(entries: Vec<(&str, Seen)>) -> Listing {
    entries.into_iter().map(|(r, s)| (w(r), s)).collect()
}

fn names() -> Vec<String> {
    ["alpha", "beta", "gamma", "delta"]
        .map(String::from)
        .to_vec()
}

fn run_with(ls: &[Listing], forced: Option<PeerId>, confirm_empty: bool) -> Plan {
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names = names();
    decide(&Input {
        views: &views,
        names: &names,
        forced,
        confirm_empty,
        file_name: None,
        max_size: None,
        settled: &[],
        roles: &[],
        emptied: &[],
        folds: &[],
        no_symlinks: &[],
    })
}

fn run(ls: &[Listing]) -> Plan {
    run_with(ls, None, false)
}

fn copies(plan: &Plan) -> Vec<(String, PeerId, Vec<PeerId>)> {
    plan.copies
        .iter()
        .map(|c| (c.rel.to_string(), c.master, c.targets.clone()))
        .collect()
}

fn removes(plan: &Plan) -> Vec<(String, PeerId, bool)> {
    plan.removes
        .iter()
        .map(|r| (r.rel.to_string(), r.peer, r.deleted))
        .collect()
}

fn record(plan: &Plan, peer: PeerId, rel: &str) -> Option<Record> {
    plan.records.of(peer).find(|r| r.rel == w(rel)).cloned()
}

#[test]
fn unchanged_everywhere_does_nothing_and_writes_no_record() {
    let a = listing(vec![("", held(file("x", 5), &[(1, 3)]))]);
    let plan = run(&[a.clone(), a.clone()]);
    assert!(plan.is_noop(), "{plan:?}");
    assert!(plan.records.is_empty());
    // The same content and history with another mtime (one that did not take it): the
    // metadata goes where it is missing, nothing is copied, no conflict.
    let mut b = a.clone();
    b.insert(w(""), held(file("x", 9), &[(1, 3)]));
    let plan = run(&[a, b]);
    assert!(
        plan.copies.is_empty() && plan.conflicts.is_empty(),
        "{plan:?}"
    );
    assert_eq!(plan.touches.len(), 1);
    assert_eq!((plan.touches[0].peer, plan.touches[0].meta.mtime), (0, 9));
}

#[test]
fn first_sync_copies_to_peers_without_it_and_starts_a_history() {
    let plan = run(&[listing(vec![("", new(file("a", 1)))]), listing(vec![])]);
    assert_eq!(copies(&plan), [("".into(), 0, vec![1])]);
    assert_eq!(record(&plan, 0, "").unwrap().vv, Vv::default());
    assert_eq!(record(&plan, 1, "").unwrap().meta, Some(file("a", 1)));
}

#[test]
fn a_first_sync_to_empty_peers_keeps_each_record_once_for_every_peer() {
    let a = listing(vec![
        ("", new(dir())),
        ("x", new(file("x", 1))),
        ("y", new(file("y", 1))),
    ]);
    let plan = run(&[a, listing(vec![]), listing(vec![])]);
    assert_eq!(
        copies(&plan),
        [
            ("".into(), 0, vec![1, 2]),
            ("x".into(), 0, vec![1, 2]),
            ("y".into(), 0, vec![1, 2])
        ]
    );
    let shared: Vec<(String, Vec<PeerId>)> = plan
        .records
        .all()
        .map(|(r, peers)| (r.rel.to_string(), peers.to_vec()))
        .collect();
    assert_eq!(
        shared,
        [
            ("".into(), vec![0, 1, 2]),
            ("x".into(), vec![0, 1, 2]),
            ("y".into(), vec![0, 1, 2])
        ]
    );
    assert!(plan.clones.is_empty());
}

#[test]
fn a_change_on_one_peer_wins_whatever_the_mtimes_say() {
    // alpha changed the file with an old mtime (cp -p, a clock behind); beta did nothing.
    let plan = run(&[
        listing(vec![("", held(file("edited", 100), &[(7, 2)]))]),
        listing(vec![("", held(file("original", 500), &[(7, 1)]))]),
    ]);
    assert_eq!(copies(&plan), [("".into(), 0, vec![1])]);
    assert_eq!(plan.keeps, [(1, w(""))], "the replaced version is kept");
    assert!(plan.conflicts.is_empty());
    assert_eq!(record(&plan, 1, "").unwrap().vv, vv(&[(7, 2)]));
}

#[test]
fn the_same_change_on_several_peers_is_no_conflict() {
    let plan = run(&[
        listing(vec![("", held(file("same", 100), &[(1, 2)]))]),
        listing(vec![("", held(file("same", 200), &[(1, 1), (2, 5)]))]),
        listing(vec![("", held(file("old", 300), &[(1, 1)]))]),
    ]);
    assert_eq!(copies(&plan).len(), 1);
    assert_eq!(copies(&plan)[0].2, vec![2]);
    assert!(plan.conflicts.is_empty());
    let joined = vv(&[(1, 2), (2, 5)]);
    for p in 0..3 {
        assert_eq!(record(&plan, p, "").unwrap().vv, joined, "peer {p}");
    }
}

#[test]
fn a_deletion_on_one_peer_deletes_everywhere() {
    let plan = run(&[
        listing(vec![("", held(dir(), &[])), ("f", gone(&[(1, 4)]))]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("x", 1), &[(1, 3)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("x", 1), &[(1, 3)])),
        ]),
    ]);
    assert!(plan.copies.is_empty());
    assert_eq!(
        removes(&plan),
        [("f".into(), 2, true), ("f".into(), 1, true)]
    );
    assert_eq!(record(&plan, 1, "f").unwrap().meta, None, "a tombstone");
    assert_eq!(record(&plan, 1, "f").unwrap().vv, vv(&[(1, 4)]));
}

#[test]
fn a_peer_that_missed_a_deletion_catches_up() {
    let plan = run(&[
        listing(vec![("", held(dir(), &[])), ("f", gone(&[(1, 4)]))]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("x", 1), &[(1, 3)])),
        ]),
    ]);
    assert_eq!(removes(&plan), [("f".into(), 1, true)]);
    // Tombstones everywhere afterwards: nothing to do, nothing to write.
    let plan = run(&[
        listing(vec![("", held(dir(), &[])), ("f", tombstone(&[(1, 4)]))]),
        listing(vec![("", held(dir(), &[])), ("f", tombstone(&[(1, 4)]))]),
    ]);
    assert!(plan.is_noop() && plan.records.is_empty(), "{plan:?}");
    assert!(plan.problems.is_empty());
}

#[test]
fn a_modification_beats_a_concurrent_deletion() {
    let plan = run(&[
        listing(vec![("", held(dir(), &[])), ("f", gone(&[(1, 3), (2, 1)]))]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("new", 1), &[(1, 2), (2, 2)])),
        ]),
    ]);
    assert_eq!(copies(&plan), [("f".into(), 1, vec![0])]);
    assert!(plan.removes.is_empty());
}

#[test]
fn different_changes_on_two_peers_keep_both_versions() {
    let t = 1_764_064_000_000_000_000; // 2025-11-25T09:46:40Z
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("notes.txt", held(file("mine", t), &[(1, 2)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("notes.txt", held(file("theirs", t + 5), &[(1, 1), (2, 1)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("notes.txt", held(file("base", 0), &[(1, 1)])),
        ]),
    ]);
    let kept = w("notes.synk-conflict-20251125-094640-alpha.txt");
    assert_eq!(
        plan.conflicts,
        [Conflict {
            rel: w("notes.txt"),
            winner: 1,
            kept: vec![(0, kept.clone())]
        }]
    );
    assert_eq!(
        plan.renames,
        [Rename {
            rel: w("notes.txt"),
            peer: 0,
            to: kept.clone()
        }]
    );
    assert_eq!(
        copies(&plan),
        [
            (kept.to_string(), 0, vec![1, 2]),
            ("notes.txt".into(), 1, vec![0, 2]),
        ]
    );
    assert_eq!(plan.keeps, [(2, w("notes.txt"))]);
    // Afterwards every peer records a history that contains both: the next run is quiet.
    let joined = vv(&[(1, 2), (2, 1)]);
    for p in 0..3 {
        assert_eq!(record(&plan, p, "notes.txt").unwrap().vv, joined);
        assert_eq!(
            record(&plan, p, &kept.to_string()).unwrap().meta,
            Some(file("mine", t))
        );
    }
}

#[test]
fn without_history_the_newest_wins_and_a_tie_is_a_conflict() {
    let plan = run(&[
        listing(vec![("", new(file("older", 100)))]),
        listing(vec![("", new(file("newer", 200)))]),
    ]);
    assert_eq!(copies(&plan), [("".into(), 1, vec![0])]);
    assert_eq!(plan.keeps, [(0, w(""))]);
    assert!(plan.conflicts.is_empty());
    let plan = run(&[
        listing(vec![("", new(file("one", 100)))]),
        listing(vec![("", new(file("two", 100)))]),
    ]);
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.renames.len(), 1);
    // The same winner whoever runs the decision: ties break on content, not on peer order.
    let swapped = run(&[
        listing(vec![("", new(file("two", 100)))]),
        listing(vec![("", new(file("one", 100)))]),
    ]);
    assert_eq!(plan.conflicts[0].winner, 1 - swapped.conflicts[0].winner);
}

#[test]
fn a_file_meeting_a_directory_without_history_is_kept_beside_it() {
    let plan = run(&[
        listing(vec![("", held(dir(), &[])), ("k", new(file("f", 500)))]),
        listing(vec![
            ("", held(dir(), &[])),
            ("k", new(dir())),
            ("k/in", new(file("i", 1))),
        ]),
    ]);
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].winner, 1);
    assert_eq!(plan.renames[0].peer, 0);
    assert_eq!(
        copies(&plan)[0].1,
        0,
        "the file reaches peer 1 under its conflict name"
    );
}

#[test]
fn a_directory_deleted_here_while_a_file_was_added_there_keeps_the_new_file() {
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("d", gone(&[(1, 2)])),
            ("d/old", gone(&[(1, 2)])),
            ("other", held(file("o", 1), &[])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("other", held(file("o", 1), &[])),
            ("d", held(dir(), &[(1, 1)])),
            ("d/old", held(file("o", 1), &[(1, 1)])),
            ("d/new", new(file("n", 2))),
        ]),
    ]);
    assert_eq!(removes(&plan), [("d/old".into(), 1, true)]);
    assert_eq!(
        copies(&plan),
        [("d".into(), 1, vec![0]), ("d/new".into(), 1, vec![0])]
    );
}

#[test]
fn a_type_change_replaces_the_old_kind_after_keeping_it() {
    // alpha turned file x into a directory holding y.
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("x", held(dir(), &[(1, 2)])),
            ("x/y", new(file("y", 1))),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("x", held(file("x", 1), &[(1, 1)])),
        ]),
    ]);
    assert_eq!(removes(&plan), [("x".into(), 1, false)]);
    assert_eq!(
        copies(&plan),
        [("x".into(), 0, vec![1]), ("x/y".into(), 0, vec![1])]
    );
    // And back: the directory's entries go first, then the directory, then the file lands.
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("x", held(file("x", 1), &[(1, 3)])),
            ("x/y", gone(&[(1, 3)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("x", held(dir(), &[(1, 2)])),
            ("x/y", held(file("y", 1), &[(1, 2)])),
        ]),
    ]);
    assert_eq!(
        removes(&plan),
        [("x/y".into(), 1, true), ("x".into(), 1, false)]
    );
    assert_eq!(copies(&plan), [("x".into(), 0, vec![1])]);
}

#[test]
fn master_resolves_a_kind_clash() {
    let ls = [
        listing(vec![("", held(dir(), &[])), ("e", held(dir(), &[(1, 2)]))]),
        listing(vec![
            ("", held(dir(), &[])),
            ("e", held(link("t"), &[(2, 1)])),
        ]),
    ];
    let plan = run_with(&ls, Some(1), false);
    assert_eq!(removes(&plan), [("e".into(), 0, false)]);
    assert_eq!(copies(&plan), [("e".into(), 1, vec![0])]);
    assert!(plan.conflicts.is_empty());
    // Without --master the directory keeps the name and the link is kept beside it.
    let plan = run(&ls);
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].winner, 0);
}

#[test]
fn an_unreadable_entry_leaves_that_peer_out_and_the_others_converge() {
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("new", 9), &[(1, 2)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            (
                "f",
                Seen {
                    state: Err("Permission denied".into()),
                    vv: Some(vv(&[(1, 1)])),
                    changed: false,
                },
            ),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("old", 1), &[(1, 1)])),
        ]),
    ]);
    assert_eq!(copies(&plan), [("f".into(), 0, vec![2])]);
    assert!(matches!(
        &plan.problems[..],
        [Problem::Unreadable { peer: 1, .. }]
    ));
    assert!(record(&plan, 1, "f").is_none(), "its old record stays");
}

#[test]
fn an_emptied_root_is_no_mass_deletion_unless_confirmed() {
    let empty = listing(vec![
        ("", held(dir(), &[])),
        ("a", gone(&[(1, 2)])),
        ("b", gone(&[(1, 2)])),
    ]);
    let full = listing(vec![
        ("", held(dir(), &[])),
        ("a", held(file("a", 1), &[(1, 1)])),
        ("b", held(file("b", 1), &[(1, 1)])),
    ]);
    let plan = run(&[empty.clone(), full.clone()]);
    assert_eq!(plan.problems, [Problem::EmptyRoot { peer: 0, held: 2 }]);
    assert!(plan.is_noop());
    let plan = run_with(&[empty, full], None, true);
    assert_eq!(removes(&plan).len(), 2);
    // A missing root counts the same; a single file deleted on purpose does not.
    let missing = listing(vec![
        ("", gone(&[(1, 2)])),
        ("a", gone(&[(1, 2)])),
        ("b", gone(&[(1, 2)])),
    ]);
    assert!(suddenly_empty(&missing, 0).is_some());
    let one_file = listing(vec![("", gone(&[(1, 2)]))]);
    assert!(suddenly_empty(&one_file, 0).is_none());
    let last_entry = listing(vec![("", held(dir(), &[])), ("a", gone(&[(1, 2)]))]);
    assert!(suddenly_empty(&last_entry, 0).is_none());
    // Deletions synced earlier are not news.
    let remembered = listing(vec![
        ("", tombstone(&[(1, 2)])),
        ("a", tombstone(&[(1, 2)])),
        ("b", tombstone(&[(1, 2)])),
    ]);
    assert!(suddenly_empty(&remembered, 0).is_none());
    // Entries held there but settled in sync before the decision: not empty.
    assert_eq!(suddenly_empty(&missing, 0), Some(2));
    assert!(suddenly_empty(&missing, 1).is_none());
}

/// Decides with peer 0's emptied mount points `emptied`.
fn run_emptied(ls: &[Listing], emptied: &[&str], confirm_empty: bool) -> Plan {
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names = names();
    let mut per_peer = vec![Vec::new(); ls.len()];
    per_peer[0] = emptied
        .iter()
        .map(|r| Emptied {
            rel: w(r),
            held: 2,
            path: w(&format!("/home/a/t/{r}")),
        })
        .collect();
    decide(&Input {
        views: &views,
        names: &names,
        forced: None,
        confirm_empty,
        file_name: None,
        max_size: None,
        roles: &[],
        settled: &[],
        emptied: &per_peer,
        folds: &[],
        no_symlinks: &[],
    })
}

#[test]
fn an_emptied_mount_point_is_no_deletion_below_it_unless_confirmed() {
    // Peer 0's disk at "m" is unmounted: "m" is there, empty; an edit elsewhere on peer 0
    // and a new file on peer 1 below "m" still count as they would.
    let base = &[(1, 1)][..];
    let unmounted = listing(vec![
        ("", held(dir(), base)),
        ("m", held(dir(), base)),
        ("m/a", gone(&[(1, 2)])),
        ("m/sub", gone(&[(1, 2)])),
        ("m/sub/b", gone(&[(1, 2)])),
        ("m-x", held(file("edited", 9), &[(1, 2)])),
    ]);
    let other = listing(vec![
        ("", held(dir(), base)),
        ("m", held(dir(), base)),
        ("m/a", held(file("a", 1), base)),
        ("m/sub", held(dir(), base)),
        ("m/sub/b", held(file("b", 1), base)),
        ("m/new", new(file("n", 5))),
        ("m-x", held(file("x", 1), base)),
    ]);
    let ls = [unmounted, other];
    let plan = run_emptied(&ls, &["m"], false);
    assert_eq!(
        plan.problems,
        [Problem::EmptySubtree {
            peer: 0,
            rel: w("m"),
            held: 2,
            path: w("/home/a/t/m"),
        }]
    );
    assert!(plan.has_failures());
    assert!(removes(&plan).is_empty(), "nothing deleted anywhere");
    // Peer 0 is out of the subtree: nothing goes there either, and it records nothing
    // there; the rest of the root syncs as ever.
    assert_eq!(copies(&plan), [("m-x".to_string(), 0, vec![1])]);
    assert!(plan.records.of(0).all(|r| r.rel.below(&w("m")).is_none()));
    // A missing mount point: the same.
    let mut missing = ls[0].clone();
    missing.insert(w("m"), gone(&[(1, 2)]));
    let plan = run_emptied(&[missing, ls[1].clone()], &["m"], false);
    assert!(removes(&plan).is_empty());
    assert_eq!(plan.problems.len(), 1);
    // Confirmed: the deletions go everywhere, and peer 0 records each of them (its serve
    // keeps the old records below an emptied mount point otherwise).
    let plan = run_emptied(&ls, &["m"], true);
    assert!(plan.problems.is_empty());
    let mut gone_everywhere = removes(&plan);
    gone_everywhere.sort();
    assert_eq!(
        gone_everywhere,
        [
            ("m/a".to_string(), 1, true),
            ("m/sub".to_string(), 1, true),
            ("m/sub/b".to_string(), 1, true),
        ]
    );
    for rel in ["m/a", "m/sub", "m/sub/b"] {
        let r = record(&plan, 0, rel).unwrap_or_else(|| panic!("no record of {rel}"));
        assert_eq!(r.meta, None, "{rel}");
    }
    assert_eq!(
        copies(&plan),
        [
            ("m-x".to_string(), 0, vec![1]),
            ("m/new".to_string(), 1, vec![0])
        ]
    );
    // Not emptied on that peer: plain deletions, recorded as reported.
    let plan = run_emptied(&ls, &[], false);
    assert!(plan.problems.is_empty());
    assert_eq!(removes(&plan).len(), 3);
    assert!(record(&plan, 0, "m/a").is_none());
}

#[test]
fn a_rename_is_a_local_copy_where_the_content_is_there_already() {
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("old", gone(&[(1, 2)])),
            ("new", new(file("body", 1))),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("old", held(file("body", 1), &[(1, 1)])),
        ]),
    ]);
    assert!(plan.copies.is_empty(), "{:?}", plan.copies);
    assert_eq!(
        plan.clones,
        [Clone {
            rel: w("new"),
            peer: 1,
            from: w("old"),
            meta: file("body", 1)
        }]
    );
    assert_eq!(removes(&plan), [("old".into(), 1, true)]);
}

#[test]
fn special_files_are_skipped_and_missing_roots_reported() {
    let fifo = Meta {
        kind: Kind::Special,
        ..file("", 1)
    };
    let plan = run(&[listing(vec![("", new(fifo))]), listing(vec![])]);
    assert!(plan.is_noop());
    assert!(!plan.has_failures());
    let plan = run(&[listing(vec![]), listing(vec![])]);
    assert_eq!(plan.problems, [Problem::Missing]);
}

#[test]
fn a_single_file_roots_conflict_copy_goes_beside_it_without_a_record() {
    let ls = [
        listing(vec![("", new(file("one", 100)))]),
        listing(vec![("", new(file("two", 100)))]),
    ];
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names = names();
    let plan = decide(&Input {
        views: &views,
        names: &names,
        forced: None,
        confirm_empty: false,
        file_name: Some(b"notes.md"),
        max_size: None,
        settled: &[],
        roles: &[],
        emptied: &[],
        folds: &[],
        no_symlinks: &[],
    });
    let to = &plan.renames[0].to;
    assert!(to.to_string().starts_with("notes.synk-conflict-"), "{to}");
    assert!(to.to_string().ends_with(".md"), "{to}");
    assert!(plan.records.all().all(|(r, _)| r.rel.is_empty()));
}

#[test]
fn a_copy_that_landed_before_a_killed_run_shares_the_history_of_its_content() {
    // f reached peer 2 but the run died before peer 2 recorded it; then peer 0 deleted f.
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("keep", held(file("k", 1), &[])),
            ("f", gone(&[(1, 3)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("keep", held(file("k", 1), &[])),
            ("f", held(file("x", 1), &[(1, 2)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("keep", held(file("k", 1), &[])),
            ("f", new(file("x", 1))),
        ]),
    ]);
    assert_eq!(
        removes(&plan),
        [("f".into(), 2, true), ("f".into(), 1, true)],
        "no resurrection"
    );
    assert!(plan.copies.is_empty());
}

#[test]
fn a_concurrent_edit_is_a_conflict_even_when_a_new_peer_joins() {
    let plan = run(&[
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("mine", 5), &[(1, 2)])),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("f", held(file("theirs", 9), &[(1, 1), (2, 1)])),
        ]),
        listing(vec![("", held(dir(), &[])), ("f", new(file("stale", 1)))]),
    ]);
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].winner, 1);
    assert_eq!(
        plan.conflicts[0].kept.len(),
        1,
        "the new peer's stale copy is only kept as a version"
    );
    assert_eq!(plan.conflicts[0].kept[0].0, 0);
}

#[test]
fn files_over_the_size_limit_are_left_alone_everywhere() {
    let ls = [
        listing(vec![
            ("", held(dir(), &[])),
            ("big", gone(&[(1, 2)])),
            ("small", new(file("s", 1))),
        ]),
        listing(vec![
            ("", held(dir(), &[])),
            ("big", held(file("0123456789", 1), &[(1, 1)])),
        ]),
    ];
    let views: Vec<Option<&Listing>> = ls.iter().map(Some).collect();
    let names = names();
    let plan = decide(&Input {
        views: &views,
        names: &names,
        forced: None,
        confirm_empty: false,
        file_name: None,
        max_size: Some(5),
        settled: &[],
        roles: &[],
        emptied: &[],
        folds: &[],
        no_symlinks: &[],
    });
    assert!(
        plan.removes.is_empty(),
        "never deleted because of the limit"
    );
    assert_eq!(copies(&plan), [("small".into(), 0, vec![1])]);
    assert_eq!(
        plan.problems,
        [Problem::TooBig {
            rel: w("big"),
            size: 10
        }]
    );
    assert!(!plan.has_failures());
}
