//! `cargo xtask repro`: builds the demo recipe under varied conditions, in
//! the spirit of reprotest, and requires identical manifests.
//!
//! Variations: build path, umask 022/077, TZ, LANG, 1 thread vs all,
//! cold vs warm cache, and (when `faketime` is installed) a clock set
//! years ahead. On a mismatch it prints `v6build verify`'s tree-level diff
//! of the first differing output.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Variant {
    name: &'static str,
    umask: &'static str,
    tz: &'static str,
    lang: &'static str,
    jobs: &'static str,
    warm: bool,
    faketime: bool,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "reference",
        umask: "022",
        tz: "UTC",
        lang: "C",
        jobs: "1",
        warm: false,
        faketime: false,
    },
    Variant {
        name: "umask077-chatham-tr",
        umask: "077",
        tz: "Pacific/Chatham",
        lang: "tr_TR.UTF-8",
        jobs: "0",
        warm: false,
        faketime: false,
    },
    Variant {
        name: "warm-cache",
        umask: "022",
        tz: "UTC",
        lang: "C",
        jobs: "2",
        warm: true,
        faketime: false,
    },
    Variant {
        name: "all-threads-other-path",
        umask: "002",
        tz: "Asia/Kolkata",
        lang: "C.UTF-8",
        jobs: "0",
        warm: false,
        faketime: false,
    },
    Variant {
        name: "clock-years-ahead",
        umask: "022",
        tz: "UTC",
        lang: "C",
        jobs: "0",
        warm: false,
        faketime: true,
    },
];

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the harness; returns whether every variant matched.
pub fn repro() -> bool {
    eprintln!("==> repro: building v6build (dev profile)");
    let ok = Command::new("cargo")
        .args(["build", "-p", "v6build"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return false;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    // The dev build that `cargo test` already made: no second, release
    // compile in CI (dependencies are optimised in the dev profile anyway).
    let bin = std::fs::canonicalize(target.join("debug/v6build")).unwrap_or_default();
    let root = std::env::temp_dir().join(format!("v6build-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut reference: Option<(String, PathBuf)> = None;
    let mut all_ok = true;
    let shared_cache = root.join("shared-cache");
    for (i, v) in VARIANTS.iter().enumerate() {
        if v.faketime && !have("faketime") {
            eprintln!("==> repro: {}: SKIP (faketime not installed)", v.name);
            continue;
        }
        // A different build path for every variant.
        let work = root.join(format!("{i}-{}", v.name)).join("deep/er/path");
        if let Err(e) = copy_dir(Path::new("recipes"), &work.join("recipes")) {
            eprintln!("==> repro: copying recipes: {e}");
            return false;
        }
        let cache = if v.warm {
            shared_cache.clone()
        } else {
            work.join("cache")
        };
        let mut script = format!(
            "umask {}; exec {} --cache '{}' --out out -q build recipes/demo.kdl",
            v.umask,
            bin.display(),
            cache.display()
        );
        if v.jobs != "0" {
            script = script.replace(" -q build", &format!(" -q -j {} build", v.jobs));
        }
        if v.faketime {
            script = format!(
                "exec faketime '2041-06-01 12:00:00' sh -c \"{}\"",
                script.replace('"', "\\\"")
            );
        }
        if v.warm {
            // Fill the cache first, then build again from it.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(&script)
                .current_dir(&work)
                .status();
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&work)
            .env("TZ", v.tz)
            .env("LANG", v.lang)
            .env("LC_ALL", v.lang)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("==> repro: {}: build failed", v.name);
            all_ok = false;
            continue;
        }
        let manifest =
            std::fs::read_to_string(work.join("out/demo/1.0/manifest.json")).unwrap_or_default();
        match &reference {
            None => {
                eprintln!("==> repro: {}: reference built", v.name);
                reference = Some((manifest, work.join("out/demo/1.0")));
            }
            Some((m, ref_dir)) if *m == manifest => {
                eprintln!("==> repro: {}: identical manifest", v.name);
                let _ = ref_dir;
            }
            Some((_, ref_dir)) => {
                eprintln!("==> repro: {}: MANIFEST DIFFERS", v.name);
                all_ok = false;
                // verify the other build's release against the reference recipe: prints the tree diff.
                let _ = Command::new(&bin)
                    .args([
                        "--cache",
                        &root.join("verify-cache").display().to_string(),
                        "--out",
                    ])
                    .arg(ref_dir.parent().and_then(Path::parent).unwrap_or(ref_dir))
                    .arg("verify")
                    .arg(work.join("out/demo/1.0"))
                    .current_dir(&work)
                    .status();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    all_ok
}
