//! Turning an edited merged tree back into an initrd.
//!
//! The engine parses a base image ([`Initramfs::parse`]), edits the merged
//! view, and hands the result here. Two modes:
//! - [`RepackMode::Rewrite`] (default): the edited segment (the last one
//!   unless the options name another) gets its old tree with the edit
//!   (old merged → new merged) applied, and is rewritten canonically and
//!   recompressed; every other segment is copied byte for byte.
//! - [`RepackMode::Append`] (opt-in): the base bytes are kept whole and one
//!   small segment holding only added or replaced entries (and their parent
//!   directories) is appended; the kernel unpacks it last, so its regular
//!   files overwrite earlier ones. Removals, type changes, device changes
//!   and hardlink edits cannot be expressed that way and are refused.
//!   Note that `lsinitrd` only shows the first two segments of an image.

use std::num::NonZeroUsize;
use std::sync::Arc;

use v6build_fstree::{BlobStore, Change, Directory, Leaf, LeafKind, Node, Tree, TreePath, diff};

use crate::error::{Error, Result};
use crate::{ChunkCache, Compression, CompressionKind, Initramfs, compress_with, newc_bytes};

/// How [`repack`] produces its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepackMode {
    /// Rewrite the edited segment canonically; copy the others verbatim.
    #[default]
    Rewrite,
    /// Keep the base bytes and append one segment with the additions.
    Append,
}

/// Options of [`repack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepackOptions {
    /// Rewrite or append.
    pub mode: RepackMode,
    /// Which segment receives the edits in rewrite mode; default the last.
    pub segment: Option<usize>,
    /// Compression of the written segment. Default: canonical parameters of
    /// the edited segment's kind (rewrite), or of the last compressed
    /// segment's kind, else gzip (append).
    pub compression: Option<Compression>,
    /// Compression threads; never changes the output.
    pub threads: NonZeroUsize,
    /// Advanced by the uncompressed bytes of each segment written.
    pub progress: v6build_fstree::Progress,
}

impl Default for RepackOptions {
    fn default() -> Self {
        RepackOptions {
            mode: RepackMode::Rewrite,
            segment: None,
            compression: None,
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            progress: v6build_fstree::Progress::default(),
        }
    }
}

fn refuse(msg: impl Into<String>) -> Error {
    Error::Repack(msg.into())
}

fn canonical_for(kind: Option<CompressionKind>, what: &str) -> Result<Compression> {
    match kind {
        None => Ok(Compression::None),
        Some(k) => Compression::canonical(k).ok_or_else(|| {
            refuse(format!(
                "{what} is {k}-compressed, which v6build reads but does not write; choose an output compression"
            ))
        }),
    }
}

/// Builds the new image from the base image `base_bytes` (parsed as
/// `base`, freshly or through [`Initramfs::load`]) and the edited merged
/// tree `new_merged`. Same as [`repack_with`] without a chunk cache.
pub fn repack(
    base_bytes: &[u8],
    base: &Initramfs,
    new_merged: &Tree,
    blobs: &dyn BlobStore,
    opts: &RepackOptions,
) -> Result<Vec<u8>> {
    repack_with(base_bytes, base, new_merged, blobs, opts, None)
}

/// [`repack`], taking compressed chunks of the written segment from
/// `cache` where it has them and storing the ones it computes (see
/// [`crate::compress_with`]). The output is the same with or without the
/// cache, warm or cold.
pub fn repack_with(
    base_bytes: &[u8],
    base: &Initramfs,
    new_merged: &Tree,
    blobs: &dyn BlobStore,
    opts: &RepackOptions,
    cache: Option<&dyn ChunkCache>,
) -> Result<Vec<u8>> {
    let w = Writer { opts, cache };
    if base.segments.iter().any(|s| s.range.end > base_bytes.len()) {
        return Err(refuse(
            "the parsed image does not match the base bytes (a segment lies past their end)",
        ));
    }
    let old = base.merged();
    let changes = diff(&old, new_merged);
    match opts.mode {
        RepackMode::Rewrite => rewrite(base_bytes, base, &changes, new_merged, blobs, &w),
        RepackMode::Append => append(base_bytes, base, &old, &changes, new_merged, blobs, &w),
    }
}

