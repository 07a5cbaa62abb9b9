//! Inodes: fixed-size records in each group's inode table. Kept as raw bytes
//! (the full `s_inode_size`, so in-inode xattrs and fields this codec does
//! not interpret survive an edit) with typed accessors and the metadata_csum
//! inode checksum.

use v6build_fstree::Timestamp;

use crate::bytes::{le16, le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::superblock::{Superblock, ro_compat};

/// The root directory's inode number.
pub const ROOT_INO: u32 = 2;

/// `i_flags`: the directory has an htree index.
pub const INDEX_FL: u32 = 0x1000;
/// `i_flags`: `i_blocks` counts filesystem blocks, not 512-byte sectors.
pub const HUGE_FILE_FL: u32 = 0x40000;
/// `i_flags`: `i_block` holds an extent tree.
pub const EXTENTS_FL: u32 = 0x80000;
/// `i_flags`: the inode stores a large xattr value.
pub const EA_INODE_FL: u32 = 0x200000;
/// `i_flags`: data is inline in the inode.
pub const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `i_flags`: the file is encrypted.
pub const ENCRYPT_FL: u32 = 0x800;

/// Offset of `i_block` (60 bytes: extent root, block pointers or symlink).
pub const I_BLOCK: usize = 0x28;
/// Offset of the fields past the 128-byte classic inode.
pub const EXTRA_START: usize = 128;

/// One inode's raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    /// `s_inode_size` raw bytes.
    pub raw: Vec<u8>,
}

/// Decodes a seconds field plus its `_extra` word (epoch bits + nanoseconds).
fn decode_time(secs: u32, extra: Option<u32>) -> Timestamp {
    let mut s = i64::from(secs as i32);
    let mut nanos = 0;
    if let Some(x) = extra {
        s += i64::from(x & 3) << 32;
        nanos = x >> 2;
        if nanos >= 1_000_000_000 {
            nanos = 0;
        }
    }
    Timestamp { secs: s, nanos }
}

/// Encodes a timestamp into (seconds field, extra word). Out-of-range seconds
/// are clamped to what ext4 can store (1901 .. 2446).
pub fn encode_time(t: Timestamp) -> (u32, u32) {
    let min = i64::from(i32::MIN);
    let max = min + (4i64 << 32) - 1;
    let s = t.secs.clamp(min, max);
    // OK as a truncating cast: the low 32 bits are the on-disk seconds field.
    let lo = (s & 0xffff_ffff) as u32;
    let extra_epoch = (((s - i64::from(lo as i32)) >> 32) & 3) as u32;
    (lo, extra_epoch | (t.nanos.min(999_999_999) << 2))
}

