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
use std::fs::File;
use std::io::{self, Read};
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
    },
    /// Read a base stage2 squashfs once: its tree and the map of its
    /// compressed blocks, both cached, so later nodes never decompress the
    /// whole image again.
    Scan,
    /// Unpack a base image into the tree layers edit.
    Unpack(Image),
    /// Apply one layer (index into `recipe.layers`).
    Layer(Image, usize),
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
                json!({ "sha256": sha, "path": file.written }),
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
                    sha256: sha,
                    url: file.url.clone(),
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
                        Value::Null,
                        [("media".to_string(), mk)].into(),
                    ),
                    Work::Scan,
                );
                deps_for_pack.push(source);
            }
            let sk = g.node(source).key;
            Some(g.add(
                format!("{}/unpack", src_image.name()),
                vec![source],
                key(
                    &format!("unpack-{}", src_image.name()),
                    Value::Null,
                    [("media".to_string(), sk)].into(),
                ),
                Work::Unpack(src_image),
            ))
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
            let id = g.add(
                format!("{}/layer/{name}", layer_image.name()),
                prev.into_iter().collect(),
                key("layer", json!({ "layer": doc, "ctx": epoch_param }), inputs),
                Work::Layer(layer_image, idx),
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
        let params = json!({
            "compress": o.compress.as_ref().map(|c| json!({
                "kind": c.kind.name(), "level": c.level })),
            "block_size": o.block_size, "grow": o.grow,
            "format": o.format.map(|f| format!("{f:?}")),
        });
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
    Ok(g)
}

/// Everything a running node needs.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The store.
    pub store: &'a Store,
    /// Epoch for new entries.
    pub epoch: i64,
    /// Compression threads.
    pub threads: usize,
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

fn tree_input(inputs: &[&Out]) -> Option<Digest> {
    inputs.iter().rev().find_map(|o| match o {
        Out::Tree(d) => Some(*d),
        _ => None,
    })
}

/// Where a stage2 squashfs keeps its nested filesystem image, if it has one.
pub(crate) const NESTED_IMAGES: [&str; 2] = ["/LiveOS/rootfs.img", "/LiveOS/ext3fs.img"];

