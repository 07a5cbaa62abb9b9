//! `cargo xtask repro`: builds the demo recipe under varied conditions, in
//! the spirit of reprotest, and requires identical manifests. When the
//! benchmark's inputs exist (`bench/run.sh` made `bench/work/`), it does the
//! same for the EL7-shaped stage2 recipe (a 1 GiB ext4 `rootfs.img` in a
//! 110 MiB squashfs); CI has no such inputs and runs the demo only.
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

/// What one harness run builds.
struct Subject {
    name: &'static str,
    /// Directory copied to `<work>/recipes`.
    recipes: &'static str,
    /// Recipe, relative to `<work>`.
    recipe: &'static str,
    /// Release directory, relative to `<work>/out`.
    release: &'static str,
}

const DEMO: Subject = Subject {
    name: "demo",
    recipes: "recipes",
    recipe: "recipes/demo.kdl",
    release: "demo/1.0",
};

const EL7: Subject = Subject {
    name: "el7",
    recipes: "bench/work/recipes",
    recipe: "recipes/el7-base.kdl",
    release: "el7-base",
};

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
    let mut ok = run_subject(&bin, &DEMO);
    if Path::new(EL7.recipes).join("el7-base.kdl").is_file() {
        ok &= run_subject(&bin, &EL7);
    } else {
        eprintln!(
            "==> repro: el7: SKIP (no {}/el7-base.kdl; `sudo bench/run.sh --only el7` makes it)",
            EL7.recipes
        );
    }
    ok
}

fn run_subject(bin: &Path, subject: &Subject) -> bool {
    eprintln!("==> repro: {}", subject.name);
    let root = std::env::temp_dir().join(format!(
        "v6build-repro-{}-{}",
        subject.name,
        std::process::id()
    ));
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
        if let Err(e) = copy_dir(Path::new(subject.recipes), &work.join("recipes")) {
            eprintln!("==> repro: copying recipes: {e}");
            return false;
        }
        let cache = if v.warm {
            shared_cache.clone()
        } else {
            work.join("cache")
        };
        let mut script = format!(
            "umask {}; exec {} --cache '{}' --out out -q build {}",
            v.umask,
            bin.display(),
            cache.display(),
            subject.recipe
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
            eprintln!("==> repro: {}/{}: build failed", subject.name, v.name);
            all_ok = false;
            continue;
        }
        let release = work.join("out").join(subject.release);
        let manifest = std::fs::read_to_string(release.join("manifest.json")).unwrap_or_default();
        match &reference {
            None => {
                eprintln!("==> repro: {}/{}: reference built", subject.name, v.name);
                reference = Some((manifest, release.clone()));
            }
            Some((m, ref_dir)) if *m == manifest => {
                eprintln!("==> repro: {}/{}: identical manifest", subject.name, v.name);
                let _ = ref_dir;
            }
            Some((_, ref_dir)) => {
                eprintln!("==> repro: {}/{}: MANIFEST DIFFERS", subject.name, v.name);
                all_ok = false;
                // verify the other build's release against the reference recipe: prints the tree diff.
                let _ = Command::new(bin)
                    .args([
                        "--cache",
                        &root.join("verify-cache").display().to_string(),
                        "--out",
                    ])
                    .arg(ref_dir.parent().and_then(Path::parent).unwrap_or(ref_dir))
                    .arg("verify")
                    .arg(&release)
                    .current_dir(&work)
                    .status();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    all_ok
}
