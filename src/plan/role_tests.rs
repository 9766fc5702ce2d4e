//! Roles, table by table: every role on one peer of three (send-only, receive-only,
//! no-delete, receive-only with no-delete, none) × every base/current combination of the
//! sync-state rules (unchanged, changed here or there, deleted here or there, changed on
//! two peers, changed against deleted, new here, there or on both), each synced twice on a
//! small model of the peers (their disks and states, scanned and committed as a serve does):
//! the first run does what the table says, the second is quiet. Then the combinations: two
//! send-only peers that disagree, a backup that is receive-only and no-delete, roles added
//! and dropped later, `--master`, and the guard against reverting everything.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::model::{next_version, Digest, Record, Role};

pub(super) fn w(s: &str) -> WirePath {
    WirePath(s.as_bytes().to_vec())
}

fn dir_meta() -> Meta {
    Meta {
        kind: Kind::Dir,
        size: 0,
        mode: 0o755,
        mtime: 1,
        digest: None,
        extra: Default::default(),
    }
}

/// One peer of the model: what its disk holds, what its state says, what it kept.
#[derive(Default, Clone)]
pub(super) struct Host {
    key: u64,
    pub(super) disk: BTreeMap<WirePath, Meta>,
    state: BTreeMap<WirePath, Record>,
    pub(super) kept: Vec<(WirePath, Meta)>,
    /// When its metadata changes were made (the change clock its scan reads; 0: the run's).
    pub(super) ctime: u64,
}

/// Peers, their roles, and the words behind each digest.
pub(super) struct World {
    pub(super) hosts: Vec<Host>,
    pub(super) roles: Vec<Role>,
    words: HashMap<Digest, String>,
    clock: u64,
    forced: Option<PeerId>,
    confirm_empty: bool,
}

pub(super) fn role(words: &str) -> Role {
    let mut r = Role::default();
    for word in words.split_whitespace() {
        assert!(r.add(word), "{word}");
    }
    r
}

impl World {
    /// `n` peers holding the root directory, synced once already (it has a history).
    pub(super) fn new(n: usize) -> World {
        let mut hosts = Vec::new();
        for p in 0..n {
            let mut h = Host {
                key: 100 + p as u64,
                ..Host::default()
            };
            h.disk.insert(w(""), dir_meta());
            h.state.insert(
                w(""),
                Record {
                    rel: w(""),
                    meta: Some(dir_meta()),
                    vv: Vv(vec![(9, 1)]),
                },
            );
            hosts.push(h);
        }
        World {
            hosts,
            roles: vec![Role::default(); n],
            words: HashMap::new(),
            clock: 1000,
            forced: None,
            confirm_empty: false,
        }
    }

    fn file(&mut self, content: &str, mtime: i64) -> Meta {
        let digest = Digest::of(content.as_bytes());
        self.words.insert(digest, content.to_string());
        Meta {
            kind: Kind::File,
            size: content.len() as u64,
            mode: 0o644,
            mtime,
            digest: Some(digest),
            extra: Default::default(),
        }
    }

    /// Every peer holds `content` at `rel`, recorded with one history.
    pub(super) fn synced(&mut self, rel: &str, content: &str) {
        let m = self.file(content, 50);
        for h in &mut self.hosts {
            h.disk.insert(w(rel), m.clone());
            h.state.insert(
                w(rel),
                Record {
                    rel: w(rel),
                    meta: Some(m.clone()),
                    vv: Vv(vec![(9, 2)]),
                },
            );
        }
    }

    pub(super) fn put(&mut self, p: PeerId, rel: &str, content: &str, mtime: i64) {
        let m = self.file(content, mtime);
        self.hosts[p].disk.insert(w(rel), m);
    }

    pub(super) fn delete(&mut self, p: PeerId, rel: &str) {
        self.hosts[p].disk.remove(&w(rel));
    }

    /// What peer `p` holds at `rel`: its words, or `None`.
    pub(super) fn at(&self, p: PeerId, rel: &str) -> Option<&str> {
        let m = self.hosts[p].disk.get(&w(rel))?;
        Some(self.words[&m.digest.expect("a file")].as_str())
    }

