//! Truncation sweep (issue 8, tests/hostile/README.md): an image `create`
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error when opened and read, never a panic or a partial tree.

use std::sync::Arc;

use v6build_ext4::{CreateOptions, Ext4, create};
use v6build_fstree::{Leaf, LeafKind, MemBlobs, Meta, Node, Tree};
use v6build_testkit::fixtures::{file_leaf, path};
use v6build_testkit::truncation::{cut_points, sweep};

fn file(blobs: &MemBlobs, data: &[u8]) -> Arc<Leaf> {
    file_leaf(blobs, data, Meta::root(0o644, 1_000_000))
}

/// Directories, a multi-block file, a hardlink, fast and slow symlinks,
/// an xattr and a directory big enough for several blocks.
fn small_tree(blobs: &MemBlobs) -> Tree {
    let p = path;
    let mut t = Tree::new(Meta::root(0o755, 1_000_000));
    t.mkdir_p(&p("/etc/sub"), &Meta::root(0o755, 1_000_000))
        .unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    t.insert(&p("/big"), Node::Leaf(file(blobs, &big)), false)
        .unwrap();
    let motd = file(blobs, b"hello\n");
    t.insert(&p("/etc/motd"), Node::Leaf(Arc::clone(&motd)), false)
        .unwrap();
    t.insert(&p("/etc/sub/hard"), Node::Leaf(motd), false)
        .unwrap();
    let mut xm = Meta::root(0o600, 5);
    xm.xattrs.insert(b"user.k".to_vec(), b"value".to_vec());
    let fast = Leaf {
        meta: xm,
        kind: LeafKind::Symlink(b"../etc/motd".to_vec()),
    };
    t.insert(&p("/etc/link"), fast.into_node(), false).unwrap();
    let slow = Leaf {
        meta: Meta::root(0o777, 5),
        kind: LeafKind::Symlink(vec![b'a'; 300]),
    };
    t.insert(&p("/etc/slow"), slow.into_node(), false).unwrap();
    for i in 0..200 {
        t.insert(
            &p(&format!("/etc/sub/file-with-a-longish-name-{i:03}")),
            Node::Leaf(file(blobs, format!("file {i}\n").as_bytes())),
            false,
        )
        .unwrap();
    }
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
