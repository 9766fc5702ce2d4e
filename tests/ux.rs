//! What synk tells the user, end to end over a real sshd: paths as each peer has them,
//! deletions and conflict copies at -v, escaped names, usage errors, the skipped-files line,
//! `--refill`, `--state`, and `--versions`/`--restore` on this host alone.

#[macro_use]
mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn code(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", stderr(out));
}

/// A directory `d` with files `a` and `b` on localhost, synced to `peers`.
fn synced_dir(s: &Scene, peers: &[&str]) {
    let t = now() - 1000;
    s.write(LOCAL, "d/a", "a1", t);
    s.write(LOCAL, "d/b", "b1", t);
    code(&s.synk(peers, &[&s.arg("d")]), 0);
    for p in peers {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
    }
}

fn shown_path(s: &Scene, peer: &str, rel: &str) -> String {
    s.path(peer, rel).display().to_string()
}

fn log_lines(s: &Scene) -> Vec<Vec<String>> {
    let log = Path::new(&s.local_home).join(".local/state/synk/synk.log");
    fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn v_names_each_peers_own_path_its_deletions_and_conflict_copies() {
    let s = scene!("u-paths");
    // beta and gamma have their homes elsewhere than this host's.
    let peers = ["beta", "gamma"];
    synced_dir(&s, &peers);
    assert_ne!(shown_path(&s, "gamma", "d/a"), shown_path(&s, LOCAL, "d/a"));
    fs::remove_file(s.path("beta", "d/a")).unwrap();

    let out = s.synk(&peers, &[os("-n"), os("-v"), &s.arg("d")]);
    code(&out, 4);
    let said = stdout(&out);
    for p in [LOCAL, "gamma"] {
        let line = format!(
            "would delete {} on {}",
            shown_path(&s, p, "d/a"),
            s.shown(p)
        );
        assert!(said.contains(&line), "{line}\n{said}");
    }
    let peer_line = format!(
        "peer: {} {} deleted",
        s.shown("beta"),
        shown_path(&s, "beta", "d/a")
    );
    assert!(said.contains(&peer_line), "{peer_line}\n{said}");
    let wrong = format!("{} on {}", shown_path(&s, LOCAL, "d/a"), s.shown("gamma"));
    assert!(
        !said.contains(&wrong),
        "the client's path for gamma: {said}"
    );

    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    code(&out, 0);
    let said = stdout(&out);
    for p in [LOCAL, "gamma"] {
        let line = format!("deleted on {}: {}", s.shown(p), shown_path(&s, p, "d/a"));
        assert!(said.contains(&line), "{line}\n{said}");
    }
    assert!(s.read("gamma", "d/a").is_none());

    // Two different edits: a conflict; -v names the copy made where the loser was.
    s.write("beta", "d/b", "beta's edit", now() - 20);
    s.write("gamma", "d/b", "gamma's edit", now() - 10);
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    code(&out, 3);
    let said = stdout(&out);
    let line = format!(
        "conflict copy on {}: {} -> {}.synk-conflict-",
        s.shown("beta"),
        shown_path(&s, "beta", "d/b"),
        shown_path(&s, "beta", "d/b")
    );
    assert!(said.contains(&line), "{line}\n{said}");
    // The copy's name and the conflict message name beta the same way.
    let copy = fs::read_dir(s.path(LOCAL, "d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("b.synk-conflict-"))
        .expect("a conflict copy");
    // b.synk-conflict-YYYYMMDD-HHMMSS-PEER
    let label = copy.splitn(5, '-').last().unwrap().to_string();
    assert_eq!(label, "synkt-beta_127.0.0.1", "{copy}");
    let e = stderr(&out);
    assert!(
        e.contains(&format!("{} ({label})'s as ", s.shown("beta"))) && e.contains(&copy),
        "{e}"
    );
}

#[test]
fn names_with_control_characters_are_escaped_in_every_line() {
    let s = scene!("u-escape");
    let t = now() - 100;
    s.write(LOCAL, "d/plain", "p", t);
    s.write(LOCAL, "d/new\nline\x1b[31mred", "x", t);
    for args in [vec![os("-n"), os("-vv")], vec![os("-v")]] {
        let mut args = args;
        let root = s.arg("d");
        args.push(&root);
        let out = s.synk(&["alpha"], &args);
        assert!(matches!(out.status.code(), Some(0 | 4)), "{}", stderr(&out));
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !bytes.contains(&0x1b),
                "{what} holds a raw ESC: {}",
                String::from_utf8_lossy(bytes)
            );
        }
        let said = stdout(&out);
        assert!(said.contains("new\\nline\\x1b[31mred"), "{said}");
    }
    assert_eq!(s.read("alpha", "d/new\nline\x1b[31mred").unwrap(), b"x");
}

#[test]
fn an_invalid_exclude_is_a_usage_error_naming_it() {
    let s = scene!("u-exclude");
    s.write(LOCAL, "d/a", "a", now() - 100);
    let out = s.synk(&["alpha"], &[os("--exclude"), os("a["), &s.arg("d")]);
    code(&out, 2);
    let e = stderr(&out);
    assert!(
        e.contains("--exclude \"a[\"") && e.contains("unclosed"),
        "{e}"
    );
    assert!(s.read("alpha", "d/a").is_none(), "nothing done");
}

#[test]
fn files_over_max_size_are_told_once_with_human_sizes_and_in_json() {
    let s = scene!("u-max-size");
    let t = now() - 100;
    s.write(LOCAL, "d/small", "s", t);
    s.write(LOCAL, "d/big1", vec![1u8; 3 << 10], t);
    s.write(LOCAL, "d/sub/big2", vec![2u8; 5 << 10], t);
    let out = s.synk(
        &["alpha"],
        &[os("--max-size"), os("1K"), os("--json"), &s.arg("d")],
    );
    code(&out, 0);
    let e = stderr(&out);
    let told: Vec<&str> = e.lines().filter(|l| l.contains("--max-size")).collect();
    assert_eq!(told.len(), 1, "{e}");
    assert!(
        told[0].contains("skipped 2 files over 1.00 KiB")
            && told[0].contains(&format!("{} 3.00 KiB", shown_path(&s, LOCAL, "d/big1")))
            && told[0].contains("5.00 KiB"),
        "{e}"
    );
    let doc: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let problems = doc["roots"][0]["problems"].as_array().unwrap();
    let too_big = problems
        .iter()
        .filter(|p| p["problem"] == "too-big")
        .count();
    assert_eq!(too_big, 2, "{doc}");
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1, "{doc}");
    assert!(s.read("alpha", "d/big1").is_none());
}

