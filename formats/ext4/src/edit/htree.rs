//! Rebuilding an htree directory's index after its entries changed: all
//! entries are hashed with the directory's hash version and the
//! filesystem's seed, sorted, packed into leaf blocks, and indexed by a
//! root (and, for big directories, one level of interior nodes), the
//! layout `e2fsck -D` produces. Where that is not possible (unknown hash,
//! more than two levels), the caller falls back to a linear directory.

use crate::bytes::{set16, set32};
use crate::crc::crc32c_raw;
use crate::dir::{self, Entry};
use crate::fs::DirEntry;
use crate::hash;

/// Inputs of a rebuild.
pub(crate) struct Htree<'a> {
    pub bs: usize,
    pub ino: u32,
    pub parent: u32,
    pub hash_version: u8,
    pub unsigned: bool,
    pub seed: [u32; 4],
    /// Inode checksum seed under metadata_csum.
    pub csum_seed: Option<u32>,
    pub filetype: bool,
    pub entries: &'a [DirEntry],
}

fn dx_csum(b: &mut [u8], count_off: usize, count: usize, limit: usize, seed: u32) {
    let tail = count_off + limit * 8;
    set32(b, tail, 0);
    let mut c = crc32c_raw(seed, &b[..count_off + count * 8]);
    c = crc32c_raw(c, &[0u8; 4]);
    c = crc32c_raw(c, &[0u8; 4]);
    set32(b, tail + 4, c);
}

fn put_index(
    b: &mut [u8],
    count_off: usize,
    limit: usize,
    entries: &[(u32, u32)],
    seed: Option<u32>,
) {
    set16(b, count_off, limit as u16);
    set16(b, count_off + 2, entries.len() as u16);
    for (k, &(h, blk)) in entries.iter().enumerate() {
        if k > 0 {
            set32(b, count_off + k * 8, h);
        }
        set32(b, count_off + k * 8 + 4, blk);
    }
    if let Some(s) = seed {
        dx_csum(b, count_off, entries.len(), limit, s);
    }
}

