//! The client's end of a peer: an SSH session (or nothing, for localhost) and a running
//! `synk --serve` spoken to through the [`proto`](crate::proto) frames. `connect.rs` starts
//! the serve and shakes hands, `conn.rs` carries the conversation, `listing.rs` the scan and
//! what settling fetches after it.

use std::sync::Arc;

use openssh::Session;
use tokio::sync::Mutex;

use crate::config::PeerSpec;
use crate::paths::WirePath;
use crate::ssh::SshOptions;

mod attrs;
pub mod check;
mod conn;
mod connect;
mod listing;
/// Peers for tests.
#[cfg(test)]
pub(crate) mod testing;

pub use conn::{Conn, OpError};
pub use connect::connect;
pub use listing::{Busy, RootScan, Scanned};

/// Options for reaching remote peers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The user's ssh configuration and extra options.
    pub ssh: SshOptions,
    /// Install synk on a peer that lacks it or runs another protocol.
    pub install: bool,
    /// The synk executable on peers (`~/` is the peer's home), instead of the cache or PATH.
    pub synk_path: Option<String>,
    /// `ssh -G`, shared by the peers where the configuration cannot tell them apart.
    pub lookup: std::sync::Arc<crate::ssh::Lookup>,
}

/// What a peer told us in the handshake.
#[derive(Debug, Clone)]
pub struct Caps {
    /// rsync is on the peer's PATH.
    pub rsync: bool,
    /// The peer's home directory.
    pub home: WirePath,
    /// The peer's synk version.
    pub version: String,
}

/// synk installed on a peer that lacked it or ran another version, to run it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The version that was there, if any.
    pub was: Option<String>,
    /// Where this version is now.
    pub at: String,
}

/// One peer of the run.
pub struct Peer {
    /// Name in messages: `localhost` or the host as the user gave it.
    pub name: String,
    /// How to reach it (`None`: this host).
    pub spec: Option<PeerSpec>,
    /// The SSH session, shared by the serve channel and every rsync to or from this peer.
    pub session: Option<Arc<Session>>,
    /// What it can do.
    pub caps: Caps,
    /// The serve conversation; one user at a time.
    pub conn: Mutex<Conn>,
    /// What was done to run synk there (installed or upgraded), for `-v`.
    pub installed: Option<Installed>,
    /// A short name for file names (conflict copies): the host, or this host's name.
    pub label: String,
    /// The command that starts a serve there (remote peers), as it was started: also what
    /// runs a remote master's rsync ([`crate::proto::Request::RunRsync`]).
    pub serve_command: Option<String>,
    /// The user's ssh configuration sets a RemoteCommand for this host (`ssh -G`).
    pub remote_command: bool,
    /// The directory of the control socket of a master this peer's serve runs on, registered
    /// to be removed if the run is stopped.
    control: Option<(tempfile::TempDir, crate::stop::Registered)>,
    /// The registration of a master of this peer's own (zero-install), closed if the run is
    /// stopped.
    stop: Option<crate::stop::Registered>,
}

impl Peer {
    /// True for the invoking host.
    pub fn is_local(&self) -> bool {
        self.spec.is_none()
    }
}

impl Peer {
    fn new(
        name: String,
        spec: Option<PeerSpec>,
        session: Option<Arc<Session>>,
        caps: Caps,
        conn: Conn,
        installed: Option<Installed>,
    ) -> Peer {
        tracing::debug!(peer = %name, rsync = caps.rsync, version = %caps.version, home = %crate::report::text::escape(caps.home.as_bytes()), "connected");
        let label = match &spec {
            Some(s) => s.destination(),
            None => local_hostname(),
        };
        Peer {
            name,
            spec,
            session,
            caps,
            conn: Mutex::new(conn),
            installed,
            label,
            remote_command: false,
            control: None,
            stop: None,
            serve_command: None,
        }
    }
}

/// This host's name, for conflict copies made from its versions.
fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is as long as we say; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if ok && !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}
