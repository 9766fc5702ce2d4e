//! Whether the ssh configuration could tell peers apart on the values synk asks `ssh -G` for.
//!
//! `ssh -G` costs a process and a few milliseconds of CPU per peer, and on two cores with 16
//! peers that is a tenth of a run. Where no configuration file ssh reads (following every
//! `Include`, whatever `Host` or `Match` block holds it) and no `-o` given to synk so much as
//! names one of those values, every host gets OpenSSH's defaults for them: one `ssh -G` then
//! answers for all. Anything this scan cannot follow for certain (a `~user` or a variable in
//! an `Include`, an unreadable file, an ssh that may read another system file) counts as not
//! silent, and every peer gets its own `ssh -G` as before.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::SshOptions;

/// The options [`super::Effective`] reads, as ssh_config keywords (lowercase), and those that
/// set one of them on some builds: Debian's and Ubuntu's ssh take `ProtocolKeepAlives` and
/// `SetupTimeOut` for `ServerAliveInterval`, and give it a default of 300 s under `BatchMode`.
const KEYWORDS: [&str; 8] = [
    "stricthostkeychecking",
    "connecttimeout",
    "serveraliveinterval",
    "remotecommand",
    "ciphers",
    "protocolkeepalives",
    "setuptimeout",
    "batchmode",
];

/// How deep `Include` may nest (ssh's own limit).
const MAX_DEPTH: u32 = 16;

/// Where ssh looks for its configuration.
#[derive(Debug, Clone)]
pub(super) struct Places {
    /// The passwd entry's home: ssh reads `~/.ssh/config` there, whatever `$HOME` says.
    pub(super) home: PathBuf,
    /// Where an `Include` finds `~`: `$HOME` where it is set (glob(3) expands the tilde from
    /// it), else the passwd home.
    pub(super) tilde: PathBuf,
    /// The system-wide file (`/etc/ssh/ssh_config`).
    pub(super) system: PathBuf,
    /// Which ssh binary this is (device, inode, size, mtime): another one may have other
    /// defaults.
    pub(super) binary: [u64; 4],
}

impl Places {
    /// This host's, where they are known for certain: the ssh on PATH is the system's
    /// (`/usr/bin/ssh` or `/bin/ssh`, which reads `/etc/ssh/ssh_config`; not a system with a
    /// vendor configuration in `/usr/etc/ssh`, read where `/etc` has none), this user has a
    /// line in `/etc/passwd`, and `$HOME`, if set, is an absolute path.
    pub(super) fn here() -> Option<Places> {
        let ssh = std::fs::canonicalize(which::which("ssh").ok()?).ok()?;
        if !(ssh.starts_with("/usr/bin") || ssh.starts_with("/bin"))
            || Path::new("/usr/etc/ssh").exists()
        {
            return None;
        }
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&ssh).ok()?;
        let binary = [m.dev(), m.ino(), m.size(), m.mtime() as u64];
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let home = crate::os::passwd_home(&std::fs::read("/etc/passwd").ok()?, uid)?;
        let tilde = match std::env::var_os("HOME") {
            Some(h) if Path::new(&h).is_absolute() => PathBuf::from(h),
            Some(_) => return None,
            None => home.clone(),
        };
        Some(Places {
            home,
            tilde,
            system: "/etc/ssh/ssh_config".into(),
            binary,
        })
    }
}

/// `Some` where `ssh -G` would give every host the same values: no file or option names a
/// keyword of [`KEYWORDS`]. It holds a digest of everything that answer depends on (the
/// binary, the options, the files read, in order): while it stays the same, so does the answer.
/// `None` where a keyword is named or the scan cannot be sure.
pub(super) fn silent(opts: &SshOptions, places: &Places) -> Option<u64> {
    let mut h = Xxh3::new();
    for n in places.binary {
        h.update(&n.to_le_bytes());
    }
    for o in &opts.options {
        let lower = o.to_ascii_lowercase();
        if KEYWORDS.iter().any(|k| lower.contains(k)) || lower.contains("include") {
            return None;
        }
        h.update(o.as_bytes());
        h.update(b"\n");
    }
    match &opts.config {
        Some(f) if f.to_str().is_some_and(|f| f.eq_ignore_ascii_case("none")) => {}
        // ssh reads a -F file as a user's file, and refuses one it cannot read.
        Some(f) => scan(f, true, places, 0, &mut h, false)?,
        None => {
            scan(
                &places.home.join(".ssh/config"),
                true,
                places,
                0,
                &mut h,
                true,
            )?;
            scan(&places.system, false, places, 0, &mut h, true)?;
        }
    }
    Some(h.digest())
}

