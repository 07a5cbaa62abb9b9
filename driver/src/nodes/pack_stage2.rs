//! `stage2/pack`: undoes the nesting `stage2/unpack` found, editing the
//! base ext4 image in place so untouched blocks keep their bytes, and
//! rewriting the squashfs with block reuse.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use v6build_fstree::{Content, Digest, Leaf, LeafKind, Node, Tree, TreePath};

use super::{Ctx, DriverError, NodeError, fail};
use crate::images::Shape;

impl Ctx<'_> {
    pub(super) fn pack_stage2(
        &self,
        name: &str,
        base: &Path,
        scan: (Digest, Digest),
        view: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        use v6build_engine::recipe::Stage2Format;
        let out = self.recipe.outputs.stage2.as_ref();
        let f = v6build_engine::host::open_regular(base).map_err(|e| fail(name, e))?;
        let copy_src = crate::blocks::copy_source(base, &f);
        let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
        let mut outer = self.store.get_tree(&scan.0).map_err(|e| fail(name, e))?;
        let saved = self.store.get_blob(&scan.1).map_err(|e| fail(name, e))?;
        let mut blocks =
            v6build_squashfs::BaseBlocks::load(&saved, &img).map_err(|e| fail(name, e))?;
        if let Some(c) = copy_src {
            blocks.set_copy_source(c);
        }
        let mut opts = v6build_squashfs::WriteOptions::from_base(&img);
        if let Some(c) = out.and_then(|o| o.compress.as_ref()) {
            opts.compressor = squashfs_compressor(c).map_err(|e| fail(name, e))?;
        }
        if let Some(bs) = out.and_then(|o| o.block_size) {
            opts.block_size = bs;
        }
        opts.threads = self.threads;
        opts.progress = self.progress(name);
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
        let phases = crate::phase_stats::Phases::default();
        let mut extra: Option<(Digest, Arc<Vec<u8>>)> = None;
        let tree = match (nested, want_ext4) {
            (Some((path, content)), true) => {
                let (d, len) =
                    self.edit_nested(name, &mut blocks, (&path, &content), view, grow, &phases)?;
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
                if let Some(v6build_engine::recipe::Grow::Bytes(g)) = grow {
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
                v6build_squashfs::write_to_file(
                    &tree,
                    &blobs,
                    &opts,
                    Some(&blocks),
                    Some(&cache),
                    crate::blocks::BlobOut(&mut file),
                )
            }
            None => v6build_squashfs::write_to_file(
                &tree,
                self.blobs,
                &opts,
                Some(&blocks),
                Some(&cache),
                crate::blocks::BlobOut(&mut file),
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
    /// untouched compressed block. What reading the base cost is added to
    /// `phases` and noted as `nested_walk`. Returns the new image's name
    /// and length.
    pub(super) fn edit_nested(
        &self,
        name: &str,
        blocks: &mut v6build_squashfs::BaseBlocks,
        (path, content): (&TreePath, &Content),
        view: &Tree,
        grow: Option<v6build_engine::recipe::Grow>,
        phases: &crate::phase_stats::Phases,
    ) -> Result<(Digest, u64), NodeError> {
        let counters = |b: &v6build_squashfs::BaseBlocks| {
            (
                b.blocks_decompressed(),
                b.bytes_decompressed(),
                b.bytes_read(),
            )
        };
        // The registered base's reader remembers the metadata unpack read
        // (see `crate::squash_at`); without one, read through `blocks`.
        // Either way, what the walk costs shows in the counters of the
        // block map it reads through.
        let registered = match self.blobs.nested_ext4(&content.digest) {
            Some(Ok(fs)) => Some(fs),
            _ => None,
        };
        let shared = registered
            .as_ref()
            .and_then(|_| self.blobs.base_holding(&content.digest));
        let started = std::time::Instant::now();
        let before = counters(shared.as_deref().unwrap_or(blocks));
        let own;
        let at: &crate::refs::SquashAt = match &registered {
            Some(fs) => {
                crate::squash_at::warm(fs);
                fs.reader()
            }
            None => {
                let fa = blocks
                    .file_at(&content.digest)
                    .ok_or_else(|| fail(name, format!("{path} is not in the base's block map")))?;
                own = crate::refs::SquashAt::new(fa);
                &own
            }
        };
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
        eopts.progress = self.progress(name);
        // Grown by `g` bytes first (when asked), then edited.
        let attempt = |g: Option<u64>| -> Result<super::grow::Edited, v6build_ext4::Error> {
            match g {
                None => {
                    let e = v6build_ext4::edit_blocks(at, view, self.blobs, &eopts)?;
                    Ok((e.block_size, e.blocks, e.len))
                }
                Some(g) => {
                    let (grown, _) = v6build_ext4::grow_blocks(at, g)?;
                    let mut all = grown.blocks.clone();
                    let ov =
                        v6build_ext4::Overlay::new(at, grown.block_size, grown.blocks, grown.len);
                    let e = v6build_ext4::edit_blocks(&ov, view, self.blobs, &eopts)?;
                    all.extend(e.blocks);
                    Ok((e.block_size, all, e.len.max(grown.len)))
                }
            }
        };
        let (bs, changed, len) = super::grow::edit_with(grow, attempt)
            .map_err(|e| super::grow::edit_error(name, path, grow, e))?;
        let after = counters(shared.as_deref().unwrap_or(blocks));
        let walk = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        if shared.is_some() {
            // `blocks`' own counters are added by the caller.
            phases.decompressed(walk.1);
            phases.read(walk.2);
        }
        self.note(
            name,
            "nested_walk",
            json!({
                "seconds": started.elapsed().as_secs_f64(),
                "base_blocks_decompressed": walk.0,
                "bytes_decompressed": walk.1,
                "metadata_memo_bytes": at.memo().map_or(0, crate::squash_at::Memo::bytes),
            }),
        );
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
}

/// The squashfs compressor for a recipe's `compress` node.
fn squashfs_compressor(
    c: &v6build_engine::recipe::Compression,
) -> Result<v6build_squashfs::Compressor, DriverError> {
    use v6build_engine::recipe::CompressKind;
    use v6build_squashfs::Compressor;
    Ok(match c.kind {
        CompressKind::Xz => {
            if c.level.is_some() {
                return Err(DriverError::Check(
                    "squashfs xz has no level (mksquashfs -comp xz takes a dictionary size); drop `level=`"
                        .into(),
                ));
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
            return Err(DriverError::Unsupported(
                "v6build reads lz4 squashfs images but does not write them; choose xz, gzip or zstd"
                    .into(),
            ));
        }
        CompressKind::None => {
            return Err(DriverError::Unsupported(
                "a stage2 squashfs is always compressed; choose xz, gzip or zstd".into(),
            ));
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
fn nested_outer(root: &v6build_fstree::Meta, epoch: i64, c: Content) -> Result<Tree, DriverError> {
    fn invalid(e: impl std::fmt::Display) -> DriverError {
        DriverError::Check(e.to_string())
    }
    let dir_meta = v6build_fstree::Meta::root(0o755, epoch);
    let mut t = Tree::new(v6build_fstree::Meta {
        xattrs: Default::default(),
        ..root.clone()
    });
    let path = TreePath::parse("/LiveOS/rootfs.img").map_err(invalid)?;
    t.insert(
        &TreePath::parse("/LiveOS").map_err(invalid)?,
        Node::Dir(v6build_fstree::Directory::new(dir_meta.clone())),
        false,
    )
    .map_err(invalid)?;
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
    .map_err(invalid)?;
    Ok(t)
}
