//! Paths as they travel between peers, and the rules that keep them inside their root.
//!
//! Unix paths are bytes, not UTF-8, so every path on the wire is a [`WirePath`]. An entry below
//! a requested root is a [`WirePath`] that [`check_rel`] accepts: no `..`, no `.`, no empty or
//! absolute component, no NUL. Both ends check, so neither a buggy nor a hostile peer can make
//! synk read or write outside what the user asked for.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A path as raw bytes, the way Unix stores it.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WirePath(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl From<&str> for WirePath {
    fn from(s: &str) -> Self {
        WirePath(s.as_bytes().to_vec())
    }
}

impl WirePath {
    /// The bytes of a local path.
    pub fn from_path(path: &Path) -> Self {
        WirePath(path.as_os_str().as_bytes().to_vec())
    }

    /// The path as a local [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path in Unicode's composed form (NFC), where it is UTF-8 and spelled otherwise:
    /// the one spelling of a name on a filesystem that takes its NFC and NFD spellings for
    /// one name. `None`: it is NFC already, or not UTF-8 (kept byte for byte).
    pub fn nfc(&self) -> Option<WirePath> {
        use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
        if self.0.is_ascii() {
            return None;
        }
        let s = std::str::from_utf8(&self.0).ok()?;
        if is_nfc_quick(s.chars()) == IsNormalized::Yes {
            return None;
        }
        let n: String = s.nfc().collect();
        (n.as_bytes() != self.0).then(|| WirePath(n.into_bytes()))
    }

    /// Respells the path in NFC in place (see [`WirePath::nfc`]).
    pub fn make_nfc(&mut self) {
        if let Some(n) = self.nfc() {
            *self = n;
        }
    }

    /// True for the empty relative path, which names a root itself.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/child` for relative paths; an empty side disappears.
    pub fn join(&self, child: &WirePath) -> WirePath {
        if self.0.is_empty() {
            return child.clone();
        }
        if child.0.is_empty() {
            return self.clone();
        }
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(&child.0);
        WirePath(v)
    }

    /// This path relative to `base` when it is `base` itself (empty) or below it; `None`
    /// elsewhere. An empty `base` (a root) contains every relative path.
    pub fn below(&self, base: &WirePath) -> Option<WirePath> {
        let (a, b) = (self.as_bytes(), base.as_bytes());
        if b.is_empty() {
            Some(self.clone())
        } else if a == b {
            Some(WirePath::default())
        } else if a.len() > b.len() && a.starts_with(b) && a[b.len()] == b'/' {
            Some(WirePath(a[b.len() + 1..].to_vec()))
        } else {
            None
        }
    }

    /// The proper ancestors of a relative path, nearest root first: `a/b/c` gives `a`, `a/b`.
    pub fn ancestors(&self) -> impl Iterator<Item = WirePath> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| WirePath(self.0[..i].to_vec()))
    }
}

impl fmt::Display for WirePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lossy is fine for messages; the bytes themselves are never re-parsed from this.
        write!(f, "{}", self.as_path().display())
    }
}

impl fmt::Debug for WirePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_path())
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A NUL byte cannot be part of a Unix path.
    #[error("path contains a NUL byte")]
    Nul,
    /// A relative entry path began with `/`.
    #[error("path is absolute where a relative path was expected")]
    Absolute,
    /// A root path did not begin with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// `..`, `.` or an empty component would let the path leave or alias its root.
    #[error("path has a `..`, `.` or empty component")]
    Escapes,
}

/// Checks that `rel` names an entry at or below a root (the empty path is the root itself).
pub fn check_rel(rel: &WirePath) -> Result<(), PathError> {
    let b = rel.as_bytes();
    if b.contains(&0) {
        return Err(PathError::Nul);
    }
    if b.is_empty() {
        return Ok(());
    }
    if b[0] == b'/' {
        return Err(PathError::Absolute);
    }
    if b.split(|c| *c == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err(PathError::Escapes);
    }
    Ok(())
}

/// Where a requested path lives on a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootSpec {
    /// Relative to the peer's own home directory (empty: the home itself).
    Home(WirePath),
    /// The same absolute path on every peer.
    Absolute(WirePath),
}

