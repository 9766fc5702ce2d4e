//! Human units, as the command line and synk.conf(5) take them: sizes and rates (binary
//! units, as rsync reads them), intervals and points in time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A size: bytes, or with a binary unit (`10M` is 10 MiB, as for rsync).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|_| format!("{s:?} is not a size: bytes, or with a unit (10M, 2G)"))
}

/// A rate per second: KiB, or with a binary unit (`10M` is 10 MiB/s, as for rsync).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .with_default_factor(1024)
        .parse_size(s)
        .map_err(|_| format!("{s:?} is not a rate: KiB a second, or with a unit (500K, 10M)"))
}

/// An interval between runs (`--every`): a human duration, at least a second.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 5m, 1h)"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?}: at least 1s"));
    }
    Ok(d)
}

/// A point in time (`--at`): a local time (`2026-11-25 14:00`, seconds and the `T` optional,
/// as `date` and `git` read one), a UTC time as `--versions` shows it
/// (`2026-11-25T14:00:00Z`), or an age (`2h`), as nanoseconds since the epoch.
pub fn parse_at(s: &str) -> Result<i64, String> {
    let t = local_time(s)
        .ok_or(())
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

/// `YYYY-MM-DD[ HH:MM[:SS]]` (or with a `T`) in this host's time zone, its summer time
/// included; none for anything else, or a day or hour that does not exist.
fn local_time(s: &str) -> Option<SystemTime> {
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, t),
        None => (s, "00:00"),
    };
    let num = |w: &str, len: usize| -> Option<i32> {
        (w.len() == len && w.bytes().all(|b| b.is_ascii_digit())).then(|| w.parse().ok())?
    };
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let mut t = time.split(':');
    let (hour, min) = (num(t.next()?, 2)?, num(t.next()?, 2)?);
    let sec = t.next().map_or(Some(0), |w| num(w, 2))?;
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    // SAFETY: `tm` is a plain C struct; zeroed, then every field mktime reads is set.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    (tm.tm_year, tm.tm_mon, tm.tm_mday) = (year - 1900, month - 1, day);
    (tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_isdst) = (hour, min, sec, -1);
    // SAFETY: a valid `tm`; mktime is thread-safe in glibc (it takes the zone's lock).
    let secs = unsafe { libc::mktime(&mut tm) };
    // mktime moves what is out of range (30 February, 25:00) on: such a time is refused.
    let same = (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min)
        == (year - 1900, month - 1, day, hour, min);
    (secs >= 0 && same).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
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
