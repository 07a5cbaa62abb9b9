//! The opened filesystem: superblock + group descriptors over a [`ReadAt`],
//! and the reads everything else is built from (inodes, block maps,
//! directory entries, xattrs, file contents), each validated as it is read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Digest, Directory, Leaf, LeafKind, Meta, Name, Node, Tree, TreePath, Xattrs,
};

use crate::dir::{self, ftype};
use crate::error::{Error, Result, corrupt, unsupported};
use crate::extent::{self, Mapping, Walk};
use crate::group::{self, GroupDesc};
use crate::inode::{self, EXTENTS_FL, Inode};
use crate::readat::ReadAt;
use crate::superblock::{SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock};
use crate::{blockmap, xattr};

/// Deepest directory nesting the reader follows.
pub const MAX_DEPTH: usize = 512;

/// A file may be at most this many times larger than the whole image
/// (the rest being holes) before the reader refuses it.
pub const MAX_SPARSE_FACTOR: u64 = 64;

/// Map from each path in a tree read from an image to its inode number.
pub type InodeMap = BTreeMap<TreePath, u32>;

/// An opened ext2/3/4 image.
#[derive(Debug)]
pub struct Ext4<R> {
    r: R,
    pub(crate) sb: Superblock,
    pub(crate) groups: Vec<GroupDesc>,
}

/// One entry of a directory, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u32,
    /// `file_type` byte (0 without the filetype feature).
    pub file_type: u8,
}

/// The feature words of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// `s_feature_compat`
    pub compat: u32,
    /// `s_feature_incompat`
    pub incompat: u32,
    /// `s_feature_ro_compat`
    pub ro_compat: u32,
}

impl Features {
    /// The feature names as `mke2fs -O` / `dumpe2fs` spell them, in
    /// compat, incompat, ro_compat order; unknown bits as `FEATURE_Xn`.
    pub fn names(&self) -> Vec<String> {
        const COMPAT: &[&str] = &[
            "dir_prealloc",
            "imagic_inodes",
            "has_journal",
            "ext_attr",
            "resize_inode",
            "dir_index",
            "lazy_bg",
            "snapshot_bitmap",
            "sparse_super2",
            "fast_commit",
            "stable_inodes",
            "orphan_file",
        ];
        const INCOMPAT: &[&str] = &[
            "compression",
            "filetype",
            "needs_recovery",
            "journal_dev",
            "meta_bg",
            "",
            "extent",
            "64bit",
            "mmp",
            "flex_bg",
            "ea_inode",
            "",
            "dirdata",
            "metadata_csum_seed",
            "large_dir",
            "inline_data",
            "encrypt",
            "casefold",
        ];
        const RO: &[&str] = &[
            "sparse_super",
            "large_file",
            "btree_dir",
            "huge_file",
            "uninit_bg",
            "dir_nlink",
            "extra_isize",
            "snapshot",
            "quota",
            "bigalloc",
            "metadata_csum",
            "replica",
            "read-only",
            "project",
            "shared_blocks",
            "verity",
            "orphan_present",
        ];
        let mut out = Vec::new();
        for (bits, table, tag) in [
            (self.compat, COMPAT, 'C'),
            (self.incompat, INCOMPAT, 'I'),
            (self.ro_compat, RO, 'R'),
        ] {
            for i in 0..32 {
                if bits & (1 << i) != 0 {
                    match table.get(i) {
                        Some(n) if !n.is_empty() => out.push((*n).to_string()),
                        _ => out.push(format!("FEATURE_{tag}{i}")),
                    }
                }
            }
        }
        out
    }
}

impl<R: ReadAt> Ext4<R> {
    /// Opens an image: reads and validates the superblock and group descriptors.
    pub fn open(r: R) -> Result<Self> {
        let len = r.len();
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        r.read_at(SUPERBLOCK_OFFSET, &mut raw)
            .map_err(|e| corrupt(format!("cannot read the superblock: {e}")))?;
        let sb = Superblock::parse(&raw, len)?;
        let table_len = usize::try_from(sb.gdt_blocks() * u64::from(sb.block_size))
            .map_err(|_| corrupt("group descriptor table too large"))?;
        let mut table = vec![0u8; table_len];
        r.read_at(group::gdt_offset(&sb), &mut table)
            .map_err(|e| corrupt(format!("cannot read the group descriptor table: {e}")))?;
        let groups = group::parse_all(&sb, &table)?;
        Ok(Ext4 { r, sb, groups })
    }

