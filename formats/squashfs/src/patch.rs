//! Patched files: a recorded base file with a few byte ranges rewritten.
//!
//! The EL7 stage2 holds one large `LiveOS/rootfs.img`; an edit of the ext4
//! inside changes a handful of its blocks. [`BaseBlocks::patch_file`]
//! registers the edited file as a new layout that keeps every untouched
//! stored block (and an untouched fragment tail) and holds only the
//! changed blocks, uncompressed, in memory. The writer then copies the
//! untouched blocks as stored and compresses the changed ones, so memory
//! and work follow the edit, not the file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use v6build_fstree::Digest;

use crate::error::{Result, unsupported};
use crate::layout::{FileBlocks, Piece};
use crate::reuse::BaseBlocks;

/// Most blocks a patched file may have (as an inode may; 16 TiB at 1 MiB).
const MAX_BLOCKS: u64 = 1 << 24;

/// What a patch touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchStats {
    /// Blocks of the new file (its fragment tail counts as one).
    pub blocks_total: u64,
    /// Blocks that now live in memory (written to, or cut or grown from a
    /// stored block): the writer compresses these.
    pub blocks_changed: u64,
}

impl BaseBlocks {
    /// Registers `new` as the base file `from` with byte ranges overwritten
    /// and resized to `new_size` (bytes past the base's end are zero unless
    /// written). Decompresses only the base blocks the writes touch (and a
    /// last block that a resize cuts or grows). `writes` are
    /// `(offset, bytes)`, non-overlapping, inside `new_size`.
    ///
    /// The result is readable through [`BaseBlocks::open_file`] and
    /// [`BaseBlocks::file_at`], and the writer emits it by copying every
    /// untouched block. Patched files are not saved by
    /// [`BaseBlocks::save`].
    pub fn patch_file(
        &mut self,
        new: Digest,
        from: &Digest,
        new_size: u64,
        writes: &BTreeMap<u64, Vec<u8>>,
    ) -> Result<PatchStats> {
        let base = Arc::clone(self.file(from).ok_or_else(|| {
            unsupported(format!(
                "patching {from}: the base block map records no such file"
            ))
        })?);
        let bs32 = self.block_size();
        base.check(bs32)?;
        let bs = u64::from(bs32);
        let n_new = new_size.div_ceil(bs);
        if n_new > MAX_BLOCKS {
            return Err(unsupported(format!(
                "a patched file of {new_size} bytes ({n_new} blocks, over {MAX_BLOCKS})"
            )));
        }
        // Which new blocks a write lands in; the writes themselves bound
        // the size of this set.
        let mut touched = BTreeSet::new();
        let mut prev_end = 0u64;
        for (&off, data) in writes {
            let end = u64::try_from(data.len())
                .ok()
                .and_then(|n| off.checked_add(n))
                .filter(|&e| e <= new_size)
                .ok_or_else(|| {
                    unsupported(format!(
                        "patch write of {} bytes at {off} past the new size {new_size}",
                        data.len()
                    ))
                })?;
            if off < prev_end {
                return Err(unsupported(format!("patch writes overlap at offset {off}")));
            }
            prev_end = end;
            if end > off {
                touched.extend(off / bs..=(end - 1) / bs);
            }
        }

        let src = self.block_source();
        let old_blocks = base.blocks.len() as u64;
        let old_pieces = old_blocks + u64::from(base.fragment.is_some());
        // n_new <= 2^24.
        let mut blocks = Vec::with_capacity(n_new as usize);
        let mut fragment = None;
        let mut changed = 0u64;
        for i in 0..n_new {
            let lo = i * bs;
            // At most the block size.
            let new_len = (new_size - lo).min(bs) as usize;
            // i < 2^24.
            let iu = i as usize;
            let old_len = if i < old_pieces {
                base.piece_len(iu, bs32)
            } else {
                0
            };
            let old_piece = base.blocks.get(iu);
            if !touched.contains(&i) {
                if i >= old_pieces || matches!(old_piece, Some(Piece::Hole)) {
                    blocks.push(Piece::Hole);
                    continue;
                }
                if new_len == old_len {
                    match old_piece {
                        Some(p) => blocks.push(p.clone()),
                        // The old tail, unchanged and still the tail
                        // (both shorter than a block).
                        None => fragment = base.fragment,
                    }
                    continue;
                }
            }
            let mut d = if i < old_pieces {
                match src.piece(&base, iu)? {
                    Some(b) => b.as_ref().clone(),
                    None => vec![0u8; old_len],
                }
            } else {
                Vec::new()
            };
            d.resize(new_len, 0);
            let hi = lo + new_len as u64;
            let first = writes.range(..lo).next_back();
            for (&off, data) in first.into_iter().chain(writes.range(lo..hi)) {
                let s = off.max(lo);
                let e = (off + data.len() as u64).min(hi);
                if s < e {
                    // All within one block and one write.
                    let (bs_, be) = ((s - lo) as usize, (e - lo) as usize);
                    let (ds, de) = ((s - off) as usize, (e - off) as usize);
                    d[bs_..be].copy_from_slice(&data[ds..de]);
                }
            }
            blocks.push(Piece::Data(Arc::new(d)));
            changed += 1;
        }
        let file = FileBlocks {
            size: new_size,
            blocks,
            fragment,
        };
        file.check(bs32)?;
        self.set_file(new, file);
        Ok(PatchStats {
            blocks_total: n_new,
            blocks_changed: changed,
        })
    }
}
