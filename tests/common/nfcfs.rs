//! A filesystem that takes a name's NFC and NFD spellings for one (as macOS and ZFS with
//! normalization do): `nfcfs.py`, a FUSE passthrough that keeps every name in NFC, over a
//! directory of the rig. exFAT keeps the two spellings apart, and this kernel has nothing else
//! that normalizes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::Scene;

/// `nfcfs.py` mounted at `dir`, unmounted on drop; `None` where Python's fusepy or FUSE is
/// missing (failing under CI).
pub struct NfcFs {
    dir: PathBuf,
    child: Child,
}

impl NfcFs {
    pub fn mount(s: &Scene, peer: &str, dir: &Path) -> Option<NfcFs> {
        let python = "/usr/bin/python3";
        let ready = Path::new("/dev/fuse").exists()
            && Command::new(python)
                .args(["-c", "import fusepy"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !super::have(ready, "python3-fusepy and /dev/fuse") {
            return None;
        }
        let backing = s.rig.dir.join(format!("{}.nfc", s.name));
        fs::create_dir_all(&backing).unwrap();
        fs::create_dir_all(dir).unwrap();
        let u = super::user(peer);
        std::os::unix::fs::lchown(&backing, Some(u.uid), Some(u.gid)).unwrap();
        s.own(peer, dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/nfcfs.py");
        let child = Command::new(python)
            .arg(script)
            .arg(&backing)
            .arg(dir)
            .spawn()
            .unwrap();
        let fs = NfcFs {
            dir: dir.to_path_buf(),
            child,
        };
        let dev = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(p).map(|m| m.dev()).ok()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while dev(dir) == dev(dir.parent().unwrap()) {
            assert!(Instant::now() < deadline, "nfcfs did not mount at {dir:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        s.own(peer, dir);
        Some(fs)
    }
}

impl Drop for NfcFs {
    fn drop(&mut self) {
        // Unmounted first: a mount whose daemon is gone fails every later walk of the home
        // with ENOTCONN.
        super::unmount(&self.dir);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
