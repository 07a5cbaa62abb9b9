//! `cargo xtask fuzz-smoke [SECONDS]`: builds every cargo-fuzz target of the
//! top-level `fuzz/` project and runs each for a bounded time, failing on
//! any crash, hang (an input over the per-input timeout) or build error.
//!
//! This is the CI-sized slice of the robustness campaign (issue 8); longer
//! local runs and their results are recorded in `book/src/robustness.md`.
//! cargo-fuzz is an optional tool: without it the step is skipped with a
//! message, unless `V6BUILD_REQUIRE_ORACLES=1` (as for the test oracles),
//! so a CI that promised the tools cannot silently skip it.
//!
//! Targets are built with `--sanitizer none`: the workspace forbids
//! `unsafe_code`, so AddressSanitizer would mostly police dependencies, and
//! without it the build works on the stable toolchain (no `-Z` flags).
//! cargo-fuzz's default build keeps debug assertions and overflow checks,
//! so an arithmetic overflow on hostile input is a crash here.
//!
//! The targets build into their own target directory
//! (`V6BUILD_FUZZ_TARGET_DIR`, else `fuzz/target`), never the one in
//! `CARGO_TARGET_DIR`: their release profile, `--cfg fuzzing` and
//! coverage flags would otherwise evict or relock the main build's
//! artifacts, and CI runs this right after `cargo xtask check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Seconds each target runs when no argument is given.
pub const DEFAULT_SECONDS: u64 = 60;

/// Per-input time limit: an input that takes longer is reported as a hang.
const INPUT_TIMEOUT_SECS: u64 = 25;

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn require_tools() -> bool {
    std::env::var("V6BUILD_REQUIRE_ORACLES").is_ok_and(|v| v == "1")
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("fuzz").current_dir(root);
    cmd
}

/// Where the fuzz targets are built: `V6BUILD_FUZZ_TARGET_DIR`, else the
/// fuzz project's own `fuzz/target` (ignored by git).
fn fuzz_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("V6BUILD_FUZZ_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join("fuzz/target"),
    }
}

/// The files directly in `dir` (empty when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Parses the optional SECONDS argument.
pub fn parse_seconds(arg: Option<&str>) -> Result<u64, String> {
    match arg {
        None => Ok(DEFAULT_SECONDS),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "fuzz-smoke: SECONDS must be a positive integer, not `{s}`"
            )),
        },
    }
}

/// Runs the smoke campaign; true when every target built and ran its time
/// without a crash (or cargo-fuzz is absent and not required).
pub fn fuzz_smoke(seconds: u64) -> bool {
    let root = root();
    let started = Instant::now();
    let installed = cargo_fuzz(&root)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        if require_tools() {
            eprintln!(
                "==> fuzz-smoke: cargo-fuzz is not installed and V6BUILD_REQUIRE_ORACLES=1 \
                 (install it with `cargo install cargo-fuzz`)"
            );
            return false;
        }
        eprintln!(
            "==> fuzz-smoke: SKIP: cargo-fuzz is not installed (`cargo install cargo-fuzz`); \
             set V6BUILD_REQUIRE_ORACLES=1 to make this an error"
        );
        return true;
    }

    let targets = match cargo_fuzz(&root).arg("list").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        Ok(o) => {
            eprintln!(
                "==> fuzz-smoke: `cargo fuzz list` failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return false;
        }
        Err(e) => {
            eprintln!("==> fuzz-smoke: cannot run `cargo fuzz list`: {e}");
            return false;
        }
    };
    if targets.is_empty() {
        eprintln!("==> fuzz-smoke: `cargo fuzz list` found no targets");
        return false;
    }

    let target_dir = fuzz_target_dir(&root);
    eprintln!(
        "==> fuzz-smoke: building {} targets into {}",
        targets.len(),
        target_dir.display()
    );
    let build = cargo_fuzz(&root)
        .args(["build", "--sanitizer", "none", "--target-dir"])
        .arg(&target_dir)
        .status();
    if !build.is_ok_and(|s| s.success()) {
        eprintln!("==> fuzz-smoke: build failed");
        return false;
    }
    let built = started.elapsed();
    eprintln!("==> fuzz-smoke: built in {:.0?}", built);

    let mut failed = Vec::new();
    for t in &targets {
        let t0 = Instant::now();
        let artifacts = root.join("fuzz/artifacts").join(t);
        let before = files_in(&artifacts);
        let mut cmd = cargo_fuzz(&root);
        cmd.args(["run", "--sanitizer", "none", "--target-dir"])
            .arg(&target_dir)
            .arg(t);
        // The working corpus first (new inputs go there), then the
        // committed regression inputs, which every run replays.
        cmd.arg(root.join("fuzz/corpus").join(t));
        let regressions = root.join("tests/hostile/fuzz").join(t);
        if regressions.is_dir() {
            cmd.arg(&regressions);
        }
        cmd.args([
            "--".to_owned(),
            format!("-max_total_time={seconds}"),
            format!("-timeout={INPUT_TIMEOUT_SECS}"),
            "-rss_limit_mb=2048".to_owned(),
            "-print_final_stats=1".to_owned(),
        ]);
        if let Err(e) = std::fs::create_dir_all(root.join("fuzz/corpus").join(t)) {
            eprintln!("==> fuzz-smoke: {t}: cannot create its corpus directory: {e}");
            failed.push(t.clone());
            continue;
        }
        eprintln!("==> fuzz-smoke: {t} for {seconds} s");
        match cmd.status() {
            Ok(s) if s.success() => {
                eprintln!("==> fuzz-smoke: {t}: ok in {:.0?}", t0.elapsed());
            }
            Ok(s) => {
                // libFuzzer names the input it stopped on (crash-, leak-,
                // timeout-, oom-<sha1>) in the target's artifacts directory;
                // name the new ones so a CI log alone says what to replay.
                let new: Vec<PathBuf> = files_in(&artifacts)
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                eprintln!("==> fuzz-smoke: {t}: FAILED ({s})");
                if new.is_empty() {
                    eprintln!(
                        "==> fuzz-smoke: {t}: no new input in {}; see the output above",
                        artifacts.display()
                    );
                }
                for p in &new {
                    eprintln!("==> fuzz-smoke: {t}: crashing input: {}", p.display());
                    eprintln!(
                        "==> fuzz-smoke: {t}: replay with: cargo fuzz run --sanitizer none \
                         --target-dir {} {t} {}",
                        target_dir.display(),
                        p.display()
                    );
                }
                failed.push(t.clone());
            }
            Err(e) => {
                eprintln!("==> fuzz-smoke: {t}: could not start: {e}");
                failed.push(t.clone());
            }
        }
    }
    eprintln!(
        "==> fuzz-smoke: {} targets, build {:.0?}, total {:.0?}",
        targets.len(),
        built,
        started.elapsed()
    );
    if failed.is_empty() {
        true
    } else {
        eprintln!("==> fuzz-smoke: failed: {}", failed.join(", "));
        false
    }
}
