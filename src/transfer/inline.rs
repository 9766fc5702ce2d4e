//! Small files in the serve channel itself: where one round trip of data will do, a master's
//! small files go to every target through the client's conversations with them, every request
//! sent without waiting for the one before (the streaming copier's frames, pipelined), instead
//! of a scratch directory, an rsync session and a move into place per target. The master reads
//! them all for one request each, sent together; each target writes, checks and renames each
//! file as the streaming copier's do ([`super::stream`]), and its answers, one per file, are
//! read as they come.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Mutex;

use futures::future::join_all;
use tokio::sync::mpsc;

use super::{RootTransfer, WireStats};
use crate::peer::OpError;
use crate::plan::{Copy, PeerId};
use crate::proto::{encode, Check, Request, Response, CHUNK, ZEROS};
use crate::report::Reporter;

/// Files smaller than this travel in the serve channel when rsync would carry them: at a
/// round trip of 100 ms, starting an rsync session costs more than sending them.
pub const INLINE_BELOW: u64 = 64 << 10;

/// At most this many small files of one master go in the serve channels in a run (or a
/// window of one), and at most [`INLINE_BYTES`] of them: every byte passes through the client,
/// where rsync carries a remote master's files from peer to peer.
pub const INLINE_FILES: usize = 4096;

/// At most this many bytes of one master's small files go in the serve channels, counted once
/// per target (the client passes each on to every one).
pub const INLINE_BYTES: u64 = 32 << 20;

/// A target that takes more than this many files from one master has them made durable
/// together, by one flush of its filesystem before its commit, as rsync's are; fewer are each
/// made durable as they are placed (a flush of the whole filesystem costs more than a few).
pub const BATCH_FROM: usize = 16;

/// Frames queued per target ahead of its connection.
const QUEUE: usize = 64;

/// Whether a copy of this size goes in the serve channel.
pub fn is_inline(size: u64) -> bool {
    size < INLINE_BELOW
}

/// What reading one file from the master came to.
enum Read {
    /// Its bytes matched its digest: the targets were told to keep it.
    Done,
    /// The master could not read it, or read another version: the targets were told to drop
    /// it, and this says why.
    Failed(String),
    /// It could not even be asked for (a path too long for a frame): the targets were sent
    /// nothing, and owe no answer for it.
    NotSent(String),
}

