//! Block group descriptors (32 or 64 bytes each), read from the table after
//! the primary superblock. They locate each group's bitmaps and inode table
//! and carry the free counts and uninit flags the editor maintains.

use crate::bytes::{hi16_32, le16, le32, lo16, lo32, set16, set32};
use crate::crc::{crc16, crc32c_raw};
use crate::error::{Error, Result, corrupt};
use crate::superblock::Superblock;

/// `bg_flags`: the inode table and bitmap are not initialised.
pub const INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: the block bitmap is not initialised.
pub const BLOCK_UNINIT: u16 = 0x2;
/// `bg_flags`: the inode table is zeroed.
pub const ITABLE_ZEROED: u16 = 0x4;

/// One group descriptor, as raw bytes with typed accessors.
#[derive(Clone, Debug)]
pub struct GroupDesc {
    /// `desc_size` raw bytes.
    pub raw: Vec<u8>,
}

impl GroupDesc {
    fn wide(&self) -> bool {
        self.raw.len() >= 64
    }
    fn get64(&self, lo: usize, hi: usize) -> u64 {
        let mut v = u64::from(le32(&self.raw, lo));
        if self.wide() {
            v |= u64::from(le32(&self.raw, hi)) << 32;
        }
        v
    }
    fn get32(&self, lo: usize, hi: usize) -> u32 {
        let mut v = u32::from(le16(&self.raw, lo));
        if self.wide() {
            v |= u32::from(le16(&self.raw, hi)) << 16;
        }
        v
    }
    fn set32s(&mut self, lo: usize, hi: usize, v: u32) {
        set16(&mut self.raw, lo, lo16(v));
        if self.wide() {
            set16(&mut self.raw, hi, hi16_32(v));
        }
    }
    /// `bg_block_bitmap`
    pub fn block_bitmap(&self) -> u64 {
        self.get64(0x0, 0x20)
    }
    /// `bg_inode_bitmap`
    pub fn inode_bitmap(&self) -> u64 {
        self.get64(0x4, 0x24)
    }
    /// `bg_inode_table`
    pub fn inode_table(&self) -> u64 {
        self.get64(0x8, 0x28)
    }
    /// `bg_free_blocks_count`
    pub fn free_blocks(&self) -> u32 {
        self.get32(0xC, 0x2C)
    }
    /// Sets `bg_free_blocks_count`.
    pub fn set_free_blocks(&mut self, v: u32) {
        self.set32s(0xC, 0x2C, v);
    }
    /// `bg_free_inodes_count`
    pub fn free_inodes(&self) -> u32 {
        self.get32(0xE, 0x2E)
    }
    /// Sets `bg_free_inodes_count`.
    pub fn set_free_inodes(&mut self, v: u32) {
        self.set32s(0xE, 0x2E, v);
    }
    /// `bg_used_dirs_count`
    pub fn used_dirs(&self) -> u32 {
        self.get32(0x10, 0x30)
    }
    /// Sets `bg_used_dirs_count`.
    pub fn set_used_dirs(&mut self, v: u32) {
        self.set32s(0x10, 0x30, v);
    }
    /// `bg_flags`
    pub fn flags(&self) -> u16 {
        le16(&self.raw, 0x12)
    }
    /// Sets `bg_flags`.
    pub fn set_flags(&mut self, v: u16) {
        set16(&mut self.raw, 0x12, v);
    }
    /// `bg_itable_unused`
    pub fn itable_unused(&self) -> u32 {
        self.get32(0x1C, 0x32)
    }
    /// Sets `bg_itable_unused`.
    pub fn set_itable_unused(&mut self, v: u32) {
        self.set32s(0x1C, 0x32, v);
    }
    /// Stores the bitmap checksums (metadata_csum).
    pub fn set_bitmap_csums(&mut self, block: u32, inode: u32) {
        set16(&mut self.raw, 0x18, lo16(block));
        set16(&mut self.raw, 0x1A, lo16(inode));
        if self.raw.len() >= 0x3C {
            set16(&mut self.raw, 0x38, hi16_32(block));
            set16(&mut self.raw, 0x3A, hi16_32(inode));
        }
    }
    /// The stored `bg_checksum`.
    pub fn checksum(&self) -> u16 {
        le16(&self.raw, 0x1E)
    }

