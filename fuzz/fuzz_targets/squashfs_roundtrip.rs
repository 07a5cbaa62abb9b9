//! Writer -> reader round trip for squashfs: any generated tree the writer
//! accepts reads back with the same tree digest, for each writable
//! compressor, with and without compressed metadata.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use v6build_fstree::MemBlobs;
use v6build_fuzz::{Profile, arbitrary_tree, assert_blobs_present, assert_same_tree};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(pick) = u.int_in_range(0..=2u8) else {
        return;
    };
    let compressor = match pick {
        0 => Compressor::gzip(),
        1 => Compressor::zstd(),
        _ => Compressor::Xz {
            dict_size: None,
            filters: 0,
        },
    };
    let Ok(uncompressed_metadata) = u.arbitrary::<bool>() else {
        return;
    };
    let blobs = MemBlobs::new();
    let profile = Profile {
        xattrs: true,
        max_file: 9000,
    };
    let Ok(tree) = arbitrary_tree(&mut u, &blobs, profile) else {
        return;
    };
    let mut opts = WriteOptions::new(compressor, 4096, 0);
    opts.threads = 1;
    opts.uncompressed_metadata = uncompressed_metadata;
    let mut out = Cursor::new(Vec::new());
    if write(&tree, &blobs, &opts, None, None, &mut out).is_err() {
        return;
    }
    let back = MemBlobs::new();
    let read = SquashfsImage::open(Cursor::new(out.into_inner()))
        .and_then(|img| img.read_tree(&back))
        .unwrap_or_else(|e| panic!("squashfs the writer made does not read back: {e}"));
    assert_same_tree(&tree, &read, "squashfs");
    assert_blobs_present(&read, &back);
});
