//! Growing a filesystem: `stage2 { grow "512M" }`. The last group is
//! extended and whole new groups are appended (bitmaps and inode table in
//! the group itself, inode tables left uninitialised where the features
//! allow), within the capacity of the existing group descriptor blocks.
//! New backup groups get their superblock and descriptor copies, and the
//! resize inode learns their reserved descriptor blocks, as resize2fs does.

use crate::bytes::{le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::error::{Result, corrupt, unsupported};
use crate::group::{self, GroupDesc, INODE_UNINIT, ITABLE_ZEROED};
use crate::inode::Inode;
use crate::superblock::{SUPERBLOCK_OFFSET, compat};
use crate::{Ext4, superblock};

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
    let (sb, gds) = {
        let fs = Ext4::open(&image[..])?;
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
    let mut out = image.clone();
    let new_len = (new_blocks * bs).max(out.len() as u64);
    out.resize(
        usize::try_from(new_len).map_err(|_| unsupported("image too large for memory"))?,
        0,
    );
    let mut sb = sb;
    let mut gds = gds;
    let block = |b: u64| -> std::ops::Range<usize> { (b * bs) as usize..((b + 1) * bs) as usize };
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
            let r = block(gd.block_bitmap());
            for i in old_len..glen(g) {
                clear_bit(&mut out[r.clone()], i);
            }
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
        let r = block(bb);
        out[r].copy_from_slice(&bbm);
        let r = block(ib);
        out[r].copy_from_slice(&ibm);
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
            let bb = &out[block(d.block_bitmap())];
            let ib = &out[block(d.inode_bitmap())];
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
    let gdt_at = group::gdt_offset(&sb) as usize;
    out[gdt_at..gdt_at + table.len()].copy_from_slice(&table);
    out[SUPERBLOCK_OFFSET as usize..SUPERBLOCK_OFFSET as usize + superblock::SUPERBLOCK_SIZE]
        .copy_from_slice(&sb.raw);
    // 5. Backups in new groups, and the resize inode's list of them.
    for &g in &new_backups {
        let mut copy = sb.raw.clone();
        set16(&mut copy, 0x5A, g as u16);
        if csum {
            let c = crc32c_raw(!0, &copy[..0x3FC]);
            set32(&mut copy, 0x3FC, c);
        }
        let at = (first(g) * bs) as usize;
        out[at..at + copy.len()].copy_from_slice(&copy);
        let gat = ((first(g) + 1) * bs) as usize;
        out[gat..gat + table.len()].copy_from_slice(&table);
    }
    if has_resize && reserved > 0 && !new_backups.is_empty() {
        let fs = Ext4::open(&out[..])?;
        let mut ri: Inode = fs.inode(7)?;
        let off = fs.inode_offset(7)? as usize;
        drop(fs);
        let rank = |g: u32| (1..=g).filter(|&h| sb.group_has_super(h)).count() as u64 - 1;
        for &g in &new_backups {
            let j = rank(g);
            if j >= bs / 4 {
                return Err(unsupported("too many backup groups for the resize inode"));
            }
            for i in 0..reserved {
                let primary = fdb + 1 + gdt + i;
                let at = (primary * bs + j * 4) as usize;
                if le32(&out, at) != 0 {
                    return Err(corrupt(
                        "resize inode already lists a backup for a new group",
                    ));
                }
                set32(&mut out[..], at, (first(g) + 1 + gdt + i) as u32);
            }
            let sectors = u64::from(le32(&ri.raw, 0x1C)) + reserved * (bs / 512);
            set32(&mut ri.raw, 0x1C, (sectors & 0xffff_ffff) as u32);
        }
        ri.update_checksum(&sb);
        out[off..off + ri.raw.len()].copy_from_slice(&ri.raw);
    }
    // Sanity: the result must open.
    Ext4::open(&out[..])?;
    let changed = diff_ranges(image, &out, bs);
    *image = out;
    Ok(GrowReport {
        old_blocks,
        new_blocks,
        groups_added: new_groups - old_groups,
        changed,
    })
}

fn diff_ranges(old: &[u8], new: &[u8], bs: u64) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    for (k, chunk) in new.chunks(bs as usize).enumerate() {
        let off = k as u64 * bs;
        let o = old
            .get(off as usize..(off as usize + chunk.len()).min(old.len()))
            .unwrap_or(&[]);
        if o.len() == chunk.len() && o == chunk {
            continue;
        }
        if o.is_empty() && chunk.iter().all(|&b| b == 0) {
            continue;
        }
        match v.last_mut() {
            Some(l) if l.1 == off => l.1 = off + chunk.len() as u64,
            _ => v.push((off, off + chunk.len() as u64)),
        }
    }
    v
}
