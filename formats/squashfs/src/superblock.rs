//! The 96-byte superblock at offset 0: where every table lives.
//!
//! [`RawSuperblock`] mirrors the on-disk struct field by field (names from
//! the kernel's `squashfs_fs.h`); [`RawSuperblock::validate`] checks what a
//! reader relies on before any offset is followed.

use crate::error::{Result, corrupt, unsupported};

/// `hsqs` read as a little-endian u32.
pub const SQUASHFS_MAGIC: u32 = 0x7371_7368;
/// Size of the superblock on disk.
pub const SUPERBLOCK_SIZE: usize = 96;
/// "No such table" marker for the optional tables.
pub const INVALID_BLK: u64 = u64::MAX;

/// Superblock flag bits (`SQUASHFS_*` in `squashfs_fs.h`).
pub mod flags {
    /// Inodes stored uncompressed.
    pub const UNCOMPRESSED_INODES: u16 = 0x0001;
    /// Data blocks stored uncompressed.
    pub const UNCOMPRESSED_DATA: u16 = 0x0002;
    /// Fragments stored uncompressed.
    pub const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    /// No fragments used.
    pub const NO_FRAGMENTS: u16 = 0x0010;
    /// Tails of big files always go to fragments.
    pub const ALWAYS_FRAGMENTS: u16 = 0x0020;
    /// Identical files share their data.
    pub const DUPLICATES: u16 = 0x0040;
    /// An export (NFS lookup) table exists.
    pub const EXPORTABLE: u16 = 0x0080;
    /// Xattrs stored uncompressed.
    pub const UNCOMPRESSED_XATTRS: u16 = 0x0100;
    /// No xattrs at all.
    pub const NO_XATTRS: u16 = 0x0200;
    /// Compressor options follow the superblock.
    pub const COMPRESSOR_OPTIONS: u16 = 0x0400;
    /// Id table stored uncompressed.
    pub const UNCOMPRESSED_IDS: u16 = 0x0800;
}

