//! Sending a root's entries: in full, in brief, or, where every entry below the root is
//! unchanged since the last sync, as one [`Summary`] with the briefs held back until the
//! client asks for them ([`crate::proto::Request::Briefs`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::model::{fingerprint_held, fingerprint_new, Brief, Kind};
use crate::proto::{encode, write_frame, Entry, FrameError, Response, Summary, ENTRY_BATCH};

/// Sends a root's entries in batches, the root's header before the first.
pub(super) struct Emitter<'w, W: Write> {
    w: &'w mut W,
    header: Option<Response>,
    batch: Vec<Entry>,
    /// With `Some`, entries unchanged since the last sync go out in brief.
    briefs: Option<Vec<Brief>>,
    /// While every entry below the root has been unchanged since the last sync: their brief
    /// frames, held back, and their sum.
    summing: Option<Summing>,
    /// The first write that failed; later entries are dropped.
    failed: Option<FrameError>,
}

/// Briefs held back while a root may still be summed up.
#[derive(Default)]
struct Summing {
    frames: HeldBriefs,
    summary: Summary,
    /// The frames sent so far (the header, the root's own entry), as sent.
    said: Vec<u8>,
}

/// Encoded [`Response::Briefs`] frames a scan held back behind its [`Summary`]: in an
/// unnamed temp file (a million briefs are some 40 MB the serve need not hold), in memory
/// where none can be made or written. Nothing of it outlives the serve, however it ends.
#[derive(Debug, Default)]
pub(super) struct HeldBriefs {
    /// Where the file goes (the user's cache; `None`, or where that fails: the temp
    /// directory).
    dir: Option<PathBuf>,
    /// The file and how much of it is written (`None`: not made yet, or it cannot be).
    file: Option<(File, u64)>,
    /// The frames not in the file.
    mem: Vec<u8>,
    /// Making or writing the file failed: the rest stays in memory.
    no_file: bool,
}

/// How much of the held frames stays in memory before it goes to the file.
const HELD_IN_MEMORY: usize = 1 << 20;

impl HeldBriefs {
    /// Holds one encoded frame after the others.
    fn push(&mut self, frame: &[u8]) {
        self.mem.extend_from_slice(frame);
        if self.mem.len() < HELD_IN_MEMORY || self.no_file {
            return;
        }
        if self.file.is_none() {
            let made = self
                .dir
                .as_deref()
                .and_then(|d| tempfile::tempfile_in(d).ok())
                .map(Ok)
                .unwrap_or_else(tempfile::tempfile);
            match made {
                Ok(f) => self.file = Some((f, 0)),
                Err(e) => {
                    tracing::debug!("briefs held in memory: {e}");
                    self.no_file = true;
                    return;
                }
            }
        }
        let (f, len) = self.file.as_mut().expect("made above");
        match f.write_all(&self.mem) {
            Ok(()) => {
                *len += self.mem.len() as u64;
                self.mem.clear();
            }
            // What was written before stays good (only `len` bytes are read back).
            Err(e) => {
                tracing::debug!("briefs held in memory from here on: {e}");
                self.no_file = true;
            }
        }
    }

    /// Writes every frame held, in the order held, to `w`.
    pub(super) fn send_to<W: Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if let Some((f, len)) = &mut self.file {
            f.seek(SeekFrom::Start(0))?;
            let copied = std::io::copy(&mut (&*f).take(*len), w)?;
            if copied != *len {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        w.write_all(&self.mem)
    }
}

/// A root summed up: what the scan sent, and what it held back.
pub(super) struct Summed {
    /// The briefs behind the summary.
    pub(super) held: HeldBriefs,
    /// Every frame sent for the root, summary included, as sent: a scan that answers from
    /// memory sends them again (see `recheck`).
    pub(super) said: Vec<u8>,
}

impl<'w, W: Write> Emitter<'w, W> {
    /// An emitter for the root `header` announces; `brief` sends unchanged entries in brief
    /// (and a root that is all unchanged as a summary, its briefs held in a temp file in
    /// `spill` where one can be made there).
    pub(super) fn new(w: &'w mut W, header: Response, brief: bool, spill: Option<PathBuf>) -> Self {
        let summing = brief.then(|| Summing {
            frames: HeldBriefs {
                dir: spill,
                ..HeldBriefs::default()
            },
            ..Summing::default()
        });
        Emitter {
            w,
            header: Some(header),
            batch: Vec::with_capacity(ENTRY_BATCH),
            briefs: brief.then(|| Vec::with_capacity(ENTRY_BATCH)),
            summing,
            failed: None,
        }
    }

    /// Queues one entry, sending a batch when one is full.
    pub(super) fn push(&mut self, e: Entry) {
        if self.failed.is_some() {
            return;
        }
        let brief = if self.briefs.is_some() {
            brief_of(&e)
        } else {
            None
        };
        let full = match brief {
            Some((fp, size, gone)) => {
                let remembered = e.vv.is_some();
                let b = Brief {
                    rel: e.rel,
                    fp,
                    size,
                    gone,
                };
                match &mut self.summing {
                    // Only what the state remembers can be summed: a peer that knows an entry
                    // but not its history sends it, so the client settles it against the rest.
                    Some(s) if remembered => s.summary.add(&b),
                    Some(_) => self.release(),
                    None => {}
                }
                let briefs = self
                    .briefs
                    .as_mut()
                    .expect("a brief only where briefs are on");
                briefs.push(b);
                briefs.len() >= ENTRY_BATCH
            }
            None => {
                // The root itself always goes in full; anything else in full is news.
                if !e.rel.is_empty() {
                    self.release();
                }
                self.batch.push(e);
                self.batch.len() >= ENTRY_BATCH
            }
        };
        if full {
            if let Err(e) = self.flush() {
                self.failed = Some(e);
            }
        }
    }

