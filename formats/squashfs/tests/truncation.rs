//! Truncation sweep (issue 8, tests/hostile/README.md): an image this crate
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error, never a panic or a partial tree. Cuts inside the final 4 KiB
//! padding (past `bytes_used`) leave a complete image and must still read.

use std::io::Cursor;

use v6build_fstree::{MemBlobs, Tree};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};
use v6build_testkit::fixtures::{noise, sweep_tree};
use v6build_testkit::truncation::{cut_points, sweep};

/// A few KiB of metadata and ~80 KiB of data: every table and a fragment.
/// The data is incompressible, so the data blocks really span ~20 KiB
/// boundaries.
fn small_tree(blobs: &MemBlobs) -> Tree {
    sweep_tree(blobs, &noise(80_000, 0x2545_f491), 40, "f")
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
