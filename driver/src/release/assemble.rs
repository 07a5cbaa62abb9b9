//! Assembling a release from a build's outputs: the images from the store,
//! the kernel and a rewritten `.treeinfo` copied through from the media,
//! the boot files, `SHA256SUMS` and the manifest, written into a fresh
//! directory and put in place in one rename ([`super::ReleaseWriter`]).

use std::path::{Path, PathBuf};

use v6build_cache::Store;
use v6build_engine::recipe::{ErrorKind, Media, MediaFile, MediaRole, Recipe};
use v6build_fstree::Digest;

use super::ReleaseWriter;
use crate::Outcome;
use crate::dag::Graph;
use crate::error::DriverError;
use crate::host_inputs::HostInputs;
use crate::manifest::{
    FileDigest, LayerKey, Manifest, MediaInput, RecipeRoot, ReleaseInfo, SCHEMA_VERSION,
};
use crate::nodes::{Image, Layer, Out, PackOut, Work};
use crate::progress::BuildEvents;

/// What a finished build hands to [`assemble`].
pub(crate) struct Assembly<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Its path.
    pub path: &'a Path,
    /// The store the outputs are in.
    pub store: &'a Store,
    /// The graph that ran.
    pub graph: &'a Graph<Work>,
    /// Each node's output, by node id.
    pub outputs: &'a [Out],
    /// The host inputs as read at plan time.
    pub hosts: &'a HostInputs,
    /// Media copied through (kernel, `.treeinfo`), found before the build.
    pub copied: &'a [(&'a MediaFile, PathBuf)],
    /// Where release directories go.
    pub out_dir: &'a Path,
    /// The build's epoch and where it came from.
    pub epoch: i64,
    /// `recipe` or `SOURCE_DATE_EPOCH`.
    pub epoch_source: &'a str,
    /// Where notes go.
    pub events: &'a dyn BuildEvents,
    /// The build's `node_stats`: assembly adds its `release` entry.
    pub stats: &'a std::sync::Mutex<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Which key signed each node reused from a remote cache (manifest `reused`).
    pub reused: std::collections::BTreeMap<String, String>,
}

