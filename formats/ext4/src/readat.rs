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

/// A base image seen through a set of replaced blocks, possibly longer than
/// the base (appended space reads as zeros). This is how a caller chains
/// [`crate::grow_blocks`] and [`crate::edit_blocks`] over a base it never
/// inflates whole.
pub struct Overlay<'a> {
    base: &'a dyn ReadAt,
    bs: u64,
    blocks: std::collections::BTreeMap<u64, Vec<u8>>,
    len: u64,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("blocks", &self.blocks.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a> Overlay<'a> {
    /// `base` seen with `blocks` (of `block_size` bytes) replaced, `len` bytes long.
    pub fn new(
        base: &'a dyn ReadAt,
        block_size: u32,
        blocks: std::collections::BTreeMap<u64, Vec<u8>>,
        len: u64,
    ) -> Self {
        Overlay {
            base,
            bs: u64::from(block_size),
            blocks,
            len,
        }
    }

    /// One whole block.
    pub fn block(&self, b: u64) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; self.bs as usize];
        self.read_at(b * self.bs, &mut v)?;
        Ok(v)
    }

    /// Replaces one whole block.
    pub fn put(&mut self, b: u64, data: Vec<u8>) {
        self.blocks.insert(b, data);
    }

    /// Writes bytes at an offset (read-modify-write of whole blocks).
    pub fn write(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let b = pos / self.bs;
            let inb = (pos % self.bs) as usize;
            let n = (self.bs as usize - inb).min(data.len() - done);
            let mut blk = self.block(b)?;
            blk[inb..inb + n].copy_from_slice(&data[done..done + n]);
            self.put(b, blk);
            done += n;
        }
        Ok(())
    }

    /// The replaced blocks.
    pub fn into_blocks(self) -> std::collections::BTreeMap<u64, Vec<u8>> {
        self.blocks
    }
}

impl ReadAt for Overlay<'_> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        range(off, buf.len(), self.len)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let b = pos / self.bs;
            let inb = (pos % self.bs) as usize;
            let n = (self.bs as usize - inb).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.blocks.get(&b) {
                Some(v) => out.copy_from_slice(&v[inb..inb + n]),
                None => {
                    let base_len = self.base.len();
                    if pos + n as u64 <= base_len {
                        self.base.read_at(pos, out)?;
                    } else if pos < base_len {
                        let k = (base_len - pos) as usize;
                        self.base.read_at(pos, &mut out[..k])?;
                        out[k..].fill(0);
                    } else {
                        out.fill(0);
                    }
                }
            }
            done += n;
        }
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
}
