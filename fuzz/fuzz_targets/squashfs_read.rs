//! Any bytes as a squashfs image: opening and reading the tree may fail,
//! never panic or hang.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use v6build_fstree::MemBlobs;
use v6build_squashfs::SquashfsImage;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = SquashfsImage::open(Cursor::new(data.to_vec())) else {
        return;
    };
    let _ = img.read_tree(&MemBlobs::new());
});
