//! The few values of the user's ssh configuration synk must know before it connects, as
//! `ssh -G` reports them: synk adds an option only where the configuration leaves it unset.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::Command;

use super::{one_line, SshOptions, CONNECT_TIMEOUT};
use crate::config::PeerSpec;

/// A few values of the configuration ssh would use for a host (`ssh -G`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// `stricthostkeychecking`: `ask` (OpenSSH's default), `yes`/`true`, `accept-new`, `no`/`false`.
    pub strict_host_keys: String,
    /// `connecttimeout` in seconds, where it is set (not `none`).
    pub connect_timeout: Option<u64>,
    /// `serveraliveinterval` is set (not `0`).
    pub server_alive: bool,
    /// `remotecommand` is set: a command line must say `RemoteCommand=none`, or ssh refuses it.
    pub remote_command: bool,
    /// `ciphers`, as configured or by default.
    pub ciphers: String,
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
                "connecttimeout" => e.connect_timeout = value.trim().parse().ok(),
                "serveraliveinterval" => e.server_alive = value.trim() != "0",
                "remotecommand" => e.remote_command = !value.trim().is_empty(),
                "ciphers" => e.ciphers = value.trim().to_string(),
                _ => {}
            }
        }
        e
    }

    /// How long ssh may take to connect: the user's `ConnectTimeout`, or the one synk adds
    /// where the configuration sets none.
    pub fn connect_limit(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.unwrap_or(CONNECT_TIMEOUT))
    }
}

/// `ssh -G` for the peers of a run: once for all of them where the configuration is silent on
/// every value [`Effective`] holds (see [`super::silence`]), else once per peer.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The last shared answer, with the digest of the configuration it was asked under.
    /// Held across the one `ssh -G`, so peers connecting at once wait for it.
    shared: tokio::sync::Mutex<Option<(u64, Effective)>>,
}

impl Lookup {
    /// The values ssh would use for `spec`.
    pub async fn effective(&self, spec: &PeerSpec, opts: &SshOptions) -> Result<Effective> {
        // The digest is taken under the lock: an answer is kept with the configuration it was
        // asked under, not one read before another peer's ssh -G ran.
        let mut shared = self.shared.lock().await;
        let digest = super::silence::Places::here().and_then(|p| super::silence::silent(opts, &p));
        let Some(digest) = digest else {
            drop(shared);
            return effective(spec, opts).await;
        };
        if let Some((d, e)) = &*shared {
            if *d == digest {
                return Ok(e.clone());
            }
        }
        let e = effective(spec, opts).await?;
        tracing::debug!("ssh configuration silent on synk's options: one ssh -G for every peer");
        *shared = Some((digest, e.clone()));
        Ok(e)
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
        return Err(anyhow!("{}", super::ssh_says(&one_line(&err))));
    }
    Ok(Effective::parse(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_values_are_read_from_ssh_g() {
        let e = Effective::parse(
            "user bob\nstricthostkeychecking false\nconnecttimeout none\nserveraliveinterval 15\n",
        );
        assert_eq!(e.strict_host_keys, "false");
        assert_eq!(e.connect_timeout, None);
        assert_eq!(e.connect_limit(), Duration::from_secs(10));
        let slow = Effective::parse("connecttimeout 90\n");
        assert_eq!(slow.connect_limit(), Duration::from_secs(90));
        assert!(e.server_alive);
        assert_eq!(Effective::parse("").strict_host_keys, "ask");
    }
}
