//! Zero-install peers: where a peer has no synk, or one that speaks another protocol, the
//! client sends its own executable over the SSH session into a per-user cache there.
//!
//! The copy is written to a temp file beside its final name, checked against the client's
//! SHA-512, made executable, run once (`--version`) and only then renamed into place, so
//! clients installing at the same time never see a partial binary. Later runs find it there.
//!
//! The executable is linked statically (`.cargo/config.toml`), so it runs on every peer of
//! the same system and machine (`uname -sm`) whatever its C library; other machines need a
//! synk of their own.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use openssh::{Session, Stdio};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where synk installs itself on a peer unless told otherwise (`~` is the peer's home).
pub const DEFAULT_DIR: &str = "${XDG_CACHE_HOME:-$HOME/.cache}/synk/bin";

/// The file name of this version in [`DEFAULT_DIR`].
pub fn default_name() -> String {
    format!("synk-{}", env!("CARGO_PKG_VERSION"))
}

/// `sh -c SCRIPT ARG…` as one remote command line, whatever the login shell. (Not `exec sh`:
/// a restricted shell refuses `exec`, and forced-command wrappers know this form.)
fn sh_command(script: &str, args: &[&str]) -> String {
    let mut words = vec![
        "sh".to_string(),
        "-c".to_string(),
        quote(script),
        "synk".into(),
    ];
    words.extend(args.iter().map(|a| quote(a)));
    words.join(" ")
}

fn quote(s: &str) -> String {
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("'{}'", s.replace('\'', "'\\''")))
}

/// Script fragment that sets `$d` to the path of synk on the peer: `$1` (with `~/` meaning
/// the home), else this version's file in the cache.
fn resolve_path_sh() -> String {
    format!(
        r#"d=${{1:-}}; if [ -z "$d" ]; then d="{DEFAULT_DIR}/{}"; fi; case $d in "~/"*) d="$HOME/${{d#??}}";; esac"#,
        default_name()
    )
}

/// The remote command that starts `synk --serve`: the named binary, else the cached copy of
/// this version where there is one, else `synk` from the peer's PATH. `ahead`, hex, gives
/// the serve its first requests on the command line (`--serve=HEX`).
pub fn serve_command(synk_path: Option<&str>, ahead: Option<&str>) -> String {
    let script = format!(
        r#"{}; if [ -n "${{1:-}}" ] || [ -x "$d" ]; then exec "$d" --serve${{2:+=$2}}; fi; exec synk --serve${{2:+=$2}}"#,
        resolve_path_sh()
    );
    sh_command(&script, &[synk_path.unwrap_or(""), ahead.unwrap_or("")])
}

/// Exit codes of the install script, so the client can say what went wrong.
const E_MKDIR: u32 = 10;
const E_WRITE: u32 = 11;
const E_DIGEST: u32 = 12;
const E_RUN: u32 = 13;

fn install_script() -> String {
    format!(
        r#"{resolve}; dir=$(dirname "$d"); mkdir -p "$dir" || exit {E_MKDIR}
find "$dir" -maxdepth 1 -name '.synk-install-*.tmp' -mmin +60 -exec rm -f {{}} + 2>/dev/null
t="$dir/.synk-install-$$.tmp"; trap 'rm -f "$t"' EXIT
cat > "$t" || exit {E_WRITE}
sum=$( (sha512sum "$t" 2>/dev/null || shasum -a 512 "$t") | cut -d' ' -f1)
[ "$sum" = "$2" ] || {{ echo "digest mismatch" >&2; exit {E_DIGEST}; }}
chmod 755 "$t" || exit {E_WRITE}
v=$("$t" --version 2>&1) || {{ echo "$v" >&2; exit {E_RUN}; }}
mv -f "$t" "$d" || exit {E_WRITE}
echo "$d""#,
        resolve = resolve_path_sh()
    )
    // One line: a csh or fish login shell refuses newlines inside quotes.
    .lines()
    .collect::<Vec<_>>()
    .join("; ")
}

/// The client's operating system and machine as `uname -sm` prints them.
pub fn local_platform() -> String {
    // SAFETY: uname fills the struct it is given; the strings are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        }
        let s = std::ffi::CStr::from_ptr(u.sysname.as_ptr()).to_string_lossy();
        let m = std::ffi::CStr::from_ptr(u.machine.as_ptr()).to_string_lossy();
        format!("{s} {m}")
    }
}

/// Bytes of a command's output on a peer read at most: what a peer says here is a line or
/// two, and the client holds no more of it, whatever the peer sends.
const OUTPUT_MAX: u64 = 64 << 10;

/// Bytes of that output kept for a message.
const OUTPUT_SHOWN: usize = 1024;

/// What `r` says, up to [`OUTPUT_MAX`] bytes, as text cut to [`OUTPUT_SHOWN`] bytes (the cut
/// marked).
async fn read_bounded(r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    let _ = r.take(OUTPUT_MAX).read_to_end(&mut bytes).await;
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(OUTPUT_SHOWN)]).into_owned();
    if bytes.len() > OUTPUT_SHOWN {
        text.push_str("… [cut]");
    }
    text
}

