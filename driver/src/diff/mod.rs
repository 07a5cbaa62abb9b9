//! `v6build diff A B`: what changed between two releases, two images, or a
//! recipe's media and a release, entry by entry inside each image.
//!
//! Each side is a set of *artifacts* (files named by their path in a
//! release directory). Artifacts are paired by path. Two artifacts with the
//! same bytes are the same and nothing inside them is read. Two images
//! (initramfs, squashfs, ext4, and the ext4 `LiveOS/rootfs.img` nested in a
//! squashfs) are compared as trees, read lazily as `ls` reads them
//! ([`crate::inspect`]): metadata from the image's tables, and the content
//! of a file only when the same path holds a regular file of the same size
//! on both sides, streamed through a hash, unless their stored layout
//! proves them equal (`Shortcut`: the same compressed squashfs blocks, or
//! the same ext4 block map over squashfs blocks of the nested image that
//! are the same on both sides). Other files are compared by size and
//! sha256, with a unified diff for small text files under `--content`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use v6build_engine::recipe::MediaRole;

use crate::Outcome;
use crate::error::DriverError;

mod shortcut;

mod tree;
use tree::{Detail, EntryDiff, SegInfo, is_image, open_image, small_text, tree_diff, unified_diff};

/// Files larger than this are never shown as a unified diff.
pub const CONTENT_DIFF_MAX: u64 = 64 * 1024;

/// What `v6build diff` was asked.
#[derive(Debug, Clone)]
pub struct DiffArgs {
    /// The old side: a release directory or an image. `None` with `media`.
    pub a: Option<PathBuf>,
    /// The new side: a release directory or an image.
    pub b: PathBuf,
    /// Use this recipe's media as the old side.
    pub media: Option<PathBuf>,
    /// Show unified diffs of small text files.
    pub content: bool,
}

/// One side: its artifacts by release path.
#[derive(Debug)]
struct Side {
    label: String,
    artifacts: BTreeMap<String, PathBuf>,
    /// A single image given directly: paired with the other side's
    /// artifact of the same name, or with the other single image.
    single: bool,
}

/// A file's size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sum {
    size: u64,
    sha256: String,
}

/// Opens an artifact for reading: a regular file, never through a
/// symbolic link and never blocking on a FIFO or device. (A path given on
/// the command line was resolved once, in [`path_side`]; the entries of a
/// release directory are not followed.)
pub(super) fn open_artifact(p: &Path) -> Result<std::fs::File, DriverError> {
    v6build_fstree::host::open_regular(p)
        .map(|(f, _)| f)
        .map_err(|e| DriverError::context(format!("reading {}", p.display()), e))
}

/// All of an artifact's bytes (an initramfs, or a small file shown as a
/// unified diff), read as [`open_artifact`] opens it.
pub(super) fn read_artifact(p: &Path) -> Result<Vec<u8>, DriverError> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_artifact(p)?, &mut bytes)
        .map_err(|e| DriverError::context(format!("reading {}", p.display()), e))?;
    Ok(bytes)
}

fn sum_file(p: &Path) -> Result<Sum, DriverError> {
    let reading = |e: std::io::Error| DriverError::context(format!("reading {}", p.display()), e);
    let mut f = open_artifact(p)?;
    let mut h = Sha256::new();
    let size = v6build_fstree::host::for_each_chunk(&mut f, |b| {
        h.update(b);
        Ok(())
    })
    .map_err(reading)?;
    Ok(Sum {
        size,
        sha256: hex::encode(h.finalize()),
    })
}

/// Every file below `dir` that is not a directory, by `/`-separated
/// relative path. Symlinks are listed by their own path and never followed.
fn release_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, DriverError> {
    let entries =
        crate::release::release_entries(dir).map_err(|e| DriverError::context("reading", e))?;
    Ok(entries.into_iter().map(|(r, e)| (r, e.path)).collect())
}

/// Where a media file of `role` lands in a release.
fn release_path(role: MediaRole, media: &Path) -> String {
    match role {
        MediaRole::Initrd => "initrd.img".into(),
        MediaRole::Stage2 => "LiveOS/squashfs.img".into(),
        MediaRole::Treeinfo => ".treeinfo".into(),
        MediaRole::Kernel => media
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vmlinuz".into()),
    }
}

