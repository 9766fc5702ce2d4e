//! Bad bytes, unmounted disks and runs at once, end to end over a real sshd: a damaged state
//! file is moved aside and warned of, a torn versions index loses no version, a mount point
//! inside a tree that is unmounted deletes nothing, and two runs on one root take turns.

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use synk::model::Digest;

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// A peer's sync state directory.
fn state_dir(s: &Scene, peer: &str) -> PathBuf {
    s.home(peer).join(".local/state/synk")
}

/// The state file of `t-NAME/REL` on a peer.
fn state_file(s: &Scene, peer: &str, rel: &str) -> PathBuf {
    synk::state::file_for(&state_dir(s, peer), &s.path(peer, rel))
}

/// The files beside `file` that it was moved aside to.
fn moved_aside(file: &Path) -> Vec<PathBuf> {
    let name = format!("{}.corrupt-", file.file_name().unwrap().to_string_lossy());
    fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .collect()
}

/// The `synk: warning:` lines of a run.
fn warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("synk: warning:"))
        .map(String::from)
        .collect()
}

#[test]
fn a_damaged_state_file_is_moved_aside_warned_of_once_and_nothing_is_lost() {
    let s = scene!("sv-state");
    let t = now() - 1000;
    s.write(LOCAL, "d/a", "a1", t);
    s.write(LOCAL, "d/b", "b1", t);
    s.write(LOCAL, "d/sub/c", "c1", t);
    let peers = ["alpha", "beta"];
    ok(&s.synk(&peers, &[&s.arg("d")]));
    // beta's user edits b; then one bit of beta's state file flips.
    s.write("beta", "d/b", "b2 from beta", t + 500);
    let file = state_file(&s, "beta", "d");
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    fs::write(&file, &bytes).unwrap();

    // With no history on beta, its edit cannot be told from an old copy: it keeps the name
    // (the newest), and the version it replaces is kept beside it as a conflict copy.
    let out = s.synk(&peers, &[&s.arg("d")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Said once, naming the peer and the file; the file kept beside, as it was.
    let said = warnings(&out);
    assert_eq!(said.len(), 1, "{}", stderr(&out));
    assert!(said[0].contains(&s.shown("beta")), "{}", said[0]);
    assert!(said[0].contains(&file.display().to_string()), "{}", said[0]);
    let aside = moved_aside(&file);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        said[0].contains(&aside[0].display().to_string()),
        "{}",
        said[0]
    );
    assert_eq!(fs::read(&aside[0]).unwrap(), bytes);
    // Nothing lost, nothing deleted.
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/a").unwrap(), b"a1", "{p}");
        assert_eq!(s.read(p, "d/b").unwrap(), b"b2 from beta", "{p}");
        assert_eq!(s.read(p, "d/sub/c").unwrap(), b"c1", "{p}");
        let copies: Vec<Vec<u8>> = fs::read_dir(s.path(p, "d"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.to_string_lossy().contains("b.synk-conflict-"))
            .map(|f| fs::read(f).unwrap())
            .collect();
        assert_eq!(copies, [b"b1".to_vec()], "{p}");
    }
    // beta has a sound state again: the next run is quiet, and a deletion is one again.
    let out = s.synk(&peers, &[os("-v"), &s.arg("d")]);
    ok(&out);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_nothing_done(&out);
    fs::remove_file(s.path("alpha", "d/a")).unwrap();
    ok(&s.synk(&peers, &[&s.arg("d")]));
    for p in [LOCAL, "beta"] {
        assert!(s.read(p, "d/a").is_none(), "d/a still on {p}");
    }
    assert_eq!(moved_aside(&file).len(), 1);
}

/// Short digests of the versions of `t-NAME/REL` that `--versions` lists for `peer`.
fn versions_listed(s: &Scene, peers: &[&str], peer: &str, rel: &str) -> Vec<String> {
    let out = s.synk(peers, &[os("--versions"), &s.arg(rel)]);
    ok(&out);
    let prefix = format!("{}\t", s.shown(peer));
    stdout(&out)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.split('\t').nth(3).unwrap().to_string())
        .collect()
}

fn short(content: &str) -> String {
    Digest::of(content.as_bytes()).short()
}

