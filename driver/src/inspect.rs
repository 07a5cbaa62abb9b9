//! `v6build ls` and `v6build cat`: look inside an image without unpacking
//! it to disk. The format is recognised by its magic.

use std::io::Write;
use std::path::Path;

use v6build_fstree::{BlobStore, Digest, LeafKind, MemBlobs, Node, Tree, TreePath};

use crate::error::DriverError;
use crate::{Config, Outcome};

pub use crate::images::{Format, sniff};

/// Reads the tree of any supported image. A squashfs that wraps
/// `LiveOS/rootfs.img` yields the ext4 tree inside unless `outer`.
pub fn read_image(path: &Path, blobs: &MemBlobs, outer: bool) -> Result<Tree, DriverError> {
    let mut bytes = Vec::new();
    open_image(path)
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
        .map_err(|e| DriverError::context(format!("reading {}", path.display()), e))?;
    read_bytes(bytes, blobs, outer).map_err(|e| DriverError::context(path.display().to_string(), e))
}

/// Reads the tree of an image held in memory.
pub fn read_bytes(bytes: Vec<u8>, blobs: &MemBlobs, outer: bool) -> Result<Tree, DriverError> {
    match sniff(&bytes) {
        Format::Squashfs => {
            let img = v6build_squashfs::SquashfsImage::open(std::io::Cursor::new(bytes))
                .map_err(DriverError::from)?;
            let tree = img.read_tree(blobs).map_err(DriverError::from)?;
            if outer {
                return Ok(tree);
            }
            for p in crate::images::NESTED_IMAGES {
                let Ok(tp) = TreePath::parse(p) else { continue };
                if let Some(Node::Leaf(l)) = tree.get(&tp)
                    && let LeafKind::Regular(c) = &l.kind
                {
                    let inner = blobs.get(&c.digest).map_err(DriverError::from)?;
                    if sniff(&inner) == Format::Ext4 {
                        return read_bytes(inner, blobs, true);
                    }
                }
            }
            Ok(tree)
        }
        Format::Ext4 => {
            let fs = v6build_ext4::Ext4::open(bytes).map_err(DriverError::from)?;
            fs.read_tree(blobs).map_err(DriverError::from)
        }
        Format::Initramfs => {
            let ird = v6build_cpio::Initramfs::parse(&bytes, blobs, &Default::default())
                .map_err(DriverError::from)?;
            Ok(ird.merged())
        }
    }
}

/// A reference that names no file of the opened image.
const NO_SUCH_FILE: &str = "no such file in the image";

/// An image opened for `ls`/`cat`: its tree, with file contents read only
/// when asked for. A squashfs (and the ext4 image nested in it) is read
/// through its metadata and block index, never inflated whole.
pub(crate) enum Opened {
    /// A squashfs: files named by reference into its block map.
    Squash(v6build_squashfs::BaseBlocks),
    /// An ext4 image, plain or nested: files named by inode reference; with
    /// the squashfs file it is nested in, if any (`diff` compares its
    /// stored blocks).
    Ext4(
        v6build_ext4::Ext4<std::sync::Arc<dyn v6build_ext4::ReadAt + Send + Sync>>,
        Digest,
        Option<std::sync::Arc<v6build_squashfs::FileAt>>,
    ),
    /// An initramfs, decompressed into memory.
    Mem(MemBlobs),
}

impl Opened {
    /// The BLAKE3 of a file's bytes, streamed (`diff` compares files this
    /// way without holding them). An initramfs's digests are already real.
    pub(crate) fn content_digest(&self, d: &Digest) -> Result<Digest, DriverError> {
        match self {
            Opened::Squash(b) => {
                let at = b.file_at(d).ok_or(NO_SUCH_FILE)?;
                let mut h = blake3::Hasher::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut pos = 0u64;
                while pos < at.len() {
                    let n = usize::try_from(at.len() - pos)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    at.read_at(pos, &mut buf[..n]).map_err(DriverError::from)?;
                    h.update(&buf[..n]);
                    pos += n as u64;
                }
                Ok(h.finalize().into())
            }
            Opened::Ext4(fs, seed, _) => {
                if *d == Digest::of(b"") {
                    return Ok(*d);
                }
                let ino = crate::refs::ext4_ino(seed, d).ok_or(NO_SUCH_FILE)?;
                let inode = fs.inode(ino).map_err(DriverError::from)?;
                let mut h = blake3::Hasher::new();
                std::io::copy(
                    &mut fs.open_file(&inode).map_err(DriverError::from)?,
                    &mut h,
                )
                .map_err(DriverError::from)?;
                Ok(h.finalize().into())
            }
            Opened::Mem(_) => Ok(*d),
        }
    }

