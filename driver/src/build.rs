//! Running a recipe's graph against the cache and writing its release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;
use v6build_cache::Store;
use v6build_engine::recipe::{ErrorKind, Media, MediaFile, MediaRole, Recipe};
use v6build_fstree::{BlobStore, Digest};

use crate::dag::Node;
use crate::manifest::{
    EPOCH_FROM_ENV, EPOCH_FROM_RECIPE, FileDigest, LayerKey, Manifest, MediaInput, RecipeRoot,
    ReleaseInfo, SCHEMA_VERSION,
};
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
    if let Work::Media {
        path, url, sha256, ..
    } = &node.work
    {
        // A fetched file counts as present (the build still re-hashes it).
        let fetched = |sha: &String| {
            store.is_some_and(|s| crate::fetch::cached_path(s.root(), sha).is_file())
        };
        return if path.exists() || (url.is_some() && sha256.as_ref().is_some_and(fetched)) {
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
    .map_err(|e| Outcome::Failure(format!("{} media `{media}`: {e}", f.role.node_name())))?;
    if found.is_some() {
        return Ok(found);
    }
    if f.role == MediaRole::Kernel {
        return Err(Outcome::Failure(format!(
            "kernel media `{media}` is missing at {}; put the file there and run `v6build pin`",
            f.path.display()
        )));
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

/// The media whose `.treeinfo` the release rewrites: the stage2's media if
/// it has one, else the initrd's, else the first media with a `treeinfo`.
/// `keep` in any other media would be ignored, so it is refused.
fn treeinfo_media(r: &Recipe) -> Result<Option<(&Media, &MediaFile)>, Outcome> {
    let with = |name: &str| {
        r.media_named(name)
            .and_then(|m| m.file(MediaRole::Treeinfo).map(|f| (m, f)))
    };
    let chosen = r
        .outputs
        .stage2
        .as_ref()
        .and_then(|o| with(&o.from))
        .or_else(|| r.outputs.initrd.as_ref().and_then(|o| with(&o.from)))
        .or_else(|| {
            r.media
                .iter()
                .find_map(|m| m.file(MediaRole::Treeinfo).map(|f| (m, f)))
        });
    for other in &r.media {
        if chosen.is_some_and(|(m, _)| m.name == other.name) {
            continue;
        }
        if let Some(k) = other.keep.first() {
            let used = chosen.map_or("none".to_string(), |(m, _)| format!("media `{}`", m.name));
            return Err(Outcome::FailureReport(miette::Report::new(
                r.error_at(
                    ErrorKind::BadValue,
                    k.span,
                    format!(
                        "media `{}` keeps files, but the release's .treeinfo is not this media's",
                        other.name
                    ),
                    "ignored here",
                )
                .help(format!(
                    "the release's .treeinfo comes from the media of its stage2 (else its \
                     initrd): {used}; move the `keep` there"
                )),
            )));
        }
    }
    Ok(chosen)
}

/// The release's `.treeinfo`: media `m`'s (`f`) rewritten for the
/// release's `outputs` and the media's `keep` paths (see [`crate::treeinfo`]).
/// A `keep` that names a release file or no entry is a recipe mistake; a
/// kept file beside the vendor's `.treeinfo` must match the checksum it
/// lists.
fn release_treeinfo(
    r: &Recipe,
    m: &Media,
    f: &MediaFile,
    path: Option<&Path>,
    outputs: &[crate::manifest::Output],
    progress: &Progress,
) -> Result<String, Outcome> {
    // Pinned, and on disk or fetched by url=, like the other media files.
    let Some(pinned) = f.sha256.map(|s| s.to_hex()) else {
        return Err(Outcome::Failure(format!(
            "the treeinfo of media `{}` ({}) has no pinned sha256; run `v6build pin` on the recipe",
            m.name,
            f.path.display()
        )));
    };
    let Some(path) = path else {
        return Err(Outcome::FailureReport(miette::Report::new(
            v6build_engine::recipe::media_missing_error(r, m, f),
        )));
    };
    let text =
        crate::treeinfo::read(path, Some(&pinned)).map_err(|e| Outcome::Failure(e.to_string()))?;
    let release_names = [".treeinfo", "manifest.json", "SHA256SUMS"];
    for k in &m.keep {
        if outputs.iter().any(|o| o.path == k.path) || release_names.contains(&k.path.as_str()) {
            return Err(Outcome::FailureReport(miette::Report::new(
                r.error_at(
                    ErrorKind::BadValue,
                    k.span,
                    format!(
                        "the release writes `{}` itself, so it cannot keep the vendor's",
                        k.path
                    ),
                    "written by the release",
                )
                .help("remove this path from `keep`"),
            )));
        }
    }
    let shipped: Vec<crate::treeinfo::Shipped<'_>> = outputs
        .iter()
        .map(|o| crate::treeinfo::Shipped {
            role: match o.path.as_str() {
                "initrd.img" => "initrd",
                "LiveOS/squashfs.img" => "stage2",
                "updates.img" | "grub.cfg" | "boot.ipxe" | "boot.json" => "other",
                // The only other file at this point is the kernel.
                _ => "kernel",
            },
            path: &o.path,
            sha256: &o.sha256,
        })
        .collect();
    let keep: Vec<&str> = m.keep.iter().map(|k| k.path.as_str()).collect();
    let new = crate::treeinfo::rewrite(&text, &shipped, &keep);
    if let Some(&i) = new.unused_keep.first() {
        let k = &m.keep[i];
        let left_out: Vec<String> = new
            .dropped
            .iter()
            .map(|d| format!("{} ([{}] {})", d.path, d.section, d.key))
            .collect();
        let help = if left_out.is_empty() {
            "every entry of the .treeinfo names a file the release ships; remove this `keep`"
                .to_string()
        } else {
            format!(
                "the .treeinfo entries that name files the release does not ship: {}",
                left_out.join(", ")
            )
        };
        return Err(Outcome::FailureReport(miette::Report::new(
            r.error_at(
                ErrorKind::Missing,
                k.span,
                format!(
                    "`{}` is kept, but the release's .treeinfo has no entry that names it",
                    k.path
                ),
                "names no .treeinfo entry",
            )
            .help(help),
        )));
    }
    let tree = f.path.parent().unwrap_or(Path::new("."));
    for kept in &new.kept_checksums {
        crate::treeinfo::check_kept(tree, kept).map_err(Outcome::Failure)?;
    }
    for d in &new.dropped {
        progress.println(&format!(
            "note: the release's .treeinfo leaves out [{}] {} = {}: the release does not ship \
             it (`keep \"{}\"` in media `{}` keeps the entry)",
            d.section, d.key, d.path, d.path, m.name
        ));
    }
    Ok(new.text)
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
    build_at(cfg, store, path, r, out_dir, None)
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
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let mut attempt = 0;
    crate::remote::reset_skipping();
    loop {
        attempt += 1;
        let result = build_once(cfg, store, path, r, out_dir, epoch);
        crate::remote::report_warnings(cfg, store);
        let corrupt = store.take_corruptions();
        if !cfg.json && cfg.verbosity > Verbosity::Quiet {
            for c in &corrupt {
                eprintln!("warning: corrupt cache entry removed, rebuilding: {c}");
            }
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
) -> Result<BuildSummary, Outcome> {
    let started = Instant::now();
    let (epoch, epoch_source) = epoch_and_source(r, recorded_epoch)?;
    let graph = pipeline::plan(r, epoch).map_err(Outcome::Failure)?;
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
    // Which nodes the local store or the remote serve, and which need not run.
    let mut fleet = crate::remote::prepare(store, &graph)?;
    let ctx = Ctx {
        recipe: r,
        store,
        blobs: &blobs,
        epoch,
        threads,
        fetch: &cfg.fetch,
        stats: Mutex::new(BTreeMap::new()),
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
                        s.insert(node.name.clone(), (fleet.hit_word(id), 0.0));
                    }
                    if cfg.verbosity >= Verbosity::Verbose {
                        progress.println(&format!("cached {} {}", node.name, node.key.short(16)));
                    }
                    return Ok(out);
                }
                if fleet.needs_skipped(node) {
                    return Err(NodeError::Other {
                        node: node.name.clone(),
                        message: "an input the remote pass skipped is needed after all; retrying"
                            .into(),
                    });
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
    // Every path the manifest records is relative to the recipe root, so
    // it does not depend on the working directory or the path's spelling.
    let host_inputs: Vec<&Path> = r
        .layers
        .iter()
        .flat_map(|l| l.ops.iter())
        .flat_map(|op| op.op.host_inputs())
        .map(|h| h.path.as_path())
        .collect();
    let root = RecipeRoot::new(
        path,
        r.files
            .iter()
            .map(|f| f.path.as_path())
            .chain(host_inputs.iter().copied())
            .chain(
                r.media
                    .iter()
                    .flat_map(|m| m.files.iter())
                    .map(|f| f.path.as_path()),
            ),
    );
    let mut media = Vec::new();
    for m in &r.media {
        for f in &m.files {
            let sha = f.sha256.map(|s| s.to_hex()).unwrap_or_default();
            media.push(MediaInput {
                name: m.name.clone(),
                role: f.role.node_name().to_string(),
                path: root.rel(&f.path),
                sha256: sha,
            });
            if let Some((_, kernel)) = copied
                .iter()
                .find(|(c, _)| std::ptr::eq(*c, f) && f.role == MediaRole::Kernel)
            {
                // Named as the recipe writes it (the resolved path's last
                // component may be a link's target name).
                let name = Path::new(&f.written)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "vmlinuz".into());
                let mut file = v6build_engine::host::open_regular(kernel)
                    .map_err(|e| Outcome::Failure(format!("reading {}: {e}", kernel.display())))?;
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
        // What `v6build boot` needs from the recipe's boot block.
        let spec = crate::vmboot::BootSpec {
            base_url: b.base_url.trim_end_matches('/').to_string(),
            cmdline: b.cmdline.clone(),
            kernel: r
                .media
                .iter()
                .flat_map(|m| m.files.iter())
                .any(|f| f.role == MediaRole::Kernel)
                .then(|| kernel.clone()),
            updates: has_updates,
            expect: b.expect.clone(),
            timeout: b.timeout,
        };
        w.add_bytes(crate::vmboot::BOOT_JSON, &spec.to_bytes())
            .map_err(|e| Outcome::Failure(format!("writing boot.json: {e}")))?;
    }
    // The updated .treeinfo goes in last, so it can list the others' hashes.
    if let Some((m, f)) = treeinfo_media(r)? {
        let path = copied
            .iter()
            .find(|(c, _)| std::ptr::eq(*c, f))
            .map(|(_, p)| p.as_path());
        let treeinfo = release_treeinfo(r, m, f, path, &w.outputs(), &progress)?;
        w.add_bytes(".treeinfo", treeinfo.as_bytes())
            .map_err(|e| Outcome::Failure(format!("writing .treeinfo: {e}")))?;
    }
    let top = r.top();
    let mut inputs = Vec::new();
    for f in r.files.iter().skip(1) {
        inputs.push(FileDigest {
            path: root.rel(&f.path),
            blake3: Digest::of(f.text.as_bytes()).to_string(),
        });
    }
    for h in host_inputs {
        inputs.push(FileDigest {
            path: root.rel(h),
            blake3: crate::manifest::input_digest(h)
                .map_err(|e| Outcome::Failure(format!("reading {}: {e}", h.display())))?
                .to_string(),
        });
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    inputs.dedup();
    // SHA256SUMS is an output like the others, so the manifest covers it.
    w.add_sums()
        .map_err(|e| Outcome::Failure(format!("writing SHA256SUMS: {e}")))?;
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        tool_version: crate::tool_version(),
        release: ReleaseInfo {
            name: r.release.name.clone(),
            dir: r.release.dir.clone(),
        },
        epoch,
        epoch_source: epoch_source.to_string(),
        recipe: FileDigest {
            path: root.rel(path),
            blake3: Digest::of(top.text.as_bytes()).to_string(),
        },
        inputs,
        media,
        layers,
        outputs: w.outputs(),
        reused: fleet.signers(&graph),
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
