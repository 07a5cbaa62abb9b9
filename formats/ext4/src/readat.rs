//! Random access to the bytes of an image. The reader never needs the whole
//! image at once: the engine backs this trait with squashfs block reads, tests
//! with a `Vec<u8>` or a file.

use std::io;

/// Positioned reads from an image of known length.
pub trait ReadAt {
    /// Fills `buf` from byte offset `off`; a read past the end is an error.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Length of the image in bytes.
    fn len(&self) -> u64;
    /// Whether the image is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An image that can also be written in place (the editor's view).
pub trait WriteAt: ReadAt {
    /// Writes `data` at byte offset `off`; the image does not grow.
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()>;
}

fn past_end(off: u64, n: usize, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {n} bytes at offset {off} is past the end of the image ({len} bytes)"),
    )
}

fn range(off: u64, n: usize, len: u64) -> io::Result<std::ops::Range<usize>> {
    let end = off
        .checked_add(n as u64)
        .filter(|&e| e <= len)
        .ok_or_else(|| past_end(off, n, len))?;
    let s = usize::try_from(off).map_err(|_| past_end(off, n, len))?;
    let e = usize::try_from(end).map_err(|_| past_end(off, n, len))?;
    Ok(s..e)
}

impl ReadAt for [u8] {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = range(off, buf.len(), self.len() as u64)?;
        buf.copy_from_slice(&self[r]);
        Ok(())
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(off, buf)
    }
    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }
}

impl WriteAt for Vec<u8> {
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        let r = range(off, data.len(), Vec::len(self) as u64)?;
        self[r].copy_from_slice(data);
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, off)
    }
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(off, buf)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::sync::Arc<T> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(off, buf)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
}
