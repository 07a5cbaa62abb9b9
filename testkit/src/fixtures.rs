//! Small builders for test trees.

use std::sync::Arc;

use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, Meta, TreePath};

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
