//! The superblock: the first structure read, at byte 1024. It fixes the
//! geometry (block size, groups) and the feature set; this module validates
//! both and refuses features the codec cannot handle safely.

use crate::bytes::{le16, le32, set32};
use crate::crc::crc32c_raw;
use crate::error::{Error, Result, corrupt, unsupported};

/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock record.
pub const SUPERBLOCK_SIZE: usize = 1024;
const EXT4_MAGIC: u16 = 0xEF53;

/// `s_feature_compat` bits.
pub mod compat {
    /// `has_journal`
    pub const HAS_JOURNAL: u32 = 0x4;
    /// `ext_attr`
    pub const EXT_ATTR: u32 = 0x8;
    /// `resize_inode`
    pub const RESIZE_INODE: u32 = 0x10;
    /// `dir_index`
    pub const DIR_INDEX: u32 = 0x20;
    /// `sparse_super2`
    pub const SPARSE_SUPER2: u32 = 0x200;
    /// `fast_commit`
    pub const FAST_COMMIT: u32 = 0x400;
    /// `orphan_file`
    pub const ORPHAN_FILE: u32 = 0x1000;
}

/// `s_feature_incompat` bits.
pub mod incompat {
    /// `compression` (never merged into ext4)
    pub const COMPRESSION: u32 = 0x1;
    /// `filetype`
    pub const FILETYPE: u32 = 0x2;
    /// `needs_recovery`
    pub const RECOVER: u32 = 0x4;
    /// `journal_dev`
    pub const JOURNAL_DEV: u32 = 0x8;
    /// `meta_bg`
    pub const META_BG: u32 = 0x10;
    /// `extent`
    pub const EXTENTS: u32 = 0x40;
    /// `64bit`
    pub const BIT64: u32 = 0x80;
    /// `mmp`
    pub const MMP: u32 = 0x100;
    /// `flex_bg`
    pub const FLEX_BG: u32 = 0x200;
    /// `ea_inode`
    pub const EA_INODE: u32 = 0x400;
    /// `dirdata`
    pub const DIRDATA: u32 = 0x1000;
    /// `metadata_csum_seed`
    pub const CSUM_SEED: u32 = 0x2000;
    /// `large_dir`
    pub const LARGEDIR: u32 = 0x4000;
    /// `inline_data`
    pub const INLINE_DATA: u32 = 0x8000;
    /// `encrypt`
    pub const ENCRYPT: u32 = 0x10000;
    /// `casefold`
    pub const CASEFOLD: u32 = 0x20000;
    /// Everything the reader handles.
    pub const SUPPORTED: u32 = FILETYPE | EXTENTS | BIT64 | MMP | FLEX_BG | CSUM_SEED | LARGEDIR;
}

/// `s_feature_ro_compat` bits.
pub mod ro_compat {
    /// `sparse_super`
    pub const SPARSE_SUPER: u32 = 0x1;
    /// `large_file`
    pub const LARGE_FILE: u32 = 0x2;
    /// `btree_dir` (never used)
    pub const BTREE_DIR: u32 = 0x4;
    /// `huge_file`
    pub const HUGE_FILE: u32 = 0x8;
    /// `uninit_bg` (gdt_csum)
    pub const GDT_CSUM: u32 = 0x10;
    /// `dir_nlink`
    pub const DIR_NLINK: u32 = 0x20;
    /// `extra_isize`
    pub const EXTRA_ISIZE: u32 = 0x40;
    /// `snapshot`
    pub const HAS_SNAPSHOT: u32 = 0x80;
    /// `quota`
    pub const QUOTA: u32 = 0x100;
    /// `bigalloc`
    pub const BIGALLOC: u32 = 0x200;
    /// `metadata_csum`
    pub const METADATA_CSUM: u32 = 0x400;
    /// `replica`
    pub const REPLICA: u32 = 0x800;
    /// `read-only`
    pub const READONLY: u32 = 0x1000;
    /// `project`
    pub const PROJECT: u32 = 0x2000;
    /// `shared_blocks`
    pub const SHARED_BLOCKS: u32 = 0x4000;
    /// `verity`
    pub const VERITY: u32 = 0x8000;
    /// `orphan_present`
    pub const ORPHAN_PRESENT: u32 = 0x10000;
    /// Everything the reader handles.
    pub const SUPPORTED: u32 = SPARSE_SUPER
        | LARGE_FILE
        | HUGE_FILE
        | GDT_CSUM
        | DIR_NLINK
        | EXTRA_ISIZE
        | QUOTA
        | METADATA_CSUM
        | READONLY
        | PROJECT
        | VERITY;
}