impl Inode {
    /// `i_mode`
    pub fn mode(&self) -> u16 {
        le16(&self.raw, 0x0)
    }
    /// Sets `i_mode`.
    pub fn set_mode(&mut self, m: u16) {
        set16(&mut self.raw, 0x0, m);
    }
    /// File type bits of `i_mode`.
    pub fn file_type(&self) -> u16 {
        self.mode() & 0o170000
    }
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == 0o040000
    }
    /// `i_uid` (both halves).
    pub fn uid(&self) -> u32 {
        u32::from(le16(&self.raw, 0x2)) | (u32::from(le16(&self.raw, 0x78)) << 16)
    }
    /// `i_gid` (both halves).
    pub fn gid(&self) -> u32 {
        u32::from(le16(&self.raw, 0x18)) | (u32::from(le16(&self.raw, 0x7A)) << 16)
    }
    /// Sets owner and group.
    pub fn set_owner(&mut self, uid: u32, gid: u32) {
        set16(&mut self.raw, 0x2, (uid & 0xffff) as u16);
        set16(&mut self.raw, 0x78, (uid >> 16) as u16);
        set16(&mut self.raw, 0x18, (gid & 0xffff) as u16);
        set16(&mut self.raw, 0x7A, (gid >> 16) as u16);
    }
    /// `i_size` (both halves).
    pub fn size(&self) -> u64 {
        u64::from(le32(&self.raw, 0x4)) | (u64::from(le32(&self.raw, 0x6C)) << 32)
    }
    /// Sets `i_size`.
    pub fn set_size(&mut self, s: u64) {
        set32(&mut self.raw, 0x4, (s & 0xffff_ffff) as u32);
        set32(&mut self.raw, 0x6C, (s >> 32) as u32);
    }
    /// `i_links_count`
    pub fn links(&self) -> u16 {
        le16(&self.raw, 0x1A)
    }
    /// Sets `i_links_count`.
    pub fn set_links(&mut self, n: u16) {
        set16(&mut self.raw, 0x1A, n);
    }
    /// `i_dtime`
    pub fn dtime(&self) -> u32 {
        le32(&self.raw, 0x14)
    }
    /// Sets `i_dtime`.
    pub fn set_dtime(&mut self, t: u32) {
        set32(&mut self.raw, 0x14, t);
    }
    /// `i_flags`
    pub fn flags(&self) -> u32 {
        le32(&self.raw, 0x20)
    }
    /// Sets `i_flags`.
    pub fn set_flags(&mut self, f: u32) {
        set32(&mut self.raw, 0x20, f);
    }
    /// `i_generation`
    pub fn generation(&self) -> u32 {
        le32(&self.raw, 0x64)
    }
    /// `i_file_acl`: the external xattr block, 0 if none.
    pub fn file_acl(&self) -> u64 {
        u64::from(le32(&self.raw, 0x68)) | (u64::from(le16(&self.raw, 0x76)) << 32)
    }
    /// Sets `i_file_acl`.
    pub fn set_file_acl(&mut self, b: u64) {
        set32(&mut self.raw, 0x68, (b & 0xffff_ffff) as u32);
        set16(&mut self.raw, 0x76, ((b >> 32) & 0xffff) as u16);
    }
    /// `i_blocks` in 512-byte units, honouring huge_file.
    pub fn blocks_512(&self, sb: &Superblock) -> u64 {
        let mut b = u64::from(le32(&self.raw, 0x1C));
        if sb.feature_ro_compat & ro_compat::HUGE_FILE != 0 {
            b |= u64::from(le16(&self.raw, 0x74)) << 32;
            if self.flags() & HUGE_FILE_FL != 0 {
                b = b.saturating_mul(u64::from(sb.block_size / 512));
            }
        }
        b
    }
    /// Sets `i_blocks` from a count of filesystem blocks.
    pub fn set_blocks(&mut self, sb: &Superblock, fs_blocks: u64) {
        let sectors = fs_blocks * u64::from(sb.block_size / 512);
        set32(&mut self.raw, 0x1C, (sectors & 0xffff_ffff) as u32);
        set16(&mut self.raw, 0x74, ((sectors >> 32) & 0xffff) as u16);
        self.set_flags(self.flags() & !HUGE_FILE_FL);
    }
    /// The 60-byte `i_block` area.
    pub fn i_block(&self) -> &[u8] {
        &self.raw[I_BLOCK..I_BLOCK + 60]
    }
    /// The 60-byte `i_block` area, mutably.
    pub fn i_block_mut(&mut self) -> &mut [u8] {
        &mut self.raw[I_BLOCK..I_BLOCK + 60]
    }
    /// `i_extra_isize` (0 for 128-byte inodes).
    pub fn extra_isize(&self) -> u16 {
        if self.raw.len() > EXTRA_START {
            le16(&self.raw, 0x80)
        } else {
            0
        }
    }
    fn has_extra(&self, end: usize) -> bool {
        EXTRA_START + usize::from(self.extra_isize()) >= end
    }
    /// Modification time, with nanoseconds when the inode has room for them.
    pub fn mtime(&self) -> Timestamp {
        let extra = self.has_extra(0x8C).then(|| le32(&self.raw, 0x88));
        decode_time(le32(&self.raw, 0x10), extra)
    }
    /// Sets atime, ctime, mtime (and crtime where present) to `t`.
    pub fn set_times(&mut self, t: Timestamp) {
        let (s, x) = encode_time(t);
        for off in [0x8, 0xC, 0x10] {
            set32(&mut self.raw, off, s);
        }
        for (end, off) in [(0x88, 0x84), (0x8C, 0x88), (0x90, 0x8C), (0x98, 0x94)] {
            if self.has_extra(end) {
                set32(&mut self.raw, off, x);
            }
        }
        if self.has_extra(0x94) {
            set32(&mut self.raw, 0x90, s);
        }
    }
    /// Sets only mtime (ctime follows, as the kernel would do).
    pub fn set_mtime(&mut self, t: Timestamp) {
        let (s, x) = encode_time(t);
        set32(&mut self.raw, 0x10, s);
        set32(&mut self.raw, 0xC, s);
        if self.has_extra(0x8C) {
            set32(&mut self.raw, 0x88, x);
        }
        if self.has_extra(0x88) {
            set32(&mut self.raw, 0x84, x);
        }
    }

    /// The metadata_csum seed for this inode (also seeds its extent, dir
    /// and xattr-in-block checksums).
    pub fn csum_seed(&self, sb: &Superblock) -> u32 {
        let c = crc32c_raw(sb.csum_seed, &self.ino.to_le_bytes());
        crc32c_raw(c, &self.generation().to_le_bytes())
    }

    fn has_csum_hi(&self) -> bool {
        self.raw.len() > EXTRA_START && self.has_extra(0x84)
    }

    /// Computes the inode checksum over the record with the checksum fields zeroed.
    pub fn compute_checksum(&self, sb: &Superblock) -> u32 {
        let mut tmp = self.raw.clone();
        set16(&mut tmp, 0x7C, 0);
        if self.has_csum_hi() {
            set16(&mut tmp, 0x82, 0);
        }
        let c = crc32c_raw(self.csum_seed(sb), &tmp);
        if self.has_csum_hi() { c } else { c & 0xffff }
    }

    /// The stored checksum.
    pub fn checksum(&self) -> u32 {
        let mut c = u32::from(le16(&self.raw, 0x7C));
        if self.has_csum_hi() {
            c |= u32::from(le16(&self.raw, 0x82)) << 16;
        }
        c
    }

    /// Refreshes the checksum if metadata_csum is on.
    pub fn update_checksum(&mut self, sb: &Superblock) {
        if sb.has_metadata_csum() {
            let c = self.compute_checksum(sb);
            set16(&mut self.raw, 0x7C, (c & 0xffff) as u16);
            if self.has_csum_hi() {
                set16(&mut self.raw, 0x82, (c >> 16) as u16);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip() {
        for secs in [
            0i64,
            1,
            -1,
            1_700_000_000,
            i64::from(i32::MAX) + 5,
            -2_000_000_000,
        ] {
            for nanos in [0u32, 1, 999_999_999] {
                let t = Timestamp { secs, nanos };
                let (s, x) = encode_time(t);
                assert_eq!(decode_time(s, Some(x)), t, "{t:?}");
            }
        }
    }
}
