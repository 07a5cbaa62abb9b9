//! Helpers shared by every crate's tests.
//!
//! - [`hostdir`]: a host directory (fixture, extraction, mount) read into
//!   a tree, with its xattrs from `getfattr`.
//! - [`fixtures`]: paths, file leaves and incompressible bytes for test
//!   trees.
//! - [`truncation`]: the truncation sweep every image reader gets.
//! - [`http`]: a local HTTP(S) server for fetch tests.
//!
//! Tests that need an outside oracle (mksquashfs, e2fsck, GNU cpio, a root
//! loop mount, qemu) call [`oracle`] or [`require_root`]. When the oracle is
//! missing the test prints why and returns early (a skip), unless
//! `V6BUILD_REQUIRE_ORACLES=1` is set, as `.ci/run` does; then a missing
//! oracle fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod fixtures;
pub mod hostdir;
pub mod http;
pub mod truncation;

pub use hostdir::{DirRead, tree_from_dir};

/// Whether missing oracles must fail tests instead of skipping them.
pub fn oracles_required() -> bool {
    std::env::var_os("V6BUILD_REQUIRE_ORACLES").is_some_and(|v| v == "1")
}

/// Skips a test for `reason` (prints a `SKIP` line), or fails it under
/// `V6BUILD_REQUIRE_ORACLES=1`.
pub fn skip_or_fail(test: &str, reason: &str) {
    if oracles_required() {
        panic!("{test}: {reason}, and V6BUILD_REQUIRE_ORACLES=1 forbids skipping");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Finds `tool` on `PATH` (and in the sbin directories, where e2fsprogs
/// lives). Returns `None`, after printing a skip line, if it is missing.
pub fn oracle(test: &str, tool: &str) -> Option<PathBuf> {
    match which(tool) {
        Some(p) => Some(p),
        None => {
            skip_or_fail(test, &format!("oracle `{tool}` is not installed"));
            None
        }
    }
}

/// Looks `tool` up on `PATH`, `/usr/sbin` and `/sbin`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root (needed for loop mounts).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Returns true if the test may use root-only facilities (loop mounts);
/// otherwise prints a skip line (or fails under `V6BUILD_REQUIRE_ORACLES=1`).
pub fn require_root(test: &str) -> bool {
    if is_root() {
        true
    } else {
        skip_or_fail(test, "needs root for a loop mount");
        false
    }
}

/// Runs a command, panicking with its stderr if it fails. For test set-up only.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Mounts the image `img` of type `fstype` read-only on `at` through a
/// loop device, with the `mount` tool at `mount`. Where loop mounts are
/// unavailable (no root, no loop devices in a sandbox) it prints a skip
/// line and returns false, or fails the test under
/// `V6BUILD_REQUIRE_ORACLES=1`. Call [`require_root`] first where the
/// test should skip without root.
pub fn loop_mount(test: &str, mount: &Path, fstype: &str, img: &Path, at: &Path) -> bool {
    let out = Command::new(mount)
        .args(["-t", fstype, "-o", "loop,ro"])
        .arg(img)
        .arg(at)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", mount.display()));
    if out.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&out.stderr);
    skip_or_fail(test, &format!("loop mount failed: {}", why.trim()));
    false
}
