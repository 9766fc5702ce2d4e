//! The command line: options, and turning `-p`/`-h` pairs and synk.conf into a peer list.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::config::{self, Config, ConfigError, PeerSpec};
use crate::model::Role;
use crate::peer::ConnectOptions;
use crate::ssh::SshOptions;
use crate::transfer::CopierChoice;
use crate::units::{parse_at, parse_bytes, parse_interval, parse_rate};

/// How a winner is chosen, in one line. `--help`, synk(1) and the README say it in these
/// words (tests/docs.rs holds them to it).
pub const WINNER_RULE: &str = "What changed since the last sync wins, never the newest clock: a change or deletion on one peer goes to every peer; different changes on several peers are a conflict, the newest keeps the name and every other version is kept beside it; with no state yet (a first sync) the newest modification time wins.";

/// The exit statuses, as `--help` lists them (synk(1) and the README list the same codes).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "every path is in sync on every peer (with -n: nothing would change)",
    ),
    (
        "1",
        "something was not synced (named on stderr); the rest was synced",
    ),
    ("2", "usage or configuration error; nothing was done"),
    (
        "3",
        "in sync, and conflicting versions were kept under conflict names",
    ),
    ("4", "-n only: something would change"),
    (
        "129/130/143",
        "stopped by SIGHUP, SIGINT or SIGTERM (--every, --watch: by a second one)",
    ),
];

/// `--help`'s text after the options: the exit-status table and where to read more.
fn after_help() -> String {
    let mut out = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUS {
        out.push_str(&format!("  {code:<12}{meaning}\n"));
    }
    out.push_str("\nSee synk(1) and synk.conf(5).");
    out
}

/// Keep files and directory trees identical across hosts over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "synk",
    version,
    disable_help_flag = true,
    long_about = format!("Keep files and directory trees identical across hosts over SSH.\n\nEvery PATH is compared by SHA-512 on this host (localhost) and every peer. {WINNER_RULE} Every version synk replaces or deletes is kept (--versions, --restore)."),
    override_usage = "synk [@PROFILE] [OPTIONS] [-p PORT] [-h HOST]... [--] [PATH]...\n       synk [@PROFILE] --add PATH | --forget PATH\n       synk [OPTIONS] --versions PATH | --restore PATH [--at TIME]\n       synk --completions SHELL\n       synk --serve",
    after_help = after_help()
)]
pub struct Cli {
    /// Print help (-h is taken by --host).
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,

    /// Print each peer's version of what changes (each path as that peer has it), the master,
    /// deletions, conflict copies and every command run; -vv: every entry, and debug tracing.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Print errors only.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show what would be copied where; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Read peers from this synk.conf instead of the default locations.
    #[arg(short = 'f', long = "config", value_name = "CONFIG")]
    pub config: Option<PathBuf>,

    /// ssh_config file for the connections this host makes (ssh -F).
    #[arg(short = 'F', value_name = "SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,

    /// Pass OPTION to ssh as `-o OPTION` (repeatable); also `ssh-option` in synk.conf.
    #[arg(short = 'o', long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,

    /// Never install synk on a peer that lacks it or runs another version.
    #[arg(long)]
    pub no_install: bool,

    /// The synk executable on peers (`~/` is the peer's home; installed there if needed).
    #[arg(long, value_name = "PATH")]
    pub synk_path: Option<String>,

    /// How to copy: rsync, the built-in streaming copier, or rsync where available.
    #[arg(long, value_enum, default_value_t = CopierChoice::Auto, value_name = "COPIER")]
    pub copier: CopierChoice,

    /// Leave out entries matching PATTERN (gitignore syntax; repeatable; also `exclude` in
    /// synk.conf and a `.synkignore` file at a root).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,

    /// Add PATH to the tracked paths of the config file (`path` lines) and exit.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["forget", "versions", "restore"])]
    pub add: Option<PathBuf>,

    /// Remove PATH from the tracked paths of the config file and exit.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["versions", "restore"])]
    pub forget: Option<PathBuf>,

    /// Sync again every INTERVAL (`30s`, `5m`, `1h`) until stopped, keeping the connections
    /// open between runs.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval, conflicts_with_all = ["dry_run", "versions", "restore"])]
    pub every: Option<std::time::Duration>,

