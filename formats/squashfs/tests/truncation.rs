//! Truncation sweep (issue 8, tests/hostile/README.md): an image this crate
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error, never a panic or a partial tree. Cuts inside the final 4 KiB
//! padding (past `bytes_used`) leave a complete image and must still read.

use std::io::Cursor;
use std::sync::Arc;

use v6build_fstree::{Leaf, LeafKind, MemBlobs, Meta, Node, Tree};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};
use v6build_testkit::fixtures::{file_leaf, noise, path};
use v6build_testkit::truncation::{cut_points, sweep};

fn file(blobs: &MemBlobs, data: &[u8]) -> Arc<Leaf> {
    file_leaf(blobs, data, Meta::root(0o644, 1_000_000))
}

/// A few KiB of metadata and ~80 KiB of data: every table and a fragment.
fn small_tree(blobs: &MemBlobs) -> Tree {
    let p = path;
    let mut t = Tree::new(Meta::root(0o755, 1_000_000));
    t.mkdir_p(&p("/etc/sub"), &Meta::root(0o755, 1_000_000))
        .unwrap();
    // Incompressible, so the data blocks really span ~20 KiB boundaries.
    let big = noise(80_000, 0x2545_f491);
    t.insert(&p("/big"), Node::Leaf(file(blobs, &big)), false)
        .unwrap();
    let motd = file(blobs, b"hello\n");
    t.insert(&p("/etc/motd"), Node::Leaf(Arc::clone(&motd)), false)
        .unwrap();
    t.insert(&p("/etc/sub/hard"), Node::Leaf(motd), false)
        .unwrap();
    let mut xm = Meta::root(0o600, 5);
    xm.xattrs.insert(b"user.k".to_vec(), b"value".to_vec());
    let x = Leaf {
        meta: xm,
        kind: LeafKind::Symlink(b"../etc/motd".to_vec()),
    };
    t.insert(&p("/etc/link"), x.into_node(), false).unwrap();
    for i in 0..40 {
        t.insert(
            &p(&format!("/etc/sub/f{i:03}")),
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
    for (name, comp, uncompressed) in [
        ("gzip", Compressor::gzip(), false),
        ("zstd", Compressor::zstd(), false),
        ("gzip, uncompressed metadata", Compressor::gzip(), true),
    ] {
        let mut opts = WriteOptions::new(comp, 4096, 0);
        opts.uncompressed_metadata = uncompressed;
        let mut out = Cursor::new(Vec::new());
        write(&tree, &blobs, &opts, None, None, &mut out).unwrap();
        let img = out.into_inner();
        let used = SquashfsImage::open(Cursor::new(img.clone()))
            .unwrap()
            .superblock()
            .bytes_used;
        let used = usize::try_from(used).unwrap();
        assert!(img.len() > 8192, "{name}: image too small to sweep");
        let cuts = cut_points(img.len(), &[1, 95, 96, 97, 4095, 4097]);
        let refused = sweep(name, &img, &cuts, used, &tree.digest(), |cut| {
            SquashfsImage::open(Cursor::new(cut.to_vec()))
                .and_then(|i| i.read_tree(&MemBlobs::new()))
                .map(|t| t.digest())
        });
        assert!(refused > 3, "{name}: only {refused} cuts below bytes_used");
    }
}
