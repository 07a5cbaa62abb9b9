//! Directory listings in the directory table: runs of entries, each run
//! under a header that names the inode-table block and a base inode
//! number; large listings get an index in the extended directory inode.

use crate::error::{Result, corrupt};
use crate::inode::DirIndex;
use crate::metadata::{METADATA_SIZE, MetaReader, MetaWriter};

/// Most entries a header may cover (kernel `SQUASHFS_DIR_COUNT`).
const DIR_COUNT: usize = 256;
/// Longest name (kernel `SQUASHFS_NAME_LEN`).
const NAME_LEN: usize = 256;

/// One entry of a listing, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Raw name bytes.
    pub name: Vec<u8>,
    /// Reference to the entry's inode (block << 16 | offset).
    pub inode_ref: u64,
    /// Inode number.
    pub inode_number: u32,
    /// Basic inode type.
    pub kind: u16,
}

/// Reads the listing of a directory whose inode says `file_size` (listing
/// length + 3) at `start_block`/`offset` of the table at `table_start`.
pub(crate) fn read_listing(
    meta: &MetaReader,
    table_start: u64,
    limit: u64,
    start_block: u32,
    offset: u16,
    file_size: u32,
) -> Result<Vec<DirEntry>> {
    let size = u64::from(file_size)
        .checked_sub(3)
        .ok_or_else(|| corrupt(format!("directory size {file_size} is below 3")))?;
    let mut c = meta.cursor(
        table_start + u64::from(start_block),
        usize::from(offset),
        limit,
    );
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < size {
        if size - done < 12 {
            return Err(corrupt("directory listing ends inside a header"));
        }
        let count = u64::from(c.u32()?) + 1;
        let start = c.u32()?;
        let base = c.u32()?;
        done += 12;
        if count > DIR_COUNT as u64 {
            return Err(corrupt(format!(
                "directory header with {count} entries (at most 256)"
            )));
        }
        for _ in 0..count {
            let off = c.u16()?;
            let delta = c.u16()? as i16;
            let kind = c.u16()?;
            let nlen = usize::from(c.u16()?) + 1;
            if nlen > NAME_LEN {
                return Err(corrupt(format!("directory entry name of {nlen} bytes")));
            }
            if !(1..=7).contains(&kind) {
                return Err(corrupt(format!("directory entry of type {kind}")));
            }
            let name = c.bytes(nlen)?;
            done += 8 + nlen as u64;
            if done > size {
                return Err(corrupt("directory entry runs past the listing size"));
            }
            let number = i64::from(base) + i64::from(delta);
            let inode_number = u32::try_from(number)
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| corrupt(format!("directory entry inode number {number}")))?;
            out.push(DirEntry {
                name,
                inode_ref: (u64::from(start) << 16) | u64::from(off),
                inode_number,
                kind,
            });
        }
    }
    Ok(out)
}

/// Where a written listing landed.
#[derive(Debug)]
pub(crate) struct Written {
    pub start_block: u32,
    pub offset: u16,
    /// Listing length + 3, what the inode stores.
    pub file_size: u32,
    pub index: Vec<DirIndex>,
}

/// Appends the listing of `entries` (already in canonical name order) to
/// the directory table.
pub(crate) fn write_listing(w: &mut MetaWriter, entries: &[DirEntry]) -> Result<Written> {
    let (blk, offset) = w.position();
    let start_block =
        u32::try_from(blk).map_err(|_| crate::error::unsupported("directory table over 4 GiB"))?;
    let base_pos = w.uncompressed_len();
    let meta_block = |pos: u64| pos / METADATA_SIZE as u64;

    // Group entries into header runs. A new run starts after 256 entries,
    // when the inode-table block or the inode number range changes, and
    // (as in mksquashfs) when the listing since the last indexed header
    // would pass 8 KiB; such a header gets a directory index entry, so a
    // lookup can skip to the right metadata block.
    struct Group {
        at: u64,
        block: u64,
        base: u32,
        from: usize,
        to: usize,
        indexed: bool,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut pos = 0u64;
    let mut last_indexed = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let eblock = e.inode_ref >> 16;
        let entry_end = pos + 8 + e.name.len() as u64;
        let spill = !groups.is_empty() && entry_end - last_indexed > METADATA_SIZE as u64;
        let need_new = match groups.last() {
            None => true,
            Some(g) => {
                let delta = i64::from(e.inode_number) - i64::from(g.base);
                g.to - g.from == DIR_COUNT
                    || eblock != g.block
                    || i16::try_from(delta).is_err()
                    || spill
            }
        };
        if need_new {
            if spill {
                last_indexed = pos;
            }
            groups.push(Group {
                at: pos,
                block: eblock,
                base: e.inode_number,
                from: i,
                to: i,
                indexed: spill,
            });
            pos += 12;
        }
        // OK to unwrap: a group was pushed above if none existed.
        groups.last_mut().unwrap().to = i + 1;
        pos += 8 + e.name.len() as u64;
    }
    let file_size = u32::try_from(pos + 3)
        .map_err(|_| crate::error::unsupported("directory listing over 4 GiB"))?;

    let mut index = Vec::new();
    let mut buf = Vec::new();
    for g in &groups {
        if g.indexed {
            let hblock = meta_block(base_pos + g.at);
            let k = usize::try_from(hblock)
                .map_err(|_| crate::error::unsupported("directory table too large"))?;
            index.push(DirIndex {
                index: u32::try_from(g.at).map_err(|_| crate::error::unsupported("dir"))?,
                start_block: u32::try_from(w.start_of_block(k))
                    .map_err(|_| crate::error::unsupported("directory table over 4 GiB"))?,
                name: entries[g.from].name.clone(),
            });
        }
        buf.clear();
        // Group sizes are 1..=256 and blocks fit in u32 (inode table < 4 GiB,
        // checked by the caller).
        let count = u32::try_from(g.to - g.from - 1).unwrap_or(0);
        buf.extend_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&u32::try_from(g.block).unwrap_or(u32::MAX).to_le_bytes());
        buf.extend_from_slice(&g.base.to_le_bytes());
        for e in &entries[g.from..g.to] {
            let delta = (i64::from(e.inode_number) - i64::from(g.base)) as i16;
            buf.extend_from_slice(&((e.inode_ref & 0xffff) as u16).to_le_bytes());
            buf.extend_from_slice(&delta.to_le_bytes());
            buf.extend_from_slice(&e.kind.to_le_bytes());
            // Names are 1..=255 bytes (validated fstree names).
            buf.extend_from_slice(&((e.name.len() - 1) as u16).to_le_bytes());
            buf.extend_from_slice(&e.name);
        }
        w.write(&buf)?;
    }
    Ok(Written {
        start_block,
        offset,
        file_size,
        index,
    })
}
