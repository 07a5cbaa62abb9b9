//! A base file's block layout, and reading a file back through it.
//!
//! The tree readers record, for every regular file of a base image, where
//! its data blocks and its fragment tail lie ([`FileBlocks`]). The writer
//! copies those stored bytes; [`FileAt`] and [`BaseBlocks::open_file`]
//! read the content back, decompressing only the blocks asked for, so a
//! rebuild never has to unpack the parts of a base it leaves alone.
//! [`BaseBlocks::patch_file`] derives new layouts from recorded ones
//! (see `patch.rs`): a patched file mixes stored blocks with changed
//! blocks held in memory.
//!
//! [`BaseBlocks::open_file`]: crate::BaseBlocks::open_file
//! [`BaseBlocks::patch_file`]: crate::BaseBlocks::patch_file

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use v6build_fstree::Digest;

use crate::compress::Compressor;
use crate::error::{Result, corrupt};
use crate::read::BLOCK_UNCOMPRESSED;
use crate::reuse::BlockLoc;
use crate::source::Source;

/// Decompressed bytes a [`FileAt`] keeps: 256 blocks of 128 KiB. The ext4
/// editor reads inode tables and bitmaps scattered over a 2 GiB image;
/// with 16 blocks it decompressed 649 blocks for one edit, with 256 it
/// needed 393.
const FILE_AT_CACHE_BYTES: usize = 32 << 20;

/// How many decompressed blocks of `block_size` a [`FileAt`] keeps.
fn file_at_cache(block_size: u32) -> usize {
    (FILE_AT_CACHE_BYTES / (block_size as usize).max(1)).max(4)
}
/// Decompressed fragment blocks a base map keeps for all its readers.
const FRAGMENT_CACHE: usize = 8;

/// Domain separation of reference digests; changing it renames every
/// lazily read base file.
const REF_DOMAIN: &[u8] = b"v6build squashfs ref v1\0";

/// One full-size (or, for the last block of a file without a fragment,
/// short) block of a file.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// All zeros, nothing stored.
    Hole,
    /// Stored in the base image.
    Stored(BlockLoc),
    /// Uncompressed bytes held in memory (a block a patch changed); its
    /// length is the block's length.
    Data(Arc<Vec<u8>>),
}

/// A file tail kept in a base fragment block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragRef {
    /// Index of the fragment block in the base's fragment table.
    pub index: u32,
    /// Offset of the tail inside the uncompressed fragment block.
    pub offset: u32,
    /// Where the fragment block is stored.
    pub loc: BlockLoc,
}

/// Where every byte of one file lies.
///
/// Invariant (checked by [`FileBlocks::check`]): with a fragment,
/// `blocks.len() == size / block_size` and the tail `size % block_size`
/// is not zero; without one, `blocks.len() == size.div_ceil(block_size)`.
#[derive(Debug, Clone)]
pub(crate) struct FileBlocks {
    pub size: u64,
    pub blocks: Vec<Piece>,
    pub fragment: Option<FragRef>,
}

impl FileBlocks {
    /// Refuses a layout whose block count contradicts its size.
    pub(crate) fn check(&self, block_size: u32) -> Result<()> {
        let bs = u64::from(block_size);
        let ok = match self.fragment {
            Some(f) => {
                self.blocks.len() as u64 == self.size / bs
                    && !self.size.is_multiple_of(bs)
                    && u64::from(f.offset) + self.size % bs <= bs
            }
            None => self.blocks.len() as u64 == self.size.div_ceil(bs),
        };
        if ok {
            Ok(())
        } else {
            Err(corrupt(format!(
                "file layout of {} bytes with {} blocks and {} fragment does not fit block size {bs}",
                self.size,
                self.blocks.len(),
                if self.fragment.is_some() { "a" } else { "no" }
            )))
        }
    }

