//! End-to-end runs of the real binary against several peers over a real sshd (see
//! `common/mod.rs`): every peer is a separate user with its own home.

#[macro_use]
mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;

/// Incompressible, reproducible bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

#[test]
fn local_master_reaches_every_peer() {
    let s = scene!("local-master");
    let t = now() - 100;
    let f = s.write(LOCAL, "f", "newest", t);
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    s.write("alpha", "f", "old", t - 50);
    let out = s.synk(&["alpha", "beta"], &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0));
    assert_same_everywhere(&s, &[LOCAL, "alpha", "beta"], "f");
    assert_eq!(s.read("beta", "f").unwrap(), b"newest");
    assert_eq!(mtime(&s.path("beta", "f")), t);
    assert_eq!(mode(&s.path("alpha", "f")), 0o640);
    let o = stdout(&out);
    assert!(
        o.contains(&format!("master: localhost {}", f.display())),
        "{o}"
    );
    // Each peer's path as that peer has it (its home is not this host's).
    assert!(
        o.contains(&format!(
            "peer: {} {} ",
            s.shown("alpha"),
            s.path("alpha", "f").display()
        )),
        "{o}"
    );
    assert!(
        o.contains(&format!(
            "peer: {} {} missing",
            s.shown("beta"),
            s.path("beta", "f").display()
        )),
        "{o}"
    );
    // A small file goes in the serve channel, not by rsync.
    assert!(o.contains("synk: stream localhost:"), "{o}");
    assert!(!o.contains("synk: rsync "), "{o}");
}

#[test]
fn remote_master_reaches_remote_peers_and_localhost() {
    let s = scene!("remote-master");
    let t = now() - 10;
    s.write(LOCAL, "doc", "v1", t - 30);
    s.write("alpha", "doc", "v1", t - 30);
    // Big enough for rsync (smaller files go in the serve channel).
    let v3 = noise(100 << 10);
    s.write("beta", "doc", &v3, t);
    let out = s.synk(&["alpha", "beta", "gamma"], &[os("-v"), &s.arg("doc")]);
    assert_eq!(out.status.code(), Some(0));
    assert_same_everywhere(&s, &["beta", LOCAL, "alpha", "gamma"], "doc");
    assert_eq!(s.read(LOCAL, "doc").unwrap(), v3);
    let o = stdout(&out);
    assert!(o.contains(&format!("master: {}", s.shown("beta"))), "{o}");
    // beta drives rsync to alpha and gamma itself.
    assert!(
        o.contains(&format!("synk: ssh {} rsync ", s.shown("beta"))),
        "{o}"
    );
    assert!(!stdout(&out).contains("streaming through"), "{o}");
}

