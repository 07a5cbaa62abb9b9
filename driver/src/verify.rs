//! `v6build verify RELEASE_DIR`: prove that a release is what its recipe
//! and inputs make, from anywhere, without writing to the release.
//!
//! 1. **Inputs.** The recipe is found (`--recipe`, or by its recorded path
//!    and digest near the release or the working directory), and the
//!    recipe, every recorded input and every local media file are checked
//!    against their digests. A changed or missing input ends the run with
//!    exit 3: this checkout cannot verify that release.
//! 2. **Tampering.** Every file of the release is checked against the
//!    manifest's `outputs` (size, sha256, BLAKE3); a file that no manifest
//!    lists, or that `SHA256SUMS` lists but the manifest does not, is
//!    reported.
//! 3. **Rebuild.** The release is rebuilt in a fresh temporary cache and
//!    output directory (never the user's cache, never the release), with
//!    the recorded epoch, and every field of the new manifest is compared
//!    with the recorded one; an image whose bytes differ is explained
//!    entry by entry.
//!
//! Exit codes: 0 reproduced, 1 tampered or not reproduced, 2 usage, 3
//! inputs changed or missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::manifest::{Manifest, RecipeRoot, SCHEMA_VERSION};
use crate::{Config, Outcome, Verbosity};

/// Exit code for "inputs changed or missing".
pub const EXIT_INPUTS_CHANGED: u8 = 3;

/// One input that does not match the manifest.
#[derive(Debug, Clone)]
struct InputProblem {
    /// The recorded path (relative to the recipe root).
    path: String,
    /// `changed` or `missing`.
    status: &'static str,
    /// The recorded digest.
    recorded: String,
    /// The digest found, if the file is there.
    found: Option<String>,
}

/// The verdict, for the human and the `--json` report.
#[derive(Debug, Default)]
struct Report {
    release: String,
    recipe: Option<String>,
    inputs: Vec<InputProblem>,
    tampered: Vec<String>,
    differences: Vec<String>,
    outputs: usize,
}

impl Report {
    fn verdict(&self) -> &'static str {
        if !self.inputs.is_empty() {
            "inputs_changed"
        } else if !self.tampered.is_empty() {
            "tampered"
        } else if !self.differences.is_empty() {
            "not_reproduced"
        } else {
            "reproduced"
        }
    }

    fn exit_code(&self) -> u8 {
        match self.verdict() {
            "inputs_changed" => EXIT_INPUTS_CHANGED,
            "reproduced" => 0,
            _ => 1,
        }
    }

    fn json(&self) -> Value {
        json!({
            "release": self.release,
            "recipe": self.recipe,
            "verdict": self.verdict(),
            "exit_code": self.exit_code(),
            "inputs": self.inputs.iter().map(|p| json!({
                "path": p.path, "status": p.status, "recorded": p.recorded, "found": p.found,
            })).collect::<Vec<_>>(),
            "tampered": self.tampered,
            "differences": self.differences,
        })
    }

    fn finish(self, cfg: &Config) -> Outcome {
        if cfg.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&self.json()).unwrap_or_default()
            );
        }
        match self.verdict() {
            "reproduced" => {
                if !cfg.json && cfg.verbosity >= Verbosity::Normal {
                    eprintln!(
                        "verified {}: {} outputs and every manifest field match a clean rebuild",
                        self.release, self.outputs
                    );
                }
                Outcome::Success
            }
            "inputs_changed" => {
                let lines: Vec<String> = self
                    .inputs
                    .iter()
                    .map(|p| match &p.found {
                        Some(f) => {
                            format!("  {} changed: recorded {}, now {f}", p.path, p.recorded)
                        }
                        None => format!("  {} missing (recorded {})", p.path, p.recorded),
                    })
                    .collect();
                Outcome::InputsChanged(format!(
                    "inputs changed, cannot verify this checkout against {}:\n{}",
                    self.release,
                    lines.join("\n")
                ))
            }
            "tampered" => {
                let mut msg = format!(
                    "{} was altered after it was built:\n  {}",
                    self.release,
                    self.tampered.join("\n  ")
                );
                if !self.differences.is_empty() {
                    msg.push_str(&format!(
                        "\nand differs from a clean rebuild:\n  {}",
                        self.differences.join("\n  ")
                    ));
                }
                Outcome::Failure(msg)
            }
            _ => Outcome::Failure(format!(
                "{} is not reproduced by a clean rebuild:\n  {}",
                self.release,
                self.differences.join("\n  ")
            )),
        }
    }
}

