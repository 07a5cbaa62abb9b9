//! Metadata blocks: the 8 KiB-chunked, individually compressed streams that
//! hold inodes, directories and lookup tables.
//!
//! A reader follows `(block, offset)` references through a bounded block
//! cache; the writer appends records and remembers where each block
//! starts, because lookup tables index by block start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::compress::Compressor;
use crate::error::{Result, corrupt};
use crate::source::Source;

/// Uncompressed size of a full metadata block.
pub const METADATA_SIZE: usize = 8192;
/// Header bit: the block is stored uncompressed.
const UNCOMPRESSED_BIT: u16 = 0x8000;
/// Blocks kept decompressed (32 MiB worth); past that the cache is reset.
const CACHE_BLOCKS: usize = 4096;

/// A decompressed metadata block and where the next one starts.
#[derive(Debug)]
pub(crate) struct Block {
    pub data: Vec<u8>,
    pub next: u64,
}

/// Reads metadata blocks from an image, caching them.
#[derive(Debug)]
pub(crate) struct MetaReader {
    pub src: Arc<Source>,
    pub comp: Compressor,
    cache: Mutex<HashMap<u64, Arc<Block>>>,
}

impl MetaReader {
    pub(crate) fn new(src: Arc<Source>, comp: Compressor) -> Self {
        MetaReader {
            src,
            comp,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The block whose header is at absolute offset `pos`, which must lie
    /// below `limit` (the start of whatever follows this table).
    pub(crate) fn block(&self, pos: u64, limit: u64) -> Result<Arc<Block>> {
        if let Ok(c) = self.cache.lock()
            && let Some(b) = c.get(&pos)
        {
            return Ok(Arc::clone(b));
        }
        if pos.checked_add(2).is_none_or(|e| e > limit) {
            return Err(corrupt(format!(
                "metadata block at {pos} lies past the end of its table ({limit})"
            )));
        }
        let mut h = [0u8; 2];
        self.src.read_at(pos, &mut h)?;
        let h = u16::from_le_bytes(h);
        let size = usize::from(h & !UNCOMPRESSED_BIT);
        if size == 0 || size > METADATA_SIZE {
            return Err(corrupt(format!(
                "metadata block at {pos} claims {size} bytes (must be 1..=8192)"
            )));
        }
        let next = pos + 2 + size as u64;
        if next > limit {
            return Err(corrupt(format!(
                "metadata block at {pos} runs past the end of its table ({limit})"
            )));
        }
        let raw = self.src.read_vec(pos + 2, size)?;
        let data = if h & UNCOMPRESSED_BIT != 0 {
            raw
        } else {
            self.comp
                .decompress(&raw, METADATA_SIZE)
                .map_err(|e| corrupt(format!("metadata block at {pos}: {e}")))?
        };
        let b = Arc::new(Block { data, next });
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_BLOCKS {
                c.clear();
            }
            c.insert(pos, Arc::clone(&b));
        }
        Ok(b)
    }

    /// A cursor at `offset` in the block at absolute `pos`.
    pub(crate) fn cursor(&self, pos: u64, offset: usize, limit: u64) -> Cursor<'_> {
        Cursor {
            meta: self,
            pos,
            offset,
            limit,
            block: None,
        }
    }
}

/// Sequential reads across metadata block boundaries.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    meta: &'a MetaReader,
    pos: u64,
    offset: usize,
    limit: u64,
    block: Option<Arc<Block>>,
}

impl Cursor<'_> {
    /// Fills `out`.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let b = match &self.block {
                Some(b) => Arc::clone(b),
                None => {
                    let b = self.meta.block(self.pos, self.limit)?;
                    self.block = Some(Arc::clone(&b));
                    b
                }
            };
            if self.offset > b.data.len() {
                return Err(corrupt(format!(
                    "metadata offset {} past the end of the {}-byte block at {}",
                    self.offset,
                    b.data.len(),
                    self.pos
                )));
            }
            let avail = &b.data[self.offset..];
            if avail.is_empty() {
                self.pos = b.next;
                self.offset = 0;
                self.block = None;
                continue;
            }
            let n = avail.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
            self.offset += n;
        }
        Ok(())
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads `n` bytes (callers bound `n` first).
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.read(&mut v)?;
        Ok(v)
    }
}

/// Splits a 64-bit metadata reference into (block start, offset).
pub(crate) fn split_ref(r: u64) -> (u64, usize) {
    (r >> 16, usize::from((r & 0xffff) as u16))
}

/// Builds a metadata stream in memory: records are appended, full 8 KiB
/// chunks are compressed as they fill.
#[derive(Debug)]
pub(crate) struct MetaWriter {
    /// `None` stores every block raw (mksquashfs `-noI` style).
    comp: Option<Compressor>,
    block_size: u32,
    pub out: Vec<u8>,
    cur: Vec<u8>,
    /// Start (relative to the stream) of every block flushed so far.
    pub block_starts: Vec<u64>,
}

impl MetaWriter {
    pub(crate) fn new(comp: Option<Compressor>, block_size: u32) -> Self {
        MetaWriter {
            comp,
            block_size,
            out: Vec::new(),
            cur: Vec::with_capacity(METADATA_SIZE),
            block_starts: Vec::new(),
        }
    }

    /// Where the next byte goes: (start of its block relative to the
    /// stream, offset inside the uncompressed block).
    pub(crate) fn position(&self) -> (u64, u16) {
        // OK to unwrap: cur never holds more than 8192 bytes between flushes.
        (
            self.out.len() as u64,
            u16::try_from(self.cur.len()).unwrap(),
        )
    }

    /// Total uncompressed bytes written so far.
    pub(crate) fn uncompressed_len(&self) -> u64 {
        self.block_starts.len() as u64 * METADATA_SIZE as u64 + self.cur.len() as u64
    }

    /// Stream-relative start of uncompressed block number `k` (`k` may be
    /// the block being filled).
    pub(crate) fn start_of_block(&self, k: usize) -> u64 {
        self.block_starts
            .get(k)
            .copied()
            .unwrap_or(self.out.len() as u64)
    }

    pub(crate) fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = (METADATA_SIZE - self.cur.len()).min(data.len());
            self.cur.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.cur.len() == METADATA_SIZE {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        self.block_starts.push(self.out.len() as u64);
        let z = match &self.comp {
            Some(c) => c.compress(&self.cur, self.block_size)?,
            None => None,
        };
        match z {
            Some(z) => {
                // OK to unwrap: compressed output is smaller than 8192 bytes.
                self.out
                    .extend_from_slice(&u16::try_from(z.len()).unwrap().to_le_bytes());
                self.out.extend_from_slice(&z);
            }
            None => {
                // OK to unwrap: at most 8192 bytes.
                let h = u16::try_from(self.cur.len()).unwrap() | UNCOMPRESSED_BIT;
                self.out.extend_from_slice(&h.to_le_bytes());
                self.out.extend_from_slice(&self.cur);
            }
        }
        self.cur.clear();
        Ok(())
    }

    /// Flushes the partial last block and returns the stream.
    pub(crate) fn finish(mut self) -> Result<(Vec<u8>, Vec<u64>)> {
        self.flush_block()?;
        Ok((self.out, self.block_starts))
    }
}