    /// Sync soon after anything changes on any peer, until stopped (and every --every
    /// INTERVAL, 5m by default, where a peer cannot watch).
    #[arg(long, conflicts_with_all = ["dry_run", "versions", "restore"])]
    pub watch: bool,

    /// Describe the run as one JSON document on stdout (one per run with --every/--watch);
    /// messages stay on stderr. The schema is in synk(1).
    #[arg(long)]
    pub json: bool,

    /// Compress data on the wire (rsync -z); off by default: it costs CPU on fast links.
    #[arg(short = 'z', long)]
    pub compress: bool,

    /// Limit each transfer to RATE per second (rsync and the streaming copier alike): a number
    /// of KiB, or with a unit: 500K, 10M, 1G; 0: no limit (as for rsync, over synk.conf's).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,

    /// Skip files bigger than SIZE (bytes, or 10M, 2G …): never copied or deleted, told once
    /// at the end of the run.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_size: Option<u64>,

    /// Sync names that share an inode as independent files: which names are hard-linked is
    /// neither read nor compared.
    #[arg(long)]
    pub no_hard_links: bool,
    /// Do not keep extended attributes (user.*, and trusted.* and security.* as root).
    #[arg(long)]
    pub no_xattrs: bool,

    /// Do not keep POSIX ACLs.
    #[arg(long)]
    pub no_acls: bool,

    /// Do not keep owner and group (kept only where synk runs as root on both ends).
    #[arg(long)]
    pub no_owner: bool,

    /// Keep owner and group by number, not by user and group name.
    #[arg(long)]
    pub numeric_ids: bool,

    /// Use HOST's version wherever it has one, even if older (resolves conflicts).
    #[arg(long, value_name = "HOST")]
    pub master: Option<String>,

    /// HOST's changes and deletions go to the others; nothing another peer does changes HOST
    /// (repeatable; HOST as given to -h, or localhost).
    #[arg(long = "send-only", value_name = "HOST")]
    pub send_only: Vec<String>,

    /// HOST takes every change; changes made there are reverted to the group's version
    /// (repeatable).
    #[arg(long = "receive-only", value_name = "HOST")]
    pub receive_only: Vec<String>,

    /// Deletions made elsewhere never reach HOST (repeatable).
    #[arg(long = "no-delete", value_name = "HOST")]
    pub no_delete: Vec<String>,

    /// SSH port of the next -h.
    #[arg(short = 'p', long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    ports: Vec<u16>,

    /// Add a peer ([user@]host); repeatable. Without -h, peers come from synk.conf.
    // The help text, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    hosts: Vec<String>,

    /// Sync the deletions of a root, or of a mount point inside it, that is empty now on some
    /// peer (else that peer is left out of it).
    #[arg(long)]
    pub confirm_empty: bool,

    /// Fill HOST's emptied root from the other peers: its missing entries are copied back,
    /// nothing is deleted anywhere (after a disk was replaced or a tree removed by mistake).
    #[arg(long, value_name = "HOST", conflicts_with_all = ["confirm_empty", "every", "watch", "versions", "restore"])]
    pub refill: Option<String>,

    /// How long to wait for another synk run on the same paths to finish on a peer before
    /// leaving that peer out (`30s`, `5m`; default 10m).
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub lock_wait: Option<std::time::Duration>,

    /// List the kept versions of PATH (and below it) on every peer (none configured: on this
    /// host).
    #[arg(long, value_name = "PATH", conflicts_with = "restore")]
    pub versions: Option<PathBuf>,

    /// Bring back the newest kept version of PATH (a file, or what is gone below a directory)
    /// and sync it to every peer.
    #[arg(long, value_name = "PATH")]
    pub restore: Option<PathBuf>,

    /// With --restore: the version that was current at TIME (`2026-11-25 14:00` local time,
    /// `2026-11-25T14:00:00Z` as --versions shows it, or an age such as `2h` or `3days`).
    #[arg(long, value_name = "TIME", requires = "restore", value_parser = parse_at)]
    pub at: Option<i64>,

