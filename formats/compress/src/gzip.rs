//! gzip: one member made pigz-style from independent chunks, and the
//! bounded decoder of one member.

use std::io;
use std::num::NonZeroUsize;

use crate::bounded::{read_bounded, try_vec};
use crate::cache::{ChunkCache, ChunkKey};
use crate::chunk::{Record, cut, map_longest_first, pool};
use crate::{DecompressError, io_err};

/// Deflate's window: each chunk is primed with this much preceding input,
/// and no chunk target is smaller.
pub const DEFLATE_WINDOW: usize = 32 * 1024;

/// pigz-style gzip: content-defined chunks of `data` (cut by
/// [`crate::chunk::cut`] at `records`, target `chunk_size`, at least
/// [`DEFLATE_WINDOW`]) deflated independently, each primed with the 32 KiB
/// of input before it as dictionary, and joined into one member. Non-final
/// chunks end with a sync flush (an empty stored block), so each ends on a
/// byte boundary and they concatenate into one valid deflate stream. A
/// chunk's deflate bytes depend on its own bytes, the dictionary, the
/// level and whether it is the last, all of which are in its cache key;
/// an edit therefore misses the cache for the chunk that holds it and the
/// next one (whose dictionary it changed). The header has no name and no
/// mtime, so the output is a pure function of `data`, `records`, `level`
/// and `chunk_size`.
pub fn compress_chunked(
    data: &[u8],
    records: &[Record],
    level: u32,
    chunk_size: u32,
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
) -> io::Result<Vec<u8>> {
    compress_chunked_reporting(data, records, level, chunk_size, threads, cache, &|_| {})
}

/// [`compress_chunked`], calling `done` with each chunk's length (input
/// bytes) once that chunk is compressed, from the compressing thread.
pub fn compress_chunked_reporting(
    data: &[u8],
    records: &[Record],
    level: u32,
    chunk_size: u32,
    threads: NonZeroUsize,
    cache: Option<&dyn ChunkCache>,
    done: &(dyn Fn(u64) + Sync),
) -> io::Result<Vec<u8>> {
    if level > 9 {
        return Err(io_err(format!("gzip level {level} is not in 0..=9")));
    }
    let target = usize::try_from(chunk_size)
        .map_err(io_err)?
        .max(DEFLATE_WINDOW);
    let ranges = cut(data.len(), records, target);
    let n_chunks = ranges.len();
    let pool = pool(threads)?;
    let lib = crate::versions::deflate_lib();
    let one = |i: usize, r: &std::ops::Range<usize>| {
        let dict = &data[r.start.saturating_sub(DEFLATE_WINDOW)..r.start];
        let chunk = &data[r.clone()];
        let last = i + 1 == n_chunks;
        let Some(cache) = cache else {
            return deflate_chunk(chunk, dict, level, last);
        };
        let key = ChunkKey::new(
            &format!("gzip-deflate level={level} last={last} lib={lib}"),
            dict,
            chunk,
        );
        if let Some(hit) = cache.get(&key).filter(|c| !c.is_empty()) {
            return Ok(hit);
        }
        let c = deflate_chunk(chunk, dict, level, last)?;
        cache.put(&key, &c);
        Ok(c)
    };
    let parts: Vec<io::Result<Vec<u8>>> = map_longest_first(&pool, &ranges, |i, r| {
        let out = one(i, r);
        done(r.len() as u64);
        out
    })?;
    if parts.is_empty() {
        // No input: one empty final block, as gzip writes for an empty file.
        return gzip_member(data, level, vec![Ok(deflate_chunk(&[], &[], level, true)?)]);
    }
    gzip_member(data, level, parts)
}

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

/// Decodes the one gzip member at the start of `input` into at most
/// `limit` bytes; returns the output and the input bytes the member took.
pub fn decode_member(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), DecompressError> {
    // bufread::GzDecoder reads exactly one member and consumes only its bytes.
    let mut d = flate2::bufread::GzDecoder::new(input);
    let out = read_bounded(&mut d, limit)?;
    Ok((out, input.len() - d.into_inner().len()))
}

/// CRC32 as gzip and xz compute it.
pub fn crc32(bytes: &[u8]) -> [u8; 4] {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_member_decodes_and_ignores_the_thread_count() {
        let data = crate::sample(400_000, 251, 9);
        let records = crate::records(data.len(), 10_000);
        let one = compress_chunked(&data, &records, 6, 40_000, NonZeroUsize::MIN, None).unwrap();
        let four = compress_chunked(
            &data,
            &records,
            6,
            40_000,
            NonZeroUsize::new(4).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(one, four);
        let (back, used) =
            decode_member(&[one.clone(), b"tail".to_vec()].concat(), 1 << 20).unwrap();
        assert_eq!((back, used), (data.clone(), one.len()));
        assert_eq!(
            decode_member(&one, data.len() as u64 - 1),
            Err(DecompressError::TooLarge)
        );
        assert!(matches!(
            decode_member(&one[..one.len() / 2], 1 << 20),
            Err(DecompressError::Corrupt(_))
        ));
        let empty = compress_chunked(&[], &[], 9, 0, NonZeroUsize::MIN, None).unwrap();
        assert_eq!(decode_member(&empty, 0).unwrap(), (vec![], empty.len()));
        assert!(compress_chunked(&data, &[], 10, 0, NonZeroUsize::MIN, None).is_err());
    }
}
