//! Positioned reads from the image file, shared by the tree reader, file
//! content readers and the writer's block-reuse path.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use crate::error::{Result, corrupt};

/// What an image is read from.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// The image file behind a lock, with its length.
pub(crate) struct Source {
    inner: Mutex<Box<dyn ReadSeek>>,
    len: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("len", &self.len).finish()
    }
}

impl Source {
    pub(crate) fn new(mut r: Box<dyn ReadSeek>) -> Result<Self> {
        let len = r.seek(SeekFrom::End(0))?;
        Ok(Source {
            inner: Mutex::new(r),
            len,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `pos`; a read past the end of the file is corruption
    /// (some offset in the image pointed there).
    pub(crate) fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let end = u64::try_from(buf.len())
            .ok()
            .and_then(|n| pos.checked_add(n))
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                corrupt(format!(
                    "read of {} bytes at offset {pos} runs past the end of the image ({} bytes)",
                    buf.len(),
                    self.len
                ))
            })?;
        let _ = end;
        let mut g = self
            .inner
            .lock()
            .map_err(|_| std::io::Error::other("image reader lock poisoned"))?;
        g.seek(SeekFrom::Start(pos))?;
        g.read_exact(buf)?;
        Ok(())
    }

    pub(crate) fn read_vec(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        if u64::try_from(len).map_or(true, |l| l > self.len) {
            return Err(corrupt(format!(
                "read of {len} bytes is larger than the image"
            )));
        }
        let mut v = vec![0u8; len];
        self.read_at(pos, &mut v)?;
        Ok(v)
    }
}
