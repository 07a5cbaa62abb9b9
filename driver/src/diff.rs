//! `v6build diff A B`: what changed between two releases, two images, or a
//! recipe's media and a release, entry by entry inside each image.
//!
//! Each side is a set of *artifacts* (files named by their path in a
//! release directory). Artifacts are paired by path. Two artifacts with the
//! same bytes are the same and nothing inside them is read. Two images
//! (initramfs, squashfs, ext4, and the ext4 `LiveOS/rootfs.img` nested in a
//! squashfs) are compared as trees, read lazily as `ls` reads them
//! ([`crate::inspect`]): metadata from the image's tables, and the content
//! of a file only when the same path holds a regular file of the same size
//! on both sides, streamed through a hash, unless their stored layout
//! proves them equal (`Shortcut`: the same compressed squashfs blocks, or
//! the same ext4 block map over squashfs blocks of the nested image that
//! are the same on both sides). Other files are compared by size and
//! sha256, with a unified diff for small text files under `--content`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use v6build_engine::recipe::MediaRole;
use v6build_fstree::{Digest, LeafKind, MemBlobs, Node, Tree, TreePath, escape};

use crate::inspect::{Format, Opened, sniff};
use crate::{Config, Outcome, Verbosity};

/// Files larger than this are never shown as a unified diff.
pub const CONTENT_DIFF_MAX: u64 = 64 * 1024;

/// What `v6build diff` was asked.
#[derive(Debug, Clone)]
pub struct DiffArgs {
    /// The old side: a release directory or an image. `None` with `media`.
    pub a: Option<PathBuf>,
    /// The new side: a release directory or an image.
    pub b: PathBuf,
    /// Use this recipe's media as the old side.
    pub media: Option<PathBuf>,
    /// Show unified diffs of small text files.
    pub content: bool,
}

/// One side: its artifacts by release path.
#[derive(Debug)]
struct Side {
    label: String,
    artifacts: BTreeMap<String, PathBuf>,
    /// A single image given directly: paired with the other side's
    /// artifact of the same name, or with the other single image.
    single: bool,
}

/// A file's size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sum {
    size: u64,
    sha256: String,
}

fn sum_file(p: &Path) -> Result<Sum, String> {
    let mut f = std::fs::File::open(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading {}: {e}", p.display())),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Sum {
        size,
        sha256: hex::encode(h.finalize()),
    })
}

/// Every file below `dir` that is not a directory, by `/`-separated
/// relative path. Symlinks are listed by their own path and never followed.
fn release_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let entries = crate::release::release_entries(dir).map_err(|e| format!("reading {e}"))?;
    Ok(entries.into_iter().map(|(r, e)| (r, e.path)).collect())
}

/// Where a media file of `role` lands in a release.
fn release_path(role: MediaRole, media: &Path) -> String {
    match role {
        MediaRole::Initrd => "initrd.img".into(),
        MediaRole::Stage2 => "LiveOS/squashfs.img".into(),
        MediaRole::Treeinfo => ".treeinfo".into(),
        MediaRole::Kernel => media
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vmlinuz".into()),
    }
}

/// The media a recipe builds from, as artifacts: the initrd and stage2 of
/// the media its outputs name, and the kernel and `.treeinfo` of those.
fn media_side(recipe: &Path) -> Result<Side, Outcome> {
    let r = v6build_engine::recipe::load(recipe).map_err(crate::recipe_error)?;
    let mut used: Vec<&str> = Vec::new();
    if let Some(o) = &r.outputs.initrd {
        used.push(&o.from);
    }
    if let Some(o) = &r.outputs.stage2 {
        used.push(&o.from);
    }
    let mut artifacts = BTreeMap::new();
    for m in r.media.iter().filter(|m| used.contains(&m.name.as_str())) {
        for f in &m.files {
            let role_used = match f.role {
                MediaRole::Initrd => r.outputs.initrd.as_ref().is_some_and(|o| o.from == m.name),
                MediaRole::Stage2 => r.outputs.stage2.as_ref().is_some_and(|o| o.from == m.name),
                MediaRole::Kernel | MediaRole::Treeinfo => true,
            };
            if role_used {
                if !f.path.is_file() {
                    return Err(Outcome::Failure(format!(
                        "media {} {} is not on disk at {}",
                        m.name,
                        f.role.node_name(),
                        f.path.display()
                    )));
                }
                artifacts
                    .entry(release_path(f.role, &f.path))
                    .or_insert_with(|| f.path.clone());
            }
        }
    }
    Ok(Side {
        label: format!("media of {}", recipe.display()),
        artifacts,
        single: false,
    })
}

