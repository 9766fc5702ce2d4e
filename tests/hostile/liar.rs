//! The liar: a `synk --serve` that lies. It runs the real serve as its child and stands between
//! it and the client, relaying every frame, and rewrites what the serve says as `~/.liar`
//! tells it, one lie a line: the lie's name and its arguments, tab-separated (arguments are
//! raw bytes, escape sequences and all). With no `~/.liar` it lies about nothing.
//!
//! Lies (`ROOT` is the first root of the scan):
//! - `wrong-root NAME`: reports each root that is a file under NAME, beside it (`.bashrc` for
//!   `.profile`);
//! - `sibling REL`: adds the file REL beside ROOT (its real content there, newest), as an
//!   entry of ROOT;
//! - `entry REL` / `symlink REL TARGET`: adds a file (`evil`) or a symlink to ROOT's entries;
//! - `unreadable REL TEXT`: adds an entry of ROOT that cannot be read, with TEXT as its error;
//! - `extra-detail`: answers every Detail with one entry more than asked (`unasked`);
//! - `twice-detail`: answers every Detail with its last entry twice;
//! - `summary-lie`: sums roots up wrong, and answers Briefs with one brief more;
//! - `endless`: after ROOT's header, lists entries without end (long names), until the client
//!   hangs up or 4 GiB were sent;
//! - `versions PATH`: lists a kept version of PATH in every Versions answer;
//! - `hello-home HOME` / `hello-version VERSION`: says so in the handshake;
//! - `oversized` / `truncated`: after the handshake, a frame longer than any allowed, or one
//!   cut short, then nothing;
//! - `stderr-junk`: writes escape sequences and an endless line to stderr after the
//!   handshake, then dies.
//! - `hole-past-end`: ends every file it sends with 1 GiB of holes (a few bytes each, past
//!   the size it scanned).
//! - `data-past-end`: ends every file it sends with 96 MiB of data past the size it scanned,
//!   then the digest of the file as scanned.
//! - `changed-huge`: answers every op it is asked for with 4 MiB of "changed meanwhile" text,
//!   escape sequences in it.
//! - `link REL TO`: says its entry REL is a hard link to TO (every such lie is told).
//! - `partial-past-end`: answers every request for partial data or blocks with 1 TiB of
//!   partial data of the file.
//! - `holds-twice`: tells what each root's filesystem holds twice;
//! - `holds-step NS`: tells an mtime step of NS ns for each root's filesystem.
//! - `xattrs HOW`: answers every Attrs request with attributes past synk's bounds: `name`
//!   (of no kept namespace), `value` (too big), `count` (too many) or `unasked` (of an
//!   entry not asked about).

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use synk::model::{Brief, Digest, Kept, Kind, Meta, Why};
use synk::paths::WirePath;
use synk::proto::{read_frame, write_frame, Entry, Request, Response};

/// One lie, as `~/.liar` says it.
struct Lie {
    name: String,
    args: Vec<Vec<u8>>,
}

impl Lie {
    fn arg(&self, i: usize) -> WirePath {
        WirePath(self.args.get(i).cloned().unwrap_or_default())
    }
}

/// What the client last asked, as the relay from it saw it.
#[derive(Default)]
struct Asked {
    last: Option<&'static str>,
}

