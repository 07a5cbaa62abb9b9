//! `v6build verify`: rebuild from the pinned inputs in a fresh, empty cache
//! and compare every output with the release on disk and its manifest.

use std::path::{Path, PathBuf};

use v6build_fstree::{MemBlobs, diff};

use crate::manifest::Manifest;
use crate::{Config, Outcome, Verbosity};

/// Runs verify for a recipe or a release directory.
pub fn verify(cfg: &Config, target: &Path) -> Outcome {
    let (recipe_path, release_dir): (PathBuf, Option<PathBuf>) = if target.is_dir() {
        let mpath = target.join("manifest.json");
        let m: Manifest = match std::fs::read(&mpath)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return Outcome::Failure(format!("reading {}: {e}", mpath.display())),
        };
        (PathBuf::from(&m.recipe.path), Some(target.to_path_buf()))
    } else {
        (target.to_path_buf(), None)
    };
    let r = match v6build_engine::recipe::load(&recipe_path) {
        Ok(r) => r,
        Err(e) => return crate::cmd::recipe_error(e),
    };
    let release_dir = release_dir.unwrap_or_else(|| cfg.out_dir.join(&r.release.dir));
    let mpath = release_dir.join("manifest.json");
    let recorded: Manifest = match std::fs::read(&mpath)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            return Outcome::Failure(format!(
                "reading {}: {e} (build the release first)",
                mpath.display()
            ));
        }
    };
    // The scratch cache and output live under --out, the only place besides
    // the cache v6build writes to, and are removed afterwards.
    let scratch = cfg
        .out_dir
        .join(format!(".v6build-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = (|| {
        let store = v6build_cache::Store::open(scratch.join("cache"))
            .map_err(|e| Outcome::Failure(format!("cannot create the scratch cache: {e}")))?;
        let quiet = Config {
            // The scratch build is an implementation detail: quiet unless -v.
            verbosity: if cfg.verbosity >= Verbosity::Verbose {
                Verbosity::Normal
            } else {
                Verbosity::Quiet
            },
            ..cfg.clone()
        };
        crate::build::build(&quiet, &store, &recipe_path, &r, &scratch.join("out"))
    })();
    let summary = match result {
        Ok(s) => s,
        Err(o) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return o;
        }
    };
    let mut problems = Vec::new();
    for out in &summary.manifest.outputs {
        let on_disk = release_dir.join(&out.path);
        let disk_sha = v6build_engine::recipe::sha256_file(&on_disk)
            .ok()
            .map(|s| s.to_hex());
        let rec = recorded.outputs.iter().find(|o| o.path == out.path);
        if rec.map(|o| &o.sha256) != Some(&out.sha256) {
            problems.push(format!(
                "{}: rebuilt sha256 {} differs from the manifest's {}",
                out.path,
                out.sha256,
                rec.map_or("(absent)", |o| o.sha256.as_str())
            ));
        }
        if disk_sha.as_deref() != Some(out.sha256.as_str()) {
            problems.push(format!(
                "{}: the file in {} ({}) differs from the rebuild",
                out.path,
                release_dir.display(),
                disk_sha.as_deref().unwrap_or("missing")
            ));
            // Explain the difference inside the image.
            if out.path.ends_with(".img") && disk_sha.is_some() {
                let blobs = MemBlobs::new();
                let rebuilt = summary.release_dir.join(&out.path);
                match (
                    crate::inspect::read_image(&rebuilt, &blobs, false),
                    crate::inspect::read_image(&on_disk, &blobs, false),
                ) {
                    (Ok(a), Ok(b)) => {
                        let changes = diff(&a, &b);
                        if changes.is_empty() {
                            problems.push("  (same tree; the image encoding differs)".into());
                        }
                        for c in changes {
                            problems.push(format!("  {c}"));
                        }
                    }
                    (_, Err(e)) | (Err(e), _) => problems.push(format!("  cannot read: {e}")),
                }
            }
        }
    }
    for rec in &recorded.outputs {
        if !summary.manifest.outputs.iter().any(|o| o.path == rec.path) {
            problems.push(format!("{}: in the manifest but not rebuilt", rec.path));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if problems.is_empty() {
        if cfg.json {
            outln!(
                "{}",
                serde_json::json!({ "verified": true, "release": release_dir.display().to_string() })
            );
        } else if cfg.verbosity >= Verbosity::Normal {
            eprintln!(
                "verified {}: {} outputs match a clean rebuild",
                release_dir.display(),
                summary.manifest.outputs.len()
            );
        }
        Outcome::Success
    } else {
        if cfg.json {
            outln!(
                "{}",
                serde_json::json!({ "verified": false, "problems": problems })
            );
        }
        Outcome::Failure(format!(
            "{} does not match a clean rebuild:\n{}",
            release_dir.display(),
            problems.join("\n")
        ))
    }
}
