//! Copies resumed where a run cut them: the partial data a killed run leaves in the target's
//! scratch directory, what the next run sends, and what it places. Over a real sshd (see
//! `common/mod.rs`).

#[macro_use]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The directory inside a scratch directory that keeps partial data.
const PARTIAL_DIR: &str = ".synk-scratch.0000000000000000";

/// The files anywhere below the scratch directories in `dir` or below it, with their sizes.
fn scratch_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(dir: &Path, inside: bool, out: &mut Vec<(PathBuf, u64)>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            let scratch = inside
                || e.file_name()
                    .to_string_lossy()
                    .starts_with(".synk-scratch.");
            if t.is_dir() {
                walk(&e.path(), scratch, out);
            } else if t.is_file() && inside {
                out.push((e.path(), e.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, false, &mut out);
    out.sort();
    out
}

/// Files in the partial directories of the scratch directories in `dir` or below it (the
/// streaming copier's in the scratch directory itself, rsync's beside each file it
/// receives), with their sizes.
fn partial_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = scratch_files(dir);
    out.retain(|(p, _)| p.parent().and_then(Path::file_name) == Some(PARTIAL_DIR.as_ref()));
    out
}

/// What a copy under way has received in the scratch directories in `dir`: partial files,
/// and rsync's temp files beside what it receives (`.big.XXXXXX`), with their sizes.
fn received(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = partial_files(dir);
    out.extend(scratch_files(dir).into_iter().filter(|(p, _)| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".big.")
    }));
    out
}

/// Bytes of the file `big`, a copy of which is cut once the target holds `at` of them.
const SIZE: usize = 48 << 20;

