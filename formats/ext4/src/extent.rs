//! Extent trees: how ext4 maps a file's logical blocks to disk. The root
//! lives in the inode's `i_block`; deeper nodes are whole blocks ending in a
//! checksum tail. The reader walks them with strict depth, order and bounds
//! checks (a hostile tree cannot loop or overlap); the editor builds fresh,
//! shallow trees for the files it writes.

use std::collections::HashSet;

use crate::bytes::{le16, le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::error::{Error, Result, corrupt, unsupported};

const MAGIC: u16 = 0xF30A;
/// Longest initialised extent.
pub const MAX_INIT_LEN: u32 = 32768;
const MAX_DEPTH: u16 = 5;

/// A contiguous run of a file: `len` blocks from logical `logical` at disk block `physical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First logical block.
    pub logical: u32,
    /// First disk block.
    pub physical: u64,
    /// Number of blocks.
    pub len: u32,
    /// Allocated but unwritten: reads as zeros.
    pub uninit: bool,
}

/// A file's full block map: its data runs and the blocks the map itself uses.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    /// Data runs in logical order, non-overlapping.
    pub runs: Vec<Run>,
    /// Extent-tree or indirect blocks (not data).
    pub meta_blocks: Vec<u64>,
}

impl Mapping {
    /// Every disk block the file occupies (data and map).
    pub fn all_blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (0..u64::from(r.len)).map(move |i| r.physical + i))
            .chain(self.meta_blocks.iter().copied())
    }
    /// Number of data blocks.
    pub fn data_blocks(&self) -> u64 {
        self.runs.iter().map(|r| u64::from(r.len)).sum()
    }
}

/// Context for walking a tree: reads blocks, checks bounds and checksums.
pub(crate) struct Walk<'a> {
    pub read_block: &'a dyn Fn(u64) -> Result<Vec<u8>>,
    pub blocks_count: u64,
    pub first_data_block: u64,
    /// The inode's checksum seed when metadata_csum is on.
    pub csum_seed: Option<u32>,
    pub ino: u32,
}

struct Header {
    entries: u16,
    max: u16,
    depth: u16,
}

fn header(b: &[u8], what: &str) -> Result<Header> {
    if le16(b, 0) != MAGIC {
        return Err(corrupt(format!("{what}: bad extent header magic")));
    }
    let h = Header {
        entries: le16(b, 2),
        max: le16(b, 4),
        depth: le16(b, 6),
    };
    if h.entries > h.max || 12 + usize::from(h.max) * 12 > b.len() {
        return Err(corrupt(format!(
            "{what}: extent header claims {} of {} entries in {} bytes",
            h.entries,
            h.max,
            b.len()
        )));
    }
    Ok(h)
}

/// Reads the complete extent map rooted in `i_block`.
pub(crate) fn read(w: &Walk<'_>, i_block: &[u8]) -> Result<Mapping> {
    let what = format!("inode {}", w.ino);
    let root = header(i_block, &what)?;
    if root.depth > MAX_DEPTH {
        return Err(corrupt(format!(
            "{what}: extent tree depth {} is too deep",
            root.depth
        )));
    }
    let mut m = Mapping::default();
    let mut seen = HashSet::new();
    let mut next_logical = 0u64;
    node(w, i_block, root.depth, &mut m, &mut seen, &mut next_logical)?;
    Ok(m)
}

fn check_range(w: &Walk<'_>, start: u64, len: u64) -> Result<()> {
    if start < w.first_data_block || start.checked_add(len).is_none_or(|e| e > w.blocks_count) {
        return Err(corrupt(format!(
            "inode {}: block {start} (+{len}) is beyond the end of the filesystem ({} blocks)",
            w.ino, w.blocks_count
        )));
    }
    Ok(())
}

