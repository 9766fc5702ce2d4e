//! Reaching peers as `ssh` does (the user's ssh configuration, host-key policy, ProxyJump) and
//! zero-install peers (synk sends itself where it is missing or older), over a real sshd.

#[macro_use]
mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

/// An ssh_config for the client: `extra` first (first value wins), then the rig's key.
fn client_config(s: &Scene, file: &str, extra: &str) -> PathBuf {
    let key = s.rig.dir.join("id_ed25519");
    let p = s.local_home.join(file);
    fs::write(
        &p,
        format!(
            "{extra}\nHost *\n    IdentityFile {}\n    IdentitiesOnly yes\n    BatchMode yes\n    LogLevel ERROR\n",
            key.display()
        ),
    )
    .unwrap();
    p
}

/// The copy synk installed in a peer's cache.
fn cached_copy(peer: &str) -> PathBuf {
    user(peer)
        .home
        .join(".cache/synk/bin")
        .join(format!("synk-{}", env!("CARGO_PKG_VERSION")))
}

/// No known_hosts at all: only the user's own host-key policy lets a connection through.
const LAX_KEYS: &str = "Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null";

/// Syncs a new file to alpha and beta under a client ssh_config that starts with `extra`.
fn syncs_under_config(s: &Scene, extra: &str) {
    s.write(LOCAL, "f", "configured", now() - 5);
    let cfg = client_config(s, "user_config", extra);
    let out = s.run(s.command_with(&cfg, &["alpha", "beta"]), &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same_everywhere(s, &[LOCAL, "alpha", "beta"], "f");
}

#[test]
fn a_config_without_host_key_checking_is_obeyed() {
    let s = scene!("lax-keys");
    syncs_under_config(&s, LAX_KEYS);
}

#[test]
fn an_unknown_host_key_under_a_strict_policy_names_the_peer_and_the_others_sync() {
    let s = scene!("strict-keys");
    s.write(LOCAL, "f", "strict", now() - 5);
    let known = s.rig.dir.join("known_hosts");
    let cfg = client_config(
        &s,
        "strict_config",
        &format!(
            "Match user synkt-beta\n    UserKnownHostsFile /dev/null\nHost *\n    StrictHostKeyChecking yes\n    UserKnownHostsFile {}",
            known.display()
        ),
    );
    let out = s.run(s.command_with(&cfg, &["alpha", "beta"]), &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains(&s.shown("beta")), "{e}");
    assert!(e.contains("host key"), "{e}");
    assert!(
        e.contains(&format!(
            "`ssh -p {} synkt-beta@127.0.0.1` once",
            s.rig.port
        )),
        "{e}"
    );
    assert_eq!(s.read("alpha", "f").unwrap(), b"strict");
    assert!(s.read("beta", "f").is_none());
}

#[test]
fn a_peer_behind_a_proxy_jump_is_reached_through_it() {
    let s = scene!("jump");
    s.write(LOCAL, "f", "jumped", now() - 5);
    let known = s.rig.dir.join("known_hosts");
    let jump = |via: &str| {
        format!(
            "Match user synkt-gamma\n    ProxyJump {via}\nHost *\n    StrictHostKeyChecking yes\n    UserKnownHostsFile {}",
            known.display()
        )
    };
    // A jump host that cannot be reached: gamma fails, which shows the jump is taken.
    let dead = client_config(&s, "dead_jump", &jump("synkt-alpha@127.0.0.1:1"));
    let out = s.run(s.command_with(&dead, &["alpha", "gamma"]), &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&s.shown("gamma")), "{}", stderr(&out));
    assert!(s.read("gamma", "f").is_none());
    let cfg = client_config(
        &s,
        "jump",
        &jump(&format!("synkt-alpha@127.0.0.1:{}", s.rig.port)),
    );
    let out = s.run(s.command_with(&cfg, &["alpha", "gamma"]), &[&s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same_everywhere(&s, &[LOCAL, "alpha", "gamma"], "f");
}

#[test]
fn a_remote_command_in_the_users_config_does_not_stop_the_serve_or_rsync() {
    let s = scene!("remote-command");
    // For the user's interactive logins; ssh refuses a command line where one is set.
    let logins = "Host 127.0.0.1\n    RemoteCommand echo hijacked\n    RequestTTY yes";
    syncs_under_config(&s, &format!("{logins}\n{LAX_KEYS}"));
}

#[test]
fn extra_ssh_options_pass_through_unchanged() {
    let s = scene!("ssh-option");
    s.write(LOCAL, "f", "opt", now() - 5);
    // Only the -o option points ssh at a known_hosts file that knows the rig's key.
    let cfg = client_config(&s, "bare", "Host *\n    StrictHostKeyChecking yes");
    let known = format!(
        "UserKnownHostsFile={}",
        s.rig.dir.join("known_hosts").display()
    );
    let out = s.run(s.command_with(&cfg, &["alpha"]), &[&s.arg("f")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no known key without the option"
    );
    let out = s.run(
        s.command_with(&cfg, &["alpha"]),
        &[os("-o"), os(&known), &s.arg("f")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same_everywhere(&s, &[LOCAL, "alpha"], "f");
}

/// The client command with its ssh control sockets in a runtime directory of its own.
fn command_in(s: &Scene, runtime: &std::path::Path, peers: &[&str]) -> std::process::Command {
    fs::create_dir_all(runtime).unwrap();
    let mut cmd = s.command(peers);
    cmd.env("XDG_RUNTIME_DIR", runtime);
    cmd
}

/// Once a run is over, no ssh connection of it is left: no control directory in `runtime`,
/// no process naming one (a master told to exit may take a moment to go).
fn assert_no_connection_left(runtime: &std::path::Path) {
    let needle = runtime.to_string_lossy().into_owned();
    let mut left = Vec::new();
    for _ in 0..30 {
        left = fs::read_dir(runtime)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        for p in fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                left.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
            }
        }
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("left behind: {left:?}");
}

#[test]
fn synk_installs_itself_on_a_peer_without_it_and_reuses_the_copy() {
    let s = scene!("install");
    let runtime = s.local_home.join("runtime");
    s.write(LOCAL, "f", "installed", now() - 5);
    let cmd = command_in(&s, &runtime, &["zeta", "alpha"]);
    let out = s.run(cmd, &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Neither the master that carried the install nor the ones that ran the serves is left.
    assert_no_connection_left(&runtime);
    let said = stdout(&out);
    assert!(
        said.contains(&format!("{}: installed synk", s.shown("zeta"))),
        "{said}"
    );
    let copy = cached_copy("zeta");
    assert_eq!(
        sha512(&copy),
        sha512(std::path::Path::new(env!("CARGO_BIN_EXE_synk")))
    );
    assert_eq!(mode(&copy) & 0o111, 0o111, "executable");
    assert_same_everywhere(&s, &[LOCAL, "zeta", "alpha"], "f");
    let before = (inode(&copy), mtime(&copy));
    let leftovers: Vec<_> = fs::read_dir(copy.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the copy, no temp files");

    s.write(LOCAL, "f", "second run", now() - 2);
    let cmd = command_in(&s, &runtime, &["zeta", "alpha"]);
    let out = s.run(cmd, &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_connection_left(&runtime);
    assert!(!stdout(&out).contains("installed synk"), "{}", stdout(&out));
    assert_eq!(
        (inode(&copy), mtime(&copy)),
        before,
        "reused, not sent again"
    );
    assert_eq!(s.read("zeta", "f").unwrap(), b"second run");
}

#[test]
fn an_older_synk_on_a_peer_is_upgraded() {
    let s = scene!("upgrade");
    s.write(LOCAL, "f", "upgraded", now() - 5);
    let out = s.synk(&["theta"], &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "{}: upgraded synk 0.0.1 to {}",
            s.shown("theta"),
            env!("CARGO_PKG_VERSION")
        )),
        "{said}"
    );
    assert_same_everywhere(&s, &[LOCAL, "theta"], "f");
    let out = s.synk(&["theta"], &[os("-v"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("synk 0.0.1"), "{}", stdout(&out));
}

#[test]
fn no_install_leaves_a_peer_without_synk_alone_and_says_so() {
    let s = scene!("no-install");
    s.write(LOCAL, "f", "x", now() - 5);
    let out = s.synk(&["iota", "alpha"], &[os("--no-install"), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "synk not found on {}: install it or put it in PATH (or drop --no-install",
            s.shown("iota")
        )),
        "{e}"
    );
    assert_eq!(s.read("alpha", "f").unwrap(), b"x", "the others still sync");
    assert!(!cached_copy("iota").exists());

    // The same from synk.conf.
    let conf = s.local_home.join("synk.conf");
    fs::write(&conf, "no-install\n").unwrap();
    let out = s.synk(&["iota"], &[os("-f"), conf.as_os_str(), &s.arg("f")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--no-install"), "{}", stderr(&out));
    assert!(!cached_copy("iota").exists());
}

#[test]
fn a_named_synk_path_is_where_synk_runs_and_installs() {
    let s = scene!("synk-path");
    s.write(LOCAL, "f", "named", now() - 5);
    let named = format!("~/t-{}/tools/synk", s.name);
    let out = s.synk(
        &["iota"],
        &[os("-v"), os("--synk-path"), os(&named), &s.arg("f")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let at = s.path("iota", "tools/synk");
    assert!(
        stdout(&out).contains(&format!("at {}", at.display())),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sha512(&at),
        sha512(std::path::Path::new(env!("CARGO_BIN_EXE_synk")))
    );
    assert_same_everywhere(&s, &[LOCAL, "iota"], "f");
    assert!(!cached_copy("iota").exists(), "not in the cache");
}

/// The older synk of the tests and of the docker rig answers with this recorded frame.
fn old_hello() -> synk::proto::Response {
    synk::proto::Response::Hello {
        magic: synk::proto::MAGIC,
        protocol: 0,
        version: "0.0.1".into(),
        rsync: true,
        home: synk::paths::WirePath(b"/nowhere".to_vec()),
    }
}

#[test]
fn the_recorded_older_synk_speaks_an_older_protocol() {
    let bytes = fs::read(OLD_HELLO).unwrap();
    let again = "re-record: cargo test --test reach record_the_older_synk -- --ignored";
    let got: synk::proto::Response = synk::proto::read_frame(&mut &bytes[..]).expect(again);
    match got {
        synk::proto::Response::Hello {
            magic,
            protocol,
            version,
            ..
        } => {
            assert_eq!(magic, synk::proto::MAGIC, "{again}");
            assert!(protocol < synk::proto::PROTOCOL_VERSION, "{again}");
            assert_eq!(version, "0.0.1", "{again}");
        }
        other => panic!("{other:?}: {again}"),
    }
}

/// Writes `tests/e2e/old-hello.bin` again (after a change to the handshake's shape).
#[test]
#[ignore]
fn record_the_older_synk() {
    fs::write(OLD_HELLO, synk::proto::encode(&old_hello()).unwrap()).unwrap();
}

/// A client `PATH` whose `ssh` logs its arguments, one run per line, to `log`, then runs ssh.
fn logging_ssh(s: &Scene, log: &std::path::Path) -> std::ffi::OsString {
    let bin = s.local_home.join("logging-bin");
    fs::create_dir_all(&bin).unwrap();
    let real = which::which("ssh").unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    let ssh = bin.join("ssh");
    fs::write(&ssh, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[test]
fn aes_gcm_is_offered_first_only_where_no_configuration_sets_the_ciphers() {
    let s = scene!("ciphers");
    // Offered where ssh -G shows one of OpenSSH's built-in lists and the CPU has AES.
    let flags = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    let builtin = [
        "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr",
    ];
    let shown = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-G", "example.invalid"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let default_list = shown
        .lines()
        .find_map(|l| l.strip_prefix("ciphers "))
        .is_some_and(|c| builtin.contains(&c));
    let aes = default_list && ((has("aes") && has("pclmulqdq")) || (has("aes") && has("pmull")));
    let cases = [
        ("default", String::new(), aes),
        ("chosen", "\n    Ciphers aes256-ctr".to_string(), false),
    ];
    for (name, extra, offered) in cases {
        s.write(LOCAL, name, name, now() - 5);
        let cfg = client_config(&s, name, &format!("{LAX_KEYS}{extra}"));
        let log = s.local_home.join(format!("{name}.ssh-args"));
        let mut cmd = s.command_with(&cfg, &["alpha"]);
        cmd.env("PATH", logging_ssh(&s, &log));
        let out = s.run(cmd, &[&s.arg(name)]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert_same_everywhere(&s, &[LOCAL, "alpha"], name);
        let args = fs::read_to_string(&log).unwrap();
        let master = args.lines().find(|l| l.contains(" -M ")).unwrap();
        assert_eq!(
            master.contains("-o Ciphers=aes128-gcm@openssh.com,"),
            offered,
            "{name}: {master}"
        );
        // Never more than one Ciphers, and never where the user set one.
        assert!(args.matches("Ciphers=").count() <= 1, "{name}: {args}");
    }
}
