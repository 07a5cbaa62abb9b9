//! Running a recipe's graph against the cache and writing its release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;
use v6build_cache::Store;
use v6build_engine::recipe::{MediaRole, Recipe};
use v6build_fstree::{BlobStore, Digest};

use crate::dag::Node;
use crate::manifest::{FileDigest, LayerKey, Manifest, MediaInput, ReleaseInfo, SCHEMA_VERSION};
use crate::pipeline::{self, Ctx, Image, NodeError, Out, Work};
use crate::progress::{Mode, Progress};
use crate::release::ReleaseWriter;
use crate::{Config, Outcome, Verbosity};

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
}

impl NodeState {
    /// The word `plan` prints.
    pub fn word(self) -> &'static str {
        match self {
            NodeState::Cached => "cached",
            NodeState::ToBuild => "to build",
            NodeState::MediaMissing => "media missing",
            NodeState::MediaPresent => "media present",
        }
    }
}

/// A node's state, looking only (never writing) at the cache.
pub fn node_state(store: Option<&Store>, node: &Node<Work>) -> NodeState {
    if let Work::Media { path, .. } = &node.work {
        return if path.exists() {
            NodeState::MediaPresent
        } else {
            NodeState::MediaMissing
        };
    }
    match store.and_then(|s| s.get_action(&node.key).ok().flatten().map(|r| (s, r))) {
        // A prediction: references into a base are taken as resolvable.
        Some((s, rec)) if pipeline::from_record(s, &|_| true, &rec).is_some() => NodeState::Cached,
        _ => NodeState::ToBuild,
    }
}

/// The epoch for a recipe: its own, else `SOURCE_DATE_EPOCH`.
pub fn epoch(r: &Recipe) -> Result<i64, Outcome> {
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    r.epoch(sde.as_deref())
        .map(i64::from)
        .map_err(crate::cmd::recipe_error)
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
        })
    }
}

fn rel_str(p: &Path, base: &Path) -> String {
    let r = p.strip_prefix(base).unwrap_or(p);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Recipe path as recorded in the manifest: relative to the working directory
/// when it lies below it, so the build path does not leak into the manifest.
fn recipe_rel(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| std::fs::canonicalize(cwd).ok())
    {
        Some(cwd) if abs.starts_with(&cwd) => rel_str(&abs, &cwd),
        _ => abs.display().to_string(),
    }
}

fn node_error(e: NodeError) -> Outcome {
    match e {
        NodeError::Recipe(r) => Outcome::FailureReport(miette::Report::new(*r)),
        other => Outcome::Failure(other.to_string()),
    }
}

