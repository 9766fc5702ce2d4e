//! Daily use, end to end over a real sshd: tracked paths and profiles, excludes, limits,
//! compression, completions.

#[macro_use]
mod common;

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// The client's own synk.conf (as `~/.config/synk/synk.conf` of the local home).
fn user_conf(s: &Scene, name: &str) -> std::path::PathBuf {
    let dir = s.local_home.join(".config/synk");
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn tracked_paths_sync_with_a_bare_synk_and_add_forget_keep_comments() {
    let s = scene!("d-tracked");
    let t = now() - 100;
    s.write(LOCAL, "notes/a", "a", t);
    s.write(LOCAL, "etc.conf", "c", t);
    let conf = user_conf(&s, "synk.conf");
    fs::write(&conf, "# my set\npeer ignored-when-h-is-given\n").unwrap();
    // --add stores the path home-relative and keeps the comment.
    for p in ["notes", "etc.conf"] {
        let out = s.synk(&[], &[os("--add"), &s.arg(p)]);
        ok(&out);
        assert!(stdout(&out).contains("now tracked"), "{}", stdout(&out));
    }
    let text = fs::read_to_string(&conf).unwrap();
    assert!(text.starts_with("# my set\n"), "{text}");
    assert!(
        text.contains(&format!("path ~/t-{}/notes\n", s.name)),
        "{text}"
    );
    let out = s.synk(&[], &[os("--add"), &s.arg("notes")]);
    ok(&out);
    assert!(stdout(&out).contains("already tracked"), "{}", stdout(&out));
    // A bare synk syncs every tracked path.
    ok(&s.synk(&["alpha"], &[]));
    assert_eq!(s.read("alpha", "notes/a").unwrap(), b"a");
    assert_eq!(s.read("alpha", "etc.conf").unwrap(), b"c");
    // Forgetting stops tracking; the files stay.
    ok(&s.synk(&[], &[os("--forget"), &s.arg("etc.conf")]));
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        !text.contains("etc.conf") && text.contains("notes"),
        "{text}"
    );
    s.write(LOCAL, "etc.conf", "changed", t + 50);
    ok(&s.synk(&["alpha"], &[]));
    assert_eq!(
        s.read("alpha", "etc.conf").unwrap(),
        b"c",
        "no longer synced"
    );
    let out = s.synk(&[], &[os("--forget"), &s.arg("etc.conf")]);
    assert_eq!(out.status.code(), Some(1), "not tracked any more");
}

