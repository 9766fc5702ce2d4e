//! Carrying entries with rsync: one run per (master, target) pair, its entries fed through
//! `--files-from=- --from0` so no file name ever crosses a shell or a command line.
//!
//! Only the two base directories appear as arguments. When the master is remote and the
//! target too, the run happens on the master (`ssh master rsync … target:path`): then every
//! argument is quoted for the master's shell with `shlex`, bytes and all.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::WireStats;
use crate::names;
use crate::paths::WirePath;
use crate::proto::{
    read_frame_async, write_frame_async, FrameError, Request, Response, MAGIC, PROTOCOL_VERSION,
};

/// rsync's options: permissions, times, arguments shielded from the remote shell, and every
/// listed file transferred (synk already knows they differ; rsync's size+mtime quick check
/// could skip a forced `--master` copy). rsync carries regular files only, into the target
/// root's scratch directory (its destination), never into the tree: the target's serve moves
/// each planned name into place afterwards. `--copy-dest=..` gives rsync the old file in the
/// tree beside the scratch directory as the basis of its delta, so a few changed bytes in a
/// big file still cost a few blocks. Directories rsync makes there (the parents of nested
/// names) stay writable by their owner (`--chmod=Du+rwx`): the serve renames files out of
/// them, and the tree's own directories get their modes from the serve.
/// `--stats` tells how much of each run travelled as literal data and how much rsync's delta
/// algorithm matched against the target's old file (see [`parse_stats`]).
pub const RSYNC_OPTS: &[&str] = &[
    "-ptsI",
    "--stats",
    "--copy-dest=..",
    "--chmod=Du+rwx",
    "--from0",
    "--files-from=-",
];

/// A remote end of an rsync run, as the machine running rsync reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `[user@]host`.
    pub dest: String,
    /// SSH port, if not the default.
    pub port: Option<u16>,
    /// ControlMaster socket to reuse (client-run only).
    pub control: Option<PathBuf>,
    /// ssh_config file (client-run only).
    pub ssh_config: Option<PathBuf>,
    /// The user's configuration sets a RemoteCommand for this host: rsync's ssh must say
    /// `RemoteCommand=none` (client-run only).
    pub no_remote_command: bool,
}

/// One side of a run: a base directory, local to the runner or on a remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// `None`: on the machine that runs rsync.
    pub remote: Option<Remote>,
    /// Absolute directory the listed names are relative to.
    pub base: WirePath,
}

/// How copies travel, whatever the copier: the user's `--compress` and `--bwlimit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Compress on the wire (`rsync -z`); off by default: it costs CPU on fast links.
    pub compress: bool,
    /// Bytes per second per transfer at most (`None`: no limit).
    pub bwlimit: Option<u64>,
}

/// rsync's `--sparse`: the receiver writes runs of zeros as holes, so a sparse file stays
/// sparse (rsync still reads and sends the zeros; the streaming copier sends a hole as one).
/// Only for files whose source has holes ([`has_holes`]): looking for zeros in every block
/// written costs a first sync of dense files about 6%.
pub const SPARSE: &str = "--sparse";

/// How much of a remote master's channel stderr is kept for a message.
const STDERR_KEPT: usize = 16 << 10;

/// Whether the file at `path` (not followed if a symlink) has holes: fewer blocks allocated
/// than its size needs. A file that cannot be read is taken as sparse, which is never wrong,
/// only slower.
pub fn has_holes(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map_or(true, |m| m.blocks().saturating_mul(512) < m.size())
}

/// Splits a NUL-separated list of names below `base` into those without holes and those with
/// them, each list NUL-separated again.
pub fn split_by_holes(base: &[u8], names: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut dense, mut sparse) = (Vec::new(), Vec::new());
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let path = WirePath(base.to_vec()).join(&WirePath(name.to_vec()));
        let list = if has_holes(path.as_path()) {
            &mut sparse
        } else {
            &mut dense
        };
        list.extend_from_slice(name);
        list.push(0);
    }
    (dense, sparse)
}

/// A complete rsync invocation, before it is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Source side (the master).
    pub src: Side,
    /// Destination side (the target).
    pub dst: Side,
    /// Names relative to the bases, sent NUL-separated on stdin.
    pub names: Vec<WirePath>,
    /// Compression and bandwidth limit.
    pub tuning: Tuning,
    /// Pass [`SPARSE`]: some of the names may have holes.
    pub sparse: bool,
}

