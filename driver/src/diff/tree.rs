//! Comparing two images as trees, entry by entry: metadata from the
//! image tables, contents only where the stored layout cannot prove two
//! files equal.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{Value, json};
use v6build_fstree::{Digest, LeafKind, MemBlobs, Node, Tree, TreePath, escape};

use super::shortcut::{ReadStats, Shortcut};
use super::{CONTENT_DIFF_MAX, Sum};
use crate::error::DriverError;
use crate::inspect::{Format, Opened, sniff};

/// One changed entry inside an image.
#[derive(Debug, Clone)]
pub(super) struct EntryDiff {
    pub(super) path: String,
    /// `added`, `removed` or `changed`.
    pub(super) change: &'static str,
    /// For added/removed: a description of the entry.
    pub(super) what: Option<String>,
    /// For changed: field name, old value, new value.
    pub(super) fields: Vec<(&'static str, String, String)>,
    /// A unified diff of the content, with `--content`.
    pub(super) unified: Option<String>,
}

/// One initrd segment, as the layout report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SegInfo {
    pub(super) compression: String,
    pub(super) entries: usize,
    pub(super) packed: u64,
    pub(super) unpacked: u64,
}

impl SegInfo {
    pub(super) fn text(&self) -> String {
        format!(
            "{} {} entries, {} bytes ({} unpacked)",
            self.compression, self.entries, self.packed, self.unpacked
        )
    }
    pub(super) fn json(&self) -> Value {
        json!({ "compression": self.compression, "entries": self.entries,
            "bytes": self.packed, "unpacked_bytes": self.unpacked })
    }
}

/// What differs between two artifacts at one path.
#[derive(Debug)]
pub(super) enum Detail {
    /// Only in A.
    Removed(Sum),
    /// Only in B.
    Added(Sum),
    /// In both, different bytes.
    Changed {
        a: Sum,
        b: Sum,
        kind: &'static str,
        entries: Vec<EntryDiff>,
        segments: Option<(Vec<SegInfo>, Vec<SegInfo>)>,
        unified: Option<String>,
        /// For two images: how their same-size files were compared.
        stats: Option<ReadStats>,
    },
}

/// An opened image: its tree and its contents.
pub(super) struct Image {
    pub(super) tree: Tree,
    pub(super) opened: Opened,
    pub(super) segments: Option<Vec<SegInfo>>,
    pub(super) kind: &'static str,
}

pub(super) fn head(p: &Path) -> Result<Vec<u8>, DriverError> {
    let reading = |e| DriverError::context(format!("reading {}", p.display()), e);
    let mut f = super::open_artifact(p)?;
    let mut h = Vec::new();
    f.by_ref().take(2048).read_to_end(&mut h).map_err(reading)?;
    Ok(h)
}

/// Whether `p` looks like an image `diff` can look into.
pub(super) fn is_image(p: &Path) -> bool {
    let Ok(h) = head(p) else { return false };
    match sniff(&h) {
        Format::Squashfs | Format::Ext4 => true,
        // A cpio archive or a compressed stream: initramfs magics.
        Format::Initramfs => {
            h.starts_with(b"070701")
                || h.starts_with(b"070702")
                || h.starts_with(&[0x1f, 0x8b])
                || h.starts_with(&[0x1f, 0x9e])
                || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z'])
                || h.starts_with(b"BZh")
                || h.starts_with(&[0x5d, 0, 0])
                || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                || h.starts_with(&[0x02, 0x21, 0x4c, 0x18])
                || h.starts_with(&[0x04, 0x22, 0x4d, 0x18])
                || h.starts_with(&[0x89, b'L', b'Z', b'O'])
        }
    }
}