    /// Every peer's listing, as a serve reports it against its state.
    fn scan(&mut self) -> Vec<Listing> {
        self.clock += 1;
        let now = self.clock;
        self.hosts
            .iter()
            .map(|h| {
                let mut l = Listing::new();
                for (rel, m) in &h.disk {
                    let base = h.state.get(rel);
                    let seen = match base {
                        None => Seen {
                            state: Ok(Some(m.clone())),
                            vv: None,
                            changed: true,
                        },
                        Some(b) => {
                            // As a serve judges it; the change clock of metadata is the run's.
                            let ctime = if h.ctime > 0 { h.ctime } else { now };
                            let (vv, changed) = next_version(b, m, h.key, now, ctime);
                            Seen {
                                state: Ok(Some(m.clone())),
                                vv: Some(vv),
                                changed,
                            }
                        }
                    };
                    l.insert(rel.clone(), seen);
                }
                for (rel, r) in &h.state {
                    if h.disk.contains_key(rel) {
                        continue;
                    }
                    let seen = match &r.meta {
                        Some(_) => Seen {
                            state: Ok(None),
                            vv: Some(r.vv.bumped(h.key, now)),
                            changed: true,
                        },
                        None => Seen {
                            state: Ok(None),
                            vv: Some(r.vv.clone()),
                            changed: false,
                        },
                    };
                    l.insert(rel.clone(), seen);
                }
                l
            })
            .collect()
    }

    /// One run: scan, decide, carry out, commit. Returns the plan.
    pub(super) fn sync(&mut self) -> Plan {
        let listings = self.scan();
        let views: Vec<Option<&Listing>> = listings.iter().map(Some).collect();
        let names: Vec<String> = ["alpha", "beta", "gamma", "delta"]
            .iter()
            .take(self.hosts.len())
            .map(|s| s.to_string())
            .collect();
        let plan = decide(&Input {
            views: &views,
            names: &names,
            forced: self.forced,
            confirm_empty: self.confirm_empty,
            file_name: None,
            max_size: None,
            settled: &[],
            roles: &self.roles,
            emptied: &[],
            folds: &[],
            no_symlinks: &[],
        });
        self.carry_out(&plan, &listings);
        plan
    }

    fn carry_out(&mut self, plan: &Plan, listings: &[Listing]) {
        for r in &plan.renames {
            let h = &mut self.hosts[r.peer];
            let m = h.disk.remove(&r.rel).expect("a loser holds it");
            h.disk.insert(r.to.clone(), m);
        }
        for (p, rel) in &plan.keeps {
            let h = &mut self.hosts[*p];
            let m = h.disk[rel].clone();
            h.kept.push((rel.clone(), m));
        }
        for c in &plan.clones {
            let h = &mut self.hosts[c.peer];
            assert_eq!(h.disk[&c.from].digest, c.meta.digest, "a clone's source");
            h.disk.insert(c.rel.clone(), c.meta.clone());
        }
        for r in &plan.removes {
            let h = &mut self.hosts[r.peer];
            let m = h.disk.remove(&r.rel).expect("a removed entry is there");
            h.kept.push((r.rel.clone(), m));
        }
        for t in &plan.touches {
            let h = &mut self.hosts[t.peer];
            let m = h.disk.get_mut(&t.rel).expect("a touched entry is there");
            assert_eq!(
                Content::of(Some(m)),
                Content::of(Some(&t.meta)),
                "same content"
            );
            *m = t.meta.clone();
        }
        for c in &plan.copies {
            let from = c.source.as_ref().unwrap_or(&c.rel);
            let there = self.hosts[c.master]
                .disk
                .get(from)
                .map(|m| Content::of(Some(m)));
            assert_eq!(
                there,
                Some(Content::of(Some(&c.meta))),
                "the master holds it"
            );
            for t in &c.targets {
                self.hosts[*t].disk.insert(c.rel.clone(), c.meta.clone());
            }
        }
        let left_out: Vec<PeerId> = plan.problems.iter().filter_map(Problem::left_out).collect();
        for (p, h) in self.hosts.iter_mut().enumerate() {
            if left_out.contains(&p) {
                continue;
            }
            let mut set: BTreeMap<WirePath, Record> = BTreeMap::new();
            for r in plan.records.of(p) {
                set.insert(r.rel.clone(), r.clone());
            }
            let mut next = BTreeMap::new();
            for (rel, seen) in &listings[p] {
                let old = h.state.get(rel).cloned();
                let rec = match set.remove(rel) {
                    Some(r) if arrived(h, &r) => Some(r),
                    Some(_) => old,
                    None if !seen.changed => old,
                    None => Some(Record {
                        rel: rel.clone(),
                        meta: seen.state.clone().expect("readable"),
                        vv: seen.vv.clone().unwrap_or_default(),
                    }),
                };
                if let Some(r) = rec {
                    next.insert(rel.clone(), r);
                }
            }
            for (rel, r) in set {
                if arrived(h, &r) {
                    next.insert(rel, r);
                }
            }
            h.state = next;
        }
    }
}

