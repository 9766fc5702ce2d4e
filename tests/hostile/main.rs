//! A hostile peer: `lambda`, whose `synk` is a liar (`liar.rs`) in front of a real serve, over
//! the real sshd rig (`common/mod.rs`). Each case has the liar tell one lie to a client that
//! syncs with honest peers (this host and `alpha`), and checks that the client refuses it with
//! a clear error naming lambda, exits non-zero, writes nothing outside the roots on any honest
//! peer (a canary in each home, planted names absent), prints no raw escape sequence, and
//! holds a bounded amount of memory (the client's peak RSS, from `wait4`).
//!
//! One executable plays both parts: run with `--liar REAL_SYNK` it is the liar (lambda's
//! `synk` on PATH execs it), so a plain `cargo test --test hostile` builds everything it
//! needs. Its own small runner (no libtest: the liar must own stdout) runs the cases one
//! after another, since lambda's `~/.liar` is one file: `cargo test --test hostile -- NAME`
//! runs the cases whose name holds NAME; `--ignored` runs the ones waiting for something.

#[allow(unused_macros)]
#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod liar;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

const LIAR: &str = "lambda";
/// The most memory a client may hold in a case but the endless listing's.
const RSS_LIMIT: u64 = 512 << 20;
/// The most an endless listing may make it hold: the client's budget for one answer (1 GiB)
/// and room for the rest; an unbounded client would hold the 4 GiB the liar sends.
const ENDLESS_RSS_LIMIT: u64 = 1536 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--liar") {
        // The client's first requests may come as `--serve=HEX`, before stdin.
        let ahead = args[3..]
            .iter()
            .find_map(|a| a.strip_prefix("--serve="))
            .map(|h| hex::decode(h).expect("hex"))
            .unwrap_or_default();
        liar::main(&args[2], ahead);
        return;
    }
    let filters: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let ignored = args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored");
    let only_ignored = args.iter().any(|a| a == "--ignored");
    let chosen: Vec<&Case> = CASES
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f)))
        .collect();
    println!("\nrunning {} tests", chosen.len());
    let (mut passed, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for case in chosen {
        match case.waits_for {
            Some(why) if !ignored => {
                println!("test {} ... ignored, {why}", case.name);
                skipped.push(case.name);
                continue;
            }
            None if only_ignored => continue,
            _ => {}
        }
        let started = std::time::Instant::now();
        let ok = std::panic::catch_unwind(case.run).is_ok();
        println!(
            "test {} ... {} ({:.1}s)",
            case.name,
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if ok {
            passed.push(case.name);
        } else {
            failed.push(case.name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; {} ignored",
        if failed.is_empty() { "ok" } else { "FAILED" },
        passed.len(),
        failed.len(),
        skipped.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

/// One case of the harness.
struct Case {
    name: &'static str,
    run: fn(),
    /// Not run by default: what it waits for.
    waits_for: Option<&'static str>,
}

const fn case(name: &'static str, run: fn()) -> Case {
    Case {
        name,
        run,
        waits_for: None,
    }
}

const CASES: &[Case] = &[
    case("wrong_root_as_the_master_of_a_file", || {
        wrong_root("wrongroot-master", true)
    }),
    case("wrong_root_as_a_plain_peer", || {
        wrong_root("wrongroot-plain", false)
    }),
    case("a_sibling_beside_a_file_root_it_holds", || {
        sibling("sibling-held", true)
    }),
    case("a_sibling_beside_a_file_root_it_lacks", || {
        sibling("sibling-lacks", false)
    }),
    case("entry_paths_that_escape", paths_that_escape),
    case("synks_own_temp_and_scratch_names", synks_own_names),
    case("a_detail_answer_to_questions_not_asked", unasked_detail),
    case("briefs_that_do_not_add_up", briefs_that_do_not_add_up),
    case("full_entries_behind_briefs_not_asked_for", unasked_full),
    case("filesystems_told_wrong", filesystems_told_wrong),
    case("an_endless_listing", endless_listing),
    case("escape_sequences_in_names_and_errors", escapes),
    case("a_flood_on_stderr", stderr_flood),
    case("answers_of_megabytes", huge_answers),
    case("oversized_and_truncated_frames", garbled_frames),
    case("a_lying_handshake", lying_handshake),
    case("kept_versions_of_other_paths", versions_elsewhere),
    case("holes_past_the_end_of_a_file", holes_past_the_end),
    case("data_past_the_end_of_a_file", data_past_the_end),
    case("hard_links_no_tree_can_hold", impossible_links),
    case(
        "a_target_holding_more_than_the_file_has",
        partial_past_the_end,
    ),
    case(
        "extended_attributes_past_the_bounds",
        xattrs_past_the_bounds,
    ),
    case(
        "a_relay_source_whose_rsync_sends_unplanned_names",
        relay_source,
    ),
];

/// What a client run did.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The client's peak resident memory, bytes.
    peak: u64,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A case's scene: the liar set up, canaries in every home.
struct Hostile {
    s: Scene,
    /// Every peer of the run but the liar.
    honest: Vec<&'static str>,
}

impl Hostile {
    fn new(name: &str) -> Option<Hostile> {
        let s = Scene::new(name)?;
        install_liar(s.rig);
        let h = Hostile {
            s,
            honest: vec![LOCAL, "alpha"],
        };
        for p in h.all() {
            let canary = h.canary(p);
            fs::write(&canary, format!("canary of {p}")).unwrap();
            set_mtime(&canary, 1_000_000);
            // The test's own directory on every peer, owned by its user.
            h.s.mkdir(p, "");
        }
        h.lies(&[]);
        Some(h)
    }

    fn all(&self) -> Vec<&'static str> {
        let mut all = self.honest.clone();
        all.push(LIAR);
        all
    }

    fn canary(&self, peer: &str) -> PathBuf {
        self.s.home(peer).join(format!("canary-{}", self.s.name))
    }

    /// What lambda's serve lies about from now on, one lie a line (see `liar.rs`).
    fn lies(&self, lies: &[&[&[u8]]]) {
        let mut text = Vec::new();
        for lie in lies {
            text.extend(lie.join(&b'\t'));
            text.push(b'\n');
        }
        let file = self.s.home(LIAR).join(".liar");
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Runs the client against alpha and lambda with `args`.
    fn synk(&self, args: &[&OsStr]) -> Run {
        let peers: Vec<&str> = self.all().into_iter().filter(|p| *p != LOCAL).collect();
        let mut cmd = self.s.command(&peers);
        cmd.args(args);
        measured(cmd)
    }

    /// The checks every case makes of a run the liar lied to: refused with an error that
    /// names lambda and holds `says`, a non-zero exit, no raw escape sequence anywhere, memory
    /// within `limit`, every canary as it was, and none of `planted` (paths below each
    /// peer's test directory, or absolute) on an honest peer.
    fn refused(&self, run: &Run, says: &str, limit: u64, planted: &[&str]) {
        let e = run.stderr();
        let lambda = self.s.shown(LIAR);
        assert_eq!(run.code, Some(1), "{e}");
        let line = e
            .lines()
            .find(|l| l.contains(says))
            .unwrap_or_else(|| panic!("no error saying {says:?}: {e}"));
        assert!(line.starts_with(&format!("synk: {lambda}: ")), "{line}");
        self.checked(run, limit, planted);
    }

    /// The checks of [`Hostile::refused`] but the error.
    fn checked(&self, run: &Run, limit: u64, planted: &[&str]) {
        for (what, out) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            let raw = out
                .windows(2)
                .position(|w| w[0] == 0x1b || w[0] == 0x9b || w == [0xc2, 0x9b]);
            assert_eq!(
                raw,
                None,
                "a raw escape on {what}: {}",
                String::from_utf8_lossy(out)
            );
        }
        assert!(
            run.peak < limit,
            "the client held {} MiB (at most {} MiB)",
            run.peak >> 20,
            limit >> 20
        );
        for p in self.all() {
            let canary = self.canary(p);
            assert_eq!(
                fs::read_to_string(&canary).unwrap(),
                format!("canary of {p}"),
                "{canary:?}"
            );
            assert_eq!(mtime(&canary), 1_000_000, "{canary:?}");
        }
        for p in &self.honest {
            for rel in planted {
                let path = if rel.starts_with('/') {
                    PathBuf::from(rel)
                } else {
                    self.s.path(p, rel)
                };
                assert!(
                    fs::symlink_metadata(&path).is_err(),
                    "{path:?} planted on {p}"
                );
            }
        }
    }
}

/// lambda's `synk`: this very executable as the liar, in front of the real synk.
fn install_liar(rig: &Rig) {
    let script = rig.dir.join(LIAR_BIN).join("synk");
    let me = std::env::current_exe().unwrap();
    let text = format!(
        "#!/bin/sh\nexec '{}' --liar '{}' \"$@\"\n",
        me.display(),
        env!("CARGO_BIN_EXE_synk")
    );
    let tmp = script.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, &script).unwrap();
}

/// Runs `cmd` to its end, with its output and its peak memory.
// Waited for with wait4 (for its rusage), which std's Child does not know of.
#[allow(clippy::zombie_processes)]
fn measured(mut cmd: Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synk");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let mut stderr = Vec::new();
    err.read_to_end(&mut stderr).unwrap();
    let stdout = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our own child's, not waited.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let run = Run {
        code,
        stdout,
        stderr,
        peak: usage.ru_maxrss as u64 * 1024,
    };
    eprintln!(
        "--- status {:?}, peak {} MiB\n--- stdout\n{}--- stderr\n{}",
        run.code,
        run.peak >> 20,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// lambda reports `.bashrc` for the root `.profile` (with its own version of `.profile`
/// newest, or oldest): had the client taken it, it would have copied lambda's `.bashrc` over
/// every peer's.
fn wrong_root(name: &str, newest: bool) {
    let Some(h) = Hostile::new(name) else { return };
    let s = &h.s;
    let t = now() - 1000;
    for p in &h.honest {
        s.write(p, ".profile", "honest profile", t);
        s.write(p, ".bashrc", format!("rc of {p}"), t);
    }
    let lambda_t = if newest { now() - 10 } else { t - 1000 };
    s.write(LIAR, ".profile", "lambda's profile", lambda_t);
    s.write(LIAR, ".bashrc", "evil rc", lambda_t);
    h.lies(&[&[b"wrong-root", b".bashrc"]]);
    let run = h.synk(&[&s.arg(".profile")]);
    let want = format!(
        "protocol error: reported \"{}\" as root ~/t-{name}/.profile, which is \"{}\" there",
        s.path(LIAR, ".bashrc").display(),
        s.path(LIAR, ".profile").display()
    );
    h.refused(&run, &want, RSS_LIMIT, &[]);
    assert!(run
        .stderr()
        .contains(&format!("{} is left out of this run", s.shown(LIAR))));
    for p in &h.honest {
        assert_eq!(
            s.read(p, ".bashrc").unwrap(),
            format!("rc of {p}").as_bytes()
        );
        assert_eq!(s.read(p, ".profile").unwrap(), b"honest profile");
        assert_eq!(mtime(&s.path(p, ".bashrc")), t);
    }
    assert_eq!(s.read(LIAR, ".profile").unwrap(), b"lambda's profile");
}

/// lambda lists `.ssh/authorized_keys` beside the single-file root `.profile`, the newest
/// version there, with the root (`held`) or without it: had the client taken it, every
/// peer would have that file, beside the root.
fn sibling(name: &str, held: bool) {
    let Some(h) = Hostile::new(name) else { return };
    let s = &h.s;
    let t = now() - 1000;
    for p in &h.honest {
        s.write(p, ".profile", "honest profile", t);
    }
    if held {
        s.write(LIAR, ".profile", "lambda's profile", now() - 10);
    }
    s.write(LIAR, ".ssh/authorized_keys", "ssh-ed25519 evil", now() - 10);
    h.lies(&[&[b"sibling", b".ssh/authorized_keys"]]);
    let run = h.synk(&[&s.arg(".profile")]);
    h.refused(
        &run,
        "protocol error: sent \".ssh/authorized_keys\" beside a root that is a single file, where only its conflict copies can be",
        RSS_LIMIT,
        &[".ssh/authorized_keys", ".ssh"],
    );
    for p in &h.honest {
        assert_eq!(s.read(p, ".profile").unwrap(), b"honest profile");
    }
}

/// lambda lists entries that would leave the root: `..`, an absolute path.
fn paths_that_escape() {
    let Some(h) = Hostile::new("escape") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "d/f", "same", now() - 100);
    }
    let outside = format!("/var/tmp/synk-it/hostile-abs-{}", std::process::id());
    let cases: [(&[u8], String); 3] = [
        (
            b"../outside",
            "sent an invalid entry path \"../outside\"".into(),
        ),
        (
            b"d/../../outside",
            "sent an invalid entry path \"d/../../outside\"".into(),
        ),
        (
            outside.as_bytes(),
            format!("sent an invalid entry path \"{outside}\": path is absolute"),
        ),
    ];
    for (rel, says) in cases {
        h.lies(&[&[b"entry", rel]]);
        let run = h.synk(&[&s.arg("d")]);
        h.refused(&run, &says, RSS_LIMIT, &["outside", "d/outside", &outside]);
        for p in &h.honest {
            assert!(fs::symlink_metadata(s.home(p).join("outside")).is_err());
        }
    }
}

/// lambda lists names of synk's own temp files and scratch directories, a scratch directory
/// as a symlink out of the tree among them: had the client taken one, rsync would write
/// through it.
fn synks_own_names() {
    let Some(h) = Hostile::new("own") else { return };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    let away = format!("/var/tmp/synk-it/hostile-away-{}", std::process::id());
    let lies: [&[&[u8]]; 3] = [
        &[b"entry", b".synk-tmp.0123456789abcdef"],
        &[b"entry", b"sub/.synk-tmp.00000000deadbeef"],
        &[
            b"symlink",
            b".synk-scratch.0123456789abcdef",
            away.as_bytes(),
        ],
    ];
    for lie in lies {
        h.lies(&[lie]);
        let run = h.synk(&[&s.arg("")]);
        let name = String::from_utf8_lossy(lie[1]);
        h.refused(
            &run,
            &format!(
                "sent an invalid entry path \"{name}\": the name of one of synk's own temp files or scratch directories"
            ),
            RSS_LIMIT,
            &[&name, "sub"],
        );
    }
    // A symlink named like an older synk's scratch directory is a user's symlink: synced as
    // one, and never written through, since rsync writes only into a scratch directory each
    // target's serve makes and checks.
    h.lies(&[&[b"symlink", b".synk-rsync.tmp", away.as_bytes()]]);
    let run = h.synk(&[&s.arg("")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr());
    h.lies(&[]);
    s.write(LOCAL, "g", vec![7u8; 1 << 20], now() - 10);
    let run = h.synk(&[&s.arg("")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr());
    for p in &h.honest {
        let link = s.path(p, ".synk-rsync.tmp");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{p}"
        );
        assert_eq!(s.read(p, "g").map(|g| g.len()), Some(1 << 20), "{p}");
    }
    assert!(fs::symlink_metadata(&away).is_err());
}

/// lambda answers a Detail request with an entry that was not asked for, or one twice.
fn unasked_detail() {
    let Some(h) = Hostile::new("detail") else {
        return;
    };
    let s = &h.s;
    for p in &h.honest {
        s.write(p, "a", "honest", now() - 100);
    }
    s.write(LIAR, "a", "lambda's", now() - 50);
    for (lie, says) in [
        (
            &b"extra-detail"[..],
            "protocol error: sent \"unasked\", which was not asked for (or twice)",
        ),
        (
            b"twice-detail",
            "protocol error: sent \"a\", which was not asked for (or twice)",
        ),
    ] {
        h.lies(&[&[lie]]);
        let run = h.synk(&[&s.arg("")]);
        h.refused(&run, says, RSS_LIMIT, &["unasked"]);
        for p in &h.honest {
            assert_eq!(s.read(p, "a").unwrap(), b"honest");
        }
    }
}

/// The same `a` and `b/c` on every peer, synced once truthfully: every peer has a history,
/// so its next scan sums the root up.
fn in_sync_with_history(h: &Hostile) {
    let s = &h.s;
    for p in h.all() {
        s.write(p, "a", "same", now() - 100);
        s.write(p, "b/c", "same too", now() - 100);
    }
    let run = h.synk(&[&s.arg("")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr());
}

/// lambda sums its root up wrong, then sends a brief more than its summary counts.
fn briefs_that_do_not_add_up() {
    let Some(h) = Hostile::new("briefs") else {
        return;
    };
    let s = &h.s;
    in_sync_with_history(&h);
    h.lies(&[&[b"summary-lie"]]);
    let run = h.synk(&[&s.arg("")]);
    h.refused(
        &run,
        "protocol error: more briefs than the summary of 3 counts",
        RSS_LIMIT,
        &["extra"],
    );
}

/// Where only the client changed an entry, lambda (in sync, summing its root up) is asked for
/// its briefs and that entry in full; it sends another entry in full too.
fn unasked_full() {
    let Some(h) = Hostile::new("unasked-full") else {
        return;
    };
    let s = &h.s;
    in_sync_with_history(&h);
    s.write(LOCAL, "a", "changed", now() - 10);
    h.lies(&[&[b"extra-full"]]);
    let run = h.synk(&[&s.arg("")]);
    h.refused(
        &run,
        "protocol error: sent \"unasked\", which was not asked for (or twice)",
        RSS_LIMIT,
        &["unasked"],
    );
    // The honest peers still sync among themselves.
    assert_eq!(s.read("alpha", "a").unwrap(), b"changed");
}

/// lambda tells what its root's filesystem holds twice, or with an mtime step no filesystem
/// has: refused, nothing of it used.
fn filesystems_told_wrong() {
    let Some(h) = Hostile::new("holds") else {
        return;
    };
    let s = &h.s;
    for p in &h.honest {
        s.write(p, "a", "honest", now() - 100);
    }
    s.write(LIAR, "a", "lambda's", now() - 50);
    for (lie, says) in [
        (
            &[&b"holds-twice"[..]][..],
            "protocol error: a root's filesystem told twice",
        ),
        (
            &[&b"holds-step"[..], &b"0"[..]][..],
            "protocol error: an mtime step out of range",
        ),
        (
            &[&b"holds-step"[..], &b"9000000000"[..]][..],
            "protocol error: an mtime step out of range",
        ),
    ] {
        h.lies(&[lie]);
        let run = h.synk(&[&s.arg("")]);
        h.refused(&run, says, RSS_LIMIT, &[]);
        for p in &h.honest {
            assert_eq!(s.read(p, "a").unwrap(), b"honest");
        }
    }
}

/// lambda lists entries without end: the client stops it at its bound, with memory bounded.
fn endless_listing() {
    let Some(h) = Hostile::new("endless") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    h.lies(&[&[b"endless"]]);
    let run = h.synk(&[&s.arg("")]);
    h.refused(
        &run,
        "sent more than this client holds for one answer of a peer (1024 MiB): refused",
        ENDLESS_RSS_LIMIT,
        &[],
    );
}

/// Names and errors with escape sequences: shown escaped in every line, `-v`, `-n` and
/// `--json` alike. The names are lambda's files (a legal answer: names are names); the error
/// is one it makes up for an entry it says it cannot read.
fn escapes() {
    let Some(h) = Hostile::new("escapes") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    let osc: &[u8] = b"title\x1b]0;pwned\x07";
    let csi: &[u8] = b"clear\x1b[2J\xc2\x9b31m\x9b";
    for name in [osc, csi] {
        let path = s.path(LIAR, "").join(OsStr::from_bytes(name));
        s.write_at(LIAR, &path, b"lambda's", now() - 10);
    }
    h.lies(&[&[
        b"unreadable",
        b"bad\x1b[5m",
        b"\x1b[31mred alert\x1b[0m\x07",
    ]]);
    for extra in [
        &["-v", "-n"][..],
        &["-vv", "-n"],
        &["--json", "-n"],
        &["-v"],
    ] {
        let mut args: Vec<&OsStr> = extra.iter().map(|a| os(a)).collect();
        let root = s.arg("");
        args.push(&root);
        let run = h.synk(&args);
        // An entry lambda cannot read is an error naming it, escaped.
        assert_eq!(run.code, Some(1), "{}", run.stderr());
        let e = run.stderr();
        assert!(
            e.contains(&format!(
                "synk: {}: {}/bad\\x1b[5m: \\x1b[31mred alert\\x1b[0m\\x07",
                s.shown(LIAR),
                s.path(LIAR, "").display()
            )),
            "{e}"
        );
        h.checked(&run, RSS_LIMIT, &[]);
        if extra[0] == "--json" {
            let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            let entries = doc["roots"][0]["entries"].as_array().unwrap();
            let hex: String = csi.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                entries
                    .iter()
                    .any(|e| e["path_hex"] == serde_json::json!(hex)),
                "{doc}"
            );
            assert!(
                entries.iter().any(|e| e["path"]
                    == serde_json::json!(String::from_utf8_lossy(osc))
                    && e.get("path_hex").is_none()),
                "{doc}"
            );
        }
    }
    // The run without -n carried the names to the honest peers, as they are.
    for p in &h.honest {
        let dir = s.path(p, "");
        assert!(dir.join(OsStr::from_bytes(osc)).exists(), "{p}");
        assert!(dir.join(OsStr::from_bytes(csi)).exists(), "{p}");
    }
}

/// lambda's serve writes escape sequences and a line of 10 MiB to stderr, then dies.
fn stderr_flood() {
    let Some(h) = Hostile::new("stderr") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    h.lies(&[&[b"stderr-junk"]]);
    let run = h.synk(&[&s.arg("")]);
    h.refused(&run, "connection lost", RSS_LIMIT, &[]);
    // What the client quotes of it is cut.
    assert!(run.stderr.len() < 16 << 10, "{} bytes", run.stderr.len());
}

/// A target that answers every op it is given with megabytes of text: what the client
/// holds and prints of it is cut, and escaped.
fn huge_answers() {
    let Some(h) = Hostile::new("hugeanswer") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "old", now() - 100);
    }
    s.write(LOCAL, "f", "new here", now() - 10);
    h.lies(&[&[b"changed-huge"]]);
    let run = h.synk(&[&s.arg("")]);
    assert_ne!(run.code, Some(0), "{}", run.stderr());
    assert!(run.stderr().contains("changed"), "{}", run.stderr());
    assert!(run.stderr.len() < 16 << 10, "{} bytes", run.stderr.len());
    h.checked(&run, RSS_LIMIT, &[]);
    assert_eq!(s.read("alpha", "f").unwrap(), b"new here");
}

/// Frames no serve sends: longer than any allowed, or cut short.
fn garbled_frames() {
    let Some(h) = Hostile::new("frames") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    for (lie, says) in [
        (
            &b"oversized"[..],
            "garbled protocol stream (frame of 2147483647 bytes",
        ),
        (b"truncated", "connection lost"),
    ] {
        h.lies(&[&[lie]]);
        let run = h.synk(&[&s.arg("")]);
        h.refused(&run, says, RSS_LIMIT, &[]);
    }
}

/// A handshake whose home is not a clean absolute path, or whose version is no version.
fn lying_handshake() {
    let Some(h) = Hostile::new("hello") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    for (lie, says) in [
        (
            &[&b"hello-home"[..], b"relative/home"][..],
            "protocol error: a home directory \"relative/home\"",
        ),
        (
            &[b"hello-home", b"/home/../etc"],
            "protocol error: a home directory \"/home/../etc\"",
        ),
        (
            &[b"hello-version", b"0.1.0\x1b[2J"],
            "protocol error: a version string \"0.1.0\\x1b[2J\"",
        ),
    ] {
        h.lies(&[lie]);
        let run = h.synk(&[&s.arg("")]);
        h.refused(&run, says, RSS_LIMIT, &[]);
    }
}

/// `--versions` where lambda lists a kept version of a path outside the one asked about.
fn versions_elsewhere() {
    let Some(h) = Hostile::new("versions") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    h.lies(&[&[b"versions", b"/etc/passwd"]]);
    let run = h.synk(&[os("--versions"), &s.arg("f")]);
    h.refused(
        &run,
        "protocol error: listed a kept version of \"/etc/passwd\", which is not at or below the path asked about",
        RSS_LIMIT,
        &[],
    );
    assert!(!String::from_utf8_lossy(&run.stdout).contains("/etc/passwd"));
}

/// lambda is the master of a tree and runs rsync to alpha itself; its rsync slips in a name
/// the plan never gave it. The target's serve must move into place only the names planned.
fn relay_source() {
    let Some(h) = Hostile::new("relay") else {
        return;
    };
    let s = &h.s;
    for p in &h.honest {
        s.write(p, "d/a", "old", now() - 1000);
    }
    s.write(LIAR, "d/a", "new from lambda", now() - 10);
    // In lambda's tree, but left out of its scan: no plan names it.
    s.write(LIAR, "d/planted", "unplanned", now() - 10);
    s.write(LIAR, "d/.synkignore", "planted\n", now() - 10);
    // lambda's rsync, when it sends (not as a server), adds `planted` to its list of names.
    let rsync = s.rig.dir.join(LIAR_BIN).join("rsync");
    let wrapper = "#!/bin/sh\ncase \" $* \" in *' --server '*) exec /usr/bin/rsync \"$@\";; esac\n{ cat; printf 'planted\\0'; } | /usr/bin/rsync \"$@\"\n";
    let _ = fs::remove_file(&rsync);
    fs::write(&rsync, wrapper).unwrap();
    fs::set_permissions(&rsync, fs::Permissions::from_mode(0o755)).unwrap();
    let restore = || {
        let _ = fs::remove_file(&rsync);
        std::os::unix::fs::symlink("/usr/bin/rsync", &rsync).unwrap();
    };
    let run = h.synk(&[&s.arg("d")]);
    restore();
    // The copies arrived; nothing else did.
    assert_eq!(run.code, Some(0), "{}", run.stderr());
    assert_eq!(s.read("alpha", "d/a").unwrap(), b"new from lambda");
    h.checked(&run, RSS_LIMIT, &["d/planted"]);
}

/// A master that ends the file it sends with holes past the size it scanned: a few bytes on
/// the wire for a gigabyte on every target, were they taken.
fn holes_past_the_end() {
    let Some(h) = Hostile::new("holes") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "same", now() - 100);
    }
    s.write(LIAR, "f", "lambda's, newer", now() - 10);
    h.lies(&[&[b"hole-past-end"]]);
    let run = h.synk(&[os("--copier"), os("stream"), &s.arg("")]);
    h.refused(&run, "protocol error: unexpected Hole", RSS_LIMIT, &[]);
    for p in &h.honest {
        assert_eq!(
            s.read(p, "f").unwrap(),
            b"same",
            "{p}: the old version stays"
        );
    }
}

