//! Housekeeping of releases: `v6build release ls` / `release rm` (a
//! release's gc root), gc's default, and the guard that keeps a build from
//! deleting files a user put into a release directory by hand.
//!
//! Why `release rm NAME` rather than `gc --keep-releases`: a release root
//! stays until removed, and removing it is a decision about one release,
//! not a gc policy; the command names the thing the user thinks of, `ls`
//! shows the names it takes, and `gc` stays one thing (collect what no
//! root keeps). The release directory under `--out` is the user's: `rm`
//! leaves it alone, and the next `gc` frees what only that release kept.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;
use v6build_cache::{RootKind, Store, StoreOptions};

use crate::error::DriverError;
use crate::{Config, Outcome, Verbosity};

/// How many build roots `gc` keeps unless told otherwise: the number every
/// build keeps (the store's default), so `gc` alone never drops a build
/// root that the last build kept.
pub fn default_keep_builds() -> usize {
    StoreOptions::default().keep_builds
}

/// The gc root name of a release directory (`7.x/7.2r5` → `7.x_7.2r5`).
pub fn root_name(release_dir: &str) -> String {
    release_dir.replace('/', "_")
}

fn open(cfg: &Config) -> Result<Store, Outcome> {
    Store::open(&cfg.cache_dir).map_err(|e| {
        crate::failed(
            format!("cannot open the cache {}", cfg.cache_dir.display()),
            e,
        )
    })
}

/// `v6build release ls`: the releases the cache keeps (their gc roots).
pub fn ls(cfg: &Config, out: &mut dyn std::io::Write) -> Outcome {
    let store = match open(cfg) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let roots = match store.roots() {
        Ok(r) => r,
        Err(e) => return crate::failed("reading the gc roots", e),
    };
    let names: Vec<(String, usize)> = roots
        .iter()
        .filter(|r| r.kind == RootKind::Release)
        .map(|r| (r.name.clone(), r.digests.len()))
        .collect();
    if cfg.json {
        let v: Vec<serde_json::Value> = names
            .iter()
            .map(|(n, d)| json!({ "name": n, "digests": d }))
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "releases": v })).unwrap_or_default()
        );
    } else {
        for (n, d) in &names {
            let _ = writeln!(out, "{n}  ({d} roots)");
        }
    }
    Outcome::Success
}

/// `v6build release rm NAME...`: drops each release's gc root, so that the
/// next `gc` frees what only it kept. NAME is the recipe's `dir` (`7.x/7.2r5`)
/// or the root's name as `release ls` prints it (`7.x_7.2r5`). A name with
/// no root is an error (exit 1) after the others are removed.
/// What it did goes to `err` (not with `-q` or `--json`).
pub fn rm(cfg: &Config, names: &[String], err: &mut dyn std::io::Write) -> Outcome {
    let store = match open(cfg) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mut unknown = Vec::new();
    for name in names {
        let root = root_name(name.trim_matches('/'));
        match store.remove_root(RootKind::Release, &root) {
            Ok(true) => {
                if cfg.verbosity >= Verbosity::Normal && !cfg.json {
                    let _ = writeln!(
                        err,
                        "removed the gc root of release {root}; `v6build gc` frees what only it \
                         kept (the release directory under --out is left alone)"
                    );
                }
            }
            Ok(false) => unknown.push(root),
            Err(e) => return crate::failed(format!("removing the root of {name}"), e),
        }
    }
    if unknown.is_empty() {
        Outcome::Success
    } else {
        Outcome::Error(DriverError::Check(format!(
            "no release root named {}; `v6build release ls` lists them",
            unknown.join(", ")
        )))
    }
}

/// Refuses to build over a release directory that holds files the last
/// build did not write there (the build replaces the whole directory, so
/// they would be deleted): every file must be `manifest.json`, one of its
/// `outputs`, or one of the recipe's `extra` files (which the build
/// keeps). A directory without `manifest.json` holds only extra files.
pub fn check_hand_files(out_dir: &Path, rel_dir: &str, extra: &[String]) -> Result<(), Outcome> {
    let dest = out_dir.join(rel_dir);
    let Ok(md) = std::fs::symlink_metadata(&dest) else {
        return Ok(());
    };
    if !md.is_dir() {
        return Err(Outcome::Error(DriverError::Check(format!(
            "{} is in the way of the release: it is not a directory; move it away",
            dest.display()
        ))));
    }
    let entries = crate::release::release_entries(&dest)
        .map_err(|e| crate::failed(format!("reading {}", dest.display()), e))?;
    let mut known: BTreeSet<String> = extra.iter().cloned().collect();
    if let Ok(bytes) = std::fs::read(dest.join("manifest.json"))
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(outputs) = v["outputs"].as_array()
    {
        known.insert("manifest.json".into());
        known.extend(
            outputs
                .iter()
                .filter_map(|o| o["path"].as_str().map(str::to_string)),
        );
    }
    let foreign: Vec<&String> = entries.keys().filter(|k| !known.contains(*k)).collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = foreign.iter().take(10).map(|s| s.as_str()).collect();
    let more = foreign.len().saturating_sub(shown.len());
    Err(Outcome::Error(DriverError::Check(format!(
        "{} holds {} file(s) that are not part of the release v6build wrote there: {}{}; \
         a build replaces the whole directory and would delete them, so nothing was built. \
         Move them out of the release directory (serve them from a sibling directory), \
         or declare each in the recipe's release block (`extra-file \"PATH\"`) to keep it, \
         then build again",
        dest.display(),
        foreign.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))))
}