#[test]
fn versions_and_restore_work_on_this_host_alone_and_the_log_says_restored() {
    let s = scene!("u-alone");
    synced_dir(&s, &["alpha"]);
    // An edit on alpha replaces localhost's a: that version is kept here.
    s.write("alpha", "d/a", "a2", now() - 10);
    code(&s.synk(&["alpha"], &[&s.arg("d")]), 0);
    assert_eq!(s.read(LOCAL, "d/a").unwrap(), b"a2");

    // No peer configured at all, then only -h localhost.
    for peers in [&[][..], &[LOCAL][..]] {
        let out = s.synk(peers, &[os("--versions"), &s.arg("d/a")]);
        code(&out, 0);
        let said = stdout(&out);
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines[0], "peer\treplaced\tsize\tdigest\twhy\tpath",
            "{said}"
        );
        assert!(
            lines[1].starts_with("localhost\t")
                && lines[1].ends_with(&format!("\toverwritten\t{}", shown_path(&s, LOCAL, "d/a"))),
            "{said}"
        );
    }
    // A peer that cannot be reached is named, and hides nothing the others keep.
    let away = [os("-p"), os("1"), os("-h"), os("nobody@127.0.0.1")];
    let out = s.synk(
        &[],
        &[&away[..], &[os("--versions"), &s.arg("d/a")]].concat(),
    );
    code(&out, 1);
    assert!(stderr(&out).contains("127.0.0.1"), "{}", stderr(&out));
    assert!(stdout(&out).contains("\toverwritten\t"), "{}", stdout(&out));
    let out = s.synk(&[], &[os("--versions"), &s.arg("d/a"), os("--json")]);
    code(&out, 0);
    let doc: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let v = &doc["versions"][0];
    assert_eq!(v["peer"], "localhost", "{doc}");
    assert_eq!(v["why"], "overwritten", "{doc}");
    assert_eq!(v["path"], shown_path(&s, LOCAL, "d/a"), "{doc}");
    assert_eq!(v["size"], 2, "{doc}");

    let out = s.synk(&[], &[os("--restore"), &s.arg("d/a")]);
    code(&out, 0);
    assert_eq!(s.read(LOCAL, "d/a").unwrap(), b"a1", "restored here");
    assert_eq!(s.read("alpha", "d/a").unwrap(), b"a2", "alpha untouched");
    let root = shown_path(&s, LOCAL, "d/a");
    assert!(
        log_lines(&s)
            .iter()
            .any(|f| f.len() == 6 && f[1] == root && f[3] == "localhost" && f[4] == "restored"),
        "{:?}",
        log_lines(&s)
    );
}

