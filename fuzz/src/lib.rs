//! Shared pieces of the fuzz targets: an `arbitrary`-driven tree builder for
//! the writer -> reader round trips.
//!
//! Each codec represents a slightly different subset of the tree model
//! (cpio's newc has no xattrs; none of the three stores sub-second times
//! the same way), so the builder takes a [`Profile`] saying what the codec
//! under test can carry. Inside that subset a round trip must be exact:
//! the tree read back has the digest of the tree written.

use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use v6build_fstree::{
    BlobStore, Content, Directory, Leaf, LeafKind, MemBlobs, Meta, Name, Node, Timestamp, Tree,
    TreePath,
};

/// What a codec can represent, so generated trees stay inside it.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Whether entries may carry `user.*` xattrs.
    pub xattrs: bool,
    /// Largest file the generator makes (keeps executions fast while still
    /// crossing a 4 KiB block boundary).
    pub max_file: usize,
}

/// Most entries in one generated tree.
const MAX_ENTRIES: usize = 40;

fn meta(u: &mut Unstructured<'_>, p: Profile) -> Result<Meta> {
    let mut xattrs = std::collections::BTreeMap::new();
    if p.xattrs {
        for _ in 0..u.int_in_range(0..=2u8)? {
            let mut name = b"user.".to_vec();
            let len = u.int_in_range(1..=12usize)?;
            for _ in 0..len {
                name.push(u.int_in_range(b'a'..=b'z')?);
            }
            let vlen = u.int_in_range(0..=48usize)?;
            xattrs.insert(name, u.bytes(vlen)?.to_vec());
        }
    }
    Ok(Meta {
        perm: u.arbitrary::<u16>()? & Meta::PERM_MASK,
        uid: u.arbitrary()?,
        gid: u.arbitrary()?,
        // Whole seconds inside what all three formats store (u32 seconds
        // in cpio and squashfs; ext4 without the extra epoch bits).
        mtime: Timestamp::secs(i64::from(u.int_in_range(0..=i32::MAX as u32)?)),
        xattrs,
    })
}

fn name(u: &mut Unstructured<'_>) -> Result<Option<Name>> {
    let len = u.int_in_range(1..=24usize)?;
    let raw = u.bytes(len)?.to_vec();
    Ok(Name::new(raw).ok())
}

/// Builds a tree of at most [`MAX_ENTRIES`] entries of every kind
/// (directories, files, hardlinks, symlinks, devices, fifos, sockets),
/// putting file contents into `blobs`.
pub fn arbitrary_tree(u: &mut Unstructured<'_>, blobs: &MemBlobs, p: Profile) -> Result<Tree> {
    let mut tree = Tree::new(meta(u, p)?);
    let mut dirs = vec![TreePath::root()];
    let mut files: Vec<Arc<Leaf>> = Vec::new();
    let n = u.int_in_range(0..=MAX_ENTRIES)?;
    for _ in 0..n {
        let parent = u.choose(&dirs)?.clone();
        let Some(name) = name(u)? else { continue };
        let at = parent.join(name);
        if tree.get(&at).is_some() {
            continue;
        }
        let m = meta(u, p)?;
        let node = match u.int_in_range(0..=8u8)? {
            0 | 1 => {
                dirs.push(at.clone());
                Node::Dir(Directory::new(m))
            }
            2 | 3 => {
                let len = u.int_in_range(0..=p.max_file)?;
                // Mostly-repetitive data compresses, so it also exercises
                // the compressed-block paths, not only stored blocks.
                let seed = u.bytes(len.min(64))?.to_vec();
                let data: Vec<u8> = (0..len)
                    .map(|i| {
                        if seed.is_empty() {
                            0
                        } else {
                            seed[i % seed.len()]
                        }
                    })
                    .collect();
                let Ok(digest) = blobs.put(&data) else {
                    continue;
                };
                let leaf = Arc::new(Leaf {
                    meta: m,
                    kind: LeafKind::Regular(Content {
                        digest,
                        size: data.len() as u64,
                    }),
                });
                files.push(Arc::clone(&leaf));
                Node::Leaf(leaf)
            }
            4 if !files.is_empty() => Node::Leaf(Arc::clone(u.choose(&files)?)),
            4 | 5 => {
                let len = u.int_in_range(1..=200usize)?;
                let mut target = u.bytes(len)?.to_vec();
                target.retain(|&b| b != 0);
                if target.is_empty() {
                    target.push(b'x');
                }
                Leaf {
                    meta: m,
                    kind: LeafKind::Symlink(target),
                }
                .into_node()
            }
            6 => {
                let major = u.int_in_range(0..=4095u32)?;
                let minor = u.int_in_range(0..=(1u32 << 20) - 1)?;
                let kind = if u.arbitrary()? {
                    LeafKind::CharDevice { major, minor }
                } else {
                    LeafKind::BlockDevice { major, minor }
                };
                Leaf { meta: m, kind }.into_node()
            }
            7 => Leaf {
                meta: m,
                kind: LeafKind::Fifo,
            }
            .into_node(),
            _ => Leaf {
                meta: m,
                kind: LeafKind::Socket,
            }
            .into_node(),
        };
        // OK to ignore: the parent was taken from `dirs` and `at` is free.
        let _ = tree.insert(&at, node, false);
    }
    Ok(tree)
}

/// Panics with both listings when two trees differ: the round-trip failure
/// message a crash report needs.
pub fn assert_same_tree(written: &Tree, read: &Tree, codec: &str) {
    if written.digest() != read.digest() {
        panic!(
            "{codec} round trip changed the tree\n--- written\n{}\n--- read\n{}",
            v6build_fstree::dump(written),
            v6build_fstree::dump(read)
        );
    }
}

/// Panics if the contents read back differ from those written (the tree
/// digest covers content digests; this checks the blob store got them).
pub fn assert_blobs_present(tree: &Tree, blobs: &MemBlobs) {
    for c in tree.contents() {
        // Empty contents need no blob (`Content::empty`); readers skip them.
        if c.size == 0 {
            continue;
        }
        assert!(
            blobs.contains(&c.digest),
            "content {:?} of the read tree is not in the blob store",
            c.digest
        );
    }
}
