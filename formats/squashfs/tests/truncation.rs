//! Truncation sweep (issue 8, tests/hostile/README.md): an image this crate
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error, never a panic or a partial tree. Cuts inside the final 4 KiB
//! padding (past `bytes_used`) leave a complete image and must still read.

use std::io::Cursor;
use std::sync::Arc;

use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};

fn file(blobs: &MemBlobs, data: &[u8]) -> Arc<Leaf> {
    Arc::new(Leaf {
        meta: Meta::root(0o644, 1_000_000),
        kind: LeafKind::Regular(Content {
            digest: blobs.put(data).unwrap(),
            size: u64::try_from(data.len()).unwrap(),
        }),
    })
}

/// A few KiB of metadata and ~80 KiB of data: every table and a fragment.
fn small_tree(blobs: &MemBlobs) -> Tree {
    let p = |s: &str| TreePath::parse(s).unwrap();
    let mut t = Tree::new(Meta::root(0o755, 1_000_000));
    t.mkdir_p(&p("/etc/sub"), &Meta::root(0o755, 1_000_000))
        .unwrap();
    // Incompressible, so the data blocks really span ~20 KiB boundaries.
    let mut x = 0x2545_f491_u32;
    let big: Vec<u8> = (0..80_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
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

fn cut_points(len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..len).step_by(4096).collect();
    cuts.extend([1, 95, 96, 97, 4095, 4097, len / 2, len.saturating_sub(1)]);
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
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
        let mut refused = 0;
        for cut in cut_points(img.len()) {
            let got = SquashfsImage::open(Cursor::new(img[..cut].to_vec()))
                .and_then(|i| i.read_tree(&MemBlobs::new()));
            if cut < used {
                assert!(got.is_err(), "{name}: cut at {cut} of {used} was accepted");
                refused += 1;
            } else {
                let got = got.unwrap_or_else(|e| panic!("{name}: cut in padding at {cut}: {e}"));
                assert_eq!(got.digest(), tree.digest(), "{name}: cut at {cut}");
            }
        }
        assert!(refused > 3, "{name}: only {refused} cuts below bytes_used");
    }
}
