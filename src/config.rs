//! Peers: how they are named on the command line and in synk.conf(5).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{Retention, Role};
use crate::units::{parse_bytes, parse_rate};

/// A remote peer as the user named it: `[user@]host`, with an optional SSH port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    /// Login name, if given as `user@host`.
    pub user: Option<String>,
    /// Host name or address, as ssh will resolve it (aliases from ssh_config work).
    pub host: String,
    /// SSH port, if not the default.
    pub port: Option<u16>,
}

/// Why a peer name or a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A host name that ssh could mistake for an option or that holds odd characters.
    #[error("invalid host {0:?}: {1}")]
    BadHost(String, &'static str),
    /// A line of synk.conf that does not parse.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, String),
}

fn check_name(name: &str, whole: &str) -> Result<(), ConfigError> {
    let bad = |why| Err(ConfigError::BadHost(whole.to_string(), why));
    if name.is_empty() {
        return bad("empty name");
    }
    if name.starts_with('-') {
        // ssh would read it as an option (`-oProxyCommand=…`).
        return bad("must not start with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'\"`$;&|<>\\/".contains(c))
    {
        return bad("contains a character not allowed in a host or user name");
    }
    Ok(())
}

impl PeerSpec {
    /// Parses `[user@]host` (the last `@` separates, as ssh does).
    pub fn parse(s: &str, port: Option<u16>) -> Result<Self, ConfigError> {
        let (user, host) = match s.rfind('@') {
            Some(i) => (Some(&s[..i]), &s[i + 1..]),
            None => (None, s),
        };
        if let Some(u) = user {
            check_name(u, s)?;
        }
        check_name(host, s)?;
        Ok(PeerSpec {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        })
    }

    /// `-h localhost` names the invoking host itself, which synk serves without SSH.
    pub fn is_local(&self) -> bool {
        self.host == "localhost" && self.user.is_none() && self.port.is_none()
    }

    /// `[user@]host`, the destination as ssh and rsync take it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination())?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// What synk.conf(5) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `peer HOST [PORT]` lines, in order.
    pub peers: Vec<PeerSpec>,
    /// The role words after a `peer` line's host and port, per peer (`peer localhost …`:
    /// the invoking host's).
    pub roles: Vec<(PeerSpec, Role)>,
    /// `ssh-option OPTION` lines: passed to ssh as `-o OPTION`, after the command line's.
    pub ssh_options: Vec<String>,
    /// `install yes|no` (`no-install` is `install no`); `None` when not said.
    pub install: Option<bool>,
    /// `synk-path PATH`: the synk executable on every peer.
    pub synk_path: Option<String>,
    /// `keep-versions N`, `keep-days D`: how long kept versions stay.
    pub retention: Retention,
    /// `log FILE`: the operations log.
    pub log: Option<PathBuf>,
    /// `compress yes|no`.
    pub compress: Option<bool>,
    /// `no-xattrs`: extended attributes are not kept.
    pub no_xattrs: bool,
    /// `no-acls`: POSIX ACLs are not kept.
    pub no_acls: bool,
    /// `no-owner`: owners are not kept, even as root.
    pub no_owner: bool,
    /// `numeric-ids`: owners are kept by number, not by name.
    pub numeric_ids: bool,
    /// `bwlimit RATE`, in bytes per second.
    pub bwlimit: Option<u64>,
    /// `max-size SIZE`, in bytes.
    pub max_size: Option<u64>,
    /// `no-hard-links`: names that share an inode are synced as independent files.
    pub no_hard_links: bool,
    /// `exclude PATTERN` lines (gitignore syntax).
    pub excludes: Vec<String>,
    /// `path PATH` lines: what a bare `synk` syncs.
    pub paths: Vec<String>,
}

/// Parses synk.conf(5): `peer HOST [PORT] [ROLE…]`, `ssh-option OPTION`, `install yes|no`,
/// `no-install`, `synk-path PATH`; `#` comments, blank lines.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    for (i, raw) in text.lines().enumerate() {
        let syntax = |message: String| ConfigError::Syntax {
            file: file.to_path_buf(),
            line: i + 1,
            message,
        };
        let line = uncommented(raw).trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // The rest of the line after the keyword, for values that may hold spaces.
        let rest = line[words[0].len()..].trim();
        match words[..] {
            ["peer", host, ref more @ ..] => {
                let (port, words) = match more.first() {
                    Some(w) if w.starts_with(|c: char| c.is_ascii_digit()) => {
                        let port = w
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(|| syntax(format!("invalid port {w:?}")))?;
                        (Some(port), &more[1..])
                    }
                    _ => (None, more),
                };
                let mut role = Role::default();
                for w in words {
                    if !role.add(w) {
                        return Err(syntax(format!(
                            "expected `peer HOST [PORT] [{}]…`, not {w:?}",
                            Role::WORDS.join("|")
                        )));
                    }
                }
                let spec = PeerSpec::parse(host, port).map_err(|e| syntax(e.to_string()))?;
                if role != Role::default() {
                    cfg.roles.push((spec.clone(), role));
                }
                cfg.peers.push(spec);
            }
            ["peer"] => return Err(syntax("`peer` needs a host".into())),
            ["ssh-option"] => return Err(syntax("`ssh-option` needs an ssh option".into())),
            ["ssh-option", ..] => cfg.ssh_options.push(rest.to_string()),
            ["install", "yes"] => cfg.install = Some(true),
            ["install", "no"] | ["no-install"] => cfg.install = Some(false),
            ["install", ..] => return Err(syntax("expected `install yes` or `install no`".into())),
            ["keep-versions", n] => {
                cfg.retention.versions = n
                    .parse()
                    .map_err(|_| syntax(format!("invalid number {n:?}")))?
            }
            ["keep-days", n] => {
                cfg.retention.days = n
                    .parse()
                    .map_err(|_| syntax(format!("invalid number {n:?}")))?
            }
            ["keep-versions" | "keep-days", ..] => {
                return Err(syntax(format!("expected `{} N`", words[0])))
            }
            ["no-xattrs"] => cfg.no_xattrs = true,
            ["no-acls"] => cfg.no_acls = true,
            ["no-owner"] => cfg.no_owner = true,
            ["numeric-ids"] => cfg.numeric_ids = true,
            ["no-xattrs" | "no-acls" | "no-owner" | "numeric-ids", ..] => {
                return Err(syntax(format!("`{}` takes no value", words[0])))
            }
            ["compress", "yes"] => cfg.compress = Some(true),
            ["compress", "no"] => cfg.compress = Some(false),
            ["compress", ..] => {
                return Err(syntax("expected `compress yes` or `compress no`".into()))
            }
            ["no-hard-links"] => cfg.no_hard_links = true,
            ["no-hard-links", ..] => return Err(syntax("`no-hard-links` takes no value".into())),
            ["bwlimit", rate] => {
                cfg.bwlimit = Some(parse_rate(rate).map_err(|e| syntax(format!("bwlimit: {e}")))?)
            }
            ["max-size", size] => {
                cfg.max_size =
                    Some(parse_bytes(size).map_err(|e| syntax(format!("max-size: {e}")))?)
            }
            ["bwlimit" | "max-size", ..] => {
                return Err(syntax(format!("expected `{} VALUE`", words[0])))
            }
            ["exclude"] => return Err(syntax("`exclude` needs a pattern".into())),
            ["exclude", ..] => cfg.excludes.push(rest.to_string()),
            ["path"] => return Err(syntax("`path` needs a path".into())),
            ["path", ..] => cfg.paths.push(rest.to_string()),
            ["log"] => return Err(syntax("`log` needs a file".into())),
            ["log", ..] => cfg.log = Some(PathBuf::from(rest)),
            ["synk-path"] => return Err(syntax("`synk-path` needs a path".into())),
            ["synk-path", ..] => cfg.synk_path = Some(rest.to_string()),
            [word, ..] => return Err(syntax(format!("unknown keyword {word:?}"))),
            [] => unreachable!("blank lines are skipped"),
        }
    }
    Ok(cfg)
}

