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
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::error::DriverError;
use crate::manifest::{Manifest, RecipeRoot, SCHEMA_VERSION};
use crate::{Config, Outcome, Verbosity};

mod files;
use files::{check_files, value_diff};

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

    fn finish(self) -> Verified {
        let report = Some(self.json());
        let mut note = None;
        let outcome = match self.verdict() {
            "reproduced" => {
                note = Some(format!(
                    "verified {}: {} outputs and every manifest field match a clean rebuild",
                    self.release, self.outputs
                ));
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
                Outcome::Error(DriverError::Check(msg))
            }
            _ => Outcome::Error(DriverError::Check(format!(
                "{} is not reproduced by a clean rebuild:\n  {}",
                self.release,
                self.differences.join("\n  ")
            ))),
        };
        Verified {
            report,
            note,
            outcome,
        }
    }
}

/// What `verify` found, for the binary to show: the report (its `--json`
/// form), a line for a human when the release is reproduced, and the
/// outcome (its message says what did not match).
#[derive(Debug)]
pub struct Verified {
    /// The JSON report, when verify got as far as judging the release.
    pub report: Option<Value>,
    /// `verified DIR: …` when reproduced.
    pub note: Option<String>,
    /// Success, or why not (exit 1 or 3).
    pub outcome: Outcome,
}

impl From<Outcome> for Verified {
    fn from(outcome: Outcome) -> Self {
        Verified {
            report: None,
            note: None,
            outcome,
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
            Outcome::Error(DriverError::Check(format!(
                "reading {}: {e} (is this a release directory?)",
                mpath.display()
            )))
        })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| crate::failed(format!("{}: not JSON", mpath.display()), e))?;
    match v.get("schema_version").and_then(Value::as_u64) {
        Some(n) if n == u64::from(SCHEMA_VERSION) => {}
        other => {
            return Err(Outcome::Error(DriverError::Check(format!(
                "{}: schema_version {} is not {SCHEMA_VERSION}, the version this v6build reads; \
                 verify it with the v6build that built it ({})",
                mpath.display(),
                other.map_or("(absent)".to_string(), |n| n.to_string()),
                v.get("tool_version")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            ))));
        }
    }
    let m: Manifest = serde_json::from_value(v.clone())
        .map_err(|e| crate::failed(format!("{}", mpath.display()), e))?;
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
    let found = blake3_file(recipe);
    // The unchanged recipe names its absolute `allow-outside` directories,
    // the only places an absolute recorded path may point into.
    let early = (found.as_deref() == Some(m.recipe.blake3.as_str()))
        .then(|| v6build_engine::recipe::load(recipe).ok())
        .flatten();
    let fixed = early.as_ref().map(|r| r.fixed_roots.as_slice());
    let root = RecipeRoot::of_recorded(recipe, &m.recipe.path).with_fixed(fixed.unwrap_or(&[]));
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
                "manifest input path {:?} is not a plain relative path \
                 (nor under an absolute allow-outside directory of the recipe)",
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
    let r = match early {
        Some(r) => r,
        None => v6build_engine::recipe::load(recipe).map_err(crate::recipe_error)?,
    };
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
    let size = v6build_fstree::host::for_each_chunk(&mut f, |b| {
        sha.update(b);
        b3.update(b);
        Ok(())
    })?;
    Ok((
        size,
        hex::encode(sha.finalize()),
        v6build_fstree::Digest::from(b3.finalize()).to_string(),
    ))
}

/// Step 3: a clean rebuild in a temporary directory, compared field by
/// field and byte for byte.
fn rebuild_and_compare(
    cfg: &Config,
    (recipe, r): (&Path, &v6build_engine::recipe::Recipe),
    (release, recorded, m): (&Path, &Value, &Manifest),
    on_disk: &BTreeMap<String, String>,
    report: &mut Report,
    rebuild_events: &dyn crate::progress::BuildEvents,
) -> Result<(), Outcome> {
    let scratch = tempfile::Builder::new()
        .prefix("v6build-verify-")
        .tempdir()
        .map_err(|e| crate::failed("cannot create a scratch directory", e))?;
    // Ctrl-C during the rebuild deletes it too (the binary exits without
    // unwinding, so `scratch`'s own drop would not run).
    let _on_interrupt = crate::interrupt::RemoveOnInterrupt::new(scratch.path());
    let store = v6build_cache::Store::open(scratch.path().join("cache"))
        .map_err(|e| crate::failed("cannot create the scratch cache", e))?;
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
    let summary = crate::build::build_at(
        &quiet,
        &store,
        recipe,
        r,
        &out,
        Some(m.epoch),
        rebuild_events,
    )?;
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
/// or a recipe file (whose release under `--out` is verified). The clean
/// rebuild reports its progress to `rebuild_events`.
pub fn verify(
    cfg: &Config,
    target: &Path,
    recipe: Option<&Path>,
    rebuild_events: &dyn crate::progress::BuildEvents,
) -> Verified {
    let (release, recipe): (PathBuf, Option<PathBuf>) = if target.is_dir() {
        (target.to_path_buf(), recipe.map(Path::to_path_buf))
    } else if target.is_file() {
        if recipe.is_some() {
            return Outcome::Usage(format!(
                "{} is a recipe; give --recipe only with a release directory",
                target.display()
            ))
            .into();
        }
        let r = match v6build_engine::recipe::load(target) {
            Ok(r) => r,
            Err(e) => return crate::recipe_error(e).into(),
        };
        (cfg.out_dir.join(&r.release.dir), Some(target.to_path_buf()))
    } else {
        return Outcome::Usage(format!(
            "{}: no such release directory or recipe",
            target.display()
        ))
        .into();
    };
    let (recorded, m) = match read_manifest(&release) {
        Ok(x) => x,
        Err(o) => return o.into(),
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
        let mut v = report.finish();
        if let Outcome::InputsChanged(msg) = &mut v.outcome {
            msg.push_str(
                "\n(looked beside the release and the working directory and their parents; \
                 name the recipe with --recipe PATH)",
            );
        }
        return v;
    };
    report.recipe = Some(recipe.display().to_string());
    // Step 1.
    let r = match check_inputs(&recipe, &m, &mut report) {
        Ok(Some(r)) if report.inputs.is_empty() => r,
        Ok(_) => return report.finish(),
        Err(o) => return o.into(),
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
        rebuild_events,
    ) {
        return o.into();
    }
    report.finish()
}