/// A master that goes on sending data past the size it scanned: every target would write
/// until its disk is full, were it relayed.
fn data_past_the_end() {
    let Some(h) = Hostile::new("datapast") else {
        return;
    };
    let s = &h.s;
    let old = vec![b'o'; 100 << 10];
    for p in h.all() {
        s.write(p, "f", &old, now() - 100);
    }
    s.write(LIAR, "f", vec![b'n'; 100 << 10], now() - 10);
    h.lies(&[&[b"data-past-end"]]);
    let run = h.synk(&[os("--copier"), os("stream"), &s.arg("")]);
    h.refused(&run, "protocol error: unexpected Data", RSS_LIMIT, &[]);
    for p in &h.honest {
        assert_eq!(s.read(p, "f").unwrap(), old, "{p}: the old version stays");
        let left: Vec<_> = fs::read_dir(s.path(p, ""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.as_encoded_bytes().starts_with(b".synk"))
            .collect();
        assert!(left.is_empty(), "{p}: {left:?} left beside it");
    }
}

/// lambda says names are hard links to themselves, to later names (a cycle), out of the
/// root, or that a directory has one: refused. Links to a directory, to a name it does not
/// hold, or to a name that is itself linked (a chain) pass the check but are never made: the
/// name arrives as a file of its own, and the run after it is quiet.
fn impossible_links() {
    use std::os::unix::fs::MetadataExt;
    let Some(h) = Hostile::new("links") else {
        return;
    };
    let s = &h.s;
    let t = now() - 100;
    for rel in ["d/a", "d/b", "d/c"] {
        s.write(LIAR, rel, "x", t);
    }
    s.mkdir(LIAR, "d/bdir");
    let refused: [(&[u8], &[u8], &str); 4] = [
        (
            b"b",
            b"b",
            "a name links to one before it in the root's order",
        ),
        (
            b"a",
            b"b",
            "a name links to one before it in the root's order",
        ),
        (b"b", b"../a", "not an entry path below the root"),
        (b"bdir", b"a", "only a file has hard links"),
    ];
    for (rel, to, why) in refused {
        h.lies(&[&[b"link", rel, to]]);
        let run = h.synk(&[&s.arg("d")]);
        let says = format!(
            "sent \"{}\" as a hard link to \"{}\": {why}",
            String::from_utf8_lossy(rel),
            String::from_utf8_lossy(to)
        );
        h.refused(&run, &says, RSS_LIMIT, &["d/a", "a"]);
    }
    let kept: [&[&[&[u8]]]; 3] = [
        &[&[b"link", b"c", b"bdir"]],
        &[&[b"link", b"c", b"bb"]],
        &[&[b"link", b"b", b"a"], &[b"link", b"c", b"b"]],
    ];
    for (i, lies) in kept.into_iter().enumerate() {
        let root = format!("k{i}");
        for rel in ["a", "b", "c"] {
            s.write(LIAR, &format!("{root}/{rel}"), "x", t);
        }
        s.mkdir(LIAR, &format!("{root}/bdir"));
        h.lies(lies);
        let run = h.synk(&[&s.arg(&root)]);
        // A link to a name no listing holds is tried (the name may be in sync everywhere,
        // hence unlisted): each serve refuses it, and the name is left out, never wrong.
        assert!(matches!(run.code, Some(0 | 1 | 3)), "{}", run.stderr());
        h.checked(&run, RSS_LIMIT, &[]);
        for p in &h.honest {
            let at = |rel: &str| s.path(p, &format!("{root}/{rel}"));
            let Ok(c) = fs::metadata(at("c")) else {
                assert!(run.stderr().contains("not the version to link to"), "{p}");
                continue;
            };
            assert_eq!(fs::read(at("c")).unwrap(), b"x", "{p}");
            assert_eq!(c.nlink(), 1, "{p}: {root}/c a file of its own");
            assert!(at("bdir").is_dir(), "{p}");
            if i == 2 {
                // The first link of the chain is a link no tree contradicts: made.
                assert_eq!(inode(&at("b")), inode(&at("a")), "{p}: {root}/b");
            }
        }
        let again = h.synk(&[&s.arg(&root)]);
        assert!(matches!(again.code, Some(0 | 1 | 3)), "{}", again.stderr());
        h.checked(&again, RSS_LIMIT, &[]);
    }
}

/// A target that says it holds more of a file than the file has, from a copy cut short: a
/// copy resumed there would send nothing and take its word for the rest.
fn partial_past_the_end() {
    let Some(h) = Hostile::new("partial") else {
        return;
    };
    let s = &h.s;
    for p in h.all() {
        s.write(p, "f", "old", now() - 100);
    }
    let big = noise(1 << 20, 3);
    s.write(LOCAL, "f", &big, now() - 10);
    h.lies(&[&[b"partial-past-end"]]);
    let run = h.synk(&[os("--copier"), os("stream"), &s.arg("f")]);
    h.refused(&run, "says it holds 1099511627776 bytes", RSS_LIMIT, &[]);
    assert_eq!(
        s.read("alpha", "f").unwrap(),
        big,
        "the honest target gets it"
    );
    assert_eq!(s.read(LIAR, "f").unwrap(), b"old");
}
/// A master whose extended attributes, fetched for the targets, are past synk's bounds or of
/// an entry not asked about: refused, and none of it set anywhere.
fn xattrs_past_the_bounds() {
    let Some(h) = Hostile::new("xattrs") else {
        return;
    };
    let s = &h.s;
    let lies = [
        ("name", "extended attribute \"evil.x\" of no kept namespace"),
        ("value", "value over 65536 bytes"),
        ("count", "2000 extended attributes (at most 1024)"),
        ("unasked", "which were not asked for (or twice)"),
    ];
    for (how, _) in lies {
        let f = format!("f-{how}");
        for p in h.all() {
            s.write(p, &f, "same", now() - 100);
        }
    }
    let run = h.synk(&[&s.arg("")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr());
    for (how, says) in lies {
        // lambda's newer version of one file, with an attribute: fetched from it.
        let f = format!("f-{how}");
        let theirs = s.write(LIAR, &f, "lambda's, newer", now() - 10);
        rustix::fs::lsetxattr(&theirs, "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        h.lies(&[&[b"xattrs", how.as_bytes()]]);
        let run = h.synk(&[&s.arg("")]);
        h.refused(&run, says, RSS_LIMIT, &[]);
        for p in &h.honest {
            for name in ["user.big", "evil.x", "user.0000"] {
                let mut buf = [0u8; 16];
                let got = rustix::fs::lgetxattr(s.path(p, &f), name, &mut buf[..]);
                assert!(got.is_err(), "{how}: {name} on {p}");
            }
        }
    }
}