/// Reads and parses a config file.
pub fn load_config(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            // Without the "(os error N)" that tells a user nothing.
            _ => e
                .to_string()
                .split(" (os error")
                .next()
                .unwrap_or("")
                .to_string(),
        };
        ConfigError::Read(file.to_path_buf(), why)
    })?;
    parse_config(&text, file)
}

/// A `path` value as written in synk.conf: `~/…` below `home`, else absolute.
pub fn path_value(abs: &Path, home: Option<&Path>) -> String {
    match home.and_then(|h| abs.strip_prefix(h).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => format!("~/{}", rel.display()),
        _ => abs.display().to_string(),
    }
}

/// A `path` value as a path: `~/` is `home`.
pub fn expand_path(value: &str, home: Option<&Path>) -> PathBuf {
    match (value.strip_prefix("~/"), home) {
        (Some(rel), Some(h)) => h.join(rel),
        _ => PathBuf::from(value),
    }
}

/// `line` without its comment: a `#` that starts the line or follows a blank, so that a path
/// such as `~/notes#2` keeps its `#`.
fn uncommented(line: &str) -> &str {
    let mut prev = None;
    for (i, c) in line.char_indices() {
        if c == '#' && prev.is_none_or(char::is_whitespace) {
            return &line[..i];
        }
        prev = Some(c);
    }
    line
}

