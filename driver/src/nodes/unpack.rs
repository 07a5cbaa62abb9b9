//! `initrd/unpack` and `stage2/unpack`: the tree a recipe's layers edit.
//! An initrd is parsed (its saved parse is kept so pack need not parse it
//! again); a stage2 yields the ext4 tree inside `LiveOS/rootfs.img` when
//! the squashfs wraps one (EL7/EL8), or the squashfs tree itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_fstree::{Digest, Tree};

use super::record::{blob_present, from_record, restore_tree, tree_present};
use super::{
    BlobRef, Ctx, Image, NodeError, NodeKind, Out, TreeOut, TreeRef, UnpackInitrdOut, fail,
    media_path, scan_input,
};
use crate::images::{Shape, read_initrd, stage2_shape};

/// An unpack node: the base of `image` as a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpack {
    /// Which base: an initrd, or a stage2 (also the base of updates).
    pub image: Image,
}

/// An initrd unpack: it saves its parse, and contents stay in the base.
#[derive(Debug, Serialize)]
struct InitrdUnpackParams {
    /// Always `parse`.
    saves: &'static str,
    /// Always `in the base`.
    contents: &'static str,
}

impl NodeKind for Unpack {
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey {
        crate::keys::action_key(
            &format!("unpack-{}", self.image.name()),
            (self.image == Image::Initrd).then_some(InitrdUnpackParams {
                saves: "parse",
                contents: "in the base",
            }),
            inputs,
        )
    }

    /// Unpacks the base of the image.
    fn run(&self, ctx: &Ctx<'_>, name: &str, inputs: &[&Out]) -> Result<Out, NodeError> {
        if self.image == Image::Initrd {
            let path = media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
            let (tree, saved, contents) = ctx.unpack_initrd(name, &path)?;
            let tree = ctx.store.put_tree(&tree).map_err(|e| fail(name, e))?;
            let parse = ctx.store.put_blob(&saved).map_err(|e| fail(name, e))?;
            if let Some(contents) = contents {
                ctx.blobs.register_initrd(path, parse, Some(contents));
            }
            return Ok(Out::UnpackInitrd(UnpackInitrdOut {
                tree: TreeRef(tree),
                parse: BlobRef {
                    digest: parse,
                    size: saved.len() as u64,
                },
            }));
        }
        let scan = scan_input(inputs).ok_or_else(|| fail(name, "no scan input"))?;
        let tree = ctx.unpack_stage2(name, &scan.outer.0)?;
        let d = ctx.store.put_tree(&tree).map_err(|e| fail(name, e))?;
        Ok(Out::Tree(TreeOut { tree: TreeRef(d) }))
    }

    /// An unpacked initrd's files are in the base initrd, which its saved
    /// parse describes; a stage2 tree's files must be stored or resolvable
    /// references.
    fn restore(
        &self,
        store: &Store,
        claim: &dyn Fn(&Digest) -> bool,
        rec: &ActionRecord,
    ) -> Option<Out> {
        if self.image == Image::Initrd {
            let o: UnpackInitrdOut = from_record(rec)?;
            return (tree_present(store, &o.tree) && blob_present(store, &o.parse))
                .then_some(Out::UnpackInitrd(o));
        }
        restore_tree(store, claim, rec)
    }
}

impl Ctx<'_> {
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
    /// is read (through the squashfs block index, on every thread first,
    /// see [`crate::squash_at`]); files are named by
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
                let t = std::time::Instant::now();
                crate::squash_at::warm(&fs);
                let warmed = t.elapsed().as_secs_f64();
                let tree = crate::refs::read_ext4(&fs, &rootfs)
                    .map_err(|e| fail(name, format!("reading {path}: {e}")))?;
                self.note(
                    name,
                    "metadata_seconds",
                    json!({"warm": warmed, "walk": t.elapsed().as_secs_f64() - warmed}),
                );
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
                    self.note(
                        name,
                        "metadata_memo_bytes",
                        json!(fs.reader().memo().map_or(0, crate::squash_at::Memo::bytes)),
                    );
                }
                Ok(tree)
            }
        }
    }

    /// The base stage2's layout, checked against the recipe's `layout`
    /// (a mismatch points at it).
    pub(super) fn shape(&self, name: &str, outer: &Tree) -> Result<Shape, NodeError> {
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
}
