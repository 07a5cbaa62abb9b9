//! Writing inodes for the editor: regular contents (streamed from the blob
//! store, all-zero blocks left as holes), symlinks, devices, xattrs, fresh
//! extent trees, and directory entries.

use std::collections::BTreeMap;
use std::io::Read;

use v6build_fstree::{Directory, Leaf, LeafKind, Meta, Xattrs};

use crate::dir;
use crate::error::{Error, Result, corrupt, unsupported};
use crate::extent::{self, Run};
use crate::fs::DirEntry;
use crate::inode::{EXTENTS_FL, INDEX_FL, Inode};
use crate::superblock::ro_compat;
use crate::xattr;

use super::{Editor, Target};

const S_IFDIR: u16 = 0o040000;

/// Turns an htree directory's blocks into plain leaf blocks (the root keeps
/// only `.` and `..`, interior nodes become empty) and clears the flag.
fn linearise(
    blocks: &mut [(u64, Vec<u8>, bool)],
    i: &mut Inode,
    ino: u32,
    filetype: bool,
    seed: Option<u32>,
) {
    for (k, (_, data, dirty)) in blocks.iter_mut().enumerate() {
        let bs = data.len();
        if k == 0 {
            let dot_dot = crate::bytes::le32(data, 12);
            *data = dir::first_block(bs, ino, dot_dot, filetype, seed);
            *dirty = true;
        } else if dir::is_dx_node(data) {
            *data = dir::empty_block(bs, filetype, seed);
            *dirty = true;
        }
    }
    i.set_flags(i.flags() & !INDEX_FL);
}

