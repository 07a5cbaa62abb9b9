//! Extended attributes: stored after the inode's extra fields ("ibody") and
//! in one optional external block shared by reference count. Names are
//! compressed to an index (`user.` = 1, `security.` = 6, ...) plus suffix.
//! POSIX ACLs are stored in ext4's compact encoding on disk and converted
//! to and from the kernel's xattr encoding (what `getfattr` shows), so the
//! tree carries the same bytes a mounted filesystem would report.

use v6build_fstree::Xattrs;

use crate::bytes::{le16, le32, set16, set32};
use crate::crc::crc32c_raw;
use crate::error::{Error, Result, corrupt};

/// Magic at the start of the ibody area and of an xattr block.
pub const MAGIC: u32 = 0xEA02_0000;
/// Size of the xattr block header.
const BLOCK_HEADER: usize = 32;

const PREFIXES: &[(u8, &[u8])] = &[
    (1, b"user."),
    (2, b"system.posix_acl_access"),
    (3, b"system.posix_acl_default"),
    (4, b"trusted."),
    (6, b"security."),
    (7, b"system."),
    (8, b"system.richacl"),
];

fn full_name(index: u8, suffix: &[u8]) -> Result<Vec<u8>> {
    let (_, p) = PREFIXES
        .iter()
        .find(|(i, _)| *i == index)
        .ok_or_else(|| corrupt(format!("unknown xattr name index {index}")))?;
    let mut n = p.to_vec();
    n.extend_from_slice(suffix);
    Ok(n)
}

/// Splits a full name into (index, suffix), preferring the longest prefix.
pub fn split_name(name: &[u8]) -> Result<(u8, &[u8])> {
    let mut best: Option<(u8, &[u8])> = None;
    for (i, p) in PREFIXES {
        if let Some(rest) = name.strip_prefix(*p) {
            // Exact ACL names have index 2/3 and an empty suffix.
            if matches!(i, 2 | 3 | 8) && !rest.is_empty() {
                continue;
            }
            if best.is_none_or(|(_, r)| rest.len() < r.len()) {
                best = Some((*i, rest));
            }
        }
    }
    let (i, rest) = best.ok_or_else(|| {
        Error::InvalidTree(format!(
            "xattr name {} has no namespace ext4 can store",
            v6build_fstree::escape(name)
        ))
    })?;
    if rest.len() > 255 || (rest.is_empty() && !matches!(i, 2 | 3 | 8)) {
        return Err(Error::InvalidTree(format!(
            "xattr name {} is invalid",
            v6build_fstree::escape(name)
        )));
    }
    Ok((i, rest))
}

/// Parses entries starting at `first` in `area`; value offsets are relative
/// to `value_base`.
fn parse_entries(
    area: &[u8],
    first: usize,
    value_base: usize,
    what: &str,
    out: &mut Xattrs,
) -> Result<()> {
    let mut off = first;
    loop {
        if off + 4 > area.len() {
            return Err(corrupt(format!("{what}: xattr entries run past the end")));
        }
        if le32(area, off) == 0 {
            return Ok(());
        }
        if off + 16 > area.len() {
            return Err(corrupt(format!("{what}: xattr entry truncated")));
        }
        let name_len = usize::from(area[off]);
        let index = area[off + 1];
        let value_offs = usize::from(le16(area, off + 2));
        let value_inum = le32(area, off + 4);
        let value_size = le32(area, off + 8) as usize;
        if value_inum != 0 {
            return Err(Error::Unsupported(format!(
                "{what}: xattr value stored in an inode (ea_inode)"
            )));
        }
        let name = area
            .get(off + 16..off + 16 + name_len)
            .ok_or_else(|| corrupt(format!("{what}: xattr name runs past the end")))?;
        let vstart = value_base + value_offs;
        let value = area
            .get(vstart..vstart.saturating_add(value_size))
            .ok_or_else(|| corrupt(format!("{what}: xattr value runs past the end")))?;
        let value = if matches!(index, 2 | 3) {
            acl_from_disk(value, what)?
        } else {
            value.to_vec()
        };
        out.insert(full_name(index, name)?, value);
        off += (16 + name_len).div_ceil(4) * 4;
    }
}

/// Reads the in-inode xattrs from the area after `i_extra_isize`.
pub fn parse_ibody(area: &[u8], what: &str, out: &mut Xattrs) -> Result<()> {
    if area.len() < 4 || le32(area, 0) != MAGIC {
        return Ok(());
    }
    parse_entries(&area[4..], 0, 0, what, out)
}

