//! Growing a filesystem: `stage2 { grow "512M" }`. The last group is
//! extended and whole new groups are appended (bitmaps and inode table in
//! the group itself, inode tables left uninitialised where the features
//! allow), within the capacity of the existing group descriptor blocks.
//! New backup groups get their superblock and descriptor copies, and the
//! resize inode learns their reserved descriptor blocks, as resize2fs does.

use crate::Ext4;
use crate::bytes::{le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::edit::{BlockEdit, EditReport};
use crate::error::{Result, corrupt, unsupported};
use crate::group::{self, GroupDesc, INODE_UNINIT, ITABLE_ZEROED};
use crate::inode::Inode;
use crate::readat::{Overlay, ReadAt};
use crate::superblock::{SUPERBLOCK_OFFSET, compat};

/// What [`grow`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrowReport {
    /// Blocks before.
    pub old_blocks: u64,
    /// Blocks after.
    pub new_blocks: u64,
    /// Groups added.
    pub groups_added: u32,
    /// Changed or appended byte ranges `[start, end)` (appended space
    /// counts as changed only where written).
    pub changed: Vec<(u64, u64)>,
}

fn set_bit(b: &mut [u8], i: u64) {
    b[(i / 8) as usize] |= 1 << (i % 8);
}
fn clear_bit(b: &mut [u8], i: u64) {
    b[(i / 8) as usize] &= !(1 << (i % 8));
}

/// Enlarges the filesystem in `image` by (about) `add_bytes`, deterministically.
/// The image vector grows to the new size. Fails without changing the
/// image if the layout does not allow it.
pub fn grow(image: &mut Vec<u8>, add_bytes: u64) -> Result<GrowReport> {
    let (edit, report) = grow_blocks(&*image, add_bytes)?;
    let len = usize::try_from(edit.len).map_err(|_| unsupported("image too large for memory"))?;
    if image.len() < len {
        image.resize(len, 0);
    }
    edit.apply_to(image);
    Ok(report)
}