/// Runs the liar in front of the real serve `real`, the client's frames `ahead` first (given
/// on its command line); exits when the client hangs up.
pub fn main(real: &str, ahead: Vec<u8>) {
    let home = std::env::var_os("HOME").expect("HOME");
    let lies: Vec<Lie> = fs::read(std::path::Path::new(&home).join(".liar"))
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split(|b| *b == b'\t');
            let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            Lie {
                name,
                args: parts.map(<[u8]>::to_vec).collect(),
            }
        })
        .collect();
    let mut child = Command::new(real)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the real serve");
    let asked = Arc::new(Mutex::new(Asked::default()));
    let mut to_serve = child.stdin.take().expect("piped");
    let from_serve = child.stdout.take().expect("piped");
    {
        let asked = asked.clone();
        std::thread::spawn(move || {
            // The client's frames go to the serve as they are; only what they ask is noted.
            let mut stdin = io::Cursor::new(ahead).chain(io::stdin().lock());
            while let Some(frame) = raw_frame(&mut stdin) {
                if let Ok(req) = postcard::from_bytes::<Request>(&frame[4..]) {
                    asked.lock().unwrap().last = Some(kind(&req));
                }
                if to_serve.write_all(&frame).is_err() || to_serve.flush().is_err() {
                    break;
                }
            }
            // The client hung up: so does the serve.
            drop(to_serve);
        });
    }
    let mut r = BufReader::new(from_serve);
    let mut w = BufWriter::new(io::stdout().lock());
    let mut liar = Liar {
        lies,
        asked,
        said_hello: false,
        last_entries: None,
    };
    while let Ok(resp) = read_frame::<Response, _>(&mut r) {
        for out in liar.rewrite(resp) {
            let ok = match out {
                Out::Frame(f) => write_frame(&mut w, &f).is_ok(),
                Out::Raw(b) => w.write_all(&b).is_ok(),
                Out::Endless => {
                    let _ = w.flush();
                    endless(&mut w);
                    false
                }
                Out::Die => {
                    let _ = w.flush();
                    std::process::exit(1)
                }
            };
            if !ok {
                let _ = child.kill();
                std::process::exit(0);
            }
        }
        if w.flush().is_err() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One whole frame as it came (length prefix included), or `None` at the end.
fn raw_frame(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; 4];
    r.read_exact(&mut frame).ok()?;
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    frame.resize(4 + len, 0);
    r.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

fn kind(req: &Request) -> &'static str {
    match req {
        Request::Scan { .. } => "scan",
        Request::Detail { .. } => "detail",
        Request::Briefs { .. } => "briefs",
        Request::Versions { .. } => "versions",
        _ => "other",
    }
}

/// What the liar writes in place of one of the serve's frames.
enum Out {
    Frame(Response),
    Raw(Vec<u8>),
    /// Entries without end.
    Endless,
    /// Nothing more: the liar dies.
    Die,
}

struct Liar {
    lies: Vec<Lie>,
    asked: Arc<Mutex<Asked>>,
    said_hello: bool,
    last_entries: Option<Vec<Entry>>,
}

impl Liar {
    fn lie(&self, name: &str) -> Option<&Lie> {
        self.lies.iter().find(|l| l.name == name)
    }