    /// Length of piece `i` (a block, or the tail when `i == blocks.len()`).
    pub(crate) fn piece_len(&self, i: usize, block_size: u32) -> usize {
        let bs = u64::from(block_size);
        let start = (i as u64).saturating_mul(bs);
        // At most the block size (<= 1 MiB).
        self.size.saturating_sub(start).min(bs) as usize
    }

    /// Whether bytes `[off, off + len)` lie entirely in hole pieces (the
    /// fragment tail never counts as a hole).
    pub(crate) fn is_hole(&self, off: u64, len: u64, block_size: u32) -> bool {
        let bs = u64::from(block_size);
        if len == 0 {
            return true;
        }
        let Some(end) = off.checked_add(len).filter(|&e| e <= self.size) else {
            return false;
        };
        let (first, last) = (off / bs, (end - 1) / bs);
        (first..=last).all(|i| {
            usize::try_from(i)
                .ok()
                .and_then(|i| self.blocks.get(i))
                .is_some_and(|p| matches!(p, Piece::Hole))
        })
    }

    /// Whether any block is held in memory (patched layouts are not saved).
    pub(crate) fn is_patched(&self) -> bool {
        self.blocks.iter().any(|p| matches!(p, Piece::Data(_)))
    }
}

/// The reference digest of a base file: BLAKE3 over
/// `"v6build squashfs ref v1\0"`, the source id's length (u64 LE), the
/// source id, the file size (u64 LE), the block count (u64 LE), each
/// block's start and size word (u64 LE, u32 LE; both 0 for a hole), and
/// the fragment as a byte 0, or a byte 1 then index and offset (u32 LE).
pub(crate) fn ref_digest(
    source_id: &[u8],
    size: u64,
    blocks: &[Option<BlockLoc>],
    fragment: Option<(u32, u32)>,
) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(REF_DOMAIN);
    h.update(&(source_id.len() as u64).to_le_bytes());
    h.update(source_id);
    h.update(&size.to_le_bytes());
    h.update(&(blocks.len() as u64).to_le_bytes());
    for b in blocks {
        let (pos, word) = b.map_or((0, 0), |l| (l.pos, l.word));
        h.update(&pos.to_le_bytes());
        h.update(&word.to_le_bytes());
    }
    match fragment {
        None => {
            h.update(&[0]);
        }
        Some((index, offset)) => {
            h.update(&[1]);
            h.update(&index.to_le_bytes());
            h.update(&offset.to_le_bytes());
        }
    }
    Digest::from_bytes(*h.finalize().as_bytes())
}