fn path_side(p: &Path) -> Result<Side, Outcome> {
    let meta = std::fs::metadata(p).map_err(|e| Outcome::Usage(format!("{}: {e}", p.display())))?;
    if meta.is_dir() {
        Ok(Side {
            label: p.display().to_string(),
            artifacts: release_files(p).map_err(Outcome::Failure)?,
            single: false,
        })
    } else if meta.is_file() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        Ok(Side {
            label: p.display().to_string(),
            artifacts: BTreeMap::from([(name, p.to_path_buf())]),
            single: true,
        })
    } else {
        Err(Outcome::Usage(format!(
            "{} is neither a release directory nor an image file",
            p.display()
        )))
    }
}

/// Renames a single image's artifact after the other side's artifact with
/// the same file name (`squashfs.img` pairs with `LiveOS/squashfs.img`), or
/// after the other single image.
fn pair_single(single: &mut Side, other: &Side) {
    if !single.single {
        return;
    }
    let Some((name, path)) = single
        .artifacts
        .iter()
        .next()
        .map(|(n, p)| (n.clone(), p.clone()))
    else {
        return;
    };
    let target = if other.single {
        other.artifacts.keys().next().cloned()
    } else {
        other
            .artifacts
            .keys()
            .find(|k| *k == &name || k.ends_with(&format!("/{name}")))
            .cloned()
    };
    if let Some(t) = target {
        single.artifacts = BTreeMap::from([(t, path)]);
    }
}

/// One changed entry inside an image.
#[derive(Debug, Clone)]
struct EntryDiff {
    path: String,
    /// `added`, `removed` or `changed`.
    change: &'static str,
    /// For added/removed: a description of the entry.
    what: Option<String>,
    /// For changed: field name, old value, new value.
    fields: Vec<(&'static str, String, String)>,
    /// A unified diff of the content, with `--content`.
    unified: Option<String>,
}

/// One initrd segment, as the layout report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegInfo {
    compression: String,
    entries: usize,
    packed: u64,
    unpacked: u64,
}

impl SegInfo {
    fn text(&self) -> String {
        format!(
            "{} {} entries, {} bytes ({} unpacked)",
            self.compression, self.entries, self.packed, self.unpacked
        )
    }
    fn json(&self) -> Value {
        json!({ "compression": self.compression, "entries": self.entries,
            "bytes": self.packed, "unpacked_bytes": self.unpacked })
    }
}

/// What differs between two artifacts at one path.
#[derive(Debug)]
enum Detail {
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
struct Image {
    tree: Tree,
    opened: Opened,
    segments: Option<Vec<SegInfo>>,
    kind: &'static str,
}

fn head(p: &Path) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let mut h = Vec::new();
    f.by_ref()
        .take(2048)
        .read_to_end(&mut h)
        .map_err(|e| format!("reading {}: {e}", p.display()))?;
    Ok(h)
}

