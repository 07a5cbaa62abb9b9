//! Running a recipe's graph against the cache and writing its release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;
use v6build_cache::Store;
use v6build_engine::recipe::{MediaFile, MediaRole, Recipe};
use v6build_fstree::Digest;

use crate::dag::Node;
use crate::error::DriverError;
use crate::host_inputs::HostInputs;
use crate::manifest::{EPOCH_FROM_ENV, EPOCH_FROM_RECIPE, Manifest};
use crate::nodes::{self, Ctx, Media, Out, Work};
use crate::progress::BuildEvents;
use crate::release::assemble::Assembly;
use crate::{Config, Outcome};

/// What `plan` says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Its output is in the cache.
    Cached,
    /// It will run.
    ToBuild,
    /// A media file it needs is not on disk.
    MediaMissing,
    /// A media file it needs is present.
    MediaPresent,
    /// A media file it needs is not on disk but has a `url=` and a pinned
    /// sha256: the build downloads it.
    ToFetch,
}

impl NodeState {
    /// The word `plan` prints.
    pub fn word(self) -> &'static str {
        match self {
            NodeState::Cached => "cached",
            NodeState::ToBuild => "to build",
            NodeState::MediaMissing => "media missing",
            NodeState::MediaPresent => "media present",
            NodeState::ToFetch => "to fetch",
        }
    }
}

/// A node's state, looking only (never writing) at the cache.
pub fn node_state(store: Option<&Store>, node: &Node<Work>) -> NodeState {
    if let Work::Media(Media {
        path, url, sha256, ..
    }) = &node.work
    {
        // A fetched file counts as present (the build still re-hashes it).
        let fetched = |sha: &String| {
            store.is_some_and(|s| crate::fetch::cached_path(s.root(), sha).is_file())
        };
        return if path.exists() || (url.is_some() && sha256.as_ref().is_some_and(fetched)) {
            NodeState::MediaPresent
        } else if url.is_some() && sha256.is_some() {
            NodeState::ToFetch
        } else {
            NodeState::MediaMissing
        };
    }
    match store.and_then(|s| s.get_action(&node.key).ok().flatten().map(|r| (s, r))) {
        // A prediction: references into a base are taken as resolvable.
        Some((s, rec)) if node.work.kind().restore(s, &|_| true, &rec).is_some() => {
            NodeState::Cached
        }
        _ => NodeState::ToBuild,
    }
}

/// Where a kernel or `.treeinfo` media file is: on disk, or fetched from
/// its `url=` into the cache (verified there like any fetched media). A
/// missing kernel is an error; a missing `.treeinfo` without `url=` is
/// skipped. A pinned `size=` is checked here; the sha256 where the file
/// is read.
fn copied_media(
    cfg: &Config,
    store: &Store,
    media: &str,
    f: &MediaFile,
) -> Result<Option<PathBuf>, Outcome> {
    let sha = f.sha256.map(|s| s.to_hex());
    let found = crate::fetch::locate(
        store.root(),
        &f.path,
        f.url.as_deref(),
        sha.as_deref(),
        f.size,
        &cfg.fetch,
    )
    .map_err(|e| crate::failed(format!("{} media `{media}`", f.role.node_name()), e))?;
    if found.is_some() {
        return Ok(found);
    }
    if f.role == MediaRole::Kernel {
        return Err(Outcome::Error(DriverError::Check(format!(
            "kernel media `{media}` is missing at {}; put the file there and run `v6build pin`",
            f.path.display()
        ))));
    }
    Ok(None)
}

/// The epoch for a recipe: its own, else `SOURCE_DATE_EPOCH`.
pub fn epoch(r: &Recipe) -> Result<i64, Outcome> {
    epoch_and_source(r, None).map(|(e, _)| e)
}

/// The epoch for a recipe and where it came from (the manifest's
/// `epoch_source`): the recipe's own; else `recorded` (verify passes the
/// epoch a release recorded, so it needs no environment); else
/// `SOURCE_DATE_EPOCH`.
pub fn epoch_and_source(r: &Recipe, recorded: Option<i64>) -> Result<(i64, &'static str), Outcome> {
    if let Some(e) = r.release.epoch {
        return Ok((i64::from(e), EPOCH_FROM_RECIPE));
    }
    if let Some(e) = recorded {
        return Ok((e, EPOCH_FROM_ENV));
    }
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    r.epoch(sde.as_deref())
        .map(|e| (i64::from(e), EPOCH_FROM_ENV))
        .map_err(crate::recipe_error)
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Where the release went.
    pub release_dir: PathBuf,
    /// Nodes that ran.
    pub nodes_run: usize,
    /// Nodes served from the cache.
    pub nodes_cached: usize,
    /// Bytes written into the release directory.
    pub bytes_written: u64,
    /// Seconds per node, by node name.
    pub node_seconds: BTreeMap<String, f64>,
    /// Node states, by name.
    pub node_states: BTreeMap<String, &'static str>,
    /// What nodes that ran report (blocks reused, compressed, ...), by name.
    pub node_stats: BTreeMap<String, serde_json::Value>,
    /// Wall time of the whole build.
    pub seconds: f64,
    /// The manifest written.
    pub manifest: Manifest,
    /// What the remote cache did (`null` without one): see `remote::Fleet::to_json`.
    pub remote: serde_json::Value,
}