    /// Sends a note about the root now (after its header), kept with what the root said.
    pub(super) fn note(&mut self, line: String) -> Result<(), FrameError> {
        self.check()?;
        self.write_header()?;
        self.send(&Response::Note(line))
    }

    /// The root is not all unchanged after all: the held-back briefs go out now, and the rest
    /// as they come.
    fn release(&mut self) {
        let Some(s) = self.summing.take() else {
            return;
        };
        let mut frames = s.frames;
        let res = self
            .write_header()
            .and_then(|()| Ok(frames.send_to(self.w)?));
        if let Err(e) = res {
            self.failed.get_or_insert(e);
        }
    }

    fn write_header(&mut self) -> Result<(), FrameError> {
        if let Some(h) = self.header.take() {
            self.send(&h)?;
        }
        Ok(())
    }

    /// Writes one frame, kept as said while the root may still be summed up.
    fn send(&mut self, frame: &Response) -> Result<(), FrameError> {
        match &mut self.summing {
            Some(s) => {
                let bytes = encode(frame)?;
                self.w.write_all(&bytes)?;
                s.said.extend_from_slice(&bytes);
                Ok(())
            }
            None => write_frame(self.w, frame),
        }
    }

    /// The first failed write, if any.
    fn check(&mut self) -> Result<(), FrameError> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drops everything not sent yet, the header too, and sends `answer` in its place (the
    /// root failed after all).
    pub(super) fn replace(mut self, answer: Response) -> Result<(), FrameError> {
        self.check()?;
        write_frame(self.w, &answer)
    }

    fn flush(&mut self) -> Result<(), FrameError> {
        self.check()?;
        self.write_header()?;
        let mut wrote = false;
        if !self.batch.is_empty() {
            let entries = Response::Entries(std::mem::take(&mut self.batch));
            self.send(&entries)?;
            wrote = true;
        }
        if let Some(briefs) = self.briefs.as_mut().filter(|b| !b.is_empty()) {
            let frame = Response::Briefs(std::mem::take(briefs));
            match &mut self.summing {
                Some(s) => s.frames.push(&encode(&frame)?),
                None => {
                    write_frame(self.w, &frame)?;
                    wrote = true;
                }
            }
        }
        if wrote {
            self.w.flush()?;
        }
        Ok(())
    }

    /// Sends what is left. Where every entry below the root was unchanged since the last sync,
    /// that is a [`Response::Summary`] in place of their briefs, which are returned to be
    /// held for the client, with what was sent.
    pub(super) fn finish(mut self) -> Result<Option<Summed>, FrameError> {
        self.flush()?;
        let held = match self.summing.take() {
            Some(s) if s.summary.count > 0 => {
                let mut said = s.said;
                let frame = encode(&Response::Summary(s.summary))?;
                self.w.write_all(&frame)?;
                said.extend_from_slice(&frame);
                Some(Summed {
                    held: s.frames,
                    said,
                })
            }
            _ => None,
        };
        self.w.flush()?;
        Ok(held)
    }
}

/// The fingerprint, size and deletion mark of an entry sent in brief: one unchanged since the
/// last sync, or one this peer has no history of (a first sync: peers that all hold it the
/// same need nothing). `None` for the rest: changed or unreadable entries, specials and the
/// root itself always go out in full.
fn brief_of(e: &Entry) -> Option<([u8; 16], u64, bool)> {
    if e.rel.is_empty() {
        return None;
    }
    match (&e.state, &e.vv) {
        (Ok(m), Some(vv)) if !e.changed && m.as_ref().is_none_or(|m| m.kind != Kind::Special) => {
            let meta = m.as_ref();
            Some((
                fingerprint_held(meta, vv),
                meta.map_or(0, |m| m.size),
                meta.is_none(),
            ))
        }
        (Ok(Some(m)), None) if m.kind != Kind::Special => Some((fingerprint_new(m), m.size, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn briefs_held_in_a_file_come_back_whole_and_in_order() {
        let mut held = HeldBriefs::default();
        let mut want = Vec::new();
        // Past what stays in memory, twice over, in frames of many sizes.
        let mut i = 0u32;
        while want.len() < 2 * HELD_IN_MEMORY + 12_345 {
            let frame: Vec<u8> = (0..(i % 5000)).map(|b| (b ^ i) as u8).collect();
            held.push(&frame);
            want.extend_from_slice(&frame);
            i += 1;
        }
        assert!(held.file.is_some(), "a file was made");
        assert!(held.mem.len() < HELD_IN_MEMORY);
        let mut got = Vec::new();
        held.send_to(&mut got).unwrap();
        assert!(got == want, "{} bytes of {}", got.len(), want.len());
        // Sent again, the same (a release before a summary never follows one).
        let mut again = Vec::new();
        held.send_to(&mut again).unwrap();
        assert!(again == want);
    }
}
