//! Extended attributes: key/value runs in their own metadata stream, a
//! lookup table of (run, count, size) records, and a small header that
//! ties them together at `xattr_id_table_start`.

use std::collections::HashMap;

use v6build_fstree::Xattrs;

use crate::compress::Compressor;
use crate::error::{Result, corrupt, unsupported};
use crate::metadata::{MetaReader, MetaWriter, split_ref};
use crate::table;

/// Name prefixes by type id.
const PREFIXES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];
/// Flag on the type: the value is a reference to a value stored elsewhere.
const OOL: u16 = 0x100;
/// Largest value accepted (Linux `XATTR_SIZE_MAX`).
const VALUE_MAX: u32 = 65536;

/// The xattr tables of an image being read.
#[derive(Debug)]
pub(crate) struct XattrTable {
    kv_start: u64,
    ids: u32,
    index: Vec<u64>,
    index_pos: u64,
}

impl XattrTable {
    /// Reads the header at `start` (the superblock's `xattr_id_table_start`).
    pub(crate) fn open(meta: &MetaReader, start: u64, end: u64) -> Result<Self> {
        let h = meta.src.read_vec(start, 16).map_err(|_| {
            corrupt(format!(
                "xattr id table header at {start} runs past the end"
            ))
        })?;
        let kv_start = crate::superblock::le64(&h, 0);
        let ids = crate::superblock::le32(&h, 8);
        if kv_start >= start {
            return Err(corrupt(format!(
                "xattr key/value table at {kv_start} does not precede its id table at {start}"
            )));
        }
        let index_pos = start + 16;
        let index = table::read_index(
            &meta.src,
            "xattr id table",
            index_pos,
            u64::from(ids),
            16,
            end,
        )?;
        Ok(XattrTable {
            kv_start,
            ids,
            index,
            index_pos,
        })
    }

    /// The attributes of set `i`.
    pub(crate) fn get(&self, meta: &MetaReader, i: u32) -> Result<Xattrs> {
        if i >= self.ids {
            return Err(corrupt(format!(
                "xattr index {i} out of range (the image has {} sets)",
                self.ids
            )));
        }
        let e: [u8; 16] =
            table::read_entry(meta, "xattr id", &self.index, self.index_pos, u64::from(i))?;
        let r = crate::superblock::le64(&e, 0);
        let count = crate::superblock::le32(&e, 8);
        let limit = self.index.first().copied().unwrap_or(self.index_pos);
        let (blk, off) = split_ref(r);
        let mut c = meta.cursor(self.kv_start + blk, off, limit);
        let mut out = Xattrs::new();
        for _ in 0..count {
            let ty = c.u16()?;
            let nlen = c.u16()?;
            let prefix = PREFIXES
                .get(usize::from(ty & !OOL))
                .ok_or_else(|| corrupt(format!("xattr type {ty:#x}")))?;
            let mut name = prefix.to_vec();
            name.extend_from_slice(&c.bytes(usize::from(nlen))?);
            let vsize = c.u32()?;
            let value = if ty & OOL != 0 {
                if vsize != 8 {
                    return Err(corrupt("out-of-line xattr reference is not 8 bytes"));
                }
                let vr = c.u64()?;
                let (vb, vo) = split_ref(vr);
                let mut vc = meta.cursor(self.kv_start + vb, vo, limit);
                let n = vc.u32()?;
                if n > VALUE_MAX {
                    return Err(corrupt(format!("xattr value of {n} bytes")));
                }
                vc.bytes(n as usize)?
            } else {
                if vsize > VALUE_MAX {
                    return Err(corrupt(format!("xattr value of {vsize} bytes")));
                }
                c.bytes(vsize as usize)?
            };
            if out.insert(name, value).is_some() {
                return Err(corrupt("xattr set names one attribute twice"));
            }
        }
        Ok(out)
    }
}

/// Collects distinct xattr sets while inodes are written.
#[derive(Debug, Default)]
pub(crate) struct XattrWriter {
    sets: Vec<Xattrs>,
    ids: HashMap<Xattrs, u32>,
}

impl XattrWriter {
    /// The id of `x`, or `NONE32` for an empty set.
    pub(crate) fn id(&mut self, x: &Xattrs) -> Result<u32> {
        if x.is_empty() {
            return Ok(crate::inode::NONE32);
        }
        if let Some(&i) = self.ids.get(x) {
            return Ok(i);
        }
        for (k, v) in x {
            split_name(k)?;
            if v.len() > VALUE_MAX as usize {
                return Err(unsupported(format!("xattr value of {} bytes", v.len())));
            }
        }
        let i = u32::try_from(self.sets.len()).map_err(|_| unsupported("too many xattr sets"))?;
        self.sets.push(x.clone());
        self.ids.insert(x.clone(), i);
        Ok(i)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Encodes the whole xattr section to start at absolute `at`; returns
    /// the bytes and the value for `xattr_id_table_start`.
    pub(crate) fn finish(
        self,
        comp: Option<&Compressor>,
        block_size: u32,
        at: u64,
    ) -> Result<(Vec<u8>, u64)> {
        let mut kv = MetaWriter::new(comp.cloned(), block_size);
        let mut records = Vec::with_capacity(self.sets.len() * 16);
        for set in &self.sets {
            let (blk, off) = kv.position();
            let before = kv.uncompressed_len();
            let mut buf = Vec::new();
            for (k, v) in set {
                let (ty, rest) = split_name(k)?;
                buf.extend_from_slice(&ty.to_le_bytes());
                // Names are bounded by split_name, values by VALUE_MAX.
                buf.extend_from_slice(&(rest.len() as u16).to_le_bytes());
                buf.extend_from_slice(rest);
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v);
            }
            kv.write(&buf)?;
            let size = u32::try_from(kv.uncompressed_len() - before)
                .map_err(|_| unsupported("xattr set too large"))?;
            records.extend_from_slice(&((blk << 16) | u64::from(off)).to_le_bytes());
            records.extend_from_slice(&u32::try_from(set.len()).unwrap_or(0).to_le_bytes());
            records.extend_from_slice(&size.to_le_bytes());
        }
        let (mut out, _) = kv.finish()?;
        let ids_at = at + out.len() as u64;
        let (tbl, _) =
            table::write_table(MetaWriter::new(comp.cloned(), block_size), &records, ids_at)?;
        // The id records' metadata blocks come first, then the header, then
        // the block array: split write_table's output back apart.
        let blocks = records.len().div_ceil(crate::metadata::METADATA_SIZE);
        let split = tbl.len() - blocks * 8;
        out.extend_from_slice(&tbl[..split]);
        let header_at = at + out.len() as u64;
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.sets.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&tbl[split..]);
        Ok((out, header_at))
    }
}

/// Splits `security.selinux` into (type 2, `selinux`).
fn split_name(k: &[u8]) -> Result<(u16, &[u8])> {
    for (i, p) in PREFIXES.iter().enumerate() {
        if let Some(rest) = k.strip_prefix(*p)
            && !rest.is_empty()
            && rest.len() <= 255
        {
            // i < 3.
            return Ok((i as u16, rest));
        }
    }
    Err(unsupported(format!(
        "xattr {:?}: squashfs stores only user.*, trusted.* and security.* names",
        String::from_utf8_lossy(k)
    )))
}
