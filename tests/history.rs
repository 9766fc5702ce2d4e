//! "Nothing lost", end to end over a real sshd: changes judged against each peer's remembered
//! state, deletions, conflicts, kept versions and restore, the operations log.

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// A directory `d` with files `a` and `b` on localhost, synced to `peers`.
fn synced_dir(s: &Scene, peers: &[&str]) {
    let t = now() - 1000;
    s.write(LOCAL, "d/a", "a1", t);
    s.write(LOCAL, "d/b", "b1", t);
    ok(&s.synk(peers, &[&s.arg("d")]));
    for p in peers {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
    }
}

fn rm(s: &Scene, peer: &str, rel: &str) {
    let p = s.path(peer, rel);
    if p.is_dir() {
        fs::remove_dir_all(p).unwrap();
    } else {
        fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_deletion_reaches_every_peer_and_the_versions_are_kept() {
    let s = scene!("h-delete");
    synced_dir(&s, &["alpha", "beta"]);
    rm(&s, "alpha", "d/a");
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    ok(&out);
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/a").is_none(), "d/a came back on {p}");
        assert_eq!(s.read(p, "d/b").unwrap(), b"b1", "{p}");
    }
    // A rerun does not resurrect it.
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    assert!(s.read("beta", "d/a").is_none());
    // The deleted copies are kept, and listed per peer.
    let out = s.synk(&["alpha", "beta"], &[os("--versions"), &s.arg("d/a")]);
    ok(&out);
    let listed = stdout(&out);
    for p in [LOCAL, "beta"] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(&format!("{}\t", s.shown(p))) && l.contains("\tdeleted\t")),
            "{p}: {listed}"
        );
    }
}

/// Serves walk each directory in name order and find remembered records a step at a time;
/// names that sort on either side of the path separator ("a-b" < "a/x" < "a0") must still be
/// matched to their own records: in sync stays quiet, deletions and edits are seen.
#[test]
fn names_sorting_around_the_separator_keep_their_own_history() {
    let s = scene!("h-order");
    let t = now() - 1000;
    let names = [
        "d/a/x", "d/a/x-y", "d/a-b", "d/a.c/y", "d/a b", "d/a0", "d/a/z/q",
    ];
    for n in names {
        s.write(LOCAL, n, n, t);
    }
    let peers = ["alpha", "beta"];
    ok(&s.synk(&peers, &[&s.arg("d")]));
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    ok(&again);
    assert_nothing_done(&again);

    rm(&s, "alpha", "d/a/x");
    rm(&s, "beta", "d/a.c");
    s.write("beta", "d/a-b", "edited", now() - 10);
    ok(&s.synk(&peers, &[&s.arg("d")]));
    ok(&s.synk(&peers, &[&s.arg("d")]));
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/a/x").is_none(), "d/a/x came back on {p}");
        assert!(s.read(p, "d/a.c/y").is_none(), "d/a.c/y came back on {p}");
        assert_eq!(s.read(p, "d/a-b").unwrap(), b"edited", "{p}");
        for n in ["d/a/x-y", "d/a b", "d/a0", "d/a/z/q"] {
            assert_eq!(s.read(p, n).unwrap(), n.as_bytes(), "{p}: {n}");
        }
    }
}

#[test]
fn restore_brings_a_deleted_file_back_everywhere() {
    let s = scene!("h-restore");
    synced_dir(&s, &["alpha", "beta"]);
    rm(&s, "beta", "d/a");
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    assert!(s.read(LOCAL, "d/a").is_none());
    // A dry run says what it would bring back, and brings back nothing.
    let out = s.synk(
        &["alpha", "beta"],
        &[os("-n"), os("--restore"), &s.arg("d/a")],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stdout(&out).contains("would restore"), "{}", stdout(&out));
    assert!(s.read(LOCAL, "d/a").is_none() && s.read("beta", "d/a").is_none());
    let out = s.synk(&["alpha", "beta"], &[os("--restore"), &s.arg("d/a")]);
    ok(&out);
    assert!(stdout(&out).contains("restored"), "{}", stdout(&out));
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
    }
    // Restoring a whole directory after it was deleted.
    rm(&s, "alpha", "d");
    let out = s.synk(&["alpha", "beta"], &[os("--confirm-empty"), &s.arg("d")]);
    ok(&out);
    assert!(s.read("beta", "d/b").is_none());
    ok(&s.synk(&["alpha", "beta"], &[os("--restore"), &s.arg("d")]));
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
        assert_eq!(s.read(p, "d/b").unwrap(), b"b1", "{p}");
    }
}