impl BuildSummary {
    /// The `--json` summary.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "release_dir": self.release_dir.display().to_string(),
            "nodes_run": self.nodes_run,
            "nodes_cached": self.nodes_cached,
            "bytes_written": self.bytes_written,
            "seconds": self.seconds,
            "node_seconds": self.node_seconds,
            "node_states": self.node_states,
            "node_stats": self.node_stats,
            "outputs": self.manifest.outputs,
            "nodes_remote": self.node_states.values().filter(|w| **w == "remote").count(),
            "remote": self.remote,
        })
    }
}

/// The key documents a node's action record keeps for `plan --explain`:
/// each layer's key for a layer node, the node's key otherwise.
pub fn node_keys(node: &Node<Work>) -> v6build_cache::NodeKeys {
    v6build_cache::NodeKeys {
        name: node.name.clone(),
        keys: node.work.key_docs(&node.action),
    }
}

/// Upper bound on rebuild attempts after corruption. Each attempt follows
/// the removal of at least one corrupt object, so the loop ends anyway once
/// the corrupt objects are gone; the bound only stops a disk that corrupts
/// every new write from looping forever.
const MAX_ATTEMPTS: usize = 1000;

/// `v6build build`: loads every recipe (refusing two that write the same
/// release directory), opens the cache and builds each in turn into
/// `cfg.out_dir`.
pub fn build_recipes(
    cfg: &Config,
    paths: &[PathBuf],
    events: &dyn BuildEvents,
) -> Result<Vec<BuildSummary>, Outcome> {
    let mut recipes = Vec::new();
    for p in paths {
        let r = crate::load_recipe(p)?;
        for w in v6build_engine::recipe::unused_layers(&r) {
            events.warning(&w);
        }
        recipes.push((p.clone(), r));
    }
    let only: Vec<Recipe> = recipes.iter().map(|(_, r)| r.clone()).collect();
    v6build_engine::recipe::check_duplicate_dirs(&only).map_err(crate::recipe_error)?;
    let store = crate::open_store(cfg)?;
    let attached = crate::remote::attach(cfg, &store);
    crate::remote::report_warnings(&store, events);
    attached?;
    let mut summaries = Vec::new();
    for (path, r) in &recipes {
        summaries.push(build(cfg, &store, path, r, &cfg.out_dir, events)?);
    }
    Ok(summaries)
}

/// Builds one recipe into `out_dir`.
///
/// A corrupt cache object is found when it is read, possibly by a node
/// downstream of the one that made it, or while the release is assembled.
/// The store reports and removes it; the build then runs again, and what
/// depended on the object is rebuilt instead of trusted. Every retry follows
/// the removal of at least one object, so a few attempts suffice.
pub fn build(
    cfg: &Config,
    store: &Store,
    path: &Path,
    r: &Recipe,
    out_dir: &Path,
    events: &dyn BuildEvents,
) -> Result<BuildSummary, Outcome> {
    build_at(cfg, store, path, r, out_dir, None, events)
}

/// [`build`], with `epoch` standing in for `SOURCE_DATE_EPOCH` when the
/// recipe has no epoch of its own (verify's rebuild of a release).
pub fn build_at(
    cfg: &Config,
    store: &Store,
    path: &Path,
    r: &Recipe,
    out_dir: &Path,
    epoch: Option<i64>,
    events: &dyn BuildEvents,
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let mut attempt = 0;
    crate::remote::reset_skipping();
    loop {
        attempt += 1;
        let result = build_once(cfg, store, path, r, out_dir, epoch, events);
        crate::remote::report_warnings(store, events);
        let corrupt = store.take_corruptions();
        for c in &corrupt {
            events.note(&format!(
                "warning: corrupt cache entry removed, rebuilding: {c}"
            ));
        }
        match result {
            Err(_) if !corrupt.is_empty() && attempt < MAX_ATTEMPTS => continue,
            // A node needed an input the remote pass skipped: again, skipping nothing.
            Err(_) if crate::remote::skipping_spoiled() && attempt < MAX_ATTEMPTS => continue,
            Err(o) => return Err(o),
            Ok(mut s) => {
                s.seconds = started.elapsed().as_secs_f64();
                return Ok(s);
            }
        }
    }
}

