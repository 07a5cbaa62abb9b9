//! Compression formats of initramfs segments: recognising them the way the
//! kernel does, decompressing one stream with a size guard, and compressing
//! with explicit, serialisable parameters whose output does not depend on
//! the thread count.
//!
//! The kernel picks a decompressor by the first two bytes of a segment
//! (`lib/decompress.c`, `compressed_formats[]`); [`CompressionKind::detect`]
//! uses the same table. What we write is a pure function of the input bytes
//! and the [`Compression`] value: the libraries are pinned exactly in the
//! workspace manifest, and their versions are reported by
//! [`codec_versions`] so the engine puts them in its cache keys.

use std::fmt;
use std::io;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};
pub(crate) use v6build_compress::DecompressError;
use v6build_compress::cache::ChunkCache;

/// The compression of one initramfs segment, as the kernel recognises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompressionKind {
    /// gzip (deflate), magic `1f 8b` (or the old `1f 9e`).
    Gzip,
    /// bzip2, magic `BZ`.
    Bzip2,
    /// Legacy `.lzma` (LZMA-alone), magic `5d 00`.
    Lzma,
    /// xz, magic `fd 37`.
    Xz,
    /// lzop, magic `89 4c`. Recognised, never decompressed (no pure-Rust decoder).
    Lzo,
    /// LZ4 legacy frame (`lz4 -l`), magic `02 21`.
    Lz4Legacy,
    /// zstd, magic `28 b5`.
    Zstd,
}

impl CompressionKind {
    /// The kernel's table: two magic bytes per format, in its order.
    const MAGIC: [([u8; 2], CompressionKind); 8] = [
        ([0x1f, 0x8b], CompressionKind::Gzip),
        ([0x1f, 0x9e], CompressionKind::Gzip),
        ([0x42, 0x5a], CompressionKind::Bzip2),
        ([0x5d, 0x00], CompressionKind::Lzma),
        ([0xfd, 0x37], CompressionKind::Xz),
        ([0x89, 0x4c], CompressionKind::Lzo),
        ([0x02, 0x21], CompressionKind::Lz4Legacy),
        ([0x28, 0xb5], CompressionKind::Zstd),
    ];

    /// Recognises a compressed segment by its first two bytes, as the kernel does.
    pub fn detect(bytes: &[u8]) -> Option<CompressionKind> {
        let head = bytes.get(..2)?;
        Self::MAGIC
            .iter()
            .find(|(m, _)| m.as_slice() == head)
            .map(|&(_, k)| k)
    }

    /// The name the kernel and the command-line tools use.
    pub fn name(self) -> &'static str {
        match self {
            CompressionKind::Gzip => "gzip",
            CompressionKind::Bzip2 => "bzip2",
            CompressionKind::Lzma => "lzma",
            CompressionKind::Xz => "xz",
            CompressionKind::Lzo => "lzo",
            CompressionKind::Lz4Legacy => "lz4",
            CompressionKind::Zstd => "zstd",
        }
    }
}

impl fmt::Display for CompressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to compress a segment we write. Every parameter that affects the
/// output bytes is here, so a `Compression` value can go into a cache key.
/// Thread count is deliberately not here: it never changes the output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Compression {
    /// No compression: a plain newc archive.
    None,
    /// One gzip member made pigz-style: the input is cut into
    /// content-defined chunks of `chunk_size` bytes on average (ending on
    /// newc entry boundaries, see the `chunk` module), each deflated
    /// independently (primed with the previous 32 KiB as dictionary, ended
    /// by a sync flush), and the pieces are joined. Chunks can come from a
    /// [`ChunkCache`].
    Gzip {
        /// zlib level, 0 to 9.
        level: u32,
        /// Target bytes of input per independently compressed chunk (at least 32 KiB).
        chunk_size: u32,
    },
    /// One xz stream with CRC32 checks (the kernel's XZ decoder does not
    /// support SHA-256, and dracut uses `--check=crc32`), LZMA2 only, made
    /// of independent blocks: content-defined chunks of the archive that
    /// end on newc entry boundaries, `block_size` bytes long on average
    /// (between `block_size / 2` and `2 * block_size`, see the `chunk`
    /// module), so a one-file edit changes only the blocks around it and
    /// the others can come from a [`ChunkCache`].
    Xz {
        /// Preset 0 to 9.
        preset: u32,
        /// Whether the preset is "extreme" (`-e`).
        extreme: bool,
        /// LZMA2 dictionary size in bytes (the kernel needs it small; dracut uses 1 MiB).
        dict_size: u32,
        /// Target uncompressed bytes per xz block (4 KiB to 1 GiB).
        block_size: u64,
    },
    /// One zstd frame with a content checksum, compressed by zstd's
    /// multithreaded engine (whose output is the same for any worker count ≥ 1).
    Zstd {
        /// Level, 1 to 19 (the kernel cannot take `--ultra` windows).
        level: i32,
    },
    /// The LZ4 legacy frame the kernel reads (`lz4 -l`): 8 MiB blocks,
    /// each compressed independently by `lz4_flex`.
    Lz4Legacy,
}

/// The default gzip chunk: pigz's 128 KiB.
pub const GZIP_CHUNK: u32 = 128 * 1024;
/// dracut's xz dictionary: 1 MiB.
pub const XZ_DICT: u32 = 1 << 20;
/// xz target block size: three dictionaries, xz's own default for `-T`.
pub const XZ_BLOCK: u64 = 3 << 20;
/// LZ4 legacy block size: fixed by the format.
pub const LZ4_LEGACY_BLOCK: usize = v6build_compress::lz4::LEGACY_BLOCK;

