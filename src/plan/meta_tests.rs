//! Metadata changes run after run, on the model of peers in `role_tests`: each propagates
//! under the sync-state rules, none makes a conflict copy, and the run after is quiet.

use super::role_tests::{assert_quiet, role, w, World};
use super::Plan;

/// Sets the mode of peer `p`'s entry at `rel`, as `chmod` would, at change time `ctime`.
fn chmod(wd: &mut World, p: usize, rel: &str, mode: u32, ctime: u64) {
    wd.hosts[p].disk.get_mut(&w(rel)).expect("there").mode = mode;
    wd.hosts[p].ctime = ctime;
}

/// Sets the mtime of peer `p`'s entry at `rel`, as `touch` would, at change time `ctime`.
fn touch(wd: &mut World, p: usize, rel: &str, mtime: i64, ctime: u64) {
    wd.hosts[p].disk.get_mut(&w(rel)).expect("there").mtime = mtime;
    wd.hosts[p].ctime = ctime;
}

/// Every peer's (mode, mtime) of `rel`.
fn metas(wd: &World, rel: &str) -> Vec<(u32, i64)> {
    wd.hosts
        .iter()
        .map(|h| {
            let m = &h.disk[&w(rel)];
            (m.mode, m.mtime)
        })
        .collect()
}

/// A run that only sets metadata: nothing copied, kept, removed or conflicting.
fn only_touches(plan: &Plan, case: &str) {
    assert!(
        plan.copies.is_empty()
            && plan.clones.is_empty()
            && plan.removes.is_empty()
            && plan.keeps.is_empty()
            && plan.conflicts.is_empty()
            && plan.renames.is_empty(),
        "{case}: {plan:?}"
    );
    assert!(!plan.touches.is_empty(), "{case}: something to set");
}

#[test]
fn a_chmod_after_a_sync_goes_everywhere_and_the_next_run_is_quiet() {
    let mut wd = World::new(3);
    wd.synced("f", "v1");
    chmod(&mut wd, 1, "f", 0o750, 5000);
    let plan = wd.sync();
    only_touches(&plan, "chmod");
    let t = &plan.touches[0];
    assert_eq!(
        (t.was.mode, t.meta.mode),
        (0o644, 0o750),
        "the old value named"
    );
    assert_eq!(metas(&wd, "f"), [(0o750, 50); 3]);
    wd.hosts[1].ctime = 0;
    assert_quiet(&wd.sync(), "after a chmod");
}

#[test]
fn a_touch_alone_goes_everywhere_even_to_an_older_time() {
    let mut wd = World::new(2);
    wd.synced("f", "v1");
    touch(&mut wd, 0, "f", 7, 5000);
    let plan = wd.sync();
    only_touches(&plan, "touch");
    assert_eq!(metas(&wd, "f"), [(0o644, 7); 2]);
    assert_quiet(&wd.sync(), "after a touch");
}

#[test]
fn two_chmods_are_no_conflict_the_newest_wins() {
    for (first, second, want) in [(0, 1, 0o700), (1, 0, 0o600)] {
        let mut wd = World::new(3);
        wd.synced("f", "v1");
        // Peer 0 sets 0600 and peer 1 sets 0700; `second` changed later.
        let mode = |p: usize| if p == 0 { 0o600 } else { 0o700 };
        chmod(&mut wd, first, "f", mode(first), 5000);
        wd.hosts[second].disk.get_mut(&w("f")).unwrap().mode = mode(second);
        wd.hosts[second].ctime = 6000;
        let plan = wd.sync();
        only_touches(&plan, "two chmods");
        assert_eq!(metas(&wd, "f"), [(want, 50); 3], "later: peer {second}");
        assert_quiet(&wd.sync(), "after two chmods");
    }
}

#[test]
fn new_content_on_one_peer_and_a_chmod_on_another_merge() {
    let mut wd = World::new(3);
    wd.synced("f", "v1");
    wd.put(0, "f", "v2", 90);
    chmod(&mut wd, 1, "f", 0o755, 4000);
    let plan = wd.sync();
    assert!(
        plan.conflicts.is_empty() && plan.renames.is_empty(),
        "{plan:?}"
    );
    for p in 0..3 {
        assert_eq!(wd.at(p, "f"), Some("v2"), "peer {p}");
    }
    assert_eq!(metas(&wd, "f"), [(0o755, 90); 3], "new content, new mode");
    wd.hosts[1].ctime = 0;
    assert_quiet(&wd.sync(), "after the merge");
}

#[test]
fn a_chmod_and_a_touch_on_different_peers_both_stay() {
    let mut wd = World::new(2);
    wd.synced("f", "v1");
    chmod(&mut wd, 0, "f", 0o700, 4000);
    touch(&mut wd, 1, "f", 20, 4100);
    let plan = wd.sync();
    only_touches(&plan, "chmod and touch");
    assert_eq!(metas(&wd, "f"), [(0o700, 20); 2]);
    assert_quiet(&wd.sync(), "after both");
}

#[test]
fn a_directory_takes_the_newest_mode_and_mtime() {
    let mut wd = World::new(2);
    let dir = |mode, mtime| super::Meta {
        kind: super::Kind::Dir,
        size: 0,
        mode,
        mtime,
        digest: None,
        extra: Default::default(),
    };
    wd.hosts[1].disk.insert(w(""), dir(0o700, 33));
    wd.hosts[1].ctime = 4000;
    let plan = wd.sync();
    only_touches(&plan, "a directory");
    for h in &wd.hosts {
        assert_eq!((h.disk[&w("")].mode, h.disk[&w("")].mtime), (0o700, 33));
    }
    assert_quiet(&wd.sync(), "after a directory");
}

#[test]
fn a_receive_only_peers_chmod_is_undone() {
    let mut wd = World::new(2);
    wd.roles[1] = role("receive-only");
    wd.synced("f", "v1");
    chmod(&mut wd, 1, "f", 0o777, 4000);
    let plan = wd.sync();
    only_touches(&plan, "receive-only chmod");
    assert_eq!(metas(&wd, "f"), [(0o644, 50); 2]);
    assert!(wd.hosts.iter().all(|h| h.kept.is_empty()));
    wd.hosts[1].ctime = 0;
    assert_quiet(&wd.sync(), "after the revert");
}