impl Editor<'_> {
    fn bs(&self) -> usize {
        self.sb.block_size as usize
    }

    fn seed_of(&self, i: &Inode) -> Option<u32> {
        self.sb.has_metadata_csum().then(|| i.csum_seed(&self.sb))
    }

    fn goal_of(&self, ino: u32) -> u64 {
        self.sb
            .group_first_block((ino - 1) / self.sb.inodes_per_group)
    }

    /// A blank inode record for a new file.
    fn fresh_inode(&self, ino: u32) -> Inode {
        let mut raw = vec![0u8; usize::from(self.sb.inode_size)];
        if raw.len() > 128 {
            let want = crate::bytes::le16(&self.sb.raw, 0x15E).max(32);
            let extra = want.min(self.sb.inode_size - 128);
            crate::bytes::set16(&mut raw, 0x80, extra);
        }
        Inode { ino, raw }
    }

    /// Drops one reference to an xattr block.
    fn deref_xattr_block(&mut self, b: u64) -> Result<()> {
        let mut data = self.fs.read_block(b)?;
        let rc = xattr::refcount(&data);
        if rc <= 1 {
            self.free_block(b)
        } else {
            let seed = self.sb.has_metadata_csum().then_some(self.sb.csum_seed);
            xattr::set_refcount(&mut data, rc - 1, b, seed);
            self.dev.put_block(b, data);
            Ok(())
        }
    }

    /// Frees an inode the new tree no longer uses, with its blocks.
    pub(crate) fn release_inode(&mut self, ino: u32, is_dir: bool) -> Result<()> {
        let i = self.inode(ino)?;
        if self.fs.has_block_map(&i) {
            let m = self.fs.mapping(&i)?;
            for b in m.all_blocks().collect::<Vec<_>>() {
                self.free_block(b)?;
            }
        }
        if i.file_acl() != 0 {
            self.deref_xattr_block(i.file_acl())?;
        }
        let blank = Inode {
            ino,
            raw: vec![0u8; i.raw.len()],
        };
        self.put_inode(blank);
        self.free_inode(ino, is_dir)
    }

    /// Installs a fresh extent tree for `runs`, freeing `old_meta` tree
    /// blocks. Returns the number of tree blocks used.
    fn set_mapping(&mut self, i: &mut Inode, runs: &[Run], old_meta: &[u64]) -> Result<u64> {
        for &b in old_meta {
            self.free_block(b)?;
        }
        let runs = extent::split_runs(runs);
        let need = extent::leaf_blocks_needed(runs.len(), self.sb.block_size)?;
        let mut at = Vec::new();
        let mut goal = runs
            .last()
            .map_or(self.goal_of(i.ino), |r| r.physical + u64::from(r.len));
        for _ in 0..need {
            let b = self.alloc_block(goal)?;
            goal = b + 1;
            at.push(b);
        }
        let (root, leaves) = extent::build(&runs, &at, self.sb.block_size, self.seed_of(i));
        for (b, data) in leaves {
            self.dev.put_block(b, data);
        }
        i.i_block_mut().copy_from_slice(&root);
        i.set_flags(i.flags() | EXTENTS_FL);
        Ok(need as u64)
    }

    /// Streams a regular file's contents into new blocks.
    fn write_contents(&mut self, i: &mut Inode, c: &v6build_fstree::Content) -> Result<u64> {
        let bs = self.bs();
        // Holes the source knows of are skipped without reading them;
        // all-zero blocks it does not know of are left as holes too.
        let mut rd = self.blobs.open_holes(&c.digest)?;
        self.progress.add_total(c.size);
        let mut runs: Vec<Run> = Vec::new();
        let mut buf = vec![0u8; bs];
        let mut total = 0u64;
        let mut goal = self.goal_of(i.ino);
        let mut logical = 0u32;
        let too_large = || Error::InvalidTree("file too large for ext4".into());
        loop {
            let want = c.size.saturating_sub(total).min(bs as u64);
            if want > 0 && rd.skip_hole(want)? {
                total += want;
                logical = logical.checked_add(1).ok_or_else(too_large)?;
                if want < bs as u64 {
                    break;
                }
                continue;
            }
            let mut n = 0;
            while n < bs {
                let k = rd.read(&mut buf[n..])?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 {
                break;
            }
            buf[n..].fill(0);
            total += n as u64;
            if buf.iter().any(|&b| b != 0) {
                let b = self.alloc_block(goal)?;
                self.pending_blocks = self.pending_blocks.saturating_sub(1);
                goal = b + 1;
                self.dev.put_block(b, buf.clone());
                match runs.last_mut() {
                    Some(r)
                        if r.logical + r.len == logical && r.physical + u64::from(r.len) == b =>
                    {
                        r.len += 1
                    }
                    _ => runs.push(Run {
                        logical,
                        physical: b,
                        len: 1,
                        uninit: false,
                    }),
                }
            }
            logical = logical.checked_add(1).ok_or_else(too_large)?;
            if n < bs {
                break;
            }
        }
        self.progress.add(total);
        if total != c.size {
            return Err(Error::InvalidTree(format!(
                "blob {} holds {total} bytes, the tree says {}",
                c.digest, c.size
            )));
        }
        if self.sb.feature_ro_compat & ro_compat::LARGE_FILE == 0
            && total > u64::from(u32::MAX >> 1)
        {
            return Err(unsupported(
                "a file over 2 GiB in an image without large_file",
            ));
        }
        let data: u64 = runs.iter().map(|r| u64::from(r.len)).sum();
        let meta = self.set_mapping(i, &runs, &[])?;
        i.set_size(total);
        Ok(data + meta)
    }

    /// Writes the type-specific part of an inode; returns blocks used.
    fn write_kind(&mut self, i: &mut Inode, kind: &LeafKind) -> Result<u64> {
        i.i_block_mut().fill(0);
        i.set_flags(i.flags() & !(EXTENTS_FL | INDEX_FL));
        i.set_size(0);
        match kind {
            LeafKind::Regular(c) => self.write_contents(i, c),
            LeafKind::Symlink(t) => {
                if t.is_empty() || t.len() >= self.bs() || t.len() > 4095 {
                    return Err(Error::InvalidTree(format!(
                        "symlink target of {} bytes",
                        t.len()
                    )));
                }
                i.set_size(t.len() as u64);
                if t.len() < 60 {
                    i.i_block_mut()[..t.len()].copy_from_slice(t);
                    Ok(0)
                } else {
                    let b = self.alloc_block(self.goal_of(i.ino))?;
                    let mut data = vec![0u8; self.bs()];
                    data[..t.len()].copy_from_slice(t);
                    self.dev.put_block(b, data);
                    let meta = self.set_mapping(
                        i,
                        &[Run {
                            logical: 0,
                            physical: b,
                            len: 1,
                            uninit: false,
                        }],
                        &[],
                    )?;
                    Ok(1 + meta)
                }
            }
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                let (major, minor) = (*major, *minor);
                if major > 0xfff || minor > 0xfffff {
                    return Err(Error::InvalidTree(format!(
                        "device {major},{minor} does not fit ext4"
                    )));
                }
                if major < 256 && minor < 256 {
                    crate::bytes::set32(i.i_block_mut(), 0, (major << 8) | minor);
                } else {
                    let v = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
                    crate::bytes::set32(i.i_block_mut(), 4, v);
                }
                Ok(0)
            }
            LeafKind::Fifo | LeafKind::Socket => Ok(0),
        }
    }

    /// Replaces an inode's xattrs (in-inode if they fit, else one block).
    fn write_xattrs(&mut self, i: &mut Inode, x: &Xattrs) -> Result<()> {
        if i.file_acl() != 0 {
            self.deref_xattr_block(i.file_acl())?;
            i.set_file_acl(0);
        }
        let start = 128 + usize::from(i.extra_isize());
        let has_ibody = i.raw.len() > start;
        if has_ibody {
            let area = &mut i.raw[start..];
            if xattr::write_ibody(area, x)? {
                return Ok(());
            }
            xattr::write_ibody(area, &Xattrs::new())?;
        } else if x.is_empty() {
            return Ok(());
        }
        let b = self.alloc_block(self.goal_of(i.ino))?;
        let seed = self.sb.has_metadata_csum().then_some(self.sb.csum_seed);
        let data = xattr::build_block(x, self.bs(), b, seed)?.ok_or_else(|| {
            Error::InvalidTree(format!("xattrs of inode {} do not fit one block", i.ino))
        })?;
        self.dev.put_block(b, data);
        i.set_file_acl(b);
        Ok(())
    }

    fn set_meta(&self, i: &mut Inode, type_bits: u16, m: &Meta, fresh: bool) {
        i.set_mode(type_bits | (m.perm & Meta::PERM_MASK));
        i.set_owner(m.uid, m.gid);
        if fresh {
            i.set_times(m.mtime);
        } else {
            i.set_mtime(m.mtime);
        }
    }

    fn set_block_count(&self, i: &mut Inode, map_blocks: u64) {
        let acl = u64::from(i.file_acl() != 0);
        i.set_blocks(&self.sb, map_blocks + acl);
    }

    /// Blocks (data + tree) an existing inode maps.
    fn mapped_blocks(&self, i: &Inode) -> Result<u64> {
        if !self.fs.has_block_map(i) {
            return Ok(0);
        }
        let m = self.fs.mapping(i)?;
        Ok(m.data_blocks() + m.meta_blocks.len() as u64)
    }

    /// Makes inode `t.ino` hold `leaf` with `links` names.
    pub(crate) fn write_leaf(&mut self, t: &Target, leaf: &Leaf, links: u16) -> Result<()> {
        let type_bits = leaf.kind.type_bits() as u16;
        if !t.reused {
            let mut i = self.fresh_inode(t.ino);
            self.set_meta(&mut i, type_bits, &leaf.meta, true);
            i.set_links(links);
            let used = self.write_kind(&mut i, &leaf.kind)?;
            self.write_xattrs(&mut i, &leaf.meta.xattrs)?;
            self.set_block_count(&mut i, used);
            self.put_inode(i);
            return Ok(());
        }
        let mut i = self.inode(t.ino)?;
        let same_kind = match &leaf.kind {
            LeafKind::Regular(c) => {
                i.size() == c.size
                    && match self.known.get(&i.ino) {
                        Some(k) if k.size == c.size => k.digest == c.digest,
                        _ => self.fs.content_digest(&i)?.digest == c.digest,
                    }
            }
            k => self.fs.leaf_kind(&i, None)? == *k,
        };
        let old_meta = self.fs.meta(&i)?;
        if same_kind && old_meta == leaf.meta && i.links() == links {
            return Ok(());
        }
        self.stats.inodes_updated += 1;
        let mut used = self.mapped_blocks(&i)?;
        if !same_kind {
            if self.fs.has_block_map(&i) {
                let m = self.fs.mapping(&i)?;
                for b in m.all_blocks().collect::<Vec<_>>() {
                    self.free_block(b)?;
                }
            }
            used = self.write_kind(&mut i, &leaf.kind)?;
        }
        if old_meta.xattrs != leaf.meta.xattrs {
            self.write_xattrs(&mut i, &leaf.meta.xattrs)?;
        }
        self.set_meta(&mut i, type_bits, &leaf.meta, false);
        i.set_links(links);
        self.set_block_count(&mut i, used);
        self.put_inode(i);
        Ok(())
    }

    /// Makes directory `t.ino` hold exactly `want` (plus `.`/`..`) and `d`'s metadata.
    pub(crate) fn write_dir(
        &mut self,
        t: &Target,
        parent: u32,
        d: &Directory,
        want: &[DirEntry],
        subdirs: usize,
    ) -> Result<()> {
        let links = match u16::try_from(subdirs + 2) {
            Ok(n) if n < 65000 => n,
            _ if self.sb.feature_ro_compat & ro_compat::DIR_NLINK != 0 => 1,
            _ => {
                return Err(Error::InvalidTree(
                    "a directory with 65000+ subdirectories needs dir_nlink".into(),
                ));
            }
        };
        let bs = self.bs();
        let filetype = self.sb.has_filetype();
        let (mut i, mut blocks, old_meta_blocks, mut ops) = if t.reused {
            let i = self.inode(t.ino)?;
            let have = self.fs.dir_entries(&i)?;
            let have_map: BTreeMap<&[u8], &DirEntry> =
                have.iter().map(|e| (e.name.as_slice(), e)).collect();
            let want_map: BTreeMap<&[u8], &DirEntry> =
                want.iter().map(|e| (e.name.as_slice(), e)).collect();
            let mut ops: Vec<(u8, &DirEntry)> = Vec::new();
            for e in &have {
                if !want_map.contains_key(e.name.as_slice()) {
                    ops.push((0, e));
                }
            }
            for e in want {
                match have_map.get(e.name.as_slice()) {
                    None => ops.push((2, e)),
                    Some(h) if h.ino != e.ino || h.file_type != e.file_type => ops.push((1, e)),
                    Some(_) => {}
                }
            }
            let old_meta = self.fs.meta(&i)?;
            if ops.is_empty() && old_meta == d.meta && i.links() == links {
                return Ok(());
            }
            self.stats.inodes_updated += 1;
            if ops.is_empty() {
                let mut i = i;
                if old_meta.xattrs != d.meta.xattrs {
                    let used = self.mapped_blocks(&i)?;
                    self.write_xattrs(&mut i, &d.meta.xattrs)?;
                    self.set_block_count(&mut i, used);
                }
                self.set_meta(&mut i, S_IFDIR, &d.meta, false);
                i.set_links(links);
                self.put_inode(i);
                return Ok(());
            }
            let m = self.fs.mapping(&i)?;
            let nblocks = i.size().div_ceil(bs as u64);
            let mut blocks: Vec<(u64, Vec<u8>, bool)> = Vec::new();
            for r in &m.runs {
                for k in 0..u64::from(r.len) {
                    if u64::from(r.logical) + k != blocks.len() as u64 {
                        return Err(unsupported(format!("directory inode {} has holes", t.ino)));
                    }
                    if (blocks.len() as u64) < nblocks {
                        blocks.push((r.physical + k, self.fs.read_block(r.physical + k)?, false));
                    }
                }
            }
            if blocks.is_empty() {
                return Err(corrupt(format!("directory inode {} has no blocks", t.ino)));
            }
            let ops: Vec<(u8, DirEntry)> = ops.into_iter().map(|(k, e)| (k, e.clone())).collect();
            let old_meta_blocks = m.meta_blocks.clone();
            (i, blocks, old_meta_blocks, ops)
        } else {
            let mut i = self.fresh_inode(t.ino);
            i.set_links(links);
            let b = self.alloc_block(self.goal_of(t.ino))?;
            let first = dir::first_block(bs, t.ino, parent, filetype, self.seed_of(&i));
            let ops = want.iter().map(|e| (2u8, e.clone())).collect();
            (i, vec![(b, first, true)], Vec::new(), ops)
        };
        let seed = self.seed_of(&i);
        let csum = seed.is_some();
        let mut appended = !t.reused;
        let indexed = i.flags() & INDEX_FL != 0;
        let hv = blocks[0].1.get(0x1C).copied().unwrap_or(u8::MAX);
        let params = (indexed
            && self.sb.feature_compat & crate::superblock::compat::DIR_INDEX != 0
            && hv <= crate::hash::version::TEA)
            .then(|| super::htree::Htree {
                bs,
                ino: t.ino,
                parent,
                hash_version: hv,
                unsigned: crate::bytes::le32(&self.sb.raw, 0x160) & 0x2 != 0,
                seed: self.sb.hash_seed(),
                csum_seed: seed,
                filetype,
                entries: want,
            });
        if indexed && params.is_none() {
            // Unknown hash or no dir_index: fall back to a linear directory.
            linearise(&mut blocks, &mut i, t.ino, filetype, seed);
            self.stats.htree_dirs_linearised += 1;
        }
        // Under metadata_csum every leaf block must end in a checksum tail;
        // rewriting one without it would overwrite a live entry.
        let is_index = |k: usize, d: &[u8]| params.is_some() && (k == 0 || dir::is_dx_node(d));
        if csum
            && let Some((_, (b, _, _))) = blocks
                .iter()
                .enumerate()
                .find(|(k, (_, d, _))| !is_index(*k, d) && !dir::has_tail(d))
        {
            return Err(unsupported(format!(
                "directory inode {}: block {b} has no checksum tail (e2fsck -fD adds it)",
                t.ino
            )));
        }
        if let Some(h) = &params {
            // First try to keep the index as is: removals and retargets in
            // place, each insertion into the leaf its hash selects.
            let mut tmp = blocks.clone();
            let (mut added, mut removed, mut fits) = (0, 0, true);
            for (kind, e) in &ops {
                let ok = match kind {
                    2 => {
                        let hash =
                            crate::hash::dirhash(&e.name, h.hash_version, h.unsigned, h.seed)
                                .map(|x| x.0);
                        match hash.and_then(|x| super::htree::leaf_for(&tmp, x)) {
                            Some(k) => {
                                let hit = dir::insert(
                                    &mut tmp[k].1,
                                    &e.name,
                                    e.ino,
                                    e.file_type,
                                    filetype,
                                    csum,
                                )?;
                                if hit {
                                    tmp[k].2 = true;
                                    added += 1;
                                }
                                hit
                            }
                            None => false,
                        }
                    }
                    _ => {
                        let mut hit = false;
                        for (k, (_, data, dirty)) in tmp.iter_mut().enumerate() {
                            if k == 0 || dir::is_dx_node(data) {
                                continue;
                            }
                            hit = if *kind == 0 {
                                dir::remove(data, &e.name, filetype, csum)?
                            } else {
                                dir::retarget(data, &e.name, e.ino, e.file_type, filetype, csum)?
                            };
                            if hit {
                                *dirty = true;
                                break;
                            }
                        }
                        if hit && *kind == 0 {
                            removed += 1;
                        }
                        hit
                    }
                };
                if !ok {
                    fits = false;
                    break;
                }
            }
            if fits {
                blocks = tmp;
                ops.clear();
                self.stats.entries_added += added;
                self.stats.entries_removed += removed;
            } else if let Some(new) = super::htree::build(h) {
                let old: Vec<u64> = blocks.iter().map(|b| b.0).collect();
                let mut list: Vec<(u64, Vec<u8>, bool)> = Vec::with_capacity(new.len());
                for (k, data) in new.into_iter().enumerate() {
                    let b = match old.get(k) {
                        Some(&b) => b,
                        // k > 0 here: the first block always exists.
                        None => self.alloc_block(list.last().map_or(0, |l| l.0) + 1)?,
                    };
                    self.dev.put_block(b, data);
                    list.push((b, Vec::new(), false));
                }
                for &b in old.iter().skip(list.len()) {
                    self.free_block(b)?;
                }
                appended |= list.len() != old.len();
                blocks = list;
                for (kind, _) in &ops {
                    match kind {
                        0 => self.stats.entries_removed += 1,
                        2 => self.stats.entries_added += 1,
                        _ => {}
                    }
                }
                ops.clear();
                self.stats.htree_dirs_rebuilt += 1;
            } else {
                // Too big for two index levels: linear it is.
                linearise(&mut blocks, &mut i, t.ino, filetype, seed);
                self.stats.htree_dirs_linearised += 1;
            }
        }
        for (kind, e) in &ops {
            let mut done = false;
            for (_, data, dirty) in blocks.iter_mut() {
                let hit = match kind {
                    0 => dir::remove(data, &e.name, filetype, csum)?,
                    1 => dir::retarget(data, &e.name, e.ino, e.file_type, filetype, csum)?,
                    _ => dir::insert(data, &e.name, e.ino, e.file_type, filetype, csum)?,
                };
                if hit {
                    *dirty = true;
                    done = true;
                    break;
                }
            }
            match (kind, done) {
                (0, true) => self.stats.entries_removed += 1,
                (2, true) => self.stats.entries_added += 1,
                (2, false) => {
                    // OK to unwrap: a directory always has at least one block.
                    let goal = blocks.last().unwrap().0 + 1;
                    let b = self.alloc_block(goal)?;
                    let mut data = dir::empty_block(bs, filetype, seed);
                    if !dir::insert(&mut data, &e.name, e.ino, e.file_type, filetype, csum)? {
                        return Err(Error::InvalidTree(
                            "directory entry does not fit an empty block".into(),
                        ));
                    }
                    blocks.push((b, data, true));
                    appended = true;
                    self.stats.entries_added += 1;
                }
                (_, false) => {
                    return Err(corrupt(format!(
                        "directory inode {}: entry vanished during the edit",
                        t.ino
                    )));
                }
                _ => {}
            }
        }
        for (b, data, dirty) in &mut blocks {
            if *dirty {
                if let Some(s) = seed {
                    dir::set_tail(data, s);
                }
                self.dev.put_block(*b, std::mem::take(data));
            }
        }
        let mut used = self.mapped_blocks(&i).unwrap_or(0);
        if appended {
            let mut runs: Vec<Run> = Vec::new();
            for (k, (b, _, _)) in blocks.iter().enumerate() {
                let k = k as u32;
                match runs.last_mut() {
                    Some(r) if r.physical + u64::from(r.len) == *b => r.len += 1,
                    _ => runs.push(Run {
                        logical: k,
                        physical: *b,
                        len: 1,
                        uninit: false,
                    }),
                }
            }
            let meta = self.set_mapping(&mut i, &runs, &old_meta_blocks)?;
            i.set_size(blocks.len() as u64 * bs as u64);
            used = blocks.len() as u64 + meta;
        }
        if !t.reused {
            self.set_meta(&mut i, S_IFDIR, &d.meta, true);
            self.write_xattrs(&mut i, &d.meta.xattrs)?;
        } else {
            if self.fs.meta(&i)?.xattrs != d.meta.xattrs {
                self.write_xattrs(&mut i, &d.meta.xattrs)?;
            }
            self.set_meta(&mut i, S_IFDIR, &d.meta, false);
        }
        i.set_links(links);
        self.set_block_count(&mut i, used);
        self.put_inode(i);
        Ok(())
    }
}
