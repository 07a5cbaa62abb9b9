//! Writer -> reader round trip for ext4: any generated tree that `create`
//! accepts reads back with the same tree digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_ext4::{CreateOptions, Ext4, create};
use v6build_fstree::{MemBlobs, Name};
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
    let mut read = Ext4::open(img.as_slice())
        .and_then(|fs| fs.read_tree(&back))
        .unwrap_or_else(|e| panic!("ext4 image create made does not read back: {e}"));
    // `create` adds /lost+found (as mkfs.ext4 does, for e2fsck) unless the
    // tree has one; that is documented, not a round-trip loss.
    if let Ok(name) = Name::new("lost+found")
        && tree.entry(&name).is_none()
    {
        read.take(&name);
    }
    assert_same_tree(&tree, &read, "ext4");
    assert_blobs_present(&read, &back);
});
