//! A live conversation with one peer's `synk --serve`: requests out, responses in, and what
//! a broken conversation is reported as.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use super::check::{clip, glimpse, Refused};
use super::connect::ServeChild;
use crate::paths::WirePath;
use crate::proto::{read_frame_async, write_frame_async, FrameError, Request, Response};

/// The serve's output, as the client reads it.
pub(super) type Reader = Box<dyn AsyncRead + Unpin + Send>;
/// The serve's input, as the client writes it.
pub(super) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A live conversation with one peer's `synk --serve`.
pub struct Conn {
    /// The peer's name, for messages.
    pub(super) name: String,
    /// The serve's output.
    pub(super) reader: BufReader<Reader>,
    /// The serve's input.
    pub(super) writer: BufWriter<Writer>,
    /// The serve's process, waited for when the conversation ends (`None`: in-process).
    pub(super) child: Option<ServeChild>,
    /// The last lines the serve wrote to its stderr.
    pub(super) stderr: Arc<StdMutex<VecDeque<String>>>,
    /// Warnings the serve sent, until taken ([`Conn::take_warnings`]).
    pub(super) warnings: Vec<String>,
    /// The peer's stable key, once its serve said it (an answer to a locking scan).
    pub(super) key: Option<u64>,
    /// The peer's home, as its handshake said (checked): roots it reports must be the ones
    /// asked for, resolved against it.
    pub(super) home: WirePath,
    /// Round trips so far: the times the client waited for an answer (see [`RoundTrips`]).
    pub(super) trips: RoundTrips,
    /// Requests sent whose answers nobody waited for yet, each with what it was about: read
    /// before any other answer, or when the conversation ends ([`Conn::owe`]).
    pub(super) owed: Owed,
    /// A remote serve on an ssh master of its own: where nothing is owed as the conversation
    /// ends, its exit is not waited for (see [`Conn::close`]).
    pub(super) far: bool,
}

/// Answers owed by the peer: requests sent without waiting ([`Conn::owe`]) and, once read, what
/// they came to.
#[derive(Debug, Default)]
pub struct Owed {
    waiting: VecDeque<String>,
    read: Vec<(String, Result<(), OpError>)>,
}

/// Counts a conversation's round trips: the times the client waited for an answer from the
/// peer, not frames. Requests sent since the last answer arm it; the first answer read after
/// them counts one, however many requests went out together and however many answers come.
#[derive(Debug, Default)]
pub(super) struct RoundTrips {
    count: u64,
    armed: bool,
}

impl RoundTrips {
    /// Requests went out: the next answer read ends a round trip.
    pub(super) fn sent(&mut self) {
        self.armed = true;
    }

    /// An answer was read.
    fn answered(&mut self) {
        if std::mem::take(&mut self.armed) {
            self.count += 1;
        }
    }
}

/// Warnings kept per conversation until taken: a serve that sends more is cut short.
const MAX_WARNINGS: usize = 64;

impl Conn {
    /// Sends a request (buffered; see [`Conn::flush`]).
    pub async fn send(&mut self, req: &Request) -> Result<()> {
        self.trips.sent();
        write_frame_async(&mut self.writer, req)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Sends one request already [`encode`](crate::proto::encode)d, unflushed: the same frame
    /// can go to several peers for one encoding.
    pub async fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.trips.sent();
        self.writer
            .write_all(frame)
            .await
            .map_err(|e| self.lost(FrameError::Io(e)))
    }

