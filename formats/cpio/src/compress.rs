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
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkCache;

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
const XZ_BLOCK_MIN: usize = 4096;
const XZ_BLOCK_MAX: usize = 1 << 30;
/// LZ4 legacy block size: fixed by the format.
pub const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;

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
/// cache keys. Rust crates are pinned exactly (`=`) in the workspace
/// manifest; a test checks these strings against it. The C libraries
/// report their own versions at run time.
pub fn codec_versions() -> Vec<(&'static str, String)> {
    vec![
        (
            "v6build-cpio-newc-writer",
            crate::WRITER_VERSION.to_string(),
        ),
        ("flate2", "1.1.11".to_string()),
        ("zlib-rs", "0.6.8".to_string()),
        ("liblzma", "0.4.9".to_string()),
        ("liblzma-c", crate::xz::LIBLZMA_VERSION.to_string()),
        (
            "v6build-cpio-chunk-policy",
            crate::chunk::CHUNK_POLICY_VERSION.to_string(),
        ),
        ("zstd", "0.14.4".to_string()),
        ("libzstd", zstd::zstd_safe::version_string().to_string()),
        ("lz4_flex", "0.14.2".to_string()),
    ]
}

/// Why a stream could not be decompressed.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The output would exceed the limit.
    TooLarge,
    /// Memory for the output could not be allocated.
    OutOfMemory(u64),
    /// The stream is broken or truncated.
    Corrupt(String),
    /// We recognise the format but cannot decode it.
    Unsupported(String),
}

fn corrupt(e: impl fmt::Display) -> DecompressError {
    DecompressError::Corrupt(e.to_string())
}

/// Reads `r` to the end into memory, refusing more than `limit` bytes.
/// The buffer grows by doubling, with fallible reservations, and never
/// past `limit + 1` bytes: reaching the limit costs the limit in memory,
/// not twice it, and memory that cannot be had is an error, not an abort.
fn read_bounded(r: &mut dyn Read, limit: u64) -> Result<Vec<u8>, DecompressError> {
    let cap_max = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut len = 0usize;
    loop {
        if len == out.len() {
            if out.len() >= cap_max {
                return Err(DecompressError::TooLarge);
            }
            if out.capacity() == out.len() {
                let grow = out.len().max(64 << 10).min(cap_max - out.len());
                out.try_reserve_exact(grow)
                    .map_err(|_| DecompressError::OutOfMemory(len as u64))?;
            }
            // Zero only the next MiB of the reserved room, so the pages
            // touched (resident memory) follow what was read, not what
            // was reserved.
            let fill = (out.capacity() - out.len()).min(1 << 20);
            out.resize(out.len() + fill, 0);
        }
        match r.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
    out.truncate(len);
    if u64::try_from(len).unwrap_or(u64::MAX) > limit {
        return Err(DecompressError::TooLarge);
    }
    Ok(out)
}

/// Memory the multithreaded xz decoder may use for its threads' buffers;
/// past it liblzma falls back to decoding in one thread (within
/// `memlimit`), so a block header claiming a huge size costs speed, not
/// memory.
const XZ_MT_MEMLIMIT: u64 = 256 << 20;

/// An xz stream decoder. A stream of several blocks (as `xz -T` and
/// dracut make them) is decoded on the threads of the current rayon pool;
/// a stream of one block, as a single-threaded `xz` makes, is decoded in
/// one. The output is the same either way.
fn xz_decoder(memlimit: u64) -> Result<liblzma::stream::Stream, liblzma::stream::Error> {
    let threads = u32::try_from(rayon::current_num_threads()).unwrap_or(1);
    if threads <= 1 {
        return liblzma::stream::Stream::new_stream_decoder(memlimit, 0);
    }
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .memlimit_threading(XZ_MT_MEMLIMIT.min(memlimit))
        .memlimit_stop(memlimit)
        .decoder()
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
    fn consumed(input: &[u8], rest: &[u8]) -> usize {
        input.len() - rest.len()
    }
    match kind {
        CompressionKind::Gzip => {
            // bufread::GzDecoder reads exactly one member and consumes only its bytes.
            let mut d = flate2::bufread::GzDecoder::new(input);
            let out = read_bounded(&mut d, limit)?;
            Ok((out, consumed(input, d.into_inner())))
        }
        CompressionKind::Xz => {
            let stream = xz_decoder(memlimit).map_err(corrupt)?;
            let mut d = liblzma::bufread::XzDecoder::new_stream(input, stream);
            let out = read_bounded(&mut d, limit)?;
            Ok((out, consumed(input, d.into_inner())))
        }
        CompressionKind::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(memlimit).map_err(corrupt)?;
            let mut d = liblzma::bufread::XzDecoder::new_stream(input, stream);
            let out = read_bounded(&mut d, limit)?;
            Ok((out, consumed(input, d.into_inner())))
        }
        CompressionKind::Bzip2 => {
            let mut d = bzip2::bufread::BzDecoder::new(input);
            let out = read_bounded(&mut d, limit)?;
            Ok((out, consumed(input, d.into_inner())))
        }
        CompressionKind::Zstd => {
            let len = zstd::zstd_safe::find_frame_compressed_size(input)
                .map_err(|c| corrupt(zstd::zstd_safe::get_error_name(c)))?;
            let frame = input
                .get(..len)
                .ok_or_else(|| corrupt("zstd frame longer than the input"))?;
            let mut d = zstd::stream::read::Decoder::with_buffer(frame)
                .map_err(corrupt)?
                .single_frame();
            let out = read_bounded(&mut d, limit)?;
            Ok((out, len))
        }
        CompressionKind::Lz4Legacy => lz4_legacy_decompress(input, limit),
        CompressionKind::Lzo => Err(DecompressError::Unsupported(
            "lzo-compressed segments are recognised but not supported; recompress the initrd with gzip, xz or zstd".into(),
        )),
    }
}

