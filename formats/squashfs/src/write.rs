//! Writing an image from a [`Tree`] and a [`BlobStore`].
//!
//! Layout, in the order the kernel insists on: superblock, compressor
//! options, data and fragment blocks, inode table, directory table,
//! fragment table, export table, id table, xattr table; padded to 4 KiB.
//!
//! Data is streamed: file contents are read block by block, compressed in
//! bounded batches on a rayon pool and written in canonical order, so the
//! bytes never depend on the thread count. Batches are pipelined: while the
//! pool compresses one or two batches, the calling thread reads (and, for a
//! base image, decompresses) the next, so reading never leaves the pool
//! idle and no batch waits for the slowest block of the one before.
//! Identical contents are stored once. Blocks found in a matching base image ([`BaseBlocks`]) are copied
//! as stored; others come from the [`BlockCache`] or are compressed.
//! Consecutive copied blocks that lie back to back in the base are copied
//! as one run; written to a file ([`write_to_file`]) with a base that has
//! a copy source ([`BaseBlocks::set_copy_source`]), a run of at least
//! [`KERNEL_COPY_MIN`] bytes is copied by the kernel (`copy_file_range`
//! through `std::io::copy`, which falls back to a plain copy where the
//! kernel cannot), never through this process's memory.
//!
//! Inode numbers are assigned in post-order (a directory after everything
//! under it, children in canonical name order), so the root is the last
//! inode, as with mksquashfs.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use v6build_fstree::{BlobStore, Digest, Directory, LeafKind, Node, Tree};

use crate::compress::Compressor;
use crate::error::{Result, corrupt, unsupported};
use crate::inodes::{MetaState, Numbering};
use crate::layout::{FragRef, Piece};
use crate::metadata::MetaWriter;
use crate::read::{BLOCK_UNCOMPRESSED, SquashfsImage};
use crate::reuse::{BaseBlocks, BlockLoc};
use crate::superblock::{INVALID_BLK, RawSuperblock, SQUASHFS_MAGIC, SUPERBLOCK_SIZE, flags};
use crate::table::write_table;
use crate::xattr::XattrWriter;
use v6build_compress::{BlockCache, BlockKey, CachedBlock};

/// Blocks handed to the compressor pool at once. With [`MAX_IN_FLIGHT`]
/// this bounds memory (at most `(MAX_IN_FLIGHT + 1) * BATCH_BYTES` of
/// uncompressed data held) without affecting the output.
const BATCH_BYTES: usize = 16 << 20;
/// Batches the pool may work on while the next one is being read.
const MAX_IN_FLIGHT: usize = 2;
/// Jobs per batch at most, whatever their bytes: holes and copied blocks
/// carry none, and a terabyte of holes must not queue millions of jobs.
const BATCH_JOBS: usize = 1 << 14;

type BatchResult = Vec<(Job, Result<Done>)>;

/// Shortest run of copied base blocks handed to the kernel; shorter runs
/// go through the write buffer, where a system call would cost more than
/// the copy.
pub const KERNEL_COPY_MIN: u64 = 256 << 10;

/// An output that is a file, positioned where the writer's next byte goes
/// (it may be a window of a larger file, such as a store entry after its
/// header): [`write_to_file`] has the kernel copy long unchanged runs of
/// the base into it.
pub trait FileOutput: Write + Seek {
    /// The file, at the position where the next byte of the image goes.
    fn file(&mut self) -> &mut std::fs::File;
}

impl FileOutput for std::fs::File {
    fn file(&mut self) -> &mut std::fs::File {
        self
    }
}

impl<T: FileOutput + ?Sized> FileOutput for &mut T {
    fn file(&mut self) -> &mut std::fs::File {
        (**self).file()
    }
}

/// How to write an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// Compressor and options.
    pub compressor: Compressor,
    /// Data block size: a power of two, 4 KiB ..= 1 MiB.
    pub block_size: u32,
    /// The superblock's creation time (the base's, or the recipe epoch).
    pub mkfs_time: u32,
    /// Compression threads; 0 means one per core. Never affects the bytes.
    pub threads: usize,
    /// Whether to write the NFS export table (mksquashfs does by default).
    pub exportable: bool,
    /// Store inode, directory, id and xattr tables uncompressed
    /// (mksquashfs `-noI -noX`); mostly useful to inspect or patch images.
    #[serde(default)]
    pub uncompressed_metadata: bool,
    /// Advanced by the bytes of each file's data as it is written (not
    /// part of the options' identity: never serialised, always equal).
    #[serde(skip)]
    pub progress: v6build_fstree::Progress,
}

