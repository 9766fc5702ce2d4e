//! Starting a peer's `synk --serve` (a child of this process for localhost, over ssh for the
//! others, installing synk first where it is missing), the handshake, and the most helpful
//! account of a start that failed.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use openssh::Session;
use tokio::io::{AsyncBufReadExt, BufReader, BufWriter};

use super::check::check_hello;
use super::conn::{Reader, Writer};
use super::{Caps, Conn, ConnectOptions, Installed, Peer};
use crate::config::PeerSpec;
use crate::install;
use crate::paths::WirePath;
use crate::proto::{Request, Response, CHUNK, MAGIC, PROTOCOL_VERSION};
use crate::report::text::escape;
use crate::ssh;
use crate::stop;

/// How long a peer may take to answer the handshake once its SSH session is up (a serve
/// started by its own master gets ssh's time to connect on top).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a server's stderr kept for error messages.
const STDERR_TAIL: usize = 12;
/// Bytes of one line of a server's stderr kept; the rest of a longer line is dropped.
const STDERR_LINE: usize = 1024;
/// Lines of a server's stderr written to the debug log at most; later ones are only kept in
/// the tail.
const STDERR_LOGGED: usize = 1000;

/// The process that runs a peer's serve.
pub(super) enum ServeChild {
    /// This host's serve, or a remote one run by its own ssh master: a process group of its
    /// own, registered to be stopped with the run (see [`crate::stop`]).
    Process(tokio::process::Child, stop::Registered),
    /// A remote serve run through an existing master.
    Remote(openssh::Child<Arc<Session>>),
}

impl ServeChild {
    /// Waits up to `limit` for the server process to exit.
    pub(super) async fn wait(self, limit: Duration) -> Option<std::process::ExitStatus> {
        match self {
            ServeChild::Process(mut c, _stop) => {
                tokio::time::timeout(limit, c.wait()).await.ok()?.ok()
            }
            ServeChild::Remote(c) => tokio::time::timeout(limit, c.wait()).await.ok()?.ok(),
        }
    }
}

/// Connects to a peer and completes the handshake. `None` is localhost, served by a child
/// process of this very binary. A remote peer without synk, or with one speaking another
/// protocol, gets this executable installed first (unless `opts.install` is off).
///
/// `ahead`, if any, is sent right behind the handshake, unanswered: the serve starts on it
/// (a scan) without waiting a round trip for the client to see its answer to the handshake.
/// A serve that speaks another protocol stops after its own handshake and never reads it.
pub async fn connect(
    spec: Option<PeerSpec>,
    opts: &ConnectOptions,
    ahead: Option<&Request>,
) -> Result<Peer> {
    let Some(remote) = &spec else {
        let exe = std::env::current_exe().context("cannot locate the synk executable")?;
        let child = tokio::process::Command::new(exe)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Like a remote serve, out of the terminal's process group (see ssh::serve).
            .process_group(0)
            .spawn()
            .context("cannot start synk --serve")?;
        let (conn, caps) = start_process("localhost", child, HANDSHAKE_TIMEOUT, ahead, false)
            .await
            .map_err(|e| e.into_error("localhost", false, None))?;
        return Ok(Peer::new("localhost".into(), None, None, caps, conn, None));
    };
    let name = remote.to_string();
    let eff = opts
        .lookup
        .effective(remote, &opts.ssh)
        .await
        .map_err(|e| anyhow!("{name}: {e:#}"))?;
    let synk_path = opts.synk_path.as_deref();
    // The common case costs one ssh process: a master that runs the serve itself. The
    // handshake and `ahead` go on its command line: ssh hands a command its input a round
    // trip after it starts it, and the serve starts on them at once.
    let first = on_command_line(ahead);
    let command = install::serve_command(synk_path, first.as_deref());
    let ssh::Serving {
        child,
        session,
        dir,
    } = ssh::serve(remote, &opts.ssh, &eff, &command).map_err(|e| anyhow!("{name}: {e:#}"))?;
    let master = stop::master(dir.path());
    let limit = HANDSHAKE_TIMEOUT + eff.connect_limit();
    let failed = match start_process(&name, child, limit, ahead, first.is_some()).await {
        Ok((mut conn, caps)) => {
            conn.far = true;
            let mut peer = Peer::new(name, spec, Some(Arc::new(session)), caps, conn, None);
            peer.control = Some((dir, master));
            // Later serves (a remote master's rsync) start on their own requests.
            peer.serve_command = Some(install::serve_command(synk_path, None));
            peer.remote_command = eff.remote_command;
            return Ok(peer);
        }
        // A connection that failed (ssh's 255) is ssh's to explain.
        Err(StartError::Exit255(e)) => {
            return Err(match ssh::failure(dir.path(), remote, &eff) {
                Some(why) => anyhow!("{name}: {why}"),
                None => e,
            })
        }
        Err(StartError::Failed(e)) => return Err(e),
        Err(e) => e,
    };
    // synk is missing there or speaks another protocol: a master of its own carries the
    // install, then the serve.
    if !opts.install {
        return Err(failed.into_error(&name, false, synk_path));
    }
    let was = match &failed {
        StartError::Mismatch { version, .. } => Some(version.clone()),
        _ => None,
    };
    let (session, master) = ssh::connect(remote, &opts.ssh, &eff)
        .await
        .map_err(|e| anyhow!("{name}: {e:#}"))?;
    let session = Arc::new(session);
    let at = install::install(&name, &session, synk_path).await?;
    let (conn, caps) = start_remote(&name, &session, synk_path, ahead)
        .await
        .map_err(|e| e.into_error(&name, true, synk_path))?;
    let done = Installed { was, at };
    let mut peer = Peer::new(name, spec, Some(session), caps, conn, Some(done));
    peer.remote_command = eff.remote_command;
    peer.stop = Some(master);
    peer.serve_command = Some(install::serve_command(synk_path, None));
    Ok(peer)
}

