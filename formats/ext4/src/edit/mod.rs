//! The in-place editor: given a base image and the tree it should hold,
//! change only what differs. Unchanged inodes, blocks and directories keep
//! their bytes, so the squashfs layer above can reuse the base's compressed
//! blocks. Works in three steps:
//!
//! 1. plan: walk the base and the new tree together; match every new leaf
//!    (hardlink group) and directory to a base inode where the path and type
//!    agree, else mark it new; every base inode left unmatched is freed;
//! 2. apply into an overlay (see `dev`): free, allocate (deterministically),
//!    write inodes, contents, extent trees, directory entries;
//! 3. flush the overlay into the image and report the changed byte ranges.
//!
//! Changed htree directories are rewritten as linear ones (index flag
//! cleared); the journal is never touched.

mod alloc;
mod check;
mod dev;
mod htree;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use v6build_fstree::{BlobStore, Content, Directory, Leaf, LeafKind, Node, Tree, TreePath};

use crate::error::{Error, Result, unsupported};
use crate::fs::{DirEntry, Ext4};
use crate::group::GroupDesc;
use crate::inode::{Inode, ROOT_INO};
use crate::readat::{ReadAt, WriteAt};
use crate::superblock::{Superblock, incompat, ro_compat};

use dev::Dev;

/// Knobs for [`edit`]. The defaults are what v6build uses.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EditOptions {
    /// Contents already known for base inodes (inode number -> content), so
    /// the editor need not re-read and hash unchanged files. Must come from
    /// reading this very base image (see [`EditOptions::with_base`]).
    pub known_contents: HashMap<u32, Content>,
    /// Advanced by the bytes of each file the edit writes.
    pub progress: v6build_fstree::Progress,
}

impl EditOptions {
    /// Options that reuse the digests of a tree read from the base image
    /// with [`Ext4::read_tree_with_inodes`].
    pub fn with_base(tree: &Tree, inodes: &crate::fs::InodeMap) -> Self {
        let mut known = HashMap::new();
        tree.walk(&mut |p, n| {
            if let Node::Leaf(l) = n
                && let LeafKind::Regular(c) = &l.kind
                && let Some(&ino) = inodes.get(p)
            {
                known.insert(ino, *c);
            }
        });
        EditOptions {
            known_contents: known,
            progress: v6build_fstree::Progress::default(),
        }
    }
}

/// What an edit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EditReport {
    /// Changed byte ranges `[start, end)` of the image, sorted and merged.
    pub changed: Vec<(u64, u64)>,
    /// Counters.
    pub stats: EditStats,
}

/// Counters of an edit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EditStats {
    /// Inodes newly allocated.
    pub inodes_allocated: u64,
    /// Inodes released.
    pub inodes_freed: u64,
    /// Existing inodes rewritten (metadata, content or entries).
    pub inodes_updated: u64,
    /// Blocks allocated.
    pub blocks_allocated: u64,
    /// Blocks released.
    pub blocks_freed: u64,
    /// Directory entries added.
    pub entries_added: u64,
    /// Directory entries removed.
    pub entries_removed: u64,
    /// Htree directories turned into linear ones (index could not be kept).
    pub htree_dirs_linearised: u64,
    /// Htree directories whose index was rebuilt.
    pub htree_dirs_rebuilt: u64,
}

impl EditReport {
    /// Total number of changed bytes.
    pub fn bytes_changed(&self) -> u64 {
        self.changed.iter().map(|(a, b)| b - a).sum()
    }

    /// How many `region`-sized aligned regions of an image of `len` bytes
    /// contain a change, and how many regions there are.
    pub fn regions_changed(&self, region: u64, len: u64) -> (u64, u64) {
        let mut set = BTreeSet::new();
        for &(a, b) in &self.changed {
            for r in a / region..=(b - 1) / region {
                set.insert(r);
            }
        }
        (set.len() as u64, len.div_ceil(region))
    }
}

/// Edits `image` (a whole ext4 image in memory) so it holds `new_tree`.
pub fn edit(
    image: &mut Vec<u8>,
    new_tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &EditOptions,
) -> Result<EditReport> {
    edit_image(image, new_tree, blobs, opts)
}

/// The outcome of [`edit_blocks`]: the blocks that differ from the base.
#[derive(Clone, Debug)]
pub struct BlockEdit {
    /// Block size of the image.
    pub block_size: u32,
    /// New contents of every changed block, by block number.
    pub blocks: BTreeMap<u64, Vec<u8>>,
    /// Length of the image after the edit (grows only with [`crate::grow_blocks`]).
    pub len: u64,
    /// What changed.
    pub report: EditReport,
}

