//! zlib blocks (squashfs's "gzip" compressor): each block one zlib
//! stream.

use std::io::Write;

use crate::{DecompressError, corrupt};

/// Compresses `data` as one zlib stream at `level` with a window of
/// `window_bits` (8 to 15).
pub fn compress_block(data: &[u8], level: u32, window_bits: u8) -> std::io::Result<Vec<u8>> {
    let c =
        flate2::Compress::new_with_window_bits(flate2::Compression::new(level), true, window_bits);
    let mut enc = flate2::write::ZlibEncoder::new_with_compress(Vec::with_capacity(data.len()), c);
    enc.write_all(data)?;
    enc.finish()
}

/// Decompresses one zlib stream, refusing output longer than `max`.
pub fn decompress_block(data: &[u8], max: usize) -> Result<Vec<u8>, DecompressError> {
    let mut d = flate2::Decompress::new(true);
    let mut out =
        crate::try_vec(max.saturating_add(1)).map_err(|_| DecompressError::OutOfMemory(0))?;
    match d.decompress_vec(data, &mut out, flate2::FlushDecompress::Finish) {
        Ok(_) if out.len() > max => Err(DecompressError::TooLarge),
        Ok(flate2::Status::StreamEnd) => Ok(out),
        Ok(_) => Err(corrupt("gzip block is truncated")),
        Err(e) => Err(corrupt(format!("gzip block does not decompress: {e}"))),
    }
}
