//! Directory blocks: packed entries `{inode, rec_len, name_len, file_type,
//! name}` whose `rec_len`s tile the block, with an optional 12-byte checksum
//! tail under metadata_csum. Htree directories are read by walking every
//! block: index blocks look like one empty entry and are skipped. The editor
//! inserts by splitting an entry's slack and removes by merging into the
//! previous entry, as the kernel does.

use crate::bytes::{le16, le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::error::{Error, Result, corrupt};

/// Size of the metadata_csum tail at the end of a leaf block.
pub const TAIL_LEN: usize = 12;

/// `file_type` codes in directory entries.
pub mod ftype {
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symlink.
    pub const LNK: u8 = 7;
}

/// One parsed entry, with where it sits in its block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Offset of the entry in the block.
    pub offset: usize,
    /// `inode` (0: unused slot).
    pub ino: u32,
    /// `rec_len`
    pub rec_len: usize,
    /// `file_type` (0 without the filetype feature).
    pub file_type: u8,
    /// The name bytes.
    pub name: Vec<u8>,
}

/// Minimal record length for a name of `n` bytes.
pub fn rec_len_for(n: usize) -> usize {
    (8 + n).div_ceil(4) * 4
}

fn decode_rec_len(v: u16, bs: usize) -> usize {
    if bs >= 65536 && (v == 0xFFFF || v == 0) {
        bs
    } else if bs >= 65536 {
        usize::from(v & 0xFFFC) | (usize::from(v & 3) << 16)
    } else {
        usize::from(v)
    }
}

fn encode_rec_len(len: usize, bs: usize) -> u16 {
    if bs >= 65536 {
        if len == bs {
            return 0xFFFF;
        }
        ((len & 0xFFFC) | ((len >> 16) & 3)) as u16
    } else {
        len as u16
    }
}

/// Whether the block is an htree interior node: one empty entry spanning
/// the whole block (no csum tail), hiding the index in its slack.
pub fn is_dx_node(b: &[u8]) -> bool {
    le32(b, 0) == 0 && decode_rec_len(le16(b, 4), b.len()) == b.len() && b[6] == 0
}

/// Whether the block ends in a metadata_csum tail.
pub fn has_tail(b: &[u8]) -> bool {
    let t = b.len() - TAIL_LEN;
    le32(b, t) == 0 && le16(b, t + 4) == 12 && b[t + 6] == 0 && b[t + 7] == 0xDE
}

/// Checks a leaf block's tail checksum, if it has one.
pub fn verify_tail(b: &[u8], seed: u32, what: &str) -> Result<()> {
    if !has_tail(b) {
        return Ok(());
    }
    let t = b.len() - TAIL_LEN;
    let stored = le32(b, t + 8);
    let computed = crc32c_raw(seed, &b[..t]);
    if stored != computed {
        return Err(Error::Checksum {
            what: what.to_string(),
            stored,
            computed,
        });
    }
    Ok(())
}

/// Writes a fresh tail with the right checksum.
pub fn set_tail(b: &mut [u8], seed: u32) {
    let t = b.len() - TAIL_LEN;
    b[t..].fill(0);
    set16(b, t + 4, 12);
    b[t + 7] = 0xDE;
    let c = crc32c_raw(seed, &b[..t]);
    set32(b, t + 8, c);
}

/// Parses every entry of a block (excluding a csum tail). `filetype`: the
/// feature is on (else `name_len` is 16 bits).
pub fn parse_block(b: &[u8], filetype: bool, csum: bool, what: &str) -> Result<Vec<Entry>> {
    let bs = b.len();
    let end = if csum && has_tail(b) {
        bs - TAIL_LEN
    } else {
        bs
    };
    let mut out = Vec::new();
    let mut off = 0;
    while off < end {
        if off + 8 > end {
            return Err(corrupt(format!(
                "{what}: directory entry at offset {off} is truncated"
            )));
        }
        let ino = le32(b, off);
        let rec_len = decode_rec_len(le16(b, off + 4), bs);
        let (name_len, file_type) = if filetype {
            (usize::from(b[off + 6]), b[off + 7])
        } else {
            (usize::from(le16(b, off + 6)), 0)
        };
        if rec_len < 8 || !rec_len.is_multiple_of(4) || off + rec_len > end {
            return Err(corrupt(format!(
                "{what}: directory entry at offset {off} has bad rec_len {rec_len}"
            )));
        }
        if ino != 0 && (name_len == 0 || 8 + name_len > rec_len) {
            return Err(corrupt(format!(
                "{what}: directory entry at offset {off} has name_len {name_len} beyond rec_len {rec_len}"
            )));
        }
        let name = if ino != 0 {
            b[off + 8..off + 8 + name_len].to_vec()
        } else {
            Vec::new()
        };
        out.push(Entry {
            offset: off,
            ino,
            rec_len,
            file_type,
            name,
        });
        off += rec_len;
    }
    Ok(out)
}

