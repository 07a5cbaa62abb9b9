//! Step 2 of verify: every file of the release against the manifest, and
//! the field-by-field comparison of a rebuilt manifest with the recorded one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::{MAX_MANIFEST, Report, hash_file};
use crate::manifest::{Manifest, RecipeRoot};

/// Step 2: the files against the manifest and `SHA256SUMS`. Returns the
/// sha256 of each listed file as found on disk.
pub(super) fn check_files(
    release: &Path,
    m: &Manifest,
    report: &mut Report,
) -> BTreeMap<String, String> {
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
    let extra: BTreeSet<&str> = m.extra_files.iter().map(String::as_str).collect();
    for name in entries.keys() {
        if name != "manifest.json"
            && !listed.contains(name.as_str())
            && !extra.contains(name.as_str())
        {
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
pub(super) fn value_diff(at: &str, recorded: &Value, rebuilt: &Value, out: &mut Vec<String>) {
    pub(super) fn key(v: &Value) -> Option<String> {
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
