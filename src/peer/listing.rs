//! What a peer holds: the scan conversation (entries in full, in brief, or a root summed up)
//! and fetching what settling leaves open: the briefs behind a summary, entries in full.

use anyhow::Result;

use super::check::{BriefsCheck, DetailCheck, ScanCheck, Took};
use super::{Conn, OpError};
use crate::model::Retention;
use crate::paths::{RootSpec, WirePath};
use crate::plan::{Briefs, Emptied, Listing};
use crate::proto::{Request, Response, Summary};

/// Path bytes per [`Request::Detail`], well below a frame's limit.
const DETAIL_BYTES: usize = 1 << 20;

/// One root as a peer scanned it: its absolute path there and its entries, or the error.
pub type RootScan = Result<Scanned, String>;

/// One root as a peer scanned it.
#[derive(Debug, Default)]
pub struct Scanned {
    /// The root's absolute path there.
    pub abs: WirePath,
    /// Entries reported in full, and (once settled) the briefs the decision needs in full.
    pub listing: Listing,
    /// Entries reported in brief, until [`crate::plan::settle`] has looked at them.
    pub briefs: Briefs,
    /// Every entry below the root was unchanged since the last sync, and was sent as this sum
    /// of its briefs instead (until settling finds it in sync or fetches the briefs).
    pub summary: Option<Summary>,
    /// Entries held there that settling found in sync on every peer.
    pub settled: usize,
    /// Entries sent in brief that settling left to be fetched in full window by window (this
    /// peer alone holds anything under the root, and a lot of it: a first sync).
    pub deferred: crate::plan::Paths,
    /// What the peer noted about the root (setuid bits left out, say), for `-v`.
    pub notes: Vec<String>,
    /// Mount points below the root that are emptied there now.
    pub emptied: Vec<Emptied>,
    /// What the root's filesystem holds, as the peer probed it (`None`: not told).
    pub holds: Option<crate::proto::Holds>,
}

/// How much longer than the wait it asked for a client waits for a serve's answer to a lock.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A scan that found another synk run holding a lock it needed on the peer: nothing was
/// scanned, nothing is held.
#[derive(Debug)]
pub struct Busy {
    /// The path whose lock the other run holds.
    pub path: WirePath,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "another synk run holds the lock of {}", self.path)
    }
}

impl std::error::Error for Busy {}

impl Scanned {
    /// A root at `abs` with nothing taken yet.
    pub(super) fn new(abs: WirePath) -> Self {
        Scanned {
            abs,
            ..Scanned::default()
        }
    }
}

impl Conn {
    /// The request to scan `roots`.
    pub fn scan_request(
        roots: &[RootSpec],
        retention: Retention,
        excludes: &[String],
        brief: bool,
        tidy: bool,
        meta: crate::extra::MetaOpts,
    ) -> Request {
        Request::Scan {
            roots: roots.to_vec(),
            retention,
            excludes: excludes.to_vec(),
            brief,
            tidy,
            lock: true,
            meta,
        }
    }

    /// Takes the locks of `roots` on this peer, waiting up to `wait` for another run to
    /// release them: `waiting` is told the path it waits for, when it starts to wait.
    pub async fn lock(
        &mut self,
        roots: &[RootSpec],
        wait: std::time::Duration,
        mut waiting: impl FnMut(&WirePath),
    ) -> Result<(), OpError> {
        let req = Request::Lock {
            roots: roots.to_vec(),
            wait_ms: wait.as_millis().min(u32::MAX as u128) as u32,
        };
        self.send(&req).await.map_err(OpError::Lost)?;
        self.flush().await.map_err(OpError::Lost)?;
        let mut told = false;
        let answer = async {
            loop {
                match self.recv().await.map_err(OpError::Lost)? {
                    Response::Waiting(path) if !told => {
                        told = true;
                        waiting(&path);
                    }
                    Response::Done => return Ok(()),
                    Response::Failed(m) => return Err(OpError::Failed(m)),
                    other => return Err(OpError::Lost(self.unexpected(&other))),
                }
            }
        };
        // A serve gives up at `wait`; one that does not answer by then and a while longer is
        // not one to wait for.
        match tokio::time::timeout(wait + LOCK_GRACE, answer).await {
            Ok(res) => res,
            Err(_) => Err(OpError::Lost(anyhow::anyhow!(
                "{}: no answer to a lock within {}",
                self.name,
                humantime::format_duration(wait + LOCK_GRACE)
            ))),
        }
    }

