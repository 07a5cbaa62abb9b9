//! The work each build node does, one module per node kind:
//!
//! ```text
//! media:<name>/initrd ─ initrd/unpack ─ initrd/layer/<a> ─ … ─ initrd/pack ─┐
//! media:<name>/stage2 ─ stage2/scan ─ stage2/unpack ─ stage2/layer/<b> ─ … ─ stage2/pack ─┼─ release
//!                                       updates/layer/<c> ─ … ─ updates/pack┘
//! ```
//!
//! Every node kind implements [`NodeKind`]: `key` (its key document, from
//! its parameters and the keys of the nodes it reads), `run` (its output
//! from its inputs) and `restore` (its output from a cached action
//! record, checked against the store). [`Work`] holds one node of each
//! kind; the scheduler (`crate::build`) only calls the trait. Outputs are
//! typed (`record`): each kind's output is a serde struct serialised into
//! the action record.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_engine::recipe::Recipe;
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

pub use layer::{Layer, LayerStep};
pub use media::Media;
pub use pack::{InitrdPack, Pack, PackParams, Stage2Pack, UpdatesPack};
pub use record::{
    BlobRef, MediaOut, PackOut, ScanOut, TreeOut, TreeRef, UnpackInitrdOut, WrongKind, from_record,
    to_record,
};
pub use scan::Scan;
pub use unpack::Unpack;

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

/// One kind of build node.
pub trait NodeKind: std::fmt::Debug + Sync {
    /// The node's key document: its operation, its parameters, and
    /// `inputs`, the keys of the nodes it reads by role (`media`, `tree`,
    /// `base0`, ...). Its digest is the node's cache key.
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey;

    /// Computes the node's output from its inputs' outputs (in the node's
    /// `deps` order).
    fn run(&self, ctx: &Ctx<'_>, name: &str, inputs: &[&Out]) -> Result<Out, NodeError>;

    /// The output a cached record holds, if it is this kind's output and
    /// its objects are in the store (trees read back verified). `claim`
    /// says whether a digest missing from the store is a reference a
    /// registered base resolves (see `refs`). `None` is a cache miss.
    fn restore(
        &self,
        store: &Store,
        claim: &dyn Fn(&Digest) -> bool,
        rec: &ActionRecord,
    ) -> Option<Out>;
}

/// A node of the build graph: one value per node kind, each a
/// [`NodeKind`] ([`Work::kind`]).
#[derive(Debug, Clone)]
pub enum Work {
    /// Find (or fetch) a media file and check it against its pin.
    Media(Media),
    /// Read a base stage2 squashfs's metadata once.
    Scan(Scan),
    /// Unpack a base image into the tree layers edit.
    Unpack(Unpack),
    /// Apply a run of layers in order.
    Layer(Layer),
    /// Pack the final tree into the image bytes.
    Pack(Pack),
}

impl Work {
    /// The node as its kind.
    pub fn kind(&self) -> &dyn NodeKind {
        match self {
            Work::Media(n) => n,
            Work::Scan(n) => n,
            Work::Unpack(n) => n,
            Work::Layer(n) => n,
            Work::Pack(n) => n,
        }
    }

    /// The key documents the node's action record keeps for `plan
    /// --explain`: each layer's key for a layer node, `own` otherwise.
    pub fn key_docs(&self, own: &ActionKey) -> Vec<ActionKey> {
        match self {
            Work::Layer(l) => l.steps.iter().map(|s| s.action.clone()).collect(),
            _ => vec![own.clone()],
        }
    }
}

/// A node's result: the typed output of its kind.
#[derive(Debug, Clone)]
pub enum Out {
    /// A verified media file.
    Media(MediaOut),
    /// A scanned squashfs.
    Scan(ScanOut),
    /// An unpacked initrd.
    UnpackInitrd(UnpackInitrdOut),
    /// A tree (an unpacked stage2, layers applied).
    Tree(TreeOut),
    /// A packed image.
    Pack(PackOut),
}

impl Out {
    /// The action record of the output (`None` for media, which are not
    /// cached).
    pub fn record(&self) -> Option<ActionRecord> {
        match self {
            Out::Media(_) => None,
            Out::Scan(o) => Some(to_record(o)),
            Out::UnpackInitrd(o) => Some(to_record(o)),
            Out::Tree(o) => Some(to_record(o)),
            Out::Pack(o) => Some(to_record(o)),
        }
    }

    /// The tree the output is or holds, if any.
    pub fn tree(&self) -> Option<Digest> {
        match self {
            Out::Tree(o) => Some(o.tree.0),
            Out::UnpackInitrd(o) => Some(o.tree.0),
            _ => None,
        }
    }
}

/// A failure while running a node: a [`DriverError`], whose context is
/// the node's name (see `fail`), or a recipe error with the span of the
/// operation that failed.
pub type NodeError = DriverError;

/// `source`, as the failure of node `node` (`NODE: SOURCE`).
pub(crate) fn fail(node: &str, source: impl Into<DriverError>) -> NodeError {
    DriverError::context(node, source)
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

/// The media file among a node's inputs.
fn media_path(inputs: &[&Out]) -> Option<PathBuf> {
    inputs.iter().find_map(|o| match o {
        Out::Media(m) => Some(m.path.clone()),
        _ => None,
    })
}

fn scan_input(inputs: &[&Out]) -> Option<ScanOut> {
    inputs.iter().find_map(|o| match o {
        Out::Scan(s) => Some(*s),
        _ => None,
    })
}

fn parsed_input(inputs: &[&Out]) -> Option<BlobRef> {
    inputs.iter().find_map(|o| match o {
        Out::UnpackInitrd(u) => Some(u.parse),
        _ => None,
    })
}

fn tree_input(inputs: &[&Out]) -> Option<Digest> {
    inputs.iter().rev().find_map(|o| o.tree())
}

impl Ctx<'_> {
    /// Tells the reference resolver about a base a node's output describes
    /// (a scanned stage2, an unpacked initrd), before any node that reads
    /// its references runs: for a node that ran and for one restored.
    pub fn register(&self, inputs: &[&Out], out: &Out) {
        let Some(media) = media_path(inputs) else {
            return;
        };
        match out {
            Out::Scan(s) => {
                let nested = self
                    .store
                    .get_tree(&s.outer.0)
                    .ok()
                    .and_then(|t| crate::images::nested_candidate(&t))
                    .map(|c| c.digest);
                self.blobs.register_scan(media, s.blocks.digest, nested);
            }
            Out::UnpackInitrd(u) => self.blobs.register_initrd(media, u.parse.digest, None),
            _ => {}
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