    /// A sort key that puts files stored near each other together: the
    /// inode number in an ext4 image (files written together get nearby
    /// inodes and blocks), 0 otherwise. Reading many files in this order
    /// decompresses each squashfs block under a nested image about once.
    pub(crate) fn locality(&self, d: &Digest) -> u64 {
        match self {
            Opened::Ext4(_, seed, _) => crate::refs::ext4_ino(seed, d).map_or(0, u64::from),
            _ => 0,
        }
    }

    pub(crate) fn content(&self, d: &Digest) -> Result<Vec<u8>, DriverError> {
        match self {
            Opened::Squash(b) => {
                let at = b.file_at(d).ok_or(NO_SUCH_FILE)?;
                let n = usize::try_from(at.len())
                    .map_err(|_| DriverError::LimitExceeded(format!("{} bytes", at.len())))?;
                let mut v = vec![0u8; n];
                at.read_at(0, &mut v).map_err(DriverError::from)?;
                Ok(v)
            }
            Opened::Ext4(fs, seed, _) => {
                if *d == Digest::of(b"") {
                    return Ok(Vec::new());
                }
                let ino = crate::refs::ext4_ino(seed, d).ok_or(NO_SUCH_FILE)?;
                let inode = fs.inode(ino).map_err(DriverError::from)?;
                let mut v = Vec::new();
                std::io::Read::read_to_end(
                    &mut fs.open_file(&inode).map_err(DriverError::from)?,
                    &mut v,
                )
                .map_err(DriverError::from)?;
                Ok(v)
            }
            Opened::Mem(m) => m.get(d).map_err(DriverError::from),
        }
    }
}

fn ext4_tree(
    at: std::sync::Arc<dyn v6build_ext4::ReadAt + Send + Sync>,
    nested_in: Option<std::sync::Arc<v6build_squashfs::FileAt>>,
) -> Result<(Tree, Opened), DriverError> {
    let fs = v6build_ext4::Ext4::open(at).map_err(DriverError::from)?;
    let seed = Digest::of(b"v6build inspect");
    let tree = crate::refs::read_ext4(&fs, &seed).map_err(DriverError::from)?;
    Ok((tree, Opened::Ext4(fs, seed, nested_in)))
}

/// Opens an image the user named on the command line: links in the name
/// are followed (the user chose the path), but only a regular file is
/// opened, and never in a way that blocks on a FIFO or device.
pub(crate) fn open_image(path: &Path) -> std::io::Result<std::fs::File> {
    v6build_engine::host::open_regular(&std::fs::canonicalize(path)?)
}

/// Opens an image lazily (see [`Opened`]).
pub(crate) fn open_lazy(path: &Path, outer: bool) -> Result<(Tree, Opened), DriverError> {
    let at = |e: std::io::Error| DriverError::context(format!("reading {}", path.display()), e);
    let mut f = open_image(path).map_err(at)?;
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut f, crate::what_is::HEAD as u64),
        &mut head,
    )
    .map_err(at)?;
    let ctx = |e: DriverError| DriverError::context(path.display().to_string(), e);
    if sniff(&head) == Format::Initramfs
        && let Some(what) = crate::what_is::describe(&head)
    {
        return Err(DriverError::Unsupported(format!(
            "{} is not an image v6build can read (an initramfs, a squashfs or an ext4 image): \
             it is {what}",
            path.display()
        )));
    }
    match sniff(&head) {
        Format::Squashfs => {
            let img = v6build_squashfs::SquashfsImage::open(open_image(path).map_err(at)?)
                .map_err(|e| ctx(e.into()))?;
            let (tree, blocks) = img.read_tree_lazy(b"").map_err(|e| ctx(e.into()))?;
            if !outer
                && let Some(c) = crate::images::nested_candidate(&tree)
                && let Some(fa) = blocks.file_at(&c.digest)
            {
                let mut h = vec![0u8; 2048.min(usize::try_from(fa.len()).unwrap_or(0))];
                fa.read_at(0, &mut h).map_err(|e| ctx(e.into()))?;
                if sniff(&h) == Format::Ext4 {
                    return ext4_tree(
                        std::sync::Arc::new(crate::refs::SquashAt::new(fa)),
                        blocks.file_at(&c.digest).map(std::sync::Arc::new),
                    )
                    .map_err(|e| ctx(DriverError::context("LiveOS/rootfs.img", e)));
                }
            }
            Ok((tree, Opened::Squash(blocks)))
        }
        Format::Ext4 => {
            ext4_tree(std::sync::Arc::new(open_image(path).map_err(at)?), None).map_err(ctx)
        }
        Format::Initramfs => {
            let blobs = MemBlobs::new();
            let tree = read_image(path, &blobs, outer)?;
            Ok((tree, Opened::Mem(blobs)))
        }
    }
}

