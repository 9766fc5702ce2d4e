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
    assert!(stderr(&out).contains("nosuch.conf"), "{}", stderr(&out));
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
    assert!(stderr(&out).contains("over --max-size"), "{}", stderr(&out));
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
