//! Disk-full faults (issue 8): the demo build runs with its output and
//! cache on a small tmpfs that fills up partway. The build must fail with a
//! clear "no space" error (never a panic), leave no partial release and no
//! stray temporary files, and trust no damaged cache entry: once the tmpfs
//! is enlarged, the next build on the same cache gives the same bytes as a
//! clean build.
//!
//! The sizes are not constants: a first build on a roomy tmpfs measures
//! how much the demo writes, and the faulty sizes are fractions of that, so
//! the failures keep landing early (cache), midway and late (release write)
//! when the demo or the cache layout changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Scratch, output_hashes, repo, stderr};

/// Room for a whole demo build with a wide margin (tmpfs only reserves
/// what is written, so this costs nothing up front).
const ROOMY: u64 = 1 << 30;

/// A tmpfs mounted for the test, unmounted on drop even when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        v6build_testkit::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("tmpfs")
                .arg(dir),
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Changes the size limit; shrinking below what is in use fails, so
    /// callers empty it first.
    fn resize(&self, size: u64) {
        v6build_testkit::run(
            Command::new("mount")
                .arg("-o")
                .arg(format!("remount,size={size}"))
                .arg(&self.dir),
        );
    }

    /// Bytes in use, as the filesystem counts them (whole pages).
    fn used(&self) -> u64 {
        let o = v6build_testkit::run(
            Command::new("df")
                .args(["-B1", "--output=used"])
                .arg(&self.dir),
        );
        let text = String::from_utf8_lossy(&o.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot read df output: {text}"))
    }

    /// Removes everything on it.
    fn wipe(&self) {
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a child that outlived a failed
            // assertion): detach it so the temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The scratch project with its output and cache on the tmpfs, and its
/// own TMPDIR so stray temporary files anywhere else can be seen.
struct Disk {
    // Declared first so it is dropped (unmounted) before the scratch
    // directory holding its mount point is removed.
    fs: Tmpfs,
    scratch: Scratch,
}

impl Disk {
    fn out(&self) -> PathBuf {
        self.fs.dir.join("out")
    }

    fn cache(&self) -> PathBuf {
        self.fs.dir.join("cache")
    }

    fn tmpdir(&self) -> PathBuf {
        self.scratch.path().join("tmpdir")
    }

    fn release(&self) -> PathBuf {
        self.out().join("demo/1.0")
    }

    fn v6build(&self, args: &[&str]) -> Output {
        self.v6build_into(&self.out(), args)
    }

    fn v6build_into(&self, out: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_v6build"))
            .current_dir(self.scratch.path())
            .arg("--cache")
            .arg(self.cache())
            .arg("--out")
            .arg(out)
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("V6BUILD_CACHE")
            .env("TMPDIR", self.tmpdir())
            .output()
            .expect("run v6build")
    }
}

/// The release is whole: its SHA256SUMS is the clean build's (`want`),
/// the manifest agrees, and every file on disk has the listed hash.
fn assert_release_whole(release: &Path, want: &str, when: &str) {
    let sums = std::fs::read_to_string(release.join("SHA256SUMS"))
        .unwrap_or_else(|e| panic!("{when}: release without a readable SHA256SUMS: {e}"));
    assert_eq!(
        sums, want,
        "{when}: release outputs differ from a clean build's"
    );
    let listed: String = output_hashes(release)
        .into_iter()
        .map(|(p, h)| format!("{h}  {p}\n"))
        .collect();
    assert_eq!(listed, sums, "{when}: manifest and SHA256SUMS disagree");
    if let Some(sha256sum) = v6build_testkit::oracle("faults", "sha256sum") {
        v6build_testkit::run(
            Command::new(sha256sum)
                .args(["--check", "--strict", "--quiet", "SHA256SUMS"])
                .current_dir(release),
        );
    }
}

/// Every file under `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                v.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    v.sort();
    v
}

/// What a failed build may leave behind: in the output directory at most a
/// whole release, nothing half-written beside it; in the cache nothing in
/// `tmp/`; nothing in TMPDIR; nothing beside the out and cache directories.
fn assert_no_debris(d: &Disk, want: &str, when: &str) {
    let rel = d.release();
    if rel.exists() {
        assert_release_whole(&rel, want, when);
    }
    let stray: Vec<String> = files_under(&d.out())
        .into_iter()
        .filter(|p| !p.starts_with("demo/1.0/"))
        .collect();
    assert!(stray.is_empty(), "{when}: stray files in --out: {stray:?}");
    let tmp = files_under(&d.cache().join("tmp"));
    assert!(
        tmp.is_empty(),
        "{when}: temporary files left in the cache: {tmp:?}"
    );
    let tmpdir = files_under(&d.tmpdir());
    assert!(
        tmpdir.is_empty(),
        "{when}: files left in TMPDIR: {tmpdir:?}"
    );
    let mut top: Vec<String> = std::fs::read_dir(&d.fs.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert!(
        top.iter().all(|n| n == "out" || n == "cache"),
        "{when}: unexpected entries beside out/ and cache/: {top:?}"
    );
}

/// Builds on the enlarged tmpfs and requires the clean build's release,
/// with no cache entry reported corrupt (none may have been written
/// damaged: a corrupt entry would be caught and rebuilt, hiding the fault).
fn rebuild_gives_the_same_bytes(d: &Disk, want: &str, when: &str) {
    d.fs.resize(ROOMY);
    let o = d.v6build(&["build", "recipes/demo.kdl"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{when}: rebuild failed:\n{err}");
    assert!(
        !err.to_lowercase().contains("corrupt"),
        "{when}: the rebuild found a corrupt cache entry:\n{err}"
    );
    assert_release_whole(&d.release(), want, when);
    assert_no_debris(d, want, when);
    // The rebuild wrote only what the faulty build had not; a build that
    // runs no node reads back what both left (action records, trees and
    // the output blobs, into a fresh release directory), so an entry that
    // was stored damaged and then trusted shows up here.
    let again = d.fs.dir.join("again");
    let o = d.v6build_into(&again, &["build", "--json", "recipes/demo.kdl"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{when}: cached build failed:\n{err}");
    assert!(
        !err.to_lowercase().contains("corrupt"),
        "{when}: the cached build found a corrupt cache entry:\n{err}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary = summary["builds"][0].clone();
    assert_eq!(
        summary["nodes_run"], 0,
        "{when}: not fully cached: {summary}"
    );
    assert_release_whole(&again.join("demo/1.0"), want, when);
    std::fs::remove_dir_all(&again).unwrap();
}

/// Runs a build that must fail because the disk is full: exit code 1,
/// "No space left on device" in the error, no panic.
fn assert_fails_for_space(d: &Disk, when: &str) {
    let o = d.v6build(&["build", "-q", "recipes/demo.kdl"]);
    let err = stderr(&o);
    eprintln!(
        "faults: {when}: exit {:?}, {} bytes in use: {}",
        o.status.code(),
        d.fs.used(),
        err.trim_end()
    );
    assert!(!o.status.success(), "{when}: the build did not fail");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{when}: not a build failure:\n{err}"
    );
    assert!(!err.contains("panicked"), "{when}: panic:\n{err}");
    assert!(
        err.contains("No space left on device"),
        "{when}: the error does not say the disk is full:\n{err}"
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_the_next_build_gives_the_same_bytes() {
    let test = "a_full_disk_fails_cleanly_and_the_next_build_gives_the_same_bytes";
    if !v6build_testkit::require_root(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = Tmpfs::mount(&scratch.path().join("disk"), ROOMY);
    let d = Disk { fs, scratch };
    std::fs::create_dir_all(d.tmpdir()).unwrap();

    // Measure: what a whole build leaves on the filesystem, and how much
    // of that is the release itself (written last).
    let o = d.v6build(&["build", "recipes/demo.kdl"]);
    assert!(o.status.success(), "roomy build failed:\n{}", stderr(&o));
    // The clean build is the reference, and must be the pinned golden
    // release (re-blessed by `engine::demo_output_digests_are_pinned`).
    let want = std::fs::read_to_string(d.release().join("SHA256SUMS")).unwrap();
    let golden = std::fs::read_to_string(repo().join("tests/golden/demo-outputs.sha256")).unwrap();
    assert_eq!(want, golden, "the clean demo build is not the golden one");
    assert_release_whole(&d.release(), &want, "roomy build");
    let total = d.fs.used();
    let release: u64 = files_under(&d.release())
        .iter()
        .map(|p| std::fs::metadata(d.release().join(p)).unwrap().len())
        .sum();
    eprintln!("faults: a whole demo build uses {total} bytes, the release {release}");
    assert!(release < total, "release {release} of total {total}");

    // Sizes from an eighth of a whole build up to seven eighths, then one
    // halfway through the release: the failures land in the first cache
    // writes, in each later node's, and in the release copy (seen: the
    // stage2 scan, stage2 unpack, the release directory). Rounded down to
    // pages, as tmpfs counts them; each is below what a whole build needs.
    let page = |n: u64| n / 4096 * 4096;
    let mut sizes: Vec<(String, u64)> = (1..8)
        .map(|k| (format!("{k}/8 of a build"), page(total * k / 8)))
        .collect();
    sizes.push(("mid-release".to_owned(), page(total - release / 2)));
    for (name, size) in sizes {
        let when = format!("{name} ({size} bytes)");
        d.fs.wipe();
        d.fs.resize(size);
        assert_fails_for_space(&d, &when);
        assert_no_debris(&d, &want, &when);
        rebuild_gives_the_same_bytes(&d, &want, &when);
    }

    // The release left by the last rebuild matches a fresh build.
    let o = d.v6build(&["verify", "recipes/demo.kdl"]);
    assert!(o.status.success(), "verify failed:\n{}", stderr(&o));
    assert_no_debris(&d, &want, "after verify");

    // Replacing a release on a full disk keeps the old one whole. A changed
    // hook gives a new release; building it once into another directory
    // puts every node in the cache, so the faulty build below runs no node
    // and fails in the release write itself, with the old release in place.
    let hook = d.scratch.path().join("recipes/files/fix-ipv6-only.sh");
    let mut text = std::fs::read_to_string(&hook).unwrap();
    text.push_str("# changed by the disk-full test\n");
    std::fs::write(&hook, text).unwrap();
    let side = d.fs.dir.join("side");
    let o = d.v6build_into(&side, &["build", "-q", "recipes/demo.kdl"]);
    assert!(o.status.success(), "side build failed:\n{}", stderr(&o));
    let want_new = std::fs::read_to_string(side.join("demo/1.0/SHA256SUMS")).unwrap();
    assert_ne!(
        want_new, want,
        "the changed hook did not change the release"
    );
    std::fs::remove_dir_all(&side).unwrap();
    let when = "replacing a release";
    d.fs.resize(page(d.fs.used() + release / 2));
    assert_fails_for_space(&d, when);
    assert!(d.release().exists(), "{when}: the old release is gone");
    assert_no_debris(&d, &want, when);
    rebuild_gives_the_same_bytes(&d, &want_new, when);
}
