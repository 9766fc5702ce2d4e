//! Excludes: gitignore-style patterns (`exclude` in synk.conf(5), `--exclude`, and a
//! `.synkignore` file at a root), matched by the `ignore` crate. An excluded entry is never
//! scanned, hashed, copied, deleted or kept as a version, and excluding something later never
//! deletes it: its remembered state is left as it was.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::paths::WirePath;

/// The per-root file of patterns.
pub const IGNORE_FILE: &str = ".synkignore";

/// The patterns in force for one root.
#[derive(Debug, Clone)]
pub struct Excludes(Option<Gitignore>, Vec<WirePath>);

impl Excludes {
    /// Nothing excluded (beyond synk's own temp files, which the scan always skips).
    pub fn none() -> Excludes {
        Excludes(None, Vec::new())
    }

    /// These, and the directories at `own` (synk's own state and cache on this peer, where
    /// the root holds them) with everything below them.
    pub fn with_own(mut self, own: Vec<WirePath>) -> Excludes {
        self.1 = own;
        self
    }

    /// Whether `rel` is one of synk's own directories or below one.
    pub fn is_own(&self, rel: &WirePath) -> bool {
        let rel = rel.as_bytes();
        self.1.iter().any(|d| {
            let d = d.as_bytes();
            rel.starts_with(d) && (rel.len() == d.len() || rel[d.len()] == b'/')
        })
    }

    /// `patterns`, then the root's `.synkignore` (when the root is a directory that has one).
    pub fn new(root: &Path, patterns: &[String]) -> Result<Excludes, String> {
        let file = root.join(IGNORE_FILE);
        if patterns.is_empty() && !file.is_file() {
            return Ok(Excludes::none());
        }
        let mut b = GitignoreBuilder::new(root);
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| format!("exclude {p:?}: {e}"))?;
        }
        if file.is_file() {
            if let Some(e) = b.add(&file) {
                return Err(format!("{}: {e}", file.display()));
            }
        }
        b.build()
            .map(|g| Excludes(Some(g), Vec::new()))
            .map_err(|e| e.to_string())
    }

    /// Checks each pattern before anything is done: the first that is not a valid pattern,
    /// with why (`a[`: an unclosed character class).
    pub fn check(patterns: &[String]) -> Result<(), (String, String)> {
        for p in patterns {
            let mut b = GitignoreBuilder::new("/");
            // git reads an unclosed `[` as itself; on a command line it is a typo far more
            // often than a file name, so it is refused here (a .synkignore keeps git's way).
            b.allow_unclosed_class(false);
            if let Err(e) = b.add_line(None, p) {
                return Err((p.clone(), bare_error(&e.to_string())));
            }
        }
        Ok(())
    }

    /// Whether the entry at `rel` below the root is excluded; never the root itself.
    pub fn excludes(&self, rel: &WirePath, is_dir: bool) -> bool {
        if self.is_own(rel) {
            return true;
        }
        match &self.0 {
            Some(g) if !rel.is_empty() => g
                .matched_path_or_any_parents(rel.as_path(), is_dir)
                .is_ignore(),
            _ => false,
        }
    }
}

/// The `ignore` crate's error without the pattern it repeats: `error parsing glob 'a[':
/// unclosed character class; missing ']'` says `unclosed character class; missing ']'`.
fn bare_error(e: &str) -> String {
    match e.split_once("': ") {
        Some((_, why)) if e.starts_with("error parsing glob '") => why.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> WirePath {
        WirePath(s.as_bytes().to_vec())
    }

    #[test]
    fn gitignore_patterns_from_options_and_the_root_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join(IGNORE_FILE),
            "# build output\n/target/\n!keep.log\n",
        )
        .unwrap();
        let ex = Excludes::new(root.path(), &["*.log".into(), "cache/".into()]).unwrap();
        assert!(ex.excludes(&w("a.log"), false));
        assert!(ex.excludes(&w("sub/b.log"), false));
        assert!(
            !ex.excludes(&w("keep.log"), false),
            "negation in .synkignore"
        );
        assert!(ex.excludes(&w("target"), true));
        assert!(!ex.excludes(&w("sub/target"), true), "anchored");
        assert!(
            ex.excludes(&w("x/cache/y"), false),
            "below an excluded directory"
        );
        assert!(
            !ex.excludes(&w("cache"), false),
            "a file named like a directory pattern"
        );
        assert!(!ex.excludes(&w(""), true));
        assert!(!Excludes::none().excludes(&w("a.log"), false));
        // synk's own directories, with or without patterns.
        for ex in [ex, Excludes::none()] {
            let ex = ex.with_own(vec![w(".cache/synk")]);
            assert!(ex.excludes(&w(".cache/synk"), true));
            assert!(ex.excludes(&w(".cache/synk/x.digests"), false));
            assert!(!ex.excludes(&w(".cache/synkish"), true));
            assert!(!ex.excludes(&w(".cache"), true));
        }
    }

    #[test]
    fn an_invalid_pattern_is_named_with_why() {
        assert_eq!(Excludes::check(&["*.o".into(), "cache/".into()]), Ok(()));
        let (bad, why) = Excludes::check(&["*.o".into(), "a[".into()]).unwrap_err();
        assert_eq!(bad, "a[");
        assert!(why.contains("unclosed character class"), "{why}");
        assert!(!why.contains("a["), "{why}");
    }
}
