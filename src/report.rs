//! Everything synk tells the user: `-v` lines on stdout, errors and warnings on stderr,
//! progress bars on a terminal only.

use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::Kind;
use crate::plan::Seen;

/// The run's voice.
pub struct Reporter {
    verbose: u8,
    quiet: bool,
    bars: MultiProgress,
    failures: AtomicUsize,
    conflicts: AtomicUsize,
    pending: AtomicUsize,
    /// `--json`: what the run's document collects.
    json: Option<Mutex<JsonDoc>>,
}

/// What `--json` collects during a run.
#[derive(Default)]
struct JsonDoc {
    roots: Vec<serde_json::Value>,
    errors: Vec<String>,
    warnings: Vec<String>,
    conflicts: Vec<String>,
}

impl Reporter {
    /// A reporter for `-v` count `verbose` and `-q`; progress only when stderr is a terminal.
    pub fn new(verbose: u8, quiet: bool) -> Self {
        let target = if !quiet && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Reporter {
            verbose,
            quiet,
            bars: MultiProgress::with_draw_target(target),
            failures: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            json: None,
        }
    }

    /// `--json`: the run is described by one JSON document on stdout (see
    /// [`Reporter::json_document`]); lines meant for stdout go to stderr instead.
    pub fn with_json(mut self, on: bool) -> Self {
        self.json = on.then(|| Mutex::new(JsonDoc::default()));
        self
    }

    /// Whether `--json` is on.
    pub fn json(&self) -> bool {
        self.json.is_some()
    }

    /// Adds one root's part to the document.
    pub fn add_json_root(&self, root: serde_json::Value) {
        if let Some(doc) = &self.json {
            doc.lock().expect("json lock").roots.push(root);
        }
    }

    fn note(&self, f: impl FnOnce(&mut JsonDoc)) {
        if let Some(doc) = &self.json {
            f(&mut doc.lock().expect("json lock"));
        }
    }

    /// The run's document, emptied for the next run: exit status, time, roots, messages.
    pub fn json_document(&self, exit: i32, seconds: f64, dry_run: bool) -> serde_json::Value {
        let Some(doc) = &self.json else {
            return serde_json::Value::Null;
        };
        let doc = std::mem::take(&mut *doc.lock().expect("json lock"));
        serde_json::json!({
            "synk": env!("CARGO_PKG_VERSION"),
            "exit": exit,
            "dry_run": dry_run,
            "seconds": seconds,
            "roots": doc.roots,
            "conflicts": doc.conflicts,
            "errors": doc.errors,
            "warnings": doc.warnings,
        })
    }

    /// The `-v` count.
    pub fn verbosity(&self) -> u8 {
        self.verbose
    }

    /// A line on stdout when at least `level` `-v` were given (0: unless `-q`).
    pub fn say(&self, level: u8, line: impl Display) {
        if self.verbose >= level && !(self.quiet && level == 0) {
            if self.json.is_some() {
                self.bars.suspend(|| eprintln!("{line}"));
            } else {
                self.bars.suspend(|| println!("{line}"));
            }
        }
    }

    /// A warning on stderr (not with `-q`); does not affect the exit status.
    pub fn warn(&self, line: impl Display) {
        self.note(|d| d.warnings.push(line.to_string()));
        if !self.quiet {
            self.bars.suspend(|| eprintln!("synk: warning: {line}"));
        }
    }

    /// An error on stderr; the run will exit 1.
    pub fn error(&self, line: impl Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.note(|d| d.errors.push(line.to_string()));
        self.bars.suspend(|| eprintln!("synk: {line}"));
    }

    /// Forgets the counts of the previous run (periodic and watch mode).
    pub fn reset(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.conflicts.store(0, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
    }

    /// Errors reported so far.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    /// A conflict on stderr (not with `-q`): both versions were kept.
    pub fn conflict(&self, line: impl Display) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        self.note(|d| d.conflicts.push(line.to_string()));
        if !self.quiet {
            self.bars.suspend(|| eprintln!("synk: conflict: {line}"));
        }
    }

    /// Conflicts reported so far.
    pub fn conflicts(&self) -> usize {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// A dry run found something that it would change.
    pub fn pending(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a dry run found anything to change.
    pub fn any_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// A counter with a message, drawn only on a terminal.
    pub fn spinner(&self, msg: String) -> ProgressBar {
        let pb = self.bars.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} entries").expect("valid template"),
        );
        pb.set_message(msg);
        pb
    }

    /// A byte-count bar, drawn only on a terminal.
    pub fn bytes_bar(&self, len: u64, msg: String) -> ProgressBar {
        let pb = self.bars.add(ProgressBar::new(len));
        pb.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_message(msg);
        pb
    }
}

/// The C synk's `peer:` line: `peer: HOST PATH SHA7 MTIME`.
pub fn peer_line(host: &str, path: &str, seen: Option<&Seen>) -> String {
    match seen.map(|s| &s.state) {
        None => format!("peer: {host} {path} missing"),
        Some(Ok(None)) => format!("peer: {host} {path} deleted"),
        Some(Err(e)) => format!("peer: {host} {path} unreadable ({e})"),
        Some(Ok(Some(m))) => {
            let secs = m.mtime.div_euclid(1_000_000_000);
            match (&m.kind, &m.digest) {
                (Kind::Dir, _) => format!("peer: {host} {path} dir {secs}"),
                (Kind::Special, _) => format!("peer: {host} {path} special {secs}"),
                (_, Some(d)) => format!("peer: {host} {path} {} {secs}", d.short()),
                (_, None) => format!("peer: {host} {path} ? {secs}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Digest, Meta};

    fn seen(m: Meta) -> Seen {
        Seen {
            state: Ok(Some(m)),
            vv: None,
            changed: true,
        }
    }

    #[test]
    fn peer_lines_match_the_c_tool() {
        let m = Meta {
            kind: Kind::File,
            size: 1,
            mode: 0o644,
            mtime: 1_473_157_705_999_999_999,
            digest: Some(Digest::of(b"")),
        };
        assert_eq!(
            peer_line("keel", "/home/z/file", Some(&seen(m))),
            "peer: keel /home/z/file cf83e13 1473157705"
        );
        assert_eq!(peer_line("b", "/x", None), "peer: b /x missing");
        let d = Meta {
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            mtime: 5_000_000_000,
            digest: None,
        };
        assert_eq!(peer_line("b", "/x", Some(&seen(d))), "peer: b /x dir 5");
    }
}
