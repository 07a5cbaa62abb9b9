//! LZ4: the legacy frame the kernel reads for initramfs (`lz4 -l`), and
//! single blocks (squashfs, read only).

use std::io;
use std::num::NonZeroUsize;

use crate::chunk::pool;
use crate::{DecompressError, corrupt, io_err};

/// LZ4 legacy block size: fixed by the format.
pub const LEGACY_BLOCK: usize = 8 << 20;
const LEGACY_MAGIC: u32 = 0x184C_2102;

/// The LZ4 legacy frame of `data`: the magic, then 8 MiB blocks each
/// compressed independently by `lz4_flex` (on `threads` threads, which
/// change the speed only) and preceded by its le32 compressed size.
pub fn compress_legacy(data: &[u8], threads: NonZeroUsize) -> io::Result<Vec<u8>> {
    let pool = pool(threads)?;
    let blocks: Vec<Vec<u8>> = pool.install(|| {
        use rayon::prelude::*;
        data.par_chunks(LEGACY_BLOCK)
            .map(lz4_flex::block::compress)
            .collect()
    });
    let mut out = LEGACY_MAGIC.to_le_bytes().to_vec();
    for b in blocks {
        let len = u32::try_from(b.len()).map_err(io_err)?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// The LZ4 legacy frame at the start of `input`, as
/// `lib/decompress_unlz4.c` reads it, into at most `limit` bytes: a
/// magic, then blocks of (le32 compressed size, data), each at most 8 MiB
/// decompressed. The frame has no end marker: it ends at the end of the
/// input, at a zero size (NUL padding, as newer kernels accept), or a
/// repeated magic starts another run of blocks. Returns the output and
/// the input bytes the frame took.
pub fn decode_legacy(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), DecompressError> {
    let le32 = |at: usize| -> Option<u32> {
        let b = input.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le32(0) != Some(LEGACY_MAGIC) {
        return Err(corrupt("not an LZ4 legacy frame"));
    }
    let mut pos = 4usize;
    let mut out = Vec::new();
    let mut block = crate::try_vec(LEGACY_BLOCK).map_err(|_| DecompressError::OutOfMemory(0))?;
    block.resize(LEGACY_BLOCK, 0);
    while let Some(size) = le32(pos) {
        if size == LEGACY_MAGIC {
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

/// Decompresses one LZ4 block of at most `max` bytes.
pub fn decompress_block(data: &[u8], max: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = crate::try_vec(max).map_err(|_| DecompressError::OutOfMemory(0))?;
    out.resize(max, 0);
    let n = lz4_flex::block::decompress_into(data, &mut out)
        .map_err(|e| corrupt(format!("lz4 block does not decompress: {e}")))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_frame_round_trips_under_its_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 31) as u8).collect();
        let f = compress_legacy(&data, NonZeroUsize::new(2).unwrap()).unwrap();
        let (back, used) = decode_legacy(&[f.clone(), vec![0; 4]].concat(), 1 << 20).unwrap();
        assert_eq!((back, used), (data.clone(), f.len()));
        assert_eq!(decode_legacy(&f, 99_999), Err(DecompressError::TooLarge));
        assert!(decode_legacy(&f[..f.len() - 10], 1 << 20).is_err());
        assert!(decode_legacy(b"nope", 10).is_err());
        let block = lz4_flex::block::compress(&data);
        assert_eq!(decompress_block(&block, data.len()).unwrap(), data);
        assert!(decompress_block(&block, data.len() - 1).is_err());
    }
}
