//! Memory-bounded buffers: reading a decoder to its end under a limit, and
//! output vectors whose growth fails instead of aborting.

use std::io::{self, Read, Write};

use crate::{DecompressError, corrupt};

/// Reads `r` to the end into memory, refusing more than `limit` bytes.
/// The buffer grows by doubling, with fallible reservations, and never
/// past `limit + 1` bytes: reaching the limit costs the limit in memory,
/// not twice it, and memory that cannot be had is an error, not an abort.
pub fn read_bounded(r: &mut dyn Read, limit: u64) -> Result<Vec<u8>, DecompressError> {
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

/// An empty vector with room for `n` bytes, or an `OutOfMemory` error
/// instead of an abort when the memory cannot be had.
pub fn try_vec(n: usize) -> io::Result<Vec<u8>> {
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
pub struct TryVec(pub Vec<u8>);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_an_error_not_a_truncation() {
        let data = vec![7u8; 100_000];
        assert_eq!(read_bounded(&mut &data[..], 100_000).unwrap(), data);
        assert_eq!(
            read_bounded(&mut &data[..], 99_999),
            Err(DecompressError::TooLarge)
        );
        assert_eq!(read_bounded(&mut &[][..], 0).unwrap(), Vec::<u8>::new());
        assert_eq!(
            read_bounded(&mut &[1u8][..], 0),
            Err(DecompressError::TooLarge)
        );
    }

    #[test]
    fn try_vec_refuses_impossible_sizes() {
        assert_eq!(
            try_vec(usize::MAX).unwrap_err().kind(),
            io::ErrorKind::OutOfMemory
        );
        let mut v = TryVec::default();
        v.write_all(b"abc").unwrap();
        assert_eq!(v.0, b"abc");
    }
}