#[test]
fn a_profile_names_its_own_peers_and_paths() {
    let s = scene!("d-profile");
    s.write(LOCAL, "work/w", "w", now() - 100);
    let conf = user_conf(&s, "work.conf");
    fs::write(
        &conf,
        format!(
            "peer {} {}\npath ~/t-{}/work\n",
            s.host("beta"),
            s.rig.port,
            s.name
        ),
    )
    .unwrap();
    let out = s.run(s.command(&[]), &[os("@work")]);
    ok(&out);
    assert_eq!(s.read("beta", "work/w").unwrap(), b"w");
    let out = s.run(s.command(&[]), &[os("@nosuch")]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("nosuch.conf: no such file: no profile @nosuch"),
        "{e}"
    );
    // --add makes a profile's file that is not there yet; --forget finds nothing in it.
    let out = s.run(
        s.command(&[]),
        &[os("@home"), os("--forget"), &s.arg("work")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    ok(&s.run(s.command(&[]), &[os("@home"), os("--add"), &s.arg("work")]));
    let home = fs::read_to_string(conf.with_file_name("home.conf")).unwrap();
    assert_eq!(home, format!("path ~/t-{}/work\n", s.name));
    // And goes with --versions, which takes no other path.
    let out = s.run(
        s.command(&[]),
        &[os("@work"), os("--versions"), &s.arg("work")],
    );
    ok(&out);
}

#[test]
fn excluded_entries_are_never_copied_and_excluding_later_deletes_nothing() {
    let s = scene!("d-exclude");
    let t = now() - 100;
    s.write(LOCAL, "d/keep.txt", "k", t);
    s.write(LOCAL, "d/build/out.o", "o", t);
    s.write(LOCAL, "d/x.log", "l", t);
    s.write(LOCAL, "d/.synkignore", "*.log\n", t);
    ok(&s.synk(&["alpha"], &[os("--exclude"), os("build/"), &s.arg("d")]));
    assert_eq!(s.read("alpha", "d/keep.txt").unwrap(), b"k");
    assert!(s.read("alpha", "d/build/out.o").is_none(), "--exclude");
    assert!(s.read("alpha", "d/x.log").is_none(), ".synkignore");
    assert_eq!(s.read("alpha", "d/.synkignore").unwrap(), b"*.log\n");
    // Synced without the exclude, then excluded: nothing is deleted anywhere.
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    assert_eq!(s.read("alpha", "d/build/out.o").unwrap(), b"o");
    fs::remove_file(s.path(LOCAL, "d/build/out.o")).unwrap();
    ok(&s.synk(&["alpha"], &[os("--exclude"), os("build"), &s.arg("d")]));
    assert_eq!(
        s.read("alpha", "d/build/out.o").unwrap(),
        b"o",
        "excluded now: left alone"
    );
    // Patterns from synk.conf too.
    fs::write(user_conf(&s, "synk.conf"), "exclude *.txt\n").unwrap();
    s.write(LOCAL, "d/new.txt", "n", t);
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    assert!(s.read("alpha", "d/new.txt").is_none());
}

#[test]
fn files_over_max_size_are_skipped_and_reported_never_deleted() {
    let s = scene!("d-max-size");
    let t = now() - 100;
    s.write(LOCAL, "d/small", "s", t);
    s.write(LOCAL, "d/big", vec![1u8; 4096], t);
    let out = s.synk(&["alpha"], &[os("--max-size"), os("1K"), &s.arg("d")]);
    ok(&out);
    assert!(
        stderr(&out).contains("skipped 1 file over 1.00 KiB (--max-size"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.read("alpha", "d/small").unwrap(), b"s");
    assert!(s.read("alpha", "d/big").is_none());
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    fs::remove_file(s.path(LOCAL, "d/big")).unwrap();
    ok(&s.synk(&["alpha"], &[os("--max-size"), os("1K"), &s.arg("d")]));
    assert!(
        s.read("alpha", "d/big").is_some(),
        "not deleted because of the limit"
    );
}

#[test]
fn bwlimit_slows_both_copiers_and_compress_reaches_rsync() {
    let s = scene!("d-bwlimit");
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for copier in ["rsync", "stream"] {
        s.write(LOCAL, copier, &data, now() - 100);
        let started = Instant::now();
        // 1 MiB at 256 KiB/s: about four seconds, never under three.
        let out = s.synk(
            &["alpha"],
            &[
                os("--copier"),
                os(copier),
                os("--bwlimit"),
                os("256"),
                &s.arg(copier),
            ],
        );
        ok(&out);
        assert!(
            started.elapsed() > Duration::from_secs(3),
            "{copier}: {:?} for 1 MiB at 256 KiB/s",
            started.elapsed()
        );
        assert_eq!(s.read("alpha", copier).unwrap(), data, "{copier}");
    }
    // 0 is no limit, as for rsync (it was 1 KiB/s for rsync): the -v line names none.
    s.write(LOCAL, "rsync", &data[..200 << 10], now() - 50);
    let started = Instant::now();
    let out = s.synk(
        &["alpha"],
        &[os("-v"), os("--bwlimit"), os("0"), &s.arg("rsync")],
    );
    ok(&out);
    assert!(!stdout(&out).contains("--bwlimit"), "{}", stdout(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.read("alpha", "rsync").unwrap(), data[..200 << 10]);
    s.write(LOCAL, "f", "new", now() - 10);
    let out = s.synk(&["alpha"], &[os("-v"), os("--compress"), &s.arg("f")]);
    ok(&out);
    assert!(stdout(&out).contains(" -z "), "{}", stdout(&out));
    s.write(LOCAL, "f", "newer", now() - 5);
    let out = s.synk(&["alpha"], &[os("-v"), &s.arg("f")]);
    assert!(
        !stdout(&out).contains(" -z "),
        "compression is off by default: {}",
        stdout(&out)
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef synk"),
        ("fish", "complete -c synk"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_synk"))
            .args(["--completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("bwlimit"), "{shell}");
    }
}

/// Waits up to `secs` for `cond`.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// PIDs of `synk --serve` processes of a peer's user.
fn serve_pids(peer: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-u", &user(peer).name, "-x", "synk"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A background synk that is killed if the test fails before stopping it.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// synk with `args` on the scene's `d`, in the background, its output captured.
fn background(s: &Scene, peers: &[&str], args: &[&str]) -> Background {
    s.command(peers)
        .args(args)
        .arg(s.arg("d"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(Background)
        .unwrap()
}

fn stop(bg: &mut Background) -> Output {
    let child = &mut bg.0;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait().unwrap();
    use std::io::Read;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).unwrap();
    }
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("--- background synk stdout\n{stdout}--- stderr\n{stderr}");
    Output {
        status: out,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn every_keeps_the_sessions_open_and_stops_cleanly_on_sigterm() {
    let s = scene!("d-every");
    s.write(LOCAL, "d/a", "one", now() - 100);
    let before = serve_pids("gamma");
    let mut child = background(&s, &["gamma"], &["--every", "1s"]);
    assert!(
        eventually(20, || s.read("gamma", "d/a").is_some()),
        "first run"
    );
    let pids: Vec<String> = serve_pids("gamma")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(pids.len(), 1, "one serve process: {pids:?}");
    s.write("gamma", "d/b", "from alpha", now() - 10);
    assert!(
        eventually(20, || s.read(LOCAL, "d/b").is_some()),
        "a later run"
    );
    let now: Vec<String> = serve_pids("gamma")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(now, pids, "the same session, no new handshake");
    let out = stop(&mut child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        eventually(10, || !serve_pids("gamma").contains(&pids[0])),
        "the session is closed"
    );
}

#[test]
fn every_tells_each_round_in_json_even_when_every_peer_is_away() {
    let s = scene!("d-every-away");
    s.write(LOCAL, "d/a", "one", now() - 100);
    let away = ["-p", "1", "-h", "nobody@127.0.0.1"];
    let mut child = background(&s, &[], &[&away[..], &["--every", "1s", "--json"]].concat());
    std::thread::sleep(Duration::from_secs(4));
    let out = stop(&mut child);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON documents ({e}): {}", stdout(&out)));
    assert!(docs.len() >= 2, "one document a round: {}", stdout(&out));
    for doc in &docs {
        assert_eq!(doc["exit"], 1, "{doc}");
        assert!(
            doc["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer"] == "nobody@127.0.0.1:1" && p["connected"] == false),
            "{doc}"
        );
    }
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn every_sees_changes_after_runs_answered_from_memory() {
    let s = scene!("d-every-memory");
    s.write(LOCAL, "d/a", "one", now() - 100);
    s.write(LOCAL, "d/sub/b", "two", now() - 100);
    let mut child = background(&s, &["beta"], &["--every", "1s"]);
    assert!(
        eventually(20, || s.read("beta", "d/sub/b").is_some()),
        "first run"
    );
    // From the third run on, a peer that saw no change answers from memory.
    std::thread::sleep(Duration::from_secs(4));
    s.write("beta", "d/new/deep/c", "made late", now() - 10);
    s.write("beta", "d/sub/b", "changed", now() - 5);
    assert!(
        eventually(20, || s.read(LOCAL, "d/new/deep/c").as_deref()
            == Some(&b"made late"[..])),
        "a file in a directory made after the watch began"
    );
    assert!(
        eventually(20, || s.read(LOCAL, "d/sub/b").as_deref()
            == Some(&b"changed"[..])),
        "a changed file"
    );
    // And on the invoking host, whose serve answers from memory too.
    std::thread::sleep(Duration::from_secs(3));
    s.write(LOCAL, "d/a", "three", now() - 1);
    assert!(
        eventually(20, || s.read("beta", "d/a").as_deref()
            == Some(&b"three"[..])),
        "a change here"
    );
    let out = stop(&mut child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_peer_that_drops_is_named_and_reconnected_while_the_others_go_on() {
    let s = scene!("d-drop");
    s.write(LOCAL, "d/a", "one", now() - 100);
    let mut child = background(&s, &["epsilon", "delta"], &["--every", "1s"]);
    assert!(eventually(20, || s.read("delta", "d/a").is_some()));
    for pid in serve_pids("epsilon") {
        unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
    }
    s.write(LOCAL, "d/b", "two", now() - 10);
    assert!(
        eventually(20, || s.read("delta", "d/b").is_some()),
        "the others go on"
    );
    assert!(
        eventually(30, || s.read("epsilon", "d/b").is_some()),
        "alpha is back"
    );
    let out = stop(&mut child);
    assert!(
        stderr(&out).contains(&s.shown("epsilon")),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("reconnected"), "{}", stdout(&out));
}

#[test]
fn watch_syncs_soon_after_a_change_on_any_peer() {
    let s = scene!("d-watch");
    s.write(LOCAL, "d/a", "one", now() - 100);
    let mut child = background(&s, &["alpha", "beta"], &["--watch", "--every", "1h", "-v"]);
    assert!(
        eventually(20, || s.read("beta", "d/a").is_some()),
        "first run"
    );
    std::thread::sleep(Duration::from_secs(2));
    // A change on a remote peer reaches the others without a new command (and long before
    // the hour is up).
    s.write("beta", "d/from-beta", "hello", now() - 5);
    assert!(
        eventually(15, || s.read("alpha", "d/from-beta").is_some()),
        "alpha"
    );
    assert_eq!(s.read(LOCAL, "d/from-beta").unwrap(), b"hello");
    let out = stop(&mut child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // -v says once, after the first run, what it watches where and how it falls back.
    let said = stdout(&out);
    let watching: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("watching "))
        .collect();
    assert_eq!(watching.len(), 1, "{said}");
    assert!(
        watching[0].starts_with(&format!(
            "watching {} on localhost, {}, {} for changes",
            s.path(LOCAL, "d").display(),
            s.shown("alpha"),
            s.shown("beta")
        )) && watching[0].contains("checked every 1h"),
        "{said}"
    );
}

#[test]
fn json_describes_the_run_on_stdout() {
    let s = scene!("d-json");
    let t = now() - 100;
    s.write(LOCAL, "d/a", "a", t);
    s.write(LOCAL, "d/gone", "g", t);
    ok(&s.synk(&["alpha"], &[&s.arg("d")]));
    fs::remove_file(s.path("alpha", "d/gone")).unwrap();
    s.write(LOCAL, "d/new", "n", t + 5);
    let out = s.synk(&["alpha"], &[os("--json"), os("-v"), &s.arg("d")]);
    ok(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(&out)));
    assert_eq!(doc["exit"], 0);
    assert_eq!(doc["dry_run"], false);
    let root = &doc["roots"][0];
    assert_eq!(root["root"], s.path(LOCAL, "d").display().to_string());
    let entry = |p: &str| {
        root["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("no entry {p} in {root}"))
    };
    let new = entry("new");
    assert_eq!(new["decision"], "copy");
    assert_eq!(new["winner"], "localhost");
    assert_eq!(new["actions"][0]["peer"], s.shown("alpha"));
    assert_eq!(new["actions"][0]["action"], "created");
    let gone = entry("gone");
    assert_eq!(gone["decision"], "delete");
    assert!(gone["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["peer"] == "localhost" && a["action"] == "deleted"));
    assert!(root["bytes"].as_u64().unwrap() >= 1);
    // -v lines went to stderr, not into the document.
    assert!(stderr(&out).contains("peer: "), "{}", stderr(&out));
    // A peer that cannot be reached is listed too, as not connected, and named in errors.
    let away = [os("-p"), os("1"), os("-h"), os("nobody@127.0.0.1")];
    let out = s.synk(
        &["alpha"],
        &[&away[..], &[os("--json"), &s.arg("d")]].concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peers = doc["peers"].as_array().unwrap();
    let listed = |name: &str| peers.iter().find(|p| p["peer"] == name).cloned();
    let away = listed("nobody@127.0.0.1:1").unwrap_or_else(|| panic!("{peers:?}"));
    assert_eq!(away["connected"], false, "{away}");
    assert!(away.get("round_trips").is_none(), "{away}");
    let alpha = listed(&s.shown("alpha")).unwrap_or_else(|| panic!("{peers:?}"));
    assert_eq!(alpha["connected"], true, "{alpha}");
    assert!(alpha["round_trips"].as_u64().is_some(), "{alpha}");
    assert!(doc["errors"].to_string().contains("127.0.0.1"), "{doc}");
}