impl Compression {
    /// The canonical parameters for a kind: what a rewrite uses when the
    /// recipe does not say. `None` for kinds we can read but not write.
    pub fn canonical(kind: CompressionKind) -> Option<Compression> {
        match kind {
            CompressionKind::Gzip => Some(Compression::Gzip {
                level: 9,
                chunk_size: GZIP_CHUNK,
            }),
            CompressionKind::Xz => Some(Compression::Xz {
                preset: 6,
                extreme: false,
                dict_size: XZ_DICT,
                block_size: XZ_BLOCK,
            }),
            CompressionKind::Zstd => Some(Compression::Zstd { level: 15 }),
            CompressionKind::Lz4Legacy => Some(Compression::Lz4Legacy),
            CompressionKind::Bzip2 | CompressionKind::Lzma | CompressionKind::Lzo => None,
        }
    }

    /// The kind this produces, `None` for no compression.
    pub fn kind(&self) -> Option<CompressionKind> {
        match self {
            Compression::None => None,
            Compression::Gzip { .. } => Some(CompressionKind::Gzip),
            Compression::Xz { .. } => Some(CompressionKind::Xz),
            Compression::Zstd { .. } => Some(CompressionKind::Zstd),
            Compression::Lz4Legacy => Some(CompressionKind::Lz4Legacy),
        }
    }
}

/// Versions of the compression libraries whose output bytes we emit, for
/// cache keys, from the one table of `v6build_compress::versions` (which
/// a test checks against `Cargo.lock` and the workspace pins). The C
/// libraries report their own versions.
pub fn codec_versions() -> Vec<(&'static str, String)> {
    use v6build_compress::versions as v;
    vec![
        (
            "v6build-cpio-newc-writer",
            crate::WRITER_VERSION.to_string(),
        ),
        ("flate2", v::FLATE2.to_string()),
        ("zlib-rs", v::ZLIB_RS.to_string()),
        ("liblzma", v::LIBLZMA.to_string()),
        ("liblzma-c", v::LIBLZMA_C.to_string()),
        (
            "v6build-cpio-chunk-policy",
            v6build_compress::CHUNK_POLICY_VERSION.to_string(),
        ),
        ("zstd", v::ZSTD.to_string()),
        ("libzstd", v::libzstd()),
        ("lz4_flex", v::LZ4_FLEX.to_string()),
    ]
}

/// Decompresses the one stream of `kind` at the start of `input`, at most
/// `limit` bytes of output. Returns the output and how many input bytes the
/// stream occupied: the scanner continues after them, as the kernel does.
pub(crate) fn decompress_stream(
    kind: CompressionKind,
    input: &[u8],
    limit: u64,
    memlimit: u64,
) -> Result<(Vec<u8>, usize), DecompressError> {
    use v6build_compress::{bzip2, gzip, lz4, xz, zstd};
    match kind {
        CompressionKind::Gzip => gzip::decode_member(input, limit),
        CompressionKind::Xz => xz::decode_stream(input, limit, memlimit),
        CompressionKind::Lzma => xz::decode_lzma_alone(input, limit, memlimit),
        CompressionKind::Bzip2 => bzip2::decode_stream(input, limit),
        CompressionKind::Zstd => zstd::decode_frame(input, limit),
        CompressionKind::Lz4Legacy => lz4::decode_legacy(input, limit),
        CompressionKind::Lzo => Err(DecompressError::Unsupported(
            "lzo-compressed segments are recognised but not supported; recompress the initrd with gzip, xz or zstd".into(),
        )),
    }
}

/// Compresses `data`. The output is a pure function of `data` and
/// `params`: `threads` changes only the speed. Same as [`compress_with`]
/// without a cache.
pub fn compress(params: &Compression, data: &[u8], threads: NonZeroUsize) -> io::Result<Vec<u8>> {
    compress_with(params, data, threads, None)
}

/// Compresses `data`, taking compressed chunks from `cache` where it has
/// them and storing the ones it computes (xz and gzip; zstd and lz4
/// ignore the cache). The output is a pure function of `data` and
/// `params`: neither `threads` nor the state of the cache changes a byte.
pub fn compress_with(
    params: &Compression,
    data: &[u8],
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
) -> io::Result<Vec<u8>> {
    compress_reporting(
        params,
        data,
        threads,
        cache,
        &v6build_fstree::Progress::default(),
    )
}

/// [`compress_with`], advancing `progress` by the input bytes compressed:
/// chunk by chunk for gzip and xz, at the end for zstd and lz4.
pub fn compress_reporting(
    params: &Compression,
    data: &[u8],
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
    progress: &v6build_fstree::Progress,
) -> io::Result<Vec<u8>> {
    use v6build_compress::{gzip, lz4, xz, zstd};
    let done = |n: u64| progress.add(n);
    let whole = |r: io::Result<Vec<u8>>| {
        if r.is_ok() {
            progress.add(data.len() as u64);
        }
        r
    };
    match params {
        Compression::None => whole(Ok(data.to_vec())),
        Compression::Gzip { level, chunk_size } => gzip::compress_chunked_reporting(
            data,
            &crate::chunk::newc_records(data),
            *level,
            *chunk_size,
            threads,
            cache,
            &done,
        ),
        Compression::Xz {
            preset,
            extreme,
            dict_size,
            block_size,
        } => {
            let p = xz::Chunked {
                preset: *preset,
                extreme: *extreme,
                dict_size: *dict_size,
                block_size: *block_size,
            };
            let records = crate::chunk::newc_records(data);
            xz::compress_chunked_reporting(data, &records, &p, threads, cache, &done)
        }
        Compression::Zstd { level } => whole(zstd::compress_frame(data, *level, threads)),
        Compression::Lz4Legacy => whole(lz4::compress_legacy(data, threads)),
    }
}