/// A validated superblock, with its raw bytes kept for in-place updates.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// The 1024 raw bytes.
    pub raw: Vec<u8>,
    /// Block size in bytes (1 KiB .. 64 KiB).
    pub block_size: u32,
    /// Total blocks.
    pub blocks_count: u64,
    /// Number of block groups.
    pub groups: u32,
    /// `s_inodes_per_group`
    pub inodes_per_group: u32,
    /// `s_blocks_per_group`
    pub blocks_per_group: u32,
    /// `s_inode_size`
    pub inode_size: u16,
    /// `s_first_ino`
    pub first_ino: u32,
    /// `s_first_data_block`
    pub first_data_block: u32,
    /// Group descriptor size (32 without `64bit`).
    pub desc_size: u16,
    /// `s_feature_compat`
    pub feature_compat: u32,
    /// `s_feature_incompat`
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`
    pub feature_ro_compat: u32,
    /// Seed for metadata checksums (from the UUID or `s_checksum_seed`).
    pub csum_seed: u32,
}

impl Superblock {
    /// Parses and validates the superblock record.
    pub fn parse(raw: &[u8], image_len: u64) -> Result<Superblock> {
        if raw.len() < SUPERBLOCK_SIZE {
            return Err(corrupt("superblock is truncated"));
        }
        let raw = raw[..SUPERBLOCK_SIZE].to_vec();
        let magic = le16(&raw, 0x38);
        if magic != EXT4_MAGIC {
            return Err(corrupt(format!(
                "bad superblock magic {magic:#06x} (expected {EXT4_MAGIC:#06x}); not an ext2/3/4 image"
            )));
        }
        let log = le32(&raw, 0x18);
        if log > 6 {
            return Err(corrupt(format!("s_log_block_size {log} is out of range")));
        }
        let block_size = 1024u32 << log;
        let feature_compat = le32(&raw, 0x5C);
        let feature_incompat = le32(&raw, 0x60);
        let feature_ro_compat = le32(&raw, 0x64);
        let unknown = feature_incompat & !incompat::SUPPORTED;
        if unknown != 0 {
            return Err(unsupported(format!(
                "incompatible features {} ({unknown:#x}) are not supported",
                incompat_names(unknown)
            )));
        }
        let unknown_ro = feature_ro_compat & !ro_compat::SUPPORTED;
        if unknown_ro != 0 {
            return Err(unsupported(format!(
                "read-only-compatible features {} ({unknown_ro:#x}) are not supported",
                ro_compat_names(unknown_ro)
            )));
        }
        let is64 = feature_incompat & incompat::BIT64 != 0;
        let mut blocks_count = u64::from(le32(&raw, 0x4));
        if is64 {
            blocks_count |= u64::from(le32(&raw, 0x150)) << 32;
        }
        let rev = le32(&raw, 0x4C);
        let (inode_size, first_ino) = if rev == 0 {
            (128, 11)
        } else {
            (le16(&raw, 0x58), le32(&raw, 0x54))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || u32::from(inode_size) > block_size {
            return Err(corrupt(format!("s_inode_size {inode_size} is invalid")));
        }
        let blocks_per_group = le32(&raw, 0x20);
        let inodes_per_group = le32(&raw, 0x28);
        let first_data_block = le32(&raw, 0x14);
        if blocks_per_group < 8
            || !blocks_per_group.is_multiple_of(8)
            || blocks_per_group > block_size * 8
        {
            return Err(corrupt(format!(
                "s_blocks_per_group {blocks_per_group} is invalid"
            )));
        }
        if inodes_per_group == 0 || inodes_per_group > block_size * 8 {
            return Err(corrupt(format!(
                "s_inodes_per_group {inodes_per_group} is invalid"
            )));
        }
        if first_data_block != u32::from(block_size == 1024) {
            return Err(corrupt(format!(
                "s_first_data_block {first_data_block} is invalid"
            )));
        }
        if blocks_count <= u64::from(first_data_block) {
            return Err(corrupt("s_blocks_count is zero"));
        }
        let bs = u64::from(block_size);
        if blocks_count
            .checked_mul(bs)
            .is_none_or(|end| end > image_len)
        {
            return Err(corrupt(format!(
                "s_blocks_count {blocks_count} x {block_size} bytes is past the end of the image ({image_len} bytes)"
            )));
        }
        let groups64 =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let groups = u32::try_from(groups64).map_err(|_| corrupt("too many block groups"))?;
        let inodes_count = le32(&raw, 0x0);
        if u64::from(inodes_count) != u64::from(groups) * u64::from(inodes_per_group) {
            return Err(corrupt(format!(
                "s_inodes_count {inodes_count} != {groups} groups x {inodes_per_group} inodes"
            )));
        }
        if first_ino < 11 || first_ino >= inodes_count {
            return Err(corrupt(format!("s_first_ino {first_ino} is invalid")));
        }
        let desc_size = if is64 { le16(&raw, 0xFE) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(corrupt(format!("s_desc_size {desc_size} is invalid")));
        }
        let csum = feature_ro_compat & ro_compat::METADATA_CSUM != 0;
        if csum {
            let ty = raw[0x175];
            if ty != 1 {
                return Err(unsupported(format!(
                    "checksum type {ty} (only crc32c is known)"
                )));
            }
            let stored = le32(&raw, 0x3FC);
            let computed = crc32c_raw(!0, &raw[..0x3FC]);
            if stored != computed {
                return Err(Error::Checksum {
                    what: "superblock".into(),
                    stored,
                    computed,
                });
            }
        }
        let csum_seed = if feature_incompat & incompat::CSUM_SEED != 0 {
            le32(&raw, 0x270)
        } else {
            crc32c_raw(!0, &raw[0x68..0x78])
        };
        Ok(Superblock {
            raw,
            block_size,
            blocks_count,
            groups,
            inodes_per_group,
            blocks_per_group,
            inode_size,
            first_ino,
            first_data_block,
            desc_size,
            feature_compat,
            feature_incompat,
            feature_ro_compat,
            csum_seed,
        })
    }

    /// Whether `metadata_csum` is on.
    pub fn has_metadata_csum(&self) -> bool {
        self.feature_ro_compat & ro_compat::METADATA_CSUM != 0
    }
    /// Whether the older `uninit_bg` group checksum is on (and metadata_csum off).
    pub fn has_gdt_csum(&self) -> bool {
        !self.has_metadata_csum() && self.feature_ro_compat & ro_compat::GDT_CSUM != 0
    }
    /// Whether group descriptors carry checksums and uninit flags.
    pub fn has_group_csum(&self) -> bool {
        self.feature_ro_compat & (ro_compat::GDT_CSUM | ro_compat::METADATA_CSUM) != 0
    }
    /// Whether directory entries carry a file type byte.
    pub fn has_filetype(&self) -> bool {
        self.feature_incompat & incompat::FILETYPE != 0
    }
    /// Whether 64-bit block numbers are on.
    pub fn is_64bit(&self) -> bool {
        self.feature_incompat & incompat::BIT64 != 0
    }
    /// The filesystem UUID.
    pub fn uuid(&self) -> [u8; 16] {
        let mut u = [0; 16];
        u.copy_from_slice(&self.raw[0x68..0x78]);
        u
    }
    /// The volume label, without trailing NULs.
    pub fn label(&self) -> Vec<u8> {
        let l = &self.raw[0x78..0x88];
        let end = l.iter().position(|&b| b == 0).unwrap_or(l.len());
        l[..end].to_vec()
    }
    /// `s_inodes_count`
    pub fn inodes_count(&self) -> u32 {
        le32(&self.raw, 0x0)
    }
    /// `s_free_blocks_count`
    pub fn free_blocks(&self) -> u64 {
        let mut v = u64::from(le32(&self.raw, 0xC));
        if self.is_64bit() {
            v |= u64::from(le32(&self.raw, 0x158)) << 32;
        }
        v
    }
    /// `s_free_inodes_count`
    pub fn free_inodes(&self) -> u32 {
        le32(&self.raw, 0x10)
    }
    /// Sets the free block and inode counters and refreshes the checksum.
    pub fn set_free_counts(&mut self, blocks: u64, inodes: u32) {
        set32(&mut self.raw, 0xC, crate::bytes::lo32(blocks));
        if self.is_64bit() {
            set32(&mut self.raw, 0x158, (blocks >> 32) as u32);
        }
        set32(&mut self.raw, 0x10, inodes);
        if self.has_metadata_csum() {
            let c = crc32c_raw(!0, &self.raw[..0x3FC]);
            set32(&mut self.raw, 0x3FC, c);
        }
    }
    /// `s_hash_seed` as four words.
    pub fn hash_seed(&self) -> [u32; 4] {
        [0, 4, 8, 12].map(|o| le32(&self.raw, 0xEC + o))
    }
    /// `s_def_hash_version`
    pub fn def_hash_version(&self) -> u8 {
        self.raw[0xFC]
    }
    /// `s_state` bit 1 (cleanly unmounted).
    pub fn is_clean(&self) -> bool {
        le16(&self.raw, 0x3A) & 1 != 0
    }
    /// Index of the group holding block `b`.
    pub fn group_of_block(&self, b: u64) -> u32 {
        ((b - u64::from(self.first_data_block)) / u64::from(self.blocks_per_group)) as u32
    }
    /// First block of group `g`.
    pub fn group_first_block(&self, g: u32) -> u64 {
        u64::from(self.first_data_block) + u64::from(g) * u64::from(self.blocks_per_group)
    }
    /// Number of blocks in group `g` (the last may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let first = self.group_first_block(g);
        let end = (first + u64::from(self.blocks_per_group)).min(self.blocks_count);
        (end - first) as u32
    }
    /// Whether group `g` holds a superblock backup (sparse_super rules).
    pub fn group_has_super(&self, g: u32) -> bool {
        if g == 0 {
            return true;
        }
        if self.feature_compat & compat::SPARSE_SUPER2 != 0 {
            return g == le32(&self.raw, 0x24C) || g == le32(&self.raw, 0x250);
        }
        if self.feature_ro_compat & ro_compat::SPARSE_SUPER == 0 || g == 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&p| {
            let mut x = g;
            while x.is_multiple_of(p) {
                x /= p;
            }
            x == 1
        })
    }
    /// Blocks occupied by the group descriptor table.
    pub fn gdt_blocks(&self) -> u64 {
        (u64::from(self.groups) * u64::from(self.desc_size)).div_ceil(u64::from(self.block_size))
    }
    /// `s_reserved_gdt_blocks`
    pub fn reserved_gdt_blocks(&self) -> u16 {
        le16(&self.raw, 0xCE)
    }
    /// `s_log_groups_per_flex`, as a group count (1 without flex_bg).
    pub fn groups_per_flex(&self) -> u32 {
        if self.feature_incompat & incompat::FLEX_BG != 0 {
            1u32.checked_shl(u32::from(self.raw[0x174])).unwrap_or(1)
        } else {
            1
        }
    }
}

fn names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut v: Vec<String> = Vec::new();
    for i in 0..32 {
        let b = 1u32 << i;
        if bits & b != 0 {
            match table.iter().find(|(x, _)| *x == b) {
                Some((_, n)) => v.push((*n).to_string()),
                None => v.push(format!("unknown({b:#x})")),
            }
        }
    }
    v.join(", ")
}

fn incompat_names(bits: u32) -> String {
    use incompat::*;
    names(
        bits,
        &[
            (COMPRESSION, "compression"),
            (
                RECOVER,
                "needs_recovery (the journal must be replayed first)",
            ),
            (JOURNAL_DEV, "journal_dev"),
            (META_BG, "meta_bg"),
            (EA_INODE, "ea_inode"),
            (DIRDATA, "dirdata"),
            (INLINE_DATA, "inline_data"),
            (ENCRYPT, "encrypt"),
            (CASEFOLD, "casefold"),
        ],
    )
}

fn ro_compat_names(bits: u32) -> String {
    use ro_compat::*;
    names(
        bits,
        &[
            (BTREE_DIR, "btree_dir"),
            (HAS_SNAPSHOT, "snapshot"),
            (BIGALLOC, "bigalloc"),
            (REPLICA, "replica"),
            (SHARED_BLOCKS, "shared_blocks"),
            (ORPHAN_PRESENT, "orphan_present"),
        ],
    )
}
