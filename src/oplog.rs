//! The operations log: one line per action of every run, on the client.
//!
//! `$XDG_STATE_HOME/synk/synk.log` (`~/.local/state/synk/synk.log`) unless `--log FILE` or
//! synk.conf(5) `log FILE` says otherwise. Tab-separated: time (UTC), root, entry, peer,
//! action, and the peer the version came from. Past [`MAX_BYTES`] the file is moved to
//! `synk.log.1` (replacing the one before), so it never grows without bound.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the log is rotated.
pub const MAX_BYTES: u64 = 4 << 20;

/// An open operations log (or none, when it cannot be opened: a warning says so once).
pub struct OpLog {
    file: Option<Mutex<File>>,
}

/// The default log file: `$XDG_STATE_HOME/synk/synk.log`.
pub fn default_path() -> Option<PathBuf> {
    crate::state::state_dir(crate::os::home_dir().as_deref()).map(|d| d.join("synk.log"))
}

impl OpLog {
    /// A log that writes nothing (dry runs).
    pub fn none() -> OpLog {
        OpLog { file: None }
    }

    /// Opens `path` for appending, rotating it first when it is too big.
    pub fn open(path: &Path) -> std::io::Result<OpLog> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        if fs::metadata(path).is_ok_and(|m| m.len() > MAX_BYTES) {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            fs::rename(path, old)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(OpLog {
            file: Some(Mutex::new(file)),
        })
    }

    /// Appends one action.
    pub fn line(&self, root: &str, entry: &str, peer: &str, action: &str, from: Option<&str>) {
        let Some(file) = &self.file else { return };
        let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        // Names come from peers: escaped as for a terminal (`tail -f` shows the log), which
        // also keeps tabs and line breaks out of the fields.
        let clean = |s: &str| crate::report::text::escape(s.as_bytes()).into_owned();
        let line = format!(
            "{when}\t{}\t{}\t{}\t{action}\t{}\n",
            clean(root),
            clean(entry),
            clean(peer),
            from.map(clean).unwrap_or_else(|| "-".into())
        );
        // One write per line: appends from concurrent runs do not interleave mid-line.
        let _ = file.lock().expect("log lock").write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/synk.log");
        let log = OpLog::open(&path).unwrap();
        log.line("/home/u/notes", "a\tb\x1b[2J\r", "beta", "deleted", None);
        log.line("/home/u/notes", "c", "gamma", "updated", Some("beta"));
        drop(log);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0][1..],
            ["/home/u/notes", "a\\tb\\x1b[2J\\r", "beta", "deleted", "-"]
        );
        assert_eq!(lines[1][4..], ["updated", "beta"]);
        fs::write(&path, vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        OpLog::open(&path)
            .unwrap()
            .line("r", "e", "p", "created", None);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert!(dir.path().join("state/synk.log.1").exists());
    }
}