/// What reading blocks of a base needs, shared by [`BaseBlocks`] and every
/// [`FileAt`] it hands out.
///
/// [`BaseBlocks`]: crate::BaseBlocks
#[derive(Debug)]
pub(crate) struct BlockSource {
    pub src: Arc<Source>,
    pub comp: Compressor,
    pub block_size: u32,
    /// Data and fragment blocks decompressed so far.
    pub decompressed: AtomicU64,
    /// Stored bytes of data and fragment blocks read from the image so far.
    pub bytes_read: AtomicU64,
    /// Bytes those decompressions produced.
    pub bytes_decompressed: AtomicU64,
    /// The last few fragment blocks decompressed, by position: many small
    /// files share one, and each is read on its own.
    pub fragments: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl BlockSource {
    /// The stored bytes of a block, after checking its size word and extent.
    pub(crate) fn raw(&self, loc: BlockLoc) -> Result<Vec<u8>> {
        let size = usize::try_from(self.check_stored(loc)?)
            .map_err(|_| corrupt("block size does not fit in memory"))?;
        let v = self.src.read_vec(loc.pos, size)?;
        self.bytes_read.fetch_add(size as u64, Ordering::Relaxed);
        Ok(v)
    }

    /// The stored length of the block at `loc`, checked against the block
    /// size and the image's length.
    pub(crate) fn check_stored(&self, loc: BlockLoc) -> Result<u64> {
        let bs = self.block_size as usize;
        let size = (loc.word & !BLOCK_UNCOMPRESSED) as usize;
        if loc.word & !(BLOCK_UNCOMPRESSED | 0x00ff_ffff) != 0 || size > bs || size == 0 {
            return Err(corrupt(format!(
                "block at {} has size word {:#x} (block size {bs})",
                loc.pos, loc.word
            )));
        }
        if loc
            .pos
            .checked_add(size as u64)
            .is_none_or(|e| e > self.src.len())
        {
            return Err(corrupt(format!(
                "block at {} (+{size}) runs past the end of the image",
                loc.pos
            )));
        }
        Ok(size as u64)
    }

    /// The uncompressed bytes of a stored block; `expect` is the exact
    /// length when known (data blocks), else at most the block size.
    pub(crate) fn unpack(&self, loc: BlockLoc, expect: Option<usize>) -> Result<Vec<u8>> {
        let raw = self.raw(loc)?;
        self.unpack_raw(loc, raw, expect)
    }

    /// [`BlockSource::unpack`] of stored bytes already read.
    fn unpack_raw(&self, loc: BlockLoc, raw: Vec<u8>, expect: Option<usize>) -> Result<Vec<u8>> {
        let what = if expect.is_some() {
            "data block"
        } else {
            "fragment block"
        };
        let data = if loc.word & BLOCK_UNCOMPRESSED != 0 {
            raw
        } else {
            self.decompressed.fetch_add(1, Ordering::Relaxed);
            let d = self
                .comp
                .decompress(&raw, expect.unwrap_or(self.block_size as usize))
                .map_err(|e| corrupt(format!("{what} at {}: {e}", loc.pos)))?;
            self.bytes_decompressed
                .fetch_add(d.len() as u64, Ordering::Relaxed);
            d
        };
        if let Some(n) = expect
            && data.len() != n
        {
            return Err(corrupt(format!(
                "{what} at {} holds {} bytes, the file layout implies {n}",
                loc.pos,
                data.len()
            )));
        }
        Ok(data)
    }

    /// A fragment block, uncompressed, through the shared cache.
    fn fragment(&self, loc: BlockLoc) -> Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.fragments.lock()
            && let Some((_, b)) = c.iter().find(|(p, _)| *p == loc.pos)
        {
            return Ok(Arc::clone(b));
        }
        let block = Arc::new(self.unpack(loc, None)?);
        if let Ok(mut c) = self.fragments.lock() {
            if c.len() >= FRAGMENT_CACHE {
                c.remove(0);
            }
            c.push((loc.pos, Arc::clone(&block)));
        }
        Ok(block)
    }

    /// The bytes of piece `i` of `f`: `None` for zeros.
    pub(crate) fn piece(&self, f: &FileBlocks, i: usize) -> Result<Option<Arc<Vec<u8>>>> {
        let len = f.piece_len(i, self.block_size);
        match f.blocks.get(i) {
            Some(Piece::Hole) => Ok(None),
            Some(Piece::Data(d)) => Ok(Some(Arc::clone(d))),
            Some(Piece::Stored(loc)) => Ok(Some(Arc::new(self.unpack(*loc, Some(len))?))),
            None => {
                let Some(fr) = f.fragment.filter(|_| i == f.blocks.len()) else {
                    return Err(corrupt(format!("file piece {i} out of range")));
                };
                let block = self.fragment(fr.loc)?;
                let from = fr.offset as usize;
                let tail = block.get(from..from + len).ok_or_else(|| {
                    corrupt(format!(
                        "fragment {} at {} holds {} bytes, a file wants {len} at offset {from}",
                        fr.index,
                        fr.loc.pos,
                        block.len()
                    ))
                })?;
                Ok(Some(Arc::new(tail.to_vec())))
            }
        }
    }
}

/// Random access into one recorded file. Decompresses a block only when a
/// read touches it and keeps the last few in a small cache.
pub struct FileAt {
    src: Arc<BlockSource>,
    file: Arc<FileBlocks>,
    cache: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
}