    /// The validated superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The group descriptors.
    pub fn group_descs(&self) -> &[GroupDesc] {
        &self.groups
    }

    /// The feature words.
    pub fn features(&self) -> Features {
        Features {
            compat: self.sb.feature_compat,
            incompat: self.sb.feature_incompat,
            ro_compat: self.sb.feature_ro_compat,
        }
    }

    /// The underlying reader.
    pub fn reader(&self) -> &R {
        &self.r
    }

    /// Consumes the filesystem, returning the reader.
    pub fn into_reader(self) -> R {
        self.r
    }

    /// Reads one whole block.
    pub fn read_block(&self, b: u64) -> Result<Vec<u8>> {
        if b >= self.sb.blocks_count {
            return Err(corrupt(format!(
                "block {b} is beyond the end of the filesystem ({} blocks)",
                self.sb.blocks_count
            )));
        }
        let bs = u64::from(self.sb.block_size);
        let mut buf = vec![0u8; self.sb.block_size as usize];
        self.r.read_at(b * bs, &mut buf)?;
        Ok(buf)
    }

    /// Byte offset of inode `ino`'s record.
    pub fn inode_offset(&self, ino: u32) -> Result<u64> {
        if ino == 0 || ino > self.sb.inodes_count() {
            return Err(corrupt(format!("inode number {ino} is out of range")));
        }
        let idx = ino - 1;
        let g = idx / self.sb.inodes_per_group;
        let i = idx % self.sb.inodes_per_group;
        let gd = &self.groups[g as usize];
        Ok(gd.inode_table() * u64::from(self.sb.block_size)
            + u64::from(i) * u64::from(self.sb.inode_size))
    }

    /// Reads inode `ino`, checking its checksum under metadata_csum.
    pub fn inode(&self, ino: u32) -> Result<Inode> {
        let off = self.inode_offset(ino)?;
        let idx = ino - 1;
        let g = (idx / self.sb.inodes_per_group) as usize;
        let i = idx % self.sb.inodes_per_group;
        if self.sb.has_group_csum() {
            let gd = &self.groups[g];
            if gd.flags() & group::INODE_UNINIT != 0
                || i >= self.sb.inodes_per_group.saturating_sub(gd.itable_unused())
            {
                return Err(corrupt(format!(
                    "inode {ino} is in the unused part of group {g}'s inode table"
                )));
            }
        }
        let mut raw = vec![0u8; usize::from(self.sb.inode_size)];
        self.r.read_at(off, &mut raw)?;
        let ino_rec = Inode { ino, raw };
        let extra = usize::from(ino_rec.extra_isize());
        if self.sb.inode_size > 128
            && (128 + extra > usize::from(self.sb.inode_size) || extra % 4 != 0)
        {
            return Err(corrupt(format!(
                "inode {ino}: i_extra_isize {extra} is invalid"
            )));
        }
        if self.sb.has_metadata_csum() {
            let stored = ino_rec.checksum();
            let computed = ino_rec.compute_checksum(&self.sb);
            if stored != computed {
                return Err(Error::Checksum {
                    what: format!("inode {ino}"),
                    stored,
                    computed,
                });
            }
        }
        Ok(ino_rec)
    }

