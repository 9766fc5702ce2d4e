//! Reaching a peer over SSH exactly as `ssh -o BatchMode=yes HOST` would.
//!
//! synk starts one ssh ControlMaster per peer that itself runs `synk --serve` (one process and
//! one session for the conversation; the master goes when the serve ends), and runs every
//! other command, rsync above all, through its control socket. Where synk must be installed
//! first, a master without a command ([`connect`]) carries the install and then the serve.
//! synk adds only what a non-interactive multiplexed session needs (`-M -S`, `BatchMode`, and
//! a connect timeout or keep-alive where the user's configuration sets none), and, where no
//! configuration sets `Ciphers` and this CPU has AES instructions, OpenSSH's own default
//! ciphers with AES-GCM first; everything else, the host-key policy above all, comes from the
//! user's ssh configuration (`~/.ssh/config`, `-F`, `Include`, `Match`, `ProxyJump`, …) and
//! the `-o` options given to synk.

mod effective;
mod silence;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use openssh::Session;
use tempfile::TempDir;
use tokio::process::Command;

use crate::config::PeerSpec;

pub use effective::{effective, Effective, Lookup};

/// Seconds ssh may take to connect where the user's configuration sets no `ConnectTimeout`:
/// a dead host is reported in seconds, not after TCP's minutes.
pub const CONNECT_TIMEOUT: u64 = 10;

/// OpenSSH's built-in cipher preferences (6.9 to 9.x, and 10.0 on), as `ssh -G` shows them
/// where no configuration (the user's, the system's, a crypto policy) sets `Ciphers`.
const OPENSSH_CIPHERS: [&str; 2] = [
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr",
];
/// The same ciphers with AES-GCM first. Where the CPU has AES instructions, AES-GCM costs a
/// fraction of ChaCha20-Poly1305's CPU per byte, and a bulk copy over a fast link is bound by
/// that cost. Only the order differs, so any server the default reaches accepts it.
const AES_FIRST_CIPHERS: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// The `Ciphers` synk offers, given the value `ssh -G` reports: AES-GCM first where that
/// value is one of OpenSSH's built-in defaults and `aes` (this CPU has AES instructions);
/// `None`, leaving ssh's choice alone, otherwise.
pub fn cipher_order(configured: &str, aes: bool) -> Option<&'static str> {
    (aes && OPENSSH_CIPHERS.contains(&configured)).then_some(AES_FIRST_CIPHERS)
}

/// Whether this CPU encrypts AES-GCM in hardware.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// How this host's ssh is to be run: the user's choices, passed through unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshOptions {
    /// ssh_config file (`ssh -F`).
    pub config: Option<PathBuf>,
    /// Extra `-o OPTION` values, in order.
    pub options: Vec<String>,
}

impl SshOptions {
    /// The user's arguments for any ssh this host starts to `spec`: `-F`, every `-o`, then the
    /// port and login name the peer was given with.
    pub fn args(&self, spec: &PeerSpec) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(cfg) = &self.config {
            a.push("-F".into());
            a.push(cfg.into());
        }
        for o in &self.options {
            a.push("-o".into());
            a.push(o.into());
        }
        if let Some(port) = spec.port {
            a.push("-p".into());
            a.push(port.to_string().into());
        }
        if let Some(user) = &spec.user {
            a.push("-l".into());
            a.push(user.into());
        }
        a
    }
}

/// The arguments of a background master connection (no command), up to the destination.
pub fn master_args(
    dir: &Path,
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
) -> Vec<OsString> {
    // Idle for a minute once a run is done (or was killed): then the master goes too.
    let mut a: Vec<OsString> = vec!["-f".into(), "-N".into()];
    a.extend(common_args(dir, spec, opts, eff, "ControlPersist=60"));
    a
}

