//! Per-root locks on this peer, so two runs on one root (the `--watch` service and a manual
//! run, or two clients) take turns: one lock file per path under the state directory
//! (`locks/HASH.lock`), held with `flock` for as long as the session wants it.
//!
//! A root takes its own lock exclusively and every ancestor's shared, so a run on a tree and
//! one on a tree inside it exclude each other while siblings do not. Nested roots share state
//! files, though: every ancestor that has a state file (a root a sync of this one reads and
//! rewrites the records of) is taken exclusively too, so two siblings under a recorded parent
//! take turns as well. Locks are always taken in path order, ancestors first, so two serves
//! that wait never wait for each other.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Server;
use crate::model::Digest;
use crate::paths::{RootSpec, WirePath};
use crate::proto::{write_frame, FrameError, Response};
use crate::state;

/// How a path's lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    /// Beside other shared holders: an ancestor of a root.
    Shared,
    /// Alone: a root, or the root of a state file a root uses.
    Exclusive,
}

/// The locks `roots` need on a peer with the state directory `state_dir`, in the order they
/// are taken: path order, each ancestor before what is below it.
pub(super) fn wanted(state_dir: &Path, roots: &[PathBuf]) -> Vec<(PathBuf, Mode)> {
    let mut out: Vec<(PathBuf, Mode)> = Vec::new();
    for root in roots {
        out.push((root.clone(), Mode::Exclusive));
        for a in root.ancestors().skip(1) {
            let recorded = fs::symlink_metadata(state::file_for(state_dir, a)).is_ok();
            let mode = if recorded {
                Mode::Exclusive
            } else {
                Mode::Shared
            };
            out.push((a.to_path_buf(), mode));
        }
    }
    // Of one path wanted twice, the exclusive want stands.
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by(|later, first| later.0 == first.0);
    out
}

/// The locks one session holds.
#[derive(Debug)]
pub(super) struct Locks {
    /// `locks/` in the state directory.
    dir: PathBuf,
    /// Held now, in the order taken.
    held: Vec<(PathBuf, Mode, File)>,
}

/// How a wait for a lock ended without it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Missed {
    /// Another run held the lock of this path all along.
    Busy(PathBuf),
    /// The client hung up while this serve waited.
    Gone,
    /// The lock file could not be opened or locked.
    Failed(String),
}

/// Poll intervals while waiting: short at first, then a few a second.
const FIRST_STEP: Duration = Duration::from_millis(10);
const LAST_STEP: Duration = Duration::from_millis(250);

impl Locks {
    /// No locks held yet, their files below `state_dir`.
    pub(super) fn new(state_dir: &Path) -> Locks {
        Locks {
            dir: state_dir.join("locks"),
            held: Vec::new(),
        }
    }

    /// Whether every lock of `wanted` is held, in at least that mode.
    pub(super) fn covers(&self, wanted: &[(PathBuf, Mode)]) -> bool {
        wanted.iter().all(|(p, m)| {
            self.held
                .iter()
                .any(|(hp, hm, _)| hp == p && (*hm == Mode::Exclusive || *m == Mode::Shared))
        })
    }

    /// Releases every lock held.
    pub(super) fn release(&mut self) {
        // Closing a lock's file releases it; newest first.
        while self.held.pop().is_some() {}
    }

    /// Whether any lock is held.
    #[cfg(test)]
    pub(super) fn any(&self) -> bool {
        !self.held.is_empty()
    }

