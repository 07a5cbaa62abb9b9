//! The work each build node does, one module per node kind:
//!
//! ```text
//! media:<name>/initrd ─ initrd/unpack ─ initrd/layer/<a> ─ … ─ initrd/pack ─┐
//! media:<name>/stage2 ─ stage2/scan ─ stage2/unpack ─ stage2/layer/<b> ─ … ─ stage2/pack ─┼─ release
//!                                       updates/layer/<c> ─ … ─ updates/pack┘
//! ```
//!
//! `media`, `scan`, `unpack`, `layer` and `pack` (with `pack_initrd`,
//! `pack_stage2`, `pack_updates`) run a node; `record` turns an output
//! into its action record and back (restore).
//! The keys are made when the graph is planned (`crate::plan`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use v6build_cache::{ActionKey, Store};
use v6build_engine::recipe::{MediaRole, Recipe};
use v6build_fstree::Digest;

pub use crate::error::DriverError;

mod grow;
mod layer;
mod media;
mod pack;
mod pack_initrd;
mod pack_stage2;
mod pack_updates;
mod record;
mod scan;
mod unpack;

pub use record::{from_record, media_input, record};

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
    /// the manifest records). [`crate::plan::plan`] collapses a chain of layers whose
    /// intermediate trees nothing else reads into one node: the tree is
    /// edited in memory and stored once, so n layers cost O(their
    /// operations), not n stored trees of growing size. The node's key is
    /// the last layer's per-layer key, which commits to every earlier one.
    Layer(Image, Vec<LayerStep>),
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
    /// Anything else, with the kind of failure its source made.
    #[error("{node}: {source}")]
    Failed {
        /// Node name.
        node: String,
        /// What went wrong.
        #[source]
        source: DriverError,
    },
}

impl NodeError {
    /// The cause of a failure that is not a recipe error.
    pub fn cause(&self) -> Option<&DriverError> {
        match self {
            NodeError::Failed { source, .. } => Some(source),
            NodeError::Recipe(_) => None,
        }
    }
}

pub(crate) fn fail(node: &str, source: impl Into<DriverError>) -> NodeError {
    NodeError::Failed {
        node: node.to_string(),
        source: source.into(),
    }
}

/// One layer a [`Work::Layer`] node applies.
#[derive(Debug, Clone)]
pub struct LayerStep {
    /// Index into `recipe.layers`.
    pub layer: usize,
    /// The key this layer alone has (the manifest records it).
    pub key: Digest,
    /// That key's document (`plan --explain`).
    pub action: ActionKey,
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
    /// The host files the layers read, as read at plan time.
    pub hosts: &'a crate::host_inputs::HostInputs,
    /// Epoch for new entries.
    pub epoch: i64,
    /// Compression threads.
    pub threads: usize,
    /// How media with `url=` are downloaded.
    pub fetch: &'a crate::fetch::FetchOptions,
    /// What the nodes that ran report about their work, by node name (the
    /// `node_stats` of `build --json`).
    pub stats: std::sync::Mutex<BTreeMap<String, Value>>,
    /// Each running node's byte progress, by node name ([`Ctx::progress`]).
    pub progress: std::sync::Mutex<BTreeMap<String, v6build_fstree::Progress>>,
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
            } => self.run_media(name, media, role, path, sha256, url, size),
            Work::Scan { source } => self.run_scan(name, source, inputs),
            Work::Unpack(image) => self.run_unpack(name, image, inputs),
            Work::Layer(_, steps) => self.run_layer(name, steps, inputs),
            Work::Pack(image) => self.run_pack(name, image, inputs),
        }
    }

    /// The byte progress of node `name` (made on first use), which its
    /// codec advances and the build hands to `BuildEvents::node_progress`.
    pub fn progress(&self, name: &str) -> v6build_fstree::Progress {
        match self.progress.lock() {
            Ok(mut m) => m.entry(name.to_string()).or_default().clone(),
            Err(_) => v6build_fstree::Progress::default(),
        }
    }

    pub(super) fn note(&self, name: &str, key: &str, value: Value) {
        if let Ok(mut s) = self.stats.lock() {
            let e = s.entry(name.to_string()).or_insert_with(|| json!({}));
            e[key] = value;
        }
    }
}