/// The arguments of a master connection that runs `command` on its own session, in the
/// foreground: it ends when the command has ended and no multiplexed session is left.
pub fn serving_args(
    dir: &Path,
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
    command: &str,
) -> Vec<OsString> {
    // ControlPersist=no: a persisting master would detach and outlive the run.
    let mut a: Vec<OsString> = vec!["-T".into()];
    if eff.remote_command {
        // One in the user's configuration (for their logins) would make ssh refuse ours.
        a.extend(["-o".into(), "RemoteCommand=none".into()]);
    }
    a.extend(common_args(dir, spec, opts, eff, "ControlPersist=no"));
    a.push(command.into());
    a
}

/// What both kinds of master share, up to the destination.
fn common_args(
    dir: &Path,
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
    persist: &str,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "-E".into(),
        dir.join("log").into(),
        "-S".into(),
        dir.join("master").into(),
        "-M".into(),
        "-o".into(),
        persist.into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ];
    // The user's values come first: for ssh the first value given for an option wins.
    a.extend(opts.args(spec));
    if eff.connect_timeout.is_none() {
        a.extend([
            "-o".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT}").into(),
        ]);
    }
    if !eff.server_alive {
        a.extend(["-o".into(), "ServerAliveInterval=5".into()]);
    }
    if let Some(ciphers) = cipher_order(&eff.ciphers, aes_in_hardware()) {
        a.extend(["-o".into(), format!("Ciphers={ciphers}").into()]);
    }
    a.push("--".into());
    a.push(spec.host.clone().into());
    a
}

/// Opens an SSH connection to `spec` that every later command and rsync reuses, and that
/// lives until the session is closed (or a minute after this process is gone).
pub async fn connect(
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
) -> Result<(Session, crate::stop::Registered)> {
    let dir = control_tempdir()?;
    let registered = crate::stop::master(dir.path());
    let status = Command::new("ssh")
        .args(master_args(dir.path(), spec, opts, eff))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .context("cannot run ssh (is OpenSSH's client installed?)")?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        return Err(anyhow!("{}", ssh_says(&explain(&log, spec, eff))));
    }
    Ok((Session::new_process_mux(dir), registered))
}

/// A master connection started by [`serve`]: the ssh process, whose stdio is the command's,
/// and the session other commands reach it through while it runs.
pub struct Serving {
    /// The ssh process.
    pub child: tokio::process::Child,
    /// Runs commands through the master's control socket (and never stops the master).
    pub session: Session,
    /// Holds the control socket and ssh's log; removed when dropped.
    pub dir: TempDir,
}

/// ssh's own account of a failed connection of the master in `dir`, if it gave one (it says
/// nothing when the connection was fine and only the command failed).
pub fn failure(dir: &Path, spec: &PeerSpec, eff: &Effective) -> Option<String> {
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    (!one_line(&log).is_empty()).then(|| ssh_says(&explain(&log, spec, eff)))
}

/// Connects to `spec` and runs `command` there on the master's own session, with piped stdio.
/// Readiness shows as the command's first output; a failed connection as ssh's exit.
pub fn serve(
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
    command: &str,
) -> Result<Serving> {
    let dir = control_tempdir()?;
    let child = Command::new("ssh")
        .args(serving_args(dir.path(), spec, opts, eff, command))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // Out of the terminal's process group: Ctrl-C is the client's to handle (under
        // --every it lets the current run finish), not a cut of every peer's connection.
        .process_group(0)
        .spawn()
        .context("cannot run ssh (is OpenSSH's client installed?)")?;
    let session = Session::resume(
        dir.path().join("master").into_boxed_path(),
        Some(dir.path().join("log").into_boxed_path()),
    );
    Ok(Serving {
        child,
        session,
        dir,
    })
}

/// A private directory for one master's control socket and log.
fn control_tempdir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(".synk-ssh-")
        .tempdir_in(control_dir())
        .context("cannot create a directory for the ssh control socket")
}

