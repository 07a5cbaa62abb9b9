//! `v6build ls` and `v6build cat`: look inside an image without unpacking
//! it to disk. The format is recognised by its magic.

use std::io::Write;
use std::path::Path;

use v6build_fstree::{BlobStore, LeafKind, MemBlobs, Node, Tree, TreePath, dump};

use crate::{Config, Outcome};

/// The kinds of image `ls`/`cat` understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// squashfs 4.0.
    Squashfs,
    /// ext2/3/4.
    Ext4,
    /// An initramfs (cpio segments, possibly compressed).
    Initramfs,
}

/// Recognises an image by its first bytes.
pub fn sniff(head: &[u8]) -> Format {
    if head.starts_with(b"hsqs") {
        Format::Squashfs
    } else if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF {
        Format::Ext4
    } else {
        Format::Initramfs
    }
}

/// Reads the tree of any supported image. A squashfs that wraps
/// `LiveOS/rootfs.img` yields the ext4 tree inside unless `outer`.
pub fn read_image(path: &Path, blobs: &MemBlobs, outer: bool) -> Result<Tree, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    read_bytes(bytes, blobs, outer).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the tree of an image held in memory.
pub fn read_bytes(bytes: Vec<u8>, blobs: &MemBlobs, outer: bool) -> Result<Tree, String> {
    match sniff(&bytes) {
        Format::Squashfs => {
            let img = v6build_squashfs::SquashfsImage::open(std::io::Cursor::new(bytes))
                .map_err(|e| e.to_string())?;
            let tree = img.read_tree(blobs).map_err(|e| e.to_string())?;
            if outer {
                return Ok(tree);
            }
            for p in crate::pipeline::NESTED_IMAGES {
                let Ok(tp) = TreePath::parse(p) else { continue };
                if let Some(Node::Leaf(l)) = tree.get(&tp)
                    && let LeafKind::Regular(c) = &l.kind
                {
                    let inner = blobs.get(&c.digest).map_err(|e| e.to_string())?;
                    if sniff(&inner) == Format::Ext4 {
                        return read_bytes(inner, blobs, true);
                    }
                }
            }
            Ok(tree)
        }
        Format::Ext4 => {
            let fs = v6build_ext4::Ext4::open(bytes).map_err(|e| e.to_string())?;
            fs.read_tree(blobs).map_err(|e| e.to_string())
        }
        Format::Initramfs => {
            let ird = v6build_cpio::Initramfs::parse(&bytes, blobs, &Default::default())
                .map_err(|e| e.to_string())?;
            Ok(ird.merged())
        }
    }
}

fn subtree(tree: &Tree, path: &str) -> Result<Tree, Outcome> {
    let tp =
        TreePath::parse(path).map_err(|e| Outcome::Usage(format!("bad path {path:?}: {e}")))?;
    if tp.is_root() {
        return Ok(tree.clone());
    }
    match tree.get(&tp) {
        Some(Node::Dir(d)) => Ok(d.clone()),
        Some(leaf) => {
            let mut t = Tree::new(tree.meta.clone());
            t.put(
                tp.file_name()
                    .cloned()
                    .ok_or_else(|| Outcome::Usage("bad path".into()))?,
                leaf.clone(),
            );
            Ok(t)
        }
        None => Err(Outcome::Failure(format!(
            "{path}: no such entry in the image"
        ))),
    }
}

/// `v6build ls IMAGE [PATH]`.
pub fn ls(cfg: &Config, image: &Path, path: &str, outer: bool) -> Outcome {
    let blobs = MemBlobs::new();
    let tree = match read_image(image, &blobs, outer) {
        Ok(t) => t,
        Err(e) => return Outcome::Failure(e),
    };
    let sub = match subtree(&tree, path) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let text = dump(&sub);
    if cfg.json {
        let lines: Vec<&str> = text.lines().collect();
        outln!(
            "{}",
            serde_json::json!({ "image": image.display().to_string(), "path": path, "entries": lines })
        );
    } else {
        outln!("{}", text.trim_end_matches('\n'));
    }
    Outcome::Success
}

/// `v6build cat IMAGE PATH`.
pub fn cat(_cfg: &Config, image: &Path, path: &str, outer: bool) -> Outcome {
    let blobs = MemBlobs::new();
    let tree = match read_image(image, &blobs, outer) {
        Ok(t) => t,
        Err(e) => return Outcome::Failure(e),
    };
    let tp = match TreePath::parse(path) {
        Ok(p) => p,
        Err(e) => return Outcome::Usage(format!("bad path {path:?}: {e}")),
    };
    match tree.get(&tp) {
        Some(Node::Leaf(l)) => match &l.kind {
            LeafKind::Regular(c) => match blobs.get(&c.digest) {
                Ok(b) => {
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = out.write_all(&b).and_then(|_| out.flush()) {
                        return Outcome::Failure(format!("writing stdout: {e}"));
                    }
                    Outcome::Success
                }
                Err(e) => Outcome::Failure(e.to_string()),
            },
            LeafKind::Symlink(t) => Outcome::Failure(format!(
                "{path} is a symlink to {}; cat its target",
                v6build_fstree::escape(t)
            )),
            _ => Outcome::Failure(format!("{path} is not a regular file")),
        },
        Some(Node::Dir(_)) => Outcome::Failure(format!("{path} is a directory; use `v6build ls`")),
        None => Outcome::Failure(format!("{path}: no such entry in the image")),
    }
}
