//! Any bytes as a stored tree encoding: decoding may fail, never panic; and
//! whatever it accepts re-encodes to exactly the input (the decoder's
//! documented contract).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = v6build_fstree::decode(data) {
        assert_eq!(
            v6build_fstree::encode(&tree),
            data,
            "decode accepted a non-canonical encoding"
        );
    }
});
