//! Everything synk tells the user, and only here: `-v` lines on stdout, errors, warnings and
//! conflicts on stderr, progress bars on a terminal, and the `--json` document. The modules
//! that do the work hand the [`Reporter`] [`Event`]s (`event.rs`); `text.rs` words them,
//! `json.rs` builds the document, `plan.rs` tells a root's plan. What peers, paths and errors
//! bring into a line is escaped for the terminal ([`text::escape`]); the document carries it
//! as it is, for its encoder to escape.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

mod event;
mod json;
mod plan;
pub mod text;

pub use event::{Event, Progress};
pub use json::RootDoc;

use crate::plan::{Listing, Plan};
use json::JsonDoc;
use text::{Style, Voice};

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
    /// `--max-size`, for the line that tells what it skipped.
    max_size: std::sync::atomic::AtomicU64,
    /// The files this run skipped for `--max-size`, told once at its end.
    too_big: Mutex<Vec<(crate::paths::WirePath, u64)>>,
}

/// A root's plan as the report tells it.
pub struct RootPlan<'a> {
    /// The root as the user named it.
    pub root: &'a str,
    /// What was decided.
    pub plan: &'a Plan,
    /// Each peer's listing of the root (`None`: left out).
    pub views: &'a [Option<&'a Listing>],
    /// Each peer's name.
    pub names: &'a [String],
    /// Each peer as its conflict copies' names spell it.
    pub labels: Vec<String>,
    /// Each peer's root as that peer has it (`None`: unknown; the user's spelling then).
    pub abs: &'a [Option<crate::paths::WirePath>],
    /// Each peer's role (missing: a normal peer).
    pub roles: &'a [crate::model::Role],
    /// The root is a directory (else a single file, whose conflict copies sit beside it).
    pub root_is_dir: bool,
}