/// The listed part of a lazily opened tree with every file named by the
/// BLAKE3 of its bytes, as `ls` shows it: only what is listed is read.
fn with_real_digests(
    dir: &v6build_fstree::Directory,
    opened: &Opened,
    seen: &mut std::collections::HashMap<
        *const v6build_fstree::Leaf,
        std::sync::Arc<v6build_fstree::Leaf>,
    >,
) -> Result<v6build_fstree::Directory, DriverError> {
    let mut out = v6build_fstree::Directory::new(dir.meta.clone());
    for (name, node) in dir.entries() {
        let n = match node {
            Node::Dir(d) => Node::Dir(with_real_digests(d, opened, seen)?),
            Node::Leaf(l) => Node::Leaf(real_leaf(l, opened, seen)?),
        };
        out.put(name.clone(), n);
    }
    Ok(out)
}

/// A leaf named by the BLAKE3 of its bytes (one copy per hardlink group).
fn real_leaf(
    l: &std::sync::Arc<v6build_fstree::Leaf>,
    opened: &Opened,
    seen: &mut std::collections::HashMap<
        *const v6build_fstree::Leaf,
        std::sync::Arc<v6build_fstree::Leaf>,
    >,
) -> Result<std::sync::Arc<v6build_fstree::Leaf>, DriverError> {
    let key = std::sync::Arc::as_ptr(l);
    if let Some(done) = seen.get(&key) {
        return Ok(std::sync::Arc::clone(done));
    }
    let mut leaf: v6build_fstree::Leaf = (**l).clone();
    if let LeafKind::Regular(c) = &mut leaf.kind {
        c.digest = Digest::of(&opened.content(&c.digest)?);
    }
    let leaf = std::sync::Arc::new(leaf);
    seen.insert(key, std::sync::Arc::clone(&leaf));
    Ok(leaf)
}

/// The entries `ls` shows for `node` at `at`: the entry itself, then (for
/// a directory) everything below it, each with its full path in the image.
fn listed<'a>(at: &TreePath, node: &'a Node) -> Vec<(TreePath, &'a Node)> {
    let mut v = vec![(at.clone(), node)];
    if let Node::Dir(d) = node {
        d.walk(&mut |rel, n| {
            let mut full = at.clone();
            for c in rel.components() {
                full.push(c.clone());
            }
            v.push((full, n));
        });
    }
    v
}

/// A file type in one lowercase word, for `ls --json`.
fn type_word(node: &Node) -> &'static str {
    match node {
        Node::Dir(_) => "dir",
        Node::Leaf(l) => match l.kind {
            LeafKind::Regular(_) => "file",
            LeafKind::Symlink(_) => "symlink",
            LeafKind::CharDevice { .. } => "char-device",
            LeafKind::BlockDevice { .. } => "block-device",
            LeafKind::Fifo => "fifo",
            LeafKind::Socket => "socket",
        },
    }
}

/// One `ls --json` entry.
fn entry_json(path: &TreePath, node: &Node, link_of: Option<&TreePath>) -> serde_json::Value {
    let m = node.meta();
    let xattrs: serde_json::Map<String, serde_json::Value> = m
        .xattrs
        .iter()
        .map(|(k, v)| {
            (
                v6build_fstree::escape(k),
                serde_json::Value::String(v6build_fstree::escape(v)),
            )
        })
        .collect();
    let mut e = serde_json::json!({
        "path": path.to_string(),
        "type": type_word(node),
        "mode": format!("{:04o}", m.perm),
        "uid": m.uid,
        "gid": m.gid,
        "mtime": m.mtime.secs,
        "xattrs": xattrs,
    });
    if let Node::Leaf(l) = node {
        match &l.kind {
            LeafKind::Regular(c) => {
                e["size"] = c.size.into();
                e["digest"] = c.digest.to_string().into();
            }
            LeafKind::Symlink(t) => e["target"] = v6build_fstree::escape(t).into(),
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                e["major"] = (*major).into();
                e["minor"] = (*minor).into();
            }
            LeafKind::Fifo | LeafKind::Socket => {}
        }
    }
    if let Some(first) = link_of {
        e["hardlink_of"] = first.to_string().into();
    }
    e
}