pub(super) fn open_image(p: &Path, keep: bool) -> Result<Image, DriverError> {
    let h = head(p)?;
    match sniff(&h) {
        Format::Initramfs => {
            // An initramfs is one stream: parse it once, for both the tree
            // and the segment layout. Contents are kept only for --content.
            let bytes = super::read_artifact(p)?;
            let blobs = MemBlobs::new();
            let hash_only = v6build_fstree::HashOnly;
            let store: &dyn v6build_fstree::BlobStore = if keep { &blobs } else { &hash_only };
            let ird = v6build_cpio::Initramfs::parse(&bytes, store, &Default::default())
                .map_err(|e| DriverError::context(p.display().to_string(), e))?;
            let segments = ird
                .segments
                .iter()
                .map(|s| SegInfo {
                    compression: s.compression.map_or_else(
                        || "uncompressed".to_string(),
                        |c| format!("{c:?}").to_lowercase(),
                    ),
                    entries: s.entries,
                    packed: (s.range.end - s.range.start) as u64,
                    unpacked: s.unpacked_len,
                })
                .collect();
            Ok(Image {
                tree: ird.merged(),
                opened: Opened::Mem(blobs),
                segments: Some(segments),
                kind: "initrd",
            })
        }
        f => {
            let (tree, opened) = crate::inspect::open_lazy(p, false)?;
            let kind = match (&opened, f) {
                (Opened::Ext4(..), Format::Squashfs) => "squashfs+ext4",
                (_, Format::Squashfs) => "squashfs",
                _ => "ext4",
            };
            Ok(Image {
                tree,
                opened,
                segments: None,
                kind,
            })
        }
    }
}

pub(super) fn type_word(n: &Node) -> &'static str {
    match n {
        Node::Dir(_) => "dir",
        Node::Leaf(l) => match &l.kind {
            LeafKind::Regular(_) => "file",
            LeafKind::Symlink(_) => "symlink",
            LeafKind::CharDevice { .. } => "char device",
            LeafKind::BlockDevice { .. } => "block device",
            LeafKind::Fifo => "fifo",
            LeafKind::Socket => "socket",
        },
    }
}

pub(super) fn describe(n: &Node, real: Option<&Digest>) -> String {
    let m = n.meta();
    let mut s = format!("{} {:04o} {}:{}", type_word(n), m.perm, m.uid, m.gid);
    if let Node::Leaf(l) = n {
        match &l.kind {
            LeafKind::Regular(c) => {
                s.push_str(&format!(" {} bytes", c.size));
                if let Some(d) = real {
                    s.push_str(&format!(" {d}"));
                }
            }
            LeafKind::Symlink(t) => s.push_str(&format!(" -> {}", escape(t))),
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                s.push_str(&format!(" {major},{minor}"))
            }
            _ => {}
        }
    }
    s
}