fn is_path_line(line: &str, value: &str) -> bool {
    let line = uncommented(line).trim();
    line.strip_prefix("path")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map(str::trim)
        .is_some_and(|v| v.trim_end_matches('/') == value.trim_end_matches('/'))
}

/// Appends `path VALUE` to `file` (created if need be), keeping everything in it as it is.
/// Returns false when the path was there already.
pub fn add_path(file: &Path, value: &str) -> std::io::Result<bool> {
    // A path synk.conf would read back as another (a blank then `#`, blanks at an end, a
    // line break) is refused rather than written as something else.
    let line = format!("path {value}");
    let reads_back = parse_config(&line, file).is_ok_and(|c| c.paths == [value]);
    if !reads_back || value.contains(['\n', '\r']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{value:?} cannot be written as a `path` line: give it in the command line instead"
            ),
        ));
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if text.lines().any(|l| is_path_line(l, value)) {
        return Ok(false);
    }
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!("path {value}\n"));
    crate::atomic::write(file, new.as_bytes())?;
    Ok(true)
}

/// Removes the `path VALUE` lines from `file`, keeping every other line (comments included).
/// Returns how many were removed.
pub fn forget_path(file: &Path, value: &str) -> std::io::Result<usize> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| !is_path_line(l, value))
        .collect();
    let removed = text.split_inclusive('\n').count() - kept.len();
    if removed > 0 {
        crate::atomic::write(file, kept.concat().as_bytes())?;
    }
    Ok(removed)
}

/// The per-user synk.conf, or a profile's (`synk @NAME`: `NAME.conf` beside it).
pub fn user_config_path(profile: Option<&str>) -> Option<PathBuf> {
    let dir = crate::os::config_dir()?.join("synk");
    Some(match profile {
        Some(name) => dir.join(format!("{name}.conf")),
        None => dir.join("synk.conf"),
    })
}