/// The largest `manifest.json` verify reads (a real one is a few KiB).
const MAX_MANIFEST: u64 = 16 << 20;

fn read_manifest(release: &Path) -> Result<(Value, Manifest), Outcome> {
    let mpath = release.join("manifest.json");
    // Regular files only, never blocking on a FIFO; a manifest is small.
    let bytes = v6build_engine::host::read_regular_limited(&mpath, MAX_MANIFEST)
        .and_then(|b| {
            if b.len() as u64 > MAX_MANIFEST {
                Err(std::io::Error::other(format!(
                    "larger than {MAX_MANIFEST} bytes"
                )))
            } else {
                Ok(b)
            }
        })
        .map_err(|e| {
            Outcome::Failure(format!(
                "reading {}: {e} (is this a release directory?)",
                mpath.display()
            ))
        })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Outcome::Failure(format!("{}: not JSON: {e}", mpath.display())))?;
    match v.get("schema_version").and_then(Value::as_u64) {
        Some(n) if n == u64::from(SCHEMA_VERSION) => {}
        other => {
            return Err(Outcome::Failure(format!(
                "{}: schema_version {} is not {SCHEMA_VERSION}, the version this v6build reads; \
                 verify it with the v6build that built it ({})",
                mpath.display(),
                other.map_or("(absent)".to_string(), |n| n.to_string()),
                v.get("tool_version")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            )));
        }
    }
    let m: Manifest = serde_json::from_value(v.clone())
        .map_err(|e| Outcome::Failure(format!("{}: {e}", mpath.display())))?;
    Ok((v, m))
}

fn blake3_file(p: &Path) -> Option<String> {
    crate::keys::file_digest(p).ok().map(|d| d.to_string())
}

/// Finds the recipe a manifest records: `D/<recipe.path>` or
/// `D/*/<recipe.path>` for each directory `D` from the release upwards,
/// then from the working directory upwards; the first with the recorded
/// BLAKE3 wins, else the first that exists (it has changed).
fn find_recipe(release: &Path, m: &Manifest) -> Option<PathBuf> {
    let rel = &m.recipe.path;
    let probe = RecipeRoot::of_recorded(Path::new("/x"), "x");
    probe.resolve(rel)?;
    let mut starts = Vec::new();
    if let Ok(r) = std::fs::canonicalize(release) {
        starts.push(r);
    }
    if let Ok(c) = std::env::current_dir().and_then(std::fs::canonicalize) {
        starts.push(c);
    }
    let mut seen = BTreeSet::new();
    let mut first_existing = None;
    for s in starts {
        for dir in s.ancestors() {
            if !seen.insert(dir.to_path_buf()) {
                continue;
            }
            let mut candidates = vec![dir.join(rel)];
            if let Ok(rd) = std::fs::read_dir(dir) {
                let mut subs: Vec<PathBuf> = rd
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path().join(rel))
                    .collect();
                subs.sort();
                candidates.extend(subs);
            }
            for c in candidates {
                if !c.is_file() {
                    continue;
                }
                if blake3_file(&c).as_deref() == Some(m.recipe.blake3.as_str()) {
                    return Some(c);
                }
                first_existing.get_or_insert(c);
            }
        }
    }
    first_existing
}

