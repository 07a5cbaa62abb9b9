//! Compression for v6build's image codecs, written once for all of them.
//!
//! - **Bounded decompression**: the stream decoders
//!   ([`gzip::decode_member`], [`xz::decode_stream`],
//!   [`xz::decode_lzma_alone`], [`bzip2::decode_stream`],
//!   [`zstd::decode_frame`], [`lz4::decode_legacy`]) and the block
//!   decoders (`decompress_block` of [`zlib`], [`xz`], [`zstd`] and
//!   [`lz4`]), built on [`read_bounded`]: every decoder
//!   takes an explicit output limit and fails with
//!   [`DecompressError::TooLarge`] when the output would pass it; output
//!   buffers grow with fallible reservations, so memory that cannot be had
//!   is [`DecompressError::OutOfMemory`], never an abort. The limits are
//!   the caller's: the cpio reader passes what is left of
//!   `Limits::max_unpacked`, the squashfs reader the block size.
//! - **Deterministic compression**: gzip made pigz-style from independent
//!   chunks ([`gzip`]), one xz stream of independent LZMA2 blocks written
//!   by this crate ([`xz::compress_chunked`]) or a plain xz stream trying
//!   BCJ filters as mksquashfs does ([`xz::compress_smallest`]), zlib
//!   blocks ([`zlib`]), zstd frames ([`zstd`]) and the LZ4 legacy frame
//!   ([`lz4`]). Output is a pure function of the input and the parameters:
//!   thread counts and cache states change speed only.
//! - **The codec-version table** ([`versions`]): the one place that names
//!   the version of every library whose bytes v6build emits; a test checks
//!   it against `Cargo.lock`.
//! - **Content-defined chunking** ([`chunk`]): where a chunked stream is
//!   cut, from record boundaries the format crate supplies (the cpio
//!   writer's newc entries), so a small edit moves no cut far from it.
//! - **Caches of compressed pieces** ([`cache`]): [`ChunkCache`] (chunks
//!   of a gzip or xz stream) and [`BlockCache`] (squashfs blocks), and
//!   [`MemCache`], the one in-memory implementation of both.

#![warn(missing_docs)]

pub mod bounded;
pub mod bzip2;
pub mod cache;
pub mod chunk;
pub mod gzip;
pub mod lz4;
pub mod versions;
pub mod xz;
pub mod zlib;
pub mod zstd;

pub use bounded::{TryVec, read_bounded, try_vec};
pub use cache::{
    BlockCache, BlockKey, CachedBlock, ChunkCache, ChunkKey, MemBlockCache, MemCache, MemChunkCache,
};
pub use chunk::CHUNK_POLICY_VERSION;

/// Why a stream or block could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The output would exceed the limit the caller gave.
    #[error("the output exceeds the limit")]
    TooLarge,
    /// Memory for the output could not be allocated after this many bytes.
    #[error("out of memory after {0} bytes of output")]
    OutOfMemory(u64),
    /// The stream is broken or truncated.
    #[error("{0}")]
    Corrupt(String),
    /// The format is recognised but cannot be decoded.
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> DecompressError {
    DecompressError::Corrupt(e.to_string())
}

/// An I/O error (kind `Other`) carrying `e`'s message: what a compressor
/// reports for a parameter or library failure.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Compressible test input of `len` bytes: two interleaved periodic
/// patterns (`i % modulus` xor `i / step`).
#[cfg(test)]
pub(crate) fn sample(len: u32, modulus: u32, step: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % modulus) ^ (i / step)).to_le_bytes()[0])
        .collect()
}

/// Records every `every` bytes up to `len`, for chunked compressors' tests.
#[cfg(test)]
pub(crate) fn records(len: usize, every: usize) -> Vec<chunk::Record> {
    (1..len / every)
        .map(|i| chunk::Record::named(i * every, &i.to_le_bytes()))
        .collect()
}