/// The superblock, field for field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RawSuperblock {
    pub s_magic: u32,
    pub inodes: u32,
    pub mkfs_time: u32,
    pub block_size: u32,
    pub fragments: u32,
    pub compression: u16,
    pub block_log: u16,
    pub flags: u16,
    pub no_ids: u16,
    pub s_major: u16,
    pub s_minor: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table_start: u64,
    pub xattr_id_table_start: u64,
    pub inode_table_start: u64,
    pub directory_table_start: u64,
    pub fragment_table_start: u64,
    pub lookup_table_start: u64,
}

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl RawSuperblock {
    /// Decodes the first 96 bytes of an image (no validation).
    pub fn parse(b: &[u8; SUPERBLOCK_SIZE]) -> Self {
        RawSuperblock {
            s_magic: le32(b, 0),
            inodes: le32(b, 4),
            mkfs_time: le32(b, 8),
            block_size: le32(b, 12),
            fragments: le32(b, 16),
            compression: le16(b, 20),
            block_log: le16(b, 22),
            flags: le16(b, 24),
            no_ids: le16(b, 26),
            s_major: le16(b, 28),
            s_minor: le16(b, 30),
            root_inode: le64(b, 32),
            bytes_used: le64(b, 40),
            id_table_start: le64(b, 48),
            xattr_id_table_start: le64(b, 56),
            inode_table_start: le64(b, 64),
            directory_table_start: le64(b, 72),
            fragment_table_start: le64(b, 80),
            lookup_table_start: le64(b, 88),
        }
    }

    /// Encodes the superblock.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = Vec::with_capacity(SUPERBLOCK_SIZE);
        b.extend_from_slice(&self.s_magic.to_le_bytes());
        b.extend_from_slice(&self.inodes.to_le_bytes());
        b.extend_from_slice(&self.mkfs_time.to_le_bytes());
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.fragments.to_le_bytes());
        b.extend_from_slice(&self.compression.to_le_bytes());
        b.extend_from_slice(&self.block_log.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.no_ids.to_le_bytes());
        b.extend_from_slice(&self.s_major.to_le_bytes());
        b.extend_from_slice(&self.s_minor.to_le_bytes());
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table_start,
            self.xattr_id_table_start,
            self.inode_table_start,
            self.directory_table_start,
            self.fragment_table_start,
            self.lookup_table_start,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = [0u8; SUPERBLOCK_SIZE];
        out.copy_from_slice(&b);
        out
    }

    /// Checks magic, version, block size and that every table offset lies
    /// inside `bytes_used`, which itself must fit in `file_len`.
    pub fn validate(&self, file_len: u64) -> Result<()> {
        if self.s_magic != SQUASHFS_MAGIC {
            return Err(corrupt(format!(
                "bad superblock magic {:#010x} (expected {SQUASHFS_MAGIC:#010x} \"hsqs\")",
                self.s_magic
            )));
        }
        if (self.s_major, self.s_minor) != (4, 0) {
            return Err(unsupported(format!(
                "squashfs version {}.{} (only 4.0 is supported)",
                self.s_major, self.s_minor
            )));
        }
        if !(12..=20).contains(&self.block_log) || self.block_size != 1u32 << self.block_log {
            return Err(corrupt(format!(
                "block size {} does not match block_log {} (must be a power of two, 4 KiB..1 MiB)",
                self.block_size, self.block_log
            )));
        }
        if self.bytes_used > file_len {
            return Err(corrupt(format!(
                "superblock says {} bytes used, the file has only {file_len}",
                self.bytes_used
            )));
        }
        if self.bytes_used < SUPERBLOCK_SIZE as u64 {
            return Err(corrupt("bytes_used is smaller than the superblock"));
        }
        let end = self.bytes_used;
        let must = [
            ("inode table", self.inode_table_start),
            ("directory table", self.directory_table_start),
            ("id table", self.id_table_start),
        ];
        for (name, at) in must {
            if at >= end || at < SUPERBLOCK_SIZE as u64 {
                return Err(corrupt(format!(
                    "{name} offset {at} lies outside the image (bytes used {end})"
                )));
            }
        }
        let optional = [
            ("fragment table", self.fragment_table_start),
            ("export table", self.lookup_table_start),
            ("xattr id table", self.xattr_id_table_start),
        ];
        for (name, at) in optional {
            if at != INVALID_BLK && (at > end || at < SUPERBLOCK_SIZE as u64) {
                return Err(corrupt(format!(
                    "{name} offset {at} lies outside the image (bytes used {end})"
                )));
            }
        }
        if self.inode_table_start > self.directory_table_start {
            return Err(corrupt("inode table starts after the directory table"));
        }
        if self.no_ids == 0 {
            return Err(corrupt("id table is empty (every inode needs an owner)"));
        }
        if self.inodes == 0 {
            return Err(corrupt("inode count is zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RawSuperblock {
        RawSuperblock {
            s_magic: SQUASHFS_MAGIC,
            inodes: 1,
            mkfs_time: 0,
            block_size: 131072,
            fragments: 0,
            compression: 4,
            block_log: 17,
            flags: 0,
            no_ids: 1,
            s_major: 4,
            s_minor: 0,
            root_inode: 0,
            bytes_used: 200,
            id_table_start: 180,
            xattr_id_table_start: INVALID_BLK,
            inode_table_start: 96,
            directory_table_start: 150,
            fragment_table_start: 160,
            lookup_table_start: INVALID_BLK,
        }
    }

    #[test]
    fn round_trip_and_validation_table() {
        let sb = good();
        assert_eq!(RawSuperblock::parse(&sb.to_bytes()), sb);
        sb.validate(4096).unwrap();
        type Edit = fn(&mut RawSuperblock);
        let cases: &[(&str, Edit, &str)] = &[
            ("magic", |s| s.s_magic = 1, "magic"),
            ("version", |s| s.s_major = 3, "version"),
            ("block_log", |s| s.block_log = 16, "block_log"),
            (
                "tiny block",
                |s| {
                    s.block_size = 2048;
                    s.block_log = 11
                },
                "block_log",
            ),
            ("bytes_used", |s| s.bytes_used = 1 << 40, "bytes used"),
            ("id past end", |s| s.id_table_start = 300, "id table"),
            (
                "frag past end",
                |s| s.fragment_table_start = 9999,
                "fragment table",
            ),
            ("no ids", |s| s.no_ids = 0, "id table"),
        ];
        for (name, edit, want) in cases {
            let mut s = good();
            edit(&mut s);
            let e = s.validate(4096).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
