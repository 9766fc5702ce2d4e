//! The names synk itself owns inside synced trees: its temp files, rsync's scratch directory,
//! and the names conflict copies take. A scan never syncs a temp or scratch name onwards.

use crate::paths::WirePath;

/// Prefix and suffix of the temp files the server writes before renaming them into place.
pub const TEMP_PREFIX: &str = ".synk-";
/// See [`TEMP_PREFIX`].
pub const TEMP_SUFFIX: &str = ".tmp";

/// A temp file left by an interrupted copy is never synced onwards.
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX.as_bytes()) && name.ends_with(TEMP_SUFFIX.as_bytes())
}

/// rsync's `--temp-dir`, relative to its destination base. Its name marks it as synk's
/// temp (see [`is_temp_name`]), so a copy killed half way is never synced on.
pub const RSYNC_TEMP_DIR: &str = ".synk-rsync.tmp";

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

#[cfg(test)]
mod tests {
    use super::*;

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