/// The name of the partial file of `big` each copier keeps: rsync's is the file's name, the
/// streaming copier's the digest of the version it is of.
fn partial_name(copier: &str, content: &[u8]) -> String {
    if copier == "rsync" {
        "big".into()
    } else {
        use sha2::Digest as _;
        hex(&sha2::Sha512::digest(content))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts syncing `big` (holding `content`) from this host to alpha with `copier` at a
/// limited rate and stops the client with SIGTERM once alpha's partial data passes `at`
/// bytes. Returns the partial file's size once the cut run's writers there are gone (its
/// serve, rsync's receiver) and that size holds.
fn cut(s: &Scene, copier: &str, content: &[u8], at: u64) -> u64 {
    cut_below(s, "big", "big", copier, content, at)
}

/// [`cut`], of the root `root` holding `big` at `file`.
fn cut_below(s: &Scene, root: &str, file: &str, copier: &str, content: &[u8], at: u64) -> u64 {
    let mut cmd = s.command(&["alpha"]);
    cmd.args(["--copier", copier, "--bwlimit", "16M"])
        .arg(s.arg(root))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !received(&s.dir("alpha")).iter().any(|(_, n)| *n >= at) {
        assert!(child.try_wait().unwrap().is_none(), "the copy ended first");
        assert!(Instant::now() < deadline, "the copy never got that far");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: a signal to the client this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(s.read("alpha", file), None, "nothing half-written in place");
    // rsync's receiver keeps what it received as the partial file, under the file's name;
    // the streaming copier's serve writes its partial file in place. Either may still be
    // writing for a moment after the client is gone: the size taken is the one they leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        let kept = partial_files(&s.dir("alpha"));
        let writers = users_of(&s.dir("alpha"));
        match &kept[..] {
            [(p, n)]
                if writers.is_empty()
                    && p.file_name().unwrap().to_string_lossy()
                        == partial_name(copier, content) =>
            {
                if last == Some(*n) {
                    return *n;
                }
                last = Some(*n);
            }
            _ => last = None,
        }
        assert!(
            Instant::now() < deadline,
            "no partial file kept: {kept:?}, still writing: {writers:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rerun described by `doc` sent no more than the bytes the cut run did not keep (`kept`
/// of them, of file `big`) and a megabyte, alpha holds `big` whole, and no partial data is left.
fn assert_resumed(s: &Scene, doc: &serde_json::Value, big: &Path, kept: u64, copier: &str) {
    assert_resumed_at(s, doc, "big", big, kept, copier)
}

/// [`assert_resumed`], of `big` at `file` on alpha.
fn assert_resumed_at(
    s: &Scene,
    doc: &serde_json::Value,
    file: &str,
    big: &Path,
    kept: u64,
    copier: &str,
) {
    let (sent, missing) = (literal(doc), SIZE as u64 - kept);
    eprintln!("{copier}: kept {kept}, missing {missing}, the rerun sent {sent}");
    assert!(
        sent <= missing + (1 << 20),
        "sent {sent} bytes for {missing} missing"
    );
    assert_eq!(sha512(&s.path("alpha", file)), sha512(big));
    assert_eq!(
        partial_files(&s.dir("alpha")),
        [],
        "the partial file goes once used"
    );
}

/// The bytes the run described by `doc` sent as they are.
fn literal(doc: &serde_json::Value) -> u64 {
    doc["roots"][0]["literal_bytes"].as_u64().unwrap()
}

fn json_run(s: &Scene, copier: &str, root: &str) -> serde_json::Value {
    let out = s.synk(
        &["alpha"],
        &[os("--json"), os("--copier"), os(copier), &s.arg(root)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Cuts a copy of a big file halfway with `copier`, reruns, and checks what the rerun sent
/// and what arrived.
fn resumes(name: &str, copier: &str) {
    let s = scene!(name);
    let t = now() - 100;
    let content = noise(SIZE, 11);
    let big = s.write(LOCAL, "big", &content, t);
    let kept = cut(&s, copier, &content, SIZE as u64 / 2);
    assert!(kept >= SIZE as u64 / 2 && kept < SIZE as u64, "{kept}");
    let doc = json_run(&s, copier, "big");
    // Kept anywhere else, the rerun did not take over the cut run's scratch directory.
    assert_resumed(&s, &doc, &big, kept, copier);
    let left: Vec<_> = fs::read_dir(s.dir("alpha"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["big"], "no scratch directory left");
}

#[test]
fn a_copy_cut_short_resumes_with_the_missing_bytes_only() {
    resumes("resume-rsync", "rsync");
}

/// rsync keeps a file's partial data in a partial directory beside where it receives the file
/// (relative: the receivers of rsync 3.4, and of the fixes backported to older releases, read
/// no basis by an absolute path), so a file deep in a directory root resumes too, and a file
/// of the same name elsewhere in the tree is not taken for it.
#[test]
fn a_copy_cut_short_deep_in_a_directory_resumes_from_the_partial_data_beside_it() {
    let s = scene!("resume-deep");
    let t = now() - 100;
    let content = noise(SIZE, 15);
    let big = s.write(LOCAL, "t/sub/big", &content, t);
    s.write(LOCAL, "t/big", b"another file of that name", t);
    let kept = cut_below(&s, "t", "t/sub/big", "rsync", &content, SIZE as u64 / 2);
    assert!(kept >= SIZE as u64 / 2 && kept < SIZE as u64, "{kept}");
    let files = partial_files(&s.dir("alpha"));
    let [(partial, _)] = &files[..] else {
        panic!("{files:?}")
    };
    assert!(
        partial.ends_with(Path::new("sub").join(PARTIAL_DIR).join("big")),
        "{partial:?}"
    );
    let doc = json_run(&s, "rsync", "t");
    assert_resumed_at(&s, &doc, "t/sub/big", &big, kept, "rsync");
    assert_eq!(
        s.read("alpha", "t/big").unwrap(),
        b"another file of that name"
    );
    assert_eq!(scratch_dirs(&s.path("alpha", "t")), Vec::<PathBuf>::new());
}

#[test]
fn a_streamed_copy_cut_short_resumes_with_the_missing_bytes_only() {
    resumes("resume-stream", "stream");
}

/// Cuts a copy with `copier`, changes the source, reruns: the new version arrives whole.
fn changed(name: &str, copier: &str) {
    let s = scene!(name);
    let t = now() - 100;
    let content = noise(SIZE, 12);
    s.write(LOCAL, "big", &content, t);
    let kept = cut(&s, copier, &content, SIZE as u64 / 3);
    assert!(kept >= SIZE as u64 / 3, "{kept}");
    // Another version of the same size: nothing of the partial data is of it.
    let big = s.write(LOCAL, "big", noise(SIZE, 13), t + 10);
    let doc = json_run(&s, copier, "big");
    assert!(literal(&doc) >= SIZE as u64 - (1 << 20), "{doc}");
    assert_eq!(sha512(&s.path("alpha", "big")), sha512(&big));
    if copier == "rsync" {
        assert_eq!(
            partial_files(&s.dir("alpha")),
            [],
            "the partial data is gone"
        );
    }
    // And in sync from here.
    assert_eq!(literal(&json_run(&s, copier, "big")), 0);
}

#[test]
fn a_source_changed_since_the_cut_arrives_whole_and_right() {
    changed("resume-changed", "rsync");
}

#[test]
fn a_streamed_source_changed_since_the_cut_arrives_whole_and_right() {
    changed("resume-changed-stream", "stream");
}

/// rsync's receiver on a target outlives the run cut short for a moment (sshd started it, not
/// the serve): it writes what it still holds, then renames its temp file to the partial file.
/// A rerun that starts meanwhile waits for that partial file and resumes from it: it neither
/// removes the temp file, the only copy of that data, nor sends the whole file.
#[test]
fn a_rerun_waits_for_the_receiver_of_the_cut_run_to_leave_its_partial_file() {
    let s = scene!("resume-late");
    let t = now() - 100;
    let content = noise(SIZE, 14);
    let big = s.write(LOCAL, "big", &content, t);
    let kept = cut(&s, "rsync", &content, SIZE as u64 / 2);
    // Back to what a receiver still at work has: its temp file beside what it receives in
    // the scratch directory, written to until it is renamed to the partial file.
    let files = partial_files(&s.dir("alpha"));
    let [(partial, _)] = &files[..] else {
        panic!("{files:?}")
    };
    let scratch = partial.parent().unwrap().parent().unwrap();
    let temp = scratch.join(".big.Ab12Cd");
    fs::rename(partial, &temp).unwrap();
    let receiver = std::thread::spawn({
        let (partial, temp) = (partial.clone(), temp.clone());
        move || {
            for _ in 0..8 {
                // A write moves the ctime, as this does.
                let f = fs::File::options().write(true).open(&temp).unwrap();
                f.set_modified(std::time::SystemTime::now()).unwrap();
                drop(f);
                std::thread::sleep(Duration::from_millis(200));
            }
            fs::rename(&temp, &partial).unwrap();
        }
    });
    let doc = json_run(&s, "rsync", "big");
    receiver
        .join()
        .expect("the receiver's temp file was removed under it");
    assert_resumed(&s, &doc, &big, kept, "rsync");
}