impl std::fmt::Debug for FileAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAt")
            .field("len", &self.file.size)
            .field("blocks", &self.file.blocks.len())
            .field("fragment", &self.file.fragment.is_some())
            .finish()
    }
}

impl FileAt {
    pub(crate) fn new(src: Arc<BlockSource>, file: Arc<FileBlocks>) -> Self {
        FileAt {
            src,
            file,
            cache: Mutex::new(Vec::new()),
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.file.size
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.file.size == 0
    }

    /// Whether bytes `[off, off + len)` of the file are a hole (nothing
    /// stored; they read as zeros).
    pub fn is_hole(&self, off: u64, len: u64) -> bool {
        self.file.is_hole(off, len, self.src.block_size)
    }

    /// Piece `i`, through the cache.
    fn cached_piece(&self, i: usize) -> Result<Option<Arc<Vec<u8>>>> {
        if let Some(Piece::Hole) = self.file.blocks.get(i) {
            return Ok(None);
        }
        if let Some(Piece::Data(d)) = self.file.blocks.get(i) {
            return Ok(Some(Arc::clone(d)));
        }
        if let Ok(mut c) = self.cache.lock()
            && let Some(at) = c.iter().position(|(j, _)| *j == i)
        {
            // Most recently used last.
            let hit = c.remove(at);
            let data = Arc::clone(&hit.1);
            c.push(hit);
            return Ok(Some(data));
        }
        let data = self.src.piece(&self.file, i)?;
        if let (Some(d), Ok(mut c)) = (&data, self.cache.lock()) {
            if c.len() >= file_at_cache(self.src.block_size) {
                c.remove(0);
            }
            c.push((i, Arc::clone(d)));
        }
        Ok(data)
    }

    /// Fills `buf` from offset `off`. Holes read as zeros; a read past the
    /// end of the file is an error.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let end = u64::try_from(buf.len())
            .ok()
            .and_then(|n| off.checked_add(n))
            .filter(|&e| e <= self.file.size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at {off} runs past the end of a {}-byte file",
                        buf.len(),
                        self.file.size
                    ),
                )
            })?;
        let bs = u64::from(self.src.block_size);
        let mut pos = off;
        let mut done = 0usize;
        while pos < end {
            // pos / bs < number of pieces, which fits a usize (it is a Vec length + 1).
            let i = usize::try_from(pos / bs).map_err(|_| corrupt("file offset"))?;
            // in_block < bs <= 1 MiB.
            let in_block = (pos % bs) as usize;
            let n = usize::try_from((end - pos).min(bs - pos % bs)).unwrap_or(usize::MAX);
            let out = &mut buf[done..done + n];
            match self.cached_piece(i)? {
                None => out.fill(0),
                Some(d) => {
                    let src = d.get(in_block..in_block + n).ok_or_else(|| {
                        corrupt(format!("file piece {i} is shorter than the layout says"))
                    })?;
                    out.copy_from_slice(src);
                }
            }
            pos += n as u64;
            done += n;
        }
        Ok(())
    }
}

/// One piece of a file (a data block, or the tail in a fragment block) as
/// the image stores it, named without reading or decompressing anything
/// (see [`FileAt::stored_piece`]). Two pieces of the same length, from
/// images with the same codec and block size, hold the same bytes when
/// both are holes, both are in-memory data with equal bytes, or both are
/// blocks (or tails at the same offset of fragment blocks) whose size
/// words and stored bytes ([`FileAt::stored_bytes`]) are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPiece {
    /// A hole: reads as zeros.
    Hole,
    /// A data block stored at `pos` with size word `word`.
    Block {
        /// Absolute offset of the stored bytes.
        pos: u64,
        /// The size word (size | uncompressed bit).
        word: u32,
    },
    /// The file's tail, `offset` bytes into the fragment block stored at
    /// `pos` with size word `word`.
    Tail {
        /// Absolute offset of the fragment block's stored bytes.
        pos: u64,
        /// The fragment block's size word.
        word: u32,
        /// Where the tail starts in the uncompressed fragment block.
        offset: u32,
    },
    /// Uncompressed bytes held in memory (a block a patch changed).
    Data(Arc<Vec<u8>>),
}