#[test]
fn restore_at_a_time_brings_back_the_version_current_then() {
    let s = scene!("h-restore-at");
    let t0 = now() - 3000;
    s.write(LOCAL, "f.txt", "version one", t0);
    ok(&s.synk(&["alpha"], &[&s.arg("f.txt")]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.write("alpha", "f.txt", "version two", t0 + 1000);
    ok(&s.synk(&["alpha"], &[&s.arg("f.txt")]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.write(LOCAL, "f.txt", "version three", t0 + 2000);
    ok(&s.synk(&["alpha"], &[&s.arg("f.txt")]));
    assert_eq!(s.read("alpha", "f.txt").unwrap(), b"version three");
    // When version two was current.
    let at = humantime_utc(t0 + 1500);
    let out = s.synk(
        &["alpha"],
        &[os("--restore"), &s.arg("f.txt"), os("--at"), os(&at)],
    );
    ok(&out);
    assert_eq!(s.read(LOCAL, "f.txt").unwrap(), b"version two");
    assert_eq!(s.read("alpha", "f.txt").unwrap(), b"version two");
    // Without a time: the newest kept version, which is now version three.
    ok(&s.synk(&["alpha"], &[os("--restore"), &s.arg("f.txt")]));
    assert_eq!(s.read("alpha", "f.txt").unwrap(), b"version three");
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for `--at`.
fn humantime_utc(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_change_with_an_old_mtime_still_wins() {
    let s = scene!("h-old-mtime");
    synced_dir(&s, &["alpha", "beta"]);
    // As cp -p or tar x would: new content, an mtime older than every other copy.
    s.write(
        "beta",
        "d/a",
        "restored from an old backup",
        now() - 100_000,
    );
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    for p in [LOCAL, "alpha"] {
        assert_eq!(
            s.read(p, "d/a").unwrap(),
            b"restored from an old backup",
            "{p}"
        );
    }
}

#[test]
fn a_modification_beats_a_deletion() {
    let s = scene!("h-mod-del");
    synced_dir(&s, &["alpha", "beta"]);
    rm(&s, "alpha", "d/a");
    s.write("beta", "d/a", "edited", now() - 10);
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"edited", "{p}");
    }
}

#[test]
fn concurrent_edits_keep_both_versions_and_the_next_run_is_quiet() {
    let s = scene!("h-conflict");
    synced_dir(&s, &["alpha", "beta"]);
    s.write("alpha", "d/a", "alpha's edit", now() - 20);
    s.write("beta", "d/a", "beta's edit", now() - 10);
    // A dry run keeps nothing yet: the conflict is a change it would make.
    let out = s.synk(&["alpha", "beta"], &[os("-n"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(s.read("alpha", "d/a").unwrap(), b"alpha's edit");
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("conflict") && e.contains("d/a"), "{e}");
    assert!(
        e.contains(&s.shown("alpha")) && e.contains(&s.shown("beta")),
        "{e}"
    );
    let copy_name = |p: &str| -> String {
        fs::read_dir(s.path(p, "d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("a.synk-conflict-"))
            .unwrap_or_else(|| panic!("no conflict copy on {p}"))
    };
    let copy = copy_name(LOCAL);
    assert!(copy.ends_with("synkt-alpha_127.0.0.1"), "{copy}");
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(
            s.read(p, "d/a").unwrap(),
            b"beta's edit",
            "{p} (newest keeps the name)"
        );
        assert_eq!(
            s.read(p, &format!("d/{copy}")).unwrap(),
            b"alpha's edit",
            "{p}"
        );
    }
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    ok(&out);
    assert_eq!(stderr(&out), "", "the next run is quiet");
}

#[test]
fn a_directory_deleted_while_a_file_was_added_inside_keeps_the_new_file() {
    let s = scene!("h-dir-add");
    let t = now() - 1000;
    s.write(LOCAL, "d/keep", "k", t);
    s.write(LOCAL, "d/sub/old", "o", t);
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    rm(&s, "alpha", "d/sub");
    s.write("beta", "d/sub/new", "n", t + 10);
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/sub/old").is_none(), "{p}");
        assert_eq!(s.read(p, "d/sub/new").unwrap(), b"n", "{p}");
    }
}

#[test]
fn a_rename_is_not_sent_again_and_is_logged() {
    let s = scene!("h-rename");
    let t = now() - 1000;
    s.write(LOCAL, "d/keep", "k", t);
    s.write(LOCAL, "d/old-name", "the body", t);
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    fs::rename(s.path(LOCAL, "d/old-name"), s.path(LOCAL, "d/new-name")).unwrap();
    let log = s.local_home.join("ops.log");
    ok(&s.synk(&["alpha"], &[os("--log"), log.as_os_str(), &s.arg("d")]));
    assert!(s.read("alpha", "d/old-name").is_none());
    assert_eq!(s.read("alpha", "d/new-name").unwrap(), b"the body");
    let text = fs::read_to_string(&log).unwrap();
    let alpha = s.shown("alpha");
    // Made on alpha from alpha's own copy, and the old name deleted there.
    assert!(
        text.lines()
            .any(|l| l.contains("\tnew-name\t")
                && l.ends_with(&format!("\t{alpha}\tcreated\t{alpha}"))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("\told-name\t") && l.contains(&format!("\t{alpha}\tdeleted\t"))),
        "{text}"
    );
}

#[test]
fn a_dry_run_lists_a_deletion_and_changes_nothing() {
    let s = scene!("h-dry");
    synced_dir(&s, &["alpha"]);
    rm(&s, "alpha", "d/a");
    let out = s.synk(&["alpha"], &[os("-n"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "would delete {} on localhost",
            s.path(LOCAL, "d/a").display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(s.read(LOCAL, "d/a").unwrap(), b"a1");
    // Nothing was remembered either: the real run still deletes.
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    assert!(s.read(LOCAL, "d/a").is_none());
    let out = s.synk(&["alpha"], &[os("-n"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "nothing would change now");
}

#[test]
fn a_peer_that_missed_a_sync_catches_up() {
    let s = scene!("h-missed");
    synced_dir(&s, &["alpha", "beta"]);
    // beta is away: alpha deletes and edits, synced with localhost only.
    rm(&s, "alpha", "d/a");
    s.write("alpha", "d/b", "b2", now() - 50);
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    // beta is back: every tree is as its own state says, but beta's state is older, so the
    // peers' summaries differ and the briefs behind them are compared.
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    assert!(s.read("beta", "d/a").is_none());
    assert_eq!(s.read("beta", "d/b").unwrap(), b"b2");
    assert_eq!(s.read("alpha", "d/b").unwrap(), b"b2");
    // Now the states agree too: nothing to do.
    let again = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("d")]);
    ok(&again);
    assert_nothing_done(&again);
}

#[test]
fn two_client_hosts_driving_the_same_peers_share_one_history() {
    let s = scene!("h-clients");
    synced_dir(&s, &["alpha", "beta"]);
    // A second client host: its own home and tree, the same peers.
    let other = PathBuf::from("/var/tmp/synk-it/local/h-clients-2");
    let _ = fs::remove_dir_all(&other);
    fs::create_dir_all(&other).unwrap();
    let run_other = |args: &[&str]| {
        let mut cmd = s.command(&["alpha", "beta"]);
        cmd.env("HOME", &other).current_dir(&other);
        let out = cmd.args(args).output().unwrap();
        eprintln!("other client: {}", stderr(&out));
        out
    };
    let arg = other.join(format!("t-{}/d", s.name));
    ok(&run_other(&[arg.to_str().unwrap()]));
    assert_eq!(fs::read(arg.join("a")).unwrap(), b"a1");
    // Deleted on beta, synced by the other client; then this client runs.
    rm(&s, "beta", "d/a");
    ok(&run_other(&[arg.to_str().unwrap()]));
    assert!(s.read("alpha", "d/a").is_none());
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    assert!(
        s.read(LOCAL, "d/a").is_none(),
        "no resurrection from the first client"
    );
    assert!(s.read("alpha", "d/a").is_none());
}

#[test]
fn an_emptied_root_is_not_a_mass_deletion() {
    let s = scene!("h-empty");
    synced_dir(&s, &["alpha", "beta"]);
    // As if alpha's disk were not mounted: the directory is there, its entries are not.
    for f in ["d/a", "d/b"] {
        rm(&s, "alpha", f);
    }
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(&s.shown("alpha")) && e.contains("--confirm-empty"),
        "{e}"
    );
    for p in [LOCAL, "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p} lost data");
    }
    // Still refused on the next run (nothing was remembered), until confirmed.
    assert_eq!(
        s.synk(&["alpha", "beta"], &[&s.arg("d")]).status.code(),
        Some(1)
    );
    ok(&s.synk(&["alpha", "beta"], &[os("--confirm-empty"), &s.arg("d")]));
    assert!(s.read("beta", "d/a").is_none());
}

#[test]
fn a_killed_client_leaves_state_the_next_run_reads_correctly() {
    let s = scene!("h-killed");
    synced_dir(&s, &["alpha", "beta"]);
    let big = vec![7u8; 64 << 20];
    s.write(LOCAL, "d/big", &big, now() - 30);
    rm(&s, "beta", "d/b");
    let mut child = s
        .command(&["alpha", "beta"])
        .args(["--copier", "stream"])
        .arg(s.arg("d"))
        .spawn()
        .unwrap();
    // Kill the client while the big file is in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let busy = fs::read_dir(s.path("alpha", "d"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .unwrap_or(false);
        if busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The rerun converges: no false conflict, no resurrected file, no lost deletion.
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    ok(&out);
    assert!(!stderr(&out).contains("conflict"), "{}", stderr(&out));
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/b").is_none(), "d/b resurrected on {p}");
        assert_eq!(s.read(p, "d/big").unwrap().len(), big.len(), "{p}");
        let temps: Vec<String> = fs::read_dir(s.path(p, "d"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".synk-"))
            .collect();
        assert!(temps.is_empty(), "{p} keeps {temps:?}");
    }
}

#[test]
fn every_action_goes_to_the_operations_log() {
    let s = scene!("h-log");
    synced_dir(&s, &["alpha"]);
    rm(&s, "alpha", "d/a");
    s.write("alpha", "d/c", "new", now() - 5);
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    let log = Path::new(&s.local_home).join(".local/state/synk/synk.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let root = s.path(LOCAL, "d").display().to_string();
    let has = |entry: &str, action: &str| {
        text.lines().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() == 6 && f[1] == root && f[2] == entry && f[3] == "localhost" && f[4] == action
        })
    };
    assert!(has("a", "deleted"), "{text}");
    assert!(has("c", "created"), "{text}");
}

#[test]
fn identical_trees_on_a_first_sync_are_recorded_without_copying() {
    // Trees seeded by other means (a restore, an earlier rsync): same content, mode and time
    // on every peer. The first sync copies nothing, yet remembers them: a deletion after it is
    // a deletion, not a file to bring back.
    let s = scene!("h-seeded");
    let t = now() - 1000;
    for p in [LOCAL, "alpha", "beta"] {
        for (rel, body) in [("d/a", "a"), ("d/sub/b", "b")] {
            let f = s.write(p, rel, body, t);
            fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        }
    }
    let out = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("d")]);
    ok(&out);
    let log = stdout(&out);
    assert!(
        !log.contains("synk: rsync") && !log.contains("synk: stream"),
        "{log}"
    );
    rm(&s, "beta", "d/a");
    ok(&s.synk(&["alpha", "beta"], &[&s.arg("d")]));
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/a").is_none(), "d/a still on {p}");
        assert_eq!(s.read(p, "d/sub/b").unwrap(), b"b", "{p}");
    }
}
