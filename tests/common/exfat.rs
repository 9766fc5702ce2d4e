//! An exFAT filesystem for a peer's tree: exfat-fuse over a loop device (this kernel has no
//! vfat and no ext4 casefold), case-insensitive, without modes, symlinks or hard links.

use std::fs;
use std::path::Path;

use super::{user, Scene};

/// An exFAT filesystem mounted (exfat-fuse over a loop device) at `dir`, owned by `peer`'s
/// user, unmounted on drop; `None` where the tools are missing (failing under CI).
pub struct Exfat {
    dir: std::path::PathBuf,
    loop_dev: String,
}

impl Exfat {
    pub fn mount(s: &Scene, peer: &str, dir: &Path) -> Option<Exfat> {
        use std::process::Command;
        let have = |tool: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let tools = have("mkfs.exfat") && have("mount.exfat-fuse") && have("losetup");
        if !super::have(tools, "exfat-fuse, exfatprogs and losetup") {
            return None;
        }
        let img = s.rig.dir.join(format!("{}.exfat", s.name));
        let f = fs::File::create(&img).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        let ok = |c: &mut Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        };
        ok(Command::new("mkfs.exfat").arg(&img));
        let loop_dev = ok(Command::new("losetup").args(["-f", "--show"]).arg(&img));
        fs::create_dir_all(dir).unwrap();
        s.own(peer, dir);
        let u = user(peer);
        ok(Command::new("mount.exfat-fuse")
            .arg("-o")
            .arg(format!("allow_other,uid={},gid={}", u.uid, u.gid))
            .arg(&loop_dev)
            .arg(dir));
        Some(Exfat {
            dir: dir.to_path_buf(),
            loop_dev,
        })
    }
}

impl Drop for Exfat {
    fn drop(&mut self) {
        use std::process::Command;
        super::unmount(&self.dir);
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.loop_dev)
            .status();
    }
}
