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

/// The name of the directories inside a scratch directory that keep the partial data of
/// copies cut short, for a later run to resume from (one in the scratch directory itself, and
/// rsync's beside each file it receives below it): of a scratch name's own shape, so no entry
/// of a user's (which rsync writes into the scratch directory under its own name) can be one.
pub fn partial_dir_name() -> Vec<u8> {
    scratch_name(0)
}

/// A file name cut where [`conflict_name`] puts the conflict's mark: the stem, and the
/// extension that stays last (a leading dot is a hidden file's, not an extension's).
fn stem_and_ext(name: &[u8]) -> (&[u8], &[u8]) {
    match name.iter().rposition(|b| *b == b'.').filter(|i| *i > 0) {
        Some(i) => name.split_at(i),
        None => (name, &b""[..]),
    }
}

/// What [`conflict_name`] keeps of a peer's name: `[A-Za-z0-9._-]`, anything else `_`.
fn conflict_peer_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || "._-".contains(c) {
        c
    } else {
        '_'
    }
}

/// How a conflict copy's name spells the peer labelled `label`, so a message can name the
/// peer the same way.
pub fn conflict_peer(label: &str) -> String {
    label.chars().map(conflict_peer_char).collect()
}

/// `NAME.synk-conflict-YYYYMMDD-HHMMSS-PEER.EXT`: the extension stays last, so it still opens.
pub fn conflict_name(rel: &WirePath, mtime_ns: i64, peer: &str) -> WirePath {
    let bytes = rel.as_bytes();
    let cut = bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    let (dir, name) = bytes.split_at(cut);
    let (stem, ext) = stem_and_ext(name);
    let stamp = crate::units::stamp_of(mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    let peer = conflict_peer(peer);
    let mut out = dir.to_vec();
    out.extend_from_slice(stem);
    out.extend_from_slice(format!("{CONFLICT_MARK}{stamp}-{peer}").as_bytes());
    out.extend_from_slice(ext);
    WirePath(out)
}

/// What [`conflict_name`] puts between a name's stem and its extension, before the stamp.
const CONFLICT_MARK: &str = ".synk-conflict-";

/// Reads `candidate` as a conflict copy of the file named `of` (one name, no `/`), in exactly
/// the shape [`conflict_name`] gives it: the time it stamps (seconds since the epoch) and the
/// peer it names. `None` for any other name: the only entries a single-file root may have
/// beside it are its own conflict copies.
pub fn conflict_of<'a>(candidate: &'a [u8], of: &[u8]) -> Option<(i64, &'a str)> {
    if of.is_empty() || of.contains(&b'/') || candidate.contains(&b'/') {
        return None;
    }
    let (stem, ext) = stem_and_ext(of);
    let middle = candidate
        .strip_prefix(stem)?
        .strip_suffix(ext)?
        .strip_prefix(CONFLICT_MARK.as_bytes())?;
    // YYYYMMDD-HHMMSS-PEER
    let digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
    if middle.len() < 16 || middle[8] != b'-' || middle[15] != b'-' {
        return None;
    }
    let (date, time, peer) = (&middle[..8], &middle[9..15], &middle[16..]);
    if !digits(date) || !digits(time) {
        return None;
    }
    let peer = std::str::from_utf8(peer).ok()?;
    if peer.chars().any(|c| conflict_peer_char(c) != c) {
        return None;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        text(&date[..4]),
        text(&date[4..6]),
        text(&date[6..]),
        text(&time[..2]),
        text(&time[2..4]),
        text(&time[4..])
    );
    let at = humantime::parse_rfc3339(&rfc).ok()?;
    let secs = i64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    // The shape is exactly what conflict_name makes of these: no other spelling of a stamp.
    let again = conflict_name(
        &WirePath(of.to_vec()),
        secs.checked_mul(1_000_000_000)?,
        peer,
    );
    (again.as_bytes() == candidate).then_some((secs, peer))
}

