//! Before the editor frees or allocates anything, it checks the base's
//! allocation state against what the base really uses. The bitmaps are
//! what the allocator trusts: a hostile (or merely damaged) image whose
//! block bitmap calls a file's block free would have that block handed to
//! a new file, overwriting the old one; an inode bitmap that calls a live
//! inode free would have it reused, making a directory loop.
//!
//! The check, on everything the tree walk reached plus the filesystem's
//! own metadata:
//!
//! - every block in use (superblock and descriptor copies, reserved GDT
//!   blocks, bitmaps, inode tables, the journal, the orphan file, the
//!   resize inode's index block, and every reachable inode's data,
//!   extent-tree or indirect blocks, and xattr block) is marked in the
//!   block bitmap, and no two owners claim one block (xattr blocks may be
//!   shared: they are reference counted);
//! - every reachable inode is marked in the inode bitmap;
//! - each initialised group's free block and free inode counts equal the
//!   number of clear bits in its bitmaps.
//!
//! Anything else refuses the base as "inconsistent (run e2fsck)". Blocks or
//! inodes marked used that nothing reaches are harmless (never handed out)
//! and allowed. Cost: one pass over the reachable inodes' block maps (held
//! in the inode for most files, so no extra reads) and one read of each
//! group's two bitmaps; memory: one bit per block.

use crate::bytes::le32;
use crate::error::{Error, Result};
use crate::group::{BLOCK_UNINIT, INODE_UNINIT};
use crate::superblock::compat;

use super::{BaseIndex, Editor};

/// The error for a base whose allocation state contradicts its contents.
pub(crate) fn inconsistent(what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("base ext4 is inconsistent (run e2fsck): {what}"))
}

/// One bit per block of the filesystem.
struct Used {
    bits: Vec<u64>,
}

impl Used {
    fn get(&self, b: u64) -> bool {
        self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
    }
    /// Marks `b`; false if it was marked already.
    fn set(&mut self, b: u64) -> bool {
        let w = &mut self.bits[(b / 64) as usize];
        let was = *w & (1 << (b % 64)) != 0;
        *w |= 1 << (b % 64);
        !was
    }
}

fn bit(b: &[u8], i: usize) -> bool {
    b[i / 8] & (1 << (i % 8)) != 0
}

/// Clear bits among the first `n` of a bitmap.
fn zeros(b: &[u8], n: usize) -> u64 {
    let full = n / 8;
    let mut ones: u64 = b[..full].iter().map(|x| u64::from(x.count_ones())).sum();
    for i in full * 8..n {
        ones += u64::from(bit(b, i));
    }
    n as u64 - ones
}

