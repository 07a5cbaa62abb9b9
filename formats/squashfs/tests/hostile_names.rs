//! Path traversal through squashfs directory listings (issue 8,
//! tests/hostile/README.md): a listing whose entry name is `..`, `.`,
//! contains `/` or a NUL must be refused, never turned into a tree path
//! that escapes its directory.
//!
//! The image is written with uncompressed metadata, so a distinctive
//! placeholder name can be found and overwritten in place.

use std::io::Cursor;

use v6build_fstree::{Directory, MemBlobs, Meta, Name, Node, Tree};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};

/// An image whose root holds one empty directory named `placeholder`.
fn image_with(placeholder: &[u8]) -> Vec<u8> {
    let mut t = Tree::new(Meta::root(0o755, 0));
    t.put(
        Name::new(placeholder.to_vec()).unwrap(),
        Node::Dir(Directory::new(Meta::root(0o755, 0))),
    );
    let mut opts = WriteOptions::new(Compressor::gzip(), 4096, 0);
    opts.uncompressed_metadata = true;
    let mut out = Cursor::new(Vec::new());
    write(&t, &MemBlobs::new(), &opts, None, None, &mut out).unwrap();
    out.into_inner()
}

#[test]
fn hostile_listing_names_are_refused() {
    for (what, bad) in [
        ("dot-dot", &b".."[..]),
        ("dot", b"."),
        ("slash", b"a/b"),
        ("leading slash", b"/ab"),
        ("nul", b"a\0b"),
    ] {
        let placeholder: Vec<u8> = (0..bad.len()).map(|i| 0xf0 + i as u8).collect();
        let mut img = image_with(&placeholder);
        let hits: Vec<usize> = img
            .windows(placeholder.len())
            .enumerate()
            .filter(|(_, w)| *w == placeholder.as_slice())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{what}: placeholder found {} times",
            hits.len()
        );
        img[hits[0]..hits[0] + bad.len()].copy_from_slice(bad);
        let got = SquashfsImage::open(Cursor::new(img)).and_then(|i| i.read_tree(&MemBlobs::new()));
        match got {
            Ok(t) => panic!(
                "{what}: a listing entry named {bad:?} was accepted:\n{}",
                v6build_fstree::dump(&t)
            ),
            Err(e) => assert!(
                e.to_string().contains("bad name"),
                "{what}: refused for another reason: {e}"
            ),
        }
    }
}