/// Where control sockets go: a private runtime directory where there is one. Socket paths are
/// limited to about 100 bytes, so never below a deep home.
fn control_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// ssh's own words, with advice where the fix is known.
pub fn explain(log: &str, spec: &PeerSpec, eff: &Effective) -> String {
    let text = one_line(log);
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        // Accepting it again does not do: the old key must go first. ssh's banner is long;
        // its line that names the host says what matters.
        let said = log
            .lines()
            .find(|l| l.contains("Host key for") || l.contains("key for"))
            .map_or("REMOTE HOST IDENTIFICATION HAS CHANGED", str::trim);
        let known = match spec.port {
            Some(p) => format!("'[{}]:{p}'", spec.host),
            None => spec.host.clone(),
        };
        let port = spec.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        return format!(
            "ssh: {said}: the host key is not the one ~/.ssh/known_hosts holds for it; if the host was reinstalled, check its new key, remove the old one with `ssh-keygen -R {known}` and accept the new one with `ssh{port} {}` once",
            spec.destination()
        );
    }
    let unknown_key =
        log.contains("host key is known for") || log.contains("Host key verification failed");
    if unknown_key {
        let dest = spec.destination();
        let port = spec.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        return format!(
            "{text} (StrictHostKeyChecking {}): check the key and accept it with `ssh{port} {dest}` once, or add it to ~/.ssh/known_hosts",
            eff.strict_host_keys
        );
    }
    if log.contains("Permission denied (") {
        let dest = spec.destination();
        let port = spec.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        return format!(
            "{}: synk needs a login without a prompt, with a key or an agent, as `ssh -o BatchMode=yes{port} {dest} true` shows (ssh-copy-id{port} {dest}, or ssh-add)",
            text.trim_end_matches('.')
        );
    }
    if text.is_empty() {
        "connection failed".into()
    } else {
        text
    }
}

/// ssh's words as synk tells them, `ssh: …`, once: ssh starts many of its messages with
/// `ssh: ` itself.
pub fn ssh_says(text: &str) -> String {
    if text.starts_with("ssh: ") {
        text.to_string()
    } else {
        format!("ssh: {text}")
    }
}

