//! The names synk itself owns inside synced trees: its temp files, its per-root scratch
//! directory, and the names conflict copies take.
//!
//! A temp or scratch name has one exact shape, a prefix and sixteen lowercase hex digits, that
//! no reasonable user name has: only names of that shape are ever skipped by a scan, removed
//! as debris of a killed run, or refused when a peer sends one. Anything else (a user's
//! `.synk-notes.tmp`) is a user's file: synced, kept, never removed by a scan.

use crate::paths::WirePath;

/// The prefix of the temp files synk writes beside an entry before renaming them into place.
pub const TEMP_PREFIX: &str = ".synk-tmp.";
/// The prefix of a root's scratch directory (rsync's staging area).
pub const SCRATCH_PREFIX: &str = ".synk-scratch.";
/// Lowercase hex digits after either prefix.
const DIGITS: usize = 16;

/// `prefix` and exactly sixteen lowercase hex digits.
fn has_shape(name: &[u8], prefix: &str) -> bool {
    name.len() == prefix.len() + DIGITS
        && name.starts_with(prefix.as_bytes())
        && name[prefix.len()..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Whether `name` is one of synk's temp files.
pub fn is_temp_name(name: &[u8]) -> bool {
    has_shape(name, TEMP_PREFIX)
}

/// Whether `name` is a scratch directory of synk's.
pub fn is_scratch_name(name: &[u8]) -> bool {
    has_shape(name, SCRATCH_PREFIX)
}

/// Whether a path component is a name synk owns (a temp file or a scratch directory): never a
/// user's entry, never accepted from a peer.
pub fn is_own(name: &[u8]) -> bool {
    is_temp_name(name) || is_scratch_name(name)
}

/// The temp name for `random`.
pub fn temp_name(random: u64) -> Vec<u8> {
    format!("{TEMP_PREFIX}{random:016x}").into_bytes()
}

/// The scratch directory name for `seed` (stable for a root on a peer).
pub fn scratch_name(seed: u64) -> Vec<u8> {
    format!("{SCRATCH_PREFIX}{seed:016x}").into_bytes()
}

/// `NAME.synk-conflict-YYYYMMDD-HHMMSS-PEER.EXT`: the extension stays last, so it still opens.
pub fn conflict_name(rel: &WirePath, mtime_ns: i64, peer: &str) -> WirePath {
    let bytes = rel.as_bytes();
    let cut = bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    let (dir, name) = bytes.split_at(cut);
    // A leading dot is a hidden file's, not an extension's.
    let dot = name.iter().rposition(|b| *b == b'.').filter(|i| *i > 0);
    let (stem, ext) = match dot {
        Some(i) => name.split_at(i),
        None => (name, &b""[..]),
    };
    let secs = mtime_ns.div_euclid(1_000_000_000).max(0) as u64;
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    )
    .to_string();
    // 2026-11-25T09:45:27Z -> 20261125-094527
    let stamp: String = when
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let peer: String = peer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut out = dir.to_vec();
    out.extend_from_slice(stem);
    out.extend_from_slice(format!(".synk-conflict-{stamp}-{peer}").as_bytes());
    out.extend_from_slice(ext);
    WirePath(out)
}

/// Whether `candidate` is, in exactly the shape [`conflict_name`] gives, a conflict copy of the
/// entry named `name` (both single names, no `/`): `STEM.synk-conflict-YYYYMMDD-HHMMSS-PEER.EXT`
/// with the stem and extension of `name` and a peer label of `[A-Za-z0-9._-]`.
pub fn is_conflict_copy_of(name: &[u8], candidate: &[u8]) -> bool {
    if name.is_empty() || name.contains(&b'/') || candidate.contains(&b'/') {
        return false;
    }
    let dot = name.iter().rposition(|b| *b == b'.').filter(|i| *i > 0);
    let (stem, ext) = match dot {
        Some(i) => name.split_at(i),
        None => (name, &b""[..]),
    };
    let Some(rest) = candidate.strip_prefix(stem) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(ext) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(b".synk-conflict-") else {
        return false;
    };
    // YYYYMMDD-HHMMSS-PEER
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    rest.len() > 16
        && digits(&rest[..8])
        && rest[8] == b'-'
        && digits(&rest[9..15])
        && rest[15] == b'-'
        && rest[16..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_copies_are_recognised_in_exactly_their_shape() {
        let t = 1_764_064_000_000_000_000;
        for name in ["report.final.txt", ".profile", "Makefile", "a.b"] {
            let made = conflict_name(&w(name), t, "bob@beta");
            assert!(
                is_conflict_copy_of(name.as_bytes(), made.as_bytes()),
                "{made}"
            );
            assert!(!is_conflict_copy_of(b"other", made.as_bytes()));
        }
        for bad in [
            ".bashrc",
            ".profile",
            ".profile.synk-conflict-2025112-094640-a",
            ".profile.synk-conflict-20251125-094640-",
            ".profile.synk-conflict-20251125-094640-a b",
            ".profile.synk-conflict-20251125-094640-a/../x",
            "x.profile.synk-conflict-20251125-094640-a",
        ] {
            assert!(!is_conflict_copy_of(b".profile", bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn own_names_have_one_exact_shape() {
        assert!(is_temp_name(&temp_name(0x0123_4567_89ab_cdef)));
        assert!(is_scratch_name(&scratch_name(7)));
        assert!(is_own(&temp_name(u64::MAX)) && is_own(&scratch_name(0)));
        assert!(!is_temp_name(&scratch_name(1)) && !is_scratch_name(&temp_name(1)));
        for user in [
            &b".synk-notes.tmp"[..],
            b".synk-rsync.tmp",
            b".synk-abc123.tmp",
            b".synk-tmp.",
            b".synk-tmp.0123456789abcdeF",
            b".synk-tmp.0123456789abcdef0",
            b".synk-tmp.0123456789abcde",
            b".synk-scratch.xyz",
            b"x.synk-tmp.0123456789abcdef",
        ] {
            assert!(!is_own(user), "{:?}", String::from_utf8_lossy(user));
        }
    }

    fn w(s: &str) -> WirePath {
        WirePath(s.as_bytes().to_vec())
    }

    #[test]
    fn conflict_names_keep_the_extension_last() {
        let t = 1_764_064_000_000_000_000;
        assert_eq!(
            conflict_name(&w("d/report.final.txt"), t, "bob@beta"),
            w("d/report.final.synk-conflict-20251125-094640-bob_beta.txt")
        );
        assert_eq!(
            conflict_name(&w(".profile"), t, "alpha"),
            w(".profile.synk-conflict-20251125-094640-alpha")
        );
        assert_eq!(
            conflict_name(&w("Makefile"), t, "a"),
            w("Makefile.synk-conflict-20251125-094640-a")
        );
    }
}