impl WriteOptions {
    /// The given compressor, block size (mksquashfs's default is 128 KiB)
    /// and superblock time; one thread per core; export table on.
    pub fn new(compressor: Compressor, block_size: u32, mkfs_time: u32) -> Self {
        WriteOptions {
            compressor,
            block_size,
            mkfs_time,
            threads: 0,
            exportable: true,
            uncompressed_metadata: false,
            progress: v6build_fstree::Progress::default(),
        }
    }

    /// The base image's compressor, options, block size and time.
    pub fn from_base(base: &SquashfsImage) -> Self {
        WriteOptions {
            compressor: base.compressor().clone(),
            block_size: base.block_size(),
            mkfs_time: base.mkfs_time(),
            threads: 0,
            exportable: base.superblock().lookup_table_start != INVALID_BLK,
            uncompressed_metadata: false,
            progress: v6build_fstree::Progress::default(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReport {
    /// Data and fragment blocks compressed here.
    pub blocks_compressed: u64,
    /// Data blocks copied from the base image.
    pub blocks_reused: u64,
    /// Blocks taken from the block cache.
    pub blocks_cached: u64,
    /// All-zero data blocks written as holes.
    pub blocks_sparse: u64,
    /// Of those, blocks the source knew to be holes, so they were never
    /// read (a sparse base file recompressed keeps its holes for free).
    #[serde(default)]
    pub holes_skipped: u64,
    /// Fragment blocks written.
    pub fragments: u32,
    /// Fragment blocks copied from the base (also counted in `blocks_reused`).
    pub fragments_reused: u64,
    /// Inodes written.
    pub inodes: u32,
    /// `bytes_used` of the image (before padding).
    pub bytes_used: u64,
    /// Stored bytes of the blocks copied from the base.
    #[serde(default)]
    pub bytes_copied: u64,
    /// Uncompressed bytes of the blocks compressed here.
    #[serde(default)]
    pub bytes_compressed_in: u64,
    /// What compressing them produced (stored raw when it did not pay).
    #[serde(default)]
    pub bytes_compressed_out: u64,
    /// Bytes written, padding included.
    #[serde(default)]
    pub bytes_written: u64,
    /// Of [`WriteReport::bytes_copied`], the bytes the kernel copied
    /// (runs of at least [`KERNEL_COPY_MIN`] bytes, see [`write_to_file`]).
    #[serde(default)]
    pub bytes_kernel_copied: u64,
    /// Of those, the bytes of runs whose source and destination file
    /// offsets agree modulo 4 KiB: only such ranges can be shared
    /// (reflinked) by XFS or btrfs rather than copied.
    #[serde(default)]
    pub bytes_kernel_copied_aligned: u64,
    /// Number of runs the kernel copied.
    #[serde(default)]
    pub kernel_copy_runs: u64,
}

/// Where a file's data went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    pub(crate) start: Option<u64>,
    pub(crate) sizes: Vec<u32>,
    pub(crate) fragment: Option<(u32, u32)>,
    pub(crate) sparse: u64,
    pub(crate) size: u64,
}

enum JobKind {
    Data(usize),
    /// A fragment block and its index in the fragment table.
    Frag(u32),
}

struct Job {
    kind: JobKind,
    data: Vec<u8>,
    /// Decided without looking at the data (a block of a whole base file).
    ready: Option<Done>,
}

enum Done {
    Sparse,
    Reuse(BlockLoc),
    Cached(CachedBlock),
    Compressed(CachedBlock),
}

/// Writes `tree` (file contents from `blobs`) as a squashfs image to `out`,
/// starting at offset 0.
pub fn write<W: Write + Seek>(
    tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &WriteOptions,
    base: Option<&BaseBlocks>,
    cache: Option<&dyn BlockCache>,
    out: W,
) -> Result<WriteReport> {
    write_inner(tree, blobs, opts, base, cache, out, None)
}

/// [`write()`] to a file: runs of unchanged base blocks of at least
/// [`KERNEL_COPY_MIN`] bytes are copied by the kernel from the base's
/// copy source ([`BaseBlocks::set_copy_source`]), when it has one. The
/// bytes written are the same as [`write()`]'s.
pub fn write_to_file<W: FileOutput>(
    tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &WriteOptions,
    base: Option<&BaseBlocks>,
    cache: Option<&dyn BlockCache>,
    out: W,
) -> Result<WriteReport> {
    write_inner(tree, blobs, opts, base, cache, out, Some(W::file))
}

fn write_inner<W: Write + Seek>(
    tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &WriteOptions,
    base: Option<&BaseBlocks>,
    cache: Option<&dyn BlockCache>,
    out: W,
    file_of: Option<fn(&mut W) -> &mut std::fs::File>,
) -> Result<WriteReport> {
    let bs = opts.block_size;
    if !(4096..=1 << 20).contains(&bs) || !bs.is_power_of_two() {
        return Err(unsupported(format!(
            "block size {bs} (must be a power of two from 4 KiB to 1 MiB)"
        )));
    }
    opts.compressor.check_writable(bs)?;
    check_depth(tree)?;
    let reader = base;
    let base = base.filter(|b| b.matches(&opts.compressor, bs));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| std::io::Error::other(format!("cannot start compression threads: {e}")))?;

    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, out),
        pos: 0,
        opts,
        params: opts.compressor.cache_key(bs),
        base,
        reader,
        cache,
        report: WriteReport::default(),
        layouts: Vec::new(),
        frag_entries: Vec::new(),
        frag_buf: Vec::new(),
        open_frag: None,
        next_frag: 0,
        pinned: HashMap::new(),
        jobs: Vec::new(),
        job_bytes: 0,
        in_flight: std::collections::VecDeque::new(),
        file_of,
        run: None,
    };
    w.out.seek(SeekFrom::Start(0))?;
    w.emit(&[0u8; SUPERBLOCK_SIZE])?;
    let options = opts.compressor.options_block(bs);
    if let Some(o) = &options {
        // OK to unwrap: options payloads are at most 8 bytes.
        let h = u16::try_from(o.len()).unwrap() | 0x8000;
        w.emit(&h.to_le_bytes())?;
        w.emit(o)?;
    }

