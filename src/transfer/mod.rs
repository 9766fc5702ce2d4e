//! Carrying a root's planned copies to their targets: rsync per (master, target) pair where
//! both ends have it, the streaming copier elsewhere, every target concurrently.

mod inline;
pub mod relay;
pub mod rsync;
mod rsyncs;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::model::Kind;
use crate::names;
use crate::paths::{entry_display, WirePath};
use crate::peer::{OpError, Peer};
use crate::plan::{Copy, PeerEntries, PeerId, Plan};
use crate::proto::{Request, Response};
use crate::report::{Event, Progress, Reporter};
use futures::future::join_all;

/// What crossed the wire for a root's copies: bytes sent as they are, and bytes rsync's delta
/// algorithm found already on the target (a few changed bytes in a big file cost a few
/// blocks, not the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Bytes sent literally.
    pub literal: u64,
    /// Bytes matched against the target's old version and not sent.
    pub matched: u64,
}

impl WireStats {
    /// Adds another count to this one.
    pub fn add(&mut self, o: WireStats) {
        // A remote rsync's figures come from a peer: no overflow, whatever it says.
        self.literal = self.literal.saturating_add(o.literal);
        self.matched = self.matched.saturating_add(o.matched);
    }
}

/// What a master sent past the size it scanned of the file it streams: a file that grew since
/// the scan (or a master that lies). None of it reaches a target, which would write on and
/// on; the stream is read to its end within [`Grown::MAX`], and the copy given up as changed.
#[derive(Debug, Default)]
pub(crate) struct Grown(u64);

impl Grown {
    /// How much may come past the scanned size before the stream is taken as a lie, and the
    /// conversation with the master as out of step.
    pub(crate) const MAX: u64 = 64 << 20;

    /// Whether `len` bytes at `offset` go past `size` (or something did before): counted here,
    /// and not to be relayed.
    pub(crate) fn past(&mut self, offset: u64, len: usize, size: u64) -> bool {
        let past = self.0 > 0 || offset.saturating_add(len as u64) > size;
        if past {
            self.0 = self.0.saturating_add(len as u64).max(1);
        }
        past
    }

    /// Past [`Grown::MAX`].
    pub(crate) fn too_much(&self) -> bool {
        self.0 > Self::MAX
    }

    /// Whether the stream, ended at `offset`, was the whole file as scanned (`size` bytes).
    pub(crate) fn whole(&self, offset: u64, size: u64) -> bool {
        self.0 == 0 && offset == size
    }
}

/// How entries travel from master to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CopierChoice {
    /// rsync where both ends have it, the streaming copier elsewhere.
    Auto,
    /// Always rsync (a pair where an end lacks it fails).
    Rsync,
    /// Always the built-in streaming copier.
    Stream,
}

/// The copier chosen for one (master, target) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// rsync, run by the client or by a remote master.
    Rsync,
    /// The built-in streaming copier through the client.
    Stream,
}

/// Picks the copier for a pair from the user's choice and whether each end has rsync.
pub fn choose(choice: CopierChoice, master_rsync: bool, target_rsync: bool) -> Method {
    match choice {
        CopierChoice::Rsync => Method::Rsync,
        CopierChoice::Stream => Method::Stream,
        CopierChoice::Auto if master_rsync && target_rsync => Method::Rsync,
        CopierChoice::Auto => Method::Stream,
    }
}

/// Everything needed to carry out one root's plan.
pub struct RootTransfer<'a> {
    /// All peers of the run.
    pub peers: &'a [Peer],
    /// The root's index in the scan request.
    pub root: u32,
    /// The root's absolute path on each peer that scanned it.
    pub abs: &'a [Option<WirePath>],
    /// True when the root is a directory (else a single file or symlink).
    pub root_is_dir: bool,
    /// The root's own name, from the client's root spec (never from a peer's report): a
    /// root that is a single file is written under this name on every target.
    pub name: Option<&'a [u8]>,
    /// The root as the user named it, for messages.
    pub display: &'a str,
    /// `--copier`.
    pub copier: CopierChoice,
    /// `-F`, for the ssh that client-run rsync starts.
    pub ssh_config: Option<PathBuf>,
    /// `-n`.
    pub dry_run: bool,
    /// `--compress`, `--bwlimit`.
    pub tuning: rsync::Tuning,
    /// Relay pairs that could not connect earlier in the run.
    pub no_route: &'a relay::NoRoute,
    /// Targets and paths whose copy in the serve channel keeps the version it replaces as it
    /// writes ([`crate::apply::keeps_in_writes`]): that keep was not made first.
    pub keep_in_write: PeerEntries,
    /// Per target whose copies all end in one known request ([`commit_follows_copies`]): its
    /// records and commit, encoded, sent right behind that request, their answer owed.
    pub commit_with: BTreeMap<PeerId, Vec<Vec<u8>>>,
    /// The targets of `commit_with` whose commit was sent.
    pub commit_sent: Mutex<BTreeSet<PeerId>>,
}