fn ssh_command(r: &Remote, batch: bool) -> String {
    let mut parts: Vec<String> = vec!["ssh".into()];
    if r.no_remote_command {
        // One in the user's configuration would make ssh refuse rsync's command line.
        parts.push("-o".into());
        parts.push("RemoteCommand=none".into());
    }
    if let Some(ctl) = &r.control {
        parts.push("-S".into());
        parts.push(quote(ctl.as_os_str()));
        parts.push("-o".into());
        parts.push("ControlMaster=no".into());
    }
    if let Some(cfg) = &r.ssh_config {
        parts.push("-F".into());
        parts.push(quote(cfg.as_os_str()));
    }
    if batch {
        parts.push("-o".into());
        parts.push("BatchMode=yes".into());
    }
    if let Some(p) = r.port {
        parts.push("-p".into());
        parts.push(p.to_string());
    }
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    String::from_utf8_lossy(&shlex::bytes::try_quote(s.as_bytes()).unwrap_or_default()).into_owned()
}

fn endpoint(side: &Side) -> OsString {
    let mut v = Vec::new();
    if let Some(r) = &side.remote {
        v.extend_from_slice(r.dest.as_bytes());
        v.push(b':');
    }
    v.extend_from_slice(side.base.as_bytes());
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    OsString::from_vec(v)
}

impl Job {
    /// rsync's arguments (program name excluded). `batch` adds `BatchMode=yes` to the remote
    /// shell, for runs on a remote master where no one could answer a prompt.
    pub fn args(&self, batch: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = RSYNC_OPTS.iter().map(OsString::from).collect();
        if self.sparse {
            // Where a serve puts it too (see `Server::run_rsync`).
            args.insert(1, SPARSE.into());
        }
        // The destination is the target's scratch directory: rsync, cut short, keeps what it
        // received in a partial directory beside the file there, which the next run's rsync
        // takes as the basis of the same file (see [`crate::beneath::partial`]). Relative:
        // rsync 3.4 and the fixes backported to older ones (Debian 12's) cannot read a basis
        // by an absolute path, and a partial directory a directory of the tree has of its
        // own keeps two files of one name apart. Its temp files stay beside what it
        // receives: a temp directory would make every file's rename one across directories,
        // which the kernel serializes.
        let mut a = b"--partial-dir=".to_vec();
        a.extend_from_slice(&names::partial_dir_name());
        args.push(OsString::from_vec(a));
        if self.tuning.compress {
            args.push("-z".into());
        }
        if let Some(bps) = self.tuning.bwlimit {
            // rsync counts in units of 1024 bytes per second; never 0, which means no limit.
            args.push(format!("--bwlimit={}", (bps / 1024).max(1)).into());
        }
        if let Some(r) = self.src.remote.as_ref().or(self.dst.remote.as_ref()) {
            args.push("-e".into());
            args.push(ssh_command(r, batch).into());
        }
        args.push(endpoint(&self.src));
        args.push(endpoint(&self.dst));
        args
    }

    /// The list fed to `--files-from=- --from0`.
    pub fn stdin(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for n in &self.names {
            v.extend_from_slice(n.as_bytes());
            v.push(0);
        }
        v
    }

    /// `rsync …` as a shell would read it, for `-v`.
    pub fn display(&self, batch: bool) -> String {
        let mut s = String::from("rsync");
        for a in self.args(batch) {
            s.push(' ');
            s.push_str(&quote(&a));
        }
        s
    }

    /// The arguments quoted for a remote shell, or `None` if one holds a NUL byte.
    pub fn shell_args(&self, batch: bool) -> Option<Vec<OsString>> {
        self.args(batch)
            .iter()
            .map(|a| {
                shlex::bytes::try_quote(a.as_bytes())
                    .ok()
                    .map(|q| OsString::from_vec(q.into_owned()))
            })
            .collect()
    }
}

/// How an rsync run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything transferred; what crossed the wire.
    Done(WireStats),
    /// rsync could not reach the other end at all (ssh failed before any data).
    Unreachable(String),
    /// rsync ran and failed.
    Failed(String),
}

