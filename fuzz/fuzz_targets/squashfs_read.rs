//! Any bytes as a squashfs image: opening and reading the tree, eagerly
//! and lazily (every recorded file streamed back through the block map),
//! may fail, never panic or hang.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use v6build_fstree::MemBlobs;
use v6build_squashfs::SquashfsImage;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = SquashfsImage::open(Cursor::new(data.to_vec())) else {
        return;
    };
    if let Ok((tree, map)) = img.read_tree_lazy(b"fuzz") {
        for c in tree.contents() {
            if let Some(Ok(mut r)) = map.open_file(&c.digest) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
        }
    }
    let _ = img.read_tree(&MemBlobs::new());
});
