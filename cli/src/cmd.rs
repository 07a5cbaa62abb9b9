//! The subcommands, as functions from a [`Config`] to an [`Outcome`]: each
//! calls the driver, which returns data, and prints it (human text on
//! stderr/stdout, or `--json` on stdout). [`report`] maps the outcome to
//! the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};
use v6build_cache::Store;
use v6build_driver::build::{self, BuildSummary, NodeState};
use v6build_driver::{Config, Outcome, Verbosity};
use v6build_engine::recipe;

use crate::json_out;
use crate::progress::{Mode, Progress};

/// What a command ends with: its `--json` report (when run with `--json`
/// and it got that far) and its outcome. [`finish`] prints the one JSON
/// document and maps the outcome to the exit code.
#[derive(Debug)]
pub struct Done {
    /// The `--json` document, without the error.
    pub report: Option<Value>,
    /// Success or why not.
    pub outcome: Outcome,
}

impl From<Outcome> for Done {
    fn from(outcome: Outcome) -> Self {
        Done {
            report: None,
            outcome,
        }
    }
}

impl Done {
    fn with(report: Option<Value>, outcome: Outcome) -> Self {
        Done { report, outcome }
    }
}

/// Loads a recipe and prints its warnings (not with `-q`).
fn load(cfg: &Config, path: &Path) -> Result<recipe::Recipe, Outcome> {
    let r = v6build_driver::load_recipe(path)?;
    crate::diag::warn(cfg, &recipe::unused_layers(&r));
    Ok(r)
}

/// `v6build build`.
pub fn build(cfg: &Config, paths: &[PathBuf]) -> Done {
    let progress = Progress::new(Mode::detect(cfg.json, cfg.verbosity), cfg.verbosity);
    let summaries = match build::build_recipes(cfg, paths, &progress) {
        Ok(s) => s,
        Err(o) => return o.into(),
    };
    if cfg.json {
        // One summary per recipe, in an array even for one recipe.
        let v: Vec<Value> = summaries.iter().map(BuildSummary::to_json).collect();
        return Done::with(Some(json!({ "builds": v })), Outcome::Success);
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
    Outcome::Success.into()
}

/// `v6build plan`.
pub fn plan(cfg: &Config, path: &Path, explain: Option<&str>) -> Done {
    let r = match load(cfg, path) {
        Ok(r) => r,
        Err(o) => return o.into(),
    };
    let epoch = match build::epoch(&r) {
        Ok(e) => e,
        Err(o) => return o.into(),
    };
    // Host inputs are hashed, not kept: plan writes nothing.
    let hosts = match v6build_driver::host_inputs::HostInputs::read(&r, &v6build_fstree::HashOnly) {
        Ok(h) => h,
        Err(e) => return Outcome::from(e).into(),
    };
    let graph = match v6build_driver::plan::plan(&r, epoch, &hosts) {
        Ok(g) => g,
        Err(e) => return Outcome::from(e).into(),
    };
    // The cache is only read; a missing one means everything is to build.
    let store = Store::open(&cfg.cache_dir).ok();
    if let Some(name) = explain {
        let Some(id) = graph.find(name) else {
            let names: Vec<&str> = graph.nodes().iter().map(|n| n.name.as_str()).collect();
            return Outcome::Usage(format!(
                "no node `{name}` in the plan; nodes are: {}",
                names.join(", ")
            ))
            .into();
        };
        let node = graph.node(id);
        let state = build::node_state(store.as_ref(), node);
        let why = v6build_driver::explain::explain(store.as_ref(), &r.release.dir, node);
        if cfg.json {
            let doc = json!({ "node": node.name, "key": node.key.to_string(),
                "state": json_out::word(state.word()), "action_key": node.action,
                "last_key": why.last_key, "changes": why.changes,
                "changed_inputs": why.changed_inputs });
            return Done::with(Some(doc), Outcome::Success);
        }
        print_explanation(&graph, node, state, &why);
        return Outcome::Success.into();
    }
    let mut rows = Vec::new();
    for node in graph.nodes() {
        let state = build::node_state(store.as_ref(), node);
        rows.push((node, state));
    }
    let mut report = None;
    if cfg.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(n, s)| {
                json!({ "node": n.name, "key": n.key.to_string(), "state": json_out::word(s.word()),
                "deps": n.deps.iter().map(|&d| graph.node(d).name.clone()).collect::<Vec<_>>() })
            })
            .collect();
        report = Some(json!({ "release": r.release.name, "dir": r.release.dir, "nodes": v }));
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
    }
    // Every missing or unpinned media file (the kernel and .treeinfo too),
    // as diagnostics; exit 1 when there is one.
    Done::with(report, v6build_driver::media_check::plan_outcome(&r))
}

/// The human form of `plan --explain`: the node, its key document, and
/// what changed since the last build.
fn print_explanation(
    graph: &v6build_driver::dag::Graph<v6build_driver::nodes::Work>,
    node: &v6build_driver::dag::Node<v6build_driver::nodes::Work>,
    state: NodeState,
    why: &v6build_driver::explain::Explanation,
) {
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
        serde_json::to_string_pretty(&node.action).unwrap_or_default()
    );
    match &why.last_key {
        None => outln!("last build: no key recorded for this node"),
        Some(k) if why.changes.is_empty() => outln!("last build: same key {k}"),
        Some(k) => {
            outln!("last build: key {k}; changed since:");
            for c in &why.changes {
                let layer = c
                    .layer
                    .as_deref()
                    .map(|l| format!("layer {l}: "))
                    .unwrap_or_default();
                outln!("  {layer}{}: {} -> {}", c.field, c.old, c.new);
            }
        }
    }
    for p in &why.changed_inputs {
        outln!("changed input: {p}");
    }
}

