//! A remote master's rsync, started and stopped by its serve: the client cannot signal a
//! process at the far end of an ssh channel without a pty, so the serve runs rsync in a
//! process group of its own and kills that group the moment its client hangs up.
//!
//! Also the serve's own end on a signal: its temp files and scratch directories are removed
//! (see [`crate::beneath::on_stop`]) before it exits.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Server;
use crate::paths::WirePath;
use crate::proto::{Response, RSYNC_OUTPUT};
use crate::transfer::rsync::{split_by_holes, SPARSE};

impl Server {
    /// Answers [`crate::proto::Request::RunRsync`]: with `holes`, files with holes below
    /// that directory go in a run of their own with `--sparse`, after the rest.
    pub(super) fn run_rsync(
        &self,
        args: Vec<WirePath>,
        names: Vec<u8>,
        holes: Option<WirePath>,
    ) -> Response {
        let Some(base) = holes else {
            return self.run_one(&args, names);
        };
        let (dense, sparse) = split_by_holes(base.as_bytes(), &names);
        if sparse.is_empty() {
            return self.run_one(&args, dense);
        }
        let mut with_sparse = args.clone();
        with_sparse.insert(1.min(args.len()), WirePath(SPARSE.into()));
        if dense.is_empty() {
            return self.run_one(&with_sparse, sparse);
        }
        match self.run_one(&args, dense) {
            Response::RsyncDone {
                code: Some(0),
                stdout,
                stderr,
            } => match self.run_one(&with_sparse, sparse) {
                // One answer for both runs, within the bounds of one: their statistics add up
                // (see `parse_stats`; rsync's `--stats` are a few hundred bytes).
                Response::RsyncDone {
                    code,
                    stdout: more,
                    stderr: errs,
                } => {
                    let mut out = [stdout, more].concat();
                    out.truncate(RSYNC_OUTPUT);
                    let errs = [stderr, errs].concat();
                    Response::RsyncDone {
                        code,
                        stdout: out,
                        stderr: errs[errs.len().saturating_sub(RSYNC_OUTPUT)..].to_vec(),
                    }
                }
                other => other,
            },
            failed => failed,
        }
    }

    /// Runs rsync once.
    fn run_one(&self, args: &[WirePath], names: Vec<u8>) -> Response {
        let spawned = Command::new("rsync")
            .args(args.iter().map(|a| a.as_path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return Response::RsyncDone {
                    code: Some(127),
                    stdout: Vec::new(),
                    stderr: format!("cannot run rsync: {e}").into_bytes(),
                }
            }
        };
        let mut stdin = child.stdin.take().expect("piped");
        let feed = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&names);
        });
        let out = tail_of(child.stdout.take().expect("piped"), false);
        let err = tail_of(child.stderr.take().expect("piped"), true);
        let hung_up = self.watch_hangup();
        let pgid = child.id() as i32;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(_) => break None,
            }
            if hung_up.load(Ordering::Relaxed) {
                kill_group(pgid);
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = feed.join();
        Response::RsyncDone {
            code: status.and_then(|s| s.code()),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// A flag set once this serve's client hangs up (its standard input ends), where the
    /// serve runs on standard input at all.
    fn watch_hangup(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Some(fd) = self.client {
            let f = flag.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    // SAFETY: reading into a buffer this thread owns; `fd` is the conversation's
                    // input, which nothing else reads while rsync runs (the client sends
                    // nothing more in this conversation).
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n == 0
                        || (n < 0
                            && std::io::Error::last_os_error().kind()
                                != std::io::ErrorKind::Interrupted)
                    {
                        f.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
        flag
    }
}

/// SIGTERM to a process group, and SIGKILL to what is left of it after a second.
fn kill_group(pgid: i32) {
    // SAFETY: signals to the process group of a child this serve started.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(1);
    // SAFETY: as above; signal 0 only asks whether the group still exists.
    while Instant::now() < deadline && unsafe { libc::kill(-pgid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Reads `r` to its end on a thread of its own, keeping the first (or, with `last`, the last)
/// [`RSYNC_OUTPUT`] bytes.
fn tail_of(mut r: impl Read + Send + 'static, last: bool) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > RSYNC_OUTPUT {
                if last {
                    kept.drain(..kept.len() - RSYNC_OUTPUT);
                } else {
                    kept.truncate(RSYNC_OUTPUT);
                }
            }
        }
        kept
    })
}

/// Makes SIGINT, SIGTERM and SIGHUP end this serve cleanly: blocked in every thread, and
/// taken by one thread that removes what the serve was writing, then exits with the usual
/// status. Called before any other thread starts.
pub fn stop_on_signals() {
    // SAFETY: plain signal-mask calls on a set this function owns.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                crate::beneath::on_stop();
                std::process::exit(128 + sig);
            }
        });
    }
}
