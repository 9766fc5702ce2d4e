//! Reaching a peer over SSH exactly as `ssh -o BatchMode=yes HOST` would.
//!
//! synk starts one ssh ControlMaster per peer and runs every command through it. It adds only
//! what a non-interactive multiplexed session needs (`-M -S -f -N`, `BatchMode`, and a connect
//! timeout or keep-alive where the user's configuration sets none); everything else, the
//! host-key policy above all, comes from the user's ssh configuration (`~/.ssh/config`, `-F`,
//! `Include`, `Match`, `ProxyJump`, …) and the `-o` options given to synk.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use openssh::Session;
use tokio::process::Command;

use crate::config::PeerSpec;

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

/// A few values of the configuration ssh would use for a host (`ssh -G`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// `stricthostkeychecking`: `ask` (OpenSSH's default), `yes`/`true`, `accept-new`, `no`/`false`.
    pub strict_host_keys: String,
    /// `connecttimeout` is set (not `none`).
    pub connect_timeout: bool,
    /// `serveraliveinterval` is set (not `0`).
    pub server_alive: bool,
}

impl Effective {
    /// Reads the values that matter from `ssh -G` output.
    pub fn parse(text: &str) -> Effective {
        let mut e = Effective {
            strict_host_keys: "ask".into(),
            ..Effective::default()
        };
        for line in text.lines() {
            let mut words = line.splitn(2, ' ');
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            match key {
                "stricthostkeychecking" => e.strict_host_keys = value.trim().to_string(),
                "connecttimeout" => e.connect_timeout = value.trim() != "none",
                "serveraliveinterval" => e.server_alive = value.trim() != "0",
                _ => {}
            }
        }
        e
    }
}

/// Asks ssh which configuration it would use for `spec` (no connection is made).
pub async fn effective(spec: &PeerSpec, opts: &SshOptions) -> Result<Effective> {
    let out = Command::new("ssh")
        .arg("-G")
        .args(opts.args(spec))
        .arg("--")
        .arg(&spec.host)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run ssh (is OpenSSH's client installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(anyhow!("ssh: {}", one_line(&err)));
    }
    Ok(Effective::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// The arguments of the master connection, before the destination.
pub fn master_args(
    dir: &Path,
    spec: &PeerSpec,
    opts: &SshOptions,
    eff: &Effective,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "-E".into(),
        dir.join("log").into(),
        "-S".into(),
        dir.join("master").into(),
        "-M".into(),
        "-f".into(),
        "-N".into(),
        "-o".into(),
        // Idle for a minute once a run is done (or was killed): then the master goes too.
        "ControlPersist=60".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ];
    // The user's values come first: for ssh the first value given for an option wins.
    a.extend(opts.args(spec));
    if !eff.connect_timeout {
        a.extend(["-o".into(), "ConnectTimeout=10".into()]);
    }
    if !eff.server_alive {
        a.extend(["-o".into(), "ServerAliveInterval=5".into()]);
    }
    a.push("--".into());
    a.push(spec.host.clone().into());
    a
}

/// Opens an SSH connection to `spec` that every later command and rsync reuses.
pub async fn connect(spec: &PeerSpec, opts: &SshOptions) -> Result<Session> {
    let eff = effective(spec, opts).await?;
    let dir = tempfile::Builder::new()
        .prefix(".synk-ssh-")
        .tempdir_in(control_dir())
        .context("cannot create a directory for the ssh control socket")?;
    let status = Command::new("ssh")
        .args(master_args(dir.path(), spec, opts, &eff))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .context("cannot run ssh (is OpenSSH's client installed?)")?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        return Err(anyhow!("ssh: {}", explain(&log, spec, &eff)));
    }
    Ok(Session::new_process_mux(dir))
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
    let unknown_key = log.contains("host key is known for")
        || log.contains("Host key verification failed")
        || log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED");
    if unknown_key {
        let dest = spec.destination();
        let port = spec.port.map(|p| format!(" -p {p}")).unwrap_or_default();
        return format!(
            "{text} (StrictHostKeyChecking {}): check the key and accept it with `ssh{port} {dest}` once, or add it to ~/.ssh/known_hosts",
            eff.strict_host_keys
        );
    }
    if text.is_empty() {
        "connection failed".into()
    } else {
        text
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
    fn effective_values_are_read_from_ssh_g() {
        let e = Effective::parse(
            "user bob\nstricthostkeychecking false\nconnecttimeout none\nserveraliveinterval 15\n",
        );
        assert_eq!(e.strict_host_keys, "false");
        assert!(!e.connect_timeout);
        assert!(e.server_alive);
        assert_eq!(Effective::parse("").strict_host_keys, "ask");
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
    }
}