/// The literal and matched byte counts of rsync's `--stats` (`Literal data: 2,896 bytes`),
/// summed over every run whose output `stdout` holds; zero for what it does not say.
pub fn parse_stats(stdout: &str) -> WireStats {
    let count = |label: &str| -> u64 {
        // Summed: a serve that split a job by holes ran rsync twice.
        stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix(label))
            .filter_map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u64>()
                    .ok()
            })
            .fold(0u64, u64::saturating_add)
    };
    WireStats {
        literal: count("Literal data:"),
        matched: count("Matched data:"),
    }
}

/// Adds what rsync's standard output says to a finished run.
fn with_stats(outcome: Outcome, stdout: &[u8]) -> Outcome {
    match outcome {
        Outcome::Done(_) => Outcome::Done(parse_stats(&String::from_utf8_lossy(stdout))),
        other => other,
    }
}

/// Classifies an exit code and stderr.
pub fn classify(code: Option<i32>, stderr: &str) -> Outcome {
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // A remote rsync's stderr comes from a peer: its last lines, cut as any peer's text.
    let tail = crate::peer::check::clip(tail[tail.len().saturating_sub(4)..].join(" / "));
    match code {
        Some(0) => Outcome::Done(WireStats::default()),
        Some(255) => Outcome::Unreachable(tail),
        _ if stderr.contains("(0 bytes received so far)") => Outcome::Unreachable(tail),
        Some(c) => Outcome::Failed(format!("rsync exited with status {c}: {tail}")),
        None => Outcome::Failed(format!("rsync was killed: {tail}")),
    }
}

/// Adds one run's outcome to the outcome of the runs before it: the first failure stands.
fn and_then(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Done(mut x), Outcome::Done(y)) => {
            x.add(y);
            Outcome::Done(x)
        }
        (Outcome::Done(_), other) | (other, _) => other,
    }
}

/// Runs a job on this machine: where the source is local too, files with holes go in a run of
/// their own with [`SPARSE`], the rest without it.
pub async fn run_local(job: &Job) -> Outcome {
    if job.src.remote.is_some() {
        // The source's blocks are not in sight: every file may have holes.
        let job = Job {
            sparse: true,
            ..job.clone()
        };
        return run_one(&job).await;
    }
    let (dense, sparse) = split_by_holes(job.src.base.as_bytes(), &job.stdin());
    let part = |list: &[u8], sparse: bool| Job {
        names: list
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| WirePath(n.to_vec()))
            .collect(),
        sparse,
        ..job.clone()
    };
    let mut outcome = Outcome::Done(WireStats::default());
    if !dense.is_empty() || sparse.is_empty() {
        outcome = and_then(outcome, run_one(&part(&dense, false)).await);
    }
    if !sparse.is_empty() && matches!(outcome, Outcome::Done(_)) {
        outcome = and_then(outcome, run_one(&part(&sparse, true)).await);
    }
    outcome
}

/// Runs one rsync on this machine.
async fn run_one(job: &Job) -> Outcome {
    let mut cmd = tokio::process::Command::new("rsync");
    cmd.args(job.args(false))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group (with the ssh it starts): out of the terminal's, so Ctrl-C is
        // the client's to handle, and stopped as a whole if the run is (see crate::stop).
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot run rsync: {e}")),
    };
    let _registered = crate::stop::group(child.id());
    let mut stdin = child.stdin.take().expect("piped");
    let list = job.stdin();
    let feed = async move {
        let _ = stdin.write_all(&list).await;
        drop(stdin);
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    match out {
        Ok(out) => with_stats(
            classify(out.status.code(), &String::from_utf8_lossy(&out.stderr)),
            &out.stdout,
        ),
        Err(e) => Outcome::Failed(format!("rsync: {e}")),
    }
}

