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
        assert!(*quiet <= 3, "{name}: {quiet} round trips in sync");
        assert!(
            *busy <= quiet + 7,
            "{name}: {busy} round trips for one change"
        );
    }
    // -vv tells them too.
    let out = s.synk(&peers, &[os("-vv"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(
        o.contains(&format!("synk: {}: ", s.shown("alpha"))) && o.contains(" round trips"),
        "{o}"
    );
}