    pub(crate) fn walk_ctx<'a>(
        &'a self,
        ino: &Inode,
        read_block: &'a dyn Fn(u64) -> Result<Vec<u8>>,
    ) -> Walk<'a> {
        Walk {
            read_block,
            blocks_count: self.sb.blocks_count,
            first_data_block: u64::from(self.sb.first_data_block),
            csum_seed: self.sb.has_metadata_csum().then(|| ino.csum_seed(&self.sb)),
            ino: ino.ino,
        }
    }

    /// The block map of a file, directory or slow symlink.
    pub fn mapping(&self, ino: &Inode) -> Result<Mapping> {
        let f = ino.flags();
        if f & inode::INLINE_DATA_FL != 0 {
            return Err(unsupported(format!("inode {}: inline data", ino.ino)));
        }
        if f & inode::ENCRYPT_FL != 0 {
            return Err(unsupported(format!("inode {}: encrypted", ino.ino)));
        }
        let rb = |b: u64| self.read_block(b);
        let w = self.walk_ctx(ino, &rb);
        if f & EXTENTS_FL != 0 {
            extent::read(&w, ino.i_block())
        } else {
            let nblocks = ino.size().div_ceil(u64::from(self.sb.block_size));
            blockmap::read(&w, ino.i_block(), nblocks, self.sb.block_size)
        }
    }

    /// The entries of directory `ino`, without `.` and `..`, in on-disk order.
    ///
    /// `.` and `..` are accepted only where ext4 puts them, as the first two
    /// entries of the directory's first block, `.` naming the directory
    /// itself and `..` a directory; an entry with either name anywhere else
    /// (say, a regular file called `..`) makes the image corrupt rather than
    /// being dropped without a word.
    pub fn dir_entries(&self, ino: &Inode) -> Result<Vec<DirEntry>> {
        Ok(self.dir_entries_and_parent(ino)?.0)
    }

    /// [`Ext4::dir_entries`], and the inode the directory's `..` names
    /// (`None` for a directory without blocks).
    pub fn dir_entries_and_parent(&self, ino: &Inode) -> Result<(Vec<DirEntry>, Option<u32>)> {
        if !ino.is_dir() {
            return Err(corrupt(format!("inode {} is not a directory", ino.ino)));
        }
        let m = self.mapping(ino)?;
        let seed = self.sb.has_metadata_csum().then(|| ino.csum_seed(&self.sb));
        let mut out = Vec::new();
        let mut parent = None;
        let bs = u64::from(self.sb.block_size);
        let nblocks = ino.size().div_ceil(bs);
        let filetype = self.sb.has_filetype();
        for r in &m.runs {
            for k in 0..u64::from(r.len) {
                let logical = u64::from(r.logical) + k;
                if logical >= nblocks {
                    break;
                }
                let b = self.read_block(r.physical + k)?;
                let what = format!("directory inode {} block {}", ino.ino, r.physical + k);
                if let Some(s) = seed {
                    dir::verify_tail(&b, s, &what)?;
                }
                let entries = dir::parse_block(&b, filetype, seed.is_some(), &what)?;
                for (n, e) in entries.into_iter().enumerate() {
                    let dots = match (logical, n) {
                        (0, 0) => Some(&b"."[..]),
                        (0, 1) => Some(&b".."[..]),
                        _ => None,
                    };
                    if let Some(want) = dots {
                        if e.name != want {
                            return Err(corrupt(format!(
                                "{what}: entry {n} is {:?}, where ext4 keeps {:?}",
                                String::from_utf8_lossy(&e.name),
                                String::from_utf8_lossy(want)
                            )));
                        }
                        if filetype && e.file_type != ftype::DIR {
                            return Err(corrupt(format!(
                                "{what}: the {:?} entry has file type {}, not a directory",
                                String::from_utf8_lossy(want),
                                e.file_type
                            )));
                        }
                        if n == 0 && e.ino != ino.ino {
                            return Err(corrupt(format!(
                                "{what}: \".\" names inode {}, not the directory itself",
                                e.ino
                            )));
                        }
                        if n == 1 {
                            parent = Some(e.ino);
                        }
                        continue;
                    }
                    if e.ino == 0 {
                        continue;
                    }
                    if e.name == b"." || e.name == b".." {
                        return Err(corrupt(format!(
                            "{what}: a second entry named {:?} (inode {}); only the first two entries of a directory may be . and ..",
                            String::from_utf8_lossy(&e.name),
                            e.ino
                        )));
                    }
                    out.push(DirEntry {
                        name: e.name,
                        ino: e.ino,
                        file_type: e.file_type,
                    });
                }
            }
        }
        Ok((out, parent))
    }

    /// All xattrs of an inode (in-inode and external block).
    pub fn xattrs(&self, ino: &Inode) -> Result<Xattrs> {
        let mut x = Xattrs::new();
        let what = format!("inode {}", ino.ino);
        let start = 128 + usize::from(ino.extra_isize());
        if ino.raw.len() > start {
            xattr::parse_ibody(&ino.raw[start..], &what, &mut x)?;
        }
        let b = ino.file_acl();
        if b != 0 {
            let data = self.read_block(b)?;
            let seed = self.sb.has_metadata_csum().then_some(self.sb.csum_seed);
            xattr::parse_block(&data, b, seed, &what, &mut x)?;
        }
        Ok(x)
    }

    /// Metadata of an inode as the tree model carries it.
    pub fn meta(&self, ino: &Inode) -> Result<Meta> {
        Ok(Meta {
            perm: ino.mode() & Meta::PERM_MASK,
            uid: ino.uid(),
            gid: ino.gid(),
            mtime: ino.mtime(),
            xattrs: self.xattrs(ino)?,
        })
    }

    /// A regular file's mapping, for a reader: refused when the file claims
    /// more than [`MAX_SPARSE_FACTOR`] times the image (at least 1 GiB). A
    /// hostile inode can claim an exabyte of holes; reading that would
    /// never end. Real sparse files stay far below this bound.
    fn readable_mapping(&self, ino: &Inode) -> Result<Mapping> {
        let m = self.mapping(ino)?;
        let limit = self.r.len().saturating_mul(MAX_SPARSE_FACTOR).max(1 << 30);
        if ino.size() > limit {
            return Err(unsupported(format!(
                "inode {}: size {} is more than {MAX_SPARSE_FACTOR}x the image; refusing to expand it",
                ino.ino,
                ino.size()
            )));
        }
        Ok(m)
    }

    /// A reader over a regular file's contents (holes and uninit extents read as zeros).
    pub fn open_file(&self, ino: &Inode) -> Result<FileReader<'_, R>> {
        let m = self.readable_mapping(ino)?;
        Ok(FileReader {
            fs: self,
            runs: m.runs,
            size: ino.size(),
            pos: 0,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The blake3 content digest of a regular file, without storing it.
    pub fn content_digest(&self, ino: &Inode) -> Result<Content> {
        let mut rd = self.open_file(ino)?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = rd.read(&mut buf).map_err(unwrap_io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Content {
            digest: Digest::from(h.finalize()),
            size: ino.size(),
        })
    }

    /// Whether a symlink keeps its target in `i_block` (no data block).
    pub fn is_fast_symlink(&self, ino: &Inode) -> bool {
        let xattr_blocks = if ino.file_acl() != 0 {
            u64::from(self.sb.block_size / 512)
        } else {
            0
        };
        ino.file_type() == 0o120000
            && ino.flags() & (EXTENTS_FL | inode::INLINE_DATA_FL) == 0
            && ino.size() < 60
            && ino.blocks_512(&self.sb).saturating_sub(xattr_blocks) == 0
    }

    /// Whether the inode's `i_block` is a block map (files, dirs, slow symlinks).
    pub fn has_block_map(&self, ino: &Inode) -> bool {
        match ino.file_type() {
            0o100000 | 0o040000 => true,
            0o120000 => !self.is_fast_symlink(ino),
            _ => false,
        }
    }

    /// A symlink's target.
    pub fn symlink_target(&self, ino: &Inode) -> Result<Vec<u8>> {
        let size = usize::try_from(ino.size()).map_err(|_| corrupt("symlink too long"))?;
        if size > self.sb.block_size as usize {
            return Err(corrupt(format!(
                "inode {}: symlink of {size} bytes",
                ino.ino
            )));
        }
        if self.is_fast_symlink(ino) {
            return Ok(ino.i_block()[..size].to_vec());
        }
        let mut v = Vec::new();
        self.open_file(ino)?
            .read_to_end(&mut v)
            .map_err(unwrap_io)?;
        Ok(v)
    }

    /// The leaf kind of a non-directory inode; regular contents go into `blobs`.
    pub fn leaf_kind(&self, ino: &Inode, blobs: Option<&dyn BlobStore>) -> Result<LeafKind> {
        let ib = ino.i_block();
        let dev = || {
            let old = crate::bytes::le32(ib, 0);
            if old != 0 {
                ((old >> 8) & 0xff, old & 0xff)
            } else {
                let new = crate::bytes::le32(ib, 4);
                ((new >> 8) & 0xfff, (new & 0xff) | ((new >> 12) & 0xfff00))
            }
        };
        Ok(match ino.file_type() {
            0o100000 => LeafKind::Regular(match blobs {
                Some(b) => {
                    let mut rd = self.open_file(ino)?;
                    let (digest, size) = b.put_reader(&mut rd).map_err(unwrap_io)?;
                    Content { digest, size }
                }
                None => self.content_digest(ino)?,
            }),
            0o120000 => LeafKind::Symlink(self.symlink_target(ino)?),
            0o020000 => {
                let (major, minor) = dev();
                LeafKind::CharDevice { major, minor }
            }
            0o060000 => {
                let (major, minor) = dev();
                LeafKind::BlockDevice { major, minor }
            }
            0o010000 => LeafKind::Fifo,
            0o140000 => LeafKind::Socket,
            t => {
                return Err(corrupt(format!(
                    "inode {}: unknown file type {t:#o}",
                    ino.ino
                )));
            }
        })
    }

    /// Reads the whole tree, storing file contents in `blobs`.
    pub fn read_tree(&self, blobs: &dyn BlobStore) -> Result<Tree> {
        Ok(self.read_tree_with_inodes(blobs)?.0)
    }

    /// Reads the whole tree and the inode number of every path.
    pub fn read_tree_with_inodes(&self, blobs: &dyn BlobStore) -> Result<(Tree, InodeMap)> {
        self.read_tree_inner(Contents::Store(blobs))
    }

    /// Reads the whole tree without reading any regular file's data: each
    /// regular file's [`Content`] comes from `content` (called once per
    /// inode, so hardlinks share one call). This is how the engine names
    /// base files by reference instead of hashing gigabytes it will copy
    /// unchanged; only directories, inodes, external xattr blocks and slow
    /// symlink targets are read.
    pub fn read_tree_with_contents(
        &self,
        content: &mut dyn FnMut(&Inode) -> Result<Content>,
    ) -> Result<(Tree, InodeMap)> {
        self.read_tree_inner(Contents::Given(content))
    }

    fn read_tree_inner(&self, contents: Contents<'_>) -> Result<(Tree, InodeMap)> {
        let root = self.inode(inode::ROOT_INO)?;
        if !root.is_dir() {
            return Err(corrupt("the root inode is not a directory"));
        }
        let mut st = TreeRead {
            leaves: HashMap::new(),
            dirs: HashSet::from([inode::ROOT_INO]),
            inos: InodeMap::new(),
            contents,
        };
        let mut tree = Directory::new(self.meta(&root)?);
        self.read_dir(
            &root,
            inode::ROOT_INO,
            &mut tree,
            &mut TreePath::root(),
            &mut st,
            0,
        )?;
        Ok((tree, st.inos))
    }

    fn read_dir(
        &self,
        ino: &Inode,
        parent: u32,
        out: &mut Directory,
        at: &mut TreePath,
        st: &mut TreeRead<'_>,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(unsupported(format!(
                "directories nested deeper than {MAX_DEPTH} levels at {at}"
            )));
        }
        let (entries, dotdot) = self.dir_entries_and_parent(ino)?;
        check_dotdot(at, dotdot, parent)?;
        for e in entries {
            let name = Name::new(e.name.clone())
                .map_err(|err| corrupt(format!("directory {at}: {err}")))?;
            at.push(name.clone());
            let child = self.inode(e.ino)?;
            if child.links() == 0 {
                return Err(corrupt(format!("{at} points to deleted inode {}", e.ino)));
            }
            let node = if child.is_dir() {
                if !st.dirs.insert(e.ino) {
                    return Err(corrupt(format!(
                        "{at}: directory inode {} is linked twice (loop)",
                        e.ino
                    )));
                }
                let mut d = Directory::new(self.meta(&child)?);
                self.read_dir(&child, ino.ino, &mut d, at, st, depth + 1)?;
                Node::Dir(d)
            } else if let Some(l) = st.leaves.get(&e.ino) {
                Node::Leaf(Arc::clone(l))
            } else {
                let kind = match &mut st.contents {
                    Contents::Store(b) => self.leaf_kind(&child, Some(*b))?,
                    Contents::Given(f) if child.file_type() == 0o100000 => {
                        LeafKind::Regular(f(&child)?)
                    }
                    Contents::Given(_) => self.leaf_kind(&child, None)?,
                };
                let leaf = Arc::new(Leaf {
                    meta: self.meta(&child)?,
                    kind,
                });
                st.leaves.insert(e.ino, Arc::clone(&leaf));
                Node::Leaf(leaf)
            };
            st.inos.insert(at.clone(), e.ino);
            if out.put(name, node).is_some() {
                return Err(corrupt(format!("{at} appears twice in its directory")));
            }
            at.pop();
        }
        Ok(())
    }
}