/// Reads an external xattr block, verifying its checksum if `seed` is set.
pub fn parse_block(
    b: &[u8],
    block_nr: u64,
    seed: Option<u32>,
    what: &str,
    out: &mut Xattrs,
) -> Result<()> {
    if le32(b, 0) != MAGIC {
        return Err(corrupt(format!(
            "{what}: xattr block {block_nr} has a bad magic"
        )));
    }
    if le32(b, 8) != 1 {
        return Err(corrupt(format!(
            "{what}: xattr block {block_nr} claims h_blocks != 1"
        )));
    }
    if let Some(seed) = seed {
        let stored = le32(b, 0x10);
        let computed = block_checksum(b, block_nr, seed);
        if stored != computed {
            return Err(Error::Checksum {
                what: format!("xattr block {block_nr}"),
                stored,
                computed,
            });
        }
    }
    parse_entries(b, BLOCK_HEADER, 0, what, out)
}

/// The metadata_csum checksum of an xattr block.
pub fn block_checksum(b: &[u8], block_nr: u64, seed: u32) -> u32 {
    let mut tmp = b.to_vec();
    set32(&mut tmp, 0x10, 0);
    let c = crc32c_raw(seed, &block_nr.to_le_bytes());
    crc32c_raw(c, &tmp)
}

/// `h_refcount` of an xattr block.
pub fn refcount(b: &[u8]) -> u32 {
    le32(b, 4)
}

/// Sets `h_refcount` and refreshes the checksum.
pub fn set_refcount(b: &mut [u8], n: u32, block_nr: u64, seed: Option<u32>) {
    set32(b, 4, n);
    if let Some(s) = seed {
        let c = block_checksum(b, block_nr, s);
        set32(b, 0x10, c);
    }
}

fn entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        // The kernel hashes names as signed chars.
        h = (h << 5) ^ (h >> 27) ^ (i32::from(c as i8) as u32);
    }
    let mut padded = value.to_vec();
    padded.resize(value.len().div_ceil(4) * 4, 0);
    for w in padded.chunks_exact(4) {
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    h
}

