//! Any bytes as an ext4 image: opening and reading the tree may fail, never
//! panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_ext4::Ext4;
use v6build_fstree::MemBlobs;

fuzz_target!(|data: &[u8]| {
    if let Ok(fs) = Ext4::open(data) {
        let _ = fs.read_tree(&MemBlobs::new());
    }
});
