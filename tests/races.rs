//! A world that moves while synk copies, end to end over a real sshd with non-root peers: an
//! edit saved on a target during a copy, a parent swapped for a symlink during a copy, a
//! read-only directory, a user's file named like a temp, and a client that is not root.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// A file synk is writing for a copy into `dir` on a peer, once it has grown past a MiB: a temp
/// of synk's beside the target (the streaming copier's small files), or anything inside a
/// scratch directory or its partial directory. Waits up to a minute, as long as `child` runs.
fn growing_copy(dir: &Path, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut places = vec![dir.to_path_buf()];
        // rsync's temp files are in the scratch directory, the streaming copier's partial
        // file of a big one in its partial directory.
        places.extend(
            scratch_dirs(dir)
                .into_iter()
                .flat_map(|d| [d.join(".synk-scratch.0000000000000000"), d]),
        );
        for p in places {
            for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let ours = p != dir || name.starts_with(".synk-tmp.");
                if ours && e.metadata().is_ok_and(|m| m.is_file() && m.len() > 1 << 20) {
                    return e.path();
                }
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the copy ended first");
        assert!(Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a sync of `rel` from localhost to `peer` with `copier` in the background.
fn start(s: &Scene, peer: &str, copier: &str, rel: &str) -> Child {
    let mut cmd = s.command(&[peer]);
    cmd.args(["--copier", copier])
        .arg(s.arg(rel))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn finish(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "--- status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

fn edit_during_a_copy(name: &str, copier: &str) {
    let s = scene!(name);
    let t = now() - 3000;
    s.write(LOCAL, "big", noise(100 << 20, 1), t);
    s.write("alpha", "big", noise(100 << 20, 1), t);
    assert_eq!(s.synk(&["alpha"], &[&s.arg("big")]).status.code(), Some(0));
    // A new version here, copied to alpha; alpha's user saves an edit while it travels.
    s.write(LOCAL, "big", noise(100 << 20, 2), t + 100);
    let mut child = start(&s, "alpha", copier, "big");
    growing_copy(&s.dir("alpha"), &mut child);
    let edit = b"saved on alpha during the copy".to_vec();
    s.write("alpha", "big", &edit, now());
    let out = finish(child);
    assert_eq!(out.status.code(), Some(3), "reported as a conflict");
    assert!(
        stderr(&out).contains("changed since the scan") && stderr(&out).contains(&s.shown("alpha")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.read("alpha", "big").unwrap(),
        edit,
        "the edit is never overwritten"
    );
    // The next run reconciles by the normal rules: both versions survive everywhere.
    let out = s.synk(&["alpha"], &[&s.arg("big")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    for p in [LOCAL, "alpha"] {
        let all: Vec<Vec<u8>> = fs::read_dir(s.dir(p))
            .unwrap()
            .flatten()
            .map(|e| fs::read(e.path()).unwrap())
            .collect();
        assert!(all.contains(&edit), "{p}: the edit");
        assert!(all.contains(&noise(100 << 20, 2)), "{p}: the other version");
    }
}

#[test]
fn an_edit_saved_during_a_streamed_copy_is_kept() {
    edit_during_a_copy("race-edit-stream", "stream");
}

#[test]
fn an_edit_saved_during_an_rsync_copy_is_kept() {
    edit_during_a_copy("race-edit-rsync", "rsync");
}

fn symlink_during_a_copy(name: &str, copier: &str) {
    let s = scene!(name);
    let t = now() - 3000;
    s.write(LOCAL, "d/big", noise(100 << 20, 3), t);
    s.write(LOCAL, "d/sub/f", "planted through the link?", t);
    s.mkdir("alpha", "d/sub");
    let outside = s.mkdir("alpha", "outside");
    let mut child = start(&s, "alpha", copier, "d");
    growing_copy(&s.dir("alpha").join("d"), &mut child);
    // Swapped while `big` travels: `sub/f` comes after it.
    let sub = s.path("alpha", "d/sub");
    fs::remove_dir(&sub).unwrap();
    std::os::unix::fs::symlink(&outside, &sub).unwrap();
    let u = user("alpha");
    std::os::unix::fs::lchown(&sub, Some(u.uid), Some(u.gid)).unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through it"
    );
    assert_eq!(s.read("alpha", "d/big").unwrap(), noise(100 << 20, 3));
}

#[test]
fn a_parent_swapped_for_a_symlink_during_a_streamed_copy_is_not_written_through() {
    symlink_during_a_copy("race-link-stream", "stream");
}

#[test]
fn a_parent_swapped_for_a_symlink_during_an_rsync_copy_is_not_written_through() {
    symlink_during_a_copy("race-link-rsync", "rsync");
}

/// A 0555 directory with a file, and a user file named like synk's old temp files.
fn read_only_tree(s: &Scene, peer: &str) {
    let t = now() - 3000;
    s.write(peer, "t/ro/f", "inside a read-only directory", t);
    s.write(peer, "t/.synk-notes.tmp", "a user's notes", t);
    let ro = s.path(peer, "t/ro");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&ro, t);
}

fn assert_read_only_tree(s: &Scene, peer: &str) {
    assert_eq!(
        s.read(peer, "t/ro/f").as_deref(),
        Some(&b"inside a read-only directory"[..]),
        "{peer}"
    );
    assert_eq!(mode(&s.path(peer, "t/ro")), 0o555, "{peer}");
    assert_eq!(
        s.read(peer, "t/.synk-notes.tmp").as_deref(),
        Some(&b"a user's notes"[..]),
        "{peer}"
    );
}

#[test]
fn a_read_only_directory_and_a_temp_like_name_reach_non_root_peers_by_either_copier() {
    let s = scene!("race-ro");
    read_only_tree(&s, LOCAL);
    // alpha takes rsync, delta (no rsync there) the streaming copier.
    let out = s.synk(&["alpha", "delta"], &[&s.arg("t")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in ["alpha", "delta"] {
        assert_read_only_tree(&s, p);
    }
    let out = s.synk(&["alpha", "delta"], &[os("-v"), &s.arg("t")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_nothing_done(&out);
    for p in [LOCAL, "alpha", "delta"] {
        let ro = s.path(p, "t/ro");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_client_that_is_not_root_fills_read_only_directories_too() {
    let s = scene!("race-ro-user");
    // beta is the client here, as its own user, with its own ssh configuration and key.
    read_only_tree(&s, "beta");
    let b = user("beta");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_synk"));
    cmd.uid(b.uid)
        .gid(b.gid)
        .env("HOME", &b.home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("RUST_LOG")
        .current_dir(&b.home)
        .stdin(Stdio::null())
        .args(["-p", &s.rig.port.to_string(), "-h", &s.host("alpha")])
        .args(["-p", &s.rig.port.to_string(), "-h", &s.host("delta")])
        .arg(s.path("beta", "t"));
    let out = s.run(cmd, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for p in ["alpha", "delta"] {
        assert_read_only_tree(&s, p);
        assert_eq!(
            fs::metadata(s.path(p, "t/ro/f")).unwrap().uid(),
            user(p).uid,
            "{p}: written by its own user"
        );
    }
    for p in ["beta", "alpha", "delta"] {
        fs::set_permissions(s.path(p, "t/ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}