/// Upper bound on rebuild attempts after corruption. Each attempt follows
/// the removal of at least one corrupt object, so the loop ends anyway once
/// the corrupt objects are gone; the bound only stops a disk that corrupts
/// every new write from looping forever.
const MAX_ATTEMPTS: usize = 1000;

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
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = build_once(cfg, store, path, r, out_dir);
        let corrupt = store.take_corruptions();
        if !cfg.json && cfg.verbosity > Verbosity::Quiet {
            for c in &corrupt {
                eprintln!("warning: corrupt cache entry removed, rebuilding: {c}");
            }
        }
        match result {
            Err(_) if !corrupt.is_empty() && attempt < MAX_ATTEMPTS => continue,
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
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let epoch = epoch(r)?;
    let graph = pipeline::plan(r, epoch).map_err(Outcome::Failure)?;
    // The kernel is copied through, not built: check it before any work.
    for m in &r.media {
        for f in m.files.iter().filter(|f| f.role == MediaRole::Kernel) {
            if !f.path.exists() {
                return Err(Outcome::Failure(format!(
                    "kernel media `{}` is missing at {}; put the file there and run `v6build pin`",
                    m.name,
                    f.path.display()
                )));
            }
        }
    }
    let threads = cfg
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Outcome::Failure(format!("cannot start {threads} threads: {e}")))?;
    let progress = Progress::new(Mode::detect(cfg.json, cfg.verbosity));
    let states: Mutex<BTreeMap<String, (&'static str, f64)>> = Mutex::new(BTreeMap::new());
    let blobs = crate::refs::Blobs::new(store);
    let claim = |d: &Digest| blobs.is_reference(d);
    // A scanned base (cached or just run) is registered before any node
    // that reads its references runs.
    let register = |node: &Node<Work>, inputs: &[&Out], out: &Out| {
        if let (Work::Scan { .. }, Out::Scan { outer, blocks }) = (&node.work, out)
            && let Some(media) = pipeline::media_input(inputs)
        {
            let nested = store
                .get_tree(outer)
                .ok()
                .and_then(|t| pipeline::nested_candidate(&t))
                .map(|c| c.digest);
            blobs.register_scan(media, *blocks, nested);
        }
        if let (Work::Unpack(Image::Initrd), Out::Parsed { parse, .. }) = (&node.work, out)
            && let Some(media) = pipeline::media_input(inputs)
        {
            blobs.register_initrd(media, *parse, None);
        }
    };
    let ctx = Ctx {
        recipe: r,
        store,
        blobs: &blobs,
        epoch,
        threads,
        stats: Mutex::new(BTreeMap::new()),
    };
    let outputs = pool
        .install(|| {
            graph.run(|_, node, inputs| {
                if cfg.verbosity >= Verbosity::Debug {
                    progress.println(&format!(
                        "key {} {}\n{}",
                        node.name,
                        node.key,
                        serde_json::to_string_pretty(&node.key_doc).unwrap_or_default()
                    ));
                }
                if !matches!(node.work, Work::Media { .. })
                    && let Ok(Some(rec)) = store.get_action(&node.key)
                    && let Some(out) = pipeline::from_record(store, &claim, &rec)
                {
                    register(node, inputs, &out);
                    if let Ok(mut s) = states.lock() {
                        s.insert(node.name.clone(), ("cached", 0.0));
                    }
                    if cfg.verbosity >= Verbosity::Verbose {
                        progress.println(&format!("cached {} {}", node.name, node.key.short(16)));
                    }
                    return Ok(out);
                }
                let task = progress.start(&node.name);
                let result = ctx.run(&node.name, &node.work, inputs);
                let took = task.finish(if result.is_ok() { "done" } else { "FAILED" });
                let out = result?;
                register(node, inputs, &out);
                if let Some(rec) = pipeline::record(&out) {
                    store
                        .put_action(&node.key, &rec)
                        .map_err(|e| NodeError::Other {
                            node: node.name.clone(),
                            message: format!("recording in the cache: {e}"),
                        })?;
                }
                let word = if matches!(node.work, Work::Media { .. }) {
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
        .map_err(node_error)?;

    // Assemble the release.
    let mut w = ReleaseWriter::begin(out_dir, &r.release.dir)
        .map_err(|e| Outcome::Failure(format!("cannot start release {}: {e}", r.release.dir)))?;
    let mut roots: Vec<Digest> = Vec::new();
    let mut layers = Vec::new();
    for (id, node) in graph.nodes().iter().enumerate() {
        if !matches!(node.work, Work::Media { .. }) {
            roots.push(node.key);
        }
        if let Work::Layer(image, steps) = &node.work {
            for (idx, key) in steps {
                layers.push(LayerKey {
                    name: r.layers[*idx].name.clone(),
                    image: image.name().to_string(),
                    key: key.to_string(),
                });
            }
        }
        if let (Work::Pack(image), Out::Blob(d, _)) = (&node.work, &outputs[id]) {
            let rel = match image {
                Image::Initrd => "initrd.img",
                Image::Stage2 => "LiveOS/squashfs.img",
                Image::Updates => "updates.img",
            };
            let mut reader = store
                .open(d)
                .map_err(|e| Outcome::Failure(format!("reading {rel} from the cache: {e}")))?;
            w.add(rel, &mut reader)
                .map_err(|e| Outcome::Failure(format!("writing {rel}: {e}")))?;
        }
    }
    let recipe_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let recipe_dir = std::fs::canonicalize(&recipe_dir).unwrap_or(recipe_dir);
    let mut media = Vec::new();
    for m in &r.media {
        for f in &m.files {
            let sha = f.sha256.map(|s| s.to_hex()).unwrap_or_default();
            media.push(MediaInput {
                name: m.name.clone(),
                role: f.role.node_name().to_string(),
                path: f.written.clone(),
                sha256: sha,
            });
            if f.role == MediaRole::Kernel {
                let name = f
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "vmlinuz".into());
                let mut file = std::fs::File::open(&f.path)
                    .map_err(|e| Outcome::Failure(format!("reading {}: {e}", f.path.display())))?;
                let written = w
                    .add(&name, &mut file)
                    .map_err(|e| Outcome::Failure(format!("writing {name}: {e}")))?;
                if f.sha256.map(|s| s.to_hex()) != Some(written.sha256.clone()) {
                    return Err(Outcome::Failure(format!(
                        "kernel {} does not match its pinned sha256",
                        f.path.display()
                    )));
                }
            }
        }
    }
    if let Some(b) = &r.outputs.boot {
        let kernel = w
            .outputs()
            .iter()
            .map(|o| o.path.clone())
            .find(|p| !p.contains('/') && !p.ends_with(".img"))
            .unwrap_or_else(|| "vmlinuz".to_string());
        let has_updates = w.outputs().iter().any(|o| o.path == "updates.img");
        let files = crate::boot::BootFiles {
            release: &r.release.name,
            base_url: b.base_url.trim_end_matches('/'),
            kernel: &kernel,
            updates: has_updates,
            cmdline: b.cmdline.as_deref(),
        };
        if b.grub {
            w.add_bytes("grub.cfg", files.grub_cfg().as_bytes())
                .map_err(|e| Outcome::Failure(format!("writing grub.cfg: {e}")))?;
        }
        if b.ipxe {
            w.add_bytes("boot.ipxe", files.ipxe().as_bytes())
                .map_err(|e| Outcome::Failure(format!("writing boot.ipxe: {e}")))?;
        }
    }
    // The updated .treeinfo goes in last, so it can list the others' hashes.
    let treeinfo = r
        .media
        .iter()
        .flat_map(|m| m.files.iter())
        .find(|f| f.role == MediaRole::Treeinfo && f.path.exists());
    if let Some(f) = treeinfo {
        let text = std::fs::read_to_string(&f.path)
            .map_err(|e| Outcome::Failure(format!("reading {}: {e}", f.path.display())))?;
        let outs = w.outputs();
        let shipped: Vec<crate::treeinfo::Shipped<'_>> = outs
            .iter()
            .filter_map(|o| {
                let role = match o.path.as_str() {
                    "initrd.img" => "initrd",
                    "LiveOS/squashfs.img" => "stage2",
                    "updates.img" | "grub.cfg" | "boot.ipxe" => return None,
                    _ => "kernel",
                };
                Some(crate::treeinfo::Shipped {
                    role,
                    path: &o.path,
                    sha256: &o.sha256,
                })
            })
            .collect();
        let new = crate::treeinfo::rewrite(&text, &shipped);
        w.add_bytes(".treeinfo", new.as_bytes())
            .map_err(|e| Outcome::Failure(format!("writing .treeinfo: {e}")))?;
    }
    let top = r.top();
    let mut inputs = Vec::new();
    for f in r.files.iter().skip(1) {
        inputs.push(FileDigest {
            path: rel_str(&f.path, &recipe_dir),
            blake3: Digest::of(f.text.as_bytes()).to_string(),
        });
    }
    for l in &r.layers {
        for op in &l.ops {
            for h in op.op.host_inputs() {
                let d = if h.path.is_dir() {
                    crate::keys::dir_digest(&h.path)
                } else {
                    crate::keys::file_digest(&h.path)
                }
                .map_err(|e| Outcome::Failure(format!("reading {}: {e}", h.path.display())))?;
                inputs.push(FileDigest {
                    path: rel_str(&h.path, &recipe_dir),
                    blake3: d.to_string(),
                });
            }
        }
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    inputs.dedup();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        tool_version: crate::tool_version(),
        release: ReleaseInfo {
            name: r.release.name.clone(),
            dir: r.release.dir.clone(),
        },
        epoch,
        recipe: FileDigest {
            path: recipe_rel(path),
            blake3: Digest::of(top.text.as_bytes()).to_string(),
        },
        inputs,
        media,
        layers,
        outputs: w.outputs(),
    };
    let bytes_written: u64 = manifest.outputs.iter().map(|o| o.size).sum();
    let release_dir = w
        .commit(&manifest.to_bytes())
        .map_err(|e| Outcome::Failure(format!("writing the release directory: {e}")))?;
    let root_name = r.release.dir.replace('/', "_");
    // Gc roots are best effort: a failure here loses nothing but cache hits.
    let _ = store.add_root(v6build_cache::RootKind::Release, &root_name, &roots);
    let _ = store.add_build_root(&roots);
    let states = states.into_inner().unwrap_or_default();
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
    })
}