pub(super) fn xattrs_text(x: &v6build_fstree::Xattrs) -> String {
    if x.is_empty() {
        return "none".into();
    }
    x.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn mtime_text(t: &v6build_fstree::Timestamp) -> String {
    if t.nanos == 0 {
        t.secs.to_string()
    } else {
        format!("{}.{:09}", t.secs, t.nanos)
    }
}

pub(super) fn all_nodes(t: &Tree) -> BTreeMap<TreePath, &Node> {
    t.paths().into_iter().collect()
}

pub(super) fn content_of(opened: &Opened, n: &Node) -> Option<Digest> {
    match n {
        Node::Leaf(l) => match &l.kind {
            LeafKind::Regular(c) => opened.content_digest(&c.digest).ok(),
            _ => None,
        },
        Node::Dir(_) => None,
    }
}

pub(super) fn small_text(b: &[u8]) -> Option<&str> {
    if b.len() as u64 > CONTENT_DIFF_MAX || b.contains(&0) {
        return None;
    }
    std::str::from_utf8(b).ok()
}

/// Compares two image trees entry by entry.
pub(super) fn tree_diff(
    a: &Image,
    b: &Image,
    content: bool,
) -> Result<(Vec<EntryDiff>, ReadStats), DriverError> {
    let na = all_nodes(&a.tree);
    let nb = all_nodes(&b.tree);
    // Pairs of regular files whose content must be read to compare.
    let mut pairs: Vec<(
        &TreePath,
        &Arc<v6build_fstree::Leaf>,
        &Arc<v6build_fstree::Leaf>,
    )> = na
        .iter()
        .filter_map(|(p, x)| {
            let y = nb.get(p)?;
            match (x, y) {
                (Node::Leaf(lx), Node::Leaf(ly)) => match (&lx.kind, &ly.kind) {
                    (LeafKind::Regular(cx), LeafKind::Regular(cy)) if cx.size == cy.size => {
                        Some((p, lx, ly))
                    }
                    _ => None,
                },
                _ => None,
            }
        })
        .collect();
    // Read in storage order (see `Opened::locality`): contiguous runs go
    // to each thread, and each compressed block is inflated about once.
    let loc = |o: &Opened, l: &v6build_fstree::Leaf| match &l.kind {
        LeafKind::Regular(c) => o.locality(&c.digest),
        _ => 0,
    };
    pairs.sort_by_key(|(_, lx, _)| loc(&a.opened, lx));
    let real = |opened: &Opened, l: &Arc<v6build_fstree::Leaf>| -> Result<Digest, DriverError> {
        match &l.kind {
            LeafKind::Regular(c) => opened.content_digest(&c.digest),
            _ => Err("not a regular file".into()),
        }
    };
    // Files proved equal from their stored layout are not read at all.
    let shortcut = Shortcut::new(&a.opened, &b.opened);
    let unread = std::sync::atomic::AtomicU64::new(0);
    let differing: Result<Vec<Option<&TreePath>>, DriverError> = pairs
        .par_iter()
        .map(|(p, lx, ly)| {
            if let (LeafKind::Regular(cx), LeafKind::Regular(cy)) = (&lx.kind, &ly.kind)
                && shortcut.proves_same(&cx.digest, &cy.digest, cx.size)
            {
                unread.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(None);
            }
            let dx = real(&a.opened, lx).map_err(|e| DriverError::context(p.to_string(), e))?;
            let dy = real(&b.opened, ly).map_err(|e| DriverError::context(p.to_string(), e))?;
            Ok((dx != dy).then_some(*p))
        })
        .collect();
    let differing: std::collections::HashSet<&TreePath> =
        differing?.into_iter().flatten().collect();
    let unread = unread.into_inner();
    let stats = ReadStats {
        pairs: pairs.len() as u64,
        unread,
        read: pairs.len() as u64 - unread,
    };
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&TreePath> = na.keys().chain(nb.keys()).collect();
    for p in paths {
        let (x, y) = (na.get(p), nb.get(p));
        match (x, y) {
            // Every entry below an added or removed directory is listed too.
            (Some(x), None) => out.push(EntryDiff {
                path: p.to_string(),
                change: "removed",
                what: Some(describe(x, content_of(&a.opened, x).as_ref())),
                fields: Vec::new(),
                unified: None,
            }),
            (None, Some(y)) => out.push(EntryDiff {
                path: p.to_string(),
                change: "added",
                what: Some(describe(y, content_of(&b.opened, y).as_ref())),
                fields: Vec::new(),
                unified: None,
            }),
            (Some(x), Some(y)) => {
                let mut fields = Vec::new();
                if type_word(x) != type_word(y) {
                    fields.push(("type", type_word(x).to_string(), type_word(y).to_string()));
                } else {
                    let (mx, my) = (x.meta(), y.meta());
                    if mx.perm != my.perm {
                        fields.push((
                            "mode",
                            format!("{:04o}", mx.perm),
                            format!("{:04o}", my.perm),
                        ));
                    }
                    if (mx.uid, mx.gid) != (my.uid, my.gid) {
                        fields.push((
                            "owner",
                            format!("{}:{}", mx.uid, mx.gid),
                            format!("{}:{}", my.uid, my.gid),
                        ));
                    }
                    if mx.mtime != my.mtime {
                        fields.push(("mtime", mtime_text(&mx.mtime), mtime_text(&my.mtime)));
                    }
                    if mx.xattrs != my.xattrs {
                        fields.push(("xattrs", xattrs_text(&mx.xattrs), xattrs_text(&my.xattrs)));
                    }
                    if let (Node::Leaf(lx), Node::Leaf(ly)) = (x, y) {
                        match (&lx.kind, &ly.kind) {
                            (LeafKind::Regular(cx), LeafKind::Regular(cy))
                                if cx.size != cy.size || differing.contains(p) =>
                            {
                                let dx = real(&a.opened, lx)?;
                                let dy = real(&b.opened, ly)?;
                                fields.push((
                                    "content",
                                    format!("{} bytes {dx}", cx.size),
                                    format!("{} bytes {dy}", cy.size),
                                ));
                            }
                            // Same content: reference digests may differ.
                            (LeafKind::Regular(_), LeafKind::Regular(_)) => {}
                            (LeafKind::Symlink(tx), LeafKind::Symlink(ty)) if tx != ty => {
                                fields.push(("target", escape(tx), escape(ty)));
                            }
                            (kx, ky) if kx != ky => {
                                fields.push(("device", describe(x, None), describe(y, None)));
                            }
                            _ => {}
                        }
                    }
                }
                if fields.is_empty() {
                    continue;
                }
                let mut unified = None;
                if content
                    && fields.iter().any(|f| f.0 == "content")
                    && let (Node::Leaf(lx), Node::Leaf(ly)) = (x, y)
                    && let (LeafKind::Regular(cx), LeafKind::Regular(cy)) = (&lx.kind, &ly.kind)
                    && cx.size <= CONTENT_DIFF_MAX
                    && cy.size <= CONTENT_DIFF_MAX
                    && let (Ok(bx), Ok(by)) =
                        (a.opened.content(&cx.digest), b.opened.content(&cy.digest))
                    && let (Some(tx), Some(ty)) = (small_text(&bx), small_text(&by))
                {
                    unified = Some(unified_diff(&format!("a{p}"), &format!("b{p}"), tx, ty));
                }
                out.push(EntryDiff {
                    path: p.to_string(),
                    change: "changed",
                    what: None,
                    fields,
                    unified,
                });
            }
            (None, None) => {}
        }
    }
    Ok((out, stats))
}

/// A unified diff (3 lines of context) of two small texts.
pub fn unified_diff(name_a: &str, name_b: &str, a: &str, b: &str) -> String {
    let la: Vec<&str> = a.split_inclusive('\n').collect();
    let lb: Vec<&str> = b.split_inclusive('\n').collect();
    // Longest common subsequence table; the texts are small (CONTENT_DIFF_MAX).
    let (n, m) = (la.len(), lb.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if la[i] == lb[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    // The edit script: (tag, line index in a, line index in b).
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && la[i] == lb[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    let mut out = format!("--- {name_a}\n+++ {name_b}\n");
    const CTX: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CTX);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CTX {
            end = changed[k];
            k += 1;
        }
        let end = (end + CTX + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_start = hunk[0].1;
        let b_start = hunk[0].2;
        let a_len = hunk.iter().filter(|o| o.0 != '+').count();
        let b_len = hunk.iter().filter(|o| o.0 != '-').count();
        let a_first = if a_len == 0 { a_start } else { a_start + 1 };
        let b_first = if b_len == 0 { b_start } else { b_start + 1 };
        out.push_str(&format!("@@ -{a_first},{a_len} +{b_first},{b_len} @@\n"));
        for &(tag, x, y) in hunk {
            let line = if tag == '+' { lb[y] } else { la[x] };
            out.push(tag);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}
