//! The built-in streaming copier: the master's serve reads the file, the client passes each
//! chunk on to every target's serve, and each target writes a temp file beside the real one,
//! fsyncs and renames it once the master's SHA-512 of what it read matched the file's digest
//! and what the target wrote matches what the master read (a [`Check`]). Used where rsync is missing
//! on either end, with `--copier stream`, and when a remote master cannot reach a target.
//!
//! A file a target already holds in some version travels as a delta: the target lists a
//! fingerprint per [`CHUNK`] of its old file, and the blocks that match go as "the same as
//! yours" instead of data, so a few changed bytes cost a block, not the file.

use std::collections::HashMap;

use futures::future::join_all;

use super::WireStats;
use crate::peer::{Conn, OpError, Peer};
use crate::plan::{Copy, PeerId};
use crate::proto::{
    block_fingerprint, encode, Check, FrameError, Kind, Request, Response, CHUNK, DELTA_MIN,
};

/// Told of each chunk read from the master: its size, and what went to the targets.
pub type OnBytes<'a> = &'a (dyn Fn(u64, WireStats) + Sync);

/// The result of copying one entry to one target; a broken master is reported under its own
/// id, as a [`OpError::Lost`].
pub type TargetResult = (PeerId, Result<(), OpError>);

/// Copies one entry from `copy.master` to `targets`, concurrently to all of them.
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
        Kind::Dir => {
            let req = Request::MakeDir {
                root,
                rel: copy.rel.clone(),
                mode: meta.mode,
                mtime: meta.mtime,
            };
            on_each(peers, targets, &req).await
        }
        Kind::Symlink(target) => {
            let req = Request::Symlink {
                root,
                rel: copy.rel.clone(),
                target: target.clone(),
                mtime: meta.mtime,
            };
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
    let basis = if copy.meta.size >= DELTA_MIN {
        blocks_of(&mut outs, &mut results, root, copy).await
    } else {
        HashMap::new()
    };
    let begin = Request::WriteFile {
        root,
        rel: copy.rel.clone(),
        mode: copy.meta.mode,
        mtime: copy.meta.mtime,
    };
    fan_out(&mut outs, &mut results, &begin).await;
    let read = Request::ReadFile {
        root,
        rel: copy.rel.clone(),
    };
    let name = &peers[copy.master].name;
    let mut block = 0usize;
    let mut offset = 0u64;
    let mut check = Check::default();
    let master_err: Option<OpError> = match master.call(&read).await {
        Err(e) => Some(OpError::Lost(e)),
        Ok(mut resp) => loop {
            match resp {
                Response::Data(d) => {
                    let n = d.len();
                    check.update(&d);
                    // Blocks line up with the target's list while every chunk but the last
                    // is whole.
                    let fp = (!basis.is_empty() && offset == block as u64 * CHUNK as u64)
                        .then(|| block_fingerprint(&d));
                    let same: Vec<bool> = outs
                        .iter()
                        .map(|(t, _)| {
                            fp.is_some_and(|fp| {
                                basis.get(t).and_then(|b| b.get(block)) == Some(&fp)
                            })
                        })
                        .collect();
                    let matched = same.iter().filter(|s| **s).count() as u64;
                    on_bytes(
                        n as u64,
                        WireStats {
                            literal: (same.len() as u64 - matched) * n as u64,
                            matched: matched * n as u64,
                        },
                    );
                    // Each frame is encoded once, whatever the number of targets.
                    let (data, kept) = match (
                        encode(&Request::Data(d)),
                        encode(&Request::Same { len: n as u32 }),
                    ) {
                        (Ok(data), Ok(kept)) => (data, kept),
                        (Err(e), _) | (_, Err(e)) => break Some(OpError::Failed(e.to_string())),
                    };
                    let frames: Vec<&[u8]> = same
                        .iter()
                        .map(|s| if *s { &kept[..] } else { &data[..] })
                        .collect();
                    send_each(&mut outs, &mut results, &frames).await;
                    block += 1;
                    offset += n as u64;
                    // Only data counts against --bwlimit; "the same" is a few bytes.
                    throttle
                        .pace(if matched == same.len() as u64 { 0 } else { n })
                        .await;
                }
                Response::ReadDone(d) if d == digest => break None,
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

/// Asks every target for the block fingerprints of the file it holds at the copy's path.
async fn blocks_of(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'_, Conn>)>,
    results: &mut Vec<TargetResult>,
    root: u32,
    copy: &Copy,
) -> HashMap<PeerId, Vec<[u8; 16]>> {
    let ask = Request::Blocks {
        root,
        rel: copy.rel.clone(),
    };
    let answers = join_all(outs.iter_mut().map(|(t, c)| {
        let ask = &ask;
        async move {
            let r = match c.call(ask).await {
                Ok(Response::Blocks(b)) => Ok(b),
                Ok(other) => Err(c.unexpected(&other)),
                Err(e) => Err(e),
            };
            (*t, r)
        }
    }))
    .await;
    let mut basis = HashMap::new();
    for (t, r) in answers {
        match r {
            Ok(b) if !b.is_empty() => {
                basis.insert(t, b);
            }
            Ok(_) => {}
            Err(e) => {
                outs.retain(|(p, _)| *p != t);
                results.push((t, Err(OpError::Lost(e))));
            }
        }
    }
    basis
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