/// Tells `ev` on stderr where there is no run to report to (`synk --serve`, a signal).
pub fn notice(ev: Event) {
    eprintln!("{}", text::line(&ev, Style::Terminal));
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
            max_size: std::sync::atomic::AtomicU64::new(0),
            too_big: Mutex::new(Vec::new()),
        }
    }

    /// `--json`: the run is described by one JSON document on stdout (see
    /// [`Reporter::end_run`]); lines meant for stdout go to stderr instead.
    pub fn with_json(mut self, on: bool) -> Self {
        self.json = on.then(|| Mutex::new(JsonDoc::default()));
        self
    }

    /// Whether `--json` is on.
    pub fn json(&self) -> bool {
        self.json.is_some()
    }

    /// Tells the user `ev`, in the voice it calls for; errors and conflicts are counted.
    pub fn emit(&self, ev: Event) {
        match text::voice(&ev) {
            Voice::Say(level) => self.say(level, &ev),
            Voice::Warn => {
                self.note(|d| d.warnings.push(text::line(&ev, Style::Plain)));
                if !self.quiet {
                    let line = text::line(&ev, Style::Terminal);
                    self.bars.suspend(|| eprintln!("synk: warning: {line}"));
                }
            }
            Voice::Error => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.note(|d| d.errors.push(text::line(&ev, Style::Plain)));
                let line = text::line(&ev, Style::Terminal);
                self.bars.suspend(|| eprintln!("synk: {line}"));
            }
            Voice::Conflict => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                self.note(|d| d.conflicts.push(text::line(&ev, Style::Plain)));
                if !self.quiet {
                    let line = text::line(&ev, Style::Terminal);
                    self.bars.suspend(|| eprintln!("synk: conflict: {line}"));
                }
            }
            Voice::Answer if self.json.is_some() => self.say(0, &ev),
            Voice::Answer => {
                let line = text::line(&ev, Style::Terminal);
                self.bars.suspend(|| println!("{line}"));
            }
            Voice::Notice => {
                let line = text::line(&ev, Style::Terminal);
                self.bars.suspend(|| eprintln!("{line}"));
            }
        }
    }

    /// A line on stdout when at least `level` `-v` were given (0: unless `-q`); on stderr with
    /// `--json`, whose document stdout is.
    fn say(&self, level: u8, ev: &Event) {
        if self.verbose >= level && !(self.quiet && level == 0) {
            let line = text::line(ev, Style::Terminal);
            if self.json.is_some() {
                self.bars.suspend(|| eprintln!("{line}"));
            } else {
                self.bars.suspend(|| println!("{line}"));
            }
        }
    }

    fn note(&self, f: impl FnOnce(&mut JsonDoc)) {
        if let Some(doc) = &self.json {
            f(&mut doc.lock().expect("json lock"));
        }
    }

    /// Adds one root's part to the `--json` document: `literal` bytes sent as they are and
    /// `matched` found on targets already, `seconds` the root took.
    pub fn add_json_root(&self, root: RootDoc, literal: u64, matched: u64, seconds: f64) {
        self.note(|d| d.roots.push(root.finish(literal, matched, seconds)));
    }

    /// Names the run's peers for the `--json` document, each with its role's words and
    /// whether it is connected.
    pub fn json_peers(&self, peers: Vec<(String, Vec<&'static str>, bool)>) {
        self.note(|d| {
            d.peers = peers
                .into_iter()
                .map(|(name, role, connected)| {
                    serde_json::json!({"peer": name, "role": role, "connected": connected})
                })
                .collect()
        });
    }

    /// Gives each peer of the `--json` document its `round_trips`.
    pub fn json_round_trips(&self, trips: &[(String, u64)]) {
        self.note(|d| {
            for v in &mut d.peers {
                if let Some((_, n)) = trips.iter().find(|(name, _)| v["peer"] == *name) {
                    v["round_trips"] = serde_json::json!(n);
                }
            }
        });
    }

    /// The run's `--max-size`, which the line about skipped files names.
    pub fn max_size(&self, limit: Option<u64>) {
        self.max_size
            .store(limit.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// A file skipped for `--max-size`, told with the others at the end of the run.
    fn skipped_too_big(&self, path: crate::paths::WirePath, size: u64) {
        self.too_big
            .lock()
            .expect("too_big lock")
            .push((path, size));
    }

    /// Ends a run that exits with `exit` after `seconds`: the files `--max-size` skipped, in
    /// one warning; with `--json`, its document on stdout (the next run, with `--every` or
    /// `--watch`, starts a new one).
    pub fn end_run(&self, exit: i32, seconds: f64, dry_run: bool) {
        let files = std::mem::take(&mut *self.too_big.lock().expect("too_big lock"));
        if !files.is_empty() {
            self.emit(Event::SkippedTooBig {
                limit: self.max_size.load(std::sync::atomic::Ordering::Relaxed),
                files,
            });
        }
        if let Some(doc) = &self.json {
            let doc = std::mem::take(&mut *doc.lock().expect("json lock"));
            println!("{}", json::to_text(&doc.document(exit, seconds, dry_run)));
        }
    }

    /// A `--versions` listing: a header row and a row per version (`peer`, the version); with
    /// `--json`, the document's `versions`.
    pub fn versions(&self, rows: Vec<(String, crate::model::Kept)>) {
        if self.json.is_some() {
            self.note(|d| {
                d.versions = Some(rows.iter().map(|(p, k)| json::version(p, k)).collect())
            });
            return;
        }
        if !rows.is_empty() {
            self.emit(Event::VersionsHeader);
        }
        for (peer, kept) in rows {
            self.emit(Event::Version { peer, kept });
        }
    }

    /// The `-v` count.
    pub fn verbosity(&self) -> u8 {
        self.verbose
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

    /// A counter of what `about` is doing, drawn only on a terminal.
    pub fn spinner(&self, about: Progress) -> ProgressBar {
        let pb = self.bars.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} entries").expect("valid template"),
        );
        pb.set_message(text::progress(&about));
        pb
    }

    /// A byte-count bar of `len` bytes, drawn only on a terminal.
    pub fn bytes_bar(&self, len: u64, about: Progress) -> ProgressBar {
        let pb = self.bars.add(ProgressBar::new(len));
        pb.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_message(text::progress(&about));
        pb
    }
}