impl FileAt {
    /// The block size the file's pieces are cut at.
    pub fn block_size(&self) -> u32 {
        self.src.block_size
    }

    /// Number of pieces: data blocks, plus the tail if it is in a fragment.
    pub fn pieces(&self) -> usize {
        self.file.blocks.len() + usize::from(self.file.fragment.is_some())
    }

    /// Whether stored bytes of `self` and `other` decompress alike: the
    /// same codec and block size.
    pub fn same_codec(&self, other: &FileAt) -> bool {
        let bs = self.src.block_size;
        bs == other.src.block_size
            && self.src.comp.normalized(bs) == other.src.comp.normalized(other.src.block_size)
    }

    /// Where piece `i` is stored; `None` past the last piece.
    pub fn stored_piece(&self, i: usize) -> Option<StoredPiece> {
        match self.file.blocks.get(i) {
            Some(Piece::Hole) => Some(StoredPiece::Hole),
            Some(Piece::Data(d)) => Some(StoredPiece::Data(Arc::clone(d))),
            Some(Piece::Stored(l)) => Some(StoredPiece::Block {
                pos: l.pos,
                word: l.word,
            }),
            None => {
                let f = self.file.fragment.filter(|_| i == self.file.blocks.len())?;
                Some(StoredPiece::Tail {
                    pos: f.loc.pos,
                    word: f.loc.word,
                    offset: f.offset,
                })
            }
        }
    }

    /// The stored (still compressed) bytes of a block or fragment block
    /// named by [`FileAt::stored_piece`], after checking its size word and
    /// extent. Decompresses nothing.
    pub fn stored_bytes(&self, pos: u64, word: u32) -> Result<Vec<u8>> {
        self.src.raw(BlockLoc { pos, word })
    }
}

/// Data blocks a [`FileStream`] decompresses together, in parallel:
/// bounds its memory to this many blocks.
const READ_AHEAD: usize = 16;

/// Streams a recorded file. Stored blocks are read in order and
/// decompressed a batch at a time on the rayon pool (a base read with
/// other settings than the output's goes through here, block after block).
pub(crate) struct FileStream {
    src: Arc<BlockSource>,
    file: Arc<FileBlocks>,
    next: usize,
    ready: std::collections::VecDeque<Option<Arc<Vec<u8>>>>,
    buf: Option<Arc<Vec<u8>>>,
    /// Bytes of the current piece (zeros when `buf` is `None`).
    len: usize,
    at: usize,
    /// Index of the current piece (for messages).
    cur: usize,
}

impl FileStream {
    pub(crate) fn new(src: Arc<BlockSource>, file: Arc<FileBlocks>) -> Self {
        FileStream {
            src,
            file,
            next: 0,
            ready: std::collections::VecDeque::new(),
            buf: None,
            len: 0,
            at: 0,
            cur: 0,
        }
    }

    fn pieces(&self) -> usize {
        self.file.blocks.len() + usize::from(self.file.fragment.is_some())
    }

