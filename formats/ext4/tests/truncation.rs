//! Truncation sweep (issue 8, tests/hostile/README.md): an image `create`
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error when opened and read, never a panic or a partial tree.

use v6build_ext4::{CreateOptions, Ext4, create};
use v6build_fstree::{Leaf, LeafKind, MemBlobs, Meta, Tree};
use v6build_testkit::fixtures::{path, sweep_tree};
use v6build_testkit::truncation::{cut_points, sweep};

/// Directories, a multi-block file, a hardlink, fast and slow symlinks,
/// an xattr and a directory big enough for several blocks.
fn small_tree(blobs: &MemBlobs) -> Tree {
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    let mut t = sweep_tree(blobs, &big, 200, "file-with-a-longish-name-");
    let slow = Leaf {
        meta: Meta::root(0o777, 5),
        kind: LeafKind::Symlink(vec![b'a'; 300]),
    };
    t.insert(&path("/etc/slow"), slow.into_node(), false)
        .unwrap();
    t
}

#[test]
fn every_truncation_is_an_error() {
    let blobs = MemBlobs::new();
    let tree = small_tree(&blobs);
    let img = create(&tree, &blobs, &CreateOptions::with_label(b"trunc")).unwrap();
    Ext4::open(&img[..])
        .and_then(|fs| fs.read_tree(&MemBlobs::new()))
        .expect("the whole image reads");
    let cuts = cut_points(img.len(), &[1, 1023, 1024, 1025, 2047, 4097]);
    assert!(
        cuts.len() > 8,
        "image of {} bytes too small to sweep",
        img.len()
    );
    // No cut of an ext4 image is complete: every one must be refused.
    let read = |b: &[u8]| Ext4::open(b).and_then(|fs| fs.read_tree(&MemBlobs::new()));
    sweep("ext4", &img, &cuts, img.len(), &tree, read);
}
