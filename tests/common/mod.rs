//! A multi-peer rig on one machine: a private sshd on a loopback port and one Unix user per
//! peer, each with a home of its own, so the real binary runs over real SSH (and rsync).
//!
//! Peers:
//! - `alpha`, `beta`, `gamma`: rsync and synk on PATH, keys to reach each other;
//! - `delta`: synk but no rsync on PATH (exercises the streaming copier);
//! - `epsilon`: rsync and synk, but no key to reach anyone (remote master fallback);
//! - `zeta`: no synk on PATH (synk installs itself there);
//! - `eta`: a `synk` that prints garbage instead of speaking the protocol;
//! - `theta`: an older synk that answers with an older protocol (upgraded by install);
//! - `iota`: no synk on PATH, used with `--no-install`;
//! - `kappa`: no synk on PATH, and a `uname` that says it is an arm64 machine.
//!
//! Every peer's PATH is built here from chosen tools only, so nothing installed on the machine
//! running the tests (a `synk` in /usr/local/bin, say) changes what a peer has.
//!
//! Needs root (users, sshd). Without it the tests say so and pass, except under CI=true,
//! where a missing rig is a failure.

#![allow(dead_code)]

pub mod exfat;
pub mod nfcfs;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every peer user the rig creates.
pub const PEERS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", ROOT,
];

/// The peer whose user is root (uid 0, by another name): a serve that keeps owners and
/// `trusted.*` attributes, as the client's own peer does here.
pub const ROOT: &str = "rho";

/// What kappa's `uname -sm` says.
pub const KAPPA_PLATFORM: &str = "Linux aarch64";

/// The tools every peer has on PATH (rsync and synk are added per peer).
const BASE_TOOLS: &[&str] = &[
    "sh",
    "cat",
    "chmod",
    "cut",
    "dirname",
    "find",
    "mkdir",
    "mv",
    "rm",
    "sha512sum",
    "sleep",
    "ssh",
    "uname",
    "true",
    "ls",
    "env",
];

/// The handshake answer of an older synk, recorded (see `tests/reach.rs`).
pub const OLD_HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/old-hello.bin");

/// Where homes and sshd state live (world-traversable, so peer users can reach their homes).
const BASE: &str = "/var/tmp/synk-it";

pub struct Rig {
    pub port: u16,
    pub dir: PathBuf,
    pub ssh_config: PathBuf,
}