/// Why `synk --serve` could not be started on a peer.
#[derive(Debug)]
pub(super) enum StartError {
    /// No synk there.
    Missing,
    /// A synk that speaks another protocol.
    Mismatch {
        /// Its version.
        version: String,
        /// Its protocol.
        protocol: u32,
    },
    /// Anything else, with its message.
    Failed(anyhow::Error),
    /// The process ended with status 255: where ssh runs it, ssh's own failure (its log
    /// says why), else like [`StartError::Failed`].
    Exit255(anyhow::Error),
}

impl StartError {
    /// The error to report for peer `name` (`install`: synk was installed there first;
    /// `synk_path`: where it was looked for, as `--synk-path` named it).
    pub(super) fn into_error(
        self,
        name: &str,
        install: bool,
        synk_path: Option<&str>,
    ) -> anyhow::Error {
        let this = env!("CARGO_PKG_VERSION");
        let hint = if install {
            ""
        } else {
            " (or drop --no-install to let synk install itself)"
        };
        match self {
            StartError::Missing if install => {
                anyhow!("synk not found on {name}, even after installing it")
            }
            StartError::Missing => match synk_path {
                Some(p) => anyhow!("synk not found on {name} at --synk-path {p}: install it there{hint}"),
                None => anyhow!("synk not found on {name}: install it or put it in PATH{hint}"),
            },
            StartError::Mismatch { version, protocol } => anyhow!(
                "{name}: runs synk {version} (protocol {protocol}); this is synk {this} (protocol {PROTOCOL_VERSION}): install the same version on every peer{hint}"
            ),
            StartError::Failed(e) | StartError::Exit255(e) => e,
        }
    }
}

