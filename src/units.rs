//! Human units, as the command line and synk.conf(5) take them: sizes and rates (binary
//! units, as rsync reads them), intervals and points in time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A size: bytes, or with a binary unit (`10M` is 10 MiB, as for rsync).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// A rate per second: KiB, or with a binary unit (`10M` is 10 MiB/s, as for rsync).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .with_default_factor(1024)
        .parse_size(s)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// An interval between runs (`--every`): a human duration, at least a second.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 5m, 1h)"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?}: at least 1s"));
    }
    Ok(d)
}

/// A point in time (`--at`): an absolute time (RFC 3339, the `T` and zone optional, UTC) or
/// an age (`2h`), as nanoseconds since the epoch.
pub fn parse_at(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{s}:00")))
        .or_else(|_| humantime::parse_rfc3339(s))
        .or_else(|_| {
            humantime::parse_duration(s.trim_end_matches(" ago")).map(|d| SystemTime::now() - d)
        })
        .map_err(|_| format!("{s:?} is neither a time (2026-11-25 14:00) nor an age (2h)"))?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?;
    Ok(d.as_nanos() as i64)
}

/// A time (seconds since the epoch, UTC) as the stamp synk puts in names it makes:
/// `2026-11-25T09:45:27Z` is `20261125-094527`.
pub fn stamp_of(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect()
}