/// Refuses a directory whose `..` does not name the directory it was
/// reached from.
pub(crate) fn check_dotdot(at: &TreePath, dotdot: Option<u32>, parent: u32) -> Result<()> {
    match dotdot {
        Some(p) if p != parent => Err(corrupt(format!(
            "directory {at}: \"..\" names inode {p}, but the directory is in inode {parent}"
        ))),
        _ => Ok(()),
    }
}

struct TreeRead<'a> {
    leaves: HashMap<u32, Arc<Leaf>>,
    dirs: HashSet<u32>,
    inos: InodeMap,
    contents: Contents<'a>,
}

/// Where a tree read gets regular files' contents from.
enum Contents<'a> {
    /// Read each file and put it into a blob store.
    Store(&'a dyn BlobStore),
    /// Ask the caller (no data read).
    Given(&'a mut dyn FnMut(&Inode) -> Result<Content>),
}

fn unwrap_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            return match inner.downcast::<Error>() {
                Ok(err) => *err,
                Err(other) => Error::Io(io::Error::other(other)),
            };
        }
        return Error::Io(io::Error::other("read failed"));
    }
    Error::Io(e)
}

/// Streams a file's bytes, zero-filling holes.
#[derive(Debug)]
pub struct FileReader<'a, R> {
    fs: &'a Ext4<R>,
    runs: Vec<extent::Run>,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