/// Step 1: the recipe, every recorded input and every local media file
/// against their digests.
fn check_inputs(
    recipe: &Path,
    m: &Manifest,
    report: &mut Report,
) -> Result<Option<v6build_engine::recipe::Recipe>, Outcome> {
    let root = RecipeRoot::of_recorded(recipe, &m.recipe.path);
    let found = blake3_file(recipe);
    if found.as_deref() != Some(m.recipe.blake3.as_str()) {
        report.inputs.push(InputProblem {
            path: m.recipe.path.clone(),
            status: if found.is_some() {
                "changed"
            } else {
                "missing"
            },
            recorded: m.recipe.blake3.clone(),
            found,
        });
    }
    for i in &m.inputs {
        let Some(p) = root.resolve(&i.path) else {
            report.tampered.push(format!(
                "manifest input path {:?} is not a plain relative path",
                i.path
            ));
            continue;
        };
        let found = if std::fs::symlink_metadata(&p).is_ok() {
            Some(
                crate::manifest::input_digest(&p)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|e| format!("unreadable ({e})")),
            )
        } else {
            None
        };
        if found.as_deref() != Some(i.blake3.as_str()) {
            report.inputs.push(InputProblem {
                path: i.path.clone(),
                status: if found.is_some() {
                    "changed"
                } else {
                    "missing"
                },
                recorded: i.blake3.clone(),
                found,
            });
        }
    }
    if !report.inputs.is_empty() {
        return Ok(None);
    }
    let r = v6build_engine::recipe::load(recipe).map_err(crate::cmd::recipe_error)?;
    // Media are checked against the recipe's pins (the recipe is the
    // authority; the manifest's copy of the pins is compared in step 3).
    for mf in r.media.iter().flat_map(|x| x.files.iter()) {
        let rel = root.rel(&mf.path);
        let pin = mf.sha256.map(|s| s.to_hex()).unwrap_or_default();
        match std::fs::metadata(&mf.path) {
            Ok(md) if md.is_file() => {
                let found = sha256_file(&mf.path).ok();
                if found.as_deref() != Some(pin.as_str()) {
                    report.inputs.push(InputProblem {
                        path: rel,
                        status: "changed",
                        recorded: pin,
                        found: Some(found.unwrap_or_else(|| "unreadable".into())),
                    });
                }
            }
            // Fetched media are fetched again, and checked, by the rebuild.
            _ if mf.url.is_some() => {}
            _ => report.inputs.push(InputProblem {
                path: rel,
                status: "missing",
                recorded: pin,
                found: None,
            }),
        }
    }
    Ok(Some(r))
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    Ok(hash_file(p)?.1)
}

/// Size, sha256 and BLAKE3 of a file, in one read.
fn hash_file(p: &Path) -> std::io::Result<(u64, String, String)> {
    // A release file that is a link, FIFO or device is not the file the
    // manifest lists: refuse it without blocking.
    let mut f = v6build_engine::host::open_regular(p)?;
    let mut sha = Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        size,
        hex::encode(sha.finalize()),
        v6build_fstree::Digest::from(b3.finalize()).to_string(),
    ))
}

/// Step 2: the files against the manifest and `SHA256SUMS`. Returns the
/// sha256 of each listed file as found on disk.
fn check_files(release: &Path, m: &Manifest, report: &mut Report) -> BTreeMap<String, String> {
    let mut on_disk = BTreeMap::new();
    let entries = match crate::release::release_entries(release) {
        Ok(e) => e,
        Err(e) => {
            report
                .tampered
                .push(format!("cannot list {}: {e}", release.display()));
            return on_disk;
        }
    };
    let listed: BTreeSet<&str> = m.outputs.iter().map(|o| o.path.as_str()).collect();
    for o in &m.outputs {
        let ok_path = RecipeRoot::of_recorded(Path::new("/x"), "x")
            .resolve(&o.path)
            .is_some();
        if !ok_path {
            report.tampered.push(format!(
                "manifest output path {:?} is not a plain relative path",
                o.path
            ));
            continue;
        }
        match entries.get(&o.path) {
            None => report
                .tampered
                .push(format!("{}: missing from the release", o.path)),
            Some(e) if !e.regular => report
                .tampered
                .push(format!("{}: not a regular file", o.path)),
            Some(e) => match hash_file(&e.path) {
                Err(e) => report.tampered.push(format!("{}: unreadable: {e}", o.path)),
                Ok((size, sha, b3)) => {
                    let mut what = Vec::new();
                    if size != o.size {
                        what.push(format!("size {size}, manifest says {}", o.size));
                    }
                    if sha != o.sha256 {
                        what.push(format!("sha256 {sha}, manifest says {}", o.sha256));
                    }
                    if b3 != o.blake3 {
                        what.push(format!("blake3 {b3}, manifest says {}", o.blake3));
                    }
                    if !what.is_empty() {
                        report.tampered.push(format!(
                            "{}: does not match the manifest: {}",
                            o.path,
                            what.join("; ")
                        ));
                    }
                    on_disk.insert(o.path.clone(), sha);
                }
            },
        }
    }
    for name in entries.keys() {
        if name != "manifest.json" && !listed.contains(name.as_str()) {
            report
                .tampered
                .push(format!("{name}: in the release but in no manifest"));
        }
    }
    if !listed.contains("SHA256SUMS") {
        report
            .tampered
            .push("SHA256SUMS: not listed in the manifest".to_string());
    }
    if let Ok(text) =
        v6build_engine::host::read_regular_limited(&release.join("SHA256SUMS"), MAX_MANIFEST)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    {
        for line in text.lines() {
            let Some((sha, path)) = line.split_once("  ") else {
                report
                    .tampered
                    .push(format!("SHA256SUMS: malformed line {line:?}"));
                continue;
            };
            match m.outputs.iter().find(|o| o.path == path) {
                None => report
                    .tampered
                    .push(format!("{path}: listed in SHA256SUMS but in no manifest")),
                Some(o) if o.sha256 != sha => report.tampered.push(format!(
                    "{path}: SHA256SUMS says {sha}, the manifest {}",
                    o.sha256
                )),
                Some(_) => {}
            }
        }
    }
    on_disk
}