/// Writes the release directory; returns it, its manifest and the node
/// keys to keep as its gc root.
pub(crate) fn assemble(a: &Assembly<'_>) -> Result<(PathBuf, Manifest, Vec<Digest>), Outcome> {
    let Assembly {
        recipe: r,
        path,
        store,
        graph,
        outputs,
        hosts,
        copied,
        out_dir,
        epoch,
        epoch_source,
        events,
        stats,
        ref reused,
    } = *a;
    // Assemble the release.
    let mut w = ReleaseWriter::begin(out_dir, &r.release.dir)
        .map_err(|e| crate::failed(format!("cannot start release {}", r.release.dir), e))?;
    let mut roots: Vec<Digest> = Vec::new();
    let mut layers = Vec::new();
    let release_phases = crate::phase_stats::Phases::default();
    let mut release_placed = Vec::new();
    for (id, node) in graph.nodes().iter().enumerate() {
        if !matches!(node.work, Work::Media(_)) {
            roots.push(node.key);
        }
        if let Work::Layer(Layer { image, steps }) = &node.work {
            for step in steps {
                layers.push(LayerKey {
                    name: r.layers[step.layer].name.clone(),
                    image: image.name().to_string(),
                    key: step.key.to_string(),
                });
            }
        }
        if let (Work::Pack(pack), Out::Pack(PackOut { image: blob })) = (&node.work, &outputs[id]) {
            let (d, size) = (&blob.digest, &blob.size);
            let rel = match pack.image {
                Image::Initrd => "initrd.img",
                Image::Stage2 => "LiveOS/squashfs.img",
                Image::Updates => "updates.img",
            };
            // Hard-linked from the release being replaced when unchanged,
            // else copied (copy_file_range) and hashed in one read.
            let added = super::reuse::add_blob(&mut w, store, rel, d, *size, &release_phases)
                .map_err(|e| crate::failed(format!("writing {rel}"), e))?;
            release_placed.push((rel, added));
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
        &r.fixed_roots,
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
                    .map_err(|e| crate::failed(format!("reading {}", kernel.display()), e))?;
                let written = w
                    .add(&name, &mut file)
                    .map_err(|e| crate::failed(format!("writing {name}"), e))?;
                if f.sha256.map(|s| s.to_hex()) != Some(written.sha256.clone()) {
                    return Err(Outcome::Error(DriverError::Check(format!(
                        "kernel {} does not match its pinned sha256",
                        f.path.display()
                    ))));
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
                .map_err(|e| crate::failed("writing grub.cfg", e))?;
        }
        if b.ipxe {
            w.add_bytes("boot.ipxe", files.ipxe().as_bytes())
                .map_err(|e| crate::failed("writing boot.ipxe", e))?;
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
            .map_err(|e| crate::failed("writing boot.json", e))?;
    }
    // The updated .treeinfo goes in last, so it can list the others' hashes.
    if let Some((m, f)) = treeinfo_media(r)? {
        let path = copied
            .iter()
            .find(|(c, _)| std::ptr::eq(*c, f))
            .map(|(_, p)| p.as_path());
        let treeinfo = release_treeinfo(r, m, f, path, &w.outputs(), events)?;
        w.add_bytes(".treeinfo", treeinfo.as_bytes())
            .map_err(|e| crate::failed("writing .treeinfo", e))?;
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
            blake3: hosts
                .digest(h)
                .ok_or_else(|| {
                    Outcome::Error(DriverError::Check(format!(
                        "{} was not read at plan time",
                        h.display()
                    )))
                })?
                .to_string(),
        });
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    inputs.dedup();
    // SHA256SUMS is an output like the others, so the manifest covers it.
    w.add_sums()
        .map_err(|e| crate::failed("writing SHA256SUMS", e))?;
    // The files the recipe declares as extra, carried over by hand.
    for rel in &r.release.extra_files {
        w.keep_extra(rel)
            .map_err(|e| crate::failed(format!("keeping extra file {rel}"), e))?;
    }
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
        reused: reused.clone(),
        extra_files: r.release.extra_files.clone(),
    };
    let release_dir = w
        .commit(&manifest.to_bytes())
        .map_err(|e| crate::failed("writing the release directory", e))?;
    for (rel, added) in &release_placed {
        super::reuse::remember_committed(store, &release_dir, rel, added);
    }
    release_phases.note(stats, "release");
    if let Ok(mut s) = stats.lock()
        && let Some(e) = s.get_mut("release")
    {
        for (rel, added) in &release_placed {
            e["images"][*rel] = serde_json::json!(match added.placed {
                super::reuse::Placed::Linked => "linked",
                super::reuse::Placed::Copied => "copied",
            });
        }
    }
    Ok((release_dir, manifest, roots))
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
    events: &dyn BuildEvents,
) -> Result<String, Outcome> {
    // Pinned, and on disk or fetched by url=, like the other media files.
    let Some(pinned) = f.sha256.map(|s| s.to_hex()) else {
        return Err(Outcome::Error(DriverError::Check(format!(
            "the treeinfo of media `{}` ({}) has no pinned sha256; run `v6build pin` on the recipe",
            m.name,
            f.path.display()
        ))));
    };
    let Some(path) = path else {
        return Err(Outcome::FailureReport(miette::Report::new(
            v6build_engine::recipe::media_missing_error(r, m, f),
        )));
    };
    let text = crate::treeinfo::read(path, Some(&pinned)).map_err(|e| Outcome::Error(e.into()))?;
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
        crate::treeinfo::check_kept(tree, kept).map_err(|e| Outcome::Error(e.into()))?;
    }
    for d in &new.dropped {
        events.note(&format!(
            "note: the release's .treeinfo leaves out [{}] {} = {}: the release does not ship \
             it (`keep \"{}\"` in media `{}` keeps the entry)",
            d.section, d.key, d.path, d.path, m.name
        ));
    }
    Ok(new.text)
}
