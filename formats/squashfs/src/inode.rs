//! Inodes: the common header and the fourteen basic/extended bodies.
//!
//! Parsing turns inode-table bytes into [`Inode`] (raw fields, spec names);
//! encoding picks the basic form when it can hold everything and the
//! extended one otherwise, as mksquashfs does.

use crate::error::{Result, corrupt};
use crate::metadata::Cursor;

/// Inode type numbers.
pub mod kind {
    #![allow(missing_docs)]
    pub const DIR: u16 = 1;
    pub const REG: u16 = 2;
    pub const SYMLINK: u16 = 3;
    pub const BLKDEV: u16 = 4;
    pub const CHRDEV: u16 = 5;
    pub const FIFO: u16 = 6;
    pub const SOCKET: u16 = 7;
    pub const LDIR: u16 = 8;
    pub const LREG: u16 = 9;
    pub const LSYMLINK: u16 = 10;
    pub const LBLKDEV: u16 = 11;
    pub const LCHRDEV: u16 = 12;
    pub const LFIFO: u16 = 13;
    pub const LSOCKET: u16 = 14;
}

/// "No fragment" / "no xattrs" marker.
pub const NONE32: u32 = u32::MAX;
/// Longest block list accepted (2 TiB of 128 KiB blocks): bounds memory on
/// hostile file sizes.
const MAX_BLOCKS: u64 = 1 << 24;
/// Longest symlink target accepted.
const MAX_SYMLINK: u32 = 65536;

/// Fields every inode starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeHeader {
    /// Inode type (basic or extended).
    pub inode_type: u16,
    /// Permission bits.
    pub mode: u16,
    /// Index of the owner in the id table.
    pub uid: u16,
    /// Index of the group in the id table.
    pub guid: u16,
    /// Modification time.
    pub mtime: u32,
    /// Inode number, 1-based.
    pub inode_number: u32,
}

/// One directory index entry of an extended directory inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirIndex {
    /// Byte offset of a header inside the listing.
    pub index: u32,
    /// Directory-table block holding that header.
    pub start_block: u32,
    /// First name after the header.
    pub name: Vec<u8>,
}

/// The type-specific part of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum InodeBody {
    Dir {
        start_block: u32,
        nlink: u32,
        file_size: u32,
        offset: u16,
        parent_inode: u32,
        index: Vec<DirIndex>,
        xattr: u32,
    },
    File {
        blocks_start: u64,
        fragment: u32,
        offset: u32,
        file_size: u64,
        sparse: u64,
        nlink: u32,
        xattr: u32,
        block_sizes: Vec<u32>,
    },
    Symlink {
        nlink: u32,
        target: Vec<u8>,
        xattr: u32,
    },
    Dev {
        block: bool,
        nlink: u32,
        rdev: u32,
        xattr: u32,
    },
    Ipc {
        socket: bool,
        nlink: u32,
        xattr: u32,
    },
}

/// A parsed inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Common fields.
    pub header: InodeHeader,
    /// Type-specific fields.
    pub body: InodeBody,
}

impl Inode {
    /// The basic type (what directory entries record).
    pub fn basic_type(&self) -> u16 {
        match self.header.inode_type {
            t @ 1..=7 => t,
            t => t - 7,
        }
    }

    /// The xattr index, or [`NONE32`].
    pub fn xattr(&self) -> u32 {
        match &self.body {
            InodeBody::Dir { xattr, .. }
            | InodeBody::File { xattr, .. }
            | InodeBody::Symlink { xattr, .. }
            | InodeBody::Dev { xattr, .. }
            | InodeBody::Ipc { xattr, .. } => *xattr,
        }
    }

