//! Any bytes as a unified diff: parsing may fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = v6build_engine::ops::patch::parse(data);
});