const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// ext4's ACL encoding (version 1, short entries for the owner/group/mask/
/// other tags) to the kernel's xattr encoding (version 2, 8-byte entries).
fn acl_from_disk(v: &[u8], what: &str) -> Result<Vec<u8>> {
    if v.len() < 4 || le32(v, 0) != 1 {
        return Err(corrupt(format!("{what}: POSIX ACL with a bad header")));
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut off = 4;
    while off < v.len() {
        if off + 4 > v.len() {
            return Err(corrupt(format!("{what}: truncated POSIX ACL entry")));
        }
        let tag = le16(v, off);
        let perm = le16(v, off + 2);
        let id = if matches!(tag, ACL_USER | ACL_GROUP) {
            if off + 8 > v.len() {
                return Err(corrupt(format!("{what}: truncated POSIX ACL entry")));
            }
            let id = le32(v, off + 4);
            off += 8;
            id
        } else {
            off += 4;
            ACL_UNDEFINED_ID
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

/// The inverse of [`acl_from_disk`].
fn acl_to_disk(v: &[u8]) -> Result<Vec<u8>> {
    if v.len() < 4 || le32(v, 0) != 2 || !(v.len() - 4).is_multiple_of(8) {
        return Err(Error::InvalidTree(
            "POSIX ACL xattr is not in the kernel's version-2 format".into(),
        ));
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks_exact(8) {
        let tag = le16(e, 0);
        out.extend_from_slice(&e[..4]);
        if matches!(tag, ACL_USER | ACL_GROUP) {
            out.extend_from_slice(&e[4..8]);
        }
    }
    Ok(out)
}

struct Enc<'a> {
    index: u8,
    suffix: &'a [u8],
    value: std::borrow::Cow<'a, [u8]>,
}

fn encodable(x: &Xattrs) -> Result<Vec<Enc<'_>>> {
    let mut v = Vec::new();
    for (k, val) in x {
        let (index, suffix) = split_name(k)?;
        let value = if matches!(index, 2 | 3) {
            std::borrow::Cow::Owned(acl_to_disk(val)?)
        } else {
            std::borrow::Cow::Borrowed(val.as_slice())
        };
        v.push(Enc {
            index,
            suffix,
            value,
        });
    }
    // Kernel order for blocks: index, then name length, then name.
    v.sort_by(|a, b| (a.index, a.suffix.len(), a.suffix).cmp(&(b.index, b.suffix.len(), b.suffix)));
    Ok(v)
}

/// Bytes needed to store `x` in an area (entries + terminator + values).
fn needed(v: &[Enc<'_>]) -> usize {
    v.iter()
        .map(|e| (16 + e.suffix.len()).div_ceil(4) * 4 + e.value.len().div_ceil(4) * 4)
        .sum::<usize>()
        + 4
}

/// Lays entries out in `area` from `first`; values go at the end, offsets
/// relative to `value_base`. Returns the entry hashes, or None if it does not fit.
fn layout(area: &mut [u8], first: usize, value_base: usize, v: &[Enc<'_>]) -> Option<Vec<u32>> {
    if first + needed(v) > area.len() {
        return None;
    }
    area[first..].fill(0);
    let mut off = first;
    let mut vend = area.len();
    let mut hashes = Vec::new();
    for e in v {
        let vlen = e.value.len().div_ceil(4) * 4;
        let vstart = if e.value.is_empty() { 0 } else { vend - vlen };
        if !e.value.is_empty() {
            area[vstart..vstart + e.value.len()].copy_from_slice(&e.value);
            vend = vstart;
        }
        area[off] = e.suffix.len() as u8;
        area[off + 1] = e.index;
        set16(
            area,
            off + 2,
            if e.value.is_empty() {
                0
            } else {
                (vstart - value_base) as u16
            },
        );
        set32(area, off + 4, 0);
        set32(area, off + 8, e.value.len() as u32);
        let h = entry_hash(e.suffix, &e.value);
        set32(area, off + 12, h);
        hashes.push(h);
        area[off + 16..off + 16 + e.suffix.len()].copy_from_slice(e.suffix);
        off += (16 + e.suffix.len()).div_ceil(4) * 4;
    }
    Some(hashes)
}

/// Writes `x` into the ibody area (which starts with the magic); returns
/// false if it does not fit. An empty set clears the area.
pub fn write_ibody(area: &mut [u8], x: &Xattrs) -> Result<bool> {
    if x.is_empty() {
        area.fill(0);
        return Ok(true);
    }
    if area.len() < 4 {
        return Ok(false);
    }
    let v = encodable(x)?;
    let mut tmp = area.to_vec();
    set32(&mut tmp, 0, MAGIC);
    let (_, rest) = tmp.split_at_mut(4);
    if layout(rest, 0, 0, &v).is_none() {
        return Ok(false);
    }
    area.copy_from_slice(&tmp);
    Ok(true)
}

/// Builds an external xattr block holding `x` (refcount 1), or None if too big.
pub fn build_block(
    x: &Xattrs,
    bs: usize,
    block_nr: u64,
    seed: Option<u32>,
) -> Result<Option<Vec<u8>>> {
    let v = encodable(x)?;
    let mut b = vec![0u8; bs];
    let Some(hashes) = layout(&mut b, BLOCK_HEADER, 0, &v) else {
        return Ok(None);
    };
    set32(&mut b, 0, MAGIC);
    set32(&mut b, 4, 1);
    set32(&mut b, 8, 1);
    let mut h: u32 = 0;
    for e in hashes {
        h = (h << 16) ^ (h >> 16) ^ e;
    }
    set32(&mut b, 0xC, h);
    if let Some(s) = seed {
        let c = block_checksum(&b, block_nr, s);
        set32(&mut b, 0x10, c);
    }
    Ok(Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_to_the_right_index() {
        let cases: &[(&[u8], u8, &[u8])] = &[
            (b"user.foo", 1, b"foo"),
            (b"security.selinux", 6, b"selinux"),
            (b"system.posix_acl_access", 2, b""),
            (b"system.foo", 7, b"foo"),
            (b"trusted.x", 4, b"x"),
        ];
        for (full, i, s) in cases {
            assert_eq!(split_name(full).unwrap(), (*i, *s));
        }
        assert!(split_name(b"bogus.x").is_err());
    }

    #[test]
    fn ibody_and_block_round_trip() {
        let mut x = Xattrs::new();
        x.insert(b"user.a".to_vec(), b"1".to_vec());
        x.insert(
            b"security.selinux".to_vec(),
            b"system_u:object_r:etc_t:s0\0".to_vec(),
        );
        let mut area = vec![0u8; 96];
        assert!(write_ibody(&mut area, &x).unwrap());
        let mut back = Xattrs::new();
        parse_ibody(&area, "t", &mut back).unwrap();
        assert_eq!(back, x);
        let b = build_block(&x, 1024, 99, Some(5)).unwrap().unwrap();
        let mut back = Xattrs::new();
        parse_block(&b, 99, Some(5), "t", &mut back).unwrap();
        assert_eq!(back, x);
        assert!(!write_ibody(&mut [0u8; 16], &x).unwrap());
    }

    #[test]
    fn acl_round_trip() {
        // user::rw-, user:1234:rw-, group::r--, mask::rw-, other::r--
        let mut vfs = 2u32.to_le_bytes().to_vec();
        for (t, p, i) in [
            (1u16, 6u16, u32::MAX),
            (2, 6, 1234),
            (4, 4, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            vfs.extend_from_slice(&t.to_le_bytes());
            vfs.extend_from_slice(&p.to_le_bytes());
            vfs.extend_from_slice(&i.to_le_bytes());
        }
        let disk = acl_to_disk(&vfs).unwrap();
        assert_eq!(disk.len(), 4 + 4 * 4 + 8);
        assert_eq!(acl_from_disk(&disk, "t").unwrap(), vfs);
    }
}