/// Writes entry `e` (name, ino, type, rec_len) at its offset.
pub fn put_entry(b: &mut [u8], e: &Entry, filetype: bool) {
    let bs = b.len();
    let o = e.offset;
    set32(b, o, e.ino);
    set16(b, o + 4, encode_rec_len(e.rec_len, bs));
    if filetype {
        b[o + 6] = e.name.len() as u8;
        b[o + 7] = e.file_type;
    } else {
        set16(b, o + 6, e.name.len() as u16);
    }
    b[o + 8..o + 8 + e.name.len()].copy_from_slice(&e.name);
}

/// Tries to insert an entry into block `b`; returns whether it fit.
pub fn insert(
    b: &mut [u8],
    name: &[u8],
    ino: u32,
    ft: u8,
    filetype: bool,
    csum: bool,
) -> Result<bool> {
    let need = rec_len_for(name.len());
    let entries = parse_block(b, filetype, csum, "directory block")?;
    for e in entries {
        let used = if e.ino == 0 {
            0
        } else {
            rec_len_for(e.name.len())
        };
        if e.rec_len >= used + need {
            let (at, len) = if e.ino == 0 {
                (e.offset, e.rec_len)
            } else {
                let shrunk = Entry {
                    rec_len: used,
                    ..e.clone()
                };
                put_entry(b, &shrunk, filetype);
                (e.offset + used, e.rec_len - used)
            };
            let new = Entry {
                offset: at,
                ino,
                rec_len: len,
                file_type: ft,
                name: name.to_vec(),
            };
            b[at..at + len].fill(0);
            put_entry(b, &new, filetype);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the entry named `name`; returns whether it was found.
pub fn remove(b: &mut [u8], name: &[u8], filetype: bool, csum: bool) -> Result<bool> {
    let entries = parse_block(b, filetype, csum, "directory block")?;
    for (i, e) in entries.iter().enumerate() {
        if e.ino != 0 && e.name == name {
            if i == 0 {
                set32(b, e.offset, 0);
            } else {
                let prev = &entries[i - 1];
                let merged = Entry {
                    rec_len: prev.rec_len + e.rec_len,
                    ..prev.clone()
                };
                put_entry(b, &merged, filetype);
                b[e.offset..e.offset + e.rec_len].fill(0);
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// Changes the inode (and type) an entry points to; returns whether found.
pub fn retarget(
    b: &mut [u8],
    name: &[u8],
    ino: u32,
    ft: u8,
    filetype: bool,
    csum: bool,
) -> Result<bool> {
    let entries = parse_block(b, filetype, csum, "directory block")?;
    for e in entries {
        if e.ino != 0 && e.name == name {
            set32(b, e.offset, ino);
            if filetype {
                b[e.offset + 7] = ft;
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// An empty leaf block (one unused entry spanning it, plus a tail under csum).
pub fn empty_block(bs: usize, filetype: bool, csum_seed: Option<u32>) -> Vec<u8> {
    let mut b = vec![0u8; bs];
    let end = if csum_seed.is_some() {
        bs - TAIL_LEN
    } else {
        bs
    };
    put_entry(
        &mut b,
        &Entry {
            offset: 0,
            ino: 0,
            rec_len: end,
            file_type: 0,
            name: Vec::new(),
        },
        filetype,
    );
    if let Some(seed) = csum_seed {
        set_tail(&mut b, seed);
    }
    b
}

/// The first block of a new directory: `.` and `..`.
pub fn first_block(
    bs: usize,
    ino: u32,
    parent: u32,
    filetype: bool,
    csum_seed: Option<u32>,
) -> Vec<u8> {
    let mut b = vec![0u8; bs];
    let end = if csum_seed.is_some() {
        bs - TAIL_LEN
    } else {
        bs
    };
    let dt = if filetype { ftype::DIR } else { 0 };
    put_entry(
        &mut b,
        &Entry {
            offset: 0,
            ino,
            rec_len: 12,
            file_type: dt,
            name: b".".to_vec(),
        },
        filetype,
    );
    put_entry(
        &mut b,
        &Entry {
            offset: 12,
            ino: parent,
            rec_len: end - 12,
            file_type: dt,
            name: b"..".to_vec(),
        },
        filetype,
    );
    if let Some(seed) = csum_seed {
        set_tail(&mut b, seed);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_round_trip() {
        let mut b = first_block(1024, 12, 2, true, Some(7));
        assert!(insert(&mut b, b"hello", 13, ftype::REG, true, true).unwrap());
        assert!(insert(&mut b, b"world", 14, ftype::REG, true, true).unwrap());
        let names: Vec<_> = parse_block(&b, true, true, "t")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [&b"."[..], b"..", b"hello", b"world"]);
        assert!(remove(&mut b, b"hello", true, true).unwrap());
        assert!(!remove(&mut b, b"hello", true, true).unwrap());
        let e = parse_block(&b, true, true, "t").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e.iter().map(|e| e.rec_len).sum::<usize>(), 1024 - TAIL_LEN);
    }

    #[test]
    fn bad_rec_len_is_an_error() {
        let mut b = empty_block(1024, true, None);
        set16(&mut b, 4, 2000);
        assert!(parse_block(&b, true, false, "t").is_err());
        set16(&mut b, 4, 6);
        assert!(parse_block(&b, true, false, "t").is_err());
    }
}
