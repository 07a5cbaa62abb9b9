//! xz: the chunked stream writer (one stream of independent LZMA2 blocks
//! whose container this module writes), the plain stream writer that
//! tries BCJ filters as mksquashfs does, and the bounded decoders.
//!
//! [`compress_chunked`] has liblzma compress each chunk as raw LZMA2 (no
//! container) and writes the container itself, following the `.xz` file
//! format specification (version 1.2.1):
//!
//! ```text
//! stream  := header block* index footer
//! header  := FD 37 7A 58 5A 00 | flags (00 01 = CRC32) | CRC32(flags)
//! block   := block-header | LZMA2 data | 0-3 NULs to 4 | CRC32(uncompressed)
//! block-header := size/4-1 | C0 (1 filter, both sizes) | vli(compressed)
//!                 | vli(uncompressed) | vli(0x21) vli(1) dict-prop | NULs to 4 | CRC32
//! index   := 00 | vli(count) (vli(unpadded size) vli(uncompressed size))*
//!            | NULs to 4 | CRC32
//! footer  := CRC32(backward size, flags) | index size/4-1 (le32) | flags | "YZ"
//! ```
//!
//! That is what the kernel's embedded XZ decoder accepts (CRC32 check,
//! LZMA2 only, sizes in the block header are allowed), and what
//! `xz --check=crc32 -T` writes. Chunks are compressed in parallel but
//! written in order, and each chunk's bytes depend only on itself and the
//! parameters, so neither the thread count nor the cache state can change
//! the output.

use std::io;
use std::num::NonZeroUsize;

use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

use crate::bounded::{read_bounded, try_vec};
use crate::cache::{ChunkCache, ChunkKey};
use crate::chunk::{Record, cut, map_longest_first, pool};
use crate::gzip::crc32;
use crate::versions::LIBLZMA_C;
use crate::{DecompressError, corrupt, io_err};

const STREAM_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const FOOTER_MAGIC: [u8; 2] = *b"YZ";
/// Stream flags: no reserved bits, check type 1 (CRC32).
const STREAM_FLAGS: [u8; 2] = [0, 1];
const LZMA2_FILTER_ID: u64 = 0x21;
/// Smallest dictionary LZMA2 encodes (property 0).
const DICT_MIN: u32 = 4096;
/// Smallest and largest target block of [`compress_chunked`].
pub const BLOCK_MIN: usize = 4096;
/// See [`BLOCK_MIN`].
pub const BLOCK_MAX: usize = 1 << 30;

/// Parameters of [`compress_chunked`]: everything that fixes its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    /// Preset 0 to 9.
    pub preset: u32,
    /// Whether the preset is "extreme" (`-e`).
    pub extreme: bool,
    /// LZMA2 dictionary size in bytes.
    pub dict_size: u32,
    /// Target uncompressed bytes per block ([`BLOCK_MIN`] to [`BLOCK_MAX`]).
    pub block_size: u64,
}

/// The xz variable-length integer: 7 bits a byte, low bits first.
fn vli(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // OK to unwrap: masked to 7 bits.
        out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
        v >>= 7;
    }
    // OK to unwrap: v < 0x80 here.
    out.push(u8::try_from(v).unwrap());
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The LZMA2 dictionary-size property byte: the smallest encodable size
/// `(2 | (p & 1)) << (p / 2 + 11)` that is at least `dict`, as liblzma
/// computes it (40 means 4 GiB - 1).
pub fn dict_prop(dict: u32) -> u8 {
    let d = u64::from(dict.max(DICT_MIN));
    for p in 0u8..40 {
        if (2 | u64::from(p & 1)) << (p / 2 + 11) >= d {
            return p;
        }
    }
    40
}

