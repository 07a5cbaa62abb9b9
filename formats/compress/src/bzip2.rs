//! bzip2: read only (initramfs segments; v6build never writes bzip2).

use crate::DecompressError;
use crate::bounded::read_bounded;

/// Decodes the one bzip2 stream at the start of `input` into at most
/// `limit` bytes; returns the output and the input bytes the stream took.
pub fn decode_stream(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), DecompressError> {
    let mut d = ::bzip2::bufread::BzDecoder::new(input);
    let out = read_bounded(&mut d, limit)?;
    Ok((out, input.len() - d.into_inner().len()))
}
