//! Any bytes to every bounded decoder of `v6build-compress` (the stream
//! decoders the initrd reader uses, the block decoders the squashfs reader
//! uses) under a small output limit: each returns the output, an error or
//! `TooLarge`, never panics, hangs or allocates past its limit, and what it
//! returns is never longer than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v6build_compress::{bzip2, gzip, lz4, xz, zlib, zstd};

/// Output limit: small, so a bomb is caught fast.
const LIMIT: usize = 1 << 20;
/// Decoder memory limit for xz and lzma.
const MEMLIMIT: u64 = 32 << 20;

fuzz_target!(|data: &[u8]| {
    let limit = LIMIT as u64;
    for out in [
        gzip::decode_member(data, limit),
        xz::decode_stream(data, limit, MEMLIMIT),
        xz::decode_lzma_alone(data, limit, MEMLIMIT),
        bzip2::decode_stream(data, limit),
        zstd::decode_frame(data, limit),
        lz4::decode_legacy(data, limit),
    ] {
        if let Ok((bytes, used)) = out {
            assert!(bytes.len() <= LIMIT && used <= data.len());
        }
    }
    for out in [
        zlib::decompress_block(data, 4096),
        xz::decompress_block(data, 4096, MEMLIMIT),
        zstd::decompress_block(data, 4096),
        lz4::decompress_block(data, 4096),
    ] {
        if let Ok(bytes) = out {
            assert!(bytes.len() <= 4096);
        }
    }
});