/// Scans one file into `h`; `missing_ok`: a file that does not exist is skipped (as ssh skips
/// the default files and unmatched includes), rather than leaving the scan unsure.
fn scan(
    file: &Path,
    user: bool,
    places: &Places,
    depth: u32,
    h: &mut Xxh3,
    missing_ok: bool,
) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    h.update(file.as_os_str().as_encoded_bytes());
    h.update(&[0]);
    h.update(&text);
    h.update(&[0]);
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii_start();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        // ssh takes a quoted keyword (`"Ciphers"`, `Connect"Timeout"`) as if bare.
        let lower: Vec<u8> = line
            .iter()
            .filter(|&&b| b != b'"')
            .map(u8::to_ascii_lowercase)
            .collect();
        if KEYWORDS.iter().any(|k| contains(&lower, k.as_bytes())) {
            return None;
        }
        if !contains(&lower, b"include") {
            continue;
        }
        // Followed only in its plain form (`Include a b`, `Include=a`); any other line that
        // names it (quoted, after `=`, a host of that name) leaves the scan unsure.
        let args = match include_args(line) {
            Some(args) if !line.contains(&b'"') => args,
            _ => return None,
        };
        for arg in args
            .split(|b| b.is_ascii_whitespace())
            .filter(|a| !a.is_empty())
        {
            for path in expand(std::str::from_utf8(arg).ok()?, user, places)? {
                scan(&path, user, places, depth + 1, h, true)?;
            }
        }
    }
    Some(())
}

/// The arguments of an `Include` line (`Include a b`, `Include=a`), in their original case.
fn include_args(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"include";
    if !line.get(..KEY.len())?.eq_ignore_ascii_case(KEY) {
        return None;
    }
    let first = *line.get(KEY.len())?;
    if !(first.is_ascii_whitespace() || first == b'=') {
        return None;
    }
    let args = line[KEY.len()..].trim_ascii_start();
    let args = args.strip_prefix(b"=").unwrap_or(args);
    Some(args.trim_ascii())
}

