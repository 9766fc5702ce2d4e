//! The executable zero-install sends runs on any x86_64 Linux, whatever its C library: it is
//! static, asks the C library for no name-service lookup, and serves alone in an empty chroot.
//! A machine it cannot run on gets an error that says what to do, over a real sshd.

#[macro_use]
mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use sha2::Digest as _;
use synk::model::Kind;
use synk::paths::WirePath;
use synk::proto::{self, Request, Response, MAGIC, PROTOCOL_VERSION};

const SYNK: &str = env!("CARGO_BIN_EXE_synk");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where root is needed (chroot): false, after saying why, where the tests do not run as
/// root; under CI=true that is a failure.
fn as_root(what: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root, and CI is set"
    );
    eprintln!("skipping: {what} needs root");
    false
}

#[test]
fn the_executable_is_static_and_links_no_name_service_lookup() {
    // No program interpreter: the kernel runs it as it is, with no ld.so and no libc.so.
    let out = Command::new("readelf")
        .args(["--program-headers", "--wide", SYNK])
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success(), "{out:?}");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(headers.contains("LOAD"), "{headers}");
    assert!(
        !headers.contains("INTERP"),
        "dynamically linked:\n{headers}"
    );
    // Static glibc can only do NSS lookups with the shared libraries of the glibc it was
    // built with: no lookup may be linked in (home and owners come from /etc/passwd itself).
    // glibc's fork links some of the NSS machinery for its own bookkeeping; what matters is
    // that nothing can call into it.
    let out = Command::new("nm")
        .arg(SYNK)
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success(), "{out:?}");
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(symbols.lines().count() > 1000, "a stripped executable?");
    let lookups = [
        "getpwuid",
        "getpwuid_r",
        "getpwnam",
        "getpwnam_r",
        "getpwent",
        "getgrgid",
        "getgrgid_r",
        "getgrnam",
        "getgrnam_r",
        "getgrent",
        "getgrouplist",
        "initgroups",
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_r",
        "getservbyname",
    ];
    let found: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|name| lookups.contains(&name.trim_start_matches('_')))
        .collect();
    assert!(
        found.is_empty(),
        "name-service lookups linked in: {found:?}"
    );
}

#[test]
fn the_executable_runs_and_serves_alone_in_an_empty_chroot() {
    if !as_root("chroot") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("synk-chroot-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = dir.path();
    fs::copy(SYNK, root.join("synk")).unwrap();
    let chroot_exe = which::which("chroot").expect("chroot (coreutils)");
    let chroot = |args: &[&str]| {
        let mut cmd = Command::new(&chroot_exe);
        cmd.arg(root).arg("/synk").args(args).env_clear();
        cmd
    };
    // Nothing but the executable: no libc, no loader, no /dev, /etc or /proc.
    let out = chroot(&["--version"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), format!("synk {VERSION}\n"));

    // A serve there, with no HOME: its home comes from the chroot's own /etc/passwd, its key
    // from getrandom (there is no /dev/urandom), and it scans and hashes a tree.
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nroot:x:0:0:root:/the-home:/bin/sh\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("the-home/notes")).unwrap();
    fs::write(root.join("the-home/notes/f"), "scanned in a chroot").unwrap();
    let mut child = chroot(&["--serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = proto::encode(&Request::Hello {
        magic: MAGIC,
        protocol: PROTOCOL_VERSION,
        version: VERSION.into(),
    })
    .unwrap();
    input.extend(proto::encode(&scan_home("notes")).unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut r = &out.stdout[..];
    match proto::read_frame(&mut r).unwrap() {
        Response::Hello {
            magic,
            protocol,
            version,
            rsync,
            home,
        } => {
            assert_eq!((magic, protocol), (MAGIC, PROTOCOL_VERSION));
            assert_eq!(version, VERSION);
            assert!(!rsync, "no rsync in the chroot");
            assert_eq!(home, WirePath(b"/the-home".to_vec()));
        }
        other => panic!("not a handshake: {other:?}"),
    }
    let mut entries = Vec::new();
    loop {
        match proto::read_frame(&mut r).unwrap() {
            Response::Entries(es) => entries.extend(es),
            Response::ScanDone => break,
            _ => {}
        }
    }
    let f = entries
        .iter()
        .find(|e| e.rel.0 == b"f")
        .unwrap_or_else(|| panic!("f not scanned: {entries:?}"));
    let meta = f.state.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(meta.kind, Kind::File);
    assert_eq!(
        meta.digest.as_ref().unwrap().0[..],
        sha2::Sha512::digest(b"scanned in a chroot")[..]
    );
    let key = fs::read_to_string(root.join("the-home/.local/state/synk/key")).unwrap();
    assert!(u64::from_str_radix(key.trim(), 16).unwrap() != 0, "{key}");
    assert!(!root.join("dev").exists());
}

/// The copy synk would install in a peer's cache.
fn cached_copy(peer: &str) -> std::path::PathBuf {
    user(peer)
        .home
        .join(".cache/synk/bin")
        .join(format!("synk-{VERSION}"))
}

#[test]
fn a_machine_synk_cannot_run_on_is_named_with_the_way_out() {
    let s = scene!("other-machine");
    s.write(LOCAL, "f", "for every machine", now() - 5);
    let out = s.synk(&["kappa", "alpha"], &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    let ours = synk::install::local_platform();
    assert!(
        e.contains(&format!(
            "{}: cannot install synk there: it is a {KAPPA_PLATFORM} machine (uname -sm) and this synk runs on {ours} only",
            s.shown("kappa")
        )),
        "{e}"
    );
    assert!(
        e.contains("build synk on that host") && e.contains("--synk-path"),
        "{e}"
    );
    assert!(!cached_copy("kappa").exists(), "nothing sent");
    assert!(
        !user("kappa").home.join(".cache/synk/bin").exists(),
        "no temp file either"
    );
    assert!(s.read("kappa", "f").is_none());
    assert_eq!(s.read("alpha", "f").unwrap(), b"for every machine");

    // The way out: a synk built there, named with --synk-path (here the same executable,
    // standing in for one built for the machine).
    let built = s.path("kappa", "built/synk");
    fs::create_dir_all(built.parent().unwrap()).unwrap();
    fs::copy(SYNK, &built).unwrap();
    s.own("kappa", &built);
    let named = format!("~/t-{}/built/synk", s.name);
    let out = s.synk(
        &["kappa"],
        &[os("-v"), os("--synk-path"), os(&named), &s.arg("f")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("installed synk"), "{}", stdout(&out));
    assert_same_everywhere(&s, &[LOCAL, "kappa"], "f");
    assert!(!cached_copy("kappa").exists());
    assert_eq!(
        sha512(&built),
        sha512(Path::new(SYNK)),
        "used, not replaced"
    );
}
