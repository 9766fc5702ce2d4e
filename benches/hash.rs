//! Hashing throughput: synk's file hasher against `sha512sum` on the same 1 GiB file, in the
//! same run. Prints MB/s for both and the ratio (goal: >= 1.0).
//!
//! `cargo bench --bench hash` (set SYNK_BENCH_FILE to hash an existing file instead).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;
const ROUNDS: usize = 3;

fn best_of(mut f: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("at least one round")
}

fn main() {
    let (path, _keep) = match std::env::var_os("SYNK_BENCH_FILE") {
        Some(p) => (PathBuf::from(p), None),
        None => {
            let mut f = tempfile::NamedTempFile::new().expect("temp file");
            // Pseudo-random, so neither side can shortcut anything.
            let mut x: u64 = 0x2545F4914F6CDD1D;
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..(SIZE >> 20) {
                for c in buf.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    c.copy_from_slice(&x.to_le_bytes());
                }
                f.write_all(&buf).expect("write");
            }
            f.flush().expect("flush");
            (f.path().to_path_buf(), Some(f))
        }
    };
    let size = std::fs::metadata(&path).expect("bench file").len() as f64;
    // Warm the page cache so both sides read from memory.
    let _ = std::fs::read(&path);
    let mut ours = String::new();
    let synk = best_of(|| {
        let meta = synk::scan::hash_file(&path).expect("hash");
        ours = meta.0.digest.expect("digest").hex();
    });
    let mut theirs = String::new();
    let reference = best_of(|| {
        let out = Command::new("sha512sum")
            .arg(&path)
            .output()
            .expect("sha512sum");
        theirs = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    });
    assert_eq!(ours, theirs, "synk and sha512sum disagree");
    let mbs = |d: Duration| size / d.as_secs_f64() / 1e6;
    println!(
        "file: {} ({:.0} MiB), best of {ROUNDS}",
        path.display(),
        size / 1048576.0
    );
    println!("synk hash   {:8.1} MB/s", mbs(synk));
    println!("sha512sum   {:8.1} MB/s", mbs(reference));
    println!(
        "ratio synk/sha512sum: {:.2}x (goal >= 1.00)",
        reference.as_secs_f64() / synk.as_secs_f64()
    );
}
