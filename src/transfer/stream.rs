//! The built-in streaming copier: the master's serve reads the file, the client passes each
//! chunk on to every target's serve, and each target writes a temp file beside the real one,
//! checks the SHA-512 against the master's, fsyncs and renames. Used where rsync is missing
//! on either end, with `--copier stream`, and when a remote master cannot reach a target.

use futures::future::join_all;

use crate::peer::{Conn, OpError, Peer};
use crate::plan::{Copy, PeerId};
use crate::proto::{Kind, Request, Response};

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
    on_bytes: &(dyn Fn(u64) + Sync),
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
    on_bytes: &(dyn Fn(u64) + Sync),
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
    let begin = Request::WriteFile {
        root,
        rel: copy.rel.clone(),
        mode: copy.meta.mode,
        mtime: copy.meta.mtime,
        digest,
    };
    fan_out(&mut outs, &mut results, &begin).await;
    let read = Request::ReadFile {
        root,
        rel: copy.rel.clone(),
    };
    let name = &peers[copy.master].name;
    let master_err: Option<OpError> = match master.call(&read).await {
        Err(e) => Some(OpError::Lost(e)),
        Ok(mut resp) => loop {
            match resp {
                Response::Data(d) => {
                    on_bytes(d.len() as u64);
                    let n = d.len();
                    fan_out(&mut outs, &mut results, &Request::Data(d)).await;
                    throttle.pace(n).await;
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
        Request::End
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

/// Sends `req` to every remaining target at once; a target that fails leaves the set.
async fn fan_out<'a>(
    outs: &mut Vec<(PeerId, tokio::sync::MutexGuard<'a, Conn>)>,
    results: &mut Vec<TargetResult>,
    req: &Request,
) {
    let sent = join_all(outs.iter_mut().map(|(_, c)| c.send(req))).await;
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
