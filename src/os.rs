//! What synk asks of the system without the C library's lookups: the user's home and
//! directories, and random bytes.
//!
//! synk is linked statically (so the copy it sends runs on any x86_64 Linux, whatever its C
//! library), and a static glibc cannot do its NSS lookups (`getpwuid_r` and the like) without
//! the shared libraries of the very glibc it was built with, which a peer may not have. So the
//! home is `$HOME`, else the user's line in the peer's own `/etc/passwd`, and random bytes come
//! from the `getrandom(2)` system call, not from a `/dev/urandom` a bare system may lack.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The password database read for a home when `$HOME` is unset.
const PASSWD: &str = "/etc/passwd";

/// This user's home: `$HOME` when it is an absolute path, else the home field of the real
/// user's line in `/etc/passwd`.
pub fn home_dir() -> Option<PathBuf> {
    absolute(std::env::var_os("HOME")).or_else(|| {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let text = std::fs::read(PASSWD).ok()?;
        passwd_home(&text, uid)
    })
}

/// `$XDG_CACHE_HOME`, else `HOME/.cache`.
pub fn cache_dir(home: Option<&Path>) -> Option<PathBuf> {
    absolute(std::env::var_os("XDG_CACHE_HOME")).or_else(|| home.map(|h| h.join(".cache")))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub fn config_dir() -> Option<PathBuf> {
    absolute(std::env::var_os("XDG_CONFIG_HOME")).or_else(|| home_dir().map(|h| h.join(".config")))
}

/// A variable's value as a path, where it is an absolute one (the XDG rule: a relative
/// value is ignored).
fn absolute(value: Option<OsString>) -> Option<PathBuf> {
    value.map(PathBuf::from).filter(|p| p.is_absolute())
}

/// One line of a passwd(5) file: `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The login name.
    pub name: Vec<u8>,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The home directory.
    pub home: PathBuf,
}

/// The well-formed entries of a passwd(5) file, in order; comments, blank lines, NIS
/// `+`/`-` lines and lines with a missing field or a bad id are skipped.
pub fn passwd_entries(text: &[u8]) -> impl Iterator<Item = PasswdEntry> + '_ {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if matches!(line.first(), None | Some(b'#' | b'+' | b'-')) {
            return None;
        }
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if f.len() < 7 {
            return None;
        }
        let id = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<u32>().ok();
        Some(PasswdEntry {
            name: f[0].to_vec(),
            uid: id(f[2])?,
            gid: id(f[3])?,
            home: PathBuf::from(OsString::from_vec(f[5].to_vec())),
        })
    })
}

/// The home of `uid` in a passwd(5) file (its first entry, as getpwuid reads it), where that
/// is an absolute path.
pub fn passwd_home(text: &[u8], uid: u32) -> Option<PathBuf> {
    passwd_entries(text)
        .find(|e| e.uid == uid)
        .map(|e| e.home)
        .filter(|h| h.is_absolute())
}

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`; it blocks only until the
/// kernel's pool is first seeded, early in boot). A kernel older than 3.17 has no such call:
/// there, and only there, `/dev/urandom` is read.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.raw_os_error() == Some(libc::ENOSYS) {
                use std::io::Read;
                return std::fs::File::open("/dev/urandom")?.read_exact(rest);
            }
            return Err(e);
        }
        // A read of more than 256 bytes may come back short.
        done += n as usize;
    }
    Ok(())
}

/// A random `u64`.
pub fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Whether `path` is on one of the local filesystems Linux runs from (ext4, xfs, btrfs, tmpfs,
/// f2fs, zfs, bcachefs): there every change raises an inotify event, and a file renamed over
/// stays readable through a handle opened before. False on network and FUSE mounts, and where
/// unsure.
pub fn local_fs(path: &Path) -> bool {
    // statfs(2) magic numbers, from linux/magic.h (ZFS's from OpenZFS).
    const LOCAL: [i64; 7] = [
        0xEF53,     // ext2, ext3, ext4
        0x58465342, // xfs
        0x9123683E, // btrfs
        0x01021994, // tmpfs
        0xF2F52010, // f2fs
        0x2FC12FC1, // zfs
        0xCA451A4E, // bcachefs
    ];
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct it is given and reads the NUL-terminated path.
    let kind = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return false;
        }
        st.f_type as i64
    };
    LOCAL.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
\n\
+nisuser::::::\n\
broken:x:12\n\
bad:x:notanumber:1::/home/bad:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\r\n\
synk:x:1000:1000:Synk User,,,:/srv/home/synk:/bin/bash\n\
relative:x:1001:1001::home/rel:/bin/sh\n\
synk2:x:1000:1000::/home/second:/bin/sh\n\
nologin:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin";

    #[test]
    fn a_home_is_found_by_uid_in_passwd() {
        assert_eq!(passwd_home(SAMPLE, 0), Some(PathBuf::from("/root")));
        // The first entry for a uid, as getpwuid answers; a CRLF line is read without the CR.
        assert_eq!(
            passwd_home(SAMPLE, 1000),
            Some(PathBuf::from("/srv/home/synk"))
        );
        assert_eq!(passwd_home(SAMPLE, 1), Some(PathBuf::from("/usr/sbin")));
        // The last line has no newline.
        assert_eq!(
            passwd_home(SAMPLE, 65534),
            Some(PathBuf::from("/nonexistent"))
        );
        // No such uid; a relative home is no home.
        assert_eq!(passwd_home(SAMPLE, 4242), None);
        assert_eq!(passwd_home(SAMPLE, 1001), None);
    }

    #[test]
    fn malformed_passwd_lines_are_skipped() {
        let names: Vec<String> = passwd_entries(SAMPLE)
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        assert_eq!(
            names,
            ["root", "daemon", "synk", "relative", "synk2", "nologin"]
        );
        let synk = passwd_entries(SAMPLE).find(|e| e.name == b"synk").unwrap();
        assert_eq!((synk.uid, synk.gid), (1000, 1000));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_kept_as_bytes() {
        let text = b"caf\xe9:x:7:7::/home/caf\xe9:/bin/sh\n";
        let e = passwd_entries(text).next().unwrap();
        assert_eq!(e.name, b"caf\xe9");
        assert_eq!(
            e.home.into_os_string().into_vec(),
            b"/home/caf\xe9".to_vec()
        );
    }

    #[test]
    fn the_running_users_home_is_in_this_machines_passwd() {
        // The same answer getpwuid gives (via getent, a separate program).
        let uid = unsafe { libc::getuid() };
        let out = std::process::Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        let want = line.trim_end().split(':').nth(5).unwrap().to_string();
        let text = std::fs::read(PASSWD).unwrap();
        assert_eq!(passwd_home(&text, uid), Some(PathBuf::from(want)));
    }

    #[test]
    fn random_bytes_fill_any_length_and_differ() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 1000];
        random_bytes(&mut a).unwrap();
        random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        // A short fill would leave the end zero (odds of 2^-800 otherwise).
        assert!(a[900..].iter().any(|&x| x != 0));
        assert!(b[900..].iter().any(|&x| x != 0));
        random_bytes(&mut []).unwrap();
        assert_ne!(random_u64().unwrap(), random_u64().unwrap());
    }
}
