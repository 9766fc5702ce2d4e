//! The client's end of a peer: an SSH session (or nothing, for localhost) and a running
//! `synk --serve` spoken to through the [`proto`](crate::proto) frames.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use openssh::Session;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::Mutex;

use crate::config::PeerSpec;
use crate::install;
use crate::paths::WirePath;
use crate::proto::{
    read_frame_async, write_frame_async, FrameError, Request, Response, CHUNK, MAGIC,
    PROTOCOL_VERSION,
};
use crate::ssh::{self, SshOptions};

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

mod listing;

pub use listing::{RootScan, Scanned};

/// How long a peer may take to answer the handshake once its SSH session is up (a serve
/// started by its own master gets ssh's time to connect on top).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a server's stderr kept for error messages.
const STDERR_TAIL: usize = 12;

/// Options for reaching remote peers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The user's ssh configuration and extra options.
    pub ssh: SshOptions,
    /// Install synk on a peer that lacks it or runs another protocol.
    pub install: bool,
    /// The synk executable on peers (`~/` is the peer's home), instead of the cache or PATH.
    pub synk_path: Option<String>,
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

enum ServeChild {
    /// This host's serve, or a remote one run by its own ssh master.
    Process(tokio::process::Child),
    /// A remote serve run through an existing master.
    Remote(openssh::Child<Arc<Session>>),
}

impl ServeChild {
    /// Waits up to `limit` for the server process to exit.
    async fn wait(self, limit: Duration) -> Option<std::process::ExitStatus> {
        match self {
            ServeChild::Process(mut c) => tokio::time::timeout(limit, c.wait()).await.ok()?.ok(),
            ServeChild::Remote(c) => tokio::time::timeout(limit, c.wait()).await.ok()?.ok(),
        }
    }
}

/// A live conversation with one peer's `synk --serve`.
pub struct Conn {
    name: String,
    reader: BufReader<Reader>,
    writer: BufWriter<Writer>,
    child: Option<ServeChild>,
    stderr: Arc<StdMutex<VecDeque<String>>>,
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
    pub installed: Option<String>,
    /// A short name for file names (conflict copies): the host, or this host's name.
    pub label: String,
    /// The user's ssh configuration sets a RemoteCommand for this host (`ssh -G`).
    pub remote_command: bool,
    /// The directory of the control socket of a master this peer's serve runs on.
    control: Option<tempfile::TempDir>,
}

