//! The editor's view of the image: the base bytes plus an overlay of
//! rewritten blocks. Every edit lands in the overlay first, so a failed edit
//! leaves the caller's image untouched, reads see earlier writes, and the
//! final flush knows exactly which byte ranges changed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

use crate::readat::ReadAt;

/// Base image + block overlay.
pub(crate) struct Dev<'a> {
    base: &'a dyn ReadAt,
    bs: u64,
    overlay: RefCell<BTreeMap<u64, Vec<u8>>>,
}

impl std::fmt::Debug for Dev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dev")
            .field("bs", &self.bs)
            .finish_non_exhaustive()
    }
}

impl<'a> Dev<'a> {
    pub fn new(base: &'a dyn ReadAt, block_size: u32) -> Self {
        Dev {
            base,
            bs: u64::from(block_size),
            overlay: RefCell::new(BTreeMap::new()),
        }
    }

    fn load(&self, b: u64) -> io::Result<Vec<u8>> {
        if let Some(v) = self.overlay.borrow().get(&b) {
            return Ok(v.clone());
        }
        let mut v = vec![0u8; self.bs as usize];
        self.base.read_at(b * self.bs, &mut v)?;
        Ok(v)
    }

    /// Replaces block `b`.
    pub fn put_block(&self, b: u64, data: Vec<u8>) {
        debug_assert_eq!(data.len() as u64, self.bs);
        self.overlay.borrow_mut().insert(b, data);
    }

    /// Writes `data` at byte offset `off` (read-modify-write of the blocks).
    pub fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let b = pos / self.bs;
            let inb = (pos % self.bs) as usize;
            let n = (self.bs as usize - inb).min(data.len() - done);
            let mut blk = self.load(b)?;
            blk[inb..inb + n].copy_from_slice(&data[done..done + n]);
            self.put_block(b, blk);
            done += n;
        }
        Ok(())
    }

    /// The overlay, for the final flush: (block, bytes) in block order.
    pub fn into_blocks(self) -> BTreeMap<u64, Vec<u8>> {
        self.overlay.into_inner()
    }
}

impl ReadAt for Dev<'_> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let ov = self.overlay.borrow();
        if ov.is_empty() {
            return self.base.read_at(off, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let b = pos / self.bs;
            let inb = (pos % self.bs) as usize;
            let n = (self.bs as usize - inb).min(buf.len() - done);
            match ov.get(&b) {
                Some(v) => buf[done..done + n].copy_from_slice(&v[inb..inb + n]),
                None => self.base.read_at(pos, &mut buf[done..done + n])?,
            }
            done += n;
        }
        Ok(())
    }
    fn len(&self) -> u64 {
        self.base.len()
    }
}