/// What every peer of `wd` holds at `rel`.
fn at<'a>(wd: &'a World, rel: &str) -> Vec<Option<&'a str>> {
    (0..wd.hosts.len()).map(|p| wd.at(p, rel)).collect()
}

fn arrived(h: &Host, r: &Record) -> bool {
    Content::of(h.disk.get(&r.rel)) == Content::of(r.meta.as_ref())
}

/// A plan that does nothing and says nothing: no action, no record, nothing reverted or
/// overridden, no conflict, no problem.
pub(super) fn assert_quiet(plan: &Plan, case: &str) {
    assert!(plan.is_noop(), "{case}: second run acts: {plan:?}");
    assert!(
        plan.records.is_empty(),
        "{case}: second run records: {:?}",
        plan.records
    );
    assert!(
        plan.reverts.is_empty() && plan.overrides.is_empty(),
        "{case}: {plan:?}"
    );
    assert!(
        plan.conflicts.is_empty() && plan.problems.is_empty(),
        "{case}: {plan:?}"
    );
    assert!(plan.keeps.is_empty(), "{case}: {plan:?}");
}

/// The cases: the base/current combination of entry `f` on peers 0 (the one with the role)
/// and 1 (peer 2 never changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Unchanged,
    ChangedHere,
    ChangedThere,
    DeletedHere,
    DeletedThere,
    /// Changed here and there to different contents.
    Conflict,
    ChangedHereDeletedThere,
    DeletedHereChangedThere,
    NewHere,
    NewThere,
    /// New here and there, different contents, no history.
    NewBoth,
}

const CASES: [Case; 11] = [
    Case::Unchanged,
    Case::ChangedHere,
    Case::ChangedThere,
    Case::DeletedHere,
    Case::DeletedThere,
    Case::Conflict,
    Case::ChangedHereDeletedThere,
    Case::DeletedHereChangedThere,
    Case::NewHere,
    Case::NewThere,
    Case::NewBoth,
];

/// Three peers with `role` on peer 0, and entry `f` as `case` says (`x`: peer 0's new
/// version, mtime 200; `b`: peer 1's, mtime 300, the newer).
fn world(role_words: &str, case: Case) -> World {
    let mut wd = World::new(3);
    wd.roles[0] = role(role_words);
    // The group holds more than f: never a root only the receive-only peer holds anything of.
    wd.synced("other", "o");
    use Case::*;
    if !matches!(case, NewHere | NewThere | NewBoth) {
        wd.synced("f", "v1");
    }
    match case {
        Unchanged => {}
        ChangedHere => wd.put(0, "f", "x", 200),
        ChangedThere => wd.put(1, "f", "b", 300),
        DeletedHere => wd.delete(0, "f"),
        DeletedThere => wd.delete(1, "f"),
        Conflict => {
            wd.put(0, "f", "x", 200);
            wd.put(1, "f", "b", 300);
        }
        ChangedHereDeletedThere => {
            wd.put(0, "f", "x", 200);
            wd.delete(1, "f");
        }
        DeletedHereChangedThere => {
            wd.delete(0, "f");
            wd.put(1, "f", "b", 300);
        }
        NewHere => wd.put(0, "f", "x", 200),
        NewThere => wd.put(1, "f", "b", 300),
        NewBoth => {
            wd.put(0, "f", "x", 200);
            wd.put(1, "f", "b", 300);
        }
    }
    wd
}