    /// Reads one inode. `block_size` sizes the block list.
    pub(crate) fn parse(c: &mut Cursor<'_>, block_size: u32) -> Result<Inode> {
        let header = InodeHeader {
            inode_type: c.u16()?,
            mode: c.u16()?,
            uid: c.u16()?,
            guid: c.u16()?,
            mtime: c.u32()?,
            inode_number: c.u32()?,
        };
        let body = match header.inode_type {
            kind::DIR => {
                let start_block = c.u32()?;
                let nlink = c.u32()?;
                let file_size = u32::from(c.u16()?);
                let offset = c.u16()?;
                let parent_inode = c.u32()?;
                InodeBody::Dir {
                    start_block,
                    nlink,
                    file_size,
                    offset,
                    parent_inode,
                    index: Vec::new(),
                    xattr: NONE32,
                }
            }
            kind::LDIR => {
                let nlink = c.u32()?;
                let file_size = c.u32()?;
                let start_block = c.u32()?;
                let parent_inode = c.u32()?;
                let i_count = c.u16()?;
                let offset = c.u16()?;
                let xattr = c.u32()?;
                let mut index = Vec::with_capacity(usize::from(i_count.min(256)));
                for _ in 0..i_count {
                    let idx = c.u32()?;
                    let start_block = c.u32()?;
                    let size = c.u32()?;
                    if size > 255 {
                        return Err(corrupt(format!(
                            "directory index name length {} over 256",
                            u64::from(size) + 1
                        )));
                    }
                    let name = c.bytes(size as usize + 1)?;
                    index.push(DirIndex {
                        index: idx,
                        start_block,
                        name,
                    });
                }
                InodeBody::Dir {
                    start_block,
                    nlink,
                    file_size,
                    offset,
                    parent_inode,
                    index,
                    xattr,
                }
            }
            kind::REG | kind::LREG => {
                let (blocks_start, fragment, offset, file_size, sparse, nlink, xattr) =
                    if header.inode_type == kind::REG {
                        let start = u64::from(c.u32()?);
                        let frag = c.u32()?;
                        let off = c.u32()?;
                        let size = u64::from(c.u32()?);
                        (start, frag, off, size, 0, 1, NONE32)
                    } else {
                        let start = c.u64()?;
                        let size = c.u64()?;
                        let sparse = c.u64()?;
                        let nlink = c.u32()?;
                        let frag = c.u32()?;
                        let off = c.u32()?;
                        let xattr = c.u32()?;
                        (start, frag, off, size, sparse, nlink, xattr)
                    };
                let bs = u64::from(block_size);
                let count = if fragment == NONE32 {
                    file_size.div_ceil(bs)
                } else {
                    file_size / bs
                };
                if count > MAX_BLOCKS {
                    return Err(corrupt(format!(
                        "inode {} claims a {file_size}-byte file ({count} blocks), over the limit",
                        header.inode_number
                    )));
                }
                // count <= 2^24 after the check above.
                let count = count as usize;
                let mut block_sizes = Vec::with_capacity(count.min(4096));
                for _ in 0..count {
                    block_sizes.push(c.u32()?);
                }
                InodeBody::File {
                    blocks_start,
                    fragment,
                    offset,
                    file_size,
                    sparse,
                    nlink,
                    xattr,
                    block_sizes,
                }
            }
            kind::SYMLINK | kind::LSYMLINK => {
                let nlink = c.u32()?;
                let size = c.u32()?;
                if size == 0 || size > MAX_SYMLINK {
                    return Err(corrupt(format!(
                        "symlink inode {} has a {size}-byte target",
                        header.inode_number
                    )));
                }
                let target = c.bytes(size as usize)?;
                let xattr = if header.inode_type == kind::LSYMLINK {
                    c.u32()?
                } else {
                    NONE32
                };
                InodeBody::Symlink {
                    nlink,
                    target,
                    xattr,
                }
            }
            t @ (kind::BLKDEV | kind::CHRDEV | kind::LBLKDEV | kind::LCHRDEV) => {
                let nlink = c.u32()?;
                let rdev = c.u32()?;
                let xattr = if t >= kind::LDIR { c.u32()? } else { NONE32 };
                InodeBody::Dev {
                    block: t == kind::BLKDEV || t == kind::LBLKDEV,
                    nlink,
                    rdev,
                    xattr,
                }
            }
            t @ (kind::FIFO | kind::SOCKET | kind::LFIFO | kind::LSOCKET) => {
                let nlink = c.u32()?;
                let xattr = if t >= kind::LDIR { c.u32()? } else { NONE32 };
                InodeBody::Ipc {
                    socket: t == kind::SOCKET || t == kind::LSOCKET,
                    nlink,
                    xattr,
                }
            }
            other => return Err(corrupt(format!("unknown inode type {other}"))),
        };
        Ok(Inode { header, body })
    }