    // Data: every distinct content once, in tree order.
    let mut order = Vec::new();
    let mut by_digest: HashMap<Digest, usize> = HashMap::new();
    collect_contents(tree, &mut |c| {
        by_digest.entry(c.digest).or_insert_with(|| {
            order.push(*c);
            order.len() - 1
        });
    });
    w.layouts = vec![Layout::default(); order.len()];
    opts.progress.add_total(order.iter().map(|c| c.size).sum());
    // The data phase runs on this thread inside a scope of the pool:
    // batches are spawned onto the pool and their results written in order.
    pool.in_place_scope(|s| -> Result<()> {
        for (i, c) in order.iter().enumerate() {
            w.add_file(i, c, blobs, s)?;
            opts.progress.add(c.size);
        }
        w.close_fragment();
        w.flush_jobs(s)?;
        w.drain(0)
    })?;
    w.flush_run()?;

    // Metadata.
    let meta_comp = (!opts.uncompressed_metadata).then(|| opts.compressor.clone());
    let mut numbers = Numbering::default();
    numbers.visit(tree);
    let total = numbers.next - 1;
    let mut m = MetaState {
        inodes: MetaWriter::new(meta_comp.clone(), bs),
        dirs: MetaWriter::new(meta_comp.clone(), bs),
        ids: Vec::new(),
        id_map: HashMap::new(),
        xattrs: XattrWriter::default(),
        written: HashMap::new(),
        export: vec![0u64; usize::try_from(total).map_err(|_| unsupported("too many inodes"))?],
        numbers: &numbers,
        layouts: &w.layouts,
        by_digest: &by_digest,
    };
    let root_ref = m.dir(tree, numbers.dir_number(tree), total + 1)?;
    let MetaState {
        inodes,
        dirs,
        ids,
        xattrs,
        export,
        ..
    } = m;

