//! Small builders for test trees.

use std::sync::Arc;

use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, Meta, Node, Tree, TreePath};

/// `s` as a tree path (panics on a bad one: test input).
pub fn path(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

/// A regular-file leaf holding `data` (stored in `blobs`) with `meta`.
pub fn file_leaf(blobs: &dyn BlobStore, data: &[u8], meta: Meta) -> Arc<Leaf> {
    Arc::new(Leaf {
        meta,
        kind: LeafKind::Regular(Content {
            digest: blobs.put(data).unwrap(),
            size: u64::try_from(data.len()).unwrap(),
        }),
    })
}

/// `len` incompressible bytes from a 32-bit xorshift (13, 17, 5) started
/// at `seed` (not 0): data that makes compressed images span many 4 KiB
/// blocks.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The small tree the truncation sweeps write: `/big` holding `big`,
/// `/etc/motd` and its hardlink `/etc/sub/hard`, a symlink `/etc/link`
/// with a `user.k` xattr, and `files` small files
/// `/etc/sub/<prefix>NNN`. Everything at time 1,000,000, owned by root.
pub fn sweep_tree(blobs: &dyn BlobStore, big: &[u8], files: usize, prefix: &str) -> Tree {
    let file = |data: &[u8]| file_leaf(blobs, data, Meta::root(0o644, 1_000_000));
    let mut t = Tree::new(Meta::root(0o755, 1_000_000));
    t.mkdir_p(&path("/etc/sub"), &Meta::root(0o755, 1_000_000))
        .unwrap();
    t.insert(&path("/big"), Node::Leaf(file(big)), false)
        .unwrap();
    let motd = file(b"hello\n");
    t.insert(&path("/etc/motd"), Node::Leaf(Arc::clone(&motd)), false)
        .unwrap();
    t.insert(&path("/etc/sub/hard"), Node::Leaf(motd), false)
        .unwrap();
    let mut xm = Meta::root(0o600, 5);
    xm.xattrs.insert(b"user.k".to_vec(), b"value".to_vec());
    let link = Leaf {
        meta: xm,
        kind: LeafKind::Symlink(b"../etc/motd".to_vec()),
    };
    t.insert(&path("/etc/link"), link.into_node(), false)
        .unwrap();
    for i in 0..files {
        let data = format!("file {i}\n");
        t.insert(
            &path(&format!("/etc/sub/{prefix}{i:03}")),
            Node::Leaf(file(data.as_bytes())),
            false,
        )
        .unwrap();
    }
    t
}

/// Gives the regular file at `p` of `tree` the content `data` (stored in
/// `blobs`), keeping its metadata: the edit a rebuild test makes.
pub fn set_content(tree: &mut Tree, blobs: &dyn BlobStore, p: &TreePath, data: &[u8]) {
    let old = tree.get(p).unwrap().as_leaf().unwrap().clone();
    let new = file_leaf(blobs, data, old.meta.clone());
    tree.insert(p, Node::Leaf(new), true).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_does_not_compress_to_a_pattern() {
        let a = noise(4096, 0x2545_f491);
        assert_eq!(a, noise(4096, 0x2545_f491));
        assert_ne!(a, noise(4096, 7));
        let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200);
    }
}