    fn file(&self, path: &Path) -> io::Result<File> {
        let d = Digest::of(path.as_os_str().as_encoded_bytes());
        fs::create_dir_all(&self.dir)?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.dir.join(format!("{}.lock", &d.hex()[..32])))
    }

    /// Takes one lock without waiting: `Ok(false)` where another run holds it.
    fn try_one(&mut self, path: &Path, mode: Mode) -> Result<bool, Missed> {
        let f = self
            .file(path)
            .map_err(|e| Missed::Failed(format!("{}: cannot lock: {e}", path.display())))?;
        let how = match mode {
            Mode::Shared => libc::LOCK_SH,
            Mode::Exclusive => libc::LOCK_EX,
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
            self.held.push((path.to_path_buf(), mode, f));
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(false),
            Some(libc::EINTR) => Ok(false),
            _ => Err(Missed::Failed(format!(
                "{}: cannot lock: {e}",
                path.display()
            ))),
        }
    }

    /// Takes every lock of `wanted` without waiting, or none: on the first one another run
    /// holds, every lock this session held is released.
    pub(super) fn try_all(&mut self, wanted: &[(PathBuf, Mode)]) -> Result<(), Missed> {
        self.release();
        for (path, mode) in wanted {
            match self.try_one(path, *mode) {
                Ok(true) => {}
                Ok(false) => {
                    self.release();
                    return Err(Missed::Busy(path.clone()));
                }
                Err(e) => {
                    self.release();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Takes every lock of `wanted` in order, waiting up to `wait` in all for locks other
    /// runs hold: `waiting` is told the first path waited for. While waiting it watches
    /// `client` (the conversation's input), so a client that hangs up does not leave this
    /// serve holding locks. On failure nothing is held.
    pub(super) fn take_all(
        &mut self,
        wanted: &[(PathBuf, Mode)],
        wait: Duration,
        client: Option<RawFd>,
        mut waiting: impl FnMut(&Path),
    ) -> Result<(), Missed> {
        self.release();
        let deadline = Instant::now() + wait;
        let mut told = false;
        for (path, mode) in wanted {
            let mut step = FIRST_STEP;
            loop {
                match self.try_one(path, *mode) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        self.release();
                        return Err(e);
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    self.release();
                    return Err(Missed::Busy(path.clone()));
                }
                if !told {
                    waiting(path);
                    told = true;
                }
                if hung_up(client, step.min(deadline - now)) {
                    self.release();
                    return Err(Missed::Gone);
                }
                step = (step * 2).min(LAST_STEP);
            }
        }
        Ok(())
    }
}

/// Attempts at a set of locks before a scan calls them busy: the set is read again once
/// held (a state file made or absorbed meanwhile changes it), and taken again if it grew.
const TRIES: usize = 3;

impl Server {
    /// The absolute paths of `roots` that resolve here (the others fail in the scan).
    fn lock_paths(&self, roots: &[RootSpec]) -> Vec<PathBuf> {
        roots.iter().filter_map(|s| self.resolve(s).ok()).collect()
    }

    /// Answers the lock part of a [`Request::Scan`](crate::proto::Request::Scan): takes the
    /// roots' locks without waiting (where not held already) and says so, with this peer's
    /// key. False where another run holds one: then nothing is held, and no scan follows.
    pub(super) fn lock_for_scan<W: Write>(
        &mut self,
        roots: &[RootSpec],
        w: &mut W,
    ) -> Result<bool, FrameError> {
        let busy = match self.state_dir.clone() {
            Some(dir) => {
                let paths = self.lock_paths(roots);
                let locks = self.locks.get_or_insert_with(|| Locks::new(&dir));
                let mut busy = None;
                for _ in 0..TRIES {
                    let want = wanted(&dir, &paths);
                    if locks.covers(&want) {
                        busy = None;
                        break;
                    }
                    busy = match locks.try_all(&want) {
                        Ok(()) => continue,
                        Err(Missed::Busy(p)) => Some(p),
                        Err(Missed::Failed(e)) => {
                            // Sync state cannot be kept consistent here anyway: say so, and
                            // go on as a peer without locks.
                            let warning = format!("{e}; syncing without the lock");
                            write_frame(w, &Response::Warning(warning))?;
                            None
                        }
                        Err(Missed::Gone) => None,
                    };
                    break;
                }
                busy
            }
            None => None,
        };
        let answer = Response::Locked {
            key: self.key,
            busy: busy.as_deref().map(WirePath::from_path),
        };
        write_frame(w, &answer)?;
        Ok(busy.is_none())
    }

    /// Answers [`Request::Lock`](crate::proto::Request::Lock): takes the roots' locks, waiting
    /// up to `wait` for other runs (telling the client when it starts to wait).
    pub(super) fn lock<W: Write>(
        &mut self,
        roots: &[RootSpec],
        wait: Duration,
        w: &mut W,
    ) -> Result<(), FrameError> {
        let Some(dir) = self.state_dir.clone() else {
            return write_frame(w, &Response::Done);
        };
        let paths = self.lock_paths(roots);
        let client = self.client;
        let deadline = Instant::now() + wait;
        let locks = self.locks.get_or_insert_with(|| Locks::new(&dir));
        let mut write_failed = None;
        loop {
            let want = wanted(&dir, &paths);
            if locks.covers(&want) {
                return write_frame(w, &Response::Done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let res = locks.take_all(&want, left, client, |p| {
                let said = write_frame(w, &Response::Waiting(WirePath::from_path(p)))
                    .and_then(|()| w.flush().map_err(FrameError::Io));
                if let Err(e) = said {
                    write_failed.get_or_insert(e);
                }
            });
            if let Some(e) = write_failed.take() {
                locks.release();
                return Err(e);
            }
            match res {
                // Read the set again now that it is held.
                Ok(()) => continue,
                Err(Missed::Busy(p)) => {
                    let root = paths
                        .iter()
                        .find(|r| r.starts_with(&p))
                        .unwrap_or(&p)
                        .clone();
                    let waited = humantime::format_duration(Duration::from_secs(wait.as_secs()));
                    let e = format!(
                        "{}: another synk run on {} still holds its lock after {waited} (--lock-wait); not synced there",
                        root.display(),
                        p.display()
                    );
                    return write_frame(w, &Response::Failed(e));
                }
                Err(Missed::Failed(e)) => return write_frame(w, &Response::Failed(e)),
                Err(Missed::Gone) => return Err(FrameError::Closed),
            }
        }
    }

    /// Answers [`Request::Unlock`](crate::proto::Request::Unlock): releases every lock held.
    pub(super) fn unlock(&mut self) {
        if let Some(l) = &mut self.locks {
            l.release();
        }
    }
}

/// Waits `pause`, or less if the client's end of `fd` hangs up: true then.
fn hung_up(fd: Option<RawFd>, pause: Duration) -> bool {
    let Some(fd) = fd else {
        std::thread::sleep(pause);
        return false;
    };
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let ms = pause.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd, as many as we say.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn a_root_wants_its_ancestors_shared_and_recorded_ones_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        use Mode::*;
        assert_eq!(
            wanted(dir.path(), &[p("/h/notes/sub")]),
            [
                (p("/"), Shared),
                (p("/h"), Shared),
                (p("/h/notes"), Shared),
                (p("/h/notes/sub"), Exclusive),
            ]
        );
        // /h/notes has a state file: a sync of a root inside it rewrites that file.
        let file = state::file_for(dir.path(), Path::new("/h/notes"));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"").unwrap();
        assert_eq!(
            wanted(dir.path(), &[p("/h/notes/sub"), p("/h/notes/b"), p("/h")]),
            [
                (p("/"), Shared),
                (p("/h"), Exclusive),
                (p("/h/notes"), Exclusive),
                (p("/h/notes/b"), Exclusive),
                (p("/h/notes/sub"), Exclusive),
            ]
        );
    }

    /// Whether a second session can take `b` while a first holds `a`.
    fn excludes(dir: &Path, a: &[&str], b: &[&str]) -> bool {
        let paths = |v: &[&str]| v.iter().map(|s| p(s)).collect::<Vec<_>>();
        let mut first = Locks::new(dir);
        first.try_all(&wanted(dir, &paths(a))).unwrap();
        let mut second = Locks::new(dir);
        let res = second.try_all(&wanted(dir, &paths(b)));
        assert!(res.is_ok() || !second.any(), "all or nothing");
        res.is_err()
    }

    #[test]
    fn nested_roots_and_siblings_sharing_a_state_file_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(excludes(d, &["/h/notes"], &["/h/notes"]));
        assert!(excludes(d, &["/h/notes"], &["/h/notes/sub"]));
        assert!(excludes(d, &["/h/notes/sub"], &["/h/notes"]));
        assert!(excludes(d, &["/h/a", "/h/notes/sub"], &["/h/notes"]));
        assert!(!excludes(d, &["/h/notes/a"], &["/h/notes/b"]));
        assert!(!excludes(d, &["/h/notes"], &["/h/other"]));
        // With a state file of /h/notes, its roots inside share it.
        let file = state::file_for(d, Path::new("/h/notes"));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"").unwrap();
        assert!(excludes(d, &["/h/notes/a"], &["/h/notes/b"]));
        assert!(!excludes(d, &["/h/notes"], &["/h/other"]));
    }

    #[test]
    fn a_wait_ends_when_the_lock_is_free_or_the_time_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let want = wanted(dir.path(), &[p("/h/notes")]);
        let mut first = Locks::new(dir.path());
        first.try_all(&want).unwrap();
        assert!(first.covers(&want));
        let mut second = Locks::new(dir.path());
        // Busy all along: told once, then given up, holding nothing.
        let mut told = Vec::new();
        let started = Instant::now();
        let res = second.take_all(&want, Duration::from_millis(300), None, |p| {
            told.push(p.to_path_buf())
        });
        assert_eq!(res, Err(Missed::Busy(p("/h/notes"))));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(told, [p("/h/notes")]);
        assert!(!second.any());
        // Freed while waiting: taken.
        let freer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            first.release();
        });
        second
            .take_all(&want, Duration::from_secs(10), None, |_| {})
            .unwrap();
        assert!(second.covers(&want));
        freer.join().unwrap();
        second.release();
        assert!(!second.covers(&want));
    }

    fn answers(out: &[u8]) -> Vec<Response> {
        let mut r = out;
        let mut v = Vec::new();
        while let Ok(resp) = crate::proto::read_frame::<Response, _>(&mut r) {
            v.push(resp);
        }
        v
    }

    #[test]
    fn a_second_session_is_told_busy_then_waits_then_gets_the_lock() {
        let home = tempfile::tempdir().unwrap();
        let serve = || {
            let mut s = Server::new(Some(home.path().to_path_buf()));
            s.with_state(Some(home.path().join("state")));
            s
        };
        let roots = [RootSpec::Home(WirePath::from("notes/sub"))];
        let parent = [RootSpec::Home(WirePath::from("notes"))];
        let mut first = serve();
        let mut out = Vec::new();
        assert!(first.lock_for_scan(&roots, &mut out).unwrap());
        match &answers(&out)[..] {
            [Response::Locked { key, busy: None }] => assert_eq!(*key, first.key),
            other => panic!("{other:?}"),
        }
        assert_ne!(first.key, 0);
        let mut second = serve();
        let mut out = Vec::new();
        assert!(!second.lock_for_scan(&parent, &mut out).unwrap());
        let notes = home.path().join("notes");
        // The parent's own lock is the one busy: the first session holds it shared.
        match &answers(&out)[..] {
            [Response::Locked { busy: Some(p), .. }] => assert_eq!(p, &WirePath::from_path(&notes)),
            other => panic!("{other:?}"),
        }
        // Waiting, then given up, naming the root and the path held.
        let mut out = Vec::new();
        second
            .lock(&parent, Duration::from_millis(200), &mut out)
            .unwrap();
        match &answers(&out)[..] {
            [Response::Waiting(p), Response::Failed(e)] => {
                assert_eq!(p, &WirePath::from_path(&notes));
                assert!(e.starts_with(&notes.display().to_string()), "{e}");
                assert!(e.contains("another synk run"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Released (the first session's run is over): taken at once.
        first.unlock();
        let mut out = Vec::new();
        second
            .lock(&parent, Duration::from_secs(5), &mut out)
            .unwrap();
        assert!(matches!(&answers(&out)[..], [Response::Done]));
        // Held already: a locking scan goes ahead.
        let mut out = Vec::new();
        assert!(second.lock_for_scan(&parent, &mut out).unwrap());
        assert!(!first.lock_for_scan(&roots, &mut Vec::new()).unwrap());
    }

    #[test]
    fn a_client_that_hangs_up_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let want = wanted(dir.path(), &[p("/h/notes")]);
        let mut first = Locks::new(dir.path());
        first.try_all(&want).unwrap();
        let mut fds = [0; 2];
        // SAFETY: a pipe into an array of two.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = (fds[0], fds[1]);
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: the write end, closed once.
            unsafe { libc::close(write) };
        });
        let mut second = Locks::new(dir.path());
        let started = Instant::now();
        let res = second.take_all(&want, Duration::from_secs(30), Some(read), |_| {});
        assert_eq!(res, Err(Missed::Gone));
        assert!(started.elapsed() < Duration::from_secs(10));
        closer.join().unwrap();
        // SAFETY: the read end, closed once.
        unsafe { libc::close(read) };
    }
}