/// Starts `synk --serve` on a remote peer and completes the handshake.
async fn start_remote(
    name: &str,
    session: &Arc<Session>,
    synk_path: Option<&str>,
    ahead: Option<&Request>,
) -> Result<(Conn, Caps), StartError> {
    let mut child = session
        .clone()
        .arc_raw_command(install::serve_command(synk_path, None))
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await
        .map_err(|e| StartError::Failed(anyhow!("{name}: cannot start synk --serve: {e}")))?;
    let stdin = Box::new(child.stdin().take().expect("piped"));
    let stdout = Box::new(child.stdout().take().expect("piped"));
    let stderr = Box::new(child.stderr().take().expect("piped"));
    let child = ServeChild::Remote(child);
    start(
        name,
        child,
        stdin,
        stdout,
        stderr,
        HANDSHAKE_TIMEOUT,
        ahead,
        false,
    )
    .await
}

/// The longest command line the handshake and `ahead` are given on, in hex; a bigger scan
/// request (many roots and excludes) goes on the serve's input as usual.
const COMMAND_LINE_AHEAD: usize = 16 << 10;

/// The handshake and `ahead`, framed and in hex, for `synk --serve=HEX`, if short enough.
fn on_command_line(ahead: Option<&Request>) -> Option<String> {
    let mut bytes = crate::proto::encode(&Conn::hello()).ok()?;
    if let Some(req) = ahead {
        bytes.extend(crate::proto::encode(req).ok()?);
    }
    (bytes.len() * 2 <= COMMAND_LINE_AHEAD).then(|| hex::encode(bytes))
}

/// Completes the handshake with a serve this process spawned with piped stdio (the local
/// one, or a remote one on its own ssh master).
async fn start_process(
    name: &str,
    mut child: tokio::process::Child,
    limit: Duration,
    ahead: Option<&Request>,
    sent: bool,
) -> Result<(Conn, Caps), StartError> {
    let stdin = Box::new(child.stdin.take().expect("piped"));
    let stdout = Box::new(child.stdout.take().expect("piped"));
    let stderr = Box::new(child.stderr.take().expect("piped"));
    let registered = stop::group(child.id());
    let child = ServeChild::Process(child, registered);
    start(name, child, stdin, stdout, stderr, limit, ahead, sent).await
}

/// Completes the handshake with a freshly started server, within `limit`, with `ahead` sent
/// behind it (see [`connect`]); `sent`: both were given on its command line already.
#[allow(clippy::too_many_arguments)]
async fn start(
    name: &str,
    child: ServeChild,
    stdin: Writer,
    stdout: Reader,
    stderr: Reader,
    limit: Duration,
    ahead: Option<&Request>,
    sent: bool,
) -> Result<(Conn, Caps), StartError> {
    let tail = Arc::new(StdMutex::new(VecDeque::new()));
    tokio::spawn(collect_stderr(name.to_string(), stderr, tail.clone()));
    let mut conn = Conn {
        name: name.to_string(),
        reader: BufReader::with_capacity(CHUNK + 64, stdout),
        writer: BufWriter::with_capacity(CHUNK + 64, stdin),
        child: Some(child),
        stderr: tail,
        warnings: Vec::new(),
        key: None,
        home: WirePath::default(),
        trips: Default::default(),
        owed: Default::default(),
        far: false,
    };
    match tokio::time::timeout(limit, conn.handshake(ahead, sent)).await {
        Ok(Ok(caps)) => Ok((conn, caps)),
        Ok(Err(e @ StartError::Mismatch { .. })) => {
            conn.close().await;
            Err(e)
        }
        Ok(Err(StartError::Failed(e) | StartError::Exit255(e))) => {
            Err(conn.explain_failure(e).await)
        }
        Ok(Err(StartError::Missing)) => Err(StartError::Missing),
        Err(_) => Err(StartError::Failed(anyhow!(
            "{name}: no answer from synk --serve within {limit:?}"
        ))),
    }
}