/// Whether `candidate` is a conflict copy of the entry named `name`, in exactly the shape
/// [`conflict_name`] gives it (see [`conflict_of`]).
pub fn is_conflict_copy_of(name: &[u8], candidate: &[u8]) -> bool {
    conflict_of(candidate, name).is_some()
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

    #[test]
    fn conflict_copies_read_back_as_what_made_them() {
        let names = [
            ".profile",
            "report.final.txt",
            "Makefile",
            "a.b",
            ".x.y",
            "caf\u{e9}.md",
            "-rf",
        ];
        let peers = [
            ("alpha", "alpha"),
            ("bob@beta", "bob_beta"),
            ("h.example.org", "h.example.org"),
            ("", ""),
            ("x y/\u{e9}", "x_y__"),
        ];
        let times = [0i64, 1_764_064_000, 4_102_444_799, 9_200_000_000];
        for name in names {
            for (peer, kept) in peers {
                for secs in times {
                    let made = conflict_name(&w(name), secs * 1_000_000_000 + 999, peer);
                    assert_eq!(
                        conflict_of(made.as_bytes(), name.as_bytes()),
                        Some((secs, kept)),
                        "{made:?} of {name:?}"
                    );
                }
            }
        }
        // A time before the epoch is stamped as the epoch.
        let early = conflict_name(&w("f"), -5, "p");
        assert_eq!(conflict_of(early.as_bytes(), b"f"), Some((0, "p")));
    }

    #[test]
    fn nothing_but_the_exact_shape_is_a_conflict_copy() {
        let of = b".profile";
        let good = ".profile.synk-conflict-20251125-094640-alpha";
        assert!(conflict_of(good.as_bytes(), of).is_some());
        // A peer's name may have dots: the one a file without extension gets is its own.
        let dotted = ".profile.synk-conflict-20251125-094640-alpha.txt";
        assert_eq!(
            conflict_of(dotted.as_bytes(), of),
            Some((1_764_064_000, "alpha.txt"))
        );
        for bad in [
            ".bashrc",
            ".profile",
            ".ssh/authorized_keys",
            ".profile.synk-conflict-20251125-094640-alpha/x",
            "x/.profile.synk-conflict-20251125-094640-alpha",
            ".bashrc.synk-conflict-20251125-094640-alpha",
            ".profile.synk-conflict-2025112-094640-alpha",
            ".profile.synk-conflict-20251125-0946400-alpha",
            ".profile.synk-conflict-20251125_094640-alpha",
            ".profile.synk-conflict-20251325-094640-alpha",
            ".profile.synk-conflict-20251125-246040-alpha",
            ".profile.synk-conflict-20251125-094640-al pha",
            ".profile.synk-conflict-20251125-094640-al/pha",
            ".profile.synk-conflict-20251125-094640-\u{e9}",
            ".profile.synk-conflict-20251125-094640",
            ".profile.synk-conflict-",
            "x.profile.synk-conflict-20251125-094640-alpha",
            ".profile.synk-conflict-+0251125-094640-alpha",
        ] {
            assert_eq!(conflict_of(bad.as_bytes(), of), None, "{bad:?}");
        }
        // The extension must be the file's own, and last.
        let of = b"notes.txt";
        assert!(conflict_of(b"notes.synk-conflict-20251125-094640-a.b.txt", of).is_some());
        assert_eq!(
            conflict_of(b"notes.txt.synk-conflict-20251125-094640-a", of),
            None
        );
        assert_eq!(
            conflict_of(b"notes.synk-conflict-20251125-094640-a.md", of),
            None
        );
        assert_eq!(conflict_of(good.as_bytes(), b""), None);
        assert_eq!(conflict_of(good.as_bytes(), b"d/.profile"), None);
    }

    #[test]
    fn synks_own_names_are_exact() {
        assert!(is_own(b".synk-tmp.0123456789abcdef"));
        assert!(is_own(b".synk-scratch.0123456789abcdef"));
        for user in [
            &b".synk-notes.tmp"[..],
            b".synk-rsync.tmp",
            b".synk-tmp.0123456789ABCDEF",
            b".synk-tmp.0123456789abcde",
            b".synk-tmp.0123456789abcdef0",
            b".synk-tmp.0123456789abcdeg",
            b".synk-scratch.",
            b"x.synk-tmp.0123456789abcdef",
            b".synk-tmp.0123456789abcdef/x",
            b"",
        ] {
            assert!(!is_own(user), "{:?}", String::from_utf8_lossy(user));
        }
    }
}