    let inode_table_start = w.pos;
    let (bytes, _) = inodes.finish()?;
    w.emit(&bytes)?;
    let directory_table_start = w.pos;
    let (bytes, _) = dirs.finish()?;
    w.emit(&bytes)?;

    let mut recs = Vec::with_capacity(w.frag_entries.len() * 16);
    for e in &w.frag_entries {
        let (start, word) =
            e.ok_or_else(|| std::io::Error::other("a fragment block was never written"))?;
        recs.extend_from_slice(&start.to_le_bytes());
        recs.extend_from_slice(&word.to_le_bytes());
        recs.extend_from_slice(&0u32.to_le_bytes());
    }
    let (bytes, fragment_table_start) =
        write_table(MetaWriter::new(meta_comp.clone(), bs), &recs, w.pos)?;
    w.emit(&bytes)?;

    let lookup_table_start = if opts.exportable {
        let recs: Vec<u8> = export.iter().flat_map(|r| r.to_le_bytes()).collect();
        let (bytes, at) = write_table(MetaWriter::new(meta_comp.clone(), bs), &recs, w.pos)?;
        w.emit(&bytes)?;
        at
    } else {
        INVALID_BLK
    };

    let recs: Vec<u8> = ids.iter().flat_map(|r| r.to_le_bytes()).collect();
    let (bytes, id_table_start) =
        write_table(MetaWriter::new(meta_comp.clone(), bs), &recs, w.pos)?;
    w.emit(&bytes)?;

    let xattr_id_table_start = if xattrs.is_empty() {
        INVALID_BLK
    } else {
        let (bytes, at) = xattrs.finish(meta_comp.as_ref(), bs, w.pos)?;
        w.emit(&bytes)?;
        at
    };
    let bytes_used = w.pos;
    let pad = (4096 - bytes_used % 4096) % 4096;
    // pad < 4096.
    w.emit(&vec![0u8; usize::try_from(pad).unwrap_or(0)])?;

    let mut fl = flags::DUPLICATES;
    if opts.exportable {
        fl |= flags::EXPORTABLE;
    }
    if options.is_some() {
        fl |= flags::COMPRESSOR_OPTIONS;
    }
    if opts.uncompressed_metadata {
        fl |= flags::UNCOMPRESSED_INODES | flags::UNCOMPRESSED_IDS | flags::UNCOMPRESSED_XATTRS;
    }
    let sb = RawSuperblock {
        s_magic: SQUASHFS_MAGIC,
        inodes: total,
        mkfs_time: opts.mkfs_time,
        block_size: bs,
        fragments: u32::try_from(w.frag_entries.len())
            .map_err(|_| unsupported("too many fragments"))?,
        compression: opts.compressor.id(),
        block_log: u16::try_from(bs.trailing_zeros()).unwrap_or(0),
        flags: fl,
        no_ids: u16::try_from(ids.len())
            .map_err(|_| unsupported("more than 65535 distinct uids/gids"))?,
        s_major: 4,
        s_minor: 0,
        root_inode: root_ref,
        bytes_used,
        id_table_start,
        xattr_id_table_start,
        inode_table_start,
        directory_table_start,
        fragment_table_start,
        lookup_table_start,
    };
    w.out.seek(SeekFrom::Start(0))?;
    w.out.write_all(&sb.to_bytes())?;
    w.out.seek(SeekFrom::Start(bytes_used + pad))?;
    w.out.flush()?;
    w.report.fragments = sb.fragments;
    w.report.inodes = total;
    w.report.bytes_used = bytes_used;
    w.report.bytes_written = bytes_used + pad;
    Ok(w.report)
}

/// Deepest nesting written; the walks below recurse, and the reader
/// refuses deeper trees too.
const MAX_DEPTH: usize = 1024;

fn check_depth(tree: &Tree) -> Result<()> {
    let mut stack: Vec<(&Directory, usize)> = vec![(tree, 0)];
    while let Some((d, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(unsupported(format!(
                "directories nested deeper than {MAX_DEPTH}"
            )));
        }
        for node in d.entries().values() {
            if let Node::Dir(sub) = node {
                stack.push((sub, depth + 1));
            }
        }
    }
    Ok(())
}

