//! Indirect block maps (ext2/ext3 files without the extents flag): twelve
//! direct pointers, then single, double and triple indirect blocks. Read only.

use std::collections::HashSet;

use crate::bytes::le32;
use crate::error::{Result, corrupt};
use crate::extent::{Mapping, Run, Walk};

/// Reads the block map of an indirect-mapped inode covering `nblocks` logical blocks.
pub(crate) fn read(w: &Walk<'_>, i_block: &[u8], nblocks: u64, block_size: u32) -> Result<Mapping> {
    let per = u64::from(block_size / 4);
    let mut m = Mapping::default();
    let mut seen = HashSet::new();
    let mut push = |m: &mut Mapping, logical: u64, phys: u64| -> Result<()> {
        if phys == 0 || logical >= nblocks {
            return Ok(());
        }
        check(w, phys)?;
        let logical = u32::try_from(logical).map_err(|_| corrupt("indirect map too large"))?;
        match m.runs.last_mut() {
            Some(r)
                if !r.uninit
                    && r.logical + r.len == logical
                    && r.physical + u64::from(r.len) == phys
                    && r.len < 32768 =>
            {
                r.len += 1
            }
            _ => m.runs.push(Run {
                logical,
                physical: phys,
                len: 1,
                uninit: false,
            }),
        }
        Ok(())
    };
    for i in 0..12 {
        push(&mut m, i, u64::from(le32(i_block, i as usize * 4)))?;
    }
    let mut base = 12u64;
    for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
        let span = per.pow(level);
        let b = u64::from(le32(i_block, slot * 4));
        if b != 0 && base < nblocks {
            indirect(
                w, b, level, base, per, nblocks, &mut m, &mut seen, &mut push,
            )?;
        }
        base += span;
    }
    Ok(m)
}

fn check(w: &Walk<'_>, b: u64) -> Result<()> {
    if b < w.first_data_block || b >= w.blocks_count {
        return Err(corrupt(format!(
            "inode {}: block {b} is beyond the end of the filesystem ({} blocks)",
            w.ino, w.blocks_count
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn indirect(
    w: &Walk<'_>,
    b: u64,
    level: u32,
    base: u64,
    per: u64,
    nblocks: u64,
    m: &mut Mapping,
    seen: &mut HashSet<u64>,
    push: &mut dyn FnMut(&mut Mapping, u64, u64) -> Result<()>,
) -> Result<()> {
    check(w, b)?;
    if !seen.insert(b) {
        return Err(corrupt(format!(
            "inode {}: indirect block {b} is referenced twice",
            w.ino
        )));
    }
    m.meta_blocks.push(b);
    let data = (w.read_block)(b)?;
    let span = per.pow(level - 1);
    for i in 0..per {
        let p = u64::from(le32(&data, (i * 4) as usize));
        let at = base + i * span;
        if at >= nblocks {
            break;
        }
        if p == 0 {
            continue;
        }
        if level == 1 {
            push(m, at, p)?;
        } else {
            indirect(w, p, level - 1, at, per, nblocks, m, seen, push)?;
        }
    }
    Ok(())
}