#[test]
fn directory_union_with_nested_dirs_and_a_symlink() {
    let s = scene!("union");
    let t = now() - 1000;
    s.write(LOCAL, "tree/a", "A", t);
    s.write(LOCAL, "tree/sub/b", "B", t + 1);
    s.write("alpha", "tree/c", "C", t + 2);
    s.write("alpha", "tree/sub2/deep/e", "E", t + 3);
    let link = s.path("alpha", "tree/link");
    std::os::unix::fs::symlink("sub/b", &link).unwrap();
    s.own("alpha", &link);
    set_mtime(&link, t + 4);
    let x = s.write("gamma", "tree/sub/x", "X", t + 5);
    fs::set_permissions(&x, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = s.synk(&["alpha", "beta", "gamma"], &[&s.arg("tree")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = [LOCAL, "alpha", "beta", "gamma"];
    for rel in [
        "tree/a",
        "tree/sub/b",
        "tree/c",
        "tree/sub2/deep/e",
        "tree/sub/x",
    ] {
        assert_same_everywhere(&s, &all, rel);
    }
    for p in all {
        assert_eq!(
            fs::read_link(s.path(p, "tree/link")).unwrap(),
            Path::new("sub/b"),
            "{p}"
        );
        assert_eq!(mtime(&s.path(p, "tree/link")), t + 4, "{p}");
        assert_eq!(fs::read(s.path(p, "tree/link")).unwrap(), b"B");
        assert_eq!(mode(&s.path(p, "tree/sub/x")), 0o600, "{p}");
    }
}

#[test]
fn an_in_sync_rerun_changes_nothing() {
    let s = scene!("rerun");
    let t = now() - 500;
    s.write(LOCAL, "d/one", "1", t);
    s.write("beta", "d/two/three", "3", t);
    let peers = ["alpha", "beta", "delta"];
    let first = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(first.status.code(), Some(0));
    let all = [LOCAL, "alpha", "beta", "delta"];
    let snapshot = |rel: &str| -> Vec<(u64, i64)> {
        all.iter()
            .map(|p| (inode(&s.path(p, rel)), mtime(&s.path(p, rel))))
            .collect()
    };
    let before = (
        snapshot("d/one"),
        snapshot("d/two/three"),
        snapshot("d/two"),
    );
    let again = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        (
            snapshot("d/one"),
            snapshot("d/two/three"),
            snapshot("d/two")
        ),
        before
    );
    assert_nothing_done(&again);
}

#[test]
fn hostile_names_survive_every_copier() {
    let s = scene!("hostile");
    let t = now() - 100;
    let names: Vec<&[u8]> = vec![
        b"with space",
        b"quo'te\"s",
        b"$(touch PWNED)",
        b"semi;colon&amp|pipe",
        b"-rf",
        b"--files-from=x",
        b"new\nline",
        b"\xff\xfe latin1 \xe9",
        b"*glob?[x]",
        b"back\\slash",
    ];
    // localhost is master for `mine`, alpha (remote) for `theirs`.
    for n in &names {
        let local = s.dir(LOCAL).join("mine").join(OsStr::from_bytes(n));
        s.write_at(LOCAL, &local, n, t);
        let remote = s.dir("alpha").join("theirs").join(OsStr::from_bytes(n));
        s.write_at("alpha", &remote, n, t);
    }
    let sub = s.dir(LOCAL).join("mine").join("-dir").join("x y");
    s.write_at(LOCAL, &sub, b"nested", t);
    let out = s.synk(
        &["alpha", "beta", "delta"],
        &[&s.arg("mine"), &s.arg("theirs")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in [LOCAL, "alpha", "beta", "delta"] {
        for n in &names {
            for root in ["mine", "theirs"] {
                let f = s.dir(p).join(root).join(OsStr::from_bytes(n));
                assert_eq!(fs::read(&f).ok().as_deref(), Some(*n), "{p}: {f:?}");
            }
        }
        assert_eq!(fs::read(s.dir(p).join("mine/-dir/x y")).unwrap(), b"nested");
        for home_file in fs::read_dir(s.home(p)).unwrap() {
            assert_ne!(home_file.unwrap().file_name(), "PWNED");
        }
        assert!(!s.dir(p).join("mine").join("PWNED").exists());
    }
}

#[test]
fn hostile_root_path() {
    let s = scene!("hostile-root");
    let name = OsString::from_vec(b"it's a $(dir) \xff".to_vec());
    use std::os::unix::ffi::OsStringExt;
    let f = s.dir(LOCAL).join(&name).join("f");
    s.write_at(LOCAL, &f, b"x", now() - 10);
    let arg = s.dir(LOCAL).join(&name);
    let out = s.synk(&["alpha", "beta"], &[arg.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in ["alpha", "beta"] {
        assert_eq!(
            fs::read(s.dir(p).join(&name).join("f")).unwrap(),
            b"x",
            "{p}"
        );
    }
    // And with a remote master driving another remote.
    s.write_at(
        "alpha",
        &s.dir("alpha").join(&name).join("f"),
        b"newer",
        now(),
    );
    let out = s.synk(&["alpha", "beta"], &[arg.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read(s.dir("beta").join(&name).join("f")).unwrap(),
        b"newer"
    );
    assert_eq!(fs::read(&f).unwrap(), b"newer");
}

#[test]
fn equal_mtime_with_different_content_keeps_both_versions() {
    let s = scene!("tie");
    let t = now() - 100;
    s.write(LOCAL, "f.txt", "older", t - 10);
    s.write("alpha", "f.txt", "alpha's", t);
    s.write("beta", "f.txt", "beta's", t);
    let out = s.synk(&["alpha", "beta"], &[&s.arg("f.txt")]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "conflicts kept: {}",
        stderr(&out)
    );
    let e = stderr(&out);
    assert!(
        e.contains("conflict") && e.contains(&s.path(LOCAL, "f.txt").display().to_string()),
        "{e}"
    );
    assert!(
        e.contains(&s.shown("alpha")) && e.contains(&s.shown("beta")),
        "{e}"
    );
    // Every peer holds the winner under the name and the loser beside it.
    let names: Vec<String> = fs::read_dir(s.dir(LOCAL))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let copy = names
        .iter()
        .find(|n| n.starts_with("f.synk-conflict-") && n.ends_with(".txt"))
        .unwrap_or_else(|| panic!("no conflict copy in {names:?}"));
    let winner = s.read(LOCAL, "f.txt").unwrap();
    let loser = s.read(LOCAL, copy).unwrap();
    let mut both = [winner.clone(), loser.clone()];
    both.sort();
    assert_eq!(both, [b"alpha's".to_vec(), b"beta's".to_vec()]);
    for p in ["alpha", "beta"] {
        assert_eq!(s.read(p, "f.txt").unwrap(), winner, "{p}");
        assert_eq!(s.read(p, copy).unwrap(), loser, "{p}");
    }
    // The next run is quiet and exits 0.
    let out = s.synk(&["alpha", "beta"], &[&s.arg("f.txt")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_dead_peer_is_named_and_the_others_converge() {
    let s = scene!("dead");
    s.write(LOCAL, "f", "fresh", now() - 5);
    s.write("alpha", "f", "stale", now() - 500);
    let mut cmd = s.command(&["alpha"]);
    // Nothing listens on port 1.
    cmd.args(["-p", "1", "-h", "ghost@127.0.0.1"])
        .arg(s.arg("f"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    // ssh's own account of it, on the line naming the peer.
    let line = e
        .lines()
        .find(|l| l.starts_with("synk: ghost@127.0.0.1:1: "))
        .unwrap_or_else(|| panic!("ghost not named: {e}"));
    assert!(
        line.ends_with("connect to host 127.0.0.1 port 1: Connection refused"),
        "{line}"
    );
    assert_eq!(s.read("alpha", "f").unwrap(), b"fresh");
}

#[test]
fn dry_run_changes_nothing() {
    let s = scene!("dry");
    let t = now() - 100;
    s.write(LOCAL, "d/new", "n", t);
    s.write("alpha", "d/new", "o", t - 20);
    s.write("alpha", "d/only-alpha", "a", t);
    let ino = inode(&s.path("alpha", "d/new"));
    let out = s.synk(&["alpha", "delta"], &[os("-n"), &s.arg("d")]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "changes pending: {}",
        stderr(&out)
    );
    let o = stdout(&out);
    assert!(
        o.contains("would copy") && o.contains(&s.path("alpha", "d/new").display().to_string()),
        "{o}"
    );
    assert_eq!(s.read("alpha", "d/new").unwrap(), b"o");
    assert_eq!(inode(&s.path("alpha", "d/new")), ino);
    assert_eq!(mtime(&s.path("alpha", "d/new")), t - 20);
    assert!(s.read(LOCAL, "d/only-alpha").is_none());
    assert!(!s.dir("delta").exists());
}

#[test]
fn the_streaming_copier_carries_everything_where_rsync_is_missing() {
    let s = scene!("stream");
    let t = now() - 300;
    // delta has no rsync: master and target by stream, rsync elsewhere.
    s.write("delta", "s/from-delta", "d", t);
    let l = s.dir("delta").join("s/link");
    std::os::unix::fs::symlink("from-delta", &l).unwrap();
    s.own("delta", &l);
    let f = s.write("alpha", "s/sub/from-alpha", "a", t + 1);
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o751)).unwrap();
    let out = s.synk(&["alpha", "delta"], &[os("-v"), &s.arg("s")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("synk: stream "), "{}", stdout(&out));
    for rel in ["s/from-delta", "s/sub/from-alpha"] {
        assert_same_everywhere(&s, &[LOCAL, "alpha", "delta"], rel);
    }
    assert_eq!(mode(&s.path("delta", "s/sub/from-alpha")), 0o751);
    assert_eq!(
        fs::read_link(s.path("alpha", "s/link")).unwrap(),
        Path::new("from-delta")
    );
    // Forced streaming between peers that both have rsync.
    s.write("beta", "s/from-beta", "b", t + 2);
    let out = s.synk(
        &["alpha", "beta", "delta"],
        &[os("--copier"), os("stream"), os("-v"), &s.arg("s")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("synk: rsync"), "{}", stdout(&out));
    assert_same_everywhere(&s, &["beta", LOCAL, "alpha", "delta"], "s/from-beta");
}

#[test]
fn a_hundred_megabyte_file_arrives_intact_everywhere() {
    let s = scene!("big");
    let data = noise(100 << 20);
    s.write(LOCAL, "big.bin", &data, now() - 60);
    s.write("alpha", "big.bin", &data[..1000], now() - 600);
    let out = s.synk(&["alpha", "delta"], &[&s.arg("big.bin")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want = sha512(&s.path(LOCAL, "big.bin"));
    for p in ["alpha", "delta"] {
        assert_eq!(sha512(&s.path(p, "big.bin")), want, "{p}");
    }
}

#[test]
fn a_peer_speaking_garbage_is_an_error_not_a_hang() {
    let s = scene!("garbage");
    s.write(LOCAL, "f", "x", now() - 5);
    let out = s.synk(&["eta", "alpha"], &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains(&s.shown("eta")) && e.contains("garbled"), "{e}");
    assert_eq!(s.read("alpha", "f").unwrap(), b"x");
}

#[test]
fn a_remote_master_that_cannot_reach_a_target_streams_through_the_client() {
    let s = scene!("fallback");
    // Big enough for rsync (smaller files go in the serve channel).
    s.write("epsilon", "f", noise(100 << 10), now() - 5);
    s.write("alpha", "f", "old", now() - 500);
    let out = s.synk(&["epsilon", "alpha"], &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(o.contains("streaming through this host"), "{o}");
    assert_same_everywhere(&s, &["epsilon", "alpha", LOCAL], "f");
}

#[test]
fn an_unreadable_file_is_reported_and_left_alone() {
    let s = scene!("unreadable");
    let t = now() - 100;
    s.write(LOCAL, "d/secret", "local", t - 50);
    let secret = s.write("beta", "d/secret", "beta's", t);
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    s.write("beta", "d/fine", "ok", t);
    let out = s.synk(&["alpha", "beta"], &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(&s.shown("beta")) && e.contains("d/secret") && e.contains("Permission denied"),
        "{e}"
    );
    // The others still converge; the peer that cannot read it keeps its own.
    assert_eq!(s.read(LOCAL, "d/secret").unwrap(), b"local");
    assert_eq!(s.read("alpha", "d/secret").unwrap(), b"local");
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(s.read("beta", "d/secret").unwrap(), b"beta's");
    assert_same_everywhere(&s, &["beta", LOCAL, "alpha"], "d/fine");
}

#[test]
fn missing_parent_directories_are_created() {
    let s = scene!("parents");
    s.write(LOCAL, "a/b/c/file", "deep", now() - 5);
    let out = s.synk(&["alpha", "delta"], &[&s.arg("a/b/c/file")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same_everywhere(&s, &[LOCAL, "alpha", "delta"], "a/b/c/file");
}

#[test]
fn peers_come_from_synk_conf() {
    let s = scene!("conf");
    s.write(LOCAL, "f", "conf", now() - 5);
    let conf = s.local_home.join("synk.conf");
    fs::write(
        &conf,
        format!("# test peers\npeer {} {}\n", s.host("alpha"), s.rig.port),
    )
    .unwrap();
    let mut cmd = s.command(&[]);
    cmd.arg("-f").arg(&conf).arg(s.arg("f"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(s.read("alpha", "f").unwrap(), b"conf");
    // The default location, $XDG_CONFIG_HOME/synk/synk.conf.
    s.write(LOCAL, "f", "xdg", now());
    let xdg = s.local_home.join("xdg");
    fs::create_dir_all(xdg.join("synk")).unwrap();
    fs::rename(&conf, xdg.join("synk/synk.conf")).unwrap();
    let mut cmd = s.command(&[]);
    cmd.env("XDG_CONFIG_HOME", &xdg).arg(s.arg("f"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(s.read("alpha", "f").unwrap(), b"xdg");
}

#[test]
fn usage_errors_exit_2() {
    let s = scene!("usage");
    let run = |args: &[&str]| {
        let mut cmd = s.command(&[]);
        cmd.args(args);
        cmd.output().unwrap()
    };
    let empty = s.local_home.join("empty.conf");
    fs::write(&empty, "# nobody\n").unwrap();
    let out = run(&["-f", empty.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no peer but this host"),
        "{}",
        stderr(&out)
    );
    let bad = s.local_home.join("bad.conf");
    fs::write(&bad, "peer a\npear b\n").unwrap();
    let out = run(&["-f", bad.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.conf:2:"), "{}", stderr(&out));
    assert_eq!(run(&["--bogus", "x"]).status.code(), Some(2));
    assert_eq!(
        run(&["-h", "a", "--master", "zz", "x"]).status.code(),
        Some(2)
    );
}

/// The partial directory of the scratch directory in `dir` (a path that is not there, before
/// the scratch directory is).
fn partial_dir(dir: &std::path::Path) -> std::path::PathBuf {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".synk-scratch.")
        })
        .map_or_else(
            || dir.join("no scratch yet"),
            |e| e.path().join(".synk-scratch.0000000000000000"),
        )
}

#[test]
fn a_target_killed_mid_stream_keeps_its_old_file() {
    killed_mid_transfer("killed-stream", "stream");
}

#[test]
fn a_target_killed_mid_rsync_keeps_its_old_file() {
    killed_mid_transfer("killed-rsync", "rsync");
}

fn killed_mid_transfer(name: &str, copier: &str) {
    let s = scene!(name);
    let old = b"the old version".repeat(1000);
    s.write("alpha", "big", &old, now() - 900);
    let data = noise(200 << 20);
    s.write(LOCAL, "big", &data, now() - 10);
    let mut cmd = s.command(&["alpha"]);
    cmd.args(["--copier", copier]).arg(s.arg("big"));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Wait until the temp file is growing, then kill the process writing it. The streaming
    // copier writes a big file into the partial directory of synk's scratch directory, rsync
    // beside what it receives there.
    let partial = || partial_dir(&s.dir("alpha"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The receiver (rsync or synk --serve) is whoever holds the growing temp file: kill just
    // that process, not others that parallel tests run as the same user.
    let temp = loop {
        let partial = partial();
        let growing = [partial.clone(), partial.parent().unwrap().to_path_buf()]
            .iter()
            .flat_map(fs::read_dir)
            .flatten()
            .flatten()
            .find(|e| {
                e.metadata()
                    .map(|m| m.is_file() && m.len() > 1 << 20)
                    .unwrap_or(false)
            });
        if let Some(e) = growing {
            break e.path();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was seen"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(kill_holders(&temp) > 0, "nobody held {temp:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&s.shown("alpha")), "{}", stderr(&out));
    assert_eq!(s.read("alpha", "big").unwrap(), old, "old content, whole");
    // A rerun converges and never carries the leftover temp file anywhere.
    let out = s.synk(&["alpha", "beta"], &[&s.arg("big")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        sha512(&s.path("alpha", "big")),
        sha512(&s.path(LOCAL, "big"))
    );
    for p in [LOCAL, "beta"] {
        let names: Vec<String> = fs::read_dir(s.dir(p))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["big"], "{p}");
    }
}

#[test]
fn the_digest_cache_never_hides_a_change() {
    let s = scene!("cache");
    let t = now() - 100;
    s.write(LOCAL, "f", "same size A", t);
    s.write("alpha", "f", "same size A", t);
    // Old enough for the peers to record their digests in their caches.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = s.synk(&["alpha"], &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cached = fs::read_dir(s.home("alpha").join(".cache/synk"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(cached > 0, "alpha kept no digest cache");
    // Same size, same mtime, new content: only the ctime tells, and the change wins.
    s.write("alpha", "f", "same size B", t);
    let out = s.synk(&["alpha"], &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(s.read(LOCAL, "f").unwrap(), b"same size B");
}

#[test]
fn a_master_killed_mid_stream_is_named_once_and_targets_keep_their_files() {
    let s = scene!("master-killed");
    let old = b"old".repeat(1000);
    s.write(LOCAL, "big", &old, now() - 900);
    s.write("delta", "big", &old, now() - 900);
    s.write("alpha", "big", noise(200 << 20), now() - 10);
    let mut cmd = s.command(&["alpha", "delta"]);
    cmd.args(["--copier", "stream"]).arg(s.arg("big"));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fs::read_dir(partial_dir(&s.dir(LOCAL)))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was seen"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // alpha's server is the one process reading its copy of the file.
    assert!(kill_holders(&s.path("alpha", "big")) > 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert_eq!(e.matches(&s.shown("alpha")).count(), 1, "{e}");
    assert!(
        e.contains(&s.path(LOCAL, "big").display().to_string()),
        "{e}"
    );
    assert_eq!(s.read(LOCAL, "big").unwrap(), old);
    assert_eq!(s.read("delta", "big").unwrap(), old);
}

/// Syncs an 8 MiB file from this host to alpha and beta, changes 16 bytes in its middle on
/// alpha, syncs again with `args` and `--json`, checks every peer holds the change, and returns
/// the second run's root document (with its literal and matched bytes).
fn sync_a_small_change(s: &Scene, args: &[&OsStr]) -> serde_json::Value {
    let t = now() - 100;
    let mut data = noise(8 << 20);
    s.write(LOCAL, "d/big", &data, t);
    let d = s.arg("d");
    let first: Vec<&OsStr> = args.iter().copied().chain([d.as_os_str()]).collect();
    let json = os("--json");
    let second: Vec<&OsStr> = args.iter().copied().chain([json, d.as_os_str()]).collect();
    let out = s.synk(&["alpha", "beta"], &first);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    data[4_000_000..4_000_016].copy_from_slice(b"sixteen changed!");
    s.write("alpha", "d/big", &data, t + 10);
    let out = s.synk(&["alpha", "beta"], &second);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same_everywhere(s, &[LOCAL, "alpha", "beta"], "d/big");
    assert_eq!(s.read("beta", "d/big").unwrap(), data);
    assert_eq!(s.read(LOCAL, "d/big").unwrap(), data);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["roots"][0].clone()
}

#[test]
fn a_few_changed_bytes_in_a_big_file_travel_as_an_rsync_delta() {
    // alpha's rsync feeds beta, the client's feeds this host, and each must send about a
    // block, not 8 MiB.
    let s = scene!("delta-bytes");
    let root = sync_a_small_change(&s, &[]);
    let literal = root["literal_bytes"].as_u64().unwrap();
    let matched = root["matched_bytes"].as_u64().unwrap();
    assert!(
        literal < 512 << 10,
        "{literal} bytes sent literally: {root}"
    );
    assert!(matched > 15 << 20, "only {matched} bytes matched: {root}");
}

#[test]
fn targets_that_have_a_copy_pass_it_on() {
    let s = scene!("relay");
    let t = now() - 100;
    s.write(LOCAL, "d/a", noise(1 << 20), t);
    s.write(LOCAL, "d/sub/b", "b", t);
    let peers = ["alpha", "beta", "gamma", "epsilon"];
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for rel in ["d/a", "d/sub/b"] {
        assert_same_everywhere(&s, &[LOCAL, "alpha", "beta", "gamma", "epsilon"], rel);
    }
    // The master feeds three targets at once; the fourth gets the copies from one of them.
    let err = stdout(&out);
    let relayed = ["alpha", "beta", "gamma"]
        .iter()
        .filter(|p| err.contains(&format!("synk: rsync {} -> ", s.shown(p))))
        .count();
    let from_master = err.matches("synk: rsync localhost -> ").count();
    assert_eq!((from_master, relayed), (3, 1), "{err}");
}

#[test]
fn a_relay_that_cannot_reach_a_target_leaves_it_to_the_master() {
    // epsilon has no key to reach anyone: when it is the first to have the copies, what it
    // is asked to pass on comes from the master instead.
    // Two roots in one run: a pair found not to connect is not tried again for the second.
    let s = scene!("relay-fallback");
    let t = now() - 100;
    s.write(LOCAL, "d/a", noise(64 << 10), t);
    s.write(LOCAL, "e/a", noise(64 << 10), t);
    let peers = ["epsilon", "alpha", "beta", "gamma"];
    let out = s.synk(&peers, &[os("-v"), &s.arg("d"), &s.arg("e")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut all = vec![LOCAL];
    all.extend(peers);
    assert_same_everywhere(&s, &all, "d/a");
    assert_same_everywhere(&s, &all, "e/a");
    let err = stdout(&out);
    assert!(
        !err.contains(&format!("synk: rsync {} -> ", s.shown("epsilon"))),
        "{err}"
    );
    let failed_from_epsilon = format!("synk: {} could not pass ", s.shown("epsilon"));
    for p in ["alpha", "beta", "gamma"] {
        let to = format!(" on to {} (", s.shown(p));
        let tries = err
            .lines()
            .filter(|l| l.starts_with(&failed_from_epsilon) && l.contains(&to))
            .count();
        assert!(tries <= 1, "epsilon tried {p} {tries} times: {err}");
    }
}

#[test]
fn a_big_tree_travels_in_units_that_targets_trade() {
    // Two units of a little over 64 MiB: the master starts the targets on different units, and
    // they pass them on to each other while it feeds the rest.
    let s = scene!("relay-units");
    let t = now() - 100;
    let big = noise((64 << 20) + 1);
    s.write(LOCAL, "d/one", &big, t);
    s.write(LOCAL, "d/sub/two", &big[1..], t);
    let peers = ["alpha", "beta", "gamma", "epsilon"];
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut all = vec![LOCAL];
    all.extend(peers);
    for rel in ["d/one", "d/sub/two"] {
        assert_same_everywhere(&s, &all, rel);
    }
    let log = stdout(&out);
    let relayed: usize = ["alpha", "beta", "gamma"]
        .iter()
        .map(|p| {
            log.matches(&format!("synk: rsync {} -> ", s.shown(p)))
                .count()
        })
        .sum();
    let from_master = log.matches("synk: rsync localhost -> ").count();
    // 2 units × 4 targets = 8 runs that arrived, some of them from relays.
    assert_eq!(from_master + relayed, 8, "{log}");
    assert!(relayed >= 2, "{log}");
}

#[test]
fn a_few_changed_bytes_travel_as_a_delta_with_the_streaming_copier_too() {
    // The copies to this host and to beta stream through the client.
    let s = scene!("stream-delta");
    let root = sync_a_small_change(&s, &[os("--copier"), os("stream")]);
    let literal = root["literal_bytes"].as_u64().unwrap();
    let matched = root["matched_bytes"].as_u64().unwrap();
    // One 256 KiB block to each of the two targets.
    assert!(literal <= 2 * (256 << 10), "{literal} bytes sent: {root}");
    assert!(
        matched >= 2 * ((8 << 20) - (256 << 10)),
        "{matched} matched: {root}"
    );
}

/// Every file below `dir`, by path relative to it, with its content.
fn tree_files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn a_first_sync_of_more_than_a_window_arrives_whole_and_is_recorded() {
    // More entries than the client decides at once (10,000): the tree goes in windows.
    let s = scene!("windows");
    let root = s.path(LOCAL, "big");
    let mut bytes = 0;
    for i in 0..50_500 {
        let d = root.join(format!("d{:02}", i % 21));
        fs::create_dir_all(&d).unwrap();
        let body = format!("file {i}\n").repeat(1 + i % 7);
        bytes += body.len() as u64;
        fs::write(d.join(format!("f{i:05}")), body).unwrap();
    }
    let mut cmd = s.command(&["alpha", "beta"]);
    cmd.env("RUST_LOG", "synk=debug");
    let out = s.run(cmd, &[os("--json"), &s.arg("big")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decisions = stderr(&out).matches(" decided ").count();
    assert_eq!(decisions, 6, "six windows, each decided on its own");
    let want = tree_files(&root);
    assert_eq!(want.len(), 50_500);
    for peer in ["alpha", "beta"] {
        assert!(
            tree_files(&s.path(peer, "big")) == want,
            "{peer} holds the same tree"
        );
    }
    // One root in the report, every entry of every window in it, bytes added up.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roots = doc["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{doc}");
    let entries = roots[0]["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1 + 21 + 50_500,
        "the root, 21 directories, the files"
    );
    assert_eq!(roots[0]["bytes"].as_u64(), Some(2 * bytes));
    // Every peer recorded every entry: the next run has nothing to do.
    let out = s.synk(&["alpha", "beta"], &[os("--json"), &s.arg("big")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["roots"][0]["entries"], serde_json::json!([]), "{doc}");
}