/// Runs `s` over all of `input` to the end of its stream, growing the
/// output by at least `step` bytes at a time.
fn finish(mut s: Stream, input: &[u8], mut out: Vec<u8>, step: usize) -> io::Result<Vec<u8>> {
    loop {
        if out.capacity() - out.len() < step {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(s.total_in()).map_err(io_err)?;
        let rest = input.get(consumed..).unwrap_or(&[]);
        if s.process_vec(rest, &mut out, Action::Finish)
            .map_err(io_err)?
            == Status::StreamEnd
        {
            return Ok(out);
        }
    }
}

impl Chunked {
    fn preset_bits(&self) -> u32 {
        if self.extreme {
            self.preset | liblzma::stream::PRESET_EXTREME
        } else {
            self.preset
        }
    }

    /// What goes into every chunk key besides the bytes.
    fn key_params(&self) -> String {
        format!(
            "xz-lzma2-raw preset={} extreme={} dict={} lib={LIBLZMA_C}",
            self.preset, self.extreme, self.dict_size
        )
    }

    fn lzma2(&self, chunk: &[u8]) -> io::Result<Vec<u8>> {
        let mut opts = LzmaOptions::new_preset(self.preset_bits()).map_err(io_err)?;
        opts.dict_size(self.dict_size);
        let mut filters = Filters::new();
        filters.lzma2(&opts);
        let s = Stream::new_raw_encoder(&filters).map_err(io_err)?;
        finish(s, chunk, Vec::with_capacity(chunk.len() / 3 + 4096), 4096)
    }
}

/// Whether a cached value is a complete LZMA2 stream that unpacks to
/// `expected` bytes, judged from its chunk headers alone (no decoding):
/// each control byte is 0x00 (end), 0x01/0x02 (stored chunk, 16-bit
/// size) or 0x80..=0xFF (LZMA chunk: 21-bit unpacked size, 16-bit packed
/// size, and a properties byte when the control asks for a state reset
/// with new properties). A value that fails is treated as a miss, so a
/// damaged cache cannot make the stream's sizes or index lie.
fn plausible(lzma2: &[u8], expected: usize) -> bool {
    let byte = |i: usize| lzma2.get(i).copied().map(usize::from);
    let mut pos = 0usize;
    let mut unpacked = 0usize;
    loop {
        let Some(control) = byte(pos) else {
            return false;
        };
        let (unp, packed, header) = match control {
            0 => return pos + 1 == lzma2.len() && unpacked == expected,
            1 | 2 => {
                let (Some(hi), Some(lo)) = (byte(pos + 1), byte(pos + 2)) else {
                    return false;
                };
                let n = (hi << 8 | lo) + 1;
                (n, n, 3)
            }
            0x80..=0xff => {
                let f = |i| byte(pos + i);
                let (Some(u1), Some(u2), Some(p1), Some(p2)) = (f(1), f(2), f(3), f(4)) else {
                    return false;
                };
                let unp = ((control & 0x1f) << 16 | u1 << 8 | u2) + 1;
                let packed = (p1 << 8 | p2) + 1;
                (unp, packed, if control >= 0xc0 { 6 } else { 5 })
            }
            _ => return false,
        };
        unpacked += unp;
        pos += header + packed;
    }
}

/// Compresses `data` as one xz stream of content-defined chunks (cut by
/// [`crate::chunk::cut`] at `records`, target `params.block_size`), each
/// an independent LZMA2 block that may come from `cache`.
pub fn compress_chunked(
    data: &[u8],
    records: &[Record],
    params: &Chunked,
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
) -> io::Result<Vec<u8>> {
    compress_chunked_reporting(data, records, params, threads, cache, &|_| {})
}

/// [`compress_chunked`], calling `done` with each chunk's length (input
/// bytes) once that chunk is compressed, from the compressing thread.
pub fn compress_chunked_reporting(
    data: &[u8],
    records: &[Record],
    params: &Chunked,
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
    done: &(dyn Fn(u64) + Sync),
) -> io::Result<Vec<u8>> {
    let block_size = params.block_size;
    let target = usize::try_from(block_size)
        .ok()
        .filter(|&t| (BLOCK_MIN..=BLOCK_MAX).contains(&t))
        .ok_or_else(|| {
            io_err(format!(
                "xz block size {block_size} is not in {BLOCK_MIN}..={BLOCK_MAX}"
            ))
        })?;
    if params.preset > 9 {
        return Err(io_err(format!(
            "xz preset {} is not in 0..=9",
            params.preset
        )));
    }
    let ranges = cut(data.len(), records, target);
    let key_params = params.key_params();
    let pool = pool(threads)?;
    let one = |r: &std::ops::Range<usize>| {
        let chunk = &data[r.clone()];
        let Some(cache) = cache else {
            return params.lzma2(chunk);
        };
        let key = ChunkKey::new(&key_params, &[], chunk);
        if let Some(hit) = cache.get(&key).filter(|c| plausible(c, chunk.len())) {
            return Ok(hit);
        }
        let c = params.lzma2(chunk)?;
        cache.put(&key, &c);
        Ok(c)
    };
    let compressed: Vec<io::Result<Vec<u8>>> = map_longest_first(&pool, &ranges, |_, r| {
        let out = one(r);
        done(r.len() as u64);
        out
    })?;

    let mut out = try_vec(data.len() / 3 + 1024)?;
    out.extend_from_slice(&STREAM_MAGIC);
    out.extend_from_slice(&STREAM_FLAGS);
    out.extend_from_slice(&crc32(&STREAM_FLAGS));
    let prop = dict_prop(params.dict_size);
    let mut records = Vec::with_capacity(ranges.len());
    for (r, c) in ranges.iter().zip(compressed) {
        let c = c?;
        let chunk = &data[r.clone()];
        let mut hdr = vec![0u8, 0xc0];
        vli(&mut hdr, len64(c.len()));
        vli(&mut hdr, len64(chunk.len()));
        vli(&mut hdr, LZMA2_FILTER_ID);
        vli(&mut hdr, 1);
        hdr.push(prop);
        hdr.resize((hdr.len() + 4).div_ceil(4) * 4 - 4, 0);
        // At most 2 + 9 + 9 + 3 bytes, padded: the size byte fits.
        hdr[0] = u8::try_from((hdr.len() + 4) / 4 - 1).map_err(io_err)?;
        let hcrc = crc32(&hdr);
        hdr.extend_from_slice(&hcrc);
        let unpadded = hdr.len() + c.len() + 4;
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&c);
        out.resize(out.len() + (4 - c.len() % 4) % 4, 0);
        out.extend_from_slice(&crc32(chunk));
        records.push((len64(unpadded), len64(chunk.len())));
    }
    let mut index = vec![0u8];
    vli(&mut index, len64(records.len()));
    for (unpadded, size) in records {
        vli(&mut index, unpadded);
        vli(&mut index, size);
    }
    index.resize(index.len().div_ceil(4) * 4, 0);
    let icrc = crc32(&index);
    index.extend_from_slice(&icrc);
    out.extend_from_slice(&index);
    let backward =
        u32::try_from(index.len() / 4 - 1).map_err(|_| io_err("xz index larger than 16 GiB"))?;
    let mut tail = backward.to_le_bytes().to_vec();
    tail.extend_from_slice(&STREAM_FLAGS);
    out.extend_from_slice(&crc32(&tail));
    out.extend_from_slice(&tail);
    out.extend_from_slice(&FOOTER_MAGIC);
    Ok(out)
}

