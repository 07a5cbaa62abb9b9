//! From a decoded recipe to a build graph, and the work each node does.
//!
//! ```text
//! media:<name>/initrd ─ initrd/unpack ─ initrd/layer/<a> ─ … ─ initrd/pack ─┐
//! media:<name>/stage2 ─ stage2/scan ─ stage2/unpack ─ stage2/layer/<b> ─ … ─ stage2/pack ─┼─ release
//!                                       updates/layer/<c> ─ … ─ updates/pack┘
//! ```
//!
//! `stage2/unpack` yields the tree a recipe edits: the ext4 tree inside
//! `LiveOS/rootfs.img` when the squashfs wraps one (EL7/EL8), or the
//! squashfs tree itself (Fedora 34+, EL9). `stage2/pack` undoes the same
//! nesting, editing the base ext4 image in place so untouched blocks keep
//! their bytes, and rewriting the squashfs with block reuse.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use v6build_cache::{ActionKey, ActionRecord, OutputKind, Store};
use v6build_engine::recipe::{MediaRole, Recipe};
use v6build_fstree::{BlobStore, Content, Digest, Leaf, LeafKind, Node, Tree, TreePath};

use crate::dag::Graph;

/// Which image a chain of nodes builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The PXE initrd.
    Initrd,
    /// The Anaconda stage2.
    Stage2,
    /// An Anaconda updates.img built from layers alone.
    Updates,
}

impl Image {
    /// Lowercase name used in node names and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Image::Initrd => "initrd",
            Image::Stage2 => "stage2",
            Image::Updates => "updates",
        }
    }
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum Work {
    /// Check a media file against its pinned sha256.
    Media {
        /// Media set name.
        media: String,
        /// Role in the set.
        role: MediaRole,
        /// Host path.
        path: PathBuf,
        /// Pinned hash (hex), if any.
        sha256: Option<String>,
        /// Where to fetch it from when the local file is absent.
        url: Option<String>,
        /// Pinned size in bytes, if any.
        size: Option<u64>,
    },
    /// Read a base stage2 squashfs's metadata once: its tree, with every
    /// file named by a reference digest (see `refs`), and the map of its
    /// compressed blocks, both cached. No data block is decompressed.
    Scan {
        /// The media's pinned sha256 (hex), which seeds the references.
        source: Option<String>,
    },
    /// Unpack a base image into the tree layers edit.
    Unpack(Image),
    /// Apply a run of layers in order, each an index into `recipe.layers`
    /// with the key that layer alone would have (its per-layer key, which
    /// the manifest records). [`plan`] collapses a chain of layers whose
    /// intermediate trees nothing else reads into one node: the tree is
    /// edited in memory and stored once, so n layers cost O(their
    /// operations), not n stored trees of growing size. The node's key is
    /// the last layer's per-layer key, which commits to every earlier one.
    Layer(Image, Vec<(usize, Digest)>),
    /// Pack the final tree into the image bytes.
    Pack(Image),
}

/// A node's result.
#[derive(Debug, Clone)]
pub enum Out {
    /// A verified media file.
    Media(PathBuf),
    /// A tree in the store.
    Tree(Digest),
    /// A blob in the store.
    Blob(Digest, u64),
    /// An unpacked initrd: its merged tree and its saved parse (a blob,
    /// `Initramfs::save()`), so pack need not decompress the base again.
    Parsed {
        /// The merged tree.
        tree: Digest,
        /// The saved parse.
        parse: Digest,
    },
    /// A scanned squashfs: its tree and its saved block map (a blob).
    Scan {
        /// The squashfs tree.
        outer: Digest,
        /// `BaseBlocks::save()` bytes.
        blocks: Digest,
    },
}

/// A failure while running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A recipe-level failure (an operation that does not apply), with a span.
    #[error("{0}")]
    Recipe(Box<v6build_engine::recipe::RecipeError>),
    /// Anything else.
    #[error("{node}: {message}")]
    Other {
        /// Node name.
        node: String,
        /// What went wrong.
        message: String,
    },
}

fn fail(node: &str, message: impl std::fmt::Display) -> NodeError {
    NodeError::Other {
        node: node.to_string(),
        message: message.to_string(),
    }
}

/// Versions of everything whose behaviour shapes the bytes of a node's output.
pub fn format_versions() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "fstree".into(),
        v6build_fstree::TREE_FORMAT_VERSION.to_string(),
    );
    m.insert(
        "cpio-writer".into(),
        v6build_cpio::WRITER_VERSION.to_string(),
    );
    for (k, v) in v6build_cpio::codec_versions() {
        m.insert(format!("cpio:{k}"), v);
    }
    for (k, v) in v6build_squashfs::codec_versions() {
        m.insert(format!("squashfs:{k}"), v);
    }
    m.insert("ext4".into(), v6build_ext4::FORMAT_VERSION.to_string());
    m.insert(
        "cpio-saved-parse".into(),
        v6build_cpio::SAVED_FORMAT_VERSION.to_string(),
    );
    // How base files are named (`refs`): a change renames every tree.
    m.insert("refs".into(), "1".into());
    m
}

fn key(op: &str, params: Value, inputs: BTreeMap<String, Digest>) -> Value {
    let k = ActionKey {
        op: op.to_string(),
        params,
        inputs,
        tool_version: crate::tool_version(),
        format_versions: format_versions(),
    };
    // OK to unwrap: an ActionKey is plain data and always serialises.
    serde_json::to_value(&k).unwrap_or(Value::Null)
}

