//! Watching the roots of the last scan for changes (`--watch`, and the re-checks of a session
//! that scans again, see [`super::recheck`]), with the `notify` crate: inotify on Linux. Events
//! about synk's own temp files are ignored; the client drains the changes its own copies cause
//! after each run.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use notify::{Config, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::recheck::RootId;

use crate::names;

/// A live watch over some roots.
pub struct Watch {
    _watcher: RecommendedWatcher,
    events: Receiver<notify::Result<notify::Event>>,
    /// Single-file roots: their directory is watched, only their own events count.
    files: Vec<PathBuf>,
    /// The roots watched, and what their paths led to then.
    roots: Vec<PathBuf>,
    ids: Vec<Option<RootId>>,
    /// An event was lost or a directory could not be watched: this watch may miss changes.
    broken: Cell<bool>,
    /// A change was seen since [`Watch::take_changed`] last asked, by whichever reader took
    /// the event off the queue.
    changed: Cell<bool>,
}

impl Watch {
    /// Watches `roots`: directories recursively, files through their directory.
    pub fn new(roots: &[PathBuf]) -> notify::Result<Watch> {
        let (tx, events) = channel();
        // Symlinks are synced as links, never followed: a watch that followed one would share
        // the target's watch and lose it when the link goes.
        let mut watcher = RecommendedWatcher::new(
            move |e| {
                let _ = tx.send(e);
            },
            Config::default().with_follow_symlinks(false),
        )?;
        let ids = roots.iter().map(|r| RootId::of(r)).collect();
        let mut files = Vec::new();
        for root in roots {
            if root.is_dir() {
                watcher.watch(root, RecursiveMode::Recursive)?;
            } else if let Some(dir) = root.parent().filter(|d| d.is_dir()) {
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
                files.push(root.clone());
            }
        }
        Ok(Watch {
            _watcher: watcher,
            events,
            files,
            ids,
            roots: roots.to_vec(),
            changed: Cell::new(false),
            broken: Cell::new(false),
        })
    }

    /// Marks this watch as one that may miss changes.
    pub fn set_broken(&self) {
        self.broken.set(true);
    }

    /// Whether this watch sees every change under `roots`, as their paths lead now: made for
    /// them, at the directories they are, and never short of an event or a directory since.
    pub fn covers(&self, roots: &[PathBuf]) -> bool {
        !self.broken.get()
            && self.roots == roots
            && roots
                .iter()
                .map(|r| RootId::of(r))
                .eq(self.ids.iter().copied())
    }

    /// Whether an event off the queue is a change, remembering it for [`Watch::take_changed`].
    /// A lost event (an overflowed queue, a failed watch) is taken for one.
    fn note(&self, e: &notify::Result<notify::Event>) -> bool {
        let change = match e {
            Ok(e) => self.counts(e),
            Err(_) => {
                self.broken.set(true);
                true
            }
        };
        if change {
            self.changed.set(true);
        }
        change
    }

    /// Whether anything changed since the last call (or since the watch began), events still
    /// queued included; the answer is forgotten once given.
    pub fn take_changed(&self) -> bool {
        self.drain();
        self.changed.replace(false)
    }

    /// Takes every queued event off the queue, noting the changes among them.
    fn drain(&self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => {
                    self.note(&e);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => return self.lost(),
            }
        }
    }

    /// The watcher's thread is gone: nothing more will be told, so assume a change.
    fn lost(&self) {
        self.broken.set(true);
        self.changed.set(true);
    }

    fn counts(&self, e: &notify::Event) -> bool {
        if e.need_rescan() {
            // The kernel's queue overflowed: events were lost.
            self.broken.set(true);
            return true;
        }
        if matches!(e.kind, notify::EventKind::Access(_)) {
            return false;
        }
        e.paths.iter().any(|p| {
            // synk's own temps and scratch directories (and what rsync writes inside one).
            let temp = p
                .components()
                .any(|c| names::is_own(c.as_os_str().as_encoded_bytes()));
            let outside = p
                .parent()
                .is_some_and(|d| self.files.iter().any(|f| f.parent() == Some(d)))
                && !self.files.iter().any(|f| f.as_path() == Path::new(p));
            !temp && !outside
        })
    }

    /// Forgets what happened so far (for [`Watch::wait`]; [`Watch::take_changed`] still
    /// learns of it).
    pub fn reset(&self) {
        self.drain();
    }

    /// Whether something changed within `wait`.
    pub fn wait(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if self.note(&e) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return false,
                // The watcher's thread is gone: nothing more will be told.
                Err(RecvTimeoutError::Disconnected) => {
                    self.lost();
                    return false;
                }
            }
            if left.is_zero() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_the_tree_is_seen_and_temp_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let w = Watch::new(std::slice::from_ref(&root)).unwrap();
        assert!(!w.wait(Duration::from_millis(100)));
        std::fs::write(root.join("sub/.synk-tmp.0123456789abcdef"), "x").unwrap();
        assert!(!w.wait(Duration::from_millis(300)), "synk's own temp file");
        std::fs::write(root.join("sub/new"), "x").unwrap();
        assert!(w.wait(Duration::from_secs(2)));
        // The rest of that write's events (modify, close) come in a burst; then quiet.
        std::thread::sleep(Duration::from_millis(500));
        w.reset();
        assert!(!w.wait(Duration::from_millis(100)));
    }

    #[test]
    fn a_change_is_remembered_whoever_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        let w = Watch::new(std::slice::from_ref(&root)).unwrap();
        assert!(!w.take_changed());
        std::fs::write(root.join(".synk-tmp.0123456789abcdef"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!w.take_changed(), "synk's own temp file");
        // Taken off the queue by a wait, or drained by a reset: still a change to the re-check.
        std::fs::write(root.join("f"), "y").unwrap();
        assert!(w.wait(Duration::from_secs(2)));
        assert!(w.take_changed());
        assert!(!w.take_changed(), "told once");
        std::fs::remove_file(root.join("f")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        w.reset();
        assert!(w.take_changed());
    }

    #[test]
    fn a_watch_covers_its_roots_as_they_were_and_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let outside = dir.path().join("out");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let w = Watch::new(std::slice::from_ref(&root)).unwrap();
        assert!(w.covers(std::slice::from_ref(&root)));
        assert!(!w.covers(&[dir.path().join("other")]));
        std::fs::write(outside.join("f"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!w.take_changed(), "a symlink's target is not the tree");
        std::fs::rename(&root, dir.path().join("old")).unwrap();
        std::fs::create_dir(&root).unwrap();
        assert!(
            !w.covers(std::slice::from_ref(&root)),
            "another directory at the path"
        );
    }
}
