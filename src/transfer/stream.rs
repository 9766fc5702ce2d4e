//! The built-in streaming copier: the master's serve reads the file, the client passes each
//! chunk on to every target's serve, and each target writes a temp file beside the real one,
//! fsyncs and renames it once the master's SHA-512 of what it read matched the file's digest
//! and what the target wrote matches what the master read (a [`Check`]). Used where rsync is
//! missing on either end, with `--copier stream`, and when a remote master cannot reach a
//! target.
//!
//! A file a target already holds in some version travels as a delta: the target lists a
//! fingerprint per [`CHUNK`] of its old file, and the blocks that match go as "the same as
//! yours" instead of data, so a few changed bytes cost a block, not the file.

use std::collections::HashMap;

use futures::future::join_all;

use super::{Grown, WireStats};
use crate::model::{Digest, Kind};
use crate::peer::check;
use crate::peer::{Conn, OpError, Peer};
use crate::plan::{Copy, PeerId};
use crate::proto::{
    block_fingerprint, encode, Check, FrameError, Request, Response, CHUNK, DELTA_MIN, MAX_BLOCKS,
    ZEROS,
};

/// Told of each chunk read from the master: its size, and what went to the targets.
pub type OnBytes<'a> = &'a (dyn Fn(u64, WireStats) + Sync);

/// The result of copying one entry to one target; a broken master is reported under its own
/// id, as a [`OpError::Lost`].
pub type TargetResult = (PeerId, Result<(), OpError>);

/// Copies one entry from `copy.master` to `targets`, concurrently to all of them.
/// The request that makes a directory or symlink entry on a target (no bytes to carry);
/// `None` for files and special files.
pub fn make_request(root: u32, copy: &Copy) -> Option<Request> {
    let meta = &copy.meta;
    match &meta.kind {
        Kind::Dir => Some(Request::MakeDir {
            root,
            rel: copy.rel.clone(),
            mode: meta.mode,
            mtime: meta.mtime,
        }),
        Kind::Symlink(target) => Some(Request::Symlink {
            root,
            rel: copy.rel.clone(),
            target: target.clone(),
            mtime: meta.mtime,
        }),
        Kind::File | Kind::Special => None,
    }
}

/// Carries one entry to its targets: a directory or symlink made by each target's serve, a
/// file streamed.
pub async fn copy_entry(
    peers: &[Peer],
    root: u32,
    copy: &Copy,
    targets: &[PeerId],
    bwlimit: Option<u64>,
    on_bytes: OnBytes<'_>,
) -> Vec<TargetResult> {
    let meta = &copy.meta;
    match &meta.kind {
        Kind::Dir | Kind::Symlink(_) => {
            let req = make_request(root, copy).expect("a directory or symlink");
            on_each(peers, targets, &req).await
        }
        Kind::File => copy_file(peers, root, copy, targets, bwlimit, on_bytes).await,
        Kind::Special => targets
            .iter()
            .map(|t| {
                (
                    *t,
                    Err(OpError::Failed("special files are not copied".into())),
                )
            })
            .collect(),
    }
}

async fn on_each(peers: &[Peer], targets: &[PeerId], req: &Request) -> Vec<TargetResult> {
    join_all(targets.iter().map(|t| async move {
        let mut conn = peers[*t].conn.lock().await;
        (*t, conn.op(req).await)
    }))
    .await
}

/// Keeps a transfer at or under a rate, like rsync's `--bwlimit`.
struct Throttle {
    limit: Option<u64>,
    start: std::time::Instant,
    sent: u64,
}

impl Throttle {
    fn new(limit: Option<u64>) -> Throttle {
        Throttle {
            limit,
            start: std::time::Instant::now(),
            sent: 0,
        }
    }