/// The options and the cache, passed down together.
struct Writer<'a> {
    opts: &'a RepackOptions,
    cache: Option<&'a dyn ChunkCache>,
}

impl Writer<'_> {
    fn segment(&self, params: &Compression, tree: &Tree, blobs: &dyn BlobStore) -> Result<Vec<u8>> {
        let archive = newc_bytes(tree, blobs)?;
        let len = archive.len() as u64;
        self.opts.progress.add_total(len);
        Ok(crate::compress::compress_reporting(
            params,
            &archive,
            self.opts.threads,
            self.cache,
            &self.opts.progress,
        )?)
    }
}

fn node_at<'a>(t: &'a Tree, p: &TreePath) -> Option<&'a Node> {
    if p.is_root() { None } else { t.get(p) }
}

/// Makes sure every parent of `p` exists in `t`, copying directory metadata from `src`.
fn parents_from(t: &mut Tree, src: &Tree, p: &TreePath) -> Result<()> {
    let mut at = TreePath::root();
    for c in p.parent().components() {
        at.push(c.clone());
        let meta = src
            .get(&at)
            .and_then(Node::as_dir)
            .map(|d| d.meta.clone())
            .ok_or_else(|| refuse(format!("{at} is not a directory in the new tree")))?;
        match t.get_mut(&at) {
            Some(Node::Dir(_)) => {}
            _ => {
                t.insert(&at, Node::Dir(Directory::new(meta)), true)
                    .map_err(|e| refuse(e.to_string()))?;
            }
        }
    }
    Ok(())
}

/// Sets `p` in `t` to `new`'s value: a directory over a directory takes
/// only the metadata (its entries are separate changes), anything else is
/// replaced whole.
fn put(t: &mut Tree, p: &TreePath, new: &Node, src: &Tree, added: bool) -> Result<()> {
    parents_from(t, src, p)?;
    match (t.get_mut(p), new) {
        (Some(Node::Dir(d)), Node::Dir(n)) if !added => d.meta = n.meta.clone(),
        (None, Node::Dir(n)) if !added => {
            // A directory whose metadata changed but that this tree lacks:
            // add it empty, so only its metadata is restated.
            t.insert(p, Node::Dir(Directory::new(n.meta.clone())), true)
                .map_err(|e| refuse(e.to_string()))?;
        }
        _ => {
            t.insert(p, new.clone(), true)
                .map_err(|e| refuse(e.to_string()))?;
        }
    }
    Ok(())
}