    /// Encodes the inode, choosing basic or extended form from the body.
    /// The header's `inode_type` is ignored and recomputed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        let put_header = |out: &mut Vec<u8>, t: u16| {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&h.mode.to_le_bytes());
            out.extend_from_slice(&h.uid.to_le_bytes());
            out.extend_from_slice(&h.guid.to_le_bytes());
            out.extend_from_slice(&h.mtime.to_le_bytes());
            out.extend_from_slice(&h.inode_number.to_le_bytes());
        };
        let u32s = |out: &mut Vec<u8>, v: &[u32]| {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
        match &self.body {
            InodeBody::Dir {
                start_block,
                nlink,
                file_size,
                offset,
                parent_inode,
                index,
                xattr,
            } => {
                let basic = index.is_empty() && *xattr == NONE32 && *file_size <= 0xffff;
                if basic {
                    put_header(out, kind::DIR);
                    u32s(out, &[*start_block, *nlink]);
                    // Fits: checked by `basic`.
                    out.extend_from_slice(&(*file_size as u16).to_le_bytes());
                    out.extend_from_slice(&offset.to_le_bytes());
                    u32s(out, &[*parent_inode]);
                } else {
                    put_header(out, kind::LDIR);
                    u32s(out, &[*nlink, *file_size, *start_block, *parent_inode]);
                    // The writer never emits more than u16::MAX index entries
                    // (a listing is at most 4 GiB / 8 KiB blocks … capped there).
                    let n = u16::try_from(index.len()).unwrap_or(u16::MAX);
                    out.extend_from_slice(&n.to_le_bytes());
                    out.extend_from_slice(&offset.to_le_bytes());
                    u32s(out, &[*xattr]);
                    for i in index.iter().take(usize::from(n)) {
                        let len = u32::try_from(i.name.len()).unwrap_or(1) - 1;
                        u32s(out, &[i.index, i.start_block, len]);
                        out.extend_from_slice(&i.name);
                    }
                }
            }
            InodeBody::File {
                blocks_start,
                fragment,
                offset,
                file_size,
                sparse,
                nlink,
                xattr,
                block_sizes,
            } => {
                let basic = *blocks_start <= u64::from(u32::MAX)
                    && *file_size <= u64::from(u32::MAX)
                    && *sparse == 0
                    && *xattr == NONE32
                    && *nlink == 1;
                if basic {
                    put_header(out, kind::REG);
                    // Fits: checked by `basic`.
                    u32s(
                        out,
                        &[*blocks_start as u32, *fragment, *offset, *file_size as u32],
                    );
                } else {
                    put_header(out, kind::LREG);
                    for v in [blocks_start, file_size, sparse] {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                    u32s(out, &[*nlink, *fragment, *offset, *xattr]);
                }
                u32s(out, block_sizes);
            }
            InodeBody::Symlink {
                nlink,
                target,
                xattr,
            } => {
                let ext = *xattr != NONE32;
                put_header(out, if ext { kind::LSYMLINK } else { kind::SYMLINK });
                // Target length is bounded by the writer (<= 65536).
                u32s(out, &[*nlink, target.len() as u32]);
                out.extend_from_slice(target);
                if ext {
                    u32s(out, &[*xattr]);
                }
            }
            InodeBody::Dev {
                block,
                nlink,
                rdev,
                xattr,
            } => {
                let ext = *xattr != NONE32;
                let t = match (block, ext) {
                    (true, false) => kind::BLKDEV,
                    (false, false) => kind::CHRDEV,
                    (true, true) => kind::LBLKDEV,
                    (false, true) => kind::LCHRDEV,
                };
                put_header(out, t);
                u32s(out, &[*nlink, *rdev]);
                if ext {
                    u32s(out, &[*xattr]);
                }
            }
            InodeBody::Ipc {
                socket,
                nlink,
                xattr,
            } => {
                let ext = *xattr != NONE32;
                let t = match (socket, ext) {
                    (false, false) => kind::FIFO,
                    (true, false) => kind::SOCKET,
                    (false, true) => kind::LFIFO,
                    (true, true) => kind::LSOCKET,
                };
                put_header(out, t);
                u32s(out, &[*nlink]);
                if ext {
                    u32s(out, &[*xattr]);
                }
            }
        }
    }
}

/// Linux `new_encode_dev`, the device number form squashfs stores.
pub fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Linux `new_decode_dev`.
pub fn decode_dev(rdev: u32) -> (u32, u32) {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_round_trip() {
        for (ma, mi) in [(1, 3), (8, 0), (259, 65536), (4095, (1 << 20) - 1), (0, 0)] {
            let r = encode_dev(ma, mi).unwrap();
            assert_eq!(decode_dev(r), (ma, mi));
        }
        assert_eq!(encode_dev(1, 3), Some(0x103));
        assert!(encode_dev(4096, 0).is_none());
    }
}