/// Runs a job on a remote master: its serve, started for this run alone on a channel of the
/// master's SSH session (`serve_command`), runs rsync there and kills it if this channel
/// closes first (a stopped run): a channel without a pty delivers no signal.
pub async fn run_remote(session: Arc<openssh::Session>, serve_command: &str, job: &Job) -> Outcome {
    let mut cmd = session.arc_raw_command(serve_command);
    cmd.stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot run rsync: {e}")),
    };
    let mut stdin = child.stdin().take().expect("piped");
    let mut stdout = child.stdout().take().expect("piped");
    let mut stderr = child.stderr().take().expect("piped");
    let hello = Request::Hello {
        magic: MAGIC,
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let run = Request::RunRsync {
        args: job
            .args(true)
            .into_iter()
            .map(|a| WirePath(a.into_vec()))
            .collect(),
        names: job.stdin(),
        // The master's own files: it splits them by holes.
        holes: job.src.remote.is_none().then(|| job.src.base.clone()),
    };
    let talk = async {
        write_frame_async(&mut stdin, &hello).await?;
        write_frame_async(&mut stdin, &run).await?;
        stdin.flush().await?;
        match read_frame_async::<Response, _>(&mut stdout).await? {
            Response::Hello {
                magic, protocol, ..
            } if magic == MAGIC && protocol == PROTOCOL_VERSION => {}
            other => {
                return Err(FrameError::Io(std::io::Error::other(format!(
                    "unexpected {}",
                    crate::peer::check::glimpse(&other, 60)
                ))))
            }
        }
        read_frame_async::<Response, _>(&mut stdout).await
    };
    // Read to its end, as the serve must not block on it, but only its start kept.
    let mut errs = Vec::new();
    let drain = async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut buf).await {
            let room = STDERR_KEPT.saturating_sub(errs.len());
            errs.extend_from_slice(&buf[..n.min(room)]);
        }
    };
    let (answer, _) = tokio::join!(talk, drain);
    drop(stdin);
    let _ = child.wait().await;
    match answer {
        Ok(Response::RsyncDone {
            code,
            stdout,
            stderr,
        }) => with_stats(classify(code, &String::from_utf8_lossy(&stderr)), &stdout),
        Ok(other) => Outcome::Failed(format!(
            "rsync: unexpected {}",
            crate::peer::check::glimpse(&other, 60)
        )),
        // ssh could not run the command: as rsync's own ssh failing, unreachable.
        Err(e) => classify(
            Some(255),
            &format!("{e} {}", String::from_utf8_lossy(&errs)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[u8]) -> WirePath {
        WirePath(s.to_vec())
    }

    fn remote_to_remote() -> Job {
        Job {
            src: Side {
                remote: None,
                base: w(b"/home/a/my dir"),
            },
            dst: Side {
                remote: Some(Remote {
                    dest: "bob@beta".into(),
                    port: Some(2222),
                    control: None,
                    ssh_config: None,
                    no_remote_command: false,
                }),
                base: w(b"/srv/home/bob/my dir"),
            },
            names: vec![w(b"."), w(b"-rf $(reboot);\n'x'"), w(b"\xff\xfe")],
            tuning: Tuning::default(),
            sparse: false,
        }
    }

    #[test]
    fn compression_is_off_unless_asked_and_bwlimit_is_in_kib() {
        let mut job = remote_to_remote();
        assert!(!job.display(true).contains(" -z"));
        job.tuning = Tuning {
            compress: true,
            bwlimit: Some(10 << 20),
        };
        let shown = job.display(true);
        // Relative: beside each file received, never an absolute basis path.
        let want = "rsync -ptsI --stats '--copy-dest=..' '--chmod=Du+rwx' --from0 '--files-from=-' '--partial-dir=.synk-scratch.0000000000000000' -z '--bwlimit=10240' ";
        assert!(shown.starts_with(want), "{shown}");
    }

    #[test]
    fn names_travel_on_stdin_never_as_arguments() {
        let job = remote_to_remote();
        let args = job.args(true);
        assert!(args
            .iter()
            .all(|a| !a.as_bytes().windows(4).any(|w| w == b"-rf ")));
        assert_eq!(job.stdin(), b".\0-rf $(reboot);\n'x'\0\xff\xfe\0".to_vec());
        assert_eq!(
            job.display(true),
            "rsync -ptsI --stats '--copy-dest=..' '--chmod=Du+rwx' --from0 '--files-from=-' '--partial-dir=.synk-scratch.0000000000000000' -e 'ssh -o BatchMode=yes -p 2222' '/home/a/my dir/' 'bob@beta:/srv/home/bob/my dir/'"
        );
    }

    #[test]
    fn remote_shell_arguments_are_quoted_bytes() {
        let mut job = remote_to_remote();
        job.src.base = w(b"/tmp/it's \xff $(x)");
        let args = job.shell_args(true).unwrap();
        // Every argument survives a POSIX shell split intact.
        let joined: Vec<u8> = args.join(OsStr::new(" ")).into_vec();
        let split = shlex::bytes::split(&joined).unwrap();
        let orig: Vec<Vec<u8>> = job.args(true).into_iter().map(|a| a.into_vec()).collect();
        assert_eq!(split, orig);
        job.src.base = w(b"/a\0b");
        assert_eq!(job.shell_args(true), None);
    }

    #[test]
    fn client_runs_reuse_the_control_socket() {
        let job = Job {
            src: Side {
                remote: Some(Remote {
                    dest: "alpha".into(),
                    port: None,
                    control: Some(PathBuf::from("/tmp/.ssh-connection x/master")),
                    ssh_config: Some(PathBuf::from("/etc/ssh cfg")),
                    no_remote_command: false,
                }),
                base: w(b"/h/a"),
            },
            dst: Side {
                remote: None,
                base: w(b"/h/b/"),
            },
            names: vec![],
            tuning: Tuning::default(),
            sparse: false,
        };
        assert_eq!(
            job.display(false),
            "rsync -ptsI --stats '--copy-dest=..' '--chmod=Du+rwx' --from0 '--files-from=-' '--partial-dir=.synk-scratch.0000000000000000' -e \"ssh -S '/tmp/.ssh-connection x/master' -o ControlMaster=no -F '/etc/ssh cfg'\" alpha:/h/a/ /h/b/"
        );
    }

    #[test]
    fn rsync_writes_beside_the_tree_with_the_old_file_as_its_basis() {
        assert!(RSYNC_OPTS.contains(&"--copy-dest=.."));
        assert!(!RSYNC_OPTS[0].contains('l'), "no symlinks through rsync");
    }

    #[test]
    fn stats_count_literal_and_matched_bytes() {
        let out = "Number of files: 1 (reg: 1)\nTotal file size: 8,388,608 bytes\n\
                   Literal data: 2,896 bytes\nMatched data: 8,385,712 bytes\n";
        assert_eq!(
            parse_stats(out),
            WireStats {
                literal: 2896,
                matched: 8_385_712
            }
        );
        assert_eq!(parse_stats("garbage\n"), WireStats::default());
        assert_eq!(
            with_stats(Outcome::Failed("x".into()), out.as_bytes()),
            Outcome::Failed("x".into())
        );
    }

    #[test]
    fn exit_codes_are_classified() {
        assert_eq!(classify(Some(0), ""), Outcome::Done(WireStats::default()));
        assert!(matches!(
            classify(Some(255), "ssh: connect to host x port 22: Connection refused\n"),
            Outcome::Unreachable(m) if m.contains("Connection refused")
        ));
        assert!(matches!(
            classify(
                Some(12),
                "rsync: connection unexpectedly closed (0 bytes received so far) [sender]"
            ),
            Outcome::Unreachable(_)
        ));
        assert!(
            matches!(classify(Some(23), "rsync: x: Permission denied"), Outcome::Failed(m) if m.contains("status 23"))
        );
    }

    #[test]
    fn only_files_with_holes_get_sparse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dense"), vec![7u8; 64 << 10]).unwrap();
        let f = std::fs::File::create(dir.path().join("holes")).unwrap();
        f.set_len(8 << 20).unwrap();
        let base = dir.path().as_os_str().as_bytes();
        let (dense, sparse) = split_by_holes(base, b"dense\0holes\0gone\0");
        assert_eq!(dense, b"dense\0");
        // A name that cannot be read is taken as sparse: never wrong, only slower.
        assert_eq!(sparse, b"holes\0gone\0");
        let mut job = remote_to_remote();
        assert!(!job.display(true).contains(SPARSE));
        job.sparse = true;
        assert!(job
            .display(true)
            .starts_with("rsync -ptsI --sparse --stats"));
    }

    #[test]
    fn split_runs_add_up_and_the_first_failure_stands() {
        let done = |l| {
            Outcome::Done(WireStats {
                literal: l,
                matched: 1,
            })
        };
        assert_eq!(
            and_then(done(2), done(3)),
            Outcome::Done(WireStats {
                literal: 5,
                matched: 2
            })
        );
        let failed = || Outcome::Failed("x".into());
        assert_eq!(and_then(done(2), failed()), failed());
        assert_eq!(and_then(failed(), done(2)), failed());
        let twice = "Literal data: 10 bytes\nMatched data: 1 bytes\nLiteral data: 5 bytes\n";
        assert_eq!(
            parse_stats(twice),
            WireStats {
                literal: 15,
                matched: 1
            }
        );
    }
}