/// The LZ4 legacy frame as `lib/decompress_unlz4.c` reads it: a magic, then
/// blocks of (le32 compressed size, data), each at most 8 MiB decompressed.
/// The frame has no end marker: it ends at the end of the input, at a zero
/// size (NUL padding, as newer kernels accept), or a repeated magic starts
/// another run of blocks.
fn lz4_legacy_decompress(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), DecompressError> {
    let le32 = |at: usize| -> Option<u32> {
        let b = input.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le32(0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(corrupt("not an LZ4 legacy frame"));
    }
    let mut pos = 4usize;
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while let Some(size) = le32(pos) {
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).map_err(corrupt)?;
        let start = pos + 4;
        let data = input
            .get(start..start.saturating_add(size))
            .ok_or_else(|| {
                corrupt(format!(
                    "LZ4 block at {pos} of {size} bytes runs past the end"
                ))
            })?;
        let n = lz4_flex::block::decompress_into(data, &mut block)
            .map_err(|e| corrupt(format!("LZ4 block at {pos}: {e}")))?;
        if u64::try_from(out.len() + n).unwrap_or(u64::MAX) > limit {
            return Err(DecompressError::TooLarge);
        }
        out.try_reserve(n)
            .map_err(|_| DecompressError::OutOfMemory(out.len() as u64))?;
        out.extend_from_slice(&block[..n]);
        pos = start + size;
    }
    Ok((out, pos))
}

/// An empty vector with room for `n` bytes, or an `OutOfMemory` error
/// instead of an abort when the memory cannot be had.
pub(crate) fn try_vec(n: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("out of memory for a {n}-byte buffer"),
        )
    })?;
    Ok(v)
}

/// A growable in-memory output whose growth is fallible: a write that
/// cannot get memory fails with `OutOfMemory` instead of aborting.
#[derive(Debug, Default)]
pub(crate) struct TryVec(pub Vec<u8>);

impl Write for TryVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.capacity() - self.0.len() < buf.len() {
            let want = buf.len().max(self.0.len()).max(4096);
            if self.0.try_reserve(want).is_err() {
                self.0.try_reserve_exact(buf.len()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("out of memory growing a {}-byte buffer", self.0.len()),
                    )
                })?;
            }
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn io_err(e: impl fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
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
    match params {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip { level, chunk_size } => {
            gzip_parallel(data, *level, *chunk_size, threads, cache)
        }
        Compression::Xz {
            preset,
            extreme,
            dict_size,
            block_size,
        } => {
            let target = usize::try_from(*block_size)
                .ok()
                .filter(|&t| (XZ_BLOCK_MIN..=XZ_BLOCK_MAX).contains(&t))
                .ok_or_else(|| {
                    io_err(format!(
                        "xz block size {block_size} is not in {XZ_BLOCK_MIN}..={XZ_BLOCK_MAX}"
                    ))
                })?;
            let p = crate::xz::XzParams {
                preset: *preset,
                extreme: *extreme,
                dict_size: *dict_size,
                target,
            };
            crate::xz::compress_xz(data, &p, threads, cache)
        }
        Compression::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(TryVec::default(), *level)?;
            // At least one worker: zstd's output is identical for any
            // worker count ≥ 1, but differs with 0 (inline mode).
            enc.multithread(u32::try_from(threads.get()).unwrap_or(u32::MAX))?;
            enc.include_checksum(true)?;
            enc.write_all(data)?;
            Ok(enc.finish()?.0)
        }
        Compression::Lz4Legacy => {
            let pool = pool(threads)?;
            let blocks: Vec<Vec<u8>> = pool.install(|| {
                use rayon::prelude::*;
                data.par_chunks(LZ4_LEGACY_BLOCK)
                    .map(lz4_flex::block::compress)
                    .collect()
            });
            let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
            for b in blocks {
                let len = u32::try_from(b.len()).map_err(io_err)?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&b);
            }
            Ok(out)
        }
    }
}