/// Keeps the last [`STDERR_TAIL`] lines of a serve's stderr in `tail`, each cut to
/// [`STDERR_LINE`] bytes: whatever a peer writes there, the client holds a few KiB of it.
async fn collect_stderr(name: String, stderr: Reader, tail: Arc<StdMutex<VecDeque<String>>>) {
    let mut r = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut lines = 0usize;
    let mut keep = |line: &[u8], cut: bool| {
        let mut text = String::from_utf8_lossy(line).into_owned();
        if cut {
            text.push_str("… [cut]");
        }
        if lines < STDERR_LOGGED {
            tracing::debug!(peer = %name, "serve stderr: {}", escape(text.as_bytes()));
        }
        lines += 1;
        let mut t = tail.lock().expect("stderr tail lock");
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(text);
    };
    loop {
        let (used, ended) = match r.fill_buf().await {
            Ok(buf) if !buf.is_empty() => {
                let end = buf.iter().position(|b| *b == b'\n');
                let chunk = &buf[..end.unwrap_or(buf.len())];
                let room = STDERR_LINE.saturating_sub(line.len());
                if chunk.len() > room {
                    cut = true;
                }
                line.extend_from_slice(&chunk[..chunk.len().min(room)]);
                (end.map_or(buf.len(), |i| i + 1), end.is_some())
            }
            _ => break,
        };
        r.consume(used);
        if ended {
            keep(&line, cut);
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() || cut {
        keep(&line, cut);
    }
}

impl Conn {
    /// The client's handshake.
    fn hello() -> Request {
        Request::Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Says hello (with `ahead` right behind it) and reads the serve's answer: what the peer
    /// can do, or why it will not do.
    /// `sent`: the serve was given both on its command line ([`on_command_line`]).
    pub(super) async fn handshake(
        &mut self,
        ahead: Option<&Request>,
        sent: bool,
    ) -> Result<Caps, StartError> {
        if sent {
            // Waiting for their answers is a round trip all the same.
            self.trips.sent();
        } else {
            self.send(&Conn::hello())
                .await
                .map_err(StartError::Failed)?;
            if let Some(req) = ahead {
                self.send(req).await.map_err(StartError::Failed)?;
            }
            self.flush().await.map_err(StartError::Failed)?;
        }
        match self.recv().await.map_err(StartError::Failed)? {
            Response::Hello {
                magic,
                protocol,
                version,
                rsync,
                home,
            } if magic == MAGIC => {
                // Checked before anything says or uses them, a mismatch's message too.
                check_hello(&home, &version)
                    .map_err(|e| StartError::Failed(anyhow!("{}: {e}", self.name)))?;
                if protocol != PROTOCOL_VERSION {
                    return Err(StartError::Mismatch { version, protocol });
                }
                self.home = home.clone();
                Ok(Caps {
                    rsync,
                    home,
                    version,
                })
            }
            other => Err(StartError::Failed(self.unexpected(&other))),
        }
    }

    /// Turns a failed handshake into the most helpful message we can give.
    async fn explain_failure(&mut self, e: anyhow::Error) -> StartError {
        let status = match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(5)).await,
            None => None,
        };
        // Give the stderr reader a moment to catch the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tail = self.stderr_tail();
        let shell_says_missing = tail.contains("synk: not found")
            || tail.contains("synk: command not found")
            || tail.contains("synk: No such file");
        if status.and_then(|s| s.code()) == Some(127) || shell_says_missing {
            return StartError::Missing;
        }
        // A synk from before `--serve=HEX` refuses the value: another protocol.
        if tail.contains("'--serve'") && tail.contains("unexpected value") {
            return StartError::Mismatch {
                version: "older".into(),
                protocol: 0,
            };
        }
        let e = if tail.is_empty() {
            e
        } else {
            anyhow!("{e} ({tail})")
        };
        if status.and_then(|s| s.code()) == Some(255) {
            StartError::Exit255(e)
        } else {
            StartError::Failed(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::fake_peer;
    use super::*;
    use crate::paths::WirePath;
    use crate::proto::{read_frame_async, write_frame_async};
    use tokio::io::AsyncWriteExt;

    /// The message a failed handshake with peer "beta" gives (without --no-install).
    async fn handshake_error(conn: &mut Conn) -> String {
        conn.handshake(None, false)
            .await
            .unwrap_err()
            .into_error("beta", false, None)
            .to_string()
    }

    #[tokio::test]
    async fn a_scan_sent_ahead_reaches_the_serve_before_the_handshake_is_answered() {
        // This serve reads both requests before it answers anything: a client that waited
        // for the handshake's answer before sending the scan would wait for ever.
        let mut conn = fake_peer(|mut r, mut w| async move {
            let hello: Request = read_frame_async(&mut r).await.unwrap();
            assert!(matches!(hello, Request::Hello { .. }));
            let scan: Request = read_frame_async(&mut r).await.unwrap();
            assert!(matches!(scan, Request::Scan { .. }), "{scan:?}");
            let answers = [
                Response::Hello {
                    magic: MAGIC,
                    protocol: PROTOCOL_VERSION,
                    version: "test".into(),
                    rsync: false,
                    home: WirePath::from("/h"),
                },
                Response::Root {
                    index: 0,
                    result: Ok(WirePath::from("/h/notes")),
                },
                Response::ScanDone,
            ];
            for a in answers {
                write_frame_async(&mut w, &a).await.unwrap();
            }
            w.flush().await.unwrap();
        });
        let roots = [crate::paths::RootSpec::Home(WirePath::from("notes"))];
        let scan = Conn::scan_request(
            &roots,
            crate::model::Retention::default(),
            &[],
            true,
            true,
            Default::default(),
        );
        let limit = Duration::from_secs(10);
        let caps = tokio::time::timeout(limit, conn.handshake(Some(&scan), false))
            .await
            .expect("the scan went out with the handshake")
            .unwrap_or_else(|e| panic!("{}", e.into_error("beta", true, None)));
        assert_eq!(caps.home, WirePath::from("/h"));
        let scanned = conn.scanned(&roots, |_, _| {}).await.unwrap();
        assert_eq!(scanned[0].as_ref().unwrap().abs, WirePath::from("/h/notes"));
    }

    #[tokio::test]
    async fn a_mismatch_is_told_apart_with_a_scan_sent_ahead() {
        // An older serve answers the handshake and stops reading.
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            drop(r);
            let hello = Response::Hello {
                magic: MAGIC,
                protocol: PROTOCOL_VERSION - 1,
                version: "0.0.1".into(),
                rsync: true,
                home: WirePath::default(),
            };
            write_frame_async(&mut w, &hello).await.unwrap();
            w.flush().await.unwrap();
        });
        let roots = [crate::paths::RootSpec::Home(WirePath::from("notes"))];
        let scan = Conn::scan_request(
            &roots,
            crate::model::Retention::default(),
            &[],
            true,
            true,
            Default::default(),
        );
        let e = conn.handshake(Some(&scan), false).await.unwrap_err();
        assert!(matches!(e, StartError::Mismatch { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_protocol_mismatch_names_the_peer_and_both_versions() {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            let hello = Response::Hello {
                magic: MAGIC,
                protocol: PROTOCOL_VERSION + 1,
                version: "9.9.9".into(),
                rsync: true,
                home: WirePath::default(),
            };
            write_frame_async(&mut w, &hello).await.unwrap();
            w.flush().await.unwrap();
        });
        let e = handshake_error(&mut conn).await;
        let want = format!("beta: runs synk 9.9.9 (protocol {})", PROTOCOL_VERSION + 1);
        assert!(e.starts_with(&want), "{e}");
        assert!(e.contains("install the same version on every peer"), "{e}");
    }

    #[tokio::test]
    async fn a_wrong_first_answer_or_silence_is_an_error() {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            w.write_all(b"Last login: yesterday\n").await.unwrap();
        });
        let e = handshake_error(&mut conn).await;
        assert!(e.starts_with("beta: garbled protocol stream"), "{e}");
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            write_frame_async(&mut w, &Response::ScanDone)
                .await
                .unwrap();
            w.flush().await.unwrap();
        });
        let e = handshake_error(&mut conn).await;
        assert!(
            e.starts_with("beta: protocol error: unexpected ScanDone"),
            "{e}"
        );
        let mut conn = fake_peer(|_r, _w| async move {});
        let e = handshake_error(&mut conn).await;
        assert_eq!(e, "beta: connection lost");
    }
}
