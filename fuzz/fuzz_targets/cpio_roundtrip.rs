//! Writer -> reader round trip for newc: any generated tree (no xattrs,
//! which newc cannot carry) that the writer accepts reads back with the
//! same tree digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_cpio::{Initramfs, Limits, newc_bytes};
use v6build_fstree::MemBlobs;
use v6build_fuzz::{Profile, arbitrary_tree, assert_blobs_present, assert_same_tree};

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let blobs = MemBlobs::new();
    let profile = Profile {
        xattrs: false,
        max_file: 9000,
    };
    let Ok(tree) = arbitrary_tree(&mut u, &blobs, profile) else {
        return;
    };
    let Ok(bytes) = newc_bytes(&tree, &blobs) else {
        return;
    };
    let back = MemBlobs::new();
    let initrd = Initramfs::parse(&bytes, &back, &Limits::default())
        .unwrap_or_else(|e| panic!("newc the writer made does not read back: {e}"));
    let read = initrd.merged();
    assert_same_tree(&tree, &read, "cpio");
    assert_blobs_present(&read, &back);
});