/// The differences between two manifests, field by field. Arrays of
/// objects with a `path` (or `name` and `image`) are matched by it.
fn value_diff(at: &str, recorded: &Value, rebuilt: &Value, out: &mut Vec<String>) {
    fn key(v: &Value) -> Option<String> {
        let o = v.as_object()?;
        if let Some(p) = o.get("path").and_then(Value::as_str) {
            if let Some(n) = o.get("name").and_then(Value::as_str) {
                return Some(format!("{n}:{p}"));
            }
            return Some(p.to_string());
        }
        match (o.get("name"), o.get("image")) {
            (Some(n), Some(i)) => Some(format!("{}:{}", n.as_str()?, i.as_str()?)),
            _ => None,
        }
    }
    match (recorded, rebuilt) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => value_diff(&p, x, y, out),
                    (Some(x), None) => out.push(format!(
                        "manifest {p}: recorded {x}, the rebuild has no such field"
                    )),
                    (None, Some(y)) => {
                        out.push(format!("manifest {p}: absent, the rebuild records {y}"))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(|v| key(v).is_some()) => {
            let ka: Vec<String> = a.iter().filter_map(key).collect();
            let kb: Vec<String> = b.iter().filter_map(key).collect();
            for (k, x) in ka.iter().zip(a) {
                match kb.iter().position(|q| q == k) {
                    Some(j) => value_diff(&format!("{at}[{k}]"), x, &b[j], out),
                    None => out.push(format!(
                        "manifest {at}[{k}]: recorded, but the rebuild has no such entry"
                    )),
                }
            }
            for k in kb.iter().filter(|k| !ka.contains(k)) {
                out.push(format!(
                    "manifest {at}[{k}]: the rebuild has it, the manifest does not"
                ));
            }
            if ka
                .iter()
                .filter(|k| kb.contains(k))
                .ne(kb.iter().filter(|k| ka.contains(k)))
            {
                out.push(format!("manifest {at}: entries in a different order"));
            }
        }
        (x, y) if x != y => out.push(format!("manifest {at}: recorded {x}, rebuilt {y}")),
        _ => {}
    }
}

