//! Several writers on one store: threads, processes, and processes
//! killed mid-write; and the memory bound of streaming, measured in a
//! child process.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use v6build_cache::{ActionRecord, ObjectKind};
use v6build_fstree::Digest;

#[test]
fn two_threads_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let shared = open(&root);
    let sets: Vec<_> = std::thread::scope(|s| {
        // Two threads with their own store handle, two sharing one.
        let mut handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| write_shared_set(&open(&root))))
            .collect();
        handles.extend((0..2).map(|_| s.spawn(|| write_shared_set(&shared))));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(shared);
    assert!(sets.iter().all(|s| *s == sets[0]));
    let store = open(&root);
    check_set(&store, &sets[0]);
    assert_eq!(store.roots().unwrap().len(), 3, "keep_builds is 3");
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

const HELPER_ENV: &str = "V6BUILD_CACHE_TEST_WRITER_DIR";
const HELPER_MODE: &str = "V6BUILD_CACHE_TEST_WRITER_MODE";

/// Not a test on its own: the body of the child processes spawned by
/// `two_processes_share_a_store` and `sigkill_never_leaves_a_trusted_partial_entry`.
/// Without the environment variable it returns at once.
#[test]
fn child_process_writer() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let store = open(Path::new(&dir));
    let mode = std::env::var(HELPER_MODE).unwrap_or_default();
    if mode == "big" {
        let before = peak_rss_kib();
        let len = 64u64 << 20;
        let mut g = Generated::new(len, 64 * 1024, true);
        let (d, n) = store.put_blob_reader(&mut g).unwrap();
        assert_eq!((d, n), (Digest::from(g.hasher.finalize()), len));
        let mut r = store.open_blob(&d).unwrap();
        assert_eq!(hash_stream(&mut r).unwrap(), (d, len));
        println!("peak_rss_kib {before} {}", peak_rss_kib());
        return;
    }
    if let Some((seed, block)) = mode
        .strip_prefix("loop:")
        .and_then(|m| m.split_once(':'))
        .and_then(|(s, b)| Some((s.parse::<u64>().ok()?, b == "block")))
    {
        // Write until killed (bounded, in case the parent died).
        use std::io::Write;
        /// Announces when half the stream has been read and, when
        /// blocking, waits there on stdin (which the parent never writes)
        /// so its kill lands in the middle of a streaming write.
        struct Announce(Generated, u64, bool, bool);
        impl Read for Announce {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if !self.2 && self.0.remaining <= self.1 / 2 {
                    self.2 = true;
                    println!("halfway");
                    io::stdout().flush()?;
                    if self.3 {
                        io::stdin().read_line(&mut String::new())?;
                    }
                }
                self.0.read(buf)
            }
        }
        for i in 0..200u64 {
            let len = if i % 2 == 0 { (3 << 20) + i } else { 5000 + i };
            let mut g = Generated::new(len, 1 << 16, i % 3 == 0);
            g.x ^= seed << 8;
            let (d, _) = store
                .put_blob_reader(&mut Announce(g, len, false, block))
                .unwrap();
            let td = store.put_tree(&sample_tree(d, len)).unwrap();
            store
                .put_action(
                    &key("loop", td).digest(),
                    &ActionRecord::single("o", blob_output(d, len)),
                )
                .unwrap();
            println!("wrote {i}");
            io::stdout().flush().unwrap();
        }
        return;
    }
    let set = write_shared_set(&store);
    check_set(&store, &set);
    println!("child wrote {} entries", set.len());
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn big_blob_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = spawn_writer(&dir.path().join("store"), "big")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("peak_rss_kib ").nth(1))
        .unwrap_or_else(|| panic!("child did not report: {stdout}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (before, after) = (nums[0], nums[1]);
    eprintln!("64 MiB put and read back; peak RSS {before} KiB before, {after} KiB after");
    // Holding the blob whole would need 64 MiB on top of the baseline.
    assert!(
        after < before + 32 * 1024,
        "peak RSS grew from {before} to {after} KiB storing 64 MiB"
    );
}

fn spawn_writer(root: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, root)
        .env(HELPER_MODE, mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_never_leaves_a_trusted_partial_entry() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tmp_files = || fs::read_dir(root.join("tmp")).map_or(0, |d| d.count());
    let mut left_by_kills = 0;
    for run in 0..12u64 {
        let halfway = run % 2 == 0;
        let mode = if halfway { "block" } else { "run" };
        let mut child = spawn_writer(&root, &format!("loop:{run}:{mode}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = io::BufReader::new(stdout).lines();
        // Kill at a different point each run: half way through a
        // streamed blob, or just after a tree and a record were written.
        let target = if halfway {
            "halfway".to_string()
        } else {
            format!("wrote {}", run % 5)
        };
        for line in lines.by_ref() {
            // libtest may print its "test … " prefix on the same line.
            if line.unwrap().ends_with(&target) {
                break;
            }
        }
        // It may have finished on its own (it is bounded); that is fine.
        let _ = child.kill();
        child.wait().unwrap();
        if halfway {
            left_by_kills += tmp_files();
        }
    }
    // Every entry that is visible is whole and verifies.
    let store = open(&root);
    let mut checked = 0;
    for kind in ObjectKind::ALL {
        for fan in fs::read_dir(root.join(kind.dir_name())).unwrap() {
            let fan = fan.unwrap();
            for f in fs::read_dir(fan.path()).unwrap() {
                let f = f.unwrap();
                let hex = format!(
                    "blake3:{}{}",
                    fan.file_name().to_str().unwrap(),
                    f.file_name().to_str().unwrap()
                );
                let d: Digest = hex.parse().unwrap();
                match kind {
                    ObjectKind::Blob => {
                        hash_stream(&mut store.open_blob(&d).unwrap()).unwrap();
                    }
                    ObjectKind::Tree => {
                        store.get_tree(&d).unwrap();
                    }
                    ObjectKind::Action => {
                        store.get_action(&d).unwrap().unwrap();
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} entries");
    assert!(store.take_corruptions().is_empty());
    // Whatever the kills left in tmp/ went when the store was next opened
    // (their processes are gone), so gc finds nothing there.
    eprintln!("{checked} entries verified; {left_by_kills} temporary files left by the kills");
    assert!(
        left_by_kills >= 6,
        "each kill half way through a stream leaves its temp file"
    );
    assert_eq!(tmp_files(), 0);
    let report = store.gc().unwrap();
    assert_eq!(report.removed_tmp_files, 0);
    assert_eq!(tmp_files(), 0);
}

#[test]
fn two_processes_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("store");
    let children: Vec<_> = (0..2).map(|_| spawn_writer(&root, "set")).collect();
    // This process writes the same set at the same time.
    let store = open(&root);
    let set = write_shared_set(&store);
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("child wrote"),
            "child did not run: {stdout}"
        );
    }
    check_set(&store, &set);
    assert_eq!(store.roots().unwrap().len(), 3);
    drop(store);
    let store = open(&root);
    let report = store.gc().unwrap();
    assert_eq!(report.removed_objects, 0, "{report:?}");
    assert_eq!(report.removed_tmp_files, 0, "{report:?}");
}