impl<R: ReadAt> Read for FileReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let bs = u64::from(self.fs.sb.block_size);
        if !(self.buf_at <= self.pos && self.pos < self.buf_at + self.buf.len() as u64) {
            let lblock = self.pos / bs;
            // Find the run covering lblock, or the next one (a hole until it).
            let run = self
                .runs
                .iter()
                .find(|r| u64::from(r.logical) + u64::from(r.len) > lblock);
            let chunk_blocks: u64 = 64;
            match run {
                Some(r) if u64::from(r.logical) <= lblock => {
                    let k = lblock - u64::from(r.logical);
                    let n = (u64::from(r.len) - k).min(chunk_blocks);
                    let mut b = vec![0u8; (n * bs) as usize];
                    if !r.uninit {
                        self.fs
                            .r
                            .read_at((r.physical + k) * bs, &mut b)
                            .map_err(|e| io::Error::other(Error::Io(e)))?;
                    }
                    self.buf = b;
                }
                Some(r) => {
                    let n = (u64::from(r.logical) - lblock).min(chunk_blocks);
                    self.buf = vec![0u8; (n * bs) as usize];
                }
                None => {
                    let n = (self.size.div_ceil(bs) - lblock).min(chunk_blocks);
                    self.buf = vec![0u8; (n * bs) as usize];
                }
            }
            self.buf_at = lblock * bs;
        }
        let off = (self.pos - self.buf_at) as usize;
        let avail = (self.buf.len() - off)
            .min((self.size - self.pos) as usize)
            .min(out.len());
        out[..avail].copy_from_slice(&self.buf[off..off + avail]);
        self.pos += avail as u64;
        Ok(avail)
    }
}

