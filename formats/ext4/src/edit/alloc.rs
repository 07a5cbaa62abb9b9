//! Block and inode allocation for the editor. Bitmaps are loaded on first
//! use (an uninitialised group's bitmap is computed, as the kernel does) and
//! searched in a fixed order from a goal, so the same base and the same edit
//! always pick the same blocks and inodes.

use std::collections::BTreeMap;

use crate::error::{Error, Result, corrupt};
use crate::group::{BLOCK_UNINIT, INODE_UNINIT};

use super::Editor;

fn get_bit(b: &[u8], i: usize) -> bool {
    b[i / 8] & (1 << (i % 8)) != 0
}
fn set_bit(b: &mut [u8], i: usize, v: bool) {
    if v {
        b[i / 8] |= 1 << (i % 8);
    } else {
        b[i / 8] &= !(1 << (i % 8));
    }
}

impl Editor<'_> {
    /// The block bitmap of group `g`, computed if the group is BLOCK_UNINIT.
    fn block_bitmap(&mut self, g: u32) -> Result<&mut Vec<u8>> {
        if !self.block_bitmaps.contains_key(&g) {
            let (flags, at) = (
                self.gds[g as usize].flags(),
                self.gds[g as usize].block_bitmap(),
            );
            let bm = if self.sb.has_group_csum() && flags & BLOCK_UNINIT != 0 {
                self.init_block_bitmap(g)
            } else {
                self.fs.read_block(at)?
            };
            self.block_bitmaps.insert(g, bm);
        }
        self.touched.insert(g);
        // OK to unwrap: inserted just above.
        Ok(self.block_bitmaps.get_mut(&g).unwrap())
    }

    /// What the kernel's `ext4_init_block_bitmap` computes for a group never used.
    pub(super) fn init_block_bitmap(&mut self, g: u32) -> Vec<u8> {
        if self.group_meta.is_none() {
            // Where every group's bitmaps and inode table live, by group:
            // one pass over all descriptors, O(metadata blocks).
            let mut m: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            let itb = self.sb.inode_table_blocks();
            for gd in &self.gds {
                let blocks = [gd.block_bitmap(), gd.inode_bitmap()]
                    .into_iter()
                    .chain((0..itb).map(|i| gd.inode_table() + i));
                for b in blocks {
                    m.entry(self.sb.group_of_block(b)).or_default().push(b);
                }
            }
            self.group_meta = Some(m);
        }
        let sb = &self.sb;
        let bs = sb.block_size as usize;
        let mut bm = vec![0u8; bs];
        let first = sb.group_first_block(g);
        let n = u64::from(sb.blocks_in_group(g));
        if sb.group_has_super(g) {
            let meta = 1 + sb.gdt_blocks() + u64::from(sb.reserved_gdt_blocks());
            for i in 0..meta.min(n) {
                set_bit(&mut bm, i as usize, true);
            }
        }
        if let Some(list) = self.group_meta.as_ref().and_then(|m| m.get(&g)) {
            for &b in list {
                if b >= first && b < first + n {
                    set_bit(&mut bm, (b - first) as usize, true);
                }
            }
        }
        for i in n as usize..bs * 8 {
            set_bit(&mut bm, i, true);
        }
        bm
    }

    fn inode_bitmap(&mut self, g: u32) -> Result<&mut Vec<u8>> {
        if !self.inode_bitmaps.contains_key(&g) {
            let gd = &self.gds[g as usize];
            let bm = if self.sb.has_group_csum() && gd.flags() & INODE_UNINIT != 0 {
                let bs = self.sb.block_size as usize;
                let mut bm = vec![0u8; bs];
                for i in self.sb.inodes_per_group as usize..bs * 8 {
                    set_bit(&mut bm, i, true);
                }
                bm
            } else {
                self.fs.read_block(gd.inode_bitmap())?
            };
            self.inode_bitmaps.insert(g, bm);
        }
        self.touched.insert(g);
        // OK to unwrap: inserted just above.
        Ok(self.inode_bitmaps.get_mut(&g).unwrap())
    }

    /// Allocates one block, searching upwards from `goal` (initialised groups
    /// first, then uninitialised ones), wrapping at the end.
    pub(crate) fn alloc_block(&mut self, goal: u64) -> Result<u64> {
        let groups = self.sb.groups;
        let goal = goal.clamp(
            u64::from(self.sb.first_data_block),
            self.sb.blocks_count - 1,
        );
        let g0 = self.sb.group_of_block(goal);
        for pass in 0..2 {
            for k in 0..=groups {
                let g = (g0 + k) % groups;
                let gd = &self.gds[g as usize];
                if gd.free_blocks() == 0 {
                    continue;
                }
                let uninit = self.sb.has_group_csum()
                    && gd.flags() & BLOCK_UNINIT != 0
                    && !self.block_bitmaps.contains_key(&g);
                if (pass == 0) == uninit {
                    continue;
                }
                let first = self.sb.group_first_block(g);
                let n = self.sb.blocks_in_group(g) as usize;
                let start = if k == 0 { (goal - first) as usize } else { 0 };
                let bm = self.block_bitmap(g)?;
                let found = (start..n).find(|&i| !get_bit(bm, i));
                if let Some(i) = found {
                    set_bit(bm, i, true);
                    let gd = &mut self.gds[g as usize];
                    gd.set_free_blocks(gd.free_blocks().saturating_sub(1));
                    gd.set_flags(gd.flags() & !BLOCK_UNINIT);
                    self.stats.blocks_allocated += 1;
                    return Ok(first + i as u64);
                }
            }
        }
        Err(Error::NoSpace {
            missing_blocks: self.pending_blocks.max(1),
            missing_bytes: self.pending_blocks.max(1) * u64::from(self.sb.block_size),
            missing_inodes: 0,
        })
    }

    /// Releases a block.
    pub(crate) fn free_block(&mut self, b: u64) -> Result<()> {
        if b < u64::from(self.sb.first_data_block) || b >= self.sb.blocks_count {
            return Err(corrupt(format!(
                "freeing block {b}, which is outside the filesystem"
            )));
        }
        let g = self.sb.group_of_block(b);
        let i = (b - self.sb.group_first_block(g)) as usize;
        let bm = self.block_bitmap(g)?;
        if !get_bit(bm, i) {
            return Err(corrupt(format!(
                "block {b} is used by a file but free in the bitmap"
            )));
        }
        set_bit(bm, i, false);
        let gd = &mut self.gds[g as usize];
        gd.set_free_blocks(gd.free_blocks().saturating_add(1));
        self.stats.blocks_freed += 1;
        Ok(())
    }

    /// Allocates the lowest free inode, starting at group `goal_group`.
    pub(crate) fn alloc_inode(&mut self, goal_group: u32, is_dir: bool) -> Result<u32> {
        let groups = self.sb.groups;
        let ipg = self.sb.inodes_per_group;
        for k in 0..groups {
            let g = (goal_group + k) % groups;
            if self.gds[g as usize].free_inodes() == 0 {
                continue;
            }
            let first_ino = self.sb.first_ino;
            let bm = self.inode_bitmap(g)?;
            let found = (0..ipg as usize).find(|&i| {
                let ino = g * ipg + i as u32 + 1;
                ino >= first_ino && !get_bit(bm, i)
            });
            if let Some(i) = found {
                set_bit(bm, i, true);
                let gd = &mut self.gds[g as usize];
                gd.set_free_inodes(gd.free_inodes().saturating_sub(1));
                gd.set_flags(gd.flags() & !INODE_UNINIT);
                if is_dir {
                    gd.set_used_dirs(gd.used_dirs().saturating_add(1));
                }
                if self.sb.has_group_csum() {
                    let used = ipg.saturating_sub(gd.itable_unused());
                    if i as u32 >= used {
                        gd.set_itable_unused(ipg - i as u32 - 1);
                    }
                }
                self.stats.inodes_allocated += 1;
                return Ok(g * ipg + i as u32 + 1);
            }
        }
        Err(Error::NoSpace {
            missing_blocks: 0,
            missing_bytes: 0,
            missing_inodes: self.pending_inodes.max(1),
        })
    }

    /// Releases an inode.
    pub(crate) fn free_inode(&mut self, ino: u32, is_dir: bool) -> Result<()> {
        let ipg = self.sb.inodes_per_group;
        let g = (ino - 1) / ipg;
        let i = ((ino - 1) % ipg) as usize;
        let bm = self.inode_bitmap(g)?;
        if !get_bit(bm, i) {
            return Err(corrupt(format!(
                "inode {ino} is in use but free in the bitmap"
            )));
        }
        set_bit(bm, i, false);
        let gd = &mut self.gds[g as usize];
        gd.set_free_inodes(gd.free_inodes().saturating_add(1));
        if is_dir {
            gd.set_used_dirs(gd.used_dirs().saturating_sub(1));
        }
        self.stats.inodes_freed += 1;
        Ok(())
    }

    /// Writes bitmaps, group descriptors and superblock counters.
    pub(crate) fn finish_groups(&mut self) -> Result<()> {
        let csum = self.sb.has_metadata_csum();
        let seed = self.sb.csum_seed;
        let touched: Vec<u32> = self.touched.iter().copied().collect();
        for g in touched {
            if let Some(bm) = self.block_bitmaps.get(&g) {
                self.dev
                    .put_block(self.gds[g as usize].block_bitmap(), bm.clone());
            }
            if let Some(bm) = self.inode_bitmaps.get(&g) {
                self.dev
                    .put_block(self.gds[g as usize].inode_bitmap(), bm.clone());
            }
            if csum {
                let bb = match self.block_bitmaps.get(&g) {
                    Some(b) => b.clone(),
                    None => self.fs.read_block(self.gds[g as usize].block_bitmap())?,
                };
                let ib = match self.inode_bitmaps.get(&g) {
                    Some(b) => b.clone(),
                    None => self.fs.read_block(self.gds[g as usize].inode_bitmap())?,
                };
                let bc =
                    crate::crc::crc32c_raw(seed, &bb[..(self.sb.blocks_per_group / 8) as usize]);
                let ic =
                    crate::crc::crc32c_raw(seed, &ib[..(self.sb.inodes_per_group / 8) as usize]);
                self.gds[g as usize].set_bitmap_csums(bc, ic);
            }
            let sb = self.sb.clone();
            self.gds[g as usize].update_checksum(&sb, g);
            let off =
                crate::group::gdt_offset(&self.sb) + u64::from(g) * u64::from(self.sb.desc_size);
            self.dev.write(off, &self.gds[g as usize].raw)?;
        }
        let free_b: u64 = self.gds.iter().map(|d| u64::from(d.free_blocks())).sum();
        let free_i: u32 = self.gds.iter().map(|d| d.free_inodes()).sum();
        if free_b != self.sb.free_blocks() || free_i != self.sb.free_inodes() {
            self.sb.set_free_counts(free_b, free_i);
            self.dev
                .write(crate::superblock::SUPERBLOCK_OFFSET, &self.sb.raw)?;
        }
        Ok(())
    }
}
