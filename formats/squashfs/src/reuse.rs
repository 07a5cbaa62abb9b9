//! Block reuse: what a rebuild copies instead of recompressing.
//!
//! [`BaseBlocks`] remembers, for every regular file a reader named, where
//! its blocks and fragment tail lie in the base image (so the file can be
//! copied or read back without the tree), and, after a hashing scan, the
//! BLAKE3 of every data block's uncompressed bytes. When the writer's
//! compressor, options and block size match the base, a recorded file is
//! copied block for block and a block with known content is copied byte
//! for byte from the base.
//! [`crate::BlockCache`] (from `v6build_compress`) is the same idea
//! backed by the engine's store, keyed by [`crate::BlockKey`]; because a
//! cached block is exactly what compression would have produced, warm and
//! cold caches give identical output.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use v6build_fstree::Digest;

use crate::compress::Compressor;
use crate::error::Result;
use crate::layout::{BlockSource, FileAt, FileBlocks, FileStream, FragRef, Piece};
use crate::source::Source;

/// Where a data block's stored bytes lie in the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLoc {
    /// Absolute offset.
    pub pos: u64,
    /// The size word from the inode (size | uncompressed bit).
    pub word: u32,
}

/// Every data block of a base image, by content, and the block layout of
/// every regular file the reader named.
pub struct BaseBlocks {
    src: Arc<BlockSource>,
    by_hash: HashMap<[u8; 32], BlockLoc>,
    files: HashMap<Digest, Arc<FileBlocks>>,
    /// Fragment blocks already recorded (each is hashed once).
    fragments_seen: std::collections::HashSet<u32>,
    /// The base image opened once more, for the kernel to copy runs of
    /// stored blocks from ([`BaseBlocks::set_copy_source`]).
    copy_src: Option<std::fs::File>,
}

impl fmt::Debug for BaseBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseBlocks")
            .field("comp", &self.src.comp)
            .field("block_size", &self.src.block_size)
            .field("blocks", &self.by_hash.len())
            .field("files", &self.files.len())
            .finish()
    }
}

impl BaseBlocks {
    pub(crate) fn new(src: Arc<Source>, comp: Compressor, block_size: u32) -> Self {
        BaseBlocks {
            src: Arc::new(BlockSource {
                src,
                comp,
                block_size,
                decompressed: AtomicU64::new(0),
                bytes_read: AtomicU64::new(0),
                bytes_decompressed: AtomicU64::new(0),
                fragments: std::sync::Mutex::new(Vec::new()),
            }),
            by_hash: HashMap::new(),
            files: HashMap::new(),
            fragments_seen: std::collections::HashSet::new(),
            copy_src: None,
        }
    }

    /// Gives the writer the base image as a file of its own (opened
    /// again, so its position is not the reader's): a writer whose output
    /// is a file ([`crate::write_to_file`]) then has the kernel copy long
    /// runs of unchanged stored blocks (`copy_file_range`, which XFS and
    /// btrfs may share instead of copy) instead of reading and writing
    /// them. The caller makes sure it is the same file the map was made
    /// from; the block positions are checked against its length.
    pub fn set_copy_source(&mut self, file: std::fs::File) {
        self.copy_src = Some(file);
    }

    /// Reads `len` stored bytes at `pos` (a run of blocks each checked by
    /// [`BaseBlocks::stored_len`]), counted as read.
    pub(crate) fn read_stored(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let v = self.src.src.read_vec(pos, len)?;
        self.src.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        Ok(v)
    }

    pub(crate) fn copy_source(&self) -> Option<&std::fs::File> {
        self.copy_src.as_ref()
    }

    /// Checks a stored block's size word and extent (against the block
    /// size and the image's length) without reading it; returns its
    /// stored length.
    pub(crate) fn stored_len(&self, loc: BlockLoc) -> Result<u64> {
        self.src.check_stored(loc)
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.src.block_size
    }

    /// True the first time fragment block `i` is seen.
    pub(crate) fn first_sight_of_fragment(&mut self, i: u32) -> bool {
        self.fragments_seen.insert(i)
    }

    /// Records the layout of a file named `digest`; the first record of a
    /// digest wins, so the map depends only on the base's own order.
    pub(crate) fn record_file(&mut self, digest: Digest, file: FileBlocks) {
        self.files.entry(digest).or_insert_with(|| Arc::new(file));
    }

    /// Replaces (or adds) the layout named `digest`.
    pub(crate) fn set_file(&mut self, digest: Digest, file: FileBlocks) {
        self.files.insert(digest, Arc::new(file));
    }

