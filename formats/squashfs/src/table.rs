//! Lookup tables (fragments, ids, export, xattr ids): fixed-size records in
//! metadata blocks, located through an uncompressed array of block starts.

use crate::error::{Result, corrupt};
use crate::metadata::{METADATA_SIZE, MetaReader, MetaWriter};
use crate::source::Source;

/// Reads the array of block starts of a table of `count` records of
/// `entry_size` bytes whose array is at `start`. Every block must start
/// before the array itself (tables precede their index), within the image.
pub(crate) fn read_index(
    src: &Source,
    what: &str,
    start: u64,
    count: u64,
    entry_size: u64,
    end: u64,
) -> Result<Vec<u64>> {
    let blocks = (count * entry_size).div_ceil(METADATA_SIZE as u64);
    let bytes = blocks * 8;
    if start.checked_add(bytes).is_none_or(|e| e > end) {
        return Err(corrupt(format!(
            "{what} index ({blocks} blocks at {start}) runs past the end of the image ({end})"
        )));
    }
    // Bounded by the image length, checked above.
    let raw = src.read_vec(start, bytes as usize)?;
    let mut out = Vec::with_capacity(blocks as usize);
    for ch in raw.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(ch);
        let p = u64::from_le_bytes(a);
        if p >= start {
            return Err(corrupt(format!(
                "{what} block at {p} does not lie before its index at {start}"
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// Reads record `i` (of `entry_size` bytes) of a table given its index.
pub(crate) fn read_entry<const N: usize>(
    meta: &MetaReader,
    what: &str,
    index: &[u64],
    index_pos: u64,
    i: u64,
) -> Result<[u8; N]> {
    let byte = i * N as u64;
    let blk = usize::try_from(byte / METADATA_SIZE as u64)
        .ok()
        .and_then(|b| index.get(b))
        .ok_or_else(|| corrupt(format!("{what} entry {i} is out of range")))?;
    let mut c = meta.cursor(*blk, (byte % METADATA_SIZE as u64) as usize, index_pos);
    let mut out = [0u8; N];
    c.read(&mut out)?;
    Ok(out)
}

/// Writes `records` as a lookup table at absolute offset `at`: returns the
/// bytes to write there and the absolute offset of the index array (the
/// value the superblock stores).
pub(crate) fn write_table(w: MetaWriter, records: &[u8], at: u64) -> Result<(Vec<u8>, u64)> {
    let mut w = w;
    w.write(records)?;
    let (mut bytes, starts) = w.finish()?;
    let index_pos = at + bytes.len() as u64;
    for s in starts {
        bytes.extend_from_slice(&(at + s).to_le_bytes());
    }
    Ok((bytes, index_pos))
}