/// A branch/call/jump filter xz can put before LZMA2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bcj {
    /// x86.
    X86,
    /// PowerPC.
    PowerPc,
    /// IA-64.
    Ia64,
    /// ARM.
    Arm,
    /// ARM Thumb.
    ArmThumb,
    /// SPARC.
    Sparc,
}

/// One xz stream (CRC32 check) at preset 6 with dictionary `dict`, as
/// mksquashfs makes it: plain LZMA2 first, then each of `filters` in
/// order before LZMA2; the smallest output wins, the earliest on a tie.
pub fn compress_smallest(data: &[u8], dict: u32, filters: &[Bcj]) -> io::Result<Vec<u8>> {
    let mut opts = LzmaOptions::new_preset(6).map_err(io_err)?;
    opts.dict_size(dict);
    let mut best: Option<Vec<u8>> = None;
    for bcj in std::iter::once(None).chain(filters.iter().map(Some)) {
        let mut f = Filters::new();
        match bcj {
            Some(Bcj::X86) => f.x86(),
            Some(Bcj::PowerPc) => f.powerpc(),
            Some(Bcj::Ia64) => f.ia64(),
            Some(Bcj::Arm) => f.arm(),
            Some(Bcj::ArmThumb) => f.arm_thumb(),
            Some(Bcj::Sparc) => f.sparc(),
            None => &mut f,
        };
        f.lzma2(&opts);
        let s = Stream::new_stream_encoder(&f, Check::Crc32).map_err(io_err)?;
        let out = finish(
            s,
            data,
            Vec::with_capacity(data.len() + data.len() / 2 + 256),
            1,
        )?;
        if best.as_ref().is_none_or(|b| out.len() < b.len()) {
            best = Some(out);
        }
    }
    // OK to unwrap: the loop always runs the plain LZMA2 chain.
    Ok(best.unwrap())
}