#[test]
fn a_torn_versions_index_hides_no_version_and_pruning_keeps_the_newest() {
    let s = scene!("sv-versions");
    // gamma alone keeps versions in this file's tests: no other test writes its index now.
    let peers = ["gamma"];
    let t = now() - 10_000;
    for i in 0..4 {
        s.write(LOCAL, "d/f", format!("v{i}"), t + i * 100);
        ok(&s.synk(&peers, &[&s.arg("d")]));
    }
    let all = ["v0", "v1", "v2"].map(short).to_vec();
    assert_eq!(versions_listed(&s, &peers, "gamma", "d/f"), all);

    // Garble the second record and cut the third short, as a crash mid-append would.
    let index = state_dir(&s, "gamma").join("versions/index");
    let bytes = fs::read(&index).unwrap();
    let starts: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"SKv2")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 3, "one framed record per version");
    let mut bad = bytes.clone();
    bad[starts[1] + 20] ^= 0xff;
    bad.truncate(starts[2] + (bytes.len() - starts[2]) / 2);
    fs::write(&index, &bad).unwrap();

    // Every version is still listed (the two the index lost come back from their sidecars).
    assert_eq!(versions_listed(&s, &peers, "gamma", "d/f"), all);
    // The first prune rebuilds the index, says so, and drops nothing.
    let conf = s.local_home.join("keep-two.conf");
    fs::write(&conf, "keep-versions 2\n").unwrap();
    let with_conf = |extra: &[&std::ffi::OsStr]| {
        let mut args = vec![os("-f"), conf.as_os_str()];
        args.extend_from_slice(extra);
        s.synk(&peers, &args)
    };
    let out = with_conf(&[&s.arg("d")]);
    ok(&out);
    let said = warnings(&out);
    assert_eq!(said.len(), 1, "{}", stderr(&out));
    assert!(
        said[0].contains(&s.shown("gamma")) && said[0].contains("rebuilt"),
        "{}",
        said[0]
    );
    assert_eq!(versions_listed(&s, &peers, "gamma", "d/f"), all);
    // The next one prunes from the whole list: the newest two stay, the lost one among them.
    let out = with_conf(&[&s.arg("d")]);
    ok(&out);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(versions_listed(&s, &peers, "gamma", "d/f"), all[1..]);
    // And the newest kept version comes back everywhere.
    let out = with_conf(&[os("--restore"), &s.arg("d/f")]);
    ok(&out);
    for p in [LOCAL, "gamma"] {
        assert_eq!(s.read(p, "d/f").unwrap(), b"v2", "{p}");
    }
}

/// A tmpfs mounted at a path while alive (unmounted, lazily, when dropped).
struct Mounted(PathBuf);

impl Mounted {
    fn new(at: &Path) -> Mounted {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "synk-test"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", at.display());
        Mounted(at.to_path_buf())
    }

    fn unmount(&mut self) {
        let status = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "umount {}", self.0.display());
        self.0 = PathBuf::new();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[test]
fn a_disk_unmounted_inside_a_tree_deletes_nothing_until_confirmed() {
    let s = scene!("sv-mount");
    let t = now() - 1000;
    let peers = ["alpha", "beta"];
    s.write(LOCAL, "d/x", "x", t);
    let m = s.mkdir("alpha", "d/m");
    let mut disk = Mounted::new(&m);
    s.own("alpha", &m);
    s.write("alpha", "d/m/a", "on the disk", t);
    s.write("alpha", "d/m/sub/b", "on the disk too", t);
    ok(&s.synk(&peers, &[&s.arg("d")]));
    for p in [LOCAL, "beta"] {
        assert_eq!(s.read(p, "d/m/a").unwrap(), b"on the disk", "{p}");
    }

    // Unmounted: alpha's m is the empty directory below the mount. Each run says so, and
    // nothing is deleted anywhere, nor copied into alpha's empty m.
    disk.unmount();
    for _ in 0..2 {
        let out = s.synk(&peers, &[&s.arg("d")]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("was a mount point"))
            .unwrap_or_else(|| panic!("no error about the mount point: {err}"));
        assert!(
            line.starts_with(&format!("synk: {}: ", s.shown("alpha"))),
            "{line}"
        );
        assert!(line.contains(&m.display().to_string()), "{line}");
        assert!(line.contains("--confirm-empty"), "{line}");
        for p in [LOCAL, "beta"] {
            assert_eq!(s.read(p, "d/m/a").unwrap(), b"on the disk", "{p}");
            assert_eq!(s.read(p, "d/m/sub/b").unwrap(), b"on the disk too", "{p}");
        }
        assert_eq!(
            fs::read_dir(&m).unwrap().count(),
            0,
            "nothing copied into alpha's m"
        );
    }

    // Confirmed: the deletions go through, and are kept as versions.
    let out = s.synk(&peers, &[os("--confirm-empty"), &s.arg("d")]);
    ok(&out);
    for p in [LOCAL, "alpha", "beta"] {
        assert!(s.read(p, "d/m/a").is_none(), "d/m/a still on {p}");
        assert!(s.read(p, "d/m/sub/b").is_none(), "d/m/sub/b still on {p}");
        assert_eq!(s.read(p, "d/x").unwrap(), b"x", "{p}");
    }
    let listed = versions_listed(&s, &peers, "beta", "d/m/a");
    assert_eq!(listed, [short("on the disk")]);
    let out = s.synk(&peers, &[&s.arg("d")]);
    ok(&out);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// How many processes have `path` open.
fn holders(path: &Path) -> usize {
    let mut n = 0;
    for proc_dir in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).ok().as_deref() == Some(path))
        {
            n += 1;
        }
    }
    n
}