    /// Counts `n` bytes and waits until they are due.
    async fn pace(&mut self, n: usize) {
        let Some(limit) = self.limit.filter(|l| *l > 0) else {
            return;
        };
        self.sent += n as u64;
        let due = std::time::Duration::from_secs_f64(self.sent as f64 / limit as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

async fn copy_file(
    peers: &[Peer],
    root: u32,
    copy: &Copy,
    targets: &[PeerId],
    bwlimit: Option<u64>,
    on_bytes: OnBytes<'_>,
) -> Vec<TargetResult> {
    let mut throttle = Throttle::new(bwlimit);
    let digest = copy.meta.digest.expect("files carry a digest");
    let mut master = peers[copy.master].conn.lock().await;
    let mut outs: Vec<(PeerId, tokio::sync::MutexGuard<'_, Conn>)> = Vec::new();
    for t in targets {
        outs.push((*t, peers[*t].conn.lock().await));
    }
    // Targets whose conversation broke are dropped from the fan-out as we go.
    let mut results: Vec<TargetResult> = Vec::new();
    // A big file is resumable: each target says what it holds of this version already (a
    // copy cut short) or lists its old file's blocks.
    let resumable = copy.meta.size >= DELTA_MIN;
    let (basis, held) = if resumable {
        partial_of(&mut outs, &mut results, root, copy, digest).await
    } else {
        (HashMap::new(), HashMap::new())
    };
    // What every target holds is not sent again.
    let from = outs
        .iter()
        .map(|(t, _)| held.get(t).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    let seed = Check::draw_seed();
    let (rel, mode, mtime) = (copy.rel.clone(), copy.meta.mode, copy.meta.mtime);
    let begin = if resumable {
        Request::WritePartial {
            root,
            rel,
            mode,
            mtime,
            seed,
            digest,
            from,
        }
    } else {
        Request::WriteFile {
            root,
            rel,
            mode,
            mtime,
            seed,
            keep: false,
            batched: false,
        }
    };
    fan_out(&mut outs, &mut results, &begin).await;
    let src = copy.source.clone().unwrap_or_else(|| copy.rel.clone());
    let read = if from > 0 {
        on_bytes(from, WireStats::default());
        Request::ReadFrom {
            root,
            rel: src,
            from,
        }
    } else {
        Request::ReadFile { root, rel: src }
    };
    let name = &peers[copy.master].name;
    let mut block = (from / CHUNK as u64) as usize;
    let mut offset = from;
    let mut check = Check::new(seed);
    let mut grown = Grown::default();
    let master_err: Option<OpError> = match master.call(&read).await {
        Err(e) => Some(OpError::Lost(e)),
        Ok(mut resp) => loop {
            match resp {
                // Chunks are at most CHUNK long; anything longer is a garbled stream, and the
                // conversation with the master is out of step from here.
                Response::Data(d) if d.len() > CHUNK => {
                    break Some(OpError::Lost(master.unexpected(&Response::Data(d))))
                }
                // Past the size the master scanned: the file grew since (or the master lies).
                // Nothing more reaches the targets, which would write on and on.
                Response::Data(d) if grown.past(offset, d.len(), copy.meta.size) => {
                    if grown.too_much() {
                        break Some(OpError::Lost(master.unexpected(&Response::Data(d))));
                    }
                    throttle.pace(d.len()).await;
                }
                Response::Data(d) => {
                    let n = d.len();
                    check.update(&d);
                    // Blocks line up with the target's list while every chunk but the last
                    // is whole.
                    let at = (offset == block as u64 * CHUNK as u64).then_some(block);
                    let literal =
                        relay_chunk(&mut outs, &mut results, &basis, at, d, on_bytes).await;
                    // Only data counts against --bwlimit; "the same" is a few bytes.
                    throttle.pace(literal).await;
                    block += 1;
                    offset += n as u64;
                }
                // A hole longer than a chunk is no hole of that file: a garbled stream.
                Response::Hole { len } if len as usize > CHUNK => {
                    break Some(OpError::Lost(master.unexpected(&Response::Hole { len })))
                }
                Response::Hole { len } if grown.past(offset, len as usize, copy.meta.size) => {
                    if grown.too_much() {
                        break Some(OpError::Lost(master.unexpected(&Response::Hole { len })));
                    }
                }
                Response::Hole { len } => {
                    // A hole goes as a hole, never as zeros: a few bytes to every target.
                    check.update(&ZEROS[..len as usize]);
                    on_bytes(len as u64, WireStats::default());
                    let frame = encode(&Request::Hole { len }).expect("a few bytes");
                    let frames = vec![&frame[..]; outs.len()];
                    send_each(&mut outs, &mut results, &frames).await;
                    block += 1;
                    offset += len as u64;
                }
                // Only the whole file, as scanned, is that version.
                Response::ReadDone(d) if d == digest && grown.whole(offset, copy.meta.size) => {
                    break None
                }
                Response::ReadDone(_) => {
                    break Some(OpError::Failed(format!(
                        "{name}: {}: changed since it was scanned; run synk again",
                        copy.rel
                    )))
                }
                Response::Failed(m) => break Some(OpError::Failed(format!("{name}: {m}"))),
                other => break Some(OpError::Lost(master.unexpected(&other))),
            }
            resp = match master.recv().await {
                Ok(r) => r,
                Err(e) => break Some(OpError::Lost(e)),
            };
        },
    };
    let finish = if master_err.is_some() {
        Request::Abort
    } else {
        Request::End {
            check: check.value(),
        }
    };
    fan_out(&mut outs, &mut results, &finish).await;
    let answers = join_all(outs.iter_mut().map(|(t, conn)| async move {
        let r = async {
            conn.flush().await.map_err(OpError::Lost)?;
            match conn.recv().await.map_err(OpError::Lost)? {
                Response::Done => Ok(()),
                Response::Failed(m) => Err(OpError::Failed(m)),
                Response::Changed(m) => Err(OpError::Changed(m)),
                other => Err(OpError::Lost(conn.unexpected(&other))),
            }
        }
        .await;
        (*t, r)
    }))
    .await;
    for (t, r) in answers {
        match (&master_err, r) {
            // The target only knows it was told to abort: say why, or, when the master
            // itself is gone, let that one report stand for every target.
            (Some(OpError::Failed(why)), Err(OpError::Failed(_))) => {
                results.push((t, Err(OpError::Failed(why.clone()))))
            }
            (Some(OpError::Lost(_)), Err(OpError::Failed(_))) => {}
            (_, r) => results.push((t, r)),
        }
    }
    if let Some(lost @ OpError::Lost(_)) = master_err {
        results.push((copy.master, Err(lost)));
    }
    results
}

/// Passes one chunk of the master's file on: as "the same" to each target whose old file
/// holds it as block `at`, as data to the others, each frame encoded once. Returns the bytes
/// that went as data (0 when every target had the block).
async fn relay_chunk(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'_, Conn>)>,
    results: &mut Vec<TargetResult>,
    basis: &HashMap<PeerId, Vec<[u8; 16]>>,
    at: Option<usize>,
    chunk: Vec<u8>,
    on_bytes: OnBytes<'_>,
) -> usize {
    let n = chunk.len();
    let fp = at
        .filter(|_| !basis.is_empty())
        .map(|block| (block, block_fingerprint(&chunk)));
    let same: Vec<bool> = outs
        .iter()
        .map(|(t, _)| {
            fp.is_some_and(|(block, fp)| basis.get(t).and_then(|b| b.get(block)) == Some(&fp))
        })
        .collect();
    let matched = same.iter().filter(|s| **s).count();
    let literal = same.len() - matched;
    on_bytes(
        n as u64,
        WireStats {
            literal: (literal * n) as u64,
            matched: (matched * n) as u64,
        },
    );
    // Each frame is encoded only if a target takes it.
    let data = if literal > 0 {
        encode(&Request::Data(chunk)).expect("a chunk fits in a frame")
    } else {
        Vec::new()
    };
    let kept = if matched > 0 {
        encode(&Request::Same { len: n as u32 }).expect("a few bytes")
    } else {
        Vec::new()
    };
    let frames: Vec<&[u8]> = same
        .iter()
        .map(|s| if *s { &kept[..] } else { &data[..] })
        .collect();
    send_each(outs, results, &frames).await;
    if literal > 0 {
        n
    } else {
        0
    }
}

/// What a target holds to build a file from: the partial data of this version a copy cut
/// short left, or its old file's blocks.
enum Held {
    Partial(u64),
    Blocks(Vec<[u8; 16]>),
}

/// The block fingerprints of each target's file at the copy's path, and the bytes of this
/// version (`digest`) each target holds already from a copy cut short.
async fn partial_of(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'_, Conn>)>,
    results: &mut Vec<TargetResult>,
    root: u32,
    copy: &Copy,
    digest: Digest,
) -> (HashMap<PeerId, Vec<[u8; 16]>>, HashMap<PeerId, u64>) {
    let ask = Request::Partial {
        root,
        rel: copy.rel.clone(),
        digest,
    };
    let size = copy.meta.size;
    let answers = join_all(outs.iter_mut().map(|(t, c)| {
        let ask = &ask;
        async move {
            let r = match c.call(ask).await {
                // No more than a file of any size has: a longer list is a lie.
                Ok(Response::Blocks(b)) if b.len() <= MAX_BLOCKS => Ok(Held::Blocks(b)),
                Ok(Response::Partial { len }) => match check::check_partial(len, size) {
                    Ok(len) => Ok(Held::Partial(len)),
                    Err(e) => Err(c.refused(e)),
                },
                Ok(other) => Err(c.unexpected(&other)),
                Err(e) => Err(e),
            };
            (*t, r)
        }
    }))
    .await;
    let (mut basis, mut held) = (HashMap::new(), HashMap::new());
    for (t, r) in answers {
        match r {
            Ok(Held::Blocks(b)) if !b.is_empty() => {
                basis.insert(t, b);
            }
            Ok(Held::Blocks(_)) => {}
            Ok(Held::Partial(len)) => {
                held.insert(t, len);
            }
            Err(e) => {
                outs.retain(|(p, _)| *p != t);
                results.push((t, Err(OpError::Lost(e))));
            }
        }
    }
    (basis, held)
}

/// Sends `req` to every remaining target at once; a target that fails leaves the set.
async fn fan_out<'a>(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'a, Conn>)>,
    results: &mut Vec<TargetResult>,
    req: &Request,
) {
    match encode(req) {
        Ok(frame) => {
            let frames = vec![&frame[..]; outs.len()];
            send_each(outs, results, &frames).await;
        }
        Err(e) => unencodable(outs, results, e),
    }
}

/// A request too big for a frame (a path near the frame limit): every target fails it.
fn unencodable(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'_, Conn>)>,
    results: &mut Vec<TargetResult>,
    e: FrameError,
) {
    results.extend(
        outs.drain(..)
            .map(|(t, _)| (t, Err(OpError::Failed(e.to_string())))),
    );
}

/// Sends each remaining target its own encoded frame (`frames[i]` to `outs[i]`) at once; a
/// target that fails leaves the set.
async fn send_each<'a>(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'a, Conn>)>,
    results: &mut Vec<TargetResult>,
    frames: &[&[u8]],
) {
    let sent = join_all(
        outs.iter_mut()
            .zip(frames)
            .map(|((_, c), f)| c.send_frame(f)),
    )
    .await;
    let mut i = 0;
    for r in sent {
        if let Err(e) = r {
            let (t, _) = outs.remove(i);
            results.push((t, Err(OpError::Lost(e))));
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::model::Retention;
    use crate::model::{Digest, Meta};
    use crate::paths::{RootSpec, WirePath};
    use crate::peer::testing::in_process;

    /// Scans the single-file root `~/f` on a peer, as a run does before it copies.
    async fn scan_f(peer: &Peer) {
        let mut conn = peer.conn.lock().await;
        let scan = Request::Scan {
            roots: vec![RootSpec::Home(WirePath::from("f"))],
            retention: Retention::default(),
            excludes: Vec::new(),
            brief: false,
            tidy: true,
            lock: false,
            meta: Default::default(),
        };
        conn.send(&scan).await.unwrap();
        conn.flush().await.unwrap();
        loop {
            match conn.recv().await.unwrap() {
                Response::ScanDone => return,
                Response::Failed(m) => panic!("{m}"),
                _ => {}
            }
        }
    }

    /// Copies `~/f` as scanned with `content` from peer 0 to peers 1 and 2.
    async fn copy_f(peers: &[Peer], content: &[u8]) -> Vec<TargetResult> {
        let copy = Copy {
            rel: WirePath::default(),
            master: 0,
            targets: vec![1, 2],
            meta: Meta {
                kind: Kind::File,
                size: content.len() as u64,
                mode: 0o640,
                mtime: 1_700_000_000_000_000_000,
                digest: Some(Digest::of(content)),
                extra: Default::default(),
            },
            source: None,
        };
        copy_entry(peers, 0, &copy, &[1, 2], None, &|_, _| {}).await
    }

    /// A master and two targets, one without the file and one with an older version of it.
    async fn three_peers(homes: &[tempfile::TempDir; 3], new: &[u8], old: &[u8]) -> Vec<Peer> {
        fs::write(homes[0].path().join("f"), new).unwrap();
        fs::write(homes[2].path().join("f"), old).unwrap();
        let mut peers = Vec::new();
        for (name, home) in ["alpha", "beta", "gamma"].iter().zip(homes) {
            let peer = in_process(name, home.path()).await;
            scan_f(&peer).await;
            peers.push(peer);
        }
        peers
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Three chunks and a bit; the old version differs in the second chunk only.
    fn versions() -> (Vec<u8>, Vec<u8>) {
        let new: Vec<u8> = (0..CHUNK * 3 + 11).map(|i| (i % 253) as u8).collect();
        let mut old = new.clone();
        old[CHUNK + 5] ^= 0xff;
        (new, old)
    }

    #[tokio::test]
    async fn targets_get_the_masters_bytes_whole_or_as_a_delta() {
        let homes = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let (new, old) = versions();
        let peers = three_peers(&homes, &new, &old).await;
        let results = copy_f(&peers, &new).await;
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        for home in &homes[1..] {
            assert_eq!(fs::read(home.path().join("f")).unwrap(), new);
            assert_eq!(names(home.path()), ["f"], "no temp file left");
        }
    }

    #[tokio::test]
    async fn a_file_changed_since_the_scan_reaches_no_target() {
        let homes = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let (new, old) = versions();
        let peers = three_peers(&homes, &new, &old).await;
        // Rewritten between the scan and the copy: the master reads other bytes than the
        // version the run decided on.
        let mut changed = new.clone();
        changed[7] ^= 1;
        fs::write(homes[0].path().join("f"), &changed).unwrap();
        let results = copy_f(&peers, &new).await;
        assert_eq!(results.len(), 2, "{results:?}");
        for (_, r) in &results {
            assert!(
                matches!(r, Err(OpError::Failed(m)) if m.contains("changed since it was scanned")),
                "{r:?}"
            );
        }
        assert_eq!(
            names(homes[1].path()),
            Vec::<String>::new(),
            "nothing arrived"
        );
        assert_eq!(
            fs::read(homes[2].path().join("f")).unwrap(),
            old,
            "old kept"
        );
        assert_eq!(names(homes[2].path()), ["f"], "no temp file left");
    }
}