impl RootSpec {
    /// Checks the spec's own path with the same rules as entries.
    pub fn check(&self) -> Result<(), PathError> {
        match self {
            RootSpec::Home(rel) => check_rel(rel),
            RootSpec::Absolute(abs) => {
                let b = abs.as_bytes();
                if b.first() != Some(&b'/') {
                    return Err(PathError::NotAbsolute);
                }
                if b.len() == 1 {
                    return Ok(());
                }
                check_rel(&WirePath(b[1..].trim_ascii_end_slash().to_vec()))
            }
        }
    }

    /// The last name of the path this spec names (trailing slashes aside): the name a root
    /// that is a single file has on every peer. `None` for a home itself and for `/`.
    pub fn file_name(&self) -> Option<&[u8]> {
        let b = match self {
            RootSpec::Home(rel) => rel.as_bytes(),
            RootSpec::Absolute(abs) => abs.as_bytes(),
        }
        .trim_ascii_end_slash();
        let name = &b[b.iter().rposition(|c| *c == b'/').map_or(0, |i| i + 1)..];
        (!name.is_empty()).then_some(name)
    }

    /// The absolute path this spec names on a host whose home directory is `home`.
    pub fn resolve(&self, home: &Path) -> Result<PathBuf, PathError> {
        self.check()?;
        Ok(match self {
            RootSpec::Home(rel) if rel.is_empty() => home.to_path_buf(),
            RootSpec::Home(rel) => home.join(rel.as_path()),
            RootSpec::Absolute(abs) => abs.as_path().to_path_buf(),
        })
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSpec::Home(rel) if rel.is_empty() => write!(f, "~"),
            RootSpec::Home(rel) => write!(f, "~/{rel}"),
            RootSpec::Absolute(abs) => write!(f, "{abs}"),
        }
    }
}

trait TrimSlash {
    fn trim_ascii_end_slash(&self) -> &[u8];
}

impl TrimSlash for [u8] {
    fn trim_ascii_end_slash(&self) -> &[u8] {
        let mut s = self;
        while let [rest @ .., b'/'] = s {
            s = rest;
        }
        s
    }
}

/// How entry `rel` of a root shown as `root` is named in messages (as bytes: `rel` need not
/// be UTF-8).
pub fn entry_display(root: &str, rel: &WirePath) -> WirePath {
    if rel.is_empty() {
        return WirePath::from(root);
    }
    let mut v = root.trim_end_matches('/').as_bytes().to_vec();
    v.push(b'/');
    v.extend_from_slice(rel.as_bytes());
    WirePath(v)
}