fn rewrite(
    base_bytes: &[u8],
    base: &Initramfs,
    changes: &[Change],
    new_merged: &Tree,
    blobs: &dyn BlobStore,
    w: &Writer<'_>,
) -> Result<Vec<u8>> {
    let opts = w.opts;
    let n = base.segments.len();
    let i = opts.segment.unwrap_or(n.saturating_sub(1));
    let seg = base
        .segments
        .get(i)
        .ok_or_else(|| refuse(format!("segment {i} does not exist (the image has {n})")))?;
    let describe = |j: usize| {
        let s = &base.segments[j];
        let kind = s
            .compression
            .map_or("uncompressed".to_string(), |k| k.to_string());
        format!(
            "segment {j} ({kind}, bytes {}..{})",
            s.range.start, s.range.end
        )
    };
    let mut tree = seg.tree.clone();
    for c in changes {
        match c {
            Change::Added(p) | Change::Changed(p, _) if p.is_root() => {
                tree.meta = new_merged.meta.clone()
            }
            Change::Added(p) | Change::Changed(p, _) => {
                // OK to unwrap: diff reports only paths present in the new tree.
                let new = new_merged.get(p).unwrap();
                let type_change = matches!(c, Change::Changed(_, f) if f.contains(&"type"));
                for (j, s) in base.segments.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let Some(there) = s.tree.get(p) else { continue };
                    let overrides = j > i
                        && !matches!((there, new), (Node::Dir(a), Node::Dir(b)) if a.meta == b.meta);
                    let blocks =
                        j < i && type_change && matches!(there, Node::Dir(d) if !d.is_empty());
                    if overrides || blocks {
                        return Err(refuse(format!(
                            "{p} is changed, but {} also holds it and is copied verbatim; {}",
                            describe(j),
                            if overrides {
                                "being unpacked later, it would override the change: edit that segment instead"
                            } else {
                                "the kernel cannot replace its non-empty directory with a non-directory"
                            }
                        )));
                    }
                }
                put(
                    &mut tree,
                    p,
                    new,
                    new_merged,
                    matches!(c, Change::Added(_)) || type_change,
                )?;
            }
            Change::Removed(p) => {
                if let Some(j) = (0..n).find(|&j| j != i && base.segments[j].tree.get(p).is_some())
                {
                    return Err(refuse(format!(
                        "cannot remove {p}: it lives in {}, which is not the edited segment {i} and is copied \
                         verbatim, so the kernel would still unpack it{}",
                        describe(j),
                        if j < i {
                            " (segments are only ever added to, never subtracted from)"
                        } else {
                            ""
                        }
                    )));
                }
                tree.remove(p)
                    .map_err(|e| refuse(format!("cannot remove {p}: {e}")))?;
            }
        }
    }
    let params = match &opts.compression {
        Some(c) => c.clone(),
        None => canonical_for(seg.compression, &describe(i))?,
    };
    let body = w.segment(&params, &tree, blobs)?;
    let mut out = v6build_compress::try_vec(base_bytes.len() + body.len())?;
    out.extend_from_slice(&base_bytes[..seg.range.start]);
    out.extend_from_slice(&body);
    match base.segments.get(i + 1) {
        Some(next) => {
            // Keep the next segment 4-byte aligned (the kernel requires it
            // for an uncompressed archive): pad, then the old gap rounded up.
            pad4(&mut out);
            let gap = next.range.start - seg.range.end;
            out.resize(out.len() + gap.div_ceil(4) * 4, 0);
            out.extend_from_slice(&base_bytes[next.range.start..]);
        }
        None => out.extend_from_slice(&base_bytes[seg.range.end..]),
    }
    Ok(out)
}

fn pad4(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(4) * 4, 0);
}

/// How many names each leaf (by identity) has in `t`.
fn link_counts(t: &Tree) -> std::collections::HashMap<*const Leaf, usize> {
    let mut m = std::collections::HashMap::new();
    t.walk(&mut |_, n| {
        if let Node::Leaf(l) = n {
            *m.entry(Arc::as_ptr(l)).or_insert(0) += 1;
        }
    });
    m
}

