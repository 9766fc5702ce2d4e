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
}

/// Which voice tells `ev`.
pub fn voice(ev: &Event) -> Voice {
    use Event::*;
    match ev {
        Failed { .. }
        | NoRuntime { .. }
        | NoCurrentDir { .. }
        | NoPeers
        | NothingToSync
        | NotSyncable { .. }
        | UnknownMaster { .. }
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
        | Missing { .. }
        | CopyFailed { .. }
        | RsyncFailed { .. }
        | LostWhileSyncing { .. }
        | NothingToRestore { .. } => Voice::Error,
        NoLog { .. } | CannotWatch { .. } | Special { .. } | TooBig { .. } => Voice::Warn,
        Conflict { .. } => Voice::Conflict,
        Tracked { .. }
        | Untracked { .. }
        | Reconnected { .. }
        | WouldDo { .. }
        | NoVersions { .. }
        | Version { .. }
        | WouldRestore { .. }
        | Restored { .. } => Voice::Say(0),
        Installed { .. }
        | PeerHolds { .. }
        | Master { .. }
        | Rsync { .. }
        | Stream { .. }
        | RsyncDone { .. }
        | RelayFailed { .. }
        | StreamThrough { .. } => Voice::Say(1),
        ServeFailed { .. } | Stopping => Voice::Notice,
    }
}

/// A path for a line.
fn path(p: &WirePath) -> Cow<'_, str> {
    String::from_utf8_lossy(p.as_bytes())
}

/// The words of `ev` (without the `synk: …` prefix its voice adds).
pub fn line(ev: &Event) -> String {
    use Event::*;
    match ev {
        Failed { error } => error.clone(),
        NoRuntime { error } => format!("cannot start the async runtime: {error}"),
        NoCurrentDir { error } => format!("cannot read the current directory: {error}"),
        NoPeers => "no peers: give -h HOST, or list peers in synk.conf (see synk.conf(5))".into(),
        NothingToSync => {
            "nothing to sync: give PATH, or add `path` lines to synk.conf (synk --add PATH)".into()
        }
        NotSyncable { path } => format!("{path}: not a path synk can sync"),
        UnknownMaster { name } => format!("--master {name}: not one of the peers"),
        NoLog { path, error } => format!("{path}: cannot open the operations log: {error}"),
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
            format!("{path} {said} {file}")
        }
        Untracked { path, file } => {
            format!("{path} is no longer tracked in {file} (its files stay where they are)")
        }
        NotTracked { path, file } => format!("{path} is not tracked in {file}"),
        ConfigNotEdited { file, error } => format!("{file}: {error}"),

        Installed { peer, was, at } => {
            let this = env!("CARGO_PKG_VERSION");
            match was {
                Some(v) => format!("{peer}: upgraded synk {v} to {this} at {at}"),
                None => format!("{peer}: installed synk {this} at {at}"),
            }
        }
        Reconnected { peer } => format!("{peer}: reconnected"),
        MasterUnreachable => "the --master peer is unreachable: nothing synced".into(),
        TooFewPeers => "fewer than two peers reachable: nothing can be synced".into(),
        CannotWatch { peer, every } => format!(
            "{peer}: cannot watch for changes there; checked every {}",
            humantime::format_duration(*every)
        ),
        PeerFailed { peer, error } => format!("{peer}: {error}"),
        RootFailed { peer, root, error } => format!("{peer}: {root}: {error}"),
        WhileComparing { peer, error } => match peer {
            Some(peer) => format!("{peer}: {}", while_comparing(error)),
            None => while_comparing(error),
        },

        PeerHolds { peer, path: p, seen } => peer_line(peer, &path(p), seen.as_ref()),
        Master { peer, path: p } => format!("master: {peer} {}", path(p)),
        Conflict {
            path: p,
            winner,
            kept,
        } => {
            let others: Vec<&str> = kept.iter().map(|(peer, _)| peer.as_str()).collect();
            let copies: Vec<String> = kept
                .iter()
                .map(|(peer, to)| format!("{peer}'s as {}", path(to)))
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
            "{peer}: {}: {error}; not synced there (the other peers were)",
            path(p)
        ),
        Special { path: p, peers } => {
            format!("{}: special file on {} skipped", path(p), peers.join(", "))
        }
        EmptyRoot { peer, root, held } => format!(
            "{peer}: {root} is empty or missing there but held {held} entries after the last sync (an unmounted disk?); left out, nothing deleted. If you emptied it on purpose, run again with --confirm-empty"
        ),
        TooBig { path: p, size } => format!(
            "{}: {size} bytes, over --max-size: skipped (nothing copied or deleted)",
            path(p)
        ),
        Missing { root } => format!("{root}: no such file on any peer"),
        WouldDo {
            verb,
            path: p,
            peer,
            from,
        } => {
            let from = from
                .as_ref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default();
            format!("would {} {} on {peer}{from}", verb_word(*verb), path(p))
        }

        Rsync { on: None, command } => format!("synk: {command}"),
        Rsync {
            on: Some(master),
            command,
        } => format!("synk: ssh {master} {command}"),
        Stream { from, root, to } => format!("synk: stream {from}:{root} -> {to}"),
        RsyncDone {
            from,
            to,
            literal,
            matched,
        } => format!(
            "synk: rsync {from} -> {to}: {} sent, {} matched",
            indicatif::HumanBytes(*literal),
            indicatif::HumanBytes(*matched),
        ),
        RelayFailed {
            from,
            root,
            to,
            why,
        } => format!(
            "synk: {from} could not pass {root} on to {to} ({why}); sending from another peer"
        ),
        StreamThrough {
            master,
            target,
            why,
        } => format!(
            "synk: {master} cannot reach {target} itself ({why}); streaming through this host"
        ),
        CopyFailed {
            peer,
            path: p,
            error,
        } => copy_failed(peer, &path(p), error),
        RsyncFailed {
            from,
            to,
            path: p,
            why,
        } => copy_failed(to, &path(p), &format!("rsync from {from} failed: {why}")),
        LostWhileSyncing { error, path: p } => {
            format!("{error} (while syncing {})", path(p))
        }

        NoVersions { path } => format!("no kept versions of {path} on any peer"),
        Version { peer, kept } => version_line(peer, kept),
        NothingToRestore { path, at } => format!(
            "{path}: no kept version to restore{}",
            at.map(|t| format!(" at {}", when(t))).unwrap_or_default()
        ),
        WouldRestore {
            peer,
            path: p,
            replaced,
        } => format!(
            "would restore {} on {peer} (the version replaced {})",
            path(p),
            when(*replaced)
        ),
        Restored {
            peer,
            path: p,
            replaced,
        } => format!(
            "restored {} on {peer} (the version replaced {})",
            path(p),
            when(*replaced)
        ),

        ServeFailed { error } => format!("synk --serve: {error}"),
        Stopping => "synk: stopping after the current run (again to stop now)".into(),
    }
}

