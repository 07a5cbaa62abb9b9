//! Recognising base images: which format an image is by its first bytes,
//! whether a stage2 squashfs wraps an ext4 image (and where), and reading a
//! base initrd within the memory limits. Used by the nodes that unpack
//! bases and by `ls`/`cat`/`diff`, which open the same images.

use std::io::Read;
use std::path::Path;

use v6build_fstree::{BlobStore, Content, LeafKind, Node, Tree, TreePath};

use crate::error::DriverError;

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

/// Where a stage2 squashfs keeps its nested filesystem image, if it has one.
pub(crate) const NESTED_IMAGES: [&str; 2] = ["/LiveOS/rootfs.img", "/LiveOS/ext3fs.img"];

/// Where the nested image would be, without looking inside it.
pub(crate) fn nested_candidate(outer: &Tree) -> Option<Content> {
    NESTED_IMAGES.iter().find_map(|p| {
        let path = TreePath::parse(p).ok()?;
        match outer.get(&path) {
            Some(Node::Leaf(l)) => match &l.kind {
                LeafKind::Regular(c) => Some(*c),
                _ => None,
            },
            _ => None,
        }
    })
}

/// How a base stage2 squashfs is laid out.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// It wraps an ext4 image at this path (EL7, EL8).
    Nested(TreePath, Content),
    /// It holds the tree directly (Fedora 34+, EL9).
    Plain,
}

/// Why a nested image candidate is not an ext4 image, or `None` if it is
/// one (by its superblock magic; the superblock itself is checked when the
/// image is opened).
fn not_ext4(node: &Node, store: &dyn BlobStore) -> Option<String> {
    let c = match node {
        Node::Dir(_) => return Some("it is a directory".into()),
        Node::Leaf(l) => match &l.kind {
            LeafKind::Regular(c) => c,
            LeafKind::Symlink(t) => {
                return Some(format!(
                    "it is a symlink (to {:?}), not an image",
                    String::from_utf8_lossy(t)
                ));
            }
            _ => return Some("it is not a regular file".into()),
        },
    };
    if c.size == 0 {
        return Some("it is empty".into());
    }
    if c.size < 2048 {
        return Some(format!(
            "it is {} bytes, too short to hold an ext4 superblock",
            c.size
        ));
    }
    let mut head = vec![0u8; 2048];
    if let Err(e) = store
        .open(&c.digest)
        .and_then(|mut r| r.read_exact(&mut head))
    {
        return Some(format!("its first bytes cannot be read: {e}"));
    }
    if sniff(&head) == Format::Ext4 {
        return None;
    }
    Some(format!(
        "it has no ext4 superblock magic (bytes 1080-1081 are {:02x} {:02x}, not 53 ef)",
        head[1080], head[1081]
    ))
}

/// Decides a base stage2's layout. A squashfs with a `LiveOS/rootfs.img`
/// (or `ext3fs.img`) is EL7-shaped and that file must be an ext4 image: a
/// broken one (bad magic, empty, a symlink) is an error, never a silent
/// switch to the plain layout, unless the recipe says `layout "plain"`.
/// `expect`, the recipe's `layout`, is checked against what is found.
pub(crate) fn stage2_shape(
    outer: &Tree,
    store: &dyn BlobStore,
    expect: Option<v6build_engine::recipe::Stage2Layout>,
) -> Result<Shape, DriverError> {
    use v6build_engine::recipe::Stage2Layout;
    let found = NESTED_IMAGES.iter().find_map(|p| {
        let path = TreePath::parse(p).ok()?;
        outer.get(&path).map(|n| (path, n))
    });
    match (found, expect) {
        (None, Some(Stage2Layout::El7)) => Err(DriverError::Check(format!(
            "the recipe says layout \"el7\", but the base squashfs has no {}",
            NESTED_IMAGES.join(" or ")
        ))),
        (None, _) => Ok(Shape::Plain),
        (Some((path, node)), expect) => match (not_ext4(node, store), expect) {
            (None, Some(Stage2Layout::Plain)) => Err(DriverError::Check(format!(
                "the recipe says layout \"plain\", but the base squashfs wraps an ext4 image at {path} (an EL7-style stage2); say layout \"el7\" or drop `layout`"
            ))),
            (None, _) => match node {
                Node::Leaf(l) => match &l.kind {
                    LeafKind::Regular(c) => Ok(Shape::Nested(path, *c)),
                    _ => Err(DriverError::Check(format!("{path} is not a regular file"))),
                },
                Node::Dir(_) => Err(DriverError::Check(format!("{path} is a directory"))),
            },
            (Some(_), Some(Stage2Layout::Plain)) => Ok(Shape::Plain),
            (Some(why), _) => Err(DriverError::Check(format!(
                "the base squashfs has {path}, which makes it an EL7-style stage2, but {path} is not a valid ext4 image: {why}; if this stage2 really holds its tree directly, say layout \"plain\" in the stage2 output"
            ))),
        },
    }
}

/// Reads a base initrd whole, refusing a file larger than the unpacked
/// limit before allocating for it (no initrd is larger than what it
/// unpacks to, give or take its headers).
pub(crate) fn read_initrd(
    path: &Path,
    limits: &crate::limits::Limits,
) -> Result<Vec<u8>, DriverError> {
    let at = || path.display().to_string();
    // O_NOFOLLOW|O_NONBLOCK, regular files only (engine::host).
    let f = v6build_engine::host::open_regular(path).map_err(|e| DriverError::context(at(), e))?;
    let len = f
        .metadata()
        .map_err(|e| DriverError::context(at(), e))?
        .len();
    if len > limits.max_unpacked {
        return Err(DriverError::LimitExceeded(format!(
            "{} is {len} bytes, which exceeds limit {} bytes for an initrd (set with {}=SIZE)",
            path.display(),
            limits.max_unpacked,
            crate::limits::ENV_UNPACKED
        )));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(|_| {
            DriverError::LimitExceeded(format!("{}: out of memory for {len} bytes", at()))
        })?;
    // Bounded too, in case the file grows after the length was checked.
    f.take(limits.max_unpacked.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| DriverError::context(at(), e))?;
    if bytes.len() as u64 > limits.max_unpacked {
        return Err(DriverError::LimitExceeded(format!(
            "{} grew past limit {} bytes for an initrd while it was read (set with {}=SIZE)",
            path.display(),
            limits.max_unpacked,
            crate::limits::ENV_UNPACKED
        )));
    }
    Ok(bytes)
}