/// Makes `path` absolute against `cwd` and removes `.` and `..` lexically.
///
/// Lexical, not `canonicalize`: the path may not exist here at all (it may exist only on a
/// remote peer), and a symlink in it is the user's business.
pub fn absolutize(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Maps a command-line PATH to the spec every peer resolves: home-relative when it lies under
/// the local `home` (homes differ between hosts), absolute otherwise.
pub fn root_spec(path: &Path, cwd: &Path, home: Option<&Path>) -> RootSpec {
    let abs = absolutize(path, cwd);
    if let Some(home) = home.map(|h| absolutize(h, cwd)) {
        if home != Path::new("/") {
            if let Ok(rest) = abs.strip_prefix(&home) {
                return RootSpec::Home(WirePath::from_path(rest));
            }
        }
    }
    RootSpec::Absolute(WirePath::from_path(&abs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_a_whole_component_prefix() {
        let w = |s: &str| WirePath(s.as_bytes().to_vec());
        assert_eq!(w("a/b/c").below(&w("a/b")), Some(w("c")));
        assert_eq!(w("a/b").below(&w("a/b")), Some(w("")));
        assert_eq!(w("a/bc").below(&w("a/b")), None);
        assert_eq!(w("a").below(&w("a/b")), None);
        assert_eq!(w("x").below(&w("")), Some(w("x")));
        assert_eq!(w("/h/d/f").below(&w("/h/d")), Some(w("f")));
    }

    fn w(s: &str) -> WirePath {
        WirePath(s.as_bytes().to_vec())
    }

    #[test]
    fn nfc_respells_only_what_is_spelled_otherwise() {
        assert_eq!(w("d/cafe\u{301}/x").nfc(), Some(w("d/caf\u{e9}/x")));
        assert_eq!(w("d/caf\u{e9}").nfc(), None);
        assert_eq!(w("plain").nfc(), None);
        assert_eq!(WirePath(b"e\xcc\x81\xff".to_vec()).nfc(), None, "not UTF-8");
        let mut p = w("A\u{30a}");
        p.make_nfc();
        assert_eq!(p, w("\u{c5}"));
    }

    #[test]
    fn rel_paths_that_stay_inside_are_accepted() {
        for ok in [
            "", "a", "a/b", "a b/c\nd", "-rf", "..a", "a..", ".hidden", "$(x);y",
        ] {
            assert_eq!(check_rel(&w(ok)), Ok(()), "{ok:?}");
        }
        assert_eq!(check_rel(&WirePath(vec![0xff, b'/', 0xfe])), Ok(()));
    }

    #[test]
    fn rel_paths_that_escape_are_refused() {
        assert_eq!(check_rel(&w("/etc/passwd")), Err(PathError::Absolute));
        for bad in ["..", "../x", "a/../../x", "a/./b", "a//b", "a/", "."] {
            assert_eq!(check_rel(&w(bad)), Err(PathError::Escapes), "{bad:?}");
        }
        assert_eq!(check_rel(&WirePath(b"a\0b".to_vec())), Err(PathError::Nul));
    }

    #[test]
    fn under_home_travels_home_relative() {
        let home = Path::new("/home/me");
        let cwd = Path::new("/home/me/src");
        assert_eq!(
            root_spec(Path::new("/home/me/.profile"), cwd, Some(home)),
            RootSpec::Home(w(".profile"))
        );
        assert_eq!(
            root_spec(Path::new("../notes/"), cwd, Some(home)),
            RootSpec::Home(w("notes"))
        );
        assert_eq!(
            root_spec(Path::new("."), Path::new("/home/me"), Some(home)),
            RootSpec::Home(w(""))
        );
    }

    #[test]
    fn elsewhere_travels_absolute() {
        let home = Path::new("/home/me");
        assert_eq!(
            root_spec(Path::new("/etc/hosts"), Path::new("/"), Some(home)),
            RootSpec::Absolute(w("/etc/hosts"))
        );
        // A sibling sharing the prefix as a string is not under home.
        assert_eq!(
            root_spec(Path::new("/home/meg/x"), Path::new("/"), Some(home)),
            RootSpec::Absolute(w("/home/meg/x"))
        );
        assert_eq!(
            root_spec(Path::new("x/./y/../z"), Path::new("/srv"), None),
            RootSpec::Absolute(w("/srv/x/z"))
        );
    }

    #[test]
    fn specs_resolve_against_each_peers_home() {
        let spec = RootSpec::Home(w("notes"));
        assert_eq!(
            spec.resolve(Path::new("/srv/home/bob")).unwrap(),
            PathBuf::from("/srv/home/bob/notes")
        );
        assert_eq!(
            RootSpec::Home(w("../etc")).resolve(Path::new("/h")),
            Err(PathError::Escapes)
        );
        assert_eq!(
            RootSpec::Absolute(w("etc")).resolve(Path::new("/h")),
            Err(PathError::NotAbsolute)
        );
        assert_eq!(
            RootSpec::Absolute(w("/srv/../etc")).resolve(Path::new("/h")),
            Err(PathError::Escapes)
        );
        assert!(RootSpec::Absolute(w("/")).check().is_ok());
        let name = |spec: RootSpec| {
            spec.file_name()
                .map(|n| String::from_utf8_lossy(n).into_owned())
        };
        assert_eq!(
            name(RootSpec::Home(w(".profile"))).as_deref(),
            Some(".profile")
        );
        assert_eq!(name(RootSpec::Home(w("a/b.txt"))).as_deref(), Some("b.txt"));
        assert_eq!(
            name(RootSpec::Absolute(w("/etc/hosts"))).as_deref(),
            Some("hosts")
        );
        assert_eq!(
            name(RootSpec::Absolute(w("/srv/data/"))).as_deref(),
            Some("data")
        );
        assert_eq!(name(RootSpec::Home(w(""))), None);
        assert_eq!(name(RootSpec::Absolute(w("/"))), None);
        assert!(RootSpec::Absolute(w("/srv/data/")).check().is_ok());
    }

    #[test]
    fn ancestors_and_join() {
        let a: Vec<_> = w("a/b/c").ancestors().collect();
        assert_eq!(a, vec![w("a"), w("a/b")]);
        assert_eq!(w("").join(&w("x")), w("x"));
        assert_eq!(w("a").join(&w("")), w("a"));
        assert_eq!(w("a").join(&w("b")), w("a/b"));
    }
}