/// The directory's blocks in logical order, or None to fall back.
pub(crate) fn build(h: &Htree<'_>) -> Option<Vec<Vec<u8>>> {
    let bs = h.bs;
    let csum = h.csum_seed.is_some();
    let mut items: Vec<(u32, u32, &DirEntry)> = Vec::with_capacity(h.entries.len());
    for e in h.entries {
        let (major, minor) = hash::dirhash(&e.name, h.hash_version, h.unsigned, h.seed)?;
        items.push((major, minor, e));
    }
    items.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    // Pack leaves.
    let cap = if csum { bs - dir::TAIL_LEN } else { bs };
    let mut leaves: Vec<(u32, Vec<u8>)> = Vec::new(); // (index hash, block)
    let mut cur: Vec<u8> = Vec::new();
    let mut used = 0usize;
    let mut last: Option<Entry> = None;
    let mut first_hash = 0u32;
    let mut prev_last_hash: Option<u32> = None;
    let mut cur_last_hash = 0u32;
    // Stretches the last entry over the rest of the leaf, adds the tail.
    let finish = |cur: &mut Vec<u8>, last: Option<Entry>| {
        let e = match last {
            Some(mut e) => {
                e.rec_len = cap - e.offset;
                e
            }
            None => Entry {
                offset: 0,
                ino: 0,
                rec_len: cap,
                file_type: 0,
                name: Vec::new(),
            },
        };
        dir::put_entry(cur, &e, h.filetype);
        if let Some(s) = h.csum_seed {
            dir::set_tail(cur, s);
        }
    };
    for (major, _, e) in &items {
        let rec = dir::rec_len_for(e.name.len());
        if cur.is_empty() || used + rec > cap {
            if !cur.is_empty() {
                finish(&mut cur, last.take());
                let ih = if prev_last_hash == Some(first_hash) {
                    first_hash | 1
                } else {
                    first_hash
                };
                leaves.push((ih, std::mem::take(&mut cur)));
                prev_last_hash = Some(cur_last_hash);
            }
            cur = vec![0u8; bs];
            used = 0;
            first_hash = *major;
        }
        let ent = Entry {
            offset: used,
            ino: e.ino,
            rec_len: rec,
            file_type: e.file_type,
            name: e.name.clone(),
        };
        dir::put_entry(&mut cur, &ent, h.filetype);
        last = Some(ent);
        used += rec;
        cur_last_hash = *major;
    }
    if cur.is_empty() {
        cur = vec![0u8; bs];
        first_hash = 0;
    }
    finish(&mut cur, last.take());
    let ih = if prev_last_hash == Some(first_hash) {
        first_hash | 1
    } else {
        first_hash
    };
    leaves.push((ih, cur));

    let tailsz = if csum { 8 } else { 0 };
    let root_limit = (bs - 0x20 - tailsz) / 8;
    let node_limit = (bs - 8 - tailsz) / 8;
    let n = leaves.len();
    let (levels, nodes) = if n <= root_limit {
        (0u8, 0usize)
    } else {
        let nodes = n.div_ceil(node_limit);
        if nodes > root_limit {
            return None;
        }
        (1, nodes)
    };
    let leaf_base = 1 + nodes;
    let mut root = dir::first_block(bs, h.ino, h.parent, h.filetype, None);
    // `..` spans the rest of the block; the index lives in its slack.
    let dotdot = Entry {
        offset: 12,
        ino: h.parent,
        rec_len: bs - 12,
        file_type: if h.filetype { dir::ftype::DIR } else { 0 },
        name: b"..".to_vec(),
    };
    root[12..].fill(0);
    dir::put_entry(&mut root, &dotdot, h.filetype);
    root[0x18..0x20].copy_from_slice(&[0, 0, 0, 0, h.hash_version, 8, levels, 0]);
    let mut out = Vec::with_capacity(1 + nodes + n);
    if levels == 0 {
        let idx: Vec<(u32, u32)> = leaves
            .iter()
            .enumerate()
            .map(|(k, (hh, _))| (*hh, (leaf_base + k) as u32))
            .collect();
        put_index(&mut root, 0x20, root_limit, &idx, h.csum_seed);
        out.push(root);
    } else {
        let mut root_idx = Vec::new();
        let mut node_blocks = Vec::new();
        for (j, chunk) in leaves.chunks(node_limit).enumerate() {
            let mut nb = vec![0u8; bs];
            let fake = Entry {
                offset: 0,
                ino: 0,
                rec_len: bs,
                file_type: 0,
                name: Vec::new(),
            };
            dir::put_entry(&mut nb, &fake, h.filetype);
            let idx: Vec<(u32, u32)> = chunk
                .iter()
                .enumerate()
                .map(|(k, (hh, _))| (*hh, (leaf_base + j * node_limit + k) as u32))
                .collect();
            put_index(&mut nb, 0x8, node_limit, &idx, h.csum_seed);
            root_idx.push((chunk[0].0, (1 + j) as u32));
            node_blocks.push(nb);
        }
        put_index(&mut root, 0x20, root_limit, &root_idx, h.csum_seed);
        out.push(root);
        out.extend(node_blocks);
    }
    out.extend(leaves.into_iter().map(|(_, b)| b));
    Some(out)
}

fn pick(b: &[u8], count_off: usize, hash: u32) -> Option<usize> {
    use crate::bytes::{le16, le32};
    let limit = usize::from(le16(b, count_off));
    let count = usize::from(le16(b, count_off + 2));
    if count == 0 || count > limit || count_off + count * 8 > b.len() {
        return None;
    }
    let mut best = le32(b, count_off + 4);
    for k in 1..count {
        if le32(b, count_off + 8 * k) > hash {
            break;
        }
        best = le32(b, count_off + 8 * k + 4);
    }
    usize::try_from(best).ok()
}

/// The logical block of the leaf where `hash` belongs, found as the
/// kernel's `dx_probe` does; None if the index looks unusual (deeper than
/// one level of nodes, or malformed), and the caller rebuilds instead.
pub(crate) fn leaf_for(blocks: &[(u64, Vec<u8>, bool)], hash: u32) -> Option<usize> {
    let root = &blocks.first()?.1;
    if *root.get(0x1D)? != 8 {
        return None;
    }
    let levels = *root.get(0x1E)?;
    if levels > 1 {
        return None;
    }
    let mut at = pick(root, 0x20, hash)?;
    if levels == 1 {
        let node = &blocks.get(at)?.1;
        if !dir::is_dx_node(node) {
            return None;
        }
        at = pick(node, 0x08, hash)?;
    }
    if at == 0 || at >= blocks.len() || dir::is_dx_node(&blocks[at].1) {
        return None;
    }
    Some(at)
}