impl<R: ReadAt> Ext4<R> {
    /// A reader over a regular file that owns a handle on the filesystem
    /// and knows the file's holes (absent and unwritten extents), so a
    /// writer can skip them instead of reading zeros
    /// ([`v6build_fstree::HoleRead`]). The same size bound as
    /// [`Ext4::open_file`] applies.
    pub fn open_file_shared(self: &Arc<Self>, ino: &Inode) -> Result<SharedFileReader<R>> {
        let m = self.readable_mapping(ino)?;
        Ok(SharedFileReader {
            fs: Arc::clone(self),
            runs: m.runs,
            size: ino.size(),
            pos: 0,
        })
    }
}

/// A file's bytes over a shared [`Ext4`], holes known (see
/// [`Ext4::open_file_shared`]).
#[derive(Debug)]
pub struct SharedFileReader<R> {
    fs: Arc<Ext4<R>>,
    runs: Vec<extent::Run>,
    size: u64,
    pos: u64,
}

impl<R> SharedFileReader<R> {
    fn bs(&self) -> u64 {
        u64::from(self.fs.sb.block_size)
    }

    /// Index of the first run ending after byte `pos`.
    fn run_from(&self, pos: u64) -> usize {
        let b = pos / self.bs();
        self.runs
            .partition_point(|r| u64::from(r.logical) + u64::from(r.len) <= b)
    }
}