/// [`grow`] without touching the base: the new and changed blocks, and the
/// new image length ([`BlockEdit::len`]). Chain it with
/// [`crate::edit_blocks`] through a [`crate::Overlay`].
pub fn grow_blocks(base: &dyn ReadAt, add_bytes: u64) -> Result<(BlockEdit, GrowReport)> {
    let (sb, gds) = {
        let fs = Ext4::open(base)?;
        (fs.sb.clone(), fs.groups.clone())
    };
    if sb.feature_compat & compat::SPARSE_SUPER2 != 0 {
        return Err(unsupported("growing a sparse_super2 filesystem"));
    }
    if !sb.is_clean() {
        return Err(unsupported(
            "the filesystem was not cleanly unmounted; run e2fsck first",
        ));
    }
    let bs = u64::from(sb.block_size);
    let bpg = u64::from(sb.blocks_per_group);
    let fdb = u64::from(sb.first_data_block);
    let ipg = sb.inodes_per_group;
    let itb = sb.inode_table_blocks();
    let gdt = sb.gdt_blocks();
    let has_resize = sb.feature_compat & compat::RESIZE_INODE != 0;
    let reserved = if has_resize {
        u64::from(sb.reserved_gdt_blocks())
    } else {
        0
    };
    let old_blocks = sb.blocks_count;
    let old_groups = sb.groups;
    let mut new_blocks = old_blocks + add_bytes / bs;
    if !sb.is_64bit() && new_blocks > u64::from(u32::MAX) {
        return Err(unsupported("growing past 2^32 blocks needs 64bit"));
    }
    let overhead = |g: u32| -> u64 {
        (if sb.group_has_super(g) {
            1 + gdt + reserved
        } else {
            0
        }) + 2
            + itb
    };
    let mut new_groups = u32::try_from((new_blocks - fdb).div_ceil(bpg))
        .map_err(|_| unsupported("too many groups"))?;
    if new_groups > old_groups {
        let last = new_groups - 1;
        let len = new_blocks - (fdb + u64::from(last) * bpg);
        if len < overhead(last) + 64 {
            new_groups -= 1;
            new_blocks = fdb + u64::from(new_groups) * bpg;
        }
    }
    if new_blocks <= old_blocks {
        return Err(unsupported(format!(
            "growing by {add_bytes} bytes adds no usable group"
        )));
    }
    let capacity = gdt * bs / u64::from(sb.desc_size);
    if u64::from(new_groups) > capacity {
        return Err(unsupported(format!(
            "growing to {new_groups} groups needs more group descriptor blocks than the {gdt} present"
        )));
    }
    let first = |g: u32| fdb + u64::from(g) * bpg;
    let glen = |g: u32| (first(g) + bpg).min(new_blocks) - first(g);
    let new_len = (new_blocks * bs).max(base.len());
    let mut out = Overlay::new(base, sb.block_size, Default::default(), new_len);
    let mut sb = sb;
    let mut gds = gds;
    let csum = sb.has_metadata_csum();
    let group_csum = sb.has_group_csum();
    let mut touched: Vec<u32> = Vec::new();

    // 1. Extend the old last group.
    let g = old_groups - 1;
    let old_len = sb.blocks_in_group(g) as u64;
    let added = glen(g) - old_len;
    if added > 0 {
        let gd = &mut gds[g as usize];
        if !(group_csum && gd.flags() & group::BLOCK_UNINIT != 0) {
            let mut bm = out.block(gd.block_bitmap())?;
            for i in old_len..glen(g) {
                clear_bit(&mut bm, i);
            }
            out.put(gd.block_bitmap(), bm);
        }
        gd.set_free_blocks(gd.free_blocks().saturating_add(added as u32));
        touched.push(g);
    }
    // 2. New groups.
    let mut new_backups = Vec::new();
    for g in old_groups..new_groups {
        let start = first(g);
        let mut b = start;
        if sb.group_has_super(g) {
            b += 1 + gdt + reserved;
            new_backups.push(g);
        }
        let (bb, ib, it) = (b, b + 1, b + 2);
        let used = it + itb - start;
        let mut bbm = vec![0u8; bs as usize];
        for i in 0..used {
            set_bit(&mut bbm, i);
        }
        for i in glen(g)..bs * 8 {
            set_bit(&mut bbm, i);
        }
        let mut ibm = vec![0u8; bs as usize];
        for i in u64::from(ipg)..bs * 8 {
            set_bit(&mut ibm, i);
        }
        let mut gd = GroupDesc {
            raw: vec![0u8; usize::from(sb.desc_size)],
        };
        gd.set_block_bitmap(bb);
        gd.set_inode_bitmap(ib);
        gd.set_inode_table(it);
        gd.set_free_blocks((glen(g) - used) as u32);
        gd.set_free_inodes(ipg);
        if group_csum {
            gd.set_flags(INODE_UNINIT | ITABLE_ZEROED);
            gd.set_itable_unused(ipg);
        }
        out.put(bb, bbm);
        out.put(ib, ibm);
        gds.push(gd);
        touched.push(g);
    }
    // 3. Superblock counters and geometry.
    set32(&mut sb.raw, 0x4, (new_blocks & 0xffff_ffff) as u32);
    if sb.is_64bit() {
        set32(&mut sb.raw, 0x150, (new_blocks >> 32) as u32);
    }
    let inodes = u64::from(ipg) * u64::from(new_groups);
    set32(
        &mut sb.raw,
        0x0,
        u32::try_from(inodes).map_err(|_| unsupported("too many inodes"))?,
    );
    sb.blocks_count = new_blocks;
    sb.groups = new_groups;
    let free_b: u64 = gds.iter().map(|d| u64::from(d.free_blocks())).sum();
    let free_i: u32 = gds.iter().map(|d| d.free_inodes()).sum();
    sb.set_free_counts(free_b, free_i);
    // 4. Descriptor checksums (bitmap checksums first) and the primary table.
    for &g in &touched {
        if csum {
            let d = &gds[g as usize];
            let bb = out.block(d.block_bitmap())?;
            let ib = out.block(d.inode_bitmap())?;
            let bc = crc32c_raw(sb.csum_seed, &bb[..(sb.blocks_per_group / 8) as usize]);
            let ic = crc32c_raw(sb.csum_seed, &ib[..(ipg / 8) as usize]);
            gds[g as usize].set_bitmap_csums(bc, ic);
        }
        gds[g as usize].update_checksum(&sb, g);
    }
    let mut table = Vec::with_capacity((gdt * bs) as usize);
    for d in &gds {
        table.extend_from_slice(&d.raw);
    }
    out.write(group::gdt_offset(&sb), &table)?;
    out.write(SUPERBLOCK_OFFSET, &sb.raw)?;
    // 5. Backups in new groups, and the resize inode's list of them.
    for &g in &new_backups {
        let mut copy = sb.raw.clone();
        set16(&mut copy, 0x5A, g as u16);
        if csum {
            let c = crc32c_raw(!0, &copy[..0x3FC]);
            set32(&mut copy, 0x3FC, c);
        }
        out.write(first(g) * bs, &copy)?;
        out.write((first(g) + 1) * bs, &table)?;
    }
    if has_resize && reserved > 0 && !new_backups.is_empty() {
        let fs = Ext4::open(&out)?;
        let mut ri: Inode = fs.inode(7)?;
        let off = fs.inode_offset(7)?;
        drop(fs);
        let rank = |g: u32| (1..=g).filter(|&h| sb.group_has_super(h)).count() as u64 - 1;
        for &g in &new_backups {
            let j = rank(g);
            if j >= bs / 4 {
                return Err(unsupported("too many backup groups for the resize inode"));
            }
            for i in 0..reserved {
                let primary = fdb + 1 + gdt + i;
                let mut blk = out.block(primary)?;
                let at = (j * 4) as usize;
                if le32(&blk, at) != 0 {
                    return Err(corrupt(
                        "resize inode already lists a backup for a new group",
                    ));
                }
                set32(&mut blk, at, (first(g) + 1 + gdt + i) as u32);
                out.put(primary, blk);
            }
            let sectors = u64::from(le32(&ri.raw, 0x1C)) + reserved * (bs / 512);
            set32(&mut ri.raw, 0x1C, (sectors & 0xffff_ffff) as u32);
        }
        ri.update_checksum(&sb);
        out.write(off, &ri.raw)?;
    }
    // Sanity: the result must open.
    Ext4::open(&out)?;
    // Keep only blocks that differ from what the base (or zeros) had.
    let mut blocks = std::collections::BTreeMap::new();
    let mut changed: Vec<(u64, u64)> = Vec::new();
    let empty = Overlay::new(base, sb.block_size, Default::default(), new_len);
    for (b, data) in out.into_blocks() {
        if empty.block(b)? == data {
            continue;
        }
        let (s, e) = (b * bs, (b + 1) * bs);
        match changed.last_mut() {
            Some(l) if l.1 == s => l.1 = e,
            _ => changed.push((s, e)),
        }
        blocks.insert(b, data);
    }
    let report = GrowReport {
        old_blocks,
        new_blocks,
        groups_added: new_groups - old_groups,
        changed: changed.clone(),
    };
    let edit = BlockEdit {
        block_size: sb.block_size,
        blocks,
        len: new_len,
        report: EditReport {
            changed,
            stats: Default::default(),
        },
    };
    Ok((edit, report))
}
