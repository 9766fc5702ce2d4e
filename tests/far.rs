//! Far peers: what a run costs in round trips, requests sent together whose answers still
//! land on the right entries, and copies resumed where they were cut. Over a real sshd (see
//! `common/mod.rs`).

#[macro_use]
mod common;

use common::*;

/// The `--json` document of a run that must succeed.
fn json_run(s: &Scene, peers: &[&str], root: &str) -> serde_json::Value {
    let out = s.synk(peers, &[os("--json"), &s.arg(root)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each entry of the first root in a `--json` document, with its decision.
fn decisions(doc: &serde_json::Value) -> Vec<(&str, &str)> {
    doc["roots"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["decision"].as_str().unwrap()))
        .collect()
}

/// Each peer's `round_trips`, by name.
fn trips(doc: &serde_json::Value) -> Vec<(String, u64)> {
    doc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = p["round_trips"]
                .as_u64()
                .unwrap_or_else(|| panic!("no round_trips in {p}"));
            (p["peer"].as_str().unwrap().to_string(), n)
        })
        .collect()
}

#[test]
fn round_trips_per_peer_are_counted_and_few() {
    let s = scene!("f-trips");
    let t = now() - 100;
    for i in 0..50 {
        s.write(LOCAL, &format!("d/s{}/f{i}", i % 5), format!("file {i}"), t);
    }
    let peers = ["alpha", "beta"];
    json_run(&s, &peers, "d");
    let again = json_run(&s, &peers, "d");
    let in_sync = trips(&again);
    // One changed file: its copy costs a bounded number of round trips more, whatever it is.
    s.write(LOCAL, "d/s3/f3", vec![7u8; 8192], t + 10);
    let changed = trips(&json_run(&s, &peers, "d"));
    assert_same_everywhere(&s, &[LOCAL, "alpha", "beta"], "d/s3/f3");
    eprintln!("in sync: {in_sync:?}; one changed file: {changed:?}");
    for ((name, quiet), (_, busy)) in in_sync.iter().zip(&changed) {
        assert!(*quiet >= 1, "{name}: {quiet} round trips counted");
        // The handshake and scan travel on the serve's command line; nothing to commit.
        assert_eq!(*quiet, 1, "{name}: round trips in sync");
        // Besides the scan: the briefs, with the changed entry in full behind them; then the
        // copy, with the keep of the old version and the commit.
        assert!(
            *busy <= quiet + 2,
            "{name}: {busy} round trips for one change"
        );
    }
    // -vv tells them too.
    let out = s.synk(&peers, &[os("-vv"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(
        o.contains(&format!("synk: {}: ", s.shown("alpha"))) && o.contains(" round trip"),
        "{o}"
    );
}

#[test]
fn requests_sent_together_keep_each_entrys_result_when_one_fails_midway() {
    let s = scene!("f-midway");
    let t = now() - 100;
    for rel in ["d/a", "d/locked/old", "d/m", "d/z"] {
        s.write(LOCAL, rel, format!("old {rel}"), t);
    }
    ok_run(&s, &["alpha", "beta"], "d");
    // alpha's user can no longer write in d/locked: of the files sent to alpha in one go, the
    // second cannot be written there, and the others arrive.
    let locked = s.path("alpha", "d/locked");
    std::os::unix::fs::lchown(&locked, Some(0), Some(0)).unwrap();
    for rel in ["d/a", "d/locked/x", "d/m", "d/z"] {
        s.write(LOCAL, rel, format!("new {rel}"), t + 10);
    }
    s.write(LOCAL, "d/new", "brand new", t + 10);
    let out = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // They went in the serve channel, all at once.
    assert!(
        stdout(&out).contains("synk: stream localhost:"),
        "{}",
        stdout(&out)
    );
    let e = stderr(&out);
    let failed: Vec<&str> = e
        .lines()
        .filter(|l| l.contains(&s.shown("alpha")))
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|l| l.contains("/d/locked")),
        "only what is in d/locked failed, on alpha: {e}"
    );
    assert!(!e.contains(&s.shown("beta")), "{e}");
    for rel in ["d/a", "d/m", "d/z", "d/new"] {
        assert_same_everywhere(&s, &[LOCAL, "alpha", "beta"], rel);
    }
    assert_same_everywhere(&s, &[LOCAL, "beta"], "d/locked/x");
    assert_eq!(s.read("alpha", "d/locked/x"), None);
    // Each entry's state is right: once alpha can write there again, the one that failed
    // is all that travels.
    s.own("alpha", &locked);
    let doc = json_run(&s, &["alpha", "beta"], "d");
    // Only d/locked/x travels; d/locked itself, whose mtime alpha could not take while it
    // was root's, gets it now, on alpha alone (the others keep theirs).
    let entries = decisions(&doc);
    assert_eq!(
        entries,
        [("locked", "metadata"), ("locked/x", "copy")],
        "{doc}"
    );
    let locked = &doc["roots"][0]["entries"][0]["metadata"];
    assert_eq!(locked.as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(locked[0]["peer"], s.shown("alpha").as_str(), "{doc}");
    assert_same_everywhere(&s, &[LOCAL, "alpha", "beta"], "d/locked/x");
}

/// Gives a path to root while it lives, and back to a peer's user after.
struct Taken<'a>(&'a str, std::path::PathBuf);

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let u = user(self.0);
        std::os::unix::fs::lchown(&self.1, Some(u.uid), Some(u.gid)).unwrap();
    }
}