/// What a run of `case` leaves: `f` on peers 0, 1 and 2, and what was said: reverted on
/// peer 0, overridden on peer 1 (by peer 0), conflicts.
struct Want {
    f: [Option<&'static str>; 3],
    reverted: bool,
    overridden: bool,
    conflicts: usize,
}

const fn want(f: [Option<&'static str>; 3]) -> Want {
    Want {
        f,
        reverted: false,
        overridden: false,
        conflicts: 0,
    }
}

const fn reverted(f: [Option<&'static str>; 3]) -> Want {
    Want {
        reverted: true,
        ..want(f)
    }
}

const fn overridden(f: [Option<&'static str>; 3]) -> Want {
    Want {
        overridden: true,
        ..want(f)
    }
}

const fn conflict(f: [Option<&'static str>; 3]) -> Want {
    Want {
        conflicts: 1,
        ..want(f)
    }
}

const V1: Option<&str> = Some("v1");
const X: Option<&str> = Some("x");
const B: Option<&str> = Some("b");
const NONE: Option<&str> = None;

/// The table: for each case, what a normal peer, a send-only, a receive-only, a no-delete
/// and a receive-only no-delete peer 0 leads to.
fn table(case: Case) -> [(&'static str, Want); 5] {
    use Case::*;
    match case {
        Unchanged => [
            ("", want([V1, V1, V1])),
            ("send-only", want([V1, V1, V1])),
            ("receive-only", want([V1, V1, V1])),
            ("no-delete", want([V1, V1, V1])),
            ("receive-only no-delete", want([V1, V1, V1])),
        ],
        ChangedHere => [
            ("", want([X, X, X])),
            ("send-only", want([X, X, X])),
            ("receive-only", reverted([V1, V1, V1])),
            ("no-delete", want([X, X, X])),
            ("receive-only no-delete", reverted([V1, V1, V1])),
        ],
        ChangedThere => [
            ("", want([B, B, B])),
            ("send-only", want([V1, B, B])),
            ("receive-only", want([B, B, B])),
            ("no-delete", want([B, B, B])),
            ("receive-only no-delete", want([B, B, B])),
        ],
        DeletedHere => [
            ("", want([NONE, NONE, NONE])),
            ("send-only", want([NONE, NONE, NONE])),
            ("receive-only", reverted([V1, V1, V1])),
            ("no-delete", want([NONE, NONE, NONE])),
            ("receive-only no-delete", reverted([V1, V1, V1])),
        ],
        DeletedThere => [
            ("", want([NONE, NONE, NONE])),
            ("send-only", want([V1, NONE, NONE])),
            ("receive-only", want([NONE, NONE, NONE])),
            ("no-delete", want([V1, NONE, NONE])),
            ("receive-only no-delete", want([V1, NONE, NONE])),
        ],
        Conflict => [
            ("", conflict([B, B, B])),
            ("send-only", overridden([X, X, X])),
            ("receive-only", reverted([B, B, B])),
            ("no-delete", conflict([B, B, B])),
            ("receive-only no-delete", reverted([B, B, B])),
        ],
        ChangedHereDeletedThere => [
            ("", want([X, X, X])),
            ("send-only", want([X, X, X])),
            ("receive-only", reverted([NONE, NONE, NONE])),
            ("no-delete", want([X, X, X])),
            // A revert is not a deletion: no-delete does not keep a change made there.
            ("receive-only no-delete", reverted([NONE, NONE, NONE])),
        ],
        DeletedHereChangedThere => [
            ("", want([B, B, B])),
            ("send-only", overridden([NONE, NONE, NONE])),
            ("receive-only", reverted([B, B, B])),
            ("no-delete", want([B, B, B])),
            ("receive-only no-delete", reverted([B, B, B])),
        ],
        NewHere => [
            ("", want([X, X, X])),
            ("send-only", want([X, X, X])),
            ("receive-only", reverted([NONE, NONE, NONE])),
            ("no-delete", want([X, X, X])),
            ("receive-only no-delete", reverted([NONE, NONE, NONE])),
        ],
        NewThere => [
            ("", want([B, B, B])),
            ("send-only", want([NONE, B, B])),
            ("receive-only", want([B, B, B])),
            ("no-delete", want([B, B, B])),
            ("receive-only no-delete", want([B, B, B])),
        ],
        NewBoth => [
            ("", want([B, B, B])),
            ("send-only", overridden([X, X, X])),
            ("receive-only", reverted([B, B, B])),
            ("no-delete", want([B, B, B])),
            ("receive-only no-delete", reverted([B, B, B])),
        ],
    }
}

#[test]
fn every_role_times_every_case_does_what_the_table_says_and_the_rerun_is_quiet() {
    for case in CASES {
        for (words, want) in table(case) {
            let label = format!("{case:?} with peer 0 {words:?}");
            let mut wd = world(words, case);
            let held_before = [0, 1].map(|p| wd.hosts[p].disk.contains_key(&w("f")));
            let plan = wd.sync();
            let got: Vec<Option<&str>> = (0..3).map(|p| wd.at(p, "f")).collect();
            assert_eq!(got, want.f, "{label}: {plan:#?}");
            assert_eq!(
                plan.reverts,
                if want.reverted {
                    vec![(0, w("f"))]
                } else {
                    vec![]
                },
                "{label}"
            );
            let overrides: Vec<(PeerId, PeerId)> =
                plan.overrides.iter().map(|o| (o.peer, o.by)).collect();
            assert_eq!(
                overrides,
                if want.overridden {
                    vec![(1, 0)]
                } else {
                    vec![]
                },
                "{label}"
            );
            assert_eq!(plan.conflicts.len(), want.conflicts, "{label}");
            let on = if want.overridden { 1 } else { 0 };
            if (want.overridden || want.reverted) && held_before[on] {
                // The version replaced is kept where it was.
                assert!(
                    wd.hosts[on].kept.iter().any(|(rel, _)| *rel == w("f")),
                    "{label}: kept on {on}"
                );
            }
            if want.conflicts > 0 {
                // Every version reaches every peer (a conflict copy of x everywhere).
                for p in 0..3 {
                    let copies = wd.hosts[p]
                        .disk
                        .keys()
                        .filter(|r| r.to_string().starts_with("f.synk-conflict-"))
                        .count();
                    assert_eq!(copies, 1, "{label}: peer {p}");
                }
            }
            assert!(plan.problems.is_empty(), "{label}: {:?}", plan.problems);
            assert_quiet(&wd.sync(), &label);
            assert_quiet(&wd.sync(), &label);
        }
    }
}

#[test]
fn a_send_only_peer_is_never_a_target_and_its_state_records_only_what_it_holds() {
    let mut wd = world("send-only", Case::ChangedThere);
    let plan = wd.sync();
    assert!(plan.actions().iter().all(|a| a.peer != 0), "{plan:?}");
    assert_eq!(plan.kept_own, [(0, w("f"))], "-v says peer 0 keeps its own");
    assert!(plan.records.of(0).next().is_none());
    assert_eq!(wd.hosts[0].state[&w("f")].vv, Vv(vec![(9, 2)]));
    // Said again, and only that, each run: the others' version never reaches it.
    let again = wd.sync();
    assert_eq!(again.kept_own, [(0, w("f"))]);
    // Once it changes the entry, its change wins on the others.
    wd.put(0, "f", "x2", 10);
    let plan = wd.sync();
    assert_eq!((wd.at(1, "f"), wd.at(2, "f")), (Some("x2"), Some("x2")));
    // It never took b: its change and b are concurrent, and b is kept where it was replaced.
    let overrides: Vec<(PeerId, PeerId)> = plan.overrides.iter().map(|o| (o.peer, o.by)).collect();
    assert_eq!(overrides, [(1, 0), (2, 0)]);
    assert_quiet(&wd.sync(), "after the send-only change");
}

#[test]
fn two_send_only_peers_that_disagree_conflict_on_the_other_peers_only() {
    for history in [true, false] {
        let mut wd = World::new(4);
        wd.roles[0] = role("send-only");
        wd.roles[1] = role("send-only");
        wd.roles[3] = role("receive-only");
        if history {
            wd.synced("f", "v1");
        }
        wd.put(0, "f", "x", 200);
        wd.put(1, "f", "b", 300);
        let plan = wd.sync();
        let label = format!("history {history}");
        if !history {
            // Without history the newest simply wins; the other stays where it is.
            assert!(plan.conflicts.is_empty(), "{plan:?}");
            assert_eq!(plan.kept_own, [(0, w("f"))]);
            let at: Vec<Option<&str>> = (0..4).map(|p| wd.at(p, "f")).collect();
            assert_eq!(at, [Some("x"), Some("b"), Some("b"), Some("b")]);
            assert_quiet(&wd.sync(), &label);
            assert_quiet(&wd.sync(), &label);
            continue;
        }
        assert_eq!(plan.conflicts.len(), 1, "{label}: {plan:?}");
        assert_eq!(
            plan.conflicts[0].winner, 1,
            "{label}: the newer keeps the name"
        );
        assert!(
            plan.renames.is_empty(),
            "{label}: nothing renamed on a send-only peer"
        );
        assert_eq!((wd.at(0, "f"), wd.at(1, "f")), (Some("x"), Some("b")));
        for p in [2, 3] {
            assert_eq!(wd.at(p, "f"), Some("b"), "{label}: peer {p}");
            let copies: Vec<Option<&str>> = wd.hosts[p]
                .disk
                .keys()
                .filter(|r| r.to_string().starts_with("f.synk-conflict-"))
                .map(|r| wd.at(p, &r.to_string()))
                .collect();
            assert_eq!(copies, [Some("x")], "{label}: peer {p}");
        }
        for p in [0, 1] {
            assert_eq!(
                wd.hosts[p].disk.len(),
                2,
                "{label}: no conflict copy on {p}"
            );
        }
        // The loser's copy is read from its own name.
        let side: Vec<_> = plan.copies.iter().filter(|c| c.source.is_some()).collect();
        assert_eq!(side.len(), 1, "{label}");
        assert_eq!((side[0].master, side[0].source.clone()), (0, Some(w("f"))));
        assert_eq!(side[0].targets, [2, 3], "{label}");
        assert_quiet(&wd.sync(), &label);
        assert_quiet(&wd.sync(), &label);
    }
}

#[test]
fn a_send_only_peers_file_meeting_a_new_directory_stays_beside_it_on_the_others() {
    let mut wd = World::new(3);
    wd.roles[0] = role("send-only");
    wd.put(0, "k", "file", 500);
    wd.hosts[1].disk.insert(w("k"), dir_meta());
    wd.put(1, "k/in", "inside", 1);
    let plan = wd.sync();
    assert_eq!(plan.conflicts.len(), 1, "{plan:?}");
    assert!(plan.renames.is_empty());
    assert_eq!(
        wd.at(0, "k"),
        Some("file"),
        "the send-only peer is left as it was"
    );
    assert!(!wd.hosts[0].disk.contains_key(&w("k/in")));
    for p in [1, 2] {
        assert_eq!(wd.at(p, "k/in"), Some("inside"), "peer {p}");
        assert!(
            wd.hosts[p]
                .disk
                .keys()
                .any(|r| r.to_string().starts_with("k.synk-conflict-")),
            "peer {p}"
        );
    }
    assert_quiet(&wd.sync(), "file against directory");
}

#[test]
fn a_receive_only_no_delete_backup_keeps_what_the_group_deleted_until_it_edits_it() {
    let mut wd = World::new(3);
    wd.roles[2] = role("receive-only no-delete");
    wd.synced("f", "v1");
    wd.synced("g", "g1");
    wd.delete(0, "f");
    let plan = wd.sync();
    assert_eq!(
        (wd.at(0, "f"), wd.at(1, "f"), wd.at(2, "f")),
        (None, None, Some("v1"))
    );
    assert!(plan.records.of(2).next().is_none(), "it keeps its record");
    assert_quiet(&wd.sync(), "after the deletion");
    // An edit on the backup is reverted: the group's version there is "deleted".
    wd.put(2, "f", "edited on the backup", 900);
    let plan = wd.sync();
    assert_eq!(plan.reverts, [(2, w("f"))]);
    assert_eq!(wd.at(2, "f"), None);
    assert!(wd.hosts[2]
        .kept
        .iter()
        .any(|(r, m)| *r == w("f") && wd.words[&m.digest.unwrap()] == "edited on the backup"));
    assert_quiet(&wd.sync(), "after the revert");
    // Its own deletions never travel either: g comes back.
    wd.delete(2, "g");
    let plan = wd.sync();
    assert_eq!(plan.reverts, [(2, w("g"))]);
    assert_eq!(wd.at(2, "g"), Some("g1"));
    assert_quiet(&wd.sync(), "after restoring g");
}

#[test]
fn a_no_delete_peer_that_edits_an_entry_deleted_elsewhere_brings_it_back_everywhere() {
    let mut wd = world("no-delete", Case::DeletedThere);
    wd.sync();
    assert_eq!(
        (wd.at(0, "f"), wd.at(1, "f"), wd.at(2, "f")),
        (Some("v1"), None, None)
    );
    assert_quiet(&wd.sync(), "kept on the no-delete peer");
    wd.put(0, "f", "edited", 700);
    let plan = wd.sync();
    assert!(plan.conflicts.is_empty());
    for p in 0..3 {
        assert_eq!(wd.at(p, "f"), Some("edited"), "peer {p}");
    }
    assert_quiet(&wd.sync(), "back everywhere");
}

#[test]
fn a_no_delete_peer_keeps_a_directory_the_others_replaced_with_a_file() {
    let mut wd = World::new(3);
    wd.roles[2] = role("no-delete");
    wd.hosts.iter_mut().for_each(|h| {
        h.disk.insert(w("k"), dir_meta());
        h.state.insert(
            w("k"),
            Record {
                rel: w("k"),
                meta: Some(dir_meta()),
                vv: Vv(vec![(9, 2)]),
            },
        );
    });
    wd.synced("k/x", "x");
    wd.delete(0, "k/x");
    wd.delete(0, "k");
    wd.put(0, "k", "now a file", 100);
    let plan = wd.sync();
    assert!(plan.problems.is_empty());
    assert_eq!(
        (wd.at(0, "k"), wd.at(1, "k")),
        (Some("now a file"), Some("now a file"))
    );
    assert_eq!(wd.hosts[2].disk.get(&w("k")), Some(&dir_meta()));
    assert_eq!(wd.at(2, "k/x"), Some("x"));
    assert_quiet(&wd.sync(), "the directory kept");
}

#[test]
fn roles_added_or_dropped_later_keep_the_state_working() {
    // Receive-only, then normal: its reverted edit does not come back.
    let mut wd = world("receive-only", Case::ChangedHere);
    wd.sync();
    wd.roles[0] = Role::default();
    assert_quiet(&wd.sync(), "receive-only dropped");
    assert_eq!(wd.at(1, "f"), Some("v1"));
    // A normal peer that becomes receive-only: its next edit is reverted.
    wd.roles[0] = role("receive-only");
    wd.put(0, "f", "later", 800);
    let plan = wd.sync();
    assert_eq!(plan.reverts, [(0, w("f"))]);
    assert_quiet(&wd.sync(), "receive-only added");
    // Send-only dropped: it takes what the others changed meanwhile.
    let mut wd = world("send-only", Case::ChangedThere);
    wd.sync();
    assert_eq!(wd.at(0, "f"), Some("v1"));
    wd.roles[0] = Role::default();
    let plan = wd.sync();
    assert_eq!(wd.at(0, "f"), Some("b"));
    assert!(plan.overrides.is_empty() && plan.conflicts.is_empty());
    assert_quiet(&wd.sync(), "send-only dropped");
    // No-delete dropped: the deletion it was spared reaches it.
    let mut wd = world("no-delete", Case::DeletedThere);
    wd.sync();
    wd.roles[0] = Role::default();
    wd.sync();
    assert_eq!(wd.at(0, "f"), None);
    assert_quiet(&wd.sync(), "no-delete dropped");
}

#[test]
fn master_wins_over_every_role_for_its_run() {
    // A receive-only master's edit goes everywhere, a send-only peer included.
    let mut wd = World::new(3);
    wd.roles[0] = role("send-only");
    wd.roles[1] = role("receive-only");
    wd.roles[2] = role("no-delete");
    wd.synced("f", "v1");
    wd.synced("g", "g1");
    wd.put(1, "f", "master's", 1);
    wd.delete(1, "g");
    wd.forced = Some(1);
    let plan = wd.sync();
    assert!(plan.reverts.is_empty());
    for p in 0..3 {
        assert_eq!(wd.at(p, "f"), Some("master's"), "peer {p}");
        assert_eq!(wd.at(p, "g"), None, "peer {p}");
    }
    wd.forced = None;
    assert_quiet(&wd.sync(), "after --master");
}

#[test]
fn a_receive_only_peer_is_not_emptied_by_a_first_sync_against_empty_peers() {
    let fresh = || {
        let mut wd = World::new(3);
        for h in &mut wd.hosts {
            h.state.clear();
        }
        wd.roles[2] = role("receive-only");
        wd.put(2, "a", "a", 1);
        wd.put(2, "d/b", "b", 1);
        wd.hosts[2].disk.insert(w("d"), dir_meta());
        wd
    };
    let mut wd = fresh();
    let plan = wd.sync();
    assert_eq!(plan.problems, [Problem::EmptyGroup { peer: 2, held: 3 }]);
    assert!(plan.is_noop() && plan.reverts.is_empty());
    assert!(plan.has_failures());
    assert!(wd.hosts[2].state.is_empty(), "left out: its state stays");
    assert_eq!(wd.sync().problems.len(), 1, "said again until confirmed");
    // Confirmed: everything of its own is reverted (kept as versions).
    let mut wd = fresh();
    wd.confirm_empty = true;
    let plan = wd.sync();
    assert_eq!(plan.reverts.len(), 3, "{plan:?}");
    assert_eq!(wd.hosts[2].disk.len(), 1, "the root stays");
    wd.confirm_empty = false;
    assert_quiet(&wd.sync(), "after the confirmed revert");
    // A group that holds something: an ordinary revert, no guard.
    let mut wd = fresh();
    wd.put(0, "other", "o", 1);
    let plan = wd.sync();
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert_eq!(plan.reverts.len(), 3);
    assert_quiet(&wd.sync(), "after the revert");
}

#[test]
fn receive_only_and_send_only_peers_together_with_a_normal_one() {
    // 0 send-only source, 1 and 2 normal, 3 receive-only no-delete backup.
    let mut wd = World::new(4);
    wd.roles[0] = role("send-only");
    wd.roles[3] = role("receive-only no-delete");
    wd.synced("src", "s1");
    wd.synced("doc", "d1");
    wd.synced("tmp", "t1");
    wd.put(0, "src", "s2", 100);
    wd.put(1, "doc", "d2", 100);
    wd.delete(2, "tmp");
    wd.put(3, "src", "edited on the backup", 100);
    let plan = wd.sync();
    assert_eq!(at(&wd, "src"), [Some("s2"); 4]);
    assert_eq!(
        at(&wd, "doc"),
        [Some("d1"), Some("d2"), Some("d2"), Some("d2")]
    );
    assert_eq!(at(&wd, "tmp"), [Some("t1"), None, None, Some("t1")]);
    assert_eq!(plan.reverts, [(3, w("src"))]);
    assert_quiet(&wd.sync(), "four peers");
}
