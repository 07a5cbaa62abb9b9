//! Any bytes as an initrd: segment scan, decompression, newc parsing and the
//! merged view may fail, never panic, hang or allocate without bound
//! (the limits are small so a bomb is caught quickly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_cpio::{Initramfs, Limits};
use v6build_fstree::MemBlobs;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_unpacked: 16 << 20,
        max_entries: 10_000,
        max_decoder_memory: 64 << 20,
        ..Limits::default()
    };
    if let Ok(initrd) = Initramfs::parse(data, &MemBlobs::new(), &limits) {
        let _ = initrd.merged();
        let _ = initrd.warnings().count();
    }
});
