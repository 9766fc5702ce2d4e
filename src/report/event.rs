//! Everything the user can be told, as data: who, what, where, how big, what went wrong. The
//! modules that do the work hand these to the [`Reporter`](super::Reporter); how each one
//! reads is `text.rs`'s business alone.
//!
//! Peer names and paths are as the run knows them (a path as bytes: it may not be UTF-8);
//! errors are the messages of the errors themselves.

use std::time::Duration;

use crate::model::Kept;
use crate::paths::WirePath;
use crate::plan::{Seen, Verb};

/// Something that happened, for the user.
#[derive(Debug, Clone)]
pub enum Event {
    // The run as a whole.
    /// An exclude pattern that is not one (`--exclude "a["`): a usage error.
    BadExclude {
        /// The pattern.
        pattern: String,
        /// Why it is not one.
        error: String,
    },
    /// An error that says everything itself (a connection lost, a bad configuration).
    Failed {
        /// Its message.
        error: String,
    },
    /// The async runtime would not start.
    NoRuntime {
        /// Why.
        error: String,
    },
    /// The current directory cannot be read.
    NoCurrentDir {
        /// Why.
        error: String,
    },
    /// No peer given and none in synk.conf.
    NoPeers,
    /// No path given and none in synk.conf.
    NothingToSync,
    /// A path that cannot be synced (not a path synk can name on every peer).
    NotSyncable {
        /// The path as the user gave it, made absolute.
        path: String,
    },
    /// `--master` names no peer of the run.
    UnknownMaster {
        /// The name given.
        name: String,
    },
    /// A role option names no peer of the run.
    UnknownRolePeer {
        /// The option (`--send-only`, …).
        option: String,
        /// The name given.
        name: String,
    },
    /// A peer named both send-only and receive-only.
    BothWays {
        /// The peer, as named.
        peer: String,
    },
    /// Every peer of the run is receive-only.
    NoSender,
    /// The operations log cannot be opened; the run goes on without it.
    NoLog {
        /// The log file.
        path: String,
        /// Why.
        error: String,
    },
    /// `--add` or `--forget` without a configuration directory.
    NoConfigDir,
    /// `--add PATH`: the path is tracked now (or was already).
    Tracked {
        /// The `path` value.
        path: String,
        /// The config file.
        file: String,
        /// It was there before.
        already: bool,
    },
    /// `--forget PATH`: the path is no longer tracked.
    Untracked {
        /// The `path` value.
        path: String,
        /// The config file.
        file: String,
    },
    /// `--forget PATH` of a path that is not tracked.
    NotTracked {
        /// The `path` value.
        path: String,
        /// The config file.
        file: String,
    },
    /// The config file could not be edited.
    ConfigNotEdited {
        /// The config file.
        file: String,
        /// Why.
        error: String,
    },

    // Peers.
    /// synk was installed on a peer (or upgraded there) to run it.
    Installed {
        /// The peer.
        peer: String,
        /// The version that was there, if any.
        was: Option<String>,
        /// Where it is now.
        at: String,
    },
    /// `-vv`: the times the client waited for an answer from a peer during a run.
    RoundTrips {
        /// The peer.
        peer: String,
        /// Round trips.
        trips: u64,
    },
    /// A peer that dropped is connected again.
    Reconnected {
        /// The peer.
        peer: String,
    },
    /// The `--master` peer could not be reached.
    MasterUnreachable,
    /// Fewer than two peers could be reached.
    TooFewPeers,
    /// A peer cannot watch for changes; it is looked at every `every` instead.
    CannotWatch {
        /// The peer.
        peer: String,
        /// How often it is looked at.
        every: Duration,
    },
    /// A peer left an entry alone because it changed there while synk ran (the user saved
    /// it meanwhile): that version stays, and the next run reconciles it (as a conflict where
    /// it differs from what the others hold).
    ChangedMeanwhile {
        /// The peer.
        peer: String,
        /// What it said, naming the path.
        error: String,
    },
    /// A peer's note about a root, for `-v`.
    PeerNote {
        /// The peer.
        peer: String,
        /// The note.
        note: String,
    },
    /// A signal stopped the run at once: every copy cut short, what it wrote removed.
    StoppedBySignal {
        /// The signal's name.
        signal: &'static str,
    },
    /// Something failed on a peer; the message says what and where.
    PeerFailed {
        /// The peer.
        peer: String,
        /// Its error.
        error: String,
    },
    /// A peer's serve says something the user should know (a damaged state file moved aside).
    PeerWarning {
        /// The peer.
        peer: String,
        /// What it says.
        warning: String,
    },
    /// Another synk run holds a lock this run needs on a peer: waiting for it.
    WaitingForLock {
        /// The peer.
        peer: String,
        /// The path whose lock is held, on that peer.
        path: WirePath,
    },
    /// Something failed on a peer for a whole root.
    RootFailed {
        /// The peer.
        peer: String,
        /// The root as the user named it.
        root: String,
        /// The error.
        error: String,
    },
    /// A peer could not answer while listings were compared (`peer`: where the message does
    /// not name it itself).
    WhileComparing {
        /// The peer.
        peer: Option<String>,
        /// The error.
        error: String,
    },

