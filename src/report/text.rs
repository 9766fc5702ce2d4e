//! How each [`Event`] reads: which voice tells it (a `-v` line, a warning, an error, a
//! conflict) and its words. Every line synk prints is worded here; tests and scripts grep for
//! these words, so they change only on purpose.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use super::event::{Event, Progress};
use crate::model::{Digest, Kept, Kind, Why};
use crate::paths::WirePath;
use crate::plan::{Action, Listing, Seen, Verb};

/// Who tells an event, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// A line on stdout at this many `-v` (0: unless `-q`).
    Say(u8),
    /// `synk: warning: …` on stderr, unless `-q`.
    Warn,
    /// `synk: …` on stderr; the run exits 1.
    Error,
    /// `synk: conflict: …` on stderr, unless `-q`; the run exits 3.
    Conflict,
    /// A line on stderr as it is, outside any run's counts.
    Notice,
    /// A line of what was asked for (`--versions`, `--state`): on stdout even with `-q`, which
    /// quiets what synk tells, not what it was asked; on stderr with `--json` (unless `-q`),
    /// whose document holds it.
    Answer,
}

/// Which voice tells `ev`.
pub fn voice(ev: &Event) -> Voice {
    use Event::*;
    match ev {
        Failed { .. }
        | BadExclude { .. }
        | NoRuntime { .. }
        | NoCurrentDir { .. }
        | NoPeers
        | NothingToSync
        | NotSyncable { .. }
        | UnknownMaster { .. }
        | UnknownRolePeer { .. }
        | BothWays { .. }
        | NoSender
        | EmptyGroup { .. }
        | NoConfigDir
        | NotTracked { .. }
        | ConfigNotEdited { .. }
        | MasterUnreachable
        | TooFewPeers
        | PeerFailed { .. }
        | RootFailed { .. }
        | WhileComparing { .. }
        | Unreadable { .. }
        | EmptyRoot { .. }
        | EmptySubtree { .. }
        | Missing { .. }
        | CopyFailed { .. }
        | RsyncFailed { .. }
        | LostWhileSyncing { .. }
        | NothingToRestore { .. } => Voice::Error,
        NoLog { .. }
        | CannotWatch { .. }
        | Special { .. }
        | SkippedTooBig { .. }
        | NoSymlinks { .. } => Voice::Warn,
        Conflict { .. } | ChangedMeanwhile { .. } | NameCollision { .. } => Voice::Conflict,
        VersionsHeader | StateFiles { .. } | Version { .. } => Voice::Answer,
        PeerNote { .. } => Voice::Say(1),
        PeerWarning { .. } => Voice::Warn,
        WaitingForLock { .. } => Voice::Notice,
        Tracked { .. }
        | Untracked { .. }
        | Reconnected { .. }
        | WouldDo { .. }
        | NoVersions { .. }
        | WouldRestore { .. }
        | Restored { .. }
        | Reverted { .. }
        | SendOnlyWins { .. } => Voice::Say(0),
        Installed { .. }
        | Deleted { .. }
        | KeptAsCopy { .. }
        | Watching { .. }
        | PeerHolds { .. }
        | KeepsOwn { .. }
        | Metadata { .. }
        | Master { .. }
        | Rsync { .. }
        | Stream { .. }
        | RsyncDone { .. }
        | RelayFailed { .. }
        | StreamThrough { .. } => Voice::Say(1),
        RoundTrips { .. } => Voice::Say(2),
        ServeFailed { .. } | Stopping | StoppedBySignal { .. } => Voice::Notice,
    }
}

/// How text from elsewhere goes into a line: peer names, paths, errors and versions come from
/// peers, users and filesystems, and may hold anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// As it is (paths that are not UTF-8 shown lossily): for `--json`, whose encoder escapes
    /// what it must.
    Plain,
    /// [`escape`]d, for a terminal.
    Terminal,
}

