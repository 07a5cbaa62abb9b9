//! The subcommands, as functions from a [`Config`] to an [`Outcome`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use v6build_cache::Store;
use v6build_engine::recipe::{self, PinStatus, Recipe};

use crate::build::{self, BuildSummary, NodeState};
use crate::{Config, Outcome, Verbosity};

/// Exit 2 for a mistake in the recipe text, 1 for anything around it
/// (media, I/O).
pub(crate) fn recipe_error(e: recipe::RecipeError) -> Outcome {
    if e.kind().is_recipe_mistake() {
        Outcome::BadRecipe(miette::Report::new(e))
    } else {
        Outcome::FailureReport(miette::Report::new(e))
    }
}

fn load(path: &Path) -> Result<Recipe, Outcome> {
    recipe::load(path).map_err(recipe_error)
}

fn open_store(cfg: &Config) -> Result<Store, Outcome> {
    Store::open(&cfg.cache_dir).map_err(|e| {
        Outcome::Failure(format!(
            "cannot open the cache {}: {e}",
            cfg.cache_dir.display()
        ))
    })
}

/// `v6build build`.
pub fn build(cfg: &Config, paths: &[PathBuf]) -> Outcome {
    let mut recipes = Vec::new();
    for p in paths {
        match load(p) {
            Ok(r) => recipes.push((p.clone(), r)),
            Err(o) => return o,
        }
    }
    let only: Vec<Recipe> = recipes.iter().map(|(_, r)| r.clone()).collect();
    if let Err(e) = recipe::check_duplicate_dirs(&only) {
        return recipe_error(e);
    }
    let store = match open_store(cfg) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if let Err(o) = crate::remote::attach(cfg, &store) {
        crate::remote::report_warnings(cfg, &store);
        return o;
    }
    let mut summaries = Vec::new();
    for (path, r) in &recipes {
        match build::build(cfg, &store, path, r, &cfg.out_dir) {
            Ok(s) => summaries.push(s),
            Err(o) => return o,
        }
    }
    if cfg.json {
        let v: Vec<serde_json::Value> = summaries.iter().map(BuildSummary::to_json).collect();
        let doc = if v.len() == 1 {
            v.into_iter().next().unwrap_or_default()
        } else {
            json!({ "builds": v })
        };
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if cfg.verbosity >= Verbosity::Normal {
        for s in &summaries {
            eprintln!(
                "built {} in {:.2}s: {} nodes run, {} cached",
                s.release_dir.display(),
                s.seconds,
                s.nodes_run,
                s.nodes_cached
            );
        }
    }
    Outcome::Success
}

/// `v6build plan`.
pub fn plan(cfg: &Config, path: &Path, explain: Option<&str>) -> Outcome {
    let r = match load(path) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let epoch = match build::epoch(&r) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let graph = match crate::pipeline::plan(&r, epoch) {
        Ok(g) => g,
        Err(e) => return Outcome::Failure(e),
    };
    // The cache is only read; a missing one means everything is to build.
    let store = Store::open(&cfg.cache_dir).ok();
    if let Some(name) = explain {
        let Some(id) = graph.find(name) else {
            let names: Vec<&str> = graph.nodes().iter().map(|n| n.name.as_str()).collect();
            return Outcome::Usage(format!(
                "no node `{name}` in the plan; nodes are: {}",
                names.join(", ")
            ));
        };
        let node = graph.node(id);
        let state = build::node_state(store.as_ref(), node);
        if cfg.json {
            let doc = json!({ "node": node.name, "key": node.key.to_string(),
                "state": state.word(), "action_key": node.key_doc });
            outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            outln!("node:  {}", node.name);
            outln!("key:   {}", node.key);
            outln!("state: {}", state.word());
            outln!(
                "deps:  {}",
                node.deps
                    .iter()
                    .map(|&d| graph.node(d).name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            outln!("action key:");
            outln!(
                "{}",
                serde_json::to_string_pretty(&node.key_doc).unwrap_or_default()
            );
            if let crate::pipeline::Work::Layer(_, steps) = &node.work {
                for (idx, key) in steps {
                    let layer = &r.layers[*idx];
                    if steps.len() > 1 {
                        outln!("layer {} (key {key}):", layer.name);
                    }
                    outln!("operations:");
                    for op in &layer.ops {
                        outln!(
                            "  {}",
                            crate::keys::op_doc(&op.op)
                                .map(|v| v.to_string())
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        return Outcome::Success;
    }
    let mut rows = Vec::new();
    for node in graph.nodes() {
        let state = build::node_state(store.as_ref(), node);
        rows.push((node, state));
    }
    if cfg.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, s)| {
                json!({ "node": n.name, "key": n.key.to_string(), "state": s.word(),
                "deps": n.deps.iter().map(|&d| graph.node(d).name.clone()).collect::<Vec<_>>() })
            })
            .collect();
        let doc = json!({ "release": r.release.name, "dir": r.release.dir, "nodes": v });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        outln!(
            "release {} -> {}/{}",
            r.release.name,
            cfg.out_dir.display(),
            r.release.dir
        );
        for (n, s) in &rows {
            let deps: Vec<&str> = n
                .deps
                .iter()
                .map(|&d| graph.node(d).name.as_str())
                .collect();
            let from = if deps.is_empty() {
                String::new()
            } else {
                format!("  <- {}", deps.join(", "))
            };
            outln!(
                "  {:<13} {:<40} {}{}",
                s.word(),
                n.name,
                n.key.short(16),
                from
            );
        }
        outln!("  {:<13} release {}", "", r.release.dir);
        let missing = rows
            .iter()
            .filter(|(_, s)| *s == NodeState::MediaMissing)
            .count();
        if missing > 0 {
            outln!(
                "{missing} media file(s) missing; put them where the recipe says, then run `v6build pin`"
            );
        }
    }
    Outcome::Success
}

/// `v6build verify`.
pub fn verify(cfg: &Config, target: &Path, recipe: Option<&Path>) -> Outcome {
    crate::verify::verify(cfg, target, recipe)
}

/// `v6build diff`.
pub fn diff(cfg: &Config, args: &crate::diff::DiffArgs) -> Outcome {
    crate::diff::diff(cfg, args)
}

/// `v6build pin`.
pub fn pin(cfg: &Config, path: &Path) -> Outcome {
    let report = match recipe::pin(path) {
        Ok(r) => r,
        Err(e) => return recipe_error(e),
    };
    if cfg.json {
        let v: Vec<serde_json::Value> = report
            .entries
            .iter()
            .map(|e| {
                json!({ "media": e.media, "role": e.role.node_name(),
                "sha256": e.sha256.map(|s| s.to_hex()), "status": format!("{:?}", e.status) })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "written": report.written, "entries": v }))
                .unwrap_or_default()
        );
    } else if cfg.verbosity >= Verbosity::Normal {
        for e in &report.entries {
            let what = match &e.status {
                PinStatus::Unchanged => "unchanged".to_string(),
                PinStatus::Added => "pinned".to_string(),
                PinStatus::Updated { old } => format!("updated (was {old})"),
                other => format!("{other:?}").to_lowercase(),
            };
            eprintln!(
                "{:<10} {} {}: {}",
                what,
                e.media,
                e.role.node_name(),
                e.path.display()
            );
        }
        if report.written {
            eprintln!("wrote {}", report.recipe.display());
        }
    }
    Outcome::Success
}

/// `v6build ls`.
pub fn ls(cfg: &Config, image: &Path, path: &str, outer: bool) -> Outcome {
    crate::inspect::ls(cfg, image, path, outer)
}

/// `v6build cat`.
pub fn cat(cfg: &Config, image: &Path, path: &str, outer: bool) -> Outcome {
    crate::inspect::cat(cfg, image, path, outer)
}

/// `v6build gc`.
pub fn gc(cfg: &Config, keep_builds: usize) -> Outcome {
    let opts = v6build_cache::StoreOptions {
        keep_builds,
        ..Default::default()
    };
    let store = match Store::open_with(&cfg.cache_dir, opts) {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(format!("cannot open the cache: {e}")),
    };
    let started = Instant::now();
    match store.gc() {
        Ok(r) => {
            if cfg.json {
                outln!(
                    "{}",
                    json!({ "roots": r.roots, "kept_objects": r.kept_objects, "kept_bytes": r.kept_bytes,
                        "removed_objects": r.removed_objects, "removed_tmp_files": r.removed_tmp_files })
                );
            } else if cfg.verbosity >= Verbosity::Normal {
                eprintln!("{r} ({:.2}s)", started.elapsed().as_secs_f64());
            }
            Outcome::Success
        }
        Err(e) => Outcome::Failure(format!("gc failed: {e}")),
    }
}

/// Prints the outcome's message (if any) and returns the exit code:
/// 0 success, 1 failure (or differences found), 2 bad usage or bad recipe,
/// 3 inputs changed (verify).
pub fn report(_cfg: &Config, outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Success => ExitCode::SUCCESS,
        Outcome::Failure(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Outcome::FailureReport(r) => {
            eprint!("{}", recipe::render(r.as_ref()));
            ExitCode::from(1)
        }
        Outcome::Usage(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Outcome::BadRecipe(r) => {
            eprint!("{}", recipe::render(r.as_ref()));
            ExitCode::from(2)
        }
        Outcome::InputsChanged(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(3)
        }
        Outcome::Differs => ExitCode::from(1),
    }
}