impl RootTransfer<'_> {
    pub(super) fn path_of(&self, rel: &WirePath) -> WirePath {
        entry_display(self.display, rel)
    }

    fn name(&self, p: PeerId) -> &str {
        &self.peers[p].name
    }

    /// Carries out `plan`; failures are reported through `rep`. Returns the peers whose
    /// connection broke, so the caller stops using them, and what crossed the wire.
    pub async fn execute(
        &self,
        plan: &Plan,
        lost: &HashSet<PeerId>,
        rep: &Reporter,
    ) -> (HashSet<PeerId>, WireStats) {
        // A copy read from another path than it is written to (a send-only peer's losing
        // version, taken under its conflict name) is streamed: rsync keeps names.
        let (sideways, plan) = split_sideways(plan);
        let plan = &plan;
        let side_pairs: BTreeSet<(PeerId, PeerId)> = sideways
            .iter()
            .flat_map(|side| &side.copies)
            .flat_map(|c| c.targets.iter().map(|t| (c.master, *t)))
            .filter(|(m, t)| !lost.contains(m) && !lost.contains(t))
            .collect();
        let mut pairs: BTreeMap<(PeerId, PeerId), Vec<&Copy>> = BTreeMap::new();
        for c in plan.copies.iter().filter(|c| !lost.contains(&c.master)) {
            if c.rel.is_empty() && c.meta.kind == Kind::Dir {
                // A root directory is made by each target's serve: rsync, handed ".", would
                // copy everything in it, decided or not.
                continue;
            }
            for t in c.targets.iter().filter(|t| !lost.contains(t)) {
                pairs.entry((c.master, *t)).or_default().push(c);
            }
        }
        let method = |m: PeerId, t: PeerId| {
            choose(
                self.copier,
                self.peers[m].caps.rsync,
                self.peers[t].caps.rsync,
            )
        };
        let inline_copies = self.inline_copies(plan, lost);
        let inline_set: HashSet<(*const Copy, PeerId)> = inline_copies
            .iter()
            .flat_map(|(c, ts)| ts.iter().map(move |t| (*c as *const Copy, *t)))
            .collect();
        let inline_of = |c: &Copy, t: PeerId| inline_set.contains(&(c as *const Copy, t));
        let mut rsync_pairs = Vec::new();
        let mut stream_pairs: BTreeSet<(PeerId, PeerId)> = BTreeSet::new();
        // rsync carries regular files only; a pair's directories and symlinks are made by the
        // target's serve first (parents before children, as the plan orders them).
        let mut made: BTreeMap<PeerId, Vec<&Copy>> = BTreeMap::new();
        for (&(m, t), copies) in &pairs {
            match method(m, t) {
                Method::Rsync => {
                    let (files, others): (Vec<&Copy>, Vec<&Copy>) =
                        copies.iter().partition(|c| c.meta.kind == Kind::File);
                    let files: Vec<&Copy> =
                        files.into_iter().filter(|c| !inline_of(c, t)).collect();
                    made.entry(t).or_default().extend(others);
                    if !files.is_empty() {
                        rsync_pairs.push((m, t, files));
                    }
                }
                Method::Stream => {
                    stream_pairs.insert((m, t));
                }
            }
        }
        if self.dry_run {
            let shown = WirePath(crate::names::scratch_name(0));
            for (m, t, copies) in &rsync_pairs {
                rep.emit(self.rsync_job(*m, *t, copies, &shown).1);
            }
            let inline_pairs: BTreeSet<(PeerId, PeerId)> = inline_copies
                .iter()
                .flat_map(|(c, ts)| ts.iter().map(|t| (c.master, *t)))
                .collect();
            for (m, t) in stream_pairs.iter().chain(&side_pairs).chain(&inline_pairs) {
                rep.emit(self.stream_event(*m, *t));
            }
            return (HashSet::new(), WireStats::default());
        }
        let lost_before = lost;
        let lost = Mutex::new(HashSet::new());
        let wire = Mutex::new(WireStats::default());
        let rsync_to: BTreeSet<PeerId> = rsync_pairs.iter().map(|(_, t, _)| *t).collect();
        let scratch = self
            .make_entries(plan, lost_before, &made, &rsync_to, rep, &lost)
            .await;
        // rsync runs hold one connection at a time; the serve-channel copiers hold a master's
        // and its targets' together, so they take turns.
        let rsyncs = self.run_rsyncs(&rsync_pairs, scratch, rep, &lost, &wire);
        let (fallback, _) = tokio::join!(rsyncs, async {
            self.run_inline(&inline_copies, rep, &lost, &wire).await;
            self.run_streams(plan, &stream_pairs, rep, &lost, &wire)
                .await
        });
        if !fallback.is_empty() {
            self.run_streams(plan, &fallback, rep, &lost, &wire).await;
        }
        if let Some(side) = sideways {
            self.run_streams(&side, &side_pairs, rep, &lost, &wire)
                .await;
        }
        (
            lost.into_inner().expect("lost set lock"),
            wire.into_inner().expect("wire stats lock"),
        )
    }

    /// The copies of `plan` (its sideways copies left out) that go in the serve channels,
    /// each with the targets it goes to that way: small files that rsync would carry (unless
    /// the user asked for rsync, or for its compression or rate limit, which are rsync's to
    /// honour), from a master with no more than [`inline::INLINE_FILES`] of them
    /// ([`inline::INLINE_BYTES`]). One round trip, not an rsync session per target.
    fn inline_copies<'p>(
        &self,
        plan: &'p Plan,
        lost: &HashSet<PeerId>,
    ) -> Vec<(&'p Copy, Vec<PeerId>)> {
        let small_file = |c: &Copy| c.meta.kind == Kind::File && inline::is_inline(c.meta.size);
        if self.copier != CopierChoice::Auto
            || self.tuning.compress
            || self.tuning.bwlimit.is_some()
        {
            return Vec::new();
        }
        let mut small: BTreeMap<PeerId, (usize, u64)> = BTreeMap::new();
        for c in plan.copies.iter().filter(|c| small_file(c)) {
            let (n, bytes) = small.entry(c.master).or_default();
            *n += 1;
            // What the client passes on: once to each target.
            *bytes += c.meta.size * c.targets.len() as u64;
        }
        let few = |m: &PeerId| {
            small
                .get(m)
                .is_some_and(|(n, b)| *n <= inline::INLINE_FILES && *b <= inline::INLINE_BYTES)
        };
        let mut out = Vec::new();
        for c in plan.copies.iter().filter(|c| !lost.contains(&c.master)) {
            if !small_file(c) || !few(&c.master) {
                continue;
            }
            let ts: Vec<PeerId> = c
                .targets
                .iter()
                .copied()
                .filter(|t| {
                    !lost.contains(t)
                        && choose(
                            self.copier,
                            self.peers[c.master].caps.rsync,
                            self.peers[*t].caps.rsync,
                        ) == Method::Rsync
                })
                .collect();
            if !ts.is_empty() {
                out.push((c, ts));
            }
        }
        out
    }

    /// Every target and path a copy of `plan` writes in the serve channels ([`Self::execute`]
    /// with the same peers lost, or more): where such a copy keeps the version it replaces as
    /// it writes, that keep need not go first.
    pub fn inline_targets(&self, plan: &Plan, lost: &HashSet<PeerId>) -> PeerEntries {
        let (_, plan) = split_sideways(plan);
        self.inline_copies(&plan, lost)
            .into_iter()
            .flat_map(|(c, ts)| ts.into_iter().map(|t| (t, c.rel.clone())))
            .collect()
    }

    /// The peers of `commit` whose commit can travel right behind their copies of `plan`
    /// ([`commit_follows_copies`]; `inline` as [`Self::inline_targets`] says).
    pub fn commits_with_copies(
        &self,
        plan: &Plan,
        inline: &PeerEntries,
        commit: &[PeerId],
    ) -> Vec<PeerId> {
        let rsync = |m: PeerId, t: PeerId| {
            choose(
                self.copier,
                self.peers[m].caps.rsync,
                self.peers[t].caps.rsync,
            ) == Method::Rsync
        };
        commit
            .iter()
            .copied()
            .filter(|&p| commit_follows_copies(plan, inline, &rsync, p))
            .collect()
    }

    /// Readies each target for the copies, all its requests sent in one go and answered in
    /// one go: the root directory (with its mode and time) where it lacks it, the directories
    /// and symlinks of rsync pairs (`made`, in plan order), and, for a target rsync writes to
    /// (`rsync_to`), the scratch directory it writes into (rsync creates neither the root's
    /// missing parents nor that directory). Returns each prepared target's scratch directory.
    async fn make_entries(
        &self,
        plan: &Plan,
        lost_before: &HashSet<PeerId>,
        made: &BTreeMap<PeerId, Vec<&Copy>>,
        rsync_to: &BTreeSet<PeerId>,
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
    ) -> BTreeMap<PeerId, WirePath> {
        /// What a request readies, for its failure's message.
        enum For<'c> {
            Root,
            Entry(&'c WirePath),
            Scratch,
        }
        let mut requests: BTreeMap<PeerId, Vec<(For, Request)>> = BTreeMap::new();
        for c in plan
            .copies
            .iter()
            .filter(|c| c.rel.is_empty() && c.meta.kind == Kind::Dir)
        {
            for t in c.targets.iter().filter(|t| !lost_before.contains(t)) {
                let req = stream::make_request(self.root, c).expect("a directory");
                requests.entry(*t).or_default().push((For::Root, req));
            }
        }
        for (&t, copies) in made {
            let mut copies = copies.clone();
            copies.sort_by(|a, b| a.rel.cmp(&b.rel));
            copies.dedup_by(|a, b| a.rel == b.rel);
            requests
                .entry(t)
                .or_default()
                .extend(copies.iter().filter_map(|c| {
                    stream::make_request(self.root, c).map(|r| (For::Entry(&c.rel), r))
                }));
        }
        for &t in rsync_to {
            let prepare = Request::Prepare {
                root: self.root,
                dir: self.root_is_dir,
            };
            requests.entry(t).or_default().push((For::Scratch, prepare));
        }
        let prepared = join_all(requests.into_iter().map(|(t, requests)| async move {
            let mut conn = self.peers[t].conn.lock().await;
            let answers = conn
                .pipeline_raw(requests.iter().map(|(_, r)| r), &[])
                .await;
            let answers = match answers {
                Ok(a) => a,
                Err(e) => {
                    drop(conn);
                    let e = OpError::Lost(e);
                    self.fail(rep, lost, t, WirePath::from(self.display), e);
                    return None;
                }
            };
            let mut scratch = None;
            let mut failed = Vec::new();
            for ((what, _), a) in requests.iter().zip(answers) {
                let e = match (what, a) {
                    (For::Root | For::Entry(_), Response::Done) => continue,
                    // A name of synk's exact scratch shape, or the peer is not speaking synk.
                    (For::Scratch, Response::Scratch(name))
                        if names::is_scratch_name(name.as_bytes()) =>
                    {
                        scratch = Some(name);
                        continue;
                    }
                    (_, Response::Failed(m)) => OpError::Failed(m),
                    (_, Response::Changed(m)) => OpError::Changed(m),
                    (_, other) => OpError::Lost(conn.unexpected(&other)),
                };
                failed.push((what, e));
            }
            drop(conn);
            // A peer that answered out of turn is lost: nothing more goes to it.
            let broke = failed.iter().any(|(_, e)| matches!(e, OpError::Lost(_)));
            for (what, e) in failed {
                match what {
                    For::Root => rep.emit(Event::RootFailed {
                        peer: self.name(t).to_string(),
                        root: self.display.to_string(),
                        error: e.to_string(),
                    }),
                    For::Entry(rel) => self.fail(rep, lost, t, self.path_of(rel), e),
                    For::Scratch => self.fail(rep, lost, t, WirePath::from(self.display), e),
                }
            }
            scratch.filter(|_| !broke).map(|s| (t, s))
        }))
        .await;
        prepared.into_iter().flatten().collect()
    }

    /// Streams every copy whose (master, target) pair is in `pairs`, entry by entry in plan
    /// order (parents first), each entry to all its targets at once.
    async fn run_streams(
        &self,
        plan: &Plan,
        pairs: &BTreeSet<(PeerId, PeerId)>,
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        wire: &Mutex<WireStats>,
    ) {
        if pairs.is_empty() {
            return;
        }
        let targets_of = |c: &Copy| -> Vec<PeerId> {
            let dead = lost.lock().expect("lost set lock");
            c.targets
                .iter()
                .copied()
                .filter(|t| pairs.contains(&(c.master, *t)) && !dead.contains(t))
                .collect()
        };
        let total = plan
            .copies
            .iter()
            .filter(|c| c.meta.kind == Kind::File && !targets_of(c).is_empty())
            .map(|c| c.meta.size)
            .fold(0u64, u64::saturating_add);
        let bar = rep.bytes_bar(
            total,
            Progress::Stream {
                root: self.display.to_string(),
            },
        );
        let on_bytes = |n: u64, sent: WireStats| {
            bar.inc(n);
            wire.lock().expect("wire stats lock").add(sent);
        };
        for (m, t) in pairs {
            rep.emit(self.stream_event(*m, *t));
        }
        let mut made_dirs: Vec<(&Copy, Vec<PeerId>)> = Vec::new();
        for c in &plan.copies {
            if c.rel.is_empty() && c.meta.kind == Kind::Dir {
                continue; // made by make_entries
            }
            if lost.lock().expect("lost set lock").contains(&c.master) {
                continue;
            }
            let targets = targets_of(c);
            if targets.is_empty() {
                continue;
            }
            let results = stream::copy_entry(
                self.peers,
                self.root,
                c,
                &targets,
                self.tuning.bwlimit,
                &on_bytes,
            )
            .await;
            let mut ok = Vec::new();
            for (t, r) in results {
                match r {
                    Ok(()) => ok.push(t),
                    Err(e) => self.fail(rep, lost, t, self.path_of(&c.rel), e),
                }
            }
            if c.meta.kind == Kind::Dir {
                made_dirs.push((c, ok));
            }
        }
        bar.finish_and_clear();
        // Writing into a directory bumps its mtime: set the master's again, deepest first.
        for (c, targets) in made_dirs.iter().rev() {
            let _ = stream::copy_entry(
                self.peers,
                self.root,
                c,
                targets,
                self.tuning.bwlimit,
                &|_, _| {},
            )
            .await;
        }
    }

    /// Reports a failure on peer `p` while working on `path`.
    fn fail(
        &self,
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        p: PeerId,
        path: WirePath,
        e: OpError,
    ) {
        match e {
            OpError::Lost(e) => {
                // Report a broken peer once, not once per entry.
                if lost.lock().expect("lost set lock").insert(p) {
                    rep.emit(Event::LostWhileSyncing {
                        error: format!("{e:#}"),
                        path,
                    });
                }
            }
            OpError::Failed(m) => rep.emit(Event::CopyFailed {
                peer: self.name(p).to_string(),
                path,
                error: m,
            }),
            OpError::Changed(error) => rep.emit(Event::ChangedMeanwhile {
                peer: self.name(p).to_string(),
                error,
            }),
        }
    }

    /// `-v`: a pair the streaming copier carries.
    fn stream_event(&self, m: PeerId, t: PeerId) -> Event {
        Event::Stream {
            from: self.name(m).to_string(),
            root: self.display.to_string(),
            to: self.name(t).to_string(),
        }
    }
}