    /// Pushes buffered requests to the peer.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .map_err(|e| self.lost(FrameError::Io(e)))
    }

    /// Reads the next response (a failure's text [`clip`]ped). Warnings on the way are kept
    /// for [`Conn::take_warnings`]; answers owed to earlier requests ([`Conn::owe`]) are read
    /// first.
    pub async fn recv(&mut self) -> Result<Response> {
        self.read_owed().await?;
        self.next_answer().await
    }

    /// Marks the last request sent as one whose answer (`Done`, `Failed` or `Changed`) nobody
    /// waits for now: it is read before the next answer anyone waits for, or when the
    /// conversation ends ([`Conn::close`]), and kept with `about` until [`Conn::take_owed`].
    pub fn owe(&mut self, about: String) {
        self.owed.waiting.push_back(about);
    }

    /// The owed answers read so far, each with what it was about.
    pub fn take_owed(&mut self) -> Vec<(String, Result<(), OpError>)> {
        std::mem::take(&mut self.owed.read)
    }

    /// Reads every owed answer.
    async fn read_owed(&mut self) -> Result<()> {
        while !self.owed.waiting.is_empty() {
            let r = match self.next_answer().await? {
                Response::Done => Ok(()),
                Response::Failed(m) => Err(OpError::Failed(m)),
                Response::Changed(m) => Err(OpError::Changed(m)),
                other => return Err(self.unexpected(&other)),
            };
            let about = self.owed.waiting.pop_front().expect("an answer owed");
            self.owed.read.push((about, r));
        }
        Ok(())
    }

    async fn next_answer(&mut self) -> Result<Response> {
        loop {
            let frame = read_frame_async(&mut self.reader)
                .await
                .map_err(|e| self.lost(e))?;
            self.trips.answered();
            match frame {
                Response::Warning(w) => self.keep_warning(w),
                Response::Failed(m) => return Ok(Response::Failed(clip(m))),
                Response::Changed(m) => return Ok(Response::Changed(clip(m))),
                r => return Ok(r),
            }
        }
    }

    fn keep_warning(&mut self, mut w: String) {
        if self.warnings.len() >= MAX_WARNINGS {
            return;
        }
        if w.len() > crate::proto::MAX_WARNING {
            let mut end = crate::proto::MAX_WARNING;
            while !w.is_char_boundary(end) {
                end -= 1;
            }
            w.truncate(end);
        }
        self.warnings.push(w);
    }

    /// The warnings the serve sent since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The round trips to this peer since the last call: the times the client waited for an
    /// answer from it (requests sent together and answered together count one).
    pub fn take_round_trips(&mut self) -> u64 {
        std::mem::take(&mut self.trips.count)
    }

    /// Counts one round trip made outside the conversation (an rsync run the client waited
    /// for, over the same SSH connection).
    pub fn add_round_trip(&mut self) {
        self.trips.count += 1;
    }

    /// The peer's stable key, if its serve said it.
    pub fn key(&self) -> Option<u64> {
        self.key
    }

    /// Sends one request and waits for its single answer.
    pub async fn call(&mut self, req: &Request) -> Result<Response> {
        self.send(req).await?;
        self.flush().await?;
        self.recv().await
    }

    /// Sends a request that must be answered `Done`.
    pub async fn op(&mut self, req: &Request) -> Result<(), OpError> {
        match self.call(req).await.map_err(OpError::Lost)? {
            Response::Done => Ok(()),
            Response::Failed(m) => Err(OpError::Failed(m)),
            Response::Changed(m) => Err(OpError::Changed(m)),
            other => Err(OpError::Lost(self.unexpected(&other))),
        }
    }

    /// Sends every request at once and then reads their answers, in order: one round trip
    /// for all of them. Each answer is a [`Conn::op`]'s; `Err` when the conversation broke.
    pub async fn pipeline<'r>(
        &mut self,
        reqs: impl IntoIterator<Item = &'r Request>,
    ) -> Result<Vec<Result<(), OpError>>> {
        self.pipeline_then(reqs, &[]).await
    }

    /// [`Conn::pipeline`], with encoded requests `tail` sent behind them whose one answer
    /// (records, then a commit) the caller owes ([`Conn::owe`]).
    pub async fn pipeline_then<'r>(
        &mut self,
        reqs: impl IntoIterator<Item = &'r Request>,
        tail: &[Vec<u8>],
    ) -> Result<Vec<Result<(), OpError>>> {
        let answers = self.pipeline_raw(reqs, tail).await?;
        answers
            .into_iter()
            .map(|a| match a {
                Response::Done => Ok(Ok(())),
                Response::Failed(m) => Ok(Err(OpError::Failed(m))),
                Response::Changed(m) => Ok(Err(OpError::Changed(m))),
                other => Err(self.unexpected(&other)),
            })
            .collect()
    }

    /// Sends every request, then the encoded requests `tail` (whose answer, if any, the caller
    /// owes), and reads one answer per request, in order: one round trip.
    pub async fn pipeline_raw<'r>(
        &mut self,
        reqs: impl IntoIterator<Item = &'r Request>,
        tail: &[Vec<u8>],
    ) -> Result<Vec<Response>> {
        let mut n = 0;
        for r in reqs {
            self.send(r).await?;
            n += 1;
        }
        for frame in tail {
            self.send_frame(frame).await?;
        }
        self.flush().await?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await?);
        }
        Ok(out)
    }

    /// Sends the frames `frames` yields as they come, while reading the answers as they come:
    /// each frame marked `true` ends a request that is answered once (`Done`, `Failed` or
    /// `Changed`). Nothing waits for an answer before the next request goes, and answers are
    /// read while requests are still being written, so neither side's buffers can fill up and
    /// stall the other: one round trip for all of them. The answers come in request order; `Err`
    /// when the conversation broke.
    pub async fn stream_ops(
        &mut self,
        mut frames: tokio::sync::mpsc::Receiver<(Vec<u8>, bool)>,
    ) -> Result<Vec<Result<(), OpError>>> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let sent = AtomicUsize::new(0);
        let written = AtomicBool::new(false);
        let wake = tokio::sync::Notify::new();
        let mut warnings = Vec::new();
        self.read_owed().await?;
        let Conn { reader, writer, .. } = self;
        let write = async {
            let res = async {
                while let Some((frame, ends)) = frames.recv().await {
                    writer.write_all(&frame).await?;
                    if ends {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    if frames.is_empty() {
                        // Nothing more at hand: let the peer work on what it has.
                        writer.flush().await?;
                        wake.notify_one();
                    }
                }
                writer.flush().await
            }
            .await;
            written.store(true, Ordering::SeqCst);
            wake.notify_one();
            res.map_err(FrameError::Io)
        };
        let read = async {
            let mut out = Vec::new();
            loop {
                if out.len() == sent.load(Ordering::SeqCst) {
                    if written.load(Ordering::SeqCst) && out.len() == sent.load(Ordering::SeqCst) {
                        return Ok(out);
                    }
                    wake.notified().await;
                    continue;
                }
                match read_frame_async(&mut *reader).await.map_err(Ok)? {
                    Response::Warning(w) => warnings.push(w),
                    Response::Done => out.push(Ok(())),
                    Response::Failed(m) => out.push(Err(OpError::Failed(clip(m)))),
                    Response::Changed(m) => out.push(Err(OpError::Changed(clip(m)))),
                    other => return Err(Err(other)),
                }
            }
        };
        self.trips.sent();
        let res: Result<_, Result<FrameError, Response>> =
            tokio::try_join!(async { write.await.map_err(Ok) }, read);
        for w in warnings {
            self.keep_warning(w);
        }
        match res {
            Ok(((), out)) => {
                if !out.is_empty() {
                    self.trips.answered();
                }
                Ok(out)
            }
            Err(Ok(e)) => Err(self.lost(e)),
            Err(Err(other)) => Err(self.unexpected(&other)),
        }
    }

    fn lost(&self, e: FrameError) -> anyhow::Error {
        let tail = self.stderr_tail();
        let e = match e {
            FrameError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe => FrameError::Closed,
            e => e,
        };
        match e {
            FrameError::Closed if tail.is_empty() => anyhow!("{}: connection lost", self.name),
            FrameError::Closed => anyhow!("{}: connection lost: {tail}", self.name),
            e => anyhow!("{}: {e}", self.name),
        }
    }

    /// An error for a response that makes no sense at this point of the conversation.
    pub fn unexpected(&self, r: &Response) -> anyhow::Error {
        anyhow!(
            "{}: protocol error: unexpected {}",
            self.name,
            glimpse(r, 60)
        )
    }

    /// The error for an answer the client refuses ([`Refused`]): it names the peer, which is
    /// left out of the run.
    pub fn refused(&self, e: Refused) -> anyhow::Error {
        anyhow!("{}: {e}; {} is left out of this run", self.name, self.name)
    }

    /// The last lines of the serve's stderr, on one line.
    pub(super) fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().expect("stderr tail lock");
        t.iter().cloned().collect::<Vec<_>>().join(" / ")
    }

    /// Waits up to `wait` for the peer to see a change under the scanned roots: `Some(changed)`,
    /// or `None` where it cannot watch. `reset` forgets changes seen before.
    pub async fn watch(&mut self, wait: Duration, reset: bool) -> Result<Option<bool>> {
        let req = Request::Watch {
            wait_ms: wait.as_millis().min(u32::MAX as u128) as u32,
            reset,
        };
        match self.call(&req).await? {
            Response::Watched { changed, supported } => Ok(supported.then_some(changed)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Ends the conversation: closes the server's input, reads the answers still owed
    /// ([`Conn::owe`]; the wait for them is the wait for the serve to finish) and waits for it
    /// to exit. Returns what the owed answers came to, each with what it was about; a broken
    /// conversation fails every one.
    pub async fn close(&mut self) -> Vec<(String, Result<(), OpError>)> {
        // Dropping the pipe is what delivers end-of-file: `shutdown` on a child's stdin
        // leaves the descriptor open.
        let mut w = std::mem::replace(
            &mut self.writer,
            BufWriter::new(Box::new(tokio::io::sink())),
        );
        let _ = w.flush().await;
        drop(w);
        let mut heard_all = true;
        if !self.owed.waiting.is_empty() {
            // Owed answers are commits: a big state file saved and kept versions pruned take
            // what they take, and the serve must not be killed meanwhile. A dead link ends the
            // read (ssh's ServerAliveInterval), a signal the run.
            let failed = self.read_owed().await.err().map(|e| format!("{e:#}"));
            heard_all = failed.is_none();
            if let Some(e) = failed {
                let waiting = std::mem::take(&mut self.owed.waiting);
                self.owed.read.extend(
                    waiting
                        .into_iter()
                        .map(|about| (about, Err(OpError::Lost(anyhow!("{e}"))))),
                );
            }
        }
        if let Some(c) = self.child.take() {
            if self.far && heard_all {
                // Nothing (more) to hear from it: its exit would come a round trip later, and
                // its input's end reaches it whether or not its ssh stays (no pty, no signal).
                drop(c);
            } else {
                c.wait(Duration::from_secs(10)).await;
            }
        }
        self.take_owed()
    }
}

/// Why a single operation on a peer failed.
#[derive(Debug)]
pub enum OpError {
    /// The peer answered that the operation failed; the conversation goes on.
    Failed(String),
    /// The peer left the entry alone because it changed since the scan (the user saved it
    /// meanwhile); that version stays and the next run reconciles it.
    Changed(String),
    /// The conversation itself broke; the peer is gone for the rest of the run.
    Lost(anyhow::Error),
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Failed(m) | OpError::Changed(m) => write!(f, "{m}"),
            OpError::Lost(e) => write!(f, "{e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RoundTrips;

    #[test]
    fn requests_sent_together_and_answered_together_are_one_round_trip() {
        let mut t = RoundTrips::default();
        t.answered(); // an answer nobody waited for a request of: none
        for _ in 0..3 {
            t.sent();
        }
        for _ in 0..5 {
            t.answered();
        }
        assert_eq!(t.count, 1);
        t.sent();
        t.answered();
        t.sent();
        t.answered();
        assert_eq!(t.count, 3);
    }
}