impl<R: ReadAt> Read for SharedFileReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let bs = self.bs();
        let left = (self.size - self.pos).min(out.len() as u64);
        let n = match self.runs.get(self.run_from(self.pos)) {
            Some(r) if u64::from(r.logical) * bs <= self.pos => {
                let end = (u64::from(r.logical) + u64::from(r.len)) * bs;
                // left <= out.len().
                let n = (end - self.pos).min(left) as usize;
                if r.uninit {
                    out[..n].fill(0);
                } else {
                    let off =
                        (r.physical + (self.pos / bs - u64::from(r.logical))) * bs + self.pos % bs;
                    self.fs.r.read_at(off, &mut out[..n])?;
                }
                n
            }
            Some(r) => {
                let n = (u64::from(r.logical) * bs - self.pos).min(left) as usize;
                out[..n].fill(0);
                n
            }
            None => {
                let n = left as usize;
                out[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt + Send + Sync> v6build_fstree::HoleRead for SharedFileReader<R> {
    fn skip_hole(&mut self, n: u64) -> io::Result<bool> {
        let bs = self.bs();
        let Some(end) = self.pos.checked_add(n).filter(|&e| e <= self.size) else {
            return Ok(false);
        };
        let data = self.runs[self.run_from(self.pos)..]
            .iter()
            .take_while(|r| u64::from(r.logical) * bs < end)
            .any(|r| !r.uninit);
        if data {
            return Ok(false);
        }
        self.pos = end;
        Ok(true)
    }

    fn data_bytes(&self) -> Option<u64> {
        let bs = self.bs();
        let d: u64 = self
            .runs
            .iter()
            .filter(|r| !r.uninit)
            .map(|r| u64::from(r.len) * bs)
            .sum();
        Some(d.min(self.size))
    }
}

/// The directory-entry file type for a tree node.
pub fn ftype_of(node: &Node) -> u8 {
    match node {
        Node::Dir(_) => ftype::DIR,
        Node::Leaf(l) => match l.kind {
            LeafKind::Regular(_) => ftype::REG,
            LeafKind::Symlink(_) => ftype::LNK,
            LeafKind::CharDevice { .. } => ftype::CHR,
            LeafKind::BlockDevice { .. } => ftype::BLK,
            LeafKind::Fifo => ftype::FIFO,
            LeafKind::Socket => ftype::SOCK,
        },
    }
}