/// The lock file of `t-NAME/REL` on a peer.
fn lock_file(s: &Scene, peer: &str, rel: &str) -> PathBuf {
    let root = s.path(peer, rel);
    let d = Digest::of(root.as_os_str().as_encoded_bytes());
    state_dir(s, peer)
        .join("locks")
        .join(format!("{}.lock", &d.hex()[..32]))
}

/// Incompressible, reproducible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E3779B97F4A7C15 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// Starts a run that copies a 1.5 MB change of `d/big` at 150 KiB/s, and returns once it
/// holds its lock on alpha.
fn slow_run(s: &Scene, peers: &[&str], seed: u64) -> std::process::Child {
    s.write(
        LOCAL,
        "d/big",
        noise(1_500_000, seed),
        now() - 100 + seed as i64,
    );
    let mut cmd = s.command(peers);
    cmd.args([os("--bwlimit"), os("150K"), &s.arg("d")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let lock = lock_file(s, "alpha", "d");
    let started = Instant::now();
    while holders(&lock) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_second_run_on_the_same_root_waits_for_the_first() {
    let s = scene!("sv-lock");
    let peers = ["alpha", "beta"];
    s.write(LOCAL, "d/small", "s", now() - 1000);
    ok(&s.synk(&peers, &[&s.arg("d")]));

    // The second waits, says so, and then syncs.
    let first = slow_run(&s, &peers, 1);
    s.write("beta", "d/from-beta", "b", now() - 50);
    let started = Instant::now();
    let second = s.synk(&peers, &[&s.arg("d")]);
    let waited = started.elapsed();
    let first = first.wait_with_output().unwrap();
    ok(&first);
    ok(&second);
    let err = stderr(&second);
    let waiting: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("synk: waiting for another synk run on "))
        .collect();
    assert!(!waiting.is_empty(), "{err}");
    assert!(
        waiting.iter().all(|l| [LOCAL, "alpha", "beta"]
            .iter()
            .any(|p| l.ends_with(&format!(" at {}…", s.shown(p))))),
        "{err}"
    );
    assert!(waited > Duration::from_secs(2), "{waited:?}");
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/big").unwrap(), noise(1_500_000, 1), "{p}");
        assert_eq!(s.read(p, "d/from-beta").unwrap(), b"b", "{p}");
    }

    // Not freed within --lock-wait: the second fails, naming the peers and the root.
    let first = slow_run(&s, &peers, 2);
    let second = s.synk(&peers, &[os("--lock-wait"), os("1s"), &s.arg("d")]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let err = stderr(&second);
    let gave_up: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("still holds its lock after 1s (--lock-wait)"))
        .collect();
    assert!(!gave_up.is_empty(), "{err}");
    for l in &gave_up {
        let peer = [LOCAL, "alpha", "beta"]
            .into_iter()
            .find(|p| l.starts_with(&format!("synk: {}: ", s.shown(p))))
            .unwrap_or_else(|| panic!("names no peer: {l}"));
        assert!(l.contains(&s.path(peer, "d").display().to_string()), "{l}");
    }
    ok(&first.wait_with_output().unwrap());
    for p in [LOCAL, "alpha", "beta"] {
        assert_eq!(s.read(p, "d/big").unwrap(), noise(1_500_000, 2), "{p}");
    }
    // Nothing held once the runs are over.
    assert_eq!(holders(&lock_file(&s, "alpha", "d")), 0);
    let out = s.synk(&peers, &[&s.arg("d")]);
    ok(&out);
    assert!(!stderr(&out).contains("waiting"), "{}", stderr(&out));
}

/// A serve stopped by a signal (the local one on Ctrl-C) while it fills a read-only
/// directory gives that directory its mode and time back: one left writable would be taken
/// for a change by the next scan and spread to every peer.
#[test]
fn a_serve_stopped_while_filling_a_read_only_directory_narrows_it_again() {
    use std::io::{BufReader, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use synk::paths::WirePath;
    use synk::proto::{self, Request, Response, MAGIC, PROTOCOL_VERSION};
    let home = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = home.path().join("t/d");
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o500)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_synk"))
        .arg("--serve")
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mtime = 1_500_000_000_000_000_000;
    for req in [
        Request::Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scan_home("t"),
        Request::MakeDir {
            root: 0,
            rel: WirePath::from("d"),
            mode: 0o500,
            mtime,
        },
    ] {
        stdin.write_all(&proto::encode(&req).unwrap()).unwrap();
    }
    stdin.flush().unwrap();
    // Up to the answer to MakeDir: the directory is being filled now.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut scanned = false;
    loop {
        match proto::read_frame::<Response, _>(&mut out).unwrap() {
            Response::ScanDone => scanned = true,
            Response::Done if scanned => break,
            Response::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert_eq!(
        fs::metadata(&d).unwrap().mode() & 0o777,
        0o700,
        "writable meanwhile"
    );
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let md = fs::metadata(&d).unwrap();
    assert_eq!(md.mode() & 0o777, 0o500);
    assert_eq!(md.mtime(), 1_500_000_000);
    drop(stdin);
}