fn collect_contents(dir: &Directory, f: &mut dyn FnMut(&v6build_fstree::Content)) {
    for node in dir.entries().values() {
        match node {
            Node::Dir(d) => collect_contents(d, f),
            Node::Leaf(l) => {
                if let LeafKind::Regular(c) = &l.kind {
                    f(c);
                }
            }
        }
    }
}

struct Writer<'a, W: Write + Seek> {
    out: BufWriter<W>,
    pos: u64,
    opts: &'a WriteOptions,
    params: String,
    base: Option<&'a BaseBlocks>,
    /// The base map whatever its settings: file contents may be read
    /// through it even when its blocks cannot be copied.
    reader: Option<&'a BaseBlocks>,
    cache: Option<&'a dyn BlockCache>,
    report: WriteReport,
    layouts: Vec<Layout>,
    /// Fragment table entries, by index (filled as blocks are written;
    /// pinned base fragments may be written before an open buffer's).
    frag_entries: Vec<Option<(u64, u32)>>,
    frag_buf: Vec<u8>,
    /// Index of the fragment block `frag_buf` will become.
    open_frag: Option<u32>,
    /// Fragment indices handed out.
    next_frag: u32,
    /// Base fragment blocks copied so far (by base position) and their
    /// index in the output.
    pinned: HashMap<u64, u32>,
    jobs: Vec<Job>,
    job_bytes: usize,
    /// Batches handed to the pool, oldest first, not yet written.
    in_flight: std::collections::VecDeque<std::sync::mpsc::Receiver<BatchResult>>,
    /// The output's file, when the kernel may copy into it.
    file_of: Option<fn(&mut W) -> &mut std::fs::File>,
    /// Copied base blocks not yet written: (base position, length). They
    /// are already counted in `pos`.
    run: Option<(u64, u64)>,
}