    /// The recorded layout of a file with this digest.
    pub(crate) fn file(&self, digest: &Digest) -> Option<&Arc<FileBlocks>> {
        self.files.get(digest)
    }

    pub(crate) fn block_source(&self) -> &BlockSource {
        &self.src
    }

    pub(crate) fn record(&mut self, data: &[u8], loc: BlockLoc) {
        // The first occurrence wins, so the map does not depend on anything
        // but the base image's own order.
        self.by_hash
            .entry(*blake3::hash(data).as_bytes())
            .or_insert(loc);
    }

    /// Number of distinct blocks recorded by content (none after a lazy scan).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no block was recorded by content.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Number of file layouts recorded (patched files included).
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Whether blocks written with `comp`/`block_size` may be copied from here.
    pub fn matches(&self, comp: &Compressor, block_size: u32) -> bool {
        block_size == self.src.block_size
            && comp.normalized(block_size) == self.src.comp.normalized(self.src.block_size)
    }

    pub(crate) fn find(&self, hash: &[u8; 32]) -> Option<BlockLoc> {
        self.by_hash.get(hash).copied()
    }

    /// Whether `digest` names a file recorded in this map.
    pub fn contains_file(&self, digest: &Digest) -> bool {
        self.files.contains_key(digest)
    }

    /// Streams a recorded file's content, decompressing only its own
    /// blocks and its fragment block. `None` if `digest` is not recorded.
    pub fn open_file(&self, digest: &Digest) -> Option<Result<Box<dyn Read + Send + '_>>> {
        let f = self.files.get(digest)?;
        let check = f.check(self.src.block_size);
        Some(check.map(|()| {
            Box::new(FileStream::new(Arc::clone(&self.src), Arc::clone(f)))
                as Box<dyn Read + Send + '_>
        }))
    }

    /// [`BaseBlocks::open_file`] as a [`v6build_fstree::HoleRead`]: the
    /// file's holes are skipped, never read or expanded.
    pub fn open_file_holes(
        &self,
        digest: &Digest,
    ) -> Option<Result<Box<dyn v6build_fstree::HoleRead>>> {
        let f = self.files.get(digest)?;
        let check = f.check(self.src.block_size);
        Some(check.map(|()| {
            Box::new(FileStream::new(Arc::clone(&self.src), Arc::clone(f)))
                as Box<dyn v6build_fstree::HoleRead>
        }))
    }

    /// Random access into a recorded file. `None` if `digest` is not
    /// recorded (or its layout is inconsistent, which a read would refuse).
    pub fn file_at(&self, digest: &Digest) -> Option<FileAt> {
        let f = self.files.get(digest)?;
        f.check(self.src.block_size).ok()?;
        Some(FileAt::new(Arc::clone(&self.src), Arc::clone(f)))
    }

    /// Number of data and fragment blocks decompressed through this map
    /// (by [`BaseBlocks::open_file`], [`FileAt`], patches and the writer)
    /// so far.
    pub fn blocks_decompressed(&self) -> u64 {
        self.src.decompressed.load(Ordering::Relaxed)
    }

    /// Stored bytes of data and fragment blocks read from the base so far
    /// (copied blocks included).
    pub fn bytes_read(&self) -> u64 {
        self.src.bytes_read.load(Ordering::Relaxed)
    }

    /// Bytes the decompressions counted by
    /// [`BaseBlocks::blocks_decompressed`] produced.
    pub fn bytes_decompressed(&self) -> u64 {
        self.src.bytes_decompressed.load(Ordering::Relaxed)
    }
}

/// Magic of a saved [`BaseBlocks`]; `02` added fragment tails and
/// lazily named files.
const SAVE_MAGIC: &[u8; 8] = b"v6sqbb02";

/// Smallest saved file record: digest, size, block count, fragment flag.
const FILE_RECORD_MIN: usize = 32 + 8 + 8 + 1;