/// `v6build ls IMAGE [PATH]`: every entry at and below PATH with its full
/// path in the image (what `cat` takes), as text lines or JSON entries.
/// The listing (text, or one JSON document with `--json`) goes to `out`.
pub fn ls(cfg: &Config, image: &Path, path: &str, outer: bool, out: &mut dyn Write) -> Outcome {
    let (tree, opened) = match open_lazy(image, outer) {
        Ok(t) => t,
        Err(e) => return Outcome::Error(e),
    };
    let tp = match TreePath::parse(path) {
        Ok(p) => p,
        Err(e) => return Outcome::Usage(format!("bad path {path:?}: {e}")),
    };
    let node = if tp.is_root() {
        Node::Dir(tree)
    } else {
        match tree.get(&tp) {
            Some(n) => n.clone(),
            None => {
                return Outcome::Error(DriverError::Check(format!(
                    "{path}: no such entry in the image"
                )));
            }
        }
    };
    // Only what is listed is read, to name each file by its BLAKE3.
    let mut seen = Default::default();
    let node = match &node {
        Node::Dir(d) => with_real_digests(d, &opened, &mut seen).map(Node::Dir),
        Node::Leaf(l) => real_leaf(l, &opened, &mut seen).map(Node::Leaf),
    };
    let node = match node {
        Ok(n) => n,
        Err(e) => return crate::failed(format!("{}", image.display()), e),
    };
    let entries = listed(&tp, &node);
    // Later names of a hardlink group point at the first one listed.
    let mut first: std::collections::HashMap<*const v6build_fstree::Leaf, TreePath> =
        std::collections::HashMap::new();
    let mut text = String::new();
    let mut json = Vec::new();
    for (p, node) in &entries {
        let link_of = match node {
            Node::Leaf(l) => {
                let key = std::sync::Arc::as_ptr(l);
                match first.get(&key) {
                    Some(f) => Some(f.clone()),
                    None => {
                        first.insert(key, p.clone());
                        None
                    }
                }
            }
            Node::Dir(_) => None,
        };
        if cfg.json {
            json.push(entry_json(p, node, link_of.as_ref()));
            continue;
        }
        let line = v6build_fstree::entry_line(p, node);
        match link_of {
            Some(f) => {
                let head = line.lines().next().unwrap_or_default();
                let shown = format!(" {p}");
                let cut = head.find(&shown).map_or(head.len(), |i| i + shown.len());
                text.push_str(&format!("{} => {f}\n", &head[..cut]));
            }
            None => text.push_str(&line),
        }
    }
    // A closed pipe (`v6build ls … | head`) is not an error.
    let _ = if cfg.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "image": image.display().to_string(), "path": path, "entries": json }))
            .unwrap_or_default()
        )
    } else {
        writeln!(out, "{}", text.trim_end_matches('\n'))
    };
    Outcome::Success
}

/// `v6build cat IMAGE PATH`.
/// The file's bytes go to `out`.
pub fn cat(_cfg: &Config, image: &Path, path: &str, outer: bool, out: &mut dyn Write) -> Outcome {
    let (tree, opened) = match open_lazy(image, outer) {
        Ok(t) => t,
        Err(e) => return Outcome::Error(e),
    };
    let tp = match TreePath::parse(path) {
        Ok(p) => p,
        Err(e) => return Outcome::Usage(format!("bad path {path:?}: {e}")),
    };
    match tree.get(&tp) {
        Some(Node::Leaf(l)) => match &l.kind {
            LeafKind::Regular(c) => match opened.content(&c.digest) {
                Ok(b) => {
                    if let Err(e) = out.write_all(&b).and_then(|_| out.flush()) {
                        return crate::failed("writing stdout", e);
                    }
                    Outcome::Success
                }
                Err(e) => crate::failed(path.to_string(), e),
            },
            LeafKind::Symlink(t) => Outcome::Error(DriverError::Check(format!(
                "{path} is a symlink to {}; cat its target",
                v6build_fstree::escape(t)
            ))),
            _ => Outcome::Error(DriverError::Check(format!("{path} is not a regular file"))),
        },
        Some(Node::Dir(_)) => Outcome::Error(DriverError::Check(format!(
            "{path} is a directory; use `v6build ls`"
        ))),
        None => Outcome::Error(DriverError::Check(format!(
            "{path}: no such entry in the image"
        ))),
    }
}