fn append(
    base_bytes: &[u8],
    base: &Initramfs,
    old: &Tree,
    changes: &[Change],
    new_merged: &Tree,
    blobs: &dyn BlobStore,
    w: &Writer<'_>,
) -> Result<Vec<u8>> {
    let opts = w.opts;
    if changes.is_empty() {
        return Ok(base_bytes.to_vec());
    }
    let last = base.segments.last().map(|s| s.compression);
    if last == Some(Some(CompressionKind::Lz4Legacy)) {
        return Err(refuse(
            "append mode cannot follow an lz4 legacy segment: that frame has no end marker, and older kernels \
             read whatever follows as more lz4 blocks",
        ));
    }
    let (old_links, new_links) = (link_counts(old), link_counts(new_merged));
    let mut delta = Tree::new(new_merged.meta.clone());
    for c in changes {
        let p = match c {
            Change::Removed(p) => {
                return Err(refuse(format!(
                    "append mode cannot remove {p}: a later segment can only add or overwrite; use the rewrite mode"
                )));
            }
            Change::Added(p) | Change::Changed(p, _) => p,
        };
        if p.is_root() {
            continue; // The delta's `.` entry restates the root's metadata.
        }
        // OK to unwrap: diff reports only paths present in the new tree.
        let new = new_merged.get(p).unwrap();
        if let Change::Changed(_, fields) = c {
            let old_node = node_at(old, p);
            if fields.contains(&"type") {
                let what = match old_node {
                    Some(Node::Leaf(l)) if matches!(l.kind, LeafKind::Symlink(_)) => {
                        " (the kernel would write through the old symlink instead of replacing it, e.g. a \
                         `lib -> usr/lib` link clobbered by a directory)"
                    }
                    Some(Node::Dir(_)) => {
                        " (the kernel cannot replace a directory by a non-directory)"
                    }
                    _ => "",
                };
                return Err(refuse(format!(
                    "append mode cannot change the type of {p}{what}; use the rewrite mode"
                )));
            }
            if let Some(Node::Leaf(l)) = old_node
                && !matches!(l.kind, LeafKind::Regular(_) | LeafKind::Symlink(_))
            {
                return Err(refuse(format!(
                    "append mode cannot change the device node, fifo or socket {p}: the kernel does not \
                     recreate an existing one; use the rewrite mode"
                )));
            }
            if let Some(Node::Leaf(l)) = old_node
                && old_links.get(&Arc::as_ptr(l)).copied().unwrap_or(0) > 1
            {
                return Err(refuse(format!(
                    "append mode cannot change {p}: it is hardlinked in the base, and the kernel would write \
                     through the shared inode; use the rewrite mode"
                )));
            }
        }
        let mut hardlinked = None;
        let check = |n: &Node| matches!(n, Node::Leaf(l) if new_links.get(&Arc::as_ptr(l)).copied().unwrap_or(0) > 1);
        if check(new) {
            hardlinked = Some(p.clone());
        }
        if let Node::Dir(d) = new
            && matches!(c, Change::Added(_))
        {
            d.walk(&mut |sub, n| {
                if check(n) && hardlinked.is_none() {
                    hardlinked = Some(p.join_path(sub));
                }
            });
        }
        if let Some(h) = hardlinked {
            return Err(refuse(format!(
                "append mode cannot add or change the hardlinked file {h}; use the rewrite mode"
            )));
        }
        put(
            &mut delta,
            p,
            new,
            new_merged,
            matches!(c, Change::Added(_)),
        )?;
    }
    let gzip = Compression::Gzip {
        level: 9,
        chunk_size: crate::GZIP_CHUNK,
    };
    let params = opts.compression.clone().unwrap_or_else(|| {
        base.segments
            .iter()
            .rev()
            .find_map(|s| s.compression)
            .and_then(Compression::canonical)
            .unwrap_or(gzip)
    });
    let body = w.segment(&params, &delta, blobs)?;
    let mut out = v6build_compress::try_vec(base_bytes.len() + body.len() + 4)?;
    out.extend_from_slice(base_bytes);
    pad4(&mut out);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes `tree` as a stand-alone `updates.img` (one gzip newc archive),
/// which Anaconda and dracut overlay at boot with `inst.updates=`.
pub fn write_updates_img(tree: &Tree, blobs: &dyn BlobStore) -> Result<Vec<u8>> {
    write_updates_img_with(tree, blobs, None)
}

/// [`write_updates_img`] with a chunk cache (see [`crate::compress_with`]).
pub fn write_updates_img_with(
    tree: &Tree,
    blobs: &dyn BlobStore,
    cache: Option<&dyn ChunkCache>,
) -> Result<Vec<u8>> {
    // OK to unwrap: gzip has canonical parameters.
    let params = Compression::canonical(CompressionKind::Gzip).unwrap();
    let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let archive = newc_bytes(tree, blobs)?;
    Ok(compress_with(&params, &archive, threads, cache)?)
}

trait JoinPath {
    fn join_path(&self, sub: &TreePath) -> TreePath;
}

impl JoinPath for TreePath {
    fn join_path(&self, sub: &TreePath) -> TreePath {
        let mut p = self.clone();
        for c in sub.components() {
            p.push(c.clone());
        }
        p
    }
}