#[test]
fn refill_fills_an_emptied_peer_from_the_others_and_deletes_nothing() {
    let s = scene!("u-refill");
    let peers = ["alpha", "beta"];
    synced_dir(&s, &peers);
    s.write("beta", "d/sub/c", "c1", now() - 500);
    code(&s.synk(&peers, &[&s.arg("d")]), 0);
    // alpha's tree is gone (a replaced disk): the directory is there, empty.
    fs::remove_dir_all(s.path("alpha", "d")).unwrap();
    s.mkdir("alpha", "d");
    let out = s.synk(&peers, &[&s.arg("d")]);
    code(&out, 1);
    let e = stderr(&out);
    assert!(
        e.contains(&format!("--refill {}", s.shown("alpha"))) && e.contains("--confirm-empty"),
        "both choices named: {e}"
    );
    // The other peers still sync, and the state files say whose they are, -q or not: -q
    // quiets what synk tells, not what it was asked.
    for quiet in [&[][..], &[os("-q")]] {
        let out = s.synk(&[], &[quiet, &[os("--state")]].concat());
        code(&out, 0);
        assert!(
            stdout(&out).contains(&format!("{}\t", shown_path(&s, LOCAL, "d"))),
            "{}",
            stdout(&out)
        );
    }

    let out = s.synk(
        &peers,
        &[os("--refill"), os(&s.shown("alpha")), &s.arg("d")],
    );
    code(&out, 0);
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
        assert_eq!(s.read(p, "d/b").unwrap(), b"b1", "{p}");
        assert_eq!(s.read(p, "d/sub/c").unwrap(), b"c1", "{p}");
    }
    // Remembered as held: the next run is quiet, and a later deletion is a deletion again.
    let out = s.synk(&peers, &[&s.arg("d")]);
    code(&out, 0);
    assert_eq!(stderr(&out), "");
    fs::remove_file(s.path("alpha", "d/b")).unwrap();
    code(&s.synk(&peers, &[&s.arg("d")]), 0);
    assert!(s.read("beta", "d/b").is_none());
    // A HOST that is not a peer is a usage error.
    code(
        &s.synk(&peers, &[os("--refill"), os("nowhere"), &s.arg("d")]),
        2,
    );
    // A send-only peer is refilled too, as its emptied-root error says, and stays send-only.
    let alpha = s.shown("alpha");
    let send_only = [os("--send-only"), os(&alpha)];
    fs::remove_dir_all(s.path("alpha", "d")).unwrap();
    s.mkdir("alpha", "d");
    let out = s.synk(&peers, &[&send_only[..], &[&s.arg("d")]].concat());
    code(&out, 1);
    assert!(stderr(&out).contains("--refill"), "{}", stderr(&out));
    let d = s.arg("d");
    let refill = [os("--refill"), os(&alpha), &d];
    code(&s.synk(&peers, &[&send_only[..], &refill].concat()), 0);
    assert_eq!(s.read("alpha", "d/a").unwrap(), b"a1");
    assert_eq!(s.read("alpha", "d/sub/c").unwrap(), b"c1");
    code(
        &s.synk(&peers, &[&send_only[..], &[&s.arg("d")]].concat()),
        0,
    );
    s.write("beta", "d/a", "beta's edit", now() - 5);
    code(
        &s.synk(&peers, &[&send_only[..], &[&s.arg("d")]].concat()),
        0,
    );
    assert_eq!(s.read("alpha", "d/a").unwrap(), b"a1", "send-only again");
}

#[test]
fn ssh_is_named_once_and_a_refused_key_says_what_synk_needs() {
    let s = scene!("u-ssh");
    s.write(LOCAL, "f", "x", now() - 5);
    // A key alpha does not accept.
    let key = s.local_home.join("other_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let cfg = s.local_home.join("refused_config");
    fs::write(
        &cfg,
        format!(
            "Host *\n    IdentityFile {}\n    IdentitiesOnly yes\n    UserKnownHostsFile {}\n    StrictHostKeyChecking yes\n    BatchMode yes\n    LogLevel ERROR\n",
            key.display(),
            s.rig.dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let out = s.run(s.command_with(&cfg, &["alpha"]), &[&s.arg("f")]);
    code(&out, 1);
    let e = stderr(&out);
    assert!(
        e.contains("Permission denied (publickey")
            && e.contains(&format!(
                "`ssh -o BatchMode=yes -p {} {} true`",
                s.rig.port,
                s.host("alpha")
            )),
        "{e}"
    );
    assert!(!e.contains("ssh: ssh:"), "{e}");

    let out = s.synk(&[], &[os("-h"), os("nosuchhost.invalid"), &s.arg("f")]);
    code(&out, 1);
    let e = stderr(&out);
    assert!(
        e.contains("synk: nosuchhost.invalid: ssh: ") && !e.contains("ssh: ssh:"),
        "{e}"
    );
}