/// Decompresses one xz stream holding a block of at most `max` bytes,
/// with the decoder's memory bounded by `memlimit`.
pub fn decompress_block(
    data: &[u8],
    max: usize,
    memlimit: u64,
) -> Result<Vec<u8>, DecompressError> {
    let mut s = Stream::new_stream_decoder(memlimit, 0).map_err(corrupt)?;
    let mut out = try_vec(max.saturating_add(1)).map_err(|_| DecompressError::OutOfMemory(0))?;
    loop {
        let consumed = usize::try_from(s.total_in()).unwrap_or(usize::MAX);
        let rest = data.get(consumed..).unwrap_or(&[]);
        let before = out.len();
        match s.process_vec(rest, &mut out, Action::Finish) {
            Ok(_) if out.len() > max => return Err(DecompressError::TooLarge),
            Ok(Status::StreamEnd) => return Ok(out),
            Ok(_) => {
                let progressed = out.len() != before
                    || usize::try_from(s.total_in()).unwrap_or(usize::MAX) != consumed;
                if !progressed {
                    return Err(corrupt("xz block is truncated"));
                }
            }
            Err(e) => return Err(corrupt(format!("xz block does not decompress: {e}"))),
        }
    }
}

/// Memory the multithreaded xz decoder may use for its threads' buffers;
/// past it liblzma falls back to decoding in one thread (within
/// `memlimit`), so a block header claiming a huge size costs speed, not
/// memory.
const MT_MEMLIMIT: u64 = 256 << 20;

/// An xz stream decoder. A stream of several blocks (as `xz -T` and
/// dracut make them) is decoded on the threads of the current rayon pool;
/// a stream of one block, as a single-threaded `xz` makes, is decoded in
/// one. The output is the same either way.
fn stream_decoder(memlimit: u64) -> Result<Stream, liblzma::stream::Error> {
    let threads = u32::try_from(rayon::current_num_threads()).unwrap_or(1);
    if threads <= 1 {
        return Stream::new_stream_decoder(memlimit, 0);
    }
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .memlimit_threading(MT_MEMLIMIT.min(memlimit))
        .memlimit_stop(memlimit)
        .decoder()
}

fn decode_with(
    stream: Stream,
    input: &[u8],
    limit: u64,
) -> Result<(Vec<u8>, usize), DecompressError> {
    let mut d = liblzma::bufread::XzDecoder::new_stream(input, stream);
    let out = read_bounded(&mut d, limit)?;
    Ok((out, input.len() - d.into_inner().len()))
}

/// Decodes the one xz stream at the start of `input` into at most `limit`
/// bytes, the decoder taking at most `memlimit` bytes of memory; returns
/// the output and the input bytes the stream took.
pub fn decode_stream(
    input: &[u8],
    limit: u64,
    memlimit: u64,
) -> Result<(Vec<u8>, usize), DecompressError> {
    decode_with(stream_decoder(memlimit).map_err(corrupt)?, input, limit)
}