/// Finds the nested ext image inside a stage2 squashfs tree.
fn nested_image(outer: &Tree, store: &Store) -> Option<(TreePath, Content)> {
    for p in NESTED_IMAGES {
        let path = TreePath::parse(p).ok()?;
        if let Some(Node::Leaf(l)) = outer.get(&path)
            && let LeafKind::Regular(c) = &l.kind
        {
            let mut head = vec![0u8; 2048];
            let ok = store
                .open(&c.digest)
                .and_then(|mut r| r.read_exact(&mut head))
                .is_ok();
            if ok && crate::inspect::sniff(&head) == crate::inspect::Format::Ext4 {
                return Some((path, *c));
            }
        }
    }
    None
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
            } => {
                if !path.exists() {
                    if let (Some(url), Some(sha)) = (url, sha256) {
                        let fetched = crate::fetch::fetch(self.store.root(), url, sha)
                            .map_err(|e| fail(name, e))?;
                        return Ok(Out::Media(fetched));
                    }
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
                }
                let actual = v6build_engine::recipe::sha256_file(path)
                    .map_err(|e| fail(name, format!("reading {}: {e}", path.display())))?;
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
            Work::Scan => {
                let path = media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
                let f = File::open(&path).map_err(|e| fail(name, e))?;
                let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
                let (outer, blocks) = img
                    .read_tree_and_blocks(self.store)
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
                        self.unpack_initrd(name, &path)?
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
            Work::Layer(_, idx) => {
                let mut tree = match tree_input(inputs) {
                    Some(d) => self.store.get_tree(&d).map_err(|e| fail(name, e))?,
                    None => Tree::new(v6build_fstree::Meta::root(0o755, self.epoch)),
                };
                let layer = &self.recipe.layers[*idx];
                crate::apply::apply_layer(self.recipe, layer, &mut tree, self.store, self.epoch)
                    .map_err(NodeError::Recipe)?;
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
                        self.pack_initrd(name, &base, &tree)?
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

    fn unpack_initrd(&self, name: &str, path: &Path) -> Result<Tree, NodeError> {
        let bytes = std::fs::read(path).map_err(|e| fail(name, e))?;
        let ird = v6build_cpio::Initramfs::parse(&bytes, self.store, &Default::default())
            .map_err(|e| fail(name, e))?;
        Ok(ird.merged())
    }

    fn unpack_stage2(&self, name: &str, outer: &Digest) -> Result<Tree, NodeError> {
        let outer = self.store.get_tree(outer).map_err(|e| fail(name, e))?;
        match nested_image(&outer, self.store) {
            None => Ok(outer),
            Some((_, content)) => {
                let bytes = self.store.get(&content.digest).map_err(|e| fail(name, e))?;
                let fs = v6build_ext4::Ext4::open(bytes).map_err(|e| fail(name, e))?;
                fs.read_tree(self.store).map_err(|e| fail(name, e))
            }
        }
    }

    fn pack_stage2(
        &self,
        name: &str,
        base: &Path,
        scan: (Digest, Digest),
        view: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        let f = File::open(base).map_err(|e| fail(name, e))?;
        let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
        let mut outer = self.store.get_tree(&scan.0).map_err(|e| fail(name, e))?;
        let saved = self.store.get(&scan.1).map_err(|e| fail(name, e))?;
        let blocks = v6build_squashfs::BaseBlocks::load(&saved, &img).map_err(|e| fail(name, e))?;
        let mut extra: Option<(Digest, Arc<Vec<u8>>)> = None;
        let tree = match nested_image(&outer, self.store) {
            None => view.clone(),
            Some((path, content)) => {
                let mut bytes = self.store.get(&content.digest).map_err(|e| fail(name, e))?;
                v6build_ext4::edit(&mut bytes, view, self.store, &Default::default())
                    .map_err(|e| fail(name, format!("editing {path}: {e}")))?;
                // The edited image goes straight to the squashfs writer from
                // memory; only the finished squashfs is stored.
                let d = crate::blocks::digest_large(&bytes);
                let size = bytes.len() as u64;
                if let Some(Node::Leaf(l)) = outer.get_mut(&path) {
                    let mut leaf: Leaf = (**l).clone();
                    leaf.kind = LeafKind::Regular(Content { digest: d, size });
                    *l = Arc::new(leaf);
                }
                extra = Some((d, Arc::new(bytes)));
                outer
            }
        };
        let mut opts = v6build_squashfs::WriteOptions::from_base(&img);
        opts.threads = self.threads;
        let tmp = tempfile_in(self.store.root()).map_err(|e| fail(name, e))?;
        let mut file = tmp.reopen().map_err(|e| fail(name, e))?;
        let cache = crate::blocks::StoreBlockCache { store: self.store };
        match extra {
            Some((digest, bytes)) => {
                let blobs = crate::blocks::WithExtra {
                    inner: self.store,
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
                self.store,
                &opts,
                Some(&blocks),
                Some(&cache),
                &mut file,
            ),
        }
        .map_err(|e| fail(name, e))?;
        let mut r = tmp.reopen().map_err(|e| fail(name, e))?;
        self.store
            .put_blob_reader(&mut r)
            .map_err(|e| fail(name, e))
    }

    fn pack_initrd(
        &self,
        name: &str,
        base: &Path,
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
        let bytes = std::fs::read(base).map_err(|e| fail(name, e))?;
        let parsed = v6build_cpio::Initramfs::parse(&bytes, self.store, &Default::default())
            .map_err(|e| fail(name, e))?;
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
        let packed = v6build_cpio::repack(&bytes, &parsed, tree, self.store, &opts)
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
        let raw = v6build_cpio::newc_bytes(&changed, self.store).map_err(|e| fail(name, e))?;
        let threads =
            std::num::NonZeroUsize::new(self.threads).unwrap_or(std::num::NonZeroUsize::MIN);
        let packed = v6build_cpio::compress(&params, &raw, threads).map_err(|e| fail(name, e))?;
        let d = self.store.put_blob(&packed).map_err(|e| fail(name, e))?;
        Ok((d, packed.len() as u64))
    }
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

/// A named temporary file inside the store's own directory, removed on drop.
fn tempfile_in(root: &Path) -> io::Result<TempFile> {
    let dir = root.join("tmp");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "pack-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    File::create(&path)?;
    Ok(TempFile { path })
}

/// A temporary file removed when dropped.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn reopen(&self) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Records a node's output in the action cache.
pub fn record(out: &Out) -> Option<ActionRecord> {
    let (kind, digest, size) = match out {
        Out::Tree(d) => (OutputKind::Tree, *d, 0),
        Out::Blob(d, s) => (OutputKind::Blob, *d, *s),
        Out::Media(_) => return None,
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
/// names is still in the store.
fn tree_usable(store: &Store, digest: &Digest) -> bool {
    store.get_tree(digest).is_ok_and(|tree| {
        tree.contents()
            .iter()
            .all(|c| store.has(v6build_cache::ObjectKind::Blob, &c.digest))
    })
}

/// Turns a cached record back into an output, if its object is present.
pub fn from_record(store: &Store, rec: &ActionRecord) -> Option<Out> {
    if let (Some(outer), Some(blocks)) = (rec.outputs.get("outer"), rec.outputs.get("blocks")) {
        let present = tree_usable(store, &outer.digest)
            && store.has(v6build_cache::ObjectKind::Blob, &blocks.digest);
        return present.then_some(Out::Scan {
            outer: outer.digest,
            blocks: blocks.digest,
        });
    }
    let o = rec.outputs.get("out")?;
    match o.kind {
        OutputKind::Tree => tree_usable(store, &o.digest).then_some(Out::Tree(o.digest)),
        OutputKind::Blob => store
            .has(v6build_cache::ObjectKind::Blob, &o.digest)
            .then_some(Out::Blob(o.digest, o.size)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
