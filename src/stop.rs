//! Stopping at once: on SIGINT, SIGTERM or SIGHUP a run stops every child within a second and
//! exits 130, 143 or 129. Every child the client starts (its local serve, the ssh masters, local
//! rsync runs) leads a process group of its own, out of the terminal's, and is registered here
//! while it runs, with the control directories of the ssh masters.
//!
//! Stopping sends SIGTERM to every group (a serve then removes its temp files, rsync its own),
//! waits up to a second, sends SIGKILL to what is left, closes the ssh masters that are not this
//! process's children and removes every control directory. A remote serve sees its ssh channel
//! close and stops too, and so does a remote rsync, which its serve started and kills (a channel
//! without a pty delivers no signal).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is registered while it runs.
#[derive(Default)]
struct Registry {
    next: u64,
    /// Process groups, each led by a child of this process.
    groups: Vec<(u64, i32)>,
    /// Control directories of ssh masters (socket `master` inside).
    masters: Vec<(u64, PathBuf)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    groups: Vec::new(),
    masters: Vec::new(),
});

/// Removes what it registered when dropped (the child ended, the master was closed).
#[derive(Debug)]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        r.groups.retain(|(id, _)| *id != self.0);
        r.masters.retain(|(id, _)| *id != self.0);
    }
}

fn register(f: impl FnOnce(&mut Registry, u64)) -> Registered {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.next += 1;
    let id = r.next;
    f(&mut r, id);
    Registered(id)
}

/// Registers the process group a child leads (spawned with `process_group(0)`); `None` (no
/// pid: it is gone already) registers nothing.
pub fn group(pid: Option<u32>) -> Registered {
    register(|r, id| {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            r.groups.push((id, pid));
        }
    })
}

/// Registers the control directory of an ssh master.
pub fn master(dir: &Path) -> Registered {
    register(|r, id| r.masters.push((id, dir.to_path_buf())))
}

/// The exit status for a run stopped by `signal`.
pub fn status(signal: i32) -> i32 {
    128 + signal
}

/// Whether the leader of process group `pgid` still runs (a zombie waiting to be reaped does
/// not).
fn running(pgid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pgid}/stat")) {
        // pid (comm) STATE …: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No /proc: ask the kernel whether the group exists at all.
        // SAFETY: kill with signal 0 only checks for the process group.
        Err(_) => unsafe { libc::kill(-pgid, 0) == 0 },
    }
}

/// Stops every registered child and master as the module says, and exits with
/// [`status`]`(signal)`.
pub fn now(signal: i32) -> ! {
    let (groups, masters) = {
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut r.groups),
            std::mem::take(&mut r.masters),
        )
    };
    for (_, g) in &groups {
        // SAFETY: a signal to a process group this process started.
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while groups.iter().any(|(_, g)| running(*g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, g) in &groups {
        // SAFETY: as above; a group that is gone answers ESRCH, which is fine.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    for (_, dir) in &masters {
        // A master of our own daemonised itself: ask it to exit, then remove its directory.
        let socket = dir.join("master");
        if socket.exists() {
            let _ = std::process::Command::new("ssh")
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", "synk"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(status(signal));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_end_with_their_guard() {
        let before = REGISTRY.lock().unwrap().groups.len();
        let g = group(Some(4_000_000));
        let m = master(Path::new("/nonexistent/x"));
        assert_eq!(REGISTRY.lock().unwrap().groups.len(), before + 1);
        drop(g);
        drop(m);
        let r = REGISTRY.lock().unwrap();
        assert_eq!(r.groups.len(), before);
        assert!(!r
            .masters
            .iter()
            .any(|(_, d)| d == Path::new("/nonexistent/x")));
    }

    #[test]
    fn a_process_that_is_gone_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!running(pid));
        assert!(running(std::process::id() as i32));
        assert_eq!((status(2), status(15), status(1)), (130, 143, 129));
    }
}
