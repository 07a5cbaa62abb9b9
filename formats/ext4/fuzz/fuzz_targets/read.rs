//! Reader fuzz target: any bytes may give an error, never a panic or a hang.
//! Run: `cargo fuzz run read` from formats/ext4 (smoke: `-- -max_total_time=60`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_ext4::Ext4;
use v6build_fstree::MemBlobs;

fuzz_target!(|data: &[u8]| {
    if let Ok(fs) = Ext4::open(data) {
        let _ = fs.read_tree(&MemBlobs::new());
    }
});