/// The files one `Include` argument names, sorted, as ssh finds them: `~/` is
/// [`Places::tilde`], a relative path is under `~/.ssh` (user files) or `/etc/ssh` (the
/// system's), and the rest is a glob. `None` where ssh might read it otherwise (quotes,
/// `~user`, variables, tokens).
fn expand(arg: &str, user: bool, places: &Places) -> Option<Vec<PathBuf>> {
    if arg.contains(['"', '\'', '$', '%', '\\']) {
        return None;
    }
    let path = if let Some(rest) = arg.strip_prefix("~/") {
        places.tilde.join(rest)
    } else if arg.starts_with('~') {
        return None;
    } else if arg.starts_with('/') {
        PathBuf::from(arg)
    } else if user {
        places.tilde.join(".ssh").join(arg)
    } else {
        places.system.parent()?.join(arg)
    };
    let mut found = glob::glob(path.to_str()?)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    found.sort();
    Some(found)
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        places: Places,
    }

    /// A home and a system file in a temporary directory, with the given user and system
    /// configurations (`None`: no such file).
    fn fixture(user: Option<&str>, system: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssh_config.d")).unwrap();
        if let Some(u) = user {
            std::fs::write(home.join(".ssh/config"), u).unwrap();
        }
        let system_file = dir.path().join("etc/ssh_config");
        if let Some(s) = system {
            std::fs::write(&system_file, s).unwrap();
        }
        Fixture {
            places: Places {
                tilde: home.clone(),
                home,
                system: system_file,
                binary: [1, 2, 3, 4],
            },
            _dir: dir,
        }
    }

    /// Debian's ssh_config: every keyword synk reads appears, but only in comments.
    const DEBIAN: &str = "# This is the ssh client system-wide configuration file.\n\
        Include ssh_config.d/*.conf\n\
        Host *\n\
        #   ConnectTimeout 0\n\
        #   StrictHostKeyChecking ask\n\
        #   Ciphers aes128-ctr,aes192-ctr,aes256-ctr,aes128-cbc,3des-cbc\n\
        \tSendEnv LANG LC_*\n\
        \tHashKnownHosts yes\n";

    fn no_opts() -> SshOptions {
        SshOptions::default()
    }

    #[test]
    fn comments_and_other_options_leave_the_configuration_silent() {
        let f = fixture(Some("Host alpha\n  User bob\n  Port 2222\n"), Some(DEBIAN));
        assert!(silent(&no_opts(), &f.places).is_some());
        let none = fixture(None, None);
        assert!(silent(&no_opts(), &none.places).is_some());
    }

    #[test]
    fn a_keyword_anywhere_in_any_block_or_case_is_not_silent() {
        for user in [
            "Host beta\n  ConnectTimeout 3\n",
            "Match host gamma\n\tSTRICTHOSTKEYCHECKING=no\n",
            "  ServerAliveInterval 30\n",
            "Host x\n RemoteCommand tmux\n",
            "Ciphers=aes256-ctr\n",
            // Quoted, as ssh reads them too.
            "Host x\n Connect\"Timeout\" 5\n",
            "\"Ciphers\" aes128-ctr\n",
            // Debian's names for ServerAliveInterval, and its default under BatchMode.
            "Host y\n SetupTimeOut 30\n",
            "Host y\n ProtocolKeepAlives 30\n",
            "Host backup-*\n BatchMode yes\n",
            // An Include not in its plain form.
            "\"Include\" other\n",
            "=Include other\n",
        ] {
            let f = fixture(Some(user), Some(DEBIAN));
            assert_eq!(silent(&no_opts(), &f.places), None, "{user:?}");
        }
    }

    #[test]
    fn includes_are_followed_relative_home_and_globbed_even_inside_a_host_block() {
        let f = fixture(Some("Host beta\n  Include extra/*.conf\n"), None);
        let extra = f.places.home.join(".ssh/extra");
        std::fs::create_dir_all(&extra).unwrap();
        std::fs::write(extra.join("a.conf"), "User carol\n").unwrap();
        assert!(silent(&no_opts(), &f.places).is_some());
        std::fs::write(extra.join("b.conf"), "ciphers aes128-ctr\n").unwrap();
        assert_eq!(silent(&no_opts(), &f.places), None);

        // The system file's relative includes are beside it.
        let f = fixture(None, Some("Include=ssh_config.d/*.conf\n"));
        let d = f.places.system.parent().unwrap().join("ssh_config.d");
        std::fs::write(d.join("50-policy.conf"), "# none\n").unwrap();
        assert!(silent(&no_opts(), &f.places).is_some());
        std::fs::write(d.join("60-policy.conf"), "Ciphers aes256-gcm@openssh.com\n").unwrap();
        assert_eq!(silent(&no_opts(), &f.places), None);

        // `~/` is the home.
        let f = fixture(Some("Include ~/more\n"), None);
        std::fs::write(f.places.home.join("more"), "ConnectTimeout 1\n").unwrap();
        assert_eq!(silent(&no_opts(), &f.places), None);

        // ... as `$HOME` says, for an Include, relative ones too (not the passwd home, where
        // ssh finds `~/.ssh/config` itself).
        let mut f = fixture(Some("Include more\n"), None);
        let elsewhere = f.places.home.parent().unwrap().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join(".ssh")).unwrap();
        std::fs::write(f.places.home.join(".ssh/more"), "User x\n").unwrap();
        std::fs::write(elsewhere.join(".ssh/more"), "ConnectTimeout 1\n").unwrap();
        assert!(silent(&no_opts(), &f.places).is_some());
        f.places.tilde = elsewhere;
        assert_eq!(silent(&no_opts(), &f.places), None);
    }

    #[test]
    fn what_cannot_be_followed_for_certain_is_not_silent() {
        for user in [
            "Include ~root/x\n",
            "Include $HOME/x\n",
            "Include \"with space/x\"\n",
            "Include %d/x\n",
        ] {
            let f = fixture(Some(user), None);
            assert_eq!(silent(&no_opts(), &f.places), None, "{user:?}");
        }
        // A loop of includes ends at ssh's depth limit.
        let f = fixture(Some("Include config\n"), None);
        assert_eq!(silent(&no_opts(), &f.places), None);
    }

    #[test]
    fn options_and_the_f_file_count() {
        let f = fixture(Some("ConnectTimeout 5\n"), None);
        let opts = |config: Option<&str>, options: &[&str]| SshOptions {
            config: config.map(PathBuf::from),
            options: options.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            silent(&opts(None, &["ServerAliveInterval=9"]), &f.places),
            None
        );
        // -F none reads no file; -F FILE reads that file alone, and must exist.
        assert!(silent(&opts(Some("none"), &["User=x"]), &f.places).is_some());
        assert!(silent(&opts(Some("NONE"), &[]), &f.places).is_some());
        let other = f.places.home.join("other");
        std::fs::write(&other, "User x\n").unwrap();
        assert!(silent(&opts(other.to_str(), &[]), &f.places).is_some());
        let missing = f.places.home.join("missing");
        assert_eq!(silent(&opts(missing.to_str(), &[]), &f.places), None);
    }

    #[test]
    fn the_digest_changes_with_any_file_it_read() {
        let f = fixture(Some("User a\n"), Some(DEBIAN));
        let before = silent(&no_opts(), &f.places).unwrap();
        assert_eq!(silent(&no_opts(), &f.places), Some(before));
        std::fs::write(f.places.home.join(".ssh/config"), "User b\n").unwrap();
        assert_ne!(silent(&no_opts(), &f.places), Some(before));
    }
}
