//! Reading an image: [`SquashfsImage::open`] validates the superblock and
//! loads the small tables; [`SquashfsImage::read_tree`] walks the
//! directories into a [`Tree`], streaming each file's data block by block
//! into a [`BlobStore`] and, on request, recording every data block for
//! reuse by the writer ([`BaseBlocks`]).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};

use v6build_fstree::{
    BlobStore, Content, Digest, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree,
    TreePath, Xattrs,
};

use crate::compress::Compressor;
use crate::dir::{DirEntry, read_listing};
use crate::error::{Result, corrupt};
use crate::inode::{Inode, InodeBody, NONE32, decode_dev, kind};
use crate::layout::{FileBlocks, FragRef, Piece, ref_digest};
use crate::metadata::{METADATA_SIZE, MetaReader, split_ref};
use crate::reuse::{BaseBlocks, BlockLoc};
use crate::source::{ReadSeek, Source};
use crate::superblock::{INVALID_BLK, RawSuperblock, SUPERBLOCK_SIZE, flags};
use crate::table;
use crate::xattr::XattrTable;

mod file_reader;
use file_reader::FileReader;

/// Deepest directory nesting accepted (bounds recursion on hostile input).
const MAX_DEPTH: usize = 1024;
/// Data-block size word: bit set when the block is stored uncompressed.
pub(crate) const BLOCK_UNCOMPRESSED: u32 = 1 << 24;

/// An open squashfs 4.0 image.
#[derive(Debug)]
pub struct SquashfsImage {
    src: Arc<Source>,
    sb: RawSuperblock,
    comp: Compressor,
    meta: MetaReader,
    ids: Vec<u32>,
    frag_index: Vec<u64>,
    xattrs: Option<XattrTable>,
    xattr_cache: Mutex<HashMap<u32, Xattrs>>,
    frag_cache: Mutex<Vec<(u32, Arc<Vec<u8>>)>>,
}

/// A file's data as the inode describes it.
#[derive(Debug, Clone)]
struct FileData {
    blocks_start: u64,
    block_sizes: Vec<u32>,
    fragment: u32,
    offset: u32,
    file_size: u64,
}