/// What a progress bar or spinner says.
pub fn progress(p: &Progress) -> String {
    match p {
        Progress::Scanning { peer } => format!("scanning {peer}"),
        Progress::Rsync { from, to } => format!("rsync {from} -> {to}"),
        Progress::Stream { root } => format!("stream {root}"),
    }
}

/// A peer's answer that failed while listings were compared, as its root's error.
pub fn while_comparing(error: &str) -> String {
    format!("{error} (while comparing listings)")
}

/// A copy to `peer` of `path` failed with `error`: the path is named unless the error names
/// it (or another absolute path) already.
fn copy_failed(peer: &str, path: &str, error: &str) -> String {
    if error.contains(path) || error.starts_with('/') {
        format!("{peer}: {error}")
    } else {
        format!("{peer}: {path}: {error}")
    }
}

/// The word a dry run uses for an action: `would copy …`.
fn verb_word(v: Verb) -> &'static str {
    match v {
        Verb::Rename => "rename",
        Verb::Keep => "keep",
        Verb::Copy => "copy",
        Verb::Delete => "delete",
    }
}

/// The word the operations log and `--json` use for an action (`views`: each peer's listing
/// of the root, which tells a created entry from an updated one).
pub fn action_word(a: &Action, views: &[Option<&Listing>]) -> &'static str {
    match a.verb {
        Verb::Copy if a.creates(views) => "created",
        Verb::Copy => "updated",
        Verb::Delete => "deleted",
        Verb::Keep => "version kept",
        Verb::Rename => "conflict",
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
/// short digest, why it was kept, path; tab-separated.
fn version_line(peer: &str, k: &Kept) -> String {
    let size = match &k.meta.kind {
        Kind::Dir => "dir".to_string(),
        Kind::Symlink(t) => format!("-> {t}"),
        _ => k.meta.size.to_string(),
    };
    format!(
        "{peer}\t{}\t{size}\t{}\t{}\t{}",
        when(k.replaced),
        short_digest(k.meta.digest.as_ref()),
        why_word(k.why),
        k.path
    )
}

/// A time (ns since the epoch) to the second, UTC.
fn when(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000).max(0) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A short digest for listings (`-` for entries without one).
fn short_digest(d: Option<&Digest>) -> String {
    d.map_or("-".into(), Digest::short)
}

/// The word `--versions` shows for why a version was kept.
fn why_word(why: Why) -> &'static str {
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