/// Where synk looks for its peers when no `-h` and no `-f` is given, in order.
pub fn default_config_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = crate::os::config_dir() {
        v.push(dir.join("synk").join("synk.conf"));
    }
    v.push(PathBuf::from("/etc/synk.conf"));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_comments_and_ports() {
        let text = "# my hosts\npeer alpha\n\n  peer bob@beta 2222  # backup box\npeer gamma\t#x\npath ~/notes#2 # as a shell reads it\n";
        let cfg = parse_config(text, Path::new("synk.conf")).unwrap();
        assert_eq!(cfg.paths, ["~/notes#2"]);
        let peers = cfg.peers;
        assert_eq!(
            peers,
            vec![
                PeerSpec::parse("alpha", None).unwrap(),
                PeerSpec {
                    user: Some("bob".into()),
                    host: "beta".into(),
                    port: Some(2222)
                },
                PeerSpec::parse("gamma", None).unwrap(),
            ]
        );
    }

    #[test]
    fn role_words_follow_a_peers_host_and_port() {
        let text = "peer build.example.org send-only\npeer backup 2222 receive-only no-delete\npeer plain 22\npeer localhost no-delete\n";
        let cfg = parse_config(text, Path::new("c")).unwrap();
        let shown: Vec<(String, Vec<&str>)> = cfg
            .roles
            .iter()
            .map(|(p, r)| (p.to_string(), r.words()))
            .collect();
        assert_eq!(
            shown,
            [
                ("build.example.org".to_string(), vec!["send-only"]),
                ("backup:2222".to_string(), vec!["receive-only", "no-delete"]),
                ("localhost".to_string(), vec!["no-delete"]),
            ]
        );
        assert_eq!(cfg.peers.len(), 4);
        let e = parse_config("peer a read-only\n", Path::new("c")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c:1: expected `peer HOST [PORT] [send-only|receive-only|no-delete]…`, not \"read-only\""
        );
        let e = parse_config("peer a 22 send-only 23\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:1: expected `peer HOST"), "{e}");
    }

    #[test]
    fn ssh_options_and_install_settings() {
        let text = "ssh-option ProxyJump gw\nssh-option StrictHostKeyChecking=no\nno-install\nsynk-path ~/bin/my synk\n";
        let cfg = parse_config(text, Path::new("c")).unwrap();
        assert_eq!(
            cfg.ssh_options,
            ["ProxyJump gw", "StrictHostKeyChecking=no"]
        );
        assert_eq!(cfg.install, Some(false));
        assert_eq!(cfg.synk_path.as_deref(), Some("~/bin/my synk"));
        assert_eq!(
            parse_config("install yes\n", Path::new("c"))
                .unwrap()
                .install,
            Some(true)
        );
        let e = parse_config("install maybe\n", Path::new("c")).unwrap_err();
        assert_eq!(e.to_string(), "c:1: expected `install yes` or `install no`");
    }

    #[test]
    fn add_and_forget_keep_comments_and_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("synk.conf");
        std::fs::write(&f, "# my hosts\npeer a  # desk\npath ~/notes # daily\n").unwrap();
        assert!(add_path(&f, "/etc/app").unwrap());
        assert!(!add_path(&f, "~/notes/").unwrap(), "already there");
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "# my hosts\npeer a  # desk\npath ~/notes # daily\npath /etc/app\n"
        );
        assert_eq!(forget_path(&f, "~/notes").unwrap(), 1);
        assert_eq!(forget_path(&f, "~/nothing").unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "# my hosts\npeer a  # desk\npath /etc/app\n"
        );
        let new = dir.path().join("sub/new.conf");
        assert_eq!(
            forget_path(&new, "~/x").unwrap(),
            0,
            "no file: nothing to forget"
        );
        assert!(add_path(&new, "~/x").unwrap());
        assert!(add_path(&new, "~/notes#2").unwrap());
        assert!(
            !add_path(&new, "~/notes#2").unwrap(),
            "read back with its #"
        );
        assert_eq!(
            std::fs::read_to_string(&new).unwrap(),
            "path ~/x\npath ~/notes#2\n"
        );
        for unreadable in ["~/a #b", "~/trailing ", "~/line\nbreak"] {
            let e = add_path(&new, unreadable).unwrap_err();
            assert!(e.to_string().contains("cannot be written"), "{e}");
        }
        assert_eq!(forget_path(&new, "~/notes#2").unwrap(), 1);
        let home = Path::new("/home/u");
        assert_eq!(
            path_value(Path::new("/home/u/notes"), Some(home)),
            "~/notes"
        );
        assert_eq!(path_value(Path::new("/srv/x"), Some(home)), "/srv/x");
        assert_eq!(
            expand_path("~/notes", Some(home)),
            Path::new("/home/u/notes")
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let f = Path::new("/etc/synk.conf");
        let e = parse_config("peer a\nhost b\n", f).unwrap_err();
        assert_eq!(e.to_string(), "/etc/synk.conf:2: unknown keyword \"host\"");
        let e = parse_config("peer a 99999\n", f).unwrap_err();
        assert_eq!(e.to_string(), "/etc/synk.conf:1: invalid port \"99999\"");
        let e = parse_config("\n\npeer\n", f).unwrap_err();
        assert!(e.to_string().starts_with("/etc/synk.conf:3: "), "{e}");
        let e = parse_config("peer a 22 x\n", f).unwrap_err();
        assert!(e.to_string().starts_with("/etc/synk.conf:1: "), "{e}");
        let e = parse_config("bwlimit x\n", f).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"/etc/synk.conf:1: bwlimit: "x" is not a rate: KiB a second, or with a unit (500K, 10M)"#
        );
        let e = parse_config("\nmax-size 1Q\n", f).unwrap_err();
        assert!(e
            .to_string()
            .starts_with(r#"/etc/synk.conf:2: max-size: "1Q" is not a size"#));
        let e = parse_config("peer -oProxyCommand=x\n", f).unwrap_err();
        assert!(e.to_string().contains("must not start with '-'"), "{e}");
    }

    #[test]
    fn no_hard_links_is_a_word_alone() {
        let f = Path::new("/etc/synk.conf");
        assert!(!parse_config("peer a\n", f).unwrap().no_hard_links);
        assert!(parse_config("no-hard-links\n", f).unwrap().no_hard_links);
        let e = parse_config("no-hard-links yes\n", f).unwrap_err();
        assert!(e.to_string().contains("takes no value"), "{e}");
    }

    #[test]
    fn host_names_that_could_be_options_or_shell_are_refused() {
        assert!(PeerSpec::parse("-oProxyCommand=sh", None).is_err());
        assert!(PeerSpec::parse("a b", None).is_err());
        assert!(PeerSpec::parse("$(reboot)", None).is_err());
        assert!(PeerSpec::parse("-x@host", None).is_err());
        assert!(PeerSpec::parse("@host", None).is_err());
        assert!(PeerSpec::parse("host.example.org", None).is_ok());
        assert!(PeerSpec::parse("::1", None).is_ok());
    }

    #[test]
    fn localhost_means_the_local_host_only_when_plain() {
        assert!(PeerSpec::parse("localhost", None).unwrap().is_local());
        assert!(!PeerSpec::parse("me@localhost", None).unwrap().is_local());
        assert!(!PeerSpec::parse("localhost", Some(2222)).unwrap().is_local());
        assert_eq!(
            PeerSpec::parse("a@b@c", Some(22)).unwrap().to_string(),
            "a@b@c:22"
        );
    }
}