#[test]
fn a_commit_answered_as_the_run_ends_still_tells_its_failure() {
    // A one-shot run does not wait for its commits: their answers are read while the serves
    // finish, or with the copies they travel behind. One that failed still fails the run, in
    // its text and its --json.
    let s = scene!("f-commit");
    let t = now() - 100;
    s.write(LOCAL, "d/a", "one", t);
    ok_run(&s, &["gamma"], "d");
    let roots = s.home("gamma").join(".local/state/synk/roots");
    assert!(roots.is_dir(), "{}", roots.display());
    std::os::unix::fs::lchown(&roots, Some(0), Some(0)).unwrap();
    let _back = Taken("gamma", roots);
    s.write(LOCAL, "d/a", "two", t + 10);
    let out = s.synk(&["gamma"], &[os("--json"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exit"], 1, "{doc}");
    let errors = doc["errors"].to_string();
    assert!(
        errors.contains(&s.shown("gamma")) && errors.contains("cannot save sync state"),
        "{doc}"
    );
    assert!(
        stderr(&out).contains("cannot save sync state"),
        "{}",
        stderr(&out)
    );
    // The copy itself arrived.
    assert_eq!(s.read("gamma", "d/a").unwrap(), b"two");
}

#[test]
fn a_copy_that_cannot_keep_the_version_it_replaces_leaves_it_and_its_record() {
    // (epsilon and zeta: the other tests here use the others' state directories.)
    // The keep travels with the copy: where it fails, the copy is not placed, and the commit
    // sent right behind it keeps that peer's record of the old version.
    let s = scene!("f-keep");
    let t = now() - 100;
    s.write(LOCAL, "d/a", "one", t);
    s.write(LOCAL, "d/b", "bee", t);
    ok_run(&s, &["epsilon", "zeta"], "d");
    let objects = s.home("epsilon").join(".local/state/synk/versions/objects");
    std::fs::create_dir_all(&objects).unwrap();
    s.own("epsilon", &objects);
    std::os::unix::fs::lchown(&objects, Some(0), Some(0)).unwrap();
    let back = Taken("epsilon", objects);
    s.write(LOCAL, "d/a", "two", t + 10);
    let out = s.synk(&["epsilon", "zeta"], &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.lines()
            .any(|l| l.contains(&s.shown("epsilon")) && l.contains("/d/a")),
        "{e}"
    );
    assert!(!e.contains(&s.shown("zeta")), "{e}");
    assert_eq!(s.read("epsilon", "d/a").unwrap(), b"one");
    assert_eq!(s.read("zeta", "d/a").unwrap(), b"two");
    // epsilon's old version is not taken for a change of its own: once it can keep it, the new
    // one arrives, and the old one is kept.
    drop(back);
    let doc = json_run(&s, &["epsilon", "zeta"], "d");
    let entries = decisions(&doc);
    assert_eq!(entries, [("a", "copy")], "{doc}");
    assert_same_everywhere(&s, &[LOCAL, "zeta", "epsilon"], "d/a");
    let versions = s.synk(&["epsilon"], &[os("--versions"), &s.arg("d/a")]);
    let listed = stdout(&versions);
    assert!(
        listed.lines().any(|l| {
            l.starts_with(&format!("{}\t", s.shown("epsilon"))) && l.contains("\toverwritten\t")
        }),
        "{listed}"
    );
}

#[test]
fn many_small_files_go_in_the_serve_channel_and_the_next_run_is_quiet() {
    // More than a few small files to a target are placed without a flush each, and flushed
    // once before its commit: they all arrive, recorded, and nothing travels again.
    let s = scene!("f-many");
    let t = now() - 100;
    for i in 0..300 {
        s.write(
            LOCAL,
            &format!("d/s{}/f{i}", i % 7),
            format!("small {i}"),
            t,
        );
    }
    let out = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(o.contains("synk: stream localhost:"), "{o}");
    assert!(!o.contains("synk: rsync "), "{o}");
    for i in (0..300).step_by(37) {
        assert_same_everywhere(&s, &[LOCAL, "alpha", "beta"], &format!("d/s{}/f{i}", i % 7));
    }
    let doc = json_run(&s, &["alpha", "beta"], "d");
    assert_eq!(doc["roots"][0]["entries"], serde_json::json!([]), "{doc}");
}