pub(crate) fn pool(threads: NonZeroUsize) -> io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.get())
        .build()
        .map_err(io_err)
}

/// Deflate's window: each chunk is primed with this much preceding input.
const DEFLATE_WINDOW: usize = 32 * 1024;

/// pigz-style gzip: content-defined chunks (the policy of the `chunk`
/// module, target `chunk_size`) deflated independently, each primed with
/// the 32 KiB of input before it as dictionary, and joined into one
/// member. Non-final chunks end with a sync flush (an empty stored block),
/// so each ends on a byte boundary and they concatenate into one valid
/// deflate stream. A chunk's deflate bytes depend on its own bytes, the
/// dictionary, the level and whether it is the last, all of which are in
/// its cache key; an edit therefore misses the cache for the chunk that
/// holds it and the next one (whose dictionary it changed).
fn gzip_parallel(
    data: &[u8],
    level: u32,
    chunk_size: u32,
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
) -> io::Result<Vec<u8>> {
    if level > 9 {
        return Err(io_err(format!("gzip level {level} is not in 0..=9")));
    }
    let target = usize::try_from(chunk_size)
        .map_err(io_err)?
        .max(DEFLATE_WINDOW);
    let ranges = crate::chunk::chunks(data, target);
    let n_chunks = ranges.len();
    let pool = pool(threads)?;
    let parts: Vec<io::Result<Vec<u8>>> =
        crate::chunk::map_longest_first(&pool, &ranges, |i, r| {
            let dict = &data[r.start.saturating_sub(DEFLATE_WINDOW)..r.start];
            let chunk = &data[r.clone()];
            let last = i + 1 == n_chunks;
            let Some(cache) = cache else {
                return deflate_chunk(chunk, dict, level, last);
            };
            let key = crate::chunk::ChunkKey::new(
                &format!("gzip-deflate level={level} last={last} lib={GZIP_LIB}"),
                dict,
                chunk,
            );
            if let Some(hit) = cache.get(&key).filter(|c| !c.is_empty()) {
                return Ok(hit);
            }
            let c = deflate_chunk(chunk, dict, level, last)?;
            cache.put(&key, &c);
            Ok(c)
        })?;
    if parts.is_empty() {
        // No input: one empty final block, as gzip writes for an empty file.
        return gzip_member(data, level, vec![Ok(deflate_chunk(&[], &[], level, true)?)]);
    }
    gzip_member(data, level, parts)
}

/// The deflate library behind flate2, for chunk cache keys.
const GZIP_LIB: &str = "flate2 1.1.11 zlib-rs 0.6.8";

/// Wraps joined deflate parts of `data` in a gzip header and trailer.
fn gzip_member(data: &[u8], level: u32, parts: Vec<io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    let total: usize = parts.iter().map(|p| p.as_ref().map_or(0, Vec::len)).sum();
    let mut out = try_vec(total + 32)?;
    // Header: no name, no mtime (0), XFL as gzip sets it, OS = Unix.
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]);
    for p in parts {
        out.extend_from_slice(&p?);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32 by definition.
    let isize =
        u32::try_from(u64::try_from(data.len()).map_err(io_err)? & 0xffff_ffff).map_err(io_err)?;
    out.extend_from_slice(&isize.to_le_bytes());
    Ok(out)
}

fn deflate_chunk(input: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io_err)?;
    }
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(c.total_in()).map_err(io_err)?;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io_err)?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        // A sync flush is complete once all input is in and the compressor
        // stopped short of filling the output buffer (zlib's contract).
        let all_in = usize::try_from(c.total_in()).map_err(io_err)? == input.len();
        if !last && all_in && out.len() < out.capacity() {
            break;
        }
    }
    Ok(out)
}
