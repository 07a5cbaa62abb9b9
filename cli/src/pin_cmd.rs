//! `v6build pin`: fill in missing media pins; replace mismatching ones only
//! with `--update`, printing old → new like a lock file update.

use std::path::Path;

use serde_json::json;
use v6build_engine::recipe::{self, PinEntry, PinOptions, PinStatus};

use v6build_driver::{Config, Outcome, Verbosity};

use crate::cmd::Done;

/// `v6build pin [--update] RECIPE`. Exit 1 when a pin does not match and
/// `--update` was not given (nothing is written), or when a local media
/// file named by the recipe is missing (the other pins are written).
pub fn pin(cfg: &Config, path: &Path, update: bool) -> Done {
    let report = match recipe::pin(path, PinOptions { update }) {
        Ok(r) => r,
        Err(e) => return v6build_driver::recipe_error(e).into(),
    };
    let mut doc = None;
    if cfg.json {
        let v: Vec<serde_json::Value> = report
            .entries
            .iter()
            .map(|e| {
                let (old, new) = match &e.status {
                    PinStatus::Updated { old, new } | PinStatus::Refused { old, new } => {
                        (Some(old.as_str()), Some(new.as_str()))
                    }
                    _ => (None, None),
                };
                json!({ "media": e.media, "role": e.role.node_name(),
                    "path": e.path.display().to_string(),
                    "sha256": e.sha256.map(|s| s.to_hex()), "size": e.size,
                    "status": e.status.word(), "old": old, "new": new })
            })
            .collect();
        doc = Some(json!({ "written": report.written, "entries": v }));
    } else if cfg.verbosity >= Verbosity::Normal {
        for e in &report.entries {
            let what = match &e.status {
                PinStatus::Updated { old, new } => format!("{old} → {new}"),
                PinStatus::Refused { old, new } => {
                    format!("pinned {old} but the file has {new}")
                }
                _ => e.path.display().to_string(),
            };
            eprintln!(
                "{:<10} {} {}: {what}",
                e.status.word(),
                e.media,
                e.role.node_name(),
            );
        }
        if report.written {
            eprintln!("wrote {}", report.recipe.display());
        }
    }
    Done {
        report: doc,
        outcome: outcome(&report, path),
    }
}

/// Exit 1 for a refused pin or a missing file, else success.
fn outcome(report: &recipe::PinReport, path: &Path) -> Outcome {
    let name = |e: &PinEntry| format!("{} {}", e.media, e.role.node_name());
    let refused: Vec<String> = report.refused().map(name).collect();
    if !refused.is_empty() {
        return Outcome::Failure(format!(
            "the pin of {} does not match the file on disk, so {} was left unchanged; \
             if the new file is the one you want, run `v6build pin --update {}`",
            refused.join(", "),
            report.recipe.display(),
            path.display()
        ));
    }
    let missing: Vec<String> = report
        .missing()
        .map(|e| format!("{} ({})", name(e), e.path.display()))
        .collect();
    if !missing.is_empty() {
        return Outcome::Failure(format!(
            "media file(s) missing, not pinned: {}; put them where the recipe says and run `v6build pin` again",
            missing.join(", ")
        ));
    }
    Outcome::Success
}