/// The media a recipe builds from, as artifacts: the initrd and stage2 of
/// the media its outputs name, and the kernel and `.treeinfo` of those.
fn media_side(recipe: &Path) -> Result<Side, Outcome> {
    let r = v6build_engine::recipe::load(recipe).map_err(crate::recipe_error)?;
    let mut used: Vec<&str> = Vec::new();
    if let Some(o) = &r.outputs.initrd {
        used.push(&o.from);
    }
    if let Some(o) = &r.outputs.stage2 {
        used.push(&o.from);
    }
    let mut artifacts = BTreeMap::new();
    for m in r.media.iter().filter(|m| used.contains(&m.name.as_str())) {
        for f in &m.files {
            let role_used = match f.role {
                MediaRole::Initrd => r.outputs.initrd.as_ref().is_some_and(|o| o.from == m.name),
                MediaRole::Stage2 => r.outputs.stage2.as_ref().is_some_and(|o| o.from == m.name),
                MediaRole::Kernel | MediaRole::Treeinfo => true,
            };
            if role_used {
                if !f.path.is_file() {
                    return Err(Outcome::Error(DriverError::Check(format!(
                        "media {} {} is not on disk at {}",
                        m.name,
                        f.role.node_name(),
                        f.path.display()
                    ))));
                }
                artifacts
                    .entry(release_path(f.role, &f.path))
                    .or_insert_with(|| f.path.clone());
            }
        }
    }
    Ok(Side {
        label: format!("media of {}", recipe.display()),
        artifacts,
        single: false,
    })
}

fn path_side(given: &Path) -> Result<Side, Outcome> {
    // A path named on the command line is followed once, here (as `ls -H`
    // does); nothing inside a release directory is followed.
    let p = &std::fs::canonicalize(given)
        .map_err(|e| Outcome::Usage(format!("{}: {e}", given.display())))?;
    let meta = std::fs::metadata(p).map_err(|e| Outcome::Usage(format!("{}: {e}", p.display())))?;
    if meta.is_dir() {
        Ok(Side {
            label: given.display().to_string(),
            artifacts: release_files(p).map_err(Outcome::Error)?,
            single: false,
        })
    } else if meta.is_file() {
        let name = given
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        Ok(Side {
            label: given.display().to_string(),
            artifacts: BTreeMap::from([(name, p.to_path_buf())]),
            single: true,
        })
    } else {
        Err(Outcome::Usage(format!(
            "{} is neither a release directory nor an image file",
            p.display()
        )))
    }
}

/// Renames a single image's artifact after the other side's artifact with
/// the same file name (`squashfs.img` pairs with `LiveOS/squashfs.img`), or
/// after the other single image.
fn pair_single(single: &mut Side, other: &Side) {
    if !single.single {
        return;
    }
    let Some((name, path)) = single
        .artifacts
        .iter()
        .next()
        .map(|(n, p)| (n.clone(), p.clone()))
    else {
        return;
    };
    let target = if other.single {
        other.artifacts.keys().next().cloned()
    } else {
        other
            .artifacts
            .keys()
            .find(|k| *k == &name || k.ends_with(&format!("/{name}")))
            .cloned()
    };
    if let Some(t) = target {
        single.artifacts = BTreeMap::from([(t, path)]);
    }
}

fn compare(name: &str, a: &Path, b: &Path, content: bool) -> Result<Option<Detail>, DriverError> {
    let (sa, sb) = rayon::join(|| sum_file(a), || sum_file(b));
    let (sa, sb) = (sa?, sb?);
    if sa == sb {
        return Ok(None);
    }
    if is_image(a) && is_image(b) {
        let (ia, ib) = rayon::join(|| open_image(a, content), || open_image(b, content));
        let (ia, ib) = (ia?, ib?);
        let (entries, stats) = tree_diff(&ia, &ib, content)?;
        let segments = match (&ia.segments, &ib.segments) {
            (Some(x), Some(y)) if x != y => Some((x.clone(), y.clone())),
            _ => None,
        };
        let kind = if ia.kind == ib.kind { ia.kind } else { "image" };
        return Ok(Some(Detail::Changed {
            a: sa,
            b: sb,
            kind,
            entries,
            segments,
            unified: None,
            stats: Some(stats),
        }));
    }
    let mut unified = None;
    if content && sa.size <= CONTENT_DIFF_MAX && sb.size <= CONTENT_DIFF_MAX {
        let ba = read_artifact(a)?;
        let bb = read_artifact(b)?;
        if let (Some(ta), Some(tb)) = (small_text(&ba), small_text(&bb)) {
            unified = Some(unified_diff(
                &format!("a/{name}"),
                &format!("b/{name}"),
                ta,
                tb,
            ));
        }
    }
    Ok(Some(Detail::Changed {
        a: sa,
        b: sb,
        kind: "file",
        entries: Vec::new(),
        segments: None,
        unified,
        stats: None,
    }))
}