    /// Releases every lock this peer's serve holds for this client (no answer).
    pub async fn unlock(&mut self) -> Result<()> {
        self.send(&Request::Unlock).await?;
        self.flush().await
    }

    /// Scans `roots` on this peer. Its answer is checked as it comes ([`ScanCheck`]): a peer
    /// that breaks a rule is refused whole.
    /// `request` is [`Conn::scan_request`]'s for the same `roots`.
    pub async fn scan(
        &mut self,
        roots: &[RootSpec],
        request: &Request,
        progress: impl FnMut(u64, u64),
    ) -> Result<Vec<RootScan>> {
        self.send(request).await?;
        self.flush().await?;
        self.scanned(roots, progress).await
    }

    /// Reads the answer to a scan of `roots`, sent already (see [`crate::peer::connect()`]'s
    /// `ahead`).
    pub async fn scanned(
        &mut self,
        roots: &[RootSpec],
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Vec<RootScan>> {
        let home = self.home.clone();
        let mut check = ScanCheck::new(roots, &home);
        loop {
            let frame = self.recv().await?;
            match check.take(frame).map_err(|e| self.refused(e))? {
                Took::Progress { entries, bytes } => progress(entries, bytes),
                Took::Locked { key, busy } => {
                    self.key = Some(key);
                    if busy {
                        let path = check.busy.take().unwrap_or_default();
                        return Err(anyhow::Error::new(Busy { path }));
                    }
                }
                Took::Done => break,
            }
        }
        check.finish().map_err(|e| self.refused(e))
    }

    /// Fetches the briefs behind root `root`'s `summary` from the last scan, checking that
    /// they add up to it ([`BriefsCheck`]), and in full those of `also` among them (into the
    /// listing returned).
    pub async fn briefs(
        &mut self,
        root: u32,
        summary: &Summary,
        also: Vec<WirePath>,
    ) -> Result<(Briefs, Listing), OpError> {
        let mut check = BriefsCheck::new(summary, &also);
        self.send(&Request::Briefs { root, also })
            .await
            .map_err(OpError::Lost)?;
        self.flush().await.map_err(OpError::Lost)?;
        let mut out = Briefs::default();
        let mut full = Listing::new();
        loop {
            match self.recv().await.map_err(OpError::Lost)? {
                Response::Briefs(briefs) => check
                    .take(briefs, &mut out)
                    .map_err(|e| OpError::Lost(self.refused(e)))?,
                Response::Entries(entries) => check
                    .take_full(entries, &mut full)
                    .map_err(|e| OpError::Lost(self.refused(e)))?,
                Response::Done => {
                    return match check.done() {
                        Ok(()) => Ok((out, full)),
                        Err(e) => Err(OpError::Lost(self.refused(e))),
                    }
                }
                Response::Failed(m) => return Err(OpError::Failed(m)),
                other => return Err(OpError::Lost(self.unexpected(&other))),
            }
        }
    }

    /// Fetches in full the entries of root `root` that the last scan sent in brief, into
    /// `listing`. Asks in slices, so no request outgrows a frame; each answer must hold
    /// exactly the paths of its slice ([`DetailCheck`]).
    pub async fn detail(
        &mut self,
        root: u32,
        rels: Vec<WirePath>,
        listing: &mut Listing,
    ) -> Result<(), OpError> {
        let mut rels = rels.into_iter().peekable();
        while rels.peek().is_some() {
            let mut slice = Vec::new();
            let mut size = 0;
            while let Some(r) = rels.next_if(|r| size + r.as_bytes().len() < DETAIL_BYTES) {
                size += r.as_bytes().len() + 8;
                slice.push(r);
            }
            slice.dedup();
            let mut check = DetailCheck::new(&slice);
            self.send(&Request::Detail { root, rels: slice })
                .await
                .map_err(OpError::Lost)?;
            self.flush().await.map_err(OpError::Lost)?;
            loop {
                match self.recv().await.map_err(OpError::Lost)? {
                    Response::Entries(entries) => check
                        .take(entries, listing)
                        .map_err(|e| OpError::Lost(self.refused(e)))?,
                    Response::Done => {
                        check.done().map_err(|e| OpError::Lost(self.refused(e)))?;
                        break;
                    }
                    Response::Failed(m) => return Err(OpError::Failed(m)),
                    other => return Err(OpError::Lost(self.unexpected(&other))),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::fake_peer;
    use super::*;
    use crate::model::{Brief, Kind};
    use crate::proto::{read_frame_async, write_frame_async};
    use tokio::io::AsyncWriteExt;

    /// The error of a scan of `~/notes` whose peer (home `/h`) answers with that root holding
    /// `frames`.
    async fn scan_error(frames: Vec<Response>) -> String {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            let root = Response::Root {
                index: 0,
                result: Ok(WirePath(b"/h/notes".to_vec())),
            };
            for resp in std::iter::once(root)
                .chain(frames)
                .chain([Response::ScanDone])
            {
                write_frame_async(&mut w, &resp).await.unwrap();
            }
            w.flush().await.unwrap();
        });
        scan_notes(&mut conn).await.unwrap_err().to_string()
    }

    /// A brief scan of `~/notes` with every default, as the client asks it.
    async fn scan_notes(conn: &mut Conn) -> Result<Vec<RootScan>> {
        let roots = [RootSpec::Home(WirePath::from("notes"))];
        let request = Conn::scan_request(
            &roots,
            Retention::default(),
            &[],
            true,
            true,
            Default::default(),
        );
        conn.scan(&roots, &request, |_, _| {}).await
    }

    #[tokio::test]
    async fn a_file_without_a_digest_is_refused() {
        use crate::model::Meta;
        use crate::proto::Entry;
        let bare = Meta {
            kind: Kind::File,
            size: 1,
            mode: 0o644,
            mtime: 0,
            digest: None,
            extra: Default::default(),
        };
        let e = scan_error(vec![Response::Entries(vec![Entry {
            rel: WirePath(b"f".to_vec()),
            state: Ok(Some(bare)),
            vv: None,
            changed: true,
        }])])
        .await;
        assert!(e.contains("without the digest"), "{e}");
    }

    #[tokio::test]
    async fn a_peer_sending_an_escaping_path_is_refused() {
        use crate::proto::Entry;
        let e = scan_error(vec![Response::Entries(vec![Entry {
            rel: WirePath(b"../../etc/passwd".to_vec()),
            state: Err("x".into()),
            vv: None,
            changed: false,
        }])])
        .await;
        assert!(e.starts_with("beta: sent an invalid entry path"), "{e}");
        // In brief too.
        let e = scan_error(vec![Response::Briefs(vec![crate::model::Brief {
            rel: WirePath(b"a/../../x".to_vec()),
            fp: [0; 16],
            size: 0,
            gone: false,
        }])])
        .await;
        assert!(e.starts_with("beta: sent an invalid entry path"), "{e}");
    }

    #[tokio::test]
    async fn a_summary_is_a_roots_last_word() {
        use crate::proto::Entry;
        let summary = || {
            Response::Summary(Summary {
                sum: 7,
                count: 1,
                held: 1,
                largest: 0,
            })
        };
        let entry = |rel: &str| {
            Response::Entries(vec![Entry {
                rel: WirePath::from(rel),
                state: Ok(Some(dir_meta())),
                vv: None,
                changed: true,
            }])
        };
        let brief = || {
            Response::Briefs(vec![Brief {
                rel: WirePath::from("b"),
                fp: [0; 16],
                size: 0,
                gone: false,
            }])
        };
        // Nothing may follow it, and nothing below the root may come before it.
        let cases = [
            (vec![summary(), entry("x")], "after a root's summary"),
            (vec![summary(), brief()], "after a root's summary"),
            (vec![summary(), summary()], "after a root's summary"),
            (vec![entry("x"), summary()], "summed up after entries"),
            (vec![brief(), summary()], "summed up after entries"),
        ];
        for (frames, want) in cases {
            let e = scan_error(frames).await;
            assert!(e.contains(want), "{e}");
        }
    }

    #[tokio::test]
    async fn briefs_fetched_behind_a_summary_must_add_up_to_it() {
        let brief = |rel: &str| Brief {
            rel: WirePath::from(rel),
            fp: [1; 16],
            size: 2,
            gone: false,
        };
        let sent = vec![brief("a"), brief("b")];
        let fetch = |summary: Summary| {
            let sent = sent.clone();
            async move {
                let mut conn = fake_peer(|mut r, mut w| async move {
                    let _: Request = read_frame_async(&mut r).await.unwrap();
                    write_frame_async(&mut w, &Response::Briefs(sent))
                        .await
                        .unwrap();
                    write_frame_async(&mut w, &Response::Done).await.unwrap();
                    w.flush().await.unwrap();
                });
                conn.briefs(0, &summary, Vec::new()).await.map(|(b, _)| b)
            }
        };
        let got = fetch(Summary::of(&sent)).await.unwrap();
        assert_eq!((got.len(), got.rel(1)), (2, &b"b"[..]));
        let lost = |e: OpError| match e {
            OpError::Lost(e) => e.to_string(),
            OpError::Failed(m) | OpError::Changed(m) => panic!("{m}"),
        };
        // More than the summary counts is refused as it comes.
        let e = lost(fetch(Summary::of(&sent[..1])).await.unwrap_err());
        assert_eq!(
            e,
            "beta: protocol error: more briefs than the summary of 1 counts; beta is left out of this run"
        );
        // As many, but others.
        let others = [brief("a"), brief("c")];
        let e = lost(fetch(Summary::of(&others)).await.unwrap_err());
        assert_eq!(
            e,
            "beta: protocol error: 2 briefs do not add up to the summary of 2; beta is left out of this run"
        );
        // Fewer.
        let more = [brief("a"), brief("b"), brief("c")];
        let e = lost(fetch(Summary::of(&more)).await.unwrap_err());
        assert!(
            e.contains("2 briefs do not add up to the summary of 3"),
            "{e}"
        );
    }

    /// A directory's metadata, as a peer would send it.
    fn dir_meta() -> crate::model::Meta {
        crate::model::Meta::test_dir()
    }

    #[tokio::test]
    async fn entries_asked_for_behind_briefs_are_those_that_came_in_brief_each_once() {
        // Briefs of new directories; "b" sent in full is another one than its brief says.
        let brief = |rel: &str| Brief {
            rel: WirePath::from(rel),
            fp: crate::model::fingerprint_new(&dir_meta()),
            size: 0,
            gone: false,
        };
        let entry = |rel: &str| {
            let mut meta = dir_meta();
            meta.mode = if rel == "b" { 0o700 } else { 0o755 };
            crate::proto::Entry {
                rel: WirePath::from(rel),
                state: Ok(Some(meta)),
                vv: None,
                changed: true,
            }
        };
        let sent = vec![brief("a"), brief("b")];
        let summary = Summary::of(&sent);
        // Asked for a and c in full; the peer sends these entries behind its briefs.
        let fetch = |full: Vec<&str>, also: &[&str]| {
            let also: Vec<WirePath> = also.iter().map(|r| WirePath::from(*r)).collect();
            let frames = vec![
                Response::Briefs(sent.clone()),
                Response::Entries(full.into_iter().map(entry).collect()),
                Response::Done,
            ];
            async move {
                let mut conn = fake_peer(|mut r, mut w| async move {
                    let _: Request = read_frame_async(&mut r).await.unwrap();
                    for f in frames {
                        write_frame_async(&mut w, &f).await.unwrap();
                    }
                    w.flush().await.unwrap();
                });
                conn.briefs(0, &summary, also).await
            }
        };
        let (briefs, full) = fetch(vec!["a"], &["a", "c"]).await.unwrap();
        assert_eq!(briefs.len(), 2);
        assert_eq!(full.keys().collect::<Vec<_>>(), [&WirePath::from("a")]);
        let refused = |r: Result<(Briefs, Listing), OpError>| match r {
            Err(OpError::Lost(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        // One it summed up and was asked for, missing; one not asked for (or not in brief);
        // one twice.
        for (full, want) in [
            (vec![], "answered without \"a\" in full"),
            (vec!["a", "b"], "sent \"b\", which was not asked for"),
            (vec!["a", "c"], "sent \"c\", which was not asked for"),
            (
                vec!["a", "a"],
                "sent \"a\", which was not asked for (or twice)",
            ),
        ] {
            let e = refused(fetch(full, &["a", "c"]).await);
            assert!(e.contains(want), "{e}");
        }
        // One asked for that is not what its brief said.
        let e = refused(fetch(vec!["a", "b"], &["a", "b"]).await);
        assert!(e.contains("sent \"b\" in full unlike its brief"), "{e}");
    }

    #[tokio::test]
    async fn a_detail_answer_short_of_entries_is_a_protocol_error() {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            write_frame_async(&mut w, &Response::Done).await.unwrap();
            w.flush().await.unwrap();
        });
        let mut listing = Listing::new();
        let e = conn
            .detail(0, vec![WirePath(b"x".to_vec())], &mut listing)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, OpError::Lost(e) if e.to_string().contains("protocol error")),
            "{e:?}"
        );
    }
    /// The scan of a peer answering a locking scan of root "/h" with `frames`, and what the
    /// conversation kept: its warnings and the peer's key.
    async fn locked_scan(
        frames: Vec<Response>,
    ) -> (Result<Vec<RootScan>>, Vec<String>, Option<u64>) {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let _: Request = read_frame_async(&mut r).await.unwrap();
            for resp in frames {
                write_frame_async(&mut w, &resp).await.unwrap();
            }
            w.flush().await.unwrap();
        });
        let res = scan_notes(&mut conn).await;
        (res, conn.take_warnings(), conn.key())
    }