/// Joins ssh's message lines, dropping the noise of warnings about added keys.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str, port: Option<u16>) -> PeerSpec {
        PeerSpec::parse(s, port).unwrap()
    }

    #[test]
    fn user_options_come_before_synk_defaults_and_no_host_key_policy_is_imposed() {
        let opts = SshOptions {
            config: Some("/etc/my ssh".into()),
            options: vec!["ConnectTimeout=3".into(), "ProxyJump=gw".into()],
        };
        let eff = Effective::parse("connecttimeout 3\nserveraliveinterval 0\n");
        let args: Vec<String> =
            master_args(Path::new("/r"), &spec("bob@beta", Some(2222)), &opts, &eff)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect();
        let joined = args.join(" ");
        assert!(
            joined.ends_with(
                "-F /etc/my ssh -o ConnectTimeout=3 -o ProxyJump=gw -p 2222 -l bob -o ServerAliveInterval=5 -- beta"
            ),
            "{joined}"
        );
        assert!(!joined.contains("StrictHostKeyChecking"), "{joined}");
        assert!(!joined.contains("UserKnownHostsFile"), "{joined}");
        assert_eq!(joined.matches("ConnectTimeout").count(), 1, "{joined}");
    }

    #[test]
    fn a_serving_master_runs_the_command_in_the_foreground_and_does_not_persist() {
        let opts = SshOptions {
            config: None,
            options: vec!["ControlPersist=yes".into()],
        };
        let eff =
            Effective::parse("connecttimeout 5\nserveraliveinterval 30\nremotecommand tmux\n");
        let args: Vec<String> = serving_args(
            Path::new("/r"),
            &spec("beta", None),
            &opts,
            &eff,
            "sh -c 'exec synk --serve'",
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
        let joined = args.join(" ");
        assert!(!args.iter().any(|a| a == "-f" || a == "-N"), "{joined}");
        assert!(joined.starts_with("-T -o RemoteCommand=none -E /r/log -S /r/master -M -o ControlPersist=no -o BatchMode=yes -o ControlPersist=yes"), "{joined}");
        assert_eq!(
            args[args.len() - 3..],
            ["--", "beta", "sh -c 'exec synk --serve'"]
        );
        assert!(
            !joined.contains("ConnectTimeout") && !joined.contains("ServerAlive"),
            "{joined}"
        );
    }

    #[test]
    fn aes_gcm_goes_first_only_where_nothing_set_the_ciphers_and_the_cpu_has_aes() {
        for builtin in OPENSSH_CIPHERS {
            let default = Effective::parse(&format!("ciphers {builtin}\n")).ciphers;
            assert_eq!(cipher_order(&default, true), Some(AES_FIRST_CIPHERS));
            assert_eq!(cipher_order(&default, false), None);
        }
        // A user's, a system's or a crypto policy's list stands, whatever it says.
        for configured in [
            "aes256-ctr",
            "chacha20-poly1305@openssh.com",
            "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com",
            "",
        ] {
            assert_eq!(cipher_order(configured, true), None, "{configured}");
        }
        // The same ciphers, only in another order.
        let sorted = |list: &'static str| {
            let mut v: Vec<&str> = list.split(',').collect();
            v.sort_unstable();
            v
        };
        assert!(AES_FIRST_CIPHERS.starts_with("aes128-gcm"));
        for builtin in OPENSSH_CIPHERS {
            assert_eq!(sorted(builtin), sorted(AES_FIRST_CIPHERS));
        }
        // Passed after the user's values, where it applies.
        let eff = Effective::parse(&format!(
            "connecttimeout 3\nserveraliveinterval 9\nciphers {}\n",
            OPENSSH_CIPHERS[0]
        ));
        let args: Vec<String> = master_args(
            Path::new("/r"),
            &spec("beta", None),
            &SshOptions::default(),
            &eff,
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
        assert_eq!(
            args.join(" ")
                .ends_with(&format!("-o Ciphers={AES_FIRST_CIPHERS} -- beta")),
            aes_in_hardware(),
            "{args:?}"
        );
    }

    #[test]
    fn an_unknown_host_key_says_how_to_accept_it() {
        let eff = Effective::parse("stricthostkeychecking true\n");
        let m = explain(
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            &spec("bob@beta", Some(2222)),
            &eff,
        );
        assert!(m.starts_with("No ED25519 host key is known"), "{m}");
        assert!(m.contains("(StrictHostKeyChecking true)"), "{m}");
        assert!(m.contains("`ssh -p 2222 bob@beta` once"), "{m}");
        let m = explain("Connection refused\n", &spec("beta", None), &eff);
        assert_eq!(m, "Connection refused");
        // A changed key is not accepted again: the old one goes first.
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\nOffending ECDSA key in /home/u/.ssh/known_hosts:3\nHost key for [beta]:2222 has changed and you have requested strict checking.\nHost key verification failed.\n";
        let m = explain(changed, &spec("bob@beta", Some(2222)), &eff);
        assert!(
            m.starts_with("ssh: Host key for [beta]:2222 has changed"),
            "{m}"
        );
        assert!(m.contains("`ssh-keygen -R '[beta]:2222'`"), "{m}");
        assert!(!m.contains("NASTY"), "{m}");
    }

    #[test]
    fn a_refused_key_says_a_login_without_a_prompt_is_needed() {
        let eff = Effective::parse("");
        let m = explain(
            "me@beta: Permission denied (publickey).\n",
            &spec("me@beta", Some(2222)),
            &eff,
        );
        assert!(
            m.starts_with("me@beta: Permission denied (publickey): synk needs"),
            "{m}"
        );
        assert!(
            m.contains("`ssh -o BatchMode=yes -p 2222 me@beta true`"),
            "{m}"
        );
    }

    #[test]
    fn ssh_is_named_once() {
        assert_eq!(
            ssh_says("ssh: Could not resolve hostname x: Name or service not known"),
            "ssh: Could not resolve hostname x: Name or service not known"
        );
        assert_eq!(ssh_says("Connection refused"), "ssh: Connection refused");
    }
}