    /// Loads the next batch of pieces into `ready`.
    fn read_ahead(&mut self) -> Result<()> {
        use rayon::prelude::*;
        let from = self.next;
        let upto = (from + READ_AHEAD).min(self.file.blocks.len());
        if from >= upto {
            // Only the fragment tail is left.
            self.ready.push_back(self.src.piece(&self.file, from)?);
            return Ok(());
        }
        // Sequential I/O, then parallel decompression.
        let mut raw = Vec::with_capacity(upto - from);
        for (i, p) in self.file.blocks[from..upto].iter().enumerate() {
            raw.push(match p {
                Piece::Stored(loc) => Some((*loc, self.src.raw(*loc)?, from + i)),
                Piece::Hole | Piece::Data(_) => None,
            });
        }
        let src = &self.src;
        let file = &self.file;
        let unpacked: Vec<Result<Option<Vec<u8>>>> = raw
            .into_par_iter()
            .map(|r| match r {
                None => Ok(None),
                Some((loc, bytes, i)) => {
                    let len = file.piece_len(i, src.block_size);
                    src.unpack_raw(loc, bytes, Some(len)).map(Some)
                }
            })
            .collect();
        for (p, u) in self.file.blocks[from..upto].iter().zip(unpacked) {
            self.ready.push_back(match (p, u?) {
                (Piece::Data(d), _) => Some(Arc::clone(d)),
                (_, Some(b)) => Some(Arc::new(b)),
                (_, None) => None,
            });
        }
        Ok(())
    }
}

impl FileStream {
    /// Where the next byte read comes from.
    fn pos(&self) -> u64 {
        let bs = u64::from(self.src.block_size);
        if self.at < self.len {
            self.cur as u64 * bs + self.at as u64
        } else {
            self.next as u64 * bs
        }
    }
}

impl v6build_fstree::HoleRead for FileStream {
    fn skip_hole(&mut self, n: u64) -> io::Result<bool> {
        let bs = u64::from(self.src.block_size);
        let pos = self.pos();
        let in_current_hole = self.at < self.len && self.buf.is_none();
        // The part in the current piece must be a hole too; the piece
        // layout says so for the rest.
        if n == 0
            || (self.at < self.len && !in_current_hole)
            || !self.file.is_hole(pos, n, self.src.block_size)
        {
            return Ok(n == 0);
        }
        let end = pos + n;
        let (piece, within) = (end / bs, end % bs);
        // Pieces already read ahead are dropped up to the new position.
        let upto = if within == 0 { piece } else { piece + 1 };
        let first_queued = self.next as u64;
        let drop = upto.saturating_sub(first_queued);
        for _ in 0..drop {
            if self.ready.pop_front().is_none() {
                break;
            }
        }
        // piece <= number of pieces, a Vec length.
        let piece = usize::try_from(piece).map_err(|_| io::Error::other("file offset"))?;
        if within == 0 {
            self.next = piece;
            self.at = 0;
            self.len = 0;
            self.buf = None;
        } else {
            self.cur = piece;
            self.buf = None;
            self.len = self.file.piece_len(piece, self.src.block_size);
            self.at = within as usize;
            self.next = piece + 1;
        }
        Ok(true)
    }

    fn data_bytes(&self) -> Option<u64> {
        let bs = self.src.block_size;
        let pieces = self.file.blocks.len() + usize::from(self.file.fragment.is_some());
        Some(
            (0..pieces)
                .filter(|&i| !matches!(self.file.blocks.get(i), Some(Piece::Hole)))
                .map(|i| self.file.piece_len(i, bs) as u64)
                .sum(),
        )
    }
}

impl Read for FileStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.len {
            if self.next >= self.pieces() {
                return Ok(0);
            }
            if self.ready.is_empty() {
                self.read_ahead()?;
            }
            let Some(piece) = self.ready.pop_front() else {
                return Err(corrupt(format!("file piece {} could not be read", self.next)).into());
            };
            self.buf = piece;
            self.len = self.file.piece_len(self.next, self.src.block_size);
            self.cur = self.next;
            self.at = 0;
            self.next += 1;
            if let Some(b) = &self.buf
                && b.len() != self.len
            {
                return Err(corrupt(format!(
                    "file piece {} holds {} bytes, the layout says {}",
                    self.cur,
                    b.len(),
                    self.len
                ))
                .into());
            }
        }
        let n = out.len().min(self.len - self.at);
        match &self.buf {
            None => out[..n].fill(0),
            Some(b) => out[..n].copy_from_slice(&b[self.at..self.at + n]),
        }
        self.at += n;
        Ok(n)
    }
}