impl BlockEdit {
    /// Writes the changed blocks into an in-memory image (already long enough).
    pub fn apply_to(&self, image: &mut [u8]) {
        let bs = self.block_size as usize;
        for (&b, data) in &self.blocks {
            let off = b as usize * bs;
            image[off..off + data.len()].copy_from_slice(data);
        }
    }
}

/// Edits any writable image in place so it holds `new_tree`. On error the
/// image is unchanged.
pub fn edit_image(
    image: &mut dyn WriteAt,
    new_tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &EditOptions,
) -> Result<EditReport> {
    let out = edit_blocks(&*image, new_tree, blobs, opts)?;
    let bs = u64::from(out.block_size);
    for (b, data) in &out.blocks {
        image.write_at(b * bs, data)?;
    }
    Ok(out.report)
}

/// Computes an edit without writing anything: reads the base through
/// `base` (only the metadata and files the edit needs) and returns the
/// changed blocks. This is what a caller with a huge or compressed base
/// uses, so the image is never inflated whole.
pub fn edit_blocks(
    base: &dyn ReadAt,
    new_tree: &Tree,
    blobs: &dyn BlobStore,
    opts: &EditOptions,
) -> Result<BlockEdit> {
    let probe = Ext4::open(base)?;
    check_editable(probe.superblock())?;
    let block_size = probe.superblock().block_size;
    let dev = Dev::new(base, block_size);
    let stats = {
        let fs = Ext4::open(&dev)?;
        let mut ed = Editor {
            sb: fs.sb.clone(),
            gds: fs.groups.clone(),
            fs,
            dev: &dev,
            blobs,
            known: &opts.known_contents,
            progress: &opts.progress,
            inodes: BTreeMap::new(),
            block_bitmaps: BTreeMap::new(),
            inode_bitmaps: BTreeMap::new(),
            touched: BTreeSet::new(),
            group_meta: None,
            stats: EditStats::default(),
            pending_blocks: 0,
            pending_inodes: 0,
        };
        ed.run(new_tree)?;
        ed.stats.clone()
    };
    let bs = u64::from(block_size);
    let mut changed: Vec<(u64, u64)> = Vec::new();
    let mut blocks = BTreeMap::new();
    let mut old = vec![0u8; block_size as usize];
    for (b, data) in dev.into_blocks() {
        let off = b * bs;
        base.read_at(off, &mut old)?;
        let Some(first) = old.iter().zip(&data).position(|(a, b)| a != b) else {
            continue;
        };
        // OK to unwrap: a differing byte exists (found just above).
        let last = old.iter().zip(&data).rposition(|(a, b)| a != b).unwrap() + 1;
        let (s, e) = (off + first as u64, off + last as u64);
        match changed.last_mut() {
            Some(l) if l.1 == s => l.1 = e,
            _ => changed.push((s, e)),
        }
        blocks.insert(b, data);
    }
    Ok(BlockEdit {
        block_size,
        len: base.len(),
        blocks,
        report: EditReport { changed, stats },
    })
}

fn check_editable(sb: &Superblock) -> Result<()> {
    if sb.feature_incompat & incompat::EXTENTS == 0 {
        return Err(unsupported(
            "editing an image without the extent feature (ext2/ext3)",
        ));
    }
    if sb.feature_incompat & incompat::MMP != 0 {
        return Err(unsupported(
            "editing an image with multi-mount protection (mmp)",
        ));
    }
    if sb.feature_ro_compat & (ro_compat::QUOTA | ro_compat::PROJECT) != 0 {
        return Err(unsupported(
            "editing an image with quota tracking (quota/project)",
        ));
    }
    if sb.feature_ro_compat & (ro_compat::READONLY | ro_compat::VERITY) != 0 {
        return Err(unsupported("editing a read-only or verity image"));
    }
    if !sb.is_clean() {
        return Err(unsupported(
            "the filesystem was not cleanly unmounted; run e2fsck first",
        ));
    }
    if crate::bytes::le32(&sb.raw, 0xE8) != 0 {
        return Err(unsupported(
            "the filesystem has an orphan inode list pending; run e2fsck first",
        ));
    }
    Ok(())
}

/// What the plan decided for one hardlink group or directory.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub ino: u32,
    /// Reused from the base (else newly allocated).
    pub reused: bool,
}

/// Base facts gathered by walking the whole base tree (no contents).
#[derive(Default)]
pub(crate) struct BaseIndex {
    /// Path -> (ino, is_dir).
    pub paths: BTreeMap<TreePath, (u32, bool)>,
    /// Every inode reachable, with whether it is a directory.
    pub inodes: BTreeMap<u32, bool>,
}