impl Peer {
    /// True for the invoking host.
    pub fn is_local(&self) -> bool {
        self.spec.is_none()
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
        let (conn, caps) = start_process("localhost", child, HANDSHAKE_TIMEOUT, ahead)
            .await
            .map_err(|e| e.into_error("localhost", false))?;
        return Ok(Peer::new("localhost".into(), None, None, caps, conn, None));
    };
    let name = remote.to_string();
    let eff = ssh::effective(remote, &opts.ssh)
        .await
        .map_err(|e| anyhow!("{name}: {e:#}"))?;
    let synk_path = opts.synk_path.as_deref();
    // The common case costs one ssh process: a master that runs the serve itself.
    let command = install::serve_command(synk_path);
    let ssh::Serving {
        child,
        session,
        dir,
    } = ssh::serve(remote, &opts.ssh, &eff, &command).map_err(|e| anyhow!("{name}: {e:#}"))?;
    let limit = HANDSHAKE_TIMEOUT + eff.connect_limit();
    let failed = match start_process(&name, child, limit, ahead).await {
        Ok((conn, caps)) => {
            let mut peer = Peer::new(name, spec, Some(Arc::new(session)), caps, conn, None);
            peer.control = Some(dir);
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
        return Err(failed.into_error(&name, false));
    }
    let was = match &failed {
        StartError::Mismatch { version, .. } => Some(version.clone()),
        _ => None,
    };
    let session = Arc::new(
        ssh::connect(remote, &opts.ssh, &eff)
            .await
            .map_err(|e| anyhow!("{name}: {e:#}"))?,
    );
    let at = install::install(&name, &session, synk_path).await?;
    let (conn, caps) = start_remote(&name, &session, synk_path, ahead)
        .await
        .map_err(|e| e.into_error(&name, true))?;
    let this = env!("CARGO_PKG_VERSION");
    let note = match was {
        Some(v) => format!("upgraded synk {v} to {this} at {at}"),
        None => format!("installed synk {this} at {at}"),
    };
    let mut peer = Peer::new(name, spec, Some(session), caps, conn, Some(note));
    peer.remote_command = eff.remote_command;
    Ok(peer)
}

impl Peer {
    fn new(
        name: String,
        spec: Option<PeerSpec>,
        session: Option<Arc<Session>>,
        caps: Caps,
        conn: Conn,
        installed: Option<String>,
    ) -> Peer {
        tracing::debug!(peer = %name, rsync = caps.rsync, version = %caps.version, home = %caps.home, "connected");
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

/// Why `synk --serve` could not be started on a peer.
#[derive(Debug)]
enum StartError {
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
    fn into_error(self, name: &str, install: bool) -> anyhow::Error {
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
            StartError::Missing => anyhow!("synk not found on {name}: install it or put it in PATH{hint}"),
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
        .arc_raw_command(install::serve_command(synk_path))
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
    start(name, child, stdin, stdout, stderr, HANDSHAKE_TIMEOUT, ahead).await
}

/// Completes the handshake with a serve this process spawned with piped stdio (the local
/// one, or a remote one on its own ssh master).
async fn start_process(
    name: &str,
    mut child: tokio::process::Child,
    limit: Duration,
    ahead: Option<&Request>,
) -> Result<(Conn, Caps), StartError> {
    let stdin = Box::new(child.stdin.take().expect("piped"));
    let stdout = Box::new(child.stdout.take().expect("piped"));
    let stderr = Box::new(child.stderr.take().expect("piped"));
    let child = ServeChild::Process(child);
    start(name, child, stdin, stdout, stderr, limit, ahead).await
}

/// Completes the handshake with a freshly started server, within `limit`, with `ahead` sent
/// behind it (see [`connect`]).
async fn start(
    name: &str,
    child: ServeChild,
    stdin: Writer,
    stdout: Reader,
    stderr: Reader,
    limit: Duration,
    ahead: Option<&Request>,
) -> Result<(Conn, Caps), StartError> {
    let tail = Arc::new(StdMutex::new(VecDeque::new()));
    tokio::spawn(collect_stderr(name.to_string(), stderr, tail.clone()));
    let mut conn = Conn {
        name: name.to_string(),
        reader: BufReader::with_capacity(CHUNK + 64, stdout),
        writer: BufWriter::with_capacity(CHUNK + 64, stdin),
        child: Some(child),
        stderr: tail,
    };
    match tokio::time::timeout(limit, conn.handshake(ahead)).await {
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

async fn collect_stderr(name: String, stderr: Reader, tail: Arc<StdMutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(peer = %name, "serve stderr: {line}");
        let mut t = tail.lock().expect("stderr tail lock");
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

impl Conn {
    /// Sends a request (buffered; see [`Conn::flush`]).
    pub async fn send(&mut self, req: &Request) -> Result<()> {
        write_frame_async(&mut self.writer, req)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Sends one request already [`encode`](crate::proto::encode)d, unflushed: the same frame
    /// can go to several peers for one encoding.
    pub async fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.writer
            .write_all(frame)
            .await
            .map_err(|e| self.lost(FrameError::Io(e)))
    }

    /// Pushes buffered requests to the peer.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .map_err(|e| self.lost(FrameError::Io(e)))
    }

    /// Reads the next response.
    pub async fn recv(&mut self) -> Result<Response> {
        read_frame_async(&mut self.reader)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Sends one request and waits for its single answer.
    pub async fn call(&mut self, req: &Request) -> Result<Response> {
        self.send(req).await?;
        self.flush().await?;
        self.recv().await
    }

    /// Sends a request that must be answered `Done`.
    pub async fn op(&mut self, req: &Request) -> Result<(), OpError> {
        match self.call(req).await.map_err(OpError::Lost)? {
            Response::Done => Ok(()),
            Response::Failed(m) => Err(OpError::Failed(m)),
            other => Err(OpError::Lost(self.unexpected(&other))),
        }
    }

    fn lost(&self, e: FrameError) -> anyhow::Error {
        let tail = self.stderr_tail();
        let e = match e {
            FrameError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe => FrameError::Closed,
            e => e,
        };
        match e {
            FrameError::Closed if tail.is_empty() => anyhow!("{}: connection lost", self.name),
            FrameError::Closed => anyhow!("{}: connection lost: {tail}", self.name),
            e => anyhow!("{}: {e}", self.name),
        }
    }

    /// An error for a response that makes no sense at this point of the conversation.
    pub fn unexpected(&self, r: &Response) -> anyhow::Error {
        let what = format!("{r:?}");
        let what: String = what.chars().take(60).collect();
        anyhow!("{}: protocol error: unexpected {what}", self.name)
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().expect("stderr tail lock");
        t.iter().cloned().collect::<Vec<_>>().join(" / ")
    }

    async fn handshake(&mut self, ahead: Option<&Request>) -> Result<Caps, StartError> {
        let hello = Request::Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.send(&hello).await.map_err(StartError::Failed)?;
        if let Some(req) = ahead {
            self.send(req).await.map_err(StartError::Failed)?;
        }
        self.flush().await.map_err(StartError::Failed)?;
        match self.recv().await.map_err(StartError::Failed)? {
            Response::Hello {
                magic,
                protocol,
                version,
                rsync,
                home,
            } if magic == MAGIC => {
                if protocol != PROTOCOL_VERSION {
                    return Err(StartError::Mismatch { version, protocol });
                }
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

    /// Waits up to `wait` for the peer to see a change under the scanned roots: `Some(changed)`,
    /// or `None` where it cannot watch. `reset` forgets changes seen before.
    pub async fn watch(&mut self, wait: Duration, reset: bool) -> Result<Option<bool>> {
        let req = Request::Watch {
            wait_ms: wait.as_millis().min(u32::MAX as u128) as u32,
            reset,
        };
        match self.call(&req).await? {
            Response::Watched { changed, supported } => Ok(supported.then_some(changed)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Ends the conversation: closes the server's input and waits for it to exit.
    pub async fn close(&mut self) {
        // Dropping the pipe is what delivers end-of-file: `shutdown` on a child's stdin
        // leaves the descriptor open.
        let mut w = std::mem::replace(
            &mut self.writer,
            BufWriter::new(Box::new(tokio::io::sink())),
        );
        let _ = w.flush().await;
        drop(w);
        if let Some(c) = self.child.take() {
            c.wait(Duration::from_secs(10)).await;
        }
    }
}

/// Why a single operation on a peer failed.
#[derive(Debug)]
pub enum OpError {
    /// The peer answered that the operation failed; the conversation goes on.
    Failed(String),
    /// The conversation itself broke; the peer is gone for the rest of the run.
    Lost(anyhow::Error),
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Failed(m) => write!(f, "{m}"),
            OpError::Lost(e) => write!(f, "{e:#}"),
        }
    }
}

/// A peer served by a real [`Server`](crate::serve::Server) on a thread of this process, over
/// a socket pair, with `home` as its home: for tests of what the client does with real serves.
#[cfg(test)]
pub(crate) async fn in_process(name: &str, home: &std::path::Path) -> Peer {
    let (client, server) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let home = home.to_path_buf();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(server.try_clone().expect("clone"));
        let mut w = std::io::BufWriter::new(server);
        let _ = crate::serve::Server::new(Some(home)).serve(&mut r, &mut w);
    });
    client.set_nonblocking(true).expect("nonblocking");
    let (r, w) = tokio::net::UnixStream::from_std(client)
        .expect("tokio socket")
        .into_split();
    let mut conn = Conn {
        name: name.into(),
        reader: BufReader::new(Box::new(r)),
        writer: BufWriter::new(Box::new(w)),
        child: None,
        stderr: Arc::new(StdMutex::new(VecDeque::new())),
    };
    let caps = match conn.handshake(None).await {
        Ok(caps) => caps,
        Err(e) => panic!("{}", e.into_error(name, false)),
    };
    let spec = PeerSpec::parse(name, None).expect("a host name");
    Peer::new(name.into(), Some(spec), None, caps, conn, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{read_frame_async, write_frame_async};

    /// A conversation with an in-memory server task instead of a child process.
    pub(super) fn fake_peer<F, Fut>(server: F) -> Conn
    where
        F: FnOnce(tokio::io::DuplexStream, tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (client_w, server_r) = tokio::io::duplex(1 << 16);
        let (server_w, client_r) = tokio::io::duplex(1 << 16);
        tokio::spawn(server(server_r, server_w));
        Conn {
            name: "beta".into(),
            reader: BufReader::new(Box::new(client_r)),
            writer: BufWriter::new(Box::new(client_w)),
            child: None,
            stderr: Arc::new(StdMutex::new(VecDeque::new())),
        }
    }

    /// The message a failed handshake with peer "beta" gives (without --no-install).
    async fn handshake_error(conn: &mut Conn) -> String {
        conn.handshake(None)
            .await
            .unwrap_err()
            .into_error("beta", false)
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
        let scan = Conn::scan_request(&roots, crate::model::Retention::default(), &[], true);
        let limit = Duration::from_secs(10);
        let caps = tokio::time::timeout(limit, conn.handshake(Some(&scan)))
            .await
            .expect("the scan went out with the handshake")
            .unwrap_or_else(|e| panic!("{}", e.into_error("beta", true)));
        assert_eq!(caps.home, WirePath::from("/h"));
        let scanned = conn.scanned(1, |_, _| {}).await.unwrap();
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
        let scan = Conn::scan_request(&roots, crate::model::Retention::default(), &[], true);
        let e = conn.handshake(Some(&scan)).await.unwrap_err();
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