impl SquashfsImage {
    /// Opens an image: reads and validates the superblock, the compressor
    /// options, the id table, the fragment index and the xattr header.
    pub fn open(r: impl Read + Seek + Send + 'static) -> Result<Self> {
        let src = Arc::new(Source::new(Box::new(r) as Box<dyn ReadSeek>)?);
        let mut b = [0u8; SUPERBLOCK_SIZE];
        if src.len() < SUPERBLOCK_SIZE as u64 {
            return Err(corrupt(format!(
                "{}-byte file is too short for a squashfs superblock",
                src.len()
            )));
        }
        src.read_at(0, &mut b)?;
        let sb = RawSuperblock::parse(&b);
        sb.validate(src.len())?;
        let end = sb.bytes_used;

        // The options block is always stored uncompressed; read it raw so
        // an unknown compressor still gets a clear error.
        let options = if sb.flags & flags::COMPRESSOR_OPTIONS != 0 {
            let mut h = [0u8; 2];
            src.read_at(SUPERBLOCK_SIZE as u64, &mut h)?;
            let h = u16::from_le_bytes(h);
            if h & 0x8000 == 0 {
                return Err(crate::error::unsupported(
                    "compressed compressor options block",
                ));
            }
            let n = usize::from(h & 0x7fff);
            if n > 64 {
                return Err(corrupt(format!("compressor options block of {n} bytes")));
            }
            Some(src.read_vec(SUPERBLOCK_SIZE as u64 + 2, n)?)
        } else {
            None
        };
        let comp = Compressor::from_superblock(sb.compression, options.as_deref())?;
        if matches!(comp, Compressor::Lzo { .. } | Compressor::Lzma) {
            return Err(crate::error::unsupported(format!(
                "images compressed with {comp:?} (gzip, xz, zstd and lz4 are read)"
            )));
        }
        let meta = MetaReader::new(Arc::clone(&src), comp.clone());

        let id_index = table::read_index(
            &src,
            "id table",
            sb.id_table_start,
            u64::from(sb.no_ids),
            4,
            end,
        )?;
        let mut ids = Vec::with_capacity(usize::from(sb.no_ids));
        for i in 0..u64::from(sb.no_ids) {
            let e: [u8; 4] = table::read_entry(&meta, "id", &id_index, sb.id_table_start, i)?;
            ids.push(u32::from_le_bytes(e));
        }

        let frag_index = if sb.fragments == 0 {
            Vec::new()
        } else {
            if sb.fragment_table_start == INVALID_BLK {
                return Err(corrupt("fragments counted but no fragment table"));
            }
            table::read_index(
                &src,
                "fragment table",
                sb.fragment_table_start,
                u64::from(sb.fragments),
                16,
                end,
            )?
        };

        let xattrs = if sb.xattr_id_table_start == INVALID_BLK {
            None
        } else {
            Some(XattrTable::open(&meta, sb.xattr_id_table_start, end)?)
        };

        Ok(SquashfsImage {
            src,
            sb,
            comp,
            meta,
            ids,
            frag_index,
            xattrs,
            xattr_cache: Mutex::new(HashMap::new()),
            frag_cache: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn source(&self) -> Arc<Source> {
        Arc::clone(&self.src)
    }

    /// The raw superblock.
    pub fn superblock(&self) -> &RawSuperblock {
        &self.sb
    }

    /// The compressor and its options.
    pub fn compressor(&self) -> &Compressor {
        &self.comp
    }

    /// The data block size.
    pub fn block_size(&self) -> u32 {
        self.sb.block_size
    }

    /// Superblock creation time.
    pub fn mkfs_time(&self) -> u32 {
        self.sb.mkfs_time
    }

    /// Reads the whole tree, putting file contents into `blobs`.
    pub fn read_tree(&self, blobs: &dyn BlobStore) -> Result<Tree> {
        self.walk(Contents::Hash(blobs), None)
    }

    /// Reads the tree and records every data block for block reuse.
    pub fn read_tree_and_blocks(&self, blobs: &dyn BlobStore) -> Result<(Tree, BaseBlocks)> {
        let mut base = self.new_base();
        let tree = self.walk(Contents::Hash(blobs), Some(&mut base))?;
        Ok((tree, base))
    }

    /// The tree with every regular file named by a reference digest, plus
    /// the block map. Reads only metadata (inodes, directories, ids,
    /// xattrs, the fragment table); decompresses no data block and no
    /// fragment block.
    ///
    /// A non-empty file's digest is not a hash of its content but of where
    /// its content lies: BLAKE3 over `"v6build squashfs ref v1\0"`, the
    /// length of `source_id` (u64 LE), `source_id`, then the file layout:
    /// size (u64 LE), block count (u64 LE), each block's start and size
    /// word (u64 LE, u32 LE; both 0 for a hole), and the fragment tail as a
    /// byte 0 (none) or a byte 1 followed by fragment index and offset
    /// (u32 LE each). Inodes mksquashfs deduplicated to the same blocks
    /// therefore share a digest. `source_id` must identify the image's
    /// bytes (the engine passes the image's content digest), so reference
    /// digests of different images never collide. Empty files get the
    /// real digest of empty content. Every file is readable through
    /// [`BaseBlocks::open_file`] / [`BaseBlocks::file_at`], and the writer
    /// copies its blocks when the settings match.
    pub fn read_tree_lazy(&self, source_id: &[u8]) -> Result<(Tree, BaseBlocks)> {
        let mut base = self.new_base();
        let tree = self.walk(Contents::Lazy(source_id), Some(&mut base))?;
        Ok((tree, base))
    }

    fn new_base(&self) -> BaseBlocks {
        BaseBlocks::new(Arc::clone(&self.src), self.comp.clone(), self.sb.block_size)
    }

    fn walk(&self, contents: Contents<'_>, base: Option<&mut BaseBlocks>) -> Result<Tree> {
        let mut w = Walk {
            img: self,
            contents,
            base,
            dirs_seen: HashSet::new(),
            leaves: HashMap::new(),
            numbers: HashSet::new(),
        };
        let root = self.inode(self.sb.root_inode)?;
        let tree = w.dir(self.sb.root_inode, &root, 0)?;
        let found = w.dirs_seen.len() + w.leaves.len();
        if found as u64 != u64::from(self.sb.inodes) {
            return Err(corrupt(format!(
                "inode count mismatch: the superblock says {}, the directory tree reaches {found}",
                self.sb.inodes
            )));
        }
        Ok(tree)
    }

    /// Reads the inode at reference `r`.
    pub fn inode(&self, r: u64) -> Result<Inode> {
        let (blk, off) = split_ref(r);
        if off >= METADATA_SIZE {
            return Err(corrupt(format!("inode reference offset {off} over 8191")));
        }
        let pos = self
            .sb
            .inode_table_start
            .checked_add(blk)
            .ok_or_else(|| corrupt("inode reference overflows"))?;
        let mut c = self.meta.cursor(pos, off, self.sb.directory_table_start);
        let ino = Inode::parse(&mut c, self.sb.block_size)?;
        if ino.header.inode_number == 0 || ino.header.inode_number > self.sb.inodes {
            return Err(corrupt(format!(
                "inode number {} outside 1..={}",
                ino.header.inode_number, self.sb.inodes
            )));
        }
        Ok(ino)
    }

    /// The entries of a directory inode.
    pub fn list(&self, dir: &Inode) -> Result<Vec<DirEntry>> {
        let InodeBody::Dir {
            start_block,
            offset,
            file_size,
            ..
        } = dir.body
        else {
            return Err(corrupt("listing a non-directory"));
        };
        read_listing(
            &self.meta,
            self.sb.directory_table_start,
            self.sb.bytes_used,
            start_block,
            offset,
            file_size,
        )
    }

    /// Finds the inode at `path` (without reading the rest of the tree).
    pub fn lookup(&self, path: &TreePath) -> Result<Option<Inode>> {
        let mut cur = self.inode(self.sb.root_inode)?;
        for name in path.components() {
            if !matches!(cur.body, InodeBody::Dir { .. }) {
                return Ok(None);
            }
            let entries = self.list(&cur)?;
            match entries.iter().find(|e| e.name == name.as_bytes()) {
                Some(e) => cur = self.inode(e.inode_ref)?,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Streams the content of a regular-file inode, block by block.
    pub fn file_reader(&self, inode: &Inode) -> Result<impl Read + '_> {
        let InodeBody::File {
            blocks_start,
            fragment,
            offset,
            file_size,
            ref block_sizes,
            ..
        } = inode.body
        else {
            return Err(corrupt("reading a non-file as a file"));
        };
        Ok(FileReader::new(
            self,
            FileData {
                blocks_start,
                block_sizes: block_sizes.clone(),
                fragment,
                offset,
                file_size,
            },
            None,
        ))
    }

    fn id(&self, i: u16) -> Result<u32> {
        self.ids.get(usize::from(i)).copied().ok_or_else(|| {
            corrupt(format!(
                "id index {i} out of range (the id table has {} entries)",
                self.ids.len()
            ))
        })
    }

    fn xattrs_of(&self, i: u32) -> Result<Xattrs> {
        if i == NONE32 {
            return Ok(Xattrs::new());
        }
        let Some(t) = &self.xattrs else {
            return Err(corrupt(format!(
                "xattr index {i} out of range (the image has no xattr table)"
            )));
        };
        if let Ok(c) = self.xattr_cache.lock()
            && let Some(x) = c.get(&i)
        {
            return Ok(x.clone());
        }
        let x = t.get(&self.meta, i)?;
        if let Ok(mut c) = self.xattr_cache.lock() {
            if c.len() > 65536 {
                c.clear();
            }
            c.insert(i, x.clone());
        }
        Ok(x)
    }

    fn meta_of(&self, ino: &Inode) -> Result<Meta> {
        Ok(Meta {
            perm: ino.header.mode & Meta::PERM_MASK,
            uid: self.id(ino.header.uid)?,
            gid: self.id(ino.header.guid)?,
            mtime: Timestamp::secs(i64::from(ino.header.mtime)),
            xattrs: self.xattrs_of(ino.xattr())?,
        })
    }

    /// (start, size word) of fragment block `i`.
    fn fragment_entry(&self, i: u32) -> Result<(u64, u32)> {
        if i >= self.sb.fragments {
            return Err(corrupt(format!(
                "fragment index {i} out of range ({} fragments)",
                self.sb.fragments
            )));
        }
        let e: [u8; 16] = table::read_entry(
            &self.meta,
            "fragment",
            &self.frag_index,
            self.sb.fragment_table_start,
            u64::from(i),
        )?;
        Ok((
            crate::superblock::le64(&e, 0),
            crate::superblock::le32(&e, 8),
        ))
    }

    fn fragment_block(&self, i: u32) -> Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.frag_cache.lock()
            && let Some((_, b)) = c.iter().find(|(j, _)| *j == i)
        {
            return Ok(Arc::clone(b));
        }
        let (start, word) = self.fragment_entry(i)?;
        let data = Arc::new(self.data_block(start, word, None)?);
        if let Ok(mut c) = self.frag_cache.lock() {
            if c.len() >= 8 {
                c.remove(0);
            }
            c.push((i, Arc::clone(&data)));
        }
        Ok(data)
    }

    /// Reads one data or fragment block. `expect` is the exact
    /// uncompressed length when known (data blocks), else it is at most
    /// the block size.
    fn data_block(&self, pos: u64, word: u32, expect: Option<usize>) -> Result<Vec<u8>> {
        let raw = self.raw_block(pos, word)?;
        self.unpack_block(pos, word, &raw, expect)
    }

    /// The stored bytes of a block, after checking its size word.
    fn raw_block(&self, pos: u64, word: u32) -> Result<Vec<u8>> {
        let bs = self.sb.block_size as usize;
        let size = (word & !BLOCK_UNCOMPRESSED) as usize;
        if word & !(BLOCK_UNCOMPRESSED | 0x00ff_ffff) != 0 || size > bs {
            return Err(corrupt(format!(
                "data block size word {word:#x} at {pos} exceeds the block size {bs}"
            )));
        }
        if pos
            .checked_add(size as u64)
            .is_none_or(|e| e > self.sb.bytes_used)
        {
            return Err(corrupt(format!(
                "data block at {pos} (+{size}) runs past the end of the image"
            )));
        }
        self.src.read_vec(pos, size)
    }

    /// Decompresses (or takes as is) the stored bytes of a block.
    fn unpack_block(
        &self,
        pos: u64,
        word: u32,
        raw: &[u8],
        expect: Option<usize>,
    ) -> Result<Vec<u8>> {
        let bs = self.sb.block_size as usize;
        let data = if word & BLOCK_UNCOMPRESSED != 0 {
            raw.to_vec()
        } else {
            self.comp
                .decompress(raw, expect.unwrap_or(bs))
                .map_err(|e| corrupt(format!("data block at {pos}: {e}")))?
        };
        if let Some(n) = expect
            && data.len() != n
        {
            return Err(corrupt(format!(
                "data block at {pos} holds {} bytes, the inode implies {n}",
                data.len()
            )));
        }
        Ok(data)
    }
}

/// How a walk names file contents.
#[derive(Clone, Copy)]
enum Contents<'a> {
    /// Stream every file into the store, named by its BLAKE3.
    Hash(&'a dyn BlobStore),
    /// Name every file by a reference digest over this source id and its
    /// layout; read no data.
    Lazy(&'a [u8]),
}

/// State of one tree walk.
struct Walk<'a> {
    img: &'a SquashfsImage,
    contents: Contents<'a>,
    base: Option<&'a mut BaseBlocks>,
    dirs_seen: HashSet<u64>,
    leaves: HashMap<u64, Arc<Leaf>>,
    numbers: HashSet<u32>,
}

impl Walk<'_> {
    fn number(&mut self, ino: &Inode) -> Result<()> {
        if !self.numbers.insert(ino.header.inode_number) {
            return Err(corrupt(format!(
                "inode number {} is used by two different inodes",
                ino.header.inode_number
            )));
        }
        Ok(())
    }

    /// The tail of `fd` in a fragment block, if it has one.
    fn fragment_of(&self, fd: &FileData) -> Result<Option<FragRef>> {
        let bs = u64::from(self.img.sb.block_size);
        let tail = fd.file_size % bs;
        if fd.fragment == NONE32 || tail == 0 {
            return Ok(None);
        }
        let (pos, word) = self.img.fragment_entry(fd.fragment)?;
        if u64::from(fd.offset) + tail > bs {
            return Err(corrupt(format!(
                "a {tail}-byte file tail at offset {} does not fit fragment {} (block size {bs})",
                fd.offset, fd.fragment
            )));
        }
        Ok(Some(FragRef {
            index: fd.fragment,
            offset: fd.offset,
            loc: BlockLoc { pos, word },
        }))
    }

    /// Streams a file into `blobs`, recording its blocks in the base map.
    fn hashed_file(&mut self, fd: FileData, blobs: &dyn BlobStore) -> Result<Content> {
        let frag = if self.base.is_some() {
            self.fragment_of(&fd)?
        } else {
            None
        };
        let mut rd = FileReader::new(self.img, fd, self.base.as_deref_mut());
        let res = blobs.put_reader(&mut rd);
        if let Some(err) = rd.error.take() {
            return Err(err);
        }
        let (digest, size) = res?;
        let locs = std::mem::take(&mut rd.locs);
        drop(rd);
        if let Some(base) = self.base.as_deref_mut() {
            let file = FileBlocks {
                size,
                blocks: locs
                    .into_iter()
                    .map(|l| l.map_or(Piece::Hole, Piece::Stored))
                    .collect(),
                fragment: frag,
            };
            if file.check(self.img.sb.block_size).is_ok() {
                base.record_file(digest, file);
            }
        }
        Ok(Content { digest, size })
    }

    /// Names a file by its layout without reading any of its data.
    fn lazy_file(&mut self, fd: FileData, source_id: &[u8]) -> Result<Content> {
        if fd.file_size == 0 {
            // Recorded too, so every file of the tree opens through the map.
            let digest = Digest::of(b"");
            if let Some(base) = self.base.as_deref_mut() {
                base.record_file(
                    digest,
                    FileBlocks {
                        size: 0,
                        blocks: Vec::new(),
                        fragment: None,
                    },
                );
            }
            return Ok(Content { digest, size: 0 });
        }
        let bs = self.img.sb.block_size;
        let mut pos = fd.blocks_start;
        let mut locs = Vec::with_capacity(fd.block_sizes.len());
        for &word in &fd.block_sizes {
            let size = u64::from(word & !BLOCK_UNCOMPRESSED);
            if word & !(BLOCK_UNCOMPRESSED | 0x00ff_ffff) != 0 || size > u64::from(bs) {
                return Err(corrupt(format!(
                    "data block size word {word:#x} at {pos} exceeds the block size {bs}"
                )));
            }
            if size == 0 {
                locs.push(None);
                continue;
            }
            if pos
                .checked_add(size)
                .is_none_or(|e| e > self.img.sb.bytes_used)
            {
                return Err(corrupt(format!(
                    "data block at {pos} (+{size}) runs past the end of the image"
                )));
            }
            locs.push(Some(BlockLoc { pos, word }));
            pos += size;
        }
        let frag = self.fragment_of(&fd)?;
        let file = FileBlocks {
            size: fd.file_size,
            blocks: locs
                .iter()
                .map(|l| l.map_or(Piece::Hole, Piece::Stored))
                .collect(),
            fragment: frag,
        };
        file.check(bs)?;
        let digest = ref_digest(
            source_id,
            fd.file_size,
            &locs,
            frag.map(|f| (f.index, f.offset)),
        );
        if let Some(base) = self.base.as_deref_mut() {
            base.record_file(digest, file);
        }
        Ok(Content {
            digest,
            size: fd.file_size,
        })
    }

    fn dir(&mut self, r: u64, ino: &Inode, depth: usize) -> Result<Directory> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!(
                "directories nested deeper than {MAX_DEPTH}"
            )));
        }
        if !matches!(ino.body, InodeBody::Dir { .. }) {
            return Err(corrupt("root inode is not a directory"));
        }
        if !self.dirs_seen.insert(r) {
            return Err(corrupt(format!(
                "directory loop: directory inode {} is reached twice",
                ino.header.inode_number
            )));
        }
        self.number(ino)?;
        let mut dir = Directory::new(self.img.meta_of(ino)?);
        for e in self.img.list(ino)? {
            let name = Name::new(e.name.clone()).map_err(|err| {
                corrupt(format!(
                    "bad name {:?} in directory inode {}: {err}",
                    String::from_utf8_lossy(&e.name),
                    ino.header.inode_number
                ))
            })?;
            let node = self.entry(&e, depth)?;
            if dir.put(name, node).is_some() {
                return Err(corrupt(format!(
                    "name {:?} appears twice in directory inode {}",
                    String::from_utf8_lossy(&e.name),
                    ino.header.inode_number
                )));
            }
        }
        Ok(dir)
    }

    fn entry(&mut self, e: &DirEntry, depth: usize) -> Result<Node> {
        if let Some(l) = self.leaves.get(&e.inode_ref) {
            return Ok(Node::Leaf(Arc::clone(l)));
        }
        let ino = self.img.inode(e.inode_ref)?;
        if ino.basic_type() != e.kind {
            return Err(corrupt(format!(
                "directory entry {:?} says type {}, its inode is type {}",
                String::from_utf8_lossy(&e.name),
                e.kind,
                ino.header.inode_type
            )));
        }
        if ino.header.inode_number != e.inode_number {
            return Err(corrupt(format!(
                "directory entry {:?} says inode {}, the inode says {}",
                String::from_utf8_lossy(&e.name),
                e.inode_number,
                ino.header.inode_number
            )));
        }
        if e.kind == kind::DIR {
            return Ok(Node::Dir(self.dir(e.inode_ref, &ino, depth + 1)?));
        }
        self.number(&ino)?;
        let meta = self.img.meta_of(&ino)?;
        let kind = match ino.body {
            InodeBody::File {
                blocks_start,
                fragment,
                offset,
                file_size,
                block_sizes,
                ..
            } => {
                let fd = FileData {
                    blocks_start,
                    block_sizes,
                    fragment,
                    offset,
                    file_size,
                };
                let content = match self.contents {
                    Contents::Hash(blobs) => self.hashed_file(fd, blobs)?,
                    Contents::Lazy(id) => self.lazy_file(fd, id)?,
                };
                if content.size != file_size {
                    return Err(corrupt(format!(
                        "file inode {} yields {} bytes, its size is {file_size}",
                        ino.header.inode_number, content.size
                    )));
                }
                LeafKind::Regular(content)
            }
            InodeBody::Symlink { target, .. } => LeafKind::Symlink(target),
            InodeBody::Dev { block, rdev, .. } => {
                let (major, minor) = decode_dev(rdev);
                if block {
                    LeafKind::BlockDevice { major, minor }
                } else {
                    LeafKind::CharDevice { major, minor }
                }
            }
            InodeBody::Ipc { socket, .. } => {
                if socket {
                    LeafKind::Socket
                } else {
                    LeafKind::Fifo
                }
            }
            InodeBody::Dir { .. } => {
                return Err(corrupt("directory inode under a non-directory entry"));
            }
        };
        let leaf = Arc::new(Leaf { meta, kind });
        self.leaves.insert(e.inode_ref, Arc::clone(&leaf));
        Ok(Node::Leaf(leaf))
    }
}