impl Style {
    /// `text` in this style.
    pub fn text(self, text: &str) -> Cow<'_, str> {
        match self {
            Style::Plain => Cow::Borrowed(text),
            Style::Terminal => escape(text.as_bytes()),
        }
    }

    /// A path (bytes, maybe not UTF-8) in this style.
    pub fn path(self, path: &WirePath) -> Cow<'_, str> {
        match self {
            Style::Plain => String::from_utf8_lossy(path.as_bytes()),
            Style::Terminal => escape(path.as_bytes()),
        }
    }
}

/// Text from elsewhere (a peer, a path, an error) as a terminal may show it, so that no name
/// can move the cursor, recolour the screen or hide what follows it: control characters and
/// bytes that are not UTF-8 become escapes (`\n`, `\t`, `\r`, `\x1b` for the other C0
/// controls and DEL, `\u{9b}` for a C1 control or a character that reorders or hides text
/// ([`hides`]), `\xff` for a byte that is not UTF-8). Everything else stays as it is, a
/// backslash too.
pub fn escape(text: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(text) {
        if !s.chars().any(|c| c.is_control() || hides(c)) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(text.len() + 8);
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c < '\u{80}' && c.is_control() => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() || hides(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    Cow::Owned(out)
}

/// Whether `c` reorders the text around it or shows as nothing, so that a name could pass
/// for another (`evil\u{202e}txt.exe`): the bidirectional controls, the soft hyphen, zero-width
/// space, word joiner and invisible operators, the Hangul fillers, the interlinear annotation
/// marks, the byte-order mark and the tag characters. The joiners that scripts and emoji need
/// stay (as do the variation selectors, which only choose a glyph).
fn hides(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{180e}' | '\u{200b}'
        | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{3164}' | '\u{feff}' | '\u{ffa0}'
        | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}')
}

/// The words of `ev` (without the `synk: …` prefix its voice adds), with text from elsewhere
/// in `style`.
pub fn line(ev: &Event, style: Style) -> String {
    use Event::*;
    let s = |text: &str| style.text(text).into_owned();
    let path = |p: &WirePath| style.path(p).into_owned();
    match ev {
        Failed { error } => s(error),
        BadExclude { pattern, error } => format!(
            "--exclude {}: not a valid pattern: {} (gitignore syntax; also `exclude` in synk.conf)",
            s(&format!("{pattern:?}")),
            s(error)
        ),
        NoRuntime { error } => format!("cannot start the async runtime: {}", s(error)),
        NoCurrentDir { error } => format!("cannot read the current directory: {}", s(error)),
        NoPeers => "no peer but this host (localhost, always one): give -h HOST for another, or list peers in synk.conf (see synk.conf(5))".into(),
        NothingToSync => {
            "nothing to sync: give PATH, or add `path` lines to synk.conf (synk --add PATH)".into()
        }
        NotSyncable { path } => format!("{}: not a path synk can sync", s(path)),
        UnknownMaster { name } => format!("--master {}: not one of the peers", s(name)),
        UnknownRolePeer { option, name } => format!(
            "{option} {}: not one of the peers (it takes a HOST as given to -h, or localhost)",
            s(name)
        ),
        BothWays { peer } => format!(
            "{}: both send-only and receive-only; a peer is one or the other",
            s(peer)
        ),
        NoSender => "every peer is receive-only: no peer may send, so nothing could be synced".into(),
        NoLog { path, error } => format!(
            "{}: cannot open the operations log: {}",
            s(path),
            s(error)
        ),
        NoConfigDir => {
            "no configuration directory to keep tracked paths in (is HOME set?)".into()
        }
        Tracked {
            path,
            file,
            already,
        } => {
            let said = if *already {
                "was already tracked in"
            } else {
                "now tracked in"
            };
            format!("{} {said} {}", s(path), s(file))
        }
        Untracked { path, file } => format!(
            "{} is no longer tracked in {} (its files stay where they are)",
            s(path),
            s(file)
        ),
        NotTracked { path, file } => format!("{} is not tracked in {}", s(path), s(file)),
        ConfigNotEdited { file, error } => format!("{}: {}", s(file), s(error)),

        Installed { peer, was, at } => {
            let this = env!("CARGO_PKG_VERSION");
            let (peer, at) = (s(peer), s(at));
            match was {
                Some(v) => format!("{peer}: upgraded synk {} to {this} at {at}", s(v)),
                None => format!("{peer}: installed synk {this} at {at}"),
            }
        }
        Reconnected { peer } => format!("{}: reconnected", s(peer)),
        MasterUnreachable => "the --master peer is unreachable: nothing synced".into(),
        TooFewPeers => "fewer than two peers reachable: nothing can be synced".into(),
        CannotWatch { peer, every } => format!(
            "{}: cannot watch for changes there; checked every {}",
            s(peer),
            humantime::format_duration(*every)
        ),
        PeerFailed { peer, error } => format!("{}: {}", s(peer), s(error)),
        ChangedMeanwhile { peer, error } => format!(
            "{}: {}; the next run reconciles it",
            s(peer),
            s(error)
        ),
        PeerNote { peer, note } => format!("{}: {}", s(peer), s(note)),
        PeerWarning { peer, warning } => format!("{}: {}", s(peer), s(warning)),
        WaitingForLock { peer, path: p } => format!(
            "synk: waiting for another synk run on {} at {}…",
            path(p),
            s(peer)
        ),
        RootFailed { peer, root, error } => format!("{}: {}: {}", s(peer), s(root), s(error)),
        WhileComparing { peer, error } => match peer {
            Some(peer) => format!("{}: {}", s(peer), while_comparing(&s(error))),
            None => while_comparing(&s(error)),
        },

        PeerHolds {
            peer,
            role,
            path: p,
            seen,
        } => {
            // An unreadable entry's error is the peer's text too.
            let seen = seen.as_ref().map(|x| match &x.state {
                Err(e) => Cow::Owned(Seen {
                    state: Err(s(e)),
                    ..x.clone()
                }),
                _ => Cow::Borrowed(x),
            });
            let host = if role.is_empty() {
                s(peer)
            } else {
                format!("{} ({})", s(peer), role.join(", "))
            };
            peer_line(&host, &path(p), seen.as_deref())
        }
        Master { peer, path: p } => format!("master: {} {}", s(peer), path(p)),
        Conflict {
            path: p,
            winner,
            kept,
        } => {
            let winner = s(winner);
            let others: Vec<String> = kept.iter().map(|(peer, _)| s(peer)).collect();
            let copies: Vec<String> = kept
                .iter()
                .map(|(peer, to)| format!("{}'s as {}", s(peer), path(to)))
                .collect();
            format!(
                "{}: changed on {winner} and {}; {winner}'s version keeps the name, {} (every version reaches every peer)",
                path(p),
                others.join(", "),
                copies.join(", ")
            )
        }
        Unreadable {
            peer,
            path: p,
            error,
        } => format!(
            "{}: {}: {}; not synced there (the other peers were)",
            s(peer),
            path(p),
            s(error)
        ),
        NoSymlinks { peer, first, count } => format!(
            "{}: its filesystem holds no symlinks: {} not synced there ({}{}); the other peers have {}",
            s(peer),
            if *count == 1 { "one symlink".to_string() } else { format!("{count} symlinks") },
            path(first),
            if *count > 1 { ", …" } else { "" },
            if *count == 1 { "it" } else { "them" },
        ),
        NameCollision { peer, paths } => {
            let names: Vec<String> = paths.iter().map(path).collect();
            format!(
                "{} are one name on {}'s filesystem (it folds case or Unicode normalization): neither is synced there and what it holds stays as it is; the other peers keep each. Rename all but one to sync them there",
                names.join(" and "),
                s(peer)
            )
        }
        Special { path: p, peers } => {
            let peers: Vec<String> = peers.iter().map(|peer| s(peer)).collect();
            format!("{}: special file on {} skipped", path(p), peers.join(", "))
        }
        EmptyRoot { peer, root, held } => format!(
            "{}: {} is empty or missing there but held {held} entries after the last sync (an unmounted disk?); left out, nothing deleted. To fill it again from the other peers, run again with --refill {0} (nothing deleted anywhere); if you emptied it on purpose, with --confirm-empty (its deletions reach every peer)",
            s(peer),
            s(root)
        ),
        EmptyGroup { peer, root, held } => format!(
            "{}: {}: this receive-only peer holds {held} entries there, and no peer that may send holds or remembers any of it (a first sync against empty peers?); left out, nothing reverted. If the group emptied it on purpose, run again with --confirm-empty",
            s(peer),
            s(root)
        ),
        Reverted { peer, path: p } => format!("reverted on {}: {}", s(peer), path(p)),
        Deleted { peer, path: p } => format!("deleted on {}: {}", s(peer), path(p)),
        KeptAsCopy { peer, path: p, to } => format!(
            "conflict copy on {}: {} -> {}",
            s(peer),
            path(p),
            path(to)
        ),
        SendOnlyWins { path: p, peer, by } => format!(
            "kept {} on {}: send-only {} wins",
            path(p),
            s(peer),
            s(by)
        ),
        Metadata {
            peer,
            path: p,
            fields,
        } => format!(
            "{}: metadata on {}: {}",
            path(p),
            s(peer),
            fields
                .iter()
                .map(|(f, was, now)| format!("{f} {was} -> {now}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        KeepsOwn { peer, path: p } => format!(
            "{}: send-only {} keeps its own version",
            path(p),
            s(peer)
        ),
        EmptySubtree {
            peer,
            path: p,
            held,
        } => format!(
            "{}: {} was a mount point at the last sync and is empty or missing there now, though {held} entries below it were synced (an unmounted disk?); left out there, nothing deleted. To fill it again from the other peers, run again with --refill {0} (nothing deleted anywhere); if you emptied it on purpose, with --confirm-empty (its deletions reach every peer)",
            s(peer),
            path(p)
        ),
        SkippedTooBig { limit, files } => {
            const SHOWN: usize = 5;
            let mut named: Vec<String> = files
                .iter()
                .take(SHOWN)
                .map(|(p, size)| format!("{} {}", path(p), indicatif::HumanBytes(*size)))
                .collect();
            if files.len() > SHOWN {
                named.push(format!("and {} more", files.len() - SHOWN));
            }
            format!(
                "skipped {} file{} over {} (--max-size; nothing copied or deleted): {}",
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                indicatif::HumanBytes(*limit),
                named.join(", ")
            )
        }
        Missing { root } => format!("{}: no such file on any peer", s(root)),
        WouldDo {
            verb,
            path: p,
            peer,
            from,
        } => {
            let from = from
                .as_ref()
                .map(|f| format!(" from {}", s(f)))
                .unwrap_or_default();
            format!(
                "would {} {} on {}{from}",
                verb_word(*verb),
                path(p),
                s(peer)
            )
        }

        Rsync { on: None, command } => format!("synk: {}", s(command)),
        Rsync {
            on: Some(master),
            command,
        } => format!("synk: ssh {} {}", s(master), s(command)),
        Stream { from, root, to } => {
            format!("synk: stream {}:{} -> {}", s(from), s(root), s(to))
        }
        RoundTrips { peer, trips } => format!(
            "synk: {}: {trips} round trip{}",
            s(peer),
            if *trips == 1 { "" } else { "s" }
        ),
        RsyncDone {
            from,
            to,
            literal,
            matched,
        } => format!(
            "synk: rsync {} -> {}: {} sent, {} matched",
            s(from),
            s(to),
            indicatif::HumanBytes(*literal),
            indicatif::HumanBytes(*matched),
        ),
        RelayFailed {
            from,
            root,
            to,
            why,
        } => format!(
            "synk: {} could not pass {} on to {} ({}); sending from another peer",
            s(from),
            s(root),
            s(to),
            s(why)
        ),
        StreamThrough {
            master,
            target,
            why,
        } => format!(
            "synk: {} cannot reach {} itself ({}); streaming through this host",
            s(master),
            s(target),
            s(why)
        ),
        CopyFailed {
            peer,
            path: p,
            error,
        } => copy_failed(peer, p, error, style),
        RsyncFailed {
            from,
            to,
            path: p,
            why,
        } => copy_failed(to, p, &format!("rsync from {from} failed: {why}"), style),
        LostWhileSyncing { error, path: p } => {
            format!("{} (while syncing {})", s(error), path(p))
        }

        Watching {
            roots,
            peers,
            every,
        } => {
            let list = |v: &[String]| v.iter().map(|x| s(x)).collect::<Vec<_>>().join(", ");
            format!(
                "watching {} on {} for changes (inotify on each peer); a peer that cannot watch is checked every {}, and every peer walks its trees again at least every 10 minutes",
                list(roots),
                list(peers),
                humantime::format_duration(*every)
            )
        }
        StateFiles { dir, files } => {
            let mut out = format!("state files in {} (root, file):", s(dir));
            if files.is_empty() {
                out.push_str(" none yet");
            }
            for (file, root) in files {
                let root = root
                    .as_ref()
                    .map_or("(not a state file synk can read)".into(), &path);
                out.push_str(&format!("\n{root}\t{}", s(file)));
            }
            out
        }
        VersionsHeader => "peer\treplaced\tsize\tdigest\twhy\tpath".into(),
        NoVersions { path } => format!("no kept versions of {} on any peer", s(path)),
        Version { peer, kept } => version_line(&s(peer), kept, style),
        NothingToRestore { path, at } => format!(
            "{}: no kept version to restore{}",
            s(path),
            at.map(|t| format!(" at {}", when(t))).unwrap_or_default()
        ),
        WouldRestore {
            peer,
            path: p,
            replaced,
        } => format!(
            "would restore {} on {} (the version replaced {})",
            path(p),
            s(peer),
            when(*replaced)
        ),
        Restored {
            peer,
            path: p,
            replaced,
        } => format!(
            "restored {} on {} (the version replaced {})",
            path(p),
            s(peer),
            when(*replaced)
        ),

        ServeFailed { error } => format!("synk --serve: {}", s(error)),
        Stopping => "synk: stopping after the current run (again to stop now)".into(),
        StoppedBySignal { signal } => {
            format!("synk: stopped by {signal}: copies cut short, what they wrote removed but the partial data the next run resumes from")
        }
    }
}

/// What a progress bar or spinner says, for a terminal.
pub fn progress(p: &Progress) -> String {
    let s = |text: &str| escape(text.as_bytes()).into_owned();
    match p {
        Progress::Scanning { peer } => format!("scanning {}", s(peer)),
        Progress::Rsync { from, to } => format!("rsync {} -> {}", s(from), s(to)),
        Progress::Stream { root } => format!("stream {}", s(root)),
    }
}

/// A peer's answer that failed while listings were compared, as its root's error.
pub fn while_comparing(error: &str) -> String {
    format!("{error} (while comparing listings)")
}

/// A copy to `peer` of `path` failed with `error`: the path is named unless the error names
/// it (or another absolute path) already.
fn copy_failed(peer: &str, path: &WirePath, error: &str, style: Style) -> String {
    let named =
        error.contains(&*String::from_utf8_lossy(path.as_bytes())) || error.starts_with('/');
    let (peer, error) = (style.text(peer), style.text(error));
    if named {
        format!("{peer}: {error}")
    } else {
        format!("{peer}: {}: {error}", style.path(path))
    }
}

/// The word a dry run uses for an action: `would copy …`.
fn verb_word(v: Verb) -> &'static str {
    match v {
        Verb::Rename => "rename",
        Verb::Keep => "keep",
        Verb::Copy => "copy",
        Verb::Delete => "delete",
        Verb::Meta => "set the metadata of",
        Verb::Revert => "revert",
    }
}

/// The word the operations log and `--json` use for an action (`views`: each peer's listing
/// of the root, which tells a created entry from an updated one).
pub fn action_word(a: &Action, views: &[Option<&Listing>]) -> &'static str {
    match a.verb {
        Verb::Copy if a.creates(views) => "created",
        Verb::Copy => "updated",
        Verb::Delete => "deleted",
        Verb::Meta => "metadata",
        Verb::Keep => "version kept",
        Verb::Rename => "conflict",
        Verb::Revert => "reverted",
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

/// A `--versions` line: peer, when it was replaced, size (or `dir`, or a link's target),
/// short digest, why it was kept, path; tab-separated (a tab in a name is escaped on a
/// terminal, so the columns hold).
fn version_line(peer: &str, k: &Kept, style: Style) -> String {
    let size = match &k.meta.kind {
        Kind::Dir => "dir".to_string(),
        Kind::Symlink(t) => format!("-> {}", style.path(t)),
        _ => k.meta.size.to_string(),
    };
    format!(
        "{peer}\t{}\t{size}\t{}\t{}\t{}",
        when(k.replaced),
        short_digest(k.meta.digest.as_ref()),
        why_word(k.why),
        style.path(&k.path)
    )
}

/// A time (ns since the epoch) to the second, UTC.
pub(super) fn when(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000).max(0) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A metadata field's value as `-v` and `--json` show it: a mode in octal, an mtime in UTC
/// to the nanosecond, an owner as `user:group`, xattrs and ACLs by a short hash.
pub fn field_value(f: crate::model::Field, m: &crate::model::Meta) -> String {
    match f {
        crate::model::Field::Mode => format!("{:04o}", m.mode),
        crate::model::Field::Mtime => {
            let (secs, ns) = (
                m.mtime.div_euclid(1_000_000_000),
                m.mtime.rem_euclid(1_000_000_000),
            );
            let at = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
            let day = humantime::format_rfc3339_seconds(at).to_string();
            format!("{}.{ns:09}Z", day.trim_end_matches('Z'))
        }
        crate::model::Field::Link => match &m.extra.link {
            Some(l) => format!("linked to {l}"),
            None => "no link".to_string(),
        },
        crate::model::Field::Xattrs => match m.extra.sys.filter(|s| *s != crate::model::NO_SYS) {
            // trusted.* and security.*, read as root, apart.
            Some(sys) => format!("{}+{}", hashed(m.extra.xattrs), hashed(Some(sys))),
            None => hashed(m.extra.xattrs),
        },
        crate::model::Field::Acl => hashed(m.extra.acl),
        crate::model::Field::Owner => m.extra.owner.as_ref().map_or("-".into(), |o| {
            let user = o.user.clone().unwrap_or_else(|| o.uid.to_string());
            let group = o.group.clone().unwrap_or_else(|| o.gid.to_string());
            format!("{user}:{group}")
        }),
    }
}

/// Extended attributes or ACLs as `-v` shows them: `none`, or the start of their hash.
fn hashed(h: Option<[u8; 16]>) -> String {
    h.map_or("none".into(), |h| {
        h[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    })
}

/// The fields in which `t`'s entry changes, as [`Event::Metadata`] tells them.
pub fn touched_fields(t: &crate::plan::Touch) -> Vec<(&'static str, String, String)> {
    crate::plan::differences(&t.was, &t.meta)
        .into_iter()
        .map(|f| (f.name(), field_value(f, &t.was), field_value(f, &t.meta)))
        .collect()
}

/// A short digest for listings (`-` for entries without one).
fn short_digest(d: Option<&Digest>) -> String {
    d.map_or("-".into(), Digest::short)
}

/// The word `--versions` shows for why a version was kept.
pub(super) fn why_word(why: Why) -> &'static str {
    match why {
        Why::Overwritten => "overwritten",
        Why::Deleted => "deleted",
        Why::Conflict => "conflict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Meta;

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
            extra: Default::default(),
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
            extra: Default::default(),
        };
        assert_eq!(peer_line("b", "/x", Some(&seen(d))), "peer: b /x dir 5");
    }

    #[test]
    fn terminal_escapes_control_characters_and_stray_bytes_and_nothing_else() {
        let e = |b: &[u8]| escape(b).into_owned();
        assert_eq!(e(b"plain name.txt"), "plain name.txt");
        assert!(matches!(
            escape(b"caf\xc3\xa9 ok"),
            Cow::Borrowed("café ok")
        ));
        assert_eq!(e(b"new\nline\ttab\rcr"), "new\\nline\\ttab\\rcr");
        assert_eq!(e(b"\x1b[2J\x1b]0;title\x07"), "\\x1b[2J\\x1b]0;title\\x07");
        assert_eq!(e(b"nul\0del\x7f"), "nul\\x00del\\x7f");
        // C1 controls (U+0080..U+009F, two bytes in UTF-8) apart from stray bytes.
        assert_eq!(e("csi\u{9b}31m".as_bytes()), "csi\\u{9b}31m");
        assert_eq!(
            e(b"latin1 \xe9t\xe9 \xff\xfe"),
            "latin1 \\xe9t\\xe9 \\xff\\xfe"
        );
        // A UTF-8 sequence cut short is a stray byte; what follows it reads on.
        assert_eq!(e(b"\xe2\x82x"), "\\xe2\\x82x");
        // A backslash stays as it is.
        assert_eq!(e(b"back\\slash \\x1b"), "back\\slash \\x1b");
        assert_eq!(e("é€𝄞".as_bytes()), "é€𝄞");
        // What reorders or hides text is shown, so no name passes for another; the joiners
        // that scripts and emoji need stay.
        assert_eq!(
            e("evil\u{202e}txt.exe\u{200b}\u{2066}\u{ad}\u{3164}\u{e0041}".as_bytes()),
            "evil\\u{202e}txt.exe\\u{200b}\\u{2066}\\u{ad}\\u{3164}\\u{e0041}"
        );
        assert_eq!(
            e("👩\u{200d}💻 می\u{200c}خواهم".as_bytes()),
            "👩\u{200d}💻 می\u{200c}خواهم"
        );
    }

    #[test]
    fn lines_escape_what_peers_and_paths_bring_and_plain_keeps_it() {
        let failed = Event::PeerFailed {
            peer: "be\x1bta".into(),
            error: "no\nway".into(),
        };
        assert_eq!(line(&failed, Style::Terminal), "be\\x1bta: no\\nway");
        assert_eq!(line(&failed, Style::Plain), "be\x1bta: no\nway");
        let master = Event::Master {
            peer: "alpha".into(),
            path: WirePath(b"/h/\xff\x1b[31m".to_vec()),
        };
        assert_eq!(
            line(&master, Style::Terminal),
            "master: alpha /h/\\xff\\x1b[31m"
        );
        assert_eq!(
            line(&master, Style::Plain),
            "master: alpha /h/\u{fffd}\x1b[31m"
        );
        // A version listing's columns stay columns; a link's target is escaped too.
        let kept = Kept {
            path: WirePath(b"/h/a\tb".to_vec()),
            id: "1-a".into(),
            meta: crate::model::Meta {
                kind: Kind::Symlink(WirePath(b"t\n".to_vec())),
                size: 0,
                mode: 0o777,
                mtime: 0,
                digest: None,
                extra: Default::default(),
            },
            replaced: 0,
            why: Why::Deleted,
        };
        let listed = line(
            &Event::Version {
                peer: "b".into(),
                kept,
            },
            Style::Terminal,
        );
        assert_eq!(
            listed.split('\t').collect::<Vec<_>>(),
            [
                "b",
                "1970-01-01T00:00:00Z",
                "-> t\\n",
                "-",
                "deleted",
                "/h/a\\tb"
            ]
        );
        // Whether an error names the path is judged before either is escaped.
        let copy = |error: &str| Event::CopyFailed {
            peer: "g".into(),
            path: WirePath(b"/r/\nf".to_vec()),
            error: error.into(),
        };
        assert_eq!(
            line(&copy("/r/\nf: denied"), Style::Terminal),
            "g: /r/\\nf: denied"
        );
        assert_eq!(line(&copy("denied"), Style::Terminal), "g: /r/\\nf: denied");
        assert_eq!(
            progress(&Progress::Scanning {
                peer: "\x1b]0;x\x07".into()
            }),
            "scanning \\x1b]0;x\\x07"
        );
    }
}