/// [`decode_stream`] for the legacy `.lzma` (LZMA-alone) format.
pub fn decode_lzma_alone(
    input: &[u8],
    limit: u64,
    memlimit: u64,
) -> Result<(Vec<u8>, usize), DecompressError> {
    decode_with(
        Stream::new_lzma_decoder(memlimit).map_err(corrupt)?,
        input,
        limit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_accepts_real_lzma2_and_refuses_damage() {
        let p = Chunked {
            preset: 1,
            extreme: false,
            dict_size: 1 << 20,
            block_size: 1 << 20,
        };
        let data: Vec<u8> = (0..300_000u64).map(|i| (i * i % 251) as u8).collect();
        let c = p.lzma2(&data).unwrap();
        assert!(plausible(&c, data.len()));
        assert!(!plausible(&c, data.len() - 1));
        assert!(!plausible(&c[..c.len() - 1], data.len()));
        assert!(!plausible(&[c.clone(), vec![0]].concat(), data.len()));
        assert!(!plausible(&[], 0));
        assert!(plausible(&[0], 0));
        for cut in [1, 2, 5, c.len() / 2] {
            assert!(!plausible(&c[..cut], data.len()), "{cut}");
        }
        // Incompressible input gives stored chunks (control 1 or 2).
        let noise: Vec<u8> = (0..100_000u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        let c = p.lzma2(&noise).unwrap();
        assert!(plausible(&c, noise.len()));
    }

    #[test]
    fn vli_and_dict_prop_match_the_spec() {
        for (v, want) in [
            (0u64, vec![0u8]),
            (0x7f, vec![0x7f]),
            (0x80, vec![0x80, 0x01]),
            (0x21, vec![0x21]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut o = Vec::new();
            vli(&mut o, v);
            assert_eq!(o, want, "{v}");
        }
        // The spec's table: 4 KiB -> 0, 6 KiB -> 1, 1 MiB -> 16,
        // 1.5 MiB -> 17, 8 MiB -> 22, 64 MiB -> 28, above 3 GiB -> 40.
        for (d, p) in [
            (1, 0),
            (4096, 0),
            (4097, 1),
            (6144, 1),
            (1 << 20, 16),
            ((1 << 20) + 1, 17),
            (3 << 19, 17),
            (8 << 20, 22),
            (64 << 20, 28),
            (u32::MAX, 40),
        ] {
            assert_eq!(dict_prop(d), p, "{d}");
        }
    }

    #[test]
    fn chunked_stream_decodes_within_its_limit() {
        let data = crate::sample(200_000, 13, 1000);
        let records = crate::records(data.len(), 10_000);
        let p = Chunked {
            preset: 0,
            extreme: false,
            dict_size: 1 << 16,
            block_size: 16 << 10,
        };
        let z = compress_chunked(&data, &records, &p, NonZeroUsize::new(3).unwrap(), None).unwrap();
        let (back, used) = decode_stream(&z, data.len() as u64, 64 << 20).unwrap();
        assert_eq!((back, used), (data.clone(), z.len()));
        assert_eq!(
            decode_stream(&z, data.len() as u64 - 1, 64 << 20),
            Err(DecompressError::TooLarge)
        );
        let bad = Chunked { block_size: 1, ..p };
        assert!(compress_chunked(&data, &records, &bad, NonZeroUsize::MIN, None).is_err());
    }

    #[test]
    fn blocks_round_trip_under_their_limit() {
        let data = crate::sample(100_000, 251, 7);
        let z = compress_smallest(&data, 1 << 17, &[Bcj::X86, Bcj::Arm]).unwrap();
        assert_eq!(decompress_block(&z, data.len(), 64 << 20).unwrap(), data);
        assert_eq!(
            decompress_block(&z, data.len() - 1, 64 << 20),
            Err(DecompressError::TooLarge)
        );
        assert!(matches!(
            decompress_block(&z[..z.len() / 2], data.len(), 64 << 20),
            Err(DecompressError::Corrupt(_))
        ));
    }
}
