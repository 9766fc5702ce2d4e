//! A run stopped by a signal, end to end over a real sshd: every child (local and remote rsync,
//! ssh masters, serves) gone within a second or two, nothing of synk's left in any tree, no
//! control socket left, and the exit status of the signal.

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The directory inside a scratch directory that keeps partial data.
const PARTIAL_DIR: &str = ".synk-scratch.0000000000000000";

/// Waits until some peer's scratch directory or temp file below `dir` holds more than a MiB.
fn wait_for_copy(dir: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let big = walk(dir).into_iter().any(|(p, len)| {
            let s = p.to_string_lossy();
            (s.contains(".synk-scratch.") || s.contains(".synk-tmp.")) && len > 1 << 20
        });
        if big {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the copy ended first");
        assert!(Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file below `dir`, with its size.
fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.is_dir() {
            out.push((e.path(), 0));
            out.extend(walk(&e.path()));
        } else {
            out.push((e.path(), md.len()));
        }
    }
    out
}

/// Syncs `big` from `master` to the others with a private runtime directory for its control
/// sockets, stops it with `signal` mid-copy, and checks what is left.
fn stopped(name: &str, peers: &[&str], master: &str, signal: i32, status: i32) {
    let s = scene!(name);
    let t = now() - 3000;
    s.write(master, "big", noise(300 << 20, 7), t);
    for p in peers.iter().chain([&LOCAL]) {
        if *p != master {
            s.write(p, "big", b"the old version", t - 100);
        }
    }
    let runtime = tempfile::tempdir().unwrap();
    let mut cmd = s.command(peers);
    cmd.env("XDG_RUNTIME_DIR", runtime.path())
        .args(["--copier", "rsync"])
        .arg(s.arg("big"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let target = if master == LOCAL { peers[0] } else { LOCAL };
    wait_for_copy(&s.dir(target), &mut child);
    let signalled = Instant::now();
    // SAFETY: a signal to the client this test started.
    unsafe { libc::kill(child.id() as i32, signal) };
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    eprintln!("--- stderr\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(status), "{}", stderr(&out));
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    // Every process that worked in these trees is gone within a second or two.
    let dirs: Vec<PathBuf> = peers.iter().chain([&LOCAL]).map(|p| s.dir(p)).collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<String> = dirs.iter().flat_map(|d| users_of(d)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing of synk's is left in any tree but the partial data of the copy cut short (a
    // scratch directory holding only its partial directory, holding only files), and every
    // file is its old self or the new one.
    for d in &dirs {
        for (p, _) in walk(d) {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            let parent = p.parent().unwrap().file_name().unwrap().to_string_lossy();
            if n == PARTIAL_DIR {
                assert!(parent.starts_with(".synk-scratch."), "{p:?}");
                assert!(p.is_dir() && !p.is_symlink(), "{p:?}");
            } else if n.starts_with(".synk-scratch.") {
                let inside: Vec<_> = fs::read_dir(&p).unwrap().flatten().collect();
                assert!(
                    inside.len() == 1 && inside[0].file_name() == PARTIAL_DIR,
                    "left behind: {p:?} holding {inside:?}"
                );
            } else if parent == PARTIAL_DIR {
                let md = fs::symlink_metadata(&p).unwrap();
                assert!(md.is_file() && !n.starts_with(".synk-"), "{p:?}");
            } else {
                assert!(!n.starts_with(".synk-"), "left behind: {p:?}");
            }
        }
    }
    assert_eq!(
        fs::read_dir(runtime.path()).unwrap().count(),
        0,
        "control sockets left"
    );
}

#[test]
fn sigterm_mid_rsync_stops_every_child_and_leaves_nothing_behind() {
    stopped("sig-term", &["alpha"], LOCAL, libc::SIGTERM, 143);
}

#[test]
fn sigint_while_a_remote_master_runs_rsync_stops_it_there_too() {
    // beta is the master: its rsync to alpha runs on beta, started by beta's serve.
    stopped(
        "sig-int-remote",
        &["beta", "alpha"],
        "beta",
        libc::SIGINT,
        130,
    );
}

#[test]
fn sighup_stops_a_run_as_well() {
    stopped("sig-hup", &["alpha"], LOCAL, libc::SIGHUP, 129);
}
