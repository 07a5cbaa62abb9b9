//! `stage2/scan`: a base stage2 squashfs's metadata read once: its tree,
//! every file named by a reference digest (see `refs`), and the map of its
//! compressed blocks, both cached. No data block is decompressed.

use std::collections::BTreeMap;

use serde::Serialize;
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_fstree::Digest;

use super::record::{blob_present, from_record, tree_present};
use super::{BlobRef, Ctx, NodeError, NodeKind, Out, ScanOut, TreeRef, fail, media_path};

/// A scan node.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The media's pinned sha256 (hex), which seeds the references.
    pub source: Option<String>,
}

/// What the scan keeps of the base.
#[derive(Debug, Serialize)]
struct ScanParams {
    /// Always `references`: files are named by reference digests.
    contents: &'static str,
}

impl NodeKind for Scan {
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey {
        crate::keys::action_key(
            "scan-stage2",
            ScanParams {
                contents: "references",
            },
            inputs,
        )
    }

    /// Scans the media input.
    fn run(&self, ctx: &Ctx<'_>, name: &str, inputs: &[&Out]) -> Result<Out, NodeError> {
        let path = media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
        let f = v6build_engine::host::open_regular(&path).map_err(|e| fail(name, e))?;
        let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
        let source = self.source.as_deref().unwrap_or_default();
        let (outer, blocks) = img
            .read_tree_lazy(source.as_bytes())
            .map_err(|e| fail(name, e))?;
        let outer = ctx.store.put_tree(&outer).map_err(|e| fail(name, e))?;
        let saved = blocks.save();
        let blocks = ctx.store.put_blob(&saved).map_err(|e| fail(name, e))?;
        Ok(Out::Scan(ScanOut {
            outer: TreeRef(outer),
            blocks: BlobRef {
                digest: blocks,
                size: saved.len() as u64,
            },
        }))
    }

    /// A scan's files are references its own block map resolves: the tree
    /// and the map must be present.
    fn restore(
        &self,
        store: &Store,
        _: &dyn Fn(&Digest) -> bool,
        rec: &ActionRecord,
    ) -> Option<Out> {
        let o: ScanOut = from_record(rec)?;
        (tree_present(store, &o.outer) && blob_present(store, &o.blocks)).then_some(Out::Scan(o))
    }
}
