//! The stored tree encoding is untrusted: decoding may fail, never panic,
//! and whatever it accepts re-encodes to exactly the input (the decoder's
//! documented contract).
//!
//! Raw bytes rarely get past the magic without a seed corpus, so the first
//! byte picks a mode: raw bytes, or a generated tree whose encoding is
//! decoded whole (must round-trip), cut short (must fail) and with one byte
//! changed (must fail or still be canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_fstree::{MemBlobs, decode, encode};
use v6build_fuzz::{Profile, arbitrary_tree};

fn check(bytes: &[u8]) -> bool {
    match decode(bytes) {
        Ok(tree) => {
            assert_eq!(
                encode(&tree),
                bytes,
                "decode accepted a non-canonical encoding"
            );
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 128 {
        check(rest);
        return;
    }
    let mut u = arbitrary::Unstructured::new(rest);
    let profile = Profile {
        xattrs: true,
        max_file: 64,
    };
    let Ok(tree) = arbitrary_tree(&mut u, &MemBlobs::new(), profile) else {
        return;
    };
    let bytes = encode(&tree);
    assert!(check(&bytes), "the encoding of a tree does not decode");
    assert_eq!(decode(&bytes).unwrap().digest(), tree.digest());
    let Ok(cut) = u.int_in_range(0..=bytes.len() - 1) else {
        return;
    };
    assert!(
        !check(&bytes[..cut]),
        "a truncated encoding (at {cut}) decoded"
    );
    let Ok(at) = u.int_in_range(0..=bytes.len() - 1) else {
        return;
    };
    let Ok(x) = u.int_in_range(1..=255u8) else {
        return;
    };
    let mut bad = bytes.clone();
    bad[at] ^= x;
    check(&bad);
});