fn node(
    w: &Walk<'_>,
    b: &[u8],
    depth: u16,
    m: &mut Mapping,
    seen: &mut HashSet<u64>,
    next_logical: &mut u64,
) -> Result<()> {
    let what = format!("inode {}", w.ino);
    let h = header(b, &what)?;
    if h.depth != depth {
        return Err(corrupt(format!(
            "{what}: extent node depth {} where {depth} was expected (tree loop?)",
            h.depth
        )));
    }
    for i in 0..usize::from(h.entries) {
        let e = &b[12 + i * 12..24 + i * 12];
        let logical = le32(e, 0);
        if u64::from(logical) < *next_logical {
            return Err(corrupt(format!(
                "{what}: extents overlap or are out of order at logical block {logical}"
            )));
        }
        if depth == 0 {
            let raw_len = le16(e, 4);
            let (len, uninit) = if raw_len > 32768 {
                (u32::from(raw_len) - 32768, true)
            } else {
                (u32::from(raw_len), false)
            };
            let physical = u64::from(le32(e, 8)) | (u64::from(le16(e, 6)) << 32);
            if len == 0 {
                continue;
            }
            check_range(w, physical, u64::from(len))?;
            *next_logical = u64::from(logical) + u64::from(len);
            m.runs.push(Run {
                logical,
                physical,
                len,
                uninit,
            });
        } else {
            let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
            check_range(w, child, 1)?;
            if !seen.insert(child) {
                return Err(corrupt(format!(
                    "{what}: extent tree block {child} is referenced twice (loop)"
                )));
            }
            let cb = (w.read_block)(child)?;
            let ch = header(&cb, &what)?;
            if let Some(seed) = w.csum_seed {
                let off = 12 + usize::from(ch.max) * 12;
                if off + 4 <= cb.len() {
                    let stored = le32(&cb, off);
                    let computed = crc32c_raw(seed, &cb[..off]);
                    if stored != computed {
                        return Err(Error::Checksum {
                            what: format!("{what} extent block {child}"),
                            stored,
                            computed,
                        });
                    }
                }
            }
            m.meta_blocks.push(child);
            node(w, &cb, depth - 1, m, seen, next_logical)?;
        }
    }
    Ok(())
}

/// Splits runs so none exceeds the longest initialised extent.
pub fn split_runs(runs: &[Run]) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        let mut done = 0;
        while done < r.len {
            let n = (r.len - done).min(MAX_INIT_LEN);
            out.push(Run {
                logical: r.logical + done,
                physical: r.physical + u64::from(done),
                len: n,
                uninit: false,
            });
            done += n;
        }
    }
    out
}

/// Entries one tree block holds.
pub fn per_block(block_size: u32) -> usize {
    (block_size as usize - 12) / 12
}

/// How many leaf blocks a fresh tree for `n` extents needs (0: fits in the inode).
pub fn leaf_blocks_needed(n: usize, block_size: u32) -> Result<usize> {
    if n <= 4 {
        return Ok(0);
    }
    let leaves = n.div_ceil(per_block(block_size));
    if leaves > 4 {
        return Err(unsupported(format!(
            "a file of {n} extents needs an extent tree deeper than 1 level"
        )));
    }
    Ok(leaves)
}

fn put_header(b: &mut [u8], entries: usize, max: usize, depth: u16) {
    set16(b, 0, MAGIC);
    set16(b, 2, entries as u16);
    set16(b, 4, max as u16);
    set16(b, 6, depth);
    set32(b, 8, 0);
}

fn put_extent(e: &mut [u8], r: &Run) {
    set32(e, 0, r.logical);
    set16(e, 4, r.len as u16);
    set16(e, 6, ((r.physical >> 32) & 0xffff) as u16);
    set32(e, 8, (r.physical & 0xffff_ffff) as u32);
}

/// Builds a tree for `runs` (already split): the 60-byte root, and the leaf
/// blocks to write at `leaf_at` (from [`leaf_blocks_needed`]).
pub fn build(
    runs: &[Run],
    leaf_at: &[u64],
    block_size: u32,
    csum_seed: Option<u32>,
) -> ([u8; 60], Vec<(u64, Vec<u8>)>) {
    let mut root = [0u8; 60];
    if leaf_at.is_empty() {
        put_header(&mut root, runs.len(), 4, 0);
        for (i, r) in runs.iter().enumerate() {
            put_extent(&mut root[12 + i * 12..24 + i * 12], r);
        }
        return (root, Vec::new());
    }
    let per = per_block(block_size);
    put_header(&mut root, leaf_at.len(), 4, 1);
    let mut leaves = Vec::new();
    for (i, (chunk, &at)) in runs.chunks(per).zip(leaf_at).enumerate() {
        let ix = &mut root[12 + i * 12..24 + i * 12];
        set32(ix, 0, chunk[0].logical);
        set32(ix, 4, (at & 0xffff_ffff) as u32);
        set16(ix, 8, ((at >> 32) & 0xffff) as u16);
        let mut b = vec![0u8; block_size as usize];
        put_header(&mut b, chunk.len(), per, 0);
        for (j, r) in chunk.iter().enumerate() {
            put_extent(&mut b[12 + j * 12..24 + j * 12], r);
        }
        if let Some(seed) = csum_seed {
            let off = 12 + per * 12;
            let c = crc32c_raw(seed, &b[..off]);
            set32(&mut b, off, c);
        }
        leaves.push((at, b));
    }
    (root, leaves)
}