    /// The checksum this descriptor should carry, if the features ask for one.
    pub fn compute_checksum(&self, sb: &Superblock, group: u32) -> Option<u16> {
        let g = group.to_le_bytes();
        if sb.has_metadata_csum() {
            let mut c = crc32c_raw(sb.csum_seed, &g);
            c = crc32c_raw(c, &self.raw[..0x1E]);
            c = crc32c_raw(c, &[0, 0]);
            c = crc32c_raw(c, &self.raw[0x20..]);
            Some((c & 0xffff) as u16)
        } else if sb.has_gdt_csum() {
            let mut c = crc16(!0, &sb.uuid());
            c = crc16(c, &g);
            c = crc16(c, &self.raw[..0x1E]);
            c = crc16(c, &self.raw[0x20..]);
            Some(c)
        } else {
            None
        }
    }

    /// Refreshes `bg_checksum`.
    pub fn update_checksum(&mut self, sb: &Superblock, group: u32) {
        if let Some(c) = self.compute_checksum(sb, group) {
            set16(&mut self.raw, 0x1E, c);
        }
    }

    fn set64(&mut self, lo: usize, hi: usize, b: u64) {
        set32(&mut self.raw, lo, lo32(b));
        if self.wide() {
            set32(&mut self.raw, hi, (b >> 32) as u32);
        }
    }
    /// Sets `bg_inode_table`.
    pub fn set_inode_table(&mut self, b: u64) {
        self.set64(0x8, 0x28, b);
    }
    /// Sets `bg_block_bitmap`.
    pub fn set_block_bitmap(&mut self, b: u64) {
        self.set64(0x0, 0x20, b);
    }
    /// Sets `bg_inode_bitmap`.
    pub fn set_inode_bitmap(&mut self, b: u64) {
        self.set64(0x4, 0x24, b);
    }
}

/// Byte offset of the primary group descriptor table.
pub fn gdt_offset(sb: &Superblock) -> u64 {
    (u64::from(sb.first_data_block) + 1) * u64::from(sb.block_size)
}

/// Parses and validates all group descriptors from the table's bytes.
pub fn parse_all(sb: &Superblock, table: &[u8]) -> Result<Vec<GroupDesc>> {
    let ds = usize::from(sb.desc_size);
    let mut out = Vec::with_capacity(sb.groups as usize);
    for g in 0..sb.groups {
        let off = g as usize * ds;
        let raw = table
            .get(off..off + ds)
            .ok_or_else(|| corrupt("group descriptor table is truncated"))?
            .to_vec();
        let d = GroupDesc { raw };
        if let Some(c) = d.compute_checksum(sb, g)
            && c != d.checksum()
        {
            return Err(Error::Checksum {
                what: format!("group descriptor {g}"),
                stored: u32::from(d.checksum()),
                computed: u32::from(c),
            });
        }
        let itb = sb.inode_table_blocks();
        for (what, b, n) in [
            ("block bitmap", d.block_bitmap(), 1),
            ("inode bitmap", d.inode_bitmap(), 1),
            ("inode table", d.inode_table(), itb),
        ] {
            if b < u64::from(sb.first_data_block)
                || b.checked_add(n).is_none_or(|e| e > sb.blocks_count)
            {
                return Err(corrupt(format!(
                    "group {g}: {what} at block {b} (+{n}) is beyond the end of the filesystem ({} blocks)",
                    sb.blocks_count
                )));
            }
        }
        if d.free_inodes() > sb.inodes_per_group || d.free_blocks() > sb.blocks_per_group {
            return Err(corrupt(format!(
                "group {g}: free counts exceed the group size"
            )));
        }
        out.push(d);
    }
    Ok(out)
}

impl Superblock {
    /// Blocks taken by one group's inode table.
    pub fn inode_table_blocks(&self) -> u64 {
        (u64::from(self.inodes_per_group) * u64::from(self.inode_size))
            .div_ceil(u64::from(self.block_size))
    }
}