impl<'a, W: Write + Seek> Writer<'a, W> {
    fn emit(&mut self, b: &[u8]) -> Result<()> {
        self.flush_run()?;
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Queues a copy of the stored base block at `loc`: it joins the
    /// pending run when it follows it in the base.
    fn copy_block(&mut self, loc: BlockLoc) -> Result<()> {
        // OK to unwrap: Reuse is produced only when base is Some.
        let len = self.base.unwrap().stored_len(loc)?;
        match &mut self.run {
            Some((at, n)) if *at + *n == loc.pos => *n += len,
            _ => {
                self.flush_run()?;
                self.run = Some((loc.pos, len));
            }
        }
        self.pos += len;
        self.report.bytes_copied += len;
        Ok(())
    }

    /// Writes the pending run of copied base blocks: by the kernel when
    /// it is long and the output is a file, else through the buffer.
    fn flush_run(&mut self) -> Result<()> {
        let Some((at, len)) = self.run.take() else {
            return Ok(());
        };
        // OK to unwrap: a run is only started by `copy_block`.
        let base = self.base.unwrap();
        if let (Some(file_of), Some(src), true) =
            (self.file_of, base.copy_source(), len >= KERNEL_COPY_MIN)
        {
            self.out.flush()?;
            let dst = file_of(self.out.get_mut());
            let dst_at = dst.stream_position()?;
            let mut from = src;
            from.seek(SeekFrom::Start(at))?;
            // `io::copy` between two files is `copy_file_range` on Linux,
            // with a plain copy where the kernel refuses.
            let n = std::io::copy(&mut from.take(len), dst)?;
            if n != len {
                return Err(corrupt(format!(
                    "the base image ended {} bytes into a run of {len} at offset {at}",
                    n
                )));
            }
            self.report.bytes_kernel_copied += len;
            self.report.kernel_copy_runs += 1;
            if at % 4096 == dst_at % 4096 {
                self.report.bytes_kernel_copied_aligned += len;
            }
            return Ok(());
        }
        let n = usize::try_from(len).map_err(|_| unsupported("copied run too long"))?;
        let bytes = base.read_stored(at, n)?;
        self.out.write_all(&bytes)?;
        Ok(())
    }

    fn push(&mut self, job: Job, s: &rayon::Scope<'a>) -> Result<()> {
        self.job_bytes += job.data.len();
        self.jobs.push(job);
        if self.job_bytes >= BATCH_BYTES || self.jobs.len() >= BATCH_JOBS {
            self.flush_jobs(s)?;
        }
        Ok(())
    }

    fn add_file(
        &mut self,
        i: usize,
        c: &v6build_fstree::Content,
        blobs: &dyn BlobStore,
        s: &rayon::Scope<'a>,
    ) -> Result<()> {
        let bs = u64::from(self.opts.block_size);
        self.layouts[i].size = c.size;
        if c.size == 0 {
            self.layouts[i].start = Some(0);
            return Ok(());
        }
        // A file the base map knows (unchanged, or patched): copy its
        // stored blocks and pin its fragment tail without reading (or
        // hashing) them; only blocks a patch changed are compressed.
        if let Some(b) = self.base
            && let Some(fb) = b.file(&c.digest)
            && fb.size == c.size
            && fb.check(self.opts.block_size).is_ok()
        {
            let fb = std::sync::Arc::clone(fb);
            for piece in &fb.blocks {
                let (data, ready) = match piece {
                    // A small file whose only block a patch produced goes
                    // where the writer puts every small file: into a
                    // fragment. (One the base stored as a short block, as
                    // `mksquashfs -no-fragments` does, is copied as is.)
                    Piece::Data(d) if c.size < bs => {
                        self.add_tail(i, d)?;
                        continue;
                    }
                    Piece::Hole if c.size < bs => {
                        // c.size < block size <= 1 MiB.
                        let zeros = vec![0u8; usize::try_from(c.size).unwrap_or(0)];
                        self.add_tail(i, &zeros)?;
                        continue;
                    }
                    Piece::Stored(l) => (Vec::new(), Some(Done::Reuse(*l))),
                    Piece::Hole => (Vec::new(), Some(Done::Sparse)),
                    Piece::Data(d) => (d.as_ref().clone(), None),
                };
                self.push(
                    Job {
                        kind: JobKind::Data(i),
                        data,
                        ready,
                    },
                    s,
                )?;
            }
            if let Some(fr) = fb.fragment {
                self.pin(i, fr, s)?;
                if fb.blocks.is_empty() {
                    self.layouts[i].start = Some(0);
                }
            }
            return Ok(());
        }
        // A file the store lacks may be one the base map names (a lazily
        // read base, or settings that differ from the base's).
        // Holes the source knows of are skipped below, never read: a
        // terabyte of holes costs no more than its block list.
        let mut r = match self.reader.filter(|_| !blobs.contains(&c.digest)) {
            Some(b) => match b.open_file_holes(&c.digest) {
                Some(r) => r?,
                None => blobs.open_holes(&c.digest)?,
            },
            None => blobs.open_holes(&c.digest)?,
        };
        let mut left = c.size;
        if c.size < bs {
            // Tail-end packing: small files share fragment blocks.
            // size < block size <= 1 MiB.
            let mut tail =
                vec![0u8; usize::try_from(c.size).map_err(|_| unsupported("file size"))?];
            read_exact(&mut *r, &mut tail, &c.digest)?;
            self.add_tail(i, &tail)?;
            left = 0;
        }
        while left > 0 {
            let n = usize::try_from(left.min(bs)).map_err(|_| unsupported("block size"))?;
            if r.skip_hole(n as u64)? {
                // What `decide` makes of an all-zero block, without the zeros.
                left -= n as u64;
                self.report.holes_skipped += 1;
                self.push(
                    Job {
                        kind: JobKind::Data(i),
                        data: Vec::new(),
                        ready: Some(Done::Sparse),
                    },
                    s,
                )?;
                continue;
            }
            let mut block = vec![0u8; n];
            read_exact(&mut *r, &mut block, &c.digest)?;
            left -= n as u64;
            self.push(
                Job {
                    kind: JobKind::Data(i),
                    data: block,
                    ready: None,
                },
                s,
            )?;
        }
        let mut extra = [0u8; 1];
        if r.read(&mut extra)? != 0 {
            return Err(corrupt(format!(
                "blob {} holds more than the {} bytes the tree says",
                c.digest, c.size
            )));
        }
        Ok(())
    }

    /// A new fragment table index.
    fn fragment_index(&mut self) -> Result<u32> {
        let i = self.next_frag;
        self.next_frag = i
            .checked_add(1)
            .ok_or_else(|| unsupported("too many fragments"))?;
        self.frag_entries.push(None);
        Ok(i)
    }

    /// Packs the tail of file `i` (shorter than a block) into the open
    /// fragment buffer.
    fn add_tail(&mut self, i: usize, tail: &[u8]) -> Result<()> {
        let bs = self.opts.block_size as usize;
        if self.frag_buf.len() + tail.len() > bs {
            self.close_fragment();
        }
        let idx = match self.open_frag {
            Some(idx) => idx,
            None => {
                let idx = self.fragment_index()?;
                self.open_frag = Some(idx);
                idx
            }
        };
        // frag_buf.len() < block size.
        let offset =
            u32::try_from(self.frag_buf.len()).map_err(|_| unsupported("fragment offset"))?;
        self.layouts[i].fragment = Some((idx, offset));
        self.layouts[i].start.get_or_insert(0);
        self.frag_buf.extend_from_slice(tail);
        Ok(())
    }

    /// Points file `i`'s tail at a copy of base fragment block `fr`. The
    /// first file to need a base fragment block copies it, as stored, as
    /// the next output fragment block; later files share that copy. The
    /// bytes of other (perhaps deleted) files in it are dead weight but
    /// harmless: readers (unsquashfs, the kernel) take only the
    /// (offset, length) an inode names. The order of first use follows
    /// the writer's file order, so the output stays a pure function of
    /// the tree and the base.
    fn pin(&mut self, i: usize, fr: FragRef, s: &rayon::Scope<'a>) -> Result<()> {
        let idx = match self.pinned.get(&fr.loc.pos) {
            Some(&idx) => idx,
            None => {
                let idx = self.fragment_index()?;
                self.pinned.insert(fr.loc.pos, idx);
                self.push(
                    Job {
                        kind: JobKind::Frag(idx),
                        data: Vec::new(),
                        ready: Some(Done::Reuse(fr.loc)),
                    },
                    s,
                )?;
                idx
            }
        };
        // The data blocks' start is set as they are written.
        self.layouts[i].fragment = Some((idx, fr.offset));
        Ok(())
    }

    fn close_fragment(&mut self) {
        let Some(idx) = self.open_frag.take() else {
            return;
        };
        let data = std::mem::take(&mut self.frag_buf);
        self.job_bytes += data.len();
        // Fragment jobs join the queue; they are flushed with the next batch.
        self.jobs.push(Job {
            kind: JobKind::Frag(idx),
            data,
            ready: None,
        });
    }

    /// Hands the queued jobs to the pool as one batch, then writes out
    /// finished batches until at most [`MAX_IN_FLIGHT`] remain.
    fn flush_jobs(&mut self, s: &rayon::Scope<'a>) -> Result<()> {
        let jobs = std::mem::take(&mut self.jobs);
        self.job_bytes = 0;
        if !jobs.is_empty() {
            let comp = &self.opts.compressor;
            let bs = self.opts.block_size;
            let params = self.params.clone();
            let base = self.base;
            let cache = self.cache;
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            s.spawn(move |_| {
                let results: BatchResult = jobs
                    .into_par_iter()
                    .map(|mut job| {
                        let done = match job.ready.take() {
                            Some(d) => Ok(d),
                            None => decide(&job, comp, bs, &params, base, cache),
                        };
                        (job, done)
                    })
                    .collect();
                // The receiver is gone only if the write already failed.
                let _ = tx.send(results);
            });
            self.in_flight.push_back(rx);
        }
        self.drain(MAX_IN_FLIGHT)
    }

    /// Writes finished batches, oldest first, until at most `keep` are
    /// still with the pool.
    fn drain(&mut self, keep: usize) -> Result<()> {
        while self.in_flight.len() > keep {
            let Some(rx) = self.in_flight.pop_front() else {
                break;
            };
            let results = rx.recv().map_err(|_| {
                std::io::Error::other("a compression task stopped without a result")
            })?;
            self.write_batch(results)?;
        }
        Ok(())
    }

    fn write_batch(&mut self, results: BatchResult) -> Result<()> {
        let bs = self.opts.block_size;
        for (job, done) in results {
            let done = done?;
            let done_loc = match &done {
                Done::Reuse(loc) => Some(*loc),
                _ => None,
            };
            match &done {
                Done::Cached(_) => self.report.blocks_cached += 1,
                Done::Compressed(c) => {
                    self.report.blocks_compressed += 1;
                    self.report.bytes_compressed_in += job.data.len() as u64;
                    self.report.bytes_compressed_out += match c {
                        CachedBlock::Compressed(z) => z.len() as u64,
                        CachedBlock::Incompressible => job.data.len() as u64,
                    };
                }
                _ => {}
            }
            let (word, bytes): (u32, Option<Vec<u8>>) = match done {
                Done::Sparse => {
                    self.report.blocks_sparse += 1;
                    (0, None)
                }
                Done::Reuse(loc) => {
                    self.report.blocks_reused += 1;
                    if matches!(job.kind, JobKind::Frag(_)) {
                        self.report.fragments_reused += 1;
                    }
                    (loc.word, None)
                }
                Done::Cached(c) | Done::Compressed(c) => match c {
                    CachedBlock::Compressed(z) => (block_word(z.len(), false)?, Some(z)),
                    CachedBlock::Incompressible => {
                        (block_word(job.data.len(), true)?, Some(job.data))
                    }
                },
            };
            match job.kind {
                JobKind::Data(i) => {
                    let l = &mut self.layouts[i];
                    if l.start.is_none() {
                        l.start = Some(self.pos);
                    }
                    l.sizes.push(word);
                    if word == 0 {
                        let bsz = u64::from(bs);
                        let done_bytes = (l.sizes.len() as u64 - 1) * bsz;
                        l.sparse += (l.size - done_bytes).min(bsz);
                    }
                }
                JobKind::Frag(idx) => {
                    let e = usize::try_from(idx)
                        .ok()
                        .and_then(|k| self.frag_entries.get_mut(k))
                        .ok_or_else(|| std::io::Error::other("fragment index out of range"))?;
                    *e = Some((self.pos, word));
                }
            }
            match (bytes, done_loc) {
                (Some(b), _) => self.emit(&b)?,
                (None, Some(loc)) => self.copy_block(loc)?,
                (None, None) => {}
            }
        }
        Ok(())
    }
}

/// Decides how one block is stored: a hole, a copy from the base, a
/// cached result, or fresh compression. Runs on the pool.
fn decide(
    job: &Job,
    comp: &Compressor,
    bs: u32,
    params: &str,
    base: Option<&BaseBlocks>,
    cache: Option<&dyn BlockCache>,
) -> Result<Done> {
    let is_data = matches!(job.kind, JobKind::Data(_));
    if is_data && job.data.iter().all(|&b| b == 0) {
        return Ok(Done::Sparse);
    }
    let hash = *blake3::hash(&job.data).as_bytes();
    // Fragment blocks are reused too: once an image was written by this
    // codec, unchanged small files pack into identical fragment blocks.
    if let Some(b) = base
        && let Some(loc) = b.find(&hash)
    {
        return Ok(Done::Reuse(loc));
    }
    let key = BlockKey::new(crate::FORMAT_VERSION, params, &hash);
    if let Some(c) = cache
        && let Some(hit) = c.get(&key)
    {
        return Ok(Done::Cached(hit));
    }
    let made = match comp.compress(&job.data, bs)? {
        Some(z) => CachedBlock::Compressed(z),
        None => CachedBlock::Incompressible,
    };
    if let Some(c) = cache {
        c.put(&key, &made);
    }
    Ok(Done::Compressed(made))
}

fn block_word(len: usize, raw: bool) -> Result<u32> {
    let n = u32::try_from(len).map_err(|_| unsupported("block too large"))?;
    Ok(if raw { n | BLOCK_UNCOMPRESSED } else { n })
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], d: &Digest) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(format!("blob {d} is shorter than the tree says"))
        } else {
            e.into()
        }
    })
}