/// Whether `p` looks like an image `diff` can look into.
fn is_image(p: &Path) -> bool {
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

fn open_image(p: &Path, keep: bool) -> Result<Image, String> {
    let h = head(p)?;
    match sniff(&h) {
        Format::Initramfs => {
            // An initramfs is one stream: parse it once, for both the tree
            // and the segment layout. Contents are kept only for --content.
            let bytes = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            let blobs = MemBlobs::new();
            let hash_only = v6build_fstree::HashOnly;
            let store: &dyn v6build_fstree::BlobStore = if keep { &blobs } else { &hash_only };
            let ird = v6build_cpio::Initramfs::parse(&bytes, store, &Default::default())
                .map_err(|e| format!("{}: {e}", p.display()))?;
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

fn type_word(n: &Node) -> &'static str {
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

fn describe(n: &Node, real: Option<&Digest>) -> String {
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

fn xattrs_text(x: &v6build_fstree::Xattrs) -> String {
    if x.is_empty() {
        return "none".into();
    }
    x.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn mtime_text(t: &v6build_fstree::Timestamp) -> String {
    if t.nanos == 0 {
        t.secs.to_string()
    } else {
        format!("{}.{:09}", t.secs, t.nanos)
    }
}

fn all_nodes(t: &Tree) -> BTreeMap<TreePath, &Node> {
    t.paths().into_iter().collect()
}

fn content_of(opened: &Opened, n: &Node) -> Option<Digest> {
    match n {
        Node::Leaf(l) => match &l.kind {
            LeafKind::Regular(c) => opened.content_digest(&c.digest).ok(),
            _ => None,
        },
        Node::Dir(_) => None,
    }
}

fn small_text(b: &[u8]) -> Option<&str> {
    if b.len() as u64 > CONTENT_DIFF_MAX || b.contains(&0) {
        return None;
    }
    std::str::from_utf8(b).ok()
}

/// How many same-size regular files `diff` compared in one image pair,
/// and how: proved equal from their stored layout without reading them,
/// or read and hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReadStats {
    /// Paths holding a regular file of the same size on both sides.
    pairs: u64,
    /// Of those, proved equal without reading their content.
    unread: u64,
    /// Of those, read and hashed on both sides.
    read: u64,
}

impl ReadStats {
    fn json(&self) -> Value {
        json!({ "same_size_files": self.pairs, "proved_equal_unread": self.unread,
            "read": self.read })
    }
}

/// Stored-bytes comparisons already made: `(pos A, pos B, size word)`.
type Memo = std::sync::Mutex<std::collections::HashMap<(u64, u64, u32), bool>>;

/// Whether piece `i` of `fa` and of `fb` provably holds the same bytes:
/// the same kind of piece, and for stored blocks (or fragment blocks, the
/// tail at the same offset) the same size word and stored bytes, which
/// the same codec inflates alike. Nothing is decompressed; a block that
/// cannot be read proves nothing (the caller reads the files and reports
/// the error as before).
fn same_piece(
    fa: &v6build_squashfs::FileAt,
    fb: &v6build_squashfs::FileAt,
    i: usize,
    memo: Option<&Memo>,
) -> bool {
    use v6build_squashfs::StoredPiece as P;
    let (pa, wa, pb, wb) = match (fa.stored_piece(i), fb.stored_piece(i)) {
        (Some(P::Hole), Some(P::Hole)) => return true,
        (Some(P::Data(x)), Some(P::Data(y))) => return x == y,
        (Some(P::Block { pos: pa, word: wa }), Some(P::Block { pos: pb, word: wb })) => {
            (pa, wa, pb, wb)
        }
        (
            Some(P::Tail {
                pos: pa,
                word: wa,
                offset: oa,
            }),
            Some(P::Tail {
                pos: pb,
                word: wb,
                offset: ob,
            }),
        ) if oa == ob => (pa, wa, pb, wb),
        _ => return false,
    };
    if wa != wb {
        return false;
    }
    if let Some(m) = memo
        && let Ok(m) = m.lock()
        && let Some(&same) = m.get(&(pa, pb, wa))
    {
        return same;
    }
    let same = match (fa.stored_bytes(pa, wa), fb.stored_bytes(pb, wb)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    if let Some(m) = memo
        && let Ok(mut m) = m.lock()
    {
        m.insert((pa, pb, wa), same);
    }
    same
}

/// Length of piece `i` of a `size`-byte file cut in `bs`-byte blocks.
fn piece_len(size: u64, bs: u64, i: u64) -> u64 {
    size.saturating_sub(i.saturating_mul(bs)).min(bs)
}

type Ext4Fs = v6build_ext4::Ext4<Arc<dyn v6build_ext4::ReadAt + Send + Sync>>;

/// Proves same-size files of two images equal without reading them, from
/// how the images store them. Whatever it cannot prove is read and hashed.
enum Shortcut<'a> {
    None,
    /// Two squashfs images with the same codec and block size: a file is
    /// the same when every piece of it is the same stored bytes
    /// ([`same_piece`]). v6build copies an unchanged file's compressed
    /// blocks verbatim, so this holds for every file a build left alone.
    Squash {
        a: &'a v6build_squashfs::BaseBlocks,
        b: &'a v6build_squashfs::BaseBlocks,
        memo: Memo,
    },
    /// Two ext4 images nested in squashfs files (EL7's `rootfs.img`) with
    /// the same ext4 block size: a file is the same when it has the same
    /// block map on both sides and every squashfs block of the nested
    /// image those blocks lie in is the same stored bytes on both sides.
    Nested {
        a: (&'a Ext4Fs, &'a Digest),
        b: (&'a Ext4Fs, &'a Digest),
        /// Per squashfs block of the nested image: the same on both sides.
        same: Vec<bool>,
        /// The squashfs block size.
        piece: u64,
        /// The ext4 block size.
        block: u64,
        /// Bytes of the nested image present on both sides.
        len: u64,
    },
}

impl<'a> Shortcut<'a> {
    fn new(a: &'a Opened, b: &'a Opened) -> Self {
        match (a, b) {
            (Opened::Squash(x), Opened::Squash(y)) => Shortcut::Squash {
                a: x,
                b: y,
                memo: Memo::default(),
            },
            (Opened::Ext4(fa, sa, Some(na)), Opened::Ext4(fb, sb, Some(nb)))
                if na.same_codec(nb)
                    && fa.superblock().block_size == fb.superblock().block_size =>
            {
                // Once per image pair: compare the nested images' stored
                // blocks (reading compressed bytes, inflating nothing).
                let piece = u64::from(na.block_size());
                let (la, lb) = (na.len(), nb.len());
                let n = na.pieces().min(nb.pieces());
                let same: Vec<bool> = (0..n)
                    .into_par_iter()
                    .map(|i| {
                        piece_len(la, piece, i as u64) == piece_len(lb, piece, i as u64)
                            && same_piece(na, nb, i, None)
                    })
                    .collect();
                Shortcut::Nested {
                    a: (fa, sa),
                    b: (fb, sb),
                    same,
                    piece,
                    block: u64::from(fa.superblock().block_size),
                    len: la.min(lb),
                }
            }
            _ => Shortcut::None,
        }
    }

    /// Whether files `x` (in A) and `y` (in B), both `size` bytes, are
    /// provably the same bytes without reading them.
    fn proves_same(&self, x: &Digest, y: &Digest, size: u64) -> bool {
        match self {
            Shortcut::None => false,
            Shortcut::Squash { a, b, memo } => {
                let (Some(fa), Some(fb)) = (a.file_at(x), b.file_at(y)) else {
                    return false;
                };
                fa.len() == size
                    && fb.len() == size
                    && fa.same_codec(&fb)
                    && fa.pieces() == fb.pieces()
                    && (0..fa.pieces()).all(|i| same_piece(&fa, &fb, i, Some(memo)))
            }
            Shortcut::Nested {
                a,
                b,
                same,
                piece,
                block,
                len,
            } => {
                // A file larger than the image is sparse: read it, so the
                // reader's limits apply as before.
                if size == 0 || size > *len {
                    return false;
                }
                let (Some(ia), Some(ib)) =
                    (crate::refs::ext4_ino(a.1, x), crate::refs::ext4_ino(b.1, y))
                else {
                    return false;
                };
                let (Ok(na), Ok(nb)) = (a.0.inode(ia), b.0.inode(ib)) else {
                    return false;
                };
                if na.size() != size || nb.size() != size {
                    return false;
                }
                let (Ok(ma), Ok(mb)) = (a.0.mapping(&na), b.0.mapping(&nb)) else {
                    return false;
                };
                if ma.runs != mb.runs {
                    return false;
                }
                ma.runs.iter().filter(|r| !r.uninit).all(|r| {
                    let start = r.physical.checked_mul(*block);
                    let end = r
                        .physical
                        .checked_add(u64::from(r.len))
                        .and_then(|e| e.checked_mul(*block));
                    match (start, end) {
                        (Some(s), Some(e)) if s < e && e <= *len => {
                            let (p0, p1) = (s / piece, (e - 1) / piece);
                            (p0..=p1).all(|p| {
                                usize::try_from(p)
                                    .ok()
                                    .and_then(|p| same.get(p))
                                    .is_some_and(|&b| b)
                            })
                        }
                        (Some(s), Some(e)) => s == e,
                        _ => false,
                    }
                })
            }
        }
    }
}

/// Compares two image trees entry by entry.
fn tree_diff(a: &Image, b: &Image, content: bool) -> Result<(Vec<EntryDiff>, ReadStats), String> {
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
    let real = |opened: &Opened, l: &Arc<v6build_fstree::Leaf>| -> Result<Digest, String> {
        match &l.kind {
            LeafKind::Regular(c) => opened.content_digest(&c.digest),
            _ => Err("not a regular file".into()),
        }
    };
    // Files proved equal from their stored layout are not read at all.
    let shortcut = Shortcut::new(&a.opened, &b.opened);
    let unread = std::sync::atomic::AtomicU64::new(0);
    let differing: Result<Vec<Option<&TreePath>>, String> = pairs
        .par_iter()
        .map(|(p, lx, ly)| {
            if let (LeafKind::Regular(cx), LeafKind::Regular(cy)) = (&lx.kind, &ly.kind)
                && shortcut.proves_same(&cx.digest, &cy.digest, cx.size)
            {
                unread.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(None);
            }
            let dx = real(&a.opened, lx).map_err(|e| format!("{p}: {e}"))?;
            let dy = real(&b.opened, ly).map_err(|e| format!("{p}: {e}"))?;
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

fn compare(name: &str, a: &Path, b: &Path, content: bool) -> Result<Option<Detail>, String> {
    let (sa, sb) = rayon::join(|| sum_file(a), || sum_file(b));
    let (sa, sb) = (sa?, sb?);
    if sa == sb {
        return Ok(None);
    }
    if is_image(a) && is_image(b) {
        let (ia, ib) = rayon::join(|| open_image(a, content), || open_image(b, content));
        let (ia, ib) = (ia?, ib?);
        let (entries, stats) = tree_diff(&ia, &ib, content)?;
        let segments = match (&ia.segments, &ib.segments) {
            (Some(x), Some(y)) if x != y => Some((x.clone(), y.clone())),
            _ => None,
        };
        let kind = if ia.kind == ib.kind { ia.kind } else { "image" };
        return Ok(Some(Detail::Changed {
            a: sa,
            b: sb,
            kind,
            entries,
            segments,
            unified: None,
            stats: Some(stats),
        }));
    }
    let mut unified = None;
    if content && sa.size <= CONTENT_DIFF_MAX && sb.size <= CONTENT_DIFF_MAX {
        let ba = std::fs::read(a).map_err(|e| format!("reading {}: {e}", a.display()))?;
        let bb = std::fs::read(b).map_err(|e| format!("reading {}: {e}", b.display()))?;
        if let (Some(ta), Some(tb)) = (small_text(&ba), small_text(&bb)) {
            unified = Some(unified_diff(
                &format!("a/{name}"),
                &format!("b/{name}"),
                ta,
                tb,
            ));
        }
    }
    Ok(Some(Detail::Changed {
        a: sa,
        b: sb,
        kind: "file",
        entries: Vec::new(),
        segments: None,
        unified,
        stats: None,
    }))
}

/// The differences between two artifacts found by [`diff_images`].
#[derive(Debug, Clone)]
pub struct ImageChange {
    /// `+`, `-` or `~`.
    pub sign: char,
    /// Path inside the image.
    pub path: String,
    /// What changed, as printed.
    pub text: String,
}

/// The entries that differ between two images (for `verify`'s report).
pub fn diff_images(a: &Path, b: &Path) -> Result<Vec<ImageChange>, String> {
    let (ia, ib) = (open_image(a, false)?, open_image(b, false)?);
    Ok(tree_diff(&ia, &ib, false)?
        .0
        .into_iter()
        .map(|e| ImageChange {
            sign: sign(e.change),
            path: e.path.clone(),
            text: entry_text(&e),
        })
        .collect())
}

fn sign(change: &str) -> char {
    match change {
        "added" => '+',
        "removed" => '-',
        _ => '~',
    }
}

fn entry_text(e: &EntryDiff) -> String {
    match &e.what {
        Some(w) => format!("{} {}  {w}", sign(e.change), e.path),
        None => format!(
            "~ {}  {}",
            e.path,
            e.fields
                .iter()
                .map(|(f, x, y)| format!("{f} {x} -> {y}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn short(s: &Sum) -> String {
    format!(
        "{} bytes sha256 {}",
        s.size,
        &s.sha256[..16.min(s.sha256.len())]
    )
}

fn detail_json(path: &str, d: &Detail) -> Value {
    let sum = |s: &Sum| json!({ "size": s.size, "sha256": s.sha256 });
    match d {
        Detail::Removed(s) => json!({ "path": path, "status": "removed", "a": sum(s) }),
        Detail::Added(s) => json!({ "path": path, "status": "added", "b": sum(s) }),
        Detail::Changed {
            a,
            b,
            kind,
            entries,
            segments,
            unified,
            stats,
        } => {
            let entries: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = json!({ "path": e.path, "change": e.change });
                    if let Some(w) = &e.what {
                        v["entry"] = json!(w);
                    }
                    if !e.fields.is_empty() {
                        v["fields"] = e
                            .fields
                            .iter()
                            .map(|(f, x, y)| (f.to_string(), json!({ "a": x, "b": y })))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                    }
                    if let Some(u) = &e.unified {
                        v["unified_diff"] = json!(u);
                    }
                    v
                })
                .collect();
            let mut v = json!({ "path": path, "status": "changed", "kind": kind,
                "a": sum(a), "b": sum(b), "entries": entries });
            if let Some((x, y)) = segments {
                v["segments"] = json!({
                    "a": x.iter().map(SegInfo::json).collect::<Vec<_>>(),
                    "b": y.iter().map(SegInfo::json).collect::<Vec<_>>(),
                });
            }
            if let Some(u) = unified {
                v["unified_diff"] = json!(u);
            }
            if let Some(st) = stats {
                v["compared"] = st.json();
            }
            v
        }
    }
}

fn print_detail(path: &str, d: &Detail) {
    match d {
        Detail::Removed(s) => outln!("- {path}  ({}, only in A)", short(s)),
        Detail::Added(s) => outln!("+ {path}  ({}, only in B)", short(s)),
        Detail::Changed {
            a,
            b,
            kind,
            entries,
            segments,
            unified,
            ..
        } => {
            outln!("~ {path}  {kind}: {} -> {}", short(a), short(b));
            if let Some((x, y)) = segments {
                outln!("  segments: {} -> {}", x.len(), y.len());
                for (i, s) in x.iter().enumerate() {
                    outln!("    a[{i}] {}", s.text());
                }
                for (i, s) in y.iter().enumerate() {
                    outln!("    b[{i}] {}", s.text());
                }
            }
            if kind != &"file" && entries.is_empty() {
                outln!("  (same tree; the image encoding differs)");
            }
            for e in entries {
                outln!("  {}", entry_text(e));
                if let Some(u) = &e.unified {
                    for l in u.lines() {
                        outln!("    {l}");
                    }
                }
            }
            if let Some(u) = unified {
                for l in u.lines() {
                    outln!("  {l}");
                }
            }
        }
    }
}

/// `v6build diff`.
pub fn diff(cfg: &Config, args: &DiffArgs) -> Outcome {
    let sides = (|| -> Result<(Side, Side), Outcome> {
        let a = match (&args.media, &args.a) {
            (Some(r), None) => media_side(r)?,
            (None, Some(a)) => path_side(a)?,
            (Some(_), Some(_)) => {
                return Err(Outcome::Usage(
                    "with --media RECIPE, give one release directory or image to compare it with"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(Outcome::Usage(
                    "give two releases or images (A B), or --media RECIPE and one".into(),
                ));
            }
        };
        let b = path_side(&args.b)?;
        Ok((a, b))
    })();
    let (mut a, mut b) = match sides {
        Ok(s) => s,
        Err(o) => return o,
    };
    pair_single(&mut a, &b);
    pair_single(&mut b, &a);
    // A recipe's media are compared with the release files they became;
    // the files only a release has (SHA256SUMS, the manifest) are left out.
    let only_a_keys = args.media.is_some();
    let mut names: Vec<&String> = a.artifacts.keys().collect();
    if !only_a_keys {
        names.extend(b.artifacts.keys().filter(|k| !a.artifacts.contains_key(*k)));
    }
    names.sort();
    let results: Vec<(String, Result<Option<Detail>, String>)> = names
        .iter()
        .map(|n| {
            let r = match (a.artifacts.get(*n), b.artifacts.get(*n)) {
                (Some(x), Some(y)) => compare(n, x, y, args.content),
                (Some(x), None) => sum_file(x).map(|s| Some(Detail::Removed(s))),
                (None, Some(y)) => sum_file(y).map(|s| Some(Detail::Added(s))),
                (None, None) => Ok(None),
            };
            ((*n).clone(), r)
        })
        .collect();
    let mut changed = Vec::new();
    for (n, r) in results {
        match r {
            Ok(Some(d)) => changed.push((n, d)),
            Ok(None) => {}
            Err(e) => return Outcome::Failure(e),
        }
    }
    if cfg.json {
        let v: Vec<Value> = changed.iter().map(|(n, d)| detail_json(n, d)).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "a": a.label, "b": b.label, "identical": changed.is_empty(), "artifacts": v,
            }))
            .unwrap_or_default()
        );
    } else {
        for (n, d) in &changed {
            print_detail(n, d);
        }
        if cfg.verbosity >= Verbosity::Normal && changed.is_empty() {
            eprintln!("{} and {} are identical", a.label, b.label);
        }
    }
    if changed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Differs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_marks_changed_lines_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let d = unified_diff("a/x", "b/x", a, b);
        assert_eq!(
            d,
            "--- a/x\n+++ b/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
        let d = unified_diff("a", "b", "x\n", "x\ny");
        assert!(d.contains("+y\n\\ No newline at end of file"), "{d}");
    }
}