impl Editor<'_> {
    /// Refuses a base whose bitmaps or free counts disagree with what the
    /// tree walk (`base`) and the filesystem's metadata use.
    pub(crate) fn check_base(&mut self, base: &BaseIndex) -> Result<()> {
        let sb = self.sb.clone();
        let words = usize::try_from(sb.blocks_count.div_ceil(64))
            .map_err(|_| inconsistent("too many blocks"))?;
        let mut used = Used {
            bits: vec![0; words],
        };
        let mut xattr_blocks = Used {
            bits: vec![0; words],
        };
        let in_fs = |b: u64| b >= u64::from(sb.first_data_block) && b < sb.blocks_count;

        // The filesystem's own metadata. Descriptor copies may be shared
        // with nothing else, but are not checked against each other: the
        // superblock parser already placed them.
        let itb = sb.inode_table_blocks();
        for (g, gd) in self.gds.iter().enumerate() {
            let g = g as u32;
            let first = sb.group_first_block(g);
            if sb.group_has_super(g) {
                let n = 1 + sb.gdt_blocks() + u64::from(sb.reserved_gdt_blocks());
                for b in first..first + n.min(u64::from(sb.blocks_in_group(g))) {
                    used.set(b);
                }
            }
            for b in [gd.block_bitmap(), gd.inode_bitmap()]
                .into_iter()
                .chain((0..itb).map(|i| gd.inode_table() + i))
            {
                if !in_fs(b) {
                    return Err(inconsistent(format!(
                        "group {g}'s bitmaps or inode table lie outside the filesystem (block {b})"
                    )));
                }
                if !used.set(b) {
                    return Err(inconsistent(format!(
                        "block {b} holds two groups' bitmaps or inode tables"
                    )));
                }
            }
        }
        // Special inodes the tree does not reach.
        let mut special: Vec<(u32, &str)> = Vec::new();
        if sb.feature_compat & compat::HAS_JOURNAL != 0 {
            special.push((le32(&sb.raw, 0xE0), "the journal"));
        }
        if sb.feature_compat & compat::ORPHAN_FILE != 0 {
            special.push((le32(&sb.raw, 0x280), "the orphan file"));
        }
        for (ino, what) in special {
            if ino == 0 {
                continue;
            }
            if base.inodes.contains_key(&ino) {
                return Err(inconsistent(format!(
                    "inode {ino} is {what} and also linked in the tree"
                )));
            }
            let i = self.inode(ino)?;
            let m = self.fs.mapping(&i)?;
            for b in m.all_blocks() {
                if !used.set(b) {
                    return Err(inconsistent(format!(
                        "block {b} of {what} (inode {ino}) is also used by something else"
                    )));
                }
            }
        }
        if sb.feature_compat & compat::RESIZE_INODE != 0 {
            // The resize inode's double-indirect block; the blocks it lists
            // are the reserved GDT blocks, marked above.
            let i = self.inode(7)?;
            let dind = u64::from(le32(i.i_block(), 13 * 4));
            if dind != 0 {
                if !in_fs(dind) {
                    return Err(inconsistent(format!(
                        "the resize inode's index block {dind} is outside the filesystem"
                    )));
                }
                used.set(dind);
            }
        }
        // Everything the tree reaches.
        for &ino in base.inodes.keys() {
            let i = self.inode(ino)?;
            if self.fs.has_block_map(&i) {
                let m = self.fs.mapping(&i)?;
                for b in m.all_blocks() {
                    if !used.set(b) || xattr_blocks.get(b) {
                        return Err(inconsistent(format!(
                            "block {b} of inode {ino} is also used by something else"
                        )));
                    }
                }
            }
            let acl = i.file_acl();
            if acl != 0 {
                if !in_fs(acl) {
                    return Err(inconsistent(format!(
                        "inode {ino}'s xattr block {acl} is outside the filesystem"
                    )));
                }
                // Shared xattr blocks are legal; one that is also data is not.
                if xattr_blocks.set(acl) && !used.set(acl) {
                    return Err(inconsistent(format!(
                        "xattr block {acl} of inode {ino} is also used by something else"
                    )));
                }
            }
        }

        // Each group's bitmaps against the above.
        let ipg = sb.inodes_per_group;
        let mut inos = base.inodes.keys().copied().peekable();
        for g in 0..sb.groups {
            let gd = &self.gds[g as usize];
            let (bflags, bb_at, ib_at) = (gd.flags(), gd.block_bitmap(), gd.inode_bitmap());
            let (free_b, free_i) = (gd.free_blocks(), gd.free_inodes());
            let block_uninit = sb.has_group_csum() && bflags & BLOCK_UNINIT != 0;
            let inode_uninit = sb.has_group_csum() && bflags & INODE_UNINIT != 0;
            let first = sb.group_first_block(g);
            let n = sb.blocks_in_group(g) as usize;
            let bm = if block_uninit {
                self.init_block_bitmap(g)
            } else {
                self.fs.read_block(bb_at)?
            };
            if n > bm.len() * 8 {
                return Err(inconsistent(format!(
                    "group {g} has {n} blocks, more than its bitmap holds"
                )));
            }
            for k in 0..n {
                let b = first + k as u64;
                if used.get(b) && !bit(&bm, k) {
                    return Err(inconsistent(format!(
                        "block {b} is in use but free in group {g}'s block bitmap{}",
                        if block_uninit {
                            " (the group is marked never used)"
                        } else {
                            ""
                        }
                    )));
                }
            }
            let z = zeros(&bm, n);
            if !block_uninit && z != u64::from(free_b) {
                return Err(inconsistent(format!(
                    "group {g} counts {free_b} free blocks, its block bitmap {z}"
                )));
            }
            // Inodes of this group the tree reaches.
            let last_ino = (g + 1).saturating_mul(ipg);
            let mut reached = Vec::new();
            while let Some(&ino) = inos.peek() {
                if ino > last_ino {
                    break;
                }
                reached.push(ino);
                inos.next();
            }
            if inode_uninit {
                if let Some(ino) = reached.first() {
                    return Err(inconsistent(format!(
                        "inode {ino} is in use but group {g}'s inodes are marked never used"
                    )));
                }
                continue;
            }
            let ib = self.fs.read_block(ib_at)?;
            if ipg as usize > ib.len() * 8 {
                return Err(inconsistent(format!(
                    "group {g} has {ipg} inodes, more than its bitmap holds"
                )));
            }
            for ino in reached {
                if !bit(&ib, ((ino - 1) % ipg) as usize) {
                    return Err(inconsistent(format!(
                        "inode {ino} is in use but free in group {g}'s inode bitmap"
                    )));
                }
            }
            let z = zeros(&ib, ipg as usize);
            if z != u64::from(free_i) {
                return Err(inconsistent(format!(
                    "group {g} counts {free_i} free inodes, its inode bitmap {z}"
                )));
            }
        }
        Ok(())
    }
}