    fn last_asked(&self) -> Option<&'static str> {
        self.asked.lock().unwrap().last
    }

    /// The frames to send for the serve's `resp`.
    fn rewrite(&mut self, resp: Response) -> Vec<Out> {
        let mut out = Vec::new();
        match resp {
            Response::Hello {
                magic,
                protocol,
                mut version,
                rsync,
                mut home,
            } => {
                if let Some(l) = self.lie("hello-home") {
                    home = l.arg(0);
                }
                if let Some(l) = self.lie("hello-version") {
                    version = String::from_utf8_lossy(&l.args[0]).into_owned();
                }
                out.push(Out::Frame(Response::Hello {
                    magic,
                    protocol,
                    version,
                    rsync,
                    home,
                }));
                self.said_hello = true;
                if self.lie("oversized").is_some() {
                    out.push(Out::Raw(vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
                    out.push(Out::Die);
                } else if self.lie("truncated").is_some() {
                    let mut cut = 1000u32.to_be_bytes().to_vec();
                    cut.extend_from_slice(&[4; 10]);
                    out.push(Out::Raw(cut));
                    out.push(Out::Die);
                } else if self.lie("stderr-junk").is_some() {
                    let mut e = io::stderr().lock();
                    let _ = e.write_all(b"\x1b]0;pwned\x07\x1b[2J\x1b[31mred alert\n");
                    let _ = e.write_all(&vec![b'z'; 10 << 20]);
                    let _ = e.flush();
                    out.push(Out::Die);
                }
            }
            Response::Root {
                index,
                result: Ok(abs),
            } => {
                let mut abs = abs;
                if let Some(l) = self.lie("wrong-root") {
                    let parent = abs.as_path().parent().unwrap().to_path_buf();
                    abs = WirePath::from_path(&parent.join(l.arg(0).as_path()));
                }
                let first = index == 0;
                out.push(Out::Frame(Response::Root {
                    index,
                    result: Ok(abs.clone()),
                }));
                if first {
                    out.extend(self.added_entries(&abs));
                    if self.lie("endless").is_some() {
                        out.push(Out::Endless);
                    }
                }
            }
            Response::Summary(mut s) if self.lie("summary-lie").is_some() => {
                s.sum = s.sum.wrapping_add(1);
                out.push(Out::Frame(Response::Summary(s)));
            }
            Response::Entries(mut entries) => {
                for l in self.lies.iter().filter(|l| l.name == "link") {
                    for e in entries.iter_mut().filter(|e| e.rel == l.arg(0)) {
                        if let Ok(Some(m)) = &mut e.state {
                            m.extra.link = Some(l.arg(1));
                        }
                    }
                }
                self.last_entries = Some(entries.clone());
                out.push(Out::Frame(Response::Entries(entries)));
            }
            // Every op it is asked for, "changed meanwhile", at length and in colour.
            Response::Done
                if self.lie("changed-huge").is_some() && self.last_asked() == Some("other") =>
            {
                let text = "\x1b[31mchanged ".repeat((4 << 20) / 13);
                out.push(Out::Frame(Response::Changed(text)));
            }
            Response::Done => {
                match self.last_asked() {
                    Some("detail") if self.lie("extra-detail").is_some() => {
                        out.push(Out::Frame(Response::Entries(vec![evil_file("unasked")])));
                    }
                    Some("detail") if self.lie("twice-detail").is_some() => {
                        if let Some(e) = self.last_entries.as_ref().and_then(|v| v.last()) {
                            out.push(Out::Frame(Response::Entries(vec![e.clone()])));
                        }
                    }
                    Some("briefs") if self.lie("extra-full").is_some() => {
                        out.push(Out::Frame(Response::Entries(vec![evil_file("unasked")])));
                    }
                    Some("briefs") if self.lie("summary-lie").is_some() => {
                        out.push(Out::Frame(Response::Briefs(vec![Brief {
                            rel: WirePath::from("extra"),
                            fp: [7; 16],
                            size: 1,
                            gone: false,
                        }])));
                    }
                    Some("versions") => {
                        if let Some(l) = self.lie("versions") {
                            out.push(Out::Frame(Response::Versions(vec![Kept {
                                path: l.arg(0),
                                id: "1-liar".into(),
                                meta: file_meta(b"evil"),
                                replaced: 1_000_000_000,
                                why: Why::Overwritten,
                            }])));
                        }
                    }
                    _ => {}
                }
                out.push(Out::Frame(Response::Done));
            }
            Response::Holds(mut holds) => {
                if let Some(l) = self.lie("holds-step") {
                    holds.mtime_step = String::from_utf8_lossy(&l.args[0]).parse().unwrap();
                }
                if self.lie("holds-twice").is_some() {
                    out.push(Out::Frame(Response::Holds(holds)));
                }
                out.push(Out::Frame(Response::Holds(holds)));
            }
            Response::Attrs(mut got) if self.lie("xattrs").is_some() => {
                let how = self.lie("xattrs").map(|l| l.arg(0)).unwrap_or_default();
                let x = |name: String, len: usize| synk::proto::Xattr {
                    name: name.into_bytes(),
                    value: vec![b'v'; len],
                };
                for (_, list) in &mut got {
                    *list = match how.as_bytes() {
                        b"name" => vec![x("evil.x".into(), 1)],
                        b"value" => vec![x("user.big".into(), 70_000)],
                        b"count" => (0..2000).map(|i| x(format!("user.{i:04}"), 0)).collect(),
                        _ => std::mem::take(list),
                    };
                }
                if how.as_bytes() == b"unasked" {
                    got.push((WirePath::from("unasked"), Vec::new()));
                }
                out.push(Out::Frame(Response::Attrs(got)));
            }
            Response::ReadDone(d) if self.lie("hole-past-end").is_some() => {
                let len = synk::proto::CHUNK as u32;
                for _ in 0..(1 << 30) / len {
                    out.push(Out::Frame(Response::Hole { len }));
                }
                out.push(Out::Frame(Response::ReadDone(d)));
            }
            Response::ReadDone(d) if self.lie("data-past-end").is_some() => {
                let chunk = vec![b'x'; synk::proto::CHUNK];
                for _ in 0..(96 << 20) / chunk.len() {
                    out.push(Out::Frame(Response::Data(chunk.clone())));
                }
                out.push(Out::Frame(Response::ReadDone(d)));
            }
            Response::Blocks(_) if self.lie("partial-past-end").is_some() => {
                out.push(Out::Frame(Response::Partial { len: 1 << 40 }));
            }
            other => out.push(Out::Frame(other)),
        }
        out
    }

    /// The entries the lies add to the first root (at `abs` there).
    fn added_entries(&self, abs: &WirePath) -> Vec<Out> {
        let mut added = Vec::new();
        for l in &self.lies {
            let entry = match l.name.as_str() {
                "sibling" => {
                    // Its real content there: a copy of it would work.
                    let parent = abs.as_path().parent().unwrap();
                    let bytes = fs::read(parent.join(l.arg(0).as_path())).unwrap_or_default();
                    Entry {
                        rel: l.arg(0),
                        state: Ok(Some(Meta {
                            mtime: now_ns(),
                            ..file_meta(&bytes)
                        })),
                        vv: None,
                        changed: true,
                    }
                }
                "entry" => Entry {
                    rel: l.arg(0),
                    ..evil_file("")
                },
                "symlink" => {
                    let target = l.arg(1);
                    Entry {
                        rel: l.arg(0),
                        state: Ok(Some(Meta {
                            kind: Kind::Symlink(target.clone()),
                            size: 0,
                            mode: 0o777,
                            mtime: now_ns(),
                            digest: Some(Digest::of(target.as_bytes())),
                            extra: Default::default(),
                        })),
                        vv: None,
                        changed: true,
                    }
                }
                "unreadable" => Entry {
                    rel: l.arg(0),
                    state: Err(String::from_utf8_lossy(&l.args[1]).into_owned()),
                    vv: None,
                    changed: false,
                },
                _ => continue,
            };
            added.push(Out::Frame(Response::Entries(vec![entry])));
        }
        added
    }
}

/// A file's metadata for `bytes`, as a scan would say it.
fn file_meta(bytes: &[u8]) -> Meta {
    Meta {
        kind: Kind::File,
        size: bytes.len() as u64,
        mode: 0o644,
        mtime: now_ns(),
        digest: Some(Digest::of(bytes)),
        extra: Default::default(),
    }
}

/// A file `rel` holding `evil`, new and changed.
fn evil_file(rel: &str) -> Entry {
    Entry {
        rel: WirePath::from(rel),
        state: Ok(Some(file_meta(b"evil"))),
        vv: None,
        changed: true,
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Entries without end, each with a name of some 4000 bytes (15 names of 250 bytes), until
/// the client hangs up or 4 GiB went out.
fn endless(w: &mut impl Write) {
    let mut sent: u64 = 0;
    let mut n: u64 = 0;
    let segment = "s".repeat(240);
    while sent < 4 << 30 {
        let batch: Vec<Entry> = (0..512)
            .map(|_| {
                n += 1;
                let mut rel = String::new();
                for i in 0..15 {
                    rel.push_str(&format!("{segment}{:010}", n * 16 + i));
                    rel.push('/');
                }
                rel.pop();
                Entry {
                    rel: WirePath::from(rel.as_str()),
                    state: Ok(None),
                    vv: None,
                    changed: true,
                }
            })
            .collect();
        sent += batch
            .iter()
            .map(|e| e.rel.as_bytes().len() as u64)
            .sum::<u64>();
        if write_frame(w, &Response::Entries(batch)).is_err() || w.flush().is_err() {
            return;
        }
    }
}