    /// Append the operations log to FILE (default ~/.local/state/synk/synk.log).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// List this host's state files (named by a hash of their root) and the root each one
    /// belongs to, and exit.
    #[arg(long, conflicts_with_all = ["versions", "restore", "add", "forget", "every", "watch"])]
    pub state: bool,

    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell) and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Internal: serve the synk protocol on stdin/stdout (run by synk over SSH). A value,
    /// hex, holds the first requests: read before stdin, so the serve starts on them without
    /// waiting the round trip that ssh takes to deliver its input.
    #[arg(
        long,
        exclusive = true,
        value_name = "HEX",
        num_args = 0..=1,
        require_equals = true,
        hide_possible_values = true
    )]
    pub serve: Option<Option<String>>,

    /// Files or directories to synchronise (none: the config's `path` lines); a first word
    /// `@NAME` reads the profile NAME.conf instead of synk.conf.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// `@NAME` from the command line.
    #[arg(skip)]
    pub profile: Option<String>,

    /// `-h` values paired with the `-p` that preceded them.
    #[arg(skip)]
    pub peers: Vec<PeerSpec>,
}

impl Cli {
    /// Parses the command line, pairing each `-p` with the `-h` that follows it.
    pub fn parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cmd = Cli::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let host_at: Vec<usize> = matches
            .indices_of("hosts")
            .map(Iterator::collect)
            .unwrap_or_default();
        let port_at: Vec<usize> = matches
            .indices_of("ports")
            .map(Iterator::collect)
            .unwrap_or_default();
        let mut ports = port_at.iter().zip(cli.ports.iter()).peekable();
        let mut peers = Vec::new();
        for (at, host) in host_at.iter().zip(cli.hosts.iter()) {
            // The last -p since the previous -h applies to this one.
            let mut port = None;
            while let Some((_, p)) = ports.next_if(|(pat, _)| *pat < at) {
                port = Some(*p);
            }
            let spec = PeerSpec::parse(host, port)
                .map_err(|e| cmd.error(clap::error::ErrorKind::InvalidValue, e.to_string()))?;
            peers.push(spec);
        }
        if ports.next().is_some() {
            let why = if host_at.is_empty() {
                "-p PORT applies to the -h HOST that follows it, and no -h was given"
            } else {
                "-p PORT must come before the -h HOST it applies to"
            };
            return Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, why));
        }
        cli.peers = peers;
        if cli.at.is_some() && cli.restore.is_none() {
            return Err(cmd.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--at TIME goes with --restore PATH",
            ));
        }
        if let Some(first) = cli.paths.first().and_then(|p| p.to_str()) {
            if let Some(name) = first.strip_prefix('@') {
                if name.is_empty() || name.contains('/') {
                    return Err(cmd.error(
                        clap::error::ErrorKind::InvalidValue,
                        format!("{first}: a profile is @NAME, read from NAME.conf"),
                    ));
                }
                cli.profile = Some(name.to_string());
                cli.paths.remove(0);
            }
        }
        // Checked once a profile is taken off the paths: `synk @work --versions ~/x` is sound.
        let alone = [
            (cli.versions.is_some(), "--versions PATH"),
            (cli.restore.is_some(), "--restore PATH"),
            (cli.state, "--state"),
        ];
        if let Some((_, option)) = alone.iter().find(|(given, _)| *given) {
            if let Some(extra) = cli.paths.first() {
                return Err(cmd.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{option} takes no other path ({} given)", extra.display()),
                ));
            }
        }
        if let Some(p) = cli.versions.as_ref().or(cli.restore.as_ref()) {
            cli.paths = vec![p.clone()];
        }
        Ok(cli)
    }

    /// The config file `--add` and `--forget` edit: `-f`, else the profile's, else the user's.
    pub fn config_to_edit(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| config::user_config_path(self.profile.as_deref()))
    }

    /// Writes the completion script for `shell`.
    pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
        clap_complete::generate(shell, &mut Cli::command(), "synk", out);
    }

    /// The config file in force: `-f CONFIG`, else the first default one that exists.
    pub fn config(&self) -> Result<Config, ConfigError> {
        if let Some(file) = &self.config {
            return config::load_config(file);
        }
        if let Some(name) = &self.profile {
            let file = config::user_config_path(Some(name))
                .unwrap_or_else(|| PathBuf::from(format!("{name}.conf")));
            return config::load_config(&file).map_err(|e| match e {
                ConfigError::Read(f, why) => ConfigError::Read(
                    f,
                    format!("{why}: no profile @{name} (synk @{name} --add PATH makes it)"),
                ),
                other => other,
            });
        }
        match config::default_config_paths()
            .into_iter()
            .find(|p| p.exists())
        {
            Some(file) => config::load_config(&file),
            None => Ok(Config::default()),
        }
    }

    /// The remote peers: `-h` options, else the config's. Local mentions and duplicates are
    /// dropped (localhost is always a peer).
    pub fn remote_peers(&self, cfg: &Config) -> Vec<PeerSpec> {
        let listed = if !self.peers.is_empty() {
            &self.peers
        } else {
            &cfg.peers
        };
        let mut out: Vec<PeerSpec> = Vec::new();
        for p in listed {
            if !p.is_local() && !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The role options: each option with its HOST and the role it gives.
    pub fn role_options(&self) -> Vec<(&'static str, &str, Role)> {
        let mut out = Vec::new();
        for (option, hosts, word) in [
            ("--send-only", &self.send_only, "send-only"),
            ("--receive-only", &self.receive_only, "receive-only"),
            ("--no-delete", &self.no_delete, "no-delete"),
        ] {
            let mut role = Role::default();
            role.add(word);
            out.extend(hosts.iter().map(|h| (option, h.as_str(), role)));
        }
        out
    }

    /// The config's role words (on its `peer` lines), in force with its peers only: with
    /// `-h`, roles come from the command line alone.
    pub fn config_roles<'a>(&self, cfg: &'a Config) -> &'a [(PeerSpec, Role)] {
        if self.peers.is_empty() {
            &cfg.roles
        } else {
            &[]
        }
    }

    /// How to reach peers: the command line's choices, then the config's.
    pub fn connect_options(&self, cfg: &Config) -> ConnectOptions {
        ConnectOptions {
            ssh: SshOptions {
                config: self.ssh_config.clone(),
                options: self
                    .ssh_options
                    .iter()
                    .chain(&cfg.ssh_options)
                    .cloned()
                    .collect(),
            },
            install: !self.no_install && cfg.install.unwrap_or(true),
            synk_path: self.synk_path.clone().or_else(|| cfg.synk_path.clone()),
            lookup: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_from_args(std::iter::once("synk").chain(args.iter().copied()))
    }

    #[test]
    fn port_applies_to_the_next_host_only() {
        let cli = parse(&["-h", "a", "-p", "2222", "-h", "bob@b", "-h", "c", "f"]).unwrap();
        let shown: Vec<String> = cli.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["a", "bob@b:2222", "c"]);
        assert_eq!(cli.paths, [PathBuf::from("f")]);
    }

    #[test]
    fn dangling_port_and_bad_hosts_are_usage_errors() {
        let e = parse(&["-h", "a", "-p", "22", "f"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["-h", "-oProxyCommand=x", "f"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["-p", "0", "-h", "a", "f"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn unknown_options_and_missing_paths_are_usage_errors() {
        assert_eq!(parse(&["--frobnicate", "f"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--serve", "f"]).unwrap_err().exit_code(), 2);
        assert!(
            parse(&["-h", "a"]).unwrap().paths.is_empty(),
            "the config's paths then"
        );
        assert_eq!(parse(&["--serve"]).unwrap().serve, Some(None));
        assert_eq!(
            parse(&["--serve=00ff"]).unwrap().serve,
            Some(Some("00ff".into()))
        );
    }

    #[test]
    fn help_is_long_only_and_verbosity_counts() {
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let cli = parse(&["-vv", "-n", "--copier", "stream", "--master", "b", "x"]).unwrap();
        assert_eq!((cli.verbose, cli.dry_run), (2, true));
        assert_eq!(cli.copier, CopierChoice::Stream);
        assert_eq!(cli.master.as_deref(), Some("b"));
    }

    #[test]
    fn duplicates_and_localhost_are_merged_away() {
        let cli = parse(&[
            "-h",
            "a",
            "-h",
            "localhost",
            "-h",
            "a",
            "-h",
            "me@localhost",
            "f",
        ])
        .unwrap();
        let peers: Vec<String> = cli
            .remote_peers(&cli.config().unwrap())
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(peers, ["a", "me@localhost"]);
    }

    #[test]
    fn ssh_options_and_install_come_from_both_places_command_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("synk.conf");
        std::fs::write(&conf, "ssh-option Port=2200\nsynk-path /opt/synk\n").unwrap();
        let cli = parse(&[
            "-f",
            conf.to_str().unwrap(),
            "-o",
            "ProxyJump=gw",
            "-h",
            "a",
            "f",
        ])
        .unwrap();
        let o = cli.connect_options(&cli.config().unwrap());
        assert_eq!(o.ssh.options, ["ProxyJump=gw", "Port=2200"]);
        assert!(o.install);
        assert_eq!(o.synk_path.as_deref(), Some("/opt/synk"));
        let cli = parse(&["--no-install", "--synk-path", "~/s", "-h", "a", "f"]).unwrap();
        let o = cli.connect_options(&Config::default());
        assert!(!o.install);
        assert_eq!(o.synk_path.as_deref(), Some("~/s"));
    }

    #[test]
    fn versions_and_restore_take_their_path_and_at_takes_times_or_ages() {
        let cli = parse(&["-h", "a", "--versions", "notes"]).unwrap();
        assert_eq!(cli.paths, [PathBuf::from("notes")]);
        // A time as --versions shows it, in UTC.
        let cli = parse(&["-h", "a", "--restore", "n", "--at", "2026-01-02T03:04:00Z"]).unwrap();
        assert_eq!(cli.at, Some(1_767_323_040_000_000_000));
        // A bare time is this host's local time: back through localtime it reads the same.
        for (given, secs) in [("2026-01-02 03:04", 0), ("2026-07-02T23:59:30", 30)] {
            let cli = parse(&["-h", "a", "--restore", "n", "--at", given]).unwrap();
            let t = (cli.at.unwrap() / 1_000_000_000) as libc::time_t;
            // SAFETY: plain C structs, filled by localtime_r.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            assert!(!unsafe { libc::localtime_r(&t, &mut tm) }.is_null());
            let shown = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min
            );
            assert_eq!(shown, given.replace('T', " ")[..16], "{given}");
            assert_eq!(tm.tm_sec, secs);
        }
        let day = parse(&["-h", "a", "--restore", "n", "--at", "2026-01-02"]).unwrap();
        let noon = parse(&["-h", "a", "--restore", "n", "--at", "2026-01-02 12:00"]).unwrap();
        assert_eq!(
            noon.at.unwrap() - day.at.unwrap(),
            12 * 3600 * 1_000_000_000
        );
        for wrong in ["2026-02-30 10:00", "2026-01-02 25:00", "2026-1-2 10:00"] {
            assert!(parse_at(wrong).is_err(), "{wrong}");
        }
        let cli = parse(&["-h", "a", "--restore", "n", "--at", "2h"]).unwrap();
        let ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
            - cli.at.unwrap();
        assert!(
            (7_190_000_000_000..7_210_000_000_000).contains(&ago),
            "{ago}"
        );
        assert_eq!(
            parse(&["-h", "a", "--at", "2h", "f"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            parse(&["-h", "a", "--restore", "n", "--at", "soon"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn sizes_and_rates_read_like_rsync() {
        let cli = parse(&[
            "-h",
            "a",
            "--bwlimit",
            "500",
            "--max-size",
            "10M",
            "-z",
            "f",
        ])
        .unwrap();
        assert_eq!(cli.bwlimit, Some(500 * 1024));
        assert_eq!(cli.max_size, Some(10 << 20));
        assert!(cli.compress);
        assert_eq!(parse_rate("2M"), Ok(2 << 20));
        assert_eq!(parse_bytes("1500"), Ok(1500));
        assert_eq!(
            parse(&["-h", "a", "--max-size", "lots", "f"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn a_profile_is_the_first_word_and_excludes_repeat() {
        let cli = parse(&["@work", "--exclude", "*.o", "--exclude", "tmp/", "f"]).unwrap();
        assert_eq!(cli.profile.as_deref(), Some("work"));
        assert_eq!(cli.paths, [PathBuf::from("f")]);
        assert_eq!(cli.excludes, ["*.o", "tmp/"]);
        assert_eq!(parse(&["@", "f"]).unwrap_err().exit_code(), 2);
        let cli = parse(&["--add", "notes"]).unwrap();
        assert_eq!(cli.add, Some(PathBuf::from("notes")));
        // A profile goes with the options that take no other path.
        let cli = parse(&["@work", "--versions", "notes"]).unwrap();
        assert_eq!(cli.profile.as_deref(), Some("work"));
        assert_eq!(cli.paths, [PathBuf::from("notes")]);
        assert!(parse(&["@work", "--restore", "n", "--at", "2h"]).is_ok());
        assert!(parse(&["@work", "--state"]).unwrap().state);
        for extra in [
            &["--versions", "notes", "other"][..],
            &["--restore", "n", "other"],
            &["--state", "other"],
            &["@work", "--state", "other"],
        ] {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{extra:?}");
            assert!(e.to_string().contains("takes no other path"), "{e}");
        }
        let e = parse(&["-p", "2222", "f"]).unwrap_err();
        assert!(e.to_string().contains("no -h was given"), "{e}");
    }

    #[test]
    fn every_takes_a_human_interval() {
        let cli = parse(&["-h", "a", "--every", "5m", "f"]).unwrap();
        assert_eq!(cli.every, Some(std::time::Duration::from_secs(300)));
        assert!(parse(&["-h", "a", "--watch", "f"]).unwrap().watch);
        assert_eq!(
            parse(&["-h", "a", "--every", "soon", "f"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            parse(&["-h", "a", "--every", "1ms", "f"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            parse(&["-h", "a", "--every", "1m", "-n", "f"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn completions_name_the_options() {
        let cli = parse(&["--completions", "bash"]).unwrap();
        let mut out = Vec::new();
        Cli::write_completions(cli.completions.unwrap(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("--restore") && text.contains("--confirm-empty"),
            "{text}"
        );
        assert_eq!(
            parse(&["--completions", "tcsh"]).unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn role_options_take_a_host_each_and_the_configs_apply_without_h() {
        let cli = parse(&[
            "--send-only",
            "build",
            "--no-delete",
            "backup",
            "--receive-only",
            "backup",
            "f",
        ])
        .unwrap();
        let got: Vec<(&str, &str, Vec<&str>)> = cli
            .role_options()
            .into_iter()
            .map(|(o, h, r)| (o, h, r.words()))
            .collect();
        assert_eq!(
            got,
            [
                ("--send-only", "build", vec!["send-only"]),
                ("--receive-only", "backup", vec!["receive-only"]),
                ("--no-delete", "backup", vec!["no-delete"]),
            ]
        );
        // A role option takes its HOST: the path after it is a HOST, not a path.
        let cli = parse(&["--no-delete", "/home/me/x"]).unwrap();
        assert!(cli.paths.is_empty());
        assert_eq!(cli.no_delete, ["/home/me/x"]);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("synk.conf");
        std::fs::write(&conf, "peer x send-only\n").unwrap();
        let cli = parse(&["-f", conf.to_str().unwrap(), "f"]).unwrap();
        let cfg = cli.config().unwrap();
        assert_eq!(cli.config_roles(&cfg).len(), 1);
        let cli = parse(&["-f", conf.to_str().unwrap(), "-h", "y", "f"]).unwrap();
        assert!(cli.config_roles(&cfg).is_empty());
    }

    #[test]
    fn config_file_is_used_without_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("synk.conf");
        std::fs::write(&conf, "peer x 2200\npeer y\n").unwrap();
        let cli = parse(&["-f", conf.to_str().unwrap(), "f"]).unwrap();
        let peers: Vec<String> = cli
            .remote_peers(&cli.config().unwrap())
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(peers, ["x:2200", "y"]);
        std::fs::write(&conf, "peer x\nbogus\n").unwrap();
        let e = cli.config().unwrap_err();
        assert!(
            e.to_string()
                .ends_with("synk.conf:2: unknown keyword \"bogus\""),
            "{e}"
        );
    }
}