/// `v6build verify`.
pub fn verify(cfg: &Config, target: &Path, recipe: Option<&Path>) -> Done {
    // The scratch rebuild is an implementation detail: shown only with -v.
    let verbosity = if cfg.verbosity >= Verbosity::Verbose {
        Verbosity::Normal
    } else {
        Verbosity::Quiet
    };
    let progress = Progress::new(Mode::detect(false, verbosity), verbosity);
    let v = v6build_driver::verify::verify(cfg, target, recipe, &progress);
    if cfg.json {
        return Done::with(v.report, v.outcome);
    }
    if cfg.verbosity >= Verbosity::Normal
        && let Some(n) = &v.note
    {
        eprintln!("{n}");
    }
    v.outcome.into()
}

/// `v6build diff`.
pub fn diff(cfg: &Config, args: &v6build_driver::diff::DiffArgs) -> Done {
    let d = v6build_driver::diff::diff(args);
    if cfg.json {
        return Done::with(d.report, d.outcome);
    } else {
        for l in &d.lines {
            outln!("{l}");
        }
        if cfg.verbosity >= Verbosity::Normal
            && let Some(n) = &d.note
        {
            eprintln!("{n}");
        }
    }
    Done::from(d.outcome)
}

/// `v6build pin`: see [`crate::pin_cmd`].
pub fn pin(cfg: &Config, path: &Path, update: bool) -> Done {
    crate::pin_cmd::pin(cfg, path, update)
}

/// `v6build ls`.
pub fn ls(cfg: &Config, image: &Path, path: &str, outer: bool) -> Done {
    captured(cfg, |out| {
        v6build_driver::inspect::ls(cfg, image, path, outer, out)
    })
}

/// `v6build release ls`.
pub fn release_ls(cfg: &Config) -> Done {
    captured(cfg, |out| v6build_driver::releases::ls(cfg, out))
}

/// Runs a driver command that writes its listing (text, or its JSON
/// document with `--json`) to a writer: straight to stdout, or with
/// `--json` into a buffer that becomes the report.
fn captured(cfg: &Config, run: impl FnOnce(&mut dyn std::io::Write) -> Outcome) -> Done {
    if !cfg.json {
        return run(&mut std::io::stdout().lock()).into();
    }
    let mut buf = Vec::new();
    let outcome = run(&mut buf);
    let report = serde_json::from_slice(&buf).ok();
    Done::with(report, outcome)
}

/// `v6build cat`.
pub fn cat(cfg: &Config, image: &Path, path: &str, outer: bool) -> Outcome {
    v6build_driver::inspect::cat(cfg, image, path, outer, &mut std::io::stdout().lock())
}

/// `v6build gc`.
pub fn gc(cfg: &Config, keep_builds: usize) -> Done {
    let opts = v6build_cache::StoreOptions {
        keep_builds,
        ..Default::default()
    };
    let store = match Store::open_with(&cfg.cache_dir, opts) {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(format!("cannot open the cache: {e}")).into(),
    };
    let started = Instant::now();
    match store.gc() {
        Ok(r) => {
            if cfg.json {
                let doc = json!({ "roots": r.roots, "kept_objects": r.kept_objects,
                    "kept_bytes": r.kept_bytes, "removed_objects": r.removed_objects,
                    "removed_tmp_files": r.removed_tmp_files,
                    "removed_id_records": r.removed_id_records });
                return Done::with(Some(doc), Outcome::Success);
            } else if cfg.verbosity >= Verbosity::Normal {
                eprintln!("{r} ({:.2}s)", started.elapsed().as_secs_f64());
            }
            Outcome::Success.into()
        }
        Err(e) => Outcome::Failure(format!("gc failed: {e}")).into(),
    }
}

/// With `--json`, prints the command's one JSON document (its report, with
/// the error when it failed); then [`report`].
pub fn finish(cfg: &Config, command: &str, done: Done) -> ExitCode {
    if !crate::args::take_the_end() {
        // SIGINT/SIGTERM came first: its handler cleans up, prints the
        // run's one outcome (`interrupted`) and exits 130/143. Returning
        // here would print a second one, or exit with this command's code
        // before the handler is done.
        loop {
            std::thread::park();
        }
    }
    if cfg.json
        && let Some(doc) = json_out::document(command, done.report, &done.outcome)
    {
        json_out::print(&doc);
    }
    // As diff(1): 1 means "different", so trouble (an unreadable,
    // non-regular or corrupt input) is 2, never mistaken for a difference.
    let trouble = command == "diff"
        && matches!(
            done.outcome,
            Outcome::Failure(_) | Outcome::FailureReport(_) | Outcome::Error(_)
        );
    let code = report(cfg, done.outcome);
    if trouble { ExitCode::from(2) } else { code }
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
            eprint!("{}", crate::diag::render(r.as_ref()));
            ExitCode::from(1)
        }
        Outcome::Usage(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Outcome::BadRecipe(r) => {
            eprint!("{}", crate::diag::render(r.as_ref()));
            ExitCode::from(2)
        }
        Outcome::InputsChanged(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(3)
        }
        Outcome::Differs => ExitCode::from(1),
        // Every kind of typed failure is a failed command (a mistake in
        // the recipe text arrives as `BadRecipe`, exit 2).
        Outcome::Error(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