/// Whether target `p`'s commit can travel right behind the last request of its copies of
/// `plan` (the caller makes sure nothing else follows them: no hard links, no attributes to
/// give): it is the master of none; every copy it takes goes between peers with rsync (its
/// directories and symlinks made first) and none sideways; and either its files all go in the
/// serve channel (`inline`) from one master, its commit behind the last of them, or none
/// does, and its commit goes behind the cleanup that ends rsync's runs there.
pub fn commit_follows_copies(
    plan: &Plan,
    inline: &PeerEntries,
    rsync: &dyn Fn(PeerId, PeerId) -> bool,
    p: PeerId,
) -> bool {
    let mut masters = BTreeSet::new();
    let (mut files, mut inlined) = (0, 0);
    for c in &plan.copies {
        if c.master == p {
            return false;
        }
        if !c.targets.contains(&p) {
            continue;
        }
        if c.source.is_some() || !rsync(c.master, p) {
            return false;
        }
        masters.insert(c.master);
        if c.meta.kind == Kind::File {
            files += 1;
            inlined += usize::from(inline.contains(&(p, c.rel.clone())));
        }
    }
    files > 0 && ((inlined == files && masters.len() == 1) || inlined == 0)
}

/// The plan's copies read from another path than they are written to, apart (`None`: there
/// are none, and the plan is as it was).
fn split_sideways(plan: &Plan) -> (Option<Plan>, std::borrow::Cow<'_, Plan>) {
    if plan.copies.iter().all(|c| c.source.is_none()) {
        return (None, std::borrow::Cow::Borrowed(plan));
    }
    let (side, straight): (Vec<Copy>, Vec<Copy>) = plan
        .copies
        .iter()
        .cloned()
        .partition(|c| c.source.is_some());
    let side = Plan {
        copies: side,
        ..Plan::default()
    };
    let rest = Plan {
        copies: straight,
        ..plan.clone()
    };
    (Some(side), std::borrow::Cow::Owned(rest))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stream_past_the_scanned_size_is_counted_and_never_whole() {
        use super::Grown;
        let mut g = Grown::default();
        assert!(!g.past(0, 10, 20) && !g.past(10, 10, 20));
        assert!(g.whole(20, 20) && !g.whole(10, 20), "short is not whole");
        assert!(g.past(20, 1, 20), "one byte past");
        assert!(g.past(20, 0, 20), "and everything after it");
        assert!(!g.whole(20, 20) && !g.too_much());
        assert!(g.past(0, Grown::MAX as usize, 20) && g.too_much());
        // An empty chunk past the end still counts: a grown stream never becomes whole.
        let mut g = Grown::default();
        assert!(g.past(5, 0, 4) && !g.whole(5, 5));
    }

    use super::*;

    #[test]
    fn auto_uses_rsync_only_where_both_ends_have_it() {
        use CopierChoice::*;
        assert_eq!(choose(Auto, true, true), Method::Rsync);
        assert_eq!(choose(Auto, true, false), Method::Stream);
        assert_eq!(choose(Auto, false, true), Method::Stream);
        assert_eq!(choose(Stream, true, true), Method::Stream);
        assert_eq!(choose(Rsync, false, false), Method::Rsync);
    }

    #[test]
    fn a_commit_follows_the_copies_only_where_they_all_end_in_one_known_request() {
        use crate::model::{Digest, Meta};
        let copy = |rel: &str, kind: Kind, master: PeerId, targets: &[PeerId]| Copy {
            rel: WirePath::from(rel),
            master,
            targets: targets.to_vec(),
            meta: Meta {
                digest: (kind == Kind::File).then(|| Digest::of(b"x")),
                kind,
                size: 1,
                mode: 0o644,
                mtime: 0,
                extra: Default::default(),
            },
            source: None,
        };
        let file = |rel: &str, master, targets: &[PeerId]| copy(rel, Kind::File, master, targets);
        // Peer 3 has no rsync: every copy with it streams.
        let rsync = |m: PeerId, t: PeerId| m != 3 && t != 3;
        let follows = |copies: Vec<Copy>, inline: &[(PeerId, &str)]| -> Vec<PeerId> {
            let plan = Plan {
                copies,
                ..Plan::default()
            };
            let inline: PeerEntries = inline
                .iter()
                .map(|(p, r)| (*p, WirePath::from(*r)))
                .collect();
            (0..4)
                .filter(|p| commit_follows_copies(&plan, &inline, &rsync, *p))
                .collect()
        };
        // All inline from 0 to 1 and 2 (a directory made first is fine).
        let small = vec![
            copy("d", Kind::Dir, 0, &[1, 2]),
            file("d/a", 0, &[1, 2]),
            file("d/b", 0, &[1]),
        ];
        let all_inline = [(1, "d/a"), (2, "d/a"), (1, "d/b")];
        assert_eq!(follows(small.clone(), &all_inline), [1, 2]);
        // None inline: all by rsync, the commit behind the cleanup.
        assert_eq!(follows(small.clone(), &[]), [1, 2]);
        // Some inline to 1 and some not: its requests end in two places.
        assert_eq!(follows(small.clone(), &[(1, "d/a"), (2, "d/a")]), [2]);
        // Inline from two masters.
        let two = vec![file("a", 0, &[2]), file("b", 1, &[2])];
        assert_eq!(
            follows(two.clone(), &[(2, "a"), (2, "b")]),
            Vec::<PeerId>::new()
        );
        // By rsync from two masters: one cleanup after both.
        assert_eq!(follows(two, &[]), [2]);
        // A master of something, a peer taking a streamed copy, only a directory, and a
        // sideways copy: none.
        let mixed = vec![
            file("a", 0, &[1, 3]),
            file("b", 1, &[2]),
            copy("e", Kind::Dir, 0, &[2]),
        ];
        assert_eq!(follows(mixed, &[]), [2]);
        let mut side = file("c", 0, &[1]);
        side.source = Some(WirePath::from("c.conflict"));
        assert_eq!(
            follows(vec![side, file("f", 0, &[1])], &[]),
            Vec::<PeerId>::new()
        );
        assert_eq!(
            follows(vec![copy("e", Kind::Dir, 0, &[1])], &[]),
            Vec::<PeerId>::new()
        );
    }
}
