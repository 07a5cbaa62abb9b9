//! Writer -> reader round trip for ext4: any generated tree that `create`
//! accepts reads back with the same tree digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_ext4::{CreateOptions, Ext4, create};
use v6build_fstree::MemBlobs;
use v6build_fuzz::{Profile, arbitrary_tree, assert_blobs_present, assert_same_tree};

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let blobs = MemBlobs::new();
    let profile = Profile {
        xattrs: true,
        max_file: 9000,
    };
    let Ok(tree) = arbitrary_tree(&mut u, &blobs, profile) else {
        return;
    };
    let Ok(img) = create(&tree, &blobs, &CreateOptions::with_label(b"fuzz")) else {
        return;
    };
    let back = MemBlobs::new();
    let read = Ext4::open(img.as_slice())
        .and_then(|fs| fs.read_tree(&back))
        .unwrap_or_else(|e| panic!("ext4 image create made does not read back: {e}"));
    assert_same_tree(&tree, &read, "ext4");
    assert_blobs_present(&read, &back);
});