impl RootTransfer<'_> {
    /// Carries every master's small files (`copies`: each with its targets) through the serve
    /// channels, one master at a time.
    pub(super) async fn run_inline(
        &self,
        copies: &[(&Copy, Vec<PeerId>)],
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        wire: &Mutex<WireStats>,
    ) {
        let mut by_master: BTreeMap<PeerId, Vec<(&Copy, Vec<PeerId>)>> = BTreeMap::new();
        for (c, targets) in copies {
            by_master
                .entry(c.master)
                .or_default()
                .push((*c, targets.clone()));
        }
        for (m, copies) in by_master {
            let mut pairs: Vec<(PeerId, PeerId)> = copies
                .iter()
                .flat_map(|(_, ts)| ts.iter().map(move |t| (m, *t)))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            for (m, t) in pairs {
                rep.emit(self.stream_event(m, t));
            }
            self.inline_from(m, &copies, rep, lost, wire).await;
        }
    }

    /// One master's small files to their targets.
    async fn inline_from(
        &self,
        m: PeerId,
        copies: &[(&Copy, Vec<PeerId>)],
        rep: &Reporter,
        lost: &Mutex<HashSet<PeerId>>,
        wire: &Mutex<WireStats>,
    ) {
        let dead = lost.lock().expect("lost set lock").clone();
        if dead.contains(&m) {
            return;
        }
        let copies: Vec<(&Copy, Vec<PeerId>)> = copies
            .iter()
            .map(|(c, ts)| {
                (
                    *c,
                    ts.iter().copied().filter(|t| !dead.contains(t)).collect(),
                )
            })
            .filter(|(_, ts): &(&Copy, Vec<PeerId>)| !ts.is_empty())
            .collect();
        let mut targets: Vec<PeerId> = copies.iter().flat_map(|(_, ts)| ts.clone()).collect();
        targets.sort_unstable();
        targets.dedup();
        if targets.is_empty() {
            return;
        }
        let mut queues = BTreeMap::new();
        let mut drains = Vec::new();
        for &t in &targets {
            let (tx, rx) = mpsc::channel::<(Vec<u8>, bool)>(QUEUE);
            queues.insert(t, tx);
            drains.push(async move {
                let mut conn = self.peers[t].conn.lock().await;
                let answers = conn.stream_ops(rx).await;
                // Its commit went behind the copies (before the feed let go of the queues):
                // its answer is owed, read as the run ends.
                if answers.is_ok() && self.commit_sent.lock().expect("commits lock").contains(&t) {
                    conn.owe(self.display.to_string());
                }
                (t, answers)
            });
        }
        let feed = self.feed(m, &copies, queues);
        let (reads, answers) = tokio::join!(feed, join_all(drains));
        let reads = match reads {
            Ok(r) => r,
            Err(e) => {
                // The master broke: whatever its targets were told was abandoned.
                self.fail(
                    rep,
                    lost,
                    m,
                    self.path_of(&copies[0].0.rel),
                    OpError::Lost(e),
                );
                return;
            }
        };
        let mut sent = WireStats::default();
        for (t, answer) in answers {
            let answers = match answer {
                Ok(a) => a,
                Err(e) => {
                    self.fail(
                        rep,
                        lost,
                        t,
                        self.path_of(&copies[0].0.rel),
                        OpError::Lost(e),
                    );
                    continue;
                }
            };
            // Target t's answers are for the copies it was sent, in order; one never sent
            // has no answer.
            let mine = copies
                .iter()
                .zip(&reads)
                .filter(|((_, ts), _)| ts.contains(&t));
            for ((c, _), read) in mine.clone() {
                if let Read::NotSent(why) = read {
                    let e = OpError::Failed(why.clone());
                    self.fail(rep, lost, t, self.path_of(&c.rel), e);
                }
            }
            let sent_to = mine.filter(|(_, read)| !matches!(read, Read::NotSent(_)));
            for (((c, _), read), a) in sent_to.zip(answers) {
                match (read, a) {
                    (Read::Done, Ok(())) => sent.literal += c.meta.size,
                    // The target only knows it was told to drop the file: say why.
                    (Read::Failed(why), Ok(()) | Err(OpError::Failed(_))) => self.fail(
                        rep,
                        lost,
                        t,
                        self.path_of(&c.rel),
                        OpError::Failed(why.clone()),
                    ),
                    (_, Err(e)) => self.fail(rep, lost, t, self.path_of(&c.rel), e),
                    (Read::NotSent(_), Ok(())) => unreachable!("left out above"),
                }
            }
        }
        wire.lock().expect("wire stats lock").add(sent);
    }

    /// Reads every copy from master `m` (all the requests sent at once) and passes each on to
    /// its targets' queues as it comes: what each read came to, in copy order, or `Err` when
    /// the conversation with the master broke (every target then told to drop what it had).
    async fn feed(
        &self,
        m: PeerId,
        copies: &[(&Copy, Vec<PeerId>)],
        queues: BTreeMap<PeerId, mpsc::Sender<(Vec<u8>, bool)>>,
    ) -> anyhow::Result<Vec<Read>> {
        let name = &self.peers[m].name;
        let mut master = self.peers[m].conn.lock().await;
        // A target whose connection broke stops taking frames; its drain says why.
        let to = |t: PeerId, frame: Vec<u8>, ends: bool| {
            let q = queues[&t].clone();
            async move {
                let _ = q.send((frame, ends)).await;
            }
        };
        let all = |ts: &[PeerId], frame: Vec<u8>, ends: bool| {
            join_all(ts.iter().map(|t| to(*t, frame.clone(), ends)))
        };
        let mut taking: BTreeMap<PeerId, usize> = BTreeMap::new();
        for t in copies.iter().flat_map(|(_, ts)| ts) {
            *taking.entry(*t).or_default() += 1;
        }
        for (c, _) in copies {
            master
                .send(&Request::ReadFile {
                    root: self.root,
                    rel: c.source.clone().unwrap_or_else(|| c.rel.clone()),
                })
                .await?;
        }
        master.flush().await?;
        let mut out = Vec::with_capacity(copies.len());
        let mut broke = None;
        for (c, ts) in copies {
            let seed = Check::draw_seed();
            let begin = |keep: bool, batched: bool| {
                encode(&Request::WriteFile {
                    root: self.root,
                    rel: c.rel.clone(),
                    mode: c.meta.mode,
                    mtime: c.meta.mtime,
                    seed,
                    keep,
                    batched,
                })
            };
            // Indexed by keep + 2 × batched.
            let ways = [(false, false), (true, false), (false, true), (true, true)];
            let begins: Result<Vec<Vec<u8>>, _> = ways.iter().map(|(k, b)| begin(*k, *b)).collect();
            let Ok(begins) = begins else {
                // A path too long for a frame: the master's answer is still read, and dropped.
                out.push(Read::NotSent(format!("{}: path too long", c.rel)));
                if let Err(e) = skip_read(&mut master).await {
                    broke = Some(e);
                    break;
                }
                continue;
            };
            join_all(ts.iter().map(|t| {
                let keep = self.keep_in_write.contains(&(*t, c.rel.clone()));
                let batched = taking.get(t).is_some_and(|n| *n > BATCH_FROM);
                let frame = &begins[usize::from(keep) + 2 * usize::from(batched)];
                to(*t, frame.clone(), false)
            }))
            .await;
            let mut check = Check::new(seed);
            let digest = c.meta.digest.expect("files carry a digest");
            // Bytes read so far: a master sends no more than the file it scanned.
            let mut offset: u64 = 0;
            let mut grown = super::Grown::default();
            let read = loop {
                let resp = match master.recv().await {
                    Ok(r) => r,
                    Err(e) => {
                        broke = Some(e);
                        break None;
                    }
                };
                match resp {
                    Response::Data(d) if d.len() > CHUNK => {
                        broke = Some(master.unexpected(&Response::Data(d)));
                        break None;
                    }
                    Response::Hole { len } if len as usize > CHUNK => {
                        broke = Some(master.unexpected(&Response::Hole { len }));
                        break None;
                    }
                    // Past the size it scanned: the file grew since (or the master lies).
                    // Nothing more reaches the targets; the copy is given up at the end.
                    Response::Data(d) if grown.past(offset, d.len(), c.meta.size) => {
                        if grown.too_much() {
                            broke = Some(master.unexpected(&Response::Data(d)));
                            break None;
                        }
                    }
                    Response::Hole { len } if grown.past(offset, len as usize, c.meta.size) => {
                        if grown.too_much() {
                            broke = Some(master.unexpected(&Response::Hole { len }));
                            break None;
                        }
                    }
                    // A hole travels as one (a small file may be all hole), hashed as zeros.
                    Response::Hole { len } => {
                        offset += u64::from(len);
                        check.update(&ZEROS[..len as usize]);
                        let frame = encode(&Request::Hole { len }).expect("a few bytes");
                        all(ts, frame, false).await;
                    }
                    Response::Data(d) => {
                        offset += d.len() as u64;
                        check.update(&d);
                        let frame = encode(&Request::Data(d)).expect("a chunk fits in a frame");
                        all(ts, frame, false).await;
                    }
                    Response::ReadDone(d) if d == digest && grown.whole(offset, c.meta.size) => {
                        break Some(Read::Done)
                    }
                    Response::ReadDone(_) => {
                        break Some(Read::Failed(format!(
                            "{name}: {}: changed since it was scanned; run synk again",
                            c.rel
                        )))
                    }
                    Response::Failed(m) => break Some(Read::Failed(format!("{name}: {m}"))),
                    other => {
                        broke = Some(master.unexpected(&other));
                        break None;
                    }
                }
            };
            let end = match &read {
                Some(Read::Done) => Request::End {
                    check: check.value(),
                },
                _ => Request::Abort,
            };
            all(ts, encode(&end).expect("a few bytes"), true).await;
            match read {
                Some(r) => out.push(r),
                None => break,
            }
        }
        if broke.is_none() {
            // A target whose commit travels with its copies gets it behind the last of them,
            // its answer owed (not one the drain waits for).
            for (t, frames) in &self.commit_with {
                if !queues.contains_key(t) {
                    continue;
                }
                for frame in frames {
                    to(*t, frame.clone(), false).await;
                }
                self.commit_sent.lock().expect("commits lock").insert(*t);
            }
        }
        drop(queues);
        match broke {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Reads and drops the master's answer to one [`Request::ReadFile`].
async fn skip_read(master: &mut crate::peer::Conn) -> anyhow::Result<()> {
    loop {
        match master.recv().await? {
            Response::Data(_) | Response::Hole { .. } => {}
            Response::ReadDone(_) | Response::Failed(_) => return Ok(()),
            other => return Err(master.unexpected(&other)),
        }
    }
}