impl BaseBlocks {
    /// Encodes the block map (not the image) so the engine can keep it
    /// next to the base's tree: a later rebuild then needs neither to
    /// decompress nor to hash the base's data. Deterministic bytes.
    /// Patched files ([`BaseBlocks::patch_file`]) are not saved.
    pub fn save(&self) -> Vec<u8> {
        let bs = self.src.block_size;
        let mut out = Vec::new();
        out.extend_from_slice(SAVE_MAGIC);
        out.extend_from_slice(&crate::FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&bs.to_le_bytes());
        out.extend_from_slice(&self.src.comp.id().to_le_bytes());
        let opts = self
            .src
            .comp
            .normalized(bs)
            .options_block(bs)
            .unwrap_or_default();
        // Options payloads are at most 8 bytes.
        out.push(opts.len() as u8);
        out.extend_from_slice(&opts);
        let mut blocks: Vec<_> = self.by_hash.iter().collect();
        blocks.sort_unstable_by_key(|(h, _)| **h);
        out.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
        for (h, loc) in blocks {
            out.extend_from_slice(h);
            out.extend_from_slice(&loc.pos.to_le_bytes());
            out.extend_from_slice(&loc.word.to_le_bytes());
        }
        let mut files: Vec<_> = self.files.iter().filter(|(_, f)| !f.is_patched()).collect();
        files.sort_unstable_by_key(|(d, _)| *d.as_bytes());
        out.extend_from_slice(&(files.len() as u64).to_le_bytes());
        for (d, f) in files {
            out.extend_from_slice(d.as_bytes());
            out.extend_from_slice(&f.size.to_le_bytes());
            out.extend_from_slice(&(f.blocks.len() as u64).to_le_bytes());
            for b in &f.blocks {
                let (pos, word) = match b {
                    Piece::Stored(l) => (l.pos, l.word),
                    // Data pieces were filtered out above.
                    Piece::Hole | Piece::Data(_) => (0, 0),
                };
                out.extend_from_slice(&pos.to_le_bytes());
                out.extend_from_slice(&word.to_le_bytes());
            }
            match f.fragment {
                None => out.push(0),
                Some(fr) => {
                    out.push(1);
                    out.extend_from_slice(&fr.index.to_le_bytes());
                    out.extend_from_slice(&fr.offset.to_le_bytes());
                    out.extend_from_slice(&fr.loc.pos.to_le_bytes());
                    out.extend_from_slice(&fr.loc.word.to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes what [`BaseBlocks::save`] wrote for `image`. Refuses a map
    /// saved for other settings or by another codec version, and any
    /// truncated or inconsistent record.
    pub fn load(bytes: &[u8], image: &crate::SquashfsImage) -> Result<Self> {
        use crate::error::corrupt;
        let mut r = Reader { b: bytes };
        if r.take(8)? != SAVE_MAGIC {
            return Err(corrupt("saved block map: bad magic"));
        }
        if r.u32()? != crate::FORMAT_VERSION {
            return Err(corrupt("saved block map: written by another codec version"));
        }
        let block_size = r.u32()?;
        let id = u16::from_le_bytes([r.u8()?, r.u8()?]);
        let n = usize::from(r.u8()?);
        let opts = r.take(n)?;
        let comp = Compressor::from_superblock(id, (n > 0).then_some(opts))?;
        if !(block_size == image.block_size()
            && comp.normalized(block_size) == image.compressor().normalized(block_size))
        {
            return Err(corrupt("saved block map is for other compressor settings"));
        }
        let mut out = BaseBlocks::new(image.source(), image.compressor().clone(), block_size);
        let nb = r.count(44)?;
        for _ in 0..nb {
            let mut h = [0u8; 32];
            h.copy_from_slice(r.take(32)?);
            let pos = r.u64()?;
            let word = r.u32()?;
            out.by_hash.insert(h, BlockLoc { pos, word });
        }
        let nf = r.count(FILE_RECORD_MIN)?;
        for _ in 0..nf {
            let mut d = [0u8; 32];
            d.copy_from_slice(r.take(32)?);
            let size = r.u64()?;
            let k = r.count(12)?;
            let mut blocks = Vec::with_capacity(k);
            for _ in 0..k {
                let pos = r.u64()?;
                let word = r.u32()?;
                blocks.push(if word == 0 {
                    Piece::Hole
                } else {
                    Piece::Stored(BlockLoc { pos, word })
                });
            }
            let fragment = match r.u8()? {
                0 => None,
                1 => Some(FragRef {
                    index: r.u32()?,
                    offset: r.u32()?,
                    loc: BlockLoc {
                        pos: r.u64()?,
                        word: r.u32()?,
                    },
                }),
                f => return Err(corrupt(format!("saved block map: fragment flag {f}"))),
            };
            let file = FileBlocks {
                size,
                blocks,
                fragment,
            };
            file.check(block_size)
                .map_err(|e| corrupt(format!("saved block map: {e}")))?;
            out.files.insert(Digest::from_bytes(d), Arc::new(file));
        }
        if !r.b.is_empty() {
            return Err(corrupt("saved block map: trailing bytes"));
        }
        Ok(out)
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(crate::error::corrupt("saved block map is truncated"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A record count, refused if the records cannot fit in what is left.
    fn count(&mut self, record: usize) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(record).is_some_and(|t| t <= self.b.len()))
            .ok_or_else(|| crate::error::corrupt("saved block map: count past its end"))
    }
}