pub(crate) struct Editor<'a> {
    pub fs: Ext4<&'a Dev<'a>>,
    pub dev: &'a Dev<'a>,
    pub sb: Superblock,
    pub gds: Vec<GroupDesc>,
    pub blobs: &'a dyn BlobStore,
    pub known: &'a HashMap<u32, Content>,
    pub progress: &'a v6build_fstree::Progress,
    /// Inodes read or changed during the edit (written back at the end).
    pub inodes: BTreeMap<u32, (Inode, bool)>,
    pub block_bitmaps: BTreeMap<u32, Vec<u8>>,
    pub inode_bitmaps: BTreeMap<u32, Vec<u8>>,
    pub touched: BTreeSet<u32>,
    /// Metadata block numbers by the group they lie in (built on first need).
    pub group_meta: Option<BTreeMap<u32, Vec<u64>>>,
    pub stats: EditStats,
    pub pending_blocks: u64,
    pub pending_inodes: u64,
}

impl Editor<'_> {
    /// An inode, from the edit's cache or the image.
    pub(crate) fn inode(&mut self, ino: u32) -> Result<Inode> {
        if let Some((i, _)) = self.inodes.get(&ino) {
            return Ok(i.clone());
        }
        let i = self.fs.inode(ino)?;
        self.inodes.insert(ino, (i.clone(), false));
        Ok(i)
    }

    /// Stores a changed inode (written at the end).
    pub(crate) fn put_inode(&mut self, i: Inode) {
        self.inodes.insert(i.ino, (i, true));
    }

    fn index_base(&mut self) -> Result<BaseIndex> {
        let mut idx = BaseIndex::default();
        idx.inodes.insert(ROOT_INO, true);
        let mut stack = vec![(TreePath::root(), ROOT_INO, ROOT_INO, 0usize)];
        while let Some((path, ino, parent, depth)) = stack.pop() {
            if depth > crate::fs::MAX_DEPTH {
                return Err(unsupported("base directories nested too deeply"));
            }
            let inode = self.inode(ino)?;
            let (entries, dotdot) = self.fs.dir_entries_and_parent(&inode)?;
            crate::fs::check_dotdot(&path, dotdot, parent)?;
            for e in entries {
                let name = v6build_fstree::Name::new(e.name.clone())
                    .map_err(|err| crate::error::corrupt(format!("directory {path}: {err}")))?;
                if e.ino < self.sb.first_ino && e.ino != ROOT_INO {
                    return Err(check::inconsistent(format!(
                        "{}: a directory entry names reserved inode {}",
                        path.join(name),
                        e.ino
                    )));
                }
                let child = self.inode(e.ino)?;
                let p = path.join(name);
                let is_dir = child.is_dir();
                if is_dir && idx.inodes.contains_key(&e.ino) {
                    return Err(crate::error::corrupt(format!(
                        "{p}: directory linked twice"
                    )));
                }
                idx.inodes.insert(e.ino, is_dir);
                idx.paths.insert(p.clone(), (e.ino, is_dir));
                if is_dir {
                    stack.push((p, e.ino, ino, depth + 1));
                }
            }
        }
        Ok(idx)
    }

    fn run(&mut self, new_tree: &Tree) -> Result<()> {
        let base = self.index_base()?;
        self.check_base(&base)?;
        // Hardlink groups of the new tree, in canonical order of first path.
        let mut groups: Vec<(Arc<Leaf>, Vec<TreePath>)> = Vec::new();
        let mut by_ptr: HashMap<*const Leaf, usize> = HashMap::new();
        let mut dirs: Vec<TreePath> = vec![TreePath::root()];
        new_tree.walk(&mut |p, n| match n {
            Node::Dir(_) => dirs.push(p.clone()),
            Node::Leaf(l) => {
                let k = Arc::as_ptr(l);
                match by_ptr.get(&k) {
                    Some(&i) => groups[i].1.push(p.clone()),
                    None => {
                        by_ptr.insert(k, groups.len());
                        groups.push((Arc::clone(l), vec![p.clone()]));
                    }
                }
            }
        });
        // Match directories and leaf groups to base inodes.
        let mut claimed: BTreeSet<u32> = BTreeSet::new();
        let mut dir_target: BTreeMap<TreePath, Target> = BTreeMap::new();
        dir_target.insert(
            TreePath::root(),
            Target {
                ino: ROOT_INO,
                reused: true,
            },
        );
        claimed.insert(ROOT_INO);
        for p in &dirs[1..] {
            if let Some(&(ino, true)) = base.paths.get(p) {
                claimed.insert(ino);
                dir_target.insert(p.clone(), Target { ino, reused: true });
            }
        }
        let mut leaf_target: Vec<Option<Target>> = vec![None; groups.len()];
        for (gi, (leaf, paths)) in groups.iter().enumerate() {
            let want = leaf.kind.type_bits() as u16;
            for p in paths {
                if let Some(&(ino, false)) = base.paths.get(p) {
                    if claimed.contains(&ino) {
                        continue;
                    }
                    let i = self.inode(ino)?;
                    if i.file_type() == want {
                        claimed.insert(ino);
                        leaf_target[gi] = Some(Target { ino, reused: true });
                        break;
                    }
                }
            }
        }
        // Free every base inode nobody claimed.
        for (&ino, &is_dir) in &base.inodes {
            if !claimed.contains(&ino) {
                self.release_inode(ino, is_dir)?;
            }
        }
        self.pending_inodes = dirs.iter().filter(|p| !dir_target.contains_key(*p)).count() as u64
            + leaf_target.iter().filter(|t| t.is_none()).count() as u64;
        // Allocate new inodes in canonical order (dirs first, then leaves).
        for p in &dirs[1..] {
            if !dir_target.contains_key(p) {
                let parent = dir_target[&p.parent()].ino;
                let g = (parent - 1) / self.sb.inodes_per_group;
                let ino = self.alloc_inode(g, true)?;
                self.pending_inodes = self.pending_inodes.saturating_sub(1);
                dir_target.insert(p.clone(), Target { ino, reused: false });
            }
        }
        for (gi, (_, paths)) in groups.iter().enumerate() {
            if leaf_target[gi].is_none() {
                let parent = dir_target[&paths[0].parent()].ino;
                let g = (parent - 1) / self.sb.inodes_per_group;
                let ino = self.alloc_inode(g, false)?;
                self.pending_inodes = self.pending_inodes.saturating_sub(1);
                leaf_target[gi] = Some(Target { ino, reused: false });
            }
        }
        self.pending_blocks = groups
            .iter()
            .zip(&leaf_target)
            .map(|((l, _), t)| match (&l.kind, t) {
                (LeafKind::Regular(c), Some(Target { reused: false, .. })) => {
                    c.size.div_ceil(u64::from(self.sb.block_size))
                }
                _ => 0,
            })
            .sum();
        // Write leaves.
        for (gi, (leaf, paths)) in groups.iter().enumerate() {
            // OK to unwrap: every group got a target above.
            let t = leaf_target[gi].clone().unwrap();
            let links = u16::try_from(paths.len()).map_err(|_| {
                Error::InvalidTree(format!("{} has more than 65535 hard links", paths[0]))
            })?;
            self.write_leaf(&t, leaf, links)?;
        }
        // Write directories: entries, metadata, link counts.
        let ino_of = |p: &TreePath, n: &Node| -> u32 {
            match n {
                Node::Dir(_) => dir_target[p].ino,
                Node::Leaf(l) => {
                    let gi = by_ptr[&Arc::as_ptr(l)];
                    leaf_target[gi].as_ref().map_or(0, |t| t.ino)
                }
            }
        };
        for p in &dirs {
            let d: &Directory = new_tree
                .dir(p)
                .map_err(|e| Error::InvalidTree(e.to_string()))?;
            let t = dir_target[p].clone();
            let parent = if p.is_root() {
                ROOT_INO
            } else {
                dir_target[&p.parent()].ino
            };
            let mut want: Vec<DirEntry> = Vec::new();
            for (name, node) in d.entries() {
                let cp = p.join(name.clone());
                want.push(DirEntry {
                    name: name.as_bytes().to_vec(),
                    ino: ino_of(&cp, node),
                    file_type: if self.sb.has_filetype() {
                        crate::fs::ftype_of(node)
                    } else {
                        0
                    },
                });
            }
            let subdirs = d
                .entries()
                .values()
                .filter(|n| matches!(n, Node::Dir(_)))
                .count();
            self.write_dir(&t, parent, d, &want, subdirs)?;
        }
        // Write back inodes, then groups and superblock.
        let inodes: Vec<Inode> = self
            .inodes
            .values()
            .filter(|(_, dirty)| *dirty)
            .map(|(i, _)| i.clone())
            .collect();
        for mut i in inodes {
            i.update_checksum(&self.sb);
            let off = self.fs.inode_offset(i.ino)?;
            self.dev.write(off, &i.raw)?;
        }
        self.finish_groups()
    }
}