/// The graph a recipe stands for. Needs no media present; host files the
/// layers read are hashed into the keys.
pub fn plan(recipe: &Recipe, epoch: i64) -> Result<Graph<Work>, String> {
    let mut g = Graph::default();
    let epoch_param = json!({ "epoch": epoch });
    let chain = |g: &mut Graph<Work>,
                 image: Image,
                 from: Option<&str>,
                 layers: &[String],
                 pack_params: Value|
     -> Result<(), String> {
        let mut deps_for_pack = Vec::new();
        let start = if let Some(from) = from {
            let media = recipe
                .media_named(from)
                .ok_or_else(|| format!("unknown media `{from}`"))?;
            let role = match image {
                Image::Initrd => MediaRole::Initrd,
                _ => MediaRole::Stage2,
            };
            // An updates.img is made from the stage2 tree: same media, same
            // unpack, same layer nodes (deduplicated by key).
            let src_image = if image == Image::Updates {
                Image::Stage2
            } else {
                image
            };
            let file = media
                .file(role)
                .ok_or_else(|| format!("media `{from}` has no {} file", image.name()))?;
            let sha = file.sha256.map(|s| s.to_hex());
            let mkey = key(
                "media",
                json!({ "sha256": sha.clone(), "path": file.written }),
                BTreeMap::new(),
            );
            let m = g.add(
                format!("media/{from}/{}", src_image.name()),
                vec![],
                mkey,
                Work::Media {
                    media: from.to_string(),
                    role,
                    path: file.path.clone(),
                    sha256: sha.clone(),
                    url: file.url.clone(),
                    size: file.size,
                },
            );
            deps_for_pack.push(m);
            let mut source = m;
            if src_image == Image::Stage2 {
                let mk = g.node(m).key;
                source = g.add(
                    "stage2/scan",
                    vec![m],
                    key(
                        "scan-stage2",
                        json!({ "contents": "references" }),
                        [("media".to_string(), mk)].into(),
                    ),
                    Work::Scan {
                        source: sha.clone(),
                    },
                );
                deps_for_pack.push(source);
            }
            let sk = g.node(source).key;
            let unpack = g.add(
                format!("{}/unpack", src_image.name()),
                vec![source],
                key(
                    &format!("unpack-{}", src_image.name()),
                    if src_image == Image::Initrd {
                        json!({ "saves": "parse", "contents": "in the base" })
                    } else {
                        Value::Null
                    },
                    [("media".to_string(), sk)].into(),
                ),
                Work::Unpack(src_image),
            );
            // An initrd pack repacks from the unpack's saved parse.
            if src_image == Image::Initrd && image == Image::Initrd && !layers.is_empty() {
                deps_for_pack.push(unpack);
            }
            Some(unpack)
        } else {
            None
        };
        let mut prev = start;
        for name in layers {
            let idx = recipe
                .layers
                .iter()
                .position(|l| &l.name == name)
                .ok_or_else(|| format!("unknown layer `{name}`"))?;
            let doc = crate::keys::layer_doc(&recipe.layers[idx])
                .map_err(|e| format!("reading the inputs of layer `{name}`: {e}"))?;
            let mut inputs = BTreeMap::new();
            if let Some(p) = prev {
                inputs.insert("tree".to_string(), g.node(p).key);
            }
            let layer_image = if image == Image::Updates {
                Image::Stage2
            } else {
                image
            };
            let kd = key("layer", json!({ "layer": doc, "ctx": epoch_param }), inputs);
            let k = Digest::of(&crate::dag::canonical_json(&kd));
            let id = g.add(
                format!("{}/layer/{name}", layer_image.name()),
                prev.into_iter().collect(),
                kd,
                Work::Layer(layer_image, vec![(idx, k)]),
            );
            prev = Some(id);
        }
        let mut deps = if image == Image::Updates {
            start.into_iter().collect()
        } else {
            deps_for_pack
        };
        let mut inputs = BTreeMap::new();
        for (i, &d) in deps.iter().enumerate() {
            inputs.insert(format!("base{i}"), g.node(d).key);
        }
        if let Some(p) = prev {
            deps.push(p);
            inputs.insert("tree".to_string(), g.node(p).key);
        }
        g.add(
            format!("{}/pack", image.name()),
            deps,
            key(
                &format!("pack-{}", image.name()),
                json!({ "output": pack_params, "epoch": epoch }),
                inputs,
            ),
            Work::Pack(image),
        );
        Ok(())
    };
    let names = |refs: &[v6build_engine::recipe::LayerRef]| -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    };
    if let Some(o) = &recipe.outputs.initrd {
        let params = json!({
            "compress": o.compress.as_ref().map(|c| json!({
                "kind": c.kind.name(), "level": c.level })),
            "append": o.append, "segment": o.segment,
        });
        chain(
            &mut g,
            Image::Initrd,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    if let Some(o) = &recipe.outputs.stage2 {
        let mut params = json!({
            "compress": o.compress.as_ref().map(|c| json!({
                "kind": c.kind.name(), "level": c.level })),
            "block_size": o.block_size, "grow": o.grow,
            "format": o.format.map(|f| format!("{f:?}")),
        });
        // Pack checks the base against `layout`: a new layout must rerun
        // it even with the rest cached. (Absent, the key is as before.)
        if let Some(l) = o.layout {
            params["layout"] = json!(l.name());
        }
        chain(
            &mut g,
            Image::Stage2,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    if let Some(o) = &recipe.outputs.updates {
        let params = json!({
            "compress": o.compress.as_ref().map(|c| json!({
                "kind": c.kind.name(), "level": c.level })),
        });
        chain(
            &mut g,
            Image::Updates,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    Ok(collapse_layers(g))
}

/// Merges every layer node whose tree only the next layer reads into that
/// next layer's node (see [`Work::Layer`]). A layer whose tree is shared
/// (two outputs that apply the same first layers to the same base, or an
/// output that ends there) ends a run and keeps its own node, so shared
/// work is still done once. The merged node keeps the last layer's key
/// and key document, the first layer's inputs, and the name
/// `IMAGE/layer/FIRST..LAST`.
fn collapse_layers(g: Graph<Work>) -> Graph<Work> {
    let consumers = g.consumers();
    let nodes = g.into_nodes();
    // absorbed[p]: p's only reader is a layer node that takes p's place.
    let mut absorbed = vec![false; nodes.len()];
    for n in &nodes {
        if let (Work::Layer(..), [p]) = (&n.work, n.deps.as_slice())
            && matches!(nodes[*p].work, Work::Layer(..))
            && consumers[*p] == 1
        {
            absorbed[*p] = true;
        }
    }
    let mut out: Graph<Work> = Graph::default();
    let mut new_id: Vec<Option<crate::dag::NodeId>> = vec![None; nodes.len()];
    // A run in progress: its first node's name, its layers, its inputs.
    type Run = (String, Vec<(usize, Digest)>, Vec<crate::dag::NodeId>);
    let mut pending: Vec<Option<Run>> = (0..nodes.len()).map(|_| None).collect();
    for (i, n) in nodes.into_iter().enumerate() {
        let crate::dag::Node {
            name,
            deps,
            key_doc,
            work,
            ..
        } = n;
        let (name, work, deps) = match work {
            Work::Layer(image, steps) => {
                // Continue the run this layer's input belongs to, if any.
                let (first, mut all, deps) = match deps.as_slice() {
                    [p] if absorbed[*p] => pending[*p].take().unwrap_or_default(),
                    _ => (name.clone(), Vec::new(), deps),
                };
                all.extend(steps);
                if absorbed[i] {
                    pending[i] = Some((first, all, deps));
                    continue;
                }
                let name = if all.len() > 1 {
                    let last = name.rsplit('/').next().unwrap_or_default();
                    format!("{first}..{last}")
                } else {
                    name
                };
                (name, Work::Layer(image, all), deps)
            }
            w => (name, w, deps),
        };
        let deps = deps.iter().filter_map(|&d| new_id[d]).collect();
        new_id[i] = Some(out.add(name, deps, key_doc, work));
    }
    out
}

/// Everything a running node needs.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The store.
    pub store: &'a Store,
    /// What nodes read contents through: the store plus the registered
    /// stage2 bases (reference contents).
    pub blobs: &'a crate::refs::Blobs<'a>,
    /// Epoch for new entries.
    pub epoch: i64,
    /// Compression threads.
    pub threads: usize,
    /// How media with `url=` are downloaded.
    pub fetch: &'a crate::fetch::FetchOptions,
    /// What the nodes that ran report about their work, by node name (the
    /// `node_stats` of `build --json`).
    pub stats: std::sync::Mutex<BTreeMap<String, Value>>,
}

fn media_path(inputs: &[&Out]) -> Option<PathBuf> {
    inputs.iter().find_map(|o| match o {
        Out::Media(p) => Some(p.clone()),
        _ => None,
    })
}

fn scan_input(inputs: &[&Out]) -> Option<(Digest, Digest)> {
    inputs.iter().find_map(|o| match o {
        Out::Scan { outer, blocks } => Some((*outer, *blocks)),
        _ => None,
    })
}

fn parsed_input(inputs: &[&Out]) -> Option<Digest> {
    inputs.iter().find_map(|o| match o {
        Out::Parsed { parse, .. } => Some(*parse),
        _ => None,
    })
}

fn tree_input(inputs: &[&Out]) -> Option<Digest> {
    inputs.iter().rev().find_map(|o| match o {
        Out::Tree(d) | Out::Parsed { tree: d, .. } => Some(*d),
        _ => None,
    })
}

/// Where a stage2 squashfs keeps its nested filesystem image, if it has one.
pub(crate) const NESTED_IMAGES: [&str; 2] = ["/LiveOS/rootfs.img", "/LiveOS/ext3fs.img"];

/// Where the nested image would be, without looking inside it.
pub(crate) fn nested_candidate(outer: &Tree) -> Option<Content> {
    NESTED_IMAGES.iter().find_map(|p| {
        let path = TreePath::parse(p).ok()?;
        match outer.get(&path) {
            Some(Node::Leaf(l)) => match &l.kind {
                LeafKind::Regular(c) => Some(*c),
                _ => None,
            },
            _ => None,
        }
    })
}

/// How a base stage2 squashfs is laid out.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// It wraps an ext4 image at this path (EL7, EL8).
    Nested(TreePath, Content),
    /// It holds the tree directly (Fedora 34+, EL9).
    Plain,
}

/// Why a nested image candidate is not an ext4 image, or `None` if it is
/// one (by its superblock magic; the superblock itself is checked when the
/// image is opened).
fn not_ext4(node: &Node, store: &dyn BlobStore) -> Option<String> {
    let c = match node {
        Node::Dir(_) => return Some("it is a directory".into()),
        Node::Leaf(l) => match &l.kind {
            LeafKind::Regular(c) => c,
            LeafKind::Symlink(t) => {
                return Some(format!(
                    "it is a symlink (to {:?}), not an image",
                    String::from_utf8_lossy(t)
                ));
            }
            _ => return Some("it is not a regular file".into()),
        },
    };
    if c.size == 0 {
        return Some("it is empty".into());
    }
    if c.size < 2048 {
        return Some(format!(
            "it is {} bytes, too short to hold an ext4 superblock",
            c.size
        ));
    }
    let mut head = vec![0u8; 2048];
    if let Err(e) = store
        .open(&c.digest)
        .and_then(|mut r| r.read_exact(&mut head))
    {
        return Some(format!("its first bytes cannot be read: {e}"));
    }
    if crate::inspect::sniff(&head) == crate::inspect::Format::Ext4 {
        return None;
    }
    Some(format!(
        "it has no ext4 superblock magic (bytes 1080-1081 are {:02x} {:02x}, not 53 ef)",
        head[1080], head[1081]
    ))
}

/// Decides a base stage2's layout. A squashfs with a `LiveOS/rootfs.img`
/// (or `ext3fs.img`) is EL7-shaped and that file must be an ext4 image: a
/// broken one (bad magic, empty, a symlink) is an error, never a silent
/// switch to the plain layout, unless the recipe says `layout "plain"`.
/// `expect`, the recipe's `layout`, is checked against what is found.
pub(crate) fn stage2_shape(
    outer: &Tree,
    store: &dyn BlobStore,
    expect: Option<v6build_engine::recipe::Stage2Layout>,
) -> Result<Shape, String> {
    use v6build_engine::recipe::Stage2Layout;
    let found = NESTED_IMAGES.iter().find_map(|p| {
        let path = TreePath::parse(p).ok()?;
        outer.get(&path).map(|n| (path, n))
    });
    match (found, expect) {
        (None, Some(Stage2Layout::El7)) => Err(format!(
            "the recipe says layout \"el7\", but the base squashfs has no {}",
            NESTED_IMAGES.join(" or ")
        )),
        (None, _) => Ok(Shape::Plain),
        (Some((path, node)), expect) => match (not_ext4(node, store), expect) {
            (None, Some(Stage2Layout::Plain)) => Err(format!(
                "the recipe says layout \"plain\", but the base squashfs wraps an ext4 image at {path} (an EL7-style stage2); say layout \"el7\" or drop `layout`"
            )),
            (None, _) => match node {
                Node::Leaf(l) => match &l.kind {
                    LeafKind::Regular(c) => Ok(Shape::Nested(path, *c)),
                    _ => Err(format!("{path} is not a regular file")),
                },
                Node::Dir(_) => Err(format!("{path} is a directory")),
            },
            (Some(_), Some(Stage2Layout::Plain)) => Ok(Shape::Plain),
            (Some(why), _) => Err(format!(
                "the base squashfs has {path}, which makes it an EL7-style stage2, but {path} is not a valid ext4 image: {why}; if this stage2 really holds its tree directly, say layout \"plain\" in the stage2 output"
            )),
        },
    }
}

impl Ctx<'_> {
    /// Runs one node's work.
    pub fn run(&self, name: &str, work: &Work, inputs: &[&Out]) -> Result<Out, NodeError> {
        match work {
            Work::Media {
                path,
                sha256,
                media,
                role,
                url,
                size,
            } => {
                let Some(found) = crate::fetch::locate(
                    self.store.root(),
                    path,
                    url.as_deref(),
                    sha256.as_deref(),
                    *size,
                    self.fetch,
                )
                .map_err(|e| fail(name, e))?
                else {
                    return Err(fail(
                        name,
                        format!(
                            "{} media `{media}` is missing at {}; {}",
                            role.node_name(),
                            path.display(),
                            match url {
                                Some(u) => format!(
                                    "it has url={u} but no pinned sha256 to check a download against; add sha256="
                                ),
                                None => "put the file there (or add url=) and run `v6build pin`"
                                    .to_string(),
                            }
                        ),
                    ));
                };
                if found != *path {
                    // Fetched: verified against the pin by the fetch, on
                    // every use (a wrong file in the cache is replaced).
                    return Ok(Out::Media(found));
                }
                let phases = crate::phase_stats::Phases::default();
                let (actual, how) = crate::media_hash::media_sha256(self.store, path, &phases)
                    .map_err(|e| fail(name, format!("reading {}: {e}", path.display())))?;
                self.note(name, "sha256", json!(how.name()));
                phases.note(&self.stats, name);
                match sha256 {
                    None => Err(fail(
                        name,
                        format!("{} has no pinned sha256; run `v6build pin`", path.display()),
                    )),
                    Some(want) if *want != actual.to_hex() => Err(fail(
                        name,
                        format!(
                            "{} has sha256 {} but the recipe pins {want}",
                            path.display(),
                            actual.to_hex()
                        ),
                    )),
                    Some(_) => Ok(Out::Media(path.clone())),
                }
            }
            Work::Scan { source } => {
                let path = media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
                let f = v6build_engine::host::open_regular(&path).map_err(|e| fail(name, e))?;
                let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
                let source = source.as_deref().unwrap_or_default();
                let (outer, blocks) = img
                    .read_tree_lazy(source.as_bytes())
                    .map_err(|e| fail(name, e))?;
                let outer = self.store.put_tree(&outer).map_err(|e| fail(name, e))?;
                let blocks = self
                    .store
                    .put_blob(&blocks.save())
                    .map_err(|e| fail(name, e))?;
                Ok(Out::Scan { outer, blocks })
            }
            Work::Unpack(image) => {
                let tree = match image {
                    Image::Initrd => {
                        let path =
                            media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
                        let (tree, saved, contents) = self.unpack_initrd(name, &path)?;
                        let tree = self.store.put_tree(&tree).map_err(|e| fail(name, e))?;
                        let parse = self.store.put_blob(&saved).map_err(|e| fail(name, e))?;
                        if let Some(contents) = contents {
                            self.blobs.register_initrd(path, parse, Some(contents));
                        }
                        return Ok(Out::Parsed { tree, parse });
                    }
                    _ => {
                        let (outer, _) =
                            scan_input(inputs).ok_or_else(|| fail(name, "no scan input"))?;
                        self.unpack_stage2(name, &outer)?
                    }
                };
                let d = self.store.put_tree(&tree).map_err(|e| fail(name, e))?;
                Ok(Out::Tree(d))
            }
            Work::Layer(_, steps) => {
                let mut tree = match tree_input(inputs) {
                    Some(d) => self.store.get_tree(&d).map_err(|e| fail(name, e))?,
                    None => Tree::new(v6build_fstree::Meta::root(0o755, self.epoch)),
                };
                for (idx, _) in steps {
                    let layer = &self.recipe.layers[*idx];
                    crate::apply::apply_layer(
                        self.recipe,
                        layer,
                        &mut tree,
                        self.blobs,
                        self.epoch,
                    )
                    .map_err(NodeError::Recipe)?;
                }
                if steps.len() > 1 {
                    self.note(name, "layers", json!(steps.len()));
                }
                let d = self.store.put_tree(&tree).map_err(|e| fail(name, e))?;
                Ok(Out::Tree(d))
            }
            Work::Pack(image) => {
                let tree = match tree_input(inputs) {
                    Some(d) => self.store.get_tree(&d).map_err(|e| fail(name, e))?,
                    None => return Err(fail(name, "no tree input")),
                };
                let bytes_path = media_path(inputs);
                let (d, size) = match image {
                    Image::Initrd => {
                        let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                        let parse =
                            parsed_input(inputs).ok_or_else(|| fail(name, "no parse input"))?;
                        self.pack_initrd(name, &base, &parse, &tree)?
                    }
                    Image::Stage2 => {
                        let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                        let scan = scan_input(inputs).ok_or_else(|| fail(name, "no scan input"))?;
                        self.pack_stage2(name, &base, scan, &tree)?
                    }
                    Image::Updates => {
                        let base = match inputs.first() {
                            Some(Out::Tree(d)) => {
                                self.store.get_tree(d).map_err(|e| fail(name, e))?
                            }
                            _ => return Err(fail(name, "no base tree input")),
                        };
                        self.pack_updates(name, &base, &tree)?
                    }
                };
                Ok(Out::Blob(d, size))
            }
        }
    }

    /// The merged tree and the saved parse. Files are hashed, not stored:
    /// the base initrd itself holds them (see `refs`). When the recipe
    /// rewrites the initrd, pack will read every file, so the contents are
    /// returned too, to be kept in memory for it instead of being
    /// decompressed a second time.
    fn unpack_initrd(
        &self,
        name: &str,
        path: &Path,
    ) -> Result<(Tree, Vec<u8>, Option<v6build_cpio::KeptContents>), NodeError> {
        let limits = crate::limits::Limits::from_env().map_err(|e| fail(name, e))?;
        let bytes = read_initrd(path, &limits).map_err(|e| fail(name, e))?;
        let rewrite = self
            .recipe
            .outputs
            .initrd
            .as_ref()
            .is_some_and(|o| !o.append);
        let (ird, kept) = if rewrite {
            let (ird, kept) = v6build_cpio::Initramfs::parse_kept(&bytes, &limits.cpio())
                .map_err(|e| fail(name, crate::limits::cpio_message(&e)))?;
            (ird, Some(kept))
        } else {
            let ird =
                v6build_cpio::Initramfs::parse(&bytes, &v6build_fstree::HashOnly, &limits.cpio())
                    .map_err(|e| fail(name, crate::limits::cpio_message(&e)))?;
            (ird, None)
        };
        drop(bytes);
        Ok((ird.merged(), ird.save(), kept))
    }

    /// The tree a recipe edits. For a nested ext4 image, only its metadata
    /// is read (through the squashfs block index); files are named by
    /// [`crate::refs::ext4_ref`].
    fn unpack_stage2(&self, name: &str, outer: &Digest) -> Result<Tree, NodeError> {
        let outer = self.store.get_tree(outer).map_err(|e| fail(name, e))?;
        match self.shape(name, &outer)? {
            Shape::Plain => Ok(outer),
            Shape::Nested(path, content) => {
                let fs = self
                    .blobs
                    .nested_ext4(&content.digest)
                    .ok_or_else(|| fail(name, format!("{path} is not in a registered base")))?
                    .map_err(|e| fail(name, e))?;
                let rootfs = content.digest;
                let tree = crate::refs::read_ext4(&fs, &rootfs)
                    .map_err(|e| fail(name, format!("reading {path}: {e}")))?;
                if let Some(b) = self.blobs.base_holding(&rootfs) {
                    let phases = crate::phase_stats::Phases::default();
                    phases.read(b.bytes_read());
                    phases.decompressed(b.bytes_decompressed());
                    phases.note(&self.stats, name);
                    self.note(
                        name,
                        "base_blocks_decompressed",
                        json!(b.blocks_decompressed()),
                    );
                }
                Ok(tree)
            }
        }
    }

    /// The base stage2's layout, checked against the recipe's `layout`
    /// (a mismatch points at it).
    fn shape(&self, name: &str, outer: &Tree) -> Result<Shape, NodeError> {
        let out = self.recipe.outputs.stage2.as_ref();
        let expect = out.and_then(|o| o.layout);
        stage2_shape(outer, self.blobs, expect).map_err(|m| match out.and_then(|o| o.layout_span) {
            Some(span) => NodeError::Recipe(Box::new(self.recipe.error_at(
                v6build_engine::recipe::ErrorKind::MediaMismatch,
                span,
                format!("{name}: {m}"),
                "the layout the recipe expects",
            ))),
            None => fail(name, m),
        })
    }

    fn note(&self, name: &str, key: &str, value: Value) {
        if let Ok(mut s) = self.stats.lock() {
            let e = s.entry(name.to_string()).or_insert_with(|| json!({}));
            e[key] = value;
        }
    }

    fn pack_stage2(
        &self,
        name: &str,
        base: &Path,
        scan: (Digest, Digest),
        view: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        use v6build_engine::recipe::Stage2Format;
        let out = self.recipe.outputs.stage2.as_ref();
        let f = v6build_engine::host::open_regular(base).map_err(|e| fail(name, e))?;
        let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
        let mut outer = self.store.get_tree(&scan.0).map_err(|e| fail(name, e))?;
        let saved = self.store.get_blob(&scan.1).map_err(|e| fail(name, e))?;
        let mut blocks =
            v6build_squashfs::BaseBlocks::load(&saved, &img).map_err(|e| fail(name, e))?;
        let mut opts = v6build_squashfs::WriteOptions::from_base(&img);
        if let Some(c) = out.and_then(|o| o.compress.as_ref()) {
            opts.compressor = squashfs_compressor(c).map_err(|e| fail(name, e))?;
        }
        if let Some(bs) = out.and_then(|o| o.block_size) {
            opts.block_size = bs;
        }
        opts.threads = self.threads;
        let grow = out.and_then(|o| o.grow);
        let nested = match self.shape(name, &outer)? {
            Shape::Nested(path, content) => Some((path, content)),
            Shape::Plain => None,
        };
        let want_ext4 = match out.and_then(|o| o.format) {
            Some(Stage2Format::Ext4) => true,
            Some(Stage2Format::Squashfs) => false,
            None => nested.is_some(),
        };
        let mut extra: Option<(Digest, Arc<Vec<u8>>)> = None;
        let tree = match (nested, want_ext4) {
            (Some((path, content)), true) => {
                let (d, len) = self.edit_nested(name, &mut blocks, &path, &content, view, grow)?;
                set_content(
                    &mut outer,
                    &path,
                    Content {
                        digest: d,
                        size: len,
                    },
                );
                outer
            }
            (None, true) => {
                // A plain base, an EL7-style output: build the image.
                let mut co = v6build_ext4::CreateOptions::with_label(b"Anaconda");
                co.timestamp = u32::try_from(self.epoch.max(0)).unwrap_or(u32::MAX);
                let mut image = v6build_ext4::create(view, self.blobs, &co)
                    .map_err(|e| fail(name, format!("making LiveOS/rootfs.img: {e}")))?;
                if let Some(g) = grow {
                    v6build_ext4::grow(&mut image, g)
                        .map_err(|e| fail(name, format!("growing LiveOS/rootfs.img: {e}")))?;
                }
                let d = crate::blocks::digest_large(&image);
                let size = image.len() as u64;
                extra = Some((d, Arc::new(image)));
                nested_outer(&view.meta, self.epoch, Content { digest: d, size })
                    .map_err(|e| fail(name, e))?
            }
            (_, false) => {
                if grow.is_some() {
                    return Err(fail(
                        name,
                        "`grow` enlarges a nested ext4 image, but this stage2 is written as a plain squashfs",
                    ));
                }
                view.clone()
            }
        };
        // Written in place into the store (one write, one hashing read).
        let mut file = self.store.blob_file().map_err(|e| fail(name, e))?;
        let cache = crate::blocks::StoreBlockCache { store: self.store };
        let report = match extra {
            Some((digest, bytes)) => {
                let blobs = crate::blocks::WithExtra {
                    inner: self.blobs,
                    digest,
                    bytes,
                };
                v6build_squashfs::write(
                    &tree,
                    &blobs,
                    &opts,
                    Some(&blocks),
                    Some(&cache),
                    &mut file,
                )
            }
            None => v6build_squashfs::write(
                &tree,
                self.blobs,
                &opts,
                Some(&blocks),
                Some(&cache),
                &mut file,
            ),
        }
        .map_err(|e| fail(name, format!("writing the new squashfs ({file:?}): {e}")))?;
        self.note(
            name,
            "squashfs",
            serde_json::to_value(&report).unwrap_or_default(),
        );
        self.note(
            name,
            "base_blocks_decompressed",
            json!(blocks.blocks_decompressed()),
        );
        let phases = crate::phase_stats::Phases::default();
        phases.read(blocks.bytes_read());
        phases.decompressed(blocks.bytes_decompressed());
        phases.compressed(report.bytes_compressed_out);
        phases.written(report.bytes_written);
        let stored = phases
            .hashing(|| file.commit())
            .map_err(|e| fail(name, e))?;
        phases.read(stored.1);
        phases.note(&self.stats, name);
        Ok(stored)
    }

    /// Edits the nested ext4 image in place, reading it through the
    /// squashfs block index, and registers the result with `blocks` as the
    /// base image plus the changed bytes, so the writer copies every
    /// untouched compressed block. Returns the new image's name and length.
    fn edit_nested(
        &self,
        name: &str,
        blocks: &mut v6build_squashfs::BaseBlocks,
        path: &TreePath,
        content: &Content,
        view: &Tree,
        grow: Option<u64>,
    ) -> Result<(Digest, u64), NodeError> {
        let at = blocks
            .file_at(&content.digest)
            .ok_or_else(|| fail(name, format!("{path} is not in the base's block map")))?;
        let at = crate::refs::SquashAt(at);
        // Files the view still names by reference are the base's own
        // inodes: the editor need not read them to know they are unchanged.
        let mut known = std::collections::HashMap::new();
        view.walk(&mut |_, n| {
            if let Node::Leaf(l) = n
                && let LeafKind::Regular(c) = &l.kind
                && let Some(ino) = crate::refs::ext4_ino(&content.digest, &c.digest)
            {
                known.insert(ino, *c);
            }
        });
        let mut eopts = v6build_ext4::EditOptions::default();
        eopts.known_contents = known;
        let edit_err = |e: v6build_ext4::Error| fail(name, format!("editing {path}: {e}"));
        let (bs, changed, len) = match grow {
            None => {
                let e =
                    v6build_ext4::edit_blocks(&at, view, self.blobs, &eopts).map_err(edit_err)?;
                (e.block_size, e.blocks, e.len)
            }
            Some(g) => {
                let (grown, _) = v6build_ext4::grow_blocks(&at, g)
                    .map_err(|e| fail(name, format!("growing {path}: {e}")))?;
                let mut all = grown.blocks.clone();
                let ov = v6build_ext4::Overlay::new(&at, grown.block_size, grown.blocks, grown.len);
                let e =
                    v6build_ext4::edit_blocks(&ov, view, self.blobs, &eopts).map_err(edit_err)?;
                all.extend(e.blocks);
                (e.block_size, all, e.len.max(grown.len))
            }
        };
        let writes: BTreeMap<u64, Vec<u8>> = changed
            .into_iter()
            .map(|(b, data)| (b * u64::from(bs), data))
            .collect();
        let d = crate::refs::patched_ref(&content.digest, len, &writes);
        let ps = blocks
            .patch_file(d, &content.digest, len, &writes)
            .map_err(|e| fail(name, format!("re-emitting {path}: {e}")))?;
        self.note(
            name,
            "nested",
            json!({
                "path": path.to_string(),
                "bytes": len,
                "fs_blocks_changed": writes.len(),
                "squashfs_blocks": ps.blocks_total,
                "squashfs_blocks_changed": ps.blocks_changed,
            }),
        );
        Ok((d, len))
    }

    fn pack_initrd(
        &self,
        name: &str,
        base: &Path,
        parse: &Digest,
        tree: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        // newc has no field for extended attributes; refuse rather than drop them.
        let mut with_xattrs = None;
        tree.walk(&mut |p, n| {
            if with_xattrs.is_none() && !n.meta().xattrs.is_empty() {
                with_xattrs = Some(p.clone());
            }
        });
        if let Some(p) = with_xattrs {
            return Err(fail(
                name,
                format!(
                    "{p} has extended attributes, which an initramfs (cpio newc) cannot store; set xattrs only in stage2 layers"
                ),
            ));
        }
        let limits = crate::limits::Limits::from_env().map_err(|e| fail(name, e))?;
        let bytes = read_initrd(base, &limits).map_err(|e| fail(name, e))?;
        let saved = self.store.get_blob(parse).map_err(|e| fail(name, e))?;
        let parsed = v6build_cpio::Initramfs::load(&saved).map_err(|e| fail(name, e))?;
        let out = self.recipe.outputs.initrd.as_ref();
        let opts = v6build_cpio::RepackOptions {
            mode: if out.is_some_and(|o| o.append) {
                v6build_cpio::RepackMode::Append
            } else {
                v6build_cpio::RepackMode::Rewrite
            },
            segment: out
                .and_then(|o| o.segment)
                .map(|s| usize::try_from(s).unwrap_or(usize::MAX)),
            compression: out.and_then(|o| o.compress.as_ref()).map(cpio_compression),
            threads: std::num::NonZeroUsize::new(self.threads)
                .unwrap_or(std::num::NonZeroUsize::MIN),
        };
        let cache = crate::blocks::StoreChunkCache { store: self.store };
        let packed =
            v6build_cpio::repack_with(&bytes, &parsed, tree, self.blobs, &opts, Some(&cache))
                .map_err(|e| fail(name, e))?;
        let d = self.store.put_blob(&packed).map_err(|e| fail(name, e))?;
        Ok((d, packed.len() as u64))
    }

    fn pack_updates(
        &self,
        name: &str,
        base: &Tree,
        tree: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        let changed = crate::updates::changes(base, tree).map_err(|e| fail(name, e))?;
        let params = self
            .recipe
            .outputs
            .updates
            .as_ref()
            .and_then(|o| o.compress.as_ref())
            .map(cpio_compression)
            .unwrap_or(v6build_cpio::Compression::Gzip {
                level: 9,
                chunk_size: v6build_cpio::GZIP_CHUNK,
            });
        let raw = v6build_cpio::newc_bytes(&changed, self.blobs).map_err(|e| fail(name, e))?;
        let threads =
            std::num::NonZeroUsize::new(self.threads).unwrap_or(std::num::NonZeroUsize::MIN);
        let cache = crate::blocks::StoreChunkCache { store: self.store };
        let packed = v6build_cpio::compress_with(&params, &raw, threads, Some(&cache))
            .map_err(|e| fail(name, e))?;
        let d = self.store.put_blob(&packed).map_err(|e| fail(name, e))?;
        Ok((d, packed.len() as u64))
    }
}

/// Reads a base initrd whole, refusing a file larger than the unpacked
/// limit before allocating for it (no initrd is larger than what it
/// unpacks to, give or take its headers).
pub(crate) fn read_initrd(path: &Path, limits: &crate::limits::Limits) -> Result<Vec<u8>, String> {
    // O_NOFOLLOW|O_NONBLOCK, regular files only (engine::host).
    let f =
        v6build_engine::host::open_regular(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > limits.max_unpacked {
        return Err(format!(
            "{} is {len} bytes, which exceeds limit {} bytes for an initrd (set with {}=SIZE)",
            path.display(),
            limits.max_unpacked,
            crate::limits::ENV_UNPACKED
        ));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(|_| format!("{}: out of memory for {len} bytes", path.display()))?;
    // Bounded too, in case the file grows after the length was checked.
    f.take(limits.max_unpacked.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limits.max_unpacked {
        return Err(format!(
            "{} grew past limit {} bytes for an initrd while it was read (set with {}=SIZE)",
            path.display(),
            limits.max_unpacked,
            crate::limits::ENV_UNPACKED
        ));
    }
    Ok(bytes)
}

/// The cpio codec's parameters for a recipe's `compress` node: the kind's
/// canonical parameters, with the recipe's level where it gives one.
fn cpio_compression(c: &v6build_engine::recipe::Compression) -> v6build_cpio::Compression {
    use v6build_cpio::{Compression as C, CompressionKind as K};
    use v6build_engine::recipe::CompressKind;
    let kind = match c.kind {
        CompressKind::None => return C::None,
        CompressKind::Gzip => K::Gzip,
        CompressKind::Xz => K::Xz,
        CompressKind::Zstd => K::Zstd,
        CompressKind::Lz4 => K::Lz4Legacy,
    };
    let mut p = C::canonical(kind).unwrap_or(C::None);
    if let Some(l) = c.level {
        match &mut p {
            C::Gzip { level, .. } => *level = l,
            C::Xz { preset, .. } => *preset = l,
            C::Zstd { level } => *level = i32::try_from(l).unwrap_or(22),
            C::None | C::Lz4Legacy => {}
        }
    }
    p
}

/// The squashfs compressor for a recipe's `compress` node.
fn squashfs_compressor(
    c: &v6build_engine::recipe::Compression,
) -> Result<v6build_squashfs::Compressor, String> {
    use v6build_engine::recipe::CompressKind;
    use v6build_squashfs::Compressor;
    Ok(match c.kind {
        CompressKind::Xz => {
            if c.level.is_some() {
                return Err(
                    "squashfs xz has no level (mksquashfs -comp xz takes a dictionary size); drop `level=`"
                        .into(),
                );
            }
            Compressor::xz()
        }
        CompressKind::Gzip => match Compressor::gzip() {
            Compressor::Gzip {
                level,
                window_bits,
                strategies,
            } => Compressor::Gzip {
                level: c.level.unwrap_or(level),
                window_bits,
                strategies,
            },
            other => other,
        },
        CompressKind::Zstd => Compressor::Zstd {
            level: c.level.unwrap_or(15),
        },
        CompressKind::Lz4 => {
            return Err("v6build reads lz4 squashfs images but does not write them; choose xz, gzip or zstd".into());
        }
        CompressKind::None => {
            return Err("a stage2 squashfs is always compressed; choose xz, gzip or zstd".into());
        }
    })
}

/// Points the regular file at `path` of `tree` at new content.
fn set_content(tree: &mut Tree, path: &TreePath, c: Content) {
    if let Some(Node::Leaf(l)) = tree.get_mut(path) {
        let mut leaf: Leaf = (**l).clone();
        leaf.kind = LeafKind::Regular(c);
        *l = Arc::new(leaf);
    }
}

/// The squashfs tree of an EL7-style stage2 made from scratch:
/// `/LiveOS/rootfs.img` and nothing else, owned by root, dated `epoch`.
fn nested_outer(root: &v6build_fstree::Meta, epoch: i64, c: Content) -> Result<Tree, String> {
    let dir_meta = v6build_fstree::Meta::root(0o755, epoch);
    let mut t = Tree::new(v6build_fstree::Meta {
        xattrs: Default::default(),
        ..root.clone()
    });
    let path = TreePath::parse("/LiveOS/rootfs.img").map_err(|e| e.to_string())?;
    t.insert(
        &TreePath::parse("/LiveOS").map_err(|e| e.to_string())?,
        Node::Dir(v6build_fstree::Directory::new(dir_meta.clone())),
        false,
    )
    .map_err(|e| e.to_string())?;
    t.insert(
        &path,
        Node::Leaf(Arc::new(Leaf {
            meta: v6build_fstree::Meta {
                perm: 0o644,
                ..dir_meta
            },
            kind: LeafKind::Regular(c),
        })),
        false,
    )
    .map_err(|e| e.to_string())?;
    Ok(t)
}

/// Records a node's output in the action cache.
pub fn record(out: &Out) -> Option<ActionRecord> {
    let (kind, digest, size) = match out {
        Out::Tree(d) => (OutputKind::Tree, *d, 0),
        Out::Blob(d, s) => (OutputKind::Blob, *d, *s),
        Out::Media(_) => return None,
        Out::Parsed { tree, parse } => {
            let mut rec = ActionRecord::single(
                "tree",
                v6build_cache::Output {
                    kind: OutputKind::Tree,
                    digest: *tree,
                    size: 0,
                },
            );
            rec.outputs.insert(
                "parse".into(),
                v6build_cache::Output {
                    kind: OutputKind::Blob,
                    digest: *parse,
                    size: 0,
                },
            );
            return Some(rec);
        }
        Out::Scan { outer, blocks } => {
            let mut rec = ActionRecord::single(
                "outer",
                v6build_cache::Output {
                    kind: OutputKind::Tree,
                    digest: *outer,
                    size: 0,
                },
            );
            rec.outputs.insert(
                "blocks".into(),
                v6build_cache::Output {
                    kind: OutputKind::Blob,
                    digest: *blocks,
                    size: 0,
                },
            );
            return Some(rec);
        }
    };
    Some(ActionRecord::single(
        "out",
        v6build_cache::Output { kind, digest, size },
    ))
}

/// A cached tree is only usable if it reads back verified and every file it
/// names is still in the store or is a reference `claim` accepts.
fn tree_usable(store: &Store, claim: &dyn Fn(&Digest) -> bool, digest: &Digest) -> bool {
    store.get_tree(digest).is_ok_and(|tree| {
        tree.contents().iter().all(|c| {
            // An empty file needs no object (readers make its no bytes).
            (c.size == 0 && c.digest == Digest::of(b""))
                || store.has(v6build_cache::ObjectKind::Blob, &c.digest)
                || claim(&c.digest)
        })
    })
}

/// Turns a cached record back into an output, if its objects are present.
/// `claim` says whether a digest missing from the store is a reference a
/// registered base resolves (see `refs`).
pub fn from_record(
    store: &Store,
    claim: &dyn Fn(&Digest) -> bool,
    rec: &ActionRecord,
) -> Option<Out> {
    if let (Some(outer), Some(blocks)) = (rec.outputs.get("outer"), rec.outputs.get("blocks")) {
        // A scan's files are references its own block map resolves.
        let present = store.get_tree(&outer.digest).is_ok()
            && store.has(v6build_cache::ObjectKind::Blob, &blocks.digest);
        return present.then_some(Out::Scan {
            outer: outer.digest,
            blocks: blocks.digest,
        });
    }
    if let (Some(tree), Some(parse)) = (rec.outputs.get("tree"), rec.outputs.get("parse")) {
        // An unpacked initrd's files are in the base initrd, which its
        // saved parse describes.
        let present = store.get_tree(&tree.digest).is_ok()
            && store.has(v6build_cache::ObjectKind::Blob, &parse.digest);
        return present.then_some(Out::Parsed {
            tree: tree.digest,
            parse: parse.digest,
        });
    }
    let o = rec.outputs.get("out")?;
    match o.kind {
        OutputKind::Tree => tree_usable(store, claim, &o.digest).then_some(Out::Tree(o.digest)),
        OutputKind::Blob => store
            .has(v6build_cache::ObjectKind::Blob, &o.digest)
            .then_some(Out::Blob(o.digest, o.size)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The media file among a node's inputs.
pub fn media_input(inputs: &[&Out]) -> Option<PathBuf> {
    media_path(inputs)
}