    // A root's plan.
    /// `-v`: what a peer holds at an entry that changes (`-vv`: at every entry).
    PeerHolds {
        /// The peer.
        peer: String,
        /// Its role's words (none for a normal peer).
        role: Vec<&'static str>,
        /// The entry.
        path: WirePath,
        /// What it holds there (`None`: nothing, no history either).
        seen: Option<Seen>,
    },
    /// `-v`: the peer whose version of an entry goes everywhere.
    Master {
        /// The peer.
        peer: String,
        /// The entry.
        path: WirePath,
    },
    /// Versions changed on several peers; every one is kept.
    Conflict {
        /// The entry.
        path: WirePath,
        /// The peer whose version keeps the name.
        winner: String,
        /// Each other version: the peer it came from and the conflict copy's path.
        kept: Vec<(String, WirePath)>,
    },
    /// Names that are one name on a peer's filesystem (case, NFC/NFD): that peer is left out
    /// of them, the other peers sync them.
    NameCollision {
        /// The peer.
        peer: String,
        /// The names, as the user would write them.
        paths: Vec<WirePath>,
    },
    /// A peer's filesystem holds no symlinks: those it would have taken are left out there.
    NoSymlinks {
        /// The peer.
        peer: String,
        /// The first of them, as the user would write it.
        first: WirePath,
        /// How many.
        count: usize,
    },
    /// A peer could not read an entry: it is left out of it there.
    Unreadable {
        /// The peer.
        peer: String,
        /// The entry.
        path: WirePath,
        /// Its error.
        error: String,
    },
    /// A fifo, socket or device: skipped.
    Special {
        /// The entry.
        path: WirePath,
        /// The peers holding one.
        peers: Vec<String>,
    },
    /// A root empty or missing on a peer that held entries after the last sync: that peer
    /// is left out.
    EmptyRoot {
        /// The peer.
        peer: String,
        /// The root as the user named it.
        root: String,
        /// How many entries it held.
        held: usize,
    },
    /// No peer that may send holds anything of a root that a receive-only peer holds: that
    /// peer is left out, nothing reverted.
    EmptyGroup {
        /// The receive-only peer.
        peer: String,
        /// The root as the user named it.
        root: String,
        /// How many entries it holds.
        held: usize,
    },
    /// `-v`: an entry was deleted on a peer (its version kept).
    Deleted {
        /// The peer.
        peer: String,
        /// The entry, as that peer has it.
        path: WirePath,
    },
    /// `-v`: a conflict's losing version was renamed to its conflict copy on a peer.
    KeptAsCopy {
        /// The peer.
        peer: String,
        /// The entry, as that peer has it.
        path: WirePath,
        /// The conflict copy, as that peer has it.
        to: WirePath,
    },
    /// A change made on a receive-only peer was undone (its version kept).
    Reverted {
        /// The peer.
        peer: String,
        /// The entry.
        path: WirePath,
    },
    /// A peer's concurrent change was replaced by a send-only peer's (its version kept).
    SendOnlyWins {
        /// The entry.
        path: WirePath,
        /// The peer whose version was replaced.
        peer: String,
        /// The send-only peer.
        by: String,
    },
    /// `-v`: an entry that holds the winning content takes new metadata on a peer.
    Metadata {
        /// The peer.
        peer: String,
        /// The entry.
        path: WirePath,
        /// Each field that changes there: its name, the value it had, the one it takes.
        fields: Vec<(&'static str, String, String)>,
    },
    /// `-v`: a send-only peer keeps its version of an entry the others changed.
    KeepsOwn {
        /// The send-only peer.
        peer: String,
        /// The entry.
        path: WirePath,
    },
    /// A directory that was a mount point at the last sync is empty or missing on a peer now:
    /// that peer is left out of it.
    EmptySubtree {
        /// The peer.
        peer: String,
        /// The directory, as that peer's own path.
        path: WirePath,
        /// How many entries below it are gone.
        held: u64,
    },
    /// Every file a run skipped for `--max-size`, told once at its end.
    SkippedTooBig {
        /// The limit, in bytes.
        limit: u64,
        /// Each file and its size.
        files: Vec<(WirePath, u64)>,
    },
    /// No peer has the root.
    Missing {
        /// The root as the user named it.
        root: String,
    },
    /// `-n`: an action the run would take.
    WouldDo {
        /// What it would do.
        verb: Verb,
        /// The entry.
        path: WirePath,
        /// On which peer.
        peer: String,
        /// From which peer the version would come.
        from: Option<String>,
    },

    // Copies.
    /// `-v`: an rsync run (`on`: the remote master that runs it, else this host).
    Rsync {
        /// The master that runs it, if not this host.
        on: Option<String>,
        /// The command line, as a shell would read it.
        command: String,
    },
    /// `-v`: a pair the streaming copier carries through this host.
    Stream {
        /// The master.
        from: String,
        /// The root as the user named it.
        root: String,
        /// The target.
        to: String,
    },
    /// `-v`: an rsync run finished.
    RsyncDone {
        /// The master or relay it ran from.
        from: String,
        /// The target.
        to: String,
        /// Bytes sent as they are.
        literal: u64,
        /// Bytes found on the target already.
        matched: u64,
    },
    /// `-v`: a relay could not pass its copies on; another peer sends them.
    RelayFailed {
        /// The relay.
        from: String,
        /// The root as the user named it.
        root: String,
        /// The target.
        to: String,
        /// rsync's account.
        why: String,
    },
    /// `-v`: a remote master cannot reach a target; its copies go through this host.
    StreamThrough {
        /// The master.
        master: String,
        /// The target.
        target: String,
        /// rsync's account.
        why: String,
    },
    /// A copy to a peer failed.
    CopyFailed {
        /// The target.
        peer: String,
        /// What was copied (an entry, or the root).
        path: WirePath,
        /// The peer's error.
        error: String,
    },
    /// An rsync run to a peer failed.
    RsyncFailed {
        /// The master or relay it ran from.
        from: String,
        /// The target.
        to: String,
        /// What was copied.
        path: WirePath,
        /// rsync's account.
        why: String,
    },
    /// The conversation with a peer broke during a copy.
    LostWhileSyncing {
        /// The error, naming the peer.
        error: String,
        /// What was being copied.
        path: WirePath,
    },

    /// `--state`: this host's state files and their roots.
    StateFiles {
        /// The state directory.
        dir: String,
        /// Each file and the root it belongs to (`None`: not readable as a state file).
        files: Vec<(String, Option<WirePath>)>,
    },
    // Kept versions.
    /// `--watch -v`, once: what is watched where, and the fallback.
    Watching {
        /// The roots as the user named them.
        roots: Vec<String>,
        /// Every peer.
        peers: Vec<String>,
        /// How often a peer that cannot watch is checked.
        every: Duration,
    },
    /// The header row of a `--versions` listing.
    VersionsHeader,
    /// `--versions`: there are none.
    NoVersions {
        /// The path asked about.
        path: String,
    },
    /// `--versions`: one kept version.
    Version {
        /// The peer keeping it.
        peer: String,
        /// The version.
        kept: Kept,
    },
    /// `--restore`: nothing to restore.
    NothingToRestore {
        /// The path asked about.
        path: String,
        /// `--at`, ns since the epoch.
        at: Option<i64>,
    },
    /// `--restore -n`: a version that would be restored.
    WouldRestore {
        /// The peer keeping it.
        peer: String,
        /// Its path there.
        path: WirePath,
        /// When it was replaced (ns since the epoch).
        replaced: i64,
    },
    /// `--restore`: a version restored.
    Restored {
        /// The peer.
        peer: String,
        /// Its path there.
        path: WirePath,
        /// When it was replaced (ns since the epoch).
        replaced: i64,
    },

    // Told without a reporter.
    /// `synk --serve` failed.
    ServeFailed {
        /// Why.
        error: String,
    },
    /// A signal: the loop stops after the current run.
    Stopping,
}

/// What a progress bar or spinner is about.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Scanning the roots on a peer (entries counted).
    Scanning {
        /// The peer.
        peer: String,
    },
    /// An rsync run (this host runs it, or waits for a master that does).
    Rsync {
        /// The master or relay.
        from: String,
        /// The target.
        to: String,
    },
    /// The streamed copies of a root (bytes counted).
    Stream {
        /// The root as the user named it.
        root: String,
    },
}