/// Runs a short command on the peer and returns its stdout, or its exit code and stderr.
async fn run(session: &Arc<Session>, cmd: String) -> Result<Result<String, (Option<i32>, String)>> {
    let mut child = session
        .clone()
        .arc_raw_command(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await?;
    let stdout = child.stdout().take().expect("piped");
    let stderr = child.stderr().take().expect("piped");
    // Both read at once, and both dropped before the wait: a peer that says more than we
    // read finds its pipe closed.
    let (out, err) = tokio::join!(read_bounded(stdout), read_bounded(stderr));
    let status = child.wait().await?;
    if status.success() {
        Ok(Ok(out.trim().to_string()))
    } else {
        Ok(Err((status.code(), err.trim().replace('\n', " / "))))
    }
}

/// Installs the running executable on the peer; returns where it now is.
pub async fn install(
    name: &str,
    session: &Arc<Session>,
    synk_path: Option<&str>,
) -> Result<String> {
    let advice = "install synk there yourself, or name it with --synk-path";
    let theirs = match run(session, "uname -sm".into()).await? {
        Ok(p) => p,
        Err((_, e)) => bail!("{name}: cannot tell its system (uname -sm: {e}): {advice}"),
    };
    let ours = local_platform();
    if theirs != ours {
        // This executable is static, so it runs on any machine of its own kind; another kind
        // needs a synk built for it (docs/design.md, "Other machines").
        bail!(
            "{name}: cannot install synk there: it is a {theirs} machine (uname -sm) and this synk runs on {ours} only; build synk on that host (cargo install) and put it on its PATH, or name a synk there with --synk-path"
        );
    }
    let exe = std::env::current_exe().context("cannot locate the synk executable")?;
    let bytes = tokio::fs::read(&exe)
        .await
        .with_context(|| format!("cannot read {}", exe.display()))?;
    let digest = hex(&sha2::Sha512::digest(&bytes));

    let cmd = sh_command(&install_script(), &[synk_path.unwrap_or(""), &digest]);
    let mut child = session
        .clone()
        .arc_raw_command(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await?;
    let mut stdin = child.stdin().take().expect("piped");
    let stdout = child.stdout().take().expect("piped");
    let stderr = child.stderr().take().expect("piped");
    // A script that stopped early closes its input: its exit code says why, not the pipe.
    let send = async move {
        let _ = stdin.write_all(&bytes).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
    };
    let ((), out, err) = tokio::join!(send, read_bounded(stdout), read_bounded(stderr));
    let status = child.wait().await?;
    let err = err.trim().replace('\n', " / ");
    if status.success() {
        return Ok(out.trim().to_string());
    }
    let why = match status.code().map(|c| c as u32) {
        Some(E_MKDIR) => format!("cannot create its directory (read-only or full home?): {err}"),
        Some(E_WRITE) => format!("cannot write the executable (disk full?): {err}"),
        Some(E_DIGEST) => "the copy arrived damaged (SHA-512 mismatch)".to_string(),
        // Only a synk built without the repository's static linking (.cargo/config.toml).
        Some(E_RUN) if err.contains("GLIBC") => format!(
            "the copy does not run there: it needs a newer C library than the peer has ({err}); build synk statically (as `cargo build --release` does from its repository), or on that host"
        ),
        Some(E_RUN) if err.contains("ermission denied") => format!(
            "the copy cannot be run there (a noexec filesystem?): {err}; name a path on another filesystem with --synk-path"
        ),
        Some(E_RUN) => format!("the copy does not run there: {err}"),
        code => format!("the install command failed (exit {code:?}): {err}"),
    };
    Err(anyhow!("{name}: cannot install synk: {why}; {advice}"))
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(cmd: &str, home: &std::path::Path) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("HOME", home)
            .env_remove("XDG_CACHE_HOME")
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::piped())
            .output()
            .unwrap()
    }

    #[test]
    fn the_serve_command_prefers_the_cached_copy_then_path() {
        let home = tempfile::tempdir().unwrap();
        // Nothing cached, nothing on PATH: the shell's "not found" and 127.
        let out = sh(&serve_command(None, None), home.path());
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("synk: not found"));
        let bin = home.path().join(".cache/synk/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cached = bin.join(default_name());
        std::fs::write(&cached, "#!/bin/sh\necho cached \"$@\"\n").unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&cached)
            .status()
            .unwrap();
        let out = sh(&serve_command(None, None), home.path());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cached --serve\n");
        // A named path wins, with ~ as the peer's home.
        std::fs::write(home.path().join("my synk"), "#!/bin/sh\necho mine \"$@\"\n").unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(home.path().join("my synk"))
            .status()
            .unwrap();
        let out = sh(&serve_command(Some("~/my synk"), None), home.path());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "mine --serve\n");
        let out = sh(&serve_command(None, Some("00ab")), home.path());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "cached --serve=00ab\n"
        );
    }

    #[test]
    fn the_install_script_verifies_runs_and_renames_into_place() {
        let home = tempfile::tempdir().unwrap();
        let payload = b"#!/bin/sh\necho synk 9.9.9\n";
        let digest = hex(&sha2::Sha512::digest(payload));
        let run = |d: &str| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(sh_command(&install_script(), &["", d]))
                .env("HOME", home.path())
                .env_remove("XDG_CACHE_HOME")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(payload).unwrap();
            child.wait_with_output().unwrap()
        };
        let bin = home.path().join(".cache/synk/bin");
        let out = run(&"0".repeat(128));
        assert_eq!(out.status.code(), Some(E_DIGEST as i32));
        assert_eq!(
            std::fs::read_dir(&bin).unwrap().count(),
            0,
            "temp left behind"
        );
        let out = run(&digest);
        assert!(out.status.success(), "{out:?}");
        let dest = bin.join(default_name());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            dest.to_str().unwrap()
        );
        assert_eq!(std::fs::read(&dest).unwrap(), payload);
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1);
    }

    #[test]
    fn the_local_platform_looks_like_uname() {
        let out = Command::new("uname").arg("-sm").output().unwrap();
        assert_eq!(
            local_platform(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}
