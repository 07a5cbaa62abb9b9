//! Streaming one file's content out of an image for the hashing tree
//! walk: blocks are read in order and decompressed a batch at a time on
//! the rayon pool; on request every block is recorded in a [`BaseBlocks`]
//! map as it goes by.

use std::io::{self, Read};

use super::{BLOCK_UNCOMPRESSED, FileData, SquashfsImage};
use crate::error::{Result, corrupt};
use crate::inode::NONE32;
use crate::reuse::{BaseBlocks, BlockLoc};

/// A data block's location and stored bytes.
type StoredBlock = (BlockLoc, Vec<u8>);

/// Blocks decompressed together (in parallel) while streaming a file:
/// bounds memory to this many blocks.
const READ_AHEAD: usize = 32;

/// Streams one file's content, decompressing a batch of blocks at a time
/// on the rayon pool.
pub(super) struct FileReader<'a> {
    img: &'a SquashfsImage,
    fd: FileData,
    next_block: usize,
    disk_pos: u64,
    produced: u64,
    ready: std::collections::VecDeque<Vec<u8>>,
    buf: Vec<u8>,
    buf_pos: usize,
    tail_done: bool,
    base: Option<&'a mut BaseBlocks>,
    /// Where each block lies (`None`: a hole), for [`BaseBlocks`].
    pub(super) locs: Vec<Option<BlockLoc>>,
    /// The real error behind an `io::Error` handed to the blob store.
    pub(super) error: Option<crate::Error>,
}

impl<'a> FileReader<'a> {
    pub(super) fn new(
        img: &'a SquashfsImage,
        fd: FileData,
        base: Option<&'a mut BaseBlocks>,
    ) -> Self {
        FileReader {
            img,
            disk_pos: fd.blocks_start,
            fd,
            next_block: 0,
            produced: 0,
            ready: std::collections::VecDeque::new(),
            buf: Vec::new(),
            buf_pos: 0,
            tail_done: false,
            base,
            locs: Vec::new(),
            error: None,
        }
    }

    /// Decompresses the next batch of data blocks into `ready`.
    fn read_ahead(&mut self) -> Result<()> {
        use rayon::prelude::*;
        let bs = u64::from(self.img.sb.block_size);
        let upto = (self.next_block + READ_AHEAD).min(self.fd.block_sizes.len());
        // Sequential I/O: the raw bytes of each block (None for holes).
        let mut raw: Vec<(usize, Option<StoredBlock>)> = Vec::new();
        for i in self.next_block..upto {
            let word = self.fd.block_sizes[i];
            // i < block count, so i * bs < file size.
            let want = (self.fd.file_size - i as u64 * bs).min(bs) as usize;
            let size = u64::from(word & !BLOCK_UNCOMPRESSED);
            if size == 0 {
                raw.push((want, None));
                continue;
            }
            let loc = BlockLoc {
                pos: self.disk_pos,
                word,
            };
            let bytes = self.img.raw_block(self.disk_pos, word)?;
            raw.push((want, Some((loc, bytes))));
            self.disk_pos += size;
        }
        self.next_block = upto;
        let img = self.img;
        let blocks: Vec<Result<Vec<u8>>> = raw
            .par_iter()
            .map(|(want, r)| match r {
                None => Ok(vec![0u8; *want]),
                Some((loc, bytes)) => img.unpack_block(loc.pos, loc.word, bytes, Some(*want)),
            })
            .collect();
        for ((_, r), b) in raw.into_iter().zip(blocks) {
            let b = b?;
            if let Some(base) = self.base.as_deref_mut() {
                let loc = r.map(|(loc, _)| loc);
                if let Some(loc) = loc {
                    base.record(&b, loc);
                }
                self.locs.push(loc);
            }
            self.ready.push_back(b);
        }
        Ok(())
    }

    /// Loads the next block (or the tail); false at the end.
    fn fill(&mut self) -> Result<bool> {
        if self.ready.is_empty() && self.next_block < self.fd.block_sizes.len() {
            self.read_ahead()?;
        }
        if let Some(b) = self.ready.pop_front() {
            self.buf = b;
            self.buf_pos = 0;
            return Ok(true);
        }
        let bs = u64::from(self.img.sb.block_size);
        if self.fd.fragment != NONE32 && !self.tail_done {
            self.tail_done = true;
            let tail = (self.fd.file_size % bs) as usize;
            let block = self.img.fragment_block(self.fd.fragment)?;
            if let Some(base) = self.base.as_deref_mut()
                && base.first_sight_of_fragment(self.fd.fragment)
            {
                let (pos, word) = self.img.fragment_entry(self.fd.fragment)?;
                base.record(&block, BlockLoc { pos, word });
            }
            let from = self.fd.offset as usize;
            let piece = block.get(from..from + tail).ok_or_else(|| {
                corrupt(format!(
                    "fragment {} holds {} bytes, a file wants {tail} at offset {from}",
                    self.fd.fragment,
                    block.len()
                ))
            })?;
            self.buf.clear();
            self.buf.extend_from_slice(piece);
            self.buf_pos = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf_pos >= self.buf.len() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        self.produced += n as u64;
        Ok(n)
    }
}