pub struct User {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Home directories differ in shape on purpose: home-relative paths must not assume one.
fn home_of(peer: &str) -> PathBuf {
    match peer {
        "beta" => PathBuf::from(BASE).join("srv/users").join(peer),
        "gamma" => PathBuf::from(BASE).join("export/home/deep").join(peer),
        _ => PathBuf::from(BASE).join("home").join(peer),
    }
}

pub fn user(peer: &str) -> User {
    let name = format!("synkt-{peer}");
    let home = home_of(peer);
    let out = Command::new("id")
        .arg("-u")
        .arg(&name)
        .output()
        .expect("id");
    if !out.status.success() {
        // Password `*`: no password login, but not a locked account (sshd without PAM
        // refuses locked ones even for keys).
        let mut add = Command::new("useradd");
        add.args(["-M", "-s", "/bin/sh", "-p", "*", "-d"])
            .arg(&home);
        if peer == ROOT {
            add.args(["-o", "-u", "0", "-g", "0"]);
        }
        sh(add.arg(&name));
    }
    let uid: u32 = String::from_utf8(sh(Command::new("id").arg("-u").arg(&name)).stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gid: u32 = String::from_utf8(sh(Command::new("id").arg("-g").arg(&name)).stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    User {
        name,
        home,
        uid,
        gid,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Result<Rig, String> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (needs useradd and sshd)".into());
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/rsync"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} missing (apt-get install openssh-server openssh-client rsync)"
            ));
        }
    }
    detach_stale_mounts();
    fs::create_dir_all(BASE).unwrap();
    fs::set_permissions(BASE, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = PathBuf::from(BASE).join(format!("rig-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all("/run/sshd").unwrap();

    let key = dir.join("id_ed25519");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    let host_key = dir.join("host_ed25519");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key));
    let pubkey = fs::read_to_string(key.with_extension("pub")).unwrap();
    let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    fs::write(dir.join("authorized_keys"), &pubkey).unwrap();
    fs::set_permissions(
        dir.join("authorized_keys"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let port = free_port();
    let known = format!("[127.0.0.1]:{port} {}\n", host_pub.join(" "));
    fs::write(dir.join("known_hosts"), &known).unwrap();

    // PATH directories, from nothing but chosen tools: synk everywhere but zeta and iota;
    // rsync everywhere but delta; eta's synk lies; theta's synk is older; kappa's uname says
    // arm64.
    let synk = env!("CARGO_BIN_EXE_synk");
    let dirs = [
        "base",
        "bin",
        "bin-norsync",
        "bin-rsync",
        "bin-garbage",
        "bin-old",
        "bin-arm",
    ];
    for d in dirs {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for tool in BASE_TOOLS {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found in /usr/bin or /bin"));
        std::os::unix::fs::symlink(found, dir.join("base").join(tool)).unwrap();
    }
    let link = |target: &str, d: &str, name: &str| {
        std::os::unix::fs::symlink(target, dir.join(d).join(name)).unwrap()
    };
    link(synk, "bin", "synk");
    link("/usr/bin/rsync", "bin", "rsync");
    link(synk, "bin-norsync", "synk");
    link("/usr/bin/rsync", "bin-rsync", "rsync");
    let script = |d: &str, text: String| {
        let p = dir.join(d).join("synk");
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "bin-garbage",
        "#!/bin/sh\necho 'Welcome to eta! Have a nice day.'\nsleep 1\n".into(),
    );
    // An older synk: answers the handshake with an older protocol (the rig's recording).
    fs::copy(OLD_HELLO, dir.join("old-hello")).unwrap();
    script(
        "bin-old",
        format!(
            "#!/bin/sh\ncat {}\ncat >/dev/null\n",
            dir.join("old-hello").display()
        ),
    );
    let uname = dir.join("bin-arm").join("uname");
    fs::write(
        &uname,
        format!(
            "#!/bin/sh\nif [ \"$*\" = -sm ]; then echo '{KAPPA_PLATFORM}'; else exec '{}' \"$@\"; fi\n",
            dir.join("base/uname").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&uname, fs::Permissions::from_mode(0o755)).unwrap();
    let path_of = |ds: &[&str]| {
        ds.iter()
            .map(|d| dir.join(d).display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };

    let config = format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {hk}
PidFile {pid}
AuthorizedKeysFile {ak}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
PermitRootLogin no
MaxSessions 200
MaxStartups 200:30:400
LogLevel ERROR
Match User synkt-delta
    SetEnv PATH={norsync}
Match User synkt-zeta,synkt-iota
    SetEnv PATH={rsync_only}
Match User synkt-eta
    SetEnv PATH={garbage}
Match User synkt-theta
    SetEnv PATH={old}
Match User synkt-kappa
    SetEnv PATH={arm}
Match User synkt-alpha,synkt-beta,synkt-gamma,synkt-epsilon
    SetEnv PATH={bin}
Match User synkt-{ROOT}
    PermitRootLogin prohibit-password
    SetEnv PATH={bin}
",
        hk = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        ak = dir.join("authorized_keys").display(),
        norsync = path_of(&["bin-norsync", "base"]),
        rsync_only = path_of(&["bin-rsync", "base"]),
        garbage = path_of(&["bin-garbage", "base"]),
        old = path_of(&["bin-old", "bin-rsync", "base"]),
        arm = path_of(&["bin-arm", "bin-rsync", "base"]),
        bin = path_of(&["bin", "base"]),
    );
    let config = format!("{config}{}", liar_setup(&dir));
    fs::write(dir.join("sshd_config"), config).unwrap();

    for peer in PEERS.iter().chain(LIAR_PEERS) {
        let u = user(peer);
        fs::create_dir_all(&u.home).unwrap();
        let ssh = u.home.join(".ssh");
        let _ = fs::remove_dir_all(&ssh);
        // Nothing from an earlier run: installed copies of synk, digest caches, sync state
        // and kept versions.
        let _ = fs::remove_dir_all(u.home.join(".cache"));
        let _ = fs::remove_dir_all(u.home.join(".local"));
        fs::create_dir_all(&ssh).unwrap();
        if *peer != "epsilon" {
            fs::copy(&key, ssh.join("id_ed25519")).unwrap();
            fs::set_permissions(ssh.join("id_ed25519"), fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(ssh.join("known_hosts"), &known).unwrap();
        fs::write(
            ssh.join("config"),
            "Host *\n    BatchMode yes\n    StrictHostKeyChecking yes\n",
        )
        .unwrap();
        chown_tree(&u.home, u.uid, u.gid);
        fs::set_permissions(&u.home, fs::Permissions::from_mode(0o755)).unwrap();
        let mut parent = u.home.parent();
        while let Some(p) = parent.filter(|p| p.starts_with(BASE)) {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
            parent = p.parent();
        }
    }

    let ssh_config = dir.join("ssh_config");
    fs::write(
        &ssh_config,
        format!(
            "Host *\n    IdentityFile {}\n    IdentitiesOnly yes\n    UserKnownHostsFile {}\n    LogLevel ERROR\n",
            key.display(),
            dir.join("known_hosts").display()
        ),
    )
    .unwrap();

    // sshd must die with this test process; PDEATHSIG follows the spawning thread, so spawn
    // it from a thread that lives as long as the process.
    let cfg = dir.join("sshd_config");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|_| ()).map_err(|e| e.to_string()))
            .unwrap();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv().unwrap()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Rig {
                port,
                dir,
                ssh_config,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("sshd did not start listening".into())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

// ---- lambda, the liar (tests/hostile/) ----

/// Peers whose `synk` lies, besides [`PEERS`]: `lambda`, a man in the middle in front of a real
/// serve that rewrites what it says as `~/.liar` tells it (tests/hostile/). Its PATH is
/// [`LIAR_BIN`] (where the hostile tests put that `synk`), rsync and the base tools; it has
/// the key to reach the other peers.
pub const LIAR_PEERS: &[&str] = &["lambda"];

/// The directory in the rig's that is first on lambda's PATH: rsync, and the `synk` the
/// hostile tests write there.
pub const LIAR_BIN: &str = "bin-liar";

/// Makes lambda's PATH directory and returns sshd's block for lambda.
fn liar_setup(dir: &Path) -> String {
    let bin = dir.join(LIAR_BIN);
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/usr/bin/rsync", bin.join("rsync")).unwrap();
    format!(
        "Match User synkt-lambda\n    SetEnv PATH={}:{}\n",
        bin.display(),
        dir.join("base").display()
    )
}

/// Whether what a test needs (`what`) is here: where it is not, the test says so and is
/// skipped, except under CI, where that is a failure.
pub fn have(here: bool, what: &str) -> bool {
    if !here {
        assert!(std::env::var_os("CI").is_none(), "{what} needed under CI");
        eprintln!("skipping: no {what} here");
    }
    here
}

static RIG: OnceLock<Result<Rig, String>> = OnceLock::new();

/// Unmounts the filesystem at `dir`. A serve of the last run may still be leaving it: busy
/// for a moment, then free. Detached lazily if it stays busy: a mount left behind would keep
/// its fuse daemon past the tests, or, once the daemon is gone, fail every walk over it.
pub fn unmount(dir: &Path) {
    let unmounted = (0..50).any(|_| {
        let done = Command::new("umount")
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    if !unmounted {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
    }
}

/// Detaches the FUSE mounts below [`BASE`] whose daemon is gone (an earlier run killed before
/// it unmounted): every walk over one fails with ENOTCONN. Live mounts stay: they may be
/// another test process's.
fn detach_stale_mounts() {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    // Only ours are looked at: a stat of another, hung mount could block.
    let ours = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(BASE));
    for point in ours {
        let dead = fs::metadata(point).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN));
        if dead {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

/// The rig, started on first use; `None` (after saying why) where it cannot run here.
pub fn rig() -> Option<&'static Rig> {
    match RIG.get_or_init(start) {
        Ok(r) => Some(r),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("test rig unavailable under CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping: test rig unavailable: {why}");
            None
        }
    }
}

/// One test's slice of every home: `t-NAME` below each peer's home and below a private
/// local home for the client.
pub struct Scene {
    pub rig: &'static Rig,
    pub name: String,
    pub local_home: PathBuf,
}

/// Peer `localhost` is the client; the others are rig users.
pub const LOCAL: &str = "localhost";

impl Scene {
    pub fn new(name: &str) -> Option<Scene> {
        let rig = rig()?;
        let local_home = PathBuf::from(BASE).join("local").join(name);
        let _ = fs::remove_dir_all(&local_home);
        fs::create_dir_all(&local_home).unwrap();
        let s = Scene {
            rig,
            name: name.to_string(),
            local_home,
        };
        for p in PEERS.iter().chain(LIAR_PEERS) {
            let _ = fs::remove_dir_all(s.dir(p));
        }
        Some(s)
    }

    /// The home of a peer.
    pub fn home(&self, peer: &str) -> PathBuf {
        if peer == LOCAL {
            self.local_home.clone()
        } else {
            home_of(peer)
        }
    }

    /// This test's directory on a peer (`~/t-NAME`).
    pub fn dir(&self, peer: &str) -> PathBuf {
        self.home(peer).join(format!("t-{}", self.name))
    }

    /// `~/t-NAME/REL` on a peer.
    pub fn path(&self, peer: &str, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir(peer)
        } else {
            self.dir(peer).join(rel)
        }
    }

    fn owner(&self, peer: &str) -> (u32, u32) {
        if peer == LOCAL {
            (0, 0)
        } else {
            let u = user(peer);
            (u.uid, u.gid)
        }
    }

    /// Gives `path` and the directories above it (up to the home) to the peer's user.
    pub fn own(&self, peer: &str, path: &Path) {
        let (uid, gid) = self.owner(peer);
        let home = self.home(peer);
        let mut p = Some(path);
        while let Some(q) = p.filter(|q| q.starts_with(&home) && *q != home) {
            std::os::unix::fs::lchown(q, Some(uid), Some(gid)).unwrap();
            p = q.parent();
        }
    }

    /// Writes a file on a peer with the given mtime (seconds), owned by the peer's user.
    pub fn write(&self, peer: &str, rel: &str, content: impl AsRef<[u8]>, mtime: i64) -> PathBuf {
        let p = self.path(peer, rel);
        self.write_at(peer, &p, content.as_ref(), mtime);
        p
    }

    /// Writes at an arbitrary path below the peer's test dir (for non-UTF-8 names).
    pub fn write_at(&self, peer: &str, p: &Path, content: &[u8], mtime: i64) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        set_mtime(p, mtime);
        self.own(peer, p);
    }

    pub fn mkdir(&self, peer: &str, rel: &str) -> PathBuf {
        let p = self.path(peer, rel);
        fs::create_dir_all(&p).unwrap();
        self.own(peer, &p);
        p
    }

    pub fn read(&self, peer: &str, rel: &str) -> Option<Vec<u8>> {
        fs::read(self.path(peer, rel)).ok()
    }

    /// Runs synk as the client (HOME = the local home) against `peers`, with extra `args`.
    pub fn synk(&self, peers: &[&str], args: &[&std::ffi::OsStr]) -> Output {
        self.run(self.command(peers), args)
    }

    /// Runs a prepared client command with extra `args`, echoing what it printed.
    pub fn run(&self, mut cmd: Command, args: &[&std::ffi::OsStr]) -> Output {
        cmd.args(args);
        let started = std::time::Instant::now();
        let out = cmd.output().expect("run synk");
        eprintln!(
            "$ synk {args:?}\n--- status {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            out.status.code(),
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The client command with `-F` and the peers' `-p`/`-h`, before paths are added.
    pub fn command(&self, peers: &[&str]) -> Command {
        self.command_with(&self.rig.ssh_config, peers)
    }

    /// [`Scene::command`] with another ssh_config file.
    pub fn command_with(&self, ssh_config: &Path, peers: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synk"));
        cmd.env("HOME", &self.local_home)
            .env_remove("RUST_LOG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(&self.local_home)
            .stdin(Stdio::null())
            .arg("-F")
            .arg(ssh_config);
        for p in peers {
            if *p == LOCAL {
                cmd.args(["-h", "localhost"]);
            } else {
                cmd.args(["-p", &self.rig.port.to_string(), "-h", &self.host(p)]);
            }
        }
        cmd
    }

    /// The `-h` value for a peer.
    pub fn host(&self, peer: &str) -> String {
        format!("synkt-{peer}@127.0.0.1")
    }

    /// How a peer is named in synk's messages.
    pub fn shown(&self, peer: &str) -> String {
        if peer == LOCAL {
            LOCAL.into()
        } else {
            format!("{}:{}", self.host(peer), self.rig.port)
        }
    }

    /// `t-NAME/REL` as the client passes it: below its own home, so home-relative.
    pub fn arg(&self, rel: &str) -> std::ffi::OsString {
        self.path(LOCAL, rel).into_os_string()
    }
}

/// Processes (other than this one) that have a file open below `dir` or run in it.
pub fn users_of(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cwd = fs::read_link(p.path().join("cwd")).ok();
        let open = fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok());
        if cwd.into_iter().chain(open).any(|f| f.starts_with(dir)) {
            let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} {}", comm.trim()));
        }
    }
    out
}

/// A [`Scene`], or an early return from the test where the rig cannot run here.
macro_rules! scene {
    ($name:expr) => {
        match Scene::new($name) {
            Some(s) => s,
            None => return,
        }
    };
}

/// An argument from a string.
/// The first request of a serve's session that scans `rel` below its home, in full.
pub fn scan_home(rel: &str) -> synk::proto::Request {
    synk::proto::Request::Scan {
        roots: vec![synk::paths::RootSpec::Home(synk::paths::WirePath::from(
            rel,
        ))],
        retention: Default::default(),
        excludes: Vec::new(),
        brief: false,
        tidy: true,
        lock: false,
        meta: Default::default(),
    }
}

pub fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `rel` has the same content, mtime and mode on every peer.
pub fn assert_same_everywhere(s: &Scene, peers: &[&str], rel: &str) {
    let want = s
        .read(peers[0], rel)
        .unwrap_or_else(|| panic!("{rel} missing on {}", peers[0]));
    let p0 = s.path(peers[0], rel);
    for p in &peers[1..] {
        let got = s
            .read(p, rel)
            .unwrap_or_else(|| panic!("{rel} missing on {p}"));
        assert!(got == want, "{rel} differs on {p}");
        let pp = s.path(p, rel);
        assert_eq!(mtime(&pp), mtime(&p0), "{rel} mtime on {p}");
        assert_eq!(mode(&pp), mode(&p0), "{rel} mode on {p}");
    }
}

pub fn set_mtime(p: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

pub fn mtime(p: &Path) -> i64 {
    fs::symlink_metadata(p).unwrap().mtime()
}

pub fn inode(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

pub fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn sha512(p: &Path) -> String {
    let out = sh(Command::new("sha512sum").arg(p));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `-v` run that found nothing to do: no copy from a master, no action of synk's.
pub fn assert_nothing_done(o: &Output) {
    let o = stdout(o);
    assert!(
        !o.contains("master:") && !o.contains("synk:") && !o.contains(": metadata on "),
        "nothing to do, yet: {o}"
    );
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// SIGKILLs every process that has `path` open, and only those: tests run in parallel, so
/// killing by user or name would hit other tests' peers. Returns how many were killed.
pub fn kill_holders(path: &Path) -> usize {
    let mut killed = 0;
    for proc_dir in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = proc_dir.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).ok().as_deref() == Some(path))
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    killed
}

/// A run of synk on `root` with `peers` that must succeed (exit 0).
pub fn ok_run(s: &Scene, peers: &[&str], root: &str) {
    let out = s.synk(peers, &[&s.arg(root)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `len` bytes of reproducible noise (nothing in them compresses or matches by chance).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// The scratch directories synk made in `dir` (`.synk-scratch.*`).
pub fn scratch_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".synk-scratch.")
        })
        .map(|e| e.path())
        .collect()
}
