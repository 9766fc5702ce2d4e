//! Peer roles end to end over a real sshd (see `common/mod.rs`): send-only sources,
//! receive-only replicas, no-delete backups and their combination, with three or more peers.
//! Every role test runs twice at least: the second run is quiet and exits 0.

#[macro_use]
mod common;

use std::ffi::OsString;
use std::fs;
use std::process::Output;

use common::*;

fn code(out: &Output, want: i32) {
    assert_eq!(
        out.status.code(),
        Some(want),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// A run that does nothing and says nothing: exit 0, no line on stdout or stderr.
fn quiet(out: &Output) {
    code(out, 0);
    assert!(stdout(out).trim().is_empty(), "said: {}", stdout(out));
    assert!(stderr(out).trim().is_empty(), "said: {}", stderr(out));
}

/// A directory `d` holding `a`, `b`, `c` and `e` on localhost, synced to `peers`.
fn synced(s: &Scene, peers: &[&str]) -> i64 {
    let t = now() - 1000;
    for f in ["a", "b", "c", "e"] {
        s.write(LOCAL, &format!("d/{f}"), format!("{f}1"), t);
    }
    code(&s.synk(peers, &[&s.arg("d")]), 0);
    for p in peers {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
    }
    t
}

fn rm(s: &Scene, peer: &str, rel: &str) {
    fs::remove_file(s.path(peer, rel)).unwrap();
}

/// `content` of `d/REL` on each of `peers` (`None`: missing there).
fn contents(s: &Scene, peers: &[&str], rel: &str) -> Vec<Option<String>> {
    peers
        .iter()
        .map(|p| s.read(p, rel).map(|b| String::from_utf8(b).unwrap()))
        .collect()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A role option and its HOST, as arguments.
fn role(s: &Scene, option: &str, peer: &str) -> [OsString; 2] {
    let host = if peer == LOCAL {
        LOCAL.to_string()
    } else {
        s.host(peer)
    };
    [OsString::from(option), OsString::from(host)]
}

/// `args` as the `&OsStr` list `Scene::synk` takes.
fn refs(args: &[OsString]) -> Vec<&std::ffi::OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

/// The kept versions of `rel` on `peer`, as `--versions` lists them (one line each).
fn kept(s: &Scene, peers: &[&str], peer: &str, rel: &str) -> Vec<String> {
    let out = s.synk(peers, &[os("--versions"), &s.arg(rel)]);
    code(&out, 0);
    stdout(&out)
        .lines()
        .filter(|l| l.starts_with(&format!("{}\t", s.shown(peer))))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_send_only_source_wins_on_the_others_and_takes_nothing_from_them() {
    let s = scene!("r-send");
    let peers = ["alpha", "beta", "gamma"];
    let all = [LOCAL, "alpha", "beta", "gamma"];
    let t = synced(&s, &peers);
    s.write("alpha", "d/a", "alpha's a", t + 10);
    s.write("beta", "d/a", "beta's a", t + 20);
    s.write("beta", "d/b", "beta's b", t + 20);
    rm(&s, "gamma", "d/c");
    rm(&s, "alpha", "d/e");
    let mut args: Vec<OsString> = role(&s, "--send-only", "alpha").into();
    args.push(s.arg("d"));
    let out = s.synk(&peers, &refs(&args));
    // No conflict: the send-only peer's version wins, beta's is kept in its store.
    code(&out, 0);
    assert!(!stderr(&out).contains("conflict"), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "kept {} on {}: send-only {} wins",
            s.path("beta", "d/a").display(),
            s.shown("beta"),
            s.shown("alpha")
        )),
        "{said}"
    );
    assert_eq!(contents(&s, &all, "d/a"), vec![some("alpha's a"); 4]);
    // beta's change travels among the others only; alpha keeps its b, and its c.
    assert_eq!(
        contents(&s, &all, "d/b"),
        [
            some("beta's b"),
            some("b1"),
            some("beta's b"),
            some("beta's b")
        ]
    );
    assert_eq!(contents(&s, &all, "d/c"), [None, some("c1"), None, None]);
    // alpha's deletion travels.
    assert_eq!(contents(&s, &all, "d/e"), vec![None; 4]);
    for f in ["d/a", "d/b"] {
        assert!(
            s.dir(LOCAL).join("d").read_dir().unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("synk-conflict")),
            "{f}: no conflict copy"
        );
    }
    assert_eq!(kept(&s, &all[1..], "beta", "d/a").len(), 1);
    assert!(
        kept(&s, &all[1..], "alpha", "d/a").is_empty(),
        "nothing changes alpha"
    );
    // Again: quiet; -v says alpha keeps its own b and c, and names its role.
    quiet(&s.synk(&peers, &refs(&args)));
    let mut verbose = args.clone();
    verbose.insert(0, "-v".into());
    let out = s.synk(&peers, &refs(&verbose));
    code(&out, 0);
    assert_nothing_done(&out);
    let said = stdout(&out);
    for f in ["d/b", "d/c"] {
        assert!(
            said.contains(&format!(
                "{}: send-only {} keeps its own version",
                s.path("alpha", f).display(),
                s.shown("alpha")
            )),
            "{said}"
        );
    }
    assert!(
        said.contains(&format!(
            "peer: {} (send-only) {} ",
            s.shown("alpha"),
            s.path("alpha", "d/b").display()
        )),
        "{said}"
    );
    // Once alpha changes b, its version reaches the others.
    s.write("alpha", "d/b", "alpha's b", t + 30);
    code(&s.synk(&peers, &refs(&args)), 0);
    assert_eq!(contents(&s, &all, "d/b"), vec![some("alpha's b"); 4]);
    quiet(&s.synk(&peers, &refs(&args)));
}

#[test]
fn a_receive_only_replica_takes_every_change_and_its_own_are_reverted() {
    let s = scene!("r-recv");
    let peers = ["alpha", "beta", "gamma"];
    let all = [LOCAL, "alpha", "beta", "gamma"];
    let t = synced(&s, &peers);
    s.write("beta", "d/a", "edited on beta", t + 50);
    rm(&s, "beta", "d/b");
    s.write("beta", "d/new", "made on beta", t + 50);
    s.write("alpha", "d/c", "alpha's c", t + 10);
    let mut args: Vec<OsString> = role(&s, "--receive-only", "beta").into();
    args.push(s.arg("d"));
    // -n lists the reverts and changes nothing.
    let mut dry = args.clone();
    dry.insert(0, "-n".into());
    let out = s.synk(&peers, &refs(&dry));
    code(&out, 4);
    for f in ["d/a", "d/b", "d/new"] {
        assert!(
            stdout(&out).contains(&format!(
                "would revert {} on {}",
                s.path("beta", f).display(),
                s.shown("beta")
            )),
            "{f}: {}",
            stdout(&out)
        );
    }
    assert_eq!(s.read("beta", "d/a").unwrap(), b"edited on beta");
    let out = s.synk(&peers, &refs(&args));
    code(&out, 0);
    for f in ["d/a", "d/b", "d/new"] {
        assert!(
            stdout(&out).contains(&format!(
                "reverted on {}: {}",
                s.shown("beta"),
                s.path("beta", f).display()
            )),
            "{f}: {}",
            stdout(&out)
        );
    }
    assert_eq!(contents(&s, &all, "d/a"), vec![some("a1"); 4]);
    assert_eq!(contents(&s, &all, "d/b"), vec![some("b1"); 4]);
    assert_eq!(contents(&s, &all, "d/new"), vec![None; 4]);
    assert_eq!(contents(&s, &all, "d/c"), vec![some("alpha's c"); 4]);
    // beta's own versions are kept there, to be listed and restored.
    assert_eq!(kept(&s, &all[1..], "beta", "d/a").len(), 1);
    assert_eq!(kept(&s, &all[1..], "beta", "d/new").len(), 1);
    let log = fs::read_to_string(s.local_home.join(".local/state/synk/synk.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&s.shown("beta")) && l.contains("\treverted\t")),
        "{log}"
    );
    quiet(&s.synk(&peers, &refs(&args)));
    // Dropped later, the role leaves nothing behind: beta's old edits do not come back.
    quiet(&s.synk(&peers, &[&s.arg("d")]));
    assert_eq!(contents(&s, &all, "d/a"), vec![some("a1"); 4]);
    // Its kept edit can be made the group's: restored with --master over the role.
    let mut restore: Vec<OsString> = role(&s, "--receive-only", "beta").into();
    restore.extend(role(&s, "--master", "beta"));
    restore.extend(["--restore".into(), s.arg("d/a")]);
    code(&s.synk(&peers, &refs(&restore)), 0);
    assert_eq!(contents(&s, &all, "d/a"), vec![some("edited on beta"); 4]);
    quiet(&s.synk(&peers, &refs(&args)));
}

#[test]
fn a_no_delete_backup_keeps_what_others_delete_and_an_edit_there_brings_it_back() {
    let s = scene!("r-nodel");
    let peers = ["alpha", "beta", "gamma"];
    let all = [LOCAL, "alpha", "beta", "gamma"];
    let t = synced(&s, &peers);
    rm(&s, "alpha", "d/a");
    rm(&s, "gamma", "d/b");
    let mut args: Vec<OsString> = role(&s, "--no-delete", "gamma").into();
    args.push(s.arg("d"));
    code(&s.synk(&peers, &refs(&args)), 0);
    assert_eq!(contents(&s, &all, "d/a"), [None, None, None, some("a1")]);
    // Its own deletions travel.
    assert_eq!(contents(&s, &all, "d/b"), vec![None; 4]);
    quiet(&s.synk(&peers, &refs(&args)));
    // Not brought back to those that deleted it, and an edit there is a modification: it
    // beats the deletion and comes back everywhere.
    s.write("gamma", "d/a", "edited on gamma", t + 100);
    code(&s.synk(&peers, &refs(&args)), 0);
    assert_eq!(contents(&s, &all, "d/a"), vec![some("edited on gamma"); 4]);
    quiet(&s.synk(&peers, &refs(&args)));
}

#[test]
fn two_send_only_peers_that_disagree_conflict_on_the_others_only() {
    let s = scene!("r-two-src");
    let peers = ["alpha", "beta", "gamma"];
    let all = [LOCAL, "alpha", "beta", "gamma"];
    let t = synced(&s, &peers);
    s.write("alpha", "d/a", "alpha's a", t + 10);
    s.write("beta", "d/a", "beta's a", t + 20);
    let mut args: Vec<OsString> = role(&s, "--send-only", "alpha").into();
    args.extend(role(&s, "--send-only", "beta"));
    args.push(s.arg("d"));
    let out = s.synk(&peers, &refs(&args));
    code(&out, 3);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    assert_eq!(
        contents(&s, &all, "d/a"),
        [
            some("beta's a"),
            some("alpha's a"),
            some("beta's a"),
            some("beta's a")
        ]
    );
    let copies = |p: &str| -> Vec<(String, Vec<u8>)> {
        fs::read_dir(s.path(p, "d"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("a.synk-conflict-")
            })
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    for p in [LOCAL, "gamma"] {
        let c = copies(p);
        assert_eq!(c.len(), 1, "{p}: {c:?}");
        assert_eq!(c[0].1, b"alpha's a", "{p}");
    }
    for p in ["alpha", "beta"] {
        assert!(copies(p).is_empty(), "no conflict copy on send-only {p}");
    }
    quiet(&s.synk(&peers, &refs(&args)));
}

#[test]
fn roles_from_synk_conf_a_source_two_peers_and_a_backup_over_several_runs() {
    for copier in ["auto", "stream"] {
        let s = scene!(&format!("r-conf-{copier}"));
        // alpha: send-only source; localhost and beta: normal; gamma: receive-only, no-delete
        // backup; delta (no rsync): normal.
        let port = s.rig.port;
        let conf = s.local_home.join("roles.conf");
        fs::write(
            &conf,
            format!(
                "peer {} {port} send-only\npeer {} {port}\npeer {} {port} receive-only no-delete\npeer {} {port}\n",
                s.host("alpha"),
                s.host("beta"),
                s.host("gamma"),
                s.host("delta")
            ),
        )
        .unwrap();
        let all = [LOCAL, "alpha", "beta", "gamma", "delta"];
        let run = |extra: &[&str]| -> Output {
            let mut cmd = s.command(&[]);
            cmd.arg("-f").arg(&conf).args(["--copier", copier]);
            let mut args: Vec<OsString> = extra.iter().map(OsString::from).collect();
            args.push(s.arg("src"));
            s.run(cmd, &refs(&args))
        };
        let t = now() - 1000;
        s.write("alpha", "src/main.c", "v1", t);
        s.write("alpha", "src/lib/util.c", "u1", t);
        // Run 1: the source fills every peer.
        code(&run(&[]), 0);
        for f in ["src/main.c", "src/lib/util.c"] {
            assert_same_everywhere(&s, &all, f);
        }
        quiet(&run(&[]));
        // Run 2: an edit and a deletion on the source, a note on beta, an edit on the backup.
        s.write("alpha", "src/main.c", "v2", t + 10);
        fs::remove_file(s.path("alpha", "src/lib/util.c")).unwrap();
        s.write("beta", "src/notes.txt", "beta's notes", t + 10);
        s.write("gamma", "src/main.c", "hand edit on the backup", t + 20);
        let out = run(&["-v", "--json"]);
        code(&out, 0);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", stdout(&out)));
        let roles: Vec<(String, Vec<String>)> = doc["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let words = p["role"].as_array().unwrap();
                (
                    p["peer"].as_str().unwrap().to_string(),
                    words
                        .iter()
                        .map(|w| w.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect();
        let role_of = |peer: &str| {
            roles
                .iter()
                .find(|(n, _)| *n == s.shown(peer))
                .unwrap_or_else(|| panic!("{peer} not in {roles:?}"))
                .1
                .clone()
        };
        assert_eq!(role_of("alpha"), ["send-only"]);
        assert_eq!(role_of("gamma"), ["receive-only", "no-delete"]);
        assert!(role_of("beta").is_empty() && role_of(LOCAL).is_empty());
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "peer: {} (receive-only, no-delete) {}",
                s.shown("gamma"),
                s.path("gamma", "src/main.c").display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "reverted on {}: {}",
                s.shown("gamma"),
                s.path("gamma", "src/main.c").display()
            )),
            "{err}"
        );
        assert_eq!(contents(&s, &all, "src/main.c"), vec![some("v2"); 5]);
        assert_eq!(
            contents(&s, &all, "src/lib/util.c"),
            [None, None, None, some("u1"), None]
        );
        assert_eq!(
            contents(&s, &all, "src/notes.txt"),
            [
                some("beta's notes"),
                None,
                some("beta's notes"),
                some("beta's notes"),
                some("beta's notes")
            ]
        );
        quiet(&run(&[]));
        // Run 3: beta deletes its notes; the backup keeps them, the source never had them.
        fs::remove_file(s.path("beta", "src/notes.txt")).unwrap();
        code(&run(&[]), 0);
        assert_eq!(
            contents(&s, &all, "src/notes.txt"),
            [None, None, None, some("beta's notes"), None]
        );
        quiet(&run(&[]));
        // With -h, roles come from the command line only: the config's are not in force,
        // so the deletions the backup was spared would reach it now.
        let mut cmd = s.command(&["alpha", "gamma"]);
        cmd.arg("-f").arg(&conf);
        let out = s.run(cmd, &[os("-n"), &s.arg("src")]);
        code(&out, 4);
        for f in ["src/lib/util.c", "src/notes.txt"] {
            assert!(
                stdout(&out).contains(&format!(
                    "would delete {} on {}",
                    s.path("gamma", f).display(),
                    s.shown("gamma")
                )),
                "{f}: {}",
                stdout(&out)
            );
        }
    }
}

#[test]
fn a_receive_only_peer_is_not_emptied_by_a_first_sync_against_empty_peers() {
    let s = scene!("r-empty-group");
    let t = now() - 100;
    s.write("alpha", "d/a", "a", t);
    s.write("alpha", "d/sub/b", "b", t);
    s.mkdir(LOCAL, "d");
    let mut args: Vec<OsString> = role(&s, "--receive-only", "alpha").into();
    args.push(s.arg("d"));
    let out = s.synk(&["alpha", "beta"], &refs(&args));
    code(&out, 1);
    assert!(
        stderr(&out).contains(&format!(
            "{}: {}: this receive-only peer holds 3 entries there",
            s.shown("alpha"),
            s.path("alpha", "d").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--confirm-empty"), "{}", stderr(&out));
    assert_eq!(s.read("alpha", "d/sub/b").unwrap(), b"b");
    // Said again until confirmed; confirmed, alpha's own entries are reverted (and kept).
    code(&s.synk(&["alpha", "beta"], &refs(&args)), 1);
    let mut confirmed = args.clone();
    confirmed.insert(0, "--confirm-empty".into());
    code(&s.synk(&["alpha", "beta"], &refs(&confirmed)), 0);
    assert!(s.read("alpha", "d/a").is_none() && s.read("alpha", "d/sub/b").is_none());
    assert_eq!(kept(&s, &["alpha", "beta"], "alpha", "d/a").len(), 1);
    quiet(&s.synk(&["alpha", "beta"], &refs(&args)));
}

#[test]
fn roles_that_name_no_peer_or_leave_none_to_send_are_usage_errors() {
    let s = scene!("r-usage");
    let home_x = s.local_home.join("x");
    // A role option takes a HOST: the path after it is not a path.
    let out = s.run(s.command(&[]), &[os("--no-delete"), home_x.as_os_str()]);
    code(&out, 2);
    assert!(
        stderr(&out).contains(&format!(
            "--no-delete {}: not one of the peers",
            home_x.display()
        )),
        "{}",
        stderr(&out)
    );
    let out = s.synk(
        &["alpha"],
        &[
            os("--receive-only"),
            os("localhost"),
            os("--receive-only"),
            os(&s.host("alpha")),
            &s.arg("d"),
        ],
    );
    code(&out, 2);
    assert!(
        stderr(&out).contains("no peer may send"),
        "{}",
        stderr(&out)
    );
    let out = s.synk(
        &["alpha"],
        &[
            os("--send-only"),
            os(&s.host("alpha")),
            os("--receive-only"),
            os(&s.host("alpha")),
            &s.arg("d"),
        ],
    );
    code(&out, 2);
    assert!(
        stderr(&out).contains("both send-only and receive-only"),
        "{}",
        stderr(&out)
    );
}
