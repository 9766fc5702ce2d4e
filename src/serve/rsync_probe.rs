//! Whether this host's rsync can resume a copy from the partial file a cut copy left in synk's
//! partial directory.
//!
//! synk hands rsync an absolute `--partial-dir`. rsync 3.4 hardened its receiver against
//! paths a sender names (CVE-2024-12086), and in doing so made it refuse to open a basis
//! file by an absolute path: with a partial file of the same name in an absolute partial
//! directory, the generator offers it as the basis, the receiver cannot read it, and the file
//! fails rsync's verification, on the retry too. Fixed in rsync 3.5.0; the releases between,
//! and the fixes backported to older ones (Debian 12's 3.2.7-1+deb12u1 and later), have it.
//! A version number cannot tell a backport apart, so the serve tries: one local copy of a
//! small file with half of it waiting in an absolute partial directory.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Whether rsync here resumes from an absolute `--partial-dir` (asked once a serve).
pub(super) fn resumes_from_partial_dir() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let ok = try_resume().unwrap_or(false);
        if !ok {
            tracing::debug!("rsync here cannot resume from an absolute --partial-dir");
        }
        ok
    })
}

/// One local rsync of 256 KiB with its first half in an absolute partial directory: whether
/// it succeeds and the copy is whole.
fn try_resume() -> std::io::Result<bool> {
    let dir = tempfile::tempdir()?;
    let (src, dst, part) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("partial"),
    );
    for d in [&src, &dst, &part] {
        std::fs::create_dir(d)?;
    }
    // No block repeats: rsync matches the partial file's blocks.
    let data: Vec<u8> = (0u32..65536)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(src.join("f"), &data)?;
    std::fs::write(part.join("f"), &data[..data.len() / 2])?;
    let mut partial_dir = OsString::from("--partial-dir=");
    partial_dir.push(&part);
    let status = Command::new("rsync")
        .args(["--no-whole-file", "--ignore-times", "--quiet"])
        .arg(partial_dir)
        .arg(src.join("f"))
        .arg(&dst)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success() && std::fs::read(dst.join("f"))? == data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_rsync_is_told_apart_by_a_copy_not_a_version() {
        if which::which("rsync").is_err() {
            return;
        }
        // The answer this host's rsync gives by hand: a fixed one copies, a hardened one
        // before 3.5.0 fails; the probe must agree with it.
        let v = Command::new("rsync").arg("--version").output().unwrap();
        let first = String::from_utf8_lossy(&v.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let got = try_resume().unwrap();
        if first.contains("version 3.5") || first.contains("version 3.6") {
            assert!(got, "{first}");
        }
        assert_eq!(resumes_from_partial_dir(), got);
    }
}