fn build_once(
    cfg: &Config,
    store: &Store,
    path: &Path,
    r: &Recipe,
    out_dir: &Path,
    recorded_epoch: Option<i64>,
    events: &dyn BuildEvents,
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let (epoch, epoch_source) = epoch_and_source(r, recorded_epoch)?;
    // Every host file the layers name is read here, once: keys, layer
    // operations and the manifest all use these bytes.
    let hosts = HostInputs::read(r, store)?;
    let graph = crate::plan::plan(r, epoch, &hosts)?;
    // Every missing or unpinned media file at once, before any work.
    crate::media_check::before_build(r)?;
    // Files put into the release directory by hand would be deleted.
    crate::releases::check_hand_files(out_dir, &r.release.dir, &r.release.extra_files)?;
    // The kernel and .treeinfo are copied through, not built: find (or
    // fetch) them before any work.
    let mut copied: Vec<(&MediaFile, PathBuf)> = Vec::new();
    for m in &r.media {
        for f in &m.files {
            if matches!(f.role, MediaRole::Kernel | MediaRole::Treeinfo)
                && let Some(p) = copied_media(cfg, store, &m.name, f)?
            {
                copied.push((f, p));
            }
        }
    }
    let threads = cfg
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::failed(format!("cannot start {threads} threads"), e))?;
    let states: Mutex<BTreeMap<String, (&'static str, f64)>> = Mutex::new(BTreeMap::new());
    let blobs = crate::refs::Blobs::new(store);
    let claim = |d: &Digest| blobs.is_reference(d);
    // Which nodes the local store or the remote serve, and which need not run.
    let mut fleet = crate::remote::prepare(store, &graph)?;
    let ctx = Ctx {
        recipe: r,
        store,
        blobs: &blobs,
        hosts: &hosts,
        epoch,
        threads,
        fetch: &cfg.fetch,
        stats: Mutex::new(BTreeMap::new()),
        progress: Mutex::new(BTreeMap::new()),
    };
    let outputs = pool
        .install(|| {
            graph.run(|id, node, inputs| {
                if fleet.skipped(id) {
                    if let Ok(mut s) = states.lock() {
                        s.insert(node.name.clone(), ("skipped", 0.0));
                    }
                    return Ok(crate::remote::Fleet::placeholder(node));
                }
                events.node_key(&node.name, &node.key, &node.action);
                let kind = node.work.kind();
                if let Ok(Some(rec)) = store.get_action(&node.key)
                    && let Some(out) = kind.restore(store, &claim, &rec)
                {
                    ctx.register(inputs, &out);
                    if let Ok(mut s) = states.lock() {
                        s.insert(node.name.clone(), (fleet.hit_word(id), 0.0));
                    }
                    events.node_cached(&node.name, &node.key);
                    return Ok(out);
                }
                if fleet.needs_skipped(node) {
                    return Err(nodes::fail(
                        &node.name,
                        "an input the remote pass skipped is needed after all; retrying",
                    ));
                }
                events.node_started(&node.name);
                events.node_progress(&node.name, &ctx.progress(&node.name));
                let began = Instant::now();
                let result = kind.run(&ctx, &node.name, inputs);
                let took = began.elapsed();
                let outcome = if result.is_ok() { "done" } else { "FAILED" };
                events.node_finished(&node.name, outcome, took);
                let out = result?;
                ctx.register(inputs, &out);
                if let Some(mut rec) = out.record() {
                    rec.node = Some(node_keys(node));
                    store
                        .put_action(&node.key, &rec)
                        .map_err(|e| nodes::fail(&node.name, e))?;
                }
                let word = if matches!(out, Out::Media(_)) {
                    "checked"
                } else {
                    "run"
                };
                if let Ok(mut s) = states.lock() {
                    s.insert(node.name.clone(), (word, took.as_secs_f64()));
                }
                Ok(out)
            })
        })
        .map_err(|e| crate::media_check::node_failed(r, e))?;

    let (release_dir, manifest, roots) = crate::release::assemble::assemble(&Assembly {
        recipe: r,
        path,
        store,
        graph: &graph,
        outputs: &outputs,
        hosts: &hosts,
        copied: &copied,
        out_dir,
        epoch,
        epoch_source,
        events,
        stats: &ctx.stats,
        reused: fleet.signers(&graph),
    })?;
    let bytes_written: u64 = manifest.outputs.iter().map(|o| o.size).sum();
    let root_name = crate::releases::root_name(&r.release.dir);
    // Gc roots are best effort: a failure here loses nothing but cache hits.
    let _ = store.add_root(v6build_cache::RootKind::Release, &root_name, &roots);
    let _ = store.add_build_root(&roots);
    let states = states.into_inner().unwrap_or_default();
    fleet.push(cfg, store, &graph)?;
    let words: BTreeMap<String, &str> = states.iter().map(|(k, (w, _))| (k.clone(), *w)).collect();
    let remote = fleet.to_json(&graph, &words);
    let nodes_run = states.values().filter(|(w, _)| *w == "run").count();
    let nodes_cached = states.values().filter(|(w, _)| *w == "cached").count();
    Ok(BuildSummary {
        release_dir,
        nodes_run,
        nodes_cached,
        bytes_written,
        node_seconds: states.iter().map(|(k, (_, s))| (k.clone(), *s)).collect(),
        node_states: states.iter().map(|(k, (w, _))| (k.clone(), *w)).collect(),
        node_stats: ctx.stats.lock().map(|s| s.clone()).unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
        manifest,
        remote,
    })
}