/// Step 3: a clean rebuild in a temporary directory, compared field by
/// field and byte for byte.
fn rebuild_and_compare(
    cfg: &Config,
    (recipe, r): (&Path, &v6build_engine::recipe::Recipe),
    (release, recorded, m): (&Path, &Value, &Manifest),
    on_disk: &BTreeMap<String, String>,
    report: &mut Report,
) -> Result<(), Outcome> {
    let scratch = tempfile::Builder::new()
        .prefix("v6build-verify-")
        .tempdir()
        .map_err(|e| Outcome::Failure(format!("cannot create a scratch directory: {e}")))?;
    let store = v6build_cache::Store::open(scratch.path().join("cache"))
        .map_err(|e| Outcome::Failure(format!("cannot create the scratch cache: {e}")))?;
    let quiet = Config {
        // The scratch build is an implementation detail: quiet unless -v.
        verbosity: if cfg.verbosity >= Verbosity::Verbose {
            Verbosity::Normal
        } else {
            Verbosity::Quiet
        },
        json: false,
        ..cfg.clone()
    };
    let out = scratch.path().join("out");
    let summary = crate::build::build_at(&quiet, &store, recipe, r, &out, Some(m.epoch))?;
    let rebuilt = serde_json::to_value(&summary.manifest).unwrap_or_default();
    // `reused` says which remote records a build trusted: provenance of
    // that build, not something a clean rebuild can reproduce.
    let mut recorded = recorded.clone();
    if let Some(o) = recorded.as_object_mut() {
        o.remove("reused");
    }
    let mut fields = Vec::new();
    value_diff("", &recorded, &rebuilt, &mut fields);
    report.differences.extend(fields);
    for o in &summary.manifest.outputs {
        let Some(disk) = on_disk.get(&o.path) else {
            continue;
        };
        if disk != &o.sha256 {
            report.differences.push(format!(
                "{}: the release's file (sha256 {disk}) differs from the rebuild's ({})",
                o.path, o.sha256
            ));
            let rebuilt_file = summary.release_dir.join(&o.path);
            if o.path.ends_with(".img") {
                match crate::diff::diff_images(&rebuilt_file, &release.join(&o.path)) {
                    Ok(changes) if changes.is_empty() => report
                        .differences
                        .push("  (same tree; the image encoding differs)".into()),
                    Ok(changes) => report
                        .differences
                        .extend(changes.into_iter().map(|c| format!("  {}", c.text))),
                    Err(e) => report.differences.push(format!("  cannot compare: {e}")),
                }
            }
        }
    }
    report.outputs = summary.manifest.outputs.len();
    Ok(())
}

/// `v6build verify TARGET [--recipe PATH]`: TARGET is a release directory,
/// or a recipe file (whose release under `--out` is verified).
pub fn verify(cfg: &Config, target: &Path, recipe: Option<&Path>) -> Outcome {
    let (release, recipe): (PathBuf, Option<PathBuf>) = if target.is_dir() {
        (target.to_path_buf(), recipe.map(Path::to_path_buf))
    } else if target.is_file() {
        if recipe.is_some() {
            return Outcome::Usage(format!(
                "{} is a recipe; give --recipe only with a release directory",
                target.display()
            ));
        }
        let r = match v6build_engine::recipe::load(target) {
            Ok(r) => r,
            Err(e) => return crate::cmd::recipe_error(e),
        };
        (cfg.out_dir.join(&r.release.dir), Some(target.to_path_buf()))
    } else {
        return Outcome::Usage(format!(
            "{}: no such release directory or recipe",
            target.display()
        ));
    };
    let (recorded, m) = match read_manifest(&release) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let mut report = Report {
        release: release.display().to_string(),
        ..Default::default()
    };
    let recipe = match recipe {
        Some(r) => Some(r),
        None => find_recipe(&release, &m),
    };
    let Some(recipe) = recipe else {
        report.inputs.push(InputProblem {
            path: m.recipe.path.clone(),
            status: "missing",
            recorded: m.recipe.blake3.clone(),
            found: None,
        });
        let o = report.finish(cfg);
        return match o {
            Outcome::InputsChanged(msg) => Outcome::InputsChanged(format!(
                "{msg}\n(looked beside the release and the working directory and their parents; \
                 name the recipe with --recipe PATH)"
            )),
            other => other,
        };
    };
    report.recipe = Some(recipe.display().to_string());
    // Step 1.
    let r = match check_inputs(&recipe, &m, &mut report) {
        Ok(Some(r)) if report.inputs.is_empty() => r,
        Ok(_) => return report.finish(cfg),
        Err(o) => return o,
    };
    // Step 2.
    let on_disk = check_files(&release, &m, &mut report);
    // Step 3.
    if let Err(o) = rebuild_and_compare(
        cfg,
        (&recipe, &r),
        (&release, &recorded, &m),
        &on_disk,
        &mut report,
    ) {
        return o;
    }
    report.finish(cfg)
}