/// The differences between two artifacts found by [`diff_images`].
#[derive(Debug, Clone)]
pub struct ImageChange {
    /// `+`, `-` or `~`.
    pub sign: char,
    /// Path inside the image.
    pub path: String,
    /// What changed, as printed.
    pub text: String,
}

/// The entries that differ between two images (for `verify`'s report).
pub fn diff_images(a: &Path, b: &Path) -> Result<Vec<ImageChange>, DriverError> {
    let (ia, ib) = (open_image(a, false)?, open_image(b, false)?);
    Ok(tree_diff(&ia, &ib, false)?
        .0
        .into_iter()
        .map(|e| ImageChange {
            sign: sign(e.change),
            path: e.path.clone(),
            text: entry_text(&e),
        })
        .collect())
}

fn sign(change: &str) -> char {
    match change {
        "added" => '+',
        "removed" => '-',
        _ => '~',
    }
}

fn entry_text(e: &EntryDiff) -> String {
    match &e.what {
        Some(w) => format!("{} {}  {w}", sign(e.change), e.path),
        None => format!(
            "~ {}  {}",
            e.path,
            e.fields
                .iter()
                .map(|(f, x, y)| format!("{f} {x} -> {y}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn short(s: &Sum) -> String {
    format!(
        "{} bytes sha256 {}",
        s.size,
        &s.sha256[..16.min(s.sha256.len())]
    )
}

fn detail_json(path: &str, d: &Detail) -> Value {
    let sum = |s: &Sum| json!({ "size": s.size, "sha256": s.sha256 });
    match d {
        Detail::Removed(s) => json!({ "path": path, "status": "removed", "a": sum(s) }),
        Detail::Added(s) => json!({ "path": path, "status": "added", "b": sum(s) }),
        Detail::Changed {
            a,
            b,
            kind,
            entries,
            segments,
            unified,
            stats,
        } => {
            let entries: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = json!({ "path": e.path, "change": e.change });
                    if let Some(w) = &e.what {
                        v["entry"] = json!(w);
                    }
                    if !e.fields.is_empty() {
                        v["fields"] = e
                            .fields
                            .iter()
                            .map(|(f, x, y)| (f.to_string(), json!({ "a": x, "b": y })))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                    }
                    if let Some(u) = &e.unified {
                        v["unified_diff"] = json!(u);
                    }
                    v
                })
                .collect();
            let mut v = json!({ "path": path, "status": "changed", "kind": kind,
                "a": sum(a), "b": sum(b), "entries": entries });
            if let Some((x, y)) = segments {
                v["segments"] = json!({
                    "a": x.iter().map(SegInfo::json).collect::<Vec<_>>(),
                    "b": y.iter().map(SegInfo::json).collect::<Vec<_>>(),
                });
            }
            if let Some(u) = unified {
                v["unified_diff"] = json!(u);
            }
            if let Some(st) = stats {
                v["compared"] = st.json();
            }
            v
        }
    }
}

/// The human lines of one artifact's difference.
fn detail_lines(path: &str, d: &Detail, out: &mut Vec<String>) {
    match d {
        Detail::Removed(s) => out.push(format!("- {path}  ({}, only in A)", short(s))),
        Detail::Added(s) => out.push(format!("+ {path}  ({}, only in B)", short(s))),
        Detail::Changed {
            a,
            b,
            kind,
            entries,
            segments,
            unified,
            ..
        } => {
            out.push(format!("~ {path}  {kind}: {} -> {}", short(a), short(b)));
            if let Some((x, y)) = segments {
                out.push(format!("  segments: {} -> {}", x.len(), y.len()));
                for (i, s) in x.iter().enumerate() {
                    out.push(format!("    a[{i}] {}", s.text()));
                }
                for (i, s) in y.iter().enumerate() {
                    out.push(format!("    b[{i}] {}", s.text()));
                }
            }
            if kind != &"file" && entries.is_empty() {
                out.push("  (same tree; the image encoding differs)".to_string());
            }
            for e in entries {
                out.push(format!("  {}", entry_text(e)));
                if let Some(u) = &e.unified {
                    for l in u.lines() {
                        out.push(format!("    {l}"));
                    }
                }
            }
            if let Some(u) = unified {
                for l in u.lines() {
                    out.push(format!("  {l}"));
                }
            }
        }
    }
}

/// What `diff` found, for the binary to show: the `--json` report, the
/// human lines, a note when the sides are identical, and the outcome
/// (`Differs` when they are not).
#[derive(Debug)]
pub struct Differences {
    /// The JSON report, when the comparison ran.
    pub report: Option<Value>,
    /// One or more lines per differing artifact.
    pub lines: Vec<String>,
    /// `A and B are identical` when they are.
    pub note: Option<String>,
    /// Success, `Differs`, or why the comparison could not run.
    pub outcome: Outcome,
}

impl From<Outcome> for Differences {
    fn from(outcome: Outcome) -> Self {
        Differences {
            report: None,
            lines: Vec::new(),
            note: None,
            outcome,
        }
    }
}

/// `v6build diff`.
pub fn diff(args: &DiffArgs) -> Differences {
    let sides = (|| -> Result<(Side, Side), Outcome> {
        let a = match (&args.media, &args.a) {
            (Some(r), None) => media_side(r)?,
            (None, Some(a)) => path_side(a)?,
            (Some(_), Some(_)) => {
                return Err(Outcome::Usage(
                    "with --media RECIPE, give one release directory or image to compare it with"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(Outcome::Usage(
                    "give two releases or images (A B), or --media RECIPE and one".into(),
                ));
            }
        };
        let b = path_side(&args.b)?;
        Ok((a, b))
    })();
    let (mut a, mut b) = match sides {
        Ok(s) => s,
        Err(o) => return o.into(),
    };
    pair_single(&mut a, &b);
    pair_single(&mut b, &a);
    // A recipe's media are compared with the release files they became;
    // the files only a release has (SHA256SUMS, the manifest) are left out.
    let only_a_keys = args.media.is_some();
    let mut names: Vec<&String> = a.artifacts.keys().collect();
    if !only_a_keys {
        names.extend(b.artifacts.keys().filter(|k| !a.artifacts.contains_key(*k)));
    }
    names.sort();
    let results: Vec<(String, Result<Option<Detail>, DriverError>)> = names
        .iter()
        .map(|n| {
            let r = match (a.artifacts.get(*n), b.artifacts.get(*n)) {
                (Some(x), Some(y)) => compare(n, x, y, args.content),
                (Some(x), None) => sum_file(x).map(|s| Some(Detail::Removed(s))),
                (None, Some(y)) => sum_file(y).map(|s| Some(Detail::Added(s))),
                (None, None) => Ok(None),
            };
            ((*n).clone(), r)
        })
        .collect();
    let mut changed = Vec::new();
    for (n, r) in results {
        match r {
            Ok(Some(d)) => changed.push((n, d)),
            Ok(None) => {}
            Err(e) => return Outcome::Error(e).into(),
        }
    }
    let v: Vec<Value> = changed.iter().map(|(n, d)| detail_json(n, d)).collect();
    let report = json!({
        "a": a.label, "b": b.label, "identical": changed.is_empty(), "artifacts": v,
    });
    let mut lines = Vec::new();
    for (n, d) in &changed {
        detail_lines(n, d, &mut lines);
    }
    Differences {
        report: Some(report),
        lines,
        note: changed
            .is_empty()
            .then(|| format!("{} and {} are identical", a.label, b.label)),
        outcome: if changed.is_empty() {
            Outcome::Success
        } else {
            Outcome::Differs
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_marks_changed_lines_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let d = unified_diff("a/x", "b/x", a, b);
        assert_eq!(
            d,
            "--- a/x\n+++ b/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
        let d = unified_diff("a", "b", "x\n", "x\ny");
        assert!(d.contains("+y\n\\ No newline at end of file"), "{d}");
    }
}
