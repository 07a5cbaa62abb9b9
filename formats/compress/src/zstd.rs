//! zstd: a checksummed frame from the multithreaded engine, single-shot
//! blocks, and the bounded decoders.

use std::io::{self, Write};
use std::num::NonZeroUsize;

use crate::bounded::{TryVec, read_bounded, try_vec};
use crate::{DecompressError, corrupt};

/// One zstd frame with a content checksum at `level`, compressed by
/// zstd's multithreaded engine, whose output is the same for any worker
/// count of at least one (`threads` changes the speed only).
pub fn compress_frame(data: &[u8], level: i32, threads: NonZeroUsize) -> io::Result<Vec<u8>> {
    let mut enc = ::zstd::stream::write::Encoder::new(TryVec::default(), level)?;
    // At least one worker: zstd's output is identical for any worker
    // count ≥ 1, but differs with 0 (inline mode).
    enc.multithread(u32::try_from(threads.get()).unwrap_or(u32::MAX))?;
    enc.include_checksum(true)?;
    enc.write_all(data)?;
    Ok(enc.finish()?.0)
}

/// One zstd frame of `data` at `level`, single-threaded, as squashfs
/// blocks hold them.
pub fn compress_block(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    ::zstd::bulk::compress(data, level)
}

/// Decompresses one frame, refusing output longer than `max`.
pub fn decompress_block(data: &[u8], max: usize) -> Result<Vec<u8>, DecompressError> {
    let mut d = ::zstd::bulk::Decompressor::new().map_err(corrupt)?;
    let mut out = try_vec(max).map_err(|_| DecompressError::OutOfMemory(0))?;
    d.decompress_to_buffer(data, &mut out).map_err(|e| {
        corrupt(format!(
            "zstd block does not decompress within {max} bytes: {e}"
        ))
    })?;
    Ok(out)
}

/// Decodes the one zstd frame at the start of `input` into at most
/// `limit` bytes; returns the output and the input bytes the frame took.
pub fn decode_frame(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), DecompressError> {
    let len = ::zstd::zstd_safe::find_frame_compressed_size(input)
        .map_err(|c| corrupt(::zstd::zstd_safe::get_error_name(c)))?;
    let frame = input
        .get(..len)
        .ok_or_else(|| corrupt("zstd frame longer than the input"))?;
    let mut d = ::zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(corrupt)?
        .single_frame();
    let out = read_bounded(&mut d, limit)?;
    Ok((out, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_blocks_round_trip_under_their_limit() {
        let data = crate::sample(200_000, 97, 5);
        let f1 = compress_frame(&data, 3, NonZeroUsize::MIN).unwrap();
        assert_eq!(
            f1,
            compress_frame(&data, 3, NonZeroUsize::new(3).unwrap()).unwrap()
        );
        let (back, used) = decode_frame(&[f1.clone(), vec![0; 8]].concat(), 1 << 20).unwrap();
        assert_eq!((back, used), (data.clone(), f1.len()));
        assert_eq!(decode_frame(&f1, 1000), Err(DecompressError::TooLarge));
        assert!(decode_frame(&f1[..f1.len() / 2], 1 << 20).is_err());

        let b = compress_block(&data, 15).unwrap();
        assert_eq!(decompress_block(&b, data.len()).unwrap(), data);
        assert!(matches!(
            decompress_block(&b, data.len() - 1),
            Err(DecompressError::Corrupt(_))
        ));
    }
}