    #[tokio::test]
    async fn a_locking_scan_tells_the_key_the_busy_path_and_the_emptied_mount_points() {
        use crate::proto::Emptied as Told;
        let root = || Response::Root {
            index: 0,
            result: Ok(WirePath::from("/h/notes")),
        };
        let locked = |busy: Option<&str>| Response::Locked {
            key: 42,
            busy: busy.map(WirePath::from),
        };
        let told = |rel: &str| {
            Response::Emptied(vec![Told {
                rel: WirePath::from(rel),
                held: 7,
            }])
        };
        // Busy: nothing scanned.
        let (res, _, key) = locked_scan(vec![locked(Some("/h"))]).await;
        let e = res.unwrap_err();
        assert_eq!(e.downcast_ref::<Busy>().unwrap().path, WirePath::from("/h"));
        assert_eq!(key, Some(42));
        // Locked; a warning on the way; an emptied mount point, with its path there.
        let warning = Response::Warning("x".repeat(crate::proto::MAX_WARNING + 10));
        let frames = vec![
            locked(None),
            warning,
            root(),
            told("m/d"),
            Response::ScanDone,
        ];
        let (res, warnings, _) = locked_scan(frames).await;
        let scans = res.unwrap();
        let scanned = scans[0].as_ref().unwrap();
        assert_eq!(
            scanned.emptied,
            [Emptied {
                rel: WirePath::from("m/d"),
                held: 7,
                path: WirePath::from("/h/notes/m/d"),
            }]
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].len(), crate::proto::MAX_WARNING);
        // Refused: the root itself, an escaping path, a locked answer after the scan began.
        for (frames, want) in [
            (vec![root(), told("")], "the root as a mount point"),
            (vec![root(), told("../x")], "invalid entry path"),
            (vec![told("m")], "outside a root"),
            (vec![root(), locked(None)], "unexpected Locked"),
        ] {
            let mut frames = frames;
            frames.push(Response::ScanDone);
            let e = locked_scan(frames).await.0.unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[tokio::test]
    async fn a_lock_that_waits_says_so_once() {
        let mut conn = fake_peer(|mut r, mut w| async move {
            let req: Request = read_frame_async(&mut r).await.unwrap();
            assert!(
                matches!(req, Request::Lock { wait_ms: 1500, .. }),
                "{req:?}"
            );
            for resp in [
                Response::Waiting(WirePath::from("/h/notes")),
                Response::Warning("by the way".into()),
                Response::Done,
            ] {
                write_frame_async(&mut w, &resp).await.unwrap();
            }
            w.flush().await.unwrap();
        });
        let roots = [RootSpec::Home(WirePath::from("notes"))];
        let mut told = Vec::new();
        conn.lock(&roots, std::time::Duration::from_millis(1500), |p| {
            told.push(p.clone())
        })
        .await
        .unwrap();
        assert_eq!(told, [WirePath::from("/h/notes")]);
        assert_eq!(conn.take_warnings(), ["by the way"]);
        assert!(conn.take_warnings().is_empty());
    }
}
